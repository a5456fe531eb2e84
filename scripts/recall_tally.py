#!/usr/bin/env python3
"""Tallies one run of the blocking suite from the episodes.jsonl its tests
wrote (scripts/recall.sh runs it after each run).

usage: recall_tally.py TESTS_DIR UNSTABLE(0|1) LOG.jsonl

Every test's blocking polls are listed below from its source. A poll is
reported when an episode of its test's directory has the function in a
stack; an episode no listed poll accounts for is a false positive. Appends
one JSON line to LOG and prints a one-line tally.
"""
import json, os, sys

root, unstable, log = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
# Test output dir -> blocking polls it runs: (a function in the stack, how many).
blocking = {
    # tokio_blocking
    "sleep": [("blocking_sleep", 1)], "cpu": [("cpu_spin", 1)],
    "fs": [("sync_file_reads", 1)], "mutex": [("wait_for_shared_lock", 1)],
    "weights": [("cpu_spin", 1)],
    # blocking_kinds
    "socket": [("read_socket_synchronously", 1)], "channel": [("wait_on_std_channel", 1)],
    "park": [("park_until_unparked", 1)], "child": [("wait_for_child_process", 1)],
    # under_load
    "raw_nanosleep": [("raw_nanosleep", 1)], "raw_poll": [("raw_poll", 1)],
    "raw_epoll": [("raw_epoll_wait", 1)], "kernel_reads": [("long_kernel_reads", 1)],
    "first_poll": [("first_poll_spin", 10)],
    "saturated": [("cpu_spin", 6), ("long_kernel_reads", 4)],
    # executors
    **{d: [("blocking_sleep", 1), ("cpu_spin", 1)]
       for d in ("async_std", "smol", "thread_pool", "local_pool", "block_on_root")},
    "nested_block_on": [("nested_inner_future", 1)],
    "several": [("blocking_sleep", 2), ("cpu_spin", 1)],
    # tokio_modes
    # unwatched on stable tokio too since sampled mode: `instrument` samples it
    "unwrapped": [("blocking_sleep", 1)],
    "wrapped": [("blocking_sleep", 1)],
    "current_thread": [("blocking_sleep", 1), ("cpu_spin", 1)],
    "tokio_main": [("blocking_sleep", 1), ("cpu_spin", 1)],
    "local_set": [("blocking_sleep", 1)], "nested": [("blocking_sleep", 1)],
    # healthy workloads: no_false_positives, executors
    **{d: [] for d in ("healthy", "spawn_blocking", "block_in_place", "plain_threads",
                       "healthy_all")},
}
run = fp = 0
missed, extra = [], []
for d, want in blocking.items():
    eps = []
    for sub in sorted(os.listdir(os.path.join(root, d))) if os.path.isdir(os.path.join(root, d)) else []:
        p = os.path.join(root, d, sub, "episodes.jsonl")
        if os.path.exists(p):
            eps += [json.loads(l) for l in open(p) if l.strip()]
    names = [{f["function"] or "" for s in e["stacks"] for f in s["frames"]} for e in eps]
    claimed = [False] * len(eps)
    for fn, n in want:
        run += n
        got = 0
        for i, ns in enumerate(names):
            if got < n and not claimed[i] and any(fn in x for x in ns):
                claimed[i] = True
                got += 1
        if got < n:
            missed.append(f"{d}: {n - got} of {n} {fn}")
    for i, e in enumerate(eps):
        if not claimed[i]:
            fp += 1
            top = (e.get("top_user_frame") or {}).get("function")
            extra.append(f"{d}: episode in {top} ({e['duration_ms']:.0f} ms)")
reported = run - sum(int(m.split(": ")[1].split(" of ")[0]) for m in missed)
with open(log, "a") as f:
    f.write(json.dumps({"run": run, "reported": reported, "fp": fp,
                        "missed": missed, "extra": extra}) + "\n")
print(f"{reported}/{run} reported, {fp} false positives"
      + "".join(f"\n    missed {m}" for m in missed)
      + "".join(f"\n    extra  {x}" for x in extra))
