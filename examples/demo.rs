//! The pollwatch demo: a tokio service with healthy traffic and a few tasks
//! that block their worker, the way real code does by accident.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! prints a live line per blocking episode while it happens, then the summary,
//! and writes `target/pollwatch/demo-<pid>/flamegraph.svg`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Rounds of `hash_passwords_inline` (about 120 ms of CPU on a 3 GHz core).
const HASH_ROUNDS: u64 = 10_000;
/// Reads of a 1 MiB file in `read_file_with_std` (about 80 ms).
const FILE_READS: u32 = 1_800;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guard = pollwatch::init()?;

    let rt = pollwatch::tokio::instrument(&mut tokio::runtime::Builder::new_multi_thread())
        .worker_threads(4)
        .enable_all()
        .build()?;

    rt.block_on(async {
        // Healthy traffic: many short polls, timers and channels.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1024);
        let consumer = tokio::spawn(pollwatch::watch(async move {
            let mut sum = 0u64;
            while let Some(v) = rx.recv().await {
                sum = sum.wrapping_add(v);
            }
            sum
        }));
        let mut producers = Vec::new();
        for p in 0..32u64 {
            let tx = tx.clone();
            producers.push(tokio::spawn(pollwatch::watch(async move {
                for i in 0..200u64 {
                    tx.send(p * 1000 + i).await.unwrap();
                    if i % 20 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })));
        }
        drop(tx);

        // The bugs: each blocks a worker thread inside one poll.
        let lock = Arc::new(Mutex::new(0u64));
        let blockers = vec![
            tokio::spawn(pollwatch::watch(load_config_synchronously())),
            tokio::spawn(pollwatch::watch(hash_passwords_inline())),
            tokio::spawn(pollwatch::watch(read_file_with_std())),
            tokio::spawn(pollwatch::watch(update_shared_counter(lock.clone(), 0))),
            tokio::spawn(pollwatch::watch(update_shared_counter(lock, 1))),
        ];
        for p in producers {
            p.await.unwrap();
        }
        for b in blockers {
            b.await.unwrap();
        }
        consumer.await.unwrap();
    });
    drop(rt);

    let report = guard.finish()?;
    print!("{report}");
    if let Some(svg) = report.flamegraph_path() {
        println!("open {} in a browser", svg.display());
    }
    Ok(())
}

/// Sleeps the worker thread: everything else on it waits.
#[inline(never)]
async fn load_config_synchronously() {
    tokio::task::yield_now().await;
    std::thread::sleep(Duration::from_millis(150));
}

/// A CPU-heavy loop with no `.await` in it: a fixed amount of work, as
/// hashing is, so a busy machine stretches its wall time but not its own.
#[inline(never)]
async fn hash_passwords_inline() {
    tokio::task::yield_now().await;
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for _password in 0..HASH_ROUNDS {
        for i in 0..10_000u64 {
            h = (h ^ i).wrapping_mul(0x100_0000_01b3);
        }
    }
    std::hint::black_box(h);
}

/// Synchronous file I/O from std instead of tokio::fs: the same file read
/// a fixed number of times (from the page cache).
#[inline(never)]
async fn read_file_with_std() {
    tokio::task::yield_now().await;
    let path = std::env::temp_dir().join(format!("pollwatch-demo-{}", std::process::id()));
    std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
    let mut total = 0usize;
    for _ in 0..FILE_READS {
        total += std::fs::read(&path).unwrap().len();
    }
    let _ = std::fs::remove_file(&path);
    std::hint::black_box(total);
}

/// A std Mutex held across a slow section: the second task waits on the lock.
#[inline(never)]
async fn update_shared_counter(lock: Arc<Mutex<u64>>, n: u64) {
    tokio::time::sleep(Duration::from_millis(5 * n)).await;
    let mut g = lock.lock().unwrap();
    std::thread::sleep(Duration::from_millis(60));
    *g += 1;
}
