//! The live report: while a worker is still stuck, pollwatch prints a line
//! naming the thread, the spawn site and the top user frame; it re-reports at
//! 2× and 4× the threshold, and once more at the end. Checked on a child
//! process's real stderr, with arrival times.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const CHILD: &str = "POLLWATCH_TEST_LIVE_CHILD";
const STUCK: Duration = Duration::from_millis(1500);

/// Runs in the child process only: blocks one worker for `STUCK`.
#[test]
fn child_process_for_live_lines() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let guard = config("live_child").start().unwrap();
    let rt = tokio_runtime(2);
    rt.block_on(async {
        tokio::spawn(pollwatch::watch(async {
            tokio::task::yield_now().await;
            blocking_sleep(STUCK)
        }))
        .await
        .unwrap()
    });
    drop(rt);
    guard.finish().unwrap();
}

#[test]
fn the_episode_is_reported_while_the_worker_is_still_stuck() {
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_for_live_lines",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("pollwatch:") {
            lines.push((started.elapsed(), line));
        }
    }
    assert!(child.wait().unwrap().success());
    let find = |needle: &str| {
        lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in {lines:#?}"))
    };
    let (first_at, first) = find("in one poll");
    let (end_at, end) = find("ended after");
    assert!(
        first.contains("blocking_sleep"),
        "names the top user frame: {first}"
    );
    assert!(first.contains("live.rs"), "names the spawn site: {first}");
    assert!(first.contains("tokio"), "names the thread: {first}");
    assert!(
        first.contains("[off-cpu: clock_nanosleep]") || first.contains("[off-cpu: nanosleep]"),
        "{first}"
    );
    assert!(end.contains("blocking_sleep"), "{end}");
    // The first line came while the worker was stuck: at least most of the
    // stuck time before the end line (generous margin for a loaded machine).
    assert!(
        *end_at > *first_at + STUCK / 2,
        "first line at {first_at:?}, end line at {end_at:?}: {lines:#?}"
    );
    let progress = lines
        .iter()
        .filter(|(_, l)| l.contains("still blocked"))
        .count();
    assert_eq!(
        progress, 2,
        "re-reported at 2× and 4× the threshold only: {lines:#?}"
    );
    assert!(
        lines.last().unwrap().1.contains("1 blocking episode"),
        "{lines:#?}"
    );
}
