//! `summary.txt` (also [`Report`]'s `Display` and the gate's message): the
//! episodes, the top call sites with file:line and the longest episodes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::{clean, Episode, Report};

/// Said (stderr, summary) when a run watched no poll at all: a silent
/// "0 episodes" would read like a healthy run.
pub(crate) const NOTHING_WATCHED: &str = "no poll was watched: call `pollwatch::tokio::attach()` first in \
     your async main, or instrument the runtime's builder (`pollwatch::tokio::instrument`), or wrap \
     futures with `pollwatch::watch`";

/// Said (stderr, summary) when the workers of a runtime watched only
/// through `watch` were busy outside watched polls for at least a
/// threshold: time in which a blocking poll could have gone unseen.
pub(crate) fn busy_outside_line(r: &Report) -> Option<String> {
    let busy = r.counters.busy_outside_watched;
    if busy.is_zero() || busy < r.threshold {
        return None;
    }
    let amount = if busy >= Duration::from_secs(1) {
        format!("{:.1} s", busy.as_secs_f64())
    } else {
        format!("{} ms", ms(Duration::from_millis(busy.as_millis() as u64)))
    };
    Some(format!(
        "worker busy {amount} outside watched futures: polls there are not watched; call \
         `pollwatch::tokio::attach()` first in your async main, or instrument the runtime's builder \
         (`pollwatch::tokio::instrument`), to watch every task"
    ))
}

/// `what` (a plural phrase) said of `n` things: its first plural noun in
/// the singular for one ("1 poll that may have been long went unseen").
fn counted(n: u64, what: &str) -> String {
    if n != 1 {
        return what.to_owned();
    }
    for noun in ["polls", "samples", "episodes", "threads", "lines", "waits"] {
        if let Some(at) = what.find(noun) {
            let mut one = what.to_owned();
            one.replace_range(at..at + noun.len(), &noun[..noun.len() - 1]);
            return one;
        }
    }
    what.to_owned()
}

/// `20`, `0.5`: a duration in milliseconds, a fraction only when it has one.
pub(crate) fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Blocked time at one call site: the top user frame of each episode's
/// heaviest stack, weighted by the episode's duration.
pub(crate) struct Site {
    /// `function (file:line)`, or `[no stack]`.
    pub(crate) site: String,
    pub(crate) episodes: u64,
    pub(crate) blocked: Duration,
    /// State of the heaviest stack of the first episode seen there.
    pub(crate) state: String,
}

/// Blocked time per call site, added up episode by episode: the stage
/// keeps it for every episode of a run, so the summary's call sites count
/// the episodes past the in-memory limit too (a load test reaches it in
/// seconds: 1,000 episodes of a blocked handler, and the table's counts no
/// longer added up to the header's).
#[derive(Clone, Debug, Default)]
pub(crate) struct SiteTotals {
    sites: BTreeMap<String, (u64, Duration, String)>,
    /// Episodes at sites past [`MAX_SITES`].
    other: (u64, Duration),
}

/// Distinct call sites added up at most; the rest are one `[other call
/// sites]` line.
pub(crate) const MAX_SITES: usize = 10_000;

impl SiteTotals {
    pub(crate) fn add(&mut self, ep: &Episode) {
        let site = ep
            .top_user_frame()
            .or(ep.frames().first())
            .map(|f| clean(&f.to_string()).into_owned())
            .unwrap_or_else(|| "[no stack]".into());
        if self.sites.len() >= MAX_SITES && !self.sites.contains_key(&site) {
            self.other.0 += 1;
            self.other.1 += ep.duration;
            return;
        }
        let state = ep
            .stacks
            .first()
            .map(|s| clean(&s.state.to_string()).into_owned())
            .unwrap_or_default();
        let e = self.sites.entry(site).or_insert((0, Duration::ZERO, state));
        e.0 += 1;
        e.1 += ep.duration;
    }

    /// The sites, most blocked time first (ties by name, so the order is
    /// stable).
    pub(crate) fn sites(&self) -> Vec<Site> {
        let mut sites: Vec<Site> = self
            .sites
            .iter()
            .map(|(site, (episodes, blocked, state))| Site {
                site: site.clone(),
                episodes: *episodes,
                blocked: *blocked,
                state: state.clone(),
            })
            .collect();
        if self.other.0 > 0 {
            sites.push(Site {
                site: "[other call sites]".into(),
                episodes: self.other.0,
                blocked: self.other.1,
                state: String::new(),
            });
        }
        sites.sort_by_key(|s| std::cmp::Reverse(s.blocked));
        sites
    }
}

/// Call sites of `episodes`, most blocked time first (ties by name, so the
/// order is stable).
pub(crate) fn call_sites<'a>(episodes: impl IntoIterator<Item = &'a Episode>) -> Vec<Site> {
    let mut totals = SiteTotals::default();
    for ep in episodes {
        totals.add(ep);
    }
    totals.sites()
}

/// The first `n` sites as the summary's lines: `  148.2 ms    1×  site  [state]`.
pub(crate) fn write_sites(s: &mut String, sites: &[Site], n: usize) {
    for site in sites.iter().take(n) {
        let _ = writeln!(
            s,
            "  {:>8.1} ms  {:>3}×  {}  [{}]",
            site.blocked.as_secs_f64() * 1000.0,
            site.episodes,
            site.site,
            site.state
        );
    }
}

