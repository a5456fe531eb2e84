//! Polls that no probe marks (stable tokio, `attach`), told apart by reading
//! the thread's stack from outside.
//!
//! While a task poll runs, the executor's frames below it (the worker loop,
//! the task harness) do not change: they wait for the poll to return. The
//! report stage learns, from a symbolized sample, where those frames begin
//! on the thread's stack (a [`Bound`]). Each look then copies them with
//! `process_vm_readv` (no signal, nothing stops) and hashes them: the same
//! hash with no park in between is the same poll still running; another
//! hash, or a return address missing at the boundary, means it returned.
//!
//! What cannot be told apart: one task polled again and again on a worker
//! with nothing else to run and no park in between (a lone task that yields
//! or wakes itself) leaves the same frames each time. Its polls look like
//! one; see the README ("Sampled mode: what it cannot see").

use std::time::{Duration, Instant};

use crate::registry::{fingerprint, Slot};

/// Keys of polls a probe marked (a `watch` on a sampled thread) have this
/// bit set, so they never equal a sampled count.
pub(crate) const PROBE: u64 = 1 << 63;

/// What one look found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Obs {
    /// The slot's probe epoch (odd inside a watched poll).
    pub(crate) probe_epoch: u64,
    /// The park hooks' count (0: no hooks).
    pub(crate) park_seq: u64,
    /// Hash of the executor frames, if a known boundary holds its return
    /// address (the thread is inside a task poll on that path).
    pub(crate) fp: Option<u64>,
}

/// The watchdog's running view of one sampled thread.
#[derive(Clone, Debug)]
pub(crate) struct View {
    /// Odd inside a poll; bumped at each poll boundary seen.
    count: u64,
    fp: Option<u64>,
    park: u64,
    /// When the next learning sample may be taken, and the wait after it.
    pub(crate) next_learn: Instant,
    pub(crate) backoff: Duration,
    /// Blocked places where a learning sample found no poll (a parked worker's
    /// `epoll_wait`): not sampled again for learning.
    pub(crate) tried: Vec<(u64, u64)>,
    pub(crate) next_alive_check: Instant,
}

/// Places remembered per thread where learning found nothing.
const TRIED: usize = 8;

impl View {
    pub(crate) fn new(now: Instant, base: Duration) -> Self {
        View {
            count: 0,
            fp: None,
            park: 0,
            next_learn: now,
            backoff: base,
            tried: Vec::new(),
            next_alive_check: now,
        }
    }

    /// Folds in one look; returns the poll key (odd inside a poll): the
    /// watchdog's epoch for this thread.
    pub(crate) fn advance(&mut self, o: Obs) -> u64 {
        if o.probe_epoch % 2 == 1 {
            // A watched poll: its probe is exact and wins.
            self.fp = None;
            if self.count % 2 == 1 {
                self.count += 1;
            }
            return PROBE | o.probe_epoch;
        }
        let parked = o.park_seq != 0 && o.park_seq % 2 == 0;
        match o.fp {
            Some(fp) if !parked => {
                let same = self.count % 2 == 1 && self.fp == Some(fp) && self.park == o.park_seq;
                if !same {
                    self.count += if self.count % 2 == 1 { 2 } else { 1 };
                    self.fp = Some(fp);
                    self.park = o.park_seq;
                }
            }
            _ => {
                self.fp = None;
                if self.count % 2 == 1 {
                    self.count += 1;
                }
            }
        }
        self.count & !PROBE
    }

    /// The executor frames' hash of the poll in progress, if any.
    pub(crate) fn fp(&self) -> Option<u64> {
        self.fp.filter(|_| self.count % 2 == 1)
    }

    /// Whether a look that matched no boundary should take a learning
    /// sample now: the thread is not parked, and either it is blocked
    /// somewhere not tried yet, or it runs and the back-off has passed.
    pub(crate) fn wants_learn(
        &self,
        now: Instant,
        parked: bool,
        blocked_at: Option<(u64, u64)>,
    ) -> bool {
        if parked {
            return false;
        }
        match blocked_at {
            Some(site) => !self.tried.contains(&site),
            None => now >= self.next_learn,
        }
    }

