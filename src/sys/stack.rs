//! Stack ranges as types, so that the handler's only raw memory reads are
//! bounded by a range the OS reported.
//!
//! A [`StackRange`] can be made only here, from the thread's own pthread
//! attributes (see `thread::stack_range`): safe code can pass one around and
//! read its bounds, never forge one. The handler narrows it to a
//! [`StackWindow`] that starts at the interrupted stack pointer; that is the
//! one type whose reads dereference raw addresses.

use std::sync::atomic::{AtomicU64, Ordering};

/// A thread's stack as `[lo, hi)`, as libc reported it at registration;
/// never empty. Alignment is not promised: the window checks it itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StackRange {
    lo: u64,
    hi: u64,
}

impl StackRange {
    /// Only `sys` vouches for a range: it must be a mapped stack.
    pub(super) fn new(lo: u64, hi: u64) -> Option<StackRange> {
        (lo < hi).then_some(StackRange { lo, hi })
    }

    /// A range no stack pointer lies in: a request with it makes the
    /// handler record the registers and copy nothing (how the watchdog finds
    /// the stack of a thread it did not register itself, from its `sp`).
    pub(crate) fn registers_only() -> StackRange {
        StackRange { lo: 1, hi: 2 }
    }

    /// One past the highest address of the stack (its top: stacks grow down).
    pub(crate) fn hi(self) -> u64 {
        self.hi
    }

    /// Whether `addr` lies inside the stack.
    pub(crate) fn contains(self, addr: u64) -> bool {
        addr >= self.lo && addr < self.hi
    }

    /// The part of this stack from `sp` to its top, for the handler running
    /// on this very thread. `None` when `sp` is elsewhere (an alternate
    /// signal stack, a coroutine's): nothing of it is read then.
    ///
    /// Sound only if the calling thread is the one this range belongs to,
    /// which is why only the signal handler (in `sys`) calls it.
    #[inline(always)]
    pub(super) fn window_from(self, sp: u64) -> Option<StackWindow> {
        self.contains(sp).then_some(StackWindow {
            lo: sp,
            hi: self.hi,
        })
    }
}

/// A cell holding a [`StackRange`] or nothing, readable inside the signal
/// handler (two atomics, no lock). Only a `StackRange` can be stored, so a
/// loaded one is one that `sys` made.
///
/// Its two words are written separately: the writer must own the cell
/// exclusively while it stores (the sampler writes it only while its
/// buffer is RESERVED, and the handler loads it only after the Acquire
/// claim that follows the Release arming), or a reader could pair one
/// range's `lo` with another's `hi`.
#[derive(Debug)]
pub(crate) struct AtomicStackRange {
    lo: AtomicU64,
    hi: AtomicU64,
}

impl AtomicStackRange {
    /// An empty cell, usable in `static`s.
    pub(crate) const fn none() -> Self {
        AtomicStackRange {
            lo: AtomicU64::new(0),
            hi: AtomicU64::new(0),
        }
    }

    /// Stores `range`; see the type's note on exclusive writers.
    pub(crate) fn store(&self, range: StackRange) {
        self.lo.store(range.lo, Ordering::Relaxed);
        self.hi.store(range.hi, Ordering::Relaxed);
    }

    /// The stored range, `None` if there never was one. AS-safe.
    #[inline(always)]
    pub(crate) fn load(&self) -> Option<StackRange> {
        StackRange::new(
            self.lo.load(Ordering::Relaxed),
            self.hi.load(Ordering::Relaxed),
        )
    }
}

/// A window `[lo, hi)` of the interrupted thread's stack that can be read
/// without faulting while the handler runs: `lo` is the interrupted `sp`, `hi`
/// the top of the stack recorded when the thread registered. Only the
/// handler makes one ([`StackRange::window_from`]), on the thread whose
/// stack it is.
pub(crate) struct StackWindow {
    lo: u64,
    hi: u64,
}

impl StackWindow {
    /// Copies the window's words from its start into `dst`, as many as fit;
    /// returns how many, and whether the stack went on past them. One
    /// `memcpy` (async-signal-safe, POSIX.1-2008 TC2): a word-by-word loop
    /// costs ten times more in an unoptimised build.
    #[inline(always)]
    pub(crate) fn copy_to(&self, dst: &[AtomicU64]) -> (usize, bool) {
        if self.lo % 8 != 0 || self.hi <= self.lo {
            return (0, false);
        }
        let words = usize::try_from((self.hi - self.lo) / 8).unwrap_or(usize::MAX);
        let n = words.min(dst.len());
        if let Some(first) = dst.first() {
            // SAFETY: the source `[lo, lo + 8n)` lies inside the window, which is
            // mapped and belongs to this very thread (see `read`), and `lo` is
            // aligned. The destination is `n` consecutive `AtomicU64`s, which
            // have `u64`'s layout; nothing else touches them while the handler
            // owns the sample buffer (WRITING state), so the plain writes race
            // with no atomic access. Stack and buffer do not overlap: the
            // buffer is on the heap.
            unsafe {
                std::ptr::copy_nonoverlapping(self.lo as *const u64, first.as_ptr(), n);
            }
        }
        (n, words > n)
    }

    /// Reads the aligned word at `addr`, or `None` when it lies outside the window.
    #[inline(always)]
    pub(crate) fn read(&self, addr: u64) -> Option<u64> {
        if addr % 8 != 0 || addr < self.lo || addr >= self.hi || self.hi - addr < 8 {
            return None;
        }
        // SAFETY: `[lo, hi)` is part of the interrupted thread's own stack: `lo`
        // is its current stack pointer and `hi` the top of the range `sys`
        // read from the thread's attributes at registration, and the handler
        // runs on that same thread, so every page in between is mapped for as
        // long as this window exists. The word is aligned and fully inside
        // the window (checked above).
        Some(unsafe { std::ptr::read_volatile(addr as *const u64) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_inverted_range_is_not_a_range() {
        assert_eq!(StackRange::new(0x2000, 0x2000), None);
        assert_eq!(StackRange::new(0x3000, 0x2000), None);
        assert_eq!(AtomicStackRange::none().load(), None);
    }

    #[test]
    fn a_window_starts_at_sp_and_only_inside_the_range() {
        let r = StackRange::new(0x1000, 0x3000).unwrap();
        assert!(r.window_from(0x0ff8).is_none());
        assert!(r.window_from(0x3000).is_none());
        let w = r.window_from(0x2ff8).unwrap();
        assert_eq!((w.lo, w.hi), (0x2ff8, 0x3000));
        let cell = AtomicStackRange::none();
        cell.store(r);
        assert_eq!(cell.load(), Some(r));
    }

    #[test]
    fn the_calling_threads_own_window_reads_its_words_and_nothing_past() {
        let range = crate::sys::thread::stack_range().unwrap();
        let words = [0x1111u64, 0x2222, 0x3333];
        let at = words.as_ptr() as u64;
        let w = range.window_from(at).unwrap();
        assert_eq!(w.read(at + 8), Some(0x2222));
        assert_eq!(w.read(at + 4), None, "unaligned");
        assert_eq!(w.read(at - 8), None, "below sp");
        assert_eq!(w.read(range.hi()), None, "past the top");
        let dst: Vec<AtomicU64> = (0..3).map(|_| AtomicU64::new(0)).collect();
        let (n, more) = w.copy_to(&dst);
        assert_eq!((n, more), (3, true));
        assert_eq!(dst[2].load(Ordering::Relaxed), 0x3333);
    }
}
