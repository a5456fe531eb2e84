//! Sets `cfg(pollwatch_supported)` where the sampler works (Linux on x86_64
//! and aarch64), so the rest of the crate names one cfg instead of repeating
//! a list. Elsewhere pollwatch compiles to a no-op.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(pollwatch_supported)");
    // Tests only: whether this build has frame pointers forced, so that the
    // self-test's verdict can be checked in both kinds of build.
    println!("cargo::rustc-check-cfg=cfg(pollwatch_test_frame_pointers)");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\x1f').collect();
    let forced = flags.iter().enumerate().any(|(i, f)| {
        let value = match f.strip_prefix("-Cforce-frame-pointers=") {
            Some(v) => Some(v),
            None if *f == "-C" => flags
                .get(i + 1)
                .and_then(|n| n.strip_prefix("force-frame-pointers=")),
            None => None,
        };
        matches!(value, Some("yes" | "y" | "on" | "true"))
    });
    if forced {
        println!("cargo::rustc-cfg=pollwatch_test_frame_pointers");
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "linux" && (arch == "x86_64" || arch == "aarch64") {
        println!("cargo::rustc-cfg=pollwatch_supported");
    }
}
