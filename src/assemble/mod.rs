//! Assemble: gathers the spans of each trace and releases it as a [`Trajectory`].
//!
//! Input: spans, log events and linked spans (from other traces) of the traces that
//! this shard owns, with the receive time `now`. Output: trajectories, each released
//! once and then, if late data arrives within `late_grace`, re-released with a higher
//! `revision` (consumers replace the earlier revision).
//!
//! Invariants:
//! - Synchronous and deterministic: no IO, no threads, the clock is a parameter.
//!   Timers run on receive time, never on span timestamps.
//! - Arrival order and batching do not change the trajectory (canonical order, dedup).
//! - Memory is bounded by `max_buffered_spans` and `max_spans_per_trace`; what happens
//!   at the bound is a policy (see [`AssembleConfig`]) and is counted in [`AssembleStats`].

use std::time::{Duration, Instant};

use crate::model::{LogEvent, SpanRecord, TraceId, Trajectory};

#[derive(Debug, Clone)]
pub struct AssembleConfig {
    /// A trace whose root span has arrived completes after this long without new spans.
    pub idle_timeout: Duration,
    /// A trace completes (flagged incomplete if it has no root) this long after its first span.
    pub max_trace_age: Duration,
    /// How long a released trajectory still takes late spans, logs and linked spans.
    pub late_grace: Duration,
    /// Spans buffered by this assembler (open traces plus those in their grace period);
    /// above it the oldest open trace is released flagged incomplete (`memory`).
    pub max_buffered_spans: usize,
    /// A trace that reaches this many spans is released flagged incomplete
    /// (`trace_too_large`); its further spans are counted as late and dropped.
    pub max_spans_per_trace: usize,
}

/// Counters for self-metrics. Monotonic except `buffered_spans` and `open_traces`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssembleStats {
    pub buffered_spans: usize,
    pub open_traces: usize,
    /// Spans (and logs, linked spans) that arrived after the grace period, or for a trace
    /// released as too large: counted, not merged.
    pub late_dropped: u64,
    /// Spans merged into an already released trajectory within the grace period.
    pub late_merged: u64,
    pub evicted_memory: u64,
    pub evicted_max_age: u64,
    pub evicted_too_large: u64,
    /// Exact duplicates of a span already held (retrying clients), dropped.
    pub duplicates: u64,
}

pub struct Assembler {
    config: AssembleConfig,
}

impl Assembler {
    pub fn new(config: AssembleConfig) -> Assembler {
        Assembler { config }
    }

    /// Adds spans of traces this assembler owns. Trajectories released right away (a
    /// trace hitting a bound) are pushed to `out`.
    pub fn push_spans(&mut self, spans: Vec<SpanRecord>, now: Instant, out: &mut Vec<Trajectory>) {
        let _ = (spans, now, out, &self.config);
        todo!("assemble helper")
    }

    /// Adds log events that carry a trace id of this assembler.
    pub fn push_logs(&mut self, logs: Vec<LogEvent>, now: Instant, out: &mut Vec<Trajectory>) {
        let _ = (logs, now, out);
        todo!("assemble helper")
    }

    /// Adds spans of other traces that link to a span of `target` (post-hoc evaluations).
    pub fn push_linked(
        &mut self,
        target: TraceId,
        spans: Vec<SpanRecord>,
        now: Instant,
        out: &mut Vec<Trajectory>,
    ) {
        let _ = (target, spans, now, out);
        todo!("assemble helper")
    }

    /// Releases what is due at `now`: idle complete traces, traces past `max_trace_age`,
    /// revisions of released trajectories that took late data; forgets expired graces.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Trajectory>) {
        let _ = (now, out);
        todo!("assemble helper")
    }

    /// Releases every open trace (flagged incomplete `shutdown` unless complete) and
    /// every pending revision. Used at shutdown.
    pub fn drain(&mut self, out: &mut Vec<Trajectory>) {
        let _ = out;
        todo!("assemble helper")
    }

    pub fn stats(&self) -> AssembleStats {
        todo!("assemble helper")
    }
}
