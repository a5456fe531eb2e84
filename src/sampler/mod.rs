//! Capturing the stack of a stuck thread, on request from the watchdog.
//!
//! There is one preallocated sample buffer for the whole process and one
//! request in flight at a time. Its state machine:
//!
//! ```text
//! IDLE ──watchdog arms──► ARMED ──handler on the right tid──► WRITING ──► READY
//!   ▲                       │ (deadline passed: watchdog CASes back)        │
//!   └───────────────────────┴──────────── watchdog copies out ◄─────────────┘
//! ```
//!
//! The handler side (`claim`, `fill`, `publish`) runs inside the signal handler
//! and is async-signal-safe: atomics and bounded stack reads only.
//!
//! The handler does not unwind. Besides the registers and the frame-pointer
//! chain (cheap, and all that `fp` mode uses), it copies the stack from `sp`
//! upwards into a buffer allocated once, before any signal is sent, so that
//! the stack can be unwound later with the unwind tables (`crate::unwind`).

pub(crate) mod latency;
pub(crate) mod unwind;

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::sys::signal::{self, StackWindow};
use crate::sys::Regs;

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
/// Copy buffers of growing size: a later start that asks for a bigger copy
/// gets a new one, and the handler only ever reads one that is published.
const COPY_SLOTS: usize = 4;

/// How long `capture` spins before sleeping on the futex.
const SPIN: Duration = Duration::from_micros(20);

const IDLE: u32 = 0;
const ARMED: u32 = 1;
const WRITING: u32 = 2;
const READY: u32 = 3;

struct SampleBuf {
    state: AtomicU32,
    tid: AtomicI32,
    stack_lo: AtomicU64,
    stack_hi: AtomicU64,
    pc: AtomicU64,
    sp: AtomicU64,
    fp: AtomicU64,
    chain: AtomicU64,
    lr: AtomicU64,
    nframes: AtomicU32,
    frames: [AtomicU64; MAX_FRAMES],
    /// Which of `COPY` the handler fills, and how many words of it at most.
    copy_slot: AtomicU32,
    copy_limit: AtomicU32,
    ncopy: AtomicU32,
    /// The copy stopped at `copy_limit` before the top of the stack.
    truncated: AtomicBool,
}

static BUF: SampleBuf = SampleBuf {
    state: AtomicU32::new(IDLE),
    tid: AtomicI32::new(0),
    stack_lo: AtomicU64::new(0),
    stack_hi: AtomicU64::new(0),
    pc: AtomicU64::new(0),
    sp: AtomicU64::new(0),
    fp: AtomicU64::new(0),
    chain: AtomicU64::new(0),
    lr: AtomicU64::new(0),
    nframes: AtomicU32::new(0),
    frames: [const { AtomicU64::new(0) }; MAX_FRAMES],
    copy_slot: AtomicU32::new(0),
    copy_limit: AtomicU32::new(0),
    ncopy: AtomicU32::new(0),
    truncated: AtomicBool::new(false),
};

/// The stack-copy buffers, allocated by [`prepare`] (never by the handler).
static COPY: [OnceLock<Box<[AtomicU64]>>; COPY_SLOTS] = [const { OnceLock::new() }; COPY_SLOTS];

/// Allocates (once) a copy buffer of at least `bytes` and makes the
/// following samples copy that much: called at start, before any signal.
/// Past `COPY_SLOTS` growths the largest buffer so far is used. Returns the
/// bytes each sample will copy at most.
pub(crate) fn prepare(bytes: usize) -> usize {
    let _one_at_a_time = REQUEST.lock().unwrap_or_else(|p| p.into_inner());
    let words = bytes.clamp(8, MAX_COPY_BYTES) / 8;
    let slot = COPY
        .iter()
        .position(|c| c.get().is_some_and(|b| b.len() >= words))
        .or_else(|| COPY.iter().position(|c| c.get().is_none()))
        .unwrap_or(COPY_SLOTS - 1);
    let buf = COPY[slot].get_or_init(|| (0..words).map(|_| AtomicU64::new(0)).collect());
    let granted = words.min(buf.len());
    BUF.copy_slot.store(slot as u32, Ordering::Relaxed);
    BUF.copy_limit.store(granted as u32, Ordering::Relaxed);
    granted * 8
}

