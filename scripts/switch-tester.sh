#!/usr/bin/env bash
# switch-tester.sh — run the os-ken OpenFlow 1.3 switch tester (991 cases) against
# plexus-vswitchd (see ../shared/PEERS.md §2 for the rig and the TARGET contract).
#
#   scripts/switch-tester.sh                                   # all cases
#   scripts/switch-tester.sh action/00_OUTPUT.json match/03_ETH_DST.json
#
# Installs os-ken + eventlet into ${PEERS_VENV:-/var/tmp/plexus-peers-venv} if
# missing (idempotent), builds plexus-vswitchd (release; PROFILE=debug for a debug
# build) and runs ../shared/peers/switch-tester.sh with TARGET = our daemon, which
# reads the rig's TARGET_DPID / CONTROLLER / TARGET_PORTS / TARGET_NETNS.
# Extra daemon flags: VSWITCHD_ARGS (e.g. "--port-type afpacket").
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# ../shared relative to the repo (a worktree under /work/wt/NAME: ../../shared).
PEERS=${PEERS_DIR:-$ROOT/../shared/peers}
[[ -d $PEERS ]] || PEERS=$ROOT/../../shared/peers
export PEERS_VENV=${PEERS_VENV:-/var/tmp/plexus-peers-venv}
if ! "$PEERS_VENV/bin/python" -c 'import os_ken, eventlet' 2>/dev/null; then
  echo "[switch-tester] installing os-ken + eventlet into $PEERS_VENV" >&2
  python3 -m venv "$PEERS_VENV"
  "$PEERS_VENV/bin/pip" install -q os-ken eventlet
fi
PROFILE=${PROFILE:-release}
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ -z ${VSWITCHD_BIN:-} ]]; then
  if [[ $PROFILE == release ]]; then
    (cd "$ROOT" && cargo build -q --release -p plexus-vswitch --bin plexus-vswitchd)
  else
    (cd "$ROOT" && cargo build -q -p plexus-vswitch --bin plexus-vswitchd)
  fi
  VSWITCHD_BIN=$TGT/$PROFILE/plexus-vswitchd
fi
[[ -x $VSWITCHD_BIN ]] || { echo "no $VSWITCHD_BIN" >&2; exit 1; }
# The daemon takes the rig's env contract itself (--from-env); ports in
# TARGET_NETNS (if any) are opened inside it while the controller
# connection stays in the caller's netns.
# The tester's meter/group cases measure packet-in rates, and the reference OVS
# has no packet-in limit configured: run without plexus-vswitchd's default
# per-port limit (1000/s) unless PACKET_IN_RATE says otherwise.
export TARGET="exec $VSWITCHD_BIN --from-env --packet-in-rate ${PACKET_IN_RATE:-0} ${VSWITCHD_ARGS:-}"
exec "$PEERS/switch-tester.sh" "$@"
