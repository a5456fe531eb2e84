//! [`Artifacts`]: runs read back from their `episodes.jsonl`, to render,
//! merge, compare and check them after the process is gone. The `pollwatch`
//! command is built on this.

use std::fs;
use std::path::{Path, PathBuf};

use super::files::{self, atomic_write, JSONL};
use super::jsonl::{self, Context};
use super::load::{self, Loaded};
use super::{folded, Report};
use crate::error::{Error, Result};

/// One or more artifact directories read back from their `episodes.jsonl`,
/// merged: the replicas of a load test, or a run killed before it could
/// write its flamegraph.
///
/// `episodes.jsonl` is the source of truth: [`write_to`](Artifacts::write_to)
/// renders every other artifact from it with the writers the process uses.
/// A line that is not an episode (a process killed mid-write leaves a
/// truncated last line) is skipped and listed in
/// [`malformed`](Artifacts::malformed); the rest is used.
///
/// ```no_run
/// let mut runs = pollwatch::Artifacts::read(&["target/pollwatch"])?; // every run in it
/// for bad in runs.malformed() {
///     eprintln!("skipped {}:{}: {}", bad.file.display(), bad.line, bad.reason);
/// }
/// runs.write_to("target/pollwatch-merged".as_ref())?;
/// println!("{}", runs.report());
/// # Ok::<(), pollwatch::Error>(())
/// ```
#[derive(Debug)]
pub struct Artifacts {
    loaded: Loaded,
}

/// A line of an `episodes.jsonl` that is not an episode, skipped by
/// [`Artifacts::read`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MalformedLine {
    /// The `episodes.jsonl` it is in.
    pub file: PathBuf,
    /// Its line number, from 1.
    pub line: usize,
    /// Why it is not an episode.
    pub reason: String,
}

impl Artifacts {
    /// Reads each directory: an artifact directory (`<exe>-<pid>/`), or a
    /// directory of them (`target/pollwatch/`), whose runs are all read.
    ///
    /// [`Error::Artifacts`] for a directory that is missing or holds no
    /// `episodes.jsonl`. Source paths are shown as the process that wrote
    /// them showed them (relative to its working directory), unless this
    /// process showed a path before.
    pub fn read<P: AsRef<Path>>(dirs: &[P]) -> Result<Artifacts> {
        if dirs.is_empty() {
            return Err(Error::Artifacts {
                path: PathBuf::new(),
                reason: "no artifact directory given".into(),
            });
        }
        let loaded = load::load(dirs)?;
        super::set_path_base(loaded.cwd.clone());
        Ok(Artifacts { loaded })
    }

    /// The merged report: every episode read, in the order they ended.
    /// Of the counters it has what each finished run recorded in its
    /// `run.json` (`polls_seen`, `busy_outside_watched`, and whether it
    /// watched nothing: [`Report::coverage_note`]); the rest are in each
    /// run's own `summary.txt`.
    pub fn report(&self) -> &Report {
        &self.loaded.report
    }

    /// The `episodes.jsonl` files read.
    pub fn sources(&self) -> &[PathBuf] {
        &self.loaded.files
    }

    /// Lines skipped because they are not episodes.
    pub fn malformed(&self) -> &[MalformedLine] {
        &self.loaded.malformed
    }

    /// `stacks.folded` of the merged runs, as text.
    pub fn folded(&self) -> String {
        folded::text(&folded::lines(&self.loaded.stacks))
    }

    /// Writes `flamegraph.svg`, `stacks.folded`, `profile.pb.gz` and
    /// `summary.txt` into `dir` (created if needed), and the merged
    /// `episodes.jsonl` unless `dir` is where the only one read is (a source
    /// is never rewritten). The report's output directory becomes `dir`.
    pub fn write_to(&mut self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|source| Error::OutputDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let jsonl_path = dir.join(JSONL);
        let is_source = self.loaded.files.iter().any(|f| same_file(f, &jsonl_path));
        if !is_source {
            let cwd = self.loaded.cwd.clone();
            let ctx = Context {
                threshold: self.loaded.report.threshold,
                cwd: cwd.as_deref(),
            };
            let text: String = self
                .loaded
                .report
                .episodes
                .iter()
                .map(|e| jsonl::line(e, &ctx))
                .collect();
            atomic_write(&jsonl_path, text.as_bytes())?;
        }
        self.loaded.report.dir = Some(dir.to_path_buf());
        files::write_rendered(dir, &self.loaded.report, &self.loaded.stacks)
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
