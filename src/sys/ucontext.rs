//! Reading the interrupted thread's registers out of the `ucontext_t` that the
//! kernel hands to a `SA_SIGINFO` handler. One function per architecture, so
//! the rest of the sampler never sees a `cfg` list.

/// The registers the frame-pointer walk starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Regs {
    /// Program counter of the interrupted instruction.
    pub(crate) pc: u64,
    /// Stack pointer at the interruption.
    pub(crate) sp: u64,
    /// Frame pointer (`rbp` / `x29`) at the interruption.
    pub(crate) fp: u64,
    /// Link register (`x30`) on aarch64, where a leaf's caller often still is; 0 elsewhere.
    pub(crate) lr: u64,
}

/// Reads the registers from a handler's third argument.
///
/// # Safety
/// `ctx` must be the `*mut c_void` the kernel passed to a `SA_SIGINFO` handler
/// that is still running, so it points at a valid `ucontext_t`.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(super) unsafe fn regs(ctx: *mut libc::c_void) -> Regs {
    // SAFETY: the caller guarantees `ctx` is the live ucontext of this handler invocation.
    let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
    let g = &uc.uc_mcontext.gregs;
    Regs {
        pc: g[libc::REG_RIP as usize] as u64,
        sp: g[libc::REG_RSP as usize] as u64,
        fp: g[libc::REG_RBP as usize] as u64,
        lr: 0,
    }
}

/// Reads the registers from a handler's third argument.
///
/// # Safety
/// `ctx` must be the `*mut c_void` the kernel passed to a `SA_SIGINFO` handler
/// that is still running, so it points at a valid `ucontext_t`.
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
pub(super) unsafe fn regs(ctx: *mut libc::c_void) -> Regs {
    // SAFETY: the caller guarantees `ctx` is the live ucontext of this handler invocation.
    let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
    let m = &uc.uc_mcontext;
    Regs {
        pc: m.pc,
        sp: m.sp,
        fp: m.regs[29],
        lr: m.regs[30],
    }
}

/// Other architectures: no registers, so samples hold no frames (the watchdog
/// still reports episodes, without stacks).
///
/// # Safety
/// None needed: `ctx` is not read.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
pub(super) unsafe fn regs(_ctx: *mut libc::c_void) -> Regs {
    Regs::default()
}
