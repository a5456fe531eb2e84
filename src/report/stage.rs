//! The report stage: a thread that receives raw episodes from the watchdog,
//! symbolizes their stacks, prints the live lines, appends `episodes.jsonl`
//! and, at the end, writes the flamegraph, folded stacks and summary.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::files::Writer;
use super::flush::Pending;
use super::stacks::Stacks;
use super::view;
use super::{syscalls, EndedBy, Episode, EpisodeMode, Frame, Report, Stack, ThreadState};
use crate::episode::{
    Descheduled, EndReason, Ended, Event, Mode, StackOf, Started, Tag, WatchdogStats,
};
use crate::registry::{fingerprint, Bound, Slot, REGION_MAX};
use crate::sampler::RawSample;
use crate::symbolize::{RawFrame, Symbolizer};
use crate::unwind::copied_word;

/// Episodes kept in memory for [`Report::episodes`]; later ones are still written.
const MAX_EPISODES: usize = 10_000;
/// Heap bytes the kept episodes may take, whichever limit comes first: a
/// typical episode (a few symbolized stacks) takes ~4 KiB, one with 64 deep
/// stacks over 1 MiB, so a count alone does not bound memory.
const MAX_EPISODE_BYTES: usize = 4 << 20;
/// Distinct stacks kept per episode.
const MAX_STACKS_PER_EPISODE: usize = 64;
/// Polls excused as waiting for a CPU that the report names (the longest).
const MAX_DESCHEDULED: usize = 20;

/// Settings of the report stage.
pub(crate) struct StageConfig {
    pub(crate) threshold: Duration,
    pub(crate) live: bool,
    pub(crate) unwind: crate::config::Unwind,
}

struct Agg {
    raw: Vec<RawFrame>,
    /// Why there is no stack, when `raw` is empty.
    why: Option<&'static str>,
    /// A sample of this stack had its copy cut before the stack's top.
    truncated: bool,
    tag: Tag,
    frames: Vec<Frame>,
    weight_us: u64,
    /// The stack shows its executor waiting between polls (`block_on`
    /// parked), not a poll: in sampled mode, an episode made only of such
    /// stacks was a wait misread as a poll, and is none.
    parked: bool,
}

struct Open {
    started: Box<Started>,
    stacks: Vec<Agg>,
    last: Option<usize>,
    samples: u32,
    excused: bool,
    announced: bool,
}

