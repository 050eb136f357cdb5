//! The sliding window of recent trajectories, as compact columns in a ring buffer.
//!
//! One row per finalized trajectory: a `u16` code per categorical attribute, an `f32`
//! per numeric attribute, the outcome, the blamed step, the blamed reason pattern and
//! per-step masks. Strings live once, in a per-attribute [`Dictionary`] capped at
//! `max_values` live values: a Space-Saving sketch decides which values get a code,
//! the rest share [`OTHER`]. A code's rows are counted, so a code whose value was
//! displaced is reused only once its last row has left the window. Memory is
//! therefore bounded by the window length, the attribute count and the caps, whatever
//! the input.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::TraceId;

/// No value: none of the attribute's keys was present.
pub const UNSET: u16 = 0;
/// A value folded by the dictionary cap.
pub const OTHER: u16 = 1;
/// No pattern / no step.
pub const NO_CODE: u16 = u16::MAX;

/// Longest categorical value kept, in bytes (cut at a char boundary).
pub const MAX_VALUE_BYTES: usize = 128;

/// The numeric attributes, in column order. Names are the predicate keys of the API.
pub const NUMERIC: [&str; 6] = [
    "input_tokens",
    "output_tokens",
    "steps",
    "tool_calls",
    "duration_ms",
    // The generator step's own input (its context): where a threshold on the answer's
    // step lives, without the planner's and the critic's calls around it.
    "generator.input_tokens",
];

/// What one trajectory contributes to the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordInput {
    pub trace_id: Option<TraceId>,
    /// Event time: the trajectory's end.
    pub end_unix_nano: u64,
    /// `(attribute key, value)`; the key is a cohort dimension name or an attribute key.
    pub categorical: Vec<(Arc<str>, String)>,
    /// Indexed like [`NUMERIC`]; `None` when unknown.
    pub numeric: [Option<f64>; NUMERIC.len()],
    pub failed: bool,
    /// The blamed step's name (of a failed run).
    pub root_step: Option<String>,
    /// The blamed finding's reason pattern id (of a failed run).
    pub root_pattern: Option<u64>,
    /// Step names present in the run, and those with an original finding.
    pub steps: Vec<(String, bool)>,
}

/// Space-Saving (Metwally et al.) over values: `capacity` counters; an untracked value
/// takes over the smallest counter and inherits its count as error.
struct SpaceSaving {
    slots: Vec<(Arc<str>, u64, u64)>,
    index: HashMap<Arc<str>, usize>,
    capacity: usize,
}

impl SpaceSaving {
    fn new(capacity: usize) -> SpaceSaving {
        SpaceSaving {
            slots: Vec::with_capacity(capacity.max(1)),
            index: HashMap::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
        }
    }

    /// Counts `value`; returns its guaranteed count.
    fn observe(&mut self, value: &str) -> u64 {
        if let Some(&i) = self.index.get(value) {
            let s = &mut self.slots[i];
            s.1 += 1;
            return s.1 - s.2;
        }
        let v: Arc<str> = Arc::from(value);
        if self.slots.len() < self.capacity {
            self.index.insert(v.clone(), self.slots.len());
            self.slots.push((v, 1, 0));
            return 1;
        }
        let Some((i, min)) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.1)
            .map(|(i, s)| (i, s.1))
        else {
            return 1;
        };
        let old = std::mem::replace(&mut self.slots[i], (v.clone(), min + 1, min));
        self.index.remove(&old.0);
        self.index.insert(v, i);
        1
    }

    /// Halves every count, so that old heavy hitters fade.
    fn decay(&mut self) {
        for s in &mut self.slots {
            s.1 = s.1.div_ceil(2);
            s.2 /= 2;
        }
    }
}

/// The values of one attribute and their codes.
pub struct Dictionary {
    pub key: Arc<str>,
    /// `names[code]`; `None` for a free code.
    names: Vec<Option<Arc<str>>>,
    /// Rows in the window holding each code.
    rows: Vec<u32>,
    live: HashMap<Arc<str>, u16>,
    free: Vec<u16>,
    sketch: SpaceSaving,
    max_values: usize,
    observed: u64,
}

impl Dictionary {
    pub fn new(key: Arc<str>, max_values: usize) -> Dictionary {
        let max_values = max_values.clamp(1, 4096);
        Dictionary {
            key,
            names: vec![Some(Arc::from("")), Some(Arc::from("other"))],
            rows: vec![0, 0],
            live: HashMap::with_capacity(max_values),
            free: Vec::new(),
            sketch: SpaceSaving::new(4 * max_values),
            max_values,
            observed: 0,
        }
    }

    /// The value of `code`, or `None` for [`UNSET`] and free codes.
    pub fn name(&self, code: u16) -> Option<&Arc<str>> {
        if code == UNSET {
            return None;
        }
        self.names.get(code as usize).and_then(Option::as_ref)
    }

