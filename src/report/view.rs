//! How a symbolized stack is presented: where the executor's frames are cut
//! off, which plumbing frames are dropped, which stacks are excused (blocking
//! where blocking belongs), and which frame is "your code". Pure functions over
//! [`Frame`]s, so they are the same on every platform.

use super::Frame;

/// Where a task's poll enters the user's future: pollwatch's own `Watched`
/// poll, tokio's task harness, async-task's `RawTask::run` (async-std, smol).
/// The stack is cut at the *outermost* of these, the poll whose epoch made the
/// episode, so a nested executor (a `block_on` inside a task) stays visible.
const ANCHORS: &[&str] = &[
    "pollwatch::probe::Watched<",
    "<pollwatch::probe::Watched<",
    "pollwatch::tower::WatchFuture<",
    "pollwatch::tower::WatchService<",
    "tokio::runtime::task::core::Core<",
    "tokio::runtime::task::harness::",
    "tokio::runtime::task::raw::",
    "async_task::raw::RawTask<",
    "async_task::runnable::Runnable",
    "<async_task::runnable::Runnable",
];

/// The first anchors are pollwatch's own wrappers: dropped wherever they
/// appear, since they are never the user's code.
const OWN_ANCHORS: usize = 4;

/// Plumbing between a poll and the user's code, dropped wherever it appears.
const PLUMBING: &[&str] = &[
    "std::panicking::",
    "std::panic::catch_unwind",
    "core::panic::unwind_safe::AssertUnwindSafe<",
    "<core::panic::unwind_safe::AssertUnwindSafe<",
    "<core::pin::Pin<P> as core::future::future::Future>::poll",
    "core::ops::function::FnOnce::call_once",
    "tokio::loom::std::unsafe_cell::UnsafeCell<",
    "tokio::runtime::coop::",
    "tokio::task::coop::",
    "__rust_try",
];

fn matches(f: &Frame, list: &[&str]) -> bool {
    list.iter()
        .any(|p| f.function.starts_with(p) || f.function.contains(p))
}

/// Where a tokio worker runs one task: the cut when no harness frame is left.
const TASK_LOOPS: &[&str] = &[
    "tokio::runtime::scheduler::multi_thread::worker::Context::run_task",
    "tokio::runtime::scheduler::current_thread::Context::run_task",
];

/// tokio runs each multi-thread worker as a task of its blocking pool, so
/// the worker loop itself sits inside a task poll. Anchors outside this frame
/// belong to that launch, not to the user's task.
const WORKER_LAUNCH: &str = "tokio::runtime::blocking::task::BlockingTask<";

/// Cuts the executor's frames off a stack (innermost first) and drops plumbing.
pub(crate) fn trim(frames: &[Frame]) -> Vec<Frame> {
    let inside = frames
        .iter()
        .position(|f| f.function.contains(WORKER_LAUNCH))
        .unwrap_or(frames.len());
    // No task harness on the stack: the sample came after the task's poll
    // returned but before the runtime's after-poll hook ended the poll (a
    // caught panic being cleaned up): the executor's loop is cut there.
    let cut = frames[..inside]
        .iter()
        .rposition(|f| matches(f, ANCHORS))
        .or_else(|| {
            frames[..inside]
                .iter()
                .rposition(|f| matches(f, TASK_LOOPS))
        })
        .unwrap_or(inside);
    let mut kept = strip_harness(&frames[..cut]);
    // A runtime that polls its tasks inside a poll of its own (tokio's
    // LocalSet under a watched root): when only library code lies between
    // the cut and a task harness further in, the user's code starts there.
    // A nested `block_on` always has the user's code calling it in between.
    while let Some(inner) = kept.iter().rposition(|f| matches(f, ANCHORS)) {
        if !kept[inner + 1..].iter().all(is_library) {
            break;
        }
        kept = strip_harness(&kept[..inner]);
    }
    kept.iter()
        .filter(|f| !matches(f, PLUMBING) && !matches(f, &ANCHORS[..OWN_ANCHORS]))
        .cloned()
        .collect()
}

