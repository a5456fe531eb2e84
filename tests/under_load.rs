//! What must hold on a loaded machine, and what pollwatch must never do to
//! the program it watches:
//! - raw system calls that `SA_RESTART` cannot restart (`nanosleep`, `poll`,
//!   `epoll_wait`) run their full time and return 0: a blocked thread is
//!   never signalled, its stack is copied from outside;
//! - a poll made of long `read(2)` calls (the thread inside the kernel, on
//!   a CPU, unable to take a signal) is one episode naming its function;
//! - the first poll of a new thread is measured like any other;
//! - with both cores kept busy by other threads, every poll whose own time
//!   is at least twice the threshold is reported or, if pollwatch's own
//!   thread was kept from a CPU, counted as unseen; none is excused as
//!   waiting for a CPU, even with the watchdog reniced to 19; a CPU loop
//!   never reads as off-CPU.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const RAW: Duration = Duration::from_millis(300);

/// Checks that `f` returned 0 after running its full time, and that its
/// poll is one episode in `function`, off-CPU in `syscall`.
fn raw_call_is_not_interrupted(
    test: &str,
    function: &str,
    syscall: &str,
    f: fn() -> (i64, Duration),
) {
    let _s = serial();
    let (report, (rc, took)) = caught(test, f);
    assert_eq!(
        rc, 0,
        "{function} was interrupted (returned {rc}) after {took:?}:\n{report}"
    );
    assert!(took >= RAW, "{function} returned early, after {took:?}");
    let ep = episode_in(&report, function);
    assert_close(ep, took, function);
    assert!(ep.off_cpu() > ep.on_cpu(), "{report}");
    let state = ep.stacks()[0].state.to_string();
    assert!(
        state.contains(syscall),
        "state {state}, not {syscall}:\n{report}"
    );
    assert_eq!(report.counters().missed_samples, 0, "{report}");
}

fn errno_or(rc: i64) -> i64 {
    if rc < 0 {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        rc
    }
}

#[inline(never)]
fn raw_nanosleep() -> (i64, Duration) {
    let t = Instant::now();
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: RAW.as_nanos() as libc::c_long,
    };
    // SAFETY: a valid timespec; no remainder pointer.
    let rc = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
    (errno_or(rc.into()), t.elapsed())
}

#[inline(never)]
fn raw_poll() -> (i64, Duration) {
    let t = Instant::now();
    // SAFETY: no descriptors: poll only waits for the timeout.
    let rc = unsafe { libc::poll(std::ptr::null_mut(), 0, RAW.as_millis() as i32) };
    (errno_or(rc.into()), t.elapsed())
}

#[inline(never)]
fn raw_epoll_wait() -> (i64, Duration) {
    // SAFETY: plain syscalls on a descriptor we own and close.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        assert!(ep >= 0);
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let t = Instant::now();
        let rc = libc::epoll_wait(ep, events.as_mut_ptr(), 4, RAW.as_millis() as i32);
        let out = (errno_or(rc.into()), t.elapsed());
        libc::close(ep);
        out
    }
}

#[test]
fn raw_nanosleep_runs_its_full_time() {
    raw_call_is_not_interrupted("raw_nanosleep", "raw_nanosleep", "nanosleep", raw_nanosleep);
}

#[test]
fn raw_poll_runs_its_full_time() {
    raw_call_is_not_interrupted("raw_poll", "raw_poll", "poll", raw_poll);
}

#[test]
fn raw_epoll_wait_runs_its_full_time() {
    raw_call_is_not_interrupted("raw_epoll", "raw_epoll_wait", "epoll", raw_epoll_wait);
}

