//! Sets `cfg(pollwatch_supported)` where the sampler works (Linux on x86_64
//! and aarch64), so the rest of the crate names one cfg instead of repeating
//! a list. Elsewhere pollwatch compiles to a no-op.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(pollwatch_supported)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "linux" && (arch == "x86_64" || arch == "aarch64") {
        println!("cargo::rustc-cfg=pollwatch_supported");
    }
}