/// The harness is several frames deep: drops the rest of it next to a cut.
fn strip_harness(mut kept: &[Frame]) -> &[Frame] {
    while let Some((last, rest)) = kept.split_last() {
        if matches(last, ANCHORS) || matches(last, PLUMBING) {
            kept = rest;
        } else {
            break;
        }
    }
    kept
}

/// Blocking where blocking belongs: a stack inside `block_in_place`, or a
/// poll on a blocking-pool thread (`Handle::block_on` inside `spawn_blocking`),
/// is not an episode. tokio also starts its *workers* on blocking-pool threads,
/// so the pool frame alone is not enough: the worker loop must be absent.
pub(crate) fn excuse(frames: &[Frame]) -> Option<&'static str> {
    let has = |p: &str| frames.iter().any(|f| f.function.contains(p));
    if has("tokio::runtime::scheduler::multi_thread::worker::block_in_place")
        || has("tokio::task::blocking::block_in_place")
    {
        return Some("block_in_place");
    }
    if has("tokio::runtime::blocking::pool::Inner::run")
        && !has("tokio::runtime::scheduler::multi_thread::worker::run")
    {
        return Some("blocking pool");
    }
    None
}

/// Mutex and rwlock machinery, from the futex call out to the `lock()` the
/// caller made. Condition variables are not in it: a wait on one is a wait
/// for an event (a `block_on`), not for a lock.
const LOCK_MACHINERY: &[&str] = &[
    "syscall",
    "__lll_lock_wait",
    "pthread_mutex_lock",
    "___pthread_mutex_lock",
    "pthread_rwlock_",
    "parking_lot::raw_mutex::",
    "parking_lot::raw_rwlock::",
    "parking_lot_core::",
    "lock_api::",
    "std::sys::pal::unix::futex::",
    "std::sys::futex::",
    "std::sys::sync::mutex::",
    "std::sys::sync::rwlock::",
    "std::sync::mutex::",
    "std::sync::rwlock::",
    "std::sync::poison::mutex::",
    "std::sync::poison::rwlock::",
    "tokio::loom::std::",
];

/// Async runtime internals whose locks are held for a few instructions at a
/// time, never while the user's code runs: a poll that waits long on one is
/// waiting for a holder that the OS descheduled, on a machine short of CPU.
/// (Not all of tokio: `sync::watch` holds its lock while the user holds a
/// borrow, and `io::split` while the user's reader runs.)
const RUNTIME_INTERNALS: &[&str] = &[
    "tokio::runtime::",
    "tokio::time::",
    "tokio::sync::batch_semaphore::",
    "tokio::sync::mpsc::",
    "tokio::sync::notify::",
    "tokio::sync::oneshot::",
    "async_executor::",
    "async_io::",
    "async_task::",
    "futures_executor::",
];

/// Whether a frame's function path starts with one of `prefixes`, also in
/// the `<path::Type>::method` form of inherent methods and trait impls.
fn in_path(f: &Frame, prefixes: &[&str]) -> bool {
    let name = f.function.strip_prefix('<').unwrap_or(&f.function);
    prefixes.iter().any(|p| name.starts_with(p))
}

/// Whether a stack (innermost first) waits for a lock that the async runtime
/// itself took. Such a wait is long only when the lock's holder is kept off
/// the CPU (a loaded machine), so it is not the program's blocking. A runtime
/// parking its thread (`block_on`) is a wait for an event and never counts.
pub(crate) fn runtime_lock_wait(frames: &[Frame]) -> bool {
    let mut in_lock = false;
    for f in frames {
        if in_path(f, LOCK_MACHINERY) {
            in_lock = true;
            continue;
        }
        return in_lock && in_path(f, RUNTIME_INTERNALS) && !f.function.contains("::park");
    }
    false
}

/// Name prefixes of library code, for frames without a source file.
const LIBRARY_PREFIXES: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "<std::",
    "<core::",
    "<alloc::",
    "tokio::",
    "<tokio::",
    "futures_",
    "<futures_",
    "async_std::",
    "<async_std::",
    "async_io::",
    "async_task::",
    "async_executor::",
    "mio::",
    "parking_lot",
];

