//! The sampling signal: choosing and installing it, and the handler. What
//! the handler calls lives beside it: `thread::gettid`, `stack` for the
//! memory it reads, `futex::wake`.

use std::sync::atomic::{AtomicU64, Ordering};

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

/// The signal handler.
///
/// Async-signal-safety: this calls only `gettid` (a raw syscall), atomics,
/// `memcpy` and volatile loads inside the checked stack window, and `futex`
/// wake (a raw syscall). No allocation, no lock, no lazy thread-local, no formatting, no
/// panicking arithmetic; see `tests/no_alloc_in_handler.rs`.
extern "C" fn handler(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let _errno = ErrnoGuard::save();
    let tid = super::thread::gettid();
    let Some(claim) = sampler::claim(tid) else {
        // A stray signal (someone else's SIGURG, or a sample the watchdog gave up on).
        return;
    };
    // SAFETY: `ctx` is the ucontext the kernel passed to this SA_SIGINFO handler.
    let regs = unsafe { super::ucontext::regs(ctx) };
    // Running on some other stack (an alternate signal stack, a coroutine):
    // no window, so pc and lr only, nothing read.
    let window = claim.stack().and_then(|s| s.window_from(regs.sp));
    sampler::fill(&claim, &regs, window.as_ref());
    sampler::publish(claim);
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
