//! Failure-cohort discovery: which conjunctions of up to three attribute predicates
//! (cohort dimensions, other low-cardinality attributes of the root span and
//! resource, numeric thresholds) fail significantly more than the rest of a sliding
//! window of recent trajectories; and the side-by-side comparison of two filters.
//!
//! - [`window`]: the ring buffer of the last `window` trajectories (default 50 000), one
//!   compact row each, values in capped dictionaries. Memory is bounded by the window.
//! - [`extract`]: an analysis into a row (dimensions read as `aggregate` reads them).
//! - [`mine`]: one mining run (items, bitmaps, Apriori, tests, Benjamini–Hochberg,
//!   pruning, ranking); its module documentation states the method.
//! - [`stats`]: Fisher, z-tests, BH, risk-ratio and difference intervals.
//! - [`compare`]: the compare endpoint's computation and filter syntax.
//! - [`CohortIndex`]: the pipeline sink (rows are taken in `finalize`, once per trace),
//!   the periodic miner (its own thread, every `mine_every_records` new rows or
//!   `mine_every`), on-demand runs, the two-consecutive-runs rule, and the cached
//!   results the API reads.
//!
//! Reason patterns: the blamed finding's pattern id comes from the pipeline's discovery
//! stage (the reason clusterer, run once per trace before any sink), with the analysis
//! given to [`Sink::finalize`] ([`Finalized::root_pattern`]): nothing is assigned twice
//! and nothing depends on the order of the sinks.

pub mod compare;
pub mod extract;
pub mod mine;
pub mod stats;
pub mod window;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::aggregate::Dimension;
use crate::model::Analysis;
use crate::pipeline::{Finalized, Sink};

pub use compare::{compare, Comparison, Filter, FilterError};
pub use mine::{mine, Clause, ClauseValue, Discovered, MineConfig, MineReport, Op, Snapshot};
pub use window::{RecordInput, Window};

/// Settings of cohort discovery.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortConfig {
    /// Trajectories in the sliding window.
    pub window: usize,
    /// Attribute slots (dimensions plus other attributes), at most 64.
    pub max_attributes: usize,
    /// Values with their own code per attribute; the rest is `other`.
    pub max_values: usize,
    /// Mine after this many new rows...
    pub mine_every_records: u64,
    /// ...or after this long with at least one new row.
    pub mine_every: Duration,
    /// Never mine more often than this: at high ingest rates `mine_every_records` is
    /// reached many times a second, and one run at a full window costs ~100 ms.
    pub min_interval: Duration,
    /// Consecutive runs a cohort must be significant in before it is reported.
    pub confirm_runs: u32,
    pub mine: MineConfig,
    /// Cohort dimensions (as configured for `aggregate`).
    pub dimensions: Vec<Dimension>,
}

impl Default for CohortConfig {
    fn default() -> CohortConfig {
        CohortConfig {
            window: 50_000,
            max_attributes: 24,
            max_values: 50,
            mine_every_records: 1_000,
            mine_every: Duration::from_secs(60),
            min_interval: Duration::from_secs(10),
            confirm_runs: 2,
            mine: MineConfig::default(),
            dimensions: crate::aggregate::config::default_dimensions(),
        }
    }
}

/// The results the API reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CohortResults {
    /// Confirmed cohorts (significant in `confirm_runs` consecutive runs), best first.
    pub cohorts: Vec<Discovered>,
    /// Significant in the latest run but not yet confirmed.
    pub pending: usize,
    /// Runs so far for this window.
    pub runs: u64,
    pub last: Option<MineReport>,
    /// Event time of the newest row when the run started.
    pub until_unix_nano: u64,
}

/// Which rows a run looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowSpec {
    /// The whole ring.
    Ring,
    /// Rows whose event time is within this many seconds of the newest row.
    Seconds(u64),
}

struct Tracked {
    results: CohortResults,
    /// Consecutive significant runs per cohort key.
    streak: HashMap<String, u32>,
}

