//! The watchdog: one thread that notices a worker stuck inside one poll.
//!
//! Each tick it reads every slot's epoch and remembers `(epoch, first_seen)`.
//! A poll whose epoch stays odd is looked at more closely once its wall
//! time passes the threshold: the scheduler's accounting of its thread
//! says how much of that time was the poll's own (see [`policy`]). An
//! episode starts when own time passes the threshold, and the decision
//! never depends on whether a sample could be taken.
//!
//! While an episode runs it takes a stack every interval, the least
//! intrusive way the thread's state allows: a thread blocked in the kernel
//! is never interrupted, its frozen user stack is copied from outside
//! (`process_vm_readv`) and kept only if the thread did not move meanwhile;
//! a thread sitting in the same syscall is not looked at again (the last
//! stack gets the time, async-profiler's trick); only a running thread is
//! signalled, and a signal it cannot take yet (inside a long system call,
//! waiting for a CPU) stays armed until it does, its stack then covering
//! the time it waited.
//!
//! The tick adapts: half the threshold while nothing is stuck (100 wake-ups
//! a second by default, the floor of an idle pollwatch's cost), the sample
//! interval while an episode runs.

pub(crate) mod discovery;
mod policy;
mod sampled;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::episode::{
    Descheduled, EndReason, Ended, Event, Mode, StackOf, Started, Tag, WatchdogStats as Stats,
};
use crate::registry::{self, Slot};
use crate::sampler::{self, budget, Answer, Missed, Pending, RawSample, Target};
use crate::sys::proc::{self as procfs, Stat, Syscall, ThreadFiles, SYSCALL_LINE};
use crate::sys::stack::StackRange;
use policy::{Account, How, Look, Point, Seen, Span};

/// After this many samples in one episode the interval doubles (and again
/// after as many more), so an hour-long stall costs little.
const BACKOFF_EVERY: u32 = 200;
/// Longest interval the backoff reaches.
const MAX_INTERVAL: Duration = Duration::from_millis(100);
/// A signal unanswered this long while the thread got CPU: look whether the
/// program blocks it.
const BLOCKED_CHECK_AFTER: Duration = Duration::from_millis(50);
/// How often `attach`'s discovery looks for new threads.
const SCAN_EVERY: Duration = Duration::from_millis(250);
/// How often a thread registered from outside is checked to be alive.
const ALIVE_EVERY: Duration = Duration::from_secs(1);

/// What the watchdog needs from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) threshold: Duration,
    pub(crate) interval: Duration,
    pub(crate) signal: i32,
    /// The most bytes of stack copies queued for the report stage.
    pub(crate) stack_memory: usize,
    /// When the guard started, before the watchdog thread was spawned: a
    /// poll its first look finds in progress began after this at the
    /// earliest, however late a loaded machine runs that first look
    /// (measured: 36 ms), and no earlier look bounds it closer.
    pub(crate) started: Instant,
}

/// Stop flag plus the condvar the watchdog sleeps on.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    /// Whether a stop was requested.
    fn requested(&self) -> bool {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner())
    }

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

/// A running episode.
struct Live {
    id: u64,
    start: Instant,
    /// How far `start` may be from the truth: half the gap between the tick
    /// that did not see the poll and the one that did.
    start_uncertainty: Duration,
    next_sample: Instant,
    interval: Duration,
    missed: u32,
    samples: u32,
    /// Own time already handed to the report stage (or held for a pending stack).
    emitted_own: Duration,
    last_seen: Seen,
    last_span: Span,
    last_tag: Tag,
    /// The syscall line when the last stack was copied from outside.
    read_at: Option<([u8; SYSCALL_LINE], usize)>,
    /// A signal sent and not answered yet, and the own time waiting for its stack.
    pending: Option<Pending>,
    /// The look that sent `pending`. The span after it starts at that look,
    /// a few microseconds before the send itself: compared with the send's
    /// own time, that span's kernel time read as on-CPU (measured, 30% of a
    /// long `read(2)`).
    asked_at: Instant,
    pending_own: Vec<(Tag, Duration)>,
    /// The program blocks the sampling signal (checked once it stayed unanswered).
    blocks_signal: Option<bool>,
    /// User/system ticks when the thread last changed between them, and
    /// whether it is inside the kernel by them.
    stat_ref: Option<Stat>,
    in_kernel: bool,
    /// A signal was answered promptly at least once: its stack is trusted
    /// over late answers, which show where the thread resumed.
    prompt: bool,
    /// The signal pending (or last answered) was sent again at a late
    /// answer, not on schedule: its own late answer is not asked again.
    retried: bool,
    /// A stack (or a reason there is none) was sent; own time before it is
    /// held here.
    has_stack: bool,
    held: Vec<(Tag, Duration)>,
    reported: u8,
    excused: Arc<AtomicBool>,
    /// The poll ended by unwinding (a panic): when that was seen, and
    /// whether the panic takes the thread with it is still open.
    unwound: Option<Unwound>,
}

/// A poll seen ended by unwinding, its episode held open until its thread
/// either leaves (the panic ends it: `thread_exited`) or goes on.
#[derive(Debug)]
struct Unwound {
    /// The tick that saw it, and the one before: the poll ended in between.
    seen: Instant,
    prev_tick: Instant,
    /// The thread's run-queue wait then, so waiting for a CPU is not taken
    /// for going on.
    wait_ns: u64,
    /// The answer to a signal sent during the poll, taken off the request
    /// then (a request left answered would wake the watchdog at once, again
    /// and again, while it waits).
    late: Option<RawSample>,
}

/// What the watchdog remembers about one slot.
struct Track {
    slot: &'static Slot,
    generation: u64,
    tid: i32,
    epoch: u64,
    /// When this epoch was first seen.
    first_seen: Instant,
    /// The tick before `first_seen` (the poll began somewhere in between).
    seen_after: Instant,
    prev_tick: Instant,
    /// The poll's account, from its first look.
    acct: Option<Account>,
    /// The thread's user/system split at the first look.
    stat_at_first_look: Option<Stat>,
    /// The thread's CPU clock at the last reading before this poll began
    /// (0 with none: all of it may be the poll's). From there to a reading
    /// after the poll ended, the clock bounds the poll's CPU, however late
    /// and however preempted the looks in between.
    cpu_before: u64,
    /// The thread's CPU clock at a tick that found it between polls: CPU it
    /// used from then to a poll's first look is that poll's (a worker
    /// between polls runs for microseconds, or sleeps), if that poll is the
    /// only one since.
    idle_cpu: Option<(Instant, u64)>,
    /// The probe's epoch at that tick: the poll is the only one since if
    /// its epoch is the next one.
    idle_probe: u64,
    /// CPU in the span of the last look before the episode began: the first
    /// sample comes right after it, in a span of microseconds.
    detect_cpu: Duration,
    /// The poll's wall time passed the threshold.
    candidate: bool,
    /// The thread is gone without releasing its slot (a raw `exit`).
    dead: bool,
    /// This epoch was first seen at a look more than a threshold after the
    /// one before: the poll's start, and its time before, went unseen.
    seen_late: bool,
    files: Option<ThreadFiles>,
    live: Option<Live>,
    /// A thread watched by sampling: how its polls were told apart so far.
    view: Option<sampled::View>,
    /// The slot's boundary table version the view last saw.
    bounds_version: u64,
    /// Learning samples sent, newest last: where each was taken.
    learns: std::collections::VecDeque<LearnPoint>,
    /// A poll just seen is the one a learning sample was taken in: it has
    /// run since that sample.
    backdate: Option<LearnPoint>,
    /// The last learning look found the thread blocked in a call.
    learn_saw_blocked: bool,
    /// Looks in a row that found the thread running outside every poll
    /// it has a boundary for.
    outside_running: u8,
    /// The thread was seen to stay in that poll since the sample (blocked
    /// in the same call), so its own time since counts. Without that, only
    /// the executor frames matched, and those of one task polled again
    /// read the same.
    backdate_own: bool,
    /// The last learning sample of a thread blocked in the kernel, followed
    /// while the thread stays in that call: if the sample turns out to be
    /// inside a poll only after the poll returned (the first learning of a
    /// process loads the debug info), the poll is reported from this.
    retro: Option<Box<Retro>>,
    /// A learning signal not answered yet.
    learn_pending: Option<Pending>,
    /// The top of the thread's stack mapping, where shared boundaries are
    /// placed from.
    map_top: Option<u64>,
    /// When this track next needs a look. A tick looks only at the tracks
    /// due: on a busy runtime a worker's poll is looked at every quarter
    /// threshold, and looking at every idle thread at each of those ticks
    /// too (a stack read and a `/proc` read each, for a thread that cannot
    /// have changed) was most of the watchdog's cost.
    due: Instant,
}

/// A blocked learning sample, and how long its thread stayed in that call.
#[derive(Debug)]
struct Retro {
    point: LearnPoint,
    line: [u8; SYSCALL_LINE],
    len: usize,
    nr: Option<u32>,
    raw: RawSample,
    /// The last look that found the thread still in the call.
    until: Instant,
    until_sched: Option<procfs::Sched>,
    /// A look found it elsewhere: `until` is final.
    left: bool,
    /// The look that found it elsewhere.
    left_at: Option<Instant>,
    /// The followed call the thread left for this one, from one look to the
    /// next: the same poll (spawning a child, then waiting for it) if the
    /// executor frames of both samples read the same, once the poll's
    /// boundary is learned; reported on its own otherwise.
    prev: Option<Box<Retro>>,
    /// Folded in from `prev` (same poll): its stack, call and the time it
    /// sat in it.
    earlier: Option<(RawSample, Option<u32>, Duration)>,
}

/// A followed learning sample whose poll was never confirmed is dropped
/// this long after its thread left the call.
const RETRO_KEPT: Duration = Duration::from_secs(5);

/// When and in what accounting state a learning sample was taken.
#[derive(Clone, Copy, Debug)]
struct LearnPoint {
    seq: u64,
    at: Instant,
    /// The look before it (the poll began after).
    after: Instant,
    sched: Option<procfs::Sched>,
}

/// Learning samples remembered per thread for backdating.
const LEARNS_KEPT: usize = 4;

impl Track {
    /// `last_tick`: the watchdog's previous tick. The thread registered after
    /// it (or the slot would have been tracked then), so a poll it is already
    /// in began after it too.
    fn new(slot: &'static Slot, now: Instant, last_tick: Instant) -> Self {
        let mut t = Track {
            slot,
            generation: slot.generation.load(Ordering::Acquire),
            tid: slot.tid.load(Ordering::Acquire),
            epoch: slot.epoch.load(Ordering::Acquire),
            first_seen: now,
            seen_after: last_tick,
            prev_tick: last_tick,
            acct: None,
            stat_at_first_look: None,
            cpu_before: 0,
            idle_cpu: None,
            idle_probe: 0,
            detect_cpu: Duration::ZERO,
            candidate: false,
            dead: false,
            seen_late: false,
            files: None,
            live: None,
            view: None,
            bounds_version: 0,
            learns: std::collections::VecDeque::new(),
            backdate: None,
            backdate_own: false,
            learn_saw_blocked: false,
            outside_running: 0,
            retro: None,
            learn_pending: None,
            map_top: None,
            due: now,
        };
        let probe = t.epoch;
        if slot.sampled.load(Ordering::Acquire) {
            // Its polls are counted by the watchdog from the first look,
            // except a watched one, whose probe is exact.
            t.epoch = match probe % 2 {
                1 => sampled::PROBE | probe,
                _ => 0,
            };
        }
        // A thread first seen between polls: its CPU clock now, so that a
        // poll it begins before the next look, seen first late (a loaded
        // machine), counts the CPU used since, as any look between polls
        // does (measured without it: a new thread's 40 ms first poll, on a
        // reused slot, read as 11.8 ms of own time and excused).
        if t.epoch % 2 == 0 && t.tid != 0 {
            t.note_between_polls(now);
        }
        // A thread first seen inside a poll (a new thread's first poll) is
        // measured from this first look, like any other poll, plus the CPU
        // it used since it registered if this is its first poll since.
        if t.epoch % 2 == 1 && t.tid != 0 {
            t.begin_account(now);
            let reg_epoch = slot.registered_epoch.load(Ordering::Relaxed);
            let reg_cpu = slot.registered_cpu_ns.load(Ordering::Relaxed);
            if probe == reg_epoch.wrapping_add(1) && reg_cpu != u64::MAX {
                if let Some(a) = t.acct.as_mut() {
                    a.add_unseen_cpu(now.saturating_duration_since(last_tick), reg_cpu);
                }
            }
        }
        t
    }

