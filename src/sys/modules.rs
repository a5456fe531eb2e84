//! The list of loaded objects (executable, shared libraries, vDSO) and where
//! their code sits in memory, from `dl_iterate_phdr`. Used off the signal path
//! only: `dl_iterate_phdr` takes the loader lock.

use std::ffi::CStr;
use std::path::PathBuf;

/// One loaded object.
#[derive(Clone, Debug)]
pub(crate) struct Module {
    /// File to read debug info from (`/proc/self/exe` for the main program).
    pub(crate) path: PathBuf,
    /// Short name for frames we cannot symbolize (`libc.so.6`).
    pub(crate) name: String,
    /// Load bias: runtime address − file address.
    pub(crate) bias: u64,
    /// Executable segments as runtime `[start, end)` ranges.
    pub(crate) text: Vec<(u64, u64)>,
    /// Every loaded segment, for file offsets and for bounding the unwind
    /// tables, which have no size of their own in memory.
    pub(crate) segments: Vec<Segment>,
    /// `.eh_frame_hdr` as a runtime `[start, end)` range (`PT_GNU_EH_FRAME`).
    pub(crate) eh_frame_hdr: Option<(u64, u64)>,
    /// Whether this is the main program.
    pub(crate) is_main: bool,
    /// Whether this is the kernel's vDSO, which has no file: its symbols and
    /// unwind tables are read from memory.
    pub(crate) is_vdso: bool,
}

/// One `PT_LOAD` segment of a loaded object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Runtime start address.
    pub(crate) start: u64,
    /// Runtime end address (start + memory size).
    pub(crate) end: u64,
    /// Offset of `start` in the file.
    pub(crate) file_offset: u64,
    /// Whether the segment holds code.
    pub(crate) exec: bool,
}

impl Module {
    /// Where runtime address `addr` sits in the object's file, if it is
    /// inside one of its segments: unlike the address, stable across runs
    /// (ASLR) and usable with `addr2line -e FILE` offline.
    pub(crate) fn file_offset(&self, addr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| addr >= s.start && addr < s.end)
            .map(|s| addr - s.start + s.file_offset)
    }

    /// The runtime range of the loaded segment containing `addr`.
    pub(crate) fn segment_of(&self, addr: u64) -> Option<(u64, u64)> {
        self.segments
            .iter()
            .find(|s| addr >= s.start && addr < s.end)
            .map(|s| (s.start, s.end))
    }
}

/// Snapshot of every loaded object, plus the loader's load + unload count so callers
/// can tell when a `dlopen` or `dlclose` made the snapshot stale.
pub(crate) fn loaded_modules() -> (Vec<Module>, u64) {
    struct Acc {
        modules: Vec<Module>,
        adds: u64,
        first: bool,
        vdso: u64,
    }
    extern "C" fn callback(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `&mut Acc` we passed to dl_iterate_phdr below, and
        // it is only used on this thread for the duration of that call.
        let acc = unsafe { &mut *(data as *mut Acc) };
        // SAFETY: the loader passes a valid info pointer for the duration of the callback.
        let info = unsafe { &*info };
        acc.adds = info.dlpi_adds.wrapping_add(info.dlpi_subs);
        let raw_name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        let is_main = acc.first && raw_name.is_empty();
        acc.first = false;
        let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: dlpi_phdr points at dlpi_phnum program headers owned by the loader.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
        };
        let bias = info.dlpi_addr;
        let text: Vec<(u64, u64)> = phdrs
            .iter()
            .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0)
            .map(|p| {
                let start = bias.wrapping_add(p.p_vaddr);
                (start, start.wrapping_add(p.p_memsz))
            })
            .collect();
        if text.is_empty() {
            return 0;
        }
        let segments = phdrs
            .iter()
            .filter(|p| p.p_type == libc::PT_LOAD)
            .map(|p| {
                let start = bias.wrapping_add(p.p_vaddr);
                Segment {
                    start,
                    end: start.wrapping_add(p.p_memsz),
                    file_offset: p.p_offset,
                    exec: p.p_flags & libc::PF_X != 0,
                }
            })
            .collect();
        let eh_frame_hdr = phdrs
            .iter()
            .find(|p| p.p_type == libc::PT_GNU_EH_FRAME)
            .map(|p| {
                let start = bias.wrapping_add(p.p_vaddr);
                (start, start.wrapping_add(p.p_memsz))
            });
        let is_vdso = acc.vdso != 0
            && phdrs.iter().any(|p| {
                p.p_type == libc::PT_LOAD
                    && p.p_offset == 0
                    && bias.wrapping_add(p.p_vaddr) == acc.vdso
            });
        let (path, name) = if is_main {
            let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
            let name = exe
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "main".into());
            (PathBuf::from("/proc/self/exe"), name)
        } else {
            let p = PathBuf::from(&raw_name);
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| raw_name.clone());
            (p, name)
        };
        acc.modules.push(Module {
            path,
            name,
            bias,
            text,
            segments,
            eh_frame_hdr,
            is_main,
            is_vdso,
        });
        0
    }
    let mut acc = Acc {
        modules: Vec::new(),
        adds: 0,
        first: true,
        // SAFETY: getauxval only reads the auxiliary vector the kernel gave this
        // process; 0 means "no such entry".
        vdso: unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) },
    };
    // SAFETY: `callback` matches the expected signature and only dereferences the
    // pointers the loader gives it; `acc` outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(callback), &mut acc as *mut Acc as *mut libc::c_void);
    }
    (acc.modules, acc.adds)
}

/// The loader's load + unload count, cheap enough to poll before each batch.
pub(crate) fn adds_counter() -> u64 {
    extern "C" fn callback(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `&mut u64` passed below; `info` is valid for the callback.
        unsafe { *(data as *mut u64) = (*info).dlpi_adds.wrapping_add((*info).dlpi_subs) };
        1 // stop after the first object: the counters are global
    }
    let mut adds = 0u64;
    // SAFETY: as in `loaded_modules`.
    unsafe {
        libc::dl_iterate_phdr(Some(callback), &mut adds as *mut u64 as *mut libc::c_void);
    }
    adds
}
