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
///
/// Millisecond values may be fractional (`0.5`). The kill switch `POLLWATCH=0`
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

    /// Defaults overlaid with the `POLLWATCH_*` environment variables.
    ///
    /// A malformed value is an [`Error::Env`] naming the variable and the value.
    pub fn from_env() -> Result<Self> {
        Self::default().apply_env(|k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Applies variables from `lookup` (a pure function so tests never touch
    /// the process environment).
    pub(crate) fn apply_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if let Some(v) = lookup("POLLWATCH") {
            self.enabled = parse_switch("POLLWATCH", &v)?;
        }
        if let Some(v) = lookup("POLLWATCH_THRESHOLD_MS") {
            self.threshold = parse_ms("POLLWATCH_THRESHOLD_MS", &v)?;
        }
        if let Some(v) = lookup("POLLWATCH_INTERVAL_MS") {
            self.interval = parse_ms("POLLWATCH_INTERVAL_MS", &v)?;
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
        Ok(self)
    }

    /// Sets the blocking threshold: a poll longer than this is an episode.
    pub fn threshold(mut self, threshold: Duration) -> Self {
        self.threshold = threshold;
        self
    }

    /// Sets how often a stuck thread's stack is sampled.
    pub fn sample_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the directory under which `<exe>-<pid>/` holds the artifacts.
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
    pub fn live(mut self, on: bool) -> Self {
        self.live = on;
        self
    }

    /// Enables or disables pollwatch; a disabled config starts nothing.
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// How often the watchdog looks at the workers while none is stuck:
    /// half the threshold (at least 250 µs). A stuck poll is noticed at most
    /// this long after it crosses the threshold, and an idle pollwatch wakes
    /// only this often (100 times a second with the default threshold).
    pub fn idle_tick(&self) -> Duration {
        idle_tick(self.threshold)
    }

    /// Starts the watchdog and returns the guard that writes the report.
    ///
    /// See [`Guard`](crate::Guard). Fails with a clear [`Error`] on a bad
    /// value, an output directory that cannot be created, or a signal that
    /// already belongs to someone else.
    pub fn start(self) -> Result<crate::Guard> {
        crate::guard::start(self)
    }

    /// Checks ranges and resolves the signal number.
    pub(crate) fn validate(&self) -> Result<i32> {
        if self.threshold < Duration::from_micros(100) {
            return Err(Error::Config(format!(
                "threshold {:?} is below the 100 µs minimum",
                self.threshold
            )));
        }
        if self.interval < Duration::from_micros(100) {
            return Err(Error::Config(format!(
                "sample interval {:?} is below the 100 µs minimum",
                self.interval
            )));
        }
        parse_signal(&self.signal).ok_or_else(|| {
            Error::Config(format!(
                "unknown sampling signal {:?}: use SIGURG, SIGPROF, SIGVTALRM, SIGUSR1, SIGUSR2, SIGWINCH or SIGRTMIN+n",
                self.signal
            ))
        })
    }
}

/// The watchdog's tick while nothing is stuck, for a given threshold: slow
/// enough that an idle watchdog costs next to nothing, fast enough that a
/// stuck poll is noticed within half a threshold of crossing it.
pub(crate) fn idle_tick(threshold: Duration) -> Duration {
    (threshold / 2).max(Duration::from_micros(250))
}

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

fn parse_ms(var: &'static str, v: &str) -> Result<Duration> {
    let bad = || Error::Env {
        var,
        value: v.to_owned(),
        expected: "a positive number of milliseconds, e.g. 20 or 0.5",
    };
    let ms: f64 = v.trim().parse().map_err(|_| bad())?;
    if !ms.is_finite() || ms <= 0.0 || ms > 3_600_000.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
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
            ]))
            .unwrap();
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
            ("POLLWATCH_INTERVAL_MS", "0"),
            ("POLLWATCH_INTERVAL_MS", "NaN"),
            ("POLLWATCH", "maybe"),
            ("POLLWATCH_SIGNAL", "SIGSEGV"),
            ("POLLWATCH_SIGNAL", "SIGRTMIN+999"),
            ("POLLWATCH_DIR", " "),
        ] {
            let pairs: &'static [(&'static str, &'static str)] = Box::leak(Box::new([(var, val)]));
            let err = Config::default().apply_env(env(pairs)).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(var) && msg.contains(val.trim()), "{msg}");
        }
    }

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("SIGURG"), Some(libc::SIGURG));
        assert_eq!(parse_signal("prof"), Some(libc::SIGPROF));
        assert_eq!(parse_signal("SIGRTMAX-1"), Some(libc::SIGRTMAX() - 1));
        assert_eq!(parse_signal("SIGKILL"), None);
        assert_eq!(parse_signal("SIGRTMIN+x"), None);
    }

    #[test]
    fn tiny_values_are_refused_at_start() {
        let c = Config::default().threshold(Duration::from_micros(10));
        assert!(matches!(c.validate(), Err(Error::Config(_))));
    }
}
