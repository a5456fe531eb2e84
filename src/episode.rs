//! What the watchdog tells the report stage, as raw data: episodes and their
//! samples, with stacks still as addresses. Symbolization happens downstream.

use std::panic::Location;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::sampler::RawSample;

/// Where a stuck thread's own time went while it was sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Tag {
    /// Running user code: a CPU loop, a big memcpy.
    OnCpu,
    /// Running inside the kernel: a long `read` from the page cache,
    /// `munmap`, page faults (the thread got CPU but could not take a signal).
    Kernel,
    /// Sleeping in the kernel, in syscall `nr` when known: sleep, lock, I/O wait.
    OffCpu { syscall: Option<u32> },
}

/// Where a sample's stack comes from.
#[derive(Debug)]
pub(crate) enum StackOf {
    /// Captured now (by the signal handler, or copied from a blocked thread).
    Captured(Box<RawSample>),
    /// The same place as the previous sample of this episode.
    Same,
    /// No stack could be had; why, in a few words.
    Unknown(&'static str),
}

/// A long poll that is not an episode: its own time stayed below the
/// threshold, the rest was waiting for a CPU.
#[derive(Clone, Debug)]
pub(crate) struct Descheduled {
    pub(crate) thread: String,
    pub(crate) tid: i32,
    pub(crate) spawned_at: Option<&'static Location<'static>>,
    pub(crate) task_id: Option<u64>,
    pub(crate) wall: Duration,
    pub(crate) own: Duration,
}

/// Why an episode ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The poll returned.
    PollReturned,
    /// The thread exited (or released its slot) while stuck.
    ThreadExited,
    /// pollwatch was stopped while the thread was still stuck.
    Stopped,
}

/// How an episode's poll was found: by the runtime's poll hooks, by a probe
/// (`watch`, `enter_poll`, a tower layer), or by sampling the thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Hooks,
    Watched,
    Sampled,
}

/// Facts fixed when an episode starts.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) id: u64,
    pub(crate) thread: String,
    pub(crate) tid: i32,
    pub(crate) runtime: Option<Arc<str>>,
    pub(crate) task_id: Option<u64>,
    pub(crate) spawned_at: Option<&'static Location<'static>>,
    /// The innermost named poll's name (a route), if any.
    pub(crate) label: Option<&'static String>,
    pub(crate) mode: Mode,
    /// Reported only if learning sample `n` (see [`Event::Learn`]) was taken
    /// inside a task poll: an episode seen only through that sample, whose
    /// thread may as well have been parked.
    pub(crate) requires_poll: Option<u64>,
    pub(crate) start: SystemTime,
    /// How long the poll had been running when the watchdog noticed.
    pub(crate) stuck_for: Duration,
    /// Set downstream when the first stack shows this is blocking where
    /// blocking belongs (`block_in_place`, the blocking pool): the watchdog then
    /// stops sampling it.
    pub(crate) excused: Arc<AtomicBool>,
}

/// How an episode ended, as the watchdog measured it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ended {
    pub(crate) duration: Duration,
    /// How far `duration` may be from the truth, from the watchdog's own
    /// tick timing (large only when the watchdog itself was starved).
    pub(crate) uncertainty: Duration,
    pub(crate) missed: u32,
    /// CPU time of the thread during the poll (from its first look).
    pub(crate) on_cpu: Duration,
    /// Time the thread was runnable but not running during the poll.
    pub(crate) runnable: Duration,
    pub(crate) reason: EndReason,
}

/// One message from the watchdog to the report stage.
#[derive(Debug)]
pub(crate) enum Event {
    Started(Box<Started>),
    /// `weight_us` of the poll's own time, spent in state `tag`, at `stack`.
    Sample {
        id: u64,
        stack: StackOf,
        weight_us: u64,
        tag: Tag,
    },
    /// Still stuck after `elapsed` (sent at 2× and 4× the threshold).
    Progress {
        id: u64,
        elapsed: Duration,
    },
    Ended {
        id: u64,
        end: Ended,
    },
    /// A long poll excused as waiting for a CPU.
    Descheduled(Box<Descheduled>),
    /// A thread watched by sampling appeared: load what learning its poll
    /// boundaries needs now, before its first learning sample.
    Warm,
    /// A sample of a thread watched by sampling, outside any poll it knows:
    /// for the report stage to learn where task polls begin on that
    /// thread's stack (published in the slot's boundary table).
    Learn {
        slot: &'static crate::registry::Slot,
        generation: u64,
        /// The watchdog's number for this sample (from 1).
        seq: u64,
        raw: Box<RawSample>,
        /// Where the thread was blocked, `(sp, pc)`, when the stack was
        /// copied without a signal: a park place if the stack shows its
        /// executor waiting between polls.
        site: Option<(u64, u64)>,
    },
    /// The watchdog stopped; its counters.
    Finished(WatchdogStats),
}

/// Counters the watchdog keeps about what it saw but did not report.
#[derive(Clone, Debug, Default)]
pub(crate) struct WatchdogStats {
    /// Polls that crossed the threshold only because the thread waited for a CPU.
    pub(crate) descheduled: u64,
    /// Signals that got no answer before the deadline.
    pub(crate) missed: u64,
    /// Samples dropped because the report stage fell behind.
    pub(crate) dropped: u64,
    /// Polls that may have been long, unseen while the watchdog was late.
    pub(crate) unseen: u64,
    /// Signal sent to stack in hand, for every answered sample.
    pub(crate) capture_latency: crate::sampler::latency::Histogram,
    /// Time of each stack read without a signal.
    pub(crate) read_latency: crate::sampler::latency::Histogram,
    /// Polls the watchdog's looks found running, on any thread, found by
    /// any means (probe, hooks, sampling): 0 means nothing was watched.
    pub(crate) polls_seen: u64,
    /// Sampling signals sent.
    pub(crate) signals_sent: u64,
    /// The watchdog thread's own CPU time, at its stop.
    pub(crate) cpu: Duration,
    /// Workers of runtimes watched only through `watch` busy outside
    /// watched polls (`registry::Runtimes`), at its stop.
    pub(crate) busy_outside: Duration,
}
