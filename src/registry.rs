//! The registry of watched threads: one slot per thread that runs polls.
//!
//! A slot is the only state shared between a program thread and the watchdog.
//! The owning thread writes its poll epoch (and the label of the innermost
//! watched poll); the watchdog only reads. Slots are leaked on purpose and
//! reused after their thread exits, so a reference held by the watchdog (or a
//! late signal) never dangles; `generation` tells a reused slot apart.

use std::cell::RefCell;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::sys::stack::StackRange;
use crate::sys::static_ref::AtomicStaticRef;

/// More threads than this are not watched (and counted): a bound on the
/// watchdog's per-tick work and on memory.
pub(crate) const MAX_SLOTS: usize = 4096;

/// Per-thread state read by the watchdog.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Odd while the thread is inside a poll. Bumped only by the owning thread.
    pub(crate) epoch: AtomicU64,
    /// Task id of the innermost labelled poll (0 = unknown).
    pub(crate) task_id: AtomicU64,
    /// Spawn (or `watch`) location of the innermost labelled poll.
    pub(crate) location: AtomicStaticRef<Location<'static>>,
    /// A name given to the innermost named poll (a route, from
    /// `pollwatch::tower`); interned, so storing it is one pointer write.
    pub(crate) label: AtomicStaticRef<String>,
    /// Kernel thread id; 0 while the slot is free.
    pub(crate) tid: AtomicI32,
    /// Bumped on every register and release.
    pub(crate) generation: AtomicU64,
    /// The last owner left while inside a poll (a thread that died stuck).
    pub(crate) exited_in_poll: AtomicBool,
    /// The (even) epoch a poll ended at by unwinding, a panic passing
    /// through it; `u64::MAX` (odd, never an epoch after a poll) if none. A
    /// thread that leaves at that epoch left from inside the poll.
    pub(crate) unwound_at: AtomicU64,
    /// The epoch and the thread's CPU clock when it registered: a poll first
    /// seen already running is measured from here if it is the thread's
    /// first since registering, instead of losing what it ran before the
    /// watchdog's first look (a new thread is treated like an old one).
    pub(crate) registered_epoch: AtomicU64,
    pub(crate) registered_cpu_ns: AtomicU64,
    /// Facts gathered at registration.
    info: Mutex<ThreadInfo>,
}

/// What the watchdog and the report need to know about a watched thread.
#[derive(Clone, Debug, Default)]
pub(crate) struct ThreadInfo {
    /// Thread name (std's, else the kernel's, else `thread-<tid>`).
    pub(crate) name: String,
    /// The thread's stack, if libc could tell; without it samples have no frames.
    pub(crate) stack: Option<StackRange>,
    /// A user-given label for the runtime this thread belongs to.
    pub(crate) runtime: Option<Arc<str>>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            epoch: AtomicU64::new(0),
            task_id: AtomicU64::new(0),
            location: AtomicStaticRef::none(),
            label: AtomicStaticRef::none(),
            tid: AtomicI32::new(0),
            generation: AtomicU64::new(0),
            exited_in_poll: AtomicBool::new(false),
            unwound_at: AtomicU64::new(u64::MAX),
            registered_epoch: AtomicU64::new(0),
            registered_cpu_ns: AtomicU64::new(0),
            info: Mutex::new(ThreadInfo::default()),
        }
    }

    /// A copy of the registration facts.
    pub(crate) fn info(&self) -> ThreadInfo {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

struct Table {
    all: Vec<&'static Slot>,
    free: Vec<&'static Slot>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    all: Vec::new(),
    free: Vec::new(),
});
/// Bumped whenever the set of slots changes, so the watchdog re-reads the table
/// only then.
static VERSION: AtomicU64 = AtomicU64::new(0);
/// Threads not watched because the table was full.
static OVERFLOW: AtomicUsize = AtomicUsize::new(0);
/// Set when pollwatch is switched off (`POLLWATCH=0`): probes then register nothing.
static DISABLED: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_disabled(off: bool) {
    DISABLED.store(off, Ordering::Relaxed);
}

pub(crate) fn is_disabled() -> bool {
    DISABLED.load(Ordering::Relaxed)
}

