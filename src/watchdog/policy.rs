//! The watchdog's decision rules, as pure functions of what it observed.
//!
//! These rules are what a user trusts pollwatch for, so they depend only on
//! the kernel's accounting of the thread, never on whether a signal was
//! answered: a thread inside a long system call, or waiting for a CPU,
//! cannot answer, and that says nothing about whether the poll blocked.
//!
//! A poll's **own time** is its wall time minus the time its thread was
//! runnable but not running. The kernel adds a run-queue wait to
//! `schedstat` only when the wait ends, so:
//! - a thread seen **sleeping** (`S`/`D`) has every earlier wait accounted:
//!   the span's own time is exact, wall minus accounted waits;
//! - a thread seen **runnable** (`R`) may be in a wait not accounted yet:
//!   only its CPU time counts as its own (a lower bound), and the rest is
//!   presumed waiting (a credit that later accounted waits pay off, so no
//!   wait is subtracted twice).
//!
//! An episode starts when own time reaches the threshold. A short poll that
//! was preempted for long never does; a long one is found however loaded
//! the machine, because own time does not depend on the load.

use std::time::{Duration, Instant};

use crate::episode::Tag;
use crate::sys::proc::{Sched, Stat, Syscall};

/// Below this much CPU between two looks, a thread blocked in the same
/// syscall with the same arguments has not moved.
pub(crate) const PARKED_CPU: Duration = Duration::from_micros(200);

/// CPU a thread must get in a span, with a signal unanswered all along, for
/// that CPU to count as spent in the kernel (a long `read`, `munmap`, page
/// faults): a thread in user code answers within microseconds of getting a
/// CPU, so this much without an answer is not a race with the handler.
pub(crate) const KERNEL_CPU: Duration = Duration::from_micros(200);

/// What the thread's state letter says, for accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// `R`: running, or runnable and waiting for a CPU.
    Runnable,
    /// `S`, `D` and the other sleeping states.
    Blocked,
    /// `Z`, `X`, or unreadable: the thread is gone.
    Gone,
}

impl Seen {
    pub(crate) fn from_state(letter: Option<u8>) -> Seen {
        match letter {
            Some(b'R') => Seen::Runnable,
            Some(b'Z' | b'X') | None => Seen::Gone,
            Some(_) => Seen::Blocked,
        }
    }
}

/// One look at a thread: when, and its scheduler accounting then.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Point {
    pub(crate) at: Instant,
    pub(crate) sched: Sched,
}

/// How the time between two looks divides up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
    /// The poll's own time in the span.
    pub(crate) own: Duration,
    /// Time runnable but not running.
    pub(crate) runnable: Duration,
}

/// The running account of one poll, from its first look.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Account {
    last: Point,
    /// Wall time looked at so far (from the first look).
    pub(crate) wall: Duration,
    /// Own time so far.
    pub(crate) own: Duration,
    /// CPU time so far.
    pub(crate) cpu: Duration,
    /// Runnable-not-running time so far.
    pub(crate) runnable: Duration,
    /// Time presumed waiting (seen runnable without CPU) that the kernel
    /// has not accounted yet.
    credit: Duration,
}

impl Account {
    pub(crate) fn new(first: Point) -> Self {
        Account {
            last: first,
            wall: Duration::ZERO,
            own: Duration::ZERO,
            cpu: Duration::ZERO,
            runnable: Duration::ZERO,
            credit: Duration::ZERO,
        }
    }

    /// Counts the CPU a thread used in the `gap` before the first look,
    /// from its CPU clock `cpu_before` at the gap's start: own time for
    /// sure, whatever else the gap held (a lower bound, like any span seen
    /// runnable).
    pub(crate) fn add_unseen_cpu(&mut self, gap: Duration, cpu_before: u64) {
        let cpu = Duration::from_nanos(self.last.sched.cpu_ns.saturating_sub(cpu_before)).min(gap);
        self.wall += gap;
        self.own += cpu;
        self.cpu += cpu;
        self.runnable += gap - cpu;
    }

