#!/usr/bin/env bash
# bench-stateful.sh — the stateful pipeline of issue 6 (conntrack zone per VPC,
# security-group allow rules with ct commit, VXLAN encapsulation towards a peer)
# as a custom DUT of ../shared/bench/dataplane.sh, for plexus-vswitchd and for
# Open vSwitch AF_XDP with the very same OpenFlow rules (see BENCHMARKS.md).
#
#   DUT_CMD='exec scripts/bench-stateful.sh plexus /path/to/plexus-vswitchd {in} {out}'
#   DUT_CMD='exec scripts/bench-stateful.sh ovs - {in} {out}'
#   DUT_SETUP='scripts/bench-stateful.sh setup'
#
# (plexus-appctl is taken from BIN's directory: build both binaries.)
#
# The referee's OVS reference (`ovs-afxdp`) only forwards port to port, so the
# stateful OVS runs as the custom DUT of a second run; each run carries its own
# `ovs-afxdp` reference, and the stateful switches are compared through their
# ratios to it (BENCHMARKS.md explains).
#
# Layout in the dut netns: {in} (d0, towards the generator) is OpenFlow port 1,
# a VM port of VPC 1 (conntrack zone 1); {out} (d1) is the underlay and holds
# the tunnel endpoint LOCAL_IP (198.18.0.3/24); port 10 is a VXLAN port,
# remote_ip=PEER_IP (198.18.0.2, the sink, which plays the peer chassis),
# key=flow. The peer's MAC is set statically to the referee's
# STREAM_DST_MAC (02:00:00:00:00:03), so the sink drops the encapsulated
# frames early, as it does for the plain UDP stream. Only the packet rate
# means something here (run with --tcp-secs 0 --pings 0): the sink does not
# decapsulate.
#
# Flows (identical on both switches; SG_RULES filler allow rules, default 20):
#   table 0:  in_port=1,ip            -> ct(zone=1,table=10)        VPC 1 = zone 1
#             in_port=10,tun_id=1001,ip -> ct(zone=1,table=30)      decap, same VPC
#   table 10: +est+trk                -> goto 20                     established
#             +new+trk,udp to SNK:9   -> ct(commit,zone=1), goto 20  the SG allow rule hit
#             +new+trk,tcp to 10.1.0.0/16:P (P=1..SG_RULES) -> ct(commit,zone=1), goto 20
#             +inv+trk -> drop; anything else -> drop
#   table 20: ip -> set_field:1001->tun_id, output:10                encap towards the peer
#   table 30: +est+trk -> output:1, +rel+trk -> output:1, else drop  return path
# With `-f 10000` the generator's 10 000 UDP source ports are 10 000 concurrent
# connections in zone 1 (committed, then established).
set -euo pipefail

PEER_IP=${PEER_IP:-198.18.0.2}
LOCAL_IP=${LOCAL_IP:-198.18.0.3}
PEER_MAC=${PEER_MAC:-02:00:00:00:00:03}
VNI=${VNI:-1001}
OF_PORT=${OF_PORT:-6653}

underlay() { # dev — the tunnel endpoint address and the static peer neighbour
  ip addr replace "$LOCAL_IP/24" dev "$1"
  ip neigh replace "$PEER_IP" lladdr "$PEER_MAC" dev "$1" nud permanent
}

state_dir() { echo "/tmp/plx-bench-ovs-${1:?netns}"; }

