//! The report stage's costs: symbolizing and writing a large report, and
//! pollwatch's memory over thousands of episodes.
//!
//! - symbolization: one thread blocks on-CPU in 50 distinct call sites in
//!   turn, each long enough to be sampled ~200 times (threshold 5 ms,
//!   interval 0.5 ms), about 10,000 samples in all. The figure is the report
//!   thread's own time spent symbolizing (including loading debug info) and
//!   writing every artifact (`Report::overhead`), with the wall time of
//!   `Guard::finish` printed beside it.
//! - memory: two child processes run the same loop of short blocking polls
//!   (2 ms sleeps in 50 call sites), one bare, one with pollwatch at a 1 ms
//!   threshold so every poll is an episode. Their `VmRSS` is compared at
//!   checkpoints; the difference is pollwatch's memory.

mod common;

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ms, row};

#[inline(never)]
fn block(how: Block) {
    match how {
        Block::Spin(until) => {
            while Instant::now() < until {
                black_box(0);
            }
        }
        Block::Sleep(d) => std::thread::sleep(d),
    }
}

#[derive(Clone, Copy)]
enum Block {
    Spin(Instant),
    Sleep(Duration),
}

macro_rules! sites {
    ($($name:ident)*) => {
        $(
            #[inline(never)]
            fn $name(how: Block) {
                // A local used after the call keeps this frame on the stack.
                // Its own name, used after the call: keeps this frame on the
                // stack and makes each site's code distinct (no merging).
                let local = [stringify!($name).as_ptr(); 2];
                black_box(&local);
                block(how);
                black_box(&local);
            }
        )*
        const SITES: &[fn(Block)] = &[$($name),*];
    };
}

sites! {
    site_00 site_01 site_02 site_03 site_04 site_05 site_06 site_07 site_08 site_09
    site_10 site_11 site_12 site_13 site_14 site_15 site_16 site_17 site_18 site_19
    site_20 site_21 site_22 site_23 site_24 site_25 site_26 site_27 site_28 site_29
    site_30 site_31 site_32 site_33 site_34 site_35 site_36 site_37 site_38 site_39
    site_40 site_41 site_42 site_43 site_44 site_45 site_46 site_47 site_48 site_49
}

fn symbolization() {
    let threshold = Duration::from_millis(5);
    let interval = Duration::from_micros(500);
    // ~200 samples per site: captures and ticks stretch the interval by
    // ~25% in practice, so hold for 270 intervals, plus the threshold.
    let hold = threshold + interval * common::scaled(270, 10) as u32;
    let guard = pollwatch::Config::default()
        .threshold(threshold)
        .sample_interval(interval)
        .output_dir(common::out_dir("symbolization"))
        .live(false)
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    std::thread::spawn(move || {
        for site in SITES {
            {
                let _in_poll = pollwatch::enter_poll();
                site(Block::Spin(Instant::now() + hold));
            }
            std::thread::sleep(threshold);
        }
    })
    .join()
    .unwrap();
    let t = Instant::now();
    let report = guard.finish().unwrap();
    let finish = t.elapsed();
    let o = report.overhead();
    let stage = o.symbolize_time + o.write_time;
    let folded = report
        .folded_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let sites_seen = SITES
        .iter()
        .enumerate()
        .filter(|(i, _)| folded.contains(&format!("site_{i:02}")))
        .count();
    let raw_stacks: usize = report.episodes().iter().map(|e| e.stacks().len()).sum();
    println!(
        "symbolization: {} episodes, {} samples captured, {} distinct raw stacks, {} folded lines, {sites_seen} of {} call sites named",
        report.episodes().len(),
        o.samples_captured,
        raw_stacks,
        folded.lines().count(),
        SITES.len()
    );
    println!(
        "  report thread: symbolizing {} (incl. loading debug info), writing {}; Guard::finish wall {}",
        ms(o.symbolize_time),
        ms(o.write_time),
        ms(finish)
    );
    row(
        &format!(
            "symbolization: report thread time for {} samples over {sites_seen} call sites (symbolize + write)",
            o.samples_captured
        ),
        &ms(stage),
        &format!("finish() {}", ms(finish)),
        "—",
        "< 1 s",
    );
}

