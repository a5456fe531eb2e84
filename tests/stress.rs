//! Stress: pollwatch inside programs that make its job hard, at volume.
//! Every case counts what it did and checks pollwatch counted the same:
//! every blocked poll is an episode, every episode is a line of
//! `episodes.jsonl`, every sample's time is in a stack, and whatever was
//! left out of memory or lost is in a counter. A crash or a deadlock fails
//! the run (a deadlock aborts it, see [`deadline`]).
//!
//! Sizes: small by default, so the normal suite stays quick; the issue's
//! sizes with `POLLWATCH_STRESS=full` (CI runs them in release):
//! 100,000 samples of threads inside `malloc`/`free`, `dlopen`/`dlclose`
//! and `Backtrace::force_capture`; 1,000 runtimes built and dropped while
//! blocking; 64 workers blocked at once; 10,000 short episodes in a minute.
//! Each test prints one `stress:` line with its figures (README table).
//!
//! Every case is `#[ignore]`d in the normal suite, which runs in debug
//! while other test binaries run: `.ci/run` runs them all at full size in
//! release, one after another (`POLLWATCH_STRESS=full cargo test --release
//! --all-features --test stress -- --ignored --test-threads 1`, ~4 min).
//! An episode's stack may be missing only where pollwatch's own thread was
//! kept from a CPU across most of the poll, and the episode says why.

mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{out_dir, serial, thread_cpu_time};

/// A short threshold and the shortest interval, to take many samples fast.
const THRESHOLD: Duration = Duration::from_millis(1);
const INTERVAL: Duration = Duration::from_micros(100);
/// The threshold for the cases that count episodes: short, but long
/// enough that a watchdog kept from a CPU by other processes still looks
/// at every poll of a few thresholds (at 1 ms a saturated machine makes it
/// late by more than a poll, and some polls go unjudged).
const SHORT: Duration = Duration::from_millis(2);

fn full() -> bool {
    std::env::var("POLLWATCH_STRESS").is_ok_and(|v| v == "full")
}

/// `full` at the size, `small` otherwise.
fn size(full_size: usize, small: usize) -> usize {
    if full() {
        full_size
    } else {
        small
    }
}

fn config(test: &str) -> pollwatch::Config {
    config_with(test, THRESHOLD)
}

/// With `threshold` instead of the shortest.
fn config_with(test: &str, threshold: Duration) -> pollwatch::Config {
    pollwatch::Config::default()
        .threshold(threshold)
        .sample_interval(INTERVAL)
        .live(false)
        .output_dir(out_dir(&format!("stress-{test}")))
}

/// Aborts the process if the case is not done by `limit`: a deadlock in a
/// signal handler or in pollwatch's threads shows as a failed run, not a
/// CI job that hangs until it is killed.
fn deadline(case: &'static str, limit: Duration) -> Arc<std::sync::atomic::AtomicBool> {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if d.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("stress: {case} not done after {limit:?}: deadlock?");
        std::process::abort();
    });
    done
}

/// Peak resident memory of this process so far, from `/proc/self/status`.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Runs `work` over and over inside one poll until the thread has used
/// `cpu` of its own CPU time (however loaded the machine), checking the
/// clock between calls so the samples land in `work`.
#[inline(never)]
fn poll_doing(work: fn(), cpu: Duration) {
    let start = thread_cpu_time();
    while thread_cpu_time() - start < cpu {
        // The clock is a system call, where a loaded machine's scheduler
        // preempts a thread (and a late sample lands): read it rarely.
        for _ in 0..8 {
            work();
        }
    }
}

#[inline(never)]
fn allocate_and_free() {
    for n in [16usize, 200, 4096, 70_000] {
        let v: Vec<u8> = Vec::with_capacity(n);
        std::hint::black_box(&v);
    }
    let b = Box::new([0u64; 32]);
    std::hint::black_box(&b);
}

