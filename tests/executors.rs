//! Every executor a Rust user is likely to run: async-std, smol,
//! `futures::executor` (ThreadPool and LocalPool), and nested executors. Each
//! gets a blocking sleep and a CPU loop in a named function (caught, in the
//! stack, duration within tolerance) and a healthy workload (no episode).

mod support;

use std::time::{Duration, Instant};

use futures::executor::{LocalPool, ThreadPool};
use futures::task::{LocalSpawnExt, SpawnExt};
use support::*;

/// Blocks once in a sleep and once in a CPU loop, each inside its own task,
/// then checks both episodes.
fn check_sleep_and_cpu(report: &pollwatch::Report, sleep: Duration, spin: Duration, file: &str) {
    let s = episode_in(report, "blocking_sleep");
    assert_close(s, sleep, "sleep episode");
    assert!(s.off_cpu() > s.on_cpu(), "{s:?}");
    assert!(s.spawned_at().unwrap().contains(file), "{s:?}");
    let c = episode_in(report, "cpu_spin");
    assert_close(c, spin, "cpu episode");
    assert!(c.on_cpu() > Duration::ZERO, "{c:?}");
}

const BLOCK: Duration = Duration::from_millis(120);

#[test]
fn async_std_tasks() {
    let _s = serial();
    let guard = config("async_std").start().unwrap();
    let (sleep, spin) = pollwatch::async_std::block_on(async {
        let a = pollwatch::async_std::spawn(async {
            async_std::task::yield_now().await;
            blocking_sleep(BLOCK)
        });
        let sleep = a.await;
        let b = pollwatch::async_std::spawn(async {
            async_std::task::yield_now().await;
            cpu_spin(BLOCK)
        });
        (sleep, b.await)
    });
    let report = guard.finish().unwrap();
    check_sleep_and_cpu(&report, sleep, spin, "executors.rs");
}

#[test]
fn smol_tasks() {
    let _s = serial();
    let guard = config("smol").start().unwrap();
    let (sleep, spin) = pollwatch::smol::block_on(async {
        let sleep = pollwatch::smol::spawn(async {
            smol::future::yield_now().await;
            blocking_sleep(BLOCK)
        })
        .await;
        let spin = pollwatch::smol::spawn(async {
            smol::future::yield_now().await;
            cpu_spin(BLOCK)
        })
        .await;
        (sleep, spin)
    });
    let report = guard.finish().unwrap();
    check_sleep_and_cpu(&report, sleep, spin, "executors.rs");
}

#[test]
fn futures_thread_pool() {
    let _s = serial();
    let guard = config("thread_pool").start().unwrap();
    let pool = ThreadPool::builder().pool_size(2).create().unwrap();
    let a = pool
        .spawn_with_handle(pollwatch::watch(async { blocking_sleep(BLOCK) }))
        .unwrap();
    let sleep = futures::executor::block_on(a);
    let b = pool
        .spawn_with_handle(pollwatch::watch(async { cpu_spin(BLOCK) }))
        .unwrap();
    let spin = futures::executor::block_on(b);
    drop(pool);
    let report = guard.finish().unwrap();
    check_sleep_and_cpu(&report, sleep, spin, "executors.rs");
}

#[test]
fn futures_local_pool() {
    let _s = serial();
    let guard = config("local_pool").start().unwrap();
    let mut pool = LocalPool::new();
    let a = pool
        .spawner()
        .spawn_local_with_handle(pollwatch::watch(async { blocking_sleep(BLOCK) }))
        .unwrap();
    let b = pool
        .spawner()
        .spawn_local_with_handle(pollwatch::watch(async { cpu_spin(BLOCK) }))
        .unwrap();
    let (sleep, spin) = pool.run_until(async { (a.await, b.await) });
    let report = guard.finish().unwrap();
    check_sleep_and_cpu(&report, sleep, spin, "executors.rs");
}

#[test]
fn block_on_root_future_is_watched() {
    let _s = serial();
    let guard = config("block_on_root").start().unwrap();
    let sleep = futures::executor::block_on(pollwatch::watch(async { blocking_sleep(BLOCK) }));
    let spin = smol::block_on(pollwatch::watch(async { cpu_spin(BLOCK) }));
    let report = guard.finish().unwrap();
    check_sleep_and_cpu(&report, sleep, spin, "executors.rs");
}

#[inline(never)]
async fn nested_inner_future() -> Duration {
    blocking_sleep(BLOCK)
}

#[test]
fn futures_block_on_inside_a_task_is_blocking_and_shows_the_inner_future() {
    let _s = serial();
    let guard = config("nested_block_on").start().unwrap();
    let rt = tokio_runtime(2);
    let truth = rt.block_on(async {
        tokio::spawn(pollwatch::watch(async {
            tokio::task::yield_now().await;
            // A nested executor inside an async task: this blocks the worker.
            futures::executor::block_on(nested_inner_future())
        }))
        .await
        .unwrap()
    });
    drop(rt);
    let report = guard.finish().unwrap();
    let ep = episode_in(&report, "nested_inner_future");
    assert!(
        ep.blocked_in("futures_executor::local_pool::block_on"),
        "{report}"
    );
    assert!(ep.blocked_in("blocking_sleep"), "{report}");
    assert_close(ep, truth, "nested block_on episode");
}

