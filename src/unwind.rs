//! Unwinding a copied stack with the unwind tables (CFI), off the signal path.
//!
//! The handler copies the registers and the stack from `sp` up; here
//! framehop replays the `.eh_frame` rules of each loaded object (indexed by
//! its `.eh_frame_hdr`) over that copy. It reads nothing but the copy: a
//! rule that points outside it ends the unwind, it never touches the live
//! stack. Code without tables (hand-written assembly, a JIT) is unwound by
//! its frame records, which is framehop's own fallback.
//!
//! Why framehop over gimli's CFI evaluator alone: gimli parses and evaluates
//! the tables, but a sampling unwinder needs more around it (a rule cache,
//! the first-frame rules, stack-end detection, aarch64's link register and
//! pointer authentication) and framehop is that, tested by samply on real
//! profiles, for ~5,500 lines that reuse the gimli addr2line already brings.

use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module as FhModule, Unwinder};

use crate::sampler::RawSample;
use crate::symbolize::RawFrame;
use crate::sys::modules::Module;

#[cfg(target_arch = "x86_64")]
mod arch {
    pub(super) use framehop::x86_64::{
        CacheX86_64 as Cache, UnwindRegsX86_64 as Regs, UnwinderX86_64 as Native,
    };

    /// framehop's registers for the leaf, with `fp` as given (a sample
    /// without registers tries several).
    pub(super) fn regs(r: &crate::sys::Registers, fp: u64) -> Regs {
        Regs::new(r.pc, r.sp, fp)
    }

    pub(super) fn sp_fp(r: &Regs) -> (u64, u64) {
        (r.sp(), r.bp())
    }
}

#[cfg(target_arch = "aarch64")]
mod arch {
    pub(super) use framehop::aarch64::{
        CacheAarch64 as Cache, UnwindRegsAarch64 as Regs, UnwinderAarch64 as Native,
    };

    /// framehop's registers for the leaf, with `fp` as given (a sample
    /// without registers tries several).
    pub(super) fn regs(r: &crate::sys::Registers, fp: u64) -> Regs {
        Regs::new(r.lr, r.sp, fp)
    }

    pub(super) fn sp_fp(r: &Regs) -> (u64, u64) {
        (r.sp(), r.fp())
    }
}

/// Most frames one unwind produces (a runaway loop ends here).
const MAX_DEPTH: usize = 256;

/// Frame-pointer values tried for a sample taken without registers.
const FP_CANDIDATES: usize = 12;

/// The frame pointer a sample without one is first unwound with: not 0
/// (which framehop reads as the end of the chain), and so far below any
/// stack that every address derived from it (`fp + offset`) lies outside
/// the copy, so a rule that needs the frame pointer fails instead of
/// reading a wrong word.
const NO_FP: u64 = 8;

/// The bytes an unwind table may take in memory; a bound on what is copied.
const MAX_TABLE_BYTES: u64 = 256 << 20;

/// How an unwind ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The tables say this is the outermost frame (thread entry, `_start`).
    Root,
    /// The unwind could go no further: a rule read outside the copy, or led
    /// to an address that is not code. `sp` and `fp` are the registers of
    /// the last good frame, for a frame-record walk to carry on from.
    Broke { sp: u64, fp: u64 },
}

/// Frames recovered from a sample, innermost first.
#[derive(Debug)]
pub(crate) struct Unwound {
    pub(crate) frames: Vec<RawFrame>,
    /// The stack pointer in each frame (`sps[k]` for `frames[k]`): frame
    /// `k`'s canonical frame address is `sps[k + 1]`.
    pub(crate) sps: Vec<u64>,
    pub(crate) end: End,
    /// No guessed register went into it: the sample's own registers, or a
    /// sample without a frame pointer whose unwind never needed one.
    pub(crate) exact: bool,
}

/// The unwind tables of every loaded object.
pub(crate) struct Cfi {
    unwinder: arch::Native<Vec<u8>>,
    cache: arch::Cache,
}

impl std::fmt::Debug for Cfi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cfi")
    }
}

impl Cfi {
    /// Reads `.eh_frame_hdr` and `.eh_frame` of each module from memory
    /// (where the vDSO's only copy is) through `read(addr, len)`.
    pub(crate) fn new(modules: &[Module], read: impl Fn(u64, usize) -> Option<Vec<u8>>) -> Cfi {
        let mut unwinder = arch::Native::new();
        let mut sorted: Vec<&Module> = modules.iter().collect();
        sorted.sort_by_key(|m| text_range(m).0);
        let mut last_end = 0;
        for m in sorted {
            let (start, end) = text_range(m);
            if start < last_end || start >= end {
                continue;
            }
            last_end = end;
            let info = tables(m, &read).unwrap_or_default();
            unwinder.add_module(FhModule::new(m.name.clone(), start..end, m.bias, info));
        }
        Cfi {
            unwinder,
            cache: arch::Cache::new(),
        }
    }

