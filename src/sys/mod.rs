//! The only place in pollwatch that talks to the OS through `unsafe`.
//!
//! Everything here is small and documented block by block: the signal handler
//! and its installation (`signal`), the registers it reads (`ucontext`), the
//! stack memory it may read (`stack`: a range only `sys` can make), `gettid`
//! and `tgkill` (`thread`), futex wait/wake (`futex`), reading our own memory
//! without faulting (`memory`), the loaded-module list, and giving back the
//! pages of the debug-info mapping. The rest of the crate is safe
//! code built on these functions, so `grep -rnw unsafe src/` prints only this
//! folder.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub(crate) mod futex;
pub(crate) mod mapping;
pub(crate) mod memory;
pub(crate) mod modules;
pub(crate) mod proc;
pub(crate) mod signal;
pub(crate) mod stack;
pub(crate) mod static_ref;
pub(crate) mod thread;
mod ucontext;

pub(crate) use ucontext::Registers;
