//! Bounded label values per dimension: a Space-Saving heavy-hitters sketch decides which
//! values keep their own label; the rest is folded into `other`.
//!
//! One [`Cohort`] per dimension (and one for custom step names). It owns one sketch and
//! two promoted sets over it: the top `top_k` values for `/metrics`, and a larger set for
//! the minute buckets behind the breakdown API. A value is promoted while its set has
//! room; when the set is full, a value replaces the weakest promoted value only once its
//! guaranteed count (count minus the sketch's over-estimate) beats the weakest one's by a
//! margin. So a flood of values seen once each never displaces anything, and a value
//! that is really frequent gets its label even when the flood came first. Counts are
//! halved now and then, so that last week's heavy hitters do not hold their labels
//! forever.
//!
//! Ids are small integers ([`ValueId`]); [`OTHER`] and [`UNSET`] always exist. A demoted
//! value's id is *retired*: the owner of the ids (the Prometheus exporter, the minute
//! buckets) releases it once nothing refers to it, and only then is it reused.

use std::collections::HashMap;
use std::sync::Arc;

/// A value's id within one promoted set.
pub type ValueId = u16;

/// Values folded by the cardinality budget.
pub const OTHER: ValueId = 0;
/// No value: none of the dimension's keys is present.
pub const UNSET: ValueId = 1;

/// The label text of [`OTHER`].
pub const OTHER_LABEL: &str = "other";

/// Longest label value kept; longer values are cut at a char boundary.
pub const MAX_VALUE_BYTES: usize = 128;

/// Space-Saving (Metwally et al.): `slots` counters; an untracked value takes over the
/// smallest counter, inheriting its count as its error.
pub(crate) struct SpaceSaving {
    slots: Vec<Slot>,
    index: HashMap<Arc<str>, usize>,
    capacity: usize,
    observations: u64,
    decay_every: u64,
}

struct Slot {
    value: Arc<str>,
    count: u64,
    error: u64,
}

impl SpaceSaving {
    pub(crate) fn new(capacity: usize) -> SpaceSaving {
        let capacity = capacity.max(1);
        SpaceSaving {
            slots: Vec::with_capacity(capacity),
            index: HashMap::with_capacity(capacity),
            capacity,
            observations: 0,
            decay_every: 64 * capacity as u64,
        }
    }

