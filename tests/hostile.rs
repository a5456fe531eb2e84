//! Programs that behave the way pollwatch would rather they did not: one
//! that takes over the sampling signal after `init()` (pollwatch must
//! notice, stop sending that signal, move to a free real-time signal and
//! keep reporting episodes with their stacks), and threads that leave from
//! inside a poll (their episode must end as `thread_exited`, at the exit,
//! and their dead tid never be signalled).

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use support::*;

static APP_GOT: AtomicU32 = AtomicU32::new(0);

extern "C" fn app_handler(_sig: libc::c_int) {
    APP_GOT.fetch_add(1, Ordering::Relaxed);
}

#[inline(never)]
fn spin_after_takeover() -> Duration {
    cpu_spin(THRESHOLD * 5)
}

#[test]
fn a_program_that_takes_over_the_signal_never_receives_a_sample() {
    let _s = serial();
    let guard = config("takeover").start().unwrap();
    // SAFETY: installs a plain handler that only bumps an atomic counter.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = app_handler as *const () as usize;
        libc::sigemptyset(&mut act.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGURG, &act, std::ptr::null_mut()), 0);
    }
    let rt = tokio_runtime(2);
    let truth = rt.block_on(async {
        tokio::spawn(pollwatch::watch(async {
            tokio::task::yield_now().await;
            spin_after_takeover()
        }))
        .await
        .unwrap()
    });
    drop(rt);
    let report = guard.finish().unwrap();
    assert_eq!(
        APP_GOT.load(Ordering::Relaxed),
        0,
        "the program's own SIGURG handler received sampling signals"
    );
    let ep = episode_in(&report, "spin_after_takeover");
    assert_close(ep, truth, "episode after the takeover");
    // Sampled with the new signal: real stacks, not only "no stack".
    assert!(ep.stacks().iter().any(|s| !s.raw.is_empty()), "{report}");
}

#[inline(never)]
fn spin_then_return() -> Duration {
    cpu_spin(THRESHOLD * 3)
}

#[test]
fn a_poll_that_returned_before_finish_ended_by_returning() {
    let _s = serial();
    let guard = config("returned_before_finish").start().unwrap();
    std::thread::spawn(|| {
        let _poll = pollwatch::enter_poll();
        spin_then_return()
    })
    .join()
    .unwrap();
    // No watchdog tick in between, possibly: the stop itself must see it.
    let report = guard.finish().unwrap();
    let ep = episode_in(&report, "spin_then_return");
    assert_eq!(ep.ended_by(), pollwatch::EndedBy::PollReturned, "{report}");
}

/// Blocks inside the poll (`block` names the way), then leaves the thread by
/// the raw `exit` system call: no unwinding, no thread-local destructor, the
/// slot never released. Sends its tid and how long the poll had run by then
/// (the poll goes on until the exit itself).
#[inline(never)]
fn block_then_raw_exit(
    block: fn(Duration) -> Duration,
    tx: std::sync::mpsc::Sender<(i32, Duration)>,
    began: std::time::Instant,
) {
    // Long enough that the watchdog, however late on a saturated machine,
    // judged the poll an episode before the thread died: a thread's clock
    // dies with it, and a poll not judged by then is only counted
    // (`unseen_polls`).
    block(THRESHOLD * 10);
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    tx.send((tid, began.elapsed())).unwrap();
    // SAFETY: ends only this thread; its stack and std's bookkeeping for it
    // are leaked on purpose (the test never joins it).
    unsafe {
        libc::syscall(libc::SYS_exit, 0);
    }
    unreachable!("SYS_exit returned");
}

