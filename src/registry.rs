//! The registry of watched threads: one slot per thread that runs polls.
//!
//! A slot is the only state shared between a program thread and the watchdog.
//! The owning thread writes its poll epoch (and the label of the innermost
//! watched poll); the watchdog only reads. Slots are leaked on purpose and
//! reused after their thread exits, so a reference held by the watchdog (or a
//! late signal) never dangles; `generation` tells a reused slot apart.

use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// No probe marks this thread's polls (stable tokio, `attach`): the
    /// watchdog tells them apart by reading the executor's frames below the
    /// task, which stay still while one poll runs.
    pub(crate) sampled: AtomicBool,
    /// Bumped by the runtime's park hooks: odd while the worker is unparked,
    /// even while parked, 0 when the runtime has no hooks of ours.
    pub(crate) park_seq: AtomicU64,
    /// The watchdog's count of this sampled thread's polls (odd inside one),
    /// for the signal handler to record like a probe's epoch.
    pub(crate) sampled_epoch: AtomicU64,
    /// Registered from outside by `attach`'s discovery: no thread-local of
    /// the thread releases it, the watchdog does when the thread is gone.
    pub(crate) remote: AtomicBool,
    /// Where this thread's task polls begin on its stack, learned from its
    /// symbolized samples.
    pub(crate) bounds: Bounds,
    /// The executor frames' hash in the last learning sample that found a
    /// poll, and that sample's number: a look that reads the same hash
    /// finds the poll the sample was taken in, running since then (the
    /// first learning of a thread can take the report stage a while).
    pub(crate) learned_fp: AtomicU64,
    pub(crate) learned_seq: AtomicU64,
    /// Where this thread was found blocked in its executor's park, inside
    /// a loop that also polls a root future (`block_on`), learned from its
    /// symbolized samples. Where that root's poll is inlined into the
    /// loop's frame (a release build), the executor frames below read the
    /// same parked as polling: a look that matches a boundary while the
    /// thread is blocked at one of these places is between polls.
    pub(crate) idle: Sites,
    /// The runtime whose worker this thread is, when the thread registered
    /// through `watch` inside one ([`Runtimes`]' key; 0 = none): the time
    /// its watched polls are seen running is taken off that runtime's busy
    /// time.
    pub(crate) runtime_key: AtomicU64,
    /// Facts gathered at registration.
    info: Mutex<ThreadInfo>,
}

/// Most poll boundaries kept per thread: one per call path into a task
/// (a worker's first poll and its LIFO slot, a `block_on` root, each future
/// type whose poll is not inlined into the harness).
pub(crate) const MAX_BOUNDS: usize = 8;

/// Bytes of executor frames read per boundary at most: the worker loop and
/// the task harness take 1–3 KiB.
pub(crate) const REGION_MAX: u32 = 4096;

/// Where a task poll begins on a thread's stack: the word at `at` holds
/// `word` (the return address into the executor) exactly while a poll on
/// that path runs, and the `len` bytes from `from` up are executor frames,
/// which do not change until the poll returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bound {
    pub(crate) at: u64,
    pub(crate) word: u64,
    pub(crate) from: u64,
    pub(crate) len: u32,
}

/// Hashes the executor frames of the first boundary that holds its return
/// address now. `read` copies memory (`process_vm_readv`, never faults).
pub(crate) fn fingerprint(
    bounds: impl Iterator<Item = Bound>,
    mut read: impl FnMut(u64, &mut [u8]) -> Option<usize>,
) -> Option<u64> {
    let mut buf = [0u8; 8 + REGION_MAX as usize];
    for b in bounds {
        let len = (b.len.min(REGION_MAX) as usize) & !7;
        if len < 8 {
            continue;
        }
        // The word first (most boundaries do not hold on a given look),
        // then the frames above.
        if read(b.at, &mut buf[..8]) != Some(8) {
            continue;
        }
        let word = u64::from_ne_bytes(buf[..8].try_into().unwrap_or_default());
        if word != b.word || read(b.from, &mut buf[8..8 + len]) != Some(len) {
            continue;
        }
        return Some(hash(&buf[8..8 + len]) ^ b.at ^ b.word.rotate_left(17));
    }
    None
}