    /// Counts one occurrence of `value`; returns its guaranteed count (at least 1).
    pub(crate) fn observe(&mut self, value: &str) -> u64 {
        self.observations += 1;
        if self.observations.is_multiple_of(self.decay_every) {
            self.decay();
        }
        if let Some(&i) = self.index.get(value) {
            let slot = &mut self.slots[i];
            slot.count += 1;
            return slot.count - slot.error;
        }
        let value: Arc<str> = Arc::from(value);
        if self.slots.len() < self.capacity {
            self.index.insert(value.clone(), self.slots.len());
            self.slots.push(Slot {
                value,
                count: 1,
                error: 0,
            });
            return 1;
        }
        // Replace the smallest counter. O(slots), only for untracked values.
        let (i, min) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.count)
            .map(|(i, s)| (i, s.count))
            .unwrap_or((0, 0));
        let slot = &mut self.slots[i];
        self.index.remove(&slot.value);
        self.index.insert(value.clone(), i);
        *slot = Slot {
            value,
            count: min + 1,
            error: min,
        };
        1
    }

    /// The guaranteed count of `value`, 0 when it is not tracked.
    pub(crate) fn guaranteed(&self, value: &str) -> u64 {
        self.index
            .get(value)
            .map(|&i| self.slots[i].count - self.slots[i].error)
            .unwrap_or(0)
    }

    fn decay(&mut self) {
        for slot in &mut self.slots {
            slot.count = slot.count.div_ceil(2);
            slot.error /= 2;
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

/// The values of one promoted set and their ids.
pub(crate) struct Promoted {
    capacity: usize,
    /// `names[id]`: the value of a live or retired id; `None` for a free id.
    names: Vec<Option<Arc<str>>>,
    by_value: HashMap<Arc<str>, ValueId>,
    free: Vec<ValueId>,
    /// Ids demoted and not yet released by their owner.
    retired: Vec<ValueId>,
    /// Upper bound of the weakest promoted guaranteed count, and how many candidates
    /// may be refused on it before it is recomputed.
    weakest_hint: u64,
    scan_budget: usize,
    max_ids: usize,
}

impl Promoted {
    /// `capacity` promoted values; at most `max_ids` ids (live, retired and the two
    /// reserved ones) exist at once.
    pub(crate) fn new(capacity: usize, max_ids: usize) -> Promoted {
        let max_ids = max_ids.clamp(capacity + 2, ValueId::MAX as usize);
        Promoted {
            capacity,
            names: vec![Some(OTHER_LABEL.into()), Some("".into())],
            by_value: HashMap::with_capacity(capacity),
            free: Vec::new(),
            retired: Vec::new(),
            weakest_hint: 0,
            scan_budget: 0,
            max_ids,
        }
    }

    /// The id to count `value` under; `guaranteed` is its count in the sketch.
    fn place(&mut self, value: &str, guaranteed: u64, sketch: &SpaceSaving) -> ValueId {
        if let Some(&id) = self.by_value.get(value) {
            return id;
        }
        if self.by_value.len() < self.capacity {
            return self.promote(value).unwrap_or(OTHER);
        }
        // Full: only a value seen more than once can displace one, and only by a margin
        // (hysteresis against two equally frequent values taking turns).
        if guaranteed <= 1 {
            return OTHER;
        }
        if self.scan_budget > 0 && guaranteed <= margin(self.weakest_hint) {
            self.scan_budget -= 1;
            return OTHER;
        }
        let weakest = self
            .by_value
            .iter()
            .map(|(v, &id)| (sketch.guaranteed(v), id))
            .min();
        let Some((weakest_g, weakest_id)) = weakest else {
            return OTHER;
        };
        self.weakest_hint = weakest_g;
        self.scan_budget = self.capacity;
        if guaranteed <= margin(weakest_g)
            || self.free.is_empty() && self.names.len() >= self.max_ids
        {
            return OTHER;
        }
        self.demote(weakest_id);
        self.weakest_hint = 0;
        self.scan_budget = 0;
        self.promote(value).unwrap_or(OTHER)
    }

    fn promote(&mut self, value: &str) -> Option<ValueId> {
        let id = match self.free.pop() {
            Some(id) => id,
            None if self.names.len() < self.max_ids => {
                self.names.push(None);
                (self.names.len() - 1) as ValueId
            }
            None => return None,
        };
        let name: Arc<str> = Arc::from(value);
        self.names[id as usize] = Some(name.clone());
        self.by_value.insert(name, id);
        Some(id)
    }

    fn demote(&mut self, id: ValueId) {
        self.by_value.retain(|_, v| *v != id);
        self.retired.push(id);
    }

    /// Ids demoted since the last call; the caller releases each once unused.
    pub(crate) fn take_retired(&mut self) -> Vec<ValueId> {
        std::mem::take(&mut self.retired)
    }

    /// Makes a retired id reusable.
    pub(crate) fn release(&mut self, id: ValueId) {
        if id > UNSET
            && (id as usize) < self.names.len()
            && !self.by_value.values().any(|&v| v == id)
        {
            self.names[id as usize] = None;
            self.free.push(id);
        }
    }

    /// The label text of `id` as a shared string.
    pub(crate) fn name_arc(&self, id: ValueId) -> Arc<str> {
        match self.names.get(id as usize) {
            Some(Some(name)) => name.clone(),
            _ => Arc::from(OTHER_LABEL),
        }
    }

    #[cfg(test)]
    pub(crate) fn promoted_len(&self) -> usize {
        self.by_value.len()
    }

    pub(crate) fn id_count(&self) -> usize {
        self.names.len()
    }
}

fn margin(g: u64) -> u64 {
    g + g / 8 + 1
}

/// `value` cut to at most [`MAX_VALUE_BYTES`] at a char boundary.
pub(crate) fn truncate(value: &str) -> &str {
    if value.len() <= MAX_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// The bounded values of one dimension.
pub(crate) struct Cohort {
    sketch: SpaceSaving,
    /// Labels on `/metrics`: the top `top_k`.
    pub(crate) prom: Promoted,
    /// Values in the minute buckets for the breakdown API.
    pub(crate) store: Promoted,
}

impl Cohort {
    pub(crate) fn new(top_k: usize, store_k: usize) -> Cohort {
        let store_k = store_k.max(top_k);
        Cohort {
            sketch: SpaceSaving::new((4 * store_k).max(256)),
            // Prometheus series of a demoted value are removed at once, so few ids
            // linger; bucket ids linger until their minutes leave the horizon.
            prom: Promoted::new(top_k, 2 * top_k + 2),
            store: Promoted::new(store_k, 4 * store_k + 2),
        }
    }

    /// Counts one occurrence; returns the (Prometheus, bucket) ids to count it under.
    pub(crate) fn observe(&mut self, value: Option<&str>) -> (ValueId, ValueId) {
        let Some(value) = value else {
            return (UNSET, UNSET);
        };
        let value = truncate(value);
        let g = self.sketch.observe(value);
        let prom = self.prom.place(value, g, &self.sketch);
        let store = self.store.place(value, g, &self.sketch);
        (prom, store)
    }

    #[cfg(test)]
    pub(crate) fn sketch_len(&self) -> usize {
        self.sketch.len()
    }
}