fn memory_child(with_pollwatch: bool, episodes: u64) {
    let guard = with_pollwatch.then(|| {
        pollwatch::Config::default()
            .threshold(Duration::from_millis(1))
            .output_dir(common::out_dir("memory"))
            .live(false)
            .start()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(500));
    let every = (episodes / 8).max(1);
    let chk = |n: u64| {
        println!(
            "CHK|{n}|{}|{}",
            common::rss_kib().0,
            common::status_kib("RssAnon:")
        )
    };
    chk(0);
    eprintln!(
        "memory child ({}): RssAnon {} KiB, RssFile {} KiB at start",
        if with_pollwatch { "pollwatch" } else { "bare" },
        common::status_kib("RssAnon:"),
        common::status_kib("RssFile:")
    );
    for i in 0..episodes {
        {
            let _in_poll = pollwatch::enter_poll();
            SITES[i as usize % SITES.len()](Block::Sleep(Duration::from_millis(2)));
        }
        if (i + 1) % every == 0 {
            chk(i + 1);
        }
    }
    if let Some(g) = guard {
        let r = g.finish().unwrap();
        let c = r.counters();
        eprintln!(
            "memory child: RssAnon {} KiB, RssFile {} KiB after finish",
            common::status_kib("RssAnon:"),
            common::status_kib("RssFile:")
        );
        println!(
            "END|{}|{}|{}|{}|{}",
            common::rss_kib().1,
            r.episodes().len(),
            c.dropped_episodes,
            c.dropped_samples,
            c.descheduled
        );
    } else {
        println!("END|{}|0|0|0|0", common::rss_kib().1);
    }
}

fn memory() {
    let episodes = common::scaled(12_000, 200);
    let spawn = |mode: &str| {
        Command::new(std::env::current_exe().unwrap())
            .args(["--child-memory", mode, &episodes.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Both at once: they mostly sleep, and they then see the same machine.
    let children = [spawn("bare"), spawn("pollwatch")];
    let outs: Vec<Vec<String>> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            BufReader::new(&out.stdout[..])
                .lines()
                .map_while(Result::ok)
                .collect()
        })
        .collect();
    // (polls, VmRSS, RssAnon) at each checkpoint.
    let chk = |lines: &[String]| -> Vec<(u64, u64, u64)> {
        lines
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.strip_prefix("CHK|")?.split('|').collect();
                Some((f[0].parse().ok()?, f[1].parse().ok()?, f[2].parse().ok()?))
            })
            .collect()
    };
    let end = |lines: &[String]| -> Vec<u64> {
        lines
            .iter()
            .find_map(|l| l.strip_prefix("END|"))
            .map(|l| l.split('|').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default()
    };
    let (bare, ours) = (chk(&outs[0]), chk(&outs[1]));
    let (bare_end, ours_end) = (end(&outs[0]), end(&outs[1]));
    println!(
        "memory: {episodes} blocking polls of 2 ms in 50 call sites, threshold 1 ms; VmRSS in MiB"
    );
    println!(
        "  {:>8} {:>8} {:>10} {:>8}   {:>10} {:>14} {:>9}",
        "polls", "bare", "pollwatch", "diff", "anon bare", "anon pollwatch", "anon diff"
    );
    let mib = |k: u64| k as f64 / 1024.0;
    let (mut worst, mut worst_anon) = (0.0f64, 0.0f64);
    for ((n, b, ba), (_, p, pa)) in bare.iter().zip(&ours) {
        let d = mib(*p) - mib(*b);
        let da = mib(*pa) - mib(*ba);
        worst = worst.max(d);
        worst_anon = worst_anon.max(da);
        println!(
            "  {n:>8} {:>8.1} {:>10.1} {d:>8.1}   {:>10.1} {:>14.1} {da:>9.1}",
            mib(*b),
            mib(*p),
            mib(*ba),
            mib(*pa)
        );
    }
    let hwm_diff = match (bare_end.first(), ours_end.first()) {
        (Some(b), Some(p)) => mib(*p) - mib(*b),
        _ => f64::NAN,
    };
    println!(
        "  peak (VmHWM, after finish) bare {:.1} MiB, pollwatch {:.1} MiB, diff {hwm_diff:.1} MiB",
        mib(bare_end.first().copied().unwrap_or(0)),
        mib(ours_end.first().copied().unwrap_or(0)),
    );
    if let [_, kept, dropped, dropped_samples, desched] = ours_end[..] {
        println!(
            "  episodes kept in memory {kept}, dropped from memory {dropped} (all in episodes.jsonl), samples dropped {dropped_samples}, descheduled {desched}"
        );
    }
    let growth = match (ours.first(), ours.last(), bare.first(), bare.last()) {
        (Some(a), Some(z), Some(ba), Some(bz)) => (mib(z.1) - mib(a.1)) - (mib(bz.1) - mib(ba.1)),
        _ => f64::NAN,
    };
    row(
        &format!("memory: RSS over bare, worst checkpoint over {episodes} episodes (growth in run {growth:.1} MiB)"),
        &format!("{worst:.1} MiB"),
        &format!("bare {:.1} MiB", mib(bare.last().map_or(0, |c| c.1))),
        "—",
        "< 16 MiB",
    );
    row(
        "memory: anonymous RSS over bare (allocations; no mapped debug info), worst checkpoint",
        &format!("{worst_anon:.1} MiB"),
        &format!("bare {:.1} MiB", mib(bare.last().map_or(0, |c| c.2))),
        "—",
        "< 16 MiB",
    );
    row(
        "memory: peak RSS (VmHWM) over bare, including finish()",
        &format!("{hwm_diff:.1} MiB"),
        &format!(
            "bare {:.1} MiB",
            mib(bare_end.first().copied().unwrap_or(0))
        ),
        "—",
        "< 16 MiB",
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-memory") {
        let mode = &args[i + 1];
        let n = args[i + 2].parse().unwrap();
        memory_child(mode == "pollwatch", n);
        return;
    }
    let which = args.get(1).filter(|a| !a.starts_with('-')).cloned();
    let want = |s: &str| which.is_none() || which.as_deref() == Some(s);
    if want("symbolization") {
        symbolization();
    }
    if want("memory") {
        memory();
    }
}
