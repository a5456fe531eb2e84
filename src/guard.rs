//! Starting and stopping pollwatch: the [`Guard`].

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
#[cfg(pollwatch_supported)]
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::report::Report;
#[cfg(pollwatch_supported)]
use crate::{
    registry,
    report::stage::{Stage, StageConfig},
    sampler, sys,
    watchdog::{Settings, Stop, Watchdog},
};

/// Only one guard runs at a time: the sampler and the registry are per
/// process. Holds the pid of the process that started it (0: none), so a
/// child forked while it runs can tell that the guard is its parent's.
static RUNNING: AtomicU32 = AtomicU32::new(0);

/// Samples in flight between the watchdog and the report stage; beyond this
/// the watchdog drops samples (and counts them) rather than grow memory.
#[cfg(pollwatch_supported)]
const CHANNEL_CAPACITY: usize = 1024;

/// pollwatch's threads, by name (as `ps -L` and errors show them).
const WATCHDOG_THREAD: &str = "pollwatch-watchdog";
const REPORT_THREAD: &str = "pollwatch-report";

/// A running pollwatch. Keep it alive for as long as you want blocking found.
///
/// [`finish`](Guard::finish) stops the watchdog, writes the artifacts and
/// returns the [`Report`]. Dropping the guard does the same and prints any
/// error to stderr, so the artifacts are written even if you never call
/// `finish`.
#[derive(Debug)]
#[must_use = "pollwatch stops when the guard is dropped"]
pub struct Guard {
    inner: Option<Running>,
}

#[derive(Debug)]
struct Running {
    /// The process that started pollwatch: a child forked from it (without
    /// `exec`) inherits this guard but none of its threads.
    pid: u32,
    #[cfg(pollwatch_supported)]
    stop: Arc<Stop>,
    watchdog: JoinHandle<()>,
    stage: JoinHandle<(Report, Vec<Error>)>,
}

impl Guard {
    fn disabled() -> Guard {
        Guard { inner: None }
    }

    /// Whether this guard is actually watching (false when disabled by
    /// `POLLWATCH=0` or on an unsupported platform).
    pub fn is_active(&self) -> bool {
        self.inner.is_some()
    }

    /// Stops the watchdog, writes `flamegraph.svg`, `stacks.folded` and
    /// `summary.txt` (`episodes.jsonl` is already written), prints a one-line
    /// pointer to stderr and returns the report.
    pub fn finish(mut self) -> Result<Report> {
        self.stop()
    }

    fn stop(&mut self) -> Result<Report> {
        let Some(run) = self.inner.take() else {
            return Ok(Report::default());
        };
        if run.pid != std::process::id() {
            // The threads exist only in the parent: std's join would panic
            // here (glibc forgets them in the child). The parent's guard
            // writes the report.
            std::mem::forget(run);
            return Err(Error::Forked);
        }
        #[cfg(pollwatch_supported)]
        run.stop.request();
        let wd = run.watchdog.join();
        let stage = run.stage.join();
        RUNNING.store(0, Ordering::Release);
        if wd.is_err() {
            return Err(Error::ThreadPanicked {
                thread: WATCHDOG_THREAD,
            });
        }
        let (report, mut errors) = stage.map_err(|_| Error::ThreadPanicked {
            thread: REPORT_THREAD,
        })?;
        match errors.is_empty() {
            true => Ok(report),
            false => Err(errors.remove(0)),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        match self.stop() {
            // Every child of a pre-forking server would say so at exit.
            Ok(_) | Err(Error::Forked) => {}
            Err(e) => eprintln!("{e}"),
        }
    }
}

impl Config {
    /// Starts the watchdog and returns the guard that writes the report.
    ///
    /// Returns once the watchdog has taken its first look at the threads
    /// (microseconds on a quiet machine; it waits at most a second on one
    /// short of CPU), so that every poll begun after it is seen from its
    /// start.
    ///
    /// See [`Guard`](crate::Guard). Fails with a clear [`Error`] on a value
    /// out of range (see [Bounds](Config#bounds)), an output directory that cannot be created, or a signal that
    /// already belongs to someone else.
    pub fn start(self) -> Result<Guard> {
        start_resolved(self.with_env_overrides()?)
    }
}

/// [`Config::start`] with the environment's overrides already applied (the
/// `#[pollwatch::test]` runner places each test's artifacts under the
/// overridden directory itself).
pub(crate) fn start_resolved(cfg: Config) -> Result<Guard> {
    // Checked before the kill switch, so that a bad value is an error whether
    // or not pollwatch is on: a configuration accepted in one run is accepted
    // in all.
    let signal = cfg.validate()?;
    if !cfg.enabled {
        #[cfg(pollwatch_supported)]
        registry::set_disabled(true);
        return Ok(Guard::disabled());
    }
    #[cfg(not(pollwatch_supported))]
    {
        static SAID: AtomicBool = AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            eprintln!(
                "pollwatch: not supported on this platform (Linux on x86_64 or aarch64 only); \
                 running without it"
            );
        }
        let _ = signal;
        Ok(Guard::disabled())
    }
    #[cfg(pollwatch_supported)]
    start_checked(&cfg, signal)
}

