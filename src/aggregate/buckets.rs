//! Minute buckets in event time, kept in a ring that covers the horizon.
//!
//! A bucket holds, for one minute of event time, counters keyed by small integer ids:
//! trajectories by outcome per run cohort, and per step and step cohort the runs,
//! failed runs, root causes and a compact latency histogram; findings and root causes
//! by kind in a side table (they are rarer than runs).
//!
//! Memory, measured by `bucket_memory_is_small` in the tests: a step cell is 48 bytes
//! in the map plus 4 bytes per distinct latency bucket (a run adds at most one), a
//! trajectory cell 32 bytes, a kind cell 32 bytes, plus the hash tables' slack (up to
//! 2x). A minute with 200 step cohorts is about 20 KiB; a 24 h horizon at that rate
//! about 30 MiB. The per-minute series cap (`max_series`) bounds the worst case.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::aggregate::cohort::{ValueId, OTHER};
use crate::aggregate::config::MAX_DIMENSIONS;

/// Bucket ids of the dimension values of one series.
pub(crate) type DimKey = [ValueId; MAX_DIMENSIONS];

/// A step id: the built-in kinds in `StepKind::BUILTIN` order, then custom steps.
pub(crate) type StepId = u16;
/// A finding kind id.
pub(crate) type KindId = u16;

pub(crate) const ALL_OTHER: DimKey = [OTHER; MAX_DIMENSIONS];

/// FxHash (rustc's hasher): keys are small integer ids chosen by us, never raw input,
/// so a fast non-keyed hash is safe here.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(b as u64);
        }
    }
    fn write_u16(&mut self, n: u16) {
        self.add(n as u64);
    }
    fn write_u32(&mut self, n: u32) {
        self.add(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Latency in a log-linear scale of microseconds: exact below 16 µs, then 16
/// sub-buckets per power of two (each at most 1/16 = 6.25% wide; the midpoint is off
/// by at most 3.2%). Indices fit in 10 bits (at most 975).
pub(crate) fn latency_index(micros: u64) -> u16 {
    if micros < 16 {
        return micros as u16;
    }
    let e = 63 - micros.leading_zeros() as u64;
    let sub = (micros >> (e - 4)) & 0xF;
    ((e - 3) * 16 + sub) as u16
}

/// The midpoint of latency bucket `index`, in microseconds.
pub(crate) fn latency_value(index: u16) -> f64 {
    if index < 16 {
        return index as f64;
    }
    let e = (index / 16) as u32 + 3;
    let sub = (index % 16) as u64;
    let low = (16 + sub) << (e - 4);
    let width = 1u64 << (e - 4);
    low as f64 + width as f64 / 2.0
}

const COUNT_BITS: u32 = 22;
const COUNT_MAX: u32 = (1 << COUNT_BITS) - 1;

/// A sparse latency histogram: each entry packs a bucket index (10 bits) and a count
/// (22 bits) into 4 bytes. A count that would overflow starts a second entry.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latency(Vec<u32>);

impl Latency {
    pub(crate) fn record(&mut self, micros: u64) {
        let index = latency_index(micros) as u32;
        for entry in self.0.iter_mut() {
            if *entry >> COUNT_BITS == index && *entry & COUNT_MAX < COUNT_MAX {
                *entry += 1;
                return;
            }
        }
        self.0.push(index << COUNT_BITS | 1);
    }

    /// Adds this histogram's counts to a dense array indexed by bucket.
    pub(crate) fn merge_into(&self, dense: &mut Vec<u64>) {
        for &entry in &self.0 {
            let index = (entry >> COUNT_BITS) as usize;
            if dense.len() <= index {
                dense.resize(index + 1, 0);
            }
            dense[index] += (entry & COUNT_MAX) as u64;
        }
    }

    /// (bucket index, count) pairs, for persisting.
    pub(crate) fn entries(&self) -> Vec<(u16, u32)> {
        self.0
            .iter()
            .map(|&e| ((e >> COUNT_BITS) as u16, e & COUNT_MAX))
            .collect()
    }

    /// Adds `count` samples to bucket `index` (from [`Latency::entries`]).
    pub(crate) fn add(&mut self, index: u16, mut count: u32) {
        let index = index as u32 & 0x3FF;
        for entry in self.0.iter_mut() {
            if count == 0 {
                return;
            }
            if *entry >> COUNT_BITS == index {
                let room = COUNT_MAX - (*entry & COUNT_MAX);
                let n = room.min(count);
                *entry += n;
                count -= n;
            }
        }
        while count > 0 {
            let n = count.min(COUNT_MAX);
            self.0.push(index << COUNT_BITS | n);
            count -= n;
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.0.capacity() * 4
    }
}

/// The value at quantile `q` of a dense histogram, in milliseconds; `None` when empty.
pub(crate) fn quantile_ms(dense: &[u64], q: f64) -> Option<f64> {
    let total: u64 = dense.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (index, &count) in dense.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(latency_value(index as u16) / 1000.0);
        }
    }
    None
}

#[derive(Debug, Clone, Default)]
pub(crate) struct StepCell {
    pub(crate) runs: u32,
    pub(crate) failed_runs: u32,
    pub(crate) root_causes: u32,
    pub(crate) latency: Latency,
}

/// Findings and root causes of one kind.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KindCell {
    pub(crate) findings: u32,
    pub(crate) root_causes: u32,
}

