//! Probes: where poll boundaries come from. This is the hot path, paid on
//! every poll of every task, so it does no clock read, no lock, no allocation
//! and no syscall: a `const` thread-local read, a depth counter, and one
//! `Relaxed` load plus one `Release` store of the slot's epoch (a locked
//! `fetch_add` would cost 20× more, and there is only one writer).

use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Who is being polled: tokio's task id and spawn location, or the place a
/// future was wrapped with [`watch`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Label {
    pub(crate) task_id: u64,
    pub(crate) location: Option<&'static Location<'static>>,
}

/// The hot path where pollwatch works: per-thread state and the epoch bump.
#[cfg(pollwatch_supported)]
mod imp {
    use std::cell::{Cell, RefCell};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use super::Label;
    use crate::registry::{self, Slot, ThreadInfo, TABLE};

    thread_local! {
        // `const`-initialised, `Copy`, no destructor: reading one is a plain
        // thread-pointer-relative load, with no lazy-init check. Separate
        // cells, not one struct: copying a struct out of a `Cell` and back on
        // every poll made the loads straddle the previous poll's smaller
        // stores, a store-forwarding stall (benches/poll.rs: 12 ns → 3 ns).
        static SLOT: Cell<Option<&'static Slot>> = const { Cell::new(None) };
        /// Registration failed for good (table full, thread exiting): stop
        /// trying on every poll.
        static GAVE_UP: Cell<bool> = const { Cell::new(false) };
        /// tokio hook polls that began inside another poll (a runtime's
        /// `block_on` inside a watched future): their after-poll hook must
        /// not end the outer poll. Touched only on that rare path and in
        /// `exit_hook`.
        static HOOKS_NESTED: Cell<u32> = const { Cell::new(0) };
    }

    thread_local! {
        /// Releases this thread's slot when the thread exits. Touched only at
        /// registration, never on the poll path (it has a destructor).
        static RELEASE: RefCell<Option<Release>> = const { RefCell::new(None) };
    }

    struct Release(&'static Slot);

    impl Drop for Release {
        fn drop(&mut self) {
            forget_current_slot();
            TABLE.release(self.0);
        }
    }

    /// Registers the calling thread, or returns its existing slot.
    ///
    /// Returns `None` when pollwatch is disabled, the table is full, or the thread
    /// is being torn down.
    fn register_current(runtime: Option<Arc<str>>) -> Option<&'static Slot> {
        if registry::is_disabled() {
            return None;
        }
        let existing = RELEASE
            .try_with(|r| r.borrow().as_ref().map(|r| r.0))
            .ok()?;
        if let Some(slot) = existing {
            if let Some(runtime) = runtime {
                slot.set_runtime(runtime);
            }
            return Some(slot);
        }
        let tid = crate::sys::thread::gettid();
        let name = std::thread::current()
            .name()
            .map(str::to_owned)
            .or_else(crate::sys::thread::kernel_name)
            .unwrap_or_else(|| format!("thread-{tid}"));
        let info = ThreadInfo {
            name,
            stack: crate::sys::thread::stack_range(),
            runtime,
        };
        let slot = TABLE.acquire(tid, info, false)?;
        let stored = RELEASE.try_with(|r| *r.borrow_mut() = Some(Release(slot)));
        if stored.is_err() {
            TABLE.release(slot);
            return None;
        }
        Some(slot)
    }

    /// What `exit` needs to undo an `enter`. Whether a poll is the outermost
    /// one is read from the epoch's parity (odd = already inside a poll), so
    /// no depth counter is kept: the outermost enter carries the slot to its
    /// exit, a nested one the label to put back.
    #[derive(Clone, Copy, Debug)]
    pub(crate) enum Entered {
        /// Not watched (disabled, registry full).
        Unwatched,
        /// The outermost poll on this thread, with the (odd) epoch it set:
        /// its exit ends the poll by storing the next one, without reading
        /// the epoch back (that load would wait on the store just made).
        Outer(&'static Slot, u64),
        /// A poll inside another: its exit restores the outer label.
        Nested(&'static Slot, Label),
    }

    #[inline(always)]
    fn current() -> Option<&'static Slot> {
        match SLOT.get() {
            Some(s) => Some(s),
            None => first_enter(),
        }
    }