/// Token bucket for the live lines, so a storm of episodes cannot flood stderr.
struct RateLimit {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl RateLimit {
    const BURST: f64 = 20.0;
    const PER_SEC: f64 = 5.0;

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * Self::PER_SEC)
            .min(Self::BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Learning samples remembered as inside a poll (a conditional episode
/// refers to one of the last few).
const IN_POLL_KEPT: usize = 4096;

pub(crate) struct Stage {
    cfg: StageConfig,
    sym: Symbolizer,
    /// Learning samples that were inside a task poll, by number.
    in_poll: std::collections::HashSet<u64>,
    writer: Option<Writer>,
    open: HashMap<u64, Open>,
    report: Report,
    stacks: Stacks,
    episode_bytes: usize,
    limit: RateLimit,
    watchdog: WatchdogStats,
    last_flush: Instant,
    /// An episode ended since the loop last looked.
    dirty: bool,
    /// Episodes ended since the artifacts were last rewritten.
    pending: Pending,
    errors: Vec<crate::Error>,
    /// Episodes not reported: long only while waiting on the runtime's own locks.
    runtime_lock_waits: u64,
    symbolize_time: Duration,
    write_time: Duration,
}

impl Stage {
    pub(crate) fn new(cfg: StageConfig, writer: Option<Writer>) -> Self {
        let began = Instant::now();
        // Debug info is loaded at the first stack, not here: a run that never
        // blocks never pays its memory (tens of MiB for a large binary).
        let sym = Symbolizer::reuse(cfg.unwind);
        let symbolize_time = began.elapsed();
        let report = Report {
            threshold: cfg.threshold,
            unwind: cfg.unwind,
            dir: writer.as_ref().map(|w| w.dir().to_path_buf()),
            ..Report::default()
        };
        Stage {
            cfg,
            sym,
            in_poll: std::collections::HashSet::new(),
            writer,
            open: HashMap::new(),
            report,
            stacks: Stacks::default(),
            episode_bytes: 0,
            limit: RateLimit {
                tokens: RateLimit::BURST,
                last: Instant::now(),
                suppressed: 0,
            },
            watchdog: WatchdogStats::default(),
            last_flush: Instant::now(),
            dirty: false,
            pending: Pending::default(),
            errors: Vec::new(),
            runtime_lock_waits: 0,
            symbolize_time,
            write_time: Duration::ZERO,
        }
    }

    /// Runs until the watchdog hangs up, then writes the final artifacts.
    pub(crate) fn run(mut self, rx: Receiver<Event>) -> (Report, Vec<crate::Error>) {
        while let Some(ev) = self.wait(&rx) {
            self.handle(ev);
            if std::mem::take(&mut self.dirty) {
                self.pending.ended(Instant::now());
            }
        }
        self.finish()
    }

    /// The next event; while waiting, rewrites the artifacts when they fall
    /// due (soon after the last episode ended, see [`Pending::due`]) and gives
    /// back the debug info's pages when the queue stays empty until they fall
    /// due. `None` once the watchdog has hung up.
    fn wait(&mut self, rx: &Receiver<Event>) -> Option<Event> {
        loop {
            let flush_at = self.pending.due(self.last_flush);
            let release_in = self.sym.release_due_in();
            let now = Instant::now();
            let timeout = match (flush_at, release_in) {
                (None, None) => return rx.recv().ok(),
                (Some(at), None) => at.saturating_duration_since(now),
                (None, Some(d)) => d,
                (Some(at), Some(d)) => at.saturating_duration_since(now).min(d),
            };
            match rx.recv_timeout(timeout) {
                Ok(ev) => return Some(ev),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    if flush_at.is_some_and(|at| at <= Instant::now()) {
                        self.flush();
                    }
                    if self.sym.release_due_in() == Some(Duration::ZERO) {
                        self.sym.release_pages();
                    }
                }
            }
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Started(s) if s.requires_poll.is_some_and(|n| !self.in_poll.contains(&n)) => {
                // Seen only through a learning sample that was not inside a
                // task poll (a parked worker, a thread that is no executor):
                // its samples and end find no open episode and are dropped.
            }
            Event::Started(s) => {
                self.sym.refresh();
                self.open.insert(
                    s.id,
                    Open {
                        started: s,
                        stacks: Vec::new(),
                        last: None,
                        samples: 0,
                        excused: false,
                        announced: false,
                    },
                );
            }
            Event::Sample {
                id,
                stack,
                weight_us,
                tag,
            } => self.sample(id, stack, weight_us, tag),
            Event::Progress { id, elapsed } => {
                if let Some(o) = self.open.get(&id) {
                    // Only after the first line about this episode: an
                    // episode with no stack yet may still be withdrawn.
                    if o.announced && !o.excused {
                        let line = format!(
                            "pollwatch: {} still blocked after {} ms (episode {id})",
                            who(&o.started),
                            elapsed.as_millis()
                        );
                        self.live(&line);
                    }
                }
            }
            Event::Ended { id, end } => self.ended(id, end),
            Event::Descheduled(d) => self.descheduled(*d),
            Event::Warm => self.sym.warm(),
            Event::Learn {
                slot,
                generation,
                seq,
                raw,
                site,
            } => self.learn(slot, generation, seq, &raw, site),
            Event::Finished(stats) => self.watchdog = stats,
        }
    }

    fn sample(&mut self, id: u64, stack: StackOf, weight_us: u64, tag: Tag) {
        let Some(o) = self.open.get_mut(&id) else {
            return;
        };
        o.samples = o.samples.saturating_add(1);
        let began = Instant::now();
        let truncated = matches!(&stack, StackOf::Captured(r) if r.truncated);
        let (stack, why) = match stack {
            StackOf::Captured(raw) => (self.sym.unwind(&raw), None),
            StackOf::Same => match o.last {
                Some(i) => (o.stacks[i].raw.clone(), o.stacks[i].why),
                None => (Vec::new(), Some(no_stack_yet(tag))),
            },
            StackOf::Unknown(why) => (Vec::new(), Some(why)),
        };
        let why = if stack.is_empty() {
            why.or(Some(no_stack_yet(tag)))
        } else {
            None
        };
        let idx = match o
            .stacks
            .iter()
            .position(|a| a.raw == stack && a.tag == tag && a.why == why)
        {
            Some(i) => i,
            None if o.stacks.len() < MAX_STACKS_PER_EPISODE => {
                let frames = match why {
                    Some(why) => vec![Frame {
                        function: format!("[no stack: {why}]"),
                        file: None,
                        line: None,
                        address: 0,
                        inlined: false,
                    }],
                    None => self.sym.symbolize(&stack),
                };
                let parked = o.started.mode == Mode::Sampled
                    && why.is_none()
                    && view::parked_in_loop(&view::physical(&frames));
                o.stacks.push(Agg {
                    raw: stack,
                    why,
                    truncated: false,
                    tag,
                    frames,
                    weight_us: 0,
                    parked,
                });
                o.stacks.len() - 1
            }
            None => o.last.unwrap_or(0),
        };
        self.symbolize_time += began.elapsed();
        o.stacks[idx].weight_us += weight_us;
        o.stacks[idx].truncated |= truncated;
        o.last = Some(idx);
        // A wait on the runtime's own lock is announced only if the episode
        // turns out to be more than that (it usually ends as not reported).
        if o.announced
            || o.excused
            || o.stacks[idx].raw.is_empty()
            || o.stacks[idx].parked
            || view::runtime_lock_wait(&o.stacks[idx].frames)
        {
            return;
        }
        o.announced = true;
        if view::excuse(&o.stacks[idx].frames).is_some() {
            o.excused = true;
            o.started.excused.store(true, Ordering::Relaxed);
            return;
        }
        let trimmed = view::trim(&o.stacks[idx].frames);
        let at = view::top_user_frame(&trimmed)
            .or(trimmed.first())
            .map(|f| f.to_string())
            .unwrap_or_else(|| "an unknown frame".into());
        let line = format!(
            "pollwatch: {} blocked {} ms in one poll{}: in {at} [{}]",
            who(&o.started),
            o.started.stuck_for.as_millis(),
            task_suffix(&o.started),
            state_of(tag),
        );
        self.live(&line);
    }

    /// Learns where task polls begin on a sampled thread's stack, from a
    /// sample outside any poll the watchdog knows, and tells the watchdog
    /// through the thread's slot.
    fn learn(
        &mut self,
        slot: &'static Slot,
        generation: u64,
        seq: u64,
        raw: &RawSample,
        site: Option<(u64, u64)>,
    ) {
        let began = Instant::now();
        self.sym.refresh();
        let u = self.sym.unwind_with_sps(raw);
        let groups: Vec<_> = u.frames.iter().map(|&f| self.sym.resolve(f)).collect();
        let refs: Vec<&[Frame]> = groups.iter().map(|g| &g[..]).collect();
        let bound = view::poll_boundary(&refs).and_then(|k| bound_at(raw, &u, k));
        if let Some((sp, pc)) = site.filter(|_| view::parked_in_loop(&refs)) {
            if slot.generation.load(Ordering::Acquire) == generation {
                slot.idle.learn(sp, pc);
            }
        }
        if let Some(b) = bound {
            let top = crate::sys::proc::mapping_of(b.at).map(|m| m.hi());
            // The boundary as already known, on this thread or shared from
            // another: the same place read the same way gives the same
            // fingerprint, and one poll stays one poll.
            let b = slot
                .bounds
                .find(b.at, b.word)
                .or_else(|| {
                    let shared = crate::registry::relative(b, top?)?;
                    let known = crate::registry::SHARED.find(shared.at, shared.word)?;
                    crate::registry::absolute(known, top?)
                })
                .unwrap_or(b);
            if slot.generation.load(Ordering::Acquire) == generation && seq != 0 {
                // The hash the watchdog will read while this poll goes on.
                let copied = |at: u64, buf: &mut [u8]| {
                    for (i, c) in buf.chunks_exact_mut(8).enumerate() {
                        c.copy_from_slice(&copied_word(raw, at + 8 * i as u64)?.to_ne_bytes());
                    }
                    Some(buf.len())
                };
                if let Some(fp) = fingerprint([b].into_iter(), copied) {
                    slot.learned_fp.store(fp, Ordering::Relaxed);
                    slot.learned_seq.store(seq, Ordering::Release);
                }
                slot.bounds.learn(b);
                if let Some(rel) = top.and_then(|top| crate::registry::relative(b, top)) {
                    crate::registry::SHARED.learn(rel);
                }
            }
            if self.in_poll.len() >= IN_POLL_KEPT {
                self.in_poll.clear();
            }
            self.in_poll.insert(seq);
        }
        self.symbolize_time += began.elapsed();
    }

    fn descheduled(&mut self, d: Descheduled) {
        let list = &mut self.report.descheduled;
        let poll = super::DescheduledPoll {
            thread: d.thread,
            tid: d.tid,
            task: super::describe_task(d.task_id, d.spawned_at),
            wall: d.wall,
            own: d.own,
        };
        let at = list.partition_point(|p| p.wall >= poll.wall);
        if at < MAX_DESCHEDULED {
            list.insert(at, poll);
            list.truncate(MAX_DESCHEDULED);
            self.dirty = true;
        }
    }

    fn ended(&mut self, id: u64, end: Ended) {
        let Ended {
            duration,
            uncertainty,
            missed,
            on_cpu,
            runnable,
            reason,
        } = end;
        let Some(o) = self.open.remove(&id) else {
            return;
        };
        if o.excused {
            self.report.counters.excused += 1;
            return;
        }
        if !o.stacks.is_empty() && o.stacks.iter().all(|a| a.parked) {
            self.report.counters.parked_not_polls += 1;
            return;
        }
        // Time seen waiting on the runtime's own lock, against time seen
        // anywhere else (unanswered samples show nothing either way).
        let (mut lock_wait_us, mut elsewhere_us) = (0, 0);
        for a in o.stacks.iter().filter(|a| !a.raw.is_empty()) {
            match view::runtime_lock_wait(&a.frames) {
                true => lock_wait_us += a.weight_us,
                false => elsewhere_us += a.weight_us,
            }
        }
        // An episode already announced on stderr stays: its line named the
        // user's code.
        if !o.announced
            && lock_wait_us > 0
            && Duration::from_micros(elsewhere_us) < self.cfg.threshold
        {
            self.runtime_lock_waits += 1;
            return;
        }
        let mut stacks: Vec<Stack> = o
            .stacks
            .iter()
            .map(|a| Stack {
                frames: view::trim(&a.frames),
                weight: Duration::from_micros(a.weight_us),
                state: state_of(a.tag),
                raw: a.raw.iter().map(|r| r.address()).collect(),
                truncated: a.truncated,
            })
            .collect();
        // Heaviest call site first: a CPU loop's samples land on many
        // addresses of one function, and together they outweigh a single
        // address it visits often (a clock read, where a preempted thread
        // resumes), so stacks are ranked by their call site's total.
        let site = |s: &Stack| {
            view::top_user_frame(&s.frames)
                .or(s.frames.first())
                .map(|f| f.function.clone())
                .unwrap_or_default()
        };
        let mut by_site: HashMap<String, Duration> = HashMap::new();
        for st in &stacks {
            *by_site.entry(site(st)).or_default() += st.weight;
        }
        stacks.sort_by_key(|s| {
            (
                std::cmp::Reverse(by_site[&site(s)]),
                site(s),
                std::cmp::Reverse(s.weight),
            )
        });
        let s = &o.started;
        // The task's root future: the outermost frame of the user's code.
        let future = (s.mode == Mode::Sampled)
            .then(|| {
                stacks
                    .iter()
                    .find_map(|st| st.frames.iter().rev().find(|f| !view::is_library(f)))
                    .map(|f| f.function.clone())
            })
            .flatten();
        let episode = Episode {
            id,
            thread: s.thread.clone(),
            tid: s.tid,
            runtime: s.runtime.as_deref().map(str::to_owned),
            task_id: s.task_id,
            spawned_at: s.spawned_at.map(|l| l.to_string()),
            label: s.label.cloned(),
            start: s.start,
            detected_after: s.stuck_for,
            duration,
            uncertainty,
            samples: o.samples,
            missed,
            on_cpu: on_cpu.min(duration),
            off_cpu: duration.saturating_sub(on_cpu).saturating_sub(runnable),
            runnable: runnable.min(duration.saturating_sub(on_cpu)),
            stacks,
            unwind: self.cfg.unwind,
            ended_by: match reason {
                EndReason::PollReturned => EndedBy::PollReturned,
                EndReason::ThreadExited => EndedBy::ThreadExited,
                EndReason::Stopped => EndedBy::StillBlockedAtStop,
            },
            mode: match s.mode {
                Mode::Hooks => EpisodeMode::Hooks,
                Mode::Watched => EpisodeMode::Watched,
                Mode::Sampled => EpisodeMode::Sampled,
            },
            future,
        };
        if !o.announced {
            // No stack of the user's code came (the thread could not be
            // sampled): the episode is still real, and said so here.
            let line = format!(
                "pollwatch: {} blocked {} ms in one poll{}: {}",
                who(s),
                duration.as_millis(),
                task_suffix(s),
                episode
                    .frames()
                    .first()
                    .map(|f| f.to_string())
                    .unwrap_or_default()
            );
            self.live(&line);
        } else {
            let at = episode
                .top_user_frame()
                .or(episode.frames().first())
                .map(|f| f.to_string())
                .unwrap_or_default();
            let line = format!(
                "pollwatch: episode {id} on {} ended after {} ms: {at}",
                who(s),
                duration.as_millis()
            );
            self.live(&line);
        }
        self.stacks.add(&episode);
        if let Some(w) = self.writer.as_mut() {
            let began = Instant::now();
            if let Err(e) = w.append_episode(&episode, self.cfg.threshold) {
                self.errors.push(e);
            }
            self.write_time += began.elapsed();
        }
        self.report.total_episodes += 1;
        self.report.total_blocked += duration;
        self.report
            .site_totals
            .get_or_insert_with(Default::default)
            .add(&episode);
        let bytes = episode.heap_bytes();
        if self.report.episodes.len() < MAX_EPISODES
            && self.episode_bytes + bytes <= MAX_EPISODE_BYTES
        {
            self.episode_bytes += bytes;
            self.report.episodes.push(episode);
        } else {
            self.report.counters.dropped_episodes += 1;
        }
        self.dirty = true;
    }

    fn live(&mut self, line: &str) {
        if !self.cfg.live || !self.limit.allow() {
            return;
        }
        // Names come from the program (a thread name, a route): no control
        // character of theirs reaches the terminal.
        let line = super::clean(line);
        eprintln!("{line}");
        #[cfg(feature = "tracing")]
        tracing::warn!(target: "pollwatch", "{line}");
    }

    fn counters(&mut self) {
        let c = &mut self.report.counters;
        c.descheduled = self.watchdog.descheduled;
        c.runtime_lock_waits = self.runtime_lock_waits;
        c.missed_samples = self.watchdog.missed;
        c.dropped_samples = self.watchdog.dropped;
        c.suppressed_lines = self.limit.suppressed;
        c.unwatched_threads = crate::registry::TABLE.overflow() as u64;
        c.polls_seen = self.watchdog.polls_seen;
        c.unseen_polls = self.watchdog.unseen;
        c.busy_outside_watched = self.watchdog.busy_outside;
        let lat = &self.watchdog.capture_latency;
        self.report.overhead = super::Overhead {
            samples_captured: lat.count(),
            capture_p50: lat.quantile(0.5),
            capture_p99: lat.quantile(0.99),
            capture_max: lat.max(),
            stacks_read: self.watchdog.read_latency.count(),
            read_p50: self.watchdog.read_latency.quantile(0.5),
            read_p99: self.watchdog.read_latency.quantile(0.99),
            symbolize_time: self.symbolize_time,
            write_time: self.write_time,
            signals_sent: self.watchdog.signals_sent,
            watchdog_cpu: self.watchdog.cpu,
        };
    }

    fn flush(&mut self) {
        self.counters();
        self.last_flush = Instant::now();
        self.pending.flushed();
        if let Some(w) = self.writer.as_ref() {
            let began = Instant::now();
            if let Err(e) = w.write_final(&self.report, &self.stacks) {
                self.errors.push(e);
            }
            self.write_time += began.elapsed();
        }
        // The last rewrite's own time is not in the report it wrote; it is in
        // the returned one.
        self.report.overhead.write_time = self.write_time;
    }

    fn finish(mut self) -> (Report, Vec<crate::Error>) {
        // Episodes still open when the watchdog hung up (it ends them itself,
        // so this only happens if it died).
        let open: Vec<u64> = self.open.keys().copied().collect();
        for id in open {
            let end = Ended {
                duration: Duration::ZERO,
                uncertainty: Duration::ZERO,
                missed: 0,
                on_cpu: Duration::ZERO,
                runnable: Duration::ZERO,
                reason: EndReason::Stopped,
            };
            self.ended(id, end);
        }
        // The watchdog's counters are in by now (it hangs up after them).
        self.report.watched_nothing =
            self.report.total_episodes == 0 && self.watchdog.polls_seen == 0;
        self.flush();
        if let Some(w) = self.writer.as_ref() {
            if let Err(e) = w.write_run(&self.report) {
                self.errors.push(e);
            }
        }
        if self.cfg.live || self.report.total_episodes > 0 {
            let r = &self.report;
            let mut line = format!(
                "pollwatch: {} blocking episode{}, {} ms blocked",
                r.total_episodes,
                if r.total_episodes == 1 { "" } else { "s" },
                r.total_blocked.as_millis()
            );
            if let Some(p) = r.flamegraph_path() {
                line.push_str(&format!(", flamegraph at {}", p.display()));
            }
            eprintln!("{line}");
        }
        if let Some(note) = self.report.coverage_note() {
            eprintln!("pollwatch: {note}");
        }
        let Stage {
            report,
            errors,
            sym,
            ..
        } = self;
        sym.keep();
        (report, errors)
    }
}

/// The boundary of a poll whose outermost frame of the future's code is
/// physical frame `k` of `u`: the word holding the return address into
/// the executor (`k + 1`), and the executor's frames from `k`'s canonical
/// frame address up, as far as the unwind reached.
fn bound_at(raw: &RawSample, u: &crate::unwind::Unwound, k: usize) -> Option<Bound> {
    let lo = *u.sps.get(k)?;
    let cfa = *u.sps.get(k + 1)?;
    let ra = u.frames.get(k + 1)?.address();
    // Where the return address is kept: pushed right below the CFA by the
    // call (x86_64), or saved with the frame record (aarch64's `lr`).
    let at = (lo..cfa)
        .rev()
        .step_by(8)
        .map(|a| a & !7)
        .find(|&a| copied_word(raw, a) == Some(ra))?;
    let top = u.sps.last().copied().unwrap_or(cfa).max(cfa);
    let len = u32::try_from(top - cfa).unwrap_or(u32::MAX).min(REGION_MAX);
    (len >= 16).then_some(Bound {
        at,
        word: ra,
        from: cfa,
        len,
    })
}

fn who(s: &Started) -> String {
    match &s.runtime {
        Some(rt) => format!("{} [{rt}] (tid {})", s.thread, s.tid),
        None => format!("{} (tid {})", s.thread, s.tid),
    }
}

fn task_suffix(s: &Started) -> String {
    match super::describe_poll(s.label.map(String::as_str), s.task_id, s.spawned_at) {
        Some(task) => format!(" of {task}"),
        None => String::new(),
    }
}

/// Why a sample has no stack when none was ever taken in its episode.
fn no_stack_yet(tag: Tag) -> &'static str {
    match tag {
        Tag::OnCpu => "the thread did not answer the sampling signal",
        Tag::Kernel => "the thread stayed in the kernel",
        Tag::OffCpu { .. } => "the thread was blocked in the kernel",
    }
}

pub(crate) fn state_of(tag: Tag) -> ThreadState {
    match tag {
        Tag::OnCpu => ThreadState::OnCpu,
        Tag::Kernel => ThreadState::Syscall(None),
        Tag::OffCpu { syscall } => {
            ThreadState::OffCpu(syscall.map(|nr| match syscalls::name(nr) {
                Some(n) => n.to_owned(),
                None => format!("syscall {nr}"),
            }))
        }
    }
}
