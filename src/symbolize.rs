//! Turning raw addresses into readable frames, off the signal path.
//!
//! One `addr2line::Loader` per loaded object, opened on first use; every
//! distinct address is resolved once and cached. Return addresses are looked
//! up at `ra − 1` (the call instruction), the interrupted `pc` as is. Inlined
//! frames are expanded; names are demangled without hashes.
//!
//! Also here: the offline *leaf repair*. Code without frame pointers (Debian's
//! libc) hides its caller from the frame-pointer walk; the handler copies the
//! top of the stack, and this module recovers the return addresses in it: a
//! word is one if it points just after a `call` in a loaded text segment.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Unwind;
use crate::report::Frame;
use crate::sampler::RawSample;
use crate::symbols::{Bytes, SymbolTable};
use crate::sys::mapping::{FileMapping, MappedFile};
use crate::sys::modules::{self, Module};
use crate::unwind::{copied_word, Cfi, End};

/// An address from a stack, with the rule for looking it up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RawFrame {
    /// The interrupted instruction: look up as is.
    Pc(u64),
    /// A return address: the call is the instruction before it, so look up `ra − 1`.
    Return(u64),
}

impl RawFrame {
    /// The address to hand to the debug-info lookup.
    pub(crate) fn lookup_address(self) -> u64 {
        match self {
            RawFrame::Pc(a) => a,
            RawFrame::Return(a) => a.saturating_sub(1),
        }
    }

    /// The address as captured.
    pub(crate) fn address(self) -> u64 {
        match self {
            RawFrame::Pc(a) | RawFrame::Return(a) => a,
        }
    }
}

/// Resolves addresses of this process.
pub(crate) struct Symbolizer {
    modules: Vec<Module>,
    adds: u64,
    loaders: HashMap<usize, Option<addr2line::Loader>>,
    /// Where each loader mapped its file (`None`: looked, not found).
    mappings: HashMap<usize, Option<FileMapping>>,
    /// A loader read its mapping since the pages were last given back.
    touched: bool,
    last_release: Instant,
    cache: HashMap<RawFrame, Arc<[Frame]>>,
    call_targets: HashMap<u64, Option<Call>>,
    mem: Option<File>,
    mode: Unwind,
    /// The loaded objects' unwind tables, read at the first unwind.
    cfi: Option<Cfi>,
    /// Sized symbol tables per module (`None`: looked, none readable).
    symbols: HashMap<usize, Option<SymbolTable>>,
    /// Where each symbol table's file is mapped, to give its pages back.
    symbol_mappings: HashMap<usize, Option<FileMapping>>,
}

/// Debug-info pages are given back at most this often: each release makes
/// the next new addresses fault their pages back in.
const RELEASE_EVERY: Duration = Duration::from_secs(1);

/// Distinct addresses kept in the cache before it is cleared (a memory bound:
/// an entry with its inlined frames is a few hundred bytes, so this stays
/// within a few MiB; a long run over more addresses than this re-resolves some).
const CACHE_LIMIT: usize = 16_384;

/// The symbolizer of the last report stage, kept for the next: the unwind
/// tables, symbol tables and debug info of a process are loaded once (a
/// debug build's take most of a second), not once per guard.
static KEPT: std::sync::Mutex<Option<Symbolizer>> = std::sync::Mutex::new(None);

impl Symbolizer {
    /// The kept symbolizer, switched to `mode`, or a new one.
    pub(crate) fn reuse(mode: Unwind) -> Self {
        let kept = KEPT.lock().unwrap_or_else(|p| p.into_inner()).take();
        match kept {
            Some(mut s) => {
                s.mode = mode;
                s.refresh();
                s
            }
            None => Self::with_mode(mode),
        }
    }

    /// Keeps this symbolizer for the next report stage of the process.
    pub(crate) fn keep(self) {
        *KEPT.lock().unwrap_or_else(|p| p.into_inner()) = Some(self);
    }

    /// Loads what learning a sampled thread's poll boundary needs (unwind
    /// tables, the executable's symbols and debug info) ahead of the first
    /// sample, by resolving an address of this very function.
    pub(crate) fn warm(&mut self) {
        self.refresh();
        let here = Symbolizer::warm as fn(&mut Symbolizer) as *const () as usize as u64;
        let _ = self.resolve(RawFrame::Pc(here));
        let raw = RawSample::from_stack(0, here, 0, Vec::new(), false);
        let _ = self.unwind_cfi(&raw);
    }