/// Whether a frame is library code (std, a dependency, libc, pollwatch itself)
/// rather than the user's. Decided by where the source lives, which is exact,
/// and only for frames without debug info by the name.
pub(crate) fn is_library(f: &Frame) -> bool {
    if f.function.starts_with("pollwatch::") || f.function.starts_with("<pollwatch::") {
        return true;
    }
    match f.file.as_deref() {
        Some(file) => {
            file.starts_with("/rustc/")
                // std's own dependencies (hashbrown) are remapped there.
                || file.starts_with("/rust/deps/")
                || file.contains("/.cargo/registry/")
                || file.contains("/.cargo/git/")
                || file.contains("/rustlib/src/")
        }
        // No debug info: C code (libc, the vDSO) has no `::`; a Rust function
        // from a build without debug info is the user's unless its path says not.
        None => {
            !f.function.contains("::") || LIBRARY_PREFIXES.iter().any(|p| f.function.starts_with(p))
        }
    }
}

/// The innermost frame of the user's own code.
pub(crate) fn top_user_frame(frames: &[Frame]) -> Option<&Frame> {
    frames.iter().find(|f| !is_library(f))
}

/// Where an executor runs a task poll, or polls a `block_on` root: the
/// outermost of these on a stack is the thread's executor loop.
const POLL_LOOPS: &[&str] = &[
    "tokio::runtime::scheduler::multi_thread::worker::Context::run_task",
    "tokio::runtime::scheduler::current_thread::Context::run_task",
    "tokio::runtime::scheduler::current_thread::CoreGuard::block_on",
    "tokio::runtime::park::CachedParkThread::block_on",
    // async-task runs each task (smol, async-executor, async-std), and
    // `block_on` loops poll a root future: async-io's (smol, async-std's
    // threads), futures-lite's, futures-executor's.
    "async_task::runnable::Runnable<M>::run",
    "async_io::driver::block_on",
    "futures_lite::future::block_on",
    "futures_executor::local_pool::run_executor",
];

/// Frames that belong to the executor between its loop and the future, or
/// to what it calls to park (std's condition variable, the C library): a
/// future's own poll is never one of these.
const EXECUTOR_PATHS: &[&str] = &[
    "tokio::runtime::",
    "tokio::task::coop::",
    "tokio::loom::",
    "async_task::",
    "async_executor::",
    "async_io::",
    "async_global_executor::",
    "async_std::task::",
    // The `Or` of an executor's `run` and the root future it races.
    "futures_lite::future::",
    "futures_executor::",
    // A `LocalPool`'s tasks: a `FuturesUnordered` of `LocalFutureObj`s.
    "futures_task::",
    "futures_util::stream::futures_unordered::",
    "futures_util::stream::stream::StreamExt::poll_next_unpin",
    // What async-io's `block_on` parks in: the `parking` crate's parker,
    // or `polling`'s epoll wait (through rustix) while it drives the reactor.
    "parking::",
    "polling::",
    "rustix::",
    "core::",
    "alloc::",
    "std::",
    "parking_lot::",
    "parking_lot_core::",
    "lock_api::",
];

fn is_executor(f: &Frame) -> bool {
    in_path(f, EXECUTOR_PATHS) || !f.function.contains("::") || is_std_source(f)
}

/// Code of the standard library, by its source file: the paths above miss
/// its trait impls on primitive types (`<isize as core::cmp::PartialOrd>::le`,
/// inlined into a park's syscall wrapper in a release build).
fn is_std_source(f: &Frame) -> bool {
    f.file.as_deref().is_some_and(|file| {
        file.starts_with("/rustc/")
            || file.starts_with("/rust/deps/")
            || file.contains("/rustlib/src/")
    })
}

