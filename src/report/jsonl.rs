//! `episodes.jsonl`, the source of truth: one JSON object per episode,
//! appended as each ends. Every other artifact can be rendered again from it,
//! so it is read back here too, tolerantly: fields this version does not know
//! are ignored, missing optional ones take their defaults, and a line that is
//! not an episode (a process killed mid-write leaves a truncated last line)
//! is skipped and counted, never fatal.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::{EndedBy, Episode, Frame, Stack, ThreadState};

/// What the writing process adds to each line beside the episode itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct Context<'a> {
    /// The threshold the run used (`threshold_ms`).
    pub(crate) threshold: Duration,
    /// The process's working directory (`cwd`), against which source paths
    /// are shortened for display, so a reader elsewhere shortens them alike.
    pub(crate) cwd: Option<&'a str>,
}

fn frame_json(f: &Frame) -> Value {
    json!({ "function": f.function, "file": f.file, "line": f.line })
}

fn ms_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The episode as one JSON object (field names are a contract: add, never rename).
pub(crate) fn episode_json(ep: &Episode, ctx: &Context<'_>) -> Value {
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
        "duration_ms": ms_f64(ep.duration),
        "duration_uncertainty_ms": ms_f64(ep.uncertainty),
        "detected_after_ms": ms_f64(ep.detected_after),
        "threshold_ms": ms_f64(ctx.threshold),
        "samples": ep.samples,
        "missed_samples": ep.missed,
        "on_cpu_ms": ms_f64(ep.on_cpu),
        "off_cpu_ms": ms_f64(ep.off_cpu),
        "runnable_ms": ms_f64(ep.runnable),
        "stack": ep.frames().iter().map(frame_json).collect::<Vec<_>>(),
        "top_user_frame": ep.top_user_frame().map(frame_json),
        "ended_by": ep.ended_by.as_str(),
        "mode": ep.mode.as_str(),
        "future": ep.future,
        "unwind": ep.unwind.name(),
        "cwd": ctx.cwd,
        "stacks": ep.stacks.iter().map(|s| json!({
            "weight_ms": ms_f64(s.weight),
            "state": s.state.to_string(),
            "frames": s.frames.iter().map(frame_json).collect::<Vec<_>>(),
            "raw": s.raw.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
            "truncated": s.truncated,
        })).collect::<Vec<_>>(),
    })
}

/// The episode as one line of `episodes.jsonl`, newline included.
pub(crate) fn line(ep: &Episode, ctx: &Context<'_>) -> String {
    let mut line = episode_json(ep, ctx).to_string();
    line.push('\n');
    line
}

/// One episode read back, with what its process recorded beside it.
#[derive(Clone, Debug)]
pub(crate) struct Parsed {
    pub(crate) episode: Episode,
    pub(crate) threshold: Option<Duration>,
    pub(crate) cwd: Option<String>,
}

/// Parses one line; `Err` says why it is not an episode.
pub(crate) fn parse_line(line: &str) -> Result<Parsed, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let o = v.as_object().ok_or("not a JSON object")?;
    let duration = dur(o, "duration_ms").ok_or("no duration_ms")?;
    let stacks = match o.get("stacks") {
        Some(Value::Array(a)) => a.iter().filter_map(stack).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return Err("stacks is not a list".into()),
    };
    let episode = Episode {
        id: u(o, "id").unwrap_or(0),
        thread: string(o, "thread").unwrap_or_default(),
        tid: o
            .get("tid")
            .and_then(Value::as_i64)
            .and_then(|t| i32::try_from(t).ok())
            .unwrap_or(0),
        runtime: string(o, "runtime"),
        task_id: u(o, "task_id"),
        spawned_at: string(o, "spawned_at"),
        label: string(o, "label"),
        start: UNIX_EPOCH + Duration::from_millis(u(o, "start_unix_ms").unwrap_or(0)),
        detected_after: dur(o, "detected_after_ms").unwrap_or_default(),
        duration,
        uncertainty: dur(o, "duration_uncertainty_ms").unwrap_or_default(),
        samples: u(o, "samples").map_or(0, |n| n.min(u32::MAX.into()) as u32),
        missed: u(o, "missed_samples").map_or(0, |n| n.min(u32::MAX.into()) as u32),
        on_cpu: dur(o, "on_cpu_ms").unwrap_or_default(),
        off_cpu: dur(o, "off_cpu_ms").unwrap_or_default(),
        runnable: dur(o, "runnable_ms").unwrap_or_default(),
        stacks,
        ended_by: o
            .get("ended_by")
            .and_then(Value::as_str)
            .map_or(EndedBy::PollReturned, EndedBy::parse),
        // Written before the field existed: a probe or the hooks found it.
        mode: match o.get("mode").and_then(Value::as_str) {
            Some(m) => crate::report::EpisodeMode::parse(m),
            None if u(o, "task_id").is_some() => crate::report::EpisodeMode::Hooks,
            None => crate::report::EpisodeMode::Watched,
        },
        future: string(o, "future"),
        // Written before the field existed: frame pointers were the only way.
        unwind: match o.get("unwind").and_then(Value::as_str) {
            Some(name) => crate::config::Unwind::from_name(name).unwrap_or_default(),
            None => crate::config::Unwind::FramePointers,
        },
    };
    Ok(Parsed {
        episode,
        threshold: dur(o, "threshold_ms"),
        cwd: string(o, "cwd"),
    })
}