    /// A symbolizer that unwinds with the default mode ([`Unwind::Auto`]).
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::with_mode(Unwind::Auto)
    }

    pub(crate) fn with_mode(mode: Unwind) -> Self {
        let (modules, adds) = modules::loaded_modules();
        Symbolizer {
            modules,
            adds,
            loaders: HashMap::new(),
            mappings: HashMap::new(),
            touched: false,
            last_release: Instant::now(),
            cache: HashMap::new(),
            call_targets: HashMap::new(),
            mem: File::open("/proc/self/mem").ok(),
            mode,
            cfi: None,
            symbols: HashMap::new(),
            symbol_mappings: HashMap::new(),
        }
    }

    /// Re-reads the module list if a library was loaded since the last look.
    pub(crate) fn refresh(&mut self) {
        let adds = modules::adds_counter();
        if adds != self.adds {
            let (m, a) = modules::loaded_modules();
            self.modules = m;
            self.adds = a;
            self.loaders.clear();
            self.mappings.clear();
            self.cache.clear();
            self.call_targets.clear();
            self.cfi = None;
            self.symbols.clear();
            self.symbol_mappings.clear();
        }
    }

    /// The frames of a sample, innermost first, unwound as the mode says.
    pub(crate) fn unwind(&mut self, raw: &RawSample) -> Vec<RawFrame> {
        // Taken without a signal (a thread blocked in the kernel): there is
        // no frame-pointer register, so the tables' first rule that reads
        // it works from a guess. The frame records found in the copy by the
        // validated scan are the other witness; the one that reaches
        // further up the stack wins.
        let unsignalled = raw.regs.fp == 0 && raw.regs.lr == 0;
        match self.mode {
            Unwind::FramePointers if unsignalled => self.scanned(raw),
            Unwind::FramePointers => self.repair(raw),
            Unwind::Auto | Unwind::Dwarf if unsignalled => {
                // The tables first, carried on along the records where they
                // break; where they end early (a rule read the guessed
                // register), the records found by the scan carry on from the
                // last frame both saw.
                let u = self.unwind_cfi(raw);
                if u.exact {
                    // Unwound to the root without needing the frame
                    // pointer: nothing was guessed, so nothing to weigh.
                    return u.frames;
                }
                let mut out = match u.end {
                    End::Root => u.frames,
                    End::Broke { sp, fp } => self.carry_on(raw, u.frames, sp, fp),
                };
                let last = out.last().map(|f| f.address());
                if let Some(i) = last.and_then(|l| raw.frames.iter().position(|&f| f == l)) {
                    for &ra in &raw.frames[i + 1..] {
                        if self.module_of(ra).is_none() {
                            break;
                        }
                        out.push(RawFrame::Return(ra));
                    }
                }
                // Where the two never met (the tables lost the chain early),
                // the witness that reaches further wins.
                let scanned = self.scanned(raw);
                if scanned.len() > out.len() {
                    scanned
                } else {
                    out
                }
            }
            Unwind::Dwarf => self.unwind_cfi(raw).frames,
            Unwind::Auto => {
                let u = self.unwind_cfi(raw);
                match u.end {
                    End::Root => u.frames,
                    End::Broke { sp, fp } => self.carry_on(raw, u.frames, sp, fp),
                }
            }
        }
    }

    /// The frame records found in the copy by the validated scan, then
    /// leaf repair: a sample with no frame-pointer register to start from.
    fn scanned(&mut self, raw: &RawSample) -> Vec<RawFrame> {
        let read = |a: u64| copied_word(raw, a);
        let chain = crate::sampler::unwind::start_fp(raw.regs.sp, 0, &read);
        let mut frames = Vec::new();
        crate::sampler::unwind::walk(chain, &read, &mut |ra| {
            frames.push(ra);
            frames.len() < crate::sampler::MAX_FRAMES
        });
        self.repair(&RawSample {
            chain,
            frames,
            ..raw.clone()
        })
    }

    /// The tables' unwind of a sample, with each frame's stack pointer
    /// (what learning a poll boundary needs, whatever the mode).
    pub(crate) fn unwind_with_sps(&mut self, raw: &RawSample) -> crate::unwind::Unwound {
        self.unwind_cfi(raw)
    }

    fn unwind_cfi(&mut self, raw: &RawSample) -> crate::unwind::Unwound {
        let Symbolizer {
            cfi, modules, mem, ..
        } = self;
        let cfi = cfi.get_or_insert_with(|| {
            Cfi::new(modules, |at: u64, len: usize| {
                let mut b = vec![0u8; len];
                mem.as_ref()?.read_exact_at(&mut b, at).ok()?;
                Some(b)
            })
        });
        let is_code = |a: u64| {
            modules
                .iter()
                .any(|m| m.text.iter().any(|&(s, e)| a >= s && a < e))
        };
        let mut unwinds = cfi.unwind(raw, is_code);
        if unwinds.len() <= 1 {
            return unwinds.pop().unwrap_or(crate::unwind::Unwound {
                frames: vec![RawFrame::Pc(raw.regs.pc)],
                sps: vec![raw.regs.sp],
                end: End::Root,
                exact: false,
            });
        }
        // Several guesses of the frame pointer (a sample without registers):
        // the right one is the unwind whose return addresses each follow a
        // call into the frame below; a wrong guess picks up stale words.
        // A stale chain left deeper in the stack checks out within itself;
        // where a wrong guess joins it, the check fails. So checked calls
        // count, those in an unbroken run from the leaf twice; then one that
        // reaches the root wins, then the longest.
        let mut best: Option<((usize, usize, bool, usize), usize)> = None;
        for (i, u) in unwinds.iter().enumerate() {
            let checks: Vec<bool> = u
                .frames
                .windows(2)
                .map(|w| self.returns_from(w[1].address(), w[0].lookup_address()))
                .collect();
            let prefix = checks.iter().take_while(|&&c| c).count();
            let checked = checks.iter().filter(|&&c| c).count();
            let key = (prefix + checked, prefix, u.end == End::Root, u.frames.len());
            if best.is_none_or(|(b, _)| key > b) {
                best = Some((key, i));
            }
        }
        let pick = best.map_or(0, |(_, i)| i);
        unwinds.swap_remove(pick)
    }

    /// Where the tables ran out (a truncated copy, code whose rule reads a
    /// register the sample lacks): carries on along the frame records, from
    /// the last good frame's frame pointer, or from the lowest plausible
    /// record above its `sp` (a validated scan) when that leads nowhere;
    /// then along the handler's own walk of the live chain, which is not
    /// bounded by the copy.
    fn carry_on(
        &mut self,
        raw: &RawSample,
        mut out: Vec<RawFrame>,
        sp: u64,
        fp: u64,
    ) -> Vec<RawFrame> {
        let read = |a: u64| copied_word(raw, a);
        // The records inside the copy, from the last good frame's.
        let mut record = crate::sampler::unwind::start_fp(sp, fp, &read);
        while out.len() < crate::sampler::MAX_FRAMES && record % 8 == 0 {
            let (Some(next), Some(ra)) = (read(record), read(record.wrapping_add(8))) else {
                break;
            };
            if ra == 0 || self.module_of(ra).is_none() {
                break;
            }
            out.push(RawFrame::Return(ra));
            if next <= record {
                return out;
            }
            record = next;
        }
        // Past the copy, the handler's own walk of the live chain goes on.
        // Join it where its records reach `record`, the first one this walk
        // could not read (by address: in a recursion the return addresses
        // repeat, the record addresses do not).
        let mut at = raw.chain;
        for (j, _) in raw.frames.iter().enumerate() {
            if at == record {
                for &ra in &raw.frames[j..] {
                    if out.len() >= crate::sampler::MAX_FRAMES || self.module_of(ra).is_none() {
                        break;
                    }
                    out.push(RawFrame::Return(ra));
                }
                break;
            }
            match copied_word(raw, at) {
                Some(next) if next > at => at = next,
                _ => break,
            }
        }
        out
    }

    /// Whether `addr` is code of the main program (built with frame pointers).
    fn in_main(&self, addr: u64) -> bool {
        self.module_of(addr)
            .is_some_and(|i| self.modules[i].is_main)
    }

    fn module_of(&self, addr: u64) -> Option<usize> {
        self.modules
            .iter()
            .position(|m| m.text.iter().any(|&(s, e)| addr >= s && addr < e))
    }

    fn loader(&mut self, i: usize) -> Option<&addr2line::Loader> {
        self.touched = true;
        let path = &self.modules[i].path;
        self.loaders
            .entry(i)
            .or_insert_with(|| addr2line::Loader::new(path).ok())
            .as_ref()
    }

    fn read_mem<const N: usize>(&self, at: u64) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        self.mem.as_ref()?.read_exact_at(&mut b, at).ok()?;
        Some(b)
    }

    /// Where the call instruction just before return address `ra` goes, if it
    /// is a call whose target can be known (direct, or through the GOT), with
    /// PLT stubs followed to the real function.
    fn call_target(&mut self, ra: u64) -> Option<Call> {
        if let Some(&t) = self.call_targets.get(&ra) {
            return t;
        }
        let t = self.module_of(ra).and_then(|_| {
            // A debug build calls another crate's function by loading its
            // GOT slot into a register first: the slot says where it goes.
            #[cfg(target_arch = "x86_64")]
            if let Some(slot) = self
                .read_mem::<16>(ra.checked_sub(16)?)
                .and_then(|b| got_slot_of_register_call(&b, ra))
            {
                if let Some(v) = self.read_mem::<8>(slot) {
                    return Some(Call::To(u64::from_le_bytes(v)));
                }
            }
            let bytes: [u8; 8] = self.read_mem(ra.checked_sub(8)?)?;
            match decode_call(&bytes, ra, |slot| {
                self.read_mem::<8>(slot).map(u64::from_le_bytes)
            })? {
                Call::To(target) => Some(Call::To(self.follow_plt(target))),
                Call::Indirect => Some(Call::Indirect),
            }
        });
        if self.call_targets.len() < CACHE_LIMIT {
            self.call_targets.insert(ra, t);
        }
        t
    }

    /// If `target` is a PLT stub (`[endbr64] [bnd] jmp *slot(%rip)`), the function it jumps to.
    fn follow_plt(&self, target: u64) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if let Some(b) = self.read_mem::<16>(target) {
            let mut i = 0;
            if b[..4] == [0xF3, 0x0F, 0x1E, 0xFA] {
                i = 4;
            }
            if b[i] == 0xF2 {
                i += 1;
            }
            if b[i] == 0xFF && b[i + 1] == 0x25 {
                let disp = i32::from_le_bytes([b[i + 2], b[i + 3], b[i + 4], b[i + 5]]);
                let next = target.wrapping_add(i as u64 + 6);
                if let Some(v) = self.read_mem::<8>(next.wrapping_add_signed(disp.into())) {
                    return u64::from_le_bytes(v);
                }
            }
        }
        target
    }

    /// Start address of the function containing `addr`, from the symbol table.
    fn function_start(&mut self, addr: u64) -> Option<u64> {
        let i = self.module_of(addr)?;
        let bias = self.modules[i].bias;
        let sym = self.loader(i)?.find_symbol_info(addr.wrapping_sub(bias))?;
        let (start, name) = (sym.address().wrapping_add(bias), sym.name().as_ptr());
        self.note_mapping(i, name as u64);
        Some(start)
    }

    /// Remembers the file mapping of loader `i`, found from `inside`, the
    /// address of a symbol name it handed out: symbol tables are never
    /// compressed, so their names point into the loader's mapping.
    fn note_mapping(&mut self, i: usize, inside: u64) {
        let path = &self.modules[i].path;
        self.mappings
            .entry(i)
            .or_insert_with(|| FileMapping::containing(inside, path));
    }

    /// How long until the debug info's resident pages are due to be given
    /// back; `None` while nothing was read since the last time.
    pub(crate) fn release_due_in(&self) -> Option<Duration> {
        self.touched
            .then(|| RELEASE_EVERY.saturating_sub(self.last_release.elapsed()))
    }

    /// Gives back the resident pages of the debug info (the bytes stay in
    /// the page cache; a later lookup faults in only what it reads): a large
    /// binary's debug info is tens of MiB, and a new address needs a few
    /// pages of it. Call when idle, per [`release_due_in`](Self::release_due_in).
    pub(crate) fn release_pages(&mut self) {
        self.touched = false;
        self.last_release = Instant::now();
        FileMapping::release_pages(
            self.mappings
                .values()
                .chain(self.symbol_mappings.values())
                .flatten(),
        );
    }

    /// Whether `ra` is a genuine return address of the caller of the frame at
    /// `callee` (the previous, inner frame): its call instruction must lead to
    /// the function containing `callee`. A stale return address left in an
    /// uninitialised stack slot almost never passes this.
    fn returns_from(&mut self, ra: u64, callee: u64) -> bool {
        let target = match self.call_target(ra) {
            Some(Call::To(t)) => t,
            // A call through a function pointer: only trust it when it crosses
            // into another module (our code calling libc through a pointer).
            Some(Call::Indirect) => return self.module_of(ra) != self.module_of(callee),
            None => return false,
        };
        if self.function_start(callee) == Some(target) {
            return true;
        }
        let (mt, mc, mr) = (
            self.module_of(target),
            self.module_of(callee),
            self.module_of(ra),
        );
        if mt.is_none() || mt != mc {
            return false;
        }
        // No exact symbol (stripped libraries): accept a target shortly before
        // the callee in its module, or any call into another module's code
        // (the callee may be reached by a tail call from the target).
        (target <= callee && callee - target < 64 * 1024) || mr != mc
    }

    /// The frames of a sample, innermost first, leaf repaired.
    pub(crate) fn repair(&mut self, raw: &RawSample) -> Vec<RawFrame> {
        let mut out = Vec::with_capacity(raw.frames.len() + 4);
        out.push(RawFrame::Pc(raw.regs.pc));
        // A chain that started from a register that only looked like a frame
        // pointer begins with entries that are not code; the real chain
        // follows. Skip them, and then the whole copied stack is fair game for
        // the scan below.
        let skip = raw
            .frames
            .iter()
            .take_while(|&&ra| self.module_of(ra).is_none())
            .count();
        let chain = &raw.frames[skip..];
        let scan_end = if skip > 0 { u64::MAX } else { raw.chain };
        if !self.in_main(raw.regs.pc) {
            // The leaf is in code built without frame pointers (libc, the
            // vDSO): its callers' return addresses sit between sp and the first
            // frame record the walk used. Take them one by one, each checked
            // against the frame below it, up to the first one back in our own
            // (frame-pointer) code, where the chain takes over.
            let mut callee = raw.regs.pc;
            let mut candidates = Vec::with_capacity(raw.copy.len() + 1);
            if raw.regs.lr != 0 {
                candidates.push(raw.regs.lr);
            }
            for (k, &word) in raw.copy.iter().enumerate() {
                let at = raw.regs.sp.wrapping_add(8 * k as u64);
                if scan_end != 0 && at >= scan_end {
                    break;
                }
                candidates.push(word);
            }
            for word in candidates {
                if word > 4096 && self.returns_from(word, callee) {
                    out.push(RawFrame::Return(word));
                    callee = word;
                    // Back in frame-pointer code: the chain takes over, unless
                    // the handler found none, then keep following the copy.
                    if self.in_main(word) && !chain.is_empty() {
                        break;
                    }
                }
            }
        } else if let Some(&first) = chain.first() {
            // Interrupted in a prologue or epilogue (before `mov rbp, rsp` or
            // after `pop rbp`): the return address into our caller is at sp
            // (or just above it) and the chain starts one frame too high.
            let caller = self.function_start(first);
            for &word in raw.copy.iter().take(2) {
                if word > 4096
                    && self.returns_from(word, raw.regs.pc)
                    && self.function_start(word).is_some()
                    && self.function_start(word) != caller
                {
                    out.push(RawFrame::Return(word));
                    break;
                }
            }
        }
        // Where the frame record holding `chain[k]` sits, while the records
        // are inside the copied stack (and the chain started where the
        // handler said it did).
        let mut record = (skip == 0).then_some(raw.chain);
        for (k, &ra) in chain.iter().enumerate() {
            // A chain found by the resync scan may have garbage at the end.
            if self.module_of(ra).is_none() {
                break;
            }
            let next = record.and_then(|r| copied_word(raw, r));
            // Where the repaired prefix meets the chain, both may hold the same
            // return address. Only there: equal neighbours further up are
            // recursion, and each level is a real frame.
            if !(k == 0 && out.last() == Some(&RawFrame::Return(ra))) {
                out.push(RawFrame::Return(ra));
                // Libraries that keep frame pointers skip nothing: then the
                // next entry already returns into the caller of this one.
                let skipped = !self.in_main(ra)
                    && !chain
                        .get(k + 1)
                        .is_some_and(|&up| self.returns_from(up, ra));
                if let (true, Some(r), Some(n)) = (skipped, record, next) {
                    self.repair_between(raw, r, n, ra, &mut out);
                }
            }
            record = next;
        }
        out
    }

    /// `ra` returns into a function without a frame pointer (libc's
    /// `clock_gettime` calling the vDSO, which has one): the chain goes
    /// straight from its frame record to its caller's caller, and the return
    /// address into its caller sits on the stack between this record and the
    /// next. Recovers it (and any more frame-pointer-less callers) from the
    /// copied words there, each checked against the frame below it.
    fn repair_between(
        &mut self,
        raw: &RawSample,
        record: u64,
        next: u64,
        ra: u64,
        out: &mut Vec<RawFrame>,
    ) {
        let mut callee = ra;
        let mut at = record.wrapping_add(16);
        while at < next {
            let Some(word) = copied_word(raw, at) else {
                return;
            };
            at += 8;
            if word > 4096 && self.returns_from(word, callee) {
                out.push(RawFrame::Return(word));
                callee = word;
                if self.in_main(word) {
                    return;
                }
            }
        }
    }

    /// Resolves one address to its frames (inlined callee first).
    pub(crate) fn resolve(&mut self, raw: RawFrame) -> Arc<[Frame]> {
        if let Some(f) = self.cache.get(&raw) {
            return f.clone();
        }
        let frames: Arc<[Frame]> = self.resolve_uncached(raw).into();
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(raw, frames.clone());
        frames
    }

    fn resolve_uncached(&mut self, raw: RawFrame) -> Vec<Frame> {
        let addr = raw.lookup_address();
        let Some(i) = self.module_of(addr) else {
            return vec![Frame::unknown(raw.address(), None)];
        };
        let bias = self.modules[i].bias;
        let probe = addr.wrapping_sub(bias);
        let symbol = self
            .symbols(i)
            .and_then(|t| t.covering(probe))
            .map(|(name, _)| format!("{:#}", rustc_demangle::demangle(name)));
        let mut out = Vec::new();
        let mut inside = None;
        if let Some(loader) = self.loader(i) {
            inside = loader.find_symbol(probe).map(|s| s.as_ptr() as u64);
            if let Ok(mut iter) = loader.find_frames(probe) {
                while let Ok(Some(f)) = iter.next() {
                    let function = f
                        .function
                        .as_ref()
                        .and_then(|n| n.demangle().ok().map(|s| s.into_owned()));
                    let (file, line) = match &f.location {
                        Some(l) => (l.file.map(str::to_owned), l.line),
                        None => (None, None),
                    };
                    out.push(Frame {
                        function: function.unwrap_or_default(),
                        file,
                        line,
                        address: raw.address(),
                        inlined: false,
                    });
                }
            }
        }
        let n = out.len();
        for (k, f) in out.iter_mut().enumerate() {
            f.inlined = k + 1 < n;
        }
        // With `debug = "line-tables-only"` DWARF names are bare (`{async_fn#0}`,
        // `lock<u64>`); the symbol table still has the full path of the
        // outermost (real) function, when its symbol covers the address.
        if let (Some(last), Some(sym)) = (out.last_mut(), &symbol) {
            if !last.function.contains("::") || last.function.is_empty() {
                last.function = sym.clone();
            }
        }
        if out.is_empty() {
            if let Some(sym) = symbol {
                out.push(Frame {
                    function: sym,
                    file: None,
                    line: None,
                    address: raw.address(),
                    inlined: false,
                });
            }
        }
        out.retain(|f| !f.function.is_empty());
        if out.is_empty() {
            // No symbol covers it: a file offset, stable across runs and
            // resolvable offline (`addr2line -e FILE OFFSET` for a PIE).
            let m = &self.modules[i];
            let label = match m.file_offset(raw.address()) {
                Some(off) => format!("{}+{off:#x}", m.name),
                None => format!("{}+?", m.name),
            };
            out.push(Frame {
                function: label,
                file: None,
                line: None,
                address: raw.address(),
                inlined: false,
            });
        }
        if let Some(at) = inside {
            self.note_mapping(i, at);
        }
        out
    }

    /// The sized symbol table of module `i`, read at its first use: from the
    /// file, or from memory for the vDSO (which has no file).
    fn symbols(&mut self, i: usize) -> Option<&SymbolTable> {
        if !self.symbols.contains_key(&i) {
            let m = &self.modules[i];
            let bytes = if m.is_vdso {
                // The section headers sit past the segment's end, inside its
                // last page: the kernel maps the image whole.
                let image = m.segments.iter().find(|s| s.file_offset == 0)?;
                let end = image.end.checked_add(4095)? & !4095;
                let len = usize::try_from(end.checked_sub(image.start)?).ok()?;
                let mut b = vec![0u8; len.min(1 << 20)];
                self.mem.as_ref()?.read_exact_at(&mut b, image.start).ok()?;
                Some(Bytes::Owned(b))
            } else {
                MappedFile::open(&m.path).map(Bytes::Mapped)
            };
            let table = bytes.and_then(SymbolTable::parse);
            if let Some(t) = table.as_ref().filter(|_| !m.is_vdso) {
                self.symbol_mappings
                    .insert(i, FileMapping::containing(t.first_byte(), &m.path));
            }
            self.symbols.insert(i, table);
        }
        self.touched = true;
        self.symbols.get(&i)?.as_ref()
    }

    /// Full symbolized stack of a sample, innermost first.
    pub(crate) fn symbolize(&mut self, stack: &[RawFrame]) -> Vec<Frame> {
        let mut out = Vec::with_capacity(stack.len() * 2);
        for &raw in stack {
            out.extend(self.resolve(raw).iter().cloned());
        }
        out
    }
}

