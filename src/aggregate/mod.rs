//! Aggregation: per-step failure counts and latency, by cohort, in event-time minute
//! buckets, exported to Prometheus and queried by the breakdown API.
//!
//! Input: every finalized [`Analysis`] (the [`Sink::finalize`] of the pipeline, once per
//! trace after its late grace, so a revised trajectory is counted exactly once).
//! Output: the `faultline_*` aggregation metrics registered in the [`Registry`] given to
//! [`Aggregator::new`], and [`Aggregator::breakdown`] for `GET /api/v1/breakdown`
//! (JSON shape in `README.md` beside this file).
//!
//! What is counted, per step and per cohort (one value per configured dimension):
//! trajectories by outcome; step runs (one per `StepAssignment::run_start` span);
//! original findings by kind (propagated ones excluded) and runs with at least one;
//! root causes by step and kind; step latency (the run's outermost span).
//!
//! Invariants:
//! - Event time, not arrival time. An analysis is counted in the minute of its
//!   trajectory's end. The newest minute seen (an event time clamped to the wall clock
//!   plus [`AggregateConfig::future_tolerance`], so one span stamped in 2100 cannot move
//!   it) ends relative windows, and the horizon counts back from it: replaying last
//!   month's traffic gives the numbers live traffic gave. Analyses older than the
//!   horizon behind the newest minute are counted on `/metrics` (cumulative counters)
//!   but not in the buckets.
//! - Bounded cardinality: a dimension keeps its top `top_k` values on `/metrics` and
//!   `8 * top_k` in the buckets, chosen by a Space-Saving sketch, and folds the rest into
//!   `other`; each metric family and each minute table holds at most `max_series`
//!   series, past which label sets fold into all-`other`. Custom step names are folded
//!   the same way; custom finding kinds (named by config rules) are capped at 64.
//! - Order independence: while no value is folded, the same analyses in any order or
//!   thread interleaving give identical buckets and breakdowns (ids are internal; rows
//!   are keyed and sorted by names). Folding decisions depend on the order values
//!   arrive in, as with any bounded streaming sketch.
//! - Deterministic core: no IO and no async; the wall clock is a parameter
//!   ([`Aggregator::record`]) or an injected [`Clock`] for the [`Sink`] path.
//!
//! Concurrency: shard threads call `finalize` concurrently. The extraction from the
//! analysis (the part that reads spans) runs outside the lock with per-thread scratch
//! buffers; the lock is held only to map values to ids and bump counters.

mod buckets;
mod cohort;
pub mod config;
pub(crate) mod extract;
mod persist;
mod prom;
pub mod query;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::registry::Registry;

use crate::model::{Analysis, FindingKind, Outcome, StepKind};
use crate::pipeline::{Finalized, Sink};

use buckets::{DimKey, KindId, Minute, Ring, StepId, ALL_OTHER};
use cohort::{Cohort, ValueId, OTHER_LABEL, UNSET};
use extract::{extract, Scratch, NONE};
use prom::{Namer, PromMetrics};
use query::NANOS_PER_MINUTE;

pub use config::{AggregateConfig, AggregateConfigError, Dimension, RawAggregateConfig, Scope};
pub use persist::{minute_of, DimValue, KindCounts, MinuteCounts, StepCounts, TrajectoryCounts};
pub use query::{
    Breakdown, BreakdownQuery, CohortValues, OutcomeCounts, QueryError, StepRow, TrajectoryRow,
    Window,
};

/// The wall clock, in unix nanoseconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
            .unwrap_or(0)
    })
}

/// Counters about the aggregator itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregateStats {
    /// Analyses counted.
    pub recorded: u64,
    /// Analyses whose end time was past the wall clock plus the tolerance (clamped).
    pub clamped_future: u64,
    /// Analyses older than the horizon behind the newest minute (not in the buckets).
    pub too_old: u64,
}

