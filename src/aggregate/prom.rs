//! The aggregation metrics on `/metrics`, with bounded label sets.
//!
//! Label values come only from the cohorts' promoted sets (top-K per dimension plus
//! `other`), the built-in step and finding kinds, and a bounded set of custom names.
//! Each family holds at most `max_series` series: past it, new label sets are counted
//! in one series whose labels are all `other`. When a value loses its place in the
//! top-K, its series are removed (Prometheus treats them as ended), so the cap is never
//! filled by stale values.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::aggregate::buckets::{DimKey, FxMap, KindId, StepId, ALL_OTHER};
use crate::aggregate::cohort::{ValueId, OTHER_LABEL};

/// A dynamic label set: `(name, value)` pairs in a fixed order per family.
pub(crate) type Labels = Vec<(Arc<str>, Arc<str>)>;

/// Id used for `step`, `kind` and `outcome` in the overflow series.
pub(crate) const OVERFLOW: u16 = u16::MAX;

fn duration_histogram() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// A family plus the counter handles already created, keyed by ids, so that the hot
/// path hashes a few integers instead of label strings.
struct Series<K> {
    family: Family<Labels, Counter>,
    handles: FxMap<K, (Counter, Labels)>,
}

impl<K: std::hash::Hash + Eq + Copy> Series<K> {
    fn new() -> Series<K> {
        Series {
            family: Family::default(),
            handles: FxMap::default(),
        }
    }

    /// The counter of `key`; past `cap` series, the counter of `overflow`.
    fn counter(
        &mut self,
        key: K,
        overflow: K,
        cap: usize,
        labels: impl FnOnce(K) -> Labels,
    ) -> &Counter {
        let key = if !self.handles.contains_key(&key) && self.handles.len() + 1 >= cap {
            overflow
        } else {
            key
        };
        let family = &self.family;
        &self
            .handles
            .entry(key)
            .or_insert_with(|| {
                let labels = labels(key);
                let counter = family.get_or_create_owned(&labels);
                (counter, labels)
            })
            .0
    }

    /// Removes the series whose key matches `pred`.
    fn remove_where(&mut self, pred: impl Fn(&K) -> bool) {
        let family = &self.family;
        self.handles.retain(|k, (_, labels)| {
            if pred(k) {
                family.remove(labels);
                false
            } else {
                true
            }
        });
    }

    fn len(&self) -> usize {
        self.handles.len()
    }
}

/// Names for the ids in a key, supplied by the aggregator's state.
pub(crate) trait Namer {
    fn dim(&self, d: usize, id: ValueId) -> Arc<str>;
    fn step(&self, id: StepId) -> Arc<str>;
    fn kind(&self, id: KindId) -> Arc<str>;
}

pub(crate) struct PromMetrics {
    dim_names: Vec<Arc<str>>,
    max_series: usize,
    trajectories: Series<(u16, DimKey)>,
    step_runs: Series<(StepId, DimKey)>,
    step_failures: Series<(StepId, KindId, DimKey)>,
    root_causes: Series<(StepId, KindId, DimKey)>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    duration_handles: FxMap<StepId, (Histogram, Labels)>,
}

const OUTCOMES: [&str; 3] = ["success", "recovered", "failed"];

impl PromMetrics {
    pub(crate) fn register(
        registry: &mut Registry,
        dim_names: Vec<Arc<str>>,
        max_series: usize,
    ) -> PromMetrics {
        let m = PromMetrics {
            dim_names,
            max_series,
            trajectories: Series::new(),
            step_runs: Series::new(),
            step_failures: Series::new(),
            root_causes: Series::new(),
            durations: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            duration_handles: FxMap::default(),
        };
        // prometheus-client appends `_total` to counters.
        crate::metrics::register(
            registry,
            &crate::metrics::TRAJECTORIES,
            m.trajectories.family.clone(),
        );
        crate::metrics::register(
            registry,
            &crate::metrics::STEP_RUNS,
            m.step_runs.family.clone(),
        );
        crate::metrics::register(
            registry,
            &crate::metrics::STEP_FAILURES,
            m.step_failures.family.clone(),
        );
        crate::metrics::register(
            registry,
            &crate::metrics::ROOT_CAUSES,
            m.root_causes.family.clone(),
        );
        crate::metrics::register(
            registry,
            &crate::metrics::STEP_DURATION_SECONDS,
            m.durations.clone(),
        );
        m
    }