/// A call instruction found just before a return address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    /// The target is known (direct, or read from a GOT slot).
    To(u64),
    /// Through a register or computed memory operand: target unknown.
    Indirect,
}

/// Decodes the call instruction that ends the 8 bytes before return address
/// `ra`, reading a GOT slot through `load` for `call *disp(%rip)`.
fn decode_call(b: &[u8; 8], ra: u64, load: impl Fn(u64) -> Option<u64>) -> Option<Call> {
    #[cfg(target_arch = "aarch64")]
    {
        let _ = &load;
        let insn = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        if insn & 0xFC00_0000 == 0x9400_0000 {
            // BL imm26: signed word offset from the BL itself.
            let imm = ((insn & 0x03FF_FFFF) << 6) as i32 >> 6;
            return Some(Call::To(
                ra.wrapping_sub(4).wrapping_add_signed(i64::from(imm) * 4),
            ));
        }
        // BLR / BLRAA and friends
        if insn & 0xFFFF_FC1F == 0xD63F_0000 || insn & 0xFEFF_F800 == 0xD63F_0800 {
            return Some(Call::Indirect);
        }
        None
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        if b[3] == 0xE8 {
            // call rel32
            let rel = i32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            return Some(Call::To(ra.wrapping_add_signed(rel.into())));
        }
        if b[2] == 0xFF && b[3] == 0x15 {
            // call *disp32(%rip): through a GOT slot
            let disp = i32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            return load(ra.wrapping_add_signed(disp.into())).map(Call::To);
        }
        // call r/m64: FF /2, 2..=7 bytes long depending on its ModRM byte.
        for len in 2..=7usize {
            let p = 8 - len;
            let modrm = b[p + 1];
            if b[p] == 0xFF
                && (modrm >> 3) & 7 == 2
                && modrm_len(modrm, b.get(p + 2).copied()) == len
            {
                return Some(Call::Indirect);
            }
        }
        None
    }
}

