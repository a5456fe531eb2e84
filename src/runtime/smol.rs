//! smol: spawn and `block_on` with every poll of the task watched.
//!
//! smol has no scheduler hooks, so pollwatch watches the futures you hand it:
//! use these instead of `smol::spawn` / `smol::block_on`, or wrap futures you
//! give to your own `smol::Executor` with [`watch`](crate::watch). The
//! episode's `spawned_at` is your call site.

use std::future::Future;

/// `smol::spawn(pollwatch::watch(fut))` on smol's global executor.
///
/// ```no_run
/// let task = pollwatch::smol::spawn(async { 1 + 1 });
/// assert_eq!(pollwatch::smol::block_on(task), 2);
/// ```
#[track_caller]
pub fn spawn<F>(fut: F) -> smol::Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    smol::spawn(crate::watch(fut))
}

/// `smol::block_on(pollwatch::watch(fut))`: the root future runs on the
/// calling thread, outside any task, so it is only watched this way.
#[track_caller]
pub fn block_on<F: Future>(fut: F) -> F::Output {
    smol::block_on(crate::watch(fut))
}