/// Serialises requesters (the watchdog, the start-up self-test).
static REQUEST: Mutex<()> = Mutex::new(());

/// Proof, inside the handler, that this invocation owns the buffer.
pub(crate) struct Claim {
    pub(crate) stack_lo: u64,
    pub(crate) stack_hi: u64,
}

/// Handler side: takes the buffer if a request is armed for thread `tid`.
#[inline(always)]
pub(crate) fn claim(tid: i32) -> Option<Claim> {
    if BUF.tid.load(Ordering::Acquire) != tid {
        return None;
    }
    BUF.state
        .compare_exchange(ARMED, WRITING, Ordering::Acquire, Ordering::Relaxed)
        .ok()?;
    // Re-check after winning the CAS: the watchdog writes tid before arming, and
    // cannot re-arm for another thread while we hold WRITING.
    if BUF.tid.load(Ordering::Relaxed) != tid {
        BUF.state.store(IDLE, Ordering::Release);
        return None;
    }
    Some(Claim {
        stack_lo: BUF.stack_lo.load(Ordering::Relaxed),
        stack_hi: BUF.stack_hi.load(Ordering::Relaxed),
    })
}

/// Handler side: records registers, the frame-pointer chain and the stack
/// from `sp` up. Bounded: at most `MAX_FRAMES` records, the prepared copy
/// size and one resync scan of `unwind::RESYNC_SPAN` bytes.
#[inline(always)]
pub(crate) fn fill(_claim: &Claim, regs: &Regs, window: Option<&StackWindow>) {
    BUF.pc.store(regs.pc, Ordering::Relaxed);
    BUF.sp.store(regs.sp, Ordering::Relaxed);
    BUF.lr.store(regs.lr, Ordering::Relaxed);
    let mut nframes = 0usize;
    let mut ncopy = 0usize;
    let mut truncated = false;
    let mut start = 0u64;
    if let Some(w) = window {
        let read = |addr: u64| w.read(addr);
        start = unwind::start_fp(regs.sp, regs.fp, &read);
        unwind::walk(start, &read, &mut |ra| match BUF.frames.get(nframes) {
            Some(slot) => {
                slot.store(ra, Ordering::Relaxed);
                nframes = nframes.wrapping_add(1);
                true
            }
            None => false,
        });
        // `OnceLock::get` is one atomic load: it never blocks or allocates.
        let copy = COPY
            .get(BUF.copy_slot.load(Ordering::Relaxed) as usize)
            .and_then(OnceLock::get);
        let limit = BUF.copy_limit.load(Ordering::Relaxed) as usize;
        if let Some(copy) = copy {
            (ncopy, truncated) = w.copy_to(copy.get(..limit).unwrap_or(copy));
        }
    }
    BUF.fp.store(regs.fp, Ordering::Relaxed);
    BUF.chain.store(start, Ordering::Relaxed);
    BUF.nframes.store(nframes as u32, Ordering::Relaxed);
    BUF.ncopy.store(ncopy as u32, Ordering::Relaxed);
    BUF.truncated.store(truncated, Ordering::Relaxed);
}

/// Handler side: hands the buffer back to the watchdog and wakes it.
#[inline(always)]
pub(crate) fn publish(_claim: Claim) {
    BUF.state.store(READY, Ordering::Release);
    signal::futex_wake(&BUF.state);
}