    /// The code of `value` if it has its own.
    pub fn code_of(&self, value: &str) -> Option<u16> {
        self.live.get(value).copied()
    }

    /// Rows currently holding `code`.
    pub fn rows(&self, code: u16) -> u32 {
        self.rows.get(code as usize).copied().unwrap_or(0)
    }

    pub fn codes(&self) -> usize {
        self.names.len()
    }

    /// The code to store for one new row with `value`, counted.
    fn encode(&mut self, value: Option<&str>) -> u16 {
        let code = match value {
            None => UNSET,
            Some(v) => self.place(truncate(v)),
        };
        self.rows[code as usize] += 1;
        code
    }

    fn place(&mut self, value: &str) -> u16 {
        self.observed += 1;
        if self.observed.is_multiple_of(64 * self.max_values as u64) {
            self.sketch.decay();
        }
        let g = self.sketch.observe(value);
        if let Some(&c) = self.live.get(value) {
            return c;
        }
        if self.live.len() >= self.max_values {
            // Full: displace the live value with the fewest rows, only when this value
            // is guaranteed clearly more frequent (hysteresis).
            let weakest = self
                .live
                .iter()
                .map(|(v, &c)| (self.rows[c as usize], c, v.clone()))
                .min_by_key(|(rows, c, _)| (*rows, *c));
            let Some((rows, _, value_out)) = weakest else {
                return OTHER;
            };
            if g <= u64::from(rows) + u64::from(rows) / 8 + 1 {
                return OTHER;
            }
            if self.free.is_empty() && self.names.len() >= 2 * self.max_values + 2 {
                return OTHER;
            }
            // The displaced value keeps its code until its last row leaves.
            if let Some(c) = self.live.remove(&value_out) {
                if self.rows[c as usize] == 0 {
                    self.release(c);
                }
            }
        }
        let code = match self.free.pop() {
            Some(c) => c,
            None if self.names.len() < 2 * self.max_values + 2 => {
                self.names.push(None);
                self.rows.push(0);
                (self.names.len() - 1) as u16
            }
            None => return OTHER,
        };
        let name: Arc<str> = Arc::from(value);
        self.names[code as usize] = Some(name.clone());
        self.live.insert(name, code);
        code
    }

    /// One row holding `code` left the window.
    fn forget(&mut self, code: u16) {
        let Some(r) = self.rows.get_mut(code as usize) else {
            return;
        };
        *r = r.saturating_sub(1);
        if *r == 0 && code > OTHER {
            let displaced = self.names[code as usize]
                .as_ref()
                .is_some_and(|n| self.live.get(n) != Some(&code));
            if displaced {
                self.release(code);
            }
        }
    }

    fn release(&mut self, code: u16) {
        self.names[code as usize] = None;
        self.free.push(code);
    }
}