# Removes the state of earlier samples whose namespace is gone (the referee
# SIGKILLs the DUT's process group, so nothing cleans up after itself).
sweep() {
  local f ns
  for f in /tmp/plx-bench-ovs-*; do
    [[ -e $f ]] || continue
    ns=${f#/tmp/plx-bench-ovs-}; ns=${ns%.*}
    [[ -e /run/netns/$ns ]] || rm -rf "$f"
  done
}

flows() { # file
  local dst=${SNK_IP:-$PEER_IP} dport=${DPORT:-9} p
  {
    echo "table=0,priority=100,in_port=1,ip,actions=ct(zone=1,table=10)"
    echo "table=0,priority=100,in_port=10,tun_id=$VNI,ip,actions=ct(zone=1,table=30)"
    echo "table=0,priority=0,actions=drop"
    echo "table=10,priority=300,ct_state=+est+trk,ip,actions=goto_table:20"
    echo "table=10,priority=200,ct_state=+new+trk,udp,nw_dst=$dst,tp_dst=$dport,actions=ct(commit,zone=1),goto_table:20"
    for ((p = 1; p <= ${SG_RULES:-20}; p++)); do
      echo "table=10,priority=200,ct_state=+new+trk,tcp,nw_dst=10.1.0.0/16,tp_dst=$p,actions=ct(commit,zone=1),goto_table:20"
    done
    echo "table=10,priority=100,ct_state=+inv+trk,actions=drop"
    echo "table=10,priority=0,actions=drop"
    echo "table=20,priority=100,ip,actions=set_field:$VNI->tun_id,output:10"
    echo "table=30,priority=100,ct_state=+est+trk,ip,actions=output:1"
    echo "table=30,priority=100,ct_state=+rel+trk,ip,actions=output:1"
    echo "table=30,priority=0,actions=drop"
  } >"$1"
}

case ${1:-} in
plexus) # DUT_CMD: plexus BIN IN OUT
  bin=$2 in=$3 out=$4
  sweep
  rm -rf "$(state_dir "$(ip netns identify $$)")"  # setup tells the DUTs apart by it
  echo "$(dirname "$bin")/plexus-appctl" >"$(state_dir "$(ip netns identify $$)").appctl"
  echo plexus >"$(state_dir "$(ip netns identify $$)").kind"
  underlay "$out"
  exec "$bin" --port "$in=1" \
    --vxlan "vx=10:remote_ip=$PEER_IP,key=flow,local_ip=$LOCAL_IP,underlay=$out" \
    --listen "ptcp:$OF_PORT:127.0.0.1" --ctl "$(state_dir "$(ip netns identify $$)").ctl"
  ;;
ovs) # DUT_CMD: ovs - IN OUT (ovsdb-server in the background, ovs-vswitchd in the foreground)
  in=$3 out=$4
  sweep
  ns=$(ip netns identify $$)
  d=$(state_dir "$ns")
  rm -rf "$d"; mkdir -p "$d"
  echo ovs >"$d.kind"
  export OVS_RUNDIR=$d OVS_DBDIR=$d OVS_LOGDIR=$d
  ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" --unixctl="$d/ovsdb-server.ctl" \
    --pidfile="$d/ovsdb-server.pid" --log-file="$d/ovsdb-server.log" -vconsole:off &
  for _ in $(seq 100); do [[ -S $d/db.sock ]] && break; sleep 0.05; done
  ovs-vsctl --db="unix:$d/db.sock" --no-wait init
  echo "$in $out" >"$d/ports"
  exec ovs-vswitchd "unix:$d/db.sock" --pidfile="$d/ovs-vswitchd.pid" \
    --unixctl="$d/ovs-vswitchd.ctl" --log-file="$d/ovs-vswitchd.log" -vconsole:warn
  ;;
