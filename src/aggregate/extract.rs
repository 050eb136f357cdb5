//! What one analysis contributes to the counts: its step runs, the cohort value of each
//! dimension for the run and for every step run, and which runs failed or were blamed.
//!
//! Values are located, not copied: a located value is the index of the span that carries
//! it, and [`value_of`] reads it when the counts are taken. The scratch buffers are
//! reused between calls on the same thread, so extracting allocates nothing once warm.

use crate::conventions;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::aggregate::buckets::FxMap;
use crate::aggregate::config::{Dimension, Scope, MAX_DIMENSIONS};
use crate::model::{Analysis, Attributes, Resource, SpanRecord, Str, Trajectory, Value};

/// No span / no run.
pub(crate) const NONE: u32 = u32::MAX;
const UNRESOLVED: u32 = u32::MAX - 1;
const NO_KEY: u8 = u8::MAX;
const NOT_A_DIMENSION_KEY: u16 = u16::MAX;

/// Answers about attribute keys, remembered by the address of the key's interned copy:
/// interned strings are static and never freed, so an address names one string for
/// good, and a lookup hashes one word instead of the string. A key that is not interned
/// is answered afresh each time. At most [`KeyMemo::CAPACITY`] answers; the memo starts
/// over when full.
#[derive(Debug, Default)]
pub(crate) struct KeyMemo<V> {
    by_address: FxMap<usize, V>,
}

impl<V: Copy> KeyMemo<V> {
    const CAPACITY: usize = 16_384;

    /// The answer for `key`, computed by `answer` the first time.
    pub(crate) fn get(&mut self, key: &Str, answer: impl FnOnce(&str) -> V) -> V {
        let Some(interned) = Str::as_static(key) else {
            return answer(key);
        };
        let address = interned.as_ptr() as usize;
        if let Some(&known) = self.by_address.get(&address) {
            return known;
        }
        let value = answer(interned);
        if self.by_address.len() >= Self::CAPACITY {
            self.by_address.clear();
        }
        self.by_address.insert(address, value);
        value
    }

    pub(crate) fn clear(&mut self) {
        self.by_address.clear();
    }
}
/// Distinct values compared when looking for a run's most frequent value.
const MAX_CANDIDATES: usize = 16;

/// One step run: the outermost span of a run of one step, and what hangs under it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunInfo {
    /// Index of the run's first span (`StepAssignment::run_start`).
    pub(crate) span: u32,
    /// Per dimension, the span whose attribute gives this run's value, or [`NONE`].
    pub(crate) dims: [u32; MAX_DIMENSIONS],
    /// At least one original (not propagated) finding in this run.
    pub(crate) failed: bool,
}

/// Reusable buffers for [`extract`].
#[derive(Default)]
pub(crate) struct Scratch {
    /// `run_of[i]`: index in `runs` of the run span `i` belongs to, or [`NONE`].
    pub(crate) run_of: Vec<u32>,
    /// `found[i * MAX_DIMENSIONS + d]`: index of the first key of dimension `d` present
    /// on span `i`, or `NO_KEY`.
    found: Vec<u8>,
    pub(crate) runs: Vec<RunInfo>,
    /// Per dimension, the span giving the whole run's value, or [`NONE`].
    pub(crate) run_dims: [u32; MAX_DIMENSIONS],
    path: Vec<u32>,
    owner: Vec<u32>,
    candidates: Vec<(u32, u32)>,
    /// Attribute key → index in `slot_lists` of the (dimension, key index) pairs that
    /// name it, for the dimensions at `index_of` (built once per thread and
    /// configuration).
    index: HashMap<Arc<str>, u16, ahash::RandomState>,
    slot_lists: Vec<Vec<(u8, u8)>>,
    /// The same lookup memoized by interned key ([`NOT_A_DIMENSION_KEY`] for keys of no
    /// dimension).
    by_key: KeyMemo<u16>,
    index_of: usize,
    /// Per distinct resource of the current trajectory: which keys it answers.
    resources: Vec<(*const Resource, [u64; MAX_DIMENSIONS])>,
}

impl Scratch {
    fn build_index(&mut self, dims: &[Dimension]) {
        let id = dims.as_ptr() as usize ^ dims.len();
        if self.index_of == id && !self.index.is_empty() {
            return;
        }
        self.index.clear();
        self.slot_lists.clear();
        self.by_key.clear();
        for (d, dim) in dims.iter().take(MAX_DIMENSIONS).enumerate() {
            for (k, key) in dim.keys.iter().enumerate().take(64) {
                let next = self.slot_lists.len() as u16;
                let list = *self.index.entry(key.clone()).or_insert(next);
                if list == next {
                    self.slot_lists.push(Vec::new());
                }
                self.slot_lists[list as usize].push((d as u8, k as u8));
            }
        }
        self.index_of = id;
    }

