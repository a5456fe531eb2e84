//! The watchdog: one thread that notices a worker stuck inside one poll.
//!
//! Each tick it reads every slot's epoch and remembers `(epoch, first_seen)`.
//! An odd epoch unchanged for longer than the threshold is an episode, unless
//! the time went to waiting for a CPU (the thread was runnable but the OS ran
//! something else: not the program's blocking). While an episode runs it asks
//! the sampler for a stack every interval, except when the thread still sits
//! in the same syscall without using CPU: then the previous stack just gets
//! the time (async-profiler's trick), and the thread is left alone.
//!
//! The tick adapts: half the threshold while nothing is stuck (100 wake-ups
//! a second by default, the floor of an idle pollwatch's cost), the sample
//! interval while an episode runs.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::episode::{EndReason, Event, Started, Tag, WatchdogStats as Stats};
use crate::registry::{self, Slot};
use crate::sampler::{self, Missed, Target};

/// How long the watchdog waits for a signal handler to answer.
const SAMPLE_DEADLINE: Duration = Duration::from_millis(10);
/// After this many samples in one episode the interval doubles (and again
/// after as many more), so an hour-long stall costs little.
const BACKOFF_EVERY: u32 = 200;
/// Longest interval the backoff reaches.
const MAX_INTERVAL: Duration = Duration::from_millis(100);
/// Below this much CPU between two samples, a thread parked in the same
/// syscall is assumed not to have moved.
const PARKED_CPU: Duration = Duration::from_micros(200);

/// What the watchdog needs from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) threshold: Duration,
    pub(crate) interval: Duration,
    pub(crate) signal: i32,
}

