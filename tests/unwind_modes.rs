//! Each unwind mode, end to end: the stack of a blocked task names the user's
//! function, and the artifacts say which mode produced it. Runs in builds
//! with and without frame pointers (`.ci/run` does both).

mod support;

use std::time::{Duration, Instant};

use pollwatch::Unwind;
use support::*;

/// Blocks the calling task's worker in a known user function.
fn blocked_with(
    test: &str,
    cfg: pollwatch::Config,
    block: fn(Duration) -> Duration,
) -> pollwatch::Report {
    let guard = cfg.output_dir(out_dir(test)).start().unwrap();
    let rt = tokio_runtime(2);
    let task = pollwatch::watch(async move {
        tokio::task::yield_now().await;
        block(THRESHOLD * 8)
    });
    rt.block_on(async { tokio::spawn(task).await.unwrap() });
    drop(rt);
    guard.finish().unwrap()
}

fn base() -> pollwatch::Config {
    pollwatch::Config::default()
        .threshold(THRESHOLD)
        .sample_interval(INTERVAL)
}

fn episodes_json(report: &pollwatch::Report) -> Vec<serde_json::Value> {
    artifact(report, "episodes.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_mode_names_the_user_function_and_says_which_mode() {
    let _s = serial();
    for mode in [Unwind::Auto, Unwind::Dwarf, Unwind::FramePointers] {
        let report = blocked_with(&format!("mode-{mode}"), base().unwind(mode), blocking_sleep);
        // Frame records alone reach the user's function only in a build
        // that keeps them (`fp` mode's documented requirement).
        if mode != Unwind::FramePointers || cfg!(pollwatch_test_frame_pointers) {
            let ep = episode_in(&report, "blocking_sleep");
            assert!(ep.blocked_in("std::thread"), "{mode}: {report}");
        }
        let summary = artifact(&report, "summary.txt");
        assert!(
            summary
                .lines()
                .next()
                .unwrap()
                .ends_with(&format!("(unwind: {mode})")),
            "{summary}"
        );
        for ep in episodes_json(&report) {
            assert_eq!(ep["unwind"], mode.name(), "{ep}");
        }
    }
}

/// Recurses `depth` levels, each with a 256-byte frame, then spins for
/// `cpu` of CPU time.
#[inline(never)]
fn deep(depth: u32, cpu: Duration) -> u64 {
    let pad = [depth as u8; 256];
    std::hint::black_box(&pad);
    let r = if depth == 0 {
        cpu_spin(cpu).as_nanos() as u64
    } else {
        deep(depth - 1, cpu)
    };
    std::hint::black_box(&pad);
    r
}

#[inline(never)]
fn deep_spin(d: Duration) -> Duration {
    let t = Instant::now();
    std::hint::black_box(deep(64, d));
    t.elapsed()
}

/// A stack deeper than the copy is flagged `truncated`; its innermost frames
/// are still named.
#[test]
fn a_stack_deeper_than_the_copy_is_flagged_truncated() {
    let _s = serial();
    let report = blocked_with("truncated", base().stack_copy_bytes(4096), deep_spin);
    let ep = episode_in(&report, "deep");
    assert!(ep.samples() > 0, "{report}");
    let json = episodes_json(&report);
    let stacks: Vec<&serde_json::Value> = json
        .iter()
        .flat_map(|e| e["stacks"].as_array().unwrap())
        .collect();
    assert!(
        stacks.iter().any(|s| s["truncated"] == true),
        "no stack flagged truncated: {stacks:?}"
    );
}

/// Allocates and frees in a tight loop until this thread has used `cpu`:
/// most samples land inside glibc's malloc/free, which have no frame
/// pointers and are reached through `__rust_alloc` shims.
#[inline(never)]
fn allocating_loop(cpu: Duration) -> Duration {
    let t = Instant::now();
    let start = thread_cpu_time();
    while thread_cpu_time() - start < cpu {
        for i in 0..2000usize {
            let v: Vec<u8> = Vec::with_capacity(16 + (i % 64) * 24);
            std::hint::black_box(&v);
            let b = Box::new([i as u64; 4]);
            std::hint::black_box(&b);
        }
    }
    t.elapsed()
}

/// The bar: the user's function is in at least 95% of the blocked
/// time's stacks, by weight, in the default mode, in any build (measured:
/// 100% in both; `fp` mode keeps it in 3% without frame pointers).
#[test]
fn an_allocating_loop_keeps_the_user_function_in_its_stacks() {
    let _s = serial();
    let report = blocked_with("alloc", base(), |_| allocating_loop(THRESHOLD * 10));
    let ep = episode_in(&report, "allocating_loop");
    let total: Duration = ep.stacks().iter().map(|s| s.weight).sum();
    let with: Duration = ep
        .stacks()
        .iter()
        .filter(|s| {
            s.frames
                .iter()
                .any(|f| f.function.contains("allocating_loop"))
        })
        .map(|s| s.weight)
        .sum();
    assert!(
        with.as_secs_f64() >= 0.95 * total.as_secs_f64(),
        "allocating_loop in {with:?} of {total:?}:\n{report}"
    );
}

const CHILD: &str = "POLLWATCH_TEST_SELFTEST_CHILD";

/// Runs in the child process only: starts and stops pollwatch in the mode
/// the parent names.
#[test]
fn child_process_for_the_self_test() {
    let Some(mode) = std::env::var_os(CHILD) else {
        return;
    };
    let mode = match mode.to_str() {
        Some("fp") => Unwind::FramePointers,
        _ => Unwind::Auto,
    };
    let guard = config("selftest_child").unwind(mode).start().unwrap();
    guard.finish().unwrap();
}

/// The start-up self-test's stderr in a child running `mode`.
fn self_test_lines(mode: &str) -> Option<Vec<String>> {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_for_the_self_test",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, mode)
        .output();
    let out = match out {
        // Under qemu-user (scripts/aarch64.sh) the host cannot exec the
        // guest binary (ENOEXEC, or exit 127 with no output): nothing to
        // check there.
        Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => return None,
        Ok(out) if out.status.code() == Some(127) && out.stdout.is_empty() => return None,
        Ok(out) => out,
        Err(e) => panic!("cannot start the child: {e}"),
    };
    assert!(out.status.success(), "{out:?}");
    Some(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.starts_with("pollwatch: warning"))
            .map(str::to_owned)
            .collect(),
    )
}

/// This binary has debug info and unwind tables: in `auto` mode the self-test
/// says nothing, with frame pointers or without. In `fp` mode it warns
/// exactly when the build has no frame pointers, naming the flag.
#[test]
fn the_self_test_names_only_what_is_missing() {
    let _s = serial();
    let Some(auto) = self_test_lines("auto") else {
        eprintln!("cannot run a child process here (emulation); nothing to check");
        return;
    };
    assert_eq!(auto, Vec::<String>::new());
    let fp = self_test_lines("fp").unwrap_or_default();
    if cfg!(pollwatch_test_frame_pointers) {
        assert_eq!(fp, Vec::<String>::new());
    } else {
        assert_eq!(fp.len(), 1, "{fp:?}");
        assert!(fp[0].contains("force-frame-pointers=yes"), "{fp:?}");
    }
}

#[test]
fn a_bad_copy_size_is_refused_at_start() {
    let _s = serial();
    for bytes in [0, 512, 2 << 20] {
        let err = base().stack_copy_bytes(bytes).start().unwrap_err();
        assert!(
            matches!(err, pollwatch::Error::SizeOutOfRange { value, .. } if value == bytes),
            "{err}"
        );
        assert!(err.to_string().contains("stack_copy_bytes"), "{err}");
    }
}