    /// Index in `slot_lists` of the dimension keys named `key`, or
    /// [`NOT_A_DIMENSION_KEY`].
    fn slots_of(&mut self, key: &Str) -> u16 {
        let index = &self.index;
        self.by_key.get(key, |k| {
            index.get(k).copied().unwrap_or(NOT_A_DIMENSION_KEY)
        })
    }

    /// Per dimension, the keys among `attrs` with a usable value (`valid`) and the keys
    /// present at all (`present`), as bit masks by key index.
    fn masks(&mut self, attrs: &Attributes) -> ([u64; MAX_DIMENSIONS], [u64; MAX_DIMENSIONS]) {
        let mut valid = [0u64; MAX_DIMENSIONS];
        let mut present = [0u64; MAX_DIMENSIONS];
        for (key, value) in attrs.entries() {
            let list = self.slots_of(key);
            let Some(slots) = self.slot_lists.get(list as usize) else {
                continue;
            };
            let usable = usable(value);
            for &(d, k) in slots {
                present[d as usize] |= 1 << k;
                if usable {
                    valid[d as usize] |= 1 << k;
                }
            }
        }
        (valid, present)
    }

    /// The located value of dimension `d` on span `span` ([`NONE`] gives `None`).
    pub(crate) fn value<'a>(
        &self,
        trajectory: &'a Trajectory,
        dims: &[Dimension],
        d: usize,
        span: u32,
    ) -> Option<Cow<'a, str>> {
        if span == NONE {
            return None;
        }
        let key = *self.found.get(span as usize * MAX_DIMENSIONS + d)?;
        let key = dims.get(d)?.keys.get(key as usize)?;
        value_of(trajectory.spans.get(span as usize)?, key)
    }
}

/// Fills `scratch` from `analysis`. Tolerates any malformed input (mismatched lengths,
/// parent cycles): what cannot be placed is not counted per run.
pub(crate) fn extract(analysis: &Analysis, dims: &[Dimension], scratch: &mut Scratch) {
    let trajectory = &*analysis.trajectory;
    let n = trajectory.spans.len().min(analysis.steps.len());
    let n_dims = dims.len().min(MAX_DIMENSIONS);

    // Which dimension keys each span carries: each attribute of a span is looked up once
    // in an index of the configured keys, instead of every key being searched for on
    // every span. `value_of` decides the same way: per key, the span's attribute, else
    // (only when the span lacks the key) the resource's; the first key that answers wins.
    scratch.found.clear();
    scratch.found.resize(n * MAX_DIMENSIONS, NO_KEY);
    scratch.build_index(dims);
    scratch.resources.clear();
    for (i, span) in trajectory.spans.iter().take(n).enumerate() {
        let (valid, present) = scratch.masks(&span.attributes);
        let resource = Arc::as_ptr(&span.resource);
        let res_valid = match scratch.resources.iter().find(|(p, _)| *p == resource) {
            Some((_, m)) => *m,
            None => {
                let mut m = scratch.masks(&span.resource.attributes).0;
                if let Some(name) = span.resource.service_name.as_deref() {
                    if !name.trim().is_empty() {
                        // `value_of` falls back to the resource's service name.
                        for (d, dim) in dims.iter().take(n_dims).enumerate() {
                            if let Some(k) = dim
                                .keys
                                .iter()
                                .position(|k| &**k == conventions::SERVICE_NAME)
                            {
                                m[d] |= 1 << k;
                            }
                        }
                    }
                }
                scratch.resources.push((resource, m));
                m
            }
        };
        for d in 0..n_dims {
            let answered = valid[d] | (res_valid[d] & !present[d]);
            if answered != 0 {
                scratch.found[i * MAX_DIMENSIONS + d] = answered.trailing_zeros() as u8;
            }
        }
    }

    // Step runs, and the run each span belongs to.
    scratch.runs.clear();
    scratch.owner.clear();
    scratch.owner.resize(n, UNRESOLVED);
    for (i, step) in analysis.steps.iter().take(n).enumerate() {
        if step.run_start {
            scratch.owner[i] = scratch.runs.len() as u32;
            scratch.runs.push(RunInfo {
                span: i as u32,
                dims: [NONE; MAX_DIMENSIONS],
                failed: false,
            });
        }
    }
    for i in 0..n {
        if scratch.owner[i] != UNRESOLVED {
            continue;
        }
        // Walk up to the nearest resolved span or run start; bounded by `n` steps so
        // that a parent cycle in hostile input ends.
        scratch.path.clear();
        let mut j = i as u32;
        let mut owner = NONE;
        loop {
            let o = scratch.owner[j as usize];
            if o != UNRESOLVED {
                owner = o;
                break;
            }
            scratch.path.push(j);
            if scratch.path.len() > n {
                break;
            }
            match trajectory.tree_parent(j) {
                Some(p) if (p as usize) < n => j = p,
                _ => break,
            }
        }
        for &p in &scratch.path {
            scratch.owner[p as usize] = owner;
        }
    }
    scratch.run_of.clear();
    scratch.run_of.extend_from_slice(&scratch.owner);

    // Per dimension: the whole run's value and each step run's value.
    let root = trajectory.root.filter(|&r| (r as usize) < n);
    for d in 0..MAX_DIMENSIONS {
        scratch.run_dims[d] = NONE;
    }
    for (d, dim) in dims.iter().take(n_dims).enumerate() {
        let on_root = root.filter(|&r| scratch.found[r as usize * MAX_DIMENSIONS + d] != NO_KEY);
        let whole = match (dim.scope, on_root) {
            (Scope::Run, Some(r)) => r,
            _ => most_frequent(trajectory, dims, d, n, scratch),
        };
        scratch.run_dims[d] = whole;
        // The run-start span first, then the first span of the run carrying a value.
        for run in scratch.runs.iter_mut() {
            if scratch.found[run.span as usize * MAX_DIMENSIONS + d] != NO_KEY {
                run.dims[d] = run.span;
            }
        }
        for i in 0..n {
            let r = scratch.run_of[i];
            if r == NONE || scratch.found[i * MAX_DIMENSIONS + d] == NO_KEY {
                continue;
            }
            let run = &mut scratch.runs[r as usize];
            if run.dims[d] == NONE {
                run.dims[d] = i as u32;
            }
        }
        for run in scratch.runs.iter_mut() {
            run.dims[d] = match (dim.scope, on_root) {
                (Scope::Run, Some(r)) => r,
                _ if run.dims[d] != NONE => run.dims[d],
                _ => whole,
            };
        }
    }

    for finding in analysis.findings.iter().filter(|f| !f.propagated) {
        if let Some(&r) = scratch.run_of.get(finding.span as usize) {
            if r != NONE {
                scratch.runs[r as usize].failed = true;
            }
        }
    }
}

