//! Artifact directories read back: the episodes of one or more runs (the
//! replicas of a load test, say) from their `episodes.jsonl`, merged into one
//! [`Report`] the writers render again.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files::{JSONL, RUN};
use super::jsonl::{parse_line, parse_run, RunFacts};
use super::stacks::Stacks;
use super::{Episode, Report};
use crate::error::{Error, Result};

pub(crate) use super::artifacts::MalformedLine as Malformed;

/// Runs read back and merged.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) report: Report,
    pub(crate) stacks: Stacks,
    /// The `episodes.jsonl` files read.
    pub(crate) files: Vec<PathBuf>,
    pub(crate) malformed: Vec<Malformed>,
    /// The working directory the first run recorded: to show source paths as that
    /// process did.
    pub(crate) cwd: Option<String>,
}

/// The `episodes.jsonl` files of `dir`: its own, or, for a directory of runs
/// (`target/pollwatch/`), those of each run in it.
fn jsonl_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let err = |reason: String| Error::Artifacts {
        path: dir.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(dir).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(err("not a directory".into()));
    }
    let own = dir.join(JSONL);
    if own.is_file() {
        return Ok(vec![own]);
    }
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| err(e.to_string()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(JSONL))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(err(format!(
            "no pollwatch artifacts ({JSONL} neither in it nor in its subdirectories)"
        )));
    }
    Ok(found)
}

/// Reads every run in `dirs`; `Err` for a directory that is missing or holds
/// no artifacts. Malformed lines are skipped and listed, the rest used.
pub(crate) fn load<P: AsRef<Path>>(dirs: &[P]) -> Result<Loaded> {
    let mut files = Vec::new();
    for d in dirs {
        files.extend(jsonl_files(d.as_ref())?);
    }
    let mut episodes: Vec<Episode> = Vec::new();
    let mut malformed = Vec::new();
    let mut threshold: Option<Duration> = None;
    let mut cwd: Option<String> = None;
    for file in &files {
        let bytes = fs::read(file).map_err(|e| Error::Artifacts {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        // A kill mid-write can leave any bytes at the end: read what is text.
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match parse_line(line) {
                Ok(p) => {
                    threshold = match (threshold, p.threshold) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    cwd = cwd.or(p.cwd);
                    episodes.push(p.episode);
                }
                Err(reason) => malformed.push(Malformed {
                    file: file.clone(),
                    line: i + 1,
                    reason,
                }),
            }
        }
    }
    // What each finished run could see. A run with no `run.json` (killed,
    // or written by an older pollwatch) says nothing either way.
    let facts: Vec<RunFacts> = files
        .iter()
        .filter_map(|f| fs::read_to_string(f.with_file_name(RUN)).ok())
        .filter_map(|t| parse_run(&t))
        .collect();
    // In the order they ended, across processes.
    episodes.sort_by_key(|e| e.start + e.duration);
    let mut report = Report {
        threshold: threshold.unwrap_or(crate::Config::DEFAULT_THRESHOLD),
        total_episodes: episodes.len() as u64,
        total_blocked: episodes.iter().map(|e| e.duration).sum(),
        unwind: episodes.first().map(|e| e.unwind).unwrap_or_default(),
        episodes,
        ..Report::default()
    };
    report.counters.polls_seen = facts.iter().map(|f| f.polls_seen).sum();
    report.counters.busy_outside_watched = facts.iter().map(|f| f.busy_outside_watched).sum();
    // Nothing watched in all of them: one run that watched is enough for
    // the merged one not to be a silent zero.
    report.watched_nothing = !facts.is_empty()
        && facts.len() == files.len()
        && facts.iter().all(|f| f.watched_nothing)
        && report.total_episodes == 0;
    Ok(Loaded {
        stacks: Stacks::of(&report.episodes),
        report,
        files,
        malformed,
        cwd,
    })
}
