//! The detector: per-series state in event-time minutes, the spike and sustained-shift
//! tests, the alert lifecycle, grouping into incidents and the firing gauge.
//!
//! One evaluation per closed event minute `m`:
//! 1. the last `W` minutes (`W` = the longest spike window) are read again from the
//!    [`CountSource`], so data counted late still lands in the short windows;
//! 2. minute `m - W` (just out of the short windows) joins each series' baseline, an
//!    exponentially weighted failure rate, unless the series is alerting (the baseline is
//!    frozen while an alert is pending or firing, so an incident never teaches itself);
//!    the minutes of a shift still building are held back until it is judged;
//! 3. the spike test (windows of 1..=W minutes, one-sided binomial test against the
//!    baseline, a minimum count and a minimum ratio) and the sustained test (a Bernoulli
//!    CUSUM on minute `m` whose per-minute step is capped, so that only an elevation that
//!    lasts at least `sustained_min_minutes` can cross the threshold) update the state.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use prometheus_client::registry::Registry;

use super::config::{AlertsConfig, SUSTAINED_RESOLVE_WINDOW};
use super::deliver::Notification;
use super::metrics::{FiringLabels, Metrics};
use super::payload::{self, truncate};
use super::stats::{bernoulli_llr, binomial_upper_tail};

pub(crate) const NANOS_PER_MINUTE: u64 = 60_000_000_000;
/// Minutes of counts kept per series: at least the longest spike window and the
/// sustained resolve window, plus the minute joining the baseline.
const RING: usize = 16;
/// Resolved incidents re-sent after a dropped delivery batch.
const RECENT_INCIDENTS: usize = 32;

/// What the counts are a rate of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Runs of the step with at least one original finding.
    Failure,
    /// Failed trajectories blamed on a run of the step.
    RootCause,
}

impl Signal {
    pub const ALL: [Signal; 2] = [Signal::Failure, Signal::RootCause];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Failure => "failure",
            Signal::RootCause => "root_cause",
        }
    }

    /// The Alertmanager `alertname`.
    pub fn alertname(self) -> &'static str {
        match self {
            Signal::Failure => "FaultlineStepFailureRate",
            Signal::RootCause => "FaultlineStepRootCauseRate",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A short burst or a change that persists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    Spike,
    Sustained,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Spike => "spike",
            AlertKind::Sustained => "sustained",
        }
    }

    /// Spikes page; a sustained shift is a ticket.
    pub fn severity(self) -> &'static str {
        match self {
            AlertKind::Spike => "critical",
            AlertKind::Sustained => "warning",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn from_name(name: &str) -> Option<AlertState> {
        match name {
            "pending" => Some(AlertState::Pending),
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// A cohort: one dimension and its value. `None` is the whole step.
pub type CohortKey = Option<(Arc<str>, Arc<str>)>;

/// Counts of one series in one event minute, as a [`CountSource`] reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesCounts {
    pub step: Arc<str>,
    pub cohort: CohortKey,
    pub runs: u64,
    pub failures: u64,
    pub root_causes: u64,
}

/// Where per-minute counts come from (the aggregator's buckets in the server).
pub trait CountSource: Send + Sync {
    /// The newest event minute (unix minutes) holding data, or `None` before any.
    fn newest_minute(&self) -> Option<u64>;
    /// Appends the counts of every series in event minute `minute` to `out`.
    fn minute_counts(&self, minute: u64, out: &mut Vec<SeriesCounts>);
    /// A summary of event minute `minute`'s counts that changes whenever they do: the
    /// runs, failures and root causes of every whole-step series.
    fn minute_fingerprint(&self, minute: u64) -> (u64, u64, u64) {
        let mut rows = Vec::new();
        self.minute_counts(minute, &mut rows);
        rows.iter()
            .filter(|r| r.cohort.is_none())
            .fold((0, 0, 0), |acc, r| {
                (acc.0 + r.runs, acc.1 + r.failures, acc.2 + r.root_causes)
            })
    }
}

/// Steps that contain others: their runs fail when a step inside them fails and the
/// failure propagates (an agent span ending in error because its tool did). Their
/// failure rate is a symptom of their children's: only their root-cause rate (failures
/// blamed on the container itself) is watched.
const CONTAINER_STEPS: [&str; 2] = ["agent", "chain"];

fn symptom_series(step: &str, signal: Signal) -> bool {
    signal == Signal::Failure && CONTAINER_STEPS.contains(&step)
}

/// The threshold of one CUSUM among the `family` watching the same step: the configured
/// threshold plus ln(`family`). Under no change a CUSUM's mean run length to a false
/// alarm grows like e^threshold, so a step watched by `family` CUSUMs (the step and each
/// of its cohorts, per signal) is as unlikely to raise a false shift as one watched by a
/// single CUSUM at the configured threshold. Without it, every cohort a step gains adds
/// its own chance of a random excursion being labelled a shift.
pub(super) fn cusum_threshold(configured: f64, family: Option<usize>) -> f64 {
    configured + (family.unwrap_or(1).max(1) as f64).ln()
}

/// Ticks a minute may keep changing before it is evaluated anyway (a steady trickle of
/// stragglers must not hold evaluation back for ever).
const MAX_UNSETTLED_TICKS: u32 = 12;
/// Closed minutes behind the newest whose counts may still be changing while the
/// source runs ahead of real time; older ones are taken as complete.
const MAX_LOOKAHEAD_MINUTES: u64 = 180;

/// One alert as the API shows it. Times are event times (unix nanoseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: u64,
    pub signal: Signal,
    pub step: Arc<str>,
    pub kind: AlertKind,
    pub cohort: CohortKey,
    pub state: AlertState,
    pub started_unix_nano: u64,
    pub resolved_unix_nano: Option<u64>,
    /// End of the last minute evaluated for this alert.
    pub updated_unix_nano: u64,
    /// The rate that decided, and the baseline it was compared with: for a spike, the
    /// highest rate of its window while pending or firing; for a shift, the rate of its
    /// CUSUM excursion while pending, then of the last ten minutes.
    pub rate: f64,
    pub baseline: f64,
    pub runs: u64,
    pub failures: u64,
    /// The incident (notification group) it belongs to, once firing.
    pub incident: Option<u64>,
    /// The step's most frequent failure reason (the reason index's pattern template)
    /// in the minutes before the alert opened, refreshed when it fires (control characters
    /// stripped, cut at 200 characters); `None` when the
    /// step has no reason recorded or no reason index is attached.
    pub reason: Option<String>,
}

/// Counters about the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertStats {
    pub evaluations: u64,
    pub series: usize,
    /// Series not tracked because `max_series` was reached.
    pub series_refused: u64,
    pub alerts_created: u64,
    /// Alerts not created because `max_alerts` was reached.
    pub alerts_suppressed: u64,
    /// Firing alerts outside any incident because `max_incidents` was reached.
    pub incidents_refused: u64,
    pub incidents_created: u64,
    /// Delivery batches dropped because the delivery queue was full.
    pub batches_dropped: u64,
    /// Minutes skipped because a tick had more than `max_catch_up_minutes` to evaluate.
    pub minutes_skipped: u64,
    /// The last event minute evaluated.
    pub last_minute: Option<u64>,
}

