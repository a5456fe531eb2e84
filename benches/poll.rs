//! Per-poll cost of pollwatch's probe, side by side with what it is compared to.
//!
//! Like tokio-metrics' `poll_overhead` bench: one thread per CPU, released
//! together by a `Barrier`, each running the same loop; the figure is the
//! median over rounds of the per-iteration time averaged over threads.
//! Variants are interleaved within each round so that noise from other
//! processes spreads over all of them.
//!
//! `cargo bench --bench poll` (see scripts/bench.sh).

mod common;

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{median, row};

/// Wakes itself and stays pending: every poll does the same tiny work.
struct TestFuture;

impl Future for TestFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    EmptyLoop,
    Guard,
    FetchAddPair,
    InstantPair,
    BareFuture,
    WatchedFuture,
    TokioMetricsFuture,
}

const VARIANTS: [Variant; 7] = [
    Variant::EmptyLoop,
    Variant::Guard,
    Variant::FetchAddPair,
    Variant::InstantPair,
    Variant::BareFuture,
    Variant::WatchedFuture,
    Variant::TokioMetricsFuture,
];

/// A waker that does nothing, not even touch its reference count
/// (`Waker::noop` needs Rust 1.85, above the crate's MSRV).
struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
    fn wake_by_ref(self: &Arc<Self>) {}
}

/// Runs `iters` iterations of `v` on this thread; returns the elapsed time.
fn run_one(v: Variant, iters: u64, start: &Barrier) -> Duration {
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    match v {
        Variant::EmptyLoop => {
            start.wait();
            let t = Instant::now();
            for i in 0..iters {
                black_box(i);
            }
            t.elapsed()
        }
        Variant::Guard => {
            drop(pollwatch::enter_poll()); // registers this thread before timing
            start.wait();
            let t = Instant::now();
            for i in 0..iters {
                let g = pollwatch::enter_poll();
                black_box(i);
                drop(black_box(g));
            }
            t.elapsed()
        }
        Variant::FetchAddPair => {
            // Thread-private counter: the cost of the locked instruction, not
            // of contention.
            let a = AtomicU64::new(0);
            start.wait();
            let t = Instant::now();
            for i in 0..iters {
                black_box(&a).fetch_add(1, Ordering::Relaxed);
                black_box(i);
                black_box(&a).fetch_add(1, Ordering::Relaxed);
            }
            t.elapsed()
        }
        Variant::InstantPair => {
            start.wait();
            let t = Instant::now();
            for i in 0..iters {
                black_box(Instant::now());
                black_box(i);
                black_box(Instant::now());
            }
            t.elapsed()
        }
        Variant::BareFuture => {
            let mut f = Box::pin(TestFuture);
            start.wait();
            let t = Instant::now();
            for _ in 0..iters {
                let _ = black_box(f.as_mut().poll(&mut cx));
            }
            t.elapsed()
        }
        Variant::WatchedFuture => {
            let mut f = Box::pin(pollwatch::watch(TestFuture));
            let _ = f.as_mut().poll(&mut cx); // registers this thread
            start.wait();
            let t = Instant::now();
            for _ in 0..iters {
                let _ = black_box(f.as_mut().poll(&mut cx));
            }
            t.elapsed()
        }
        Variant::TokioMetricsFuture => {
            let monitor = tokio_metrics::TaskMonitor::new();
            let mut f = Box::pin(monitor.instrument(TestFuture));
            start.wait();
            let t = Instant::now();
            for _ in 0..iters {
                let _ = black_box(f.as_mut().poll(&mut cx));
            }
            t.elapsed()
        }
    }
}

/// Nanoseconds per iteration of `v`, averaged over `threads` threads.
fn measure(v: Variant, threads: usize, iters: u64) -> f64 {
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || run_one(v, iters, &start))
        })
        .collect();
    let total: Duration = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total.as_secs_f64() * 1e9 / (threads as f64 * iters as f64)
}

fn main() {
    let threads = common::cpus();
    let rounds = 7;
    let iters = common::scaled(20_000_000, 100_000);
    // A running pollwatch, as in production: the watchdog reads the epochs.
    let guard = pollwatch::Config::default()
        .output_dir(common::out_dir("poll"))
        .live(false)
        .start()
        .expect("start pollwatch");

    println!("per poll: {threads} threads behind a Barrier, {iters} iterations each, {rounds} rounds (median)");
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..rounds {
        // Rotate the order each round so no variant always runs first.
        for k in 0..VARIANTS.len() {
            let i = (k + round) % VARIANTS.len();
            let v = VARIANTS[i];
            // Clock reads are 20-50× slower: fewer iterations, same per-op figure.
            let n = if v == Variant::InstantPair {
                iters / 10
            } else {
                iters
            };
            results[i].push(measure(v, threads, n));
        }
    }
    let report = guard.finish().expect("finish pollwatch");
    assert!(report.episodes().is_empty(), "{report}");

    let med: Vec<f64> = results.iter().map(|r| median(r)).collect();
    let get = |v: Variant| med[VARIANTS.iter().position(|&x| x == v).unwrap()];
    for (i, v) in VARIANTS.iter().enumerate() {
        let rs: Vec<String> = results[i].iter().map(|x| format!("{x:.2}")).collect();
        println!(
            "  {:<20} median {:>7.2} ns/iter   rounds [{}]",
            format!("{v:?}"),
            med[i],
            rs.join(" ")
        );
    }
    let empty = get(Variant::EmptyLoop);
    let guard_net = get(Variant::Guard) - empty;
    let fetch_net = get(Variant::FetchAddPair) - empty;
    let instant_net = get(Variant::InstantPair) - empty;
    let bare = get(Variant::BareFuture);
    let watched_net = get(Variant::WatchedFuture) - bare;
    let metrics_net = get(Variant::TokioMetricsFuture) - bare;
    println!("  net of the empty loop: enter_poll pair {guard_net:.2} ns, fetch_add pair {fetch_net:.2} ns, two Instant::now() {instant_net:.2} ns");
    println!("  net of a bare poll:    watch {watched_net:.2} ns, tokio-metrics instrument {metrics_net:.2} ns");

    row(
        "per poll: `enter_poll` enter+exit, ns net of empty loop (peer: `fetch_add` pair)",
        &format!("{guard_net:.2} ns"),
        &format!("{fetch_net:.2} ns"),
        &format!("{:.2}", guard_net / fetch_net),
        "≤ 2 ns",
    );
    row(
        "per poll: two `Instant::now()` (context: a clock on the poll path)",
        &format!("{guard_net:.2} ns"),
        &format!("{instant_net:.2} ns"),
        &format!("{:.2}", guard_net / instant_net),
        "—",
    );
    row(
        "per poll: `watch` wrapper, ns added to a poll (peer: tokio-metrics `instrument`)",
        &format!("{watched_net:.2} ns"),
        &format!("{metrics_net:.2} ns"),
        &format!("{:.2}", watched_net / metrics_net),
        "≤ 2 ns, < peer",
    );
}