    /// Marks the start of a poll on this thread, registering the thread on its
    /// first poll.
    #[inline]
    pub(crate) fn enter(label: Label) -> Entered {
        let Some(slot) = current() else {
            return Entered::Unwatched;
        };
        let e = slot.epoch.load(Ordering::Relaxed);
        if e % 2 == 0 {
            slot.task_id.store(label.task_id, Ordering::Relaxed);
            slot.location.store(label.location, Ordering::Relaxed);
            // Release: the label stores above are visible to a watchdog that
            // sees this epoch.
            let e = e.wrapping_add(1);
            slot.epoch.store(e, Ordering::Release);
            Entered::Outer(slot, e)
        } else {
            Entered::Nested(slot, relabel(slot, label))
        }
    }

    /// Nested: the innermost label wins, field by field, so a `watch` inside a
    /// hooked tokio task keeps the task id and names its own site. Returns the
    /// outer label.
    #[inline]
    fn relabel(slot: &Slot, label: Label) -> Label {
        let outer = Label {
            task_id: slot.task_id.load(Ordering::Relaxed),
            location: slot.location.load(Ordering::Relaxed),
        };
        if label.task_id != 0 {
            slot.task_id.store(label.task_id, Ordering::Relaxed);
        }
        if label.location.is_some() {
            slot.location.store(label.location, Ordering::Relaxed);
        }
        outer
    }

    /// The first poll on a thread not registered yet: register it, or give up
    /// for good. Kept out of line so `enter` stays small.
    #[cold]
    #[inline(never)]
    fn first_enter() -> Option<&'static Slot> {
        if GAVE_UP.get() {
            return None;
        }
        match register_current(None) {
            Some(s) => {
                SLOT.set(Some(s));
                // A `watch`ed poll is running: which runtime it runs in, so
                // that the time its workers spend outside watched polls
                // is counted.
                #[cfg(feature = "tokio")]
                s.runtime_key.store(
                    crate::runtime::tokio::note_runtime(false),
                    Ordering::Relaxed,
                );
                Some(s)
            }
            None => {
                if !registry::is_disabled() {
                    GAVE_UP.set(true);
                }
                None
            }
        }
    }

    /// Marks the end of the poll opened by the matching `enter`.
    #[inline]
    pub(crate) fn exit(entered: Entered) {
        match entered {
            // Only this thread writes the epoch, and nested polls leave it
            // alone, so it still holds `e`.
            Entered::Outer(slot, e) => {
                // A panic passing through: whether it ends the thread shows
                // when (if) the thread releases its slot at this epoch. One
                // load of std's global panic count; the store only while unwinding.
                if std::thread::panicking() {
                    slot.unwound_at.store(e.wrapping_add(1), Ordering::Relaxed);
                }
                slot.epoch.store(e.wrapping_add(1), Ordering::Release)
            }
            Entered::Nested(slot, outer) => {
                slot.task_id.store(outer.task_id, Ordering::Relaxed);
                slot.location.store(outer.location, Ordering::Relaxed);
            }
            Entered::Unwatched => {}
        }
    }

