//! `pollwatch`: render, merge, compare and check the artifacts pollwatch
//! leaves after a run, from their `episodes.jsonl`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pollwatch::{Artifacts, Budget, Report};

/// Exit code for bad input: a missing directory, no artifacts, a bad flag.
const BAD_INPUT: u8 = 2;

#[derive(Parser)]
#[command(
    name = "pollwatch",
    version,
    about = "Render, merge, compare and check pollwatch's artifacts after a run.",
    long_about = "Render, merge, compare and check pollwatch's artifacts after a run.\n\n\
        Each DIR is an artifact directory (<exe>-<pid>/, holding episodes.jsonl) or a \
        directory of them (target/pollwatch/), whose runs are all read and merged. \
        episodes.jsonl is the source of truth: a truncated or malformed line is skipped, \
        counted and reported, and the rest is used.",
    after_help = "Examples:\n  \
        pollwatch report target/pollwatch/                 # merge every run, print the summary\n  \
        pollwatch report target/pollwatch/app-4242/        # re-render one run (after a SIGKILL)\n  \
        pollwatch diff before/ after/ -o diff.svg          # what got better or worse\n  \
        pollwatch check target/pollwatch/ --max-episode 50ms --max-total 1s"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render flamegraph.svg, stacks.folded, profile.pb.gz and summary.txt, and print the summary.
    #[command(after_help = "Examples:\n  \
        pollwatch report target/pollwatch/app-4242/\n  \
        pollwatch report replica-a/ replica-b/ --out merged/")]
    Report {
        /// Artifact directories, or directories of them.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Where to write [default: DIR itself for one run, else ./pollwatch-report].
        /// Keep it outside the DIRs: a merged directory inside one is read as one more run next time.
        #[arg(short, long, value_name = "OUT")]
        out: Option<PathBuf>,
    },
    /// Write a differential flamegraph (red: more blocked after, blue: less) and print the call sites that changed.
    #[command(
        after_help = "Example:\n  pollwatch diff target/pollwatch/app-100/ target/pollwatch/app-200/ -o diff.svg"
    )]
    Diff {
        /// The run (or directory of runs) before the change.
        before: PathBuf,
        /// The run (or directory of runs) after it.
        after: PathBuf,
        /// The differential flamegraph to write.
        #[arg(short, long, value_name = "SVG", default_value = "pollwatch-diff.svg")]
        out: PathBuf,
    },
    /// Exit 1, naming the offending call sites, if the runs went over a budget; 0 if it holds.
    ///
    /// With no limit given, any blocking episode fails the check.
    #[command(after_help = "Examples:\n  \
        pollwatch check target/pollwatch/                          # no blocking at all\n  \
        pollwatch check target/pollwatch/ --max-episode 50ms --max-total 1.5s --max-episodes 10")]
    Check {
        /// Artifact directories, or directories of them.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// No single episode longer than this (50ms, 1s, 1.5s, 250us).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        max_episode: Option<Duration>,
        /// At most this much blocked in all episodes together.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        max_total: Option<Duration>,
        /// At most this many episodes.
        #[arg(long, value_name = "N")]
        max_episodes: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(BAD_INPUT)
        }
    }
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Report { dirs, out } => {
            let mut runs = read(&dirs)?;
            let out = out.unwrap_or_else(|| default_out(&dirs, &runs));
            runs.write_to(&out).map_err(|e| e.to_string())?;
            print!("{}", runs.report());
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { before, after, out } => {
            let (a, b) = (read(&[before])?, read(&[after])?);
            diff_svg(&a, &b, &out)?;
            print!("{}", diff_table(a.report(), b.report()));
            println!("\ndifferential flamegraph in {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            dirs,
            max_episode,
            max_total,
            max_episodes,
        } => {
            let runs = read(&dirs)?;
            let mut budget = Budget::new();
            if let Some(d) = max_episode {
                budget = budget.max_episode(d);
            }
            if let Some(d) = max_total {
                budget = budget.max_total_blocked(d);
            }
            if let Some(n) = max_episodes {
                budget = budget.max_episodes(n);
            }
            let r = runs.report();
            // A pass over runs that could not see their polls is no pass
            // to trust: said on every outcome.
            if let Some(note) = r.coverage_note() {
                eprintln!("pollwatch: warning: {note}");
            }
            match r.check(&budget) {
                Ok(()) => {
                    println!(
                        "pollwatch: within budget: {} episode{}, {:.1} ms blocked, in {} run{}",
                        r.episodes().len(),
                        plural(r.episodes().len()),
                        ms(r.total_blocked()),
                        runs.sources().len(),
                        plural(runs.sources().len()),
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(exceeded) => {
                    eprint!("{exceeded}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// Reads the runs and reports the lines skipped.
fn read(dirs: &[PathBuf]) -> Result<Artifacts, String> {
    let runs = Artifacts::read(dirs).map_err(|e| e.to_string())?;
    let bad = runs.malformed();
    if !bad.is_empty() {
        eprintln!(
            "pollwatch: skipped {} malformed line{} (the rest is used):",
            bad.len(),
            plural(bad.len())
        );
        for m in bad.iter().take(10) {
            eprintln!("  {}:{}: {}", m.file.display(), m.line, m.reason);
        }
        if bad.len() > 10 {
            eprintln!("  ... and {} more", bad.len() - 10);
        }
    }
    Ok(runs)
}

/// One run given: render beside its `episodes.jsonl`. Several: a new directory.
fn default_out(dirs: &[PathBuf], runs: &Artifacts) -> PathBuf {
    match (dirs, runs.sources()) {
        ([_], [only]) => only
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        _ => PathBuf::from("pollwatch-report"),
    }
}

fn diff_svg(before: &Artifacts, after: &Artifacts, out: &Path) -> Result<(), String> {
    let mut lines = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options::default(),
        before.folded().as_bytes(),
        after.folded().as_bytes(),
        &mut lines,
    )
    .map_err(|e| format!("pollwatch: cannot compare the folded stacks: {e}"))?;
    let lines = String::from_utf8_lossy(&lines).into_owned();
    let mut svg = Vec::new();
    if lines.trim().is_empty() {
        svg.extend_from_slice(EMPTY_DIFF.as_bytes());
    } else {
        let mut opts = inferno::flamegraph::Options::default();
        opts.title = format!(
            "pollwatch diff: {:.0} ms blocked before, {:.0} ms after",
            ms(before.report().total_blocked()),
            ms(after.report().total_blocked())
        );
        opts.subtitle = Some(
            "width = blocked time after (µs); red = more blocked than before, blue = less".into(),
        );
        opts.count_name = "µs".into();
        opts.hash = true;
        inferno::flamegraph::from_lines(&mut opts, lines.lines(), &mut svg)
            .map_err(|e| format!("pollwatch: cannot draw the differential flamegraph: {e}"))?;
    }
    std::fs::write(out, svg).map_err(|e| format!("pollwatch: cannot write {}: {e}", out.display()))
}

const EMPTY_DIFF: &str = r#"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="800" height="120" xmlns="http://www.w3.org/2000/svg">
<text x="400" y="60" font-size="15" font-family="Verdana" text-anchor="middle">pollwatch diff: no blocking before or after</text>
</svg>
"#;

/// Blocked time and episodes at one call site.
type Site = (Duration, usize);

/// Blocked time and episodes per call site: the top user frame of each
/// episode's heaviest stack, as in the summary.
fn sites(r: &Report) -> BTreeMap<String, Site> {
    let mut m: BTreeMap<String, Site> = BTreeMap::new();
    for ep in r.episodes() {
        let site = ep
            .top_user_frame()
            .or(ep.frames().first())
            .map_or_else(|| "[no stack]".to_owned(), |f| f.to_string());
        let e = m.entry(site).or_default();
        e.0 += ep.duration();
        e.1 += 1;
    }
    m
}

/// The call sites that changed, most changed first.
fn diff_table(before: &Report, after: &Report) -> String {
    let (a, b) = (sites(before), sites(after));
    let mut rows: Vec<(&String, Site, Site)> = a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|k| {
            (
                k,
                a.get(k).copied().unwrap_or_default(),
                b.get(k).copied().unwrap_or_default(),
            )
        })
        .collect();
    let change = |r: &(&String, (Duration, usize), (Duration, usize))| ms(r.2 .0) - ms(r.1 .0);
    rows.sort_by(|x, y| change(y).abs().total_cmp(&change(x).abs()));
    let mut s = format!(
        "pollwatch diff: {} episodes, {:.1} ms blocked before; {} episodes, {:.1} ms after\n\n",
        before.episodes().len(),
        ms(before.total_blocked()),
        after.episodes().len(),
        ms(after.total_blocked())
    );
    if rows.is_empty() {
        s.push_str("no blocking call sites before or after\n");
        return s;
    }
    s.push_str(&format!(
        "  {:>10} {:>4}  {:>10} {:>4}  {:>10}  {:<7} call site\n",
        "before", "", "after", "", "change", ""
    ));
    for r in &rows {
        let verdict = match (r.1 .1, r.2 .1) {
            (0, _) => "new",
            (_, 0) => "gone",
            _ if change(r) > 0.0 => "worse",
            _ if change(r) < 0.0 => "better",
            _ => "same",
        };
        s.push_str(&format!(
            "  {:>7.1} ms {:>3}×  {:>7.1} ms {:>3}×  {:>+7.1} ms  {verdict:<7} {}\n",
            ms(r.1 .0),
            r.1 .1,
            ms(r.2 .0),
            r.2 .1,
            change(r),
            r.0
        ));
    }
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `50ms`, `1s`, `1.5s`, `250us` (or `µs`), `2m`: a number and a unit.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} has no unit: write 50ms, 1s or 1.5s"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write 50ms, 1s or 1.5s"))?;
    let secs = match unit.trim() {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: use ns, us, ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("50ms"), Ok(ms(50)));
        assert_eq!(parse_duration("1s"), Ok(ms(1000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        for bad in ["50", "ms", "1.2.3s", "5 parsecs", "", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
