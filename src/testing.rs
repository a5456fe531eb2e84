//! The runtime side of `#[pollwatch::test]`: what the macro's expansion
//! calls. Not a public API (the macro is); names may change.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::Config;

/// The test runtime's flavor, as in `#[tokio::test]`.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    /// One thread: the test's own (tokio's default for tests).
    CurrentThread,
    /// A worker pool.
    MultiThread,
}

/// What the attribute asked for.
#[derive(Clone, Copy, Debug)]
pub struct TestSpec {
    /// `module::path::test_name`, for the artifacts' directory.
    pub name: &'static str,
    /// The runtime's flavor.
    pub flavor: Flavor,
    /// Workers of a multi-thread runtime (tokio's default when `None`).
    pub worker_threads: Option<usize>,
    /// The attribute's threshold; `None` leaves `POLLWATCH_THRESHOLD_MS` or
    /// the default.
    pub threshold_ms: Option<f64>,
}

/// pollwatch watches a whole process with one guard (one sampling signal,
/// one registry of threads), so `#[pollwatch::test]`s in one test binary
/// take turns: each holds this for its run. Other tests keep running in
/// parallel.
static TURN: Mutex<()> = Mutex::new(());

/// Runs `body` (already wrapped in `watch` by the macro) on an instrumented
/// tokio runtime under its own guard, then panics with the call sites if
/// anything blocked.
pub fn run_test<F: Future>(spec: TestSpec, body: F) -> F::Output {
    // A test that failed before (a poisoned lock) says nothing about this one.
    let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let guard = match config(&spec).and_then(crate::guard::start_resolved) {
        Ok(g) => g,
        Err(e) => panic!(
            "#[pollwatch::test] {}: cannot start pollwatch: {e}",
            spec.name
        ),
    };
    let mut builder = match spec.flavor {
        Flavor::CurrentThread => ::tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => ::tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(n) = spec.worker_threads {
        builder.worker_threads(n);
    }
    let rt = crate::tokio::instrument(&mut builder)
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            panic!(
                "#[pollwatch::test] {}: cannot build the runtime: {e}",
                spec.name
            )
        });
    let out = rt.block_on(body);
    // Dropping the runtime ends its workers' last polls before the report.
    drop(rt);
    match guard.finish() {
        Ok(report) => report.assert_no_blocking(),
        Err(e) => panic!("#[pollwatch::test] {}: {e}", spec.name),
    }
    out
}

/// The test's configuration: `POLLWATCH_*` variables, the attribute's
/// threshold over them, and a directory of its own under the output
/// directory (`<dir>/tests/<test>/<exe>-<pid>/`), since every test in a
/// binary shares the pid.
fn config(spec: &TestSpec) -> crate::Result<Config> {
    let mut cfg = Config::from_env()?.with_env_overrides()?;
    if let Some(ms) = spec.threshold_ms {
        let t = Duration::try_from_secs_f64(ms / 1000.0)
            .map_err(|_| crate::Error::Config(format!("threshold_ms = {ms} is not a duration")))?;
        cfg = cfg.threshold(t);
    }
    let dir: PathBuf = cfg
        .output_dir
        .join("tests")
        .join(spec.name.replace("::", "-"));
    cfg.output_dir = dir;
    Ok(cfg)
}
