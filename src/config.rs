//! Configuration: defaults, the builder, and `POLLWATCH_*` environment variables.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// How pollwatch runs: threshold, sample interval, output directory, signal.
///
/// `Config::default()` uses the defaults below and ignores the environment;
/// [`Config::from_env`] starts from the defaults and applies `POLLWATCH_*`
/// variables; [`init`](crate::init) is `Config::from_env()?.start()`.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `POLLWATCH` | `0`/`off`/`false` disables pollwatch entirely | on |
/// | `POLLWATCH_THRESHOLD_MS` | a poll longer than this is an episode | 20 |
/// | `POLLWATCH_INTERVAL_MS` | stack sample interval while a thread is stuck | 1 |
/// | `POLLWATCH_DIR` | where `<exe>-<pid>/` with the artifacts is created | `target/pollwatch` |
/// | `POLLWATCH_SIGNAL` | sampling signal: `SIGURG`, `SIGPROF`, `SIGRTMIN+3`, ... | `SIGURG` |
/// | `POLLWATCH_LIVE` | `0` silences the live stderr lines | on |
/// | `POLLWATCH_UNWIND` | `auto`, `dwarf` or `fp`: how stacks are unwound ([`Unwind`]) | `auto` |
/// | `POLLWATCH_STACK_COPY_KIB` | stack bytes copied per sample, in KiB (1 to 1024) | 32 |
/// | `POLLWATCH_STACK_MEMORY_KIB` | most stack-copy bytes waiting to be unwound, in KiB (0 to 1048576) | 16384 |
///
/// Millisecond values may be fractional (`0.5`).
///
/// # Which variables override code
///
/// [`Config::start`] applies three variables even to a configuration built in
/// code, because they belong to whoever runs the program, not to whoever wrote
/// it: a load test or a deployment must be able to switch pollwatch off
/// (`POLLWATCH`), send the artifacts elsewhere (`POLLWATCH_DIR`) and quieten
/// stderr (`POLLWATCH_LIVE`) without a code change. The others (threshold,
/// interval, signal, unwind mode, stack copy and memory) are the program's: a value set in code wins, and they
/// apply only through [`Config::from_env`] (or [`init`](crate::init)), so a
/// test that asserts on its own threshold cannot be changed under its feet.
/// The list is [`Config::ENV_OVERRIDES`].
///
/// The directory is made absolute at start and printed on stderr (when live
/// lines are on) as pollwatch starts, and again in the line at finish.
///
/// # Bounds
///
/// [`start`](Config::start) checks every duration, whether it came from the
/// builder or from the environment, and refuses one out of range with
/// [`Error::OutOfRange`] (naming the setting, its value and the range):
///
/// | setting | variable | allowed |
/// |---|---|---|
/// | [`threshold`](Config::threshold) | `POLLWATCH_THRESHOLD_MS` | 100 µs ..= 1 h |
/// | [`sample_interval`](Config::sample_interval) | `POLLWATCH_INTERVAL_MS` | 100 µs ..= the threshold |
/// | [`stack_copy_bytes`](Config::stack_copy_bytes) | `POLLWATCH_STACK_COPY_KIB` | 1 KiB ..= 1 MiB ([`Error::SizeOutOfRange`]) |
/// | [`stack_memory_bytes`](Config::stack_memory_bytes) | `POLLWATCH_STACK_MEMORY_KIB` | 0 ..= 1 GiB ([`Error::SizeOutOfRange`]) |
///
/// Below 100 µs a sample (signal, handler, copy, wake-up) would cost the
/// stuck thread more than it observes; a poll stuck for over an hour is not
/// what a blocking threshold is for; and an interval longer than the
/// threshold would leave the shortest episodes without a sample. An
/// environment value that is not a finite, non-negative number (`-1`, `NaN`,
/// `inf`, `twenty`) is an [`Error::Env`] already from
/// [`from_env`](Config::from_env). The kill switch `POLLWATCH=0`
/// is honoured by [`Config::start`] too, so a deployment can switch pollwatch
/// off without a code change.
///
/// ```no_run
/// use std::time::Duration;
/// let guard = pollwatch::Config::default()
///     .threshold(Duration::from_millis(20))
///     .sample_interval(Duration::from_millis(1))
///     .output_dir("target/pollwatch")
///     .start()?;
/// # Ok::<(), pollwatch::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) enabled: bool,
    pub(crate) threshold: Duration,
    pub(crate) interval: Duration,
    pub(crate) output_dir: PathBuf,
    pub(crate) signal: String,
    pub(crate) live: bool,
    pub(crate) unwind: Unwind,
    pub(crate) stack_copy: usize,
    pub(crate) stack_memory: usize,
}