#[test]
fn several_runtimes_in_one_process_say_which_one() {
    let _s = serial();
    let guard = config("several").start().unwrap();
    let api =
        pollwatch::tokio::instrument_as(&mut tokio::runtime::Builder::new_multi_thread(), "api")
            .worker_threads(1)
            .thread_name("api-worker")
            .enable_all()
            .build()
            .unwrap();
    let jobs =
        pollwatch::tokio::instrument_as(&mut tokio::runtime::Builder::new_multi_thread(), "jobs")
            .worker_threads(1)
            .thread_name("jobs-worker")
            .enable_all()
            .build()
            .unwrap();
    let a = api.spawn(pollwatch::watch(async {
        blocking_sleep(Duration::from_millis(80))
    }));
    let j = jobs.spawn(pollwatch::watch(async {
        cpu_spin(Duration::from_millis(80))
    }));
    let s = pollwatch::async_std::spawn(async { nested_inner_future().await });
    api.block_on(a).unwrap();
    jobs.block_on(j).unwrap();
    async_std::task::block_on(s);
    drop((api, jobs));
    let report = guard.finish().unwrap();
    let eps: Vec<_> = report.blocked_in("blocking_sleep").collect();
    assert_eq!(eps.len(), 2, "{report}");
    let on_api = eps
        .iter()
        .find(|e| e.runtime() == Some("api"))
        .expect("api episode");
    assert_eq!(on_api.thread_name(), "api-worker");
    let on_async_std = eps
        .iter()
        .find(|e| e.blocked_in("nested_inner_future"))
        .unwrap();
    assert_eq!(on_async_std.runtime(), None);
    assert!(
        !on_async_std.thread_name().contains("worker"),
        "{}",
        on_async_std.thread_name()
    );
    let spin = episode_in(&report, "cpu_spin");
    assert_eq!(spin.runtime(), Some("jobs"));
    assert_eq!(spin.thread_name(), "jobs-worker");
}

/// Channel round trips and timers for about a second on each runtime.
#[test]
fn healthy_workloads_on_every_executor_have_no_episodes() {
    let _s = serial();
    let guard = config("healthy_all").start().unwrap();
    let run_for = Duration::from_millis(700);

    // async-std: timers and channels.
    pollwatch::async_std::block_on(async move {
        let deadline = Instant::now() + run_for;
        let (tx, rx) = async_std::channel::bounded::<u64>(16);
        let producer = pollwatch::async_std::spawn(async move {
            let mut i = 0;
            while Instant::now() < deadline {
                tx.send(i).await.unwrap();
                i += 1;
                if i % 64 == 0 {
                    async_std::task::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        let consumer = pollwatch::async_std::spawn(async move { while rx.recv().await.is_ok() {} });
        producer.await;
        consumer.await;
    });

    // smol: the same shape.
    pollwatch::smol::block_on(async move {
        let deadline = Instant::now() + run_for;
        let (tx, rx) = smol::channel::bounded::<u64>(16);
        let producer = pollwatch::smol::spawn(async move {
            let mut i = 0;
            while Instant::now() < deadline {
                tx.send(i).await.unwrap();
                i += 1;
                if i % 64 == 0 {
                    smol::Timer::after(Duration::from_millis(1)).await;
                }
            }
        });
        let consumer = pollwatch::smol::spawn(async move { while rx.recv().await.is_ok() {} });
        producer.await;
        consumer.await;
    });

    // futures ThreadPool and LocalPool: channels and yields (no timers there).
    let pool = ThreadPool::builder().pool_size(2).create().unwrap();
    let deadline = Instant::now() + run_for;
    let handles: Vec<_> = (0..8)
        .map(|_| {
            pool.spawn_with_handle(pollwatch::watch(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    YieldOnce::default().await;
                    n += 1;
                }
                n
            }))
            .unwrap()
        })
        .collect();
    let mut local = LocalPool::new();
    let spawner = local.spawner();
    for _ in 0..8 {
        spawner
            .spawn_local(pollwatch::watch(async move {
                while Instant::now() < deadline {
                    YieldOnce::default().await;
                }
            }))
            .unwrap();
    }
    local.run();
    let polls: u64 = handles.into_iter().map(futures::executor::block_on).sum();
    drop(pool);
    let report = guard.finish().unwrap();
    assert!(polls > 100, "{polls}");
    assert!(report.episodes().is_empty(), "false positives:\n{report}");
}

/// Pending once, waking itself, then ready.
#[derive(Default)]
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}
