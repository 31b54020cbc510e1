#!/usr/bin/env bash
# install.sh — place plexus-cni into a CNI bin dir and (optionally) a conflist.
# Usage: cni-plugin/install.sh [BIN_DIR=/opt/cni/bin] [CONF_DIR]   (env BIN=path to the built binary)
set -euo pipefail
BIN_DIR=${1:-/opt/cni/bin}; CONF_DIR=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-$here/../target}/release/plexus-cni}
[[ -x $BIN ]] || { echo "build first: cargo build --release -p plexus-cni (or set BIN=)" >&2; exit 1; }
install -d "$BIN_DIR"
install -m 0755 "$BIN" "$BIN_DIR/plexus-cni.tmp" && mv -f "$BIN_DIR/plexus-cni.tmp" "$BIN_DIR/plexus-cni"
if [[ -n $CONF_DIR ]]; then
  install -d "$CONF_DIR"
  [[ -e $CONF_DIR/10-plexus.conflist ]] || install -m 0644 "$here/examples/10-plexus.conflist" "$CONF_DIR/"
fi
echo "installed $BIN_DIR/plexus-cni"