/// How a sampled stack is unwound into frames.
///
/// The signal handler never unwinds: it copies the registers and the top of
/// the stack, and pollwatch's own thread unwinds that copy later.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unwind {
    /// The unwind tables (`.eh_frame`, which every Rust binary and libc
    /// carry) where an object has them, frame records elsewhere and where
    /// the tables run out. Needs no build flags.
    #[default]
    Auto,
    /// The unwind tables only (frame records only for code without any).
    Dwarf,
    /// Frame records only: the cheapest sample (the handler copies 1 KiB),
    /// complete only in code built with `-C force-frame-pointers=yes`.
    FramePointers,
}

impl Unwind {
    /// The name used by `POLLWATCH_UNWIND` and in the artifacts.
    pub fn name(self) -> &'static str {
        match self {
            Unwind::Auto => "auto",
            Unwind::Dwarf => "dwarf",
            Unwind::FramePointers => "fp",
        }
    }
}

impl Unwind {
    /// The mode named `name` (`auto`, `dwarf`, `fp`; any case).
    pub(crate) fn from_name(name: &str) -> Option<Unwind> {
        match name.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Unwind::Auto),
            "dwarf" => Some(Unwind::Dwarf),
            "fp" => Some(Unwind::FramePointers),
            _ => None,
        }
    }
}

impl std::fmt::Display for Unwind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            threshold: Self::DEFAULT_THRESHOLD,
            interval: Self::DEFAULT_SAMPLE_INTERVAL,
            output_dir: PathBuf::from(Self::DEFAULT_OUTPUT_DIR),
            signal: Self::DEFAULT_SIGNAL.to_owned(),
            live: true,
            unwind: Unwind::Auto,
            stack_copy: Self::DEFAULT_STACK_COPY,
            stack_memory: Self::DEFAULT_STACK_MEMORY,
        }
    }
}

impl Config {
    /// A poll longer than this is a blocking episode.
    pub const DEFAULT_THRESHOLD: Duration = Duration::from_millis(20);
    /// Stack samples of a stuck thread are this far apart.
    pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(1);
    /// Artifacts go under this directory.
    pub const DEFAULT_OUTPUT_DIR: &'static str = "target/pollwatch";
    /// The sampling signal: ignored by default, so a stray one never kills the
    /// host, passed through by debuggers, unused by libc.
    pub const DEFAULT_SIGNAL: &'static str = "SIGURG";
    /// Stack bytes copied per sample for the unwinder: enough for deep async
    /// stacks (a stack deeper than this is unwound by its frame records past
    /// the copy, and flagged `truncated` in `episodes.jsonl`).
    pub const DEFAULT_STACK_COPY: usize = 32 * 1024;
    /// The most bytes of stack copies waiting to be unwound (see
    /// [`stack_memory_bytes`](Config::stack_memory_bytes)): 512 default-size
    /// copies, half a second of samples at the default interval.
    pub const DEFAULT_STACK_MEMORY: usize = 16 * 1024 * 1024;