/// Which physical frame of a stack (each group a physical frame's frames,
/// inlined ones first; innermost group first) is the outermost one that
/// runs code of a task's future, inside the thread's executor loop. The
/// frames outward of it are the executor's, and stay as they are until the
/// poll returns: the watchdog tells polls apart by them. `None`: the thread
/// is not inside a poll (parked, between tasks, not an executor).
pub(crate) fn poll_boundary(groups: &[&[Frame]]) -> Option<usize> {
    let is_loop = |f: &Frame| POLL_LOOPS.iter().any(|p| f.function.contains(p));
    let l = groups.iter().rposition(|g| g.iter().any(is_loop))?;
    // Inlined into the loop's own frame (a `block_on` root): the frames
    // inward of the loop marker in that group.
    let group = groups[l];
    let marker = group.iter().rposition(is_loop)?;
    if group[..marker].iter().any(|f| !is_executor(f)) {
        return Some(l);
    }
    (0..l)
        .rev()
        .find(|&k| groups[k].iter().any(|f| !is_executor(f)))
}

/// A symbolized stack's frames grouped by physical frame, as
/// [`poll_boundary`] reads them: each group's inlined frames, then the
/// frame they were inlined into.
pub(crate) fn physical(frames: &[Frame]) -> Vec<&[Frame]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, f) in frames.iter().enumerate() {
        if !f.inlined {
            out.push(&frames[start..=i]);
            start = i + 1;
        }
    }
    if start < frames.len() {
        out.push(&frames[start..]);
    }
    out
}

