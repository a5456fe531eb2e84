//! Shared helpers for pollwatch's integration tests: blockers with known
//! names, a per-test output directory, and tolerances derived from the
//! configured threshold and interval (never from wall-clock luck).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const THRESHOLD: Duration = Duration::from_millis(20);
pub const INTERVAL: Duration = Duration::from_millis(1);

/// pollwatch runs once per process; tests in one binary take turns.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh output directory for one test.
pub fn out_dir(test: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("pollwatch-tests")
        .join(test);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The one run directory (`<exe>-<pid>`) pollwatch made under `dir`, for a
/// test that reads artifacts before (or without) a report.
pub fn run_dir(dir: &std::path::Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .next()
        .unwrap_or_else(|| panic!("{}: no run directory", dir.display()))
        .path()
}

/// The configuration every test uses.
pub fn config(test: &str) -> pollwatch::Config {
    pollwatch::Config::default()
        .threshold(THRESHOLD)
        .sample_interval(INTERVAL)
        .output_dir(out_dir(test))
}

/// How far a reported duration may be from the truth: the tolerance,
/// one threshold plus two sample intervals.
pub fn tolerance() -> Duration {
    THRESHOLD + 2 * INTERVAL
}

/// A sampled poll is first read at a look, and a look of a thread between
/// polls comes every half threshold (the idle tick): the tolerance
/// is threshold + two sample intervals + one read period. The episode never
/// runs longer than that past the truth. It may start later than that on a
/// saturated machine, when the first read of a new thread's poll waits for
/// the report stage to learn its boundary (README, "What sampled mode
/// cannot see"): then it is still at least a threshold long.
pub fn assert_close_sampled(ep: &pollwatch::Episode, truth: Duration, what: &str) {
    let bound = tolerance() + THRESHOLD / 2 + ep.duration_uncertainty();
    let reported = ep.duration();
    assert!(
        reported <= truth + bound && reported >= THRESHOLD,
        "{what}: reported {reported:?}, measured {truth:?} (bound {bound:?})"
    );
}

/// Asserts the episode's duration is within tolerance of `truth` (measured
/// inside the poll). If the watchdog itself was starved of CPU (a loaded
/// machine), its own reported uncertainty, from its actual tick timing, is
/// the bound instead: that must hold whatever the load.
pub fn assert_close(ep: &pollwatch::Episode, truth: Duration, what: &str) {
    let reported = ep.duration();
    let diff = reported.abs_diff(truth);
    let bound = tolerance().max(ep.duration_uncertainty() + INTERVAL);
    assert!(
        diff <= bound,
        "{what}: reported {reported:?} (± {:?}), measured {truth:?}, off by {diff:?} > {bound:?}",
        ep.duration_uncertainty()
    );
}

/// Like [`assert_close`], for a poll whose end the test cannot time from
/// inside it: it ran at least `lo` (timed inside, before its last steps) and
/// at most `hi` (timed from outside, once it was surely over). A thread
/// preempted between its own timing and the poll's real end (a loaded
/// machine does that to a thread that has just woken another) is still in
/// the poll, and pollwatch is right to count that time.
pub fn assert_between(ep: &pollwatch::Episode, lo: Duration, hi: Duration, what: &str) {
    let reported = ep.duration();
    let bound = tolerance().max(ep.duration_uncertainty() + INTERVAL);
    assert!(
        reported + bound >= lo && reported <= hi + bound,
        "{what}: reported {reported:?} (± {:?}), the poll ran between {lo:?} and {hi:?}; allowed {bound:?} either side",
        ep.duration_uncertainty()
    );
}

/// A thread kept from its CPU answers every signal late; the watchdog must
/// still send at most two per sample interval per episode (one on schedule,
/// one asked again at its late answer). It once asked again at each late
/// answer: a signal every 50 µs, which kept the thread from the CPU it was
/// waiting for.
pub fn assert_signal_budget(report: &pollwatch::Report) {
    let budget: u64 = report
        .episodes()
        .iter()
        .map(|e| 2 * e.duration().as_micros().div_ceil(INTERVAL.as_micros()) as u64 + 2)
        .sum();
    let sent = report.overhead().signals_sent;
    assert!(
        sent <= budget,
        "{sent} sampling signals for {budget} sample intervals of episodes:\n{report}"
    );
}

/// Waits on the worker for a child process that sleeps 150 ms (belongs
/// in `tokio::process`): a wait in the kernel through `fork`/`waitpid`.
#[inline(never)]
pub fn wait_for_child_process() -> Duration {
    let t = Instant::now();
    let status = std::process::Command::new("sleep")
        .arg("0.15")
        .status()
        .expect("run sleep(1)");
    assert!(status.success());
    t.elapsed()
}

#[inline(never)]
pub fn blocking_sleep(d: Duration) -> Duration {
    let t = Instant::now();
    std::thread::sleep(d);
    t.elapsed()
}

/// Spins until this thread has used `cpu` of CPU time (a fixed amount of
/// work, however loaded the machine) and returns the wall time it took.
#[inline(never)]
pub fn cpu_spin(cpu: Duration) -> Duration {
    let t = Instant::now();
    let start = thread_cpu_time();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while thread_cpu_time() - start < cpu {
        // The thread's CPU clock is a syscall: read it every 5 ms, so that
        // samples land in this loop and not in the clock read (a loaded
        // machine's scheduler preempts a thread at its syscalls, and a
        // thread answers a signal where it resumes).
        let until = Instant::now() + Duration::from_millis(5);
        while Instant::now() < until {
            for _ in 0..1000 {
                x = std::hint::black_box(x.rotate_left(5) ^ 0x51_7cc1_b727_220a);
            }
        }
    }
    std::hint::black_box(x);
    t.elapsed()
}

/// This thread's CPU time so far.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[inline(never)]
pub fn sync_file_reads(path: &std::path::Path, cpu: Duration) -> Duration {
    let t = Instant::now();
    // Bounded by the thread's own CPU time (page-cache reads are CPU work,
    // in the kernel), not the wall clock: on a machine short of CPU, 200 ms
    // of wall time was 15 ms of its own, rightly not an episode.
    let start = thread_cpu_time();
    let mut n = 0usize;
    while thread_cpu_time() - start < cpu {
        // The thread's CPU clock is a system call where the scheduler
        // checks the thread's slice, so a loaded machine preempts it there
        // (and a late sample lands there): read it every 5 ms, as
        // `cpu_spin` does.
        let until = Instant::now() + Duration::from_millis(5);
        while Instant::now() < until {
            n += std::fs::read(path).unwrap().len();
        }
    }
    std::hint::black_box(n);
    t.elapsed()
}

#[inline(never)]
pub fn wait_for_shared_lock(m: &Mutex<u64>) -> Duration {
    let t = Instant::now();
    let mut g = m.lock().unwrap();
    *g += 1;
    t.elapsed()
}

/// Reads a run's artifact as text.
pub fn artifact(report: &pollwatch::Report, name: &str) -> String {
    let dir = report.output_dir().expect("report has an output dir");
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

/// The one episode whose stacks contain `function`, with a readable failure.
pub fn episode_in<'r>(report: &'r pollwatch::Report, function: &'r str) -> &'r pollwatch::Episode {
    let found: Vec<_> = report.blocked_in(function).collect();
    assert!(
        !found.is_empty(),
        "no episode blocked in {function}:\n{report}"
    );
    assert_eq!(
        found.len(),
        1,
        "expected one episode in {function}:\n{report}"
    );
    // Every stack starts at the task's future: the executor's loop, its task
    // harness and pollwatch's wrapper are cut off.
    for stack in found[0].stacks() {
        for f in &stack.frames {
            for internal in [
                "worker::run",
                "task::harness::",
                "Watched<",
                "WatchFuture<",
                "Executor::run",
                "RawTask<",
            ] {
                assert!(
                    !f.function.contains(internal),
                    "executor frame {} left in the stack of {function}:\n{report}",
                    f.function
                );
            }
        }
    }
    found[0]
}

/// Runs `block` inside one watched task poll on a two-worker runtime and
/// returns the report and what `block` returned: for most blockers the time
/// they measured themselves, for some that and more (a return code, a buffer
/// to free outside the poll). The task is watched at the caller's line.
#[track_caller]
pub fn caught<T: Send + 'static>(
    test: &str,
    block: impl FnOnce() -> T + Send + 'static,
) -> (pollwatch::Report, T) {
    let guard = config(test).start().unwrap();
    let rt = tokio_runtime(2);
    let task = pollwatch::watch(async move {
        // Yield once so the blocking happens in a later poll of the task, as
        // it does in real code.
        tokio::task::yield_now().await;
        block()
    });
    let out = rt.block_on(async { tokio::spawn(task).await.unwrap() });
    drop(rt);
    (guard.finish().unwrap(), out)
}

/// A multi-thread tokio runtime hooked up to pollwatch.
pub fn tokio_runtime(workers: usize) -> tokio::runtime::Runtime {
    pollwatch::tokio::instrument(&mut tokio::runtime::Builder::new_multi_thread())
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}
