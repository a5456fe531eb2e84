//! The core behaviour on a multi-thread tokio runtime: each kind of blocking
//! is caught while it happens, with the blocking function in its stack, a
//! duration within tolerance, and the same call site in every artifact.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

fn check_artifacts(report: &pollwatch::Report, function: &str) {
    let folded = artifact(report, "stacks.folded");
    assert!(
        folded.contains(function),
        "stacks.folded lacks {function}:\n{folded}"
    );
    for line in folded.lines() {
        let (stack, weight) = line.rsplit_once(' ').expect("folded line has a weight");
        assert!(weight.parse::<u64>().is_ok(), "bad weight in {line}");
        assert!(!stack.is_empty());
        // The stack starts at the task's future: the worker loop, the task
        // harness and pollwatch's own wrapper are cut off.
        for internal in ["worker::run", "task::harness", "Watched"] {
            assert!(
                !stack.contains(internal),
                "executor frame {internal} left in {line}"
            );
        }
    }
    let svg = artifact(report, "flamegraph.svg");
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "not an SVG"
    );
    assert!(svg.contains(function), "flamegraph.svg lacks {function}");
    assert!(
        svg.contains("blocking episode"),
        "title states the episode count"
    );
    let summary = artifact(report, "summary.txt");
    assert!(
        summary.contains(function),
        "summary.txt lacks {function}:\n{summary}"
    );
    let jsonl = artifact(report, "episodes.jsonl");
    let ep = jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON"))
        .find(|v| {
            v["stack"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["function"].as_str().unwrap().contains(function))
        })
        .unwrap_or_else(|| panic!("episodes.jsonl has no episode in {function}:\n{jsonl}"));
    for key in [
        "thread",
        "tid",
        "task_id",
        "spawned_at",
        "start_unix_ms",
        "duration_ms",
        "samples",
        "stack",
        "top_user_frame",
        "on_cpu_ms",
        "off_cpu_ms",
    ] {
        assert!(ep.get(key).is_some(), "episodes.jsonl lacks {key}: {ep}");
    }
    let top = &ep["top_user_frame"];
    assert!(
        top["function"].as_str().unwrap().contains(function),
        "top_user_frame: {top}"
    );
    assert!(
        top["file"].as_str().unwrap().ends_with("support/mod.rs"),
        "{top}"
    );
    assert!(top["line"].as_u64().unwrap() > 0);
}

#[test]
fn thread_sleep_is_caught_off_cpu() {
    let _s = serial();
    let (report, truth) = caught("sleep", || blocking_sleep(Duration::from_millis(200)));
    let ep = episode_in(&report, "blocking_sleep");
    assert_close(ep, truth, "sleep episode");
    assert!(
        ep.blocked_in("std::thread"),
        "std's sleep is in the stack:\n{report}"
    );
    assert!(ep.off_cpu() > ep.on_cpu(), "a sleep is off-CPU: {ep:?}");
    assert!(ep.thread_name().contains("tokio"), "{}", ep.thread_name());
    assert!(
        ep.spawned_at().unwrap().contains("tokio_blocking.rs"),
        "{:?}",
        ep.spawned_at()
    );
    let folded = artifact(&report, "stacks.folded");
    assert!(
        folded.contains("[off-cpu: clock_nanosleep]") || folded.contains("[off-cpu: nanosleep]"),
        "{folded}"
    );
    check_artifacts(&report, "blocking_sleep");
}

#[test]
fn cpu_loop_is_caught_on_cpu() {
    let _s = serial();
    let (report, truth) = caught("cpu", || cpu_spin(Duration::from_millis(300)));
    let ep = episode_in(&report, "cpu_spin");
    assert_close(ep, truth, "cpu episode");
    assert!(
        ep.on_cpu() > Duration::ZERO,
        "a CPU loop runs on the CPU: {ep:?}"
    );
    assert!(artifact(&report, "stacks.folded").contains("[on-cpu]"));
    check_artifacts(&report, "cpu_spin");
}

#[test]
fn sync_file_io_is_caught() {
    let _s = serial();
    let path = std::env::temp_dir().join(format!("pollwatch-fs-{}", std::process::id()));
    std::fs::write(&path, vec![1u8; 256 * 1024]).unwrap();
    let p = path.clone();
    let (report, truth) = caught("fs", move || sync_file_reads(&p, THRESHOLD * 5));
    let _ = std::fs::remove_file(&path);
    let ep = episode_in(&report, "sync_file_reads");
    assert_close(ep, truth, "fs episode");
    assert!(ep.blocked_in("std::fs::read"), "{report}");
    check_artifacts(&report, "sync_file_reads");
}

#[test]
fn contended_std_mutex_is_caught_in_the_lock() {
    let _s = serial();
    let lock = Arc::new(Mutex::new(0u64));
    let held = lock.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    // The holder is a plain thread: not an executor, so never reported
    // itself. It lets go 200 ms after the waiter is about to lock, however
    // long a loaded machine took to get the waiter there.
    let holder = std::thread::spawn(move || {
        let _g = held.lock().unwrap();
        tx.send(()).unwrap();
        go_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    rx.recv().unwrap();
    let waiter = lock.clone();
    let (report, truth) = caught("mutex", move || {
        go_tx.send(()).unwrap();
        wait_for_shared_lock(&waiter)
    });
    holder.join().unwrap();
    assert!(
        truth > Duration::from_millis(100),
        "the lock was contended ({truth:?})"
    );
    let ep = episode_in(&report, "wait_for_shared_lock");
    assert_close(ep, truth, "mutex episode");
    assert!(ep.off_cpu() > ep.on_cpu(), "a lock wait is off-CPU: {ep:?}");
    let folded = artifact(&report, "stacks.folded");
    assert!(
        folded.contains("[off-cpu: futex]"),
        "lock waits show as futex:\n{folded}"
    );
    check_artifacts(&report, "wait_for_shared_lock");
}

#[test]
fn stack_weights_add_up_to_the_episode() {
    let _s = serial();
    // A long episode is sampled throughout, and every microsecond of it is
    // attributed to some stack: the flamegraph's widths are blocked time.
    let (report, truth) = caught("weights", || {
        blocking_sleep(Duration::from_millis(150)) + cpu_spin(Duration::from_millis(150))
    });
    let ep = episode_in(&report, "cpu_spin");
    assert!(
        ep.blocked_in("blocking_sleep"),
        "both halves were sampled:\n{report}"
    );
    assert!(ep.samples() >= 2, "{ep:?}");
    assert_close(ep, truth, "two-part episode");
    // Widths are the poll's own time: its duration less the time its
    // thread waited for a CPU (a loaded machine). The poll's first moments,
    // before the watchdog's first look at it, are in the duration only.
    let weights: Duration = ep.stacks().iter().map(|s| s.weight).sum();
    let own = ep.duration().saturating_sub(ep.runnable());
    assert!(
        own.abs_diff(weights) <= INTERVAL * 2 + ep.duration_uncertainty() * 2,
        "{weights:?} vs {own:?} ({:?} less {:?} waiting for a CPU)",
        ep.duration(),
        ep.runnable()
    );
    assert!(
        ep.on_cpu() > Duration::ZERO && ep.off_cpu() > Duration::ZERO,
        "{ep:?}"
    );
}