/// Built-in step kinds: ids `0..12`; custom steps: `CUSTOM_STEP + cohort id`.
const CUSTOM_STEP: StepId = StepKind::BUILTIN.len() as StepId;
/// Built-in finding kinds: ids `0..11`; then `other`; then custom kinds.
const BUILTIN_KINDS: [&str; 11] = [
    "error",
    "exception",
    "eval_failed",
    "empty_retrieval",
    "tool_error",
    "invalid_tool_args",
    "unknown_tool",
    "truncated",
    "loop",
    "slow_step",
    "rate_limited",
];
const KIND_OTHER: KindId = BUILTIN_KINDS.len() as KindId;
const MAX_CUSTOM_KINDS: usize = 64;

/// Counts finalized analyses; see the module documentation.
pub struct Aggregator {
    config: AggregateConfig,
    clock: Clock,
    state: Mutex<State>,
    /// Trajectories released but not yet finalized (inside their late-data grace), by
    /// trace id, with the wall clock of their first release: shown as a pending count
    /// next to the counts that wait for them. Bounded by [`MAX_PENDING`].
    pending: Mutex<HashMap<crate::model::TraceId, u64>>,
    /// Each finalized trace's own counts, from its `finalize` until the store's sink
    /// takes them ([`Aggregator::take_trace_counts`]); `None` unless a store writes
    /// them ([`Aggregator::keep_trace_counts`]).
    trace_counts: Mutex<Option<HashMap<crate::model::TraceId, MinuteCounts>>>,
}

/// Most pending trajectories tracked. The pipeline bounds its own pending set far
/// below this; the cap only guards against a trace released again after it was
/// finalized (past the assembler's tombstones), which is never finalized a second time.
const MAX_PENDING: usize = 1 << 20;
/// A pending entry older than this (wall clock) is dropped when the map is full.
const PENDING_MAX_AGE_NANOS: u64 = 24 * 3600 * 1_000_000_000;