/// Finds the top failure reason of a step over the last minutes (the reason index in
/// the server); `None` when there is none.
pub type ReasonLookup = Arc<dyn Fn(&str, u64) -> Option<String> + Send + Sync>;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The event minute these counts belong to; a slot of another minute reads as zero.
    minute: u64,
    runs: u64,
    counts: [u64; 2],
}

#[derive(Debug, Default)]
struct SignalState {
    /// Exponentially weighted runs and failures: the baseline.
    base_runs: f64,
    base_fails: f64,
    /// Runs and failures of the minutes of the CUSUM's current excursion once it holds
    /// a quarter of the threshold, held out of the baseline (decayed like it) until the
    /// excursion ends: they join it if the excursion dies out as noise, and never if it
    /// turns out to be a shift.
    held_runs: f64,
    held_fails: f64,
    cusum: f64,
    exc_start: u64,
    exc_runs: u64,
    exc_fails: u64,
    spike: Option<u64>,
    spike_hot: u32,
    spike_calm: u32,
    sustained: Option<u64>,
}

impl SignalState {
    fn baseline(&self) -> f64 {
        (self.base_fails + 0.5) / (self.base_runs + 1.0)
    }

    /// Ends the excursion; its held-back minutes are dropped (the caller releases them
    /// into the baseline first when the excursion was noise).
    fn reset_cusum(&mut self) {
        self.cusum = 0.0;
        self.exc_runs = 0;
        self.exc_fails = 0;
        self.held_runs = 0.0;
        self.held_fails = 0.0;
    }

    /// The excursion died out: its minutes were ordinary and join the baseline.
    fn release_held(&mut self) {
        self.base_runs += self.held_runs;
        self.base_fails += self.held_fails;
        self.held_runs = 0.0;
        self.held_fails = 0.0;
    }
}

/// One signal of one series judged at a closed minute: series `i`, event minute `m`
/// (ending at `end_nanos`), against baseline rate `p0`.
struct Judged {
    i: usize,
    signal: Signal,
    m: u64,
    p0: f64,
    end_nanos: u64,
    /// The threshold of this signal's CUSUM ([`cusum_threshold`]).
    h: f64,
}

/// The spike test at one minute, as the spike lifecycle reads it.
struct SpikeEvidence {
    /// The most significant window: (p-value, runs, failures, minutes).
    best: Option<(f64, u64, u64, usize)>,
    /// Runs and failures of the longest window.
    n_w: u64,
    k_w: u64,
    /// The series holds at least `cohort_max_share` of its step's runs: a cohort that
    /// is the whole step, which alerts on its own.
    whole_step: bool,
    /// Significant enough for a pending spike.
    hot: bool,
    /// Significant enough to fire at once.
    strong: bool,
    /// The longest window is back near the baseline (`resolve_ratio`).
    calm: bool,
}

/// The CUSUM's current excursion, after a minute was added.
struct Excursion {
    cusum: f64,
    /// Its first minute, runs and failures.
    start: u64,
    runs: u64,
    fails: u64,
    /// `fails / runs`.
    rate: f64,
    /// At least `min_failures`, at a rate at least halfway to `shift_ratio` × baseline.
    elevated: bool,
}

#[derive(Debug)]
struct Series {
    step: Arc<str>,
    cohort: CohortKey,
    ring: [Slot; RING],
    first_minute: u64,
    last_data_minute: u64,
    signals: [SignalState; 2],
}

impl Series {
    fn slot(&self, minute: u64) -> Slot {
        let s = self.ring[(minute % RING as u64) as usize];
        if s.minute == minute {
            s
        } else {
            Slot::default()
        }
    }

    fn slot_mut(&mut self, minute: u64) -> &mut Slot {
        let s = &mut self.ring[(minute % RING as u64) as usize];
        if s.minute != minute {
            *s = Slot {
                minute,
                ..Slot::default()
            };
        }
        s
    }

    /// Runs and failures of `signal` in the `w` minutes ending with `m`.
    fn window(&self, m: u64, w: usize, signal: usize) -> (u64, u64) {
        (0..w as u64)
            .filter_map(|i| m.checked_sub(i))
            .map(|mm| self.slot(mm))
            .fold((0, 0), |(n, k), s| (n + s.runs, k + s.counts[signal]))
    }

