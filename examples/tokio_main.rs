//! pollwatch in an application that starts tokio with `#[tokio::main]`,
//! where there is no runtime builder to hook up: wrap the futures you want
//! watched with `pollwatch::watch`. A worker thread joins pollwatch on the
//! first watched poll it runs, and leaves when it exits.
//!
//! ```text
//! cargo run --example tokio_main
//! ```

use std::time::Duration;

#[inline(never)]
fn read_config_file_synchronously() -> usize {
    std::thread::sleep(Duration::from_millis(80));
    42
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guard = pollwatch::init()?;
    // The body of main is the runtime's root future: wrap it too if it does
    // real work. Here it only waits for the task.
    let task = tokio::spawn(pollwatch::watch(async {
        tokio::task::yield_now().await;
        read_config_file_synchronously()
    }));
    let value = pollwatch::watch(task).await?;
    assert_eq!(value, 42);
    let report = guard.finish()?;
    print!("{report}");
    Ok(())
}
