//! Capturing the stack of a stuck thread, on request from the watchdog.
//!
//! A small pool of preallocated sample buffers, so that a request the target
//! cannot answer yet (it is inside a long system call, or waiting for a
//! CPU) can stay armed while other threads are sampled. Each buffer's state
//! machine:
//!
//! ```text
//! IDLE ──watchdog reserves──► RESERVED ──target set──► ARMED
//!   ▲                                                    │ handler on the right tid
//!   │                                                    ▼
//!   └── watchdog copies out ◄── READY ◄────────────── WRITING
//!   └── watchdog cancels (CAS ARMED → IDLE): a late handler does nothing
//! ```
//!
//! The handler side (`claim`, `fill`, `publish`) runs inside the signal handler
//! and is async-signal-safe: atomics and bounded stack reads only.
//!
//! The handler does not unwind. Besides the registers and the frame-pointer
//! chain (cheap, and all that `fp` mode uses), it copies the stack from `sp`
//! upwards into its buffer's copy area, allocated by the watchdog before it
//! first arms that buffer (never by the handler), so that the stack can be
//! unwound later with the unwind tables (`crate::unwind`).

pub(crate) mod budget;
pub(crate) mod latency;
pub(crate) mod unwind;

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sys::futex;
use crate::sys::stack::{AtomicStackRange, StackRange, StackWindow};
use crate::sys::static_ref::AtomicStaticRef;
use crate::sys::thread;
use crate::sys::Registers;

/// Most return addresses one sample keeps.
pub(crate) const MAX_FRAMES: usize = 192;
/// Bytes of stack copied per sample unless configured otherwise: deep async
/// stacks (a handler inside a connection task inside a runtime worker) use
/// 10–30 KiB between the blocking call and the thread's entry.
pub(crate) const DEFAULT_COPY_BYTES: usize = 32 * 1024;
/// The most a sample copies: a bound on the buffer and on each event's size.
pub(crate) const MAX_COPY_BYTES: usize = 1024 * 1024;
/// Words copied in `fp` mode, for leaf repair only.
pub(crate) const FP_COPY_WORDS: usize = 128;
/// Requests that can be armed at once: one per thread stuck in the kernel
/// or waiting for a CPU at the same moment; beyond that, a thread waits a
/// turn (its time is still accounted, only its stack comes later).
pub(crate) const POOL: usize = 8;

/// How long `request` spins for a quick answer before leaving the request
/// armed: a running target answers within microseconds.
const SPIN: Duration = Duration::from_micros(20);

const IDLE: u32 = 0;
const ARMED: u32 = 1;
const WRITING: u32 = 2;
const READY: u32 = 3;
const RESERVED: u32 = 4;

/// Words each sample copies (set by [`prepare`]).
static COPY_WORDS: AtomicUsize = AtomicUsize::new(DEFAULT_COPY_BYTES / 8);

struct SampleBuf {
    state: AtomicU32,
    tid: AtomicI32,
    /// The target's stack: the only memory the handler reads, from `sp` up.
    stack: AtomicStackRange,
    /// The target's poll epoch, read by the handler, so the watchdog can
    /// tell whether the stack is of the poll it asked about.
    epoch_src: AtomicStaticRef<AtomicU64>,
    epoch: AtomicU64,
    pc: AtomicU64,
    sp: AtomicU64,
    fp: AtomicU64,
    chain: AtomicU64,
    lr: AtomicU64,
    nframes: AtomicU32,
    frames: [AtomicU64; MAX_FRAMES],
    /// The stack copy area, allocated by the watchdog at this buffer's
    /// first request; the handler copies at most `copy_limit` words of it.
    copy: OnceLock<Box<[AtomicU64]>>,
    copy_limit: AtomicU32,
    ncopy: AtomicU32,
    /// The copy stopped at `copy_limit` before the top of the stack.
    truncated: AtomicBool,
}

impl SampleBuf {
    const fn new() -> Self {
        SampleBuf {
            state: AtomicU32::new(IDLE),
            tid: AtomicI32::new(0),
            stack: AtomicStackRange::none(),
            epoch_src: AtomicStaticRef::none(),
            epoch: AtomicU64::new(0),
            pc: AtomicU64::new(0),
            sp: AtomicU64::new(0),
            fp: AtomicU64::new(0),
            chain: AtomicU64::new(0),
            lr: AtomicU64::new(0),
            nframes: AtomicU32::new(0),
            frames: [const { AtomicU64::new(0) }; MAX_FRAMES],
            copy: OnceLock::new(),
            copy_limit: AtomicU32::new(0),
            ncopy: AtomicU32::new(0),
            truncated: AtomicBool::new(false),
        }
    }