/// Reads `path` from the page cache with `read(2)` calls of `buf.len()`
/// bytes into one buffer: the kernel copies, on a CPU, and the thread
/// cannot take a signal until each call returns. Returns wall and CPU time.
#[inline(never)]
fn long_kernel_reads(path: &std::path::Path, buf: &mut [u8]) -> (Duration, Duration) {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let (t, cpu) = (Instant::now(), thread_cpu());
    loop {
        // pollwatch must not cut a read short: a regular file's read ends
        // early only for a fatal signal.
        let n = f.read(buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(n == buf.len(), "read cut short: {n} of {}", buf.len());
    }
    std::hint::black_box(&buf);
    (t.elapsed(), thread_cpu() - cpu)
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A file in the page cache of `chunks` × `chunk` bytes, and a buffer of one chunk.
fn cached_file(test: &str, chunk: usize, chunks: usize) -> (std::path::PathBuf, Vec<u8>) {
    use std::io::Write;
    let dir = out_dir(test);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("input");
    let buf = vec![5u8; chunk];
    let mut f = std::fs::File::create(&path).unwrap();
    for _ in 0..chunks {
        f.write_all(&buf).unwrap();
    }
    (path, buf)
}

/// Bytes one `read(2)` must copy to take `cpu` of CPU on this machine.
fn chunk_for(cpu: Duration) -> usize {
    let (path, mut buf) = cached_file("calibrate", 32 << 20, 2);
    long_kernel_reads(&path, &mut buf); // into the page cache
    let (_, one) = long_kernel_reads(&path, &mut buf);
    let _ = std::fs::remove_file(&path);
    ((64u128 << 20) * cpu.as_nanos() / one.as_nanos().max(1)).clamp(32 << 20, 768 << 20) as usize
}

#[test]
fn long_reads_inside_the_kernel_are_one_episode() {
    let _s = serial();
    // Each call takes ~3× the threshold of CPU on this machine.
    let chunk = chunk_for(THRESHOLD * 3);
    let (path, mut buf) = cached_file("kernel_reads_input", chunk, 3);
    long_kernel_reads(&path, &mut buf);
    // The buffer goes back out of the poll: freeing it there would be part
    // of the poll, and not of what the reads measured.
    let (report, ((took, cpu), _buf)) = caught("kernel_reads", move || {
        (long_kernel_reads(&path, &mut buf), buf)
    });
    let ep = episode_in(&report, "long_kernel_reads");
    assert_close(ep, took, "long reads");
    // Its time was on a CPU (in the kernel), never read as asleep.
    assert!(ep.on_cpu() + tolerance() >= cpu, "{report}");
    assert!(ep.off_cpu() < ep.on_cpu(), "{report}");
    let in_kernel: Duration = ep
        .stacks()
        .iter()
        .filter(|s| matches!(s.state, pollwatch::ThreadState::Syscall(_)))
        .map(|s| s.weight)
        .sum();
    // Only the time before the first signal can read otherwise, when the
    // thread's user/system ticks have not moved by then: the poll's time
    // at detection, a threshold and the watchdog's delay (measured in CI
    // with tokio_unstable: 25 ms, of 181 ms on CPU, at a 20 ms threshold).
    let first = ep.detected_after() + ep.duration_uncertainty() + 2 * INTERVAL;
    assert!(
        in_kernel + first >= ep.on_cpu(),
        "only {in_kernel:?} of {:?} on CPU read as in the kernel:\n{report}",
        ep.on_cpu()
    );
}

/// Spins `cpu` of this thread's own CPU time in the first poll of a fresh thread.
#[inline(never)]
fn first_poll_spin(cpu: Duration) -> Duration {
    let _p = pollwatch::enter_poll();
    cpu_spin(cpu)
}

#[test]
fn the_first_poll_of_a_new_thread_is_measured_like_any_other() {
    let _s = serial();
    let guard = config("first_poll").start().unwrap();
    const N: usize = 10;
    for _ in 0..N {
        std::thread::spawn(|| first_poll_spin(THRESHOLD * 2))
            .join()
            .unwrap();
    }
    let report = guard.finish().unwrap();
    let caught = report.blocked_in("first_poll_spin").count();
    assert_eq!(caught, N, "{caught} of {N} first polls reported:\n{report}");
}

/// Keeps every core busy with unwatched threads until dropped: a load
/// test's machine, inside the test.
struct Saturate(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Saturate {
    fn new(per_core: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()) * per_core;
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Saturate(stop, threads)
    }
}

impl Drop for Saturate {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

/// Renices pollwatch's watchdog thread to the lowest priority: beside the
/// busy threads it gets a CPU only now and then, its looks come tens of
/// milliseconds late. A machine where pollwatch itself is starved.
fn starve_the_watchdog() {
    let mut found = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        // The kernel keeps 15 bytes of "pollwatch-watchdog".
        if comm.trim_end() == "pollwatch-watch" {
            let tid: libc::id_t = task.file_name().to_str().unwrap().parse().unwrap();
            // SAFETY: a plain syscall; raising a thread's own nice value
            // needs no privilege.
            let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 19) };
            assert_eq!(rc, 0, "setpriority: {}", std::io::Error::last_os_error());
            found += 1;
        }
    }
    assert_eq!(found, 1, "the watchdog thread");
}

/// What a saturated run of CPU loops and big file reads reported, counted
/// by the site each task was watched at (every poll is there, whatever its
/// heaviest stack shows).
struct Saturated {
    report: pollwatch::Report,
    spins: usize,
    reads: usize,
}