/// One captured stack, still as raw addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawSample {
    /// Interrupted program counter (the leaf).
    pub(crate) pc: u64,
    /// Interrupted stack pointer; `copy[0]` was read from here.
    pub(crate) sp: u64,
    /// The frame-pointer register at the interruption (0: not known). The
    /// unwind tables restore the caller's from it where a function keeps one.
    pub(crate) fp: u64,
    /// Where the handler's frame-record walk started: `fp`, or the record a
    /// resync scan found above `sp` when `fp` led nowhere.
    pub(crate) chain: u64,
    /// Link register (aarch64), else 0.
    pub(crate) lr: u64,
    /// Return addresses from the frame-pointer chain, innermost first.
    pub(crate) frames: Vec<u64>,
    /// Words at `[sp, sp + 8 * copy.len())`: what the unwinder reads.
    pub(crate) copy: Vec<u64>,
    /// The copy stopped before the top of the stack (the configured size was
    /// reached): an unwind that runs off its end is cut there.
    pub(crate) truncated: bool,
}

impl RawSample {
    /// A sample taken without a signal: a thread blocked in a system call,
    /// whose `pc` and `sp` the kernel reports and whose stack words from
    /// `sp` up were read from another thread. There is no frame-pointer
    /// register, so the unwinder finds the frames from `copy` alone.
    #[allow(dead_code)] // for the signal-free reads of blocked threads
    pub(crate) fn from_stack(pc: u64, sp: u64, copy: Vec<u64>, truncated: bool) -> RawSample {
        RawSample {
            pc,
            sp,
            copy,
            truncated,
            ..RawSample::default()
        }
    }
}

/// What a sample request needs to know about its target.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub(crate) tid: i32,
    pub(crate) stack: (u64, u64),
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
}

/// Watchdog side: signals `target`, waits up to `deadline` for the handler and
/// copies the sample out.
pub(crate) fn capture(target: Target, sig: i32, deadline: Duration) -> Result<RawSample, Missed> {
    if COPY[0].get().is_none() {
        // Tests capture without a guard; a guard prepares at start.
        prepare(DEFAULT_COPY_BYTES);
    }
    let _one_at_a_time = REQUEST.lock().unwrap_or_else(|p| p.into_inner());
    BUF.tid.store(target.tid, Ordering::Relaxed);
    BUF.stack_lo.store(target.stack.0, Ordering::Relaxed);
    BUF.stack_hi.store(target.stack.1, Ordering::Relaxed);
    BUF.state.store(ARMED, Ordering::Release);
    if let Err(e) = signal::tgkill(target.tid, sig) {
        disarm();
        return Err(if e.raw_os_error() == Some(libc::ESRCH) {
            Missed::ThreadGone
        } else {
            Missed::SendFailed
        });
    }
    let until = Instant::now() + deadline;
    // A running target answers within microseconds; sleeping on the futex
    // right away would add the scheduler's wake-up latency (tens of µs) to
    // every sample. Spin briefly first, bounded so that a target that needs
    // this CPU to run its handler is not kept waiting long.
    let spin_until = Instant::now() + SPIN;
    while BUF.state.load(Ordering::Acquire) != READY && Instant::now() < spin_until {
        std::hint::spin_loop();
    }
    loop {
        let s = BUF.state.load(Ordering::Acquire);
        if s == READY {
            break;
        }
        let now = Instant::now();
        if now >= until {
            if BUF
                .state
                .compare_exchange(ARMED, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                BUF.tid.store(0, Ordering::Relaxed);
                return Err(Missed::Timeout);
            }
            // The handler is writing right now; it is bounded, so wait it
            // out. But a late handler of an earlier request (its thread was
            // descheduled between its tid check and its claim) may have
            // taken this request and handed it back as IDLE on seeing the
            // tid is not its own: then nobody will write, and waiting for
            // READY would spin forever (seen at a service's shutdown, with
            // `finish()` stuck joining the watchdog).
            match wait_out_writer() {
                READY => break,
                _ => {
                    BUF.tid.store(0, Ordering::Relaxed);
                    return Err(Missed::Timeout);
                }
            }
        }
        signal::futex_wait(&BUF.state, s, until - now);
    }
    let n = (BUF.nframes.load(Ordering::Relaxed) as usize).min(MAX_FRAMES);
    let copy = COPY
        .get(BUF.copy_slot.load(Ordering::Relaxed) as usize)
        .and_then(OnceLock::get)
        .map_or(&[][..], |b| &b[..]);
    let c = (BUF.ncopy.load(Ordering::Relaxed) as usize).min(copy.len());
    let sample = RawSample {
        pc: BUF.pc.load(Ordering::Relaxed),
        sp: BUF.sp.load(Ordering::Relaxed),
        fp: BUF.fp.load(Ordering::Relaxed),
        chain: BUF.chain.load(Ordering::Relaxed),
        lr: BUF.lr.load(Ordering::Relaxed),
        frames: BUF.frames[..n]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect(),
        copy: copy[..c]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect(),
        truncated: BUF.truncated.load(Ordering::Relaxed),
    };
    BUF.tid.store(0, Ordering::Relaxed);
    BUF.state.store(IDLE, Ordering::Release);
    Ok(sample)
}