    /// Copies the sample out and frees the buffer. Only after READY.
    fn take(&self) -> RawSample {
        let n = (self.nframes.load(Ordering::Relaxed) as usize).min(MAX_FRAMES);
        let copy = self.copy.get().map_or(&[][..], |b| &b[..]);
        let c = (self.ncopy.load(Ordering::Relaxed) as usize).min(copy.len());
        let sample = RawSample {
            epoch: self.epoch.load(Ordering::Relaxed),
            regs: Registers {
                pc: self.pc.load(Ordering::Relaxed),
                sp: self.sp.load(Ordering::Relaxed),
                fp: self.fp.load(Ordering::Relaxed),
                lr: self.lr.load(Ordering::Relaxed),
            },
            chain: self.chain.load(Ordering::Relaxed),
            frames: self.frames[..n]
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            copy: copy[..c]
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            truncated: self.truncated.load(Ordering::Relaxed),
            charge: budget::Charge::default(),
        };
        self.tid.store(0, Ordering::Relaxed);
        self.state.store(IDLE, Ordering::Release);
        sample
    }
}

static BUFS: [SampleBuf; POOL] = [const { SampleBuf::new() }; POOL];

/// Sets how many bytes of stack each sample copies (from the next request
/// on); returns the bytes granted. Called at start, before any signal. A
/// buffer's copy area is allocated at its first request and keeps its size:
/// a later, larger setting is granted up to that size.
pub(crate) fn prepare(bytes: usize) -> usize {
    let words = bytes.clamp(8, MAX_COPY_BYTES) / 8;
    COPY_WORDS.store(words, Ordering::Relaxed);
    words * 8
}

/// Bytes each sample copies.
pub(crate) fn copy_bytes() -> usize {
    COPY_WORDS.load(Ordering::Relaxed) * 8
}

/// Proof, inside the handler, that this invocation owns a buffer.
pub(crate) struct Claim {
    buf: &'static SampleBuf,
}

impl Claim {
    /// The stack of the thread the request was armed for (the handler's
    /// own, since the claim matched its tid).
    #[inline(always)]
    pub(crate) fn stack(&self) -> Option<StackRange> {
        self.buf.stack.load()
    }
}