const SPINS: usize = 6;
const READS: usize = 4;

/// Runs `SPINS` CPU loops and `READS` polls of big file reads, each of
/// twice the threshold of its own CPU, on two workers of a machine kept
/// busy by two threads per core.
fn saturated_run(test: &str, starved: bool) -> Saturated {
    // Large reads, of about half the threshold of CPU each.
    let chunk = chunk_for(THRESHOLD / 2);
    let (file, buf) = cached_file(&format!("{test}_input"), chunk, 2);
    long_kernel_reads(&file, &mut buf.clone());
    let load = Saturate::new(2);
    let guard = config(test).start().unwrap();
    if starved {
        starve_the_watchdog();
    }
    let rt = tokio_runtime(2);
    let (mut spin_site, mut read_site) = (0, 0);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..SPINS {
            let task = pollwatch::watch(async {
                tokio::task::yield_now().await;
                cpu_spin(THRESHOLD * 2);
                None
            });
            spin_site = task.location().line();
            tasks.push(tokio::spawn(task));
        }
        for _ in 0..READS {
            let (file, mut buf) = (file.clone(), buf.clone());
            let task = pollwatch::watch(async move {
                tokio::task::yield_now().await;
                // Reads until its own CPU time is twice the threshold,
                // however slow the machine makes each read.
                let mut cpu = Duration::ZERO;
                while cpu < THRESHOLD * 2 {
                    cpu += long_kernel_reads(&file, &mut buf).1;
                }
                Some(buf) // freed outside the poll
            });
            read_site = task.location().line();
            tasks.push(tokio::spawn(task));
        }
        for t in tasks {
            drop(t.await.unwrap());
        }
    });
    drop(rt);
    let report = guard.finish().unwrap();
    drop(load);
    let _ = std::fs::remove_file(&file);
    let at = |site: u32| format!(":{site}:");
    let (spin_at, read_at) = (at(spin_site), at(read_site));
    let count = |site: &str| {
        report
            .episodes()
            .iter()
            .filter(|e| e.spawned_at().is_some_and(|s| s.contains(site)))
            .count()
    };
    // Each poll used twice the threshold of its own CPU: an excuse ("its
    // own time was under the threshold") would be false, however late the
    // watchdog looked.
    let excused: Vec<_> = report
        .descheduled()
        .iter()
        .filter(|d| {
            d.task()
                .is_some_and(|t| t.contains(&spin_at) || t.contains(&read_at))
        })
        .collect();
    assert!(
        excused.is_empty(),
        "excused as waiting for a CPU:\n{report}"
    );
    for ep in report.episodes() {
        assert!(
            ep.on_cpu() > ep.off_cpu(),
            "{:?} on CPU, not asleep: {:?} on, {:?} off, {:?} waiting\n{report}",
            ep.top_user_frame(),
            ep.on_cpu(),
            ep.off_cpu(),
            ep.runnable()
        );
    }
    let (spins, reads) = (count(&spin_at), count(&read_at));
    // Only a poll pollwatch says it may have missed, because its own
    // thread was kept from a CPU (a look more than a threshold late, or
    // too late at a poll's start or end to measure its own time), may be
    // missing; on a machine that left the watchdog its CPU, none.
    let unseen = report.counters().unseen_polls as usize;
    assert!(
        spins <= SPINS && reads <= READS && spins + reads + unseen >= SPINS + READS,
        "{spins} of {SPINS} CPU loops and {reads} of {READS} file reads reported, {unseen} unseen:\n{report}"
    );
    Saturated {
        spins,
        reads,
        report,
    }
}

#[test]
fn on_a_saturated_machine_every_poll_of_twice_the_threshold_is_reported() {
    let _s = serial();
    // Every poll reported, or counted as possibly missed: checked in
    // `saturated_run`, with no false excuse.
    let run = saturated_run("saturated", false);
    assert_signal_budget(&run.report);
}

#[test]
fn with_the_watchdog_kept_from_a_cpu_no_long_poll_is_excused_or_dropped_unsaid() {
    let _s = serial();
    // Measured under `saturate -n 2`: 4–23 unseen polls per run. Before
    // an excuse had to hold with all its thread's CPU counted, 1–2 of
    // these polls per run were excused as waiting for a CPU with under
    // half their own time seen. Both checked in `saturated_run`.
    let run = saturated_run("starved", true);
    println!(
        "starved watchdog: {} loops, {} reads reported, {} unseen",
        run.spins,
        run.reads,
        run.report.counters().unseen_polls
    );
}
