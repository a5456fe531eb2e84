//! The one error type of pollwatch.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong when starting pollwatch or writing its report.
///
/// Each variant carries what you need to fix it: the variable and its bad
/// value, the path that could not be written, the signal someone else owns.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A `POLLWATCH_*` environment variable holds a value pollwatch cannot use.
    Env {
        /// The variable, e.g. `POLLWATCH_THRESHOLD_MS`.
        var: &'static str,
        /// Its value as found.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// A configuration value pollwatch cannot use, in words. This version
    /// reports each case as a structured variant instead
    /// ([`OutOfRange`](Error::OutOfRange), [`UnknownSignal`](Error::UnknownSignal));
    /// kept so that code matching it still compiles.
    Config(String),
    /// The sampling signal's name (from [`Config::signal`](crate::Config::signal))
    /// is not one pollwatch accepts: `SIGURG`, `SIGPROF`, `SIGVTALRM`,
    /// `SIGUSR1`, `SIGUSR2`, `SIGWINCH`, `SIGRTMIN+n` or `SIGRTMAX-n`
    /// (`POLLWATCH_SIGNAL` is checked earlier, as an [`Env`](Error::Env) error).
    UnknownSignal {
        /// The name as given.
        name: String,
    },
    /// A duration setting is outside its documented range (see
    /// [`Config`](crate::Config#bounds)). The same check applies to the
    /// builder and to the `POLLWATCH_*` variables.
    OutOfRange {
        /// The builder method, e.g. `threshold` or `sample_interval`.
        setting: &'static str,
        /// The matching environment variable, e.g. `POLLWATCH_THRESHOLD_MS`.
        env: &'static str,
        /// The refused value.
        value: Duration,
        /// The smallest allowed value.
        min: Duration,
        /// The largest allowed value (for `sample_interval`: the threshold).
        max: Duration,
    },
    /// The sampling signal already has a handler that is not pollwatch's.
    SignalInUse {
        /// The signal's name, e.g. `SIGPROF`.
        signal: String,
    },
    /// The sampling signal could not be installed.
    Signal {
        /// The signal's name.
        signal: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The output directory could not be created or written.
    OutputDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An artifact could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An artifact directory could not be read back
    /// ([`Artifacts::read`](crate::Artifacts::read)): missing, unreadable, or
    /// without an `episodes.jsonl` in it or in its subdirectories.
    Artifacts {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another [`Guard`](crate::Guard) is still running in this process.
    AlreadyRunning,
    /// A size setting is outside its documented range (see
    /// [`Config`](crate::Config#bounds)), from the builder or the environment.
    SizeOutOfRange {
        /// The builder method, e.g. `stack_copy_bytes`.
        setting: &'static str,
        /// The matching environment variable, e.g. `POLLWATCH_STACK_COPY_KIB`.
        env: &'static str,
        /// The refused value, in bytes.
        value: usize,
        /// The smallest allowed value, in bytes.
        min: usize,
        /// The largest allowed value, in bytes.
        max: usize,
    },
    /// A pollwatch thread could not be started or stopped cleanly, in words.
    /// This version reports [`ThreadSpawn`](Error::ThreadSpawn) and
    /// [`ThreadPanicked`](Error::ThreadPanicked) instead; kept so that code
    /// matching it still compiles.
    Thread(String),
    /// One of pollwatch's threads could not be started (nothing was left
    /// running: a later start may succeed).
    ThreadSpawn {
        /// The thread, e.g. `pollwatch-watchdog`.
        thread: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// One of pollwatch's threads panicked; what it had written stays on disk.
    ThreadPanicked {
        /// The thread, e.g. `pollwatch-report`.
        thread: &'static str,
    },
    /// pollwatch was started before `fork()`, in the parent of this process.
    /// Its threads did not survive the fork: in the child the inherited guard
    /// does nothing (the parent's writes the report), and no new one starts.
    Forked,
    /// `pollwatch::tokio::attach()` was called where no tokio
    /// runtime is running (outside `#[tokio::main]` or `Runtime::block_on`).
    NoRuntime,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Env { var, value, expected } => {
                write!(f, "pollwatch: {var}={value:?} is not valid: expected {expected}")
            }
            Error::Config(msg) => write!(f, "pollwatch: invalid configuration: {msg}"),
            Error::OutOfRange {
                setting,
                env,
                value,
                min,
                max,
            } => {
                write!(
                    f,
                    "pollwatch: {setting} (or {env}) is {value:?}, outside the allowed {min:?}..={max:?}"
                )?;
                match crate::config::max_is(setting) {
                    "" => Ok(()),
                    what => write!(f, " (at most {what})"),
                }
            }
            Error::SignalInUse { signal } => write!(
                f,
                "pollwatch: {signal} already has a handler that is not pollwatch's; \
                 pick another with POLLWATCH_SIGNAL (e.g. SIGPROF or SIGRTMIN+3)"
            ),
            Error::Signal { signal, source } => {
                write!(f, "pollwatch: cannot install the {signal} handler: {source}")
            }
            Error::OutputDir { path, source } => {
                write!(f, "pollwatch: cannot use output directory {}: {source}", path.display())
            }
            Error::Artifacts { path, reason } => {
                write!(f, "pollwatch: {}: {reason}", path.display())
            }
            Error::Write { path, source } => {
                write!(f, "pollwatch: cannot write {}: {source}", path.display())
            }
            Error::AlreadyRunning => write!(
                f,
                "pollwatch: already running in this process; finish the first Guard before starting another"
            ),
            Error::SizeOutOfRange {
                setting,
                env,
                value,
                min,
                max,
            } => write!(
                f,
                "pollwatch: {setting} (or {env}) is {value} bytes, \
                 outside the allowed {min}..={max} bytes"
            ),
            Error::UnknownSignal { name } => write!(
                f,
                "pollwatch: unknown sampling signal {name:?}: use SIGURG, SIGPROF, SIGVTALRM, \
                 SIGUSR1, SIGUSR2, SIGWINCH or SIGRTMIN+n"
            ),
            Error::Thread(msg) => write!(f, "pollwatch: {msg}"),
            Error::ThreadSpawn { thread, source } => {
                write!(f, "pollwatch: cannot start the {thread} thread: {source}")
            }
            Error::ThreadPanicked { thread } => write!(f, "pollwatch: the {thread} thread panicked"),
            Error::Forked => write!(
                f,
                "pollwatch: started before fork() in the parent process; a forked child \
                 can neither use that guard nor start another"
            ),
            Error::NoRuntime => write!(
                f,
                "pollwatch: tokio::attach() was called outside a tokio runtime; call it as the first \
                 statement of your async main (or instrument the runtime's builder)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Signal { source, .. }
            | Error::ThreadSpawn { source, .. }
            | Error::OutputDir { source, .. }
            | Error::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `Result` with pollwatch's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
