//! What each tokio mode catches. Default build: the futures you wrap with
//! `watch`. With `--cfg tokio_unstable`: every task's polls, attributed to the
//! task id and spawn location. Run the suite both ways (see `.ci/run`).

mod support;

use std::time::Duration;

use support::*;

#[test]
fn unwrapped_tasks_are_caught_in_both_modes() {
    let _s = serial();
    let guard = config("unwrapped").start().unwrap();
    let rt = tokio_runtime(2);
    let spawned_line = line!() + 1;
    let t = rt.spawn(async { blocking_sleep(Duration::from_millis(100)) });
    rt.block_on(t).unwrap();
    drop(rt);
    let report = guard.finish().unwrap();
    let ep = episode_in(&report, "blocking_sleep");
    if cfg!(tokio_unstable) {
        assert_eq!(ep.mode(), pollwatch::EpisodeMode::Hooks);
        assert!(ep.task_id().is_some(), "{ep:?}");
        let at = ep.spawned_at().unwrap();
        assert!(
            at.contains(&format!("tokio_modes.rs:{spawned_line}")),
            "{at}"
        );
        assert!(artifact(&report, "stacks.folded").contains("task spawned at tests/tokio_modes.rs"));
    } else {
        // No task hooks on stable tokio: the instrumented builder's workers
        // are sampled, and the task is named by its future, not its spawn.
        assert_eq!(ep.mode(), pollwatch::EpisodeMode::Sampled, "{report}");
        assert!(
            ep.task_id().is_none() && ep.spawned_at().is_none(),
            "{ep:?}"
        );
        let future = ep.future().expect("a sampled episode names its future");
        assert!(future.contains("tokio_modes"), "{future}");
    }
}

#[test]
fn wrapped_tasks_are_caught_in_both_modes() {
    let _s = serial();
    let guard = config("wrapped").start().unwrap();
    let rt = tokio_runtime(2);
    let t = rt.spawn(pollwatch::watch(async {
        blocking_sleep(Duration::from_millis(100))
    }));
    rt.block_on(t).unwrap();
    drop(rt);
    let report = guard.finish().unwrap();
    let ep = episode_in(&report, "blocking_sleep");
    // The innermost label wins: the watch() site, not the hook's spawn site.
    assert!(
        ep.spawned_at().unwrap().contains("tokio_modes.rs"),
        "{ep:?}"
    );
    assert_eq!(ep.task_id().is_some(), cfg!(tokio_unstable), "{ep:?}");
}

#[test]
fn current_thread_runtime_block_on_root_and_tasks() {
    let _s = serial();
    let guard = config("current_thread").start().unwrap();
    let rt = pollwatch::tokio::instrument(&mut tokio::runtime::Builder::new_current_thread())
        .enable_all()
        .build()
        .unwrap();
    // The root future of block_on runs on this thread, outside any task: wrap it.
    rt.block_on(pollwatch::watch(async {
        tokio::task::yield_now().await;
        blocking_sleep(Duration::from_millis(80));
        tokio::spawn(pollwatch::watch(async {
            cpu_spin(Duration::from_millis(80))
        }))
        .await
        .unwrap();
    }));
    drop(rt);
    let report = guard.finish().unwrap();
    let root = episode_in(&report, "blocking_sleep");
    let task = episode_in(&report, "cpu_spin");
    assert_eq!(root.tid(), task.tid(), "one thread runs both");
    assert!(!task.blocked_in("blocking_sleep"), "{report}");
}

// `#[tokio::main]` builds the runtime itself (as below: a plain builder and
// `block_on` of main's body), so there is no builder to instrument: watched
// futures alone must do.
#[test]
fn without_a_builder_to_instrument_watched_futures_are_caught() {
    let _s = serial();
    let guard = config("tokio_main").start().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (slept, spun) = rt.block_on(async {
        let task = tokio::spawn(pollwatch::watch(async {
            tokio::task::yield_now().await;
            blocking_sleep(Duration::from_millis(100))
        }));
        let slept = task.await.unwrap();
        // main's own body, on the calling thread.
        let spun = pollwatch::watch(async { cpu_spin(Duration::from_millis(80)) }).await;
        (slept, spun)
    });
    drop(rt);
    let report = guard.finish().unwrap();
    let worker = episode_in(&report, "blocking_sleep");
    assert_close(
        worker,
        slept,
        "task on a worker that was never instrumented",
    );
    assert!(worker.thread_name().contains("tokio"), "{worker:?}");
    let root = episode_in(&report, "cpu_spin");
    assert_close(root, spun, "main's own future");
    assert_ne!(worker.tid(), root.tid(), "{report}");
}

#[test]
fn local_set_tasks_are_caught_through_the_watched_root() {
    let _s = serial();
    let guard = config("local_set").start().unwrap();
    let rt = pollwatch::tokio::instrument(&mut tokio::runtime::Builder::new_current_thread())
        .enable_all()
        .build()
        .unwrap();
    // A LocalSet polls its tasks inside its own poll, where tokio's hooks do
    // not reach: watching the LocalSet's future watches every local task.
    let local = tokio::task::LocalSet::new();
    let truth = rt.block_on(pollwatch::watch(local.run_until(async {
        tokio::task::spawn_local(async {
            tokio::task::yield_now().await;
            blocking_sleep(Duration::from_millis(100))
        })
        .await
        .unwrap()
    })));
    drop(rt);
    let report = guard.finish().unwrap();
    let ep = episode_in(&report, "blocking_sleep");
    assert_close(ep, truth, "local task");
    let outer = ep.frames().last().unwrap();
    assert!(
        outer.function.contains("local_set_tasks_are_caught"),
        "the stack starts at the local task, not in the LocalSet: {:#?}",
        ep.frames()
    );
}

#[test]
fn nested_watched_futures_count_once_and_name_the_innermost() {
    let _s = serial();
    let guard = config("nested").start().unwrap();
    let rt = tokio_runtime(2);
    let t = rt.spawn(pollwatch::watch(async {
        // A watched handler inside a watched connection task.
        let inner_line = line!() + 1;
        let d = pollwatch::watch(async { blocking_sleep(Duration::from_millis(100)) }).await;
        (inner_line, d)
    }));
    let (inner_line, truth) = rt.block_on(t).unwrap();
    drop(rt);
    let report = guard.finish().unwrap();
    let ep = episode_in(&report, "blocking_sleep");
    assert!(
        ep.spawned_at()
            .unwrap()
            .contains(&format!("tokio_modes.rs:{inner_line}")),
        "{ep:?}"
    );
    assert_close(ep, truth, "nested episode");
    assert_eq!(report.episodes().len(), 1, "{report}");
}
