//! What must never be reported: a healthy workload, even on a machine whose
//! cores are busy with other work; blocking on tokio's blocking pool; and
//! blocking inside `block_in_place`. A false positive costs more trust than a miss.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn healthy_workload_on_a_loaded_machine_has_no_episodes() {
    let _s = serial();
    let guard = config("healthy").start().unwrap();
    // Load every core with threads that are not executors: the workers now
    // compete for CPU and get descheduled in the middle of short polls.
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let rt = tokio_runtime(4);
    let polls = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut tasks = Vec::new();
        // Channel ping-pong pairs.
        for _ in 0..500 {
            let (atx, mut arx) = tokio::sync::mpsc::channel::<u64>(8);
            let (btx, mut brx) = tokio::sync::mpsc::channel::<u64>(8);
            tasks.push(tokio::spawn(pollwatch::watch(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    if atx.send(n).await.is_err() {
                        break;
                    }
                    match brx.recv().await {
                        Some(v) => n = v + 1,
                        None => break,
                    }
                }
                n
            })));
            tasks.push(tokio::spawn(pollwatch::watch(async move {
                let mut n = 0u64;
                while let Some(v) = arx.recv().await {
                    n += 1;
                    if btx.send(v).await.is_err() {
                        break;
                    }
                }
                n
            })));
        }
        // Timers and cooperative yields.
        for i in 0..1000u64 {
            tasks.push(tokio::spawn(pollwatch::watch(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    if i % 2 == 0 {
                        tokio::time::sleep(Duration::from_millis(1 + i % 5)).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                    n += 1;
                }
                n
            })));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    drop(rt);
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    let report = guard.finish().unwrap();
    assert!(polls > 10_000, "the workload ran ({polls} round trips)");
    assert!(report.episodes().is_empty(), "false positives:\n{report}");
    assert!(artifact(&report, "flamegraph.svg").contains("No blocking found"));
    assert_eq!(artifact(&report, "episodes.jsonl"), "");
}

#[test]
fn spawn_blocking_is_where_blocking_belongs() {
    let _s = serial();
    let guard = config("spawn_blocking").start().unwrap();
    let rt = tokio_runtime(2);
    rt.block_on(async {
        let a = tokio::task::spawn_blocking(|| blocking_sleep(Duration::from_millis(300)));
        let b = tokio::task::spawn_blocking(|| cpu_spin(Duration::from_millis(200)));
        tokio::spawn(pollwatch::watch(async move {
            a.await.unwrap();
            b.await.unwrap();
        }))
        .await
        .unwrap();
    });
    drop(rt);
    let report = guard.finish().unwrap();
    assert!(
        report.episodes().is_empty(),
        "blocking pool reported:\n{report}"
    );
}

#[test]
fn block_in_place_is_not_an_episode() {
    let _s = serial();
    let guard = config("block_in_place").start().unwrap();
    let rt = tokio_runtime(2);
    rt.block_on(async {
        tokio::spawn(pollwatch::watch(async {
            tokio::task::yield_now().await;
            tokio::task::block_in_place(|| blocking_sleep(Duration::from_millis(300)))
        }))
        .await
        .unwrap();
    });
    drop(rt);
    let report = guard.finish().unwrap();
    assert!(
        report.episodes().is_empty(),
        "block_in_place reported:\n{report}"
    );
    assert_eq!(report.counters().excused, 1, "{report}");
}

#[test]
fn plain_threads_are_never_watched() {
    let _s = serial();
    let guard = config("plain_threads").start().unwrap();
    // A user thread that blocks for a long time, outside any executor.
    std::thread::spawn(|| blocking_sleep(Duration::from_millis(300)))
        .join()
        .unwrap();
    let report = guard.finish().unwrap();
    assert!(report.episodes().is_empty(), "{report}");
}