/// Handler side: takes the buffer armed for thread `tid`, if any. A bounded
/// scan of `POOL` atomics.
#[inline(always)]
pub(crate) fn claim(tid: i32) -> Option<Claim> {
    for buf in &BUFS {
        if buf.tid.load(Ordering::Acquire) != tid {
            continue;
        }
        if buf
            .state
            .compare_exchange(ARMED, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        // Re-check after winning the CAS: the watchdog writes tid before
        // arming, and cannot re-arm for another thread while we hold WRITING.
        if buf.tid.load(Ordering::Relaxed) != tid {
            buf.state.store(ARMED, Ordering::Release);
            continue;
        }
        return Some(Claim { buf });
    }
    None
}

/// Handler side: records registers, the frame-pointer chain and the stack
/// from `sp` up. Bounded: at most `MAX_FRAMES` records, the prepared copy
/// size and one resync scan of `unwind::RESYNC_SPAN` bytes.
#[inline(always)]
pub(crate) fn fill(claim: &Claim, regs: &Registers, window: Option<&StackWindow>) {
    let buf = claim.buf;
    let epoch = buf
        .epoch_src
        .load(Ordering::Relaxed)
        .map_or(0, |e| e.load(Ordering::Acquire));
    buf.epoch.store(epoch, Ordering::Relaxed);
    buf.pc.store(regs.pc, Ordering::Relaxed);
    buf.sp.store(regs.sp, Ordering::Relaxed);
    buf.lr.store(regs.lr, Ordering::Relaxed);
    let mut nframes = 0usize;
    let mut ncopy = 0usize;
    let mut truncated = false;
    let mut start = 0u64;
    if let Some(w) = window {
        let read = |addr: u64| w.read(addr);
        start = unwind::start_fp(regs.sp, regs.fp, &read);
        unwind::walk(start, &read, &mut |ra| match buf.frames.get(nframes) {
            Some(slot) => {
                slot.store(ra, Ordering::Relaxed);
                nframes = nframes.wrapping_add(1);
                true
            }
            None => false,
        });
        // `OnceLock::get` is one atomic load: it never blocks or allocates.
        if let Some(copy) = buf.copy.get() {
            let limit = buf.copy_limit.load(Ordering::Relaxed) as usize;
            (ncopy, truncated) = w.copy_to(copy.get(..limit).unwrap_or(copy));
        }
    }
    buf.fp.store(regs.fp, Ordering::Relaxed);
    buf.chain.store(start, Ordering::Relaxed);
    buf.nframes.store(nframes as u32, Ordering::Relaxed);
    buf.ncopy.store(ncopy as u32, Ordering::Relaxed);
    buf.truncated.store(truncated, Ordering::Relaxed);
}

/// Handler side: hands the buffer back to the watchdog and wakes it.
#[inline(always)]
pub(crate) fn publish(claim: Claim) {
    claim.buf.state.store(READY, Ordering::Release);
    futex::wake(&claim.buf.state);
}

/// One captured stack, still as raw addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawSample {
    /// The thread's poll epoch when the stack was taken (0: not known).
    pub(crate) epoch: u64,
    /// The registers at the interruption: `pc` is the leaf, `copy[0]` was
    /// read from `sp`; `fp` 0 is not known (the unwind tables restore the
    /// caller's from it where a function keeps one); `lr` is aarch64's.
    pub(crate) regs: Registers,
    /// Where the handler's frame-record walk started: `fp`, or the record a
    /// resync scan found above `sp` when `fp` led nowhere.
    pub(crate) chain: u64,
    /// Return addresses from the frame-pointer chain, innermost first.
    pub(crate) frames: Vec<u64>,
    /// Words at `[sp, sp + 8 * copy.len())`: what the unwinder reads.
    pub(crate) copy: Vec<u64>,
    /// The copy stopped before the top of the stack (the configured size was
    /// reached): an unwind that runs off its end is cut there.
    pub(crate) truncated: bool,
    /// This sample's share of the bytes in flight, once queued for the
    /// report stage ([`budget`]).
    pub(crate) charge: budget::Charge,
}

impl RawSample {
    /// A sample taken without a signal: a thread blocked in a system call,
    /// whose `pc` and `sp` the kernel reports and whose stack words from
    /// `sp` up were read from another thread. There is no frame-pointer
    /// register: the unwinder finds the frames from `copy` alone, and the
    /// frame records for `fp` mode are found by the same validated scan the
    /// handler uses when `rbp` is not a frame pointer.
    pub(crate) fn from_stack(
        epoch: u64,
        pc: u64,
        sp: u64,
        copy: Vec<u64>,
        truncated: bool,
    ) -> RawSample {
        let read = |addr: u64| {
            if addr % 8 != 0 || addr < sp {
                return None;
            }
            copy.get(((addr - sp) / 8) as usize).copied()
        };
        let chain = unwind::start_fp(sp, 0, &read);
        let mut frames = Vec::new();
        unwind::walk(chain, &read, &mut |ra| {
            frames.push(ra);
            frames.len() < MAX_FRAMES
        });
        RawSample {
            epoch,
            regs: Registers::in_syscall(pc, sp),
            chain,
            frames,
            copy,
            truncated,
            charge: budget::Charge::default(),
        }
    }

    /// The heap bytes this sample holds while queued: its copy and frames.
    pub(crate) fn held_bytes(&self) -> usize {
        std::mem::size_of::<RawSample>() + 8 * (self.copy.capacity() + self.frames.capacity())
    }
}

/// What a sample request needs to know about its target.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub(crate) tid: i32,
    pub(crate) stack: StackRange,
    /// The target's poll epoch, recorded with the stack.
    pub(crate) epoch: Option<&'static AtomicU64>,
}

/// Why a sample was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Missed {
    /// The thread is gone (`ESRCH`).
    ThreadGone,
    /// The handler did not run before the deadline (signal blocked, thread in
    /// uninterruptible sleep, or simply not scheduled).
    Timeout,
    /// The signal could not be sent (`EPERM` under seccomp, ...).
    SendFailed,
    /// Every buffer holds a request still unanswered.
    Busy,
    /// Answered, but only when the thread got a CPU back: the stack shows
    /// where it resumed, not where its time went.
    Late,
}