/// Trajectories by outcome: success, recovered, failed.
pub(crate) type OutcomeCell = [u32; 3];

/// One minute of event time.
#[derive(Debug, Default)]
pub(crate) struct Minute {
    /// The minute (unix time / 60 s), or `None` for an empty slot.
    pub(crate) minute: Option<u64>,
    pub(crate) trajectories: FxMap<DimKey, OutcomeCell>,
    pub(crate) steps: FxMap<(StepId, DimKey), StepCell>,
    pub(crate) kinds: FxMap<(StepId, KindId, DimKey), KindCell>,
}

impl Minute {
    fn reset(&mut self, minute: Option<u64>) {
        self.minute = minute;
        // Drop the tables (not just clear them) so a burst does not pin its memory.
        self.trajectories = FxMap::default();
        self.steps = FxMap::default();
        self.kinds = FxMap::default();
    }

    /// `key`, or the all-`other` key when the table is at `cap` and lacks `key`.
    pub(crate) fn trajectory_key(&self, key: DimKey, cap: usize) -> DimKey {
        if self.trajectories.len() >= cap && !self.trajectories.contains_key(&key) {
            ALL_OTHER
        } else {
            key
        }
    }

    /// The cell of [`Minute::trajectory_key`].
    pub(crate) fn trajectory(&mut self, key: DimKey, cap: usize) -> &mut OutcomeCell {
        let key = self.trajectory_key(key, cap);
        self.trajectories.entry(key).or_default()
    }

    /// `(step, dims)`, or the step with all-`other` dimensions when the table is at
    /// `cap` and lacks it.
    pub(crate) fn step_key(&self, step: StepId, dims: DimKey, cap: usize) -> (StepId, DimKey) {
        let key = (step, dims);
        if self.steps.len() >= cap && !self.steps.contains_key(&key) {
            (step, ALL_OTHER)
        } else {
            key
        }
    }

    /// The cell of [`Minute::step_key`].
    pub(crate) fn step(&mut self, step: StepId, dims: DimKey, cap: usize) -> &mut StepCell {
        let key = self.step_key(step, dims, cap);
        self.steps.entry(key).or_default()
    }

    /// `(step, kind, dims)`, or with all-`other` dimensions when the table is at `cap`
    /// and lacks it.
    pub(crate) fn kind_key(
        &self,
        step: StepId,
        kind: KindId,
        dims: DimKey,
        cap: usize,
    ) -> (StepId, KindId, DimKey) {
        let key = (step, kind, dims);
        if self.kinds.len() >= cap && !self.kinds.contains_key(&key) {
            (step, kind, ALL_OTHER)
        } else {
            key
        }
    }

