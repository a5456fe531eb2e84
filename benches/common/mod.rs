//! Helpers shared by pollwatch's bench binaries: medians, the one-line result
//! format `scripts/bench.sh` collects, and `/proc` readers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

/// Multiplies workload sizes: `POLLWATCH_BENCH_SCALE=0.1` for a quick look.
/// The figures in the README are from the default, 1.
pub fn scale() -> f64 {
    std::env::var("POLLWATCH_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

/// `n` scaled, at least `min`.
pub fn scaled(n: u64, min: u64) -> u64 {
    ((n as f64 * scale()) as u64).max(min)
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// First and third quartiles (nearest rank).
pub fn quartiles(xs: &[f64]) -> (f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.75))
}

pub fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NAN, f64::max)
}

/// One row of the table `scripts/bench.sh` prints: figure, pollwatch's value,
/// the bare or peer value it is compared with, their ratio, and the target.
pub fn row(figure: &str, pollwatch: &str, peer: &str, ratio: &str, target: &str) {
    println!("ROW|{figure}|{pollwatch}|{peer}|{ratio}|{target}");
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// A fresh output directory for pollwatch's artifacts.
pub fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join("pollwatch-bench").join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Kernel tid of this process's thread whose `comm` is `name`.
pub fn thread_by_name(name: &str) -> Option<i32> {
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            return e.file_name().to_str()?.parse().ok();
        }
    }
    None
}

/// A thread's CPU time: from `schedstat` (nanoseconds, exact) and from `stat`
/// (utime + stime, in clock ticks of 10 ms).
#[derive(Clone, Copy, Debug)]
pub struct ThreadCpu {
    pub schedstat: Duration,
    pub stat: Duration,
}

pub fn thread_cpu(tid: i32) -> Option<ThreadCpu> {
    let dir = format!("/proc/self/task/{tid}");
    let sched = std::fs::read_to_string(format!("{dir}/schedstat")).ok()?;
    let ns: u64 = sched.split_whitespace().next()?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux configuration that matters here.
    Some(ThreadCpu {
        schedstat: Duration::from_nanos(ns),
        stat: Duration::from_millis((utime + stime) * 10),
    })
}

/// A field of `/proc/self/status` in KiB (`"VmRSS:"`, `"RssAnon:"`, ...).
pub fn status_kib(name: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
pub fn rss_kib() -> (u64, u64) {
    (status_kib("VmRSS:"), status_kib("VmHWM:"))
}

/// The number of CPUs this process may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
