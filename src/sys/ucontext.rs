//! Reading the interrupted thread's registers out of the `ucontext_t` that the
//! kernel hands to a `SA_SIGINFO` handler. One function per architecture, so
//! the rest of the sampler never sees a `cfg` list.

/// The registers a sample starts from: what the handler reads from the
/// interrupted context, or what `/proc/<tid>/syscall` tells of a thread
/// blocked in the kernel ([`Registers::in_syscall`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Registers {
    /// Program counter of the interrupted instruction.
    pub(crate) pc: u64,
    /// Stack pointer at the interruption.
    pub(crate) sp: u64,
    /// Frame pointer (`rbp` / `x29`) at the interruption.
    pub(crate) fp: u64,
    /// Link register (`x30`) on aarch64, where a leaf's caller often still is; 0 elsewhere.
    pub(crate) lr: u64,
}

impl Registers {
    /// A thread blocked in a system call, seen from outside: the kernel
    /// reports its `sp` and `pc` only, so `fp` and `lr` are 0 (unknown).
    pub(crate) fn in_syscall(pc: u64, sp: u64) -> Registers {
        Registers {
            pc,
            sp,
            ..Registers::default()
        }
    }
}

/// Reads the registers from a handler's third argument.
///
/// # Safety
/// `ctx` must be the `*mut c_void` the kernel passed to a `SA_SIGINFO` handler
/// that is still running, so it points at a valid `ucontext_t`.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(super) unsafe fn regs(ctx: *mut libc::c_void) -> Registers {
    // SAFETY: the caller guarantees `ctx` is the live ucontext of this handler invocation.
    let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
    let g = &uc.uc_mcontext.gregs;
    Registers {
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
pub(super) unsafe fn regs(ctx: *mut libc::c_void) -> Registers {
    // SAFETY: the caller guarantees `ctx` is the live ucontext of this handler invocation.
    let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
    let m = &uc.uc_mcontext;
    Registers {
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
pub(super) unsafe fn regs(_ctx: *mut libc::c_void) -> Registers {
    Registers::default()
}
