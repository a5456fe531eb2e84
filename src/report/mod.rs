//! The report: blocking episodes with symbolized stacks, and the artifacts
//! written from them (flamegraph, folded stacks, JSON lines, summary).

mod artifacts;
pub(crate) mod files;
mod flamegraph;
#[cfg(pollwatch_supported)]
mod flush;
mod folded;
mod gate;
#[cfg(test)]
mod golden;
pub(crate) mod jsonl;
pub(crate) mod load;
mod pprof;
pub(crate) mod stacks;
#[cfg(pollwatch_supported)]
pub(crate) mod stage;
pub(crate) mod summary;
#[cfg(pollwatch_supported)]
mod syscalls;
pub(crate) mod view;
#[cfg(test)]
mod wellformed;

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use artifacts::{Artifacts, MalformedLine};
pub use gate::{Budget, BudgetExceeded, Exceeded};

/// One frame of a symbolized stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Frame {
    /// Demangled function name without hash (`app::handler::{{closure}}`), or
    /// `module+0xoffset` when there is no symbol.
    pub function: String,
    /// Source file, when debug info has it.
    pub file: Option<String>,
    /// Source line, when debug info has it.
    pub line: Option<u32>,
    /// The raw address this frame was resolved from (several inlined frames share one).
    pub address: u64,
    /// Whether this frame was inlined into the next (outer) one.
    pub inlined: bool,
}

impl Frame {
    #[cfg_attr(not(pollwatch_supported), allow(dead_code))]
    pub(crate) fn unknown(address: u64, module: Option<&str>) -> Self {
        Frame {
            function: match module {
                Some(m) => format!("{m}+{address:#x}"),
                None => format!("{address:#x}"),
            },
            file: None,
            line: None,
            address,
            inlined: false,
        }
    }

    /// `file:line`, shortened to the last meaningful path components, if known.
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_deref()?;
        let short = shorten_path(file);
        Some(match self.line {
            Some(l) => format!("{short}:{l}"),
            None => short.to_owned(),
        })
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location() {
            Some(loc) => write!(f, "{} ({loc})", self.function),
            None => f.write_str(&self.function),
        }
    }
}

static CWD: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Shows paths relative to `dir` from now on, unless a path was shown already.
pub(crate) fn set_path_base(dir: Option<String>) {
    let _ = CWD.set(dir);
}

/// The directory source paths are shown relative to: the process's working
/// directory (recorded in `episodes.jsonl` as `cwd`), or the one recorded
/// there when artifacts are rendered again elsewhere.
pub(crate) fn path_base() -> Option<&'static str> {
    CWD.get_or_init(|| {
        std::env::current_dir()
            .ok()
            .map(|d| d.display().to_string())
    })
    .as_deref()
}

/// `s` with every control character (a newline in a thread name, an escape
/// sequence in a path) replaced by `�`, so no artifact line can be broken or
/// a terminal reprogrammed by a name.
pub(crate) fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

pub(crate) fn shorten_path(file: &str) -> &str {
    if let Some(rest) = path_base()
        .and_then(|cwd| file.strip_prefix(cwd))
        .and_then(|rest| rest.strip_prefix('/'))
    {
        return rest;
    }
    if let Some(i) = file.find("/library/") {
        return &file[i + "/library/".len()..];
    }
    if let Some(i) = file.rfind("/src/") {
        let head = &file[..i];
        let start = head.rfind('/').map_or(0, |j| j + 1);
        return &file[start..];
    }
    file
}

/// Where a sampled thread's own time went: running your code, running in
/// the kernel, or asleep in the kernel. (Time it spent waiting for a CPU is
/// not the poll's own: it is in [`Episode::runnable`], not in any stack.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThreadState {
    /// Running user code (a CPU loop, a big copy, a hash of a large buffer).
    OnCpu,
    /// Sleeping in the kernel; the syscall's name when known (`futex`, `clock_nanosleep`, `read`).
    OffCpu(Option<String>),
    /// Running inside the kernel, on a CPU: a long `read` from the page
    /// cache, `munmap`, page faults. The syscall's name when known.
    Syscall(Option<String>),
    /// A state this version does not know, as read back from an
    /// `episodes.jsonl` written by another version of pollwatch.
    Other(String),
}