struct State {
    cohorts: Vec<Cohort>,
    /// Custom step names.
    steps: Cohort,
    custom_kinds: Vec<Arc<str>>,
    ring: Ring,
    prom: PromMetrics,
    stats: AggregateStats,
    /// Bucket ids demoted and not yet released, per cohort (the last entry: steps).
    retired: Vec<Vec<ValueId>>,
    /// Per run of the analysis being recorded: (Prometheus step, dims, bucket step, dims).
    run_keys: Vec<(StepId, DimKey, StepId, DimKey)>,
    /// Within one `record`: the ids already given to (dimension, located span), so that
    /// a value shared by many step runs (the run's service, route, ...) is looked up and
    /// counted by the top-K sketch once per trajectory, not once per step run.
    memo: Vec<(u8, u32, ValueId, ValueId)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Aggregator {
    /// Creates the aggregator and registers its metrics in `registry`. `clock` is read
    /// on the [`Sink`] path only.
    pub fn new(config: AggregateConfig, registry: &mut Registry, clock: Clock) -> Aggregator {
        let dim_names = config.dimensions.iter().map(|d| d.name.clone()).collect();
        let store_k = config.breakdown_top_k();
        let state = State {
            cohorts: config
                .dimensions
                .iter()
                .map(|_| Cohort::new(config.top_k, store_k))
                .collect(),
            steps: Cohort::new(config.top_k, store_k),
            custom_kinds: Vec::new(),
            ring: Ring::new(config.horizon_minutes),
            prom: PromMetrics::register(registry, dim_names, config.max_series),
            stats: AggregateStats::default(),
            retired: vec![Vec::new(); config.dimensions.len() + 1],
            run_keys: Vec::new(),
            memo: Vec::new(),
        };
        Aggregator {
            config,
            clock,
            state: Mutex::new(state),
            pending: Mutex::new(HashMap::new()),
            trace_counts: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &AggregateConfig {
        &self.config
    }

    /// The wall clock this aggregator was given.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts at worst partly updated; keep
        // serving them rather than poisoning every later call.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one finalized analysis; `now_unix_nano` is the wall clock.
    pub fn record(&self, analysis: &Analysis, now_unix_nano: u64) {
        self.record_into(analysis, now_unix_nano, None);
    }

    /// [`Aggregator::record`], and returns what this analysis added to its minute (the
    /// same cells, as [`Aggregator::export_minute`] names them); `None` when it was
    /// not counted in a minute (older than the horizon).
    pub fn record_counted(&self, analysis: &Analysis, now_unix_nano: u64) -> Option<MinuteCounts> {
        let mut own = Minute::default();
        let minute = self.record_into(analysis, now_unix_nano, Some(&mut own))?;
        let state = self.lock();
        Some(state.export(&self.config, minute, &own))
    }

    /// Counts `analysis`, adding its cells to `own` too; returns its minute when counted
    /// in one.
    fn record_into(
        &self,
        analysis: &Analysis,
        now_unix_nano: u64,
        own: Option<&mut Minute>,
    ) -> Option<u64> {
        let dims = &self.config.dimensions;
        SCRATCH.with(|cell| {
            let Ok(mut scratch) = cell.try_borrow_mut() else {
                // Only reachable by re-entrance, which `record` never does.
                tracing::warn!("Aggregation scratch busy; analysis not counted.");
                return None;
            };
            extract(analysis, dims, &mut scratch);
            let limit =
                now_unix_nano.saturating_add(self.config.future_tolerance.as_nanos() as u64);
            let end = analysis.trajectory.end_unix_nano();
            let clamped = end > limit;
            let minute = end.min(limit) / NANOS_PER_MINUTE;
            let mut state = self.lock();
            state
                .record(&self.config, analysis, &scratch, minute, clamped, own)
                .then_some(minute)
        })
    }

    /// From now on, keeps each finalized trace's own counts until
    /// [`Aggregator::take_trace_counts`] takes them: the store writes exactly the counts
    /// of the traces whose finalize it commits (see `store::writer`). Call it only when
    /// the store's sink is in the pipeline's sinks, which takes them right after.
    pub fn keep_trace_counts(&self) {
        let mut kept = self.trace_counts.lock().unwrap_or_else(|e| e.into_inner());
        kept.get_or_insert_with(HashMap::new);
    }

    /// The counts that finalizing `trace` added (kept since the aggregator's
    /// `finalize`, which comes first: it is in the pipeline's count stage).
    pub fn take_trace_counts(&self, trace: crate::model::TraceId) -> Option<MinuteCounts> {
        self.trace_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()?
            .remove(&trace)
    }

    /// Answers a breakdown query; `now_unix_nano` bounds the window when nothing has
    /// been counted yet.
    pub fn breakdown(
        &self,
        query: &BreakdownQuery,
        now_unix_nano: u64,
    ) -> Result<Breakdown, QueryError> {
        let state = self.lock();
        state.breakdown(&self.config, query, now_unix_nano)
    }

    /// Trajectories released and still inside their late-data grace: not counted yet.
    pub fn pending(&self) -> u64 {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    pub fn stats(&self) -> AggregateStats {
        self.lock().stats
    }

    /// Approximate bytes held by the minute buckets, and the number of series in them.
    pub fn bucket_usage(&self) -> (usize, usize) {
        let state = self.lock();
        state
            .ring
            .minutes()
            .fold((0, 0), |(b, s), m| (b + m.bytes(), s + m.series()))
    }

    /// Series per metric family: trajectories, step runs, step failures, root causes,
    /// durations.
    pub fn metric_series(&self) -> [usize; 5] {
        self.lock().prom.series()
    }
}

impl Sink for Aggregator {
    /// Counting happens at `finalize`, once per trace; until then the trace is pending.
    /// Only a first release (revision 0) starts a pending entry: a revision of a trace
    /// already finalized (the pipeline finalizes early over its bound) never ends one.
    fn publish(&self, analysis: Arc<Analysis>) {
        if analysis.trajectory.revision != 0 {
            return;
        }
        let now = self.now();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, at| now.saturating_sub(*at) < PENDING_MAX_AGE_NANOS);
        }
        if pending.len() < MAX_PENDING {
            pending.insert(analysis.trajectory.trace_id, now);
        }
    }

    fn finalize(&self, analysis: &Finalized) {
        let trace = analysis.trajectory.trace_id;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&trace);
        let keep = self
            .trace_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !keep {
            self.record(analysis, self.now());
            return;
        }
        let counts = self.record_counted(analysis, self.now());
        let mut kept = self.trace_counts.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(kept), Some(counts)) = (kept.as_mut(), counts) {
            kept.insert(trace, counts);
        }
    }
}

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Success => 0,
        Outcome::Recovered => 1,
        Outcome::Failed => 2,
    }
}

