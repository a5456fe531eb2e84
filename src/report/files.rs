//! The artifact directory: `episodes.jsonl` (appended and flushed per
//! episode, so a crash loses at most the current one), and the artifacts
//! rendered from the episodes, `stacks.folded`, `flamegraph.svg`,
//! `profile.pb.gz`, `summary.txt` (each written to a temp file and renamed into place). The
//! process writes them as it runs; `pollwatch report` renders them again from
//! `episodes.jsonl`, with the same writers.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::jsonl::{self, Context};
use super::stacks::Stacks;
use super::{flamegraph, folded, pprof, summary, Episode, Report};
use crate::error::{Error, Result};

pub(crate) const SVG: &str = "flamegraph.svg";
pub(crate) const FOLDED: &str = "stacks.folded";
pub(crate) const JSONL: &str = "episodes.jsonl";
pub(crate) const SUMMARY: &str = "summary.txt";
pub(crate) const PPROF: &str = "profile.pb.gz";
/// Written at finish: what the run could see (`jsonl::RunFacts`).
pub(crate) const RUN: &str = "run.json";

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

    /// Appends one line and flushes it: the episode is on disk when this returns.
    pub(crate) fn append_episode(&mut self, ep: &Episode, threshold: Duration) -> Result<()> {
        let ctx = Context {
            threshold,
            cwd: super::path_base(),
        };
        self.jsonl
            .write_all(jsonl::line(ep, &ctx).as_bytes())
            .and_then(|_| self.jsonl.flush())
            .map_err(|source| Error::Write {
                path: self.dir.join(JSONL),
                source,
            })
    }

    /// Writes the folded stacks, the flamegraph and the summary.
    pub(crate) fn write_final(&self, report: &Report, stacks: &Stacks) -> Result<()> {
        write_rendered(&self.dir, report, stacks)
    }

    /// Writes `run.json`, once the run's counters are final.
    pub(crate) fn write_run(&self, report: &Report) -> Result<()> {
        let mut text = jsonl::run_json(report).to_string();
        text.push('\n');
        atomic_write(&self.dir.join(RUN), text.as_bytes())
    }
}

/// Writes every artifact rendered from the episodes into `dir`: the folded
/// stacks, the flamegraph, the pprof profile and the summary (not
/// `episodes.jsonl`).
pub(crate) fn write_rendered(dir: &Path, report: &Report, stacks: &Stacks) -> Result<()> {
    let lines = folded::lines(stacks);
    atomic_write(&dir.join(FOLDED), folded::text(&lines).as_bytes())?;
    atomic_write(&dir.join(SVG), &flamegraph::svg(report, &lines))?;
    atomic_write(&dir.join(PPROF), &pprof::gzipped(report, stacks))?;
    atomic_write(&dir.join(SUMMARY), summary::text(report).as_bytes())
}

pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
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
