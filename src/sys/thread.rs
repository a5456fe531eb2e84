//! Facts about the calling thread, gathered once at registration (never in the
//! signal handler: `pthread_getattr_np` reads `/proc/self/maps` for the main
//! thread and allocates), its kernel id, and sending a signal to a thread.

use super::stack::StackRange;

/// The calling thread's stack, or `None` if libc cannot tell. The only
/// way to get a [`StackRange`] (the main thread's comes from
/// `/proc/self/maps`, which glibc reads for it).
pub(crate) fn stack_range() -> Option<StackRange> {
    // SAFETY: zeroed pthread_attr_t is a valid out-parameter for pthread_getattr_np,
    // which initialises it; we destroy it on every path after a successful init.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 || addr.is_null() || size == 0 {
            return None;
        }
        let lo = addr as u64;
        StackRange::new(lo, lo.checked_add(size as u64)?)
    }
}

/// The kernel id of the calling thread. AS-safe (a raw syscall).
#[inline(always)]
pub(crate) fn gettid() -> i32 {
    // SAFETY: SYS_gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// This process's id. Cached: the watchdog asks for it at every stack read
/// (`process_vm_readv`) and signal, hundreds of times a second on a busy
/// runtime, and `getpid` is a real system call since glibc 2.25. A forked
/// child clears the cache (`pthread_atfork`), so it never reads or signals
/// its parent.
pub(crate) fn pid() -> i32 {
    use std::sync::atomic::{AtomicI32, Ordering};
    static PID: AtomicI32 = AtomicI32::new(0);
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    extern "C" fn forget() {
        PID.store(0, Ordering::Relaxed);
    }
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    AT_FORK.call_once(|| {
        // SAFETY: `forget` is a plain `extern "C"` function that only stores
        // to an atomic, which is async-signal-safe, as a fork child handler
        // must be; the other two handlers are none.
        unsafe { libc::pthread_atfork(None, None, Some(forget)) };
    });
    // SAFETY: getpid takes no arguments and cannot fail.
    let p = unsafe { libc::getpid() };
    PID.store(p, Ordering::Relaxed);
    p
}

/// Sends `sig` to thread `tid` of this process.
///
/// `tgkill` by kernel tid, never `pthread_kill`: a `pthread_t` of an exited
/// thread is undefined behaviour, a stale tid is at worst `ESRCH`.
pub(crate) fn tgkill(tid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: plain syscall with integer arguments; errors come back as -1/errno.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid(), tid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether `sig` is currently blocked in the calling thread's signal mask
/// (then a sample request would only time out).
pub(crate) fn blocks_signal(sig: i32) -> bool {
    // SAFETY: zeroed sigset_t is valid; pthread_sigmask with a null `set` only reads the mask.
    unsafe {
        let mut cur: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
        libc::sigismember(&cur, sig) == 1
    }
}

/// The calling thread's name as the kernel knows it (`comm`, 15 bytes), used
/// when std has no name for the thread.
pub(crate) fn kernel_name() -> Option<String> {
    let mut buf = [0u8; 16];
    // SAFETY: `buf` is 16 bytes, the documented maximum for thread names incl. NUL.
    let rc = unsafe {
        libc::pthread_getname_np(libc::pthread_self(), buf.as_mut_ptr().cast(), buf.len())
    };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// CPU time consumed so far by thread `tid` of this process, exact to the
/// nanosecond (the kernel brings a running thread's account up to date for
/// this call, unlike `/proc/.../schedstat`, which lags by up to a tick).
pub(crate) fn cpu_time_ns(tid: i32) -> Option<u64> {
    // The kernel's encoding of a per-thread CPU clock: !tid << 3 | CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED.
    let clock = ((!tid) << 3) | 6;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; an invalid clock id (thread gone)
    // makes the call fail with EINVAL, which we report as None.
    let rc = unsafe { libc::clock_gettime(clock as libc::clockid_t, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64),
    )
}

/// Asks the scheduler for short time slices for the calling thread (EEVDF's
/// `sched_runtime` for normal threads, Linux 6.12 and later, no privilege
/// needed): a thread with a short slice gets an early deadline when it
/// wakes, so on a saturated machine it runs within about a slice instead of
/// waiting behind every busy thread's 3 ms. The watchdog runs for
/// microseconds per tick; this keeps its ticks on time under load.
/// Returns whether the kernel took the request (older kernels refuse it).
pub(crate) fn request_short_slices(slice: std::time::Duration) -> bool {
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        nice: 0,
        priority: 0,
        runtime: slice.as_nanos().min(u64::MAX as u128) as u64,
        deadline: 0,
        period: 0,
    };
    // SAFETY: `attr` is a valid, fully initialised sched_attr (VER0 layout,
    // 48 bytes, its size field set) that lives for the call; pid 0 is the
    // calling thread; the kernel only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    rc == 0
}

/// Runs `f` on a thread that libc starts directly, so its stack holds no
/// frame of std's (which is built with frame pointers): only `f`, this
/// file's trampoline and glibc's thread start. For the unwinder's tests.
/// `f` must not panic (a panic cannot leave an `extern "C"` function).
#[cfg(test)]
pub(crate) fn run_on_a_libc_thread(f: fn()) {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the `fn()` that `run_on_a_libc_thread` passed to
        // pthread_create, cast to a pointer (same size, a valid fn pointer).
        let f = unsafe { std::mem::transmute::<*mut libc::c_void, fn()>(arg) };
        f();
        std::ptr::null_mut()
    }
    // SAFETY: an all-zero pthread_t is a valid out-parameter value.
    let mut t: libc::pthread_t = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid out-pointer, null attributes mean the defaults,
    // `start` has the C signature pthread_create expects, and the argument
    // is a plain fn pointer that outlives the thread (it is 'static).
    let rc =
        unsafe { libc::pthread_create(&mut t, std::ptr::null(), start, f as *mut libc::c_void) };
    assert_eq!(rc, 0, "pthread_create");
    // SAFETY: `t` is the joinable thread just created, joined once.
    let rc = unsafe { libc::pthread_join(t, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "pthread_join");
}