    fn active(&self) -> bool {
        self.signals
            .iter()
            .any(|s| s.spike.is_some() || s.sustained.is_some())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct IncidentKey {
    pub(super) step: Arc<str>,
    pub(super) kind: AlertKind,
}

#[derive(Debug)]
pub(super) struct Incident {
    pub(super) id: u64,
    pub(super) key: IncidentKey,
    /// The signal of the alert that opened it (its `alertname`); alerts of the other
    /// signal on the same step and kind join it.
    pub(super) signal: Signal,
    /// The cohort of the alert that opened it: its labels never change.
    pub(super) lead: CohortKey,
    pub(super) started_unix_nano: u64,
    pub(super) members: Vec<u64>,
    /// Firing alerts of this incident not created because `max_alerts` was reached.
    pub(super) suppressed: u64,
    pub(super) peak_rate: f64,
    pub(super) baseline: f64,
}

struct State {
    series: Vec<Series>,
    index: HashMap<(Arc<str>, CohortKey), usize>,
    alerts: HashMap<u64, Alert>,
    recent: VecDeque<Alert>,
    incidents: HashMap<IncidentKey, Incident>,
    recent_incidents: VecDeque<Notification>,
    dirty: HashSet<IncidentKey>,
    resolved_now: Vec<Notification>,
    next_id: u64,
    stats: AlertStats,
    resync: bool,
    rows: Vec<SeriesCounts>,
    gauge_groups: HashSet<FiringLabels>,
    /// The source's newest minute at the previous tick.
    last_newest: Option<u64>,
    /// Closed minutes not yet evaluated while the source runs ahead of real time: the
    /// fingerprint seen at the previous tick and the ticks it has kept changing.
    unsettled: BTreeMap<u64, ((u64, u64, u64), u32)>,
}

/// The alert engine. Evaluation is synchronous and deterministic given the counts; the
/// server calls [`AlertEngine::tick`] on a blocking thread.
pub struct AlertEngine {
    config: AlertsConfig,
    external_url: String,
    metrics: Metrics,
    notify: Option<tokio::sync::mpsc::Sender<Vec<Notification>>>,
    reasons: Option<ReasonLookup>,
    state: std::sync::Mutex<State>,
}

/// Which alerts [`AlertEngine::alerts`] returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    pub state: Option<AlertState>,
    pub step: Option<String>,
    pub kind: Option<AlertKind>,
    pub limit: usize,
}

impl AlertEngine {
    /// Creates the engine and registers its metrics. `notify` receives one batch of
    /// changed incidents per evaluation that changed any (see [`super::deliver`]);
    /// `external_url` is the base of links to the web page.
    pub fn new(
        config: AlertsConfig,
        registry: &mut Registry,
        notify: Option<tokio::sync::mpsc::Sender<Vec<Notification>>>,
        external_url: &str,
    ) -> AlertEngine {
        let external_url = config
            .external_url
            .clone()
            .unwrap_or_else(|| external_url.trim_end_matches('/').to_owned());
        AlertEngine {
            metrics: Metrics::register(registry),
            external_url,
            notify,
            reasons: None,
            state: std::sync::Mutex::new(State {
                series: Vec::new(),
                index: HashMap::new(),
                alerts: HashMap::new(),
                recent: VecDeque::new(),
                incidents: HashMap::new(),
                recent_incidents: VecDeque::new(),
                dirty: HashSet::new(),
                resolved_now: Vec::new(),
                next_id: 1,
                stats: AlertStats::default(),
                resync: false,
                rows: Vec::new(),
                gauge_groups: HashSet::new(),
                last_newest: None,
                unsettled: BTreeMap::new(),
            }),
            config,
        }
    }

    /// Adds the top failure reason of the step to notifications.
    pub fn with_reasons(mut self, lookup: ReasonLookup) -> AlertEngine {
        self.reasons = Some(lookup);
        self
    }

    pub fn config(&self) -> &AlertsConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Evaluates every event minute closed since the last call, then tests the open
    /// newest minute for overwhelming spikes. Returns the closed minutes evaluated.
    ///
    /// A minute is closed once the source has data `settle_minutes` newer. When event
    /// time advances by one minute since the previous tick, that is all (live traffic).
    /// When it jumps further (a replay, a backfill, a collector draining its queue,
    /// hours of event time in seconds) or stands still, the minutes just behind the
    /// newest are still being counted (trajectories are counted when finalized, not
    /// in event order across shards): a closed minute is then evaluated only once its
    /// counts held still between two ticks, so that every minute is judged complete
    /// whatever the arrival speed, and a replay alerts as the live traffic did.
    pub fn tick(&self, source: &dyn CountSource) -> u64 {
        let Some(newest) = source.newest_minute() else {
            return 0;
        };
        let mut state = self.lock();
        let live = state.last_newest.is_some_and(|p| newest == p + 1);
        state.last_newest = Some(state.last_newest.map_or(newest, |p| p.max(newest)));
        let Some(closed) = newest.checked_sub(self.config.settle_minutes) else {
            return 0;
        };
        let cap = self.config.max_catch_up_minutes.max(1);
        let earliest = closed.saturating_sub(cap - 1);
        let start = match state.stats.last_minute {
            Some(last) if last >= closed => {
                if newest > closed {
                    self.provisional(&mut state, newest, source);
                }
                return 0;
            }
            Some(last) => {
                if last + 1 < earliest {
                    state.stats.minutes_skipped += earliest - last - 1;
                }
                (last + 1).max(earliest)
            }
            None => earliest,
        };
        // Off live speed: every closed minute (up to a bound) is looked at, so that
        // each one's first sighting is on record for the next tick; the settled ones
        // are evaluated in order, up to the first that is still changing.
        let mut until = closed;
        if !live {
            let mut first_unsettled = None;
            // Minutes far behind the newest are complete; the ones that may still be
            // counting are the most recent.
            let recent = closed.saturating_sub(MAX_LOOKAHEAD_MINUTES).max(start);
            for m in recent..=closed {
                if !self.settled(&mut state, m, source) && first_unsettled.is_none() {
                    first_unsettled = Some(m);
                }
            }
            if let Some(m) = first_unsettled {
                if m == start {
                    return 0;
                }
                until = m - 1;
            }
        }
        let mut evaluated = 0;
        for m in start..=until {
            state.unsettled.remove(&m);
            self.evaluate_locked(&mut state, m, source);
            evaluated += 1;
        }
        // Forget minutes already evaluated (a late evaluation skipped them).
        if let Some(last) = state.stats.last_minute {
            state.unsettled = state.unsettled.split_off(&(last + 1));
        }
        // The open minute is tested only once every closed one is evaluated: tested
        // ahead of them, it would be judged against a baseline that has not seen the
        // minutes in between, and its counts would take ring slots they still need.
        if newest > closed && state.stats.last_minute.is_some_and(|last| last >= closed) {
            self.provisional(&mut state, newest, source);
        }
        evaluated
    }

