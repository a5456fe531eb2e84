//! The test gate on real runs: `assert_no_blocking` and `check` fail a run
//! that blocked, naming the function, and pass one that did not.

mod support;

use std::time::Duration;

use pollwatch::{Budget, Exceeded};
use support::*;

#[test]
fn a_blocking_run_fails_the_gate_with_the_function_and_its_line() {
    let _s = serial();
    let (report, _) = caught("gate-blocking", || {
        blocking_sleep(Duration::from_millis(120))
    });
    let err = report.check(&Budget::new()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("blocking_sleep"), "{text}");
    assert!(text.contains("support/mod.rs:"), "file:line named: {text}");
    assert!(text.contains("1 blocking episode > 0 allowed"), "{text}");

    // A per-episode limit below what blocked fails; one above it passes.
    let ep = episode_in(&report, "blocking_sleep");
    let below = THRESHOLD;
    let err = report.check(&Budget::new().max_episode(below)).unwrap_err();
    assert!(
        matches!(err.exceeded(), [Exceeded::Episode { count: 1, .. }]),
        "{err}"
    );
    let above = ep.duration() + Duration::from_millis(1);
    assert!(report.check(&Budget::new().max_episode(above)).is_ok());
    // Limits are inclusive: exactly the run's total passes.
    assert!(report
        .check(&Budget::new().max_total_blocked(report.total_blocked()))
        .is_ok());
    eprintln!("{text}");

    let panic = std::panic::catch_unwind(|| report.assert_no_blocking()).unwrap_err();
    let msg = panic.downcast_ref::<String>().unwrap();
    assert!(msg.contains("blocking_sleep"), "{msg}");
}

#[test]
fn a_run_that_only_awaits_passes_the_gate() {
    let _s = serial();
    let guard = config("gate-clean").start().unwrap();
    let rt = tokio_runtime(2);
    rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                tokio::spawn(pollwatch::watch(async move {
                    for _ in 0..5 {
                        tokio::time::sleep(Duration::from_millis(10 + i)).await;
                    }
                }))
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    drop(rt);
    let report = guard.finish().unwrap();
    report.assert_no_blocking();
    assert!(report.check(&Budget::new()).is_ok());
}