impl ThreadState {
    /// The state [`Display`](fmt::Display) printed as `s`: the inverse of
    /// `to_string`, for reading `episodes.jsonl` back.
    pub(crate) fn parse(s: &str) -> ThreadState {
        match s {
            "on-cpu" => ThreadState::OnCpu,
            "off-cpu" => ThreadState::OffCpu(None),
            "syscall" => ThreadState::Syscall(None),
            _ => match (s.strip_prefix("off-cpu: "), s.strip_prefix("syscall: ")) {
                (Some(sys), _) => ThreadState::OffCpu(Some(sys.to_owned())),
                (_, Some(sys)) => ThreadState::Syscall(Some(sys.to_owned())),
                _ => ThreadState::Other(s.to_owned()),
            },
        }
    }
}

impl fmt::Display for ThreadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThreadState::OnCpu => f.write_str("on-cpu"),
            ThreadState::OffCpu(Some(s)) => write!(f, "off-cpu: {s}"),
            ThreadState::OffCpu(None) => f.write_str("off-cpu"),
            ThreadState::Syscall(Some(s)) => write!(f, "syscall: {s}"),
            ThreadState::Syscall(None) => f.write_str("syscall"),
            ThreadState::Other(s) => f.write_str(s),
        }
    }
}

/// One distinct stack seen during an episode, with the blocked time it got.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Stack {
    /// Frames, innermost (the blocking call) first, executor frames cut off.
    pub frames: Vec<Frame>,
    /// Blocked time attributed to this stack.
    pub weight: Duration,
    /// What the thread was doing there.
    pub state: ThreadState,
    /// Raw addresses, innermost first, as unwound and before symbolization
    /// and trimming (the interrupted pc, then return addresses).
    pub raw: Vec<u64>,
    /// A sample of this stack copied less than the whole stack (the copy
    /// size was reached), so frames past the copy came from frame records
    /// only, or are missing.
    pub truncated: bool,
}

/// A poll that held its worker thread longer than the threshold.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Episode {
    pub(crate) id: u64,
    pub(crate) thread: String,
    pub(crate) tid: i32,
    pub(crate) runtime: Option<String>,
    pub(crate) task_id: Option<u64>,
    pub(crate) spawned_at: Option<String>,
    pub(crate) label: Option<String>,
    pub(crate) start: SystemTime,
    pub(crate) detected_after: Duration,
    pub(crate) duration: Duration,
    pub(crate) uncertainty: Duration,
    pub(crate) samples: u32,
    pub(crate) missed: u32,
    pub(crate) on_cpu: Duration,
    pub(crate) off_cpu: Duration,
    pub(crate) runnable: Duration,
    pub(crate) stacks: Vec<Stack>,
    pub(crate) unwind: crate::config::Unwind,
    pub(crate) ended_by: EndedBy,
    pub(crate) mode: EpisodeMode,
    pub(crate) future: Option<String>,
}

/// How an [`Episode`]'s poll was found: `mode` in `episodes.jsonl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EpisodeMode {
    /// tokio's poll hooks (`--cfg tokio_unstable` and an instrumented
    /// builder): every task's polls, with task ids and spawn sites (`"hooks"`).
    Hooks,
    /// A probe: [`watch`](crate::watch), [`enter_poll`](crate::enter_poll),
    /// a tower layer, an executor adapter (`"watched"`).
    Watched,
    /// Sampling the thread's stack, no probe: stable tokio's instrumented
    /// builder or `pollwatch::tokio::attach()` (`"sampled"`). No task id
    /// and no spawn site; [`Episode::future`] names the task's future.
    Sampled,
    /// Read back from an `episodes.jsonl` whose `mode` this version does not
    /// know; never produced by a run.
    Unknown,
}

impl EpisodeMode {
    /// The string `episodes.jsonl` uses, e.g. `"sampled"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EpisodeMode::Hooks => "hooks",
            EpisodeMode::Watched => "watched",
            EpisodeMode::Sampled => "sampled",
            EpisodeMode::Unknown => "unknown",
        }
    }

    /// The mode for a string of `episodes.jsonl` ([`Unknown`](EpisodeMode::Unknown)
    /// for any other).
    pub(crate) fn parse(s: &str) -> EpisodeMode {
        [
            EpisodeMode::Hooks,
            EpisodeMode::Watched,
            EpisodeMode::Sampled,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
        .unwrap_or(EpisodeMode::Unknown)
    }
}