    /// The environment variables that [`start`](Config::start) applies over a
    /// configuration set in code (see [above](Config#which-variables-override-code)).
    pub const ENV_OVERRIDES: [&'static str; 3] = ["POLLWATCH", "POLLWATCH_DIR", "POLLWATCH_LIVE"];

    /// Defaults overlaid with the `POLLWATCH_*` environment variables.
    ///
    /// A malformed value is an [`Error::Env`] naming the variable and the value.
    pub fn from_env() -> Result<Self> {
        Self::default().apply_env(|k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Applies the [`ENV_OVERRIDES`](Config::ENV_OVERRIDES) found in the
    /// process environment: what [`start`](Config::start) does first.
    pub(crate) fn with_env_overrides(self) -> Result<Self> {
        self.apply_overrides(|k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned()))
    }

    /// [`ENV_OVERRIDES`](Config::ENV_OVERRIDES) from `lookup`, the other
    /// variables ignored.
    pub(crate) fn apply_overrides(self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        self.apply_env(|k| {
            if Self::ENV_OVERRIDES.contains(&k) {
                lookup(k)
            } else {
                None
            }
        })
    }

    /// Applies variables from `lookup` (a pure function so tests never touch
    /// the process environment).
    pub(crate) fn apply_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if let Some(v) = lookup("POLLWATCH") {
            self.enabled = parse_switch("POLLWATCH", &v)?;
        }
        for rule in &DURATIONS {
            if let Some(v) = lookup(rule.env) {
                (rule.set)(&mut self, parse_ms(rule.env, &v)?);
            }
        }
        if let Some(v) = lookup("POLLWATCH_DIR") {
            if v.trim().is_empty() {
                return Err(Error::Env {
                    var: "POLLWATCH_DIR",
                    value: v,
                    expected: "a directory path",
                });
            }
            self.output_dir = PathBuf::from(v);
        }
        if let Some(v) = lookup("POLLWATCH_SIGNAL") {
            if parse_signal(&v).is_none() {
                return Err(Error::Env {
                    var: "POLLWATCH_SIGNAL",
                    value: v,
                    expected: "a signal name such as SIGURG, SIGPROF, SIGUSR2 or SIGRTMIN+3",
                });
            }
            self.signal = v;
        }
        if let Some(v) = lookup("POLLWATCH_LIVE") {
            self.live = parse_switch("POLLWATCH_LIVE", &v)?;
        }
        if let Some(v) = lookup("POLLWATCH_UNWIND") {
            self.unwind = match Unwind::from_name(&v) {
                Some(mode) => mode,
                None => {
                    return Err(Error::Env {
                        var: "POLLWATCH_UNWIND",
                        value: v,
                        expected: "auto, dwarf or fp",
                    })
                }
            };
        }
        if let Some(v) = lookup(STACK_COPY_ENV) {
            // Only the syntax here; the range is validate()'s, as for the
            // builder (a huge value saturates and is refused there).
            match v.trim().parse::<usize>() {
                Ok(k) => self.stack_copy = k.saturating_mul(1024),
                Err(_) => {
                    return Err(Error::Env {
                        var: STACK_COPY_ENV,
                        value: v,
                        expected: "a whole number of KiB from 1 to 1024",
                    })
                }
            }
        }
        if let Some(v) = lookup(STACK_MEMORY_ENV) {
            match v.trim().parse::<usize>() {
                Ok(k) => self.stack_memory = k.saturating_mul(1024),
                Err(_) => {
                    return Err(Error::Env {
                        var: STACK_MEMORY_ENV,
                        value: v,
                        expected: "a whole number of KiB from 0 to 1048576",
                    })
                }
            }
        }
        Ok(self)
    }

    /// Sets the blocking threshold: a poll longer than this is an episode.
    /// Allowed: 100 µs ..= 1 h (checked by [`start`](Config::start)).
    pub fn threshold(mut self, threshold: Duration) -> Self {
        self.threshold = threshold;
        self
    }

    /// Sets how often a stuck thread's stack is sampled.
    /// Allowed: 100 µs ..= the threshold (checked by [`start`](Config::start)).
    pub fn sample_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the directory under which `<exe>-<pid>/` holds the artifacts.
    /// `POLLWATCH_DIR` in the environment overrides it (see
    /// [`ENV_OVERRIDES`](Config::ENV_OVERRIDES)); a relative path is taken
    /// from the current directory at [`start`](Config::start).
    pub fn output_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.output_dir = dir.into();
        self
    }

    /// Sets the sampling signal by name (`"SIGURG"`, `"SIGPROF"`, `"SIGRTMIN+3"`).
    /// Checked by [`start`](Config::start).
    pub fn signal(mut self, name: impl Into<String>) -> Self {
        self.signal = name.into();
        self
    }

    /// Turns the live stderr lines (printed while a thread is still stuck) on or off.
    /// `POLLWATCH_LIVE` in the environment overrides it.
    pub fn live(mut self, on: bool) -> Self {
        self.live = on;
        self
    }

    /// Sets how stacks are unwound (default [`Unwind::Auto`]).
    pub fn unwind(mut self, mode: Unwind) -> Self {
        self.unwind = mode;
        self
    }

