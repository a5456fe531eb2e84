//! What the watchdog tells the report stage, as raw data: episodes and their
//! samples, with stacks still as addresses. Symbolization happens downstream.

use std::panic::Location;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::sampler::RawSample;

/// Whether a stuck thread was burning CPU or waiting in the kernel when sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Tag {
    /// Running (or runnable) user or kernel code: a CPU loop, a big memcpy.
    OnCpu,
    /// Sleeping in the kernel, in syscall `nr` when known: sleep, lock, I/O wait.
    OffCpu { syscall: Option<u32> },
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
    pub(crate) start: SystemTime,
    /// How long the poll had been running when the watchdog noticed.
    pub(crate) stuck_for: Duration,
    /// Set downstream when the first stack shows this is blocking where
    /// blocking belongs (`block_in_place`, the blocking pool): the watchdog then
    /// stops sampling it.
    pub(crate) excused: Arc<AtomicBool>,
}

/// One message from the watchdog to the report stage.
#[derive(Debug)]
pub(crate) enum Event {
    Started(Box<Started>),
    /// `weight_us` of blocked time with state `tag`. `raw` is the stack; `None`
    /// means "same place as the previous sample" (the thread sat in the same
    /// syscall, so it was not signalled) or a missed sample.
    Sample {
        id: u64,
        raw: Option<Box<RawSample>>,
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
        duration: Duration,
        /// How far `duration` may be from the truth, from the watchdog's own
        /// tick timing (large only when the watchdog itself was starved).
        uncertainty: Duration,
        missed: u32,
        reason: EndReason,
    },
    /// Not an episode after all: no sample could be taken, because the
    /// thread got no CPU to answer on or the poll ended first. Forget it;
    /// the watchdog counts it.
    Withdrawn {
        id: u64,
    },
    /// The watchdog stopped; its counters.
    Finished(WatchdogStats),
}

/// Counters the watchdog keeps about what it saw but did not report.
#[derive(Clone, Debug, Default)]
pub(crate) struct WatchdogStats {
    /// Polls that crossed the threshold only because the thread waited for a
    /// CPU, or withdrawn because it never got one to answer a sample on.
    pub(crate) descheduled: u64,
    /// Episodes withdrawn because their poll ended before a single sample.
    pub(crate) unsampled: u64,
    /// Signals that got no answer before the deadline.
    pub(crate) missed: u64,
    /// Samples dropped because the report stage fell behind.
    pub(crate) dropped: u64,
    /// Signal sent to stack in hand, for every answered sample.
    pub(crate) capture_latency: crate::sampler::latency::Histogram,
}
