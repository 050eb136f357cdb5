//! Which traces each segment still waits for.
//!
//! A trace is *outstanding* in every segment that holds a record of it, from the append
//! until it is resolved:
//! - by the store's durable commit of its final analysis (the row and its own counts
//!   added to its minute, or the counts alone for a success sample that is not kept),
//!   reported after the commit returned: a power loss cannot take back what let a
//!   segment go;
//! - at once, when the pipeline finds it is not a trajectory of its own (an annotation
//!   trace, whose evaluator spans went to the trace they evaluate);
//! - by expiry, when it was never finalized within `max_trace_age + late_grace` and a
//!   margin of its last record: the pipeline releases every open trace within that
//!   time, so such a trace had nothing the pipeline would finalize (late spans after
//!   the grace, log records of a trace never seen). Counted in
//!   `faultline_wal_expired_traces_total`. A trace finalized but not yet committed
//!   never expires.
//!
//! Segments are deleted in order, oldest first, once closed and without outstanding
//! traces: so a cancel or done record is never deleted before the data it refers to.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::memory::{Component, MemoryBudget};
use crate::model::TraceId;

/// What one tracked trace costs, counted into the memory budget: the map entry, its
/// segment list and its place in the expiry queue.
pub const BYTES_PER_TRACE: i64 = 128;

struct Entry {
    /// Segments holding a record of the trace (no repeats).
    segments: Vec<u64>,
    /// Finalized by the pipeline, waiting for the store's commit: never expires.
    finalized: bool,
    /// When it expires if not finalized.
    deadline: Instant,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct SegmentState {
    outstanding: u64,
    closed: bool,
}

/// See the module documentation.
pub struct Tracker {
    traces: HashMap<TraceId, Entry>,
    segments: BTreeMap<u64, SegmentState>,
    expiry: VecDeque<(Instant, TraceId)>,
    expire_after: Duration,
    budget: Option<Arc<MemoryBudget>>,
    charged: i64,
    /// Traces that expired, since the last [`Tracker::take_expired`].
    expired: u64,
}

impl Tracker {
    pub fn new(expire_after: Duration, budget: Option<Arc<MemoryBudget>>) -> Tracker {
        Tracker {
            traces: HashMap::new(),
            segments: BTreeMap::new(),
            expiry: VecDeque::new(),
            expire_after,
            budget,
            charged: 0,
            expired: 0,
        }
    }

    /// A segment exists (open for appends, or found at startup).
    pub fn add_segment(&mut self, id: u64, closed: bool) {
        self.segments.entry(id).or_default().closed = closed;
    }

    pub fn close_segment(&mut self, id: u64) {
        if let Some(s) = self.segments.get_mut(&id) {
            s.closed = true;
        }
    }

    /// Records of `traces` were written to segment `segment`.
    pub fn register(&mut self, segment: u64, traces: &[TraceId], now: Instant) {
        let deadline = now + self.expire_after;
        for &t in traces {
            let entry = self.traces.entry(t).or_insert_with(|| Entry {
                segments: Vec::with_capacity(1),
                finalized: false,
                deadline,
            });
            entry.deadline = deadline;
            // Records are registered once written, by the request that appended them,
            // so not always in segment order.
            if !entry.segments.contains(&segment) {
                if entry.segments.is_empty() {
                    self.expiry.push_back((deadline, t));
                }
                entry.segments.push(segment);
                self.segments.entry(segment).or_default().outstanding += 1;
            }
        }
        self.charge();
    }

    /// Keeps segment `id` from deletion until [`Tracker::unpin`]: a record was written
    /// to it whose traces are not registered yet (see [`Pin`]).
    fn pin(&mut self, id: u64) {
        if let Some(s) = self.segments.get_mut(&id) {
            s.outstanding += 1;
        }
    }

    fn unpin(&mut self, id: u64) {
        if let Some(s) = self.segments.get_mut(&id) {
            s.outstanding = s.outstanding.saturating_sub(1);
        }
    }

    /// The pipeline finalized the trace; the store's commit is next.
    pub fn finalized(&mut self, trace: TraceId) {
        if let Some(e) = self.traces.get_mut(&trace) {
            e.finalized = true;
        }
    }

    /// Resolves traces; returns those that were tracked (for the done record).
    pub fn resolve(&mut self, traces: &[TraceId]) -> Vec<TraceId> {
        let mut resolved = Vec::new();
        for t in traces {
            if let Some(entry) = self.traces.remove(t) {
                self.release(&entry);
                resolved.push(*t);
            }
        }
        if !resolved.is_empty() {
            self.charge();
        }
        resolved
    }

    fn release(&mut self, entry: &Entry) {
        for s in &entry.segments {
            if let Some(state) = self.segments.get_mut(s) {
                state.outstanding = state.outstanding.saturating_sub(1);
            }
        }
    }

    /// Expires traces never finalized past their deadline.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, t)) = self.expiry.front() {
            if deadline > now {
                break;
            }
            self.expiry.pop_front();
            let Some(entry) = self.traces.get(&t) else {
                continue;
            };
            if entry.finalized {
                continue;
            }
            if entry.deadline > now {
                // Registered again since: wait for the new deadline.
                self.expiry.push_back((entry.deadline, t));
                continue;
            }
            if let Some(entry) = self.traces.remove(&t) {
                self.release(&entry);
                self.expired += 1;
            }
        }
        self.charge();
    }

    /// Removes and returns the oldest segments that are closed and wait for nothing.
    pub fn deletable(&mut self) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some((&id, state)) = self.segments.first_key_value() {
            if !state.closed || state.outstanding > 0 {
                break;
            }
            self.segments.remove(&id);
            out.push(id);
        }
        out
    }

    pub fn take_expired(&mut self) -> u64 {
        std::mem::take(&mut self.expired)
    }

    pub fn traces(&self) -> usize {
        self.traces.len()
    }

    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Outstanding traces of a segment (tests).
    pub fn outstanding(&self, segment: u64) -> Option<u64> {
        self.segments.get(&segment).map(|s| s.outstanding)
    }

    fn charge(&mut self) {
        let target = (self.traces.len() as i64 + self.expiry.len() as i64 / 4) * BYTES_PER_TRACE;
        if let Some(budget) = &self.budget {
            budget.adjust(Component::Wal, target - self.charged);
        }
        self.charged = target;
    }
}

/// A record written to a segment whose traces are not registered yet: the segment
/// counts it as one outstanding trace, so that it is not deleted (were it closed and
/// waiting for nothing else) between the write and the registration. The writer pins
/// the segment when it answers an append; the request registers its traces with
/// [`Pin::register`] once it has decoded them, before it hands them to the pipeline.
/// Dropped unregistered (the request went away), the pin is released.
pub struct Pin {
    tracker: Arc<Mutex<Tracker>>,
    segment: u64,
    held: bool,
}

impl Pin {
    pub(crate) fn new(tracker: &Arc<Mutex<Tracker>>, segment: u64) -> Pin {
        if let Ok(mut t) = tracker.lock() {
            t.pin(segment);
        }
        Pin {
            tracker: Arc::clone(tracker),
            segment,
            held: true,
        }
    }

    /// Registers `traces` under the pinned segment, then releases the pin.
    pub fn register(mut self, traces: &[TraceId]) {
        if let Ok(mut t) = self.tracker.lock() {
            t.register(self.segment, traces, Instant::now());
            t.unpin(self.segment);
            self.held = false;
        }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        if let Ok(mut t) = self.tracker.lock() {
            t.unpin(self.segment);
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.adjust(Component::Wal, -self.charged);
        }
    }
}