    /// Sets how many bytes of stack each sample copies (1 KiB to 1 MiB,
    /// default [`DEFAULT_STACK_COPY`](Config::DEFAULT_STACK_COPY)). The
    /// buffer is allocated once, at start; `fp` mode copies 1 KiB whatever
    /// this says.
    pub fn stack_copy_bytes(mut self, bytes: usize) -> Self {
        self.stack_copy = bytes;
        self
    }

    /// Sets the most bytes that stack copies waiting to be unwound may hold
    /// (0 to 1 GiB, default
    /// [`DEFAULT_STACK_MEMORY`](Config::DEFAULT_STACK_MEMORY)). When the
    /// report stage falls behind and a sample's copy would pass this, the
    /// sample keeps its time and thread state, on the episode's previous
    /// stack, and loses only its copy; it is counted in
    /// [`Counters::dropped_samples`](crate::Counters::dropped_samples). An
    /// episode's first stack is always kept, so the bound is this plus one
    /// copy per episode whose first stack is still waiting. `0` keeps just
    /// the first stack of each episode.
    pub fn stack_memory_bytes(mut self, bytes: usize) -> Self {
        self.stack_memory = bytes;
        self
    }

    /// Enables or disables pollwatch; a disabled config starts nothing.
    /// `POLLWATCH` in the environment overrides it (either way: `POLLWATCH=1`
    /// turns on a configuration disabled in code).
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// How often the watchdog looks at the workers while none is stuck:
    /// half the threshold (at least 250 µs). A stuck poll is noticed at most
    /// this long after it crosses the threshold, and an idle pollwatch wakes
    /// only this often (100 times a second with the default threshold).
    #[deprecated(
        since = "0.1.0",
        note = "not a setting: the watchdog's idle tick is half the threshold, at least 250 µs"
    )]
    #[doc(hidden)]
    pub fn idle_tick(&self) -> Duration {
        // The watchdog's own rule (`watchdog::policy::idle_tick`, whose test
        // checks this copy), restated so that the configuration depends on
        // nothing of the watchdog's.
        (self.threshold / 2).max(Duration::from_micros(250))
    }

    /// Checks every setting against its rule in [`DURATIONS`] and resolves the
    /// signal number. The one check for both sources: an environment value
    /// arrives here as the same `Duration` the builder would have set.
    pub(crate) fn validate(&self) -> Result<i32> {
        for rule in &DURATIONS {
            rule.check(self)?;
        }
        if !STACK_COPY.contains(&self.stack_copy) {
            return Err(Error::SizeOutOfRange {
                setting: "stack_copy_bytes",
                env: STACK_COPY_ENV,
                value: self.stack_copy,
                min: *STACK_COPY.start(),
                max: *STACK_COPY.end(),
            });
        }
        if !STACK_MEMORY.contains(&self.stack_memory) {
            return Err(Error::SizeOutOfRange {
                setting: "stack_memory_bytes",
                env: STACK_MEMORY_ENV,
                value: self.stack_memory,
                min: *STACK_MEMORY.start(),
                max: *STACK_MEMORY.end(),
            });
        }
        parse_signal(&self.signal).ok_or_else(|| Error::UnknownSignal {
            name: self.signal.clone(),
        })
    }
}

/// The bounds of one duration setting, applied to both the builder and its
/// environment variable. Adding a setting means adding a row to
/// [`DURATIONS`] (and a field, a builder method and a line in the docs).
pub(crate) struct DurationRule {
    /// The builder method, e.g. `threshold`.
    pub(crate) setting: &'static str,
    /// Its `POLLWATCH_*` variable (milliseconds).
    pub(crate) env: &'static str,
    pub(crate) min: Duration,
    /// The largest allowed value; may depend on another setting.
    pub(crate) max: fn(&Config) -> Duration,
    /// What `max` is, for the error message when it is not a constant.
    pub(crate) max_is: &'static str,
    pub(crate) get: fn(&Config) -> Duration,
    pub(crate) set: fn(&mut Config, Duration),
}

impl DurationRule {
    fn check(&self, cfg: &Config) -> Result<()> {
        let (value, max) = ((self.get)(cfg), (self.max)(cfg));
        if (self.min..=max).contains(&value) {
            return Ok(());
        }
        Err(Error::OutOfRange {
            setting: self.setting,
            env: self.env,
            value,
            min: self.min,
            max,
        })
    }
}

