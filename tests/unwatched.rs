//! A tokio runtime watched only through `watch` (no `attach`, no
//! instrumented builder) has polls pollwatch cannot see: the report says
//! how long its workers were busy outside watched futures, so "0 episodes"
//! from a program that wrapped only its `block_on` root never reads like
//! a healthy run. Runtimes watched by sampling or hooks have nothing
//! outside.

mod support;

use std::time::Duration;

use support::*;

/// How long each unwatched task blocks.
const HOLD: Duration = Duration::from_millis(150);

/// How far the watched time, estimated from the watchdog's looks, may be
/// off: a look every idle tick (half a threshold) at the latest, each
/// counting the span since the one before, so an idle tick's worth at
/// each end of every watched poll.
fn look_error(polls: u32) -> Duration {
    THRESHOLD * polls
}

fn plain_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_runtime_watched_only_at_its_root_says_how_long_its_workers_were_busy_outside() {
    let _s = serial();
    let guard = config("unwatched_root_only").start().unwrap();
    let rt = plain_runtime(2);
    // The mini-redis shape: only the root is wrapped, the blocking is in
    // spawned tasks.
    rt.block_on(pollwatch::watch(async {
        let a = tokio::spawn(async { blocking_sleep(HOLD) });
        let b = tokio::spawn(async { blocking_sleep(HOLD) });
        a.await.unwrap();
        b.await.unwrap();
    }));
    drop(rt);
    let report = guard.finish().unwrap();
    assert_eq!(report.total_episodes(), 0, "{report}");
    // tokio's own busy time of the workers: the two sleeps at least, and
    // no watched poll ever ran on a worker.
    let outside = report.counters().busy_outside_watched;
    assert!(outside >= 2 * HOLD, "{outside:?}\n{report}");
    let summary = artifact(&report, "summary.txt");
    assert!(
        summary.contains("outside watched futures")
            && summary.contains("pollwatch::tokio::attach()"),
        "{summary}"
    );
    // Said once, with the fix: the busy line stands for "no poll was
    // watched" (on a worker), which the root's short polls may leave unseen.
    assert!(!summary.contains("no poll was watched"), "{summary}");
}

#[test]
fn a_current_thread_runtime_counts_its_one_worker_outside_the_root() {
    let _s = serial();
    let guard = config("unwatched_current_thread").start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The root's thread is the runtime's worker: its watched polls are
    // short, the spawned task's unwatched one is not.
    rt.block_on(pollwatch::watch(async {
        tokio::spawn(async { blocking_sleep(HOLD) }).await.unwrap();
    }));
    drop(rt);
    let report = guard.finish().unwrap();
    assert_eq!(report.total_episodes(), 0, "{report}");
    let outside = report.counters().busy_outside_watched;
    assert!(outside >= HOLD - look_error(2), "{outside:?}\n{report}");
    assert!(artifact(&report, "summary.txt").contains("outside watched futures"));
}

#[test]
fn every_task_wrapped_leaves_little_busy_time_outside() {
    let _s = serial();
    let guard = config("unwatched_all_wrapped").start().unwrap();
    let rt = plain_runtime(2);
    rt.block_on(pollwatch::watch(async {
        let a = tokio::spawn(pollwatch::watch(async { blocking_sleep(HOLD) }));
        let b = tokio::spawn(pollwatch::watch(async { blocking_sleep(HOLD) }));
        a.await.unwrap();
        b.await.unwrap();
    }));
    drop(rt);
    let report = guard.finish().unwrap();
    assert_eq!(report.total_episodes(), 2, "{report}");
    // 300 ms of busy workers, all of it in watched polls: what is left is
    // the scheduler's own time and the looks' error.
    let outside = report.counters().busy_outside_watched;
    assert!(outside <= look_error(2) * 2, "{outside:?}\n{report}");
}

#[test]
fn runtimes_watched_by_sampling_or_hooks_have_nothing_outside() {
    let _s = serial();
    for attach in [false, true] {
        let test = format!("unwatched_covered_{attach}");
        let guard = config(&test).start().unwrap();
        let rt = if attach {
            plain_runtime(2)
        } else {
            support::tokio_runtime(2)
        };
        // The root wrapped too: its thread is seen through `watch` first.
        rt.block_on(pollwatch::watch(async move {
            if attach {
                pollwatch::tokio::attach().unwrap();
            }
            tokio::spawn(async { blocking_sleep(HOLD) }).await.unwrap();
        }));
        drop(rt);
        let report = guard.finish().unwrap();
        assert_eq!(report.total_episodes(), 1, "attach {attach}: {report}");
        assert_eq!(
            report.counters().busy_outside_watched,
            Duration::ZERO,
            "attach {attach}: {report}"
        );
        assert!(!artifact(&report, "summary.txt").contains("outside watched futures"));
    }
}
