//! Giving back the resident pages of the debug-info loader's file mappings.
//!
//! The loader maps a whole object file (tens of MiB for a large binary) and
//! reads it through that mapping. Once the addresses in hand are resolved,
//! its pages only inflate the process's resident set: the bytes stay in the
//! kernel's page cache and a later lookup faults back just the pages it
//! reads. `MADV_DONTNEED` does exactly that, and nothing else, on a *shared*
//! mapping without write permission: it has no private copy-on-write pages
//! whose contents could be lost. So only such a mapping, of the very file the
//! loader opened, is ever released, as checked in `/proc/self/maps` right
//! before each call.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A whole file mapped shared and read-only, read as bytes: the symbol
/// tables of a loaded object are read through it, so only the pages they
/// touch become resident (and `FileMapping::release_pages` gives them back).
pub(crate) struct MappedFile(memmap2::Mmap);

impl MappedFile {
    /// Maps `path`, or `None` if it cannot be opened or mapped.
    pub(crate) fn open(path: &Path) -> Option<MappedFile> {
        let file = fs::File::open(path).ok()?;
        // SAFETY: a shared read-only mapping of a file this process only reads.
        // The one hazard, another process truncating the file while it is
        // mapped (SIGBUS on access), is the one the debug-info loader already
        // takes for the same files: they are the loaded objects themselves,
        // which the system does not rewrite in place while they run.
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        Some(MappedFile(map))
    }
}

impl std::ops::Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A shared, read-only mapping of one file, found from an address inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileMapping {
    start: u64,
    end: u64,
    inode: u64,
}

impl FileMapping {
    /// The shared read-only mapping of `file` that contains `addr`, if any.
    pub(crate) fn containing(addr: u64, file: &Path) -> Option<FileMapping> {
        let inode = fs::metadata(file).ok()?.ino();
        let maps = fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines()
            .filter_map(parse_line)
            .find(|m| m.inode == inode && addr >= m.start && addr < m.end)
    }

    /// Drops the pages of each mapping from this process's resident set,
    /// skipping any that `/proc/self/maps` no longer shows exactly as found
    /// (read once for all of them). Returns how many were released.
    pub(crate) fn release_pages<'a>(mappings: impl IntoIterator<Item = &'a FileMapping>) -> usize {
        let Ok(maps) = fs::read_to_string("/proc/self/maps") else {
            return 0;
        };
        let current: Vec<FileMapping> = maps.lines().filter_map(parse_line).collect();
        let mut released = 0;
        for m in mappings.into_iter().filter(|m| current.contains(m)) {
            // SAFETY: `[start, end)` is, as just read in /proc/self/maps, one
            // whole shared mapping without write permission of the file the
            // debug-info loader opened; the loader that owns it lives in the
            // symbolizer calling this, on this thread, so it is not unmapped
            // in between. On a shared read-only mapping MADV_DONTNEED only
            // removes page-table entries: there are no private pages to lose,
            // the next read faults the same file bytes back from the page
            // cache, and references into the mapping stay valid.
            let rc = unsafe {
                libc::madvise(
                    m.start as *mut libc::c_void,
                    (m.end - m.start) as usize,
                    libc::MADV_DONTNEED,
                )
            };
            released += usize::from(rc == 0);
        }
        released
    }
}

/// One `/proc/self/maps` line, if it is a shared file mapping without write
/// permission: `start-end perms offset dev inode path`.
fn parse_line(line: &str) -> Option<FileMapping> {
    let mut f = line.split_ascii_whitespace();
    let (start, end) = f.next()?.split_once('-')?;
    let perms = f.next()?.as_bytes();
    let _offset = f.next()?;
    let _dev = f.next()?;
    let inode: u64 = f.next()?.parse().ok()?;
    if perms.get(1) != Some(&b'-') || perms.get(3) != Some(&b's') || inode == 0 {
        return None;
    }
    Some(FileMapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        inode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shared_read_only_file_mappings_qualify() {
        let exe = parse_line("7f4144800000-7f41454bb000 r--s 00000000 fe:00 10011358   /tmp/app")
            .unwrap();
        assert_eq!(
            exe,
            FileMapping {
                start: 0x7f4144800000,
                end: 0x7f41454bb000,
                inode: 10011358
            }
        );
        // Private mappings may hold copy-on-write pages (RELRO, breakpoints).
        assert!(parse_line("7f00-7f10 r--p 00000000 fe:00 77   /usr/lib/libc.so.6").is_none());
        assert!(parse_line("7f00-7f10 r-xp 00000000 fe:00 77   /usr/lib/libc.so.6").is_none());
        assert!(parse_line("7f00-7f10 rw-s 00000000 fe:00 77   /dev/shm/x").is_none());
        assert!(parse_line("55d0-55e0 rw-p 00000000 00:00 0   [heap]").is_none());
    }

    #[test]
    fn releases_the_loaders_mapping_and_keeps_its_bytes() {
        let exe = std::env::current_exe().unwrap();
        let loader = addr2line::Loader::new(&exe).unwrap();
        // A symbol name points into the loader's mapping of the file.
        let main = crate::sys::modules::loaded_modules()
            .0
            .into_iter()
            .find(|m| m.is_main)
            .unwrap();
        let probe = releases_the_loaders_mapping_and_keeps_its_bytes as *const () as u64;
        let name = loader.find_symbol(probe - main.bias).unwrap();
        let before = name.to_owned();
        let m = FileMapping::containing(name.as_ptr() as u64, &exe).expect("mapping found");
        assert_eq!(FileMapping::release_pages([&m]), 1);
        assert_eq!(name, before, "same bytes after the pages were dropped");
        // Not the same file: not found.
        assert!(
            FileMapping::containing(name.as_ptr() as u64, Path::new("/proc/self/maps")).is_none()
        );
        drop(loader);
        // Anonymous memory never qualifies.
        let heap = vec![1u8; 1 << 20];
        assert!(FileMapping::containing(heap.as_ptr() as u64, &exe).is_none());
    }
}