    /// The cell of [`Minute::kind_key`].
    pub(crate) fn kind(
        &mut self,
        step: StepId,
        kind: KindId,
        dims: DimKey,
        cap: usize,
    ) -> &mut KindCell {
        let key = self.kind_key(step, kind, dims, cap);
        self.kinds.entry(key).or_default()
    }

    /// Approximate bytes held: table slots (capacity, not length) plus histograms.
    pub(crate) fn bytes(&self) -> usize {
        let slot = |k: usize, v: usize| k + v + 1;
        self.trajectories.capacity()
            * slot(
                std::mem::size_of::<DimKey>(),
                std::mem::size_of::<OutcomeCell>(),
            )
            + self.steps.capacity()
                * slot(
                    std::mem::size_of::<(StepId, DimKey)>(),
                    std::mem::size_of::<StepCell>(),
                )
            + self.kinds.capacity()
                * slot(
                    std::mem::size_of::<(StepId, KindId, DimKey)>(),
                    std::mem::size_of::<KindCell>(),
                )
            + self
                .steps
                .values()
                .map(|c| c.latency.heap_bytes())
                .sum::<usize>()
    }

    pub(crate) fn series(&self) -> usize {
        self.trajectories.len() + self.steps.len() + self.kinds.len()
    }
}

/// An event minute older than the horizon behind the newest minute (or newer than the
/// newest): it has no bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutsideHorizon;

/// The ring of minutes: slot `m % horizon` holds minute `m`.
pub(crate) struct Ring {
    slots: Vec<Minute>,
    newest: Option<u64>,
}

impl Ring {
    pub(crate) fn new(horizon_minutes: u64) -> Ring {
        Ring {
            slots: (0..horizon_minutes.max(1))
                .map(|_| Minute::default())
                .collect(),
            newest: None,
        }
    }

    pub(crate) fn horizon(&self) -> u64 {
        self.slots.len() as u64
    }

    pub(crate) fn newest(&self) -> Option<u64> {
        self.newest
    }

    /// The oldest minute kept, given the newest.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.newest
            .map(|n| n.saturating_sub(self.horizon().saturating_sub(1)))
    }

    /// Moves the newest minute forward to `minute` (never back), emptying the slots
    /// that fall out of the horizon.
    pub(crate) fn advance(&mut self, minute: u64) {
        let h = self.horizon();
        match self.newest {
            Some(n) if minute <= n => return,
            Some(n) => {
                // Minutes (n - h, minute - h] leave the horizon.
                let leaving = (minute - n).min(h);
                for k in 0..leaving {
                    let m = n + 1 + k; // reuses the slot of minute m - h
                    let slot = &mut self.slots[(m % h) as usize];
                    if slot.minute.is_some() {
                        slot.reset(None);
                    }
                }
            }
            None => {}
        }
        self.newest = Some(minute);
    }

    /// The bucket of `minute`, after [`Ring::advance`] was called with the newest.
    pub(crate) fn slot(&mut self, minute: u64) -> Result<&mut Minute, OutsideHorizon> {
        let Some(oldest) = self.oldest() else {
            return Err(OutsideHorizon);
        };
        if minute < oldest || Some(minute) > self.newest {
            return Err(OutsideHorizon);
        }
        let h = self.horizon();
        let slot = &mut self.slots[(minute % h) as usize];
        if slot.minute != Some(minute) {
            slot.reset(Some(minute));
        }
        Ok(slot)
    }

    /// The non-empty minutes in `[from, to]`.
    pub(crate) fn range(&self, from: u64, to: u64) -> impl Iterator<Item = &Minute> {
        self.slots
            .iter()
            .filter(move |s| matches!(s.minute, Some(m) if m >= from && m <= to))
    }

    pub(crate) fn minutes(&self) -> impl Iterator<Item = &Minute> {
        self.slots.iter().filter(|s| s.minute.is_some())
    }
}