/// FNV-1a over words: a few hundred words per look, no need for more.
fn hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for w in bytes.chunks_exact(8) {
        h ^= u64::from_ne_bytes(w.try_into().unwrap_or_default());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Boundaries of every thread, as offsets below the top of the thread's
/// stack mapping (`at` and `from` count down from it): threads started the
/// same way (a runtime's workers, a new runtime's) reach their task polls
/// at the same depth, so a boundary learned on one holds on the others from
/// their first look, and only its return address decides.
pub(crate) static SHARED: Bounds = Bounds::new();

/// `b` as offsets below `top`, for [`SHARED`].
pub(crate) fn relative(b: Bound, top: u64) -> Option<Bound> {
    Some(Bound {
        at: top.checked_sub(b.at)?,
        from: top.checked_sub(b.from)?,
        ..b
    })
}

/// A [`SHARED`] entry placed on a stack whose mapping ends at `top`.
pub(crate) fn absolute(b: Bound, top: u64) -> Option<Bound> {
    Some(Bound {
        at: top.checked_sub(b.at)?,
        from: top.checked_sub(b.from)?,
        ..b
    })
}

/// A small table of [`Bound`]s: written by the report stage (one writer),
/// read by the watchdog without a lock. A cell's `at` is zeroed while it is
/// rewritten, so a reader that sees the same `at` before and after reading
/// the other fields has a whole entry.
#[derive(Debug)]
pub(crate) struct Bounds {
    cells: [BoundCell; MAX_BOUNDS],
    next: AtomicUsize,
    version: AtomicU64,
}

#[derive(Debug)]
struct BoundCell {
    at: AtomicU64,
    word: AtomicU64,
    from: AtomicU64,
    len: AtomicU32,
}

impl Bounds {
    const fn new() -> Self {
        Bounds {
            cells: [const {
                BoundCell {
                    at: AtomicU64::new(0),
                    word: AtomicU64::new(0),
                    from: AtomicU64::new(0),
                    len: AtomicU32::new(0),
                }
            }; MAX_BOUNDS],
            next: AtomicUsize::new(0),
            version: AtomicU64::new(0),
        }
    }

    /// Adds `b` unless a boundary at the same place with the same return
    /// address is known; the oldest entry makes room. True if added.
    ///
    /// Two samples of one poll can unwind to different depths, so their
    /// boundaries differ only in how many executor bytes they cover. Both
    /// kept, the fingerprint of that poll depended on which the table
    /// listed first, and a second learning in the middle of a poll changed
    /// it: the watchdog took one poll for two and excused both.
    pub(crate) fn learn(&self, b: Bound) -> bool {
        if b.at == 0 || self.find(b.at, b.word).is_some() {
            return false;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % MAX_BOUNDS;
        let c = &self.cells[i];
        c.at.store(0, Ordering::Release);
        c.word.store(b.word, Ordering::Release);
        c.from.store(b.from, Ordering::Release);
        c.len.store(b.len, Ordering::Release);
        c.at.store(b.at, Ordering::Release);
        self.version.fetch_add(1, Ordering::Release);
        true
    }

    /// The whole entries, in table order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Bound> + '_ {
        self.cells.iter().filter_map(|c| {
            let at = c.at.load(Ordering::Acquire);
            let word = c.word.load(Ordering::Acquire);
            let from = c.from.load(Ordering::Acquire);
            let len = c.len.load(Ordering::Acquire);
            (at != 0 && c.at.load(Ordering::Acquire) == at).then_some(Bound {
                at,
                word,
                from,
                len,
            })
        })
    }

    /// Whether no boundary is known.
    pub(crate) fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The known boundary at `at` holding `word`, if any.
    pub(crate) fn find(&self, at: u64, word: u64) -> Option<Bound> {
        self.iter().find(|k| k.at == at && k.word == word)
    }

    /// Changes whenever an entry is added or the table is cleared.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn clear(&self) {
        for c in &self.cells {
            c.at.store(0, Ordering::Release);
        }
        self.version.fetch_add(1, Ordering::Release);
    }
}

/// Most places kept per thread where it parks inside a `block_on`: one per
/// park path (the condition variable, the I/O driver, with or without a
/// timeout).
pub(crate) const MAX_SITES: usize = 4;

/// A small table of blocked places, `(sp, pc)` as `/proc/.../syscall`
/// gives them: written by the report stage, read by the watchdog without
/// a lock. A cell's `sp` is zeroed while it is rewritten.
#[derive(Debug)]
pub(crate) struct Sites {
    cells: [(AtomicU64, AtomicU64); MAX_SITES],
    next: AtomicUsize,
}

impl Sites {
    const fn new() -> Self {
        Sites {
            cells: [const { (AtomicU64::new(0), AtomicU64::new(0)) }; MAX_SITES],
            next: AtomicUsize::new(0),
        }
    }