    /// Whether closed minute `m` held still since the previous tick (or has kept
    /// changing for [`MAX_UNSETTLED_TICKS`]); remembers what it saw.
    fn settled(&self, state: &mut State, m: u64, source: &dyn CountSource) -> bool {
        let now = source.minute_fingerprint(m);
        match state.unsettled.get_mut(&m) {
            Some((seen, _)) if *seen == now => true,
            Some((seen, changes)) => {
                *seen = now;
                *changes += 1;
                *changes >= MAX_UNSETTLED_TICKS
            }
            None => {
                state.unsettled.insert(m, (now, 0));
                false
            }
        }
    }

    /// Evaluates event minute `m` (unix minutes) now, whatever was evaluated before.
    pub fn evaluate(&self, m: u64, source: &dyn CountSource) {
        let mut state = self.lock();
        self.evaluate_locked(&mut state, m, source);
    }

    pub fn stats(&self) -> AlertStats {
        let state = self.lock();
        AlertStats {
            series: state.series.len(),
            ..state.stats
        }
    }

    /// Pending and firing alerts (newest first), then recently resolved ones (most
    /// recently resolved first), filtered, at most `filter.limit` (0: no limit).
    pub fn alerts(&self, filter: &AlertFilter) -> Vec<Alert> {
        let state = self.lock();
        let mut active: Vec<&Alert> = state.alerts.values().collect();
        active.sort_by(|a, b| {
            b.started_unix_nano
                .cmp(&a.started_unix_nano)
                .then(b.id.cmp(&a.id))
        });
        let keep = |a: &&Alert| {
            filter.state.is_none_or(|s| a.state == s)
                && filter.step.as_deref().is_none_or(|s| &*a.step == s)
                && filter.kind.is_none_or(|k| a.kind == k)
        };
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        active
            .into_iter()
            .chain(state.recent.iter().rev())
            .filter(keep)
            .take(limit)
            .cloned()
            .collect()
    }

    fn evaluate_locked(&self, state: &mut State, m: u64, source: &dyn CountSource) {
        let cfg = &self.config;
        let w = cfg.spike_window_minutes.max(1);
        state.stats.evaluations += 1;
        state.stats.last_minute = Some(m);
        self.metrics.evaluations.inc();

        // 1. Fresh counts for the short windows.
        self.refresh(state, m, source);

        // 2 and 3, per series and signal, each CUSUM's threshold raised for the number
        // of CUSUMs watching the same step.
        let mut family: HashMap<&str, usize> = HashMap::new();
        for s in &state.series {
            let watched = Signal::ALL
                .iter()
                .filter(|&&signal| !symptom_series(&s.step, signal))
                .count();
            *family.entry(&*s.step).or_default() += watched;
        }
        let thresholds: Vec<f64> = state
            .series
            .iter()
            .map(|s| cusum_threshold(cfg.cusum_threshold, family.get(&*s.step).copied()))
            .collect();
        for (i, &h) in thresholds.iter().enumerate() {
            let step_runs = if state.series[i].cohort.is_some() {
                let key = (state.series[i].step.clone(), None);
                state
                    .index
                    .get(&key)
                    .map(|&j| state.series[j].window(m, w, 0).0)
            } else {
                None
            };
            for signal in Signal::ALL {
                self.evaluate_signal(state, i, signal, m, step_runs, h);
            }
        }

        self.evict(state, m);
        self.finish(state, m);
    }

    /// Reads the `W` minutes ending with `m` again from the source.
    fn refresh(&self, state: &mut State, m: u64, source: &dyn CountSource) {
        let w = self.config.spike_window_minutes.max(1);
        let mut rows = std::mem::take(&mut state.rows);
        for mm in (0..w as u64).rev().filter_map(|i| m.checked_sub(i)) {
            for s in &mut state.series {
                *s.slot_mut(mm) = Slot {
                    minute: mm,
                    ..Slot::default()
                };
            }
            rows.clear();
            source.minute_counts(mm, &mut rows);
            for row in rows.drain(..) {
                if row.runs == 0 && row.failures == 0 && row.root_causes == 0 {
                    continue;
                }
                let Some(i) = self.series_index(state, &row.step, &row.cohort, mm) else {
                    continue;
                };
                let s = &mut state.series[i];
                // A series starts with its oldest data, whatever minute created it.
                s.first_minute = s.first_minute.min(mm);
                s.last_data_minute = s.last_data_minute.max(mm);
                let slot = s.slot_mut(mm);
                slot.runs += row.runs;
                slot.counts[Signal::Failure.index()] += row.failures;
                slot.counts[Signal::RootCause.index()] += row.root_causes;
            }
        }
        state.rows = rows;
    }

    /// The most significant spike window of 1..=W minutes ending with `m`: (p-value
    /// with Bonferroni, runs, failures, minutes), among windows passing the count and
    /// ratio gates.
    fn spike_test(
        &self,
        s: &Series,
        sig: usize,
        m: u64,
        p0: f64,
    ) -> Option<(f64, u64, u64, usize)> {
        let cfg = &self.config;
        let w = cfg.spike_window_minutes.max(1);
        let mut best: Option<(f64, u64, u64, usize)> = None;
        for win in 1..=w {
            let (n, k) = s.window(m, win, sig);
            if n == 0 || k < cfg.min_failures || (k as f64) < cfg.spike_min_ratio * p0 * n as f64 {
                continue;
            }
            let p = (binomial_upper_tail(k, n, p0) * w as f64).min(1.0);
            if best.is_none_or(|b| p < b.0) {
                best = Some((p, n, k, win));
            }
        }
        best
    }

