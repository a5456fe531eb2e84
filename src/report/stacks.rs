//! Blocked time by distinct stack over a whole run: what `stacks.folded`,
//! `flamegraph.svg` and `profile.pb.gz` are rendered from. Kept apart from
//! [`Report::episodes`](super::Report::episodes), which has a memory limit,
//! so that every episode's time is in these artifacts.

use std::collections::BTreeMap;

use super::{Episode, Frame, Stack};

/// Distinct stacks kept; the rest are merged into one `[other stacks]` entry.
const MAX_STACKS: usize = 20_000;
/// Bytes of distinct stacks kept (a deep stack is kilobytes).
const MAX_BYTES: usize = 2 << 20;

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
#[derive(Clone, Debug, Default)]
pub(crate) struct Stacks {
    pub(crate) map: BTreeMap<Key, Weight>,
    /// Stacks beyond the limits, merged.
    pub(crate) other: Weight,
    bytes: usize,
}

impl Stacks {
    /// Adds every stack of `ep`.
    pub(crate) fn add(&mut self, ep: &Episode) {
        for st in &ep.stacks {
            self.add_stack(ep, st);
        }
    }

    fn add_stack(&mut self, ep: &Episode, st: &Stack) {
        let us = st.weight.as_micros() as u64;
        let key = Key {
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
        let w = match self.map.get_mut(&key) {
            Some(w) => w,
            None => {
                let bytes = key_bytes(&key);
                if self.map.len() >= MAX_STACKS || self.bytes + bytes > MAX_BYTES {
                    &mut self.other
                } else {
                    self.bytes += bytes;
                    self.map.entry(key).or_default()
                }
            }
        };
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