fn builtin_step(kind: &StepKind) -> Option<StepId> {
    match kind {
        StepKind::Custom(_) => None,
        k => StepKind::BUILTIN
            .iter()
            .position(|b| b == k)
            .map(|i| i as StepId),
    }
}

/// Names ids for the Prometheus labels.
struct PromNames<'a> {
    cohorts: &'a [Cohort],
    steps: &'a Cohort,
    custom_kinds: &'a [Arc<str>],
}

impl State {
    /// The Prometheus families, and the names of the ids their keys hold (a split
    /// borrow of the state).
    fn prom_with_names(&mut self) -> (&mut PromMetrics, PromNames<'_>) {
        let State {
            cohorts,
            steps,
            custom_kinds,
            prom,
            ..
        } = self;
        (
            prom,
            PromNames {
                cohorts,
                steps,
                custom_kinds,
            },
        )
    }
}

impl Namer for PromNames<'_> {
    fn dim(&self, d: usize, id: ValueId) -> Arc<str> {
        match self.cohorts.get(d) {
            Some(c) => c.prom.name_arc(id),
            None => Arc::from(OTHER_LABEL),
        }
    }

    fn step(&self, id: StepId) -> Arc<str> {
        step_name(id, |c| self.steps.prom.name_arc(c))
    }

    fn kind(&self, id: KindId) -> Arc<str> {
        kind_name(id, self.custom_kinds)
    }
}

fn step_name(id: StepId, custom: impl FnOnce(ValueId) -> Arc<str>) -> Arc<str> {
    match StepKind::BUILTIN.get(id as usize) {
        Some(k) => Arc::from(k.as_str()),
        None => custom(id - CUSTOM_STEP),
    }
}

fn kind_name(id: KindId, custom_kinds: &[Arc<str>]) -> Arc<str> {
    if let Some(name) = BUILTIN_KINDS.get(id as usize) {
        return Arc::from(*name);
    }
    match id
        .checked_sub(KIND_OTHER + 1)
        .and_then(|i| custom_kinds.get(i as usize))
    {
        Some(name) => name.clone(),
        None => Arc::from(OTHER_LABEL),
    }
}

impl State {
    fn step_ids(&mut self, kind: &StepKind) -> (StepId, StepId) {
        match builtin_step(kind) {
            Some(id) => (id, id),
            None => {
                let (p, s) = self.steps.observe(Some(kind.as_str()));
                (CUSTOM_STEP + p, CUSTOM_STEP + s)
            }
        }
    }

    fn kind_id(&mut self, kind: &FindingKind) -> KindId {
        if let FindingKind::Custom(name) = kind {
            if let Some(i) = self.custom_kinds.iter().position(|k| **k == **name) {
                return KIND_OTHER + 1 + i as KindId;
            }
            if self.custom_kinds.len() < MAX_CUSTOM_KINDS {
                self.custom_kinds.push(Arc::from(cohort::truncate(name)));
                return KIND_OTHER + self.custom_kinds.len() as KindId;
            }
            return KIND_OTHER;
        }
        BUILTIN_KINDS
            .iter()
            .position(|k| *k == kind.as_str())
            .map(|i| i as KindId)
            .unwrap_or(KIND_OTHER)
    }