    /// Between closed minutes: the open minute `m` as counted so far, tested for spikes
    /// only, and only to fire at once on overwhelming evidence (p below
    /// `spike_p_firing`). Nothing else changes: no baseline, no CUSUM, no resolution.
    fn provisional(&self, state: &mut State, m: u64, source: &dyn CountSource) {
        let cfg = &self.config;
        self.refresh(state, m, source);
        let w = cfg.spike_window_minutes.max(1);
        let end_nanos = (m + 1).saturating_mul(NANOS_PER_MINUTE);
        for i in 0..state.series.len() {
            let step_runs = if state.series[i].cohort.is_some() {
                let key = (state.series[i].step.clone(), None);
                state
                    .index
                    .get(&key)
                    .map(|&j| state.series[j].window(m, w, 0).0)
            } else {
                None
            };
            for signal in Signal::ALL {
                let sig = signal.index();
                let s = &state.series[i];
                if symptom_series(&s.step, signal) {
                    continue;
                }
                let st = &s.signals[sig];
                if st.spike.is_some() || st.sustained.is_some() {
                    continue;
                }
                let p0 = st.baseline();
                let ready = m.saturating_sub(s.first_minute) >= cfg.warmup_minutes
                    && st.base_runs >= cfg.min_baseline_runs;
                if !ready {
                    continue;
                }
                // A minute that has just opened holds few runs, and not a fair sample
                // of them: wait for a quarter of the usual minute's runs.
                let per_minute = st.base_runs
                    * (1.0 - 0.5_f64.powf(1.0 / cfg.baseline_half_life_minutes.max(1.0)));
                if (s.slot(m).runs as f64) < 0.25 * per_minute {
                    continue;
                }
                let (n_w, _) = s.window(m, w, sig);
                if step_runs.is_some_and(|t| t > 0 && n_w as f64 >= cfg.cohort_max_share * t as f64)
                {
                    continue;
                }
                let Some((p, n, k, win)) = self.spike_test(s, sig, m, p0) else {
                    continue;
                };
                if p >= cfg.spike_p_firing {
                    continue;
                }
                let started = (m + 1 - win as u64).saturating_mul(NANOS_PER_MINUTE);
                let values = (k as f64 / n as f64, p0, n, k);
                if let Some(id) = self.open(
                    state,
                    i,
                    signal,
                    AlertKind::Spike,
                    started,
                    end_nanos,
                    values,
                ) {
                    let st = &mut state.series[i].signals[sig];
                    st.spike = Some(id);
                    st.spike_hot = 1;
                    st.spike_calm = 0;
                    self.fire(state, id);
                }
            }
        }
        self.finish(state, m);
    }

    /// The series of `(step, cohort)`, created if there is room.
    fn series_index(
        &self,
        state: &mut State,
        step: &Arc<str>,
        cohort: &CohortKey,
        minute: u64,
    ) -> Option<usize> {
        let key = (step.clone(), cohort.clone());
        if let Some(&i) = state.index.get(&key) {
            return Some(i);
        }
        if state.series.len() >= self.config.max_series {
            state.stats.series_refused += 1;
            self.metrics.suppressed("max_series");
            return None;
        }
        let i = state.series.len();
        let mut ring = [Slot::default(); RING];
        // Slots start on minutes that can never be asked for.
        for s in &mut ring {
            s.minute = u64::MAX;
        }
        state.series.push(Series {
            step: step.clone(),
            cohort: cohort.clone(),
            ring,
            first_minute: minute,
            last_data_minute: minute,
            signals: [SignalState::default(), SignalState::default()],
        });
        state.index.insert(key, i);
        Some(i)
    }

    /// Forgets series without data for a day that are not alerting (once an hour).
    fn evict(&self, state: &mut State, m: u64) {
        if !m.is_multiple_of(60) {
            return;
        }
        let idle = 24 * 60;
        let before = state.series.len();
        state
            .series
            .retain(|s| s.active() || m.saturating_sub(s.last_data_minute) < idle);
        if state.series.len() != before {
            state.index = state
                .series
                .iter()
                .enumerate()
                .map(|(i, s)| ((s.step.clone(), s.cohort.clone()), i))
                .collect();
        }
    }

    fn evaluate_signal(
        &self,
        state: &mut State,
        i: usize,
        signal: Signal,
        m: u64,
        step_runs: Option<u64>,
        h: f64,
    ) {
        if symptom_series(&state.series[i].step, signal) {
            return;
        }
        let cfg = &self.config;
        let sig = signal.index();

        // The baseline learns the minute that just left the short windows.
        self.learn_baseline(&mut state.series[i], sig, m, h);

        let s = &state.series[i];
        let p0 = s.signals[sig].baseline();
        let ready = m.saturating_sub(s.first_minute) >= cfg.warmup_minutes
            && s.signals[sig].base_runs >= cfg.min_baseline_runs;
        if !ready {
            return;
        }
        let at = Judged {
            i,
            signal,
            m,
            p0,
            end_nanos: (m + 1).saturating_mul(NANOS_PER_MINUTE),
            h,
        };

        // Spike: the most significant of the windows of 1..=w minutes.
        let spike = self.spike_evidence(s, sig, m, p0, step_runs);

        // Sustained: CUSUM on minute m, each step capped.
        let cur = s.slot(m);
        let shift = self.step_cusum(&mut state.series[i].signals[sig], sig, cur, m, p0, h);

        // Sustained lifecycle first: a firing shift supersedes spikes.
        self.sustained_lifecycle(state, &at, &shift, spike.whole_step);

        // Spike lifecycle.
        self.spike_lifecycle(state, &at, &spike);
    }