#[cfg(pollwatch_supported)]
fn start_checked(cfg: &Config, signal: i32) -> Result<Guard> {
    let pid = std::process::id();
    match RUNNING.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(owner) if owner == pid => return Err(Error::AlreadyRunning),
        Err(_) => return Err(Error::Forked),
    }
    match start_running(cfg, signal, pid) {
        Ok(run) => Ok(Guard { inner: Some(run) }),
        Err(e) => {
            RUNNING.store(0, Ordering::Release);
            Err(e)
        }
    }
}

#[cfg(pollwatch_supported)]
fn start_running(cfg: &Config, signal: i32, pid: u32) -> Result<Running> {
    registry::set_disabled(false);
    sys::signal::install(signal).map_err(|e| match e {
        sys::signal::InstallError::InUse => Error::SignalInUse {
            signal: cfg.signal.clone(),
        },
        sys::signal::InstallError::Os(source) => Error::Signal {
            signal: cfg.signal.clone(),
            source,
        },
    })?;
    // Absolute, so that the path printed and returned in the report is
    // where the files are, whatever the current directory was.
    let base = std::path::absolute(&cfg.output_dir).map_err(|source| Error::OutputDir {
        path: cfg.output_dir.clone(),
        source,
    })?;
    let writer = crate::report::files_writer(&base)?;
    if cfg.live {
        eprintln!(
            "pollwatch: watching polls over {:?}; artifacts go to {}",
            cfg.threshold,
            writer.dir().display()
        );
    }
    self_test(signal, cfg.unwind);

    let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
    sampler::prepare(match cfg.unwind {
        crate::config::Unwind::FramePointers => sampler::FP_COPY_WORDS * 8,
        _ => cfg.stack_copy,
    });
    let stage_cfg = StageConfig {
        threshold: cfg.threshold,
        live: cfg.live,
        unwind: cfg.unwind,
    };
    let stage = std::thread::Builder::new()
        .name(REPORT_THREAD.into())
        .spawn(move || {
            let _own = crate::watchdog::discovery::own_thread();
            Stage::new(stage_cfg, Some(writer)).run(rx)
        })
        .map_err(|source| Error::ThreadSpawn {
            thread: REPORT_THREAD,
            source,
        })?;
    let stop = Arc::new(Stop::default());
    let settings = Settings {
        threshold: cfg.threshold,
        interval: cfg.interval,
        signal,
        stack_memory: cfg.stack_memory,
        started: std::time::Instant::now(),
    };
    let wd_stop = stop.clone();
    let (ready_tx, ready) = std::sync::mpsc::sync_channel(1);
    let watchdog = std::thread::Builder::new()
        .name(WATCHDOG_THREAD.into())
        .spawn(move || {
            let _own = crate::watchdog::discovery::own_thread();
            Watchdog::new(settings, tx, wd_stop).run(ready_tx)
        });
    let watchdog = match watchdog {
        Ok(w) => w,
        Err(source) => {
            // The report thread ends when its channel closes (tx was moved into
            // the failed closure and dropped).
            let _ = stage.join();
            return Err(Error::ThreadSpawn {
                thread: WATCHDOG_THREAD,
                source,
            });
        }
    };
    // Returns once the watchdog has taken its first look, so that a poll
    // the program starts after `start()` is seen from its beginning (on a
    // loaded machine that first look came 36 ms, and more, after the
    // spawn). Bounded: a watchdog kept from a CPU longer than this starts
    // looking late, as before, and never holds the host up.
    let _ = ready.recv_timeout(std::time::Duration::from_secs(1));
    Ok(Running {
        pid,
        stop,
        watchdog,
        stage,
    })
}

