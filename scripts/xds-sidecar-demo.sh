#!/usr/bin/env bash
# Envoy as a sidecar in a pod netns, bootstrapped by `plexus xds bootstrap`, fed by
# `plexus-controller --xds-listen`; two backends in their own netns; an 80/20 split set
# through the REST API. Traffic reaches the sidecar by address: the service VIP lives on
# the pod's loopback and Envoy's listener binds VIP:port (no iptables needed).
# Usage (root): scripts/xds-sidecar-demo.sh [N_REQUESTS]   — cleans up on exit.
set -euo pipefail
N=${1:-200}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug}
ENVOY=${ENVOY:-${PEERS_VENV:-/var/tmp/plexus-peers-venv}/bin/envoy}
P=xdsdemo$$
T=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in pod be1 be2; do ip netns del "$P-$n" 2>/dev/null || true; done
  ip link del "${P}h" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
for n in pod be1 be2; do ip netns add "$P-$n"; ip -n "$P-$n" link set lo up; done
# host <-> pod (the controller's ADS is reached over this link)
ip link add "${P}h" type veth peer name eth0 netns "$P-pod"
ip addr add 10.77.0.1/30 dev "${P}h"; ip link set "${P}h" up
ip -n "$P-pod" addr add 10.77.0.2/30 dev eth0; ip -n "$P-pod" link set eth0 up
# pod <-> each backend
for i in 1 2; do
  ip -n "$P-pod" link add "be$i" type veth peer name eth0 netns "$P-be$i"
  ip -n "$P-pod" addr add "10.77.$i.1/30" dev "be$i"; ip -n "$P-pod" link set "be$i" up
  ip -n "$P-be$i" addr add "10.77.$i.2/30" dev eth0; ip -n "$P-be$i" link set eth0 up
  mkdir -p "$T/www$i"; echo "v$i" > "$T/www$i/index.html"
  ip netns exec "$P-be$i" python3 -m http.server 8080 --bind "10.77.$i.2" -d "$T/www$i" >/dev/null 2>&1 &
  PIDS+=($!)
done
# the service VIP is local to the pod: the sidecar's listener binds it
ip -n "$P-pod" addr add 10.96.0.10/32 dev lo
"$BIN/plexus-controller" --insecure-no-auth --db "$T/db.redb" --listen 127.0.0.1:18480 \
  --xds-listen 10.77.0.1:18000 >"$T/controller.log" 2>&1 &
PIDS+=($!)
export PLEXUS_URL=http://127.0.0.1:18480
for _ in $(seq 50); do curl -sf "$PLEXUS_URL/healthz" >/dev/null && break; sleep 0.1; done
"$BIN/plexus" xds bootstrap --node pod-a --xds 10.77.0.1:18000 --admin-port 15000 >"$T/envoy.json"
ip netns exec "$P-pod" "$ENVOY" -c "$T/envoy.json" --base-id $((RANDOM + 1000)) \
  --log-level warn >"$T/envoy.log" 2>&1 &
PIDS+=($!)
TEN=$("$BIN/plexus" -o json tenants create --data '{"name":"demo"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
VPC=$("$BIN/plexus" -o json vpcs create --data "{\"tenant_id\":\"$TEN\",\"name\":\"v\",\"cidrs\":[\"10.77.0.0/16\"]}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
"$BIN/plexus" -o json services create --data "{\"vpc_id\":\"$VPC\",\"name\":\"web\",\"vip\":\"10.96.0.10\",\"port\":80,
  \"backends\":[{\"ip\":\"10.77.1.2\",\"target_port\":8080,\"subset\":\"v1\"},{\"ip\":\"10.77.2.2\",\"target_port\":8080,\"subset\":\"v2\"}],
  \"traffic_policy\":{\"splits\":[{\"subset\":\"v1\",\"weight\":80},{\"subset\":\"v2\",\"weight\":20}],\"retries\":{\"num_retries\":2}}}" >/dev/null
for _ in $(seq 100); do
  ip netns exec "$P-pod" curl -sf -m 1 http://10.96.0.10/ >/dev/null 2>&1 && break; sleep 0.1
done
v1=0; v2=0
for _ in $(seq "$N"); do
  case $(ip netns exec "$P-pod" curl -s -m 2 http://10.96.0.10/) in v1) v1=$((v1+1));; v2) v2=$((v2+1));; esac
done
echo "requests=$N v1=$v1 v2=$v2 (want ~80/20)"
"$BIN/plexus" xds status | python3 -c 'import json,sys; s=json.load(sys.stdin); print("feed", s["feed"]); print({n: {t: (v["last_acked_version"], v.get("last_nack")) for t, v in st["types"].items()} for n, st in s["nodes"].items()})'
