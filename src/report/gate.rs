//! The test gate: a [`Budget`] of blocking a run may have, checked against a
//! [`Report`], failing with the offending call sites.

use std::fmt::{self, Write as _};
use std::time::Duration;

use super::summary::{call_sites, ms, write_longest, write_sites};
use super::{Episode, Report};

/// How much blocking a run may have before [`Report::check`] fails it.
///
/// Each limit is checked only when set. A budget with no limit set at all,
/// `Budget::new()` alone, is the strictest one: it allows no episode.
///
/// ```no_run
/// use std::time::Duration;
/// use pollwatch::Budget;
///
/// let guard = pollwatch::init()?;
/// // ... drive the load test ...
/// let report = guard.finish()?;
/// let budget = Budget::new()
///     .max_episode(Duration::from_millis(50))     // no poll may hold a worker longer
///     .max_total_blocked(Duration::from_secs(1)); // nor all of them together
/// if let Err(exceeded) = report.check(&budget) {
///     panic!("{exceeded}"); // which limit, by how much, and the call sites
/// }
/// # Ok::<(), pollwatch::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    max_episodes: Option<u64>,
    max_episode: Option<Duration>,
    max_total_blocked: Option<Duration>,
}

impl Budget {
    /// A budget with no limit set yet, which allows no episode at all until a
    /// limit is set.
    pub fn new() -> Budget {
        Budget::default()
    }

    /// At most `n` blocking episodes.
    pub fn max_episodes(mut self, n: u64) -> Budget {
        self.max_episodes = Some(n);
        self
    }

    /// No single episode longer than `d`.
    pub fn max_episode(mut self, d: Duration) -> Budget {
        self.max_episode = Some(d);
        self
    }

    /// At most `d` blocked in all episodes together.
    pub fn max_total_blocked(mut self, d: Duration) -> Budget {
        self.max_total_blocked = Some(d);
        self
    }

    /// The limits actually applied: with none set, no episode at all.
    fn effective(&self) -> Budget {
        match (self.max_episodes, self.max_episode, self.max_total_blocked) {
            (None, None, None) => Budget::new().max_episodes(0),
            _ => self.clone(),
        }
    }
}

/// One limit of a [`Budget`] that a run went over.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exceeded {
    /// More episodes than [`Budget::max_episodes`] allows.
    Episodes {
        /// Episodes the run had.
        found: u64,
        /// Episodes allowed.
        allowed: u64,
    },
    /// Episodes longer than [`Budget::max_episode`] allows.
    Episode {
        /// The longest episode's duration.
        longest: Duration,
        /// How many episodes were longer than allowed.
        count: u64,
        /// The longest allowed.
        allowed: Duration,
    },
    /// More blocked time in total than [`Budget::max_total_blocked`] allows.
    TotalBlocked {
        /// Blocked time the run had.
        found: Duration,
        /// Blocked time allowed.
        allowed: Duration,
    },
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Episodes { found, allowed } => write!(
                f,
                "{found} blocking episode{} > {allowed} allowed (max episodes)",
                plural(*found)
            ),
            Exceeded::Episode {
                longest,
                count,
                allowed,
            } => write!(
                f,
                "{count} episode{} longer than {} ms allowed (max episode), the longest {} ms",
                plural(*count),
                ms(*allowed),
                ms_1(*longest)
            ),
            Exceeded::TotalBlocked { found, allowed } => write!(
                f,
                "{} ms blocked in total > {} ms allowed (max total blocked)",
                ms_1(*found),
                ms(*allowed)
            ),
        }
    }
}

/// A run that went over its [`Budget`], from [`Report::check`].
///
/// `Display` reads like the summary: which limits were exceeded and by how
/// much, then the offending call sites with file:line and blocked time.
#[derive(Clone, Debug)]
pub struct BudgetExceeded {
    exceeded: Vec<Exceeded>,
    text: String,
}