    /// Whether a tick at `now` looks at this track. Only a track with
    /// nothing in flight waits for its time: an episode, a candidate, a
    /// signal not answered yet, a learning sample being followed, or a
    /// slot that changed hands is looked at on every tick, as the wake-up
    /// for an answer expects.
    fn must_look(&self, now: Instant) -> bool {
        now >= self.due
            // A thread that registered on the slot, or left it, since.
            || self.slot.generation.load(Ordering::Acquire) != self.generation
            || self.live.is_some()
            || self.learn_pending.is_some()
            || self.retro.is_some()
            || self.candidate
    }

    /// Notes the thread's CPU clock and probe epoch at a look that found
    /// it between polls (`idle_cpu`, `idle_probe`).
    fn note_between_polls(&mut self, now: Instant) {
        self.idle_cpu = crate::sys::thread::cpu_time_ns(self.tid).map(|c| (now, c));
        self.idle_probe = self.slot.epoch.load(Ordering::Acquire);
    }

    /// The thread's CPU clock at the latest look that read it, in a poll
    /// or between polls.
    fn last_cpu(&self) -> Option<(Instant, u64)> {
        let in_poll = self.acct.map(|a| (a.last_at(), a.last_cpu_ns()));
        match (in_poll, self.idle_cpu) {
            (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    fn files(&mut self) -> &ThreadFiles {
        let tid = self.tid;
        self.files.get_or_insert_with(|| ThreadFiles::open(tid))
    }

    /// Whether the poll this track last saw (`self.epoch`) is still the
    /// one in progress, looked at again now: after reading the thread's
    /// state, so that state is the poll's. A watched poll's probe says so;
    /// a sampled poll has none, and its executor frames, read again, do.
    fn still_in_poll(&self) -> bool {
        let probe = self.slot.epoch.load(Ordering::Acquire);
        match self.view.as_ref() {
            None => probe == self.epoch,
            Some(_) if self.epoch & sampled::PROBE != 0 => probe | sampled::PROBE == self.epoch,
            Some(v) => sampled::look(self.slot, self.map_top) == v.fp(),
        }
    }

    /// The user/system split is read at the poll's second look (or when
    /// it becomes an episode), not here: most polls a busy worker is seen
    /// in are gone by then, and `/proc/.../stat` is the dearest read.
    fn begin_account(&mut self, now: Instant) {
        let files = self.files();
        let first = files
            .sched()
            .map(|sched| Account::new(Point { at: now, sched }));
        self.stat_at_first_look = None;
        self.acct = first;
    }

    /// When the poll most likely began: halfway between the last tick that
    /// did not see it and the first that did.
    fn poll_start(&self) -> Instant {
        self.seen_after + self.first_seen.saturating_duration_since(self.seen_after) / 2
    }
}

/// Events on their way to the report stage, in order. The watchdog never
/// waits for the report stage (symbolizing can fall behind, a debug build's
/// especially): what the channel has no room for waits here, and past a
/// bound (in events here, in bytes of stack copies anywhere before the
/// report stage unwinds them: `sampler::budget`) samples wait without their
/// stack, their time kept.
struct Outbox {
    tx: SyncSender<Event>,
    backlog: std::collections::VecDeque<Event>,
    /// Stacks dropped to keep the backlog small.
    dropped: u64,
    /// Episodes with a stack queued already: only those lose later ones.
    with_stack: std::collections::HashSet<u64>,
    /// The cap on bytes of stack copies in flight.
    stack_memory: usize,
}

/// Events the backlog keeps whole; beyond, samples lose their stack.
const BACKLOG_STACKS: usize = 256;

impl Outbox {
    /// Queues `ev`; false once the report stage is gone.
    fn send(&mut self, ev: Event) -> bool {
        let ev = match ev {
            Event::Sample {
                id,
                stack: StackOf::Captured(mut raw),
                weight_us,
                tag,
            } => {
                let bytes = raw.held_bytes();
                let stack = if budget::keeps_stack(
                    !self.with_stack.contains(&id),
                    self.backlog.len() >= BACKLOG_STACKS,
                    budget::in_flight(),
                    bytes,
                    self.stack_memory,
                ) {
                    raw.charge = budget::Charge::new(bytes);
                    StackOf::Captured(raw)
                } else {
                    self.dropped += 1;
                    StackOf::Same
                };
                Event::Sample {
                    id,
                    stack,
                    weight_us,
                    tag,
                }
            }
            ev => ev,
        };
        match &ev {
            Event::Sample {
                id,
                stack: StackOf::Captured(_),
                ..
            } => {
                self.with_stack.insert(*id);
            }
            Event::Ended { id, .. } => {
                self.with_stack.remove(id);
            }
            _ => {}
        }
        if !self.backlog.is_empty() {
            self.backlog.push_back(ev);
            return true;
        }
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(std::sync::mpsc::TrySendError::Full(ev)) => {
                self.backlog.push_back(ev);
                true
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => false,
        }
    }

    /// Hands over what the channel has room for now.
    fn flush(&mut self) {
        while let Some(ev) = self.backlog.pop_front() {
            match self.tx.try_send(ev) {
                Ok(()) => {}
                Err(std::sync::mpsc::TrySendError::Full(ev)) => {
                    self.backlog.push_front(ev);
                    return;
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    /// At stop: everything, waiting for room.
    fn close(&mut self, last: Event) {
        for ev in self.backlog.drain(..).chain([last]) {
            if self.tx.send(ev).is_err() {
                return;
            }
        }
    }
}

pub(crate) struct Watchdog {
    settings: Settings,
    out: Outbox,
    stop: Arc<Stop>,
    stats: Stats,
    next_id: u64,
    tracks: Vec<Track>,
    version: u64,
    snapshot: Vec<&'static Slot>,
    last_tick: Instant,
    /// When `attach`'s discovery looks for new threads next.
    next_scan: Instant,
    /// Stacks of blocked threads can be copied without a signal.
    can_read: bool,
    /// No sampling signal of ours is left (the program took them over).
    no_signal: bool,
    /// The report stage was told to get ready for sampled threads.
    warmed: bool,
    /// Learning samples sent so far (each has its number).
    learn_seq: u64,
    /// Per runtime (`Slot::runtime_key`), what its workers' watched polls
    /// took: for the busy time outside them.
    watched: Vec<(u64, registry::Watched)>,
}

/// Learning signals left waiting at once, so that episodes always find a
/// free sample buffer.
const LEARN_INFLIGHT: usize = 2;

impl Watchdog {
    pub(crate) fn new(settings: Settings, tx: SyncSender<Event>, stop: Arc<Stop>) -> Self {
        let can_read = crate::sys::memory::available();
        if !can_read {
            eprintln!(
                "pollwatch: process_vm_readv is refused here (a seccomp profile, an emulator?): threads \
                 blocked in the kernel are sampled with the signal, which may interrupt their sleep (EINTR)");
        }
        let stack_memory = settings.stack_memory;
        let started = settings.started;
        Watchdog {
            settings,
            out: Outbox {
                tx,
                backlog: std::collections::VecDeque::new(),
                dropped: 0,
                with_stack: std::collections::HashSet::new(),
                stack_memory,
            },
            stop,
            stats: Stats::default(),
            next_id: 1,
            tracks: Vec::new(),
            version: u64::MAX,
            snapshot: Vec::new(),
            last_tick: started,
            next_scan: Instant::now(),
            can_read,
            no_signal: false,
            warmed: false,
            learn_seq: 0,
            watched: Vec::new(),
        }
    }

    fn idle_tick(&self) -> Duration {
        policy::idle_tick(self.settings.threshold)
    }

    /// Runs until a stop request; ends every open episode on the way out.
    /// `ready` hears when the first look is done: polls that begin after
    /// it are seen from their start (the guard waits for it).
    pub(crate) fn run(mut self, ready: SyncSender<()>) {
        let mut ready = Some(ready);
        // Ticks on time on a saturated machine: each is microseconds of work.
        crate::sys::thread::request_short_slices(Duration::from_micros(100));
        let mut wake = Instant::now();
        loop {
            // A thread that could not answer at once answers when it gets a
            // CPU back; waking right then lets the next request find it
            // running, for a prompt, unbiased sample. (The stop flag is
            // read at every tick, at most an interval away.)
            match self
                .tracks
                .iter()
                .find_map(|t| t.live.as_ref()?.pending.as_ref())
            {
                Some(p) => p.sleep_until_ready(wake),
                None => {
                    if self.stop.sleep_until(wake) {
                        break;
                    }
                }
            }
            if self.stop.requested() {
                break;
            }
            let now = Instant::now();
            wake = self.tick(now);
            if let Some(r) = ready.take() {
                let _ = r.try_send(());
            }
        }
        let now = Instant::now();
        for i in 0..self.tracks.len() {
            // What happened since the last tick decides how the episode
            // ended: the poll returned, or its thread left (or died) in it.
            // A blocked learning sample the report stage has not answered
            // for yet: it decides, in order, whether that was a poll.
            if let Some(r) = self.tracks[i].retro.take() {
                self.report_retro(i, now, *r);
            }
            if self.tracks[i].live.is_none() {
                continue;
            }
            let epoch = self.epoch_of(i, now);
            let t = &mut self.tracks[i];
            let left = t.slot.generation.load(Ordering::Acquire) != t.generation;
            let reason = reason_at_stop(AtStop {
                left,
                left_in_poll: left && t.slot.exited_in_poll.load(Ordering::Relaxed),
                returned: epoch != t.epoch,
                alive: !t.dead && t.files().alive(),
            });
            self.end_episode(i, now, reason);
        }
        discovery::disable();
        let watched = std::mem::take(&mut self.watched);
        self.stats.busy_outside = registry::RUNTIMES.take_busy_outside(|key| {
            watched
                .iter()
                .find(|(k, _)| *k == key)
                .map_or_else(registry::Watched::default, |w| w.1)
        });
        self.stats.dropped += self.out.dropped;
        self.stats.cpu = crate::sys::thread::cpu_time_ns(crate::sys::thread::gettid())
            .map_or(Duration::ZERO, Duration::from_nanos);
        let stats = self.stats.clone();
        self.out.close(Event::Finished(stats));
    }

    fn refresh(&mut self, now: Instant) {
        let v = registry::TABLE.version();
        if v == self.version {
            return;
        }
        let first = self.version == u64::MAX;
        self.version = v;
        registry::TABLE.snapshot(&mut self.snapshot);
        for (i, slot) in self.snapshot.iter().enumerate() {
            if self.tracks.get(i).is_none() {
                let t = Track::new(slot, now, self.last_tick);
                // A slot new since the last look registered after it: its
                // polls since then were never seen. (At the first look, at
                // start, slots are older than the guard: not its business.)
                if !first {
                    let registered = slot.registered_epoch.load(Ordering::Relaxed);
                    // (A sampled track's watched poll carries the PROBE bit.)
                    self.stats.unseen += unseen_polls(
                        registered,
                        t.epoch & !sampled::PROBE,
                        Unjudged {
                            open: false,
                            seen_late: false,
                        },
                        now.saturating_duration_since(self.last_tick),
                        self.settings.threshold,
                    );
                }
                self.tracks.push(t);
            }
        }
    }

    fn tick(&mut self, now: Instant) -> Instant {
        self.out.flush();
        if discovery::enabled() && now >= self.next_scan {
            discovery::scan();
            self.next_scan = now + SCAN_EVERY;
        }
        self.refresh(now);
        let idle = self.idle_tick();
        let mut wake = now.checked_add(idle).unwrap_or(now);
        let mut first = true;
        for i in 0..self.tracks.len() {
            if !self.tracks[i].must_look(now) {
                wake = wake.min(self.tracks[i].due);
                continue;
            }
            // Each slot is dated by its own look, not by the tick's start:
            // a watchdog preempted mid-tick on a saturated machine (measured:
            // up to 8 ms) would otherwise date a poll's end before it happened.
            let at = if std::mem::take(&mut first) {
                now
            } else {
                Instant::now()
            };
            // Never later than an idle tick: a poll that begins right after
            // this look is first seen within one, as on an idle watchdog.
            let idle_due = at.checked_add(idle).unwrap_or(at);
            let (before, generation) = (self.tracks[i].epoch, self.tracks[i].generation);
            let due = self.check(i, at).map_or(idle_due, |w| w.min(idle_due));
            wake = wake.min(due);
            self.count_watched(i, at, before, generation);
            let t = &mut self.tracks[i];
            t.due = due;
            t.prev_tick = at;
        }
        self.last_tick = now;
        wake.max(now + Duration::from_micros(100))
    }

    /// Counts what the watched polls of a runtime's worker took between
    /// the look before (its epoch `before`) and this one: the polls that
    /// ended (the probe's epoch is exact), and the span since the look
    /// before if this one finds a poll running (the looks sample the
    /// thread's time, every idle tick at the latest).
    fn count_watched(&mut self, i: usize, at: Instant, before: u64, generation: u64) {
        let t = &self.tracks[i];
        let key = t.slot.runtime_key.load(Ordering::Relaxed);
        // A sampled thread's runtime is covered; a new owner's epoch is not
        // comparable with the last one's.
        if key == 0 || t.view.is_some() || t.generation != generation {
            return;
        }
        let polls = t.epoch.saturating_sub(before).div_ceil(2);
        let time = match t.epoch % 2 {
            1 => at.saturating_duration_since(t.prev_tick),
            _ => Duration::ZERO,
        };
        let w = match self.watched.iter_mut().find(|(k, _)| *k == key) {
            Some((_, w)) => w,
            None => {
                self.watched.push((key, registry::Watched::default()));
                &mut self.watched.last_mut().expect("just pushed").1
            }
        };
        w.time += time;
        w.polls += polls;
    }

    /// Looks at one slot; returns when it next needs attention. A sampled
    /// thread inside a poll is looked at every quarter threshold once the
    /// poll was seen twice: each look is one small read, and it is what
    /// tells one poll from the next. A poll first seen at this look is
    /// looked at again after half a threshold: on a busy runtime nearly
    /// every look finds a new poll, gone by the next, and those looks were
    /// most of the watchdog's wake-ups.
    fn check(&mut self, i: usize, now: Instant) -> Option<Instant> {
        let before = self.tracks[i].epoch;
        let next = self.check_slot(i, now);
        let t = &self.tracks[i];
        if t.view.is_some() && t.epoch % 2 == 1 && t.live.is_none() {
            let part = if t.epoch == before { 4 } else { 2 };
            let look = now + (self.settings.threshold / part).max(Duration::from_micros(250));
            return Some(next.map_or(look, |n| n.min(look)));
        }
        next
    }

    /// The poll count of slot `i` now: the probe's epoch, or for a thread
    /// watched by sampling, the watchdog's own count from reading its stack.
    fn epoch_of(&mut self, i: usize, now: Instant) -> u64 {
        let threshold = self.settings.threshold;
        let t = &mut self.tracks[i];
        let probe = t.slot.epoch.load(Ordering::Acquire);
        if !t.slot.sampled.load(Ordering::Acquire) || t.tid == 0 {
            return probe;
        }
        // A running thread outside any known poll is sampled again after a
        // quarter threshold, backing off to one threshold: a CPU-bound poll
        // on a path not learned yet is found within its first threshold.
        let base = (threshold / 4).max(Duration::from_millis(1));
        if t.view.is_none() && !self.warmed {
            self.warmed = true;
            self.out.send(Event::Warm);
        }
        let t = &mut self.tracks[i];
        let view = t.view.get_or_insert_with(|| sampled::View::new(now, base));
        let remote = t.slot.remote.load(Ordering::Relaxed);
        if remote && discovery::is_own(t.tid) {
            // Found by a scan before it marked itself: one of ours.
            registry::TABLE.release_remote(t.slot);
            return t.epoch;
        }
        if remote && now >= view.next_alive_check {
            view.next_alive_check = now + ALIVE_EVERY;
            let tid = t.tid;
            if !t
                .files
                .get_or_insert_with(|| ThreadFiles::open(tid))
                .alive()
            {
                // Gone: the next look sees the slot released.
                registry::TABLE.release_remote(t.slot);
                return t.epoch;
            }
            // Scanned before it named itself, it showed its parent's name.
            match discovery::name_of(tid) {
                Some(name) if !discovery::watched(tid, &name) => {
                    registry::TABLE.release_remote(t.slot);
                    return t.epoch;
                }
                Some(name) if name != t.slot.info().name => t.slot.set_name(name),
                _ => {}
            }
        }
        let version = t.slot.bounds.version();
        // Between polls at the last look, and it has not run since: its
        // stack, and the place it is blocked at, are as they were. Nothing
        // to read (an idle thread of the process, found by `attach`, was
        // otherwise read at each of a busy worker's looks), unless a
        // learning sample of it is being followed or answered.
        if t.epoch % 2 == 0
            && probe % 2 == 0
            && version == t.bounds_version
            && t.retro.is_none()
            && t.learn_pending.is_none()
        {
            if let (Some((_, before)), Some(cpu)) =
                (t.idle_cpu, crate::sys::thread::cpu_time_ns(t.tid))
            {
                if cpu == before {
                    return t.epoch;
                }
            }
        }
        if version != t.bounds_version {
            t.bounds_version = version;
            if let Some(v) = t.view.as_mut() {
                v.bounds_changed(now, base);
            }
        }
        let park_seq = t.slot.park_seq.load(Ordering::Acquire);
        if probe % 2 == 1 {
            // A watched poll: its probe reports it; a blocked learning
            // sample being followed is part of it or of nothing.
            t.retro = None;
        }
        // Parked (the hooks say so): no poll, nothing to read.
        let parked = park_seq != 0 && park_seq % 2 == 0;
        let fp = if probe % 2 == 1 || parked {
            None
        } else {
            if t.map_top.is_none() {
                t.map_top = t
                    .slot
                    .info()
                    .stack
                    .and_then(|s| procfs::mapping_of(s.hi() - 1))
                    .map(|m| m.hi());
            }
            sampled::look(t.slot, t.map_top)
        };
        let fp = match fp {
            Some(h) if self.parked_at_idle(i, now, h) => None,
            other => other,
        };
        let t = &mut self.tracks[i];
        if fp.is_some() {
            t.outside_running = 0;
        }
        let key = t.view.as_mut().map_or(probe, |v| {
            v.advance(sampled::Obs {
                probe_epoch: probe,
                park_seq,
                fp,
            })
        });
        self.extend_retro(i, now);
        if key != self.tracks[i].epoch && key % 2 == 1 && fp.is_some() {
            // A new poll: the one a blocked learning sample was taken in, if
            // the thread has not left that call since; or the one a learning
            // sample found, if the executor's frames read the same.
            // Not left by the looks' account, which a look finding the
            // thread running cannot settle: the sample's own executor
            // frames must be this poll's too. (A worker sampled parked,
            // then running tasks of a path not learned yet, was taken for
            // 30 ms inside the first of them: a false episode.)
            let followed = self.tracks[i].retro.as_ref().is_some_and(|r| !r.left);
            if followed
                && self.tracks[i]
                    .retro
                    .as_ref()
                    .and_then(|r| self.frames_of(i, &r.raw))
                    == fp
            {
                if let Some(r) = self.tracks[i].retro.take() {
                    let r = self.fold_prev(i, now, *r);
                    self.tracks[i].backdate = Some(r.point);
                    self.tracks[i].backdate_own = true;
                }
            }
            let t = &mut self.tracks[i];
            let seq = t.slot.learned_seq.load(Ordering::Acquire);
            let same = fp == Some(t.slot.learned_fp.load(Ordering::Relaxed));
            if t.backdate.is_none() {
                t.backdate = t.learns.iter().find(|p| same && p.seq == seq).copied();
                t.backdate_own = false;
            }
            if t.backdate.is_some() && t.retro.as_ref().is_some_and(|r| r.point.seq == seq) {
                // Found running: the usual looks report it, from the call
                // before if that was the same poll.
                if let Some(r) = t.retro.take() {
                    let r = self.fold_prev(i, now, *r);
                    if r.earlier.is_some() {
                        self.tracks[i].backdate = Some(r.point);
                        self.tracks[i].backdate_own = true;
                    }
                }
            }
        }
        let t = &mut self.tracks[i];
        t.slot.sampled_epoch.store(key, Ordering::Release);
        self.follow_retro(i, now, fp);
        if fp.is_none() && probe % 2 == 0 {
            let parked = park_seq != 0 && park_seq % 2 == 0;
            self.learn(i, now, parked, key);
        }
        key
    }

    /// Whether track `i`'s thread, whose executor frames read as a poll
    /// (`fp`), is blocked at one of its park places instead: a `block_on`
    /// whose root future's poll is inlined into the loop's own frame (a
    /// release build) keeps the same frames below while it waits between
    /// polls, and every wait longer than a threshold read as an episode.
    ///
    /// A poll seen at two looks in a row, blocked at a place not tried yet,
    /// has its stack copied (no signal) for the report stage to tell: the
    /// next look knows. Most polls of a busy worker are seen once, and its
    /// slot has no park places: they cost nothing here.
    fn parked_at_idle(&mut self, i: usize, now: Instant, fp: u64) -> bool {
        let can_read = self.can_read;
        let max_backoff = self.settings.threshold.max(Duration::from_millis(1));
        let t = &mut self.tracks[i];
        let again = t.view.as_ref().and_then(|v| v.fp()) == Some(fp);
        if !again && t.slot.idle.is_empty() {
            return false;
        }
        let tid = t.tid;
        let files = t.files.get_or_insert_with(|| ThreadFiles::open(tid));
        let mut line = [0u8; SYSCALL_LINE];
        let Some(n) = files.syscall_line(&mut line) else {
            return false;
        };
        let Some(Syscall::Blocked { sp, pc, .. }) = procfs::parse_syscall(&line[..n]) else {
            return false;
        };
        if t.slot.idle.contains(sp, pc) {
            return true;
        }
        let Some(view) = t.view.as_mut() else {
            return false;
        };
        if !again || !can_read || view.tried.contains(&(sp, pc)) {
            return false;
        }
        view.learned(now, Some((sp, pc)), max_backoff);
        let Some(range) = t.slot.info().stack else {
            return false;
        };
        if let Some(raw) = read_blocked(files, range, t.epoch, sp, pc, &line[..n]) {
            // Number 0: only the park place is asked for. The poll is
            // already followed, and nothing is backdated to this sample.
            self.out.send(Event::Learn {
                slot: t.slot,
                generation: t.generation,
                seq: 0,
                raw: Box::new(raw),
                site: Some((sp, pc)),
            });
        }
        false
    }

    /// Takes a sample of a sampled thread that is in no known poll, for the
    /// report stage to learn where its task polls begin. Never a signal to
    /// a thread blocked in the kernel.
    fn learn(&mut self, i: usize, now: Instant, parked: bool, key: u64) {
        let (can_read, no_signal) = (self.can_read, self.no_signal);
        // A signal still unanswered (the thread waits for a CPU): collect
        // it when it comes, or give up after a threshold.
        if let Some(p) = self.tracks[i].learn_pending.take() {
            // A thread kept from its CPU answers late: a learning sample
            // is still worth having a few thresholds later. One that went
            // to sleep in the kernel meanwhile is read as it is now.
            let blocked = {
                let t = &mut self.tracks[i];
                let tid = t.tid;
                let files = t.files.get_or_insert_with(|| ThreadFiles::open(tid));
                let mut line = [0u8; SYSCALL_LINE];
                files
                    .syscall_line(&mut line)
                    .and_then(|n| procfs::parse_syscall(&line[..n]))
                    .is_some_and(|s| matches!(s, Syscall::Blocked { .. }))
            };
            if p.is_ready()
                || blocked
                || now.saturating_duration_since(p.sent) >= self.settings.threshold * 4
            {
                if let Some(raw) = p.cancel() {
                    match self.tracks[i].slot.info().stack {
                        Some(_) => self.learned(i, now, raw, None, None),
                        None => self.found_stack(i, now, &raw),
                    }
                }
            } else {
                self.tracks[i].learn_pending = Some(p);
            }
            if !blocked {
                return;
            }
        }
        let inflight = self
            .tracks
            .iter()
            .filter(|t| t.learn_pending.is_some())
            .count();
        let t = &mut self.tracks[i];
        let (tid, slot) = (t.tid, t.slot);
        let files = t.files.get_or_insert_with(|| ThreadFiles::open(tid));
        let mut line = [0u8; SYSCALL_LINE];
        let line_len = files.syscall_line(&mut line);
        let syscall = line_len.and_then(|n| procfs::parse_syscall(&line[..n]));
        let blocked_at = match syscall {
            Some(Syscall::Blocked { sp, pc, .. }) => Some((sp, pc)),
            _ => None,
        };
        let running = matches!(syscall, Some(Syscall::Running));
        // Running again right after a look found it blocked: maybe still on
        // its way out of that call, where a signal is an EINTR (see
        // `policy::how`). The next look decides.
        let was_blocked = std::mem::replace(&mut t.learn_saw_blocked, blocked_at.is_some());
        if running && was_blocked {
            return;
        }
        t.outside_running = match running {
            true => t.outside_running.saturating_add(1),
            false => 0,
        };
        // A worker whose task polls are known, found running outside them:
        // nearly always between two polls of a busy runtime, where a
        // sample teaches nothing (measured: 75 signals a second, and the
        // report stage symbolizing them took about 1% of a core). A poll on
        // a path not learned yet keeps it outside them look after look, so
        // it is sampled at the second such look in a row, and the back-off
        // grows to four thresholds.
        let known = !slot.bounds.is_empty();
        if running && known && t.outside_running < 2 {
            return;
        }
        let Some(view) = t.view.as_mut() else { return };
        if !view.wants_learn(now, parked, blocked_at) {
            return;
        }
        let max_backoff =
            self.settings.threshold.max(Duration::from_millis(1)) * if known { 4 } else { 1 };
        view.learned(now, blocked_at, max_backoff);
        self.learn_seq += 1;
        let point = LearnPoint {
            seq: self.learn_seq,
            at: now,
            after: t.prev_tick,
            sched: files.sched(),
        };
        let mut stack = slot.info().stack;
        if running && (no_signal || inflight >= LEARN_INFLIGHT) {
            return;
        }
        if running {
            // Never a signal to a handler that is not ours, learning included.
            self.check_signal();
            if self.no_signal {
                return;
            }
        }
        let signal = self.settings.signal;
        let t = &mut self.tracks[i];
        let files = t.files.get_or_insert_with(|| ThreadFiles::open(tid));
        if stack.is_none() && running {
            // Registered from outside and never seen blocked: the signal
            // tells its sp first, and its stack is the mapping that holds it.
            let target = Target {
                tid,
                stack: StackRange::registers_only(),
                epoch: Some(&slot.sampled_epoch),
            };
            match sampler::request(target, signal) {
                Ok(Answer::Ready(raw)) => self.found_stack(i, now, &raw),
                // A thread waiting for a CPU answers when it gets one:
                // collected then, like a learning sample (cancelling at
                // once lost every answer of a busy thread on a loaded
                // machine, and its CPU-bound polls were never learned).
                Ok(Answer::Waiting(p)) => self.tracks[i].learn_pending = Some(p),
                Err(_) => {}
            }
            return;
        }
        if stack.is_none() {
            // Registered from outside: its stack is the mapping its sp is in.
            if let Some((sp, _)) = blocked_at {
                stack = procfs::mapping_of(sp);
                if let Some(r) = stack {
                    slot.set_stack(r);
                }
            }
        }
        let Some(range) = stack else { return };
        let raw = match syscall {
            Some(Syscall::Blocked { sp, pc, .. }) if can_read => {
                read_blocked(files, range, key, sp, pc, &line[..line_len.unwrap_or(0)])
            }
            Some(Syscall::Running) if !no_signal => {
                let target = Target {
                    tid,
                    stack: range,
                    epoch: Some(&slot.sampled_epoch),
                };
                match sampler::request(target, signal) {
                    Ok(Answer::Ready(raw)) => Some(raw),
                    Ok(Answer::Waiting(p)) => {
                        self.tracks[i].learn_pending = Some(p);
                        None
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        if let Some(raw) = raw {
            let blocked = match (syscall, line_len) {
                (Some(Syscall::Blocked { nr, .. }), Some(len)) => Some((nr, line, len)),
                _ => None,
            };
            self.learned(i, now, raw, Some(point), blocked);
        }
    }

    /// Track `i`'s thread, registered from outside, answered a
    /// registers-only request: its stack is the mapping its `sp` is in, and
    /// a learning sample can be taken at the next look.
    fn found_stack(&mut self, i: usize, now: Instant, raw: &RawSample) {
        let t = &mut self.tracks[i];
        if let Some(r) = procfs::mapping_of(raw.regs.sp) {
            t.slot.set_stack(r);
            if let Some(v) = t.view.as_mut() {
                v.next_learn = now;
            }
        }
    }

    /// Sends a learning sample to the report stage (`point`: where it was
    /// asked for, `None` for a late answer, taken just now), and follows it
    /// if the thread was blocked in a call (`blocked`: its syscall and line).
    fn learned(
        &mut self,
        i: usize,
        now: Instant,
        raw: RawSample,
        point: Option<LearnPoint>,
        blocked: Option<(Option<u32>, [u8; SYSCALL_LINE], usize)>,
    ) {
        let t = &mut self.tracks[i];
        let (slot, generation) = (t.slot, t.generation);
        // A watched poll began while the sample was taken: its probe
        // reports it, the sample is not needed.
        if slot.epoch.load(Ordering::Acquire) % 2 == 1 {
            return;
        }
        let point = match point {
            Some(p) => p,
            None => {
                self.learn_seq += 1;
                let t = &mut self.tracks[i];
                LearnPoint {
                    seq: self.learn_seq,
                    at: now,
                    after: t.prev_tick,
                    sched: t.files().sched(),
                }
            }
        };
        {
            let t = &mut self.tracks[i];
            if t.learns.len() >= LEARNS_KEPT {
                t.learns.pop_front();
            }
            t.learns.push_back(point);
            if let Some((nr, line, len)) = blocked {
                // The previous one is not resolved yet: the report stage
                // decides from its learning whether it was a poll. Left for
                // this call, it may be this call's poll: kept beside it.
                let prev = match self.tracks[i].retro.take() {
                    Some(mut old) if old.left => {
                        if let Some(older) = old.prev.take() {
                            self.report_retro(i, now, *older);
                        }
                        Some(old)
                    }
                    Some(old) => {
                        self.report_retro(i, now, *old);
                        None
                    }
                    None => None,
                };
                let t = &mut self.tracks[i];
                t.retro = Some(Box::new(Retro {
                    point,
                    line,
                    len,
                    nr,
                    raw: raw.clone(),
                    until: now,
                    until_sched: point.sched,
                    left: false,
                    left_at: None,
                    prev,
                    earlier: None,
                }));
            }
            let seq = point.seq;
            let site = blocked.map(|_| (raw.regs.sp, raw.regs.pc));
            self.out.send(Event::Learn {
                slot,
                generation,
                seq,
                raw: Box::new(raw),
                site,
            });
        }
    }

    /// Follows the blocked learning sample of track `i`: extends it while
    /// the thread stays in that call, and once the report stage found a
    /// poll in it, reports that poll if it already returned (a poll still
    /// running is found by the usual looks, backdated to the sample).
    fn extend_retro(&mut self, i: usize, now: Instant) {
        let t = &mut self.tracks[i];
        let Some(r) = t.retro.as_mut() else { return };
        if !r.left {
            // Still in the poll while blocked at the same place (a lock or
            // channel wait that wakes and waits again returns to the same
            // call, at the same stack depth); left once blocked elsewhere.
            // A look that finds it running says neither.
            let files = t.files.get_or_insert_with(|| ThreadFiles::open(t.tid));
            let mut line = [0u8; SYSCALL_LINE];
            let now_at = files
                .syscall_line(&mut line)
                .and_then(|n| procfs::parse_syscall(&line[..n]));
            let then_at = procfs::parse_syscall(&r.line[..r.len]);
            match (now_at, then_at) {
                (
                    Some(Syscall::Blocked { nr, sp, pc }),
                    Some(Syscall::Blocked {
                        nr: nr0,
                        sp: sp0,
                        pc: pc0,
                    }),
                ) if (nr, sp, pc) == (nr0, sp0, pc0) => {
                    r.until = now;
                    r.until_sched = files.sched();
                }
                (Some(Syscall::Blocked { .. }), _) | (None, _) => {
                    r.left = true;
                    r.left_at = Some(now);
                }
                _ => {}
            }
        }
    }

    /// Resolves the followed learning sample once the report stage learned
    /// from it: found running now, the usual looks report its poll; found
    /// left, it is reported from what was seen.
    fn follow_retro(&mut self, i: usize, now: Instant, fp: Option<u64>) {
        let t = &mut self.tracks[i];
        let Some(r) = t.retro.as_ref() else { return };
        let seq = t.slot.learned_seq.load(Ordering::Acquire);
        let learned = seq == r.point.seq;
        let running =
            learned && fp.is_some() && fp == Some(t.slot.learned_fp.load(Ordering::Relaxed));
        let stale = r.left && now.saturating_duration_since(r.until) > RETRO_KEPT;
        if running {
            // Its poll goes on, reported by the usual looks; a call left
            // before it that was another poll is reported now.
            if let Some(r) = t.retro.take() {
                drop(self.fold_prev(i, now, *r));
            }
        } else if (learned && r.left) || stale {
            if let Some(r) = t.retro.take() {
                self.report_retro(i, now, *r);
            }
        }
    }

    /// The executor frames' hash in a copied stack of track `i`'s thread,
    /// as a look would have read it then (`None`: in no known poll).
    fn frames_of(&self, i: usize, raw: &RawSample) -> Option<u64> {
        let read = |at: u64, buf: &mut [u8]| {
            for (k, c) in buf.chunks_exact_mut(8).enumerate() {
                c.copy_from_slice(
                    &crate::unwind::copied_word(raw, at + 8 * k as u64)?.to_ne_bytes(),
                );
            }
            Some(buf.len())
        };
        let t = &self.tracks[i];
        registry::fingerprint(t.slot.bounds.iter(), read).or_else(|| {
            let top = t.map_top?;
            registry::fingerprint(
                registry::SHARED
                    .iter()
                    .filter_map(|b| registry::absolute(b, top)),
                read,
            )
        })
    }

    /// Resolves `r.prev`, the call left for `r`: the same poll if the
    /// executor frames of both samples read the same (then `r` starts where
    /// it did), else reported as its own.
    fn fold_prev(&mut self, i: usize, now: Instant, mut r: Retro) -> Retro {
        let Some(prev) = r.prev.take() else { return r };
        let (a, b) = (self.frames_of(i, &prev.raw), self.frames_of(i, &r.raw));
        if a.is_none() || a != b {
            self.report_retro(i, now, *prev);
            return r;
        }
        let start =
            prev.point.after + prev.point.at.saturating_duration_since(prev.point.after) / 2;
        r.earlier = Some((
            prev.raw,
            prev.nr,
            prev.until.saturating_duration_since(start),
        ));
        r.point = LearnPoint {
            seq: r.point.seq,
            ..prev.point
        };
        r
    }

    /// Reports a poll seen only through a blocked learning sample: the
    /// thread sat in one call from that sample to `until` (and, folded in,
    /// in the call before it).
    fn report_retro(&mut self, i: usize, now: Instant, r: Retro) {
        let mut r = self.fold_prev(i, now, r);
        let threshold = self.settings.threshold;
        let t = &self.tracks[i];
        let p = r.point;
        let start = p.after + p.at.saturating_duration_since(p.after) / 2;
        let (cpu, runnable) = match (p.sched, r.until_sched) {
            (Some(a), Some(b)) => (
                Duration::from_nanos(b.cpu_ns.saturating_sub(a.cpu_ns)),
                Duration::from_nanos(b.wait_ns.saturating_sub(a.wait_ns)),
            ),
            _ => (Duration::ZERO, Duration::ZERO),
        };
        // The call ended between the last look that saw it and the one that
        // found it gone (now, if none did).
        let tail = retro_tail(r.until, r.left_at.unwrap_or(now));
        let wall = r.until.saturating_duration_since(start) + tail;
        let own = wall.saturating_sub(runnable);
        if own < threshold {
            return;
        }
        self.stats.polls_seen += 1;
        let id = self.next_id;
        self.next_id += 1;
        let info = t.slot.info();
        let ago = now.saturating_duration_since(start);
        let started = Started {
            id,
            thread: info.name,
            tid: t.tid,
            runtime: info.runtime,
            task_id: None,
            spawned_at: None,
            label: None,
            mode: Mode::Sampled,
            requires_poll: Some(p.seq),
            start: SystemTime::now()
                .checked_sub(ago)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            stuck_for: wall,
            excused: Arc::new(AtomicBool::new(false)),
        };
        let uncertainty = p.at.saturating_duration_since(p.after) / 2
            + tail.max((self.settings.threshold / 4).max(Duration::from_micros(250)));
        let mut events = vec![Event::Started(Box::new(started))];
        let mut rest = own;
        if let Some((raw, nr, sat)) = r.earlier.take() {
            let w = sat.min(rest);
            rest -= w;
            events.push(Event::Sample {
                id,
                stack: StackOf::Captured(Box::new(raw)),
                weight_us: w.as_micros() as u64,
                tag: Tag::OffCpu { syscall: nr },
            });
        }
        events.extend([
            Event::Sample {
                id,
                stack: StackOf::Captured(Box::new(r.raw)),
                weight_us: rest.as_micros() as u64,
                tag: Tag::OffCpu { syscall: r.nr },
            },
            Event::Ended {
                id,
                end: Ended {
                    duration: wall,
                    uncertainty,
                    missed: 0,
                    on_cpu: cpu.min(wall),
                    runnable: runnable.min(wall),
                    reason: EndReason::PollReturned,
                },
            },
        ]);
        for ev in events {
            self.out.send(ev);
        }
    }

    fn check_slot(&mut self, i: usize, now: Instant) -> Option<Instant> {
        let threshold = self.settings.threshold;
        // The epoch first: a thread that leaves moves its generation before
        // the epoch, so an epoch moved by leaving comes with a moved
        // generation here, and the exit is not taken for a return.
        let epoch = self.epoch_of(i, now);
        let t = &mut self.tracks[i];
        let generation = t.slot.generation.load(Ordering::Acquire);
        // Epochs run on across a slot's owners, so this holds for a thread
        // that came and went between the looks too.
        // A poll in progress at the last look and not judged yet (an
        // episode, or a candidate that ends as excused) is unseen too if it
        // ended meanwhile.
        let unjudged = t.epoch % 2 == 1 && t.live.is_none() && !t.candidate;
        let gap = now.saturating_duration_since(t.prev_tick);
        self.stats.unseen += unseen_polls(
            t.epoch,
            epoch,
            Unjudged {
                open: unjudged,
                seen_late: t.seen_late,
            },
            gap,
            threshold,
        );
        if generation != t.generation {
            // The thread left (or the slot was reused by a new thread): did it
            // leave from inside the poll, or after the poll returned?
            let reason = if t.slot.exited_in_poll.load(Ordering::Relaxed) {
                EndReason::ThreadExited
            } else {
                EndReason::PollReturned
            };
            self.end_poll(i, now, reason);
            if let Some(r) = self.tracks[i].retro.take() {
                self.report_retro(i, now, *r);
            }
            let t = &mut self.tracks[i];
            *t = Track::new(t.slot, now, t.prev_tick);
            return None;
        }
        if t.tid == 0 {
            // A thread registers by bumping the generation, then storing its
            // tid: a look in between saw the new generation with no tid yet.
            if t.slot.tid.load(Ordering::Acquire) == 0 {
                return None;
            }
            *t = Track::new(t.slot, now, t.prev_tick);
            return Some(now);
        }
        if t.dead {
            return None;
        }
        if epoch != t.epoch {
            let reason = match self.after_unwinding(i, now, epoch) {
                Some(Leaving::Open) => return Some(now + self.settings.interval),
                Some(Leaving::Gone) => EndReason::ThreadExited,
                Some(Leaving::WentOn) | None => EndReason::PollReturned,
            };
            self.end_poll(i, now, reason);
            let t = &mut self.tracks[i];
            t.cpu_before = t.last_cpu().map_or(0, |(_, cpu)| cpu);
            t.epoch = epoch;
            t.seen_late = gap > threshold;
            t.first_seen = now;
            t.seen_after = t.prev_tick;
            t.acct = None;
            t.candidate = false;
            t.detect_cpu = Duration::ZERO;
            if epoch % 2 == 0 {
                t.note_between_polls(now);
                return None;
            }
            self.stats.polls_seen += 1;
            let t = &mut self.tracks[i];
            if let Some(p) = t.backdate.take() {
                t.seen_after = p.after;
                t.idle_cpu = None;
                if t.backdate_own {
                    // Running since a learning sample was taken in it.
                    t.first_seen = p.at;
                    t.acct = p.sched.map(|sched| Account::new(Point { at: p.at, sched }));
                    t.stat_at_first_look = t.files().stat();
                    return Some(now);
                }
                // Only its frames match the sample's: the same task, maybe
                // polled again since. Its start lies between the sample's
                // look before and now; its own time counts from now, so
                // the polls in between never add to it (measured: a healthy
                // self-waking task's polls of 2 ms read as a 37 ms episode
                // when the report stage took that long to learn its path).
                t.first_seen = now;
                t.begin_account(now);
                return Some(now + threshold);
            }
            t.begin_account(now);
            // The poll began after the last tick; if that tick found the
            // thread between polls, the CPU since is the poll's own, not
            // lost to the gap before this first look (a watchdog kept from
            // its CPU makes that gap long).
            //
            // Only if this poll is the one poll since, which the probe's
            // epoch tells. A busy worker runs hundreds of polls between two
            // looks: their CPU, all credited to the one the next look found,
            // made a 10 µs `yield_now` poll an 11 ms episode. A poll told
            // apart by sampling has no such count, and no credit.
            let next_poll = t.idle_probe.wrapping_add(1);
            let only_one = match t.view {
                None => t.epoch == next_poll,
                Some(_) => t.epoch & sampled::PROBE != 0 && t.epoch & !sampled::PROBE == next_poll,
            };
            if let (Some((at, before)), Some(a)) = (t.idle_cpu.take(), t.acct.as_mut()) {
                if at == t.prev_tick && only_one {
                    a.add_unseen_cpu(now.saturating_duration_since(at), before);
                }
            }
            // The CPU it used before this look may already be a
            // threshold: an episode now, sampled while it still runs.
            let own = t.acct.map_or(Duration::ZERO, |a| a.own);
            if own >= threshold {
                t.candidate = true;
                // That CPU is what the first sample's signal goes by.
                t.detect_cpu = t.acct.map_or(Duration::ZERO, |a| a.cpu);
                return self.start_episode(i, now);
            }
            return Some(now + threshold - own);
        }
        if epoch % 2 == 0 {
            t.note_between_polls(now);
            return None;
        }
        if t.live.is_some() {
            return self.continue_episode(i, now);
        }
        if t.stat_at_first_look.is_none() {
            t.stat_at_first_look = t.files().stat();
        }
        // Since the first look, or since the look between polls before it
        // when the account took in the CPU used in that gap.
        let wall = match t.acct {
            Some(a) => a.wall + now.saturating_duration_since(a.last_at()),
            None => Duration::ZERO,
        }
        .max(now.saturating_duration_since(t.first_seen));
        let own = if wall >= threshold {
            t.candidate = true;
            if t.acct.is_none() {
                t.begin_account(now);
            }
            let files = t.files.get_or_insert_with(|| ThreadFiles::open(t.tid));
            let sched = files.sched();
            let seen = Seen::from_state(files.stat().map(|s| s.state));
            // The poll returned while we read (a watchdog preempted between
            // the reads makes that window long): the thread seen parked is
            // not the poll asleep, and counting it so made a healthy short
            // poll an episode. The next tick ends the poll from what was seen.
            if !t.still_in_poll() {
                return Some(now);
            }
            match (t.acct.as_mut(), sched) {
                (Some(a), Some(sched)) if seen != Seen::Gone => {
                    t.detect_cpu = a.advance(Point { at: now, sched }, seen).cpu;
                    Some(a.own)
                }
                _ => {
                    // Gone without releasing its slot: nothing more to watch.
                    // Its poll passed the threshold in wall time and can no
                    // longer be judged (its clock is gone with it): counted
                    // as unseen, not dropped without a word.
                    t.dead = !t.files().alive();
                    if t.dead {
                        self.stats.unseen += 1;
                        return None;
                    }
                    return Some(now + threshold);
                }
            }
        } else {
            None
        };
        match policy::look(wall, own, threshold, self.settings.interval) {
            Look::Episode => self.start_episode(i, now),
            Look::Again(d) => Some(now + d.max(Duration::from_micros(100))),
        }
    }

    fn start_episode(&mut self, i: usize, now: Instant) -> Option<Instant> {
        if !self.open_episode(i, now) {
            return None;
        }
        self.check_signal();
        self.continue_episode(i, now)
    }

    /// Makes track `i`'s poll an episode, told to the report stage; false
    /// if the report stage's queue refused it (counted as dropped there).
    fn open_episode(&mut self, i: usize, now: Instant) -> bool {
        // A poll first seen when its track was made is counted here.
        self.stats.polls_seen = self.stats.polls_seen.max(1);
        let id = self.next_id;
        self.next_id += 1;
        let t = &mut self.tracks[i];
        if t.slot.remote.load(Ordering::Relaxed) {
            // Found by a scan, perhaps before it named itself.
            if let Some(name) = discovery::name_of(t.tid) {
                t.slot.set_name(name);
            }
        }
        let info = t.slot.info();
        // A poll told apart by sampling has no probe, so no task id and no
        // spawn site (what the slot holds is from an earlier watched poll).
        let sampled = t.view.is_some() && t.epoch & sampled::PROBE == 0;
        let task_id = match sampled {
            true => 0,
            false => t.slot.task_id.load(Ordering::Relaxed),
        };
        let mode = match (sampled, task_id) {
            (true, _) => Mode::Sampled,
            (false, 0) => Mode::Watched,
            (false, _) => Mode::Hooks,
        };
        let excused = Arc::new(AtomicBool::new(false));
        let start = t.poll_start();
        let stuck = now.saturating_duration_since(start);
        let started = Started {
            id,
            thread: info.name,
            tid: t.tid,
            runtime: info.runtime,
            task_id: (task_id != 0).then_some(task_id),
            spawned_at: (!sampled)
                .then(|| t.slot.location.load(Ordering::Relaxed))
                .flatten(),
            label: (!sampled)
                .then(|| t.slot.label.load(Ordering::Relaxed))
                .flatten(),
            mode,
            requires_poll: None,
            start: SystemTime::now()
                .checked_sub(stuck)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            stuck_for: stuck,
            excused: excused.clone(),
        };
        t.live = Some(Live {
            id,
            start,
            start_uncertainty: t.first_seen.saturating_duration_since(t.seen_after) / 2,
            next_sample: now,
            interval: self.settings.interval,
            missed: 0,
            samples: 0,
            emitted_own: Duration::ZERO,
            last_seen: Seen::Runnable,
            last_span: Span::default(),
            last_tag: Tag::OnCpu,
            read_at: None,
            pending: None,
            pending_own: Vec::new(),
            blocks_signal: None,
            stat_ref: t.stat_at_first_look.or_else(|| t.files().stat()),
            in_kernel: false,
            prompt: false,
            retried: false,
            asked_at: now,
            has_stack: false,
            held: Vec::new(),
            // A detection that came late (the thread was descheduled) has
            // already passed 2× and 4×: the first report covers those.
            reported: level_of(stuck, self.settings.threshold),
            excused,
            unwound: None,
        });
        // Started goes ahead of the episode's samples: one queue, in order.
        if !self.out.send(Event::Started(Box::new(started))) {
            self.tracks[i].live = None;
            return false;
        }
        true
    }

    /// The program may have installed its own handler for our signal since
    /// the last episode: then move to a free real-time signal, or sample
    /// running threads no more. Never deliver a signal to a handler that is
    /// not ours.
    fn check_signal(&mut self) {
        if self.no_signal || crate::sys::signal::is_ours(self.settings.signal) {
            return;
        }
        let old = crate::sys::signal::name(self.settings.signal);
        match crate::sys::signal::install_free_realtime() {
            Some(sig) => {
                eprintln!(
                    "pollwatch: the program installed its own {old} handler; sampling with {} from now on",
                    crate::sys::signal::name(sig)
                );
                self.settings.signal = sig;
            }
            None => {
                eprintln!(
                    "pollwatch: the program installed its own {old} handler and no real-time signal is free; \
                     episodes are still reported, running threads without stacks"
                );
                self.no_signal = true;
            }
        }
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
            self.out.send(Event::Progress { id, elapsed });
        }
        if excused {
            // Blocking where blocking belongs: just wait for the poll to end.
            return Some(now + MAX_INTERVAL);
        }
        let answered = self.tracks[i]
            .live
            .as_ref()
            .and_then(|l| l.pending.as_ref())
            .is_some_and(|p| p.is_ready());
        if now < due && !answered {
            return Some(due);
        }
        self.sample(i, now);
        self.tracks[i].live.as_ref().map(|l| l.next_sample)
    }

    fn sample(&mut self, i: usize, now: Instant) {
        let signal = self.settings.signal;
        let (can_read, no_signal) = (self.can_read, self.no_signal);
        let t = &mut self.tracks[i];
        let stack = t.slot.info().stack;
        let (tid, epoch, slot) = (t.tid, t.epoch, t.slot);
        // A sampled poll has no probe to say it returned while its stack
        // was taken: its executor frames, read again after, do.
        let sampled_key = t.view.is_some() && epoch & sampled::PROBE == 0;
        let want_fp = t.view.as_ref().and_then(sampled::View::fp);
        let map_top = t.map_top;
        let in_poll = move || !sampled_key || sampled::look(slot, map_top) == want_fp;
        // Woken early by an answer, or sampling on schedule. A late answer
        // is asked again once (now that the thread runs, for a stack where
        // its time goes); the answer to that is not: a thread that answers
        // late answers every request late, and asking again at each answer
        // signalled it every 50 µs, starving it of the CPU it waited for.
        let due = t.live.as_ref().is_some_and(|l| now >= l.next_sample);
        let probed = t.view.is_none();
        let files = t.files.get_or_insert_with(|| ThreadFiles::open(tid));
        let sched = files.sched();
        let stat = files.stat();
        let seen = Seen::from_state(stat.map(|s| s.state));
        let mut line = [0u8; SYSCALL_LINE];
        let line_len = files.syscall_line(&mut line);
        let syscall = line_len.and_then(|n| procfs::parse_syscall(&line[..n]));
        // The poll returned while we read: what we read is the thread after
        // it (parked, say, or gone: a thread that exits right after its poll
        // returned, as a dropped runtime's worker does), not the poll. The
        // next tick ends the episode, its tail split as the last look inside
        // the poll saw it; read after the thread's files, so that a thread
        // found gone with its poll still open died in it (a raw exit).
        let returned = probed && slot.epoch.load(Ordering::Acquire) != epoch
            || epoch & sampled::PROBE != 0
                && (sampled::PROBE | slot.epoch.load(Ordering::Acquire)) != epoch;
        let (Some(sched), Some(acct)) = (sched, t.acct.as_mut()) else {
            // The thread is gone: its clock cannot be read any more.
            t.dead = !returned && !files.alive();
            if t.dead {
                self.end_episode(i, now, EndReason::ThreadExited);
            }
            return;
        };
        if returned {
            return;
        }
        if seen == Seen::Gone {
            t.dead = true;
            self.end_episode(i, now, EndReason::ThreadExited);
            return;
        }
        // Woken between the two reads: running, then.
        let seen = match (seen, syscall) {
            (Seen::Blocked, Some(Syscall::Running)) => Seen::Runnable,
            _ => seen,
        };
        let span = acct.advance(Point { at: now, sched }, seen);
        let own_total = acct.own;
        let live = t.live.as_mut().expect("sample() needs a live episode");
        let same_line = matches!((&live.read_at, line_len), (Some((l, n)), Some(m)) if *n == m && l[..*n] == line[..m]);
        if let (Some(r), Some(st)) = (live.stat_ref, stat) {
            if let Some(k) = policy::in_kernel(r, st) {
                live.in_kernel = k;
                live.stat_ref = Some(st);
            }
        }
        let in_kernel = seen == Seen::Runnable && live.in_kernel;
        let recent_cpu = match live.samples {
            0 => span.cpu.max(t.detect_cpu),
            _ => span.cpu,
        };
        let how = policy::how(
            seen,
            syscall,
            same_line,
            recent_cpu,
            live.pending.is_some(),
            can_read && stack.is_some(),
            live.last_seen == Seen::Blocked,
        );
        let own = own_total.saturating_sub(live.emitted_own);
        live.emitted_own = own_total;
        let span_start = now.checked_sub(span.wall).unwrap_or(now);
        let mut out: Vec<(StackOf, Tag, Duration)> = Vec::new();
        // The first sample's span is empty (the episode began at this look):
        // the time before it is what its tag covers.
        let tagged = Span {
            cpu: recent_cpu,
            ..span
        };
        let mut tag = policy::tag(seen, syscall, tagged, in_kernel);
        match how {
            How::Same | How::Nothing => out.push((StackOf::Same, tag, own)),
            How::Read { sp, pc } => {
                let began = Instant::now();
                let raw = stack.and_then(|range| {
                    read_blocked(files, range, epoch, sp, pc, &line[..line_len.unwrap_or(0)])
                });
                if raw.is_some() {
                    self.stats.read_latency.record(began.elapsed());
                }
                match raw.filter(|_| in_poll()) {
                    Some(raw) => {
                        live.read_at = line_len.map(|n| (line, n));
                        // A signal still pending for a thread now asleep: its
                        // stack is this one.
                        if let Some(p) = live.pending.take() {
                            drop(p.cancel());
                        }
                        let mut first = Some(StackOf::Captured(Box::new(raw)));
                        for (tg, w) in live.pending_own.drain(..).chain([(tag, own)]) {
                            out.push((first.take().unwrap_or(StackOf::Same), tg, w));
                        }
                    }
                    // It moved while we read: the time goes to the last stack.
                    None => out.push((StackOf::Same, tag, own)),
                }
            }
            How::Signal | How::Await => {
                let target = stack.map(|range| Target {
                    tid,
                    stack: range,
                    epoch: Some(answer_epoch(slot, epoch)),
                });
                let blocked_signal = no_signal || live.blocks_signal == Some(true);
                let answer = match (live.pending.take(), target) {
                    (Some(p), _) => {
                        let sent_before_span = live.asked_at <= span_start;
                        match p.poll() {
                            Answer::Waiting(p) => {
                                // Got CPU all this span and still did not take
                                // the signal: that CPU went to the kernel.
                                tag = policy::tag(seen, syscall, span, sent_before_span);
                                Ok(Answer::Waiting(p))
                            }
                            Answer::Ready(late) => {
                                let kernel =
                                    live.pending_own.iter().any(|(t, _)| *t == Tag::Kernel);
                                match target {
                                    // Answered when the thread got a CPU back:
                                    // where it resumed, a scheduler's
                                    // preemption point (often a syscall's
                                    // return), not where its time went. Ask
                                    // again now that it runs, and failing a
                                    // prompt answer keep the last prompt
                                    // stack. Only a thread that sat in the
                                    // kernel is pictured right by the late
                                    // answer: where that call was made.
                                    Some(target)
                                        if !kernel && !blocked_signal && (due || !live.retried) =>
                                    {
                                        self.stats.signals_sent += 1;
                                        live.retried = true;
                                        live.asked_at = now;
                                        match sampler::request(target, signal) {
                                            Ok(Answer::Ready(fresh)) => {
                                                live.prompt = true;
                                                Ok(Answer::Ready(fresh))
                                            }
                                            Ok(Answer::Waiting(p)) => {
                                                live.pending = Some(p);
                                                if live.prompt {
                                                    Err(Missed::Late)
                                                } else {
                                                    Ok(Answer::Ready(late))
                                                }
                                            }
                                            Err(_) => Ok(Answer::Ready(late)),
                                        }
                                    }
                                    // Asked again already: a late answer
                                    // does not replace a prompt stack.
                                    Some(_) if !kernel && !blocked_signal && live.prompt => {
                                        Err(Missed::Late)
                                    }
                                    _ => Ok(Answer::Ready(late)),
                                }
                            }
                        }
                    }
                    (None, _) if blocked_signal => Err(Missed::SendFailed),
                    (None, Some(target)) => {
                        let sent = Instant::now();
                        self.stats.signals_sent += 1;
                        live.retried = false;
                        live.asked_at = now;
                        let a = sampler::request(target, signal);
                        if let Ok(Answer::Ready(_)) = &a {
                            self.stats.capture_latency.record(sent.elapsed());
                            live.prompt = true;
                        }
                        a
                    }
                    (None, None) => Err(Missed::SendFailed),
                };
                live.pending_own.push((tag, own));
                match answer {
                    Ok(Answer::Ready(raw)) => {
                        let stack = if raw.epoch == answer_key(epoch) && in_poll() {
                            StackOf::Captured(Box::new(raw))
                        } else {
                            // Taken after the poll ended: not this poll's stack.
                            StackOf::Same
                        };
                        let mut first = Some(stack);
                        for (tg, w) in live.pending_own.drain(..) {
                            out.push((first.take().unwrap_or(StackOf::Same), tg, w));
                        }
                    }
                    Ok(Answer::Waiting(p)) => {
                        let age = now.saturating_duration_since(p.sent);
                        if age >= BLOCKED_CHECK_AFTER
                            && live.blocks_signal.is_none()
                            && !span.cpu.is_zero()
                        {
                            live.blocks_signal = files.holds_blocked(signal);
                        }
                        if live.blocks_signal == Some(true) {
                            drop(p.cancel());
                            live.missed += 1;
                            self.stats.missed += 1;
                            let why = "the thread blocks the sampling signal";
                            for (tg, w) in live.pending_own.drain(..) {
                                out.push((StackOf::Unknown(why), tg, w));
                            }
                        } else {
                            live.pending = Some(p);
                        }
                    }
                    Err(why) => {
                        let stack = match why {
                            // Gone between the read of its clock and the
                            // signal (a raw exit): nothing was missed, the
                            // poll ended with the thread, and the next look
                            // ends the episode as `thread_exited`, dated by
                            // that clock read. Its time stays where it was.
                            Missed::Busy | Missed::Late | Missed::ThreadGone => StackOf::Same,
                            _ if no_signal => StackOf::Unknown("no sampling signal is free"),
                            _ if live.blocks_signal == Some(true) => {
                                StackOf::Unknown("the thread blocks the sampling signal")
                            }
                            _ => StackOf::Unknown("the sampling signal could not be sent"),
                        };
                        if !matches!(why, Missed::Busy | Missed::Late | Missed::ThreadGone) {
                            live.missed += 1;
                            self.stats.missed += 1;
                        }
                        let mut first = Some(stack);
                        for (tg, w) in live.pending_own.drain(..) {
                            let s = first.take().unwrap_or(StackOf::Same);
                            out.push((s, tg, w));
                        }
                    }
                }
            }
        }
        live.samples += 1;
        live.last_seen = seen;
        live.last_span = span;
        live.last_tag = tag;
        if live.samples % BACKOFF_EVERY == 0 {
            live.interval = (live.interval * 2).min(MAX_INTERVAL.max(self.settings.interval));
        }
        live.next_sample = Instant::now() + live.interval;
        let id = live.id;
        // Time with no stack yet waits for the first one: until then there
        // is no "same place" to give it to.
        let mut events = Vec::new();
        for (stack, tag, w) in out {
            match stack {
                StackOf::Same if !live.has_stack => live.held.push((tag, w)),
                StackOf::Same => events.push((StackOf::Same, tag, w)),
                first => {
                    live.has_stack = true;
                    let mut first = Some(first);
                    for (t, held) in live.held.drain(..).chain([(tag, w)]) {
                        events.push((first.take().unwrap_or(StackOf::Same), t, held));
                    }
                }
            }
        }
        for (stack, tag, w) in events {
            self.out.send(Event::Sample {
                id,
                stack,
                weight_us: w.as_micros() as u64,
                tag,
            });
        }
    }

    /// For an episode whose poll ended at `epoch` by unwinding (a panic),
    /// whether the thread is leaving with it; `None` for a poll that
    /// returned. The thread releases its slot after the unwinding reaches
    /// its top (a `check` sees its generation move: `thread_exited`); one
    /// that catches the panic goes on, and after a little own time of its
    /// own the poll is taken as returned.
    fn after_unwinding(&mut self, i: usize, now: Instant, epoch: u64) -> Option<Leaving> {
        let quiet = self.settings.threshold / 4;
        let t = &mut self.tracks[i];
        // A sampled thread's own poll count is the watchdog's, not a probe's.
        let probe = match t.view {
            Some(_) if epoch & sampled::PROBE == 0 => return None,
            _ => epoch & !sampled::PROBE,
        };
        if t.live.is_none() || t.slot.unwound_at.load(Ordering::Relaxed) != probe {
            return None;
        }
        let prev_tick = t.prev_tick;
        let Some(sched) = t.files().sched() else {
            return Some(Leaving::Gone);
        };
        let live = t.live.as_mut()?;
        if live.unwound.is_none() {
            live.unwound = Some(Unwound {
                seen: now,
                prev_tick,
                wait_ns: sched.wait_ns,
                late: live.pending.take().and_then(|p| p.cancel()),
            });
        }
        let u = live.unwound.as_ref()?;
        let waited = Duration::from_nanos(sched.wait_ns.saturating_sub(u.wait_ns));
        Some(leaving(
            now.saturating_duration_since(u.seen),
            waited,
            quiet,
        ))
    }

    /// The poll on track `i` ended: close its episode, or, if it was long
    /// only by waiting for a CPU, say which poll was excused.
    fn end_poll(&mut self, i: usize, now: Instant, reason: EndReason) {
        if self.tracks[i].live.is_some() {
            self.end_episode(i, now, reason);
            return;
        }
        let t = &self.tracks[i];
        if !t.candidate {
            return;
        }
        // Its own time had crossed the threshold by the last look, which
        // found it returning as it read (or it returned before a look could
        // start its episode): an episode, with no stack, never excused
        // (measured: a 7.6 ms own-time poll, threshold 2 ms, excused "under
        // the threshold" in the 1,000-runtimes stress case).
        if t.acct.is_some_and(|a| a.own >= self.settings.threshold) {
            if self.open_episode(i, now) {
                self.end_episode(i, now, reason);
            }
            return;
        }
        // Its own time off CPU as the looks measured it, and its CPU from
        // its thread's clock before it began to now (that CPU went to it or
        // to the polls next to it): with both, it may have passed the
        // threshold. Not excused, then: a poll that may have been long,
        // unseen. The looks' own CPU figures are no bound: a watchdog kept
        // from a CPU between taking a look's time and reading the clock
        // reads spans with more CPU than wall time, and caps them.
        let own = t.acct.map_or(Duration::ZERO, |a| a.own);
        let off_cpu = t
            .acct
            .map_or(Duration::ZERO, |a| a.own.saturating_sub(a.cpu));
        let cpu = match (crate::sys::thread::cpu_time_ns(t.tid), t.acct) {
            (Some(now_cpu), _) => policy::cpu_between(t.cpu_before, now_cpu),
            // Gone, its clock with it: the last reading, and all the time since.
            (None, Some(a)) => {
                policy::cpu_between(t.cpu_before, a.last_cpu_ns())
                    + now.saturating_duration_since(a.last_at())
            }
            (None, None) => now.saturating_duration_since(t.seen_after),
        };
        if !policy::excusable(off_cpu, cpu, self.settings.threshold) {
            self.stats.unseen += 1;
            return;
        }
        let end = t.prev_tick + now.saturating_duration_since(t.prev_tick) / 2;
        let info = t.slot.info();
        let task_id = t.slot.task_id.load(Ordering::Relaxed);
        let excused = Descheduled {
            thread: info.name,
            tid: t.tid,
            spawned_at: t.slot.location.load(Ordering::Relaxed),
            task_id: (task_id != 0).then_some(task_id),
            wall: end.saturating_duration_since(t.poll_start()),
            own,
        };
        self.stats.descheduled += 1;
        self.out.send(Event::Descheduled(Box::new(excused)));
    }

    fn end_episode(&mut self, i: usize, now: Instant, reason: EndReason) {
        let t = &mut self.tracks[i];
        let Some(mut live) = t.live.take() else {
            return;
        };
        // Judged: the look that sees its epoch move must not judge it again
        // (it once made one poll an episode and an excused poll).
        t.candidate = false;
        // A poll that unwound ended before the tick that saw it.
        let unwound = live.unwound.take();
        let (now, prev_tick) = unwound
            .as_ref()
            .map_or((now, t.prev_tick), |u| (u.seen, u.prev_tick));
        // The poll ended somewhere between the previous tick and now (or
        // now, for one still blocked at stop).
        // The last look that saw the poll still in progress. A look at the
        // epoch shows that, except for a thread found dead: its epoch stays
        // odd after a raw exit, and only the last read of its clock shows
        // it was alive (and so still in the poll).
        let last_read = t.acct.map_or(live.start, |a| a.last_at());
        let prev = if t.dead {
            last_read
        } else {
            prev_tick.max(last_read)
        };
        let end = match reason {
            EndReason::Stopped => now,
            _ => prev + now.saturating_duration_since(prev) / 2,
        };
        let mut events = Vec::new();
        // An answer that arrived for the pending request, taken during the poll.
        let late = match unwound {
            Some(u) => u.late,
            None => live.pending.take().and_then(|p| p.cancel()),
        };
        let mut first = Some(match late {
            // A sampled poll's late answer may be from after it returned.
            Some(raw)
                if raw.epoch == answer_key(t.epoch)
                    && (t.view.is_none() || t.epoch & sampled::PROBE != 0) =>
            {
                StackOf::Captured(Box::new(raw))
            }
            _ if live.has_stack => StackOf::Same,
            _ if live.missed > 0 => {
                StackOf::Unknown("the thread did not answer the sampling signal")
            }
            _ => StackOf::Unknown("the poll ended before its stack could be taken"),
        });
        // Own time the account took in and no sample handed on: a look that
        // found the poll returning as it read, or an episode that ended
        // before its first sample.
        let unsent = t.acct.map(|a| {
            let tag = match a.cpu * 2 >= a.own {
                true => live.last_tag,
                false => Tag::OffCpu { syscall: None },
            };
            (tag, a.own.saturating_sub(live.emitted_own))
        });
        let tail = t
            .acct
            .as_mut()
            .map(|a| a.tail(end, live.last_seen, live.last_span));
        let mut parts: Vec<(Tag, Duration)> = live
            .held
            .drain(..)
            .chain(live.pending_own.drain(..))
            .chain(unsent)
            .collect();
        if let Some(tail) = tail {
            parts.push((live.last_tag, tail.own));
        }
        for (tag, w) in parts {
            if w.is_zero() {
                continue;
            }
            events.push(Event::Sample {
                id: live.id,
                stack: first.take().unwrap_or(StackOf::Same),
                weight_us: w.as_micros() as u64,
                tag,
            });
        }
        let duration = end.saturating_duration_since(live.start);
        let (on_cpu, runnable) = t
            .acct
            .map_or((Duration::ZERO, Duration::ZERO), |a| a.scaled_to(duration));
        events.push(Event::Ended {
            id: live.id,
            end: Ended {
                duration,
                uncertainty: live.start_uncertainty
                    + now.saturating_duration_since(prev.min(prev_tick)) / 2,
                missed: live.missed,
                on_cpu,
                runnable,
                reason,
            },
        });
        for ev in events {
            self.out.send(ev);
        }
    }
}

/// Where a signal's handler reads the key of the poll it answers for. A
/// probe's own epoch wherever one marks the poll (a `watch` on a sampled
/// thread too): the thread moves it itself as the poll returns, so an
/// answer taken after (a signal answered late, the worker parked by then)
/// is told apart. Only a sampled poll has none, and carries the key the
/// watchdog last stored, checked against its frames instead.
fn answer_epoch(slot: &Slot, key: u64) -> &AtomicU64 {
    if key & sampled::PROBE == 0 && slot.sampled.load(Ordering::Relaxed) {
        &slot.sampled_epoch
    } else {
        &slot.epoch
    }
}

/// The epoch an answer taken inside the poll of `key` carries (see
/// [`answer_epoch`]).
fn answer_key(key: u64) -> u64 {
    key & !sampled::PROBE
}

/// Copies the user stack of a thread blocked in the kernel, from outside.
/// Kept only if the thread did not move meanwhile: its syscall line read
/// again afterwards is the same, byte for byte.
fn read_blocked(
    files: &ThreadFiles,
    range: StackRange,
    epoch: u64,
    sp: u64,
    pc: u64,
    line: &[u8],
) -> Option<RawSample> {
    // An sp outside the registered stack: another stack (a coroutine's, an
    // emulator's own), nothing to read there.
    if !range.contains(sp) || sp % 8 != 0 {
        return None;
    }
    // As much as a signal sample copies (at least enough for the frame
    // records of `fp` mode).
    let want = sampler::copy_bytes().max(32 * 1024);
    let len = ((range.hi() - sp) as usize).min(want);
    let mut bytes = vec![0u8; len];
    let n = crate::sys::memory::read(sp, &mut bytes).ok()?;
    let mut again = [0u8; SYSCALL_LINE];
    let m = files.syscall_line(&mut again)?;
    if again[..m] != *line {
        return None;
    }
    let words: Vec<u64> = bytes[..n - n % 8]
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let truncated = (sp + len as u64) < range.hi();
    Some(RawSample::from_stack(epoch, pc, sp, words, truncated))
}

/// How far past `until`, the last look that found a followed blocked call
/// still in it, the call is taken to have ended, given the first look that
/// found it gone (`gone`): halfway, as a poll's end is, the other half being
/// its uncertainty. Without it, a watchdog kept from its CPU for 135 ms
/// during a 150 ms sleep measured the sleep as the 15 ms it had seen, and
/// dropped it as short.
fn retro_tail(until: Instant, gone: Instant) -> Duration {
    gone.saturating_duration_since(until) / 2
}

/// The poll in progress at a look, as the watchdog left it.
#[derive(Clone, Copy, Debug)]
struct Unjudged {
    /// Under the threshold so far: neither an episode nor a candidate.
    open: bool,
    /// First seen at a look that came more than a threshold late.
    seen_late: bool,
}

/// How many polls that ended between a look at epoch `seen` and the next
/// at epoch `now`, `gap` later, may have been longer than the threshold
/// without being judged: those that began after the first look, and the
/// one in progress then if it was `unjudged` (under the threshold so far).
/// If the looks came in time (a gap under the threshold: the second was
/// due when a poll seen at the first would cross it), only that one, if
/// it was itself first seen late. They ran one after another on one
/// thread, so at most one per threshold of the gap.
fn unseen_polls(
    seen: u64,
    now: u64,
    unjudged: Unjudged,
    gap: Duration,
    threshold: Duration,
) -> u64 {
    if now <= seen {
        return 0;
    }
    let open = u64::from(unjudged.open && seen % 2 == 1);
    if gap <= threshold {
        // In time, but the poll open at the first look had been first seen
        // late: its time before that went unmeasured.
        return open * u64::from(unjudged.seen_late);
    }
    // Whole polls are the odd epochs `o` with seen < o and o + 1 <= now.
    let whole = match now > seen.wrapping_add(1) {
        true => now / 2 - seen.div_ceil(2),
        false => 0,
    };
    let room = (gap.as_nanos() / threshold.as_nanos().max(1)) as u64;
    (whole + open).min(room)
}

/// What the watchdog sees of a stuck poll's thread when it stops.
#[derive(Clone, Copy, Debug, Default)]
struct AtStop {
    /// The thread released its slot (its generation moved).
    left: bool,
    /// It released it from inside the poll (thread-local destructors ran
    /// while the poll was open: a leaked guard, an exit from a hook).
    left_in_poll: bool,
    /// The poll's epoch moved: the poll returned.
    returned: bool,
    /// The thread is still there (a raw `exit` leaves no other trace).
    alive: bool,
}

/// Why an episode still open at stop ended.
fn reason_at_stop(seen: AtStop) -> EndReason {
    match seen {
        AtStop {
            left: true,
            left_in_poll,
            ..
        } => match left_in_poll {
            true => EndReason::ThreadExited,
            false => EndReason::PollReturned,
        },
        AtStop { returned: true, .. } => EndReason::PollReturned,
        AtStop { alive: false, .. } => EndReason::ThreadExited,
        _ => EndReason::Stopped,
    }
}

/// Where a thread stands after a panic unwound out of its poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaving {
    /// Not known yet: the unwinding may still be on its way to the top.
    Open,
    /// The thread went on (the panic was caught, as tokio catches a task's).
    WentOn,
    /// The thread is gone.
    Gone,
}

/// A thread still holding its slot `wall` after its poll was seen unwound,
/// `waited` of it for a CPU: once its own time (the rest) reaches `quiet`,
/// it caught the panic and went on. Leaving takes microseconds of own
/// time; a loaded machine may keep it from a CPU far longer, and that
/// does not count.
fn leaving(wall: Duration, waited: Duration, quiet: Duration) -> Leaving {
    match wall.saturating_sub(waited) >= quiet {
        true => Leaving::WentOn,
        false => Leaving::Open,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A late answer to a watched poll on a sampled thread (instrumented
    /// builder plus `watch`) is that poll's only while the probe says so:
    /// under qemu, with no `process_vm_readv`, a worker parked after its
    /// blocked poll returned answered, and its parked stack joined the
    /// episode.
    #[test]
    fn an_answer_after_a_watched_poll_returned_is_not_that_polls() {
        let table = registry::Table::new(2, |_| Some(0));
        let slot = table
            .acquire(1, registry::ThreadInfo::default(), false)
            .unwrap();
        slot.sampled.store(true, Ordering::Relaxed);
        slot.epoch.store(5, Ordering::Relaxed);
        let key = sampled::PROBE | 5;
        // The watchdog's key of the sampled view, stale once the poll ends.
        slot.sampled_epoch.store(key, Ordering::Relaxed);
        let src = answer_epoch(slot, key);
        assert_eq!(src.load(Ordering::Relaxed), answer_key(key));
        slot.epoch.store(6, Ordering::Relaxed);
        assert_ne!(src.load(Ordering::Relaxed), answer_key(key));
        // A sampled poll's key is the watchdog's; the frames decide.
        slot.sampled_epoch.store(7, Ordering::Relaxed);
        let src = answer_epoch(slot, 7);
        assert_eq!(src.load(Ordering::Relaxed), answer_key(7));
        // No sampling at all: the probe's epoch.
        slot.sampled.store(false, Ordering::Relaxed);
        assert!(std::ptr::eq(answer_epoch(slot, 5), &slot.epoch));
    }

    #[inline(never)]
    fn blocked_in_a_pipe_read(mut s: std::os::unix::net::UnixStream) {
        use std::io::Read;
        let mut buf = [0u8; 8];
        let _ = std::hint::black_box(s.read(&mut buf));
    }

    /// A thread blocked in `read(2)` is read from outside, without a
    /// signal, every time with its whole stack up to the caller.
    #[test]
    fn a_blocked_thread_is_read_without_a_signal_with_its_callers() {
        let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            tx.send((
                crate::sys::thread::gettid(),
                crate::sys::thread::stack_range().unwrap(),
            ))
            .unwrap();
            blocked_in_a_pipe_read(r);
        });
        let (tid, range) = rx.recv().unwrap();
        let files = ThreadFiles::open(tid);
        let mut sym = crate::symbolize::Symbolizer::new();
        let (mut read, mut named) = (0, 0);
        let until = Instant::now() + Duration::from_secs(5);
        while read < 50 && Instant::now() < until {
            let mut line = [0u8; SYSCALL_LINE];
            let Some(n) = files.syscall_line(&mut line) else {
                continue;
            };
            let Some(Syscall::Blocked { sp, pc, .. }) = procfs::parse_syscall(&line[..n]) else {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            let Some(raw) = read_blocked(&files, range, 0, sp, pc, &line[..n]) else {
                continue;
            };
            read += 1;
            let unwound = sym.unwind(&raw);
            let frames = sym.symbolize(&unwound);
            if frames
                .iter()
                .any(|f| f.function.contains("blocked_in_a_pipe_read"))
            {
                named += 1;
            } else {
                eprintln!(
                    "{:#?}",
                    frames.iter().map(|f| &f.function).collect::<Vec<_>>()
                );
            }
        }
        drop(w);
        t.join().unwrap();
        assert_eq!(read, 50, "{read} reads");
        assert_eq!(named, read, "caller named in {named} of {read} reads");
    }

    fn spin_own_cpu(d: Duration) {
        let tid = crate::sys::thread::gettid();
        let start = crate::sys::thread::cpu_time_ns(tid).unwrap_or(0);
        while crate::sys::thread::cpu_time_ns(tid).unwrap_or(u64::MAX) - start < d.as_nanos() as u64
        {
            std::hint::spin_loop();
        }
    }

    const BY_HAND: Duration = Duration::from_millis(20);

    /// A watchdog whose looks the test takes (`tick`), threshold `BY_HAND`,
    /// and what it tells the report stage.
    fn by_hand() -> (Watchdog, std::sync::mpsc::Receiver<Event>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(4096);
        let settings = Settings {
            threshold: BY_HAND,
            interval: Duration::from_millis(1),
            signal: libc::SIGURG,
            stack_memory: 1 << 20,
            started: Instant::now(),
        };
        (Watchdog::new(settings, tx, Arc::new(Stop::default())), rx)
    }

    /// A thread that registers with a short poll, then goes one stage at
    /// each `step`: a poll spinning `spin` of its own CPU, then returning
    /// from it and ending.
    struct Stepped {
        tid: i32,
        go: std::sync::mpsc::Sender<()>,
        done: std::sync::mpsc::Receiver<()>,
        thread: std::thread::JoinHandle<()>,
    }

    impl Stepped {
        fn spawn(spin: Duration) -> Self {
            let (go, wait) = std::sync::mpsc::channel::<()>();
            let (tell, done) = std::sync::mpsc::channel::<()>();
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let thread = std::thread::spawn(move || {
                drop(crate::enter_poll());
                tid_tx.send(crate::sys::thread::gettid()).unwrap();
                wait.recv().unwrap();
                let poll = crate::enter_poll();
                spin_own_cpu(spin);
                tell.send(()).unwrap();
                wait.recv().unwrap();
                drop(poll);
                tell.send(()).unwrap();
            });
            let tid = tid_rx.recv().unwrap();
            Stepped {
                tid,
                go,
                done,
                thread,
            }
        }

        fn step(&self) {
            self.go.send(()).unwrap();
            self.done.recv().unwrap();
        }

        /// Returns from the poll and waits until the thread is gone.
        fn finish(self) {
            self.step();
            self.thread.join().unwrap();
            while std::path::Path::new(&format!("/proc/self/task/{}", self.tid)).exists() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// How the episodes told to the report stage ended.
    fn ends(wd: &mut Watchdog, rx: &std::sync::mpsc::Receiver<Event>) -> Vec<EndReason> {
        wd.out.flush();
        rx.try_iter()
            .filter_map(|ev| match ev {
                Event::Ended { end, .. } => Some(end.reason),
                _ => None,
            })
            .collect()
    }

    /// A slot a new thread took over, found by a look between that
    /// thread's polls: its first poll, first seen by a late look, counts
    /// the CPU it used before that look.
    #[test]
    fn a_reused_slot_seen_between_polls_counts_the_cpu_before_the_first_look() {
        let (mut wd, _rx) = by_hand();
        // Other tests register threads too: try until ours reuses a slot.
        for _ in 0..50 {
            // A thread takes a slot and leaves it free.
            std::thread::spawn(|| drop(crate::enter_poll()))
                .join()
                .unwrap();
            wd.tick(Instant::now());
            let known = wd.tracks.len();
            let t = Stepped::spawn(BY_HAND * 3);
            let mut slots = Vec::new();
            registry::TABLE.snapshot(&mut slots);
            let reused = slots
                .iter()
                .position(|s| s.tid.load(Ordering::Acquire) == t.tid)
                .filter(|i| *i < known);
            let Some(i) = reused else {
                t.step();
                t.finish();
                continue;
            };
            // The look that finds the new owner registered, between polls.
            wd.tick(Instant::now());
            assert_eq!(wd.tracks[i].tid, t.tid);
            // Its first poll spins three thresholds before the next look.
            t.step();
            wd.tick(Instant::now());
            let own = wd.tracks[i].acct.map(|a| a.own);
            t.finish();
            assert!(
                own.is_some_and(|own| own >= BY_HAND * 2),
                "own time at the first look inside the poll: {own:?}"
            );
            return;
        }
        panic!("no thread took over a free slot in 50 tries");
    }

    /// A look between polls, then hundreds of short polls that use two
    /// thresholds of CPU in all, then one more poll, which the next look
    /// finds: the CPU of the polls before it is not its own.
    #[test]
    fn the_cpu_of_earlier_polls_is_not_the_found_polls_own() {
        let (mut wd, rx) = by_hand();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (tell, done) = std::sync::mpsc::channel::<i32>();
        let thread = std::thread::spawn(move || {
            drop(crate::enter_poll());
            tell.send(crate::sys::thread::gettid()).unwrap();
            wait.recv().unwrap();
            for _ in 0..200 {
                let p = crate::enter_poll();
                spin_own_cpu(BY_HAND / 100);
                drop(p);
            }
            let poll = crate::enter_poll();
            tell.send(0).unwrap();
            wait.recv().unwrap();
            drop(poll);
        });
        let tid = done.recv().unwrap();
        wd.tick(Instant::now());
        let i = wd.tracks.iter().position(|t| t.tid == tid).unwrap();
        go.send(()).unwrap();
        done.recv().unwrap();
        wd.tick(Instant::now());
        let own = wd.tracks[i].acct.map(|a| a.own);
        let open = wd.tracks[i].live.is_some();
        go.send(()).unwrap();
        thread.join().unwrap();
        assert!(!open, "an episode of a poll that had just begun");
        assert!(
            own.is_some_and(|own| own < BY_HAND / 2),
            "own time of a poll that had just begun: {own:?}"
        );
        wd.tick(Instant::now());
        assert_eq!(ends(&mut wd, &rx), vec![]);
    }

    /// A thread looked at between its polls, then (the next look) two
    /// thresholds of CPU into its poll; the watchdog, and the thread's
    /// track.
    fn first_look_two_thresholds_in() -> (Watchdog, std::sync::mpsc::Receiver<Event>, Stepped, usize)
    {
        let (mut wd, rx) = by_hand();
        let t = Stepped::spawn(BY_HAND * 2);
        wd.tick(Instant::now());
        let i = wd.tracks.iter().position(|tr| tr.tid == t.tid).unwrap();
        t.step();
        wd.tick(Instant::now());
        (wd, rx, t, i)
    }

    /// A poll first seen by a late look, after it used a threshold of CPU
    /// since the look before (which found the thread between polls), is
    /// an episode at that first look: it may return before the next.
    #[test]
    fn a_poll_first_seen_late_with_a_threshold_of_cpu_is_an_episode_at_once() {
        let (mut wd, rx, t, i) = first_look_two_thresholds_in();
        let open = wd.tracks[i].live.is_some();
        t.finish();
        wd.tick(Instant::now());
        assert!(open, "no episode at the first look inside the poll");
        assert_eq!(ends(&mut wd, &rx), vec![EndReason::PollReturned]);
    }

    /// A thread that exits right after its poll returned (a dropped
    /// runtime's worker), between the look that saw the poll and the
    /// sample that reads its files: the poll returned, it did not die in
    /// it, and it is one episode.
    #[test]
    fn a_thread_gone_after_its_poll_returned_is_not_taken_for_dying_in_it() {
        let (mut wd, rx, t, i) = first_look_two_thresholds_in();
        assert!(wd.tracks[i].live.is_some(), "an episode");
        // The poll returns and the thread is gone; the sample due next
        // reads its files before any look sees the epoch move.
        t.finish();
        wd.sample(i, Instant::now());
        wd.tick(Instant::now());
        assert_eq!(ends(&mut wd, &rx), vec![EndReason::PollReturned]);
    }
    #[test]
    fn how_an_episode_open_at_stop_ended() {
        let still = AtStop {
            alive: true,
            ..AtStop::default()
        };
        assert_eq!(reason_at_stop(still), EndReason::Stopped);
        let returned = AtStop {
            returned: true,
            ..still
        };
        assert_eq!(reason_at_stop(returned), EndReason::PollReturned);
        // A raw exit: no slot released, the epoch still odd, the tid gone.
        let died = AtStop {
            alive: false,
            ..still
        };
        assert_eq!(reason_at_stop(died), EndReason::ThreadExited);
        // Left after the poll returned, or from inside it (its tid is gone
        // either way by then).
        let left = AtStop {
            left: true,
            returned: true,
            alive: false,
            ..still
        };
        assert_eq!(reason_at_stop(left), EndReason::PollReturned);
        let left_in_poll = AtStop {
            left_in_poll: true,
            ..left
        };
        assert_eq!(reason_at_stop(left_in_poll), EndReason::ThreadExited);
    }

    #[test]
    fn a_thread_a_panic_unwound_out_of_its_poll_is_waited_for_by_its_own_time() {
        let ms = Duration::from_millis;
        let quiet = ms(5);
        assert_eq!(leaving(ms(0), ms(0), quiet), Leaving::Open);
        assert_eq!(
            leaving(quiet - Duration::from_nanos(1), ms(0), quiet),
            Leaving::Open
        );
        assert_eq!(leaving(quiet, ms(0), quiet), Leaving::WentOn);
        // A saturated machine: 100 ms later, 97 of them waiting for a CPU.
        assert_eq!(leaving(ms(100), ms(97), quiet), Leaving::Open);
        assert_eq!(leaving(ms(100), ms(95), quiet), Leaving::WentOn);
        // The wait is read at a later tick than the wall time: never negative.
        assert_eq!(leaving(ms(1), ms(3), quiet), Leaving::Open);
    }

    #[test]
    fn a_followed_call_ends_halfway_to_the_look_that_found_it_gone() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(retro_tail(t0, t0 + ms(134)), ms(67));
        assert_eq!(retro_tail(t0 + ms(5), t0), Duration::ZERO);
    }

    #[test]
    fn polls_that_came_and_went_while_the_watchdog_was_late() {
        let ms = Duration::from_millis;
        let t = ms(1);
        let open = Unjudged {
            open: true,
            seen_late: false,
        };
        let judged = Unjudged {
            open: false,
            ..open
        };
        let late = Unjudged {
            seen_late: true,
            ..open
        };
        // A poll first seen late, ended unjudged by a look in time.
        assert_eq!(unseen_polls(5, 6, late, ms(1), t), 1);
        assert_eq!(unseen_polls(5, 6, open, ms(1), t), 0);
        // Looked in time: whatever happened in between was shorter.
        assert_eq!(unseen_polls(4, 40, open, ms(1), t), 0);
        // Between polls at both looks, 3 whole polls in a 10 ms gap.
        assert_eq!(unseen_polls(4, 10, open, ms(10), t), 3);
        // In a poll at the first look: 2 more after it, and that one if
        // it was still under the threshold (not judged yet).
        assert_eq!(unseen_polls(5, 10, judged, ms(10), t), 2);
        assert_eq!(unseen_polls(5, 10, open, ms(10), t), 3);
        // In a poll at the second look: that one is still to be seen.
        assert_eq!(unseen_polls(4, 9, open, ms(10), t), 2);
        // The same poll at both looks; the one seen at the first ending.
        assert_eq!(unseen_polls(5, 5, open, ms(10), t), 0);
        assert_eq!(unseen_polls(5, 6, judged, ms(10), t), 0);
        assert_eq!(unseen_polls(5, 6, open, ms(10), t), 1);
        // Thousands of tiny polls in a 3.5 ms gap: at most 3 could be long.
        assert_eq!(
            unseen_polls(0, 5000, open, Duration::from_micros(3500), t),
            3
        );
    }

    #[test]
    fn levels() {
        let t = Duration::from_millis(20);
        assert_eq!(level_of(Duration::from_millis(39), t), 0);
        assert_eq!(level_of(Duration::from_millis(40), t), 1);
        assert_eq!(level_of(Duration::from_millis(80), t), 2);
    }
}
