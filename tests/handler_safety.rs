//! The signal handler must never deadlock or crash the host: thousands of
//! samples of threads inside malloc/free, and threads that exit while they
//! are being watched (and sampled).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

#[inline(never)]
fn malloc_free_loop(d: Duration, work: &AtomicU64) {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < d {
        for i in 0..64usize {
            let v: Vec<u8> = Vec::with_capacity(16 + i * 24);
            std::hint::black_box(&v);
            let b = Box::new([i as u64; 4]);
            std::hint::black_box(&b);
        }
        n += 1;
    }
    work.fetch_add(n, Ordering::Relaxed);
}

#[test]
fn thousands_of_samples_inside_malloc_and_free() {
    let _s = serial();
    let work = Arc::new(AtomicU64::new(0));
    let mut samples = 0u32;
    let mut episodes = 0usize;
    let started = Instant::now();
    // Rounds until thousands of samples were taken: how many fit in a second
    // depends on how loaded the machine is, so count rather than time them.
    while samples < 2000 && started.elapsed() < Duration::from_secs(60) {
        // Sample four times as often as the default to get there sooner.
        let guard = config("malloc")
            .sample_interval(Duration::from_micros(250))
            .start()
            .unwrap();
        // Two "executor" threads (custom executors, through the guard), each
        // blocking four polls for 250 ms in allocator calls.
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let work = work.clone();
                std::thread::spawn(move || {
                    for _ in 0..4 {
                        let _poll = pollwatch::enter_poll();
                        malloc_free_loop(Duration::from_millis(250), &work);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let report = guard.finish().unwrap();
        for ep in report.episodes() {
            assert!(ep.blocked_in("malloc_free_loop"), "{ep:?}");
        }
        samples += report.episodes().iter().map(|e| e.samples()).sum::<u32>();
        episodes += report.episodes().len();
    }
    assert!(
        samples >= 2000,
        "only {samples} samples in {episodes} episodes"
    );
    assert!(work.load(Ordering::Relaxed) > 0);
}

#[test]
fn threads_that_exit_while_watched() {
    let _s = serial();
    let guard = config("exiting").start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut spawned = 0;
    // Waves of threads that enter a poll, spin past the threshold and exit
    // without ever leaving it: the watchdog is sampling them as they die.
    while start.elapsed() < Duration::from_secs(2) {
        let wave: Vec<_> = (0..8)
            .map(|i| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    std::mem::forget(pollwatch::enter_poll());
                    cpu_spin(THRESHOLD + Duration::from_millis(2 + i));
                    std::hint::black_box(stop.load(Ordering::Relaxed));
                })
            })
            .collect();
        spawned += wave.len();
        for t in wave {
            t.join().unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let report = guard.finish().unwrap();
    assert!(spawned >= 16);
    for ep in report.episodes() {
        assert!(ep.duration() >= THRESHOLD, "{ep:?}");
    }
}

/// Blocks for 150 ms in one poll on a thread that blocks every signal: the
/// episode must still be reported and nothing hung. Returns the report.
fn blocked_signal_episode(test: &str, block: fn(Duration) -> Duration) -> pollwatch::Report {
    let _s = serial();
    let guard = config(test).start().unwrap();
    let t = std::thread::spawn(move || {
        block_all_signals();
        let _poll = pollwatch::enter_poll();
        block(Duration::from_millis(150));
    });
    t.join().unwrap();
    let report = guard.finish().unwrap();
    let ep = report
        .episodes()
        .first()
        .unwrap_or_else(|| panic!("episode with blocked signals not reported:\n{report}"));
    assert!(ep.duration() >= Duration::from_millis(100), "{report}");
    report
}

#[test]
fn a_sleeping_thread_with_the_signal_blocked_is_read_without_one() {
    // Some C libraries block all signals on their threads. A sleeping
    // thread is never signalled anyway: its stack is copied from outside.
    let report = blocked_signal_episode("blocked_signal", blocking_sleep);
    let ep = &report.episodes()[0];
    assert!(ep.blocked_in("blocking_sleep"), "{report}");
    assert_eq!(report.counters().missed_samples, 0, "{report}");
}

#[test]
fn a_cpu_loop_with_the_signal_blocked_is_still_reported() {
    // A running thread that blocks the signal cannot be sampled: /proc
    // shows it blocks the signal, and the episode is reported without a
    // stack, saying why, with the misses counted.
    let report = blocked_signal_episode("blocked_signal_cpu", cpu_spin);
    let ep = &report.episodes()[0];
    assert!(ep.on_cpu() > ep.off_cpu(), "{report}");
    assert!(
        ep.blocked_in("blocks the sampling signal"),
        "{report}\n{:?}",
        ep.stacks()
    );
    assert!(report.counters().missed_samples >= 1, "{report}");
}

fn block_all_signals() {
    // SAFETY: a zeroed sigset_t is valid input to sigfillset, and
    // pthread_sigmask only changes the calling thread's mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut()),
            0
        );
    }
}
