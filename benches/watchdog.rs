//! The watchdog's own costs: CPU while nothing blocks, how fast a stuck
//! thread's stack is captured, and how soon a stuck poll is noticed.
//!
//! - idle: an 8-worker instrumented tokio runtime, pollwatch with defaults,
//!   10 s with nothing blocking; the watchdog thread (found by its name in
//!   `/proc/self/task/*/comm`) is charged its CPU time from `schedstat`
//!   (nanoseconds; `stat`'s utime+stime, in 10 ms ticks, is printed as a
//!   cross-check). Once fully idle, once with 64 tasks waking every ms.
//!   Beside it, a thread that does nothing but wake on a condvar every idle
//!   tick (half the default threshold, 10 ms) is measured over the same window: the
//!   floor for that rate.
//! - per sample: a thread stuck on-CPU at the bottom of a 60-frame-deep
//!   recursion inside a watched poll is sampled every ms for ~2 s; the
//!   watchdog records signal-sent → stack-in-hand for each capture and the
//!   report hands out the median and p99 (`Report::overhead`).
//! - busy: the watchdog's CPU while every worker of a runtime is busy with
//!   short polls (tasks calling `yield_now` in a loop, one worker per CPU),
//!   in sampled mode (a plain runtime with `attach()`, and the builder
//!   instrumented on stable tokio, nothing wrapped) and, beside them, with
//!   `watch` on every task: its looks read each sampled worker's executor
//!   frames, and a worker never parks. Charged from schedstat over the
//!   window, and `Overhead::watchdog_cpu` over the whole guard.
//! - detection: 40 polls block for 3× the threshold (half sleeping, half
//!   spinning); for each, the delay past the threshold at which the watchdog
//!   noticed = (`Episode::start` + `Episode::detected_after`, i.e. the wall
//!   clock at detection) − the wall clock the poll itself read as it began −
//!   the threshold. Compared with the idle tick (half the threshold).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use common::{median, ms, row, us};

/// The watchdog's tick while nothing is stuck, with the default threshold.
/// It mirrors the watchdog's own rule (half the threshold, at least 250 µs),
/// which is not public: the benches compare against it, they do not set it.
fn idle_tick() -> Duration {
    pollwatch::Config::DEFAULT_THRESHOLD / 2
}

fn instrumented_runtime(workers: usize) -> tokio::runtime::Runtime {
    pollwatch::tokio::instrument(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all(),
    )
    .build()
    .unwrap()
}

