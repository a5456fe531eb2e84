//! Bad input gets a clear error, never a panic and never lost artifacts:
//! malformed environment values, an unwritable output directory, a signal
//! someone else owns, a second start, a runtime built twice, and a child
//! forked while pollwatch runs.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn malformed_environment_values_are_clear_errors() {
    let _s = serial();
    for (var, value) in [
        ("POLLWATCH_THRESHOLD_MS", "twenty"),
        ("POLLWATCH_INTERVAL_MS", "-1"),
        ("POLLWATCH_SIGNAL", "SIGKILL"),
        ("POLLWATCH", "perhaps"),
    ] {
        std::env::set_var(var, value);
        let err = pollwatch::init().expect_err(var);
        std::env::remove_var(var);
        let msg = err.to_string();
        assert!(msg.contains(var) && msg.contains(value), "{msg}");
        assert!(matches!(err, pollwatch::Error::Env { .. }), "{err:?}");
    }
}

/// `Duration::MAX` once reached the watchdog, which panicked adding it to an
/// `Instant` (and with `panic = "abort"` took the host with it). Now every
/// duration is checked at `start()`, from the builder and from the
/// environment alike, and nothing starts.
#[test]
fn out_of_range_durations_are_refused_at_start() {
    let _s = serial();
    let builders = [
        ("threshold", config("range").threshold(Duration::MAX)),
        ("threshold", config("range").threshold(Duration::ZERO)),
        (
            "sample_interval",
            config("range").sample_interval(Duration::MAX),
        ),
        (
            "sample_interval",
            config("range").sample_interval(Duration::ZERO),
        ),
    ];
    for (name, cfg) in builders {
        let err = cfg.start().expect_err(name);
        assert!(
            matches!(err, pollwatch::Error::OutOfRange { setting, .. } if setting == name),
            "{err:?}"
        );
    }
    for (var, value) in [
        ("POLLWATCH_THRESHOLD_MS", "1e300"),
        ("POLLWATCH_THRESHOLD_MS", "0"),
        ("POLLWATCH_INTERVAL_MS", "3600000"),
    ] {
        std::env::set_var(var, value);
        let err = pollwatch::init().expect_err(var);
        std::env::remove_var(var);
        assert!(
            matches!(err, pollwatch::Error::OutOfRange { env, .. } if env == var),
            "{err:?}"
        );
        assert!(err.to_string().contains(var), "{err}");
    }
    // Nothing was left running: a good start works.
    let guard = config("after_range").start().unwrap();
    assert!(guard.is_active());
    guard.finish().unwrap();
}

/// The edges of the accepted ranges run, not only start: the sample
/// interval equal to the threshold (1 ms, a memory benchmark's settings,
/// panicked the watchdog once a poll was looked at again), and the
/// smallest both, 100 µs.
#[test]
fn the_interval_at_the_threshold_and_the_smallest_durations_work() {
    let _s = serial();
    for (t, i) in [(1_000, 1_000), (100, 100), (100_000, 100_000)] {
        let (t, i) = (Duration::from_micros(t), Duration::from_micros(i));
        let test = format!("edges_{}", t.as_micros());
        let guard = config(&test)
            .threshold(t)
            .sample_interval(i)
            .start()
            .unwrap();
        let rt = tokio_runtime(2);
        // Many polls of two thresholds: some are first looked at late, and
        // looked at again with less own time than a threshold.
        let polls = if t <= Duration::from_millis(1) {
            300
        } else {
            2
        };
        rt.block_on(async move {
            tokio::spawn(pollwatch::watch(async move {
                for _ in 0..polls {
                    tokio::task::yield_now().await;
                    blocking_sleep(t * 2);
                }
                // Polls of 200 µs can all end before a sample is answered
                // where signals are slow (qemu, with no process_vm_readv:
                // 47 stackless episodes at 100 µs). A few polls long
                // enough for any sample still check the stacks are named.
                let long = Duration::from_millis(20);
                for _ in 0..if t * 2 < long { 3 } else { 0 } {
                    tokio::task::yield_now().await;
                    blocking_sleep(long);
                }
            }))
            .await
            .unwrap()
        });
        drop(rt);
        let report = guard
            .finish()
            .unwrap_or_else(|e| panic!("{t:?}/{i:?}: {e}"));
        assert!(
            report.episodes().iter().any(|e| e
                .top_user_frame()
                .is_some_and(|f| f.function.contains("blocking_sleep"))),
            "{t:?}/{i:?}: {report}"
        );
    }
}