thread_local! {
    /// Releases this thread's slot when the thread exits. Touched only at
    /// registration, never on the poll path (it has a destructor).
    static RELEASE: RefCell<Option<Release>> = const { RefCell::new(None) };
}

struct Release(&'static Slot);

impl Drop for Release {
    fn drop(&mut self) {
        crate::probe::forget_current_slot();
        release(self.0);
    }
}

/// Registers the calling thread, or returns its existing slot.
///
/// Returns `None` when pollwatch is disabled, the table is full, or the thread
/// is being torn down.
pub(crate) fn register_current(runtime: Option<Arc<str>>) -> Option<&'static Slot> {
    if is_disabled() {
        return None;
    }
    let existing = RELEASE
        .try_with(|r| r.borrow().as_ref().map(|r| r.0))
        .ok()?;
    if let Some(slot) = existing {
        if runtime.is_some() {
            slot.info.lock().unwrap_or_else(|p| p.into_inner()).runtime = runtime;
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
    let slot = {
        let mut t = TABLE.lock().unwrap_or_else(|p| p.into_inner());
        match t.free.pop() {
            Some(s) => s,
            None if t.all.len() < MAX_SLOTS => {
                let s: &'static Slot = Box::leak(Box::new(Slot::new()));
                t.all.push(s);
                s
            }
            None => {
                OVERFLOW.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
    };
    *slot.info.lock().unwrap_or_else(|p| p.into_inner()) = info;
    slot.task_id.store(0, Ordering::Relaxed);
    slot.location.store(None, Ordering::Relaxed);
    slot.label.store(None, Ordering::Relaxed);
    slot.exited_in_poll.store(false, Ordering::Relaxed);
    slot.unwound_at.store(u64::MAX, Ordering::Relaxed);
    slot.registered_epoch
        .store(slot.epoch.load(Ordering::Relaxed), Ordering::Relaxed);
    slot.registered_cpu_ns.store(
        crate::sys::thread::cpu_time_ns(tid).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    slot.generation.fetch_add(1, Ordering::Relaxed);
    slot.tid.store(tid, Ordering::Release);
    VERSION.fetch_add(1, Ordering::Release);
    let stored = RELEASE.try_with(|r| *r.borrow_mut() = Some(Release(slot)));
    if stored.is_err() {
        release(slot);
        return None;
    }
    Some(slot)
}

/// Releases the calling thread's slot now (tokio's `on_thread_stop`).
#[cfg(feature = "tokio")]
pub(crate) fn deregister_current() {
    crate::probe::forget_current_slot();
    let _ = RELEASE.try_with(|r| drop(r.borrow_mut().take()));
}

fn release(slot: &'static Slot) {
    // A thread that dies inside a poll (a panic unwinding through a hook) must
    // not leave a forever-odd epoch for the next owner.
    let e = slot.epoch.load(Ordering::Relaxed);
    let in_poll = e % 2 == 1;
    // A panic unwound out of the poll and no poll began since: the panic is
    // taking the thread down from inside that poll.
    let unwound = slot.unwound_at.load(Ordering::Relaxed) == e;
    slot.exited_in_poll
        .store(in_poll || unwound, Ordering::Relaxed);
    slot.tid.store(0, Ordering::Release);
    // The generation before the epoch: a watchdog that sees this epoch
    // (it reads the epoch first) sees the thread gone too, and does not
    // take the exit for the poll returning.
    slot.generation.fetch_add(1, Ordering::Release);
    if in_poll {
        slot.epoch.store(e.wrapping_add(1), Ordering::Release);
    }
    let mut t = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    t.free.push(slot);
    VERSION.fetch_add(1, Ordering::Release);
}

/// The table's version; changes whenever a thread registers or leaves.
pub(crate) fn version() -> u64 {
    VERSION.load(Ordering::Acquire)
}

/// Every slot ever created (free ones have `tid == 0`).
pub(crate) fn snapshot(out: &mut Vec<&'static Slot>) {
    let t = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    out.clear();
    out.extend_from_slice(&t.all);
}

/// Threads that could not be watched because `MAX_SLOTS` were in use.
pub(crate) fn overflow() -> usize {
    OVERFLOW.load(Ordering::Relaxed)
}
