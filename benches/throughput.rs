//! Poll-heavy tokio throughput: bare tokio against pollwatch's `watch` on
//! every task, pollwatch's tokio hooks (in a `--cfg tokio_unstable` build),
//! and tokio-metrics' `TaskMonitor::instrument` on every task. Beside them
//! runs what any tool of that kind pays before doing anything: in the stable
//! build a wrapper future of `watch`'s shape that does nothing (an extra
//! future layer and a bigger task), in the tokio_unstable build empty poll
//! hooks (tokio calls two boxed closures per poll whoever installs them).
//! The ratio of pollwatch to that variant is what pollwatch's probe costs.
//! The stable build also runs sampled mode, nothing wrapped: the builder
//! instrumented (`pollwatch::tokio::instrument`, no `watch`) and a plain
//! runtime with `pollwatch::tokio::attach()`. No pollwatch code runs in
//! their polls; what they may cost is the watchdog's looks at busy workers.
//!
//! Two workloads on a multi-thread runtime with one worker per CPU:
//! - mpsc: 200 task pairs ping-ponging over `tokio::sync::mpsc` channels of
//!   capacity 1, 2,000,000 messages in all;
//! - yield: 400 tasks calling `yield_now` 5,000 times each (2,000,000 polls).
//!
//! Every round runs each variant once, in a rotated order; the figure is the
//! median wall time over rounds (15 by default, `POLLWATCH_BENCH_ROUNDS`),
//! and ratios are medians of the per-round ratios (each compares runs made a
//! second apart), printed with the quartiles that show how finely this run
//! resolves them. A variant with pollwatch
//! runs with a started `Guard` (watchdog and report threads live); its
//! start-up is outside the timed region.
//!
//! `POLLWATCH_BENCH_SCALE=0.1` shrinks the workloads for a quick look.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::{median, ms, row};
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Bare,
    /// `pollwatch::watch` around every spawned task (stable tokio).
    Watch,
    /// `pollwatch::tokio::instrument` hooks, watching every poll (tokio_unstable).
    Hooks,
    /// Empty `on_before_task_poll`/`on_after_task_poll` hooks (tokio_unstable):
    /// what tokio's hook dispatch costs by itself, whoever installs the hooks.
    EmptyHooks,
    TokioMetrics,
    /// A wrapper future of `watch`'s shape that does nothing (stable tokio).
    EmptyWrapper,
    /// Sampled mode through the builder: `instrument` on stable tokio,
    /// nothing wrapped (its thread and park hooks only, no poll hook).
    Sampled,
    /// Sampled mode on a plain runtime: `attach()` first in `block_on`.
    Attach,
}

pin_project_lite::pin_project! {
    /// `pollwatch::Watched` without the probe: the inner future and a location.
    struct EmptyWrapper<F> {
        #[pin]
        inner: F,
        location: &'static std::panic::Location<'static>,
    }
}

impl<F: Future> Future for EmptyWrapper<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // No black_box here: it is a compiler barrier, and one in the poll
        // path alone cost 4% of the mpsc workload, which a wrapper that does
        // nothing does not pay.
        let this = self.project();
        let _ = this.location;
        this.inner.poll(cx)
    }
}

#[derive(Clone, Copy, Debug)]
enum Workload {
    Mpsc { pairs: u64, round_trips: u64 },
    Yield { tasks: u64, yields: u64 },
}

fn spawn<F>(v: Variant, monitor: &tokio_metrics::TaskMonitor, f: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    match v {
        Variant::Watch => tokio::spawn(pollwatch::watch(f)),
        Variant::TokioMetrics => tokio::spawn(monitor.instrument(f)),
        Variant::EmptyWrapper => tokio::spawn(EmptyWrapper {
            inner: f,
            location: std::panic::Location::caller(),
        }),
        Variant::Bare
        | Variant::Hooks
        | Variant::EmptyHooks
        | Variant::Sampled
        | Variant::Attach => tokio::spawn(f),
    }
}