impl fmt::Display for EpisodeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an [`Episode`] ended: `ended_by` in `episodes.jsonl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndedBy {
    /// The poll returned: the usual end (`"poll_returned"`).
    PollReturned,
    /// The thread exited while inside the poll (`"thread_exited"`).
    ThreadExited,
    /// pollwatch stopped while the poll was still running
    /// (`"still_blocked_at_stop"`): the duration is a lower bound.
    StillBlockedAtStop,
    /// Read back from an `episodes.jsonl` whose `ended_by` this version does
    /// not know (written by a later pollwatch); never produced by a run.
    Unknown,
}

impl EndedBy {
    /// The string `episodes.jsonl` uses, e.g. `"poll_returned"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::PollReturned => "poll_returned",
            EndedBy::ThreadExited => "thread_exited",
            EndedBy::StillBlockedAtStop => "still_blocked_at_stop",
            EndedBy::Unknown => "unknown",
        }
    }

    /// The reason for a string of `episodes.jsonl` ([`Unknown`](EndedBy::Unknown)
    /// for any other).
    pub(crate) fn parse(s: &str) -> EndedBy {
        [
            EndedBy::PollReturned,
            EndedBy::ThreadExited,
            EndedBy::StillBlockedAtStop,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
        .unwrap_or(EndedBy::Unknown)
    }
}

impl fmt::Display for EndedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Episode {
    /// The episode's number in this run, from 1 in the order episodes started
    /// (`id` in `episodes.jsonl`, where the same number names it).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sample requests that got no stack: the thread did not answer in time
    /// or had exited (`missed_samples` in `episodes.jsonl`).
    pub fn missed_samples(&self) -> u32 {
        self.missed
    }

    /// How the episode ended (`ended_by` in `episodes.jsonl`).
    pub fn ended_by(&self) -> EndedBy {
        self.ended_by
    }

    /// How the poll was found (`mode` in `episodes.jsonl`).
    pub fn mode(&self) -> EpisodeMode {
        self.mode
    }

    /// For a [sampled](EpisodeMode::Sampled) episode, which has no spawn
    /// location: the task's future, named from the stack (its outermost
    /// frame of the user's code, e.g. `app::handle::{{closure}}`).
    pub fn future(&self) -> Option<&str> {
        self.future.as_deref()
    }

    /// How long the poll held the thread (within a tick of the watchdog).
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// How far [`duration`](Episode::duration) may be from the truth: half a
    /// watchdog tick at each end, normally a few milliseconds; more only if the
    /// watchdog thread itself was kept from running (an overloaded machine).
    pub fn duration_uncertainty(&self) -> Duration {
        self.uncertainty
    }

    /// Name of the thread it happened on (`tokio-runtime-worker`).
    pub fn thread_name(&self) -> &str {
        &self.thread
    }

    /// Kernel thread id.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// The runtime label given at hook-up, if any.
    pub fn runtime(&self) -> Option<&str> {
        self.runtime.as_deref()
    }

    /// tokio task id (with `--cfg tokio_unstable`).
    pub fn task_id(&self) -> Option<u64> {
        self.task_id
    }

    /// Where the task was spawned (tokio hooks) or the future wrapped (`watch`), as `file:line:col`.
    pub fn spawned_at(&self) -> Option<&str> {
        self.spawned_at.as_deref()
    }

    /// The name of the innermost named poll: the route (`GET /users/{id}`)
    /// for a request watched by `tower::WatchLayer`.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// Wall-clock time the poll began.
    pub fn start(&self) -> SystemTime {
        self.start
    }

    /// How long the poll had been running when the watchdog noticed it: the
    /// threshold plus the detection delay, which is at most about one of the
    /// watchdog's idle ticks (half the threshold, at least 250 µs) when the
    /// thread gets its CPU.
    pub fn detected_after(&self) -> Duration {
        self.detected_after
    }

    /// Stack samples taken (signals answered, plus samples reused while the
    /// thread sat in the same syscall).
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// Time the thread spent running on a CPU during the episode, in user
    /// code or in the kernel (the thread's CPU clock).
    pub fn on_cpu(&self) -> Duration {
        self.on_cpu
    }

