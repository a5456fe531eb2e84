//! tokio: register the runtime's threads and, with `--cfg tokio_unstable`,
//! watch every task's polls.
//!
//! | build | what is watched |
//! |---|---|
//! | default | every future you wrap with [`watch`](crate::watch) (a spawned task, a handler, the `block_on` root) |
//! | `RUSTFLAGS="--cfg tokio_unstable"` | every poll of every task, attributed to the task id and its spawn location; plus wrapped futures |
//!
//! Threads of the blocking pool are registered too (tokio starts them with the
//! same hook) but never run task polls, so they are never reported; neither is
//! a poll parked in `block_in_place`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::probe;

/// Hooks pollwatch into a tokio runtime builder and returns it for chaining.
///
/// This sets the builder's `on_thread_start`/`on_thread_stop` callbacks (and,
/// with `--cfg tokio_unstable`, `on_before_task_poll`/`on_after_task_poll`),
/// replacing any you set before; set yours afterwards only if you do not need
/// pollwatch's.
///
/// ```no_run
/// let guard = pollwatch::init()?;
/// let rt = pollwatch::tokio::instrument(&mut tokio::runtime::Builder::new_multi_thread())
///     .enable_all()
///     .build()?;
/// rt.block_on(async {
///     tokio::spawn(pollwatch::watch(async { /* ... */ })).await.unwrap();
/// });
/// drop(rt);
/// let report = guard.finish()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn instrument(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    hook(builder, None)
}

/// Like [`instrument`], and labels the runtime's threads so that episodes say
/// which runtime they happened on when a process runs several.
pub fn instrument_as<'b>(
    builder: &'b mut tokio::runtime::Builder,
    label: &str,
) -> &'b mut tokio::runtime::Builder {
    hook(builder, Some(Arc::from(label)))
}

fn hook(
    builder: &mut tokio::runtime::Builder,
    label: Option<Arc<str>>,
) -> &mut tokio::runtime::Builder {
    // Stable tokio has no task hooks: the workers are watched by sampling,
    // and the park hooks tell the watchdog when a worker runs tasks at all.
    #[cfg(not(tokio_unstable))]
    builder
        .on_thread_start(move || probe::register_sampled_thread(label.clone()))
        .on_thread_stop(probe::deregister_thread)
        .on_thread_park(probe::parked)
        .on_thread_unpark(probe::unparked);
    #[cfg(tokio_unstable)]
    builder
        .on_thread_start(move || probe::register_thread(label.clone()))
        .on_thread_stop(probe::deregister_thread);
    #[cfg(tokio_unstable)]
    builder
        .on_before_task_poll(|meta| {
            probe::enter_hook(probe::Label {
                task_id: task_id(meta.id()),
                location: Some(meta.spawned_at()),
            });
        })
        .on_after_task_poll(|_| probe::exit_hook());
    builder
}

/// Watches every worker of the runtime this is called in, with nothing else
/// to change: the line for `#[tokio::main]`, whose builder you do not hold.
///
/// Call it as the first statement of the async main, after
/// [`init`](crate::init). It registers the calling thread and, for a
/// multi-thread runtime, finds the runtime's other threads; the watchdog
/// keeps finding threads started later, until the guard finishes. Their
/// polls are found by sampling
/// (episodes say `mode: sampled`): no probe is added to any poll.
///
/// ```no_run
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let guard = pollwatch::init()?;
///     pollwatch::tokio::attach()?;
///     // ... the program ...
///     guard.finish()?;
///     Ok(())
/// }
/// ```
///
/// Fails with [`Error::NoRuntime`](crate::Error::NoRuntime) outside a
/// runtime. With `POLLWATCH=0` it does nothing.
pub fn attach() -> crate::Result<()> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| crate::Error::NoRuntime)?;
    #[cfg(pollwatch_supported)]
    {
        if crate::registry::is_disabled() {
            return Ok(());
        }
        // The calling thread polls the main future: a worker itself on a
        // current-thread runtime, the `block_on` thread on a multi-thread one.
        probe::register_sampled_thread(None);
        if matches!(
            handle.runtime_flavor(),
            tokio::runtime::RuntimeFlavor::MultiThread
        ) {
            crate::watchdog::discovery::enable();
        }
    }
    let _ = handle;
    Ok(())
}

/// Notes the runtime the calling thread runs in, if any, for the count of
/// its workers' busy time outside watched polls (`registry::Runtimes`).
/// `covered`: the thread is watched by sampling or hooks. Returns the
/// runtime's key if the thread is one of its workers, which only a thread
/// polling a task (or any thread of a current-thread runtime) is: the
/// `block_on` thread of a multi-thread runtime is not.
#[cfg(pollwatch_supported)]
pub(crate) fn note_runtime(covered: bool) -> u64 {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return 0;
    };
    // 0 is "none"; runtime ids start at 1.
    let key = id_number(handle.id()).max(1);
    let worker = tokio::task::try_id().is_some()
        || matches!(
            handle.runtime_flavor(),
            tokio::runtime::RuntimeFlavor::CurrentThread
        );
    crate::registry::RUNTIMES.note(key, covered, || {
        if covered {
            // Never counted: no handle kept (it holds the runtime's shared
            // state and its I/O driver's descriptor after the runtime is
            // dropped; a program building runtimes in a loop keeps none).
            return Box::new(|| std::time::Duration::ZERO);
        }
        let metrics = handle.metrics();
        Box::new(move || {
            (0..metrics.num_workers())
                .map(|w| metrics.worker_total_busy_duration(w))
                .sum()
        })
    });
    if worker {
        key
    } else {
        0
    }
}

/// tokio's `task::Id` as a number. `Id` exposes no getter, but it hashes as
/// its `u64`: this hasher just keeps that value, and compiles down to a move.
#[cfg_attr(not(tokio_unstable), allow(dead_code))]
#[inline(always)]
fn task_id(id: tokio::task::Id) -> u64 {
    id_number(id)
}

/// A tokio id (`task::Id`, `runtime::Id`) as the `u64` it hashes as.
#[cfg_attr(not(any(pollwatch_supported, tokio_unstable)), allow(dead_code))]
#[inline(always)]
fn id_number(id: impl Hash) -> u64 {
    #[derive(Default)]
    struct Take(u64);
    impl Hasher for Take {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            // Not used by NonZeroU64's Hash; keep something deterministic anyway.
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }
        fn write_u64(&mut self, v: u64) {
            self.0 = v;
        }
    }
    let mut h = Take::default();
    id.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn task_id_matches_display() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let h = tokio::spawn(async { tokio::task::id() });
            let id = h.await.unwrap();
            assert_eq!(super::task_id(id).to_string(), id.to_string());
        });
    }
}
