//! Symbol tables with sizes: an address is named after a symbol only if the
//! symbol's size covers it.
//!
//! `addr2line`'s symbol map answers with the nearest symbol below an
//! address. Inside a stripped library (Debian's libc keeps only its
//! exported symbols) that is a lie: `memset`'s code sat between exports and
//! came out as `__nss_database_lookup`. Here a lookup outside every sized
//! symbol finds nothing, and the caller names the frame `module+0xOFFSET`.
//!
//! Identical-code folding (the linker merging functions whose code is the
//! same) leaves several names at one address; the symbol tables cannot say
//! which of them ran, and the name shown is one of them.

use std::ops::Deref;

use object::{Object, ObjectSymbol, SymbolKind};

use crate::sys::mapping::MappedFile;

/// The bytes the table reads its names from.
pub(crate) enum Bytes {
    /// A file on disk, mapped.
    Mapped(MappedFile),
    /// An image copied from memory (the vDSO, which has no file).
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Sym {
    start: u64,
    end: u64,
    name_at: usize,
    name_len: usize,
}

/// The sized function symbols of one object, by file address.
pub(crate) struct SymbolTable {
    bytes: Bytes,
    syms: Vec<Sym>,
    /// The longest symbol, which bounds how far back a lookup looks.
    longest: u64,
}

impl std::fmt::Debug for SymbolTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SymbolTable({} symbols)", self.syms.len())
    }
}

impl SymbolTable {
    /// Parses the ELF image in `bytes`: its full symbol table, or the
    /// dynamic one when the object was stripped.
    pub(crate) fn parse(bytes: Bytes) -> Option<SymbolTable> {
        let syms = {
            let file = object::File::parse(&*bytes).ok()?;
            let base = bytes.as_ptr() as usize;
            let collect = |iter: &mut dyn Iterator<Item = object::Symbol<'_, '_>>| {
                iter.filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.size() > 0)
                    .filter_map(|s| {
                        let name = s.name_bytes().ok()?;
                        std::str::from_utf8(name).ok()?;
                        Some(Sym {
                            start: s.address(),
                            end: s.address().checked_add(s.size())?,
                            name_at: (name.as_ptr() as usize).checked_sub(base)?,
                            name_len: name.len(),
                        })
                    })
                    .collect::<Vec<_>>()
            };
            let mut syms = collect(&mut file.symbols());
            if syms.is_empty() {
                syms = collect(&mut file.dynamic_symbols());
            }
            syms
        };
        let mut syms = syms;
        // By start; at one start, the longest first (an alias that covers less
        // than its twin never wins a lookup it should not).
        syms.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
        syms.dedup_by_key(|s| s.start);
        let longest = syms.iter().map(|s| s.end - s.start).max().unwrap_or(0);
        Some(SymbolTable {
            bytes,
            syms,
            longest,
        })
    }

    /// The symbol whose `[start, start + size)` holds file address `addr`:
    /// its name and start.
    pub(crate) fn covering(&self, addr: u64) -> Option<(&str, u64)> {
        let upto = self.syms.partition_point(|s| s.start <= addr);
        self.syms[..upto]
            .iter()
            .rev()
            .take_while(|s| addr - s.start < self.longest)
            .find(|s| addr < s.end)
            .and_then(|s| {
                let name = self.bytes.get(s.name_at..s.name_at + s.name_len)?;
                Some((std::str::from_utf8(name).ok()?, s.start))
            })
    }

    /// Where the names live, to give their pages back when idle.
    pub(crate) fn first_byte(&self) -> u64 {
        self.bytes.as_ptr() as u64
    }
}