/// CPU over `secs`, as a fraction of one core, of the watchdog (schedstat,
/// stat) and of a peer thread that only sleeps on a condvar with the
/// watchdog's idle tick: the floor of waking that often on this machine.
fn watchdog_cpu_over(secs: f64, tick: Duration) -> (f64, f64, f64) {
    let tid = common::thread_by_name("pollwatch-watch").expect("watchdog thread not found");
    let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let peer_stop = stop.clone();
    let peer = std::thread::Builder::new()
        .name("tick-peer".into())
        .spawn(move || {
            let (m, cv) = &*peer_stop;
            let mut done = m.lock().unwrap();
            while !*done {
                done = cv.wait_timeout(done, tick).unwrap().0;
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let peer_tid = common::thread_by_name("tick-peer").expect("peer thread not found");
    let c0 = common::thread_cpu(tid).unwrap();
    let p0 = common::thread_cpu(peer_tid).unwrap();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let c1 = common::thread_cpu(tid).unwrap();
    let p1 = common::thread_cpu(peer_tid).unwrap();
    let wall = t0.elapsed().as_secs_f64();
    *stop.0.lock().unwrap() = true;
    stop.1.notify_all();
    peer.join().unwrap();
    (
        (c1.schedstat - c0.schedstat).as_secs_f64() / wall,
        (c1.stat - c0.stat).as_secs_f64() / wall,
        (p1.schedstat - p0.schedstat).as_secs_f64() / wall,
    )
}

fn idle() {
    let secs = (10.0 * common::scale()).max(2.0);
    let guard = pollwatch::Config::default()
        .output_dir(common::out_dir("idle"))
        .live(false)
        .start()
        .unwrap();
    let rt = instrumented_runtime(8);
    // Every worker registers at start; let the report thread finish loading
    // debug info, which is start-up cost, not idle cost.
    std::thread::sleep(Duration::from_secs(1));
    let tick = idle_tick();
    let (idle, idle_stat, idle_peer) = watchdog_cpu_over(secs, tick);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..64 {
        let stop = stop.clone();
        rt.spawn(pollwatch::watch(async move {
            let mut iv = tokio::time::interval(Duration::from_millis(1));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                iv.tick().await;
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (busy, busy_stat, busy_peer) = watchdog_cpu_over(secs, tick);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(rt);
    let report = guard.finish().unwrap();
    println!(
        "idle watchdog: 8 workers, threshold {:?}, {secs:.0} s each; episodes {}",
        report.threshold(),
        report.episodes().len()
    );
    println!(
        "  nothing running:           {:.4}% of one core (stat: {:.3}%); a thread only waking every {tick:?}: {:.4}%",
        idle * 100.0,
        idle_stat * 100.0,
        idle_peer * 100.0
    );
    println!(
        "  64 tasks waking every ms:  {:.4}% of one core (stat: {:.3}%); a thread only waking every {tick:?}: {:.4}%",
        busy * 100.0,
        busy_stat * 100.0,
        busy_peer * 100.0
    );
    row(
        "idle watchdog: CPU, 8 workers, nothing running, % of one core (peer: a thread that only wakes every tick)",
        &format!("{:.3}%", idle * 100.0),
        &format!("{:.3}%", idle_peer * 100.0),
        &format!("{:.2}", idle / idle_peer),
        "< 0.5%",
    );
    row(
        "idle watchdog: CPU, 8 workers, 64 tasks on 1 ms timers, % of one core (same peer)",
        &format!("{:.3}%", busy * 100.0),
        &format!("{:.3}%", busy_peer * 100.0),
        &format!("{:.2}", busy / busy_peer),
        "< 0.5%",
    );
}

fn deep(n: u32, until: Instant) -> u64 {
    // A local whose address escapes, used after the call: the compiler can
    // neither turn the recursion into a loop nor make it a tail call.
    let local = [u64::from(n); 2];
    black_box(&local);
    let r = if n == 0 {
        let mut x = 0u64;
        while Instant::now() < until {
            x = black_box(x.wrapping_add(1));
        }
        x
    } else {
        deep(n - 1, until)
    };
    black_box(&local);
    r.wrapping_add(local[0])
}

/// Recursion with 512-byte frames: 128 levels fill a 64 KiB copy.
fn deep_big(n: u32, until: Instant) -> u64 {
    let local = [u64::from(n); 64];
    black_box(&local);
    let r = if n == 0 {
        let mut x = 0u64;
        while Instant::now() < until {
            x = black_box(x.wrapping_add(1));
        }
        x
    } else {
        deep_big(n - 1, until)
    };
    black_box(&local);
    r.wrapping_add(local[0])
}

/// One per-sample run: a thread spinning at the bottom of a recursion is
/// sampled every ms; returns (report, deepest raw stack).
fn sample_run(
    mode: pollwatch::Unwind,
    copy: usize,
    big: bool,
    block: Duration,
) -> (pollwatch::Report, usize) {
    let guard = pollwatch::Config::default()
        .output_dir(common::out_dir("per_sample"))
        .live(false)
        .unwind(mode)
        .stack_copy_bytes(copy)
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    std::thread::spawn(move || {
        let _in_poll = pollwatch::enter_poll();
        match big {
            false => black_box(deep(59, Instant::now() + block)),
            true => black_box(deep_big(127, Instant::now() + block)),
        };
    })
    .join()
    .unwrap();
    let report = guard.finish().unwrap();
    let frames = report
        .episodes()
        .iter()
        .flat_map(|e| e.stacks())
        .map(|s| s.raw.len())
        .max()
        .unwrap_or(0);
    (report, frames)
}

fn per_sample() {
    let depth = 60;
    let block = Duration::from_secs_f64((2.0 * common::scale()).max(0.5));
    let (report, frames) = sample_run(pollwatch::Unwind::Auto, 32 * 1024, false, block);
    let o = report.overhead();
    let deep_frames = report
        .episodes()
        .iter()
        .flat_map(|e| e.stacks())
        .map(|s| {
            s.frames
                .iter()
                .filter(|f| f.function.ends_with("deep"))
                .count()
        })
        .max()
        .unwrap_or(0);
    println!(
        "per sample: {depth}-deep recursion spinning {block:?}, interval 1 ms: {} captures, deepest stack {frames} raw frames ({deep_frames} of them `deep`)",
        o.samples_captured
    );
    println!(
        "  signal sent → stack in hand: median {:?}, p99 {:?}, max {:?} (missed {})",
        o.capture_p50.unwrap_or_default(),
        o.capture_p99.unwrap_or_default(),
        o.capture_max.unwrap_or_default(),
        report.counters().missed_samples
    );
    row(
        &format!("per sample: signal → stack captured, median ({frames}-frame stack)"),
        &us(o.capture_p50.unwrap_or_default()),
        "—",
        "—",
        "< 20 µs",
    );
    row(
        &format!(
            "per sample: signal → stack captured, p99 ({} captures)",
            o.samples_captured
        ),
        &us(o.capture_p99.unwrap_or_default()),
        "—",
        "—",
        "< 100 µs",
    );
    // The copy's cost by size, on a stack deep enough (128 frames of 512
    // bytes) that every size is filled; `fp` mode copies 1 KiB.
    let short = block / 2;
    let (fp, _) = sample_run(pollwatch::Unwind::FramePointers, 1024, true, short);
    let fp_p50 = fp.overhead().capture_p50.unwrap_or_default();
    for kib in [4usize, 16, 32, 64] {
        let (r, _) = sample_run(pollwatch::Unwind::Auto, kib * 1024, true, short);
        let p50 = r.overhead().capture_p50.unwrap_or_default();
        row(
            &format!("per sample: signal → stack captured, median, {kib} KiB copy (peer: fp mode, 1 KiB)"),
            &us(p50),
            &us(fp_p50),
            &format!("{:.2}", p50.as_secs_f64() / fp_p50.as_secs_f64().max(1e-9)),
            "—",
        );
    }
    // Unwinding (and symbolizing the new addresses) per sample, report
    // thread time, same 60-frame stack in each mode.
    for (mode, copy) in [
        (pollwatch::Unwind::Auto, 32 * 1024),
        (pollwatch::Unwind::Dwarf, 32 * 1024),
        (pollwatch::Unwind::FramePointers, 1024),
    ] {
        let (r, frames) = sample_run(mode, copy, false, short);
        let o = r.overhead();
        let per = o.symbolize_time / (o.samples_captured.max(1) as u32);
        row(
            &format!("per sample: unwind + symbolize on the report thread, {mode} mode ({frames}-frame stack)"),
            &us(per),
            "—",
            "—",
            "—",
        );
    }
}

/// Sleeps 2 ms at the bottom of a recursion `n` deep (alternating depths,
/// so that each sleep's stack pointer differs and is read again).
#[inline(never)]
fn deep_sleep(n: u32) -> u32 {
    if n == 0 {
        std::thread::sleep(Duration::from_millis(2));
        return 1;
    }
    black_box(deep_sleep(black_box(n - 1))) + 1
}

/// The signal-free path: a thread blocked in the kernel, its stack copied
/// from outside, beside the signal path's capture time.
fn stack_reads() {
    let block = Duration::from_secs_f64((2.0 * common::scale()).max(0.5));
    let guard = pollwatch::Config::default()
        .output_dir(common::out_dir("stack_reads"))
        .live(false)
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    std::thread::spawn(move || {
        let _in_poll = pollwatch::enter_poll();
        let until = Instant::now() + block;
        let mut i = 0;
        while Instant::now() < until {
            black_box(deep_sleep(59 + i % 2));
            i += 1;
        }
    })
    .join()
    .unwrap();
    let report = guard.finish().unwrap();
    let o = report.overhead();
    println!(
        "stack reads: a thread asleep at the bottom of a 60-deep recursion for {block:?}: {} reads, median {:?}, p99 {:?}",
        o.stacks_read,
        o.read_p50.unwrap_or_default(),
        o.read_p99.unwrap_or_default()
    );
    row(
        &format!(
            "per sample: stack read without a signal (thread blocked in the kernel), median of {}",
            o.stacks_read
        ),
        &us(o.read_p50.unwrap_or_default()),
        "—",
        "—",
        "—",
    );
    row(
        "per sample: stack read without a signal, p99",
        &us(o.read_p99.unwrap_or_default()),
        "—",
        "—",
        "—",
    );
}

fn detection() {
    let n = common::scaled(40, 10);
    let threshold = pollwatch::Config::DEFAULT_THRESHOLD;
    let tick = idle_tick();
    let guard = pollwatch::Config::default()
        .output_dir(common::out_dir("detection"))
        .live(false)
        .start()
        .unwrap();
    let rt = instrumented_runtime(2);
    std::thread::sleep(Duration::from_millis(500));
    let mut starts = Vec::new();
    for i in 0..n {
        let began = rt
            .block_on(async move {
                tokio::spawn(pollwatch::watch(async move {
                    let began = SystemTime::now();
                    let hold = threshold * 3;
                    if i % 2 == 0 {
                        std::thread::sleep(hold);
                    } else {
                        let until = Instant::now() + hold;
                        while Instant::now() < until {
                            black_box(0);
                        }
                    }
                    began
                }))
                .await
            })
            .unwrap();
        starts.push(began);
        // Start the next one at a different phase of the watchdog's tick.
        std::thread::sleep(tick / 3 + Duration::from_millis(2));
    }
    drop(rt);
    let report = guard.finish().unwrap();
    let eps = report.episodes();
    let mut late = Vec::new();
    let mut est = Vec::new();
    for (ep, began) in eps.iter().zip(&starts) {
        let noticed = ep.start() + ep.detected_after();
        let after = noticed.duration_since(*began).unwrap_or_default();
        late.push(after.saturating_sub(threshold).as_secs_f64());
        est.push(ep.detected_after().saturating_sub(threshold).as_secs_f64());
    }
    let (med, max) = (median(&late), common::max(&late));
    println!(
        "detection: {} of {n} blocking polls reported; threshold {threshold:?}, idle tick {tick:?}",
        eps.len()
    );
    println!(
        "  delay past the threshold: median {:.2} ms, max {:.2} ms ({:.2} ticks); watchdog's own estimate (detected_after − threshold): median {:.2} ms, max {:.2} ms",
        med * 1e3,
        max * 1e3,
        max / tick.as_secs_f64(),
        median(&est) * 1e3,
        common::max(&est) * 1e3
    );
    row(
        &format!(
            "detection: delay past the threshold, max of {} (median {:.1} ms)",
            eps.len(),
            med * 1e3
        ),
        &ms(Duration::from_secs_f64(max)),
        &format!("tick {}", ms(tick)),
        &format!("{:.2} ticks", max / tick.as_secs_f64()),
        "≤ 2 ticks",
    );
    if eps.len() as u64 != n {
        row(
            "detection: blocking polls reported",
            &format!("{}", eps.len()),
            &format!("{n}"),
            &format!("{:.2}", eps.len() as f64 / n as f64),
            "1.00",
        );
    }
}

/// How the busy runtime is watched.
#[derive(Clone, Copy, Debug)]
enum Busy {
    Attach,
    Builder,
    Watch,
}

fn busy_run(mode: Busy, secs: f64) -> (f64, f64, pollwatch::Report) {
    let guard = pollwatch::Config::default()
        .output_dir(common::out_dir("busy"))
        .live(false)
        .start()
        .unwrap();
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(common::cpus()).enable_all();
    let rt = match mode {
        Busy::Attach => b.build(),
        Busy::Builder | Busy::Watch => pollwatch::tokio::instrument(&mut b).build(),
    }
    .unwrap();
    if let Busy::Attach = mode {
        rt.block_on(async { pollwatch::tokio::attach().unwrap() });
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..64 {
        let stop = stop.clone();
        let task = async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::task::yield_now().await;
            }
        };
        match mode {
            Busy::Watch => drop(rt.spawn(pollwatch::watch(task))),
            Busy::Attach | Busy::Builder => drop(rt.spawn(task)),
        }
    }
    // Learning the workers' poll boundary loads debug info: start-up cost.
    std::thread::sleep(Duration::from_secs(1));
    let tick = idle_tick();
    let t0 = Instant::now();
    let (cpu, _, _) = watchdog_cpu_over(secs, tick);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(rt);
    let report = guard.finish().unwrap();
    let whole = t0.elapsed().as_secs_f64() + 1.0;
    (
        cpu,
        report.overhead().watchdog_cpu.as_secs_f64() / whole,
        report,
    )
}

fn busy() {
    let secs = (5.0 * common::scale()).max(2.0);
    println!(
        "busy watchdog: {} workers, 64 tasks calling yield_now in a loop, {secs:.0} s each",
        common::cpus()
    );
    for (mode, what) in [
        (Busy::Attach, "sampled mode, `attach()`"),
        (Busy::Builder, "sampled mode, `instrument` on stable tokio"),
        (Busy::Watch, "`watch` on every task"),
    ] {
        if cfg!(tokio_unstable) && !matches!(mode, Busy::Attach) {
            // The builder uses tokio's poll hooks there: not this figure.
            continue;
        }
        let (cpu, whole, report) = busy_run(mode, secs);
        println!(
            "  {what:<44} {:.3}% of one core over the window, {:.3}% over the guard; episodes {}, signals {}",
            cpu * 100.0,
            whole * 100.0,
            report.episodes().len(),
            report.overhead().signals_sent
        );
        row(
            &format!(
                "busy watchdog: CPU, {} workers busy with short polls, {what}, % of one core",
                common::cpus()
            ),
            &format!("{:.3}%", cpu * 100.0),
            "—",
            "—",
            "< 1%",
        );
    }
}

fn main() {
    let which = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let all = which.is_none();
    let want = |s: &str| all || which.as_deref() == Some(s);
    if want("per_sample") {
        per_sample();
    }
    if want("stack_reads") {
        stack_reads();
    }
    if want("detection") {
        detection();
    }
    if want("idle") {
        idle();
    }
    if want("busy") {
        busy();
    }
}