    /// When the last look was.
    pub(crate) fn last_at(&self) -> Instant {
        self.last.at
    }

    /// The thread's CPU clock at the last look.
    pub(crate) fn last_cpu_ns(&self) -> u64 {
        self.last.sched.cpu_ns
    }

    /// Takes a new look: the span since the previous one, classified by
    /// the state seen now.
    pub(crate) fn advance(&mut self, now: Point, seen: Seen) -> Span {
        let wall = now.at.saturating_duration_since(self.last.at);
        let cpu =
            Duration::from_nanos(now.sched.cpu_ns.saturating_sub(self.last.sched.cpu_ns)).min(wall);
        let mut waited =
            Duration::from_nanos(now.sched.wait_ns.saturating_sub(self.last.sched.wait_ns));
        // Waits accounted now may belong to earlier spans already presumed waiting.
        let paid = waited.min(self.credit);
        self.credit -= paid;
        waited -= paid;
        let span = match seen {
            Seen::Runnable | Seen::Gone => {
                let runnable = wall - cpu;
                // What this span presumed beyond the waits already accounted in it.
                self.credit += runnable.saturating_sub(waited);
                Span {
                    wall,
                    cpu,
                    own: cpu,
                    runnable,
                }
            }
            Seen::Blocked => {
                let runnable = waited.min(wall - cpu);
                Span {
                    wall,
                    cpu,
                    own: wall - runnable,
                    runnable,
                }
            }
        };
        self.wall += span.wall;
        self.own += span.own;
        self.cpu += span.cpu;
        self.runnable += span.runnable;
        self.last = now;
        span
    }

    /// The span from the last look to `end` (the poll's estimated end),
    /// split as the last state seen suggests: the tail after the last look
    /// has no look of its own.
    pub(crate) fn tail(&mut self, end: Instant, last_seen: Seen, last_span: Span) -> Span {
        let wall = end.saturating_duration_since(self.last.at);
        let span = match last_seen {
            Seen::Blocked => Span {
                wall,
                cpu: Duration::ZERO,
                own: wall,
                runnable: Duration::ZERO,
            },
            Seen::Runnable | Seen::Gone => {
                let share = |d: Duration| match last_span.wall.as_nanos() {
                    0 => d,
                    w => Duration::from_nanos(
                        (d.as_nanos() * last_span.cpu.as_nanos() / w).min(u64::MAX as u128) as u64,
                    ),
                };
                let cpu = share(wall);
                Span {
                    wall,
                    cpu,
                    own: cpu,
                    runnable: wall - cpu,
                }
            }
        };
        self.wall += span.wall;
        self.own += span.own;
        self.cpu += span.cpu;
        self.runnable += span.runnable;
        self.last.at = end.max(self.last.at);
        span
    }

    /// CPU and runnable time over a poll of `duration`, of which the
    /// account saw only `self.wall` (the start came before the first
    /// look): the unseen part is split as the seen part was.
    pub(crate) fn scaled_to(&self, duration: Duration) -> (Duration, Duration) {
        let scale = |d: Duration| match self.wall.as_nanos() {
            0 => Duration::ZERO,
            w => Duration::from_nanos(
                (d.as_nanos() * duration.as_nanos() / w).min(u64::MAX as u128) as u64,
            ),
        };
        let cpu = scale(self.cpu).min(duration);
        (cpu, scale(self.runnable).min(duration - cpu))
    }
}

/// What to do about a poll that is not an episode yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Look {
    /// Look again after this long.
    Again(Duration),
    /// Its own time crossed the threshold: an episode.
    Episode,
}

/// The watchdog's tick while nothing is stuck, for a given threshold: slow
/// enough that an idle watchdog costs next to nothing, fast enough that a
/// stuck poll is noticed within half a threshold of crossing it.
pub(crate) fn idle_tick(threshold: Duration) -> Duration {
    (threshold / 2).max(Duration::from_micros(250))
}