    /// Adds `(sp, pc)` unless known; the oldest makes room.
    pub(crate) fn learn(&self, sp: u64, pc: u64) {
        if sp == 0 || self.contains(sp, pc) {
            return;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % MAX_SITES;
        let (csp, cpc) = &self.cells[i];
        csp.store(0, Ordering::Release);
        cpc.store(pc, Ordering::Release);
        csp.store(sp, Ordering::Release);
    }

    /// Whether `(sp, pc)` is one of the places.
    pub(crate) fn contains(&self, sp: u64, pc: u64) -> bool {
        sp != 0
            && self.cells.iter().any(|(csp, cpc)| {
                csp.load(Ordering::Acquire) == sp
                    && cpc.load(Ordering::Acquire) == pc
                    && csp.load(Ordering::Acquire) == sp
            })
    }

    /// Whether no place is known (the check costs a `/proc` read only then).
    pub(crate) fn is_empty(&self) -> bool {
        self.cells
            .iter()
            .all(|(csp, _)| csp.load(Ordering::Acquire) == 0)
    }

    fn clear(&self) {
        for (csp, _) in &self.cells {
            csp.store(0, Ordering::Release);
        }
    }
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
            sampled: AtomicBool::new(false),
            park_seq: AtomicU64::new(0),
            sampled_epoch: AtomicU64::new(0),
            remote: AtomicBool::new(false),
            bounds: Bounds::new(),
            learned_fp: AtomicU64::new(0),
            learned_seq: AtomicU64::new(0),
            idle: Sites::new(),
            runtime_key: AtomicU64::new(0),
            info: Mutex::new(ThreadInfo::default()),
        }
    }

    /// A copy of the registration facts.
    pub(crate) fn info(&self) -> ThreadInfo {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The thread's name, read again for a thread registered from outside
    /// (a new thread shows its parent's name until it sets its own).
    pub(crate) fn set_name(&self, name: String) {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).name = name;
    }

    /// The runtime's label, given by a later registration of a thread that
    /// has a slot already.
    pub(crate) fn set_runtime(&self, runtime: Arc<str>) {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).runtime = Some(runtime);
    }

    /// The stack range, once found for a thread registered from outside.
    pub(crate) fn set_stack(&self, stack: crate::sys::stack::StackRange) {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).stack = Some(stack);
    }
}

/// The table of slots. The process has one, [`TABLE`]; unit tests make
/// their own. The caller says which thread a slot is for (its tid and
/// [`ThreadInfo`]), so the table itself never asks the running thread.
#[derive(Debug)]
pub(crate) struct Table {
    slots: Mutex<Slots>,
    /// Bumped whenever the set of slots changes, so the watchdog re-reads the
    /// table only then.
    version: AtomicU64,
    /// Threads not watched because the table was full.
    overflow: AtomicUsize,
    /// Most slots ever created ([`MAX_SLOTS`] for the process's table).
    max: usize,
    /// Thread `tid`'s CPU clock, read at registration.
    cpu_clock: fn(i32) -> Option<u64>,
}

#[derive(Debug)]
struct Slots {
    all: Vec<&'static Slot>,
    free: Vec<&'static Slot>,
}

/// The process's threads.
pub(crate) static TABLE: Table = Table::new(MAX_SLOTS, crate::sys::thread::cpu_time_ns);

/// Set when pollwatch is switched off (`POLLWATCH=0`): probes then register nothing.
static DISABLED: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_disabled(off: bool) {
    DISABLED.store(off, Ordering::Relaxed);
}

pub(crate) fn is_disabled() -> bool {
    DISABLED.load(Ordering::Relaxed)
}

impl Table {
    /// An empty table of at most `max` slots, reading a thread's CPU clock
    /// with `cpu_clock`.
    pub(crate) const fn new(max: usize, cpu_clock: fn(i32) -> Option<u64>) -> Self {
        Table {
            slots: Mutex::new(Slots {
                all: Vec::new(),
                free: Vec::new(),
            }),
            version: AtomicU64::new(0),
            overflow: AtomicUsize::new(0),
            max,
            cpu_clock,
        }
    }

