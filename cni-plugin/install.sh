#!/usr/bin/env bash
# install.sh — place plexus-cni into a CNI bin dir and (optionally) a conflist.
# Usage: cni-plugin/install.sh [BIN_DIR=/opt/cni/bin] [CONF_DIR]   (env BIN=path to the built binary)
#   BUILD=1 builds the plugin first, statically linked (recommended: the runtime
#   execs the plugin once per call). With the Rust target x86_64-unknown-linux-musl
#   (`rustup target add x86_64-unknown-linux-musl`) and musl-gcc (Debian: musl-tools,
#   for ring's C code) it builds against musl: no glibc start-up CPU probing, 1.5
#   instead of 2.0-2.2 ms of plugin CPU per concurrent ADD on the benchmark VM
#   (BENCHMARKS.md), and host names resolve from /etc/hosts + resolv.conf without
#   NSS. Without them it falls back to static glibc (0.76 ms of CPU per exec, the
#   dynamic build 1.15), whose NSS lookups load the node's own glibc modules: build
#   on the node's distribution (IP-literal controller URLs need none).
#   Busy nodes can also run `plexus-cni daemon --socket /run/plexus/cni.sock` (in the
#   host netns, e.g. as a service) and set "daemon_socket" in the conflist
#   (examples/10-plexus-daemon.conflist): the plugin then only forwards each call.
set -euo pipefail
BIN_DIR=${1:-/opt/cni/bin}; CONF_DIR=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
target_dir=${CARGO_TARGET_DIR:-$here/../target}
musl=x86_64-unknown-linux-musl
if [[ ${BUILD:-} == 1 ]]; then
  if rustup target list --installed 2>/dev/null | grep -qx "$musl" && command -v musl-gcc >/dev/null; then
    (cd "$here/.." && CC_x86_64_unknown_linux_musl=musl-gcc \
      cargo build --release -p plexus-cni --bin plexus-cni --target "$musl")
    BIN=${BIN:-$target_dir/$musl/release/plexus-cni}
  else
    echo "install: no $musl target or musl-gcc; building against static glibc" >&2
    (cd "$here/.." && cargo rustc --release -p plexus-cni --bin plexus-cni -- -C target-feature=+crt-static)
  fi
fi
BIN=${BIN:-$target_dir/release/plexus-cni}
[[ -x $BIN ]] || { echo "build first: BUILD=1 $0, or cargo build --release -p plexus-cni (or set BIN=)" >&2; exit 1; }
install -d "$BIN_DIR"
install -m 0755 "$BIN" "$BIN_DIR/plexus-cni.tmp" && mv -f "$BIN_DIR/plexus-cni.tmp" "$BIN_DIR/plexus-cni"
if [[ -n $CONF_DIR ]]; then
  install -d "$CONF_DIR"
  [[ -e $CONF_DIR/10-plexus.conflist ]] || install -m 0644 "$here/examples/10-plexus.conflist" "$CONF_DIR/"
fi
echo "installed $BIN_DIR/plexus-cni"