    /// (Prometheus key, bucket key) of the dimension values located at `spans`.
    fn dim_keys(
        &mut self,
        config: &AggregateConfig,
        analysis: &Analysis,
        scratch: &Scratch,
        spans: &[u32; config::MAX_DIMENSIONS],
    ) -> (DimKey, DimKey) {
        let mut prom_key = ALL_OTHER;
        let mut store_key = ALL_OTHER;
        for (d, cohort) in self.cohorts.iter_mut().enumerate() {
            let span = spans[d];
            let (p, s) = match self.memo.iter().find(|m| m.0 as usize == d && m.1 == span) {
                Some(&(_, _, p, s)) => (p, s),
                None => {
                    let value = scratch.value(&analysis.trajectory, &config.dimensions, d, span);
                    let (p, s) = cohort.observe(value.as_deref());
                    self.memo.push((d as u8, span, p, s));
                    (p, s)
                }
            };
            prom_key[d] = p;
            store_key[d] = s;
        }
        (prom_key, store_key)
    }

    /// Counts one analysis in `minute`, and into `own` too (the analysis's own
    /// cells, under the same keys); false when the minute is outside the horizon.
    fn record(
        &mut self,
        config: &AggregateConfig,
        analysis: &Analysis,
        scratch: &Scratch,
        minute: u64,
        clamped: bool,
        mut own: Option<&mut Minute>,
    ) -> bool {
        let cap = config.max_series;
        let trajectory = &*analysis.trajectory;
        self.stats.recorded += 1;
        self.stats.clamped_future += clamped as u64;
        let advanced = self.ring.newest().is_none_or(|n| minute > n);
        self.ring.advance(minute);
        let mut kept = true;
        self.memo.clear();

        // The run as a whole.
        let (prom_key, store_key) = self.dim_keys(config, analysis, scratch, &scratch.run_dims);
        let outcome = outcome_index(analysis.outcome);
        {
            let (prom, names) = self.prom_with_names();
            prom.trajectory(outcome as u16, prom_key, &names);
        }
        match self.ring.slot(minute) {
            Ok(slot) => {
                let key = slot.trajectory_key(store_key, cap);
                slot.trajectory(key, cap)[outcome] += 1;
                if let Some(own) = own.as_deref_mut() {
                    own.trajectory(key, usize::MAX)[outcome] += 1;
                }
            }
            Err(_) => {
                kept = false;
                self.stats.too_old += 1;
            }
        }

        // Step runs.
        let mut run_keys = std::mem::take(&mut self.run_keys);
        run_keys.clear();
        for run in &scratch.runs {
            let Some(assignment) = analysis.steps.get(run.span as usize) else {
                continue;
            };
            let (prom_step, store_step) = self.step_ids(&assignment.kind);
            let (prom_dims, store_dims) = self.dim_keys(config, analysis, scratch, &run.dims);
            run_keys.push((prom_step, prom_dims, store_step, store_dims));
            let nanos = trajectory
                .spans
                .get(run.span as usize)
                .map(|s| s.duration_nanos())
                .unwrap_or(0);
            {
                let (prom, names) = self.prom_with_names();
                prom.step_run(prom_step, prom_dims, nanos as f64 / 1e9, &names);
            }
            if kept {
                if let Ok(slot) = self.ring.slot(minute) {
                    let (step, dims) = slot.step_key(store_step, store_dims, cap);
                    let cells = std::iter::once(slot.step(step, dims, cap)).chain(
                        own.as_deref_mut()
                            .map(|own| own.step(step, dims, usize::MAX)),
                    );
                    for cell in cells {
                        cell.runs += 1;
                        cell.failed_runs += run.failed as u32;
                        cell.latency.record(nanos / 1000);
                    }
                }
            }
        }

        // Findings and the root cause, in the cohort of the run they belong to.
        for finding in analysis.findings.iter().filter(|f| !f.propagated) {
            let keys = self.keys_for_span(
                config,
                analysis,
                scratch,
                &run_keys,
                finding.span,
                &finding.step,
            );
            let kind = self.kind_id(&finding.kind);
            self.count_kind(
                keys,
                kind,
                false,
                kept.then_some(minute),
                cap,
                own.as_deref_mut(),
            );
        }
        if let Some(rc) = &analysis.root_cause {
            let keys = self.keys_for_span(config, analysis, scratch, &run_keys, rc.span, &rc.step);
            let kind = self.kind_id(&rc.kind);
            self.count_kind(keys, kind, true, kept.then_some(minute), cap, own);
        }
        self.run_keys = run_keys;

        self.release_retired(advanced);
        kept
    }