    /// A learning sample was taken (blocked at `site`, or running).
    pub(crate) fn learned(&mut self, now: Instant, site: Option<(u64, u64)>, max: Duration) {
        match site {
            Some(site) => {
                if self.tried.len() >= TRIED {
                    self.tried.remove(0);
                }
                self.tried.push(site);
            }
            None => {
                self.next_learn = now + self.backoff;
                self.backoff = (self.backoff * 2).min(max);
            }
        }
    }

    /// The boundaries changed: what was tried may now match.
    pub(crate) fn bounds_changed(&mut self, now: Instant, base: Duration) {
        self.tried.clear();
        self.backoff = base;
        self.next_learn = now;
    }
}

/// Reads the fingerprint of `slot`'s thread now: its own boundaries, then
/// those learned on other threads, placed on its stack mapping (ending at
/// `top`).
pub(crate) fn look(slot: &Slot, top: Option<u64>) -> Option<u64> {
    let read = |at, buf: &mut [u8]| crate::sys::memory::read(at, buf).ok();
    fingerprint(slot.bounds.iter(), read).or_else(|| {
        let top = top?;
        fingerprint(
            crate::registry::SHARED
                .iter()
                .filter_map(|b| crate::registry::absolute(b, top)),
            read,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(fp: Option<u64>, park_seq: u64) -> Obs {
        Obs {
            probe_epoch: 0,
            park_seq,
            fp,
        }
    }

    fn view() -> View {
        View::new(Instant::now(), Duration::from_millis(10))
    }

    #[test]
    fn the_same_frames_are_the_same_poll() {
        let mut v = view();
        let a = v.advance(obs(Some(7), 0));
        assert_eq!(a % 2, 1, "inside a poll");
        assert_eq!(v.advance(obs(Some(7), 0)), a);
        assert_eq!(v.advance(obs(Some(7), 0)), a);
    }

    #[test]
    fn other_frames_are_another_poll() {
        let mut v = view();
        let a = v.advance(obs(Some(7), 0));
        let b = v.advance(obs(Some(8), 0));
        assert_ne!(a, b);
        assert_eq!(b % 2, 1);
    }

    #[test]
    fn no_boundary_is_between_polls() {
        let mut v = view();
        let a = v.advance(obs(Some(7), 0));
        let between = v.advance(obs(None, 0));
        assert_eq!(between % 2, 0);
        // The same frames again after a gap: a new poll of the same task.
        let b = v.advance(obs(Some(7), 0));
        assert_ne!(a, b);
    }

    #[test]
    fn a_park_in_between_ends_the_poll() {
        let mut v = view();
        let a = v.advance(obs(Some(7), 1));
        // Parked and unparked between two looks: the count moved by 2.
        let b = v.advance(obs(Some(7), 3));
        assert_ne!(a, b);
        // Parked now: between polls, whatever the stack holds.
        assert_eq!(v.advance(obs(Some(7), 4)) % 2, 0);
    }

    #[test]
    fn a_watched_poll_wins_and_never_collides() {
        let mut v = view();
        let s = v.advance(obs(Some(7), 0));
        let w = v.advance(Obs {
            probe_epoch: s,
            park_seq: 0,
            fp: Some(7),
        });
        assert_ne!(w, s);
        assert_eq!(w % 2, 1);
        let after = v.advance(obs(Some(7), 0));
        assert_ne!(after, s);
        assert_ne!(after, w);
    }

    #[test]
    fn learning_backs_off_while_running_and_skips_tried_places() {
        let now = Instant::now();
        let base = Duration::from_millis(10);
        let mut v = View::new(now, base);
        assert!(v.wants_learn(now, false, None));
        assert!(!v.wants_learn(now, true, None), "parked: nothing to learn");
        v.learned(now, None, Duration::from_secs(1));
        assert!(!v.wants_learn(now, false, None));
        assert!(v.wants_learn(now + base, false, None));
        v.learned(now + base, None, Duration::from_secs(1));
        assert!(!v.wants_learn(now + base * 2, false, None), "doubled");
        let site = Some((0x7000, 0x4000));
        assert!(v.wants_learn(now, false, site));
        v.learned(now, site, Duration::from_secs(1));
        assert!(!v.wants_learn(now, false, site));
        v.bounds_changed(now, base);
        assert!(v.wants_learn(now, false, site));
    }
}