/// The GOT slot of `mov disp32(%rip), %reg; call *%reg` ending at `ra`
/// (`b`: the 16 bytes before it), the way a debug build calls a function
/// of another crate: `48|4c 8b modrm disp32`, then `[41] ff d0+reg`.
#[cfg(target_arch = "x86_64")]
fn got_slot_of_register_call(b: &[u8; 16], ra: u64) -> Option<u64> {
    let (call_len, reg) = match (b[13], b[14], b[15]) {
        (0x41, 0xFF, m) if m & 0xF8 == 0xD0 => (3usize, 8 + (m & 7)),
        (_, 0xFF, m) if m & 0xF8 == 0xD0 => (2, m & 7),
        _ => return None,
    };
    let mov = 16 - call_len - 7;
    let rex = b[mov];
    let modrm = b[mov + 2];
    let mov_reg = ((rex >> 2) & 1) << 3 | ((modrm >> 3) & 7);
    // REX.W (R for r8..r15), MOV r64, r/m64 with RIP-relative addressing.
    if rex & 0xFB != 0x48 || b[mov + 1] != 0x8B || modrm & 0xC7 != 0x05 || mov_reg != reg {
        return None;
    }
    let disp = i32::from_le_bytes([b[mov + 3], b[mov + 4], b[mov + 5], b[mov + 6]]);
    let after_mov = ra - call_len as u64;
    Some(after_mov.wrapping_add_signed(disp.into()))
}

