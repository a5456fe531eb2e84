//! Executors pollwatch has no hooks into, nothing wrapped: each executor
//! thread calls `pollwatch::watch_thread()` once, and its polls are found
//! by sampling its stack (smol's `Executor` on threads of the program's
//! own, a `futures::executor::LocalPool`). Each kind of blocking is one
//! episode naming the function; healthy work is none.

mod support;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

const HOLD: Duration = Duration::from_millis(150);

/// Runs `main` against a smol `Executor` whose `threads` threads each call
/// `watch_thread` first; the calling thread only waits for `main`.
fn smol_run<T: Send>(
    test: &str,
    threads: usize,
    main: impl for<'e> FnOnce(
        &'e smol::Executor<'static>,
    ) -> std::pin::Pin<Box<dyn Future<Output = T> + 'e>>,
) -> (pollwatch::Report, T) {
    let guard = config(test).start().unwrap();
    let ex: smol::Executor<'static> = smol::Executor::new();
    let (stop, stopped) = smol::channel::unbounded::<()>();
    let out = std::thread::scope(|s| {
        for i in 0..threads {
            let (ex, stopped) = (&ex, stopped.clone());
            std::thread::Builder::new()
                .name(format!("smol-{i}"))
                .spawn_scoped(s, move || {
                    pollwatch::watch_thread();
                    let _ = smol::block_on(ex.run(stopped.recv()));
                })
                .unwrap();
        }
        let out = smol::block_on(main(&ex));
        drop(stop);
        out
    });
    (guard.finish().unwrap(), out)
}

/// One task that blocks in `block` after a first, short poll.
fn caught_on_smol(test: &str, function: &str, block: impl FnOnce() -> Duration + Send + 'static) {
    let (report, truth) = smol_run(test, 2, move |ex| {
        Box::pin(ex.spawn(async move {
            smol::future::yield_now().await;
            block()
        }))
    });
    let ep = episode_in(&report, function);
    assert_eq!(report.total_episodes(), 1, "{report}");
    assert_eq!(ep.mode(), pollwatch::EpisodeMode::Sampled, "{ep:?}");
    assert!(ep.future().is_some(), "{ep:?}");
    assert_close_sampled(ep, truth, function);
}

/// Each kind in turn, as a program meets them: the first CPU-bound poll of
/// a process is found only once a signal sample of it has been symbolized
/// (README, "What sampled mode cannot see"), so the blocked kinds come first.
#[test]
fn each_kind_of_blocking_on_smol_threads_is_one_episode() {
    let _s = serial();
    caught_on_smol("watch_thread_smol_sleep", "blocking_sleep", || {
        blocking_sleep(HOLD)
    });
    caught_on_smol(
        "watch_thread_smol_child",
        "wait_for_child_process",
        wait_for_child_process,
    );
    let m = Arc::new(Mutex::new(0u64));
    let held = m.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let _g = held.lock().unwrap();
        tx.send(()).unwrap();
        std::thread::sleep(HOLD);
    });
    rx.recv().unwrap();
    caught_on_smol(
        "watch_thread_smol_mutex",
        "wait_for_shared_lock",
        move || wait_for_shared_lock(&m),
    );
    holder.join().unwrap();
    caught_on_smol("watch_thread_smol_cpu", "cpu_spin", || cpu_spin(HOLD));
}

#[test]
fn healthy_work_on_smol_threads_is_no_episode() {
    let _s = serial();
    let (report, ()) = smol_run("watch_thread_smol_healthy", 2, |ex| {
        Box::pin(async move {
            let deadline = Instant::now() + Duration::from_millis(600);
            let mut tasks = Vec::new();
            // CPU work split into short polls, many tasks of one shape.
            for _ in 0..8 {
                tasks.push(ex.spawn(async move {
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        while t.elapsed() < Duration::from_millis(2) {
                            std::hint::spin_loop();
                        }
                        smol::future::yield_now().await;
                    }
                }));
            }
            // Timers and channels.
            let (tx, rx) = smol::channel::bounded::<u64>(8);
            tasks.push(ex.spawn(async move {
                while Instant::now() < deadline {
                    smol::Timer::after(Duration::from_millis(3)).await;
                    let _ = tx.send(1).await;
                }
            }));
            tasks.push(ex.spawn(async move { while rx.recv().await.is_ok() {} }));
            for t in tasks {
                t.await;
            }
        })
    });
    assert_eq!(report.total_episodes(), 0, "{report}");
    assert!(report.counters().polls_seen > 0, "{report}");
}

#[test]
fn a_sleep_in_a_futures_local_pool_is_one_episode() {
    let _s = serial();
    use futures::task::LocalSpawnExt;
    let guard = config("watch_thread_local_pool").start().unwrap();
    let truth = std::thread::spawn(|| {
        pollwatch::watch_thread();
        let mut pool = futures::executor::LocalPool::new();
        let out = Arc::new(Mutex::new(Duration::ZERO));
        let o = out.clone();
        pool.spawner()
            .spawn_local(async move {
                let mut first = true;
                std::future::poll_fn(|cx| {
                    if std::mem::take(&mut first) {
                        cx.waker().wake_by_ref();
                        std::task::Poll::Pending
                    } else {
                        std::task::Poll::Ready(())
                    }
                })
                .await;
                *o.lock().unwrap() = blocking_sleep(HOLD);
            })
            .unwrap();
        // A first short poll, then the one that blocks.
        pool.run_until_stalled();
        let d = *out.lock().unwrap();
        d
    })
    .join()
    .unwrap();
    let report = guard.finish().unwrap();
    let ep = episode_in(&report, "blocking_sleep");
    assert_eq!(report.total_episodes(), 1, "{report}");
    assert_eq!(ep.mode(), pollwatch::EpisodeMode::Sampled, "{ep:?}");
    assert_close(ep, truth, "blocking_sleep");
}

/// async-std starts its executor threads itself: `watch_all_threads` finds
/// them. Its task-locals wrapper is executor code; the stack starts at the
/// task's future.
#[test]
fn async_std_tasks_are_watched_after_watch_all_threads() {
    let _s = serial();
    let guard = config("watch_all_threads_async_std").start().unwrap();
    pollwatch::watch_all_threads();
    let (sleep, healthy) = async_std::task::block_on(async {
        // Healthy first, so the blocking task below is not the first thing
        // any thread runs: short polls, timers.
        let deadline = Instant::now() + Duration::from_millis(400);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            tasks.push(async_std::task::spawn(async move {
                let mut polls = 0u32;
                while Instant::now() < deadline {
                    async_std::task::sleep(Duration::from_millis(2)).await;
                    polls += 1;
                }
                polls
            }));
        }
        let mut healthy = 0;
        for t in tasks {
            healthy += t.await;
        }
        let sleep = async_std::task::spawn(async {
            async_std::task::yield_now().await;
            blocking_sleep(HOLD)
        })
        .await;
        (sleep, healthy)
    });
    let report = guard.finish().unwrap();
    assert!(healthy > 0);
    let ep = episode_in(&report, "blocking_sleep");
    assert_eq!(report.total_episodes(), 1, "{report}");
    assert_eq!(ep.mode(), pollwatch::EpisodeMode::Sampled, "{ep:?}");
    assert_close_sampled(ep, sleep, "blocking_sleep");
}