/// Stop flag plus the condvar the watchdog sleeps on.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    pub(crate) fn request(&self) {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Sleeps until `until` or a stop request; returns true when stopping.
    fn sleep_until(&self, until: Instant) -> bool {
        let mut stop = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if *stop {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            stop = self
                .cv
                .wait_timeout(stop, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Scheduler accounting of one thread.
#[derive(Clone, Copy, Debug, Default)]
struct Sched {
    /// Time on a CPU (exact, from the thread's CPU clock).
    cpu_ns: u64,
    /// Time runnable but waiting for a CPU, from `schedstat`. The kernel adds
    /// a wait when it ends, so a wait still going on is not in it yet.
    wait_ns: u64,
}

/// Open `/proc` files of one thread; `pread` on them is one syscall each.
struct Proc {
    tid: i32,
    schedstat: Option<File>,
    syscall: Option<File>,
    stat: Option<File>,
}

impl Proc {
    fn open(tid: i32) -> Self {
        let dir = format!("/proc/self/task/{tid}");
        Proc {
            tid,
            schedstat: File::open(format!("{dir}/schedstat")).ok(),
            syscall: File::open(format!("{dir}/syscall")).ok(),
            stat: File::open(format!("{dir}/stat")).ok(),
        }
    }

    fn sched(&self) -> Option<Sched> {
        let cpu_ns = crate::sys::thread::cpu_time_ns(self.tid)?;
        let mut buf = [0u8; 96];
        let wait_ns = self
            .schedstat
            .as_ref()
            .and_then(|f| f.read_at(&mut buf, 0).ok())
            .and_then(|n| {
                std::str::from_utf8(&buf[..n])
                    .ok()?
                    .split_ascii_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        Some(Sched { cpu_ns, wait_ns })
    }

    /// The thread's state letter (`R` running or runnable, `S` sleeping, `D`
    /// uninterruptible), from `stat`.
    fn state(&self) -> Option<u8> {
        let mut buf = [0u8; 256];
        let n = self.stat.as_ref()?.read_at(&mut buf, 0).ok()?;
        // The name in parentheses may contain anything; the state follows the last ')'.
        let close = buf[..n].iter().rposition(|&b| b == b')')?;
        buf.get(close + 2).copied()
    }

    /// The syscall line: `running`, or `nr args... sp pc` while in a syscall.
    fn syscall(&self, buf: &mut [u8; 192]) -> Option<usize> {
        self.syscall.as_ref()?.read_at(buf, 0).ok()
    }

    /// Whether signal `sig` sits pending and blocked on the thread (`SigPnd`
    /// and `SigBlk` in `status`): it blocks the signal itself. The blocked
    /// mask alone would also show our own handler running late, which
    /// blocks every signal while it runs, but then the signal is no longer
    /// pending. Read only after a sample went unanswered, so the file is not
    /// kept open.
    fn holds_blocked(&self, sig: i32) -> Option<bool> {
        let status =
            std::fs::read_to_string(format!("/proc/self/task/{}/status", self.tid)).ok()?;
        let mask = |field: &str| {
            let hex = status.lines().find_map(|l| l.strip_prefix(field))?.trim();
            u64::from_str_radix(hex, 16).ok()
        };
        let bit = 1u64 << ((sig.max(1) - 1) % 64);
        Some(mask("SigPnd:")? & mask("SigBlk:")? & bit != 0)
    }
}

/// A running episode.
struct Live {
    id: u64,
    start: Instant,
    /// How far `start` may be from the truth: half the gap between the tick
    /// that did not see the poll and the one that did.
    start_uncertainty: Duration,
    last_sample: Instant,
    next_sample: Instant,
    interval: Duration,
    missed: u32,
    samples: u32,
    /// Samples that show the thread really was where it seemed: signals
    /// answered. (A thread whose stack range is unknown cannot be sampled at
    /// all; its samples count here too.)
    answered: u32,
    /// Unanswered signals that the thread could have taken (not blocked, not
    /// in uninterruptible sleep): it got no CPU to run the handler on in
    /// time, waiting for one or (in a virtual machine) on a virtual CPU the
    /// hypervisor had stopped, which the guest still counts as running.
    starved: u32,
    last_sched: Option<Sched>,
    /// The syscall line of the last signalled sample, when it was off-CPU.
    parked_at: Option<([u8; 192], usize)>,
    last_tag: Tag,
    reported: u8,
    excused: Arc<std::sync::atomic::AtomicBool>,
}

/// What the watchdog remembers about one slot.
struct Track {
    slot: &'static Slot,
    generation: u64,
    tid: i32,
    epoch: u64,
    /// When this epoch was first seen, and when the previous tick ran (the
    /// poll began somewhere in between).
    first_seen: Instant,
    /// The tick before `first_seen`.
    seen_after: Instant,
    prev_tick: Instant,
    base: Option<Sched>,
    /// This poll was found long only because the thread waited for a CPU.
    descheduled: bool,
    proc: Option<Proc>,
    live: Option<Live>,
}

impl Track {
    /// `last_tick`: the watchdog's previous tick. The thread registered after
    /// it (or the slot would have been tracked then), so a poll it is already
    /// in began after it too.
    fn new(slot: &'static Slot, now: Instant, last_tick: Instant) -> Self {
        Track {
            slot,
            generation: slot.generation.load(Ordering::Acquire),
            tid: slot.tid.load(Ordering::Acquire),
            epoch: slot.epoch.load(Ordering::Acquire),
            first_seen: now,
            seen_after: last_tick,
            prev_tick: last_tick,
            base: None,
            descheduled: false,
            proc: None,
            live: None,
        }
    }

    fn proc(&mut self) -> &Proc {
        let tid = self.tid;
        self.proc.get_or_insert_with(|| Proc::open(tid))
    }

    /// When the poll most likely began: halfway between the last tick that
    /// did not see it and the first that did.
    fn poll_start(&self) -> Instant {
        self.seen_after + self.first_seen.saturating_duration_since(self.seen_after) / 2
    }
}

pub(crate) struct Watchdog {
    settings: Settings,
    tx: SyncSender<Event>,
    stop: Arc<Stop>,
    stats: Stats,
    next_id: u64,
    tracks: Vec<Track>,
    version: u64,
    snapshot: Vec<&'static Slot>,
    last_tick: Instant,
}

impl Watchdog {
    pub(crate) fn new(settings: Settings, tx: SyncSender<Event>, stop: Arc<Stop>) -> Self {
        Watchdog {
            settings,
            tx,
            stop,
            stats: Stats::default(),
            next_id: 1,
            tracks: Vec::new(),
            version: u64::MAX,
            snapshot: Vec::new(),
            last_tick: Instant::now(),
        }
    }

    fn idle_tick(&self) -> Duration {
        crate::config::idle_tick(self.settings.threshold)
    }

    /// Runs until a stop request; ends every open episode on the way out.
    pub(crate) fn run(mut self) {
        let mut wake = Instant::now();
        loop {
            if self.stop.sleep_until(wake) {
                break;
            }
            let now = Instant::now();
            wake = self.tick(now);
        }
        let now = Instant::now();
        for i in 0..self.tracks.len() {
            self.end_episode(i, now, EndReason::Stopped);
        }
        let _ = self.tx.send(Event::Finished(self.stats.clone()));
    }

    fn refresh(&mut self, now: Instant) {
        let v = registry::version();
        if v == self.version {
            return;
        }
        self.version = v;
        registry::snapshot(&mut self.snapshot);
        for (i, slot) in self.snapshot.iter().enumerate() {
            if self.tracks.get(i).is_none() {
                self.tracks.push(Track::new(slot, now, self.last_tick));
            }
        }
    }

    fn tick(&mut self, now: Instant) -> Instant {
        self.refresh(now);
        let mut wake = now + self.idle_tick();
        for i in 0..self.tracks.len() {
            if let Some(w) = self.check(i, now) {
                wake = wake.min(w);
            }
        }
        for t in &mut self.tracks {
            t.prev_tick = now;
        }
        self.last_tick = now;
        wake.max(now + Duration::from_micros(100))
    }

    /// Looks at one slot; returns when it next needs attention.
    fn check(&mut self, i: usize, now: Instant) -> Option<Instant> {
        let threshold = self.settings.threshold;
        let t = &mut self.tracks[i];
        let generation = t.slot.generation.load(Ordering::Acquire);
        if generation != t.generation {
            // The thread left (or the slot was reused by a new thread): did it
            // leave from inside the poll, or after the poll returned?
            let reason = if t.slot.exited_in_poll.load(Ordering::Relaxed) {
                EndReason::ThreadExited
            } else {
                EndReason::PollReturned
            };
            self.end_episode(i, now, reason);
            let t = &mut self.tracks[i];
            *t = Track::new(t.slot, now, t.prev_tick);
            return None;
        }
        if t.tid == 0 {
            return None;
        }
        let epoch = t.slot.epoch.load(Ordering::Acquire);
        if epoch != t.epoch {
            self.end_episode(i, now, EndReason::PollReturned);
            let t = &mut self.tracks[i];
            t.epoch = epoch;
            t.first_seen = now;
            t.seen_after = t.prev_tick;
            t.descheduled = false;
            if epoch % 2 == 0 {
                t.base = None;
                return None;
            }
            t.base = t.proc().sched();
            return Some(now + threshold);
        }
        if epoch % 2 == 0 {
            return None;
        }
        if t.live.is_some() {
            return self.continue_episode(i, now);
        }
        // Detection counts from `first_seen`, which can only under-estimate:
        // a poll shorter than the threshold is never flagged.
        let stuck = now.saturating_duration_since(t.first_seen);
        if stuck < threshold {
            return Some(t.first_seen + threshold);
        }
        // Count only the thread's own time: on a loaded machine a short poll
        // can span many milliseconds of waiting for a CPU, and that is not the
        // program's blocking. A thread that is runnable right now may be in
        // such a wait that the kernel has not accounted yet, so then only its
        // CPU time counts; a sleeping thread's time is all its own, less the
        // waits already accounted.
        let sched = t.proc().sched();
        let state = t.proc().state();
        let (waited, cpu) = match (t.base, sched) {
            (Some(b), Some(s)) => (
                Duration::from_nanos(s.wait_ns.saturating_sub(b.wait_ns)),
                Duration::from_nanos(s.cpu_ns.saturating_sub(b.cpu_ns)),
            ),
            (None, Some(s)) => {
                // No baseline for this poll (the thread was already inside it
                // when the watchdog first saw the slot): measure its own time
                // from now on rather than assume all of it was its own.
                t.base = Some(s);
                return Some(now + threshold / 4);
            }
            // The thread's clocks cannot be read (it is exiting): wait for
            // its slot to be released.
            (_, None) => return Some(now + threshold),
        };
        let own = if state == Some(b'R') {
            cpu
        } else {
            stuck.saturating_sub(waited)
        };
        if own < threshold {
            if !t.descheduled {
                t.descheduled = true;
                self.stats.descheduled += 1;
            }
            return Some(now + (threshold - own).max(self.settings.interval));
        }
        if t.descheduled {
            // It did cross the threshold on its own time after all.
            t.descheduled = false;
            self.stats.descheduled = self.stats.descheduled.saturating_sub(1);
        }
        self.start_episode(i, now, stuck)
    }

    fn start_episode(&mut self, i: usize, now: Instant, stuck: Duration) -> Option<Instant> {
        let id = self.next_id;
        self.next_id += 1;
        let t = &mut self.tracks[i];
        let info = t.slot.info();
        let task_id = t.slot.task_id.load(Ordering::Relaxed);
        let excused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stuck = now.saturating_duration_since(t.poll_start()).max(stuck);
        let started = Started {
            id,
            thread: info.name,
            tid: t.tid,
            runtime: info.runtime,
            task_id: (task_id != 0).then_some(task_id),
            spawned_at: t.slot.location.load(Ordering::Relaxed),
            label: t.slot.label.load(Ordering::Relaxed),
            start: SystemTime::now() - stuck,
            stuck_for: stuck,
            excused: excused.clone(),
        };
        let start = t.poll_start();
        t.live = Some(Live {
            id,
            start,
            start_uncertainty: t.first_seen.saturating_duration_since(t.seen_after) / 2,
            last_sample: start,
            next_sample: now,
            interval: self.settings.interval,
            missed: 0,
            samples: 0,
            answered: 0,
            starved: 0,
            last_sched: t.base,
            parked_at: None,
            last_tag: Tag::OnCpu,
            // A detection that came late (the thread was descheduled) has
            // already passed 2× and 4×: the first report covers those.
            reported: level_of(
                now.saturating_duration_since(start),
                self.settings.threshold,
            ),
            excused,
        });
        // Started must arrive before any sample, so it is sent blocking.
        if self.tx.send(Event::Started(Box::new(started))).is_err() {
            self.tracks[i].live = None;
            return None;
        }
        self.continue_episode(i, now)
    }

    fn continue_episode(&mut self, i: usize, now: Instant) -> Option<Instant> {
        let threshold = self.settings.threshold;
        let (id, elapsed, due, excused, reported, samples) = {
            let live = self.tracks[i].live.as_ref()?;
            (
                live.id,
                now.saturating_duration_since(live.start),
                live.next_sample,
                live.excused.load(Ordering::Relaxed),
                live.reported,
                live.samples,
            )
        };
        // Re-report a long episode at 2× and 4× the threshold.
        let level = level_of(elapsed, threshold);
        if level > reported && !excused && samples > 0 {
            if let Some(l) = self.tracks[i].live.as_mut() {
                l.reported = level;
            }
            let _ = self.tx.try_send(Event::Progress { id, elapsed });
        }
        if excused {
            // Blocking where blocking belongs: just wait for the poll to end.
            return Some(now + MAX_INTERVAL);
        }
        if now < due {
            return Some(due);
        }
        self.sample(i, now);
        self.tracks[i].live.as_ref().map(|l| l.next_sample)
    }

    fn sample(&mut self, i: usize, now: Instant) {
        let signal = self.settings.signal;
        let t = &mut self.tracks[i];
        let stack = t.slot.info().stack;
        let tid = t.tid;
        let (slot, epoch) = (t.slot, t.epoch);
        let proc = t.proc.get_or_insert_with(|| Proc::open(tid));
        let sched = proc.sched();
        let mut line = [0u8; 192];
        let line_len = proc.syscall(&mut line);
        let live = t.live.as_mut().expect("sample() needs a live episode");
        let weight = now.saturating_duration_since(live.last_sample);
        let cpu = match (live.last_sched, sched) {
            (Some(a), Some(b)) => Some(Duration::from_nanos(b.cpu_ns.saturating_sub(a.cpu_ns))),
            _ => None,
        };
        let running = line_len.is_some_and(|n| line[..n].starts_with(b"running"));
        let on_cpu = match cpu {
            Some(c) => c * 2 >= weight || (running && c * 4 >= weight),
            None => running,
        };
        let tag = if on_cpu {
            Tag::OnCpu
        } else {
            Tag::OffCpu {
                syscall: line_len.and_then(|n| parse_syscall_nr(&line[..n])),
            }
        };
        // Same syscall, same arguments and stack pointer, no CPU spent: the
        // thread has not moved, so do not wake it just to learn that.
        let parked = !on_cpu
            && live.samples > 0
            && cpu.is_some_and(|c| c < PARKED_CPU)
            && matches!((&live.parked_at, line_len), (Some((l, n)), Some(m)) if *n == m && l[..*n] == line[..m]);
        let mut missed = false;
        let raw = if parked {
            None
        } else {
            match stack {
                Some(stack) => {
                    let sent = Instant::now();
                    match sampler::capture(Target { tid, stack }, signal, SAMPLE_DEADLINE) {
                        // The poll may have ended between our look at the
                        // epoch and the signal (a watchdog kept off the CPU
                        // widens that gap): then the stack belongs to a later
                        // poll, and is dropped.
                        Ok(_) if slot.epoch.load(Ordering::Acquire) != epoch => None,
                        Ok(s) => {
                            self.stats.capture_latency.record(sent.elapsed());
                            live.answered += 1;
                            Some(Box::new(s))
                        }
                        Err(why) => {
                            // Runnable, or asleep again after answering too
                            // late (a signal wakes an interruptible sleep at
                            // once): it could take the signal, only not in
                            // time. Uninterruptible sleep (`D`) or a signal
                            // the thread blocks are real reasons, not
                            // starvation.
                            if why == Missed::Timeout
                                && matches!(proc.state(), Some(b'R' | b'S'))
                                && proc.holds_blocked(signal) == Some(false)
                            {
                                live.starved += 1;
                            }
                            live.missed += 1;
                            self.stats.missed += 1;
                            missed = true;
                            None
                        }
                    }
                }
                None => {
                    live.answered += 1;
                    None
                }
            }
        };
        live.parked_at = match (on_cpu, line_len) {
            (false, Some(n)) if raw.is_some() || parked => Some((line, n)),
            _ => None,
        };
        live.samples += 1;
        live.last_sample = now;
        live.last_sched = sched.or(live.last_sched);
        live.last_tag = tag;
        if live.samples % BACKOFF_EVERY == 0 {
            live.interval = (live.interval * 2).min(MAX_INTERVAL.max(self.settings.interval));
        }
        // A thread that did not answer (signal blocked, uninterruptible
        // sleep) is asked again only after a pause, so it cannot monopolise
        // the watchdog with deadline waits.
        let pause = if missed {
            live.interval.max(SAMPLE_DEADLINE * 2)
        } else {
            live.interval
        };
        live.next_sample = Instant::now() + pause;
        let ev = Event::Sample {
            id: live.id,
            raw,
            weight_us: weight.as_micros() as u64,
            tag,
        };
        if self.tx.try_send(ev).is_err() {
            self.stats.dropped += 1;
        }
    }

    fn end_episode(&mut self, i: usize, now: Instant, reason: EndReason) {
        let Some(live) = self.tracks[i].live.take() else {
            return;
        };
        if live.answered == 0 && live.starved == live.missed {
            // Not one sample: the thread never got a CPU to answer on, or the
            // poll ended as it was noticed. Nothing shows that the program
            // blocked, and a loaded machine explains the time.
            match live.starved {
                0 => self.stats.unsampled += 1,
                _ => self.stats.descheduled += 1,
            }
            let _ = self.tx.send(Event::Withdrawn { id: live.id });
            return;
        }
        // The poll ended somewhere between the previous tick and now.
        let prev = self.tracks[i].prev_tick.max(live.last_sample);
        let end = prev + now.saturating_duration_since(prev) / 2;
        let tail = end.saturating_duration_since(live.last_sample);
        if !tail.is_zero() {
            let _ = self.tx.send(Event::Sample {
                id: live.id,
                raw: None,
                weight_us: tail.as_micros() as u64,
                tag: live.last_tag,
            });
        }
        let _ = self.tx.send(Event::Ended {
            id: live.id,
            duration: end.saturating_duration_since(live.start),
            uncertainty: live.start_uncertainty + now.saturating_duration_since(prev) / 2,
            missed: live.missed,
            reason,
        });
    }
}

/// 0 below 2× the threshold, 1 from 2×, 2 from 4×.
fn level_of(elapsed: Duration, threshold: Duration) -> u8 {
    if elapsed >= threshold * 4 {
        2
    } else if elapsed >= threshold * 2 {
        1
    } else {
        0
    }
}

/// The syscall number at the start of a `/proc/.../syscall` line.
fn parse_syscall_nr(line: &[u8]) -> Option<u32> {
    let end = line
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(line.len());
    std::str::from_utf8(&line[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_numbers() {
        assert_eq!(parse_syscall_nr(b"230 0x0 0x0 0x7ffd 0x0"), Some(230));
        assert_eq!(parse_syscall_nr(b"running\n"), None);
        assert_eq!(parse_syscall_nr(b""), None);
    }

    #[test]
    fn proc_files_of_this_thread_parse() {
        let p = Proc::open(crate::sys::signal::gettid());
        let s = p.sched().expect("cpu clock readable");
        assert!(s.cpu_ns > 0);
        assert_eq!(p.state(), Some(b'R'));
        let mut buf = [0u8; 192];
        let n = p.syscall(&mut buf).expect("syscall readable");
        // Reading our own syscall file while running: we are in read(2) or "running".
        assert!(n > 0);
    }
}
