#!/usr/bin/env bash
# install-deps.sh — install the Debian packages Plexus's tests and demo need.
# Idempotent: runs `apt-get update` + `apt-get install` only when a package is
# missing. Needs root (or sudo). Shared by scripts/setup.sh and .ci/run.
set -euo pipefail

PACKAGES=(
  openvswitch-switch openvswitch-common   # reference switch, ovs-ofctl oracle
  tshark                                  # OpenFlow dissector oracle
  socat jq ethtool iproute2 iputils-ping iperf3
  procps                                  # sysctl (IPv6 off in the differential tests' namespaces)
  busybox iputils-arping                  # DHCP client (udhcpc) and arping for the VM/DHCP topologies
  python3-venv
  containernetworking-plugins             # reference CNI plugins (bridge + host-local) for plexus-cni tests
  etcd-server                             # etcd store backend + leader election (HA tests, ha-controller.toml)
  protobuf-compiler libprotobuf-dev       # protoc + well-known .protos: the etcd-client crate's build script
)

missing=()
for p in "${PACKAGES[@]}"; do
  if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer once, non-interactively.
echo "wireshark-common wireshark-common/install-setuid boolean false" | "${SUDO[@]}" debconf-set-selections 2>/dev/null || true
"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: done"