    /// Time the thread spent asleep in the kernel during the episode.
    pub fn off_cpu(&self) -> Duration {
        self.off_cpu
    }

    /// Time the thread was runnable but not running during the episode: it
    /// waited for a CPU (the scheduler's `schedstat`). Not the poll's own
    /// doing, so not in any stack's weight; `on_cpu + off_cpu + runnable`
    /// is the duration.
    pub fn runnable(&self) -> Duration {
        self.runnable
    }

    /// The heaviest stack of the heaviest call site, innermost first: where the poll blocked.
    pub fn frames(&self) -> &[Frame] {
        self.heaviest().map_or(&[], |s| &s.frames)
    }

    /// Every distinct stack seen, heaviest call site first (stacks grouped by
    /// their innermost frame of your code), heaviest stack first within one.
    pub fn stacks(&self) -> &[Stack] {
        &self.stacks
    }

    /// The innermost frame of your own code in the heaviest stack.
    pub fn top_user_frame(&self) -> Option<&Frame> {
        view::top_user_frame(self.frames())
    }

    /// Whether any stack of this episode has a frame whose function contains `name`.
    pub fn blocked_in(&self, name: &str) -> bool {
        self.stacks
            .iter()
            .any(|s| s.frames.iter().any(|f| f.function.contains(name)))
    }

    fn heaviest(&self) -> Option<&Stack> {
        self.stacks.first()
    }

    /// Approximately what this episode holds on the heap, for the report's
    /// memory budget.
    #[cfg_attr(not(pollwatch_supported), allow(dead_code))]
    pub(crate) fn heap_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        let future = opt(&self.future);
        let stacks: usize = self
            .stacks
            .iter()
            .map(|st| {
                let frames: usize = st
                    .frames
                    .iter()
                    .map(|f| std::mem::size_of::<Frame>() + f.function.capacity() + opt(&f.file))
                    .sum();
                std::mem::size_of::<Stack>() + frames + st.raw.capacity() * 8
            })
            .sum();
        std::mem::size_of::<Episode>()
            + self.thread.capacity()
            + opt(&self.runtime)
            + opt(&self.spawned_at)
            + opt(&self.label)
            + future
            + stacks
    }
}

/// Counters of what was seen but is not an episode, or was dropped.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Counters {
    /// Long polls inside `block_in_place` or on the blocking pool, where blocking belongs.
    pub excused: u64,
    /// Polls longer than the threshold whose own time was not: the rest was
    /// their thread waiting for a CPU. The longest are named in
    /// [`Report::descheduled`].
    pub descheduled: u64,
    /// Polls that were long only while waiting for a lock inside the async
    /// runtime itself (tokio's timer or channel locks, say): such a lock is
    /// held for nanoseconds, so the wait means its holder was descheduled on
    /// a machine short of CPU. Not reported.
    pub runtime_lock_waits: u64,
    /// Always 0: a poll whose own time passed the threshold is reported
    /// even when no stack could be taken (its stack then says why). Kept
    /// so code that reads it still builds.
    pub unsampled: u64,
    /// Sample signals that got no answer in time (thread exiting, signal blocked).
    pub missed_samples: u64,
    /// Samples that lost their stack because the report stage fell behind
    /// (too many queued, or their copies would pass
    /// [`Config::stack_memory_bytes`](crate::Config::stack_memory_bytes)):
    /// their time and state are kept, on the episode's previous stack.
    pub dropped_samples: u64,
    /// Episodes beyond the in-memory limit (still in `episodes.jsonl`).
    pub dropped_episodes: u64,
    /// Live stderr lines suppressed by the rate limit.
    pub suppressed_lines: u64,
    /// Threads not watched because the registry was full.
    pub unwatched_threads: u64,
    /// Polls the watchdog found running when it looked, on any thread and
    /// found any way (a lower bound: most polls end between two looks). 0
    /// at the end of a run means no poll was watched at all: no
    /// `pollwatch::tokio::attach()`, no instrumented builder, no `watch`.
    pub polls_seen: u64,
    /// Polls that began and ended between two looks of the watchdog more
    /// than a threshold apart (its thread was kept from a CPU, on a machine
    /// short of one), so they may have been longer than the threshold
    /// without being seen: at most one per threshold of the gap, per
    /// thread. Also polls seen longer than the threshold whose own time
    /// was seen under it, but not by enough to excuse them as waiting for
    /// a CPU: their time asleep plus all the CPU their thread's clock
    /// moved from before they began to after they ended (theirs, or the
    /// polls' next to them: looks that came late could not tell) would
    /// put them over it. An upper bound on the episodes missed; 0 when the
    /// watchdog always looked in time.
    pub unseen_polls: u64,
    /// Waits read as polls and dropped: in sampled mode, a `block_on`
    /// whose root future's poll is inlined into the loop's own frame (a
    /// release build) shows the same executor frames while it waits
    /// between polls, until pollwatch has learned where that thread parks.
    /// Every stack of such a would-be episode shows the executor parked,
    /// no future's poll, so it is none.
    pub parked_not_polls: u64,
    /// How long the workers of tokio runtimes watched only through
    /// [`watch`](crate::watch) (no `attach`, no instrumented builder) were
    /// busy outside watched polls: tokio's busy time of those workers
    /// since pollwatch first saw the runtime, less the time its looks
    /// found a watched poll running on them. Polls there are unseen: a
    /// program that wrapped only its `block_on` root shows its workers'
    /// whole busy time here. It includes the scheduler's own time between
    /// polls, so a fully wrapped program shows a little too. Zero for
    /// runtimes watched by sampling or hooks, and before the run ends.
    pub busy_outside_watched: Duration,
}

