//! The only place in pollwatch that talks to the OS through `unsafe`.
//!
//! Everything here is small and documented block by block: the signal handler
//! and its installation, `tgkill`, `gettid`, futex wait/wake, the stack range of
//! the current thread, and the loaded-module list. The rest of the crate is safe
//! code built on these functions, so `grep -rnw unsafe src/` prints only this
//! folder.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub(crate) mod modules;
pub(crate) mod signal;
pub(crate) mod static_ref;
pub(crate) mod thread;
mod ucontext;

pub(crate) use ucontext::Regs;