fn truncate(value: &str) -> &str {
    if value.len() <= MAX_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Attribute slots at most (the presence mask of a row is a `u64`).
pub const MAX_ATTRIBUTES: usize = 64;

/// Step names seen (built-in kinds first); at most 16, the rest share the last bit.
pub const MAX_STEPS: usize = 16;

/// The ring buffer of rows. Column-major, `capacity` rows.
pub struct Window {
    pub capacity: usize,
    /// Rows ever pushed; the newest row is at `(pushed − 1) % capacity`.
    pub pushed: u64,
    pub attributes: Vec<Dictionary>,
    /// Attribute index by key.
    attr_index: HashMap<Arc<str>, usize>,
    max_attributes: usize,
    max_values: usize,
    /// `codes[row * max_attributes + a]`.
    pub codes: Vec<u16>,
    /// `numeric[row * NUMERIC.len() + i]`; NaN when unknown.
    pub numeric: Vec<f32>,
    pub failed: Vec<bool>,
    pub root_step: Vec<u16>,
    pub root_pattern: Vec<u16>,
    pub step_mask: Vec<u16>,
    pub fail_mask: Vec<u16>,
    pub trace_ids: Vec<Option<TraceId>>,
    pub end_unix_nano: Vec<u64>,
    /// Step names by bit.
    pub steps: Vec<Arc<str>>,
    /// Reason pattern ids (as decimal text) of the blamed findings.
    pub patterns: Dictionary,
    /// Attribute values not stored because every attribute slot was taken.
    pub dropped_attributes: u64,
}

impl Window {
    pub fn new(capacity: usize, max_attributes: usize, max_values: usize) -> Window {
        let capacity = capacity.max(1);
        let max_attributes = max_attributes.clamp(1, MAX_ATTRIBUTES);
        Window {
            capacity,
            pushed: 0,
            attributes: Vec::new(),
            attr_index: HashMap::new(),
            max_attributes,
            max_values,
            codes: vec![UNSET; capacity * max_attributes],
            numeric: vec![f32::NAN; capacity * NUMERIC.len()],
            failed: vec![false; capacity],
            root_step: vec![NO_CODE; capacity],
            root_pattern: vec![NO_CODE; capacity],
            step_mask: vec![0; capacity],
            fail_mask: vec![0; capacity],
            trace_ids: vec![None; capacity],
            end_unix_nano: vec![0; capacity],
            steps: crate::model::StepKind::BUILTIN
                .iter()
                .map(|k| Arc::from(k.as_str()))
                .collect(),
            patterns: Dictionary::new(Arc::from("pattern"), 256),
            dropped_attributes: 0,
        }
    }

    pub fn max_attributes(&self) -> usize {
        self.max_attributes
    }

    /// Rows in the window.
    pub fn len(&self) -> usize {
        (self.pushed.min(self.capacity as u64)) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    pub fn attribute_index(&self, key: &str) -> Option<usize> {
        self.attr_index.get(key).copied()
    }

    /// The bit of step `name` (an unknown step past the cap shares the last bit).
    pub fn step_bit(&mut self, name: &str) -> usize {
        if let Some(i) = self.steps.iter().position(|s| &**s == name) {
            return i;
        }
        if self.steps.len() < MAX_STEPS {
            self.steps.push(Arc::from(name));
            return self.steps.len() - 1;
        }
        MAX_STEPS - 1
    }

    /// Appends a row, evicting the oldest when full.
    pub fn push(&mut self, input: &RecordInput) {
        let row = (self.pushed % self.capacity as u64) as usize;
        if self.pushed >= self.capacity as u64 {
            self.evict(row);
        }
        self.pushed += 1;
        let base = row * self.max_attributes;
        let mut present = 0u64;
        for (key, value) in &input.categorical {
            let a = match self.attr_index.get(key) {
                Some(&a) => a,
                None if self.attributes.len() < self.max_attributes => {
                    self.attributes
                        .push(Dictionary::new(key.clone(), self.max_values));
                    let a = self.attributes.len() - 1;
                    self.attr_index.insert(key.clone(), a);
                    a
                }
                None => {
                    self.dropped_attributes += 1;
                    continue;
                }
            };
            if present & (1 << a) != 0 {
                continue;
            }
            present |= 1 << a;
            self.codes[base + a] = self.attributes[a].encode(Some(value));
        }
        for (a, dict) in self.attributes.iter_mut().enumerate() {
            if present & (1 << a) == 0 {
                self.codes[base + a] = dict.encode(None);
            }
        }
        for (i, v) in input.numeric.iter().enumerate() {
            self.numeric[row * NUMERIC.len() + i] = match v {
                Some(x) if x.is_finite() => *x as f32,
                _ => f32::NAN,
            };
        }
        self.failed[row] = input.failed;
        self.root_step[row] = match (&input.root_step, input.failed) {
            (Some(s), true) => self.step_bit(s) as u16,
            _ => NO_CODE,
        };
        self.root_pattern[row] = match (input.root_pattern, input.failed) {
            (Some(p), true) => self.patterns.encode(Some(&p.to_string())),
            _ => NO_CODE,
        };
        let (mut steps, mut fails) = (0u16, 0u16);
        for (name, failed) in &input.steps {
            let bit = 1u16 << self.step_bit(name);
            steps |= bit;
            if *failed {
                fails |= bit;
            }
        }
        self.step_mask[row] = steps;
        self.fail_mask[row] = fails;
        self.trace_ids[row] = input.trace_id;
        self.end_unix_nano[row] = input.end_unix_nano;
    }

    fn evict(&mut self, row: usize) {
        let base = row * self.max_attributes;
        for (a, dict) in self.attributes.iter_mut().enumerate() {
            dict.forget(self.codes[base + a]);
        }
        if self.root_pattern[row] != NO_CODE {
            self.patterns.forget(self.root_pattern[row]);
        }
    }

    /// The rows in the window, oldest first.
    pub fn rows(&self) -> impl Iterator<Item = usize> + '_ {
        let n = self.len();
        let start = if self.pushed > self.capacity as u64 {
            (self.pushed % self.capacity as u64) as usize
        } else {
            0
        };
        (0..n).map(move |i| (start + i) % self.capacity)
    }

    /// The code of attribute `a` on `row` (attributes added after the row: [`UNSET`]).
    pub fn code(&self, row: usize, a: usize) -> u16 {
        self.codes[row * self.max_attributes + a]
    }

    pub fn numeric_value(&self, row: usize, i: usize) -> f32 {
        self.numeric[row * NUMERIC.len() + i]
    }

    /// The pattern id of a pattern code.
    pub fn pattern_id(&self, code: u16) -> Option<u64> {
        self.patterns.name(code).and_then(|s| s.parse().ok())
    }
}