/// Spins while a handler holds the buffer (bounded work), then returns the
/// state it left: `READY`, or `IDLE` from a handler that let go unwritten.
fn wait_out_writer() -> u32 {
    loop {
        match BUF.state.load(Ordering::Acquire) {
            WRITING => std::hint::spin_loop(),
            s => return s,
        }
    }
}

fn disarm() {
    let _ = BUF
        .state
        .compare_exchange(ARMED, IDLE, Ordering::AcqRel, Ordering::Acquire);
    BUF.tid.store(0, Ordering::Relaxed);
}

/// Captures the calling thread's own stack through the signal path: used by the
/// start-up self-test and by tests. The handler runs before `tgkill` returns,
/// because a signal sent to the calling thread is delivered on the way out of
/// the syscall.
pub(crate) fn capture_self(sig: i32) -> Result<RawSample, Missed> {
    let Some(stack) = crate::sys::thread::stack_range() else {
        return Err(Missed::SendFailed);
    };
    if signal::blocked_here(sig) {
        return Err(Missed::Timeout);
    }
    capture(
        Target {
            tid: signal::gettid(),
            stack,
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
        let tid = crate::sys::signal::gettid();
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
                crate::sys::signal::gettid(),
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
                Target { tid, stack },
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
            for kib in [1usize, 4, 16, 32, 64] {
                prepare(kib * 1024);
                let mut t = Vec::with_capacity(runs);
                for _ in 0..runs {
                    let began = Instant::now();
                    let s = capture_self(libc::SIGURG).unwrap();
                    t.push(began.elapsed());
                    std::hint::black_box(&s);
                }
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
                 (reads the tables), RssAnon +{} KiB",
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

    /// A late handler of an earlier request can claim the current one and
    /// hand it back unwritten (its tid re-check fails). The requester must
    /// then give up at its deadline, not wait for a sample nobody writes.
    #[test]
    fn a_request_taken_and_dropped_by_a_stale_handler_times_out() {
        // SIGWINCH: no handler of ours (its default action is to ignore it),
        // so only the stand-in below ever claims the request.
        let (tx, rx) = std::sync::mpsc::channel();
        let target = std::thread::spawn(move || {
            tx.send(crate::sys::signal::gettid()).unwrap();
            std::thread::sleep(Duration::from_secs(2));
        });
        let tid = rx.recv().unwrap();
        let stale = std::thread::spawn(move || {
            // Requests are serialised: while `tid` is armed, it is ours.
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                if BUF.tid.load(Ordering::Acquire) == tid
                    && BUF
                        .state
                        .compare_exchange(ARMED, WRITING, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    BUF.state.store(IDLE, Ordering::Release);
                    return true;
                }
                std::hint::spin_loop();
            }
            false
        });
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = capture(
                Target { tid, stack: (0, 0) },
                libc::SIGWINCH,
                Duration::from_millis(50),
            );
            let _ = done_tx.send(r.map(|_| ()));
        });
        let r = done.recv_timeout(Duration::from_secs(10));
        assert!(stale.join().unwrap(), "the stand-in never saw the request");
        assert_eq!(
            r,
            Ok(Err(Missed::Timeout)),
            "capture must give up, not hang"
        );
        target.join().unwrap();
    }
}