/// Stack bytes a sample may copy: at least the top frames' worth, at most
/// what is sensible to preallocate (and copy in a signal handler) per sample.
pub(crate) const STACK_COPY: std::ops::RangeInclusive<usize> = 1024..=1024 * 1024;
/// Its variable, in KiB.
const STACK_COPY_ENV: &str = "POLLWATCH_STACK_COPY_KIB";
/// Bytes of stack copies in flight: from none past each episode's first
/// stack to more than any report stage needs.
pub(crate) const STACK_MEMORY: std::ops::RangeInclusive<usize> = 0..=1 << 30;
/// Its variable, in KiB.
const STACK_MEMORY_ENV: &str = "POLLWATCH_STACK_MEMORY_KIB";

/// The largest threshold: a poll stuck for an hour is not "blocking" any
/// more, and with this cap every deadline pollwatch computes (`now +
/// threshold`, doubled sample intervals) stays far from `Instant`'s limits.
pub(crate) const MAX_THRESHOLD: Duration = Duration::from_secs(3600);
/// The smallest threshold and sample interval: one sample (signal, handler,
/// copy, wake-up) costs tens of microseconds on a loaded machine, so below
/// this the sampler would take a stuck thread's CPU instead of observing it.
pub(crate) const MIN_DURATION: Duration = Duration::from_micros(100);

/// Every duration setting and its bounds: the single place they are checked.
pub(crate) const DURATIONS: [DurationRule; 2] = [
    DurationRule {
        setting: "threshold",
        env: "POLLWATCH_THRESHOLD_MS",
        min: MIN_DURATION,
        max: |_| MAX_THRESHOLD,
        max_is: "",
        get: |c| c.threshold,
        set: |c, d| c.threshold = d,
    },
    // At most the threshold: a longer interval would leave the shortest
    // episodes without a single sample.
    DurationRule {
        setting: "sample_interval",
        env: "POLLWATCH_INTERVAL_MS",
        min: MIN_DURATION,
        max: |c| c.threshold,
        max_is: "the threshold",
        get: |c| c.interval,
        set: |c, d| c.interval = d,
    },
];

fn parse_switch(var: &'static str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Ok(true),
        "0" | "off" | "false" | "no" => Ok(false),
        _ => Err(Error::Env {
            var,
            value: v.to_owned(),
            expected: "0/off/false or 1/on/true",
        }),
    }
}

/// What a setting's upper bound is when it is not a constant ("" otherwise),
/// for [`Error::OutOfRange`]'s message.
pub(crate) fn max_is(setting: &str) -> &'static str {
    DURATIONS
        .iter()
        .find(|r| r.setting == setting)
        .map_or("", |r| r.max_is)
}

/// A number of milliseconds as a `Duration`. Only the syntax is checked here
/// (a finite, non-negative number); the range is [`Config::validate`]'s, the
/// same as for the builder. Values too large for a `Duration` saturate so that
/// the range check refuses them.
fn parse_ms(var: &'static str, v: &str) -> Result<Duration> {
    let ms: f64 = v.trim().parse().map_err(|_| bad_ms(var, v))?;
    if !ms.is_finite() || ms < 0.0 {
        return Err(bad_ms(var, v));
    }
    Ok(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX))
}

fn bad_ms(var: &'static str, v: &str) -> Error {
    Error::Env {
        var,
        value: v.to_owned(),
        expected: "a number of milliseconds, e.g. 20 or 0.5",
    }
}

/// Signal number for a name. Only signals whose default action is harmless or
/// that are meant for applications are accepted; SIGSEGV and friends are not.
pub(crate) fn parse_signal(name: &str) -> Option<i32> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("SIG").unwrap_or(&n);
    signal_number(n)
}

