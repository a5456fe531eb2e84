//! Blocked time by distinct stack over a whole run: what `stacks.folded`,
//! `flamegraph.svg` and `profile.pb.gz` are rendered from. Kept apart from
//! [`Report::episodes`](super::Report::episodes), which has a memory limit,
//! so that every episode's time is in these artifacts.

use std::collections::BTreeMap;

use super::{Episode, Frame, Stack};

/// Distinct stacks kept; past it (or past the bytes), a stack is kept down
/// to its blocking call site only, and past that budget too it weighs in as
/// one `[other stacks]` entry.
const MAX_STACKS: usize = 20_000;
/// Bytes of distinct stacks kept (a deep stack is kilobytes: a CPU loop in a
/// debug build, sampled at a new line each time, fills this in seconds).
const MAX_BYTES: usize = 2 << 20;
// Once those are full, stacks are kept only down to their call site, in
// half as many bytes again: there are few call sites, so a later episode
// still shows by name.

/// The innermost frame of a stack kept only down to its call site.
pub(crate) const MERGED: &str = "[deeper frames merged: memory limit]";

/// What a distinct stack is told apart by: who was polled, where, in which state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    /// The poll's name (a route), when it has one.
    pub(crate) label: Option<String>,
    pub(crate) thread: String,
    pub(crate) task_id: Option<u64>,
    pub(crate) spawned_at: Option<String>,
    pub(crate) state: String,
    /// Innermost first, as in [`Stack::frames`].
    pub(crate) frames: Vec<FrameKey>,
}

/// A frame as the artifacts show it (its address is not part of it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FrameKey {
    pub(crate) function: String,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
}

impl FrameKey {
    pub(crate) fn to_frame(&self) -> Frame {
        Frame {
            function: self.function.clone(),
            file: self.file.clone(),
            line: self.line,
            address: 0,
            inlined: false,
        }
    }
}

/// Blocked time and how many episodes had the stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Weight {
    pub(crate) us: u64,
    pub(crate) episodes: u64,
}

/// The run's stacks, bounded in count and bytes.
#[derive(Clone, Debug)]
pub(crate) struct Stacks {
    pub(crate) map: BTreeMap<Key, Weight>,
    /// Stacks beyond the limits, merged.
    pub(crate) other: Weight,
    bytes: usize,
    site_bytes: usize,
    max_bytes: usize,
}

impl Default for Stacks {
    fn default() -> Self {
        Stacks::with_max_bytes(MAX_BYTES)
    }
}

impl Stacks {
    /// Adds every stack of `ep`.
    pub(crate) fn add(&mut self, ep: &Episode) {
        for st in &ep.stacks {
            self.add_stack(ep, st);
        }
    }

    fn with_max_bytes(max_bytes: usize) -> Self {
        Stacks {
            map: BTreeMap::new(),
            other: Weight::default(),
            bytes: 0,
            site_bytes: 0,
            max_bytes,
        }
    }

    fn add_stack(&mut self, ep: &Episode, st: &Stack) {
        let us = st.weight.as_micros() as u64;
        let mut key = Key {
            label: ep.label.clone(),
            thread: ep.thread.clone(),
            task_id: ep.task_id,
            spawned_at: ep.spawned_at.clone(),
            state: st.state.to_string(),
            frames: st
                .frames
                .iter()
                .map(|f| FrameKey {
                    function: f.function.clone(),
                    file: f.file.clone(),
                    line: f.line,
                })
                .collect(),
        };
        let full = self.map.len() >= MAX_STACKS;
        let w = if self.map.contains_key(&key) {
            self.map.get_mut(&key)
        } else if !full && self.bytes + key_bytes(&key) <= self.max_bytes {
            self.bytes += key_bytes(&key);
            Some(self.map.entry(key).or_default())
        } else {
            // Down to the call site: the frames from the innermost of the
            // user's own code outward, so the function still has its name.
            let site = st
                .frames
                .iter()
                .position(|f| !super::view::is_library(f))
                .unwrap_or(key.frames.len());
            key.frames.splice(
                ..site,
                [FrameKey {
                    function: MERGED.into(),
                    file: None,
                    line: None,
                }],
            );
            let bytes = key_bytes(&key);
            if self.map.contains_key(&key) {
                self.map.get_mut(&key)
            } else if !full && self.site_bytes + bytes <= self.max_bytes / 2 {
                self.site_bytes += bytes;
                Some(self.map.entry(key).or_default())
            } else {
                None
            }
        };
        let w = w.unwrap_or(&mut self.other);
        w.us += us;
        w.episodes += 1;
    }

