//! Finding the threads of a runtime nobody hooked (`pollwatch::tokio::attach`
//! under `#[tokio::main]`): every thread of the process that pollwatch does
//! not know yet is registered to be watched by sampling. Which of them run
//! task polls is learned from their stacks (a thread that never shows an
//! executor's frames costs a few backed-off reads and is never reported).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::registry;

/// Set by `attach` on a multi-thread runtime (or `watch_all_threads`),
/// until the watchdog stops.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Thread names of pollwatch's own threads start with this.
const OWN_PREFIX: &str = "pollwatch";

/// pollwatch's own threads running now, by tid (0: free). A new thread
/// shows its parent's name until it sets its own, and a scan in between
/// read the report thread as `each_kind_of_bl`, the test that started it:
/// names alone cannot tell ours apart.
static OWN: [AtomicI32; 4] = [const { AtomicI32::new(0) }; 4];

/// Marks the calling thread as pollwatch's own until the returned value is
/// dropped: discovery never watches it.
pub(crate) fn own_thread() -> OwnThread {
    let tid = crate::sys::thread::gettid();
    let at = OWN.iter().position(|o| {
        o.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    });
    OwnThread { at }
}

/// A mark from [`own_thread`], cleared when its thread ends.
#[derive(Debug)]
pub(crate) struct OwnThread {
    at: Option<usize>,
}

impl Drop for OwnThread {
    fn drop(&mut self) {
        if let Some(i) = self.at {
            OWN[i].store(0, Ordering::Release);
        }
    }
}

/// Whether `tid` is one of pollwatch's own threads.
pub(crate) fn is_own(tid: i32) -> bool {
    tid != 0 && OWN.iter().any(|o| o.load(Ordering::Acquire) == tid)
}

/// The kernel's name of thread `tid` now, if it still exists.
pub(crate) fn name_of(tid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// Whether a thread found by a scan (`tid`, named `name` now) is to be
/// watched: not one of pollwatch's own.
pub(crate) fn watched(tid: i32, name: &str) -> bool {
    wanted(name) && !is_own(tid)
}

/// Turns discovery on until the watchdog stops, and registers the threads
/// that exist now.
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Release);
    scan();
}

/// Turns discovery off: the watchdog stopped, and a later guard watches
/// only what is attached (or instrumented) again.
pub(crate) fn disable() {
    ENABLED.store(false, Ordering::Release);
    registry::TABLE.release_all_remote();
}

/// Whether `attach` asked for discovery.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Registers each thread of the process that has no slot yet.
pub(crate) fn scan() {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    let mut known = Vec::new();
    registry::TABLE.snapshot(&mut known);
    let known: Vec<i32> = known
        .iter()
        .map(|s| s.tid.load(Ordering::Acquire))
        .filter(|&t| t != 0)
        .collect();
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if known.contains(&tid) || is_own(tid) {
            continue;
        }
        let name = name_of(tid).unwrap_or_else(|| format!("thread-{tid}"));
        if !watched(tid, &name) {
            continue;
        }
        let Some(slot) = register(tid, name) else {
            continue;
        };
        // A thread found idle (a worker parked at `attach`) shows its stack
        // pointer: its stack is known now, without a signal round trip that
        // a busy thread on a loaded machine answers tens of ms late.
        let blocked_sp = std::fs::read(entry.path().join("syscall"))
            .ok()
            .and_then(|line| match crate::sys::proc::parse_syscall(&line) {
                Some(crate::sys::proc::Syscall::Blocked { sp, .. }) => Some(sp),
                _ => None,
            });
        if let Some(range) = blocked_sp.and_then(crate::sys::proc::mapping_of) {
            slot.set_stack(range);
        }
    }
}

/// Registers thread `tid` of this process to be watched by sampling. Its
/// slot is released by `release_remote` once the thread is gone.
fn register(tid: i32, name: String) -> Option<&'static registry::Slot> {
    if registry::is_disabled() {
        return None;
    }
    let info = registry::ThreadInfo {
        name,
        stack: None,
        runtime: None,
    };
    registry::TABLE.acquire(tid, info, true)
}

/// Whether a thread with this name may run polls: anything but pollwatch's.
fn wanted(name: &str) -> bool {
    !name.starts_with(OWN_PREFIX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pollwatch_threads_are_not_watched() {
        assert!(!super::wanted("pollwatch-watchdog"));
        assert!(!super::wanted("pollwatch-report"));
        assert!(super::wanted("tokio-runtime-w"));
        assert!(super::wanted("main"));
    }

    #[test]
    fn own_threads_are_known_by_tid_until_they_end() {
        let tid = crate::sys::thread::gettid();
        assert!(!super::is_own(tid));
        let mark = super::own_thread();
        assert!(super::is_own(tid));
        assert!(!super::watched(tid, "each_kind_of_bl"));
        drop(mark);
        assert!(!super::is_own(tid));
        assert!(super::watched(tid, "each_kind_of_bl"));
        assert!(!super::is_own(0));
    }
}
