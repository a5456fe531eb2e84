//! The artifacts: `episodes.jsonl` (appended and flushed per episode, so a
//! crash loses at most the current one), and `stacks.folded`, `flamegraph.svg`
//! and `summary.txt` (each written to a temp file and renamed into place).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{Episode, Frame, Report, Stack};
use crate::error::{Error, Result};

pub(crate) const SVG: &str = "flamegraph.svg";
pub(crate) const FOLDED: &str = "stacks.folded";
pub(crate) const JSONL: &str = "episodes.jsonl";
pub(crate) const SUMMARY: &str = "summary.txt";

/// Owns the output directory of one run.
#[cfg_attr(not(pollwatch_supported), allow(dead_code))]
pub(crate) struct Writer {
    dir: PathBuf,
    jsonl: File,
}

#[cfg_attr(not(pollwatch_supported), allow(dead_code))]
impl Writer {
    /// Creates `<base>/<exe>-<pid>/` and opens `episodes.jsonl` in it, so that
    /// an unwritable directory is an error at start, not a lost report at the end.
    pub(crate) fn create(base: &Path) -> Result<Writer> {
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "process".into());
        let dir = base.join(format!("{exe}-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|source| Error::OutputDir {
            path: dir.clone(),
            source,
        })?;
        let jsonl_path = dir.join(JSONL);
        let jsonl = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&jsonl_path)
            .map_err(|source| Error::OutputDir {
                path: dir.clone(),
                source,
            })?;
        Ok(Writer { dir, jsonl })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn append_episode(&mut self, ep: &Episode) -> Result<()> {
        let mut line = serde_json::to_string(&episode_json(ep)).unwrap_or_default();
        line.push('\n');
        self.jsonl
            .write_all(line.as_bytes())
            .and_then(|_| self.jsonl.flush())
            .map_err(|source| Error::Write {
                path: self.dir.join(JSONL),
                source,
            })
    }

    /// Writes the folded stacks, the flamegraph and the summary.
    pub(crate) fn write_final(
        &self,
        report: &Report,
        folded: &BTreeMap<String, u64>,
    ) -> Result<()> {
        let mut text = String::new();
        for (line, w) in folded {
            if *w > 0 {
                let _ = writeln!(text, "{line} {w}");
            }
        }
        atomic_write(&self.dir.join(FOLDED), text.as_bytes())?;
        let svg = flamegraph(report, folded);
        atomic_write(&self.dir.join(SVG), &svg)?;
        atomic_write(&self.dir.join(SUMMARY), summary_text(report).as_bytes())
    }
}

fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let res = (|| {
        let mut f = BufWriter::new(File::create(&tmp)?);
        f.write_all(bytes)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)
    })();
    res.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        Error::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// A frame as it appears in a folded line: no `;` (it separates frames) and no
/// newline.
fn folded_name(f: &Frame) -> String {
    let s = f.to_string();
    s.replace(';', ",").replace(['\n', '\r'], " ")
}

/// `root;outermost;...;blocking call;[state]` for one stack of an episode.
#[cfg_attr(not(pollwatch_supported), allow(dead_code))]
pub(crate) fn folded_line(ep: &Episode, st: &Stack) -> String {
    // A named poll (a route) is the root the user thinks in; else the task.
    let root = match (&ep.label, &ep.spawned_at, ep.task_id) {
        (Some(label), _, _) => label.clone(),
        (None, Some(at), _) => format!("task spawned at {at}"),
        (None, None, Some(id)) => format!("task {id} on {}", ep.thread),
        (None, None, None) => format!("thread {}", ep.thread),
    };
    let mut line = root.replace(';', ",");
    for f in st.frames.iter().rev() {
        line.push(';');
        line.push_str(&folded_name(f));
    }
    line.push_str(";[");
    line.push_str(&st.state.to_string());
    line.push(']');
    line
}

