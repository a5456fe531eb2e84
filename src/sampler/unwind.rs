//! The frame-pointer walk, as safe code over a bounded word reader, so that it
//! can be unit-tested on synthetic stacks and run inside the signal handler.
//!
//! A frame record on x86_64 and aarch64 is two words: `[fp] = caller's fp`,
//! `[fp + 8] = return address`. Every read goes through `read`, which refuses
//! anything outside the interrupted thread's live stack, so a corrupt chain ends
//! the walk instead of faulting.

/// How many further records a candidate frame pointer must lead to before the
/// resync scan trusts it.
const RESYNC_CHAIN: usize = 3;

/// How far above `sp` the resync scan looks for a frame record, in bytes.
pub(crate) const RESYNC_SPAN: u64 = 4096;

/// Walks the chain starting at `fp`, passing each return address to `push`
/// (which returns `false` when full). Returns how many addresses were pushed.
///
/// The chain must move strictly upwards (towards the stack top), stay 8-aligned
/// and inside the window; a zero return address ends it.
#[inline(always)]
pub(crate) fn walk(
    fp: u64,
    read: &impl Fn(u64) -> Option<u64>,
    push: &mut impl FnMut(u64) -> bool,
) -> usize {
    let mut fp = fp;
    let mut n = 0usize;
    loop {
        if fp % 8 != 0 {
            return n;
        }
        let (Some(next), Some(ra)) = (read(fp), read(fp.wrapping_add(8))) else {
            return n;
        };
        if ra == 0 || !push(ra) {
            return n;
        }
        n = n.wrapping_add(1);
        if next <= fp {
            return n;
        }
        fp = next;
    }
}

/// Whether `fp` starts a chain of at least `RESYNC_CHAIN` plausible records.
#[inline(always)]
fn plausible_chain(fp: u64, read: &impl Fn(u64) -> Option<u64>) -> bool {
    let mut fp = fp;
    for _ in 0..RESYNC_CHAIN {
        if fp % 8 != 0 {
            return false;
        }
        let (Some(next), Some(ra)) = (read(fp), read(fp.wrapping_add(8))) else {
            return false;
        };
        if ra < 4096 || next <= fp {
            return false;
        }
        fp = next;
    }
    true
}

/// Picks where to start the walk: the interrupted `fp` when it leads anywhere,
/// otherwise the lowest address in `[sp, sp + RESYNC_SPAN)` that starts a
/// plausible chain. The second case is code without frame pointers (Debian's
/// libc) that reused `rbp` as a plain register: the caller's records are still
/// on the stack a few words up.
#[inline(always)]
pub(crate) fn start_fp(sp: u64, fp: u64, read: &impl Fn(u64) -> Option<u64>) -> u64 {
    if fp >= sp && plausible_chain(fp, read) {
        return fp;
    }
    let mut at = (sp.wrapping_add(7)) & !7;
    let end = sp.saturating_add(RESYNC_SPAN);
    while at < end {
        if plausible_chain(at, read) {
            return at;
        }
        at = at.wrapping_add(8);
    }
    fp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic stack at `base`; returns a bounded reader over it.
    fn reader(base: u64, words: &[u64]) -> impl Fn(u64) -> Option<u64> + '_ {
        move |addr| {
            if addr < base || addr % 8 != 0 {
                return None;
            }
            words.get(((addr - base) / 8) as usize).copied()
        }
    }

    fn collect(fp: u64, read: &impl Fn(u64) -> Option<u64>, cap: usize) -> Vec<u64> {
        let mut out = Vec::new();
        walk(fp, read, &mut |ra| {
            if out.len() == cap {
                return false;
            }
            out.push(ra);
            true
        });
        out
    }

    const B: u64 = 0x7000_0000;

    #[test]
    fn walks_a_well_formed_chain() {
        // records at B+16 → B+48 → B+80 (end: ra 0)
        let mut s = vec![0u64; 16];
        s[2] = B + 48;
        s[3] = 0x1111;
        s[6] = B + 80;
        s[7] = 0x2222;
        s[10] = B + 200;
        s[11] = 0;
        let r = reader(B, &s);
        assert_eq!(collect(B + 16, &r, 64), vec![0x1111, 0x2222]);
    }

    #[test]
    fn stops_on_a_chain_that_goes_down_or_leaves_the_window() {
        let mut s = vec![0u64; 8];
        s[2] = B; // points below itself
        s[3] = 0x1111;
        s[4] = B + 4096; // outside
        s[5] = 0x3333;
        let r = reader(B, &s);
        assert_eq!(collect(B + 16, &r, 64), vec![0x1111]);
        assert_eq!(collect(B + 32, &r, 64), vec![0x3333]);
        assert_eq!(collect(B + 3, &r, 64), Vec::<u64>::new(), "misaligned fp");
        assert_eq!(
            collect(B + 8 * 100, &r, 64),
            Vec::<u64>::new(),
            "fp outside window"
        );
    }

    #[test]
    fn depth_is_capped_by_push() {
        // a long chain of 50 records
        let mut s = vec![0u64; 120];
        for i in 0..50 {
            s[2 * i] = B + 16 * (i as u64 + 1);
            s[2 * i + 1] = 0x1000 + i as u64;
        }
        let r = reader(B, &s);
        assert_eq!(collect(B, &r, 10).len(), 10);
    }

    #[test]
    fn resyncs_past_a_clobbered_frame_pointer() {
        // sp = B; rbp holds garbage; a real chain starts at B+40.
        let mut s = vec![0u64; 32];
        s[0] = 0xdead; // leaf's spill
        s[1] = 0x4242_4242; // a return address into the caller (found offline)
        s[5] = B + 72;
        s[6] = 0x5000;
        s[9] = B + 104;
        s[10] = 0x6000;
        s[13] = B + 136;
        s[14] = 0x7000;
        s[17] = 0;
        s[18] = 0;
        let r = reader(B, &s);
        assert_eq!(start_fp(B, 0x1234_5678, &r), B + 40);
        assert_eq!(collect(B + 40, &r, 64), vec![0x5000, 0x6000, 0x7000]);
        // a good fp is kept as is
        assert_eq!(start_fp(B, B + 40, &r), B + 40);
    }
}
