//! The `pollwatch` command end to end, on artifact directories written by
//! real child processes that block under pollwatch.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

const THRESHOLD: Duration = Duration::from_millis(20);
/// Each blocker holds its worker this long: several thresholds, so the
/// episode is reported however loaded the machine.
const BLOCK: Duration = Duration::from_millis(120);

#[inline(never)]
fn cli_child_sleeps_in_config_load() {
    std::thread::sleep(std::hint::black_box(BLOCK));
}

#[inline(never)]
fn cli_child_sleeps_in_report_render() {
    std::thread::sleep(std::hint::black_box(BLOCK));
}

/// The child's body, when this test binary runs as one: `blocks` episodes in
/// the blocker `which` names, written under `POLLWATCH_CLI_OUT`.
#[test]
#[ignore = "the child process of the other tests, run by them"]
fn child_process() {
    let out = std::env::var("POLLWATCH_CLI_OUT").expect("run as a child, by the other tests");
    let which = std::env::var("POLLWATCH_CLI_WHICH").expect("POLLWATCH_CLI_WHICH");
    let blocks: usize = std::env::var("POLLWATCH_CLI_BLOCKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let guard = pollwatch::Config::default()
        .threshold(THRESHOLD)
        .live(false)
        .output_dir(out)
        .start()
        .unwrap();
    if which == "root_only" {
        // Only the `block_on` root wrapped, a plain runtime: the spawned
        // task's sleep is on a worker no probe sees.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(pollwatch::watch(async {
            tokio::spawn(async { cli_child_sleeps_in_config_load() })
                .await
                .unwrap();
        }));
        drop(rt);
        let report = guard.finish().unwrap();
        assert_eq!(report.episodes().len(), 0, "{report}");
        return;
    }
    let rt = pollwatch::tokio::instrument(&mut tokio::runtime::Builder::new_multi_thread())
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..blocks {
            let which = which.clone();
            tokio::spawn(pollwatch::watch(async move {
                tokio::task::yield_now().await;
                match which.as_str() {
                    "config" => cli_child_sleeps_in_config_load(),
                    _ => cli_child_sleeps_in_report_render(),
                }
            }))
            .await
            .unwrap();
        }
    });
    if std::env::var_os("POLLWATCH_CLI_HANG").is_some() {
        // Wait to be killed, the guard still running: `finish` never comes.
        std::thread::sleep(Duration::from_secs(120));
        std::process::exit(3);
    }
    drop(rt);
    let report = guard.finish().unwrap();
    assert_eq!(report.episodes().len(), blocks, "{report}");
}

/// Runs this test binary as a child process that blocks; returns its
/// artifact directory.
fn run_child(base: &Path, which: &str, blocks: usize) -> PathBuf {
    let before: Vec<PathBuf> = dirs_in(base);
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process", "--ignored", "--nocapture"])
        .env("POLLWATCH_CLI_OUT", base)
        .env("POLLWATCH_CLI_WHICH", which)
        .env("POLLWATCH_CLI_BLOCKS", blocks.to_string())
        .env_remove("POLLWATCH")
        .env_remove("POLLWATCH_DIR")
        .status()
        .unwrap();
    assert!(status.success(), "child {which} failed");
    let new: Vec<PathBuf> = dirs_in(base)
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new.into_iter().next().unwrap()
}

fn dirs_in(base: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(base)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Two runs, made once per test binary: `config` blocks twice in
/// `cli_child_sleeps_in_config_load`, `render` once in the other blocker.
struct Runs {
    base: PathBuf,
    config: PathBuf,
    render: PathBuf,
}

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let base = scratch("runs");
        let config = run_child(&base, "config", 2);
        let render = run_child(&base, "render", 1);
        Runs {
            base,
            config,
            render,
        }
    })
}

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("pollwatch-cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A copy of an artifact directory, to change without touching the original.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn pollwatch(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pollwatch"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn report_merges_two_processes() {
    let r = runs();
    let out = scratch("merged");
    let o = pollwatch(&[&"report", &r.base, &"--out", &out]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("3 blocking episodes"), "{stdout}");
    for f in [
        "cli_child_sleeps_in_config_load",
        "cli_child_sleeps_in_report_render",
    ] {
        assert!(stdout.contains(f), "{f} in the summary: {stdout}");
        assert!(
            read(&out.join("flamegraph.svg")).contains(f),
            "{f} in the SVG"
        );
        assert!(read(&out.join("stacks.folded")).contains(f));
    }
    assert!(stdout.contains("cli/tests/cli.rs:"), "file:line: {stdout}");
    assert_eq!(read(&out.join("episodes.jsonl")).lines().count(), 3);
    assert_eq!(read(&out.join("summary.txt")), stdout);
    let mut pb = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(out.join("profile.pb.gz")).unwrap())
        .read_to_end(&mut pb)
        .unwrap();
    let pb = text(&pb);
    assert!(pb.contains("cli_child_sleeps_in_config_load"));
    assert!(pb.contains("cli_child_sleeps_in_report_render"));
}