/// A poll longer than the threshold in wall time that was not reported,
/// because its own time stayed below the threshold: the rest was its thread
/// waiting for a CPU (a loaded machine, not the program's blocking).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DescheduledPoll {
    pub(crate) thread: String,
    pub(crate) tid: i32,
    pub(crate) task: Option<String>,
    pub(crate) wall: Duration,
    pub(crate) own: Duration,
}

impl DescheduledPoll {
    /// Name of the thread.
    pub fn thread_name(&self) -> &str {
        &self.thread
    }

    /// Kernel thread id.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// Who was polled (`task 7 spawned at src/main.rs:10:5`, or the `watch`
    /// site), when known.
    pub fn task(&self) -> Option<&str> {
        self.task.as_deref()
    }

    /// How long the poll took.
    pub fn wall(&self) -> Duration {
        self.wall
    }

    /// How much of that was the poll's own time (on a CPU or asleep).
    pub fn own(&self) -> Duration {
        self.own
    }
}

impl fmt::Display for DescheduledPoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (tid {}){}: {:.1} ms, of which {:.1} ms its own",
            self.thread,
            self.tid,
            self.task
                .as_ref()
                .map(|t| format!(", {t}"))
                .unwrap_or_default(),
            self.wall.as_secs_f64() * 1000.0,
            self.own.as_secs_f64() * 1000.0
        )
    }
}

/// What pollwatch itself spent while it ran, for judging its overhead.
///
/// Capture latencies are rounded up to within 1/16 of their value (they are
/// kept in a fixed-size histogram, so the record never grows).
///
/// ```no_run
/// let guard = pollwatch::init()?;
/// // ... run the workload ...
/// let report = guard.finish()?;
/// let o = report.overhead();
/// println!("{} samples, median capture {:?}", o.samples_captured, o.capture_p50);
/// # Ok::<(), pollwatch::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Overhead {
    /// Stack samples captured through the signal handler.
    pub samples_captured: u64,
    /// Median time from sending the sampling signal to having the stack.
    pub capture_p50: Option<Duration>,
    /// 99th percentile of the same.
    pub capture_p99: Option<Duration>,
    /// Slowest capture.
    pub capture_max: Option<Duration>,
    /// Stacks of threads blocked in the kernel, copied without a signal
    /// (`/proc/.../syscall`, `process_vm_readv`, the line read again).
    pub stacks_read: u64,
    /// Median time of one such read.
    pub read_p50: Option<Duration>,
    /// 99th percentile of the same.
    pub read_p99: Option<Duration>,
    /// Time the report thread spent turning samples into symbolized stacks:
    /// loading debug info at start, leaf repair, lookups (each distinct
    /// address once).
    pub symbolize_time: Duration,
    /// Time the report thread spent writing artifacts (`episodes.jsonl`, and
    /// the flamegraph, folded stacks and summary, including their rewrites
    /// while running).
    pub write_time: Duration,
    /// Sampling signals the watchdog sent: at most one per sample interval
    /// per blocked thread, however late the thread answers.
    pub signals_sent: u64,
    /// CPU time of the watchdog thread itself, from its start to its stop
    /// (known once the guard is finished; zero before).
    pub watchdog_cpu: Duration,
}