/// The span carrying the most frequent value of dimension `d` (ties: the first in
/// canonical order), or [`NONE`].
fn most_frequent(
    trajectory: &Trajectory,
    dims: &[Dimension],
    d: usize,
    n: usize,
    scratch: &mut Scratch,
) -> u32 {
    scratch.candidates.clear();
    for i in 0..n {
        if scratch.found[i * MAX_DIMENSIONS + d] == NO_KEY {
            continue;
        }
        let Some(value) = scratch.value(trajectory, dims, d, i as u32) else {
            continue;
        };
        let mut seen = false;
        for c in 0..scratch.candidates.len() {
            let (span, _) = scratch.candidates[c];
            if scratch.value(trajectory, dims, d, span).as_deref() == Some(&*value) {
                scratch.candidates[c].1 += 1;
                seen = true;
                break;
            }
        }
        if !seen && scratch.candidates.len() < MAX_CANDIDATES {
            scratch.candidates.push((i as u32, 1));
        }
    }
    let mut best = NONE;
    let mut best_count = 0;
    for &(span, count) in &scratch.candidates {
        if count > best_count {
            best = span;
            best_count = count;
        }
    }
    best
}

/// Whether `value_of` would give a value for this attribute value.
fn usable(value: &Value) -> bool {
    match value {
        Value::Str(s) => !s.trim().is_empty(),
        Value::Int(_) | Value::Bool(_) => true,
        Value::Double(f) => f.is_finite(),
        Value::Array(_) => false,
    }
}

/// The text of attribute `key` on `span`: a span attribute, else a resource attribute,
/// else (for `service.name`) the resource's service name. Strings as they are; numbers
/// and booleans as text; empty strings and arrays count as absent.
pub(crate) fn value_of<'a>(span: &'a SpanRecord, key: &str) -> Option<Cow<'a, str>> {
    let value = span
        .attributes
        .get(key)
        .or_else(|| span.resource.attributes.get(key));
    let text = match value {
        Some(Value::Str(s)) => Cow::Borrowed(&**s),
        Some(Value::Int(i)) => Cow::Owned(i.to_string()),
        Some(Value::Bool(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Some(Value::Double(f)) if f.is_finite() => Cow::Owned(f.to_string()),
        Some(_) => return None,
        None if key == conventions::SERVICE_NAME => {
            Cow::Borrowed(span.resource.service_name.as_deref()?)
        }
        None => return None,
    };
    (!text.trim().is_empty()).then_some(text)
}
