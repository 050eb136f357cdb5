//! Minute buckets in a name-keyed form, so that a store can keep the exact per-minute
//! counts and hand them back after a restart.
//!
//! [`Aggregator::export_minute`] turns one minute's id-keyed cells into
//! [`MinuteCounts`] (dimension values, step and kind names as text);
//! [`Aggregator::import_minutes`] adds such counts back into the buckets. Importing maps
//! names to ids through the same bounded cohorts as live counting (each imported cell is
//! one observation of its values in the sketch), so a restored process has the same
//! cardinality bounds as a live one. Prometheus counters are not restored: they are
//! cumulative per process, as Prometheus expects after a restart.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aggregate::buckets::{DimKey, Minute, StepId, ALL_OTHER};
use crate::aggregate::cohort::{OTHER, UNSET};
use crate::aggregate::{
    kind_name, step_name, Aggregator, State, CUSTOM_STEP, KIND_OTHER, NANOS_PER_MINUTE,
};
use crate::model::{FindingKind, StepKind};

/// A dimension value (or a custom step name) in a stored cell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DimValue {
    /// None of the dimension's keys was present.
    #[serde(rename = "u")]
    Unset,
    /// Folded by the cardinality budget.
    #[serde(rename = "o")]
    Other,
    #[serde(rename = "v")]
    Value(String),
}

/// Trajectories by outcome for one run cohort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrajectoryCounts {
    pub dims: Vec<DimValue>,
    /// success, recovered, failed.
    pub outcomes: [u32; 3],
}

/// One step in one step cohort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCounts {
    pub step: DimValue,
    pub dims: Vec<DimValue>,
    pub runs: u32,
    pub failed_runs: u32,
    pub root_causes: u32,
    /// (latency bucket index, count).
    pub latency: Vec<(u16, u32)>,
}

/// Findings and root causes of one kind for one step cohort; `kind` is `None` for
/// kinds folded into `other`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    pub step: DimValue,
    pub kind: Option<String>,
    pub dims: Vec<DimValue>,
    pub findings: u32,
    pub root_causes: u32,
}

/// Every count of one event minute.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MinuteCounts {
    /// Unix time / 60 s.
    pub minute: u64,
    /// The dimension names the `dims` lists follow, in order. A stored minute whose
    /// names differ from the configured dimensions is mapped by name.
    pub dimensions: Vec<String>,
    pub trajectories: Vec<TrajectoryCounts>,
    pub steps: Vec<StepCounts>,
    pub kinds: Vec<KindCounts>,
}

impl MinuteCounts {
    /// Adds `other`'s counts (of the same minute) to these. The result follows
    /// `other`'s dimension names (the configured ones, when `other` is fresh counts):
    /// these cells are first mapped to them by name, as [`Aggregator::import_minutes`]
    /// maps a stored minute (a name `other` lacks is dropped, one these lack is unset).
    /// Cells with equal keys are summed; the order is the one `export_minute` gives.
    pub fn add(&mut self, other: &MinuteCounts) {
        self.add_all(std::iter::once(other));
    }

