#!/usr/bin/env bash
# setup.sh — prepare a fresh machine for Plexus: system packages, then a build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust 1.95+ (rustup) first" >&2; exit 1; }
cargo build --workspace
echo "setup: ok"
