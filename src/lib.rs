//! pollwatch finds the code that blocks your async executor.
//!
//! A task that blocks inside `poll` — `std::thread::sleep`, a synchronous file
//! read, a `std::sync::Mutex` held elsewhere, a long CPU loop, a nested
//! `block_on` — stalls every other task on that worker thread. pollwatch
//! notices a worker that has been inside one poll for longer than a threshold
//! (20 ms by default), samples that thread's stack while it is still stuck, and
//! writes a flamegraph of the blocking call sites weighted by blocked time,
//! plus folded stacks, a JSON-lines event log and a human summary.
//!
//! ```
//! use std::time::Duration;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Reads POLLWATCH_* variables; POLLWATCH=0 turns everything off.
//!     let guard = pollwatch::init()?;
//! #   let guard = { drop(guard); pollwatch::Config::from_env()?.live(false)
//! #       .output_dir(std::env::temp_dir().join("pollwatch-doctest")).start()? };
//!
//!     let rt = pollwatch::tokio::instrument(&mut tokio::runtime::Builder::new_multi_thread())
//!         .enable_all()
//!         .build()?;
//!     rt.block_on(async {
//!         // Without --cfg tokio_unstable, wrap what you want watched.
//!         tokio::spawn(pollwatch::watch(async {
//!             std::thread::sleep(Duration::from_millis(100)); // blocks a worker
//!         }))
//!         .await
//!     })?;
//!     drop(rt);
//!
//!     let report = guard.finish()?; // writes target/pollwatch/<exe>-<pid>/
//!     for ep in report.episodes() {
//!         println!("{} ms on {}: {:?}", ep.duration().as_millis(), ep.thread_name(), ep.top_user_frame());
//!     }
//! #   #[cfg(target_os = "linux")]
//! #   assert_eq!(report.episodes().len(), 1, "{report}");
//!     Ok(())
//! }
//! ```
//!
//! # How it works
//!
//! ```text
//! probe ──► registry ──► watchdog ──► sampler ──► symbolizer ──► report
//! ```
//!
//! - **Probes** mark poll entry and exit: tokio's runtime hooks
//!   (`tokio::instrument`), the [`watch`] future wrapper for any executor,
//!   and the [`enter_poll`] guard for custom executors. Each costs a few
//!   nanoseconds: a thread-local read and one atomic store, no clock.
//! - The **registry** holds one slot per thread that polls.
//! - The **watchdog** thread notices a slot stuck in one poll past the
//!   threshold, telling apart a thread that merely waited for a CPU.
//! - The **sampler** sends that thread a signal (`SIGURG` by default); the
//!   async-signal-safe handler copies the registers and the stack from `sp`
//!   up (and walks the frame-pointer chain). Nothing in it allocates or locks.
//! - The **unwinder** replays the unwind tables (`.eh_frame`) over that copy
//!   later, off the signal path ([`Unwind`] has the modes).
//! - The **symbolizer** resolves addresses with file:line and inlined
//!   frames, later, on pollwatch's own thread.
//! - The **report** writes `flamegraph.svg`, `stacks.folded`,
//!   `episodes.jsonl` and `summary.txt`, and returns a [`Report`].
//!
//! # Caveats
//!
//! - No build flags needed for complete stacks; debug info
//!   (`debug = "line-tables-only"`) gives file:line, and pollwatch says at
//!   start, in one line, when it is missing. Frame pointers matter only in
//!   [`Unwind::FramePointers`] mode.
//! - The sampling signal interrupts the sampled thread's system call. With
//!   `SA_RESTART` most calls resume transparently; `nanosleep`, `poll`,
//!   `epoll_wait` and sockets with timeouts may see `EINTR`. Only threads
//!   already over the threshold are signalled.
//! - Linux only; x86_64 is tested. On other platforms everything compiles,
//!   the probes cost nothing, and [`init`] returns a guard that does nothing
//!   (and says so once on stderr).
#![deny(unsafe_code)]
// Without the sampler (unsupported platforms) much of the report machinery is unused.
#![cfg_attr(not(pollwatch_supported), allow(dead_code))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod config;
mod error;
mod guard;
mod probe;
mod report;
// Private: each adapter has one path, its root re-export (`pollwatch::tokio`).
#[cfg(feature = "macros")]
#[doc(hidden)]
#[path = "testing.rs"]
pub mod __private;
mod runtime;
#[cfg(feature = "tower")]
pub mod tower;

// The machinery behind the probes exists where the sampler works (Linux on
// x86_64 and aarch64, see build.rs); elsewhere the probes are no-ops and
// `init` returns a guard that does nothing.
#[cfg(pollwatch_supported)]
mod episode;
#[cfg(pollwatch_supported)]
mod registry;
#[cfg(pollwatch_supported)]
mod sampler;
#[cfg(pollwatch_supported)]
mod selftest;
#[cfg(pollwatch_supported)]
mod symbolize;
#[cfg(pollwatch_supported)]
mod symbols;
#[cfg(pollwatch_supported)]
mod sys;
#[cfg(pollwatch_supported)]
mod unwind;
#[cfg(pollwatch_supported)]
mod watchdog;

pub use config::{Config, Unwind};
pub use error::{Error, Result};
pub use guard::Guard;
pub use probe::{enter_poll, watch, PollGuard, Watched};
pub use report::{
    Artifacts, Budget, BudgetExceeded, Counters, DescheduledPoll, EndedBy, Episode, EpisodeMode,
    Exceeded, Frame, MalformedLine, Overhead, Report, Stack, ThreadState,
};
#[cfg(feature = "async-std")]
pub use runtime::async_std;
#[cfg(feature = "smol")]
pub use runtime::smol;
#[cfg(feature = "tokio")]
pub use runtime::tokio;