    /// A free slot, filled in for thread `tid`, or `None` when the table is
    /// full. `remote`: registered from outside the thread (`attach`'s
    /// discovery), to be watched by sampling and released by
    /// [`release_remote`](Table::release_remote) once the thread is gone;
    /// `None` too if `tid` already has a slot. A thread that acquires its
    /// own slot after discovery did takes that slot over.
    ///
    /// The table stays locked until the tid is published, so that discovery
    /// never registers a thread a second time (it looks for the tid first).
    pub(crate) fn acquire(
        &self,
        tid: i32,
        info: ThreadInfo,
        remote: bool,
    ) -> Option<&'static Slot> {
        let mut t = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mine = t
            .all
            .iter()
            .copied()
            .find(|s| s.tid.load(Ordering::Acquire) == tid);
        match mine {
            Some(_) if remote => return None,
            // Discovery registered this thread before it registered itself (a
            // `watch` on a worker that `attach` found): it takes the slot over,
            // with its own, better facts, so it is never watched twice.
            Some(s) if s.remote.load(Ordering::Relaxed) => {
                s.remote.store(false, Ordering::Relaxed);
                *s.info.lock().unwrap_or_else(|p| p.into_inner()) = info;
                return Some(s);
            }
            _ => {}
        }
        let slot = {
            match t.free.pop() {
                Some(s) => s,
                None if t.all.len() < self.max => {
                    let s: &'static Slot = Box::leak(Box::new(Slot::new()));
                    t.all.push(s);
                    s
                }
                None => {
                    self.overflow.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        };
        *slot.info.lock().unwrap_or_else(|p| p.into_inner()) = info;
        slot.task_id.store(0, Ordering::Relaxed);
        slot.location.store(None, Ordering::Relaxed);
        slot.label.store(None, Ordering::Relaxed);
        slot.exited_in_poll.store(false, Ordering::Relaxed);
        slot.sampled.store(remote, Ordering::Relaxed);
        slot.remote.store(remote, Ordering::Relaxed);
        slot.park_seq.store(0, Ordering::Relaxed);
        slot.bounds.clear();
        slot.idle.clear();
        slot.runtime_key.store(0, Ordering::Relaxed);
        slot.learned_seq.store(0, Ordering::Relaxed);
        slot.unwound_at.store(u64::MAX, Ordering::Relaxed);
        slot.registered_epoch
            .store(slot.epoch.load(Ordering::Relaxed), Ordering::Relaxed);
        slot.registered_cpu_ns
            .store((self.cpu_clock)(tid).unwrap_or(u64::MAX), Ordering::Relaxed);
        slot.generation.fetch_add(1, Ordering::Relaxed);
        slot.tid.store(tid, Ordering::Release);
        self.version.fetch_add(1, Ordering::Release);
        drop(t);
        Some(slot)
    }

    /// Frees `slot` for the next thread: its owner left (or, remote, is gone).
    pub(crate) fn release(&self, slot: &'static Slot) {
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
        let mut t = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        t.free.push(slot);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Releases a slot taken with `remote`; one its thread took over (or
    /// already free) is left alone.
    pub(crate) fn release_remote(&self, slot: &'static Slot) {
        if slot.remote.load(Ordering::Relaxed) && slot.tid.load(Ordering::Acquire) != 0 {
            self.release(slot);
        }
    }

    /// Releases every slot taken with `remote` (discovery stopped: the
    /// threads it found are no longer watched).
    pub(crate) fn release_all_remote(&self) {
        let mut all = Vec::new();
        self.snapshot(&mut all);
        for s in all {
            self.release_remote(s);
        }
    }

    /// The table's version; changes whenever a thread registers or leaves.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Every slot ever created (free ones have `tid == 0`).
    pub(crate) fn snapshot(&self, out: &mut Vec<&'static Slot>) {
        let t = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        out.clear();
        out.extend_from_slice(&t.all);
    }

    /// Threads that could not be watched because every slot was in use.
    pub(crate) fn overflow(&self) -> usize {
        self.overflow.load(Ordering::Relaxed)
    }
}

/// A runtime's workers' busy time so far (tokio's
/// `worker_total_busy_duration`, summed over its workers).
pub(crate) type BusyClock = Box<dyn Fn() -> Duration + Send + Sync>;

/// Runtimes remembered at once, at most: each entry holds its runtime's
/// handle (for the busy clock), which keeps the runtime's shared state
/// (and its I/O driver's descriptor) until the run ends.
pub(crate) const MAX_RUNTIMES: usize = 16;

/// One runtime a thread registered in.
struct RuntimeSeen {
    key: u64,
    /// A thread of it is watched by sampling or by hooks: every poll on
    /// its workers is watched, nothing is outside.
    covered: bool,
    busy: BusyClock,
    /// The busy clock when the runtime was first seen.
    since: Duration,
}

/// The runtimes threads registered in, so that a run watched only through
/// `watch` can say how long the workers were busy outside watched futures:
/// a silent "0 episodes" from a program that wrapped only its `block_on`
/// root would read like a healthy run.
pub(crate) struct Runtimes {
    seen: Mutex<Vec<RuntimeSeen>>,
}

/// The process's runtimes.
pub(crate) static RUNTIMES: Runtimes = Runtimes::new();

impl Runtimes {
    pub(crate) const fn new() -> Self {
        Runtimes {
            seen: Mutex::new(Vec::new()),
        }
    }

    /// Notes runtime `key`, `covered` if the calling thread is watched by
    /// sampling or hooks (once covered, always). `busy` is asked for only
    /// the first time the runtime is seen.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn note(&self, key: u64, covered: bool, busy: impl FnOnce() -> BusyClock) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = seen.iter_mut().find(|r| r.key == key) {
            r.covered |= covered;
            return;
        }
        if seen.len() >= MAX_RUNTIMES {
            // Past the bound a runtime is not counted: a program building
            // runtimes in a loop keeps 16 handles, not one per runtime.
            return;
        }
        let busy = busy();
        let since = busy();
        seen.push(RuntimeSeen {
            key,
            covered,
            busy,
            since,
        });
    }

    /// How long the workers of the runtimes watched only through `watch`
    /// were busy outside watched polls since each was first seen:
    /// `watched(key)` is what watched polls took on that runtime's
    /// workers. Forgets every runtime (their handles go).
    pub(crate) fn take_busy_outside(&self, watched: impl Fn(u64) -> Watched) -> Duration {
        let seen = std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()));
        seen.iter()
            .filter(|r| !r.covered)
            .map(|r| busy_outside((r.busy)().saturating_sub(r.since), watched(r.key)))
            .sum()
    }
}

