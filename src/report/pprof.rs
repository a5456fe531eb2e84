//! `profile.pb.gz`: the blocked stacks as a gzipped pprof profile
//! (`perftools.profiles.Profile`), for `go tool pprof`, Grafana Pyroscope and
//! Parca. Written by hand: the handful of messages used need no code
//! generator, and the encoder is tested against a real protobuf decoder.
//!
//! - Sample types: `blocked` in nanoseconds (the default) and `episodes`, the
//!   count of episodes that had the stack.
//! - One location per distinct frame (function, file, line), innermost first
//!   in each sample, already symbolized (one mapping that says so, no
//!   addresses).
//! - Labels per sample: `thread`, `state` (`on-cpu`, `off-cpu: futex`...),
//!   `spawned_at` or `task_id`, and `label` (a route) when there is one.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::UNIX_EPOCH;

use super::stacks::{FrameKey, Key, Stacks};
use super::{folded, Report};

/// Protobuf wire encoding of the few field kinds the profile uses.
#[derive(Default)]
struct Buf(Vec<u8>);

impl Buf {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    /// An integer field (int64 and uint64 share the varint encoding);
    /// proto3 omits zeros.
    fn int(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v);
        }
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn message(&mut self, field: u32, m: Buf) {
        self.bytes(field, &m.0);
    }

    /// A packed repeated integer field.
    fn packed(&mut self, field: u32, vs: &[u64]) {
        if vs.is_empty() {
            return;
        }
        let mut inner = Buf::default();
        for &v in vs {
            inner.varint(v);
        }
        self.message(field, inner);
    }
}

/// The string table: index 0 is the empty string, as pprof requires.
struct Strings {
    index: HashMap<String, u64>,
    table: Vec<String>,
}

impl Strings {
    fn new() -> Strings {
        Strings {
            index: HashMap::from([(String::new(), 0)]),
            table: vec![String::new()],
        }
    }

    fn id(&mut self, s: &str) -> u64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as u64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

fn value_type(strings: &mut Strings, ty: &str, unit: &str) -> Buf {
    let mut b = Buf::default();
    b.int(1, strings.id(ty));
    b.int(2, strings.id(unit));
    b
}

fn label(strings: &mut Strings, key: &str, value: &str) -> Buf {
    let mut b = Buf::default();
    b.int(1, strings.id(key));
    b.int(2, strings.id(value));
    b
}

fn num_label(strings: &mut Strings, key: &str, num: u64) -> Buf {
    let mut b = Buf::default();
    b.int(1, strings.id(key));
    b.int(3, num);
    b
}

/// The id of the one mapping every location belongs to.
const MAPPING_ID: u64 = 1;

/// Locations and functions, one per distinct frame, ids from 1.
#[derive(Default)]
struct Locations<'a> {
    locations: HashMap<&'a FrameKey, u64>,
    functions: HashMap<(&'a str, Option<&'a str>), u64>,
    location_msgs: Buf,
    function_msgs: Buf,
}

impl<'a> Locations<'a> {
    fn id(&mut self, f: &'a FrameKey, strings: &mut Strings) -> u64 {
        if let Some(&id) = self.locations.get(f) {
            return id;
        }
        let key = (f.function.as_str(), f.file.as_deref());
        let fn_id = match self.functions.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.functions.len() as u64 + 1;
                let mut m = Buf::default();
                m.int(1, id);
                m.int(2, strings.id(&f.function));
                m.int(3, strings.id(&f.function));
                m.int(4, strings.id(f.file.as_deref().unwrap_or("")));
                self.function_msgs.message(5, m);
                self.functions.insert(key, id);
                id
            }
        };
        let id = self.locations.len() as u64 + 1;
        let mut line = Buf::default();
        line.int(1, fn_id);
        line.int(2, u64::from(f.line.unwrap_or(0)));
        let mut m = Buf::default();
        m.int(1, id);
        m.int(2, MAPPING_ID);
        m.message(4, line);
        self.location_msgs.message(4, m);
        self.locations.insert(f, id);
        id
    }
}

