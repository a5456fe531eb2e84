//! The cap on bytes of stack copies waiting to be unwound
//! (`Config::stack_memory_bytes`): a sample refused by the cap keeps its
//! time and thread state on the episode's previous stack and is counted;
//! the episode's first stack is always kept.

mod support;

use std::time::Duration;

use support::*;

/// How long each phase of the poll lasts (asleep, then CPU time).
const PHASE: Duration = Duration::from_millis(150);

/// Asleep: the episode's first stack, read once (the thread does not move
/// meanwhile); every later stack is the second phase's.
#[inline(never)]
fn first_phase() -> Duration {
    std::hint::black_box(blocking_sleep(PHASE))
}

#[inline(never)]
fn second_phase() -> Duration {
    std::hint::black_box(cpu_spin(PHASE))
}

/// One watched poll that sleeps in `first_phase`, then spins in
/// `second_phase`, where every interval signals for a stack.
fn two_phases(cfg: pollwatch::Config) -> pollwatch::Report {
    let guard = cfg.start().unwrap();
    futures::executor::block_on(pollwatch::watch(async {
        first_phase();
        second_phase();
    }));
    guard.finish().unwrap()
}

fn only_episode(report: &pollwatch::Report) -> &pollwatch::Episode {
    assert_eq!(report.episodes().len(), 1, "{report}");
    &report.episodes()[0]
}

#[test]
fn a_zero_cap_keeps_each_episodes_first_stack_and_all_its_time() {
    let _s = serial();
    let report = two_phases(config("stack_memory_zero").stack_memory_bytes(0));
    let ep = only_episode(&report);
    // One stack was kept, the first: every stack the report shows (one per
    // thread state) is those same addresses.
    let kept: std::collections::HashSet<&[u64]> = ep
        .stacks()
        .iter()
        .filter(|s| !s.raw.is_empty())
        .map(|s| &s.raw[..])
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "stacks past the cap were kept: {:#?}",
        ep.stacks()
    );
    // The stacks of the second phase lost their copies, not their time nor
    // their state: the whole poll's own time is in the stacks, its CPU
    // time as on-CPU (on the first phase's stack, the last one kept), as
    // the thread's own accounting has it.
    // Own time is the duration less the waits for a CPU, as in
    // tokio_blocking's stack_weights_add_up_to_the_episode.
    let total: Duration = ep.stacks().iter().map(|s| s.weight).sum();
    let own = ep.duration().saturating_sub(ep.runnable());
    assert!(
        own.abs_diff(total) <= INTERVAL * 2 + ep.duration_uncertainty() * 2,
        "{total:?} of the poll's own {own:?} kept: {ep:?}"
    );
    let on_cpu: Duration = ep
        .stacks()
        .iter()
        .filter(|s| {
            matches!(
                s.state,
                pollwatch::ThreadState::OnCpu | pollwatch::ThreadState::Syscall(_)
            )
        })
        .map(|s| s.weight)
        .sum();
    // The thread's CPU time includes its time in the kernel (the spin reads
    // its CPU clock with a syscall), which the samples tag `syscall`.
    assert!(
        on_cpu.abs_diff(ep.on_cpu()) <= tolerance() + ep.duration_uncertainty() * 2,
        "{on_cpu:?} of the episode's {:?} on CPU kept as on-CPU: {ep:?}",
        ep.on_cpu()
    );
    assert!(!on_cpu.is_zero(), "{ep:?}");
    let dropped = report.counters().dropped_samples;
    assert!(
        dropped >= 1 && dropped <= u64::from(ep.samples()),
        "{dropped} samples kept without their stack, of {}",
        ep.samples()
    );
    let summary = artifact(&report, "summary.txt");
    assert!(
        summary.contains(&format!("{dropped} samples kept without their stack")),
        "{summary}"
    );
}

#[test]
fn an_out_of_range_cap_is_refused_with_its_bounds() {
    let _s = serial();
    let err = config("stack_memory_refused")
        .stack_memory_bytes(2 << 30)
        .start()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("stack_memory_bytes") && msg.contains("POLLWATCH_STACK_MEMORY_KIB"),
        "{msg}"
    );
}
