//! pollwatch in a hand-written executor: put `pollwatch::enter_poll()` around
//! the executor's own call to `Future::poll`. Every future it runs is watched.
//!
//! ```text
//! cargo run --example custom_executor
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// A tiny round-robin executor: polls every task until all are done.
fn run(tasks: Vec<Task>) {
    let mut queue: VecDeque<Task> = tasks.into();
    let mut cx = Context::from_waker(Waker::noop());
    while let Some(mut task) = queue.pop_front() {
        let poll = {
            // The probe: the executor thread is "inside a poll" while this lives.
            let _in_poll = pollwatch::enter_poll();
            task.as_mut().poll(&mut cx)
        };
        if poll.is_pending() {
            queue.push_back(task);
        }
    }
}

/// A future that is pending `n` times before it completes.
struct YieldTimes(u32);

impl Future for YieldTimes {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            Poll::Ready(())
        } else {
            self.0 -= 1;
            Poll::Pending
        }
    }
}

#[inline(never)]
fn compress_synchronously() {
    std::thread::sleep(Duration::from_millis(60));
}

fn main() -> Result<(), pollwatch::Error> {
    let guard = pollwatch::init()?;
    run(vec![
        Box::pin(async {
            YieldTimes(100).await;
        }),
        Box::pin(async {
            YieldTimes(3).await;
            compress_synchronously();
        }),
    ]);
    let report = guard.finish()?;
    print!("{report}");
    Ok(())
}
