//! The memory bound on stacks in flight: samples the watchdog has handed to
//! the report stage that are not unwound yet, each holding its stack copy
//! (32 KiB by default, up to 1 MiB). The report stage can fall behind (a
//! debug build's first symbolization reads the debug info); without a bound
//! in bytes, a channel of a thousand events would hold a thousand copies.
//!
//! The watchdog asks [`keeps_stack`] before it queues a captured stack. A
//! stack refused travels as "same place as before": its time and thread
//! state are kept (on the episode's previous stack), only its copy is
//! dropped, and it is counted (`dropped_samples`). An episode's first stack
//! is never refused: before it there is no "same place" to give time to.
//! So the bytes in flight stay below the cap plus one copy per episode whose
//! first stack is still in flight.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes held right now by queued samples (their copies and frames).
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Bytes held right now by samples queued for the report stage.
pub(crate) fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// The rule: whether a captured stack of `bytes` goes to the report stage
/// whole. Always for an episode's first stack; otherwise only while the
/// queue has room for whole stacks (`backlog_full` is the watchdog's count
/// bound on its own backlog) and the stacks in flight, this one included,
/// fit in `cap`.
pub(crate) fn keeps_stack(
    first_of_episode: bool,
    backlog_full: bool,
    in_flight: usize,
    bytes: usize,
    cap: usize,
) -> bool {
    first_of_episode || (!backlog_full && in_flight.saturating_add(bytes) <= cap)
}

/// A queued sample's share of [`in_flight`], given back when the sample is
/// dropped (by the report stage once it has unwound it, or with the
/// channel). A clone holds nothing: only the queued original counts.
#[derive(Default)]
pub(crate) struct Charge(usize);

impl Charge {
    /// Adds `bytes` to the bytes in flight, for as long as the charge lives.
    pub(crate) fn new(bytes: usize) -> Charge {
        IN_FLIGHT.fetch_add(bytes, Ordering::Relaxed);
        Charge(bytes)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(self.0, Ordering::Relaxed);
    }
}

impl Clone for Charge {
    fn clone(&self) -> Charge {
        Charge(0)
    }
}

/// Charges are bookkeeping, not part of a sample's value.
impl PartialEq for Charge {
    fn eq(&self, _: &Charge) -> bool {
        true
    }
}

impl Eq for Charge {}

impl std::fmt::Debug for Charge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Charge({} bytes)", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB32: usize = 32 * 1024;

    #[test]
    fn a_stack_that_fits_is_kept_one_that_does_not_is_not() {
        let cap = 4 * KIB32;
        assert!(keeps_stack(false, false, 0, KIB32, cap));
        assert!(
            keeps_stack(false, false, 3 * KIB32, KIB32, cap),
            "exactly full"
        );
        assert!(!keeps_stack(false, false, 3 * KIB32 + 1, KIB32, cap));
        assert!(
            !keeps_stack(false, false, usize::MAX, KIB32, cap),
            "no overflow"
        );
    }

    #[test]
    fn an_episodes_first_stack_is_kept_whatever_the_load() {
        assert!(keeps_stack(true, true, usize::MAX, KIB32, 0));
        assert!(keeps_stack(true, false, 10 * KIB32, KIB32, KIB32));
    }

    #[test]
    fn a_full_backlog_or_a_zero_cap_keeps_only_first_stacks() {
        assert!(!keeps_stack(false, true, 0, KIB32, usize::MAX));
        assert!(!keeps_stack(false, false, 0, 1, 0));
    }

    #[test]
    fn a_charge_counts_until_dropped_and_its_clone_counts_nothing() {
        // Other tests in this binary may hold charges: compare differences.
        let c = Charge::new(1 << 40);
        assert!(in_flight() >= 1 << 40);
        let copy = c.clone();
        drop(c);
        assert!(in_flight() < 1 << 40);
        drop(copy);
        assert!(in_flight() < 1 << 40);
    }
}
