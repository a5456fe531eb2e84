//! The start-up self-test: what this build lacks for good stacks, named in
//! one line with its fix, and nothing when it lacks nothing.
//!
//! The facts are gathered cheaply (section headers of the executable, and in
//! `fp` mode one sample of the calling thread); the verdict is a pure
//! function of them.

use crate::config::Unwind;
use crate::symbols::Bytes;
use crate::sys::mapping::MappedFile;

/// What the self-test found about this build.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts {
    pub(crate) mode: Unwind,
    /// The executable carries line tables (`.debug_line`), or points at a
    /// separate debug file (`.gnu_debuglink`).
    pub(crate) debug_info: bool,
    /// The executable carries `.eh_frame_hdr`.
    pub(crate) unwind_tables: bool,
    /// In `fp` mode: how many of the probe's 3 frames the frame-record walk
    /// saw (`None`: not measured).
    pub(crate) fp_frames: Option<usize>,
}

/// The one line to print, if anything is missing; the most damaging first.
pub(crate) fn diagnosis(f: &Facts) -> Option<String> {
    if f.mode == Unwind::FramePointers {
        if let Some(n) = f.fp_frames.filter(|&n| n < 3) {
            return Some(format!(
                "warning: unwind mode fp, but the frame-pointer chain is broken (self-test saw {n} of 3 frames): \
                 build with RUSTFLAGS=\"-C force-frame-pointers=yes\", or use POLLWATCH_UNWIND=auto"
            ));
        }
    } else if !f.unwind_tables {
        return Some(
            "warning: the executable has no unwind tables (.eh_frame_hdr): stacks fall back to frame \
             pointers; build with RUSTFLAGS=\"-C force-unwind-tables=yes\""
                .into(),
        );
    }
    if !f.debug_info {
        return Some(
            "warning: the executable has no debug info, so frames have no file:line and inlined calls \
             are missing: add `debug = \"line-tables-only\"` to the [profile.*] you build with"
                .into(),
        );
    }
    None
}

fn exe_sections() -> Option<Vec<String>> {
    use object::{Object, ObjectSection};
    let bytes = Bytes::Mapped(MappedFile::open(std::path::Path::new("/proc/self/exe"))?);
    let file = object::File::parse(&*bytes).ok()?;
    let names = file
        .sections()
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect();
    Some(names)
}

/// Whether the running executable has line tables or a separate debug file.
pub(crate) fn executable_has_debug_info() -> bool {
    exe_sections().is_none_or(|s| {
        s.iter()
            .any(|n| n == ".debug_line" || n == ".zdebug_line" || n == ".gnu_debuglink")
    })
}

/// Whether the running executable has an `.eh_frame_hdr`.
pub(crate) fn executable_has_unwind_tables() -> bool {
    exe_sections().is_none_or(|s| s.iter().any(|n| n == ".eh_frame_hdr"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(mode: Unwind) -> Facts {
        Facts {
            mode,
            debug_info: true,
            unwind_tables: true,
            fp_frames: None,
        }
    }

    #[test]
    fn nothing_missing_says_nothing() {
        for mode in [Unwind::Auto, Unwind::Dwarf] {
            assert_eq!(diagnosis(&facts(mode)), None);
        }
        let fp = Facts {
            fp_frames: Some(3),
            ..facts(Unwind::FramePointers)
        };
        assert_eq!(diagnosis(&fp), None);
    }

    #[test]
    fn frame_pointers_matter_only_in_fp_mode() {
        let broken = |mode| Facts {
            fp_frames: Some(1),
            ..facts(mode)
        };
        assert_eq!(diagnosis(&broken(Unwind::Auto)), None);
        let line = diagnosis(&broken(Unwind::FramePointers)).unwrap();
        assert!(line.contains("force-frame-pointers=yes"), "{line}");
    }

    #[test]
    fn missing_debug_info_names_the_profile_setting() {
        let f = Facts {
            debug_info: false,
            ..facts(Unwind::Auto)
        };
        let line = diagnosis(&f).unwrap();
        assert!(line.contains("debug = \"line-tables-only\""), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn missing_tables_matter_outside_fp_mode() {
        let f = |mode| Facts {
            unwind_tables: false,
            ..facts(mode)
        };
        assert!(diagnosis(&f(Unwind::Auto))
            .unwrap()
            .contains("force-unwind-tables"));
        assert_eq!(diagnosis(&f(Unwind::FramePointers)), None);
    }

    #[test]
    fn this_test_binary_has_what_it_needs() {
        assert!(executable_has_debug_info());
        assert!(executable_has_unwind_tables());
    }
}