    /// The baseline of `signal` in series `s` learns minute `m - W` (just out of the
    /// short windows), unless an alert of it is open; the minutes of a shift still
    /// building (the CUSUM, of threshold `h`, past a quarter of it) are held back until
    /// it is judged.
    fn learn_baseline(&self, s: &mut Series, sig: usize, m: u64, h: f64) {
        let cfg = &self.config;
        let w = cfg.spike_window_minutes.max(1);
        let decay = 0.5_f64.powf(1.0 / cfg.baseline_half_life_minutes.max(1.0));
        let frozen = s.signals[sig].spike.is_some() || s.signals[sig].sustained.is_some();
        if frozen {
            return;
        }
        let Some(old) = m.checked_sub(w as u64) else {
            return;
        };
        if old < s.first_minute {
            return;
        }
        let slot = s.slot(old);
        let st = &mut s.signals[sig];
        let (runs, fails) = (slot.runs as f64, slot.counts[sig] as f64);
        st.base_runs *= decay;
        st.base_fails *= decay;
        st.held_runs *= decay;
        st.held_fails *= decay;
        if st.cusum >= h / 4.0 && old >= st.exc_start {
            // A shift may be building (the CUSUM is where a pending shift is kept): its
            // minutes must not teach the baseline that they are normal before it is
            // judged.
            st.held_runs += runs;
            st.held_fails += fails;
        } else {
            st.base_runs += runs;
            st.base_fails += fails;
        }
    }

    /// The spike test of `signal` in series `s` at minute `m` against baseline `p0`,
    /// and what the lifecycle reads of the longest window.
    fn spike_evidence(
        &self,
        s: &Series,
        sig: usize,
        m: u64,
        p0: f64,
        step_runs: Option<u64>,
    ) -> SpikeEvidence {
        let cfg = &self.config;
        let w = cfg.spike_window_minutes.max(1);
        let best = self.spike_test(s, sig, m, p0);
        let (n_w, k_w) = s.window(m, w, sig);
        let whole_step = match step_runs {
            Some(total) => total > 0 && n_w as f64 >= cfg.cohort_max_share * total as f64,
            None => false,
        };
        let hot = !whole_step && best.is_some_and(|b| b.0 < cfg.spike_p_pending);
        SpikeEvidence {
            best,
            n_w,
            k_w,
            whole_step,
            hot,
            strong: hot && best.is_some_and(|b| b.0 < cfg.spike_p_firing),
            calm: (k_w as f64) < cfg.resolve_ratio * p0 * n_w as f64 || n_w == 0,
        }
    }

    /// Adds minute `cur` (minute `m`) of signal `sig` to the CUSUM of `st` against baseline `p0`, its
    /// step capped so that only `sustained_min_minutes` of elevation can cross the
    /// threshold `h`; the excursion as it stands after it.
    fn step_cusum(
        &self,
        st: &mut SignalState,
        sig: usize,
        cur: Slot,
        m: u64,
        p0: f64,
        h: f64,
    ) -> Excursion {
        let cfg = &self.config;
        let p1 = (p0 * cfg.shift_ratio).min(0.999);
        let cap = h / cfg.sustained_min_minutes as f64;
        if cur.runs > 0 {
            let llr = bernoulli_llr(cur.counts[sig], cur.runs, p0, p1).min(cap);
            let before = st.cusum;
            st.cusum = (st.cusum + llr).max(0.0);
            if st.cusum <= 0.0 {
                st.release_held();
                st.reset_cusum();
            } else {
                if before <= 0.0 {
                    st.exc_start = m;
                    st.exc_runs = 0;
                    st.exc_fails = 0;
                }
                st.exc_runs += cur.runs;
                st.exc_fails += cur.counts[sig];
            }
        }
        let rate = if st.exc_runs > 0 {
            st.exc_fails as f64 / st.exc_runs as f64
        } else {
            0.0
        };
        Excursion {
            cusum: st.cusum,
            start: st.exc_start,
            runs: st.exc_runs,
            fails: st.exc_fails,
            rate,
            elevated: st.exc_runs > 0
                && st.exc_fails >= cfg.min_failures
                && rate >= p0 * (1.0 + (cfg.shift_ratio - 1.0) / 2.0),
        }
    }

    /// The sustained alert of the judged signal: opened (and fired) when the CUSUM
    /// crosses half (all) of its threshold on an elevated excursion; a firing one
    /// resolves when the resolve window is back near the baseline, or is learnt as the
    /// new normal after `relearn_after_minutes`; a pending one is dropped when the
    /// excursion fades.
    fn sustained_lifecycle(
        &self,
        state: &mut State,
        at: &Judged,
        shift: &Excursion,
        whole_step: bool,
    ) {
        let cfg = &self.config;
        let (i, sig, m, p0, end_nanos, h) =
            (at.i, at.signal.index(), at.m, at.p0, at.end_nanos, at.h);
        let (n_r, k_r) = state.series[i].window(m, SUSTAINED_RESOLVE_WINDOW, sig);
        match state.series[i].signals[sig].sustained {
            None => {
                if shift.cusum >= h / 2.0 && shift.elevated && !whole_step {
                    let started = shift.start.saturating_mul(NANOS_PER_MINUTE);
                    if let Some(id) = self.open(
                        state,
                        i,
                        at.signal,
                        AlertKind::Sustained,
                        started,
                        end_nanos,
                        (shift.rate, p0, shift.runs, shift.fails),
                    ) {
                        state.series[i].signals[sig].sustained = Some(id);
                        if shift.cusum >= h {
                            self.fire(state, id);
                        }
                    }
                }
            }
            Some(id) => {
                let sustained_firing = state
                    .alerts
                    .get(&id)
                    .is_some_and(|a| a.state == AlertState::Firing);
                let rate_r = if n_r > 0 {
                    k_r as f64 / n_r as f64
                } else {
                    0.0
                };
                let excursion = (shift.rate, p0, shift.runs, shift.fails);
                if sustained_firing {
                    let age = m.saturating_sub(shift.start);
                    if (k_r as f64) < cfg.sustained_resolve_ratio * p0 * n_r as f64 {
                        self.resolve(state, id, end_nanos);
                        let st = &mut state.series[i].signals[sig];
                        st.sustained = None;
                        st.reset_cusum();
                    } else if age >= cfg.relearn_after_minutes {
                        // The shift is the new normal: learn it and stop alerting.
                        let st = &mut state.series[i].signals[sig];
                        st.base_fails = st.base_runs * rate_r;
                        st.sustained = None;
                        st.reset_cusum();
                        self.resolve(state, id, end_nanos);
                    } else {
                        self.update(state, id, end_nanos, (rate_r, p0, n_r, k_r));
                    }
                } else if shift.cusum >= h && shift.elevated {
                    self.update(state, id, end_nanos, excursion);
                    self.fire(state, id);
                    if let Some(spike) = state.series[i].signals[sig].spike.take() {
                        // The burst turned out to be a shift: one alert, labelled sustained.
                        self.close(state, spike, end_nanos);
                    }
                } else if shift.cusum < h / 4.0 || !shift.elevated {
                    self.drop_pending(state, id);
                    state.series[i].signals[sig].sustained = None;
                } else {
                    self.update(state, id, end_nanos, excursion);
                }
            }
        }
    }