/// Everything pollwatch found, returned by [`Guard::finish`](crate::Guard::finish).
///
/// `Display` prints the same summary as `summary.txt`, so a test can fail with
/// the call sites in its message:
///
/// ```no_run
/// let guard = pollwatch::init()?;
/// // ... run the workload ...
/// let report = guard.finish()?;
/// assert!(report.episodes().is_empty(), "{report}");
/// # Ok::<(), pollwatch::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Report {
    pub(crate) episodes: Vec<Episode>,
    pub(crate) threshold: Duration,
    pub(crate) unwind: crate::config::Unwind,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) counters: Counters,
    pub(crate) overhead: Overhead,
    pub(crate) total_episodes: u64,
    pub(crate) total_blocked: Duration,
    pub(crate) descheduled: Vec<DescheduledPoll>,
    /// Set at the end of a run in which no poll was watched.
    pub(crate) watched_nothing: bool,
    /// Every episode's call site, kept or not (a live run's; `None` read
    /// back, where every episode is in `episodes`).
    pub(crate) site_totals: Option<summary::SiteTotals>,
}

impl Report {
    /// The episodes, in the order they ended. Only the first ones are kept
    /// in memory on a run with very many; [`total_episodes`](Report::total_episodes)
    /// counts them all, and `episodes.jsonl` has them all.
    pub fn episodes(&self) -> &[Episode] {
        &self.episodes
    }

    /// How many episodes the run had, including those not kept in
    /// [`episodes`](Report::episodes).
    pub fn total_episodes(&self) -> u64 {
        self.total_episodes
    }

    /// Episodes that blocked in a function whose name contains `name`.
    pub fn blocked_in<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Episode> + 'a {
        self.episodes.iter().filter(move |e| e.blocked_in(name))
    }

    /// Sum of all episodes' durations.
    pub fn total_blocked(&self) -> Duration {
        self.total_blocked
    }

    /// The threshold the run used.
    pub fn threshold(&self) -> Duration {
        self.threshold
    }

    /// What was seen but not reported as an episode, or dropped.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// What this report could not see, with the fix, so that "0 episodes"
    /// is never silent: a run that watched no poll at all, or a tokio
    /// runtime watched only through [`watch`](crate::watch) whose workers
    /// were busy outside watched futures for a threshold or more
    /// ([`Counters::busy_outside_watched`]). The summary, the line at
    /// finish and `pollwatch check` say it. `None` when every poll was
    /// watched, and for runs read back that did not record it (killed
    /// before [`Guard::finish`](crate::Guard::finish)).
    pub fn coverage_note(&self) -> Option<String> {
        // The busy line says more (how long, where) with the same fix.
        summary::busy_outside_line(self).or_else(|| {
            self.watched_nothing
                .then(|| summary::NOTHING_WATCHED.to_owned())
        })
    }

    /// The longest polls not reported because their time went to waiting
    /// for a CPU (up to 20, longest first; all are counted in
    /// [`Counters::descheduled`]).
    pub fn descheduled(&self) -> &[DescheduledPoll] {
        &self.descheduled
    }

    /// What pollwatch spent: capture latencies, symbolization and writing time.
    pub fn overhead(&self) -> &Overhead {
        &self.overhead
    }

    /// The directory holding this run's artifacts (`<dir>/<exe>-<pid>`).
    pub fn output_dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// `flamegraph.svg` in the output directory.
    pub fn flamegraph_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(files::SVG))
    }

    /// `stacks.folded` in the output directory.
    pub fn folded_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(files::FOLDED))
    }

    /// `episodes.jsonl` in the output directory.
    pub fn episodes_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(files::JSONL))
    }

    /// `profile.pb.gz` in the output directory: the blocked stacks as a pprof
    /// profile, for `go tool pprof`, Grafana Pyroscope or Parca.
    pub fn profile_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(files::PPROF))
    }

    /// `episodes.jsonl` in the output directory.
    #[deprecated(since = "0.1.0", note = "renamed to `episodes_path`, after the file")]
    pub fn events_path(&self) -> Option<PathBuf> {
        self.episodes_path()
    }

    /// `summary.txt` in the output directory.
    pub fn summary_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(files::SUMMARY))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&summary::text(self))
    }
}