/// Runs `block_then_raw_exit` on its own thread under `futures`' executor,
/// waits for the thread to be gone and `after` more, and checks the episode
/// ended as `thread_exited`, at the exit.
fn raw_exit_case(test: &str, block: fn(Duration) -> Duration, after: Duration) {
    let _s = serial();
    let guard = config(test).start().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let began = std::time::Instant::now();
    std::thread::Builder::new()
        .name("raw-exit".into())
        .spawn(move || {
            futures::executor::block_on(pollwatch::watch(async move {
                block_then_raw_exit(block, tx, std::time::Instant::now())
            }))
        })
        .unwrap();
    let (tid, ran) = rx.recv().unwrap();
    let task = format!("/proc/self/task/{tid}");
    while std::path::Path::new(&task).exists() {
        std::thread::sleep(INTERVAL);
    }
    // Timed from before the thread was spawned until its tid was gone: the
    // poll lasted no longer.
    let gone = began.elapsed();
    std::thread::sleep(after);
    let report = guard.finish().unwrap();
    let eps: Vec<_> = report
        .episodes()
        .iter()
        .filter(|e| e.thread_name() == "raw-exit")
        .collect();
    assert_eq!(eps.len(), 1, "{report}");
    let ep = eps[0];
    assert_eq!(ep.ended_by(), pollwatch::EndedBy::ThreadExited, "{report}");
    // Nothing after the death is charged to it.
    assert_between(ep, ran, gone, "episode of a thread that exited");
    assert_signal_budget(&report);
    let jsonl = artifact(&report, "episodes.jsonl");
    assert_eq!(jsonl.lines().count(), 1, "{jsonl}");
    assert!(jsonl.contains(r#""ended_by":"thread_exited""#), "{jsonl}");
    // Never signalled at its dead tid: no sample was sent and left unanswered.
    assert_eq!(ep.missed_samples(), 0, "{report}");
    assert_eq!(report.counters().missed_samples, 0, "{report}");
}

#[test]
fn a_thread_that_exits_by_raw_syscall_while_on_cpu_is_thread_exited() {
    // Long after its death: none of that time may be charged to it.
    raw_exit_case("raw_exit_spin", cpu_spin, THRESHOLD * 10);
}

#[test]
fn a_thread_that_exits_by_raw_syscall_right_before_finish_is_thread_exited() {
    // No watchdog tick may have seen it gone: the stop must.
    raw_exit_case("raw_exit_stop", cpu_spin, Duration::ZERO);
}

#[test]
fn a_thread_that_exits_by_raw_syscall_after_sleeping_is_thread_exited() {
    raw_exit_case("raw_exit_sleep", blocking_sleep, THRESHOLD * 10);
}

/// The thread's own time in the poll, then how the thread leaves it.
#[inline(never)]
fn spin_then_leave() -> Duration {
    cpu_spin(THRESHOLD * 3)
}

/// Runs `body` on a thread named `name`, joins it, and returns the one
/// episode of that thread with its report.
fn left_in_poll(test: &str, name: &str, body: fn() -> Duration) -> (pollwatch::Report, Duration) {
    let _s = serial();
    let guard = config(test).start().unwrap();
    let truth = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let began = std::time::Instant::now();
            let r = std::panic::catch_unwind(body);
            (began.elapsed(), r.is_err())
        })
        .unwrap()
        .join()
        .unwrap()
        .0;
    (guard.finish().unwrap(), truth)
}

#[test]
fn a_thread_that_returns_with_a_leaked_poll_guard_is_thread_exited() {
    let (report, truth) = left_in_poll("leaked_guard", "leaks-guard", || {
        std::mem::forget(pollwatch::enter_poll());
        spin_then_leave()
    });
    let ep = episode_in(&report, "spin_then_leave");
    assert_eq!(ep.ended_by(), pollwatch::EndedBy::ThreadExited, "{report}");
    assert_close(
        ep,
        truth,
        "episode of a thread that left with its guard leaked",
    );
}

#[test]
fn a_thread_whose_poll_panics_out_of_it_is_thread_exited() {
    let (report, truth) = left_in_poll("panic_out", "panics-out", || {
        futures::executor::block_on(pollwatch::watch(async {
            spin_then_leave();
            panic!("the poll panics and the panic ends its thread");
        }))
    });
    let ep = episode_in(&report, "spin_then_leave");
    assert_eq!(ep.ended_by(), pollwatch::EndedBy::ThreadExited, "{report}");
    assert_close(
        ep,
        truth,
        "episode of a thread a panic took out of its poll",
    );
}

#[test]
fn a_panic_a_runtime_catches_leaves_the_poll_returned() {
    let _s = serial();
    let guard = config("panic_caught").start().unwrap();
    let rt = tokio_runtime(1);
    let (joined, worker_alive) = rt.block_on(async {
        let joined = tokio::spawn(pollwatch::watch(async {
            tokio::task::yield_now().await;
            spin_then_leave();
            panic!("the poll panics and tokio catches it");
        }))
        .await;
        // The same worker goes on: a later poll there is the proof.
        let alive = tokio::spawn(async { true }).await.unwrap();
        (joined, alive)
    });
    assert!(joined.is_err() && worker_alive);
    // The episode ends while the run goes on (the worker is seen to go on),
    // not only when pollwatch stops: its line is in episodes.jsonl before.
    let run = run_dir(
        &std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pollwatch-tests/panic_caught"),
    );
    // Not a tolerance: a guard against waiting forever (the first stack's
    // debug info takes seconds to load in a debug build on a loaded machine).
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let line = loop {
        let text = std::fs::read_to_string(run.join("episodes.jsonl")).unwrap_or_default();
        if !text.is_empty() || std::time::Instant::now() > until {
            break text;
        }
        std::thread::sleep(THRESHOLD);
    };
    assert!(line.contains(r#""ended_by":"poll_returned""#), "{line:?}");
    let report = guard.finish().unwrap();
    drop(rt);
    let ep = episode_in(&report, "spin_then_leave");
    assert_eq!(ep.ended_by(), pollwatch::EndedBy::PollReturned, "{report}");
}