    /// The keys of the run holding span `span`; for a span in no run, the step `step`
    /// in the whole run's cohort.
    fn keys_for_span(
        &mut self,
        config: &AggregateConfig,
        analysis: &Analysis,
        scratch: &Scratch,
        run_keys: &[(StepId, DimKey, StepId, DimKey)],
        span: u32,
        step: &StepKind,
    ) -> (StepId, DimKey, StepId, DimKey) {
        let run = scratch.run_of.get(span as usize).copied().unwrap_or(NONE);
        if let Some(keys) = run_keys.get(run as usize) {
            return *keys;
        }
        let (prom_step, store_step) = self.step_ids(step);
        let (prom_dims, store_dims) = self.dim_keys(config, analysis, scratch, &scratch.run_dims);
        (prom_step, prom_dims, store_step, store_dims)
    }

    fn count_kind(
        &mut self,
        (prom_step, prom_dims, store_step, store_dims): (StepId, DimKey, StepId, DimKey),
        kind: KindId,
        root_cause: bool,
        // The minute the trajectory is counted in; `None`: outside the horizon.
        minute: Option<u64>,
        cap: usize,
        own: Option<&mut Minute>,
    ) {
        {
            let (prom, names) = self.prom_with_names();
            if root_cause {
                prom.root_cause(prom_step, kind, prom_dims, &names);
            } else {
                prom.failure(prom_step, kind, prom_dims, &names);
            }
        }
        let Some(minute) = minute else {
            return;
        };
        if let Ok(slot) = self.ring.slot(minute) {
            let (k_step, k_kind, k_dims) = slot.kind_key(store_step, kind, store_dims, cap);
            let (s_step, s_dims) = slot.step_key(store_step, store_dims, cap);
            for (m, cap) in std::iter::once((slot, cap)).chain(own.map(|o| (o, usize::MAX))) {
                let cell = m.kind(k_step, k_kind, k_dims, cap);
                if root_cause {
                    cell.root_causes += 1;
                    m.step(s_step, s_dims, cap).root_causes += 1;
                } else {
                    cell.findings += 1;
                }
            }
        }
    }

