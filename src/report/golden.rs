//! Golden files for every artifact format, under `tests/golden/`: the
//! schemas are reviewed files. `POLLWATCH_BLESS=1 cargo test golden` writes
//! them anew after an intended change.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::jsonl::{self, Context};
use super::stacks::Stacks;
use super::{flamegraph, folded, pprof, summary, Episode, Frame, Report, Stack, ThreadState};

fn frame(function: &str, file: Option<&str>, line: Option<u32>) -> Frame {
    Frame {
        function: function.into(),
        file: file.map(Into::into),
        line,
        address: 0,
        inlined: false,
    }
}

fn sleep_frames() -> Vec<Frame> {
    vec![
        frame("clock_nanosleep", None, None),
        frame(
            "std::thread::functions::sleep",
            Some("/rustc/abc/library/std/src/thread/functions.rs"),
            Some(289),
        ),
        frame(
            "app::config::load_synchronously",
            Some("/home/dev/app/src/config.rs"),
            Some(77),
        ),
        frame(
            "app::handler::{{closure}}",
            Some("/home/dev/app/src/handler.rs"),
            Some(12),
        ),
    ]
}

#[allow(clippy::too_many_arguments)]
fn episode(
    id: u64,
    thread: &str,
    task_id: Option<u64>,
    spawned_at: Option<&str>,
    start_ms: u64,
    duration_us: u64,
    stacks: Vec<Stack>,
) -> Episode {
    let on_cpu = stacks
        .iter()
        .filter(|s| s.state == ThreadState::OnCpu)
        .map(|s| s.weight)
        .sum();
    let off_cpu = stacks
        .iter()
        .filter(|s| s.state != ThreadState::OnCpu)
        .map(|s| s.weight)
        .sum();
    Episode {
        id,
        thread: thread.into(),
        tid: 4000 + id as i32,
        runtime: (id == 2).then(|| "api".into()),
        task_id,
        spawned_at: spawned_at.map(Into::into),
        label: (id == 2).then(|| "GET /login".into()),
        start: UNIX_EPOCH + Duration::from_millis(start_ms),
        detected_after: Duration::from_micros(21_250),
        duration: Duration::from_micros(duration_us),
        uncertainty: Duration::from_micros(500),
        samples: 40,
        missed: (id == 3) as u32,
        on_cpu,
        off_cpu,
        runnable: Duration::from_micros(1_500 * id),
        stacks,
        unwind: crate::config::Unwind::Auto,
        ended_by: if id == 4 {
            crate::report::EndedBy::StillBlockedAtStop
        } else {
            crate::report::EndedBy::PollReturned
        },
        // One episode found by sampling, so its fields are exercised.
        mode: match id {
            4 => crate::report::EpisodeMode::Sampled,
            _ => crate::report::EpisodeMode::Watched,
        },
        future: (id == 4).then(|| "app::serve::{{closure}}".to_owned()),
    }
}

fn stack(frames: Vec<Frame>, us: u64, state: ThreadState) -> Stack {
    Stack {
        raw: (0..frames.len() as u64)
            .map(|i| 0x5555_0000 + i * 16)
            .collect(),
        // One stack whose copy was cut short, so the field is exercised.
        truncated: frames.len() == 2,
        frames,
        weight: Duration::from_micros(us),
        state,
    }
}

/// Episodes that use every field and every shape of root and state.
pub(crate) fn episodes() -> Vec<Episode> {
    let futex = ThreadState::OffCpu(Some("futex".into()));
    let hash = vec![
        frame(
            "sha2::sha256::compress256",
            Some("/home/dev/.cargo/registry/src/index.crates.io-0/sha2-0.10.8/src/sha256.rs"),
            Some(40),
        ),
        frame(
            "app::hash_passwords::<[u8; 32]>",
            Some("/home/dev/app/src/auth.rs"),
            Some(88),
        ),
    ];
    let lock = vec![
        frame("syscall", None, None),
        frame(
            "std::sys::sync::mutex::futex::Mutex::lock_contended",
            Some("/rustc/abc/library/std/src/sys/sync/mutex/futex.rs"),
            Some(64),
        ),
        frame(
            "app::update_shared_counter::{{closure}}",
            Some("/home/dev/app/src/counter.rs"),
            Some(114),
        ),
    ];
    vec![
        episode(
            1,
            "tokio-rt-worker",
            None,
            Some("src/main.rs:49:26"),
            1_700_000_000_000,
            148_200,
            vec![stack(
                sleep_frames(),
                147_000,
                ThreadState::OffCpu(Some("clock_nanosleep".into())),
            )],
        ),
        episode(
            2,
            "tokio-rt-worker",
            Some(7),
            Some("src/auth.rs:20:5"),
            1_700_000_000_200,
            111_400,
            vec![
                stack(hash.clone(), 100_000, ThreadState::OnCpu),
                stack(hash[1..].to_vec(), 11_000, ThreadState::OnCpu),
            ],
        ),
        episode(
            3,
            "worker-2",
            Some(9),
            None,
            1_700_000_000_400,
            58_000,
            vec![stack(lock.clone(), 57_000, futex.clone())],
        ),
        episode(
            4,
            "async-std/runtime",
            None,
            None,
            1_700_000_000_600,
            58_100,
            vec![stack(lock, 58_000, futex)],
        ),
    ]
}

pub(crate) fn report(episodes: Vec<Episode>) -> Report {
    Report {
        threshold: Duration::from_millis(20),
        total_episodes: episodes.len() as u64,
        total_blocked: episodes.iter().map(|e| e.duration).sum(),
        episodes,
        ..Report::default()
    }
}

const CTX: Context<'static> = Context {
    threshold: Duration::from_millis(20),
    cwd: Some("/home/dev/app"),
};

