//! What the kernel says about one of our threads, from `/proc/self/task/<tid>/`
//! and the thread's CPU clock. Each read is one `pread` on a file kept open,
//! so the watchdog can look at a stuck thread every millisecond cheaply.
//! Parsing is pure and unit-tested; the files are only read here.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Scheduler accounting of one thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sched {
    /// Time on a CPU (exact, from the thread's CPU clock).
    pub(crate) cpu_ns: u64,
    /// Time runnable but waiting for a CPU, from `schedstat`. The kernel adds
    /// a wait when it ends, so a wait still going on is not in it yet.
    pub(crate) wait_ns: u64,
}

/// The state letter and CPU time split of a thread, from `stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stat {
    /// `R` running or runnable, `S` sleeping, `D` uninterruptible, `Z`/`X` gone.
    pub(crate) state: u8,
    /// CPU time in user mode and in the kernel, in clock ticks (10 ms).
    /// Coarse, but the only way to tell, without interrupting it, that a
    /// running thread is inside the kernel: its system time grows alone.
    pub(crate) user_ticks: u64,
    pub(crate) system_ticks: u64,
}

/// What `/proc/.../syscall` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Syscall {
    /// The thread is running (user code or inside a call): nothing more known.
    Running,
    /// Blocked: in syscall `nr` (`None`: blocked outside a syscall, in a page
    /// fault say), with the user stack pointer and program counter it left
    /// user space with. That user stack cannot change until it returns.
    Blocked { nr: Option<u32>, sp: u64, pc: u64 },
}

/// The open `/proc` files of one thread.
#[derive(Debug)]
pub(crate) struct ThreadFiles {
    tid: i32,
    schedstat: Option<File>,
    syscall: Option<File>,
    stat: Option<File>,
}

/// Longest `/proc/.../syscall` line: nine fields of at most 18 bytes.
pub(crate) const SYSCALL_LINE: usize = 192;

impl ThreadFiles {
    pub(crate) fn open(tid: i32) -> Self {
        let dir = format!("/proc/self/task/{tid}");
        ThreadFiles {
            tid,
            schedstat: File::open(format!("{dir}/schedstat")).ok(),
            syscall: File::open(format!("{dir}/syscall")).ok(),
            stat: File::open(format!("{dir}/stat")).ok(),
        }
    }

    /// CPU time and run-queue wait; `None` once the thread is gone.
    pub(crate) fn sched(&self) -> Option<Sched> {
        let cpu_ns = super::thread::cpu_time_ns(self.tid)?;
        let mut buf = [0u8; 96];
        let wait_ns = self
            .schedstat
            .as_ref()
            .and_then(|f| f.read_at(&mut buf, 0).ok())
            .and_then(|n| parse_schedstat_wait(&buf[..n]))
            .unwrap_or(0);
        Some(Sched { cpu_ns, wait_ns })
    }

    /// The thread's state letter and user/system split, from `stat`.
    pub(crate) fn stat(&self) -> Option<Stat> {
        let mut buf = [0u8; 512];
        let n = self.stat.as_ref()?.read_at(&mut buf, 0).ok()?;
        parse_stat(&buf[..n])
    }

    /// The raw syscall line, for comparing two reads byte for byte.
    pub(crate) fn syscall_line(&self, buf: &mut [u8; SYSCALL_LINE]) -> Option<usize> {
        self.syscall
            .as_ref()?
            .read_at(buf, 0)
            .ok()
            .filter(|&n| n > 0)
    }

    /// Whether signal `sig` sits pending and blocked on the thread (`SigPnd`
    /// and `SigBlk` in `status`): the program blocks it. The blocked mask
    /// alone would also show our own handler running late (it blocks every
    /// signal while it runs), but then the signal is no longer pending. Read
    /// rarely, so the file is not kept open.
    pub(crate) fn holds_blocked(&self, sig: i32) -> Option<bool> {
        let status =
            std::fs::read_to_string(format!("/proc/self/task/{}/status", self.tid)).ok()?;
        parse_holds_blocked(&status, sig)
    }

    /// Whether the thread still exists (a thread that left by a raw `exit`
    /// inside a poll never releases its slot).
    pub(crate) fn alive(&self) -> bool {
        std::path::Path::new(&format!("/proc/self/task/{}", self.tid)).exists()
            && !matches!(self.stat().map(|s| s.state), Some(b'Z' | b'X') | None)
    }
}

/// The mapping of this process that holds address `addr` (a thread's stack,
/// found from its stack pointer), from `/proc/self/maps`.
pub(crate) fn mapping_of(addr: u64) -> Option<super::stack::StackRange> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let (lo, hi) = parse_mapping_of(&maps, addr)?;
    super::stack::StackRange::new(lo, hi)
}