    /// [`MinuteCounts::add`] of each of `others` (of the same minute) in one pass; the
    /// result follows the last one's dimension names.
    pub fn add_all<'a>(&mut self, others: impl IntoIterator<Item = &'a MinuteCounts>) {
        let others: Vec<&MinuteCounts> = others.into_iter().collect();
        let Some(&last) = others.last() else {
            return;
        };
        let names = last.dimensions.clone();
        let mut trajectories: BTreeMap<Vec<DimValue>, [u32; 3]> = BTreeMap::new();
        let mut steps: BTreeMap<(DimValue, Vec<DimValue>), StepCounts> = BTreeMap::new();
        type KindKey = (DimValue, Option<String>, Vec<DimValue>);
        let mut kinds: BTreeMap<KindKey, KindCounts> = BTreeMap::new();
        let mine = std::mem::take(self);
        for m in std::iter::once(&mine).chain(others.iter().copied()) {
            // Where each of `names` is in this minute's dimensions.
            let map: Option<Vec<Option<usize>>> = (m.dimensions != names).then(|| {
                names
                    .iter()
                    .map(|name| m.dimensions.iter().position(|n| n == name))
                    .collect()
            });
            let dims = |d: &Vec<DimValue>| -> Vec<DimValue> {
                match &map {
                    None => d.clone(),
                    Some(map) => map
                        .iter()
                        .map(|i| i.and_then(|i| d.get(i).cloned()).unwrap_or(DimValue::Unset))
                        .collect(),
                }
            };
            for t in &m.trajectories {
                let cell = trajectories.entry(dims(&t.dims)).or_default();
                for (c, n) in cell.iter_mut().zip(t.outcomes) {
                    *c = c.saturating_add(n);
                }
            }
            for s in &m.steps {
                match steps.entry((s.step.clone(), dims(&s.dims))) {
                    Entry::Vacant(v) => {
                        let dims = v.key().1.clone();
                        v.insert(StepCounts { dims, ..s.clone() });
                    }
                    Entry::Occupied(mut o) => {
                        let cell = o.get_mut();
                        cell.runs = cell.runs.saturating_add(s.runs);
                        cell.failed_runs = cell.failed_runs.saturating_add(s.failed_runs);
                        cell.root_causes = cell.root_causes.saturating_add(s.root_causes);
                        cell.latency.extend_from_slice(&s.latency);
                    }
                }
            }
            for k in &m.kinds {
                match kinds.entry((k.step.clone(), k.kind.clone(), dims(&k.dims))) {
                    Entry::Vacant(v) => {
                        let dims = v.key().2.clone();
                        v.insert(KindCounts { dims, ..k.clone() });
                    }
                    Entry::Occupied(mut o) => {
                        let cell = o.get_mut();
                        cell.findings = cell.findings.saturating_add(k.findings);
                        cell.root_causes = cell.root_causes.saturating_add(k.root_causes);
                    }
                }
            }
        }
        *self = MinuteCounts {
            minute: mine.minute.max(last.minute),
            dimensions: names,
            trajectories: trajectories
                .into_iter()
                .map(|(dims, outcomes)| TrajectoryCounts { dims, outcomes })
                .collect(),
            steps: steps
                .into_values()
                .map(|mut s| {
                    // Entries appended above: one per bucket, summed, in bucket order.
                    let mut latency: BTreeMap<u16, u32> = BTreeMap::new();
                    for (index, count) in s.latency.drain(..) {
                        let c = latency.entry(index).or_default();
                        *c = c.saturating_add(count);
                    }
                    s.latency = latency.into_iter().collect();
                    s
                })
                .collect(),
            kinds: kinds.into_values().collect(),
        };
    }
}

/// The minute an analysis ending at `end_unix_nano` is counted in, given the wall
/// clock (the same clamping as [`Aggregator::record`]).
pub fn minute_of(config: &crate::aggregate::AggregateConfig, end_unix_nano: u64, now: u64) -> u64 {
    let limit = now.saturating_add(config.future_tolerance.as_nanos() as u64);
    end_unix_nano.min(limit) / NANOS_PER_MINUTE
}

impl Aggregator {
    /// The counts of event minute `minute`, or `None` when it has no bucket (outside the
    /// horizon, or nothing counted).
    pub fn export_minute(&self, minute: u64) -> Option<MinuteCounts> {
        let state = self.lock();
        let slot = state.ring.range(minute, minute).next()?;
        Some(state.export(&self.config, minute, slot))
    }

    /// Adds stored minutes to the buckets (typically at startup, before live counting).
    /// Minutes outside the horizon behind the newest one are skipped; returns how many
    /// minutes were imported.
    pub fn import_minutes(&self, minutes: &[MinuteCounts]) -> usize {
        let cap = self.config.max_series;
        let mut state = self.lock();
        if let Some(newest) = minutes.iter().map(|m| m.minute).max() {
            state.ring.advance(newest);
        }
        let mut imported = 0;
        for m in minutes {
            // Where each stored dimension goes in the configured order.
            let map: Vec<Option<usize>> = m
                .dimensions
                .iter()
                .map(|name| self.config.dimension_index(name))
                .collect();
            if state.ring.slot(m.minute).is_err() {
                continue;
            }
            imported += 1;
            for t in &m.trajectories {
                let key = state.import_dims(&map, &t.dims);
                if let Ok(slot) = state.ring.slot(m.minute) {
                    let cell = slot.trajectory(key, cap);
                    for (c, n) in cell.iter_mut().zip(t.outcomes) {
                        *c += n;
                    }
                }
            }
            for s in &m.steps {
                let step = state.import_step(&s.step);
                let key = state.import_dims(&map, &s.dims);
                if let Ok(slot) = state.ring.slot(m.minute) {
                    let cell = slot.step(step, key, cap);
                    cell.runs += s.runs;
                    cell.failed_runs += s.failed_runs;
                    cell.root_causes += s.root_causes;
                    for &(index, count) in &s.latency {
                        cell.latency.add(index, count);
                    }
                }
            }
            for k in &m.kinds {
                let step = state.import_step(&k.step);
                let kind = match &k.kind {
                    Some(name) => state.kind_id(&FindingKind::from_name(name)),
                    None => KIND_OTHER,
                };
                let key = state.import_dims(&map, &k.dims);
                if let Ok(slot) = state.ring.slot(m.minute) {
                    let cell = slot.kind(step, kind, key, cap);
                    cell.findings += k.findings;
                    cell.root_causes += k.root_causes;
                }
            }
        }
        state.release_retired(true);
        imported
    }
}

