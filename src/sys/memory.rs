//! Reading this process's own memory without the risk of a fault:
//! `process_vm_readv` on our own pid returns `EFAULT` for an unmapped page
//! instead of raising `SIGSEGV`. The watchdog uses it to copy the stack of a
//! thread that is blocked in the kernel, whose user stack cannot change until
//! the call returns, so the thread never has to be interrupted.

use std::sync::atomic::{AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const WORKS: u8 = 1;
const REFUSED: u8 = 2;

static AVAILABLE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Copies `buf.len()` bytes from address `addr` of this process into `buf`;
/// returns how many were copied (fewer at the end of a mapping).
pub(crate) fn read(addr: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, which we own mutably for the call; the
    // remote range is only read by the kernel, which checks it and fails with
    // EFAULT rather than faulting. No memory of ours is touched except `buf`.
    let n = unsafe { libc::process_vm_readv(super::thread::pid(), &local, 1, &remote, 1, 0) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Whether `process_vm_readv` works here (a container's seccomp profile may
/// refuse it with `EPERM` or `ENOSYS`). Tried once, on a local variable.
pub(crate) fn available() -> bool {
    match AVAILABLE.load(Ordering::Relaxed) {
        WORKS => return true,
        REFUSED => return false,
        _ => {}
    }
    let probe = 0x5aa5_5aa5_1234_5678u64;
    let mut out = [0u8; 8];
    let ok = matches!(read(&probe as *const u64 as u64, &mut out), Ok(8))
        && u64::from_ne_bytes(out) == probe;
    AVAILABLE.store(if ok { WORKS } else { REFUSED }, Ordering::Relaxed);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_refuses_unmapped_without_faulting() {
        assert!(available());
        let words = [1u64, 2, 3, 4];
        let mut out = [0u8; 32];
        assert_eq!(read(words.as_ptr() as u64, &mut out).unwrap(), 32);
        assert_eq!(u64::from_ne_bytes(out[8..16].try_into().unwrap()), 2);
        // Page zero is never mapped: an error, not a crash.
        assert!(read(8, &mut out).is_err());
    }
}
