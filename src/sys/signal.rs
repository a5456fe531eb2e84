//! The sampling signal: installation, the handler, thread-directed sending and
//! the futex the watchdog sleeps on while the handler works.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::sampler;

/// Bit `n` set: our handler is installed for signal `n`. Kept for the life of
/// the process: the handler is never removed, because a signal still in flight
/// would then hit the default action (pprof-rs#276, async-profiler PR #11).
static INSTALLED: AtomicU64 = AtomicU64::new(0);

/// Why the sampling signal could not be installed.
#[derive(Debug)]
pub(crate) enum InstallError {
    /// Another handler already owns this signal; we do not take it over.
    InUse,
    /// `sigaction` failed.
    Os(std::io::Error),
}

/// Installs the handler for `sig`, once per process.
///
/// Refuses a signal that someone else already handles: taking it over would
/// silently break the host program.
pub(crate) fn install(sig: i32) -> Result<(), InstallError> {
    let bit = 1u64 << (sig as u32 % 64);
    if INSTALLED.load(Ordering::Acquire) & bit != 0 {
        return Ok(());
    }
    // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null `act` only queries the disposition; `old` is a valid out-pointer.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
        return Err(InstallError::Os(std::io::Error::last_os_error()));
    }
    let ours = handler as *const () as usize;
    if old.sa_sigaction != libc::SIG_DFL
        && old.sa_sigaction != libc::SIG_IGN
        && old.sa_sigaction != ours
    {
        return Err(InstallError::InUse);
    }
    // SAFETY: as above, zero is a valid starting value.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = ours;
    // SA_RESTART so that most interrupted syscalls resume transparently; no
    // SA_ONSTACK, because std's per-thread alternate stack is small and
    // reserved for stack-overflow reports.
    act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: `act.sa_mask` is a valid sigset_t to initialise. Blocking every
    // other signal while the handler runs keeps it from being re-entered by a
    // second sampling signal; faults stay unblocked so a real crash still reports.
    unsafe {
        libc::sigfillset(&mut act.sa_mask);
        for s in [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE] {
            libc::sigdelset(&mut act.sa_mask, s);
        }
    }
    // SAFETY: `act` is fully initialised and `handler` has the SA_SIGINFO signature.
    if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
        return Err(InstallError::Os(std::io::Error::last_os_error()));
    }
    INSTALLED.fetch_or(bit, Ordering::AcqRel);
    Ok(())
}

/// Whether `sig`'s handler is still pollwatch's. A program (or a library
/// such as tokio's signal handling or signal-hook) that installs its own
/// handler later takes the signal over: sending it again would deliver
/// sampling signals to a handler that thinks they are real.
pub(crate) fn is_ours(sig: i32) -> bool {
    // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct.
    let mut cur: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null `act` only queries the disposition; `cur` is a valid out-pointer.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut cur) } != 0 {
        return false;
    }
    cur.sa_sigaction == handler as *const () as usize
}

/// Installs the handler on the first real-time signal nobody handles, and
/// returns it: where sampling moves when the program took its signal over.
pub(crate) fn install_free_realtime() -> Option<i32> {
    let (lo, hi) = rt_range();
    (lo..=hi).rev().find(|&sig| {
        INSTALLED.load(Ordering::Acquire) & (1u64 << (sig as u32 % 64)) == 0 && install(sig).is_ok()
    })
}

/// Saves `errno` on entry and restores it on exit, so the interrupted code never
/// sees a value changed by our syscalls (pprof-rs's `ErrnoProtector`).
struct ErrnoGuard(i32);

impl ErrnoGuard {
    fn save() -> Self {
        // SAFETY: `__errno_location` returns this thread's errno slot; reading it is AS-safe.
        ErrnoGuard(unsafe { *libc::__errno_location() })
    }
}