/// The decision for a poll seen `wall` into its run with `own` time of its
/// own (`None`: not measured yet, because its wall time is still below the
/// threshold and own time cannot exceed wall time).
pub(crate) fn look(
    wall: Duration,
    own: Option<Duration>,
    threshold: Duration,
    interval: Duration,
) -> Look {
    match own {
        _ if wall < threshold => Look::Again(threshold - wall),
        Some(own) if own >= threshold => Look::Episode,
        // Look again when the rest could at the earliest be done, but often
        // enough that a sleeping phase is measured in small steps: a thread
        // seen runnable counts only its CPU, so fewer looks lose sleep time.
        // (The sample interval may be the threshold itself: then it is
        // the step, never a bound past the other.)
        Some(own) => {
            let most = threshold / 4;
            Look::Again(((threshold - own) / 2).clamp(interval.min(most), most))
        }
        None => Look::Again(Duration::ZERO),
    }
}

/// How far a thread's CPU clock moved from the reading `before` to the
/// reading `after`.
pub(crate) fn cpu_between(before: u64, after: u64) -> Duration {
    Duration::from_nanos(after.saturating_sub(before))
}

/// Whether a poll longer than the threshold whose measured own time stayed
/// under it is excused as waiting for a CPU: only if its own time stays
/// under with its time asleep (`off_cpu`, as the looks measured it) and all
/// the CPU its thread used from before it began to after it ended (`cpu`,
/// from the thread's clock: its own and its neighbours' polls'). An excuse
/// says its own time was under the threshold; looks that came late at the
/// poll's start or end, or were preempted between their time and their
/// clock read, did not see enough of it to say so (measured: a poll of
/// 40 ms of its own CPU excused with 18 ms seen). Otherwise it is neither:
/// a poll that may have been long, counted unseen.
pub(crate) fn excusable(off_cpu: Duration, cpu: Duration, threshold: Duration) -> bool {
    off_cpu + cpu < threshold
}

/// CPU a runnable thread must have had since the last look before it is
/// signalled. Without it, it may be a thread just woken in the kernel,
/// waiting for a CPU to return from its call: a signal then turns a
/// `poll` that timed out into `EINTR`. A thread that got no CPU could not
/// have answered anyway.
pub(crate) const SIGNAL_CPU: Duration = Duration::from_micros(50);

/// Whether a running thread is inside the kernel, from how its user and
/// system times grew since `reference` (`None`: neither grew, 10 ms ticks
/// are coarse; keep the last judgement).
pub(crate) fn in_kernel(reference: Stat, now: Stat) -> Option<bool> {
    let user = now.user_ticks.saturating_sub(reference.user_ticks);
    let system = now.system_ticks.saturating_sub(reference.system_ticks);
    match (user, system) {
        (0, 0) => None,
        (0, _) => Some(true),
        _ => Some(false),
    }
}

/// How to get the stack for this sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
    /// The thread sits where it sat at the last sample: same stack.
    Same,
    /// Blocked in the kernel with a frozen user stack: copy it from outside,
    /// without interrupting the call.
    Read { sp: u64, pc: u64 },
    /// Running: signal it.
    Signal,
    /// A signal sent earlier is still unanswered: wait for it.
    Await,
    /// The thread is gone: account the time to the last stack.
    Nothing,
}

/// Chooses how to sample a thread seen `seen`, whose syscall line reads
/// `syscall`; `was_blocked`: the last look found it blocked in a call.
pub(crate) fn how(
    seen: Seen,
    syscall: Option<Syscall>,
    same_line: bool,
    cpu: Duration,
    pending: bool,
    can_read: bool,
    was_blocked: bool,
) -> How {
    match (seen, syscall) {
        (Seen::Gone, _) => How::Nothing,
        (Seen::Blocked, Some(Syscall::Blocked { sp, pc, .. })) => {
            if same_line && cpu < PARKED_CPU {
                How::Same
            } else if can_read {
                How::Read { sp, pc }
            } else if pending {
                How::Await
            } else {
                // Its memory cannot be read from outside (a seccomp profile
                // refuses process_vm_readv, or an emulator lacks it): the
                // signal, as pollwatch says at start, with its EINTR risk.
                How::Signal
            }
        }
        _ if pending => How::Await,
        _ if cpu < SIGNAL_CPU => How::Same,
        // Running again after a blocking call: it may still be on its way
        // out of that call, in the kernel, where a signal turns a `poll`
        // that timed out into EINTR (seen once in CI: a raw 300 ms `poll`
        // returned -4 after 300.6 ms; a vCPU the host preempts makes those
        // microseconds look like CPU). By the next look it is back in its
        // own code, or blocked again and read from outside.
        _ if was_blocked => How::Same,
        // Inside the kernel too: the signal stays armed until the call
        // returns, and its stack, taken there, shows where the call was made.
        _ => How::Signal,
    }
}