/// Length of `FF modrm [sib] [disp]`.
#[cfg(not(target_arch = "aarch64"))]
fn modrm_len(modrm: u8, sib: Option<u8>) -> usize {
    let md = modrm >> 6;
    let rm = modrm & 7;
    if md == 3 {
        return 2;
    }
    let base5 = rm == 4 && sib.is_some_and(|s| s & 7 == 5);
    let sib_len = usize::from(rm == 4);
    2 + sib_len
        + match md {
            0 if rm == 5 || base5 => 4,
            1 => 1,
            2 => 4,
            _ => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_debug_builds_call_through_a_register_loaded_from_the_got_names_its_slot() {
        // 2138cf: mov 0x41d2da(%rip),%rax; 2138d6: call *%rax; ra 2138d8.
        let mut b = [0x90u8; 16];
        b[7..].copy_from_slice(&[0x48, 0x8b, 0x05, 0xda, 0xd2, 0x41, 0x00, 0xff, 0xd0]);
        assert_eq!(got_slot_of_register_call(&b, 0x2138d8), Some(0x630bb0));
        // Through r11: mov 0x10(%rip),%r11; call *%r11.
        let mut b = [0x90u8; 16];
        b[6..].copy_from_slice(&[0x4c, 0x8b, 0x1d, 0x10, 0, 0, 0, 0x41, 0xff, 0xd3]);
        assert_eq!(
            got_slot_of_register_call(&b, 0x1000),
            Some(0x1000 - 3 + 0x10)
        );
        // The register called is not the one loaded: unknown.
        let mut b = [0x90u8; 16];
        b[7..].copy_from_slice(&[0x48, 0x8b, 0x05, 0xda, 0xd2, 0x41, 0x00, 0xff, 0xd1]);
        assert_eq!(got_slot_of_register_call(&b, 0x2138d8), None);
        // A direct call is not this pattern.
        let mut b = [0x90u8; 16];
        b[11..].copy_from_slice(&[0xe8, 1, 2, 3, 4]);
        assert_eq!(got_slot_of_register_call(&b, 0x2000), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn call_instructions_are_decoded() {
        let none = |_| None;
        // call rel32 (+0x10 from the return address)
        assert_eq!(
            decode_call(&[0, 0, 0, 0xE8, 0x10, 0, 0, 0], 0x1000, none),
            Some(Call::To(0x1010))
        );
        // call rel32 backwards (-0x20)
        assert_eq!(
            decode_call(&[0, 0, 0, 0xE8, 0xE0, 0xFF, 0xFF, 0xFF], 0x1000, none),
            Some(Call::To(0xFE0))
        );
        // call *0x100(%rip): target read from the slot
        let got = |slot| (slot == 0x1100).then_some(0xABCD);
        assert_eq!(
            decode_call(&[0, 0, 0xFF, 0x15, 0, 1, 0, 0], 0x1000, got),
            Some(Call::To(0xABCD))
        );
        // call *%r12 (41 FF D4), call *%rax (FF D0), call *0x10(%rax) (FF 50 10)
        assert_eq!(
            decode_call(&[0, 0, 0, 0, 0, 0x41, 0xFF, 0xD4], 0x1000, none),
            Some(Call::Indirect)
        );
        assert_eq!(
            decode_call(&[0, 0, 0, 0, 0, 0, 0xFF, 0xD0], 0x1000, none),
            Some(Call::Indirect)
        );
        assert_eq!(
            decode_call(&[0, 0, 0, 0, 0, 0xFF, 0x50, 0x10], 0x1000, none),
            Some(Call::Indirect)
        );
        // jmp *%rax (FF E0) is not a call, nor are zeros
        assert_eq!(
            decode_call(&[0, 0, 0, 0, 0, 0, 0xFF, 0xE0], 0x1000, none),
            None
        );
        assert_eq!(decode_call(&[0; 8], 0x1000, none), None);
    }

    #[inline(never)]
    fn recurse_then_capture(n: u32) -> Option<RawSample> {
        // A local that escapes and is used after the call keeps every level a
        // real frame (no loop, no tail call).
        let local = [n; 2];
        std::hint::black_box(&local);
        let r = if n == 0 {
            crate::sampler::capture_self(libc::SIGURG).ok()
        } else {
            recurse_then_capture(n - 1)
        };
        std::hint::black_box(&local);
        r
    }

    /// Recursion repeats one return address; every level must stay a frame.
    #[test]
    fn recursion_keeps_every_level() {
        crate::sys::signal::install(libc::SIGURG).unwrap();
        let raw = recurse_then_capture(20).expect("self-capture");
        let mut sym = Symbolizer::new();
        let repaired = sym.unwind(&raw);
        let frames = sym.symbolize(&repaired);
        let levels = frames
            .iter()
            .filter(|f| f.function.ends_with("recurse_then_capture"))
            .count();
        assert!(levels >= 21, "{levels} of 21 levels: {frames:#?}");
    }

    /// The outer (non-inlined) name `resolve` gives to address `a`.
    fn name_at(s: &mut Symbolizer, a: u64) -> String {
        s.resolve(RawFrame::Pc(a)).last().unwrap().function.clone()
    }

    /// glibc on Debian is stripped to its exported symbols; `memset`'s
    /// implementation (an ifunc target) has none of its own. A frame there is
    /// named after the function or after its file offset, never after the
    /// nearest export below it.
    #[test]
    fn names_inside_libc_are_the_function_or_a_file_offset() {
        let mut s = Symbolizer::new();
        let memset = libc::memset as *const () as u64;
        let free = libc::free as *const () as u64;
        for (start, want) in [(memset, "memset"), (free, "free")] {
            let i = s.module_of(start).expect("libc is loaded");
            let m = s.modules[i].clone();
            for delta in [0, 1, 8, 24] {
                let a = start + delta;
                let name = name_at(&mut s, a);
                let offset = format!("{}+{:#x}", m.name, m.file_offset(a).unwrap());
                assert!(
                    name.contains(want) || name == offset,
                    "{want}+{delta} named {name:?} (file offset label would be {offset})"
                );
            }
        }
        // `free` is exported, with its size: it is named.
        assert!(name_at(&mut s, free + 8).contains("free"));
    }

    /// The vDSO has no file: its symbols come from its image in memory, and
    /// every address in its code is named after the symbol covering it or
    /// after its offset in the image (not its randomised address).
    #[test]
    fn vdso_frames_are_named_from_its_own_symbols() {
        let mut s = Symbolizer::new();
        let Some(i) = s.modules.iter().position(|m| m.is_vdso) else {
            eprintln!("no vDSO in this process; nothing to check");
            return;
        };
        let m = s.modules[i].clone();
        let image_len = m.segments.iter().map(|g| g.end - g.start).max().unwrap();
        let (mut named, mut labelled) = (0, 0);
        for &(start, end) in &m.text {
            for a in (start..end).step_by(4) {
                let name = name_at(&mut s, a);
                if let Some(off) = name.strip_prefix(&format!("{}+0x", m.name)) {
                    let off = u64::from_str_radix(off, 16).unwrap();
                    assert!(off < image_len, "{name} is not an offset in the image");
                    labelled += 1;
                } else {
                    assert!(
                        [
                            "clock_gettime",
                            "clock_getres",
                            "gettimeofday",
                            "time",
                            "getcpu",
                            "__vdso_",
                            "__kernel_"
                        ]
                        .iter()
                        .any(|k| name.contains(k)),
                        "{a:#x} in the vDSO named {name:?}"
                    );
                    named += 1;
                }
            }
        }
        assert!(named > 0, "no vDSO symbol found ({labelled} offsets)");
    }

    #[inline(never)]
    fn capture_here() -> Option<RawSample> {
        let r = crate::sampler::capture_self(libc::SIGURG).ok();
        std::hint::black_box(&r);
        r
    }

    /// A sample taken without a signal has only `pc`, `sp` and the stack:
    /// the tables alone (`dwarf`), and `auto`, still reach its callers.
    #[test]
    fn a_sample_without_registers_unwinds_from_the_tables() {
        crate::sys::signal::install(libc::SIGURG).unwrap();
        let raw = capture_here().expect("self-capture");
        let bare =
            RawSample::from_stack(0, raw.regs.pc, raw.regs.sp, raw.copy.clone(), raw.truncated);
        // Frame records reach the caller only in a frame-pointer build: there,
        // `fp` mode must find them in the copy as the handler did live.
        let mut fp = Symbolizer::with_mode(Unwind::FramePointers);
        let with_signal = fp.unwind(&raw);
        let fp_build = fp
            .symbolize(&with_signal)
            .iter()
            .any(|f| f.function.contains("a_sample_without_registers"));
        let modes: &[Unwind] = match fp_build {
            true => &[Unwind::Dwarf, Unwind::Auto, Unwind::FramePointers],
            false => &[Unwind::Dwarf, Unwind::Auto],
        };
        for &mode in modes {
            // On aarch64 the sample stops in a leaf (libc's `syscall`), whose
            // return address lives only in x30, which a sample without
            // registers lacks: the tables alone cannot go past it; `auto`
            // carries on from the innermost frame record.
            if cfg!(target_arch = "aarch64") && mode == Unwind::Dwarf {
                continue;
            }
            let mut sym = Symbolizer::with_mode(mode);
            let frames = sym.unwind(&bare);
            let names = sym.symbolize(&frames);
            assert!(
                names.iter().any(|f| f.function.ends_with("capture_here")),
                "{mode}: {names:#?}"
            );
            assert!(
                names
                    .iter()
                    .any(|f| f.function.contains("a_sample_without_registers")),
                "{mode}: {names:#?}"
            );
        }
    }

    static FROM_A_LIBC_THREAD: std::sync::Mutex<Option<RawSample>> = std::sync::Mutex::new(None);

    #[inline(never)]
    fn capture_on_a_libc_thread() {
        let r = capture_here();
        *FROM_A_LIBC_THREAD.lock().unwrap_or_else(|p| p.into_inner()) = r;
    }

    /// A sample without registers whose unwind never needs the frame
    /// pointer is unwound exactly: the frames the real registers give,
    /// nothing guessed, and no guess can displace it. Taken on a thread
    /// libc started (std's own frames keep frame pointers in every build):
    /// in a build without frame pointers, no frame there needs one. In a
    /// frame-pointer build the crate's frames do, and the guesses must
    /// still find the callers.
    #[test]
    fn a_sample_without_registers_that_needs_no_frame_pointer_is_unwound_exactly() {
        crate::sys::signal::install(libc::SIGURG).unwrap();
        crate::sys::thread::run_on_a_libc_thread(capture_on_a_libc_thread);
        let raw = FROM_A_LIBC_THREAD
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("self-capture");
        let bare =
            RawSample::from_stack(0, raw.regs.pc, raw.regs.sp, raw.copy.clone(), raw.truncated);
        let caller = "capture_on_a_libc_thread";
        let mut sym = Symbolizer::with_mode(Unwind::Dwarf);
        let with_regs = sym.unwind_cfi(&raw);
        let without = sym.unwind_cfi(&bare);
        // On aarch64 a leaf's return address is only in `lr`, which such a
        // sample lacks: never exact there.
        let needs_none = !cfg!(pollwatch_test_frame_pointers) && cfg!(target_arch = "x86_64");
        assert_eq!(
            without.exact,
            needs_none,
            "frame pointers: {}; {without:?}",
            cfg!(pollwatch_test_frame_pointers)
        );
        // Past that leaf aarch64 needs the frame records, from a guess (see
        // the skip of a_sample_without_registers_unwinds_from_the_tables in
        // scripts/aarch64.sh): only the claim above is checked there.
        let modes: &[Unwind] = match cfg!(target_arch = "x86_64") {
            true => &[Unwind::Auto, Unwind::Dwarf],
            false => &[],
        };
        for &mode in modes {
            let mut s = Symbolizer::with_mode(mode);
            let frames = s.unwind(&bare);
            if without.exact {
                assert_eq!(without.end, End::Root);
                assert_eq!(frames, with_regs.frames, "{mode}");
            }
            assert!(
                s.symbolize(&frames)
                    .iter()
                    .any(|f| f.function.contains(caller)),
                "{mode}: {frames:?}"
            );
        }
    }

    #[test]
    fn resolves_a_function_of_this_binary() {
        #[inline(never)]
        fn marker_function_for_symbolizer() -> u64 {
            std::hint::black_box(7)
        }
        let addr = marker_function_for_symbolizer as *const () as u64;
        let mut s = Symbolizer::new();
        let frames = s.resolve(RawFrame::Pc(addr));
        assert!(
            frames
                .iter()
                .any(|f| f.function.contains("marker_function_for_symbolizer")),
            "{frames:?}"
        );
        let outer = frames.last().unwrap();
        assert!(
            outer
                .file
                .as_deref()
                .unwrap_or("")
                .ends_with("symbolize.rs"),
            "{outer:?}"
        );
    }
}