/// Duration windows remembered (their streaks) at most.
const MAX_WINDOWS: usize = 8;
/// A duration window read within this long is re-mined with the ring.
const WINDOW_FOLLOW: Duration = Duration::from_secs(15 * 60);

/// The sink, miner and result cache. See the module documentation.
pub struct CohortIndex {
    config: CohortConfig,
    window: Mutex<Window>,
    tracked: Mutex<HashMap<WindowSpec, (Tracked, Instant)>>,
    /// Rows pushed since the last periodic run, and a wake-up for the miner thread.
    since: Mutex<u64>,
    wake: Condvar,
    /// Serialises runs so two callers never mine at once.
    running: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CohortIndex {
    pub fn new(config: CohortConfig) -> CohortIndex {
        let mut config = config;
        config.mine.preferred_keys = config.dimensions.iter().map(|d| d.name.clone()).collect();
        let window = Window::new(config.window, config.max_attributes, config.max_values);
        CohortIndex {
            config,
            window: Mutex::new(window),
            tracked: Mutex::new(HashMap::new()),
            since: Mutex::new(0),
            wake: Condvar::new(),
            running: Mutex::new(()),
        }
    }

    pub fn config(&self) -> &CohortConfig {
        &self.config
    }

    /// Adds one finalized analysis to the window.
    pub fn record(&self, analysis: &Analysis, root_pattern: Option<u64>) {
        let input = extract::record_input(analysis, &self.config.dimensions, root_pattern);
        self.push(&input);
    }

    /// Adds one row.
    pub fn push(&self, input: &RecordInput) {
        lock(&self.window).push(input);
        let mut since = lock(&self.since);
        *since += 1;
        if *since >= self.config.mine_every_records {
            self.wake.notify_one();
        }
    }

    /// Rows in the window.
    pub fn len(&self) -> usize {
        lock(&self.window).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the rows of `spec`.
    pub fn snapshot(&self, spec: WindowSpec) -> Snapshot {
        let w = lock(&self.window);
        let since = match spec {
            WindowSpec::Ring => None,
            WindowSpec::Seconds(s) => {
                let newest = w.rows().map(|r| w.end_unix_nano[r]).max().unwrap_or(0);
                Some(newest.saturating_sub(s.saturating_mul(1_000_000_000)))
            }
        };
        Snapshot::from_window(&w, since)
    }

    /// Runs one mining pass over `spec` now, applies the consecutive-runs rule and
    /// caches the results. Blocking (up to a few hundred ms): call it from a blocking
    /// thread, never on the async runtime.
    pub fn mine_now(&self, spec: WindowSpec) -> CohortResults {
        self.mine_spec(spec, true)
    }

    /// [`CohortIndex::mine_now`]; `read` marks the window as read now (the periodic
    /// miner's own runs do not).
    fn mine_spec(&self, spec: WindowSpec, read: bool) -> CohortResults {
        let _serial = lock(&self.running);
        let snap = self.snapshot(spec);
        let until = snap.end_unix_nano.iter().copied().max().unwrap_or(0);
        let report = mine(&snap, &self.config.mine);
        tracing::debug!(
            records = report.records,
            tests = report.tests,
            significant = report.significant,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "Cohort mining run."
        );
        let mut tracked = lock(&self.tracked);
        if !tracked.contains_key(&spec) && tracked.len() >= MAX_WINDOWS {
            // Forget the least recently used duration window (never the ring).
            let oldest = tracked
                .iter()
                .filter(|(k, _)| **k != WindowSpec::Ring)
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                tracked.remove(&k);
            }
        }
        let (t, at) = tracked.entry(spec).or_insert_with(|| {
            (
                Tracked {
                    results: CohortResults::default(),
                    streak: HashMap::new(),
                },
                Instant::now(),
            )
        });
        if read {
            *at = Instant::now();
        }
        // The first reading of a duration window has no earlier run to agree with, and
        // nothing would mine it again before the next call: it is confirmed by itself
        // (a second run over the same rows could only repeat it). Later readings see
        // new rows and keep the consecutive-runs rule.
        let first_reading = matches!(spec, WindowSpec::Seconds(_)) && t.results.runs == 0;
        let mut streak = HashMap::with_capacity(report.cohorts.len());
        let mut confirmed = Vec::new();
        let mut pending = 0;
        for c in &report.cohorts {
            let key = c.persistence_key();
            let s = if first_reading {
                self.config.confirm_runs
            } else {
                t.streak.get(&key).copied().unwrap_or(0) + 1
            };
            if s >= self.config.confirm_runs {
                confirmed.push(c.clone());
            } else {
                pending += 1;
            }
            streak.insert(key, s);
        }
        t.streak = streak;
        let mut last = report;
        last.cohorts.clear();
        t.results = CohortResults {
            cohorts: confirmed,
            pending,
            runs: t.results.runs + 1,
            last: Some(last),
            until_unix_nano: until,
        };
        t.results.clone()
    }

    /// True when the latest run of `spec` left cohorts waiting for confirmation.
    fn has_pending(&self, spec: WindowSpec) -> bool {
        lock(&self.tracked)
            .get(&spec)
            .is_some_and(|(t, _)| t.results.pending > 0)
    }

    /// Duration windows read within `within`, to keep fresh on the miner's timer.
    fn recent_windows(&self, within: Duration) -> Vec<WindowSpec> {
        lock(&self.tracked)
            .iter()
            .filter(|(k, (_, at))| **k != WindowSpec::Ring && at.elapsed() <= within)
            .map(|(k, _)| *k)
            .collect()
    }

    /// The cached results of `spec`, if it was mined.
    pub fn results(&self, spec: WindowSpec) -> Option<CohortResults> {
        lock(&self.tracked).get_mut(&spec).map(|(t, at)| {
            *at = Instant::now();
            t.results.clone()
        })
    }

    /// Starts the periodic miner on its own thread. The thread holds only a weak
    /// reference and ends once the index is dropped.
    pub fn spawn_miner(self: &Arc<CohortIndex>) -> std::io::Result<()> {
        let weak: Weak<CohortIndex> = Arc::downgrade(self);
        let every = self.config.mine_every;
        std::thread::Builder::new()
            .name("faultline-cohorts".into())
            .spawn(move || {
                let mut last_run = Instant::now();
                loop {
                    let Some(index) = weak.upgrade() else {
                        return;
                    };
                    let (due, new_rows) = {
                        let since = lock(&index.since);
                        let (since, _) = index
                            .wake
                            .wait_timeout(since, Duration::from_secs(1))
                            .unwrap_or_else(|e| e.into_inner());
                        let elapsed = last_run.elapsed();
                        let due = (*since >= index.config.mine_every_records
                            && elapsed >= index.config.min_interval)
                            || (*since > 0 && elapsed >= every);
                        (due, *since > 0)
                    };
                    // Cohorts waiting for confirmation never wait for traffic that may
                    // not come (the end of a backfill or a burst): they are re-mined
                    // on the timer, new rows or not.
                    let confirm = !due
                        && !new_rows
                        && last_run.elapsed() >= index.config.min_interval
                        && index.has_pending(WindowSpec::Ring);
                    if due || confirm {
                        *lock(&index.since) = 0;
                        index.mine_spec(WindowSpec::Ring, false);
                        // Duration windows read lately follow the ring, so that their
                        // cached answer does not stay at the rows of their first call.
                        if due {
                            for spec in index.recent_windows(WINDOW_FOLLOW) {
                                index.mine_spec(spec, false);
                            }
                        }
                        last_run = Instant::now();
                    }
                }
            })
            .map(|_| ())
    }
}

impl Sink for CohortIndex {
    fn publish(&self, _analysis: Arc<Analysis>) {}

    fn finalize(&self, analysis: &Finalized) {
        self.record(analysis, analysis.root_pattern().map(|p| p.0));
    }
}
