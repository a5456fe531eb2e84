#!/usr/bin/env bash
# A load test with pollwatch on: builds examples/http_service.rs (release),
# starts it with POLLWATCH=1, drives it over loopback with wrk for a bounded
# time, stops it with SIGTERM (as docker, systemd or Kubernetes would) and
# prints the top blocking call sites and the flamegraph's path.
#
#   scripts/loadtest.sh                       # 10 s, 8 connections
#   LOADTEST_DURATION=30s LOADTEST_CONNECTIONS=32 scripts/loadtest.sh
#
# POLLWATCH_* variables pass through (POLLWATCH_DIR, POLLWATCH_THRESHOLD_MS).
# wrk is installed with apt-get when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${LOADTEST_DURATION:-10s}
connections=${LOADTEST_CONNECTIONS:-8}
out=${POLLWATCH_DIR:-$PWD/target/pollwatch}

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing wrk..." >&2
        apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else
        echo "wrk not found: install it (Debian/Ubuntu: apt-get install wrk)" >&2
        exit 1
    fi
fi

echo "building the example service (release)..." >&2
cargo build --release --quiet --features tower --example http_service
bin=target/release/examples/http_service

logs=$(mktemp -d)
POLLWATCH=1 POLLWATCH_DIR="$out" "$bin" 127.0.0.1:0 >"$logs/stdout" 2>"$logs/stderr" &
pid=$!
trap 'kill -KILL "$pid" 2>/dev/null || true' EXIT

url=""
for _ in $(seq 300); do
    url=$(sed -n 's/^listening on //p' "$logs/stdout")
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$logs/stderr" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { echo "the service did not start listening" >&2; exit 1; }

echo "service pid $pid at $url; wrk for $duration with $connections connections" >&2
wrk -t2 -c"$connections" -d"$duration" --latency -s scripts/loadtest.lua "$url"

kill -TERM "$pid"
# Bounded: a service that does not exit after SIGTERM fails the run.
for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    echo "the service did not exit within 60 s of SIGTERM" >&2
    exit 1
fi
status=0
wait "$pid" || status=$?
trap - EXIT
if [ "$status" != 0 ]; then
    echo "the service exited with status $status after SIGTERM" >&2
    cat "$logs/stderr" >&2
    exit 1
fi

dir="$out/http_service-$pid"
echo
sed -n '1,/^longest episodes:/p' "$dir/summary.txt" | sed '$d'
echo "flamegraph: $dir/flamegraph.svg"
echo "service log: $logs/stderr"