    pub(crate) fn trajectory(&mut self, outcome: u16, dims: DimKey, namer: &dyn Namer) {
        let PromMetrics {
            dim_names,
            max_series,
            trajectories,
            ..
        } = self;
        let labels = |(o, d): (u16, DimKey)| {
            let mut labels = Labels::with_capacity(1 + dim_names.len());
            labels.push((
                Arc::from("outcome"),
                fixed(o, |o| Arc::from(OUTCOMES[(o as usize).min(2)])),
            ));
            dim_labels(dim_names, &d, namer, &mut labels);
            labels
        };
        trajectories
            .counter((outcome, dims), (OVERFLOW, ALL_OTHER), *max_series, labels)
            .inc();
    }

    pub(crate) fn step_run(&mut self, step: StepId, dims: DimKey, seconds: f64, namer: &dyn Namer) {
        let PromMetrics {
            dim_names,
            max_series,
            step_runs,
            durations,
            duration_handles,
            ..
        } = self;
        let labels = |(s, d): (StepId, DimKey)| {
            let mut labels = Labels::with_capacity(1 + dim_names.len());
            labels.push((Arc::from("step"), fixed(s, |s| namer.step(s))));
            dim_labels(dim_names, &d, namer, &mut labels);
            labels
        };
        step_runs
            .counter((step, dims), (OVERFLOW, ALL_OTHER), *max_series, labels)
            .inc();
        let step =
            if !duration_handles.contains_key(&step) && duration_handles.len() + 1 >= *max_series {
                OVERFLOW
            } else {
                step
            };
        duration_handles
            .entry(step)
            .or_insert_with(|| {
                let labels: Labels = vec![(Arc::from("step"), fixed(step, |s| namer.step(s)))];
                (durations.get_or_create_owned(&labels), labels)
            })
            .0
            .observe(seconds);
    }

    pub(crate) fn failure(&mut self, step: StepId, kind: KindId, dims: DimKey, namer: &dyn Namer) {
        let labels = kind_labels(&self.dim_names, namer);
        self.step_failures
            .counter(
                (step, kind, dims),
                (OVERFLOW, OVERFLOW, ALL_OTHER),
                self.max_series,
                labels,
            )
            .inc();
    }

    pub(crate) fn root_cause(
        &mut self,
        step: StepId,
        kind: KindId,
        dims: DimKey,
        namer: &dyn Namer,
    ) {
        let labels = kind_labels(&self.dim_names, namer);
        self.root_causes
            .counter(
                (step, kind, dims),
                (OVERFLOW, OVERFLOW, ALL_OTHER),
                self.max_series,
                labels,
            )
            .inc();
    }

    /// Removes every series that names value `id` of dimension `d`.
    pub(crate) fn forget_dim(&mut self, d: usize, id: ValueId) {
        self.trajectories.remove_where(|(_, k)| k[d] == id);
        self.step_runs.remove_where(|(_, k)| k[d] == id);
        self.step_failures.remove_where(|(_, _, k)| k[d] == id);
        self.root_causes.remove_where(|(_, _, k)| k[d] == id);
    }

    /// Removes every series that names step `step`.
    pub(crate) fn forget_step(&mut self, step: StepId) {
        self.step_runs.remove_where(|(s, _)| *s == step);
        self.step_failures.remove_where(|(s, _, _)| *s == step);
        self.root_causes.remove_where(|(s, _, _)| *s == step);
        if let Some((_, labels)) = self.duration_handles.remove(&step) {
            self.durations.remove(&labels);
        }
    }

    /// Series per family: trajectories, step runs, step failures, root causes, durations.
    pub(crate) fn series(&self) -> [usize; 5] {
        [
            self.trajectories.len(),
            self.step_runs.len(),
            self.step_failures.len(),
            self.root_causes.len(),
            self.duration_handles.len(),
        ]
    }
}

fn fixed(value: u16, name: impl FnOnce(u16) -> Arc<str>) -> Arc<str> {
    if value == OVERFLOW {
        Arc::from(OTHER_LABEL)
    } else {
        name(value)
    }
}

fn dim_labels(dim_names: &[Arc<str>], dims: &DimKey, namer: &dyn Namer, labels: &mut Labels) {
    for (d, name) in dim_names.iter().enumerate() {
        labels.push((name.clone(), namer.dim(d, dims[d])));
    }
}

fn kind_labels<'a>(
    dim_names: &'a [Arc<str>],
    namer: &'a dyn Namer,
) -> impl FnOnce((StepId, KindId, DimKey)) -> Labels + 'a {
    move |(s, k, d)| {
        let mut labels = Labels::with_capacity(2 + dim_names.len());
        labels.push((Arc::from("step"), fixed(s, |s| namer.step(s))));
        labels.push((Arc::from("kind"), fixed(k, |k| namer.kind(k))));
        dim_labels(dim_names, &d, namer, &mut labels);
        labels
    }
}