#[inline(never)]
fn dlopen_and_dlclose() {
    // libz: on every Debian system, and not linked into the test, so each
    // dlopen maps it and each dlclose unmaps it again.
    // SAFETY: a NUL-terminated name; the handle is closed at once and
    // nothing from the library is called.
    unsafe {
        let h = libc::dlopen(c"libz.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!h.is_null(), "dlopen(libz.so.1) failed");
        assert_eq!(libc::dlclose(h), 0);
    }
}

#[inline(never)]
fn capture_own_backtrace() {
    let bt = std::backtrace::Backtrace::force_capture();
    std::hint::black_box(&bt);
}

/// What a run of polls did, as the program counted it.
struct Ran {
    polls: usize,
    threads: usize,
}

/// Checks the report against what the program did, and returns the
/// samples taken. Each assertion is a way an episode or a sample could be
/// lost without a word.
fn check_counts(case: &str, report: &pollwatch::Report, ran: &Ran) -> u64 {
    let c = report.counters();
    // Every poll used its own CPU for many thresholds: each is an episode.
    // Only what pollwatch says it could not judge may be missing: a poll
    // excused as waiting for a CPU, or one that came and went while its
    // own thread was kept from a CPU (an upper bound).
    let polls = ran.polls as u64;
    let judged = report.total_episodes() + c.descheduled;
    assert!(
        report.total_episodes() <= polls && judged <= polls && polls - judged <= c.unseen_polls,
        "{case}: {} episodes + {} excused as waiting for a CPU, {} unseen at most, for {polls} blocked polls; \
         counters {c:?}",
        report.total_episodes(),
        c.descheduled,
        c.unseen_polls,
    );
    let lines = support::artifact(report, "episodes.jsonl").lines().count() as u64;
    assert_eq!(
        lines,
        report.total_episodes(),
        "{case}: episodes.jsonl lines"
    );
    assert_eq!(
        report.episodes().len() as u64 + c.dropped_episodes,
        report.total_episodes(),
        "{case}: episodes kept in memory plus those left out"
    );
    // The summary's call sites count every episode, those past the
    // in-memory limit too (all of them when it lists them all).
    let summary = support::artifact(report, "summary.txt");
    let sites: Vec<u64> = summary
        .lines()
        .skip_while(|l| !l.starts_with("top blocking call sites:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split('×').next()?.split_whitespace().last()?.parse().ok())
        .collect();
    if !sites.is_empty() && sites.len() < 10 {
        assert_eq!(
            sites.iter().sum::<u64>(),
            report.total_episodes(),
            "{case}: the summary's call sites\n{summary}"
        );
    }
    assert_eq!(c.unwatched_threads, 0, "{case}: threads not watched");
    let tids: HashSet<i32> = report.episodes().iter().map(|e| e.tid()).collect();
    assert!(tids.len() <= ran.threads, "{case}: {} tids", tids.len());
    let mut samples = 0u64;
    let mut missed = 0u64;
    for ep in report.episodes() {
        assert_eq!(
            ep.ended_by(),
            pollwatch::EndedBy::PollReturned,
            "{case}: {ep:?}"
        );
        assert!(
            ep.samples() > 0,
            "{case}: an episode without samples: {ep:?}"
        );
        // Each sample's time went to a stack (or to a stack saying why it
        // has none): the stacks' weights add up to the episode's own time,
        // as far as the episode's bounds are known (its reported
        // uncertainty), to a microsecond per sample (weights are whole
        // microseconds) and an interval either side.
        let weights: Duration = ep.stacks().iter().map(|s| s.weight).sum();
        let own = ep.on_cpu() + ep.off_cpu();
        let slack = ep.duration_uncertainty()
            + INTERVAL * 2
            + Duration::from_micros(u64::from(ep.samples()));
        assert!(
            weights.abs_diff(own) <= slack,
            "{case}: stacks weigh {weights:?}, own time {own:?}, ± {slack:?} ({} samples)",
            ep.samples()
        );
        // A stack for each episode, except where pollwatch's own thread was
        // kept from a CPU across most of the poll (its bounds uncertain by
        // more than a threshold): then the episode still stands, saying
        // why it has no stack.
        let stackless = !ep.stacks().iter().any(|s| !s.raw.is_empty());
        assert!(
            !stackless
                || ep.duration_uncertainty() > report.threshold()
                    && ep.frames()[0].function.starts_with("[no stack: "),
            "{case}: an episode with no stack at all: {ep:?}"
        );
        samples += u64::from(ep.samples());
        missed += u64::from(ep.missed_samples());
    }
    if c.dropped_episodes == 0 {
        assert_eq!(missed, c.missed_samples, "{case}: missed samples");
    }
    samples
}

/// Polls doing `work` on two threads, round after round (each round one
/// guard, its counts checked) until `target` samples were taken.
/// `name` is `work`'s function name, as the stacks show it.
fn samples_inside(case: &'static str, work: fn(), name: &str, target: u64) {
    let _s = serial();
    let done = deadline(case, Duration::from_secs(600));
    let began = Instant::now();
    // 20 thresholds of own CPU per poll: ~190 samples, under the watchdog's
    // backoff (it halves the rate after 200).
    let poll_cpu = THRESHOLD * 20;
    let threads = 2;
    let per_round = (target / 150).clamp(4, 400) as usize;
    let (mut samples, mut episodes, mut rounds) = (0u64, 0u64, 0);
    let (mut captured, mut missed, mut dropped) = (0u64, 0u64, 0u64);
    while samples < target {
        rounds += 1;
        assert!(
            rounds <= 20,
            "{case}: {samples} samples after {rounds} rounds"
        );
        let guard = config(case).start().unwrap();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..per_round / threads {
                        let _poll = pollwatch::enter_poll();
                        poll_doing(work, poll_cpu);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let report = guard.finish().unwrap();
        let ran = Ran {
            polls: per_round / threads * threads,
            threads,
        };
        samples += check_counts(case, &report, &ran);
        episodes += report.total_episodes();
        captured += report.overhead().samples_captured;
        missed += report.counters().missed_samples;
        dropped += report.counters().dropped_samples;
        // The program's own function is in the stacks: samples were taken
        // inside its work, and unwound out of it.
        let named = report.blocked_in(name).count();
        assert!(named > 0, "{case}: no episode names {name}\n{report}");
    }
    done.store(true, Ordering::Relaxed);
    println!(
        "stress: {case}: {samples} samples ({captured} by signal, {missed} missed, {dropped} stacks dropped) \
         in {episodes} episodes, {rounds} round(s), {:.1} s, peak RSS {:.0} MiB",
        began.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
}

#[test]
#[ignore = "full size in release, run by .ci/run: POLLWATCH_STRESS=full cargo test --release --test stress -- --ignored"]
fn samples_inside_malloc_and_free() {
    samples_inside(
        "malloc_free",
        allocate_and_free,
        "allocate_and_free",
        size(100_000, 3_000) as u64,
    );
}

#[test]
#[ignore = "full size in release, run by .ci/run: POLLWATCH_STRESS=full cargo test --release --test stress -- --ignored"]
fn samples_inside_dlopen_and_dlclose() {
    samples_inside(
        "dlopen_dlclose",
        dlopen_and_dlclose,
        "dlopen_and_dlclose",
        size(100_000, 3_000) as u64,
    );
}

#[test]
#[ignore = "full size in release, run by .ci/run: POLLWATCH_STRESS=full cargo test --release --test stress -- --ignored"]
fn samples_inside_backtrace_force_capture() {
    samples_inside(
        "force_capture",
        capture_own_backtrace,
        "capture_own_backtrace",
        size(100_000, 3_000) as u64,
    );
}

/// Polls of a few thresholds of own CPU, as many as `n`, on two threads.
#[test]
#[ignore = "full size in release, run by .ci/run: POLLWATCH_STRESS=full cargo test --release --test stress -- --ignored"]
fn short_episodes_by_the_thousand() {
    let _s = serial();
    let case = "short_episodes";
    let n = size(10_000, 400);
    let done = deadline(case, Duration::from_secs(600));
    let guard = config_with(case, SHORT).start().unwrap();
    let began = Instant::now();
    let threads = 2;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..n / threads {
                    let _poll = pollwatch::enter_poll();
                    poll_doing(allocate_and_free, SHORT * 4);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let ran_for = began.elapsed();
    let report = guard.finish().unwrap();
    let samples = check_counts(case, &report, &Ran { polls: n, threads });
    done.store(true, Ordering::Relaxed);
    println!(
        "stress: {case}: {} episodes in {:.1} s ({} kept in memory, {} in episodes.jsonl only), \
         {samples} samples, peak RSS {:.0} MiB",
        report.total_episodes(),
        ran_for.as_secs_f64(),
        report.episodes().len(),
        report.counters().dropped_episodes,
        peak_rss_mib()
    );
}

/// A runtime whose one worker is blocked in a watched task is dropped
/// (which waits for the worker), a thousand times: threads register and
/// leave, slots are reused, and every episode ends as the poll returning.
#[test]
#[ignore = "full size in release, run by .ci/run: POLLWATCH_STRESS=full cargo test --release --test stress -- --ignored"]
fn runtimes_built_and_dropped_while_blocking() {
    let _s = serial();
    let case = "runtimes";
    let n = size(1_000, 50);
    let done = deadline(case, Duration::from_secs(600));
    let guard = config_with(case, SHORT).start().unwrap();
    let began = Instant::now();
    for _ in 0..n {
        let rt = pollwatch::tokio::instrument(&mut tokio::runtime::Builder::new_multi_thread())
            .worker_threads(1)
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(pollwatch::watch(async move {
            tx.send(unsafe { libc::syscall(libc::SYS_gettid) } as i32)
                .unwrap();
            poll_doing(allocate_and_free, SHORT * 4);
        }));
        rx.recv().unwrap();
        drop(rt);
    }
    let ran_for = began.elapsed();
    let report = guard.finish().unwrap();
    // Each runtime had its own worker thread (tids may repeat, reused).
    let samples = check_counts(
        case,
        &report,
        &Ran {
            polls: n,
            threads: n,
        },
    );
    done.store(true, Ordering::Relaxed);
    println!(
        "stress: {case}: {n} runtimes built and dropped while blocking, {} episodes, {samples} samples, \
         {:.1} s, peak RSS {:.0} MiB",
        report.total_episodes(),
        ran_for.as_secs_f64(),
        peak_rss_mib()
    );
}

/// 64 workers of one runtime blocked at the same time, each in its own
/// episode.
#[test]
#[ignore = "full size in release, run by .ci/run: POLLWATCH_STRESS=full cargo test --release --test stress -- --ignored"]
fn sixty_four_workers_blocked_at_once() {
    let _s = serial();
    let case = "64_workers";
    let workers = 64;
    let done = deadline(case, Duration::from_secs(300));
    let guard = support::config(case).live(false).start().unwrap();
    let began = Instant::now();
    let rt = pollwatch::tokio::instrument(&mut tokio::runtime::Builder::new_multi_thread())
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let gate = Arc::new(std::sync::Barrier::new(workers));
    let blocked_for = support::THRESHOLD * 5;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let gate = gate.clone();
            rt.spawn(pollwatch::watch(async move {
                // Blocks its worker until all 64 are blocked, so the others
                // must be picked up by other workers; then all sleep.
                gate.wait();
                let at = Instant::now();
                std::thread::sleep(blocked_for);
                at
            }))
        })
        .collect();
    let mut ends = Vec::new();
    rt.block_on(async {
        for t in tasks {
            ends.push(t.await.unwrap());
        }
    });
    drop(rt);
    let ran_for = began.elapsed();
    let report = guard.finish().unwrap();
    assert_eq!(
        report.total_episodes(),
        workers as u64,
        "{:?}\n{report}",
        report.counters()
    );
    let tids: HashSet<i32> = report.episodes().iter().map(|e| e.tid()).collect();
    assert_eq!(tids.len(), workers, "one episode per worker");
    // All were blocked at once by construction: none left the gate before
    // all 64 were inside their poll.
    assert_eq!(ends.len(), workers);
    for ep in report.episodes() {
        let at_most = ep.duration() + ep.duration_uncertainty() + INTERVAL;
        assert!(at_most >= blocked_for, "{ep:?}");
        assert!(ep.samples() > 0, "{ep:?}");
        assert!(ep.stacks().iter().any(|s| !s.raw.is_empty()), "{ep:?}");
    }
    assert_eq!(report.counters().unwatched_threads, 0);
    let samples: u64 = report
        .episodes()
        .iter()
        .map(|e| u64::from(e.samples()))
        .sum();
    done.store(true, Ordering::Relaxed);
    println!(
        "stress: {case}: {workers} workers blocked at once, {} episodes on {} threads, {samples} samples, \
         {:.1} s, peak RSS {:.0} MiB",
        report.total_episodes(),
        tids.len(),
        ran_for.as_secs_f64(),
        peak_rss_mib()
    );
}
