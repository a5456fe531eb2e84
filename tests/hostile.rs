//! A program that takes over pollwatch's sampling signal after `init()`:
//! pollwatch must notice, stop sending that signal (the program's handler
//! would take each sample for a real signal), move to a free real-time
//! signal, and keep reporting episodes with their stacks.

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