    /// Sets the name of the innermost named poll on this thread (registering
    /// the thread if needed) and returns the previous one, to be put back
    /// when that poll ends. Only named polls (`pollwatch::tower`) call this,
    /// before their `enter` so the name is published by the epoch's
    /// `Release` store; plain `watch` and tokio's hooks never touch the name,
    /// so they pay nothing for it.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    #[inline]
    pub(crate) fn swap_label(label: Option<&'static String>) -> Option<&'static String> {
        let slot = current()?;
        let prev = slot.label.load(Ordering::Relaxed);
        slot.label.store(label, Ordering::Relaxed);
        prev
    }

    /// `enter` for tokio's before-poll hook, whose matching after-poll hook
    /// cannot carry state.
    #[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
    #[inline]
    pub(crate) fn enter_hook(label: Label) {
        if let Entered::Nested(..) = enter(label) {
            // The outer label is not restored at this hook's exit; the outer
            // poll's own exit ends the episode either way.
            HOOKS_NESTED.set(HOOKS_NESTED.get().wrapping_add(1));
        }
    }

    /// `exit` for tokio's after-poll hook.
    #[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
    #[inline]
    pub(crate) fn exit_hook() {
        let nested = HOOKS_NESTED.get();
        if nested > 0 {
            HOOKS_NESTED.set(nested - 1);
            return;
        }
        let Some(slot) = SLOT.get() else { return };
        let e = slot.epoch.load(Ordering::Relaxed);
        // An even epoch here is an unbalanced exit (hooks installed while a
        // poll was running): nothing to close.
        if e % 2 == 1 {
            slot.epoch.store(e.wrapping_add(1), Ordering::Release);
        }
    }

    /// Called when the thread's slot is released, so a later probe on this thread
    /// (a destructor running during thread exit) cannot write a slot that another
    /// thread may own by then.
    fn forget_current_slot() {
        let _ = SLOT.try_with(|s| s.set(None));
        let _ = HOOKS_NESTED.try_with(|d| d.set(0));
        let _ = GAVE_UP.try_with(|g| g.set(true));
    }

    /// Registers the calling thread ahead of its first poll (tokio's
    /// `on_thread_start`), so the first poll pays nothing extra.
    #[cfg(feature = "tokio")]
    pub(crate) fn register_thread(runtime: Option<Arc<str>>) {
        if let Some(slot) = register_current(runtime) {
            SLOT.set(Some(slot));
            // Hooks or sampling watch every poll of this runtime's workers.
            crate::runtime::tokio::note_runtime(true);
        }
    }

    /// Releases the calling thread's slot now (tokio's `on_thread_stop`).
    #[cfg(feature = "tokio")]
    pub(crate) fn deregister_thread() {
        forget_current_slot();
        let _ = RELEASE.try_with(|r| drop(r.borrow_mut().take()));
    }

    /// Registers a runtime thread whose polls no probe marks (stable tokio):
    /// the watchdog finds them by sampling, and the park hooks below tell it
    /// when the thread runs tasks at all. It starts unparked.
    #[cfg(feature = "tokio")]
    pub(crate) fn register_sampled_thread(runtime: Option<Arc<str>>) {
        register_thread(runtime);
        if let Some(slot) = SLOT.get() {
            slot.park_seq.store(1, Ordering::Release);
            slot.sampled.store(true, Ordering::Release);
        }
    }

    /// Registers the calling thread to be watched by sampling, with no
    /// park hooks (`watch_thread`: an executor thread pollwatch has no
    /// hooks into). Its polls are found from its stack, its parks too.
    pub(crate) fn register_sampled_current() {
        if let Some(slot) = register_current(None) {
            SLOT.set(Some(slot));
            slot.sampled.store(true, Ordering::Release);
            // A tokio thread watched this way has every poll watched.
            #[cfg(feature = "tokio")]
            crate::runtime::tokio::note_runtime(true);
        }
    }

    /// tokio's `on_thread_park`: the worker has no task to run.
    #[cfg(all(feature = "tokio", not(tokio_unstable)))]
    pub(crate) fn parked() {
        move_park_seq(0);
    }

    /// tokio's `on_thread_unpark`: the worker runs tasks again.
    #[cfg(all(feature = "tokio", not(tokio_unstable)))]
    pub(crate) fn unparked() {
        move_park_seq(1);
    }

    /// Moves the park sequence to its next value of parity `to` (even:
    /// parked, odd: running), once per change, whatever tokio repeats.
    #[cfg(all(feature = "tokio", not(tokio_unstable)))]
    fn move_park_seq(to: u64) {
        if let Some(slot) = SLOT.get() {
            let s = slot.park_seq.load(Ordering::Relaxed);
            if s % 2 != to {
                slot.park_seq.store(s.wrapping_add(1), Ordering::Release);
            }
        }
    }
}

/// Elsewhere the probes do nothing, at no cost.
#[cfg(not(pollwatch_supported))]
mod imp {
    use super::Label;

    /// Nothing to undo.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Entered;

    #[inline(always)]
    pub(crate) fn enter(_label: Label) -> Entered {
        Entered
    }

    #[inline(always)]
    pub(crate) fn exit(_entered: Entered) {}