impl BudgetExceeded {
    /// The limits that were exceeded (at least one).
    pub fn exceeded(&self) -> &[Exceeded] {
        &self.exceeded
    }
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for BudgetExceeded {}

impl Report {
    /// Checks the run against `budget`: `Err` names each limit exceeded and
    /// the call sites that exceeded it.
    ///
    /// Episodes beyond the in-memory limit (see
    /// [`Counters::dropped_episodes`](crate::Counters::dropped_episodes))
    /// still count towards the episode and total limits.
    pub fn check(&self, budget: &Budget) -> Result<(), BudgetExceeded> {
        let budget = budget.effective();
        let mut exceeded = Vec::new();
        let mut offending: Vec<&Episode> = Vec::new();
        let all = || self.episodes.iter();
        if let Some(allowed) = budget.max_episodes {
            if self.total_episodes > allowed {
                exceeded.push(Exceeded::Episodes {
                    found: self.total_episodes,
                    allowed,
                });
                offending.extend(all());
            }
        }
        if let Some(allowed) = budget.max_episode {
            let long: Vec<&Episode> = all().filter(|e| e.duration > allowed).collect();
            if let Some(longest) = long.iter().map(|e| e.duration).max() {
                exceeded.push(Exceeded::Episode {
                    longest,
                    count: long.len() as u64,
                    allowed,
                });
                offending.extend(long);
            }
        }
        if let Some(allowed) = budget.max_total_blocked {
            if self.total_blocked > allowed {
                exceeded.push(Exceeded::TotalBlocked {
                    found: self.total_blocked,
                    allowed,
                });
                offending.extend(all());
            }
        }
        if exceeded.is_empty() {
            return Ok(());
        }
        // An episode offends once, whichever limits it broke.
        offending.sort_by_key(|e| (e.id, e.tid, e.start));
        offending.dedup_by_key(|e| (e.id, e.tid, e.start));
        let text = exceeded_text(self, &exceeded, &offending);
        Err(BudgetExceeded { exceeded, text })
    }

