//! pollwatch on smol: spawn through `pollwatch::smol::spawn` (or wrap futures
//! given to your own `smol::Executor` with `pollwatch::watch`).
//!
//! ```text
//! cargo run --example smol_demo --features smol
//! ```

use std::time::{Duration, Instant};

#[inline(never)]
fn checksum_inline(bytes: &[u8]) -> u64 {
    // A CPU-heavy loop with no await point: it holds the executor thread.
    let start = Instant::now();
    let mut h = 0u64;
    while start.elapsed() < Duration::from_millis(100) {
        for &b in bytes {
            h = h.rotate_left(5) ^ u64::from(b);
        }
    }
    h
}

fn main() -> Result<(), pollwatch::Error> {
    let guard = pollwatch::init()?;
    let sum = pollwatch::smol::block_on(async {
        let task = pollwatch::smol::spawn(async {
            smol::future::yield_now().await;
            checksum_inline(&[7u8; 4096])
        });
        smol::Timer::after(Duration::from_millis(5)).await;
        task.await
    });
    std::hint::black_box(sum);
    let report = guard.finish()?;
    print!("{report}");
    Ok(())
}
