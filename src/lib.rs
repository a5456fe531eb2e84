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
//!   ([`tokio::instrument`]), the [`watch`] future wrapper for any executor,
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
    Artifacts, Budget, BudgetExceeded, Counters, DescheduledPoll, EndedBy, Episode, Exceeded,
    Frame, MalformedLine, Overhead, Report, Stack, ThreadState,
};
#[cfg(feature = "async-std")]
pub use runtime::async_std;
#[cfg(feature = "smol")]
pub use runtime::smol;
#[cfg(feature = "tokio")]
pub use runtime::tokio;

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

// The README's Rust examples compile as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
