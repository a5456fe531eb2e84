#!/usr/bin/env bash
# Builds and runs pollwatch's benchmarks (release profile), in the normal
# build and in a `--cfg tokio_unstable` build (for tokio's poll hooks), and
# prints one table: figure | pollwatch | bare/peer | ratio | target.
#
#   scripts/bench.sh            # full run, ~10 min on 2 cores
#   POLLWATCH_BENCH_SCALE=0.1 scripts/bench.sh   # quick look, smaller workloads
#
# Each bench binary prints its own details and `ROW|...` lines; the details
# go to target/bench-logs/, the rows into the table. Timings are noisy on a
# shared machine: compare ratios measured side by side within one run.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
logs=target/bench-logs
mkdir -p "$logs"
rows="$logs/rows.txt"
: >"$rows"

stable_flags="-C force-frame-pointers=yes"
unstable_flags="--cfg tokio_unstable -C force-frame-pointers=yes"

echo "building benches (normal and tokio_unstable builds)..." >&2
RUSTFLAGS="$stable_flags" cargo bench --no-run -q 2>"$logs/build.txt" || { cat "$logs/build.txt" >&2; exit 1; }
RUSTFLAGS="$unstable_flags" CARGO_TARGET_DIR=target/unstable cargo bench --no-run -q 2>>"$logs/build.txt" \
    || { cat "$logs/build.txt" >&2; exit 1; }

run() { # run <log name> <rustflags> <target dir> <bench> [args]
    local name=$1 flags=$2 dir=$3 bench=$4
    shift 4
    echo "running $name..." >&2
    RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir" cargo bench -q --bench "$bench" -- "$@" \
        >"$logs/$name.txt" 2>"$logs/$name.err" || { cat "$logs/$name.txt" "$logs/$name.err" >&2; exit 1; }
    grep -v '^ROW|' "$logs/$name.txt" >&2 || true
    grep '^ROW|' "$logs/$name.txt" >>"$rows" || true
}

run poll "$stable_flags" target poll
run throughput "$stable_flags" target throughput
run throughput-unstable "$unstable_flags" target/unstable throughput
run watchdog "$stable_flags" target watchdog
run report "$stable_flags" target report

echo
echo "machine: $(nproc) CPUs, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: ${POLLWATCH_BENCH_SCALE:+POLLWATCH_BENCH_SCALE=$POLLWATCH_BENCH_SCALE }scripts/bench.sh"
echo
echo "| figure | pollwatch | bare/peer | ratio | target |"
echo "|---|---|---|---|---|"
cut -d"|" -f2- "$rows" | sed "s/|/ | /g; s/^/| /; s/$/ |/"