impl Drop for ErrnoGuard {
    fn drop(&mut self) {
        // SAFETY: as in `save`; writing our own thread's errno is AS-safe.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

/// A window `[lo, hi)` of the interrupted thread's stack that can be read
/// without faulting while the handler runs: `lo` is the interrupted `sp`, `hi`
/// the top of the stack recorded when the thread registered. Only the handler
/// can make one, and it cannot outlive the handler call.
pub(crate) struct StackWindow {
    lo: u64,
    hi: u64,
}

impl StackWindow {
    /// Copies the window's words from its start into `dst`, as many as fit;
    /// returns how many, and whether the stack went on past them. One
    /// `memcpy` (async-signal-safe, POSIX.1-2008 TC2): a word-by-word loop
    /// costs ten times more in an unoptimised build.
    #[inline(always)]
    pub(crate) fn copy_to(&self, dst: &[AtomicU64]) -> (usize, bool) {
        if self.lo % 8 != 0 || self.hi <= self.lo {
            return (0, false);
        }
        let words = usize::try_from((self.hi - self.lo) / 8).unwrap_or(usize::MAX);
        let n = words.min(dst.len());
        if let Some(first) = dst.first() {
            // SAFETY: the source `[lo, lo + 8n)` lies inside the window, which is
            // mapped and belongs to this very thread (see `read`), and `lo` is
            // aligned. The destination is `n` consecutive `AtomicU64`s, which
            // have `u64`'s layout; nothing else touches them while the handler
            // owns the sample buffer (WRITING state), so the plain writes race
            // with no atomic access. Stack and buffer do not overlap: the
            // buffer is on the heap.
            unsafe {
                std::ptr::copy_nonoverlapping(self.lo as *const u64, first.as_ptr(), n);
            }
        }
        (n, words > n)
    }

    /// Reads the aligned word at `addr`, or `None` when it lies outside the window.
    #[inline(always)]
    pub(crate) fn read(&self, addr: u64) -> Option<u64> {
        if addr % 8 != 0 || addr < self.lo || addr >= self.hi || self.hi - addr < 8 {
            return None;
        }
        // SAFETY: `[lo, hi)` is part of the interrupted thread's own stack: `lo`
        // is its current stack pointer and `hi` the top of the mapping recorded at
        // registration, and the handler runs on that same thread, so every page
        // in between is mapped for as long as this window exists. The word is
        // aligned and fully inside the window (checked above).
        Some(unsafe { std::ptr::read_volatile(addr as *const u64) })
    }
}

/// The signal handler.
///
/// Async-signal-safety: this calls only `gettid` (a raw syscall), atomics,
/// volatile loads inside the checked stack window, and `futex` wake (a raw
/// syscall). No allocation, no lock, no lazy thread-local, no formatting, no
/// panicking arithmetic; see `tests/no_alloc_in_handler.rs`.
extern "C" fn handler(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let _errno = ErrnoGuard::save();
    let tid = gettid();
    let Some(claim) = sampler::claim(tid) else {
        // A stray signal (someone else's SIGURG, or a sample the watchdog gave up on).
        return;
    };
    // SAFETY: `ctx` is the ucontext the kernel passed to this SA_SIGINFO handler.
    let regs = unsafe { super::ucontext::regs(ctx) };
    let window = if regs.sp >= claim.stack_lo && regs.sp < claim.stack_hi {
        Some(StackWindow {
            lo: regs.sp,
            hi: claim.stack_hi,
        })
    } else {
        // Running on some other stack (an alternate signal stack, a coroutine):
        // keep pc and lr only, read nothing.
        None
    };
    sampler::fill(&claim, &regs, window.as_ref());
    sampler::publish(claim);
}

/// The kernel id of the calling thread. AS-safe (a raw syscall).
pub(crate) fn gettid() -> i32 {
    // SAFETY: SYS_gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Sends `sig` to thread `tid` of this process.
///
/// `tgkill` by kernel tid, never `pthread_kill`: a `pthread_t` of an exited
/// thread is undefined behaviour, a stale tid is at worst `ESRCH`.
pub(crate) fn tgkill(tid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: plain syscall with integer arguments; errors come back as -1/errno.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sleeps while `*word == expected`, at most `timeout`. Spurious wake-ups are
/// fine: the caller re-checks.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: std::time::Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned u32 for the duration of the call and `ts`
    // a valid relative timeout; FUTEX_WAIT only reads them.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wakes one waiter on `word`. AS-safe (a raw syscall).
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not touch memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// Whether `sig` is currently blocked in this thread's signal mask (then a
/// sample request would only time out).
pub(crate) fn blocked_here(sig: i32) -> bool {
    // SAFETY: zeroed sigset_t is valid; pthread_sigmask with a null `set` only reads the mask.
    unsafe {
        let mut cur: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
        libc::sigismember(&cur, sig) == 1
    }
}

/// `SIGRTMIN` and `SIGRTMAX` as this libc defines them (never hard-code 34).
pub(crate) fn rt_range() -> (i32, i32) {
    (libc::SIGRTMIN(), libc::SIGRTMAX())
}

/// A signal's name as `POLLWATCH_SIGNAL` spells it, for messages.
pub(crate) fn name(sig: i32) -> String {
    let (lo, hi) = rt_range();
    let fixed = [
        (libc::SIGURG, "SIGURG"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGWINCH, "SIGWINCH"),
    ];
    match fixed.iter().find(|(n, _)| *n == sig) {
        Some((_, s)) => (*s).to_owned(),
        None if sig >= lo && sig <= hi && sig - lo <= hi - sig => format!("SIGRTMIN+{}", sig - lo),
        None if sig >= lo && sig <= hi => format!("SIGRTMAX-{}", hi - sig),
        None => format!("signal {sig}"),
    }
}