#[test]
fn report_renders_one_run_again_in_place() {
    let dir = scratch("in-place").join("run");
    copy_dir(&runs().config, &dir);
    let jsonl = read(&dir.join("episodes.jsonl"));
    for f in [
        "flamegraph.svg",
        "stacks.folded",
        "summary.txt",
        "profile.pb.gz",
    ] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let o = pollwatch(&[&"report", &dir]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("2 blocking episodes"));
    for f in [
        "flamegraph.svg",
        "stacks.folded",
        "summary.txt",
        "profile.pb.gz",
    ] {
        assert!(dir.join(f).is_file(), "{f} rendered again");
    }
    assert_eq!(
        read(&dir.join("episodes.jsonl")),
        jsonl,
        "the source is untouched"
    );
    assert_eq!(
        read(&dir.join("stacks.folded")),
        read(&runs().config.join("stacks.folded")),
        "the same folded stacks as the process wrote"
    );
}

#[test]
fn a_truncated_episodes_jsonl_is_used_and_its_bad_line_reported() {
    let dir = scratch("truncated").join("run");
    copy_dir(&runs().config, &dir);
    let jsonl = read(&dir.join("episodes.jsonl"));
    let first = jsonl.lines().next().unwrap();
    // A process killed mid-write: half a line at the end.
    std::fs::write(
        dir.join("episodes.jsonl"),
        format!("{jsonl}{}", &first[..first.len() / 2]),
    )
    .unwrap();
    let o = pollwatch(&[&"report", &dir]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("skipped 1 malformed line"), "{stderr}");
    assert!(stderr.contains("episodes.jsonl:3:"), "{stderr}");
    assert!(stdout.contains("2 blocking episodes"), "{stdout}");
    let o = pollwatch(&[&"check", &dir]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("skipped 1 malformed line"));
}