    /// The spike alert of the judged signal: opened when the spike test is hot and no
    /// shift of it fires (fired at once when strong, else after `confirm_evaluations`
    /// hot minutes); a firing one resolves after `resolve_minutes` calm ones and shows
    /// its peak window meanwhile; a pending one that cools is dropped.
    fn spike_lifecycle(&self, state: &mut State, at: &Judged, spike: &SpikeEvidence) {
        let cfg = &self.config;
        let (i, sig, m, p0, end_nanos) = (at.i, at.signal.index(), at.m, at.p0, at.end_nanos);
        let (n_w, k_w) = (spike.n_w, spike.k_w);
        let sustained_firing = state.series[i].signals[sig]
            .sustained
            .and_then(|id| state.alerts.get(&id))
            .is_some_and(|a| a.state == AlertState::Firing);
        let st = &mut state.series[i].signals[sig];
        match st.spike {
            None => {
                if let (true, false, Some((_, n, k, win))) =
                    (spike.hot, sustained_firing, spike.best)
                {
                    let started = (m + 1 - win as u64).saturating_mul(NANOS_PER_MINUTE);
                    let rate = k as f64 / n as f64;
                    if let Some(id) = self.open(
                        state,
                        i,
                        at.signal,
                        AlertKind::Spike,
                        started,
                        end_nanos,
                        (rate, p0, n, k),
                    ) {
                        let st = &mut state.series[i].signals[sig];
                        st.spike = Some(id);
                        st.spike_hot = 1;
                        st.spike_calm = 0;
                        if spike.strong || cfg.confirm_evaluations <= 1 {
                            self.fire(state, id);
                        }
                    }
                }
            }
            Some(id) => {
                let firing = state
                    .alerts
                    .get(&id)
                    .is_some_and(|a| a.state == AlertState::Firing);
                let window_rate = if n_w > 0 {
                    k_w as f64 / n_w as f64
                } else {
                    0.0
                };
                if firing {
                    if spike.calm {
                        st.spike_calm += 1;
                    } else {
                        st.spike_calm = 0;
                    }
                    if st.spike_calm >= cfg.resolve_minutes {
                        let calm_since = (m + 1 - st.spike_calm as u64) * NANOS_PER_MINUTE;
                        st.spike = None;
                        self.resolve(state, id, calm_since);
                    } else if state.alerts.get(&id).is_some_and(|a| window_rate > a.rate) {
                        // A firing spike shows its peak window.
                        self.update(state, id, end_nanos, (window_rate, p0, n_w, k_w));
                    } else if let Some(a) = state.alerts.get_mut(&id) {
                        a.updated_unix_nano = end_nanos;
                    }
                } else if spike.hot {
                    st.spike_hot += 1;
                    let confirmed = spike.strong || st.spike_hot >= cfg.confirm_evaluations;
                    if let Some((_, n, k, _)) = spike.best {
                        self.update(state, id, end_nanos, (k as f64 / n as f64, p0, n, k));
                    }
                    if confirmed {
                        self.fire(state, id);
                    }
                } else {
                    st.spike = None;
                    self.drop_pending(state, id);
                }
            }
        }
    }