#[cfg(pollwatch_supported)]
/// Says once, in one line, what this build lacks for good stacks (nothing
/// when it lacks nothing): see `crate::selftest`.
fn self_test(signal: i32, mode: crate::config::Unwind) {
    static SAID: AtomicBool = AtomicBool::new(false);
    let facts = crate::selftest::Facts {
        mode,
        debug_info: crate::selftest::executable_has_debug_info(),
        unwind_tables: crate::selftest::executable_has_unwind_tables(),
        fp_frames: match mode {
            crate::config::Unwind::FramePointers => fp_probe_1(signal),
            _ => None,
        },
    };
    if let Some(line) = crate::selftest::diagnosis(&facts) {
        if !SAID.swap(true, Ordering::Relaxed) {
            eprintln!("pollwatch: {line}");
        }
    }
}

#[cfg(pollwatch_supported)]
#[inline(never)]
fn fp_probe_1(signal: i32) -> Option<usize> {
    std::hint::black_box(fp_probe_2(signal))
}

#[cfg(pollwatch_supported)]
#[inline(never)]
fn fp_probe_2(signal: i32) -> Option<usize> {
    std::hint::black_box(fp_probe_3(signal))
}

#[cfg(pollwatch_supported)]
#[inline(never)]
fn fp_probe_3(signal: i32) -> Option<usize> {
    let sample = sampler::capture_self(signal).ok()?;
    let probes = [
        fp_probe_1 as *const () as u64,
        fp_probe_2 as *const () as u64,
    ];
    // Count return addresses that land shortly after the start of our probe
    // functions (each is tiny), plus the one into our caller.
    let inside = |ra: u64| probes.iter().any(|&p| ra > p && ra - p < 512);
    let found = sample
        .frames
        .iter()
        .take(8)
        .filter(|&&ra| inside(ra))
        .count();
    Some(found + usize::from(sample.frames.len() > 2))
}

#[cfg(all(test, pollwatch_supported))]
mod tests {
    use super::*;
    use crate::config::Unwind;
    use crate::symbolize::Symbolizer;

    /// The signal path on this architecture, end to end: the handler reads
    /// pc/sp/fp (and lr on aarch64) from its `ucontext` and walks the frame
    /// records. A signal sent to the calling thread is handled before
    /// `tgkill` returns, so nothing here depends on timing: it holds on a
    /// loaded machine and under emulation (CI runs it under qemu-aarch64).
    #[test]
    fn the_self_test_walks_the_frame_records_through_its_three_probes() {
        sys::signal::install(libc::SIGURG).unwrap();
        // 3 or more: what the self-test takes for an unbroken chain; fewer
        // in a build without frame pointers, where `fp` mode warns.
        let seen = fp_probe_1(libc::SIGURG);
        match cfg!(pollwatch_test_frame_pointers) {
            true => assert!(seen >= Some(3), "{seen:?}"),
            false => assert!(seen.is_some_and(|n| n < 3), "{seen:?}"),
        }
    }

    #[inline(never)]
    fn known_outer(mode: Unwind) -> Vec<String> {
        std::hint::black_box(known_inner(mode))
    }

    #[inline(never)]
    fn known_inner(mode: Unwind) -> Vec<String> {
        let sample = sampler::capture_self(libc::SIGURG).expect("a sample");
        let mut sym = Symbolizer::with_mode(mode);
        let raw = sym.unwind(&sample);
        let names = sym.symbolize(&raw).into_iter().map(|f| f.function);
        std::hint::black_box(names.collect())
    }

    /// The captured stack resolves to the functions it was taken in, with
    /// frame records alone and with the unwind tables.
    #[test]
    fn a_captured_stack_names_the_functions_it_was_taken_in() {
        sys::signal::install(libc::SIGURG).unwrap();
        // Frame records alone name them only where the build keeps them.
        let modes: &[Unwind] = match cfg!(pollwatch_test_frame_pointers) {
            true => &[Unwind::FramePointers, Unwind::Auto],
            false => &[Unwind::Auto],
        };
        for &mode in modes {
            let names = known_outer(mode);
            let at = |f: &str| names.iter().position(|n| n.ends_with(f));
            let (inner, outer) = (at("known_inner"), at("known_outer"));
            assert!(
                inner.is_some()
                    && inner < outer
                    && at("names_the_functions_it_was_taken_in") > outer,
                "{mode:?}: {names:#?}"
            );
        }
    }
}
