//! `stacks.folded`: one line per distinct stack, `root;outermost;...;leaf;[state] µs`,
//! for flamegraph.pl, inferno, speedscope and Pyroscope's folded ingest.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::clean;
use super::stacks::{Key, Stacks};

/// The line of the stacks that did not fit in memory.
pub(crate) const OTHER: &str = "[other stacks]";

/// A name as it may appear between `;`s: no `;` (it separates frames) and no
/// control characters (a newline would end the line).
fn part(s: &str) -> String {
    clean(s).replace(';', ",")
}

/// `GET /users/{id}`, `task spawned at src/main.rs:10:5`, `task 7 on worker`,
/// `thread worker`: the flamegraph's root.
pub(crate) fn root(k: &Key) -> String {
    // A named poll (a route) is the root the user thinks in; else the task.
    match (&k.label, &k.spawned_at, k.task_id) {
        (Some(label), _, _) => label.clone(),
        (None, Some(at), _) => format!("task spawned at {at}"),
        (None, None, Some(id)) => format!("task {id} on {}", k.thread),
        (None, None, None) => format!("thread {}", k.thread),
    }
}

/// `root;outermost;...;blocking call;[state]` for one stack.
pub(crate) fn line(k: &Key) -> String {
    let mut line = part(&root(k));
    for f in k.frames.iter().rev() {
        line.push(';');
        line.push_str(&part(&f.to_frame().to_string()));
    }
    line.push_str(";[");
    line.push_str(&part(&k.state));
    line.push(']');
    line
}

/// Microseconds blocked per folded line, stacks that print alike merged.
pub(crate) fn lines(stacks: &Stacks) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (k, w) in &stacks.map {
        *out.entry(line(k)).or_default() += w.us;
    }
    if stacks.other.us > 0 {
        *out.entry(OTHER.into()).or_default() += stacks.other.us;
    }
    out.retain(|_, us| *us > 0);
    out
}

/// The file's text.
pub(crate) fn text(lines: &BTreeMap<String, u64>) -> String {
    let mut text = String::new();
    for (line, us) in lines {
        let _ = writeln!(text, "{line} {us}");
    }
    text
}
