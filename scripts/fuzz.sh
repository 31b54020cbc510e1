#!/usr/bin/env bash
# fuzz.sh — coverage-guided fuzzing of the cargo-fuzz targets on *stable* Rust.
#
# The targets (CRATE/fuzz/fuzz_targets/*.rs, libfuzzer-sys) are built with the
# same SanitizerCoverage flags cargo-fuzz passes with `-s none` (no ASan, which
# needs nightly), plus debug assertions and overflow checks, so libFuzzer gets
# edge/compare feedback. Rust's own bounds checks and the entry points'
# invariants turn bugs into panics, which libFuzzer reports as crashes.
#
#   scripts/fuzz.sh list                       # CRATE TARGET per line
#   scripts/fuzz.sh build CRATE                # build CRATE's targets
#   scripts/fuzz.sh run CRATE TARGET SECS      # fuzz for SECS seconds, then print one
#                                              # "fuzz-result:" line (execs, crashes)
#   scripts/fuzz.sh merge CRATE TARGET         # minimise the work corpus into the
#                                              # checked-in CRATE/fuzz/seeds/TARGET
#                                              # (at most $FUZZ_SEEDS_MAX, default 100)
#
# Seeds: CRATE/fuzz/seeds/TARGET/ (checked in, small; replayed by each crate's
# fuzz corpus test under `cargo test`). Work corpus: $FUZZ_WORK/CRATE-TARGET
# (default /tmp/plexus-fuzz). A crash input is written to
# CRATE/fuzz/artifacts/TARGET/ (ignored by git; turn it into a seed once fixed).
# Uses $CARGO_TARGET_DIR (builds go to its x86_64-unknown-linux-gnu/release).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
triple=x86_64-unknown-linux-gnu
tdir=${CARGO_TARGET_DIR:-$root/target}
work=${FUZZ_WORK:-/tmp/plexus-fuzz}

flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"

targets() {
  for d in */fuzz/fuzz_targets; do
    crate=${d%%/*}
    for f in "$d"/*.rs; do
      t=$(basename "$f" .rs)
      echo "$crate $t"
    done
  done
}

build() {
  local crate=$1
  (cd "$crate/fuzz" && RUSTFLAGS="$flags" cargo build --release --target "$triple" --bins)
}

run() {
  local crate=$1 t=$2 secs=$3
  local bin=$tdir/$triple/release/$t
  local seeds=$root/$crate/fuzz/seeds/$t
  local wdir=$work/$crate-$t
  local art=$root/$crate/fuzz/artifacts/$t
  mkdir -p "$wdir" "$seeds" "$art"
  local log=$work/$crate-$t.log
  local start rc
  [ -x "$bin" ] || { echo "$bin: not built (scripts/fuzz.sh build $crate)" >&2; return 2; }
  start=$(date +%s)
  set +e
  "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 \
    -max_len=4096 -artifact_prefix="$art/" "$wdir" "$seeds" >"$log" 2>&1
  rc=$?
  set -e
  local dur=$(($(date +%s) - start))
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  local crashes=0
  if [ "$rc" -ne 0 ]; then crashes=1; fi
  local cov
  cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
  echo "fuzz-result: $crate/$t secs=$dur execs=${execs:-?} cov=${cov:-?} corpus=$(ls "$wdir" | wc -l) exit=$rc crashes=$crashes log=$log"
  if [ "$rc" -ne 0 ]; then
    grep -E "panicked at|deadly signal|Test unit written" "$log" | head -5
  fi
  return "$rc"
}

merge() {
  local crate=$1 t=$2
  local bin=$tdir/$triple/release/$t
  local seeds=$root/$crate/fuzz/seeds/$t
  local wdir=$work/$crate-$t
  local tmp
  tmp=$(mktemp -d)
  # Minimal set of inputs covering what the seeds and the work corpus cover.
  "$bin" -merge=1 -max_len=4096 "$tmp" "$seeds" "$wdir" >/dev/null 2>&1
  rm -rf "$seeds"
  mkdir -p "$seeds"
  # Keep it small: at most $FUZZ_SEEDS_MAX (default 100) inputs, the
  # smallest first. Name by content so re-merges do not churn the files.
  ls -S -r "$tmp" | head -n "${FUZZ_SEEDS_MAX:-100}" | while read -r f; do
    cp "$tmp/$f" "$seeds/$(sha1sum "$tmp/$f" | cut -c1-16)"
  done
  rm -rf "$tmp"
  echo "$crate/$t: $(ls "$seeds" | wc -l) seeds, $(du -sk "$seeds" | cut -f1) KiB"
}

case ${1:-} in
  list) targets ;;
  build) build "${2:?crate}" ;;
  run) run "${2:?crate}" "${3:?target}" "${4:?seconds}" ;;
  merge) merge "${2:?crate}" "${3:?target}" ;;
  *) sed -n '2,22p' "$0"; exit 2 ;;
esac