fn flamegraph(report: &Report, folded: &BTreeMap<String, u64>) -> Vec<u8> {
    let lines: Vec<String> = folded
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(l, w)| format!("{l} {w}"))
        .collect();
    if lines.is_empty() {
        return empty_svg(report).into_bytes();
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!(
        "pollwatch: {} blocking episode{}, {} ms blocked",
        report.total_episodes,
        if report.total_episodes == 1 { "" } else { "s" },
        report.total_blocked.as_millis()
    );
    opts.subtitle = Some(format!(
        "polls longer than {} ms; width = blocked time (µs); root = task spawn site or thread",
        ms(report.threshold)
    ));
    opts.count_name = "µs".into();
    opts.colors =
        inferno::flamegraph::color::Palette::Multi(inferno::flamegraph::color::MultiPalette::Rust);
    let mut out = Vec::new();
    match inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut out) {
        Ok(()) => out,
        Err(e) => empty_svg_with(&format!("flamegraph rendering failed: {e}")).into_bytes(),
    }
}

fn empty_svg(report: &Report) -> String {
    empty_svg_with(&format!(
        "No blocking found: no poll took longer than {} ms.",
        ms(report.threshold)
    ))
}

fn empty_svg_with(message: &str) -> String {
    let esc = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        r#"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="800" height="120" xmlns="http://www.w3.org/2000/svg">
<rect x="0" y="0" width="100%" height="100%" fill="rgb(250,250,250)"/>
<text x="400" y="40" font-size="17" font-family="Verdana" text-anchor="middle">pollwatch</text>
<text x="400" y="75" font-size="13" font-family="Verdana" text-anchor="middle">{esc}</text>
</svg>
"#
    )
}

pub(crate) fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn frame_json(f: &Frame) -> Value {
    json!({ "function": f.function, "file": f.file, "line": f.line })
}