    /// Opens a pending alert, unless `max_alerts` are open.
    #[allow(clippy::too_many_arguments)]
    fn open(
        &self,
        state: &mut State,
        i: usize,
        signal: Signal,
        kind: AlertKind,
        started: u64,
        now: u64,
        (rate, baseline, runs, failures): (f64, f64, u64, u64),
    ) -> Option<u64> {
        let s = &state.series[i];
        if state.alerts.len() >= self.config.max_alerts {
            state.stats.alerts_suppressed += 1;
            self.metrics.suppressed("max_alerts");
            let key = IncidentKey {
                step: s.step.clone(),
                kind,
            };
            if let Some(inc) = state.incidents.get_mut(&key) {
                inc.suppressed += 1;
            }
            return None;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.stats.alerts_created += 1;
        let reason = self.step_reason(&s.step).map(|r| truncate(&r));
        state.alerts.insert(
            id,
            Alert {
                id,
                signal,
                step: s.step.clone(),
                kind,
                cohort: s.cohort.clone(),
                state: AlertState::Pending,
                started_unix_nano: started,
                resolved_unix_nano: None,
                updated_unix_nano: now,
                rate,
                baseline,
                runs,
                failures,
                incident: None,
                reason,
            },
        );
        Some(id)
    }

    fn update(&self, state: &mut State, id: u64, now: u64, values: (f64, f64, u64, u64)) {
        if let Some(a) = state.alerts.get_mut(&id) {
            (a.rate, a.baseline, a.runs, a.failures) = values;
            a.updated_unix_nano = now;
            if let Some(inc) = state
                .incidents
                .values_mut()
                .find(|x| Some(x.id) == a.incident)
            {
                inc.peak_rate = inc.peak_rate.max(a.rate);
            }
        }
    }

    /// Pending → firing; joins (or opens) its incident.
    fn fire(&self, state: &mut State, id: u64) {
        let Some(a) = state.alerts.get_mut(&id) else {
            return;
        };
        if a.state != AlertState::Pending {
            return;
        }
        a.state = AlertState::Firing;
        if let Some(reason) = self.step_reason(&a.step) {
            a.reason = Some(truncate(&reason));
        }
        let key = IncidentKey {
            step: a.step.clone(),
            kind: a.kind,
        };
        if let Some(inc) = state.incidents.get_mut(&key) {
            inc.members.push(id);
            inc.peak_rate = inc.peak_rate.max(a.rate);
            a.incident = Some(inc.id);
            state.dirty.insert(key);
            return;
        }
        if state.incidents.len() >= self.config.max_incidents {
            state.stats.incidents_refused += 1;
            self.metrics.suppressed("max_incidents");
            return;
        }
        let inc_id = state.next_id;
        state.next_id += 1;
        state.stats.incidents_created += 1;
        a.incident = Some(inc_id);
        state.incidents.insert(
            key.clone(),
            Incident {
                id: inc_id,
                key: key.clone(),
                signal: a.signal,
                lead: a.cohort.clone(),
                started_unix_nano: a.started_unix_nano,
                members: vec![id],
                suppressed: 0,
                peak_rate: a.rate,
                baseline: a.baseline,
            },
        );
        state.dirty.insert(key);
    }

    /// The step's most frequent failure reason over the last spike window (at least
    /// five minutes), from the reason index.
    fn step_reason(&self, step: &str) -> Option<String> {
        let lookup = self.reasons.as_ref()?;
        let minutes = (self.config.spike_window_minutes as u64).max(5);
        lookup(step, minutes)
    }

    fn drop_pending(&self, state: &mut State, id: u64) {
        if state
            .alerts
            .get(&id)
            .is_some_and(|a| a.state == AlertState::Pending)
        {
            state.alerts.remove(&id);
        }
    }

    /// A spike superseded by a sustained shift: resolved if firing, dropped if pending.
    fn close(&self, state: &mut State, id: u64, now: u64) {
        match state.alerts.get(&id).map(|a| a.state) {
            Some(AlertState::Firing) => self.resolve(state, id, now),
            Some(_) => self.drop_pending(state, id),
            None => {}
        }
    }

    fn resolve(&self, state: &mut State, id: u64, at: u64) {
        let Some(mut a) = state.alerts.remove(&id) else {
            return;
        };
        a.state = AlertState::Resolved;
        a.resolved_unix_nano = Some(at.max(a.started_unix_nano));
        let key = IncidentKey {
            step: a.step.clone(),
            kind: a.kind,
        };
        if let Some(inc) = state.incidents.get_mut(&key) {
            if Some(inc.id) == a.incident {
                inc.members.retain(|&m| m != id);
                if inc.members.is_empty() {
                    if let Some(inc) = state.incidents.remove(&key) {
                        let note = self.notification(state, &inc, Some(at));
                        state.resolved_now.push(note.clone());
                        state.recent_incidents.push_back(note);
                        while state.recent_incidents.len() > RECENT_INCIDENTS {
                            state.recent_incidents.pop_front();
                        }
                    }
                    state.dirty.remove(&key);
                } else {
                    state.dirty.insert(key);
                }
            }
        }
        state.recent.push_back(a);
        while state.recent.len() > self.config.max_recent {
            state.recent.pop_front();
        }
    }

    /// The link to the failed trajectories of a step on the web page.
    pub fn link(&self, step: &str) -> String {
        payload::link(&self.external_url, step)
    }

    fn notification(&self, state: &State, inc: &Incident, resolved: Option<u64>) -> Notification {
        let members: Vec<&Alert> = inc
            .members
            .iter()
            .filter_map(|id| state.alerts.get(id))
            .collect();
        let reason = self.step_reason(&inc.key.step);
        payload::notification(inc, &members, &self.external_url, reason, resolved)
    }

    /// After an evaluation: the firing gauge and the delivery batch.
    fn finish(&self, state: &mut State, _m: u64) {
        self.metrics.series.set(state.series.len() as i64);
        let mut counts: HashMap<FiringLabels, i64> = HashMap::new();
        for a in state.alerts.values() {
            if a.state == AlertState::Firing {
                *counts
                    .entry(FiringLabels {
                        signal: a.signal.as_str(),
                        step: a.step.to_string(),
                        kind: a.kind.as_str(),
                    })
                    .or_default() += 1;
            }
        }
        for labels in state.gauge_groups.iter() {
            if !counts.contains_key(labels) {
                self.metrics.firing.get_or_create(labels).set(0);
            }
        }
        for (labels, n) in &counts {
            self.metrics.firing.get_or_create(labels).set(*n);
        }
        state.gauge_groups.extend(counts.into_keys());

        let Some(tx) = &self.notify else {
            state.dirty.clear();
            state.resolved_now.clear();
            return;
        };
        let mut batch: Vec<Notification> = std::mem::take(&mut state.resolved_now);
        let keys: Vec<IncidentKey> = if state.resync {
            state.incidents.keys().cloned().collect()
        } else {
            state.dirty.drain().collect()
        };
        state.dirty.clear();
        for key in keys {
            if let Some(inc) = state.incidents.get(&key) {
                batch.push(self.notification(state, inc, None));
            }
        }
        if state.resync {
            for note in &state.recent_incidents {
                if !batch.iter().any(|b| b.incident == note.incident) {
                    batch.push(note.clone());
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        match tx.try_send(batch) {
            Ok(()) => state.resync = false,
            Err(_) => {
                // Full (or the delivery task is gone): send everything next time.
                state.stats.batches_dropped += 1;
                state.resync = true;
                self.metrics.suppressed("queue_full");
            }
        }
    }
}