    /// Removes the Prometheus series of demoted values at once; releases demoted bucket
    /// ids once no minute refers to them (checked when the newest minute moves on,
    /// since that is when minutes leave the horizon).
    fn release_retired(&mut self, advanced: bool) {
        let n = self.cohorts.len();
        for d in 0..=n {
            let cohort = if d < n {
                &mut self.cohorts[d]
            } else {
                &mut self.steps
            };
            for id in cohort.prom.take_retired() {
                if d < n {
                    self.prom.forget_dim(d, id);
                } else {
                    self.prom.forget_step(CUSTOM_STEP + id);
                }
                cohort.prom.release(id);
            }
            let store_retired = cohort.store.take_retired();
            self.retired[d].extend(store_retired);
        }
        if !advanced || self.retired.iter().all(Vec::is_empty) {
            return;
        }
        // One pass over the minutes marks the ids still referred to.
        let mut referenced: Vec<Vec<bool>> = (0..=n)
            .map(|d| {
                if self.retired[d].is_empty() {
                    Vec::new()
                } else if d < n {
                    vec![false; self.cohorts[d].store.id_count()]
                } else {
                    vec![false; self.steps.store.id_count()]
                }
            })
            .collect();
        let mut mark = |d: usize, id: ValueId| {
            if let Some(flag) = referenced[d].get_mut(id as usize) {
                *flag = true;
            }
        };
        for minute in self.ring.minutes() {
            let mut mark_dims = |dims: &DimKey| {
                for (d, &id) in dims.iter().enumerate().take(n) {
                    mark(d, id);
                }
            };
            let mut steps_seen: Vec<StepId> = Vec::new();
            for dims in minute.trajectories.keys() {
                mark_dims(dims);
            }
            for (step, dims) in minute.steps.keys() {
                mark_dims(dims);
                steps_seen.push(*step);
            }
            for (step, _, dims) in minute.kinds.keys() {
                mark_dims(dims);
                steps_seen.push(*step);
            }
            for step in steps_seen {
                if step >= CUSTOM_STEP {
                    mark(n, step - CUSTOM_STEP);
                }
            }
        }
        for (d, referenced) in referenced.iter().enumerate() {
            if self.retired[d].is_empty() {
                continue;
            }
            let pending = std::mem::take(&mut self.retired[d]);
            let cohort = if d < n {
                &mut self.cohorts[d]
            } else {
                &mut self.steps
            };
            for id in pending {
                if referenced.get(id as usize).copied().unwrap_or(false) {
                    self.retired[d].push(id);
                } else {
                    cohort.store.release(id);
                }
            }
        }
    }
}

/// Per step and cohort while a breakdown is summed.
#[derive(Default)]
struct StepSum {
    runs: u64,
    failures: u64,
    root_causes: u64,
    latency: Vec<u64>,
    findings: Vec<(KindId, u64)>,
    root_cause_kinds: Vec<(KindId, u64)>,
}

fn add_kind(list: &mut Vec<(KindId, u64)>, kind: KindId, n: u64) {
    if n == 0 {
        return;
    }
    match list.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, c)) => *c += n,
        None => list.push((kind, n)),
    }
}

/// `dims` keeping only the `by` dimensions, in `by` order.
fn project(dims: &DimKey, by: &[usize]) -> DimKey {
    let mut out = ALL_OTHER;
    for (i, &d) in by.iter().enumerate() {
        out[i] = dims[d];
    }
    out
}