/// Who was being polled, in words: `task 7 spawned at src/main.rs:10:5`, or
/// `the future watched at ...` for a `watch` site without a tokio task.
pub(crate) fn describe_task(
    task_id: Option<u64>,
    spawned_at: Option<impl fmt::Display>,
) -> Option<String> {
    match (task_id, spawned_at) {
        (Some(id), Some(at)) => Some(format!("task {id} spawned at {at}")),
        (None, Some(at)) => Some(format!("the future watched at {at}")),
        (Some(id), None) => Some(format!("task {id}")),
        (None, None) => None,
    }
}

/// Who was being polled, with the poll's name first when it has one:
/// `GET /config (the future watched at src/main.rs:10:5)`.
pub(crate) fn describe_poll(
    label: Option<&str>,
    task_id: Option<u64>,
    spawned_at: Option<impl fmt::Display>,
) -> Option<String> {
    match (label, describe_task(task_id, spawned_at)) {
        (Some(l), Some(task)) => Some(format!("{l} ({task})")),
        (Some(l), None) => Some(l.to_owned()),
        (None, task) => task,
    }
}

/// Creates the run's output directory and opens its event log.
#[cfg(pollwatch_supported)]
pub(crate) fn files_writer(base: &Path) -> crate::Result<files::Writer> {
    files::Writer::create(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_by_strings_round_trip() {
        for e in [
            EndedBy::PollReturned,
            EndedBy::ThreadExited,
            EndedBy::StillBlockedAtStop,
        ] {
            assert_eq!(EndedBy::parse(e.as_str()), e);
            assert_eq!(e.to_string(), e.as_str());
        }
        assert_eq!(EndedBy::parse("eaten_by_a_grue"), EndedBy::Unknown);
        assert_eq!(
            EndedBy::StillBlockedAtStop.as_str(),
            "still_blocked_at_stop"
        );
    }

    #[test]
    fn heap_bytes_grow_with_stacks() {
        let frame = Frame {
            function: "app::handler".repeat(10),
            file: Some("src/main.rs".into()),
            line: Some(1),
            address: 1,
            inlined: false,
        };
        let stack = Stack {
            frames: vec![frame; 20],
            weight: Duration::from_millis(1),
            state: ThreadState::OnCpu,
            raw: vec![0; 30],
            truncated: false,
        };
        let mut ep = Episode {
            id: 1,
            thread: "worker".into(),
            tid: 1,
            runtime: None,
            task_id: None,
            spawned_at: None,
            label: None,
            start: SystemTime::UNIX_EPOCH,
            detected_after: Duration::ZERO,
            duration: Duration::ZERO,
            uncertainty: Duration::ZERO,
            samples: 0,
            missed: 0,
            on_cpu: Duration::ZERO,
            off_cpu: Duration::ZERO,
            runnable: Duration::ZERO,
            stacks: Vec::new(),
            unwind: crate::config::Unwind::Auto,
            ended_by: EndedBy::PollReturned,
            mode: EpisodeMode::Watched,
            future: None,
        };
        let empty = ep.heap_bytes();
        ep.stacks = vec![stack; 3];
        let full = ep.heap_bytes();
        // 3 stacks × 20 frames × (120 + 11 bytes of text), plus the raw addresses.
        assert!(full - empty >= 3 * (20 * 131 + 30 * 8), "{empty} → {full}");
    }

    #[test]
    fn paths_are_shortened() {
        assert_eq!(
            shorten_path("/rustc/abc/library/std/src/thread/mod.rs"),
            "std/src/thread/mod.rs"
        );
        assert_eq!(shorten_path("/home/me/app/src/main.rs"), "app/src/main.rs");
        assert_eq!(shorten_path("main.rs"), "main.rs");
    }
}