fn golden(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("POLLWATCH_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `POLLWATCH_BLESS=1 cargo test golden` to create it",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs from what the writer produces now:\n--- expected\n{}\n--- actual\n{}\n\
             If the change is intended, run `POLLWATCH_BLESS=1 cargo test golden` and review the diff.",
            path.display(),
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(actual)
        );
    }
}

fn jsonl_text(episodes: &[Episode]) -> String {
    episodes.iter().map(|e| jsonl::line(e, &CTX)).collect()
}

#[test]
fn golden_episodes_jsonl() {
    golden("episodes.jsonl", jsonl_text(&episodes()).as_bytes());
}

#[test]
fn golden_stacks_folded() {
    let lines = folded::lines(&Stacks::of(&episodes()));
    golden("stacks.folded", folded::text(&lines).as_bytes());
}

#[test]
fn golden_summary_txt() {
    golden("summary.txt", summary::text(&report(episodes())).as_bytes());
}

#[test]
fn golden_flamegraph_svg() {
    let eps = episodes();
    let lines = folded::lines(&Stacks::of(&eps));
    golden("flamegraph.svg", &flamegraph::svg(&report(eps), &lines));
    golden(
        "flamegraph-empty.svg",
        &flamegraph::svg(&report(vec![]), &Default::default()),
    );
}

/// Uncompressed (gzip output depends on the compressor's version);
/// `tests/pprof.rs` decodes it with a real protobuf decoder.
#[test]
fn golden_profile_pb() {
    let eps = episodes();
    let stacks = Stacks::of(&eps);
    golden("profile.pb", &pprof::encode(&report(eps), &stacks));
}

/// `episodes.jsonl` is the source of truth: what is read back from it renders
/// every other artifact exactly as the episodes themselves did.
#[test]
fn episodes_read_back_render_the_same_artifacts() {
    let text = jsonl_text(&episodes());
    let back: Vec<Episode> = text
        .lines()
        .map(|l| jsonl::parse_line(l).unwrap().episode)
        .collect();
    assert_eq!(jsonl_text(&back), text);
    let (a, b) = (Stacks::of(&episodes()), Stacks::of(&back));
    assert_eq!(folded::lines(&a), folded::lines(&b));
    assert_eq!(
        summary::text(&report(episodes())),
        summary::text(&report(back))
    );
}

#[test]
fn unknown_fields_and_missing_optional_ones_are_tolerated() {
    let line = r#"{"duration_ms": 31.5, "runnable_ms": 4.0, "future_field": {"x": [1]},
        "stacks": [{"weight_ms": 30.0, "state": "waiting for a CPU", "frames": [{"function": "app::f"}], "extra": 1}]}"#;
    let p = jsonl::parse_line(line).unwrap();
    let ep = p.episode;
    assert_eq!(ep.duration, Duration::from_micros(31_500));
    assert_eq!(ep.thread, "");
    assert_eq!(ep.start, SystemTime::UNIX_EPOCH);
    assert_eq!(p.threshold, None);
    assert_eq!(
        ep.stacks[0].state,
        ThreadState::Other("waiting for a CPU".into())
    );
    assert_eq!(ep.stacks[0].state.to_string(), "waiting for a CPU");
    assert_eq!(ep.stacks[0].frames[0].function, "app::f");

    for bad in [
        "",
        "{\"id\": 1, \"duration_ms\": 3",
        "[1, 2]",
        "{\"id\": 1}",
        "{\"duration_ms\": -1}",
        "{\"duration_ms\": 1, \"stacks\": 3}",
    ] {
        assert!(jsonl::parse_line(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn thread_states_read_back_as_written() {
    for st in [
        ThreadState::OnCpu,
        ThreadState::OffCpu(None),
        ThreadState::OffCpu(Some("futex".into())),
        ThreadState::Other("in-kernel [syscall: read]".into()),
    ] {
        assert_eq!(ThreadState::parse(&st.to_string()), st);
    }
}

#[test]
fn artifact_dirs_load_with_bad_lines_skipped_and_counted() {
    let base = std::env::temp_dir().join(format!("pollwatch-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (a, b) = (base.join("app-1"), base.join("app-2"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let eps = episodes();
    let mut first = jsonl_text(&eps[..2]);
    first.push_str("{\"id\": 9, \"duration_ms\": 3"); // killed mid-write
    std::fs::write(a.join("episodes.jsonl"), first).unwrap();
    let second = format!("not json\n{}", jsonl_text(&eps[2..]));
    std::fs::write(b.join("episodes.jsonl"), second).unwrap();

    // The directory of runs holds both.
    let loaded = super::load::load(std::slice::from_ref(&base)).unwrap();
    assert_eq!(loaded.files.len(), 2);
    assert_eq!(loaded.report.episodes.len(), 4);
    assert_eq!(loaded.report.total_blocked, report(eps).total_blocked);
    assert_eq!(loaded.report.threshold, Duration::from_millis(20));
    let bad: Vec<_> = loaded.malformed.iter().map(|m| m.line).collect();
    assert_eq!(bad, [3, 1], "{:?}", loaded.malformed);
    assert!(loaded.malformed[0].file.starts_with(&a));
    assert_eq!(loaded.cwd.as_deref(), CTX.cwd);
    assert!(loaded.malformed[1].reason.contains("not JSON"));
    assert_eq!(
        folded::lines(&loaded.stacks),
        folded::lines(&Stacks::of(&episodes()))
    );

    let err = super::load::load(&[base.join("missing")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
    let empty = base.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = super::load::load(&[empty]).unwrap_err().to_string();
    assert!(err.contains("no pollwatch artifacts"), "{err}");
    let _ = std::fs::remove_dir_all(&base);
}
