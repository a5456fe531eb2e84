//! pollwatch in an application that starts tokio with `#[tokio::main]`,
//! where there is no runtime builder to hook up: one line,
//! `pollwatch::tokio::attach()`, as the first statement of the async main,
//! and every task of the runtime is watched by sampling its workers. Nothing
//! is wrapped; the episode names the task's future (`mode: sampled`).
//!
//! ```text
//! cargo run --example tokio_main
//! ```

use std::time::Duration;

#[inline(never)]
fn read_config_file_synchronously() -> usize {
    std::thread::sleep(Duration::from_millis(120));
    42
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guard = pollwatch::init()?;
    pollwatch::tokio::attach()?;
    let task = tokio::spawn(async {
        tokio::task::yield_now().await;
        read_config_file_synchronously()
    });
    let value = task.await?;
    assert_eq!(value, 42);
    let report = guard.finish()?;
    print!("{report}");
    Ok(())
}
