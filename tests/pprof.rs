//! `profile.pb.gz` read back with a real protobuf decoder (prost), against
//! the messages of pprof's `profile.proto` (field numbers as published).

mod support;

use std::io::Read;
use std::time::Duration;

use prost::Message;
use support::*;

#[derive(Clone, PartialEq, Message)]
struct Profile {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    time_nanos: i64,
    #[prost(int64, tag = "10")]
    duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueType>,
    #[prost(int64, repeated, tag = "13")]
    comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    default_sample_type: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(int64, tag = "1")]
    key: i64,
    #[prost(int64, tag = "2")]
    str: i64,
    #[prost(int64, tag = "3")]
    num: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Mapping {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "5")]
    filename: i64,
    #[prost(bool, tag = "7")]
    has_functions: bool,
    #[prost(bool, tag = "8")]
    has_filenames: bool,
    #[prost(bool, tag = "9")]
    has_line_numbers: bool,
}

#[derive(Clone, PartialEq, Message)]
struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    mapping_id: u64,
    #[prost(uint64, tag = "3")]
    address: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
struct Line {
    #[prost(uint64, tag = "1")]
    function_id: u64,
    #[prost(int64, tag = "2")]
    line: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Function {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
    #[prost(int64, tag = "3")]
    system_name: i64,
    #[prost(int64, tag = "4")]
    filename: i64,
}

/// A decoded profile, checked for the invariants pprof's own validation
/// enforces, with lookups by name.
struct Decoded(Profile);

impl Decoded {
    fn new(bytes: &[u8]) -> Decoded {
        let p = Profile::decode(bytes).expect("profile.pb decodes");
        assert_eq!(p.string_table.first().map(String::as_str), Some(""));
        let n = p.string_table.len() as i64;
        let s = |i: i64| assert!((0..n).contains(&i), "string index {i} of {n}");
        for f in &p.function {
            s(f.name);
            s(f.filename);
        }
        for st in &p.sample_type {
            s(st.r#type);
            s(st.unit);
        }
        let loc_ids: Vec<u64> = p.location.iter().map(|l| l.id).collect();
        let fn_ids: Vec<u64> = p.function.iter().map(|f| f.id).collect();
        let map_ids: Vec<u64> = p.mapping.iter().map(|m| m.id).collect();
        for m in &p.mapping {
            s(m.filename);
            assert!(m.has_functions && m.has_filenames && m.has_line_numbers);
        }
        for l in &p.location {
            assert!(l.id != 0);
            assert!(map_ids.contains(&l.mapping_id), "{l:?}");
            for line in &l.line {
                assert!(fn_ids.contains(&line.function_id), "{l:?}");
            }
        }
        for sample in &p.sample {
            assert_eq!(sample.value.len(), p.sample_type.len(), "{sample:?}");
            assert!(!sample.location_id.is_empty());
            for id in &sample.location_id {
                assert!(loc_ids.contains(id), "{sample:?}");
            }
            for l in &sample.label {
                s(l.key);
                s(l.str);
            }
        }
        Decoded(p)
    }

    fn str(&self, i: i64) -> &str {
        &self.0.string_table[i as usize]
    }

    fn types(&self) -> Vec<(String, String)> {
        self.0
            .sample_type
            .iter()
            .map(|t| (self.str(t.r#type).into(), self.str(t.unit).into()))
            .collect()
    }

    /// Each sample's frames as `function file:line`, innermost first.
    fn frames(&self, s: &Sample) -> Vec<(String, String, i64)> {
        s.location_id
            .iter()
            .map(|id| {
                let loc = self.0.location.iter().find(|l| l.id == *id).unwrap();
                let line = &loc.line[0];
                let f = self
                    .0
                    .function
                    .iter()
                    .find(|f| f.id == line.function_id)
                    .unwrap();
                (
                    self.str(f.name).to_owned(),
                    self.str(f.filename).to_owned(),
                    line.line,
                )
            })
            .collect()
    }

    fn label(&self, s: &Sample, key: &str) -> Option<String> {
        s.label
            .iter()
            .find(|l| self.str(l.key) == key)
            .map(|l| match l.str {
                0 => l.num.to_string(),
                i => self.str(i).to_owned(),
            })
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("profile.pb.gz is gzip");
    out
}

#[test]
fn the_golden_profile_decodes_with_every_sample_type_location_and_label() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/profile.pb"
    ))
    .unwrap();
    let p = Decoded::new(&bytes);
    assert_eq!(
        p.types(),
        [
            ("blocked".to_owned(), "nanoseconds".to_owned()),
            ("episodes".to_owned(), "count".to_owned())
        ]
    );
    assert_eq!(p.str(p.0.default_sample_type), "blocked");
    assert_eq!(p.str(p.0.comment[0]), "pollwatch: polls longer than 20 ms");
    assert!(p.0.time_nanos > 0 && p.0.duration_nanos > 0);
    // Blocked time adds up to the stacks' weights (µs in the fixtures).
    let total: i64 = p.0.sample.iter().map(|s| s.value[0]).sum();
    assert_eq!(total, (147_000 + 100_000 + 11_000 + 57_000 + 58_000) * 1000);
    let episodes: i64 = p.0.sample.iter().map(|s| s.value[1]).sum();
    assert_eq!(episodes, 5, "one per episode stack");

    let sleep =
        p.0.sample
            .iter()
            .find(|s| p.label(s, "state").as_deref() == Some("off-cpu: clock_nanosleep"))
            .expect("the sleep's sample");
    let frames = p.frames(sleep);
    assert_eq!(frames[0].0, "clock_nanosleep", "innermost first");
    assert!(frames.contains(&(
        "app::config::load_synchronously".into(),
        "/home/dev/app/src/config.rs".into(),
        77
    )));
    assert_eq!(p.label(sleep, "thread").as_deref(), Some("tokio-rt-worker"));
    assert_eq!(
        p.label(sleep, "spawned_at").as_deref(),
        Some("src/main.rs:49:26")
    );
    let hash =
        p.0.sample
            .iter()
            .find(|s| p.label(s, "label").is_some())
            .unwrap();
    assert_eq!(p.label(hash, "label").as_deref(), Some("GET /login"));
    assert_eq!(p.label(hash, "task_id").as_deref(), Some("7"));
}

#[test]
fn a_real_run_writes_a_profile_naming_the_blocking_function() {
    let _s = serial();
    let (report, _) = caught("pprof", || blocking_sleep(Duration::from_millis(100)));
    let ep = episode_in(&report, "blocking_sleep");
    let path = report.profile_path().unwrap();
    let p = Decoded::new(&gunzip(&std::fs::read(&path).unwrap()));
    let found: Vec<_> =
        p.0.sample
            .iter()
            .filter(|s| p.frames(s).iter().any(|f| f.0.contains("blocking_sleep")))
            .collect();
    assert!(!found.is_empty(), "no sample in blocking_sleep: {report}");
    let (_, file, line) = p
        .frames(found[0])
        .into_iter()
        .find(|f| f.0.contains("blocking_sleep"))
        .unwrap();
    assert!(file.ends_with("tests/support/mod.rs"), "{file}");
    assert!(line > 0);
    let blocked: i64 = p.0.sample.iter().map(|s| s.value[0]).sum();
    let weights: Duration = ep.stacks().iter().map(|s| s.weight).sum();
    assert_eq!(blocked as u128 / 1000, weights.as_micros());
    assert!(p
        .label(found[0], "spawned_at")
        .unwrap()
        .contains("tests/pprof.rs"));
    assert!(p.label(found[0], "thread").is_some());
    assert!(p.label(found[0], "state").unwrap().starts_with("off-cpu"));
}
