//! pollwatch on async-std: spawn through `pollwatch::async_std::spawn` (or wrap
//! with `pollwatch::watch`), and run the root future through
//! `pollwatch::async_std::block_on`.
//!
//! ```text
//! cargo run --example async_std_demo --features async-std
//! ```

use std::time::Duration;

#[inline(never)]
fn parse_config_from_disk() {
    // Stands in for any synchronous call made from async code.
    std::thread::sleep(Duration::from_millis(120));
}

fn main() -> Result<(), pollwatch::Error> {
    let guard = pollwatch::init()?;
    pollwatch::async_std::block_on(async {
        let healthy = pollwatch::async_std::spawn(async {
            for _ in 0..50 {
                async_std::task::sleep(Duration::from_millis(1)).await;
            }
        });
        let blocking = pollwatch::async_std::spawn(async {
            async_std::task::yield_now().await;
            parse_config_from_disk();
        });
        healthy.await;
        blocking.await;
    });
    let report = guard.finish()?;
    print!("{report}");
    Ok(())
}