/// The `n` longest of `episodes`, each with its heaviest stack.
pub(crate) fn write_longest<'a>(
    s: &mut String,
    episodes: impl IntoIterator<Item = &'a Episode>,
    n: usize,
) {
    let mut worst: Vec<&Episode> = episodes.into_iter().collect();
    worst.sort_by_key(|e| std::cmp::Reverse(e.duration));
    worst.truncate(n);
    if worst.is_empty() {
        return;
    }
    let _ = writeln!(s, "\nlongest episodes:");
    for ep in worst {
        let task = match (&ep.future, ep.mode) {
            // Found by sampling: no spawn site, the future named from the stack.
            (Some(f), super::EpisodeMode::Sampled) => Some(format!("future {f}")),
            _ => super::describe_poll(ep.label.as_deref(), ep.task_id, ep.spawned_at.as_deref()),
        }
        .map(|t| format!(" {}", clean(&t)))
        .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {:>8.1} ms  {} (tid {}){task} [{}]: on-cpu {:.1} ms, off-cpu {:.1} ms, waiting for a CPU {:.1} ms",
            ep.duration.as_secs_f64() * 1000.0,
            clean(&ep.thread),
            ep.tid,
            ep.mode,
            ep.on_cpu.as_secs_f64() * 1000.0,
            ep.off_cpu.as_secs_f64() * 1000.0,
            ep.runnable.as_secs_f64() * 1000.0,
        );
        for f in ep.frames().iter().take(8) {
            let _ = writeln!(s, "        {}", clean(&f.to_string()));
        }
    }
}

/// The human summary (also `Report`'s `Display`).
pub(crate) fn text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pollwatch: {} blocking episode{} (polls longer than {} ms), {} ms blocked in total (unwind: {})",
        r.total_episodes,
        if r.total_episodes == 1 { "" } else { "s" },
        ms(r.threshold),
        r.total_blocked.as_millis(),
        r.unwind
    );
    let sites = match &r.site_totals {
        Some(t) => t.sites(),
        None => call_sites(&r.episodes),
    };
    if !sites.is_empty() {
        let _ = writeln!(s, "\ntop blocking call sites:");
        write_sites(&mut s, &sites, 10);
    }
    write_longest(&mut s, &r.episodes, 5);
    let c = &r.counters;
    let notes: Vec<String> = [
        (
            c.excused,
            "long polls excused (block_in_place / blocking pool)",
        ),
        (
            c.descheduled,
            "long polls not reported: their own time was under the threshold, the rest was waiting for a CPU",
        ),
        (
            c.runtime_lock_waits,
            "long polls not reported: waiting on the runtime's own lock (a loaded machine)",
        ),
        (
            c.missed_samples,
            "samples missed (thread exited or did not answer in time)",
        ),
        (
            c.dropped_samples,
            "samples kept without their stack (report stage behind)",
        ),
        (
            c.dropped_episodes,
            "episodes kept only in episodes.jsonl (memory limit)",
        ),
        (
            c.suppressed_lines,
            "live lines suppressed by the rate limit",
        ),
        (c.unwatched_threads, "threads not watched (registry full)"),
        (
            c.unseen_polls,
            "polls that may have been long went unseen (pollwatch's own thread was kept from a CPU)",
        ),
        (
            c.parked_not_polls,
            "waits in a `block_on` read as polls, dropped: every stack showed the executor parked",
        ),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("  {n} {}", counted(n, what)))
    .collect();
    if let Some(note) = r.coverage_note() {
        let _ = writeln!(s, "\n{note}");
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\nalso:");
        for n in notes {
            let _ = writeln!(s, "{n}");
        }
    }
    if !r.descheduled.is_empty() {
        let _ = writeln!(s, "\nlongest polls excused as waiting for a CPU:");
        for p in r.descheduled.iter().take(5) {
            let _ = writeln!(s, "  {}", clean(&p.to_string()));
        }
    }
    if let Some(d) = &r.dir {
        let _ = writeln!(s, "\nartifacts in {}", clean(&d.display().to_string()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::SiteTotals;
    use crate::report::gate::tests::episode;
    use std::time::Duration;

    #[test]
    fn every_episode_counts_at_its_call_site_and_sites_past_the_bound_are_one_line() {
        let mut t = SiteTotals::default();
        for id in 0..super::MAX_SITES as u64 + 2 {
            // Distinct sites, each blocked 1 ms; the first twice more.
            t.add(&episode(id, &format!("app::site{id}"), 1, 1));
        }
        t.add(&episode(0, "app::site0", 1, 10));
        t.add(&episode(0, "app::site0", 1, 10));
        let sites = t.sites();
        assert_eq!(sites[0].episodes, 3);
        assert_eq!(sites[0].blocked, Duration::from_millis(21));
        assert!(
            sites[0].site.starts_with("app::site0 "),
            "{}",
            sites[0].site
        );
        // Past the bound: one line for the two sites left over.
        let other = sites
            .iter()
            .find(|s| s.site == "[other call sites]")
            .unwrap();
        assert_eq!(other.episodes, 2);
        let total: u64 = sites.iter().map(|s| s.episodes).sum();
        assert_eq!(total, super::MAX_SITES as u64 + 4);
    }

    #[test]
    fn one_of_a_kind_is_said_in_the_singular() {
        let what = "polls that may have been long went unseen";
        assert_eq!(
            super::counted(1, what),
            "poll that may have been long went unseen"
        );
        assert_eq!(super::counted(7, what), what);
        assert_eq!(
            super::counted(1, "long polls excused (block_in_place / blocking pool)"),
            "long poll excused (block_in_place / blocking pool)"
        );
        assert_eq!(
            super::counted(1, "live lines suppressed by the rate limit"),
            "live line suppressed by the rate limit"
        );
    }
}
