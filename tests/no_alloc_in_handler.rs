//! The signal handler must not allocate (an allocation inside a signal
//! handler can deadlock on the allocator's lock, or corrupt its state). This
//! binary installs a counting global allocator that counts only allocations
//! made on the sampled thread while it is stuck; the handler runs on that
//! thread, so any allocation in it would be counted.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::*;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: delegates every call to `System` unchanged; the counter is an atomic
// and the flag a const thread-local without destructor, so neither allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[inline(never)]
fn spin_without_allocating(d: Duration) -> u64 {
    let t = Instant::now();
    let mut x = 1u64;
    while t.elapsed() < d {
        x = std::hint::black_box(x.wrapping_mul(0x5851_f42d_4c95_7f2d).wrapping_add(1));
    }
    x
}

#[test]
fn the_handler_never_allocates() {
    let _s = serial();
    let guard = config("no_alloc")
        .sample_interval(Duration::from_micros(500))
        .start()
        .unwrap();
    let counted = std::thread::spawn(|| {
        // The first poll registers the thread (which allocates); do it first.
        drop(pollwatch::enter_poll());
        let _poll = pollwatch::enter_poll();
        COUNTING.with(|c| c.set(true));
        spin_without_allocating(Duration::from_millis(400));
        COUNTING.with(|c| c.set(false));
        ALLOCATIONS.load(Ordering::Relaxed)
    })
    .join()
    .unwrap();
    let report = guard.finish().unwrap();
    let ep = episode_in(&report, "spin_without_allocating");
    assert!(ep.samples() >= 20, "the thread was sampled often: {ep:?}");
    assert_eq!(
        counted, 0,
        "allocations on the sampled thread while it was being sampled"
    );
}