    /// Panics, with the call sites (file:line) and their blocked time in the
    /// message, if the run had any blocking episode: the gate for a test.
    ///
    /// ```no_run
    /// let guard = pollwatch::init()?;
    /// // ... run the code under test ...
    /// guard.finish()?.assert_no_blocking();
    /// # Ok::<(), pollwatch::Error>(())
    /// ```
    #[track_caller]
    pub fn assert_no_blocking(&self) {
        if let Err(e) = self.check(&Budget::new()) {
            panic!("{e}");
        }
    }
}

fn exceeded_text(r: &Report, exceeded: &[Exceeded], offending: &[&Episode]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pollwatch: blocking budget exceeded: {} episode{} (polls longer than {} ms), {} ms blocked in total",
        r.total_episodes,
        plural(r.total_episodes),
        ms(r.threshold),
        ms_1(r.total_blocked)
    );
    for e in exceeded {
        let _ = writeln!(s, "  {e}");
    }
    let sites = call_sites(offending.iter().copied());
    if !sites.is_empty() {
        let _ = writeln!(s, "\noffending call sites:");
        write_sites(&mut s, &sites, 10);
        if sites.len() > 10 {
            let _ = writeln!(s, "  ... and {} more", sites.len() - 10);
        }
    }
    write_longest(&mut s, offending.iter().copied(), 3);
    let unkept = r.total_episodes.saturating_sub(r.episodes.len() as u64);
    if unkept > 0 {
        let _ = writeln!(
            s,
            "  ({unkept} more episodes only in episodes.jsonl: the in-memory limit)"
        );
    }
    if let Some(d) = &r.dir {
        let _ = writeln!(s, "\nartifacts in {}", d.display());
    }
    s
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn ms_1(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::{Frame, Stack, ThreadState};
    use std::time::SystemTime;

    /// An episode of `ms` blocked at `function` (`src/app.rs:line`).
    pub(crate) fn episode(id: u64, function: &str, line: u32, ms: u64) -> Episode {
        Episode {
            id,
            thread: "worker".into(),
            tid: 7,
            runtime: None,
            task_id: None,
            spawned_at: None,
            label: None,
            start: SystemTime::UNIX_EPOCH,
            detected_after: Duration::from_millis(20),
            duration: Duration::from_millis(ms),
            uncertainty: Duration::ZERO,
            samples: 1,
            missed: 0,
            on_cpu: Duration::ZERO,
            off_cpu: Duration::from_millis(ms),
            runnable: Duration::ZERO,
            stacks: vec![Stack {
                frames: vec![Frame {
                    function: function.into(),
                    file: Some("src/app.rs".into()),
                    line: Some(line),
                    address: 0,
                    inlined: false,
                }],
                weight: Duration::from_millis(ms),
                state: ThreadState::OffCpu(Some("futex".into())),
                raw: vec![],
                truncated: false,
            }],
            unwind: crate::config::Unwind::Auto,
            ended_by: crate::report::EndedBy::PollReturned,
            mode: crate::report::EpisodeMode::Watched,
            future: None,
        }
    }

    fn report(episodes: Vec<Episode>) -> Report {
        Report {
            total_episodes: episodes.len() as u64,
            total_blocked: episodes.iter().map(|e| e.duration).sum(),
            threshold: Duration::from_millis(20),
            episodes,
            ..Report::default()
        }
    }

    #[test]
    fn an_empty_budget_allows_nothing_and_an_empty_run_passes_it() {
        assert!(report(vec![]).check(&Budget::new()).is_ok());
        report(vec![]).assert_no_blocking();
        let r = report(vec![episode(1, "app::load", 12, 30)]);
        let e = r.check(&Budget::new()).unwrap_err();
        assert_eq!(
            e.exceeded(),
            [Exceeded::Episodes {
                found: 1,
                allowed: 0
            }]
        );
        let text = e.to_string();
        assert!(text.contains("app::load (src/app.rs:12)"), "{text}");
        assert!(text.contains("30.0 ms"), "{text}");
    }

    #[test]
    fn each_limit_is_checked_alone() {
        let r = report(vec![
            episode(1, "app::short", 1, 30),
            episode(2, "app::long", 2, 80),
        ]);
        let ms = Duration::from_millis;
        assert!(r.check(&Budget::new().max_episodes(2)).is_ok());
        assert!(r.check(&Budget::new().max_episode(ms(80))).is_ok());
        assert!(r.check(&Budget::new().max_total_blocked(ms(110))).is_ok());

        let e = r.check(&Budget::new().max_episode(ms(50))).unwrap_err();
        assert_eq!(
            e.exceeded(),
            [Exceeded::Episode {
                longest: ms(80),
                count: 1,
                allowed: ms(50)
            }]
        );
        // Only the episode over the limit is named.
        let text = e.to_string();
        assert!(text.contains("app::long (src/app.rs:2)"), "{text}");
        assert!(!text.contains("app::short"), "{text}");

        let e = r
            .check(&Budget::new().max_episodes(1).max_total_blocked(ms(100)))
            .unwrap_err();
        assert_eq!(e.exceeded().len(), 2);
        let text = e.to_string();
        assert!(text.contains("2 blocking episodes > 1 allowed"), "{text}");
        assert!(
            text.contains("110.0 ms blocked in total > 100 ms"),
            "{text}"
        );
        // Each offending episode counted once even though two limits broke.
        assert!(text.contains("80.0 ms    1×  app::long"), "{text}");
    }

    #[test]
    #[should_panic(expected = "app::load (src/app.rs:12)")]
    fn assert_no_blocking_panics_with_the_call_site() {
        report(vec![episode(1, "app::load", 12, 30)]).assert_no_blocking();
    }
}
