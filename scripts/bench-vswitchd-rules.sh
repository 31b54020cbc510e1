#!/usr/bin/env bash
# bench-vswitchd-rules.sh — DUT_SETUP hook for ../shared/bench/dataplane.sh with
# plexus-vswitchd in switch mode as the custom DUT (see BENCHMARKS.md):
#
#   DUT_CMD='exec target/release/plexus-vswitchd --port {in}=1 --port {out}=2 --listen ptcp:6653:127.0.0.1'
#   DUT_SETUP='scripts/bench-vswitchd-rules.sh'
#
# Installs, over the daemon's passive OpenFlow listener (OF_PORT, default
# 6653) in one OpenFlow 1.3 bundle, exactly the rules the referee gives its
# OVS DUTs: in_port=1→2 and 2→1 at priority 10, plus, with `--rules N`, N
# exact-match rules `priority=200,in_port=1,udp,nw_src,nw_dst,tp_src=P,
# tp_dst=9,actions=output:2` for P in SPORT_BASE..SPORT_BASE+N-1 (the
# referee's write_rules). Env from the referee: RULES SPORT_BASE DPORT SRC_IP
# SNK_IP BENCH_WORKDIR.
set -euo pipefail
PORT=${OF_PORT:-6653}
TGT=tcp:127.0.0.1:$PORT
f=${BENCH_WORKDIR:-/tmp}/plexus-rules-$$.txt
{
  echo "priority=10,in_port=1,actions=output:2"
  echo "priority=10,in_port=2,actions=output:1"
  for ((i = 0; i < ${RULES:-0}; i++)); do
    echo "priority=200,in_port=1,udp,nw_src=$SRC_IP,nw_dst=$SNK_IP,tp_src=$((SPORT_BASE + i)),tp_dst=$DPORT,actions=output:2"
  done
} >"$f"
for _ in $(seq 100); do
  ovs-ofctl -O OpenFlow13 show "$TGT" >/dev/null 2>&1 && break
  sleep 0.1
done
ovs-ofctl -O OpenFlow13 --bundle add-flows "$TGT" "$f"
echo "plexus-vswitchd: $(ovs-ofctl -O OpenFlow13 dump-aggregate "$TGT" | grep -o 'flow_count=[0-9]*')"
rm -f "$f"
