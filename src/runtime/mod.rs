//! Adapters that hook pollwatch's probes into specific runtimes, each behind
//! its cargo feature. Any other executor works through [`watch`](crate::watch)
//! or [`enter_poll`](crate::enter_poll).

#[cfg(feature = "async-std")]
pub mod async_std;
#[cfg(feature = "smol")]
pub mod smol;
#[cfg(feature = "tokio")]
pub mod tokio;