    #[allow(dead_code)]
    #[inline(always)]
    pub(crate) fn swap_label(_label: Option<&'static String>) -> Option<&'static String> {
        None
    }

    #[allow(dead_code)]
    #[inline(always)]
    pub(crate) fn enter_hook(_label: Label) {}

    #[allow(dead_code)]
    #[inline(always)]
    pub(crate) fn exit_hook() {}

    #[cfg(feature = "tokio")]
    pub(crate) fn register_thread(_runtime: Option<std::sync::Arc<str>>) {}

    pub(crate) fn register_sampled_current() {}

    #[cfg(feature = "tokio")]
    pub(crate) fn deregister_thread() {}

    #[cfg(feature = "tokio")]
    pub(crate) fn register_sampled_thread(_runtime: Option<std::sync::Arc<str>>) {}

    #[cfg(all(feature = "tokio", not(tokio_unstable)))]
    pub(crate) fn parked() {}

    #[cfg(all(feature = "tokio", not(tokio_unstable)))]
    pub(crate) fn unparked() {}
}

#[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(unused_imports))]
pub(crate) use imp::{
    enter, enter_hook, exit, exit_hook, register_sampled_current, swap_label, Entered,
};
// Only the tokio adapter registers threads ahead of their first poll.
#[cfg(all(feature = "tokio", tokio_unstable))]
pub(crate) use imp::register_thread;
#[cfg(feature = "tokio")]
pub(crate) use imp::{deregister_thread, register_sampled_thread};
// The park hooks serve sampled mode, which the poll hooks replace.
#[cfg(all(feature = "tokio", not(tokio_unstable)))]
pub(crate) use imp::{parked, unparked};

/// Marks the calling thread as inside a poll until the guard is dropped: the
/// probe for custom executors.
///
/// Put it around your executor's call to `Future::poll` (or `Runnable::run`).
/// Nested guards count once; the thread registers with pollwatch on its first
/// guard. Costs a few nanoseconds and never blocks.
///
/// ```
/// use std::future::Future;
/// use std::pin::pin;
/// use std::task::{Context, Poll, Waker};
///
/// let mut fut = pin!(async { 1 + 1 });
/// let mut cx = Context::from_waker(Waker::noop());
/// let out = loop {
///     let poll = {
///         let _in_poll = pollwatch::enter_poll();
///         fut.as_mut().poll(&mut cx)
///     };
///     if let Poll::Ready(v) = poll {
///         break v;
///     }
/// };
/// assert_eq!(out, 2);
/// ```
#[track_caller]
#[inline]
pub fn enter_poll() -> PollGuard {
    PollGuard {
        entered: enter(Label {
            task_id: 0,
            location: Some(Location::caller()),
        }),
        _not_send: PhantomData,
    }
}

/// Guard returned by [`enter_poll`]; the poll ends when it is dropped.
///
/// It must be dropped on the thread that created it, so it is neither `Send`
/// nor `Sync`.
#[derive(Debug)]
#[must_use = "the poll ends when the guard is dropped"]
pub struct PollGuard {
    entered: Entered,
    _not_send: PhantomData<*const ()>,
}

impl Drop for PollGuard {
    #[inline]
    fn drop(&mut self) {
        exit(self.entered);
    }
}

/// Wraps a future so that every poll of it is watched, on any executor.
///
/// The first poll on a thread registers that thread with the watchdog. A poll
/// that takes longer than the threshold becomes a blocking episode attributed
/// to the place where `watch` was called. Nested watched futures attribute the
/// episode to the innermost one and count the time once.
///
/// ```
/// # futures_lite_block_on(async {
/// let answer = pollwatch::watch(async { 42 }).await;
/// assert_eq!(answer, 42);
/// # });
/// # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// ```
#[track_caller]
pub fn watch<F: Future>(fut: F) -> Watched<F> {
    Watched {
        inner: fut,
        location: Location::caller(),
    }
}

pin_project_lite::pin_project! {
    /// A future whose polls are watched; made by [`watch`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Watched<F> {
        #[pin]
        inner: F,
        location: &'static Location<'static>,
    }
}

impl<F> Watched<F> {
    /// Where this future was wrapped (the episode's `spawned_at`).
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;

    // The report cuts the executor's frames off at this function, so the
    // stack starts at the user's future; inlined, it is still there as an
    // inlined frame in the debug info. A call boundary of its own cost 3.5%
    // of a poll-heavy workload (benches/throughput.rs, mpsc: 1.054 -> 1.019).
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _guard = PollGuard {
            entered: enter(Label {
                task_id: 0,
                location: Some(*this.location),
            }),
            _not_send: PhantomData,
        };
        this.inner.poll(cx)
    }
}
