//! When the report stage rewrites the end-of-run artifacts while running, so
//! that a process that never reaches `finish()` (SIGTERM, SIGKILL, a crash)
//! still leaves a flamegraph, summary and profile with every episode that
//! ended before it died. Pure: the stage asks, then waits for events until then.

use std::time::{Duration, Instant};

/// Rewrite once no episode has ended for this long: soon after a burst.
pub(crate) const QUIET: Duration = Duration::from_millis(250);
/// But not more often than this, whatever the rate of episodes.
pub(crate) const MIN_GAP: Duration = Duration::from_millis(500);
/// And during a steady stream of episodes, at least this often.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(2);

/// What the stage knows about artifacts not yet rewritten.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pending {
    /// When the first episode not yet in the artifacts ended.
    first: Option<Instant>,
    /// When the last one ended.
    last: Option<Instant>,
}

impl Pending {
    /// An episode ended at `at`.
    pub(crate) fn ended(&mut self, at: Instant) {
        self.first.get_or_insert(at);
        self.last = Some(at);
    }

    /// The artifacts were rewritten.
    pub(crate) fn flushed(&mut self) {
        *self = Pending::default();
    }

    /// When to rewrite, given the last rewrite at `last_flush`; `None` while
    /// there is nothing new. At most `QUIET.max(MIN_GAP)` after the last
    /// episode ended when episodes stop, at most `MAX_WAIT` after the first
    /// one while they keep coming, and never within `MIN_GAP` of the last
    /// rewrite.
    pub(crate) fn due(&self, last_flush: Instant) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        let wanted = (last + QUIET).min(first + MAX_WAIT);
        Some(wanted.max(last_flush + MIN_GAP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn nothing_new_nothing_due() {
        let t0 = Instant::now();
        assert_eq!(Pending::default().due(t0), None);
        let mut p = Pending::default();
        p.ended(t0);
        p.flushed();
        assert_eq!(p.due(t0), None);
    }

    #[test]
    fn a_burst_is_written_soon_after_it_ends() {
        let t0 = Instant::now();
        let last_flush = t0;
        let mut p = Pending::default();
        p.ended(t0 + 600 * MS);
        p.ended(t0 + 700 * MS);
        assert_eq!(p.due(last_flush), Some(t0 + 950 * MS));
    }

    #[test]
    fn rewrites_keep_a_minimum_gap() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.ended(t0 + 10 * MS);
        assert_eq!(p.due(t0), Some(t0 + MIN_GAP));
        // The bound a killed process relies on: never later than
        // QUIET.max(MIN_GAP) after the last episode ended.
        let due = p.due(t0).unwrap();
        assert!(due <= t0 + 10 * MS + QUIET.max(MIN_GAP));
    }

    #[test]
    fn a_steady_stream_is_still_written_every_max_wait() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        for i in 0..100 {
            p.ended(t0 + i * 100 * MS);
        }
        assert_eq!(p.due(t0 - MAX_WAIT), Some(t0 + MAX_WAIT));
    }
}
