//! pollwatch on `futures::executor`: wrap what you spawn on a `ThreadPool`, and
//! the root future of `block_on`, with `pollwatch::watch`.
//!
//! ```text
//! cargo run --example futures_demo
//! ```

use std::time::Duration;

use futures::executor::{block_on, ThreadPool};
use futures::task::SpawnExt;

#[inline(never)]
fn wait_for_legacy_client() {
    std::thread::sleep(Duration::from_millis(80));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guard = pollwatch::init()?;
    let pool = ThreadPool::builder().pool_size(2).create()?;
    let handle = pool.spawn_with_handle(pollwatch::watch(async {
        wait_for_legacy_client();
    }))?;
    block_on(pollwatch::watch(handle));
    let report = guard.finish()?;
    print!("{report}");
    Ok(())
}
