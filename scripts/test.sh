#!/usr/bin/env bash
# test.sh — run every Plexus test suite. Tests that need root or a tool
# (ovs-vswitchd, ip, ping ...) print "SKIP: ..." and pass when it is missing,
# unless CI=true, where a missing prerequisite is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "=== cargo test --workspace ==="
cargo test --workspace "$@"