/// What the watched polls on a runtime's workers took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Watched {
    /// The time the watchdog's looks found one running.
    pub(crate) time: Duration,
    /// How many ended.
    pub(crate) polls: u64,
}

/// The scheduler's own time per poll, at most: tokio takes about 75 ns
/// around a `yield_now` poll (benches/throughput.rs), so this bounds it
/// with room for a slow or loaded machine.
pub(crate) const SCHEDULER_PER_POLL: Duration = Duration::from_micros(1);

/// Busy time outside watched polls, at least: the workers' busy time
/// less the time watched polls were seen running and the scheduler's own
/// time around each of them. A program whose every task is wrapped and
/// whose polls are microseconds long spends half its busy time in the
/// scheduler; that is not time in polls pollwatch cannot see.
pub(crate) fn busy_outside(busy: Duration, watched: Watched) -> Duration {
    let around =
        SCHEDULER_PER_POLL.saturating_mul(u32::try_from(watched.polls).unwrap_or(u32::MAX));
    busy.saturating_sub(watched.time).saturating_sub(around)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(at: &Arc<AtomicU64>) -> BusyClock {
        let at = Arc::clone(at);
        Box::new(move || Duration::from_millis(at.load(Ordering::Relaxed)))
    }

    #[test]
    fn busy_outside_watched_counts_only_runtimes_no_sampling_or_hook_covers() {
        let r = Runtimes::new();
        let a = Arc::new(AtomicU64::new(100));
        let b = Arc::new(AtomicU64::new(0));
        // `a` was busy 100 ms before it was seen: not this run's.
        r.note(1, false, || clock(&a));
        r.note(2, false, || clock(&b));
        // A sampled thread of runtime 2: every poll there is watched.
        r.note(2, true, || unreachable!("seen already"));
        a.store(2_100, Ordering::Relaxed);
        b.store(5_000, Ordering::Relaxed);
        let watched = |key| match key {
            1 => Watched {
                time: Duration::from_millis(500),
                polls: 0,
            },
            _ => Watched::default(),
        };
        assert_eq!(r.take_busy_outside(watched), Duration::from_millis(1_500));
        // Taken: the handles are gone, nothing is counted twice.
        assert_eq!(r.take_busy_outside(watched), Duration::ZERO);
    }

    #[test]
    fn busy_outside_is_what_neither_the_watched_polls_nor_the_scheduler_around_them_took() {
        let ms = Duration::from_millis;
        let w = |time, polls| Watched { time, polls };
        // Estimated from looks, watched time may pass the busy time.
        assert_eq!(busy_outside(ms(90), w(ms(100), 0)), Duration::ZERO);
        assert_eq!(busy_outside(ms(100), w(ms(40), 0)), ms(60));
        // Many short polls: the scheduler's time between them is not
        // unwatched polls (2 s of 20 M yields read as half outside).
        assert_eq!(
            busy_outside(ms(4000), w(ms(2000), 20_000_000)),
            Duration::ZERO
        );
        assert_eq!(busy_outside(ms(400), w(ms(100), 100_000)), ms(200));
        assert_eq!(busy_outside(ms(1), w(ms(0), u64::MAX)), Duration::ZERO);
    }

    #[test]
    fn runtimes_past_the_bound_are_not_remembered() {
        let r = Runtimes::new();
        let busy = Arc::new(AtomicU64::new(0));
        for key in 0..(MAX_RUNTIMES as u64 + 4) {
            r.note(key + 1, false, || clock(&busy));
        }
        busy.store(10, Ordering::Relaxed);
        let n = MAX_RUNTIMES as u32;
        assert_eq!(
            r.take_busy_outside(|_| Watched::default()),
            Duration::from_millis(10) * n
        );
    }

    #[test]
    fn one_boundary_per_place_whatever_its_length() {
        let t = Bounds::new();
        let b = Bound {
            at: 0x7000,
            word: 0x55aa,
            from: 0x7008,
            len: 512,
        };
        assert!(t.learn(b));
        // The same place, unwound deeper: the first stays, so the poll's
        // fingerprint does not change.
        assert!(!t.learn(Bound { len: 1024, ..b }));
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![b]);
        // Another return address at that place is another path.
        let other = Bound { word: 0x66bb, ..b };
        assert!(t.learn(other));
        assert_eq!(t.find(0x7000, 0x66bb), Some(other));
        assert_eq!(t.find(0x7000, 0x1), None);
    }

    #[test]
    fn park_sites_are_kept_whole_and_the_oldest_makes_room() {
        let s = Sites::new();
        assert!(s.is_empty());
        s.learn(0x7000, 0x10);
        s.learn(0x7000, 0x10);
        assert!(s.contains(0x7000, 0x10));
        assert!(!s.contains(0x7000, 0x11), "the same sp, another call");
        assert!(!s.contains(0, 0), "0 is never a place");
        for k in 1..=MAX_SITES as u64 {
            s.learn(0x8000 + 8 * k, 0x20);
        }
        assert!(!s.contains(0x7000, 0x10), "the oldest made room");
        assert!(s.contains(0x8000 + 8 * MAX_SITES as u64, 0x20));
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn fingerprint_needs_the_return_address_at_the_boundary() {
        let mem: Vec<u64> = vec![0xdead, 1, 2, 3, 0xbeef, 5, 6, 7];
        let base = 0x1000u64;
        let read = |at: u64, buf: &mut [u8]| {
            let off = ((at - base) / 8) as usize;
            let mut n = 0;
            for (i, c) in buf.chunks_exact_mut(8).enumerate() {
                let Some(w) = mem.get(off + i) else { break };
                c.copy_from_slice(&w.to_ne_bytes());
                n += 8;
            }
            Some(n)
        };
        let at_dead = Bound {
            at: base,
            word: 0xdead,
            from: base + 8,
            len: 24,
        };
        let wrong = Bound {
            word: 0xf00d,
            ..at_dead
        };
        assert!(fingerprint([wrong].into_iter(), read).is_none());
        let a = fingerprint([wrong, at_dead].into_iter(), read);
        assert!(a.is_some());
        let at_beef = Bound {
            at: base + 32,
            word: 0xbeef,
            from: base + 40,
            len: 24,
        };
        assert_ne!(fingerprint([at_beef].into_iter(), read), a);
        // The word saved apart from the region (aarch64's link register).
        let apart = Bound {
            at: base + 32,
            word: 0xbeef,
            from: base + 8,
            len: 16,
        };
        assert!(fingerprint([apart].into_iter(), read).is_some());
        // A region that runs off the readable memory is not trusted.
        let long = Bound { len: 64, ..at_beef };
        assert!(fingerprint([long].into_iter(), read).is_none());
    }

    /// A CPU clock for threads that do not exist: tids from 100 up are gone
    /// before it is read.
    fn fake_clock(tid: i32) -> Option<u64> {
        (tid < 100).then(|| 1000 * tid as u64)
    }

    fn named(name: &str) -> ThreadInfo {
        ThreadInfo {
            name: name.to_owned(),
            ..ThreadInfo::default()
        }
    }

    #[test]
    fn a_reused_slot_gets_a_new_generation_and_a_clean_start() {
        let t = Table::new(8, fake_clock);
        let s = t.acquire(1, named("a"), false).unwrap();
        assert_eq!(s.tid.load(Ordering::Relaxed), 1);
        assert_eq!(s.generation.load(Ordering::Relaxed), 1);
        assert_eq!(s.registered_epoch.load(Ordering::Relaxed), 0);
        assert_eq!(s.registered_cpu_ns.load(Ordering::Relaxed), 1000);
        // What the first owner left behind: two polls run, a label, a park
        // sequence, a learned boundary and park place.
        s.epoch.store(4, Ordering::Relaxed);
        s.task_id.store(7, Ordering::Relaxed);
        s.park_seq.store(3, Ordering::Relaxed);
        s.learned_seq.store(5, Ordering::Relaxed);
        s.bounds.learn(Bound {
            at: 0x7000,
            word: 1,
            from: 0x7008,
            len: 64,
        });
        s.idle.learn(0x7100, 0x20);
        t.release(s);
        assert_eq!(s.tid.load(Ordering::Relaxed), 0);
        assert_eq!(s.generation.load(Ordering::Relaxed), 2);
        assert!(!s.exited_in_poll.load(Ordering::Relaxed));
        assert_eq!(s.epoch.load(Ordering::Relaxed), 4);

        let again = t.acquire(2, named("b"), false).unwrap();
        assert!(std::ptr::eq(s, again));
        assert_eq!(s.tid.load(Ordering::Relaxed), 2);
        assert_eq!(s.generation.load(Ordering::Relaxed), 3);
        // The epoch goes on from where the last owner left it, and the new
        // thread's first poll is measured from there.
        assert_eq!(s.epoch.load(Ordering::Relaxed), 4);
        assert_eq!(s.registered_epoch.load(Ordering::Relaxed), 4);
        assert_eq!(s.registered_cpu_ns.load(Ordering::Relaxed), 2000);
        assert_eq!(s.task_id.load(Ordering::Relaxed), 0);
        assert_eq!(s.park_seq.load(Ordering::Relaxed), 0);
        assert_eq!(s.learned_seq.load(Ordering::Relaxed), 0);
        assert_eq!(s.bounds.iter().count(), 0);
        assert!(s.idle.is_empty());
        assert_eq!(s.info().name, "b");

        // A thread whose clock cannot be read has none.
        t.release(s);
        t.acquire(100, named("c"), false).unwrap();
        assert_eq!(s.registered_cpu_ns.load(Ordering::Relaxed), u64::MAX);
    }

    #[test]
    fn a_slot_released_inside_a_poll_exits_in_poll_at_an_even_epoch() {
        let t = Table::new(8, fake_clock);
        let s = t.acquire(1, named("a"), false).unwrap();
        s.epoch.store(3, Ordering::Relaxed);
        t.release(s);
        assert!(s.exited_in_poll.load(Ordering::Relaxed));
        assert_eq!(s.epoch.load(Ordering::Relaxed), 4);
        assert_eq!(s.generation.load(Ordering::Relaxed), 2);

        // A panic unwound out of the poll that ended at 6 and took the
        // thread down before another began.
        assert!(std::ptr::eq(t.acquire(2, named("b"), false).unwrap(), s));
        assert!(!s.exited_in_poll.load(Ordering::Relaxed));
        assert_eq!(s.unwound_at.load(Ordering::Relaxed), u64::MAX);
        s.epoch.store(6, Ordering::Relaxed);
        s.unwound_at.store(6, Ordering::Relaxed);
        t.release(s);
        assert!(s.exited_in_poll.load(Ordering::Relaxed));
        assert_eq!(s.epoch.load(Ordering::Relaxed), 6);

        // The panic was caught and the thread polled again: it left between
        // polls.
        t.acquire(3, named("c"), false).unwrap();
        s.unwound_at.store(8, Ordering::Relaxed);
        s.epoch.store(10, Ordering::Relaxed);
        t.release(s);
        assert!(!s.exited_in_poll.load(Ordering::Relaxed));
        assert_eq!(s.epoch.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn a_full_table_counts_the_threads_it_turns_away() {
        let t = Table::new(2, fake_clock);
        let one = t.acquire(1, named("a"), false).unwrap();
        t.acquire(2, named("b"), false).unwrap();
        assert!(t.acquire(3, named("c"), false).is_none());
        assert!(t.acquire(4, named("d"), true).is_none());
        assert_eq!(t.overflow(), 2);
        t.release(one);
        let three = t.acquire(3, named("c"), false).unwrap();
        assert!(std::ptr::eq(one, three));
        assert_eq!(t.overflow(), 2);
        let mut all = Vec::new();
        t.snapshot(&mut all);
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn the_owner_takes_over_a_slot_discovery_registered() {
        let t = Table::new(8, fake_clock);
        let s = t.acquire(5, named("tokio-runtime-w"), true).unwrap();
        assert!(s.remote.load(Ordering::Relaxed));
        assert!(s.sampled.load(Ordering::Relaxed));
        // Discovery never registers a thread twice, and that is no overflow.
        assert!(t.acquire(5, named("tokio-runtime-w"), true).is_none());
        assert_eq!(t.overflow(), 0);

        let (generation, version) = (s.generation.load(Ordering::Relaxed), t.version());
        let info = ThreadInfo {
            runtime: Some(Arc::from("rt")),
            ..named("tokio-runtime-worker")
        };
        let own = t.acquire(5, info, false).unwrap();
        assert!(std::ptr::eq(s, own));
        assert!(!s.remote.load(Ordering::Relaxed));
        assert_eq!(s.info().name, "tokio-runtime-worker");
        assert_eq!(s.info().runtime.as_deref(), Some("rt"));
        // Still the same thread in the same slot: what the watchdog knows
        // about it holds.
        assert_eq!(s.generation.load(Ordering::Relaxed), generation);
        assert_eq!(t.version(), version);

        // Its own now: only the thread releases it.
        t.release_remote(s);
        assert_eq!(s.tid.load(Ordering::Relaxed), 5);
        t.release_all_remote();
        assert_eq!(s.tid.load(Ordering::Relaxed), 5);
        t.release(s);
        assert_eq!(s.tid.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn release_remote_frees_only_a_live_remote_slot() {
        let t = Table::new(8, fake_clock);
        let own = t.acquire(6, named("a"), false).unwrap();
        let (generation, version) = (own.generation.load(Ordering::Relaxed), t.version());
        t.release_remote(own);
        assert_eq!(own.tid.load(Ordering::Relaxed), 6);
        assert_eq!(own.generation.load(Ordering::Relaxed), generation);
        assert_eq!(t.version(), version);

        let remote = t.acquire(7, named("b"), true).unwrap();
        let other = t.acquire(8, named("c"), true).unwrap();
        t.release_all_remote();
        assert_eq!(own.tid.load(Ordering::Relaxed), 6);
        assert_eq!(remote.tid.load(Ordering::Relaxed), 0);
        assert_eq!(other.tid.load(Ordering::Relaxed), 0);
        // Released once only: a second release would list the slot as free
        // twice and hand it to two threads.
        let generation = remote.generation.load(Ordering::Relaxed);
        t.release_remote(remote);
        assert_eq!(remote.generation.load(Ordering::Relaxed), generation);
        let a = t.acquire(9, named("d"), false).unwrap();
        let b = t.acquire(10, named("e"), false).unwrap();
        let c = t.acquire(11, named("f"), false).unwrap();
        assert!(!std::ptr::eq(a, b) && !std::ptr::eq(b, c) && !std::ptr::eq(a, c));
    }

    #[test]
    fn snapshot_lists_every_slot_free_or_not() {
        let t = Table::new(8, fake_clock);
        let mut all = Vec::new();
        t.snapshot(&mut all);
        assert!(all.is_empty());
        let a = t.acquire(1, named("a"), false).unwrap();
        t.acquire(2, named("b"), false).unwrap();
        t.acquire(3, named("c"), true).unwrap();
        t.release(a);
        // The buffer is the caller's, reused from look to look.
        all.push(a);
        t.snapshot(&mut all);
        let tids: Vec<i32> = all.iter().map(|s| s.tid.load(Ordering::Relaxed)).collect();
        assert_eq!(tids, vec![0, 2, 3]);
    }

    #[test]
    fn the_version_moves_on_every_acquire_and_release() {
        let t = Table::new(2, fake_clock);
        let mut v = t.version();
        let mut moved = |t: &Table| {
            let now = t.version();
            let changed = now != v;
            v = now;
            changed
        };
        let a = t.acquire(1, named("a"), false).unwrap();
        assert!(moved(&t));
        let b = t.acquire(2, named("b"), true).unwrap();
        assert!(moved(&t));
        // Turned away: the set of slots is the same.
        assert!(t.acquire(3, named("c"), false).is_none());
        assert!(!moved(&t));
        t.release(a);
        assert!(moved(&t));
        t.release_remote(b);
        assert!(moved(&t));
        t.acquire(3, named("c"), false).unwrap();
        assert!(moved(&t));
    }
}