impl State {
    /// The cells of `slot` (a minute of the ring, or one analysis's own cells) as
    /// counts of `minute`, named.
    pub(crate) fn export(
        &self,
        config: &crate::aggregate::AggregateConfig,
        minute: u64,
        slot: &Minute,
    ) -> MinuteCounts {
        let n = config.dimensions.len();
        let dims = |key: &DimKey| -> Vec<DimValue> {
            (0..n)
                .map(|d| match key[d] {
                    UNSET => DimValue::Unset,
                    OTHER => DimValue::Other,
                    id => DimValue::Value(self.cohorts[d].store.name_arc(id).to_string()),
                })
                .collect()
        };
        let step = |id: StepId| -> DimValue {
            if id == CUSTOM_STEP + OTHER {
                DimValue::Other
            } else {
                DimValue::Value(step_name(id, |c| self.steps.store.name_arc(c)).to_string())
            }
        };
        let mut out = MinuteCounts {
            minute,
            dimensions: config
                .dimensions
                .iter()
                .map(|d| d.name.to_string())
                .collect(),
            ..MinuteCounts::default()
        };
        for (key, cell) in &slot.trajectories {
            out.trajectories.push(TrajectoryCounts {
                dims: dims(key),
                outcomes: *cell,
            });
        }
        for ((s, key), cell) in &slot.steps {
            out.steps.push(StepCounts {
                step: step(*s),
                dims: dims(key),
                runs: cell.runs,
                failed_runs: cell.failed_runs,
                root_causes: cell.root_causes,
                latency: cell.latency.entries(),
            });
        }
        for ((s, k, key), cell) in &slot.kinds {
            out.kinds.push(KindCounts {
                step: step(*s),
                kind: (*k != KIND_OTHER).then(|| kind_name(*k, &self.custom_kinds).to_string()),
                dims: dims(key),
                findings: cell.findings,
                root_causes: cell.root_causes,
            });
        }
        // A stable order, so equal counts give equal documents.
        out.trajectories.sort_by(|a, b| a.dims.cmp(&b.dims));
        out.steps
            .sort_by(|a, b| (&a.step, &a.dims).cmp(&(&b.step, &b.dims)));
        out.kinds
            .sort_by(|a, b| (&a.step, &a.kind, &a.dims).cmp(&(&b.step, &b.kind, &b.dims)));
        out
    }

    fn import_dims(&mut self, map: &[Option<usize>], values: &[DimValue]) -> DimKey {
        // Dimensions the stored minute does not name are unset.
        let mut key = ALL_OTHER;
        for k in key.iter_mut().take(self.cohorts.len()) {
            *k = UNSET;
        }
        for (value, d) in values.iter().zip(map) {
            let Some(d) = *d else { continue };
            let Some(cohort) = self.cohorts.get_mut(d) else {
                continue;
            };
            key[d] = match value {
                DimValue::Unset => UNSET,
                DimValue::Other => OTHER,
                DimValue::Value(v) => cohort.observe(Some(v)).1,
            };
        }
        key
    }

    fn import_step(&mut self, step: &DimValue) -> StepId {
        match step {
            DimValue::Value(name) => self.step_ids(&StepKind::from_name(name)).1,
            DimValue::Other | DimValue::Unset => CUSTOM_STEP + OTHER,
        }
    }
}
