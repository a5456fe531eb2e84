//! async-std: spawn and `block_on` with every poll of the task watched.
//!
//! async-std has no scheduler hooks, so pollwatch watches the futures you hand
//! it: use these instead of `async_std::task::spawn` / `block_on` (or wrap with
//! [`watch`](crate::watch) yourself). The episode's `spawned_at` is your call site.

use std::future::Future;

/// `async_std::task::spawn(pollwatch::watch(fut))`.
///
/// ```no_run
/// let handle = pollwatch::async_std::spawn(async { 1 + 1 });
/// assert_eq!(pollwatch::async_std::block_on(handle), 2);
/// ```
#[track_caller]
pub fn spawn<F>(fut: F) -> async_std::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    async_std::task::spawn(crate::watch(fut))
}

/// `async_std::task::block_on(pollwatch::watch(fut))`: the root future runs
/// on the calling thread, outside any task, so it is only watched this way.
#[track_caller]
pub fn block_on<F: Future>(fut: F) -> F::Output {
    async_std::task::block_on(crate::watch(fut))
}
