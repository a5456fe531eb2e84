//! Adapters that hook pollwatch's probes into specific runtimes.

#[cfg(feature = "tokio")]
pub mod tokio;