/// Whether a stack is an executor's loop waiting between polls: a loop
/// frame is on it and no future's poll is. Blocked there, a `block_on`
/// whose root future's poll is inlined into the loop's own frame has the
/// same executor frames as while it polls the root.
pub(crate) fn parked_in_loop(groups: &[&[Frame]]) -> bool {
    poll_boundary(groups).is_none()
        && groups.iter().any(|g| {
            g.iter()
                .any(|f| POLL_LOOPS.iter().any(|p| f.function.contains(p)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_begins_at_the_outermost_frame_of_the_future() {
        let g = |names: &[&str]| names.iter().map(|n| f(n)).collect::<Vec<_>>();
        let stack = [
            g(&["std::thread::sleep"]),
            g(&["app::blocker", "app::handler::{{closure}}"]),
            g(&[
                "tokio::runtime::task::core::Core<T,S>::poll::{{closure}}",
                "tokio::runtime::task::harness::poll_future",
                "tokio::runtime::task::raw::poll",
            ]),
            g(&["tokio::runtime::scheduler::multi_thread::worker::Context::run_task"]),
            g(&["tokio::runtime::scheduler::multi_thread::worker::Context::run"]),
            g(&["std::thread::start"]),
        ];
        let groups: Vec<&[Frame]> = stack.iter().map(|v| v.as_slice()).collect();
        assert_eq!(poll_boundary(&groups), Some(1));
        // The future inlined into the harness's frame: that frame is the poll's.
        let inlined = [
            g(&["std::thread::sleep"]),
            g(&[
                "app::handler::{{closure}}",
                "tokio::runtime::task::raw::poll",
            ]),
            g(&["tokio::runtime::scheduler::multi_thread::worker::Context::run_task"]),
        ];
        let groups: Vec<&[Frame]> = inlined.iter().map(|v| v.as_slice()).collect();
        assert_eq!(poll_boundary(&groups), Some(1));
        // A `block_on` root inlined into the loop's frame.
        let root = [
            g(&["std::thread::sleep"]),
            g(&[
                "app::main::{{closure}}",
                "tokio::runtime::scheduler::current_thread::CoreGuard::block_on",
            ]),
            g(&["tokio::runtime::runtime::Runtime::block_on"]),
            g(&["app::main"]),
        ];
        let groups: Vec<&[Frame]> = root.iter().map(|v| v.as_slice()).collect();
        assert_eq!(poll_boundary(&groups), Some(1));
    }

    #[test]
    fn a_parked_worker_or_a_plain_thread_has_no_poll() {
        let g = |names: &[&str]| names.iter().map(|n| f(n)).collect::<Vec<_>>();
        let parked = [
            g(&["epoll_wait"]),
            g(&["tokio::runtime::io::driver::Driver::turn"]),
            g(&["tokio::runtime::scheduler::multi_thread::worker::Context::park"]),
            g(&["tokio::runtime::scheduler::multi_thread::worker::Context::run"]),
        ];
        let groups: Vec<&[Frame]> = parked.iter().map(|v| v.as_slice()).collect();
        assert_eq!(poll_boundary(&groups), None);
        // `block_on` parked on its condition variable: no future is polled.
        let block_on_parked = [
            g(&["__futex_abstimed_wait_common"]),
            g(&["std::sys::sync::condvar::futex::Condvar::wait"]),
            g(&["tokio::runtime::park::Inner::park"]),
            g(&["tokio::runtime::park::CachedParkThread::park"]),
            g(&["tokio::runtime::park::CachedParkThread::block_on"]),
            g(&["app::main"]),
        ];
        let groups: Vec<&[Frame]> = block_on_parked.iter().map(|v| v.as_slice()).collect();
        assert_eq!(poll_boundary(&groups), None);
        assert!(parked_in_loop(&groups));
        let plain = [
            g(&["read"]),
            g(&["app::reader"]),
            g(&["std::thread::start"]),
        ];
        let groups: Vec<&[Frame]> = plain.iter().map(|v| v.as_slice()).collect();
        assert_eq!(poll_boundary(&groups), None);
        assert!(!parked_in_loop(&groups), "not an executor");
    }

    #[test]
    fn a_nested_runtime_keeps_the_outer_poll() {
        let g = |names: &[&str]| names.iter().map(|n| f(n)).collect::<Vec<_>>();
        let stack = [
            g(&["std::thread::sleep"]),
            g(&["app::inner::{{closure}}"]),
            g(&["tokio::runtime::park::CachedParkThread::block_on"]),
            g(&["app::outer::{{closure}}"]),
            g(&["tokio::runtime::task::raw::poll"]),
            g(&["tokio::runtime::scheduler::multi_thread::worker::Context::run_task"]),
        ];
        let groups: Vec<&[Frame]> = stack.iter().map(|v| v.as_slice()).collect();
        assert_eq!(poll_boundary(&groups), Some(3));
    }

    #[test]
    fn a_task_of_async_task_executors_begins_at_its_future() {
        let g = |names: &[&str]| names.iter().map(|n| f(n)).collect::<Vec<_>>();
        // smol: an `Executor` run inside `block_on` on a thread of the
        // program's; async-std's own threads look the same, with its task
        // locals wrapper around the future.
        let smol = [
            g(&["std::thread::sleep"]),
            g(&["app::handler::{{closure}}"]),
            g(&["<async_std::task::builder::SupportTaskLocals<F> as core::future::future::Future>::poll"]),
            g(&["<async_executor::AsyncCallOnDrop<Fut,Cleanup> as core::future::future::Future>::poll"]),
            g(&["async_task::raw::RawTask<F,T,S,M>::run"]),
            g(&["async_task::runnable::Runnable<M>::run"]),
            g(&["async_executor::State::run::{{closure}}::{{closure}}"]),
            g(&["<futures_lite::future::Or<F1,F2> as core::future::future::Future>::poll"]),
            g(&["async_executor::Executor::run::{{closure}}"]),
            g(&["async_io::driver::block_on"]),
            g(&["app::worker_thread"]),
        ];
        let groups: Vec<&[Frame]> = smol.iter().map(|v| v.as_slice()).collect();
        assert_eq!(poll_boundary(&groups), Some(1));
        // Parked in async-io's `block_on`, on its parker or driving the
        // reactor: no poll, a park place.
        for park in [
            &["syscall", "parking::Inner::park", "parking::Parker::park"][..],
            &[
                "rustix::backend::arch::asm::syscall5",
                "rustix::event::epoll::wait",
                "polling::epoll::Poller::wait_deadline",
                "async_io::reactor::ReactorLock::react",
            ],
        ] {
            let mut parked: Vec<Vec<Frame>> = park.iter().map(|n| g(&[n])).collect();
            // A release build inlines std's comparisons into the wrapper.
            let mut cmp = f("<isize as core::cmp::PartialOrd>::le");
            cmp.file = Some("/rustc/0123abcd/library/core/src/cmp.rs".into());
            parked.insert(1, vec![cmp]);
            parked.push(g(&["async_io::driver::block_on::{{closure}}"]));
            parked.push(g(&["async_io::driver::block_on"]));
            parked.push(g(&["app::worker_thread"]));
            let groups: Vec<&[Frame]> = parked.iter().map(|v| v.as_slice()).collect();
            assert_eq!(poll_boundary(&groups), None, "{park:?}");
            assert!(parked_in_loop(&groups));
        }
    }

    #[test]
    fn a_local_pool_task_begins_at_its_future() {
        let g = |names: &[&str]| names.iter().map(|n| f(n)).collect::<Vec<_>>();
        let stack = [
            g(&["std::thread::sleep"]),
            g(&["app::task::{{closure}}"]),
            g(&["<futures_task::future_obj::LocalFutureObj<T> as core::future::future::Future>::poll"]),
            g(&["<futures_util::stream::futures_unordered::FuturesUnordered<Fut> as futures_core::stream::Stream>::poll_next"]),
            g(&["futures_util::stream::stream::StreamExt::poll_next_unpin"]),
            g(&["futures_executor::local_pool::LocalPool::poll_pool"]),
            g(&["futures_executor::local_pool::run_executor"]),
            g(&["futures_executor::local_pool::LocalPool::run_until_stalled"]),
            g(&["app::pool_thread"]),
        ];
        let groups: Vec<&[Frame]> = stack.iter().map(|v| v.as_slice()).collect();
        assert_eq!(poll_boundary(&groups), Some(1));
    }

    fn f(name: &str) -> Frame {
        Frame {
            function: name.into(),
            file: Some("src/main.rs".into()),
            line: Some(1),
            address: 0,
            inlined: false,
        }
    }

    #[test]
    fn trim_cuts_at_the_task_loop_when_no_harness_is_left() {
        let stack = vec![
            f("tokio::task::coop::with_budget"),
            f("tokio::runtime::scheduler::multi_thread::worker::Context::run_task::{{closure}}"),
            f("tokio::runtime::scheduler::multi_thread::worker::Context::run_task"),
            f("tokio::runtime::scheduler::multi_thread::worker::Context::run"),
            f("tokio::runtime::scheduler::multi_thread::worker::run::{{closure}}"),
        ];
        let t: Vec<_> = trim(&stack).into_iter().map(|f| f.function).collect();
        assert!(t.iter().all(|n| !n.contains("worker::run")), "{t:?}");
        assert_eq!(t.len(), 1, "{t:?}");
    }

    #[test]
    fn trim_cuts_at_the_executor_and_drops_plumbing() {
        let stack = vec![
            f("std::thread::sleep"),
            f("app::blocker"),
            f("app::handler::{{closure}}"),
            f("<core::pin::Pin<P> as core::future::future::Future>::poll"),
            f("tokio::runtime::task::core::Core<T,S>::poll::{{closure}}"),
            f("tokio::runtime::task::harness::poll_future"),
            f("tokio::runtime::scheduler::multi_thread::worker::run"),
        ];
        let t: Vec<_> = trim(&stack).into_iter().map(|f| f.function).collect();
        assert_eq!(
            t,
            [
                "std::thread::sleep",
                "app::blocker",
                "app::handler::{{closure}}"
            ]
        );
    }

    #[test]
    fn the_worker_launch_task_is_not_the_users_task() {
        // A multi-thread worker, as sampled: the worker loop runs inside a
        // blocking-pool task, which is polled through the same harness.
        let stack = vec![
            f("clock_nanosleep"),
            f("std::thread::functions::sleep"),
            f("app::load_config::{{closure}}"),
            f("<pollwatch::probe::Watched<F> as core::future::future::Future>::poll"),
            f("tokio::runtime::task::core::Core<T,S>::poll::{{closure}}"),
            f("tokio::runtime::task::core::Core<T,S>::poll"),
            f("tokio::runtime::task::harness::poll_future"),
            f("tokio::runtime::task::raw::RawTask::poll"),
            f("tokio::runtime::scheduler::multi_thread::worker::Context::run_task"),
            f("tokio::runtime::scheduler::multi_thread::worker::run"),
            f("tokio::runtime::scheduler::multi_thread::worker::Launch::launch::{{closure}}"),
            f("<tokio::runtime::blocking::task::BlockingTask<T> as core::future::future::Future>::poll"),
            f("tokio::runtime::task::core::Core<T,S>::poll::{{closure}}"),
            f("tokio::runtime::task::harness::poll_future"),
            f("tokio::runtime::task::raw::RawTask::poll"),
            f("tokio::runtime::blocking::pool::Inner::run"),
            f("std::sys::thread::unix::Thread::new::thread_start"),
        ];
        let t: Vec<_> = trim(&stack).into_iter().map(|f| f.function).collect();
        assert_eq!(
            t,
            [
                "clock_nanosleep",
                "std::thread::functions::sleep",
                "app::load_config::{{closure}}"
            ]
        );
    }

    #[test]
    fn local_set_tasks_start_at_the_task_not_in_the_local_set() {
        let lib = |name: &str| Frame {
            file: Some(
                "/home/u/.cargo/registry/src/index.crates.io-0/tokio-1.54.1/src/task/local.rs"
                    .into(),
            ),
            ..f(name)
        };
        let stack = vec![
            f("std::thread::functions::sleep"),
            f("app::local_task::{{closure}}"),
            f("tokio::runtime::task::core::Core<T,S>::poll::{{closure}}"),
            f("tokio::runtime::task::harness::poll_future"),
            f("tokio::runtime::task::raw::RawTask::poll"),
            lib("tokio::runtime::task::LocalNotified<S>::run"),
            lib("tokio::task::local::LocalSet::tick"),
            lib("<tokio::task::local::RunUntil<T> as core::future::future::Future>::poll"),
            f("<pollwatch::probe::Watched<F> as core::future::future::Future>::poll"),
            f("tokio::runtime::scheduler::current_thread::CoreGuard::block_on"),
        ];
        let t: Vec<_> = trim(&stack).into_iter().map(|f| f.function).collect();
        assert_eq!(
            t,
            [
                "std::thread::functions::sleep",
                "app::local_task::{{closure}}"
            ]
        );
    }

    #[test]
    fn nested_executors_stay_visible_inside_the_outer_task() {
        let stack = vec![
            f("std::thread::sleep"),
            f("app::inner"),
            f("<pollwatch::probe::Watched<F> as core::future::future::Future>::poll"),
            f("futures_executor::local_pool::block_on"),
            f("app::handler::{{closure}}"),
            f("<pollwatch::probe::Watched<F> as core::future::future::Future>::poll"),
            f("tokio::runtime::task::core::Core<T,S>::poll::{{closure}}"),
            f("tokio::runtime::task::harness::poll_future"),
        ];
        let t: Vec<_> = trim(&stack).into_iter().map(|f| f.function).collect();
        assert_eq!(
            t,
            [
                "std::thread::sleep",
                "app::inner",
                "futures_executor::local_pool::block_on",
                "app::handler::{{closure}}"
            ]
        );
    }

    #[test]
    fn user_frames_and_excuses() {
        let mut lib = f("std::thread::sleep");
        lib.file = Some("/rustc/abc/library/std/src/thread/mod.rs".into());
        let stack = vec![lib, f("app::blocker")];
        assert_eq!(top_user_frame(&stack).unwrap().function, "app::blocker");
        assert_eq!(excuse(&stack), None);
        let bip = vec![f(
            "tokio::runtime::scheduler::multi_thread::worker::block_in_place::h",
        )];
        assert_eq!(excuse(&bip), Some("block_in_place"));
        let worker = vec![
            f("app::blocker"),
            f("tokio::runtime::scheduler::multi_thread::worker::run"),
            f("tokio::runtime::blocking::pool::Inner::run"),
        ];
        assert_eq!(
            excuse(&worker),
            None,
            "workers run on blocking-pool threads"
        );
        assert_eq!(excuse(&worker[2..]), Some("blocking pool"));
    }

    #[test]
    fn lock_waits_inside_the_runtime_are_told_apart() {
        let tokio_timer = [
            f("syscall"),
            f("parking_lot_core::thread_parker::imp::ThreadParker::futex_wait"),
            f("parking_lot_core::parking_lot::park"),
            f("parking_lot::raw_mutex::RawMutex::lock_slow"),
            f("<parking_lot::raw_mutex::RawMutex as lock_api::mutex::RawMutex>::lock"),
            f("lock_api::mutex::Mutex<R,T>::lock"),
            f("tokio::loom::std::parking_lot::Mutex<T>::lock"),
            f("tokio::runtime::time::entry::TimerEntry::reset"),
            f("app::handler::{{closure}}"),
        ];
        assert!(runtime_lock_wait(&tokio_timer));
        // std's mutex inside tokio's scheduler, in the `<Type>::method` form.
        let inject_queue = [
            f("syscall"),
            f("<std::sys::sync::mutex::futex::Mutex>::lock_contended"),
            f("<std::sync::poison::mutex::Mutex<_>>::lock"),
            f("<tokio::runtime::scheduler::inject::Inject<_>>::push"),
            f("app::handler::{{closure}}"),
        ];
        assert!(runtime_lock_wait(&inject_queue));
        // The user's own std::sync::Mutex: the program's blocking.
        let user_mutex = [
            f("syscall"),
            f("<std::sys::sync::mutex::futex::Mutex>::lock_contended"),
            f("std::sync::poison::mutex::Mutex<T>::lock"),
            f("app::update_counter"),
            f("tokio::runtime::task::harness::poll_future"),
        ];
        assert!(!runtime_lock_wait(&user_mutex));
        // A block_on inside a task parks on a condvar, through tokio's parker
        // (after re-taking the condvar's mutex): the program's blocking.
        let nested_block_on = [
            f("syscall"),
            f("std::sys::sync::mutex::futex::Mutex::lock_contended"),
            f("std::sys::sync::condvar::futex::Condvar::wait_optional_timeout"),
            f("tokio::runtime::park::Inner::park"),
            f("app::handler::{{closure}}"),
        ];
        assert!(!runtime_lock_wait(&nested_block_on));
        let parker_mutex = [
            f("syscall"),
            f("std::sys::sync::mutex::futex::Mutex::lock_contended"),
            f("tokio::runtime::park::Inner::park"),
        ];
        assert!(!runtime_lock_wait(&parker_mutex));
        // tokio's watch channel holds its lock while the user holds a
        // borrow: waiting on it is the program's doing.
        let watch_send = [
            f("syscall"),
            f("parking_lot::raw_rwlock::RawRwLock::lock_exclusive_slow"),
            f("<parking_lot::raw_rwlock::RawRwLock as lock_api::rwlock::RawRwLock>::lock_exclusive"),
            f("lock_api::rwlock::RwLock<R,T>::write"),
            f("tokio::loom::std::rwlock::RwLock<T>::write"),
            f("tokio::sync::watch::Sender<T>::send_replace"),
            f("app::publish::{{closure}}"),
        ];
        assert!(!runtime_lock_wait(&watch_send));
        // A sleep or a CPU loop is not a lock wait at all.
        assert!(!runtime_lock_wait(&[
            f("clock_nanosleep"),
            f("std::thread::sleep")
        ]));
        assert!(!runtime_lock_wait(&[f(
            "tokio::runtime::time::wheel::Wheel::poll"
        )]));
    }

    #[test]
    fn std_s_own_dependencies_are_library_code() {
        // hashbrown inside std::collections::HashMap, as std's debug info names it.
        let at = |file: &str| {
            Frame {
            file: Some(file.into()),
            ..f("<hashbrown::map::HashMap<K,V,S,A> as core::iter::traits::collect::Extend<(K,V)>>::extend")
        }
        };
        let stack = [
            at("/rust/deps/hashbrown-0.16.1/src/map.rs"),
            Frame {
                file: Some("/home/me/app/src/config.rs".into()),
                ..f("app::load_config")
            },
        ];
        assert_eq!(top_user_frame(&stack).unwrap().function, "app::load_config");
    }
}