#[test]
fn check_fails_with_the_call_sites_and_passes_within_budget() {
    let r = runs();
    let o = pollwatch(&[&"check", &r.base]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("3 blocking episodes > 0 allowed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cli_child_sleeps_in_config_load"),
        "{stderr}"
    );
    assert!(stderr.contains("cli/tests/cli.rs:"), "file:line: {stderr}");

    let o = pollwatch(&[&"check", &r.config, &"--max-episode", &"20ms"]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("longer than 20 ms allowed"), "{stderr}");

    let o = pollwatch(&[
        &"check",
        &r.base,
        &"--max-episode",
        &"1.5s",
        &"--max-total",
        &"10s",
        &"--max-episodes",
        &"3",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("within budget: 3 episodes"));
}

#[test]
fn check_and_report_say_when_workers_were_busy_outside_watched_futures() {
    let base = scratch("root_only");
    let run = run_child(&base, "root_only", 0);
    let facts = read(&run.join("run.json"));
    assert!(facts.contains("\"busy_outside_watched_ms\""), "{facts}");
    // Within budget, and says what it could not see.
    let o = pollwatch(&[&"check", &run]);
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: worker busy") && stderr.contains("outside watched futures"),
        "{stderr}"
    );
    assert!(stderr.contains("pollwatch::tokio::attach()"), "{stderr}");
    let o = pollwatch(&[&"report", &run, &"-o", &scratch("root_only_report")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("outside watched futures"),
        "{}",
        text(&o.stdout)
    );
    // Runs that watched every poll say nothing of the kind.
    let o = pollwatch(&[&"check", &runs().base, &"--max-episodes", &"3"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("warning"), "{}", text(&o.stderr));
}

#[test]
fn diff_draws_a_differential_flamegraph_and_names_what_changed() {
    let r = runs();
    let svg = scratch("diff").join("diff.svg");
    let o = pollwatch(&[&"diff", &r.config, &r.render, &"-o", &svg]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let gone = stdout
        .lines()
        .find(|l| l.contains("cli_child_sleeps_in_config_load"))
        .unwrap();
    assert!(gone.contains("gone"), "{stdout}");
    let new = stdout
        .lines()
        .find(|l| l.contains("cli_child_sleeps_in_report_render"))
        .unwrap();
    assert!(new.contains("new"), "{stdout}");
    let svg = read(&svg);
    assert!(svg.contains("cli_child_sleeps_in_report_render"));
    assert!(svg.contains("pollwatch diff"));
}

#[test]
fn bad_input_is_a_clear_error_and_a_non_zero_exit() {
    let missing = scratch("bad").join("no-such-dir");
    for args in [
        vec!["report", missing.to_str().unwrap()],
        vec!["check", missing.to_str().unwrap()],
    ] {
        let o = pollwatch(
            &args
                .iter()
                .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
                .collect::<Vec<_>>(),
        );
        assert_eq!(o.status.code(), Some(2));
        let stderr = text(&o.stderr);
        assert!(stderr.contains("no-such-dir"), "{stderr}");
    }
    let empty = scratch("bad-empty");
    let o = pollwatch(&[&"report", &empty]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("no pollwatch artifacts"),
        "{}",
        text(&o.stderr)
    );
    let o = pollwatch(&[&"check", &empty, &"--max-episode", &"50"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("has no unit"),
        "{}",
        text(&o.stderr)
    );
    let o = pollwatch(&[&"report"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t = std::time::Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond().then(|| t.elapsed())
}

fn lines_in(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}

/// A service killed with SIGKILL (or SIGTERM, whose default action is the
/// same: no destructor, no `finish`) keeps every episode that ended before
/// its death: its artifacts are rewritten soon after the last episode, with
/// no later event needed, and `pollwatch report` recovers them all.
#[test]
fn a_killed_process_leaves_fresh_artifacts_and_report_recovers_every_episode() {
    killed_by("KILL");
}

/// `docker stop`, systemd and Kubernetes send SIGTERM; its default action
/// ends the process as abruptly as SIGKILL.
#[test]
fn a_process_stopped_by_sigterm_leaves_fresh_artifacts() {
    killed_by("TERM");
}

fn killed_by(signal: &str) {
    let base = scratch(&format!("killed-{signal}"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process", "--ignored", "--nocapture"])
        .env("POLLWATCH_CLI_OUT", &base)
        .env("POLLWATCH_CLI_WHICH", "config")
        .env("POLLWATCH_CLI_BLOCKS", "3")
        .env("POLLWATCH_CLI_HANG", "1")
        .env_remove("POLLWATCH")
        .env_remove("POLLWATCH_DIR")
        .spawn()
        .unwrap();
    let dir = {
        let found = wait_for(Duration::from_secs(30), || !dirs_in(&base).is_empty());
        assert!(found.is_some(), "the child never created its directory");
        dirs_in(&base).remove(0)
    };
    let jsonl = dir.join("episodes.jsonl");
    // Each block is several thresholds long; on a loaded machine the three
    // may take a while, but each episode is appended as it ends.
    let ended = wait_for(Duration::from_secs(60), || lines_in(&jsonl) >= 3);
    assert!(
        ended.is_some(),
        "3 episodes never reached {}",
        jsonl.display()
    );
    // No event follows the last episode: the rewrite must come from the
    // stage's own timer, due 500 ms after the last episode at most
    // (flush::QUIET.max(flush::MIN_GAP)); the bound here allows for a
    // machine so loaded that the report thread waits for a CPU.
    let summary = dir.join("summary.txt");
    let fresh = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&summary).is_ok_and(|s| s.contains("3 blocking episodes"))
    });
    if signal == "KILL" {
        child.kill().unwrap();
    } else {
        // procps' kill(1): std has no way to send another signal.
        let sent = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .expect("kill(1) (Debian: procps)");
        assert!(sent.success());
    }
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(if signal == "KILL" { 9 } else { 15 }),
        "{status:?}"
    );
    let after = fresh.unwrap_or_else(|| {
        panic!(
            "summary.txt not rewritten after the last episode:\n{}",
            std::fs::read_to_string(&summary).unwrap_or_default()
        )
    });
    eprintln!("summary rewritten {after:?} after the third episode was appended");
    let folded = read(&dir.join("stacks.folded"));
    assert!(
        folded.contains("cli_child_sleeps_in_config_load"),
        "{folded}"
    );
    assert!(read(&dir.join("flamegraph.svg")).contains("3 blocking episodes"));
    assert!(dir.join("profile.pb.gz").is_file());

    // And from the source of truth, whatever the rendered files say.
    let o = pollwatch(&[&"report", &dir]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(stdout.contains("3 blocking episodes"), "{stdout}");
    assert!(
        stdout.contains("cli_child_sleeps_in_config_load"),
        "{stdout}"
    );
}