fn parse_mapping_of(maps: &str, addr: u64) -> Option<(u64, u64)> {
    maps.lines().find_map(|l| {
        let range = l.split_ascii_whitespace().next()?;
        let (lo, hi) = range.split_once('-')?;
        let lo = u64::from_str_radix(lo, 16).ok()?;
        let hi = u64::from_str_radix(hi, 16).ok()?;
        (lo <= addr && addr < hi).then_some((lo, hi))
    })
}

fn parse_schedstat_wait(buf: &[u8]) -> Option<u64> {
    std::str::from_utf8(buf)
        .ok()?
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The fields after the name, which is in parentheses and may contain
/// anything, spaces and parentheses included: state first, then utime and
/// stime as the 12th and 13th.
fn parse_stat(buf: &[u8]) -> Option<Stat> {
    let close = buf.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(buf.get(close + 2..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let mut fields = fields.skip(10);
    let user_ticks = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    let system_ticks = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    Some(Stat {
        state,
        user_ticks,
        system_ticks,
    })
}

/// `running`, or `nr arg1..arg6 sp pc` (hex), or `-1 sp pc`.
pub(crate) fn parse_syscall(line: &[u8]) -> Option<Syscall> {
    let text = std::str::from_utf8(line).ok()?.trim();
    if text.starts_with("running") {
        return Some(Syscall::Running);
    }
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    let (nr, sp, pc) = match fields.as_slice() {
        ["-1", sp, pc] => (None, hex(sp)?, hex(pc)?),
        [nr, _, _, _, _, _, _, sp, pc] => (Some(nr.parse().ok()?), hex(sp)?, hex(pc)?),
        _ => return None,
    };
    Some(Syscall::Blocked { nr, sp, pc })
}

fn parse_holds_blocked(status: &str, sig: i32) -> Option<bool> {
    let mask = |field: &str| {
        let hex = status.lines().find_map(|l| l.strip_prefix(field))?.trim();
        u64::from_str_radix(hex, 16).ok()
    };
    let bit = 1u64 << ((sig.max(1) - 1) % 64);
    Some(mask("SigPnd:")? & mask("SigBlk:")? & bit != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines() {
        assert_eq!(parse_syscall(b"running\n"), Some(Syscall::Running));
        assert_eq!(
            parse_syscall(b"230 0x0 0x0 0x7ffd1000 0x0 0x0 0x0 0x7f00aa10 0x7f00bb20\n"),
            Some(Syscall::Blocked {
                nr: Some(230),
                sp: 0x7f00_aa10,
                pc: 0x7f00_bb20
            })
        );
        assert_eq!(
            parse_syscall(b"-1 0x7ffc0000 0x55550000\n"),
            Some(Syscall::Blocked {
                nr: None,
                sp: 0x7ffc_0000,
                pc: 0x5555_0000
            })
        );
        assert_eq!(parse_syscall(b""), None);
        assert_eq!(parse_syscall(b"230 0x0"), None);
    }

    #[test]
    fn stat_and_schedstat() {
        let line = b"42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 17 3 0 0 20 0 1";
        let st = parse_stat(line).unwrap();
        assert_eq!((st.state, st.user_ticks, st.system_ticks), (b'S', 17, 3));
        assert_eq!(parse_stat(b"42 (x) R").map(|s| s.state), Some(b'R'));
        assert_eq!(parse_schedstat_wait(b"123 456 7\n"), Some(456));
        let status = "Name:\tx\nSigPnd:\t0000000000000000\nSigBlk:\t0000000000400000\n";
        assert_eq!(parse_holds_blocked(status, libc::SIGURG), Some(false));
        let status = "SigPnd:\t0000000000400000\nSigBlk:\t0000000000400000\n";
        assert_eq!(parse_holds_blocked(status, libc::SIGURG), Some(true));
    }

    #[test]
    fn files_of_this_thread() {
        let p = ThreadFiles::open(crate::sys::thread::gettid());
        assert!(p.sched().expect("cpu clock").cpu_ns > 0);
        assert_eq!(p.stat().map(|s| s.state), Some(b'R'));
        assert!(p.alive());
        let mut buf = [0u8; SYSCALL_LINE];
        // Read while running: "running" (or the read itself).
        assert!(p.syscall_line(&mut buf).is_some());
    }

    #[test]
    fn the_mapping_holding_an_address() {
        let maps = "5600-5700 r-xp 00000000 08:01 12 /bin/x\n\
                    7f00-7f80 rw-p 00000000 00:00 0 \n\
                    7ffc-7ffe rw-p 00000000 00:00 0 [stack]\n";
        assert_eq!(
            super::parse_mapping_of(maps, 0x7f10),
            Some((0x7f00, 0x7f80))
        );
        assert_eq!(
            super::parse_mapping_of(maps, 0x7ffd),
            Some((0x7ffc, 0x7ffe))
        );
        assert_eq!(super::parse_mapping_of(maps, 0x7f80), None);
        let here = 0u64;
        let sp = std::ptr::addr_of!(here) as u64;
        let range = super::mapping_of(sp).expect("the test's own stack");
        assert!(range.contains(sp));
    }
}