/// A request sent and not answered yet.
pub(crate) struct Pending {
    buf: &'static SampleBuf,
    tid: i32,
    /// When the signal was sent.
    pub(crate) sent: Instant,
}

/// Watchdog side: arms a buffer for `target` and sends it `sig`. Waits a few
/// microseconds for a quick answer; otherwise returns the request still
/// armed, to be collected with [`Pending::poll`] or dropped with
/// [`Pending::cancel`].
pub(crate) fn request(target: Target, sig: i32) -> Result<Answer, Missed> {
    let buf = BUFS
        .iter()
        .find(|b| {
            b.state
                .compare_exchange(IDLE, RESERVED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
        .ok_or(Missed::Busy)?;
    // The copy area is allocated here, on the watchdog's side, never in the
    // handler.
    let wanted = COPY_WORDS.load(Ordering::Relaxed);
    let copy = buf
        .copy
        .get_or_init(|| (0..wanted).map(|_| AtomicU64::new(0)).collect());
    buf.copy_limit
        .store(wanted.min(copy.len()) as u32, Ordering::Relaxed);
    buf.tid.store(target.tid, Ordering::Relaxed);
    // Exclusive while RESERVED: the handler loads the range only after
    // the Release below.
    buf.stack.store(target.stack);
    buf.epoch_src.store(target.epoch, Ordering::Relaxed);
    buf.state.store(ARMED, Ordering::Release);
    let sent = Instant::now();
    if let Err(e) = thread::tgkill(target.tid, sig) {
        let p = Pending {
            buf,
            tid: target.tid,
            sent,
        };
        let _ = p.cancel();
        return Err(if e.raw_os_error() == Some(libc::ESRCH) {
            Missed::ThreadGone
        } else {
            Missed::SendFailed
        });
    }
    let pending = Pending {
        buf,
        tid: target.tid,
        sent,
    };
    // Sleeping on the futex right away would add the scheduler's wake-up
    // latency (tens of µs) to every sample of a running target. Spin
    // briefly, bounded, so a target that needs this CPU is not kept waiting.
    let spin_until = sent + SPIN;
    while buf.state.load(Ordering::Acquire) != READY && Instant::now() < spin_until {
        std::hint::spin_loop();
    }
    Ok(pending.poll())
}

/// A request's outcome so far.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The stack, captured.
    Ready(RawSample),
    /// Not answered yet; still armed.
    Waiting(Pending),
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("tid", &self.tid)
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// The stack if the handler has run, else the request back.
    pub(crate) fn poll(self) -> Answer {
        if self.buf.state.load(Ordering::Acquire) == READY {
            Answer::Ready(self.into_sample())
        } else {
            Answer::Waiting(self)
        }
    }

    /// Whether the answer is in.
    pub(crate) fn is_ready(&self) -> bool {
        self.buf.state.load(Ordering::Acquire) == READY
    }

    /// Sleeps until the answer is in or `until`, whichever comes first,
    /// without taking it.
    pub(crate) fn sleep_until_ready(&self, until: Instant) {
        loop {
            let s = self.buf.state.load(Ordering::Acquire);
            let now = Instant::now();
            if s == READY || now >= until {
                return;
            }
            futex::wait(&self.buf.state, s, until - now);
        }
    }

    /// Waits up to `deadline` for the answer (the futex the handler wakes).
    pub(crate) fn wait(self, deadline: Duration) -> Answer {
        let until = Instant::now() + deadline;
        loop {
            let s = self.buf.state.load(Ordering::Acquire);
            if s == READY {
                return Answer::Ready(self.into_sample());
            }
            let now = Instant::now();
            if now >= until {
                return Answer::Waiting(self);
            }
            futex::wait(&self.buf.state, s, until - now);
        }
    }

    /// Gives up on the request; a handler that runs later finds nothing
    /// armed and returns. If the answer arrived meanwhile, it is returned.
    pub(crate) fn cancel(self) -> Option<RawSample> {
        let sample = release(self.buf);
        std::mem::forget(self);
        sample
    }

    fn into_sample(self) -> RawSample {
        let s = self.buf.take();
        std::mem::forget(self);
        s
    }
}

impl Drop for Pending {
    /// A request dropped unanswered is cancelled, so its buffer is never lost.
    fn drop(&mut self) {
        release(self.buf);
    }
}

/// Disarms `buf`, or collects the sample a handler finished meanwhile.
fn release(buf: &'static SampleBuf) -> Option<RawSample> {
    loop {
        match buf.state.load(Ordering::Acquire) {
            ARMED => {
                if buf
                    .state
                    .compare_exchange(ARMED, IDLE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    buf.tid.store(0, Ordering::Relaxed);
                    return None;
                }
            }
            // A handler is writing (bounded work), or a stale one that won
            // the claim is handing the request back as ARMED: wait it out.
            WRITING => std::hint::spin_loop(),
            READY => return Some(buf.take()),
            _ => return None,
        }
    }
}

/// Signals `target` and waits up to `deadline` for its stack; used where
/// only a prompt answer is of use (the self-test, tests).
pub(crate) fn capture(target: Target, sig: i32, deadline: Duration) -> Result<RawSample, Missed> {
    match request(target, sig)? {
        Answer::Ready(s) => Ok(s),
        Answer::Waiting(p) => match p.wait(deadline) {
            Answer::Ready(s) => Ok(s),
            Answer::Waiting(p) => p.cancel().ok_or(Missed::Timeout),
        },
    }
}

/// Captures the calling thread's own stack through the signal path: used by the
/// start-up self-test and by tests. The handler runs before `tgkill` returns,
/// because a signal sent to the calling thread is delivered on the way out of
/// the syscall.
pub(crate) fn capture_self(sig: i32) -> Result<RawSample, Missed> {
    let Some(stack) = thread::stack_range() else {
        return Err(Missed::SendFailed);
    };
    if thread::blocks_signal(sig) {
        return Err(Missed::Timeout);
    }
    capture(
        Target {
            tid: thread::gettid(),
            stack,
            epoch: None,
        },
        sig,
        Duration::from_millis(100),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Unwind;
    use crate::symbolize::Symbolizer;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[inline(never)]
    fn allocating_loop(stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            for i in 0..64usize {
                let v: Vec<u8> = Vec::with_capacity(16 + i * 24);
                std::hint::black_box(&v);
                let b = Box::new([i as u64; 4]);
                std::hint::black_box(&b);
            }
        }
    }

    #[inline(never)]
    fn reading_a_thread_clock(stop: &AtomicBool) {
        let tid = crate::sys::thread::gettid();
        while !stop.load(Ordering::Relaxed) {
            std::hint::black_box(crate::sys::thread::cpu_time_ns(tid));
        }
    }

    /// Captures 300 samples of a thread running `work` and returns how many
    /// were answered and how many of those name `function`.
    fn samples_naming(work: fn(&AtomicBool), function: &str) -> (u32, u32) {
        crate::sys::signal::install(libc::SIGURG).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = stop.clone();
        let h = std::thread::spawn(move || {
            tx.send((
                crate::sys::thread::gettid(),
                crate::sys::thread::stack_range().unwrap(),
            ))
            .unwrap();
            work(&s2);
        });
        let (tid, stack) = rx.recv().unwrap();
        let mut sym = Symbolizer::new();
        let (mut total, mut found) = (0, 0);
        for _ in 0..300 {
            let Ok(s) = capture(
                Target {
                    tid,
                    stack,
                    epoch: None,
                },
                libc::SIGURG,
                Duration::from_millis(100),
            ) else {
                continue;
            };
            total += 1;
            let repaired = sym.unwind(&s);
            if sym
                .symbolize(&repaired)
                .iter()
                .any(|f| f.function.contains(function))
            {
                found += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        (total, found)
    }

    /// Recursion with 512-byte frames, measuring at the bottom.
    #[inline(never)]
    fn deep_then(n: u32, f: &mut dyn FnMut()) {
        let pad = [u64::from(n); 64];
        std::hint::black_box(&pad);
        if n == 0 {
            f();
        } else {
            deep_then(n - 1, f);
        }
        std::hint::black_box(&pad);
    }

    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }

    fn rss_anon_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("RssAnon:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// A recursion deeper than the copy: `auto` carries on past the copy
    /// along the handler's chain, joined by record address, so no level is
    /// counted twice (return addresses repeat in a recursion) and, where the
    /// chain is whole (a frame-pointer build), none is lost.
    #[test]
    fn a_recursion_deeper_than_the_copy_keeps_each_level_once() {
        crate::sys::signal::install(libc::SIGURG).unwrap();
        let mut raw = None;
        deep_then(127, &mut || raw = capture_self(libc::SIGURG).ok());
        let mut raw = raw.unwrap();
        raw.copy.truncate(4096 / 8);
        raw.truncated = true;
        let levels = |mode| {
            let mut sym = Symbolizer::with_mode(mode);
            let frames = sym.unwind(&raw);
            sym.symbolize(&frames)
                .iter()
                .filter(|f| f.function.ends_with("deep_then"))
                .count()
        };
        let (auto, fp) = (levels(Unwind::Auto), levels(Unwind::FramePointers));
        assert!(auto <= 128, "{auto} levels of 128: some counted twice");
        if fp == 128 {
            assert_eq!(auto, 128, "the chain is whole, yet auto lost levels");
        }
    }

    /// The README's figures for the stack copy and the unwinders, measured
    /// on the calling thread (a self-capture runs the handler inside
    /// `tgkill`, so no scheduling enters the timing):
    /// `cargo test --release --lib -- --ignored copy_and_unwind_costs --nocapture`.
    #[test]
    #[ignore = "a measurement: run in release, see the README"]
    fn copy_and_unwind_costs() {
        crate::sys::signal::install(libc::SIGURG).unwrap();
        let mut raw = None;
        deep_then(127, &mut || {
            let runs = 2000;
            // A buffer's copy area keeps the size of its first request, and
            // a smaller setting only lowers its limit: allocate it at the
            // largest size first, or every size below would copy 1 KiB.
            prepare(64 * 1024);
            capture_self(libc::SIGURG).unwrap();
            for kib in [1usize, 4, 16, 32, 64] {
                prepare(kib * 1024);
                let mut t = Vec::with_capacity(runs);
                for _ in 0..runs {
                    let began = Instant::now();
                    let s = capture_self(libc::SIGURG).unwrap();
                    t.push(began.elapsed());
                    std::hint::black_box(&s);
                }
                let copied = capture_self(libc::SIGURG).unwrap().copy.len() * 8;
                assert_eq!(copied, kib * 1024, "the copy is the size measured");
                println!(
                    "MEASURE capture_self (tgkill + handler + copy-out), {kib} KiB copy: median {:?}",
                    median(t)
                );
            }
            prepare(32 * 1024);
            raw = capture_self(libc::SIGURG).ok();
        });
        let raw = raw.unwrap();
        for mode in [Unwind::Auto, Unwind::Dwarf, Unwind::FramePointers] {
            let before = rss_anon_kib();
            let mut sym = Symbolizer::with_mode(mode);
            let first = Instant::now();
            let frames = sym.unwind(&raw);
            let first = first.elapsed();
            let after = rss_anon_kib();
            let mut t = Vec::new();
            for _ in 0..1000 {
                let began = Instant::now();
                std::hint::black_box(sym.unwind(&raw));
                t.push(began.elapsed());
            }
            println!(
                "MEASURE unwind {mode}: {} frames, median {:?} per sample, first {:?} \
                 (auto, dwarf: reads the tables), RssAnon +{} KiB",
                frames.len(),
                median(t),
                first,
                after.saturating_sub(before)
            );
            assert!(frames.len() > 20, "{mode}: {} frames", frames.len());
        }
    }

    /// A thread CPU clock read falls back from the vDSO (which keeps a frame
    /// pointer) to a syscall, through libc's `clock_gettime` (which does
    /// not): the caller of libc must still be in the stack, recovered from
    /// the words between the vDSO's frame record and the next.
    #[test]
    fn samples_inside_the_vdso_reach_the_caller_of_libc() {
        let (total, found) = samples_naming(reading_a_thread_clock, "cpu_time_ns");
        assert!(total >= 250, "only {total} of 300 samples answered");
        assert!(
            found * 100 >= total * 97,
            "caller of clock_gettime found in {found} of {total} samples"
        );
    }

    /// A thread interrupted inside malloc/free (no frame pointers in Debian's
    /// libc) still yields a stack that reaches the function that allocated.
    #[test]
    fn samples_inside_the_allocator_reach_the_caller() {
        let (total, found) = samples_naming(allocating_loop, "allocating_loop");
        assert!(total >= 250, "only {total} of 300 samples answered");
        assert!(
            found * 100 >= total * 97,
            "caller found in {found} of {total} samples"
        );
    }
}
