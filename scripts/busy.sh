# Sourced by scripts that run something on a saturated machine: `busy_start
# PER_CORE` starts PER_CORE busy shell loops per core (what
# ../shared/tools/saturate does, so a fresh clone needs nothing else), and
# they are ended by their own PIDs when the script exits.
busy_pids=()
busy_stop() {
    for p in "${busy_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait "${busy_pids[@]}" 2>/dev/null || true
    busy_pids=()
}
busy_start() {
    trap busy_stop EXIT
    for _ in $(seq 1 $(( $(nproc) * $1 ))); do
        (while :; do :; done) &
        busy_pids+=($!)
    done
    echo "${#busy_pids[@]} busy processes on $(nproc) cores" >&2
}