fn u(o: &Map<String, Value>, k: &str) -> Option<u64> {
    o.get(k).and_then(Value::as_u64)
}

fn string(o: &Map<String, Value>, k: &str) -> Option<String> {
    o.get(k).and_then(Value::as_str).map(str::to_owned)
}

/// A `*_ms` field as a duration, rounded to the nanosecond so that what was
/// written from whole microseconds reads back exactly.
fn dur(o: &Map<String, Value>, k: &str) -> Option<Duration> {
    let ms = o.get(k)?.as_f64()?;
    (0.0..1e15)
        .contains(&ms)
        .then(|| Duration::from_nanos((ms * 1e6).round() as u64))
}

fn stack(v: &Value) -> Option<Stack> {
    let o = v.as_object()?;
    let frames = match o.get("frames") {
        Some(Value::Array(a)) => a.iter().filter_map(frame).collect(),
        _ => Vec::new(),
    };
    let raw = match o.get("raw") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|r| {
                let s = r.as_str()?;
                u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(Stack {
        frames,
        weight: dur(o, "weight_ms").unwrap_or_default(),
        state: o
            .get("state")
            .and_then(Value::as_str)
            .map_or(ThreadState::Other("unknown".into()), ThreadState::parse),
        raw,
        truncated: o.get("truncated").and_then(Value::as_bool).unwrap_or(false),
    })
}

fn frame(v: &Value) -> Option<Frame> {
    let o = v.as_object()?;
    Some(Frame {
        function: string(o, "function")?,
        file: string(o, "file"),
        line: u(o, "line").and_then(|l| u32::try_from(l).ok()),
        address: 0,
        inlined: false,
    })
}

/// What a run says of the polls it could see, in `run.json` (written at
/// finish): so that `pollwatch report` and `pollwatch check` can say a run
/// watched nothing, or left its workers busy outside watched futures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct RunFacts {
    pub(crate) polls_seen: u64,
    pub(crate) busy_outside_watched: Duration,
    pub(crate) watched_nothing: bool,
}

/// `run.json` of a finished run (field names are a contract: add, never rename).
pub(crate) fn run_json(r: &super::Report) -> Value {
    json!({
        "finished": true,
        "threshold_ms": ms_f64(r.threshold),
        "episodes": r.total_episodes,
        "polls_seen": r.counters.polls_seen,
        "busy_outside_watched_ms": ms_f64(r.counters.busy_outside_watched),
        "watched_nothing": r.watched_nothing,
    })
}

/// `run.json` read back; `None` if it is not one.
pub(crate) fn parse_run(text: &str) -> Option<RunFacts> {
    let v: Value = serde_json::from_str(text).ok()?;
    let o = v.as_object()?;
    Some(RunFacts {
        polls_seen: u(o, "polls_seen").unwrap_or(0),
        busy_outside_watched: dur(o, "busy_outside_watched_ms").unwrap_or_default(),
        watched_nothing: o
            .get("watched_nothing")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}
