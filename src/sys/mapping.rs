//! Giving back the resident pages of a read-only file mapping.
//!
//! The debug-info loader maps the whole executable (tens of MiB for a large
//! binary) and reads it through that mapping. Once the addresses in hand are
//! resolved, its pages only inflate the process's resident set: the bytes stay
//! in the kernel's page cache and a later lookup faults back just the pages it
//! reads. `MADV_DONTNEED` on such a mapping does exactly that and nothing
//! else, but only for a mapping that is file-backed and not writable, so that
//! is checked in `/proc/self/maps` right before each call.

use std::fs;

/// A file mapping found from an address inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileMapping {
    start: u64,
    end: u64,
    /// `device inode`, as `/proc/self/maps` prints them: the same file.
    file: String,
}

impl FileMapping {
    /// The read-only file mapping that contains `addr`, if there is one.
    pub(crate) fn containing(addr: u64) -> Option<FileMapping> {
        let maps = fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines()
            .filter_map(parse_line)
            .find(|m| addr >= m.start && addr < m.end)
    }

    /// Drops the mapping's pages from this process's resident set. Returns
    /// false, doing nothing, unless `/proc/self/maps` still shows the same
    /// read-only mapping of the same file at the same place.
    pub(crate) fn release_pages(&self) -> bool {
        if FileMapping::containing(self.start).as_ref() != Some(self) {
            return false;
        }
        // SAFETY: `[start, end)` is, as just checked in /proc/self/maps, one
        // whole mapping of a file with no write permission, owned by the
        // symbolizer that calls this on its own thread, so it cannot be
        // unmapped in between. On such a mapping MADV_DONTNEED only removes
        // page-table entries: no byte can change (nothing was written to it),
        // and the next read faults the same file bytes back from the page
        // cache. References into it stay valid.
        unsafe {
            libc::madvise(
                self.start as *mut libc::c_void,
                (self.end - self.start) as usize,
                libc::MADV_DONTNEED,
            ) == 0
        }
    }
}

/// One `/proc/self/maps` line, if it is a file mapping without write
/// permission: `start-end perms offset dev inode path`.
fn parse_line(line: &str) -> Option<FileMapping> {
    let mut f = line.split_ascii_whitespace();
    let (start, end) = f.next()?.split_once('-')?;
    let perms = f.next()?.as_bytes();
    let _offset = f.next()?;
    let dev = f.next()?;
    let inode = f.next()?;
    if perms.get(1) != Some(&b'-') || inode == "0" {
        return None;
    }
    Some(FileMapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        file: format!("{dev} {inode}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_file_mappings_qualify() {
        let exe = parse_line("7f4144800000-7f41454bb000 r--s 00000000 fe:00 10011358   /tmp/app")
            .unwrap();
        assert_eq!((exe.start, exe.end), (0x7f4144800000, 0x7f41454bb000));
        assert!(parse_line("55d0-55e0 rw-p 00000000 00:00 0   [heap]").is_none());
        assert!(parse_line("7f00-7f10 rw-s 00000000 fe:00 77   /dev/shm/x").is_none());
        assert!(parse_line("7f00-7f10 r--p 00000000 00:00 0").is_none());
    }

    #[test]
    fn releases_pages_of_a_file_mapping_and_keeps_its_bytes() {
        let exe = std::env::current_exe().unwrap();
        let loader = addr2line::Loader::new(&exe).unwrap();
        // A symbol name points into the loader's mapping of the file.
        let main = crate::sys::modules::loaded_modules()
            .0
            .into_iter()
            .find(|m| m.is_main)
            .unwrap();
        let probe = releases_pages_of_a_file_mapping_and_keeps_its_bytes as *const () as u64;
        let name = loader.find_symbol(probe - main.bias).unwrap();
        let before = name.to_owned();
        let m = FileMapping::containing(name.as_ptr() as u64).expect("mapping found");
        assert!(m.release_pages());
        assert_eq!(name, before, "same bytes after the pages were dropped");
        drop(loader);
        // Anonymous memory never qualifies.
        let heap = vec![1u8; 1 << 20];
        assert!(FileMapping::containing(heap.as_ptr() as u64).is_none());
    }
}