#[cfg(pollwatch_supported)]
fn signal_number(n: &str) -> Option<i32> {
    let fixed = match n {
        "URG" => Some(libc::SIGURG),
        "PROF" => Some(libc::SIGPROF),
        "VTALRM" => Some(libc::SIGVTALRM),
        "USR1" => Some(libc::SIGUSR1),
        "USR2" => Some(libc::SIGUSR2),
        "WINCH" => Some(libc::SIGWINCH),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    rt_signal(n)
}

#[cfg(pollwatch_supported)]
fn rt_signal(n: &str) -> Option<i32> {
    let (min, max) = crate::sys::signal::rt_range();
    let (base, rest) = if let Some(r) = n.strip_prefix("RTMIN") {
        (min, r)
    } else if let Some(r) = n.strip_prefix("RTMAX") {
        (max, r)
    } else {
        return None;
    };
    let sig = if rest.is_empty() {
        base
    } else if let Some(k) = rest.strip_prefix('+') {
        base.checked_add(k.parse::<i32>().ok()?)?
    } else if let Some(k) = rest.strip_prefix('-') {
        base.checked_sub(k.parse::<i32>().ok()?)?
    } else {
        return None;
    };
    (min..=max).contains(&sig).then_some(sig)
}

/// Where pollwatch does not sample, names are still checked (so a config that
/// works on Linux is accepted everywhere) but map to no number.
#[cfg(not(pollwatch_supported))]
fn signal_number(n: &str) -> Option<i32> {
    let known = ["URG", "PROF", "VTALRM", "USR1", "USR2", "WINCH"].contains(&n)
        || ["RTMIN", "RTMAX"].iter().any(|p| {
            n.strip_prefix(p).is_some_and(|r| {
                r.is_empty()
                    || r.strip_prefix(['+', '-'])
                        .is_some_and(|k| k.parse::<u8>().is_ok())
            })
        });
    known.then_some(0)
}

#[cfg(all(test, pollwatch_supported))]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_without_env() {
        let c = Config::default().apply_env(env(&[])).unwrap();
        assert!(c.enabled);
        assert_eq!(c.threshold, Duration::from_millis(20));
        assert_eq!(c.interval, Duration::from_millis(1));
        assert_eq!(c.output_dir, PathBuf::from("target/pollwatch"));
        assert_eq!(c.validate().unwrap(), libc::SIGURG);
    }

    #[test]
    fn env_values_apply() {
        let c = Config::default()
            .apply_env(env(&[
                ("POLLWATCH_THRESHOLD_MS", "50"),
                ("POLLWATCH_INTERVAL_MS", "0.5"),
                ("POLLWATCH_DIR", "/tmp/pw"),
                ("POLLWATCH_SIGNAL", "SIGRTMIN+3"),
                ("POLLWATCH", "on"),
                ("POLLWATCH_UNWIND", "FP"),
                ("POLLWATCH_STACK_COPY_KIB", "64"),
                ("POLLWATCH_STACK_MEMORY_KIB", "0"),
            ]))
            .unwrap();
        assert_eq!(c.stack_memory, 0);
        assert_eq!(c.unwind, Unwind::FramePointers);
        assert_eq!(c.stack_copy, 64 * 1024);
        assert_eq!(c.threshold, Duration::from_millis(50));
        assert_eq!(c.interval, Duration::from_micros(500));
        assert_eq!(c.output_dir, PathBuf::from("/tmp/pw"));
        assert_eq!(c.validate().unwrap(), libc::SIGRTMIN() + 3);
    }

    #[test]
    fn kill_switch() {
        for v in ["0", "off", "OFF", "false"] {
            let pairs: &'static [(&'static str, &'static str)] =
                Box::leak(Box::new([("POLLWATCH", v)]));
            assert!(
                !Config::default().apply_env(env(pairs)).unwrap().enabled,
                "{v}"
            );
        }
    }

    #[test]
    fn malformed_values_name_the_variable_and_value() {
        for (var, val) in [
            ("POLLWATCH_THRESHOLD_MS", "twenty"),
            ("POLLWATCH_THRESHOLD_MS", "-5"),
            ("POLLWATCH_INTERVAL_MS", "NaN"),
            ("POLLWATCH_INTERVAL_MS", "inf"),
            ("POLLWATCH_INTERVAL_MS", "-inf"),
            ("POLLWATCH_THRESHOLD_MS", "1e400"),
            ("POLLWATCH_THRESHOLD_MS", "-0.5"),
            ("POLLWATCH_THRESHOLD_MS", ""),
            ("POLLWATCH", "maybe"),
            ("POLLWATCH_SIGNAL", "SIGSEGV"),
            ("POLLWATCH_SIGNAL", "SIGRTMIN+999"),
            ("POLLWATCH_DIR", " "),
            ("POLLWATCH_UNWIND", "libunwind"),
            ("POLLWATCH_STACK_COPY_KIB", "-1"),
            ("POLLWATCH_STACK_COPY_KIB", "32k"),
            ("POLLWATCH_STACK_MEMORY_KIB", "16M"),
            ("POLLWATCH_STACK_MEMORY_KIB", "-1"),
        ] {
            let pairs: &'static [(&'static str, &'static str)] = Box::leak(Box::new([(var, val)]));
            let err = Config::default().apply_env(env(pairs)).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(var) && msg.contains(val.trim()), "{msg}");
        }
    }

    #[test]
    fn stack_copy_bounds_are_the_same_from_env_and_code() {
        for (kib, ok) in [
            ("0", false),
            ("1", true),
            ("1024", true),
            ("1025", false),
            ("4096", false),
            ("18446744073709551615", false),
        ] {
            let pairs: &'static [(&'static str, &'static str)] =
                Box::leak(Box::new([("POLLWATCH_STACK_COPY_KIB", kib)]));
            let from_env = Config::default().apply_env(env(pairs)).unwrap();
            let bytes = kib.parse::<usize>().unwrap().saturating_mul(1024);
            let from_code = Config::default().stack_copy_bytes(bytes);
            for c in [&from_env, &from_code] {
                match c.validate() {
                    Ok(_) => assert!(ok, "{kib} KiB accepted"),
                    Err(Error::SizeOutOfRange {
                        value, min, max, ..
                    }) => {
                        assert!(!ok, "{kib} KiB refused");
                        assert_eq!((value, min, max), (bytes, 1024, 1024 * 1024));
                    }
                    Err(e) => panic!("{kib}: {e:?}"),
                }
            }
        }
        let err = Config::default()
            .stack_copy_bytes(512)
            .validate()
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("stack_copy_bytes") && msg.contains("POLLWATCH_STACK_COPY_KIB"),
            "{msg}"
        );
    }

    #[test]
    fn stack_memory_bounds_are_the_same_from_env_and_code() {
        for (kib, ok) in [
            ("0", true),
            ("16384", true),
            ("1048576", true),
            ("1048577", false),
            ("18446744073709551615", false),
        ] {
            let pairs: &'static [(&'static str, &'static str)] =
                Box::leak(Box::new([("POLLWATCH_STACK_MEMORY_KIB", kib)]));
            let from_env = Config::default().apply_env(env(pairs)).unwrap();
            let bytes = kib.parse::<usize>().unwrap().saturating_mul(1024);
            let from_code = Config::default().stack_memory_bytes(bytes);
            for c in [&from_env, &from_code] {
                match c.validate() {
                    Ok(_) => assert!(ok, "{kib} KiB accepted"),
                    Err(Error::SizeOutOfRange {
                        setting,
                        value,
                        max,
                        ..
                    }) => {
                        assert!(!ok, "{kib} KiB refused");
                        assert_eq!(
                            (setting, value, max),
                            ("stack_memory_bytes", bytes, 1 << 30)
                        );
                    }
                    Err(e) => panic!("{kib}: {e:?}"),
                }
            }
        }
    }

    #[test]
    fn only_the_deployment_variables_override_code() {
        let all = env(&[
            ("POLLWATCH", "off"),
            ("POLLWATCH_DIR", "/tmp/elsewhere"),
            ("POLLWATCH_LIVE", "0"),
            ("POLLWATCH_THRESHOLD_MS", "50"),
            ("POLLWATCH_INTERVAL_MS", "5"),
            ("POLLWATCH_SIGNAL", "SIGPROF"),
        ]);
        let code = Config::default()
            .threshold(Duration::from_millis(30))
            .output_dir("mine");
        let c = code.apply_overrides(all).unwrap();
        assert!(!c.enabled && !c.live);
        assert_eq!(c.output_dir, PathBuf::from("/tmp/elsewhere"));
        assert_eq!(c.threshold, Duration::from_millis(30));
        assert_eq!(c.interval, Config::DEFAULT_SAMPLE_INTERVAL);
        assert_eq!(c.signal, Config::DEFAULT_SIGNAL);
        // A malformed override is still an error naming it.
        let err = Config::default()
            .apply_overrides(env(&[("POLLWATCH_LIVE", "loud")]))
            .unwrap_err();
        assert!(err.to_string().contains("POLLWATCH_LIVE"), "{err}");
        // Without the variables code decides; with them, they do.
        let off = || Config::default().enabled(false);
        assert!(!off().apply_overrides(env(&[])).unwrap().enabled);
        assert!(
            off()
                .apply_overrides(env(&[("POLLWATCH", "1")]))
                .unwrap()
                .enabled
        );
    }

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("SIGURG"), Some(libc::SIGURG));
        assert_eq!(parse_signal("prof"), Some(libc::SIGPROF));
        assert_eq!(parse_signal("SIGRTMAX-1"), Some(libc::SIGRTMAX() - 1));
        assert_eq!(parse_signal("SIGKILL"), None);
        assert_eq!(parse_signal("SIGRTMIN+x"), None);
        let err = Config::default().signal("SIGKILL").validate().unwrap_err();
        assert!(
            matches!(&err, Error::UnknownSignal { name } if name == "SIGKILL"),
            "{err:?}"
        );
        assert!(err.to_string().contains("\"SIGKILL\""), "{err}");
    }

    /// The setting an [`Error::OutOfRange`] names, or `None` for success.
    fn refused(c: &Config) -> Option<&'static str> {
        match c.validate() {
            Ok(_) => None,
            Err(Error::OutOfRange {
                setting,
                value,
                min,
                max,
                ..
            }) => {
                assert!(value < min || value > max, "{value:?} {min:?} {max:?}");
                Some(setting)
            }
            Err(e) => panic!("not a range error: {e:?}"),
        }
    }

    #[test]
    fn threshold_bounds_and_extremes() {
        let ns = Duration::from_nanos(1);
        let t = |d| Config::default().threshold(d).sample_interval(MIN_DURATION);
        for d in [MIN_DURATION, Duration::from_millis(20), MAX_THRESHOLD] {
            assert_eq!(refused(&t(d)), None, "{d:?}");
        }
        for d in [
            Duration::ZERO,
            ns,
            MIN_DURATION - ns,
            MAX_THRESHOLD + ns,
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            assert_eq!(refused(&t(d)), Some("threshold"), "{d:?}");
        }
    }

    #[test]
    fn interval_bounds_and_extremes() {
        let ns = Duration::from_nanos(1);
        let threshold = Duration::from_millis(20);
        let i = |d| Config::default().threshold(threshold).sample_interval(d);
        for d in [MIN_DURATION, Duration::from_millis(1), threshold] {
            assert_eq!(refused(&i(d)), None, "{d:?}");
        }
        for d in [
            Duration::ZERO,
            MIN_DURATION - ns,
            threshold + ns,
            MAX_THRESHOLD,
            Duration::MAX,
        ] {
            assert_eq!(refused(&i(d)), Some("sample_interval"), "{d:?}");
        }
        // The default interval (1 ms) under a smaller threshold is refused,
        // and the message says why.
        let c = Config::default().threshold(Duration::from_micros(500));
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("sample_interval") && msg.contains("the threshold"),
            "{msg}"
        );
    }

    #[test]
    fn env_and_builder_give_the_same_verdict() {
        for (ms, builder) in [
            ("0", Duration::ZERO),
            (
                "0.0999",
                Duration::from_micros(99) + Duration::from_nanos(900),
            ),
            ("0.1", MIN_DURATION),
            ("20", Duration::from_millis(20)),
            ("3600000", MAX_THRESHOLD),
            ("3600000.001", MAX_THRESHOLD + Duration::from_micros(1)),
            ("1e300", Duration::MAX),
        ] {
            let pairs: &'static [(&'static str, &'static str)] = Box::leak(Box::new([
                ("POLLWATCH_THRESHOLD_MS", ms),
                ("POLLWATCH_INTERVAL_MS", "0.1"),
            ]));
            let from_env = Config::default().apply_env(env(pairs)).unwrap();
            let from_code = Config::default()
                .threshold(builder)
                .sample_interval(MIN_DURATION);
            assert_eq!(refused(&from_env), refused(&from_code), "{ms}");
            if let Err(e) = from_env.validate() {
                assert_eq!(e.to_string(), from_code.validate().unwrap_err().to_string());
                assert!(e.to_string().contains("POLLWATCH_THRESHOLD_MS"), "{e}");
            }
        }
    }

    #[test]
    fn every_rule_round_trips_through_its_setter() {
        for rule in &DURATIONS {
            let mut c = Config::default();
            (rule.set)(&mut c, rule.min);
            assert_eq!((rule.get)(&c), rule.min, "{}", rule.setting);
            assert!(rule.env.starts_with("POLLWATCH_"), "{}", rule.env);
        }
    }
}
