//! `POLLWATCH=0` means no thread, no signal handler, no files.

mod support;

use std::time::Duration;

use support::*;

fn pollwatch_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_owned())
        .filter(|n| n.starts_with("pollwatch-"))
        .collect()
}

/// Whether this process has a handler installed for `sig` (SigCgt in /proc).
fn caught(sig: i32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (sig - 1)) != 0
}

#[test]
fn pollwatch_0_means_nothing_at_all() {
    let _s = serial();
    // This binary has this one test, so changing the environment is safe here.
    std::env::set_var("POLLWATCH", "0");
    let dir = out_dir("disabled");
    std::env::set_var("POLLWATCH_DIR", &dir);
    let guard = pollwatch::init().unwrap();
    assert!(!guard.is_active());
    let rt = tokio_runtime(2);
    rt.block_on(async {
        tokio::spawn(pollwatch::watch(async {
            blocking_sleep(Duration::from_millis(100))
        }))
        .await
        .unwrap()
    });
    assert!(pollwatch_threads().is_empty(), "{:?}", pollwatch_threads());
    assert!(!caught(libc::SIGURG), "a SIGURG handler was installed");
    drop(rt);
    let report = guard.finish().unwrap();
    assert!(report.episodes().is_empty());
    assert!(report.output_dir().is_none());
    assert!(!dir.exists(), "{} was created", dir.display());

    // The kill switch also wins over an explicit configuration.
    let guard = config("disabled_explicit").start().unwrap();
    assert!(!guard.is_active());
    assert!(pollwatch_threads().is_empty());
}