    /// Unwinds `raw` with the tables, reading only its copied stack. Each
    /// return address must pass `is_code` (inside a loaded text segment).
    ///
    /// A sample taken without a signal has no frame-pointer register, and a
    /// rule that uses it (any function that keeps a frame pointer) needs its
    /// value. First it is unwound without one ([`NO_FP`]): an unwind that
    /// reaches the root that way never needed it (the syscall wrapper and
    /// its callers find their frames from `sp`, as in a build without frame
    /// pointers) and is exact, so it is the only one returned. Otherwise
    /// this returns one unwind per candidate value (the start of the first
    /// plausible chain, and each of the innermost words that could be a
    /// frame record, the word above it being a return address), for the
    /// caller to pick the one whose calls check out.
    pub(crate) fn unwind(
        &mut self,
        raw: &RawSample,
        is_code: impl Fn(u64) -> bool,
    ) -> Vec<Unwound> {
        if raw.regs.fp != 0 {
            let mut u = self.unwind_from(raw, raw.regs.fp, &is_code);
            u.exact = true;
            return vec![u];
        }
        let mut without = self.unwind_from(raw, NO_FP, &is_code);
        if without.end == End::Root {
            without.exact = true;
            return vec![without];
        }
        let probe = |addr| copied_word(raw, addr);
        let mut candidates = vec![crate::sampler::unwind::start_fp(raw.regs.sp, 0, &probe)];
        candidates.extend(
            (0..raw.copy.len().saturating_sub(1))
                .map(|k| raw.regs.sp.wrapping_add(8 * k as u64))
                .filter(|&a| probe(a.wrapping_add(8)).is_some_and(&is_code))
                .take(FP_CANDIDATES),
        );
        candidates.dedup();
        candidates
            .into_iter()
            .map(|fp| self.unwind_from(raw, fp, &is_code))
            .collect()
    }

    fn unwind_from(&mut self, raw: &RawSample, fp: u64, is_code: &impl Fn(u64) -> bool) -> Unwound {
        let mut read = |addr: u64| copied_word(raw, addr).ok_or(());
        let mut regs = arch::regs(&raw.regs, fp);
        let mut frames = vec![RawFrame::Pc(raw.regs.pc)];
        let mut sps = vec![raw.regs.sp];
        let mut at = FrameAddress::from_instruction_pointer(raw.regs.pc);
        while frames.len() < MAX_DEPTH {
            let (sp, fp) = arch::sp_fp(&regs);
            let broke = End::Broke { sp, fp };
            match self
                .unwinder
                .unwind_frame(at, &mut regs, &mut self.cache, &mut read)
            {
                Ok(Some(ra)) if is_code(ra) => match FrameAddress::from_return_address(ra) {
                    Some(next) => {
                        frames.push(RawFrame::Return(ra));
                        sps.push(arch::sp_fp(&regs).0);
                        at = next;
                    }
                    None => {
                        return Unwound {
                            frames,
                            sps,
                            end: broke,
                            exact: false,
                        }
                    }
                },
                // On aarch64 a leaf returns through `lr`; a sample taken
                // without a signal has none (0), which framehop reads as the
                // end of the stack. It is not: the frame records go on.
                Ok(None)
                    if frames.len() == 1 && raw.regs.lr == 0 && cfg!(target_arch = "aarch64") =>
                {
                    return Unwound {
                        frames,
                        sps,
                        end: broke,
                        exact: false,
                    }
                }
                Ok(None) => {
                    return Unwound {
                        frames,
                        sps,
                        end: End::Root,
                        exact: false,
                    }
                }
                Ok(Some(_)) | Err(_) => {
                    return Unwound {
                        frames,
                        sps,
                        end: broke,
                        exact: false,
                    }
                }
            }
        }
        let (sp, fp) = arch::sp_fp(&regs);
        Unwound {
            frames,
            sps,
            end: End::Broke { sp, fp },
            exact: false,
        }
    }
}

/// The span of a module's code, as framehop wants one range per module.
fn text_range(m: &Module) -> (u64, u64) {
    let start = m.text.iter().map(|t| t.0).min().unwrap_or(0);
    let end = m.text.iter().map(|t| t.1).max().unwrap_or(0);
    (start, end)
}

/// The unwind sections of `m`, as addresses relative to its load bias.
fn tables(
    m: &Module,
    read: &impl Fn(u64, usize) -> Option<Vec<u8>>,
) -> Option<ExplicitModuleSectionInfo<Vec<u8>>> {
    let (hdr_start, hdr_end) = m.eh_frame_hdr?;
    let hdr = read(
        hdr_start,
        usize::try_from(hdr_end.checked_sub(hdr_start)?).ok()?,
    )?;
    let eh_frame = eh_frame_address(&hdr, hdr_start)?;
    // `.eh_frame` has no size in memory; it runs at most to the end of its
    // segment, and the header's table only ever points inside it.
    let (_, seg_end) = m.segment_of(eh_frame)?;
    let len = seg_end.checked_sub(eh_frame)?.min(MAX_TABLE_BYTES);
    let frames = read(eh_frame, usize::try_from(len).ok()?)?;
    let svma = |a: u64| a.wrapping_sub(m.bias);
    let text = m.segments.iter().find(|s| s.exec);
    Some(ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: text.map(|s| svma(s.start)..svma(s.end)),
        eh_frame_svma: Some(svma(eh_frame)..svma(eh_frame) + len),
        eh_frame: Some(frames),
        eh_frame_hdr_svma: Some(svma(hdr_start)..svma(hdr_end)),
        eh_frame_hdr: Some(hdr),
        ..Default::default()
    })
}

/// Where `.eh_frame` starts, from the header at runtime address `at`.
fn eh_frame_address(hdr: &[u8], at: u64) -> Option<u64> {
    let bases = gimli::BaseAddresses::default().set_eh_frame_hdr(at);
    let parsed = gimli::EhFrameHdr::new(hdr, gimli::NativeEndian)
        .parse(&bases, 8)
        .ok()?;
    match parsed.eh_frame_ptr() {
        gimli::Pointer::Direct(a) => Some(a),
        gimli::Pointer::Indirect(_) => None,
    }
}

/// The word the handler copied from stack address `at`, if it copied it.
pub(crate) fn copied_word(raw: &RawSample, at: u64) -> Option<u64> {
    let offset = at.checked_sub(raw.regs.sp)?;
    if offset % 8 != 0 {
        return None;
    }
    raw.copy.get(usize::try_from(offset / 8).ok()?).copied()
}
