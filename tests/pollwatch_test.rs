//! `#[pollwatch::test]`: a test whose runtime blocks fails with the blocking
//! function's name in its message; a clean one passes; the flavors, other
//! attributes and `Result` tests work as with `#[tokio::test]`. These tests
//! run in parallel threads and take turns inside pollwatch.

use std::time::Duration;

#[inline(never)]
fn read_config_synchronously() {
    std::thread::sleep(Duration::from_millis(150));
}

#[inline(never)]
fn hash_inline_in_a_spawned_task() {
    std::thread::sleep(Duration::from_millis(150));
}

#[pollwatch::test]
#[should_panic(expected = "read_config_synchronously")]
async fn a_blocking_body_fails_naming_the_function() {
    tokio::task::yield_now().await;
    read_config_synchronously();
}

#[pollwatch::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "hash_inline_in_a_spawned_task")]
async fn a_blocking_watched_task_fails_the_multi_thread_test() {
    tokio::spawn(pollwatch::watch(async {
        tokio::task::yield_now().await;
        hash_inline_in_a_spawned_task();
    }))
    .await
    .unwrap();
}

#[pollwatch::test]
async fn a_clean_test_passes() {
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(pollwatch::watch(async move { tx.send(7).unwrap() }));
    assert_eq!(rx.await.unwrap(), 7);
}

#[pollwatch::test(flavor = "multi_thread")]
async fn a_clean_multi_thread_test_passes() {
    let tasks: Vec<_> = (0..8)
        .map(|i| tokio::spawn(pollwatch::watch(async move { i * 2 })))
        .collect();
    let mut sum = 0;
    for t in tasks {
        sum += t.await.unwrap();
    }
    assert_eq!(sum, 56);
}

/// A poll under the attribute's threshold is not an episode.
#[pollwatch::test(threshold_ms = 500)]
async fn the_attribute_sets_the_threshold() {
    tokio::task::yield_now().await;
    std::thread::sleep(Duration::from_millis(60));
}

#[pollwatch::test]
async fn a_test_may_return_a_result() -> Result<(), std::num::ParseIntError> {
    let n: u32 = "42".parse()?;
    assert_eq!(n, 42);
    Ok(())
}

#[pollwatch::test]
#[ignore = "shows that #[ignore] passes through; it would fail if run"]
async fn ignored_tests_stay_ignored() {
    read_config_synchronously();
}