#[cfg_attr(not(pollwatch_supported), allow(dead_code))]
pub(crate) fn episode_json(ep: &Episode) -> Value {
    let start_ms = ep
        .start
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    json!({
        "id": ep.id,
        "thread": ep.thread,
        "tid": ep.tid,
        "runtime": ep.runtime,
        "task_id": ep.task_id,
        "spawned_at": ep.spawned_at,
        "label": ep.label,
        "start_unix_ms": start_ms,
        "duration_ms": ep.duration.as_secs_f64() * 1000.0,
        "duration_uncertainty_ms": ep.uncertainty.as_secs_f64() * 1000.0,
        "detected_after_ms": ep.detected_after.as_secs_f64() * 1000.0,
        "samples": ep.samples,
        "missed_samples": ep.missed,
        "on_cpu_ms": ep.on_cpu.as_secs_f64() * 1000.0,
        "off_cpu_ms": ep.off_cpu.as_secs_f64() * 1000.0,
        "stack": ep.frames().iter().map(frame_json).collect::<Vec<_>>(),
        "top_user_frame": ep.top_user_frame().map(frame_json),
        "ended_by": ep.ended_by,
        "stacks": ep.stacks.iter().map(|s| json!({
            "weight_ms": s.weight.as_secs_f64() * 1000.0,
            "state": s.state.to_string(),
            "frames": s.frames.iter().map(frame_json).collect::<Vec<_>>(),
            "raw": s.raw.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Blocked time at one call site: the top user frame of each episode's
/// heaviest stack, weighted by the episode's duration.
pub(crate) struct Site {
    /// `function (file:line)`, or `[no stack]`.
    pub(crate) site: String,
    pub(crate) episodes: u64,
    pub(crate) blocked: Duration,
    /// State of the heaviest stack of the first episode seen there.
    pub(crate) state: String,
}

/// Call sites of `episodes`, most blocked time first (ties by name, so the
/// order is stable).
pub(crate) fn call_sites<'a>(episodes: impl IntoIterator<Item = &'a Episode>) -> Vec<Site> {
    let mut sites: BTreeMap<String, (u64, Duration, String)> = BTreeMap::new();
    for ep in episodes {
        let site = ep
            .top_user_frame()
            .or(ep.frames().first())
            .map(|f| f.to_string())
            .unwrap_or_else(|| "[no stack]".into());
        let state = ep
            .stacks
            .first()
            .map(|s| s.state.to_string())
            .unwrap_or_default();
        let e = sites.entry(site).or_insert((0, Duration::ZERO, state));
        e.0 += 1;
        e.1 += ep.duration;
    }
    let mut sites: Vec<Site> = sites
        .into_iter()
        .map(|(site, (episodes, blocked, state))| Site {
            site,
            episodes,
            blocked,
            state,
        })
        .collect();
    sites.sort_by_key(|s| std::cmp::Reverse(s.blocked));
    sites
}

/// The first `n` sites as the summary's lines: `  148.2 ms    1×  site  [state]`.
pub(crate) fn write_sites(s: &mut String, sites: &[Site], n: usize) {
    for site in sites.iter().take(n) {
        let _ = writeln!(
            s,
            "  {:>8.1} ms  {:>3}×  {}  [{}]",
            site.blocked.as_secs_f64() * 1000.0,
            site.episodes,
            site.site,
            site.state
        );
    }
}

/// The `n` longest of `episodes`, each with its heaviest stack.
pub(crate) fn write_longest<'a>(
    s: &mut String,
    episodes: impl IntoIterator<Item = &'a Episode>,
    n: usize,
) {
    let mut worst: Vec<&Episode> = episodes.into_iter().collect();
    worst.sort_by_key(|e| std::cmp::Reverse(e.duration));
    worst.truncate(n);
    if worst.is_empty() {
        return;
    }
    let _ = writeln!(s, "\nlongest episodes:");
    for ep in worst {
        let task = super::describe_poll(ep.label.as_deref(), ep.task_id, ep.spawned_at.as_deref())
            .map(|t| format!(" {t}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {:>8.1} ms  {} (tid {}){task}: on-cpu {:.1} ms, off-cpu {:.1} ms",
            ep.duration.as_secs_f64() * 1000.0,
            ep.thread,
            ep.tid,
            ep.on_cpu.as_secs_f64() * 1000.0,
            ep.off_cpu.as_secs_f64() * 1000.0,
        );
        for f in ep.frames().iter().take(8) {
            let _ = writeln!(s, "        {f}");
        }
    }
}

/// The human summary (also `Report`'s `Display`).
pub(crate) fn summary_text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pollwatch: {} blocking episode{} (polls longer than {} ms), {} ms blocked in total",
        r.total_episodes,
        if r.total_episodes == 1 { "" } else { "s" },
        ms(r.threshold),
        r.total_blocked.as_millis()
    );
    let sites = call_sites(&r.episodes);
    if !sites.is_empty() {
        let _ = writeln!(s, "\ntop blocking call sites:");
        write_sites(&mut s, &sites, 10);
    }
    write_longest(&mut s, &r.episodes, 5);
    let c = &r.counters;
    let notes: Vec<String> = [
        (
            c.excused,
            "long polls excused (block_in_place / blocking pool)",
        ),
        (
            c.descheduled,
            "long polls not reported: the thread was waiting for a CPU",
        ),
        (
            c.runtime_lock_waits,
            "long polls not reported: waiting on the runtime's own lock (a loaded machine)",
        ),
        (
            c.unsampled,
            "long polls not reported: they ended before a stack could be taken",
        ),
        (
            c.missed_samples,
            "samples missed (thread exited or did not answer in time)",
        ),
        (c.dropped_samples, "samples dropped (report stage behind)"),
        (
            c.dropped_episodes,
            "episodes kept only in episodes.jsonl (memory limit)",
        ),
        (
            c.suppressed_lines,
            "live lines suppressed by the rate limit",
        ),
        (c.unwatched_threads, "threads not watched (registry full)"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("  {n} {what}"))
    .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\nalso:");
        for n in notes {
            let _ = writeln!(s, "{n}");
        }
    }
    if let Some(d) = &r.dir {
        let _ = writeln!(s, "\nartifacts in {}", d.display());
    }
    s
}