/// A tokio test that fails if anything in it blocks: `#[tokio::test]` with
/// pollwatch watching (feature `macros`).
///
/// ```no_run
/// use std::time::Duration;
///
/// #[pollwatch::test]
/// async fn lookups_never_block() {
///     tokio::time::sleep(Duration::from_millis(5)).await; // fine: awaits
/// }
///
/// #[pollwatch::test(flavor = "multi_thread", worker_threads = 2, threshold_ms = 50)]
/// #[should_panic(expected = "read_config")]
/// async fn a_sync_read_fails_the_test() {
///     tokio::spawn(pollwatch::watch(async { read_config() })).await.unwrap();
/// }
///
/// fn read_config() {
///     std::thread::sleep(Duration::from_millis(200)); // stands in for std::fs
/// }
/// ```
///
/// Each test gets its own pollwatch guard and an instrumented tokio runtime
/// (`flavor = "current_thread"`, the default, or `"multi_thread"` with
/// optional `worker_threads`). The test's body runs watched; after it, the
/// runtime is dropped, the guard finishes and the test panics with the
/// summary, naming each blocking call site with file:line, if any poll took
/// longer than the threshold ([`Report::assert_no_blocking`]). Artifacts go
/// to `<dir>/tests/<module>-<test>/<exe>-<pid>/`, `<dir>` being
/// `POLLWATCH_DIR` or `target/pollwatch`.
///
/// - **Threshold:** `threshold_ms = N` (fractions allowed); without it,
///   `POLLWATCH_THRESHOLD_MS` or the 20 ms default.
/// - **Spawned tasks** are watched only when wrapped,
///   `tokio::spawn(pollwatch::watch(fut))`, unless the tests are built with
///   `--cfg tokio_unstable`, where every task of the runtime is.
/// - **Other attributes** (`#[should_panic]`, `#[ignore]`, doc comments)
///   pass through. A test may return a `Result`, as with `#[tokio::test]`.
/// - **Parallel tests take turns.** pollwatch watches a process with one
///   guard (one sampling signal, one registry of threads), and a report
///   cannot tell one test's episodes from another's running at the same
///   time, so `#[pollwatch::test]`s in one binary run one after another,
///   each holding a process-wide lock for its run; the binary's other tests
///   still run in parallel. A plain test that starts its own guard while a
///   `#[pollwatch::test]` runs gets [`Error::AlreadyRunning`], and one that
///   blocks inside a `watch`ed future while a `#[pollwatch::test]` runs is
///   counted against that test.
/// - `POLLWATCH=0` turns the check off: the tests run unwatched and pass.
#[cfg(feature = "macros")]
pub use pollwatch_macros::test;

/// Starts pollwatch configured from `POLLWATCH_*` environment variables.
///
/// Equivalent to `Config::from_env()?.start()`. With `POLLWATCH=0` it returns
/// a guard that does nothing: no thread, no signal handler, no files.
///
/// ```no_run
/// let guard = pollwatch::init()?;
/// // ... run your runtime ...
/// let report = guard.finish()?; // prints one line to stderr: where the artifacts are
/// report.assert_no_blocking();
/// # Ok::<(), pollwatch::Error>(())
/// ```
pub fn init() -> Result<Guard> {
    Config::from_env()?.start()
}

/// Watches every poll that runs on the calling thread, found by sampling
/// its stack: one line at the start of an executor thread pollwatch has no
/// hooks into (smol's or async-executor's threads, a
/// `futures::executor::LocalPool`, an async-std `block_on` thread), and
/// nothing wrapped.
///
/// The watchdog reads the thread's stack from outside, learns where the
/// executor's frames end and a task's poll begins, and tells one poll
/// from the next by those frames, as `pollwatch::tokio::attach()` does for
/// tokio (episodes say `mode: sampled`, and name the task's future from
/// the stack). It knows the loops of tokio, async-task (smol,
/// async-executor, async-std), `futures::executor` and `futures-lite`'s
/// and async-io's `block_on`; on a thread running another executor no
/// poll is found, and nothing is reported. The thread stays watched until
/// it exits; calling this again does nothing. With `POLLWATCH=0`, or on a
/// platform pollwatch does not support, it does nothing.
///
/// ```no_run
/// let guard = pollwatch::init()?;
/// let ex = smol::Executor::new();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         pollwatch::watch_thread();
///         smol::block_on(ex.run(async { /* ... */ }));
///     });
/// });
/// guard.finish()?;
/// # Ok::<(), pollwatch::Error>(())
/// ```
pub fn watch_thread() {
    probe::register_sampled_current();
}

/// Watches every thread of the process by sampling, as
/// [`watch_thread`] does one: the calling thread, the threads that exist
/// now, and those started later, until the guard finishes. For executors
/// whose threads the program does not start itself (async-std's, found
/// by name nowhere: every thread is read, and only those whose stacks
/// show an executor's loop ever have a poll).
///
/// This is what `pollwatch::tokio::attach()` does on a
/// multi-thread runtime. Threads that never run an executor cost a few
/// backed-off stack reads each and are never reported.
///
/// ```no_run
/// let guard = pollwatch::init()?;
/// pollwatch::watch_all_threads();
/// async_std::task::block_on(async {
///     async_std::task::spawn(async { /* ... */ }).await;
/// });
/// guard.finish()?;
/// # Ok::<(), pollwatch::Error>(())
/// ```
pub fn watch_all_threads() {
    probe::register_sampled_current();
    #[cfg(pollwatch_supported)]
    if !registry::is_disabled() {
        watchdog::discovery::enable();
    }
}

// The README's Rust examples compile as doc tests (with the features its
// `#[pollwatch::test]` and tower examples use, as `--all-features` has).
#[cfg(all(doctest, feature = "macros", feature = "tower"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