/// The profile, uncompressed.
pub(crate) fn encode(report: &Report, stacks: &Stacks) -> Vec<u8> {
    let mut strings = Strings::new();
    let mut profile = Buf::default();
    profile.message(1, value_type(&mut strings, "blocked", "nanoseconds"));
    profile.message(1, value_type(&mut strings, "episodes", "count"));

    let no_stack = FrameKey {
        function: "[no stack]".into(),
        file: None,
        line: None,
    };
    let other = FrameKey {
        function: folded::OTHER.into(),
        file: None,
        line: None,
    };
    let mut table = Locations::default();
    let mut sample_msgs = Buf::default();
    let mut sample = |ids: &[u64], ns: u64, episodes: u64, labels: Vec<Buf>| {
        let mut m = Buf::default();
        m.packed(1, ids);
        // A zero is still a value here: packed fields keep every entry.
        m.packed(2, &[ns, episodes]);
        for l in labels {
            m.message(3, l);
        }
        sample_msgs.message(2, m);
    };
    for (k, w) in &stacks.map {
        let ids: Vec<u64> = if k.frames.is_empty() {
            vec![table.id(&no_stack, &mut strings)]
        } else {
            k.frames.iter().map(|f| table.id(f, &mut strings)).collect()
        };
        let labels = labels(&mut strings, k);
        sample(&ids, w.us.saturating_mul(1000), w.episodes, labels);
    }
    if stacks.other.episodes > 0 {
        let ids = [table.id(&other, &mut strings)];
        sample(
            &ids,
            stacks.other.us.saturating_mul(1000),
            stacks.other.episodes,
            Vec::new(),
        );
    }
    profile.0.extend_from_slice(&sample_msgs.0);
    // One mapping that says every location is symbolized already, so no
    // tool looks for a binary to symbolize against.
    let mut mapping = Buf::default();
    mapping.int(1, MAPPING_ID);
    mapping.int(5, strings.id("[symbolized by pollwatch]"));
    for has in [7, 8, 9, 10] {
        mapping.int(has, 1); // has_functions, _filenames, _line_numbers, _inline_frames
    }
    profile.message(3, mapping);
    profile.0.extend_from_slice(&table.location_msgs.0);
    profile.0.extend_from_slice(&table.function_msgs.0);

    // The run's span: from the first episode's start to the last one's end.
    let nanos = |t: std::time::SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    };
    let first = report.episodes.iter().map(|e| nanos(e.start)).min();
    let last = report
        .episodes
        .iter()
        .map(|e| nanos(e.start + e.duration))
        .max();
    let comment = strings.id(&format!(
        "pollwatch: polls longer than {} ms",
        super::summary::ms(report.threshold)
    ));
    let default_type = strings.id("blocked");
    let period_type = value_type(&mut strings, "blocked", "nanoseconds");
    for s in &strings.table {
        profile.bytes(6, s.as_bytes());
    }
    if let (Some(first), Some(last)) = (first, last) {
        profile.int(9, first);
        profile.int(10, last.saturating_sub(first));
    }
    profile.message(11, period_type);
    profile.packed(13, &[comment]);
    profile.int(14, default_type);
    profile.0
}

fn labels(strings: &mut Strings, k: &Key) -> Vec<Buf> {
    let mut v = vec![
        label(strings, "thread", &k.thread),
        label(strings, "state", &k.state),
    ];
    if let Some(at) = &k.spawned_at {
        v.push(label(strings, "spawned_at", at));
    }
    if let Some(id) = k.task_id {
        v.push(num_label(strings, "task_id", id));
    }
    if let Some(l) = &k.label {
        v.push(label(strings, "label", l));
    }
    v
}

/// The profile, gzipped, as `profile.pb.gz` holds it.
pub(crate) fn gzipped(report: &Report, stacks: &Stacks) -> Vec<u8> {
    let raw = encode(report, stacks);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(&raw);
    gz.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_base_128() {
        let mut b = Buf::default();
        b.varint(1);
        b.varint(300);
        b.varint(u64::MAX);
        assert_eq!(
            b.0,
            [1, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn strings_start_with_the_empty_one_and_are_shared() {
        let mut s = Strings::new();
        assert_eq!(s.id(""), 0);
        assert_eq!(s.id("a"), 1);
        assert_eq!(s.id("b"), 2);
        assert_eq!(s.id("a"), 1);
        assert_eq!(s.table, ["", "a", "b"]);
    }
}
