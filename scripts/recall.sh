#!/usr/bin/env bash
# Recall and false positives of the blocking suite, over N runs (default 20):
#
#   scripts/recall.sh                  # 20 runs, as the machine is
#   RECALL_SATURATE=2 scripts/recall.sh 20   # 2 busy processes per core
#
# Runs the detection test binaries (tokio_blocking, blocking_kinds,
# under_load, no_false_positives, executors, tokio_modes) N times, built
# once, and reads the episodes.jsonl each test wrote. Every test's blocking
# polls are listed below from its source: recall = blocking polls reported /
# blocking polls run; a false positive is an episode no listed poll accounts
# for (all episodes of the healthy workloads, and any extra one elsewhere).
# A test that fails or writes no artifacts counts its polls as missed.
# RUSTFLAGS and CARGO_TARGET_DIR pass through: with `--cfg tokio_unstable`
# the unwrapped task of tokio_modes is watched, so it counts as well.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-20}
bins=(tokio_blocking blocking_kinds under_load no_false_positives executors tokio_modes)
target=${CARGO_TARGET_DIR:-target}
unstable=0
case "${RUSTFLAGS:-}" in *tokio_unstable*) unstable=1 ;; esac
tests_dir="$target/tmp/pollwatch-tests"
out=$(mktemp -d "${TMPDIR:-/tmp}/pollwatch-recall.XXXXXX")

args=()
for b in "${bins[@]}"; do args+=(--test "$b"); done
echo "building the test binaries..." >&2
cargo test --all-features --quiet --no-run "${args[@]}" 2>/dev/null

if [ "${RECALL_SATURATE:-0}" -gt 0 ]; then
    . scripts/busy.sh
    busy_start "$RECALL_SATURATE"
fi

log="$out/runs.jsonl"
for i in $(seq 1 "$runs"); do
    rm -rf "$tests_dir"
    status=pass
    cargo test --all-features --quiet --no-fail-fast "${args[@]}" >"$out/run-$i.txt" 2>&1 || status=FAIL
    echo "run $i: tests $status; $(python3 scripts/recall_tally.py "$tests_dir" "$unstable" "$log")"
done

python3 - "$log" <<'EOF'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
run = sum(r["run"] for r in rs); rep = sum(r["reported"] for r in rs)
fp = sum(r["fp"] for r in rs)
print(f"over {len(rs)} runs: recall {rep}/{run} = {100 * rep / run:.1f}%, "
      f"false positives {fp} ({fp / len(rs):.2f} per run)")
EOF
echo "test output and per-run tallies in $out"
