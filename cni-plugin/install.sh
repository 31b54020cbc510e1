#!/usr/bin/env bash
# install.sh — place plexus-cni into a CNI bin dir and (optionally) a conflist.
# Usage: cni-plugin/install.sh [BIN_DIR=/opt/cni/bin] [CONF_DIR]   (env BIN=path to the built binary)
#   BUILD=1 builds the plugin first, statically linked (recommended: the runtime
#   execs the plugin once per call, and a static binary skips the dynamic
#   loader's relocations and libgcc_s's CPU probing — 0.76 instead of 1.15 ms
#   of CPU per exec on the benchmark VM, see BENCHMARKS.md). Static glibc
#   resolves host names through the node's own glibc NSS modules: build on
#   the node's distribution (controller URLs with IP literals need no NSS).
set -euo pipefail
BIN_DIR=${1:-/opt/cni/bin}; CONF_DIR=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
if [[ ${BUILD:-} == 1 ]]; then
  (cd "$here/.." && cargo rustc --release -p plexus-cni --bin plexus-cni -- -C target-feature=+crt-static)
fi
BIN=${BIN:-${CARGO_TARGET_DIR:-$here/../target}/release/plexus-cni}
[[ -x $BIN ]] || { echo "build first: BUILD=1 $0, or cargo build --release -p plexus-cni (or set BIN=)" >&2; exit 1; }
install -d "$BIN_DIR"
install -m 0755 "$BIN" "$BIN_DIR/plexus-cni.tmp" && mv -f "$BIN_DIR/plexus-cni.tmp" "$BIN_DIR/plexus-cni"
if [[ -n $CONF_DIR ]]; then
  install -d "$CONF_DIR"
  [[ -e $CONF_DIR/10-plexus.conflist ]] || install -m 0644 "$here/examples/10-plexus.conflist" "$CONF_DIR/"
fi
echo "installed $BIN_DIR/plexus-cni"