    /// The stacks of many episodes (a run read back, or several merged).
    pub(crate) fn of<'a>(episodes: impl IntoIterator<Item = &'a Episode>) -> Stacks {
        let mut s = Stacks::default();
        for ep in episodes {
            s.add(ep);
        }
        s
    }
}

fn key_bytes(k: &Key) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    std::mem::size_of::<Key>()
        + opt(&k.label)
        + k.thread.len()
        + opt(&k.spawned_at)
        + k.state.len()
        + k.frames
            .iter()
            .map(|f| std::mem::size_of::<FrameKey>() + f.function.len() + opt(&f.file))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{folded, golden};

    /// An episode of `n` CPU-loop stacks, each with its leaf at a new line
    /// (as samples of a loop in a debug build are), under `function`.
    fn loop_episode(function: &str, n: u32) -> Episode {
        let mut ep = golden::episodes()[0].clone();
        let template = ep.stacks[0].clone();
        ep.stacks = (0..n)
            .map(|i| {
                let mut st = template.clone();
                st.frames = vec![
                    Frame {
                        function: "core::slice::sort::unstable::quicksort::partition".into(),
                        file: Some(
                            "/rustc/abc/library/core/src/slice/sort/unstable/quicksort.rs".into(),
                        ),
                        line: Some(100 + i),
                        address: 0,
                        inlined: false,
                    },
                    Frame {
                        function: function.into(),
                        file: Some("/home/dev/app/src/main.rs".into()),
                        line: Some(7),
                        address: 0,
                        inlined: false,
                    },
                ];
                st.weight = std::time::Duration::from_millis(1);
                st
            })
            .collect();
        ep
    }

    #[test]
    fn a_later_episode_keeps_its_call_site_when_the_stacks_are_full() {
        let mut stacks = Stacks::with_max_bytes(64 * 1024);
        stacks.add(&loop_episode("app::sort_everything", 2_000));
        stacks.add(&loop_episode("app::later_blocker", 50));
        let lines = folded::lines(&stacks);
        let later: Vec<_> = lines
            .iter()
            .filter(|(l, _)| l.contains("app::later_blocker"))
            .collect();
        assert!(!later.is_empty(), "{lines:#?}");
        // All of its time, on its call site, below the marker.
        assert_eq!(later.iter().map(|(_, us)| **us).sum::<u64>(), 50_000);
        assert!(later.iter().all(|(l, _)| l.contains(MERGED)), "{later:?}");
        // Nothing is lost: the total is every stack's time.
        assert_eq!(lines.values().sum::<u64>(), 2_050 * 1_000);
        assert!(stacks.bytes <= 64 * 1024 && stacks.site_bytes <= 32 * 1024);
    }

    #[test]
    fn past_both_budgets_stacks_weigh_in_as_other() {
        let mut stacks = Stacks::with_max_bytes(2 * 1024);
        for i in 0..200 {
            stacks.add(&loop_episode(&format!("app::site_{i}"), 3));
        }
        assert!(stacks.other.us > 0);
        let lines = folded::lines(&stacks);
        assert_eq!(lines.values().sum::<u64>(), 600 * 1_000);
        assert!(lines.contains_key(folded::OTHER));
    }
}