async fn workload(v: Variant, w: Workload) {
    let monitor = tokio_metrics::TaskMonitor::new();
    let mut handles = Vec::new();
    match w {
        Workload::Mpsc { pairs, round_trips } => {
            for _ in 0..pairs {
                let (ping_tx, mut ping_rx) = mpsc::channel::<u64>(1);
                let (pong_tx, mut pong_rx) = mpsc::channel::<u64>(1);
                handles.push(spawn(v, &monitor, async move {
                    for i in 0..round_trips {
                        ping_tx.send(i).await.unwrap();
                        let back = pong_rx.recv().await.unwrap();
                        debug_assert_eq!(back, i);
                    }
                }));
                handles.push(spawn(v, &monitor, async move {
                    while let Some(i) = ping_rx.recv().await {
                        if pong_tx.send(i).await.is_err() {
                            break;
                        }
                    }
                }));
            }
        }
        Workload::Yield { tasks, yields } => {
            for _ in 0..tasks {
                handles.push(spawn(v, &monitor, async move {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                }));
            }
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    if v == Variant::TokioMetrics {
        // Keep the monitor's figures observable so nothing is optimised out.
        std::hint::black_box(monitor.cumulative().total_poll_count);
    }
}

/// One timed run of `w` under `v`; returns the wall time of the workload alone.
fn run(v: Variant, w: Workload) -> Duration {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    let rt = match v {
        Variant::Watch | Variant::Hooks | Variant::Sampled => {
            pollwatch::tokio::instrument(&mut b).build()
        }
        Variant::EmptyHooks => empty_hooks(&mut b).build(),
        Variant::Bare | Variant::TokioMetrics | Variant::EmptyWrapper | Variant::Attach => {
            b.build()
        }
    }
    .unwrap();
    let guard = match v {
        Variant::Watch | Variant::Hooks | Variant::Sampled | Variant::Attach => Some(
            pollwatch::Config::default()
                .output_dir(common::out_dir("throughput"))
                .live(false)
                .start()
                .expect("start pollwatch"),
        ),
        _ => None,
    };
    if v == Variant::Attach {
        rt.block_on(async { pollwatch::tokio::attach().expect("attach") });
    }
    // Let every variant settle the same way (the runtime's workers spin up).
    std::thread::sleep(Duration::from_millis(100));
    let elapsed = rt.block_on(async move {
        let t = Instant::now();
        workload(v, w).await;
        t.elapsed()
    });
    drop(rt);
    if let Some(g) = guard {
        let report = g.finish().expect("finish pollwatch");
        if !report.episodes().is_empty() {
            eprintln!(
                "note: {} episode(s) during a {v:?} run",
                report.episodes().len()
            );
        }
    }
    elapsed
}

#[cfg(tokio_unstable)]
fn empty_hooks(b: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    b.on_before_task_poll(|meta| {
        std::hint::black_box(meta);
    })
    .on_after_task_poll(|meta| {
        std::hint::black_box(meta);
    })
}

#[cfg(not(tokio_unstable))]
fn empty_hooks(_: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    unreachable!("empty hooks are measured in the tokio_unstable build only")
}

fn main() {
    let unstable = cfg!(tokio_unstable);
    let variants: &[Variant] = if unstable {
        &[
            Variant::Bare,
            Variant::Hooks,
            Variant::TokioMetrics,
            Variant::EmptyHooks,
        ]
    } else {
        &[
            Variant::Bare,
            Variant::Watch,
            Variant::TokioMetrics,
            Variant::EmptyWrapper,
            Variant::Sampled,
            Variant::Attach,
        ]
    };
    let rounds: usize = std::env::var("POLLWATCH_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let pairs = 200;
    let messages = common::scaled(2_000_000, 2 * pairs);
    let tasks = 400;
    let polls = common::scaled(2_000_000, tasks);
    let workloads = [
        (
            "mpsc",
            Workload::Mpsc {
                pairs,
                round_trips: messages / 2 / pairs,
            },
        ),
        (
            "yield",
            Workload::Yield {
                tasks,
                yields: polls / tasks,
            },
        ),
    ];
    let build = if unstable {
        "tokio_unstable build"
    } else {
        "stable build"
    };
    println!(
        "throughput ({build}): {} worker threads, {rounds} rounds, variants {variants:?}",
        common::cpus()
    );
    for (name, w) in workloads {
        println!("  {name}: {w:?}");
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
        for round in 0..rounds {
            for k in 0..variants.len() {
                let i = (k + round) % variants.len();
                times[i].push(run(variants[i], w).as_secs_f64());
            }
        }
        for (i, v) in variants.iter().enumerate() {
            let rs: Vec<String> = times[i].iter().map(|t| format!("{:.0}", t * 1e3)).collect();
            println!(
                "    {:<13} median {:>7.1} ms   rounds [{}] ms",
                format!("{v:?}"),
                median(&times[i]) * 1e3,
                rs.join(" ")
            );
        }
        let ratios = |a: usize, b: usize| -> Vec<f64> {
            times[a].iter().zip(&times[b]).map(|(x, y)| x / y).collect()
        };
        let paired = |a: usize, b: usize| median(&ratios(a, b));
        let (bare, ours, tm) = (0, 1, 2);
        let ours_name = if unstable {
            "tokio hooks"
        } else {
            "`watch` on every task"
        };
        let med = |i: usize| Duration::from_secs_f64(median(&times[i]));
        println!(
            "    ratios (median of per-round): {ours_name}/bare {:.3}, tokio-metrics/bare {:.3}, {ours_name}/tokio-metrics {:.3}",
            paired(ours, bare),
            paired(tm, bare),
            paired(ours, tm)
        );
        // How well this run resolves the ratio: the middle half of the rounds.
        let (q1, q3) = common::quartiles(&ratios(ours, bare));
        println!("    {ours_name}/bare, middle half of the rounds: {q1:.3} .. {q3:.3}");
        let tag = if unstable {
            " (tokio_unstable build)"
        } else {
            ""
        };
        row(
            &format!("throughput {name}: {ours_name} vs bare tokio{tag}"),
            &ms(med(ours)),
            &ms(med(bare)),
            &format!("{:.3}", paired(ours, bare)),
            "≤ 1.02",
        );
        row(
            &format!("throughput {name}: {ours_name} vs tokio-metrics `TaskMonitor`{tag}"),
            &ms(med(ours)),
            &ms(med(tm)),
            &format!("{:.3}", paired(ours, tm)),
            "< 1",
        );
        // What any such tool pays before doing anything, and what
        // pollwatch's probe adds on top of it.
        let empty = 3;
        let empty_name = if unstable {
            "empty hooks (tokio's own dispatch)"
        } else {
            "a wrapper of `watch`'s shape that does nothing"
        };
        println!(
            "    {empty_name}/bare {:.3}, {ours_name}/that {:.3}",
            paired(empty, bare),
            paired(ours, empty)
        );
        if !unstable {
            // Sampled mode, nothing wrapped: no probe in any poll.
            let (sampled, attach) = (4, 5);
            println!(
                "    sampled mode/bare: instrumented builder {:.3}, attach {:.3}",
                paired(sampled, bare),
                paired(attach, bare)
            );
            for (i, what) in [
                (
                    sampled,
                    "sampled mode, `instrument` on stable tokio, nothing wrapped",
                ),
                (attach, "sampled mode, `attach()` on a plain runtime"),
            ] {
                let (q1, q3) = common::quartiles(&ratios(i, bare));
                println!("    {what}/bare, middle half of the rounds: {q1:.3} .. {q3:.3}");
                row(
                    &format!("throughput {name}: {what} vs bare tokio"),
                    &ms(med(i)),
                    &ms(med(bare)),
                    &format!("{:.3}", paired(i, bare)),
                    "≤ 1.01",
                );
            }
        }
        row(
            &format!("throughput {name}: context: {empty_name} vs bare tokio{tag}"),
            &ms(med(empty)),
            &ms(med(bare)),
            &format!("{:.3}", paired(empty, bare)),
            "—",
        );
        row(
            &format!("throughput {name}: {ours_name} vs {empty_name} (the probe's own cost){tag}"),
            &ms(med(ours)),
            &ms(med(empty)),
            &format!("{:.3}", paired(ours, empty)),
            "—",
        );
    }
}
