//! Every artifact is well-formed whatever the names in it contain: thread
//! names, routes, paths and function names come from the program and may
//! hold newlines, escape sequences, `;`, `<` or `&`. Each writer's output is
//! parsed back: XML for the SVG, `frames count` lines for the folded stacks,
//! JSON lines for `episodes.jsonl`, plain lines for the summary.

use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;

use super::jsonl::{self, Context};
use super::stacks::Stacks;
use super::{clean, flamegraph, folded, summary, Episode, Frame, Report, Stack, ThreadState};

/// Characters that break formats, mixed with any other.
fn nasty() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '\n', '\r', '\t', '\0', '\x1b', '\x07', '\x7f', '\u{85}', '\u{2028}', '<', '>', '&', '"',
        '\'', ';', ' ', '\\', '[', ']', '{', '}',
    ]);
    prop::collection::vec(prop_oneof![special, any::<char>()], 0..10)
        .prop_map(|cs| cs.into_iter().collect())
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        nasty(),
        prop::option::of(nasty()),
        prop::option::of(0u32..5000),
    )
        .prop_map(|(function, file, line)| Frame {
            function,
            file,
            line,
            address: 0,
            inlined: false,
        })
}

fn state() -> impl Strategy<Value = ThreadState> {
    prop_oneof![
        Just(ThreadState::OnCpu),
        prop::option::of(nasty()).prop_map(ThreadState::OffCpu),
        nasty().prop_map(ThreadState::Other),
    ]
}

fn stack() -> impl Strategy<Value = Stack> {
    (prop::collection::vec(frame(), 0..5), 0u64..200_000, state()).prop_map(
        |(frames, us, state)| Stack {
            frames,
            weight: Duration::from_micros(us),
            state,
            raw: vec![0x1000],
            truncated: us % 2 == 0,
        },
    )
}

fn episode() -> impl Strategy<Value = Episode> {
    (
        nasty(),
        prop::option::of(nasty()),
        prop::option::of(nasty()),
        prop::option::of(nasty()),
        prop::option::of(0u64..100),
        prop::collection::vec(stack(), 0..4),
        1u64..500_000,
    )
        .prop_map(
            |(thread, runtime, spawned_at, label, task_id, stacks, us)| Episode {
                id: 1,
                thread,
                tid: 7,
                runtime,
                task_id,
                spawned_at,
                label,
                start: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
                detected_after: Duration::from_millis(21),
                duration: Duration::from_micros(us),
                uncertainty: Duration::ZERO,
                samples: 3,
                missed: 0,
                on_cpu: Duration::ZERO,
                off_cpu: Duration::ZERO,
                runnable: Duration::ZERO,
                stacks,
                ended_by: crate::report::EndedBy::PollReturned,
                unwind: crate::config::Unwind::Auto,
                mode: crate::report::EpisodeMode::Watched,
                future: None,
            },
        )
}

fn report(episodes: Vec<Episode>) -> Report {
    Report {
        threshold: Duration::from_millis(20),
        total_episodes: episodes.len() as u64,
        total_blocked: episodes.iter().map(|e| e.duration).sum(),
        episodes,
        ..Report::default()
    }
}

/// Characters XML 1.0 forbids even escaped.
fn xml_forbidden(c: char) -> bool {
    matches!(c, '\0'..='\x08' | '\x0b' | '\x0c' | '\x0e'..='\x1f' | '\u{fffe}' | '\u{ffff}')
}

fn assert_xml(svg: &[u8]) -> Result<(), TestCaseError> {
    let text = std::str::from_utf8(svg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(
        !text.chars().any(xml_forbidden),
        "a control character in the SVG"
    );
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut depth = 0i64;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(quick_xml::events::Event::Start(_)) => depth += 1,
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Text(t)) => {
                // Entities must resolve.
                prop_assert!(t.decode().is_ok(), "bad text {t:?}");
            }
            Ok(_) => {}
            Err(e) => return Err(TestCaseError::fail(format!("SVG is not XML: {e}"))),
        }
    }
    prop_assert_eq!(depth, 0, "unbalanced SVG");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_writer_output_parses_back(eps in prop::collection::vec(episode(), 0..4)) {
        let stacks = Stacks::of(&eps);
        let lines = folded::lines(&stacks);
        let r = report(eps.clone());

        // Folded: one `frames count` line per stack, `;` only between frames.
        let text = folded::text(&lines);
        for line in text.lines() {
            prop_assert!(!line.chars().any(char::is_control), "{line:?}");
            let (stack, count) = line.rsplit_once(' ').unwrap();
            prop_assert!(count.parse::<u64>().is_ok(), "{line:?}");
            prop_assert!(!stack.is_empty());
            prop_assert!(stack.starts_with('[') || stack.ends_with(']'), "{line:?}");
        }
        for k in stacks.map.keys() {
            let parts = folded::line(k).split(';').count();
            prop_assert_eq!(parts, k.frames.len() + 2, "{:?}", folded::line(k));
        }

        // SVG, drawn by inferno or our empty page.
        assert_xml(&flamegraph::svg(&r, &lines))?;

        // JSON lines: one line each, parsing back to the same names.
        let ctx = Context { threshold: r.threshold, cwd: Some("/tmp/\napp") };
        for ep in &eps {
            let line = jsonl::line(ep, &ctx);
            prop_assert_eq!(line.matches('\n').count(), 1);
            let back = jsonl::parse_line(line.trim_end()).unwrap().episode;
            prop_assert_eq!(&back.thread, &ep.thread);
            prop_assert_eq!(&back.label, &ep.label);
            prop_assert_eq!(&back.spawned_at, &ep.spawned_at);
            prop_assert_eq!(back.stacks.len(), ep.stacks.len());
            for (a, b) in back.stacks.iter().zip(&ep.stacks) {
                prop_assert_eq!(&a.frames, &b.frames);
                prop_assert_eq!(&a.state, &b.state);
            }
        }

        // Summary: lines without control characters.
        let s = summary::text(&r);
        for line in s.lines() {
            prop_assert!(!line.chars().any(char::is_control), "{line:?}");
        }
    }

    #[test]
    fn clean_leaves_no_control_character(s in nasty()) {
        let c = clean(&s);
        prop_assert!(!c.chars().any(char::is_control));
        prop_assert_eq!(c.chars().count(), s.chars().count());
    }
}