setup) # DUT_SETUP (env from the referee: DUT_NS DUT_IN DUT_OUT SNK_IP DPORT BENCH_WORKDIR)
  f=${BENCH_WORKDIR:-/tmp}/stateful-flows-$$.txt
  flows "$f"
  d=$(state_dir "$DUT_NS")
  for _ in $(seq 100); do [[ -s $d.kind ]] && break; sleep 0.1; done
  if [[ $(cat "$d.kind") == ovs ]]; then
    for _ in $(seq 100); do [[ -S $d/db.sock ]] && break; sleep 0.1; done
    vs() { OVS_RUNDIR=$d ovs-vsctl --db="unix:$d/db.sock" --timeout=30 "$@"; }
    for _ in $(seq 100); do [[ -S $d/ovs-vswitchd.ctl ]] && break; sleep 0.1; done
    afxdp=(type=afxdp-nonpmd options:xdp-mode=native options:n_rxq=1)
    vs add-br br0 -- set bridge br0 datapath_type=netdev fail_mode=secure \
      other-config:disable-in-band=true
    vs add-port br0 "$DUT_IN" -- set interface "$DUT_IN" ofport_request=1 "${afxdp[@]}"
    vs add-port br0 vx -- set interface vx type=vxlan ofport_request=10 \
      options:remote_ip="$PEER_IP" options:key=flow options:local_ip="$LOCAL_IP"
    vs add-br br-phy -- set bridge br-phy datapath_type=netdev fail_mode=secure \
      other-config:disable-in-band=true
    vs add-port br-phy "$DUT_OUT" -- set interface "$DUT_OUT" ofport_request=1 "${afxdp[@]}"
    ip addr replace "$LOCAL_IP/24" dev br-phy
    ip link set br-phy up
    for p in "$DUT_IN" "$DUT_OUT" vx; do
      for _ in $(seq 100); do
        [[ $(vs get interface "$p" ofport) =~ ^[0-9]+$ && $(vs get interface "$p" ofport) != -1 ]] && break
        sleep 0.1
      done
      echo "ovs: $p ofport $(vs get interface "$p" ofport) $(vs get interface "$p" error 2>/dev/null || true)"
    done
    of() { OVS_RUNDIR=$d ovs-ofctl -O OpenFlow13 "$@"; }
    # Underlay bridge: encapsulated frames leave through the AF_XDP port.
    of add-flow br-phy "priority=100,in_port=LOCAL,actions=output:1"
    of add-flow br-phy "priority=100,in_port=1,actions=LOCAL"
    OVS_RUNDIR=$d ovs-appctl -t "$d/ovs-vswitchd.ctl" tnl/arp/set br-phy "$PEER_IP" "$PEER_MAC"
    of --bundle add-flows br0 "$f"
    echo "ovs: $(of dump-aggregate br0 | grep -o 'flow_count=[0-9]*'), XDP: $(ip link show "$DUT_IN" | grep -oE 'xdp[a-z]*' | head -1)/$(ip link show "$DUT_OUT" | grep -oE 'xdp[a-z]*' | head -1)"
  else
    tgt=tcp:127.0.0.1:$OF_PORT
    for _ in $(seq 100); do
      ovs-ofctl -O OpenFlow13 show "$tgt" >/dev/null 2>&1 && break
      sleep 0.1
    done
    ovs-ofctl -O OpenFlow13 --bundle add-flows "$tgt" "$f"
    echo "plexus: $(ovs-ofctl -O OpenFlow13 dump-aggregate "$tgt" | grep -o 'flow_count=[0-9]*')"
  fi
  rm -f "$f"
  # Evidence for the log: connections in conntrack and encapsulated frames
  # after CT_REPORT seconds of traffic (bounded background job; 0 = off).
  if (( ${CT_REPORT:-4} > 0 )); then
    (
      sleep "${CT_REPORT:-4}"
      if [[ $(cat "$d.kind") == ovs ]]; then
        echo "ovs after ${CT_REPORT:-4}s: conntrack entries $(OVS_RUNDIR=$d ovs-appctl -t "$d/ovs-vswitchd.ctl" dpctl/dump-conntrack | grep -c 'zone=1'), vx tx $(OVS_RUNDIR=$d ovs-vsctl --db="unix:$d/db.sock" get interface vx statistics:tx_packets)"
      else
        a=$(cat "$d.appctl")
        echo "plexus after ${CT_REPORT:-4}s: $("$a" -t "$d.ctl" dpctl/ct-get-nconns 2>&1 | tr -d '\n') connections; $("$a" -t "$d.ctl" show 2>&1 | grep -A2 '(vx)' | tr -s ' \n' ' ')"
      fi
    ) </dev/null &
  fi
  ;;
*)
  echo "usage: $0 plexus BIN IN OUT | ovs - IN OUT | setup" >&2
  exit 2
  ;;
esac
