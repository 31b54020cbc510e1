#!/usr/bin/env bash
# bench-tap-attach.sh [N] — latency of `plexus port attach --tap` and `plexus port detach`
# (wall time of the CLI process: REST port read + bind, tap create + up, one OVSDB
# transaction; detach: OVSDB unplug, tap delete, unbind) on the chassis of
# topologies/vm-and-pods.toml (plexus-vswitchd in OVSDB mode). Needs root, the debug or
# release binaries (BIN_DIR, default target/debug), jq and curl. Prints p50/p99 in ms, with
# the cost of starting the CLI in the chassis namespace (`plexus --help`) as a baseline.
set -euo pipefail
N=${1:-50}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}
TOPO="$BIN_DIR/plexus-topo"
FILE=topologies/vm-and-pods.toml
DIR=/tmp/plexus-topo-vmpod
NS=plx-vmpod-c1

cleanup() { "$TOPO" down "$FILE" >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$TOPO" up "$FILE" >/dev/null 2>&1

API="http://127.0.0.1:$(jq -r .api_port "$DIR/state.json")"
TOKEN=$(jq -r .token "$DIR/state.json")
CHASSIS=$(jq -r '.chassis[0].id' "$DIR/state.json")
SUBNET=$(curl -sf -H "Authorization: Bearer $TOKEN" "$API/v1/subnets" | jq -r '.items[] | select(.name=="vms") | .id')
plexus() { ip netns exec "$NS" "$BIN_DIR/plexus" --url "$API" --token "$TOKEN" "$@"; }
now() { date +%s%N; }

att=() det=() base=()
for i in $(seq 1 "$N"); do
  # Baseline: starting the CLI in the chassis netns and nothing else.
  t0=$(now)
  plexus --help >/dev/null
  base+=($(( ($(now) - t0) / 1000 )))
  PORT=$(curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"subnet_id\":\"$SUBNET\",\"name\":\"bench$i\"}" "$API/v1/ports" | jq -r .id)
  t0=$(now)
  plexus port attach --tap "bt$i" --chassis "$CHASSIS" --bridge br0 \
    --ovsdb "unix:$DIR/ovsdb-c1.sock" "$PORT" >/dev/null
  t1=$(now)
  plexus port detach --ovsdb "unix:$DIR/ovsdb-c1.sock" "$PORT" >/dev/null
  t2=$(now)
  att+=($(( (t1 - t0) / 1000 ))) det+=($(( (t2 - t1) / 1000 )))
  curl -sf -X DELETE -H "Authorization: Bearer $TOKEN" "$API/v1/ports/$PORT" >/dev/null
done

pct() { # pct P values... (µs) -> ms
  local p=$1; shift
  printf '%s\n' "$@" | sort -n | awk -v p="$p" '{a[NR]=$1} END {i=int((NR*p+99)/100); if(i<1)i=1; printf "%.1f", a[i]/1000}'
}
echo "baseline (ip netns exec + plexus --help): n=$N p50=$(pct 50 "${base[@]}") ms p99=$(pct 99 "${base[@]}") ms"
echo "tap attach: n=$N p50=$(pct 50 "${att[@]}") ms p99=$(pct 99 "${att[@]}") ms"
echo "tap detach: n=$N p50=$(pct 50 "${det[@]}") ms p99=$(pct 99 "${det[@]}") ms"