/// The state the span's own time is reported in. `unanswered` says that a
/// signal sent before the span began is still not answered at its end, or
/// that the thread's system time alone grew: its CPU went to the kernel.
pub(crate) fn tag(seen: Seen, syscall: Option<Syscall>, span: Span, unanswered: bool) -> Tag {
    match (seen, syscall) {
        (Seen::Blocked, Some(Syscall::Blocked { nr, .. })) => Tag::OffCpu { syscall: nr },
        (Seen::Blocked, _) => Tag::OffCpu { syscall: None },
        // Got CPU while the signal stayed pending: that CPU went to the kernel.
        _ if unanswered && span.cpu >= KERNEL_CPU => Tag::Kernel,
        _ => Tag::OnCpu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const T: Duration = Duration::from_millis(20);

    fn at(t0: Instant, ms: u64, cpu_ms: u64, wait_ms: u64) -> Point {
        Point {
            at: t0 + MS * ms as u32,
            sched: Sched {
                cpu_ns: cpu_ms * 1_000_000,
                wait_ns: wait_ms * 1_000_000,
            },
        }
    }

    /// Looks at a poll every `step` ms along a scripted timeline and
    /// returns its account: `script(ms) -> (cpu_ms, wait_ms, seen)`.
    fn run(until: u64, step: u64, script: impl Fn(u64) -> (u64, u64, Seen)) -> Account {
        let t0 = Instant::now();
        let mut a = Account::new(at(t0, 0, 0, 0));
        let mut ms = step;
        while ms <= until {
            let (cpu, wait, seen) = script(ms);
            a.advance(at(t0, ms, cpu, wait), seen);
            ms += step;
        }
        a
    }

    #[test]
    fn an_excuse_holds_only_with_all_the_threads_cpu_counted() {
        assert!(excusable(8 * MS, 5 * MS, T));
        assert!(!excusable(2 * MS, 18 * MS, T));
        assert!(!excusable(Duration::ZERO, T, T));
        assert!(excusable(Duration::ZERO, 19 * MS, T));
    }

    #[test]
    fn cpu_between_is_what_the_clock_moved() {
        let ms = |n: u64| n * 1_000_000;
        assert_eq!(cpu_between(ms(100), ms(104)), 4 * MS);
        // Readings out of order: nothing.
        assert_eq!(cpu_between(ms(100), ms(90)), Duration::ZERO);
    }

    #[test]
    fn quiet_machine_sleep_is_all_own_time() {
        let a = run(40, 5, |_| (0, 0, Seen::Blocked));
        assert_eq!(a.own, 40 * MS);
        assert_eq!(a.runnable, Duration::ZERO);
    }

    #[test]
    fn quiet_machine_cpu_loop_is_all_own_time() {
        let a = run(40, 5, |ms| (ms, 0, Seen::Runnable));
        assert_eq!(a.own, 40 * MS);
        assert_eq!(a.cpu, 40 * MS);
    }

    #[test]
    fn saturated_machine_cpu_loop_counts_only_its_cpu() {
        // Half the CPU; the waits are accounted late, each time it runs again.
        let a = run(80, 5, |ms| (ms / 2, ms / 2 - (ms / 2) % 10, Seen::Runnable));
        assert_eq!(a.own, 40 * MS);
        assert_eq!(a.runnable, 40 * MS);
        assert_eq!(look(80 * MS, Some(a.own), T, MS), Look::Episode);
    }

    #[test]
    fn preempted_short_poll_is_not_an_episode() {
        // 5 ms of CPU spread over 60 ms of waiting for one.
        let a = run(60, 5, |ms| (ms / 12, ms - ms / 12, Seen::Runnable));
        assert!(a.own < T, "{a:?}");
        assert!(matches!(look(60 * MS, Some(a.own), T, MS), Look::Again(_)));
    }

    #[test]
    fn waits_accounted_late_are_not_subtracted_twice() {
        // Seen runnable without CPU for 10 ms, then asleep: the 10 ms wait
        // shows up in schedstat only at the second look.
        let t0 = Instant::now();
        let mut a = Account::new(at(t0, 0, 0, 0));
        a.advance(at(t0, 10, 0, 0), Seen::Runnable);
        a.advance(at(t0, 30, 1, 10), Seen::Blocked);
        assert_eq!(a.runnable, 10 * MS);
        assert_eq!(a.own, 20 * MS);
    }

    #[test]
    fn sleep_then_spin_is_measured_by_frequent_looks() {
        // 19 ms asleep, then 21 ms on CPU; looks every millisecond while a
        // candidate: both phases count.
        let a = run(40, 1, |ms| {
            if ms <= 19 {
                (0, 0, Seen::Blocked)
            } else {
                (ms - 19, 0, Seen::Runnable)
            }
        });
        assert_eq!(a.own, 40 * MS);
    }

    #[test]
    fn host_stopped_cpu_without_waits_counts_as_own_time() {
        // The hypervisor stopped the vCPU: the guest charges the time to the
        // thread as CPU. pollwatch cannot tell that from a CPU loop, and says
        // so in the README; it is own time by the kernel's account.
        let a = run(30, 5, |ms| (ms, 0, Seen::Runnable));
        assert_eq!(a.own, 30 * MS);
    }

    #[test]
    fn new_thread_is_measured_from_its_first_look_like_any_other() {
        // The account starts at the first look, whatever the thread's age:
        // a 40 ms spin first seen 5 ms in reaches the threshold.
        let a = run(35, 5, |ms| (ms, 0, Seen::Runnable));
        assert_eq!(look(40 * MS, Some(a.own), T, MS), Look::Episode);
    }

    #[test]
    fn cpu_before_the_first_look_counts() {
        // A tick saw the thread between polls at CPU 100 ms; the first look
        // at its poll came 15 ms later (a starved watchdog) at 112 ms.
        let t0 = Instant::now();
        let mut a = Account::new(at(t0, 15, 112, 0));
        a.add_unseen_cpu(15 * MS, 100_000_000);
        assert_eq!(a.own, 12 * MS);
        assert_eq!(a.wall, 15 * MS);
        a.advance(at(t0, 25, 122, 0), Seen::Runnable);
        assert_eq!(a.own, 22 * MS);
    }

    #[test]
    fn looks_before_the_threshold_need_no_accounting() {
        assert_eq!(look(5 * MS, None, T, MS), Look::Again(15 * MS));
        assert_eq!(look(25 * MS, Some(19 * MS), T, MS), Look::Again(MS));
        assert_eq!(look(25 * MS, Some(2 * MS), T, MS), Look::Again(5 * MS));
        assert_eq!(look(25 * MS, None, T, MS), Look::Again(Duration::ZERO));
        // An interval past a quarter threshold (it may be the threshold
        // itself): the memory benchmark's 1 ms threshold with the default
        // 1 ms interval panicked the watchdog here.
        assert_eq!(look(2 * MS, Some(MS / 2), MS, MS), Look::Again(MS / 4));
        let us = Duration::from_micros;
        assert_eq!(
            look(us(150), Some(us(100)), us(100), us(100)),
            Look::Episode
        );
        assert!(matches!(
            look(us(150), Some(us(50)), us(100), us(100)),
            Look::Again(_)
        ));
    }

    #[test]
    fn blocked_threads_are_never_signalled() {
        let blocked = Some(Syscall::Blocked {
            nr: Some(230),
            sp: 0x1000,
            pc: 0x2000,
        });
        assert_eq!(
            how(Seen::Blocked, blocked, false, MS, false, true, false),
            How::Read {
                sp: 0x1000,
                pc: 0x2000
            }
        );
        assert_eq!(
            how(
                Seen::Blocked,
                blocked,
                true,
                Duration::ZERO,
                false,
                true,
                false
            ),
            How::Same
        );
        // Unless its memory cannot be read from outside: then the signal.
        assert_eq!(
            how(Seen::Blocked, blocked, false, MS, false, false, false),
            How::Signal
        );
        let running = Some(Syscall::Running);
        assert_eq!(
            how(Seen::Runnable, running, false, MS, false, true, false),
            How::Signal
        );
        assert_eq!(
            how(Seen::Runnable, running, false, MS, true, true, false),
            How::Await
        );
        // Running again, with CPU, right after a look found it blocked: maybe
        // still in the kernel on its way out of that call. Not signalled
        // until a later look finds it running too.
        assert_eq!(
            how(Seen::Runnable, running, false, MS, false, true, true),
            How::Same
        );
        // Runnable without CPU since the last look: maybe just woken inside
        // a syscall (a `poll` that timed out would turn into EINTR), and it
        // could not answer anyway: not signalled.
        assert_eq!(
            how(
                Seen::Runnable,
                running,
                false,
                Duration::ZERO,
                false,
                true,
                false
            ),
            How::Same
        );
        assert_eq!(
            how(Seen::Gone, None, false, MS, true, true, false),
            How::Nothing
        );
    }

    #[test]
    fn long_syscall_on_cpu_reads_as_kernel_time() {
        let span = Span {
            wall: MS,
            cpu: MS,
            own: MS,
            runnable: Duration::ZERO,
        };
        let running = Some(Syscall::Running);
        assert_eq!(tag(Seen::Runnable, running, span, false), Tag::OnCpu);
        assert_eq!(tag(Seen::Runnable, running, span, true), Tag::Kernel);
        // Waiting for a CPU with a signal unanswered is not kernel time.
        let waiting = Span {
            cpu: Duration::ZERO,
            own: Duration::ZERO,
            runnable: MS,
            ..span
        };
        assert_eq!(tag(Seen::Runnable, running, waiting, true), Tag::OnCpu);
        let nanosleep = Some(Syscall::Blocked {
            nr: Some(230),
            sp: 1,
            pc: 2,
        });
        assert_eq!(
            tag(Seen::Blocked, nanosleep, span, false),
            Tag::OffCpu { syscall: Some(230) }
        );
    }

    #[test]
    fn a_poll_ending_between_looks_keeps_the_last_state() {
        let t0 = Instant::now();
        let mut a = Account::new(at(t0, 0, 0, 0));
        let s = a.advance(at(t0, 20, 20, 0), Seen::Runnable);
        let tail = a.tail(t0 + 25 * MS, Seen::Runnable, s);
        assert_eq!(tail.own, 5 * MS);
        let mut b = Account::new(at(t0, 0, 0, 0));
        let s = b.advance(at(t0, 20, 0, 0), Seen::Blocked);
        assert_eq!(b.tail(t0 + 22 * MS, Seen::Blocked, s).own, 2 * MS);
    }

    #[test]
    fn the_idle_tick_is_half_the_threshold_and_at_least_250_us() {
        assert_eq!(idle_tick(20 * MS), 10 * MS);
        let us = Duration::from_micros;
        assert_eq!(idle_tick(us(300)), us(250));
        // The deprecated `Config::idle_tick` restates the rule.
        for threshold in [us(1), us(300), us(500), 20 * MS, 1000 * MS] {
            #[allow(deprecated)]
            let config = crate::Config::default().threshold(threshold).idle_tick();
            assert_eq!(config, idle_tick(threshold), "{threshold:?}");
        }
    }
}