impl State {
    fn breakdown(
        &self,
        config: &AggregateConfig,
        query: &BreakdownQuery,
        now: u64,
    ) -> Result<Breakdown, QueryError> {
        let horizon = self.ring.horizon();
        let beyond = QueryError::BeyondHorizon {
            horizon_minutes: horizon,
        };
        // With nothing counted yet, the newest minute is the wall clock's.
        let newest = self.ring.newest().unwrap_or_else(|| {
            now.saturating_add(config.future_tolerance.as_nanos() as u64) / NANOS_PER_MINUTE
        });
        let oldest = newest.saturating_sub(horizon - 1);
        let (from, to) = match query.window {
            Window::Last { minutes } => {
                if minutes == 0 || minutes > horizon {
                    return Err(beyond);
                }
                (newest.saturating_sub(minutes - 1), newest)
            }
            Window::Range { from, to } => {
                if from >= to {
                    return Err(QueryError::EmptyRange);
                }
                let (from, to) = (from / NANOS_PER_MINUTE, (to - 1) / NANOS_PER_MINUTE);
                if from < oldest {
                    return Err(beyond);
                }
                (from, to)
            }
        };
        let by = &query.by;

        let mut totals = OutcomeCounts::default();
        let mut trajectories: HashMap<DimKey, OutcomeCounts> = HashMap::new();
        let mut steps: HashMap<(StepId, DimKey), StepSum> = HashMap::new();
        for minute in self.ring.range(from, to) {
            for (dims, cell) in &minute.trajectories {
                let row = trajectories.entry(project(dims, by)).or_default();
                for counts in [&mut totals, row] {
                    counts.success += cell[0] as u64;
                    counts.recovered += cell[1] as u64;
                    counts.failed += cell[2] as u64;
                }
            }
            for ((step, dims), cell) in &minute.steps {
                let sum = steps.entry((*step, project(dims, by))).or_default();
                sum.runs += cell.runs as u64;
                sum.failures += cell.failed_runs as u64;
                sum.root_causes += cell.root_causes as u64;
                cell.latency.merge_into(&mut sum.latency);
            }
            for ((step, kind, dims), cell) in &minute.kinds {
                let sum = steps.entry((*step, project(dims, by))).or_default();
                add_kind(&mut sum.findings, *kind, cell.findings as u64);
                add_kind(&mut sum.root_cause_kinds, *kind, cell.root_causes as u64);
            }
        }

        let cohort = |dims: &DimKey| -> CohortValues {
            by.iter()
                .enumerate()
                .map(|(i, &d)| match dims[i] {
                    UNSET => None,
                    id => Some(self.cohorts[d].store.name_arc(id)),
                })
                .collect()
        };
        let kinds = |list: &[(KindId, u64)]| {
            let mut named: Vec<(Arc<str>, u64)> = Vec::with_capacity(list.len());
            for &(k, n) in list {
                let name = kind_name(k, &self.custom_kinds);
                match named.iter_mut().find(|(x, _)| *x == name) {
                    Some((_, c)) => *c += n,
                    None => named.push((name, n)),
                }
            }
            named.sort();
            named
        };
        let mut trajectory_rows: Vec<TrajectoryRow> = trajectories
            .iter()
            .map(|(dims, counts)| TrajectoryRow {
                cohort: cohort(dims),
                counts: *counts,
            })
            .collect();
        trajectory_rows.sort_by(|a, b| a.cohort.cmp(&b.cohort));
        let mut step_rows: Vec<(StepId, StepRow)> = steps
            .iter()
            .map(|((step, dims), sum)| {
                let row = StepRow {
                    step: step_name(*step, |c| self.steps.store.name_arc(c)),
                    cohort: cohort(dims),
                    runs: sum.runs,
                    failures: sum.failures,
                    root_causes: sum.root_causes,
                    p50_ms: buckets::quantile_ms(&sum.latency, 0.50),
                    p90_ms: buckets::quantile_ms(&sum.latency, 0.90),
                    p99_ms: buckets::quantile_ms(&sum.latency, 0.99),
                    findings_by_kind: kinds(&sum.findings),
                    root_causes_by_kind: kinds(&sum.root_cause_kinds),
                };
                // Built-in steps in pipeline order, then custom steps by name.
                (
                    if *step < CUSTOM_STEP {
                        *step
                    } else {
                        CUSTOM_STEP
                    },
                    row,
                )
            })
            .collect();
        step_rows
            .sort_by(|(a, ra), (b, rb)| (a, &ra.step, &ra.cohort).cmp(&(b, &rb.step, &rb.cohort)));
        Ok(Breakdown {
            from_unix_nano: from.saturating_mul(NANOS_PER_MINUTE),
            to_unix_nano: to.saturating_add(1).saturating_mul(NANOS_PER_MINUTE),
            by: by
                .iter()
                .map(|&d| config.dimensions[d].name.clone())
                .collect(),
            totals,
            trajectories: trajectory_rows,
            steps: step_rows.into_iter().map(|(_, r)| r).collect(),
        })
    }
}