#[test]
fn unwritable_output_dir_is_an_error_at_start() {
    let _s = serial();
    let file = out_dir("not_a_dir");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"a file where a directory should be").unwrap();
    for dir in [
        file.clone(),
        std::path::PathBuf::from("/proc/pollwatch-cannot-write-here"),
    ] {
        let err = config("unused")
            .output_dir(&dir)
            .start()
            .expect_err("must fail");
        assert!(matches!(err, pollwatch::Error::OutputDir { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
    }
    // After a failed start, a good one works.
    let guard = config("after_failure").start().unwrap();
    assert!(guard.is_active());
    guard.finish().unwrap();
}

#[test]
fn a_signal_with_a_foreign_handler_is_refused() {
    let _s = serial();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // tokio installs its own handler for SIGUSR2 here.
    let _sig = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2()).unwrap()
    });
    let err = config("foreign_signal")
        .signal("SIGUSR2")
        .start()
        .expect_err("must refuse");
    assert!(
        matches!(err, pollwatch::Error::SignalInUse { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("SIGUSR2"), "{err}");
}

#[test]
fn only_one_guard_at_a_time() {
    let _s = serial();
    let first = config("first").start().unwrap();
    let err = config("second")
        .start()
        .expect_err("second start must fail");
    assert!(matches!(err, pollwatch::Error::AlreadyRunning), "{err:?}");
    first.finish().unwrap();
    config("third").start().unwrap().finish().unwrap();
}

#[test]
fn dropping_the_guard_still_writes_the_artifacts() {
    let _s = serial();
    let dir = out_dir("dropped");
    let guard = config("dropped").output_dir(&dir).start().unwrap();
    std::thread::spawn(|| {
        let _p = pollwatch::enter_poll();
        blocking_sleep(Duration::from_millis(60));
    })
    .join()
    .unwrap();
    drop(guard);
    let run = run_dir(&dir);
    for f in [
        "flamegraph.svg",
        "stacks.folded",
        "episodes.jsonl",
        "summary.txt",
    ] {
        let text = std::fs::read_to_string(run.join(f)).unwrap();
        assert!(text.contains("blocking_sleep"), "{f} lacks the episode");
    }
}

#[test]
fn a_runtime_built_twice_from_one_builder_is_watched_twice() {
    let _s = serial();
    let guard = config("built_twice").start().unwrap();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    pollwatch::tokio::instrument(&mut builder)
        .worker_threads(1)
        .enable_all();
    let a = builder.build().unwrap();
    let b = builder.build().unwrap();
    for rt in [&a, &b] {
        rt.block_on(async {
            tokio::spawn(pollwatch::watch(async {
                blocking_sleep(Duration::from_millis(80))
            }))
            .await
            .unwrap()
        });
    }
    drop((a, b));
    let report = guard.finish().unwrap();
    let eps: Vec<_> = report.blocked_in("blocking_sleep").collect();
    assert_eq!(eps.len(), 2, "{report}");
    assert_ne!(
        eps[0].tid(),
        eps[1].tid(),
        "two runtimes, two worker threads"
    );
}

#[test]
fn a_forked_child_neither_hangs_nor_starts_again() {
    let _s = serial();
    let guard = config("forked").start().unwrap();
    // SAFETY: the child runs only pollwatch's checks, which read the
    // environment and allocate: safe after fork because glibc resets its
    // allocator's locks in the child and serial() keeps other tests (the
    // only other users of the environment lock) waiting; then _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        // The inherited guard must not try to join threads that exist only
        // in the parent (std panics on that), nor may a new one start on the
        // parent's registry. Any panic here is a failure, never an unwind
        // into the copy of the test harness.
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let dropped = matches!(guard.finish(), Err(pollwatch::Error::Forked));
            let again = matches!(
                pollwatch::Config::default().live(false).start(),
                Err(pollwatch::Error::Forked)
            );
            dropped && again
        }));
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let mut status = 0;
        // SAFETY: waits for our own child; status is a valid out-pointer.
        let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if r == child {
            break status;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: kills our own child.
            unsafe { libc::kill(child, libc::SIGKILL) };
            panic!("the forked child hung on the inherited guard");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status:#x}"
    );
    // The parent's guard is unaffected.
    guard.finish().unwrap();
}
