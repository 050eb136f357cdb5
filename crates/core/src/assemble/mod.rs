//! Assemble: gathers the spans of each trace and releases it as a [`Trajectory`].
//!
//! Input: spans, log events and linked evaluations (evaluator spans of other traces,
//! shared, see [`LinkedEvaluation`]) of the traces that this shard owns, with the receive time `now`. Output: trajectories, each released
//! once and then, if late data arrives within `late_grace`, re-released with a higher
//! `revision` (consumers replace the earlier revision).
//!
//! Invariants:
//! - Synchronous and deterministic: no IO, no threads, the clock is a parameter.
//!   Timers run on receive time, never on span timestamps. A `now` earlier than one
//!   already seen is taken as the latest one seen (the clock never runs backwards).
//! - Arrival order and batching do not change the trajectory (canonical order, dedup),
//!   as long as no bound is reached.
//! - Memory is bounded by `max_buffered_spans` and `max_spans_per_trace`; what happens
//!   at the bound is a policy (below) and is counted in [`AssembleStats`].
//! - No trajectory is deeper than `max_trace_depth` (re-hung and flagged by
//!   [`Trajectory::build_with_depth_cap`]), so the later stages' ancestor walks are
//!   bounded by it.
//! - A given (trace, revision) is released exactly once.
//!
//! # Life of a trace
//!
//! 1. **Open.** The first record of a trace (span, log event or linked span) opens it.
//!    Exact copies of a held record are dropped and counted in `duplicates`; a copy of a
//!    span id with different content is kept as evidence (see `buffer.rs`). A trace
//!    keeps at most `max_linked_per_trace` linked evaluations (open or in grace): a
//!    further one, not a copy of a held one, is dropped and counted in `linked_dropped`.
//! 2. **Release.** An open trace is released when
//!    - its root span has arrived and no new record arrived for `idle_timeout`
//!      (complete);
//!    - `max_trace_age` has passed since its first record (complete if its root has
//!      arrived, else incomplete `MaxAge`, counted in `evicted_max_age`). A trace that
//!      holds only log events or linked spans, and no span, is not released: its records
//!      are dropped at that point and counted in `unmatched_dropped`;
//!    - it reaches `max_spans_per_trace` records (incomplete `TooManySpans`,
//!      `evicted_too_large`), or memory runs short (incomplete `MemoryPressure`, below);
//!    - [`Assembler::drain`] is called (incomplete `Shutdown` unless its root arrived).
//! 3. **Grace.** A trace released complete or at `max_trace_age` keeps its records for
//!    `late_grace` after its first release: by sharing the released trajectory with the
//!    pipeline (no copy), plus the rare conflict witnesses; the buffer is restored from
//!    them when the first late record arrives. Late records merged in that time
//!    (`late_merged`, and the trajectory's cumulative `late_spans`) make a revision,
//!    released once no new record arrived for `idle_timeout`, or at the end of the
//!    grace, whichever comes first: one revision per burst of late data, not one per
//!    late span. A late record that is an exact copy of a held one causes no revision.
//!    A revision that reaches `max_spans_per_trace` is released flagged `TooManySpans`
//!    and the trace is closed.
//! 4. **Closed.** After the grace, or right away for a trace released `TooManySpans`,
//!    `MemoryPressure` or `Shutdown`, only the trace id is kept (a tombstone), and any
//!    record of the trace is counted in `late_dropped`. A tombstone is forgotten once
//!    the trace has been silent (no record dropped for it) for at least
//!    `max(max_trace_age, late_grace)` (checked once per such period), or oldest first
//!    beyond `max(max_buffered_spans, 1024)` tombstones. Data of a trace arriving after
//!    that is taken as a new trace: this is the one case where a revision number can be
//!    released again, and consumers key trajectories by trace id.
//!
//! Time-based transitions happen in [`Assembler::tick`]; bounds are enforced as each
//! record is added. A revision's flags are recomputed from its records: a trace first
//! released `MaxAge` without a root becomes complete when the root arrives late.
//!
//! # Memory policy
//!
//! Every record held counts once against `max_buffered_spans` and against the trace's
//! `max_spans_per_trace`: spans (including a conflicting copy kept as evidence), log
//! events and linked spans, in open traces and in grace entries alike. Each also counts
//! its bytes ([`crate::model::held`]) against the byte bound the pipeline sets
//! ([`Assembler::set_max_buffered_bytes`], a shard's share of the memory budget); a
//! grace entry counts the bytes of the trajectory it released (the pipeline holds that
//! trajectory until the grace ends) plus, once late data came, those of its restored
//! buffer. When adding a record takes the total above either bound, the assembler frees
//! records until it is back under both:
//! 1. first it forgets the oldest grace entries (by release time), releasing their
//!    pending revision if they had one; they become tombstones, so their late data is
//!    counted in `late_dropped` (`grace_forgotten`), and their ids are handed to the
//!    pipeline ([`Assembler::take_forgotten`]) so that it lets their released analysis
//!    go now rather than at the end of the grace;
//! 2. then it releases the oldest open traces (by first record) early, flagged
//!    `MemoryPressure` (`evicted_memory`), and closes them at once: keeping their
//!    records for a grace would not free memory. An evicted trace with no span is
//!    dropped (`unmatched_dropped`).
//!
//! New data is never refused: it is always the oldest state that gives way.
//!
//! # Cost
//!
//! No operation scans all traces. Open traces sit in a queue by first record (max age
//! and eviction order), grace entries in a queue by release time, tombstones in a queue
//! by closing time, and traces with an idle deadline in a min-heap with at most one
//! entry per trace. Entries are deleted lazily: each carries the epoch of the state it
//! was made for, and a stale one is skipped when it comes up (queues are compacted when
//! stale entries outnumber live ones). Per record held: the record plus one index entry.

mod buffer;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::{IncompleteReason, LinkedEvaluation, LogEvent, SpanRecord, TraceId, Trajectory};

use buffer::{Added, Buffer};

/// The post-hoc evaluations among `spans`, grouped by the trace each one judges
/// ([`SpanRecord::evaluation_targets`]), in order of first appearance: what
/// [`Assembler::push_linked`] takes. Each evaluator span becomes one
/// [`LinkedEvaluation`], shared (not copied) by the groups of every trace it judges.
/// Linear in the spans and their links.
pub fn linked_evaluations(spans: &[SpanRecord]) -> Vec<(TraceId, Vec<Arc<LinkedEvaluation>>)> {
    let mut groups: Vec<(TraceId, Vec<Arc<LinkedEvaluation>>)> = Vec::new();
    let mut index: HashMap<TraceId, usize> = HashMap::new();
    for span in spans {
        let mut shared: Option<Arc<LinkedEvaluation>> = None;
        for target in span.evaluation_targets() {
            let at = *index.entry(target).or_insert_with(|| {
                groups.push((target, Vec::new()));
                groups.len() - 1
            });
            let evaluation = shared.get_or_insert_with(|| LinkedEvaluation::of(span));
            groups[at].1.push(evaluation.clone());
        }
    }
    groups
}

/// The default of [`AssembleConfig::max_linked_per_trace`]: far more evaluators than a
/// run is judged by, few enough that a trace's linked evaluations stay small.
pub const DEFAULT_MAX_LINKED_PER_TRACE: usize = 256;

#[derive(Debug, Clone)]
pub struct AssembleConfig {
    /// A trace whose root span has arrived completes after this long without new records;
    /// a released trace's revision is released after this long without late records.
    pub idle_timeout: Duration,
    /// A trace completes (flagged incomplete if it has no root) this long after its first span.
    pub max_trace_age: Duration,
    /// How long a released trajectory still takes late spans, logs and linked spans.
    pub late_grace: Duration,
    /// Records (spans, log events, linked spans) buffered by this assembler, in open
    /// traces and in grace entries. Above it the oldest grace entries are forgotten, then
    /// the oldest open traces are released flagged incomplete (`memory`).
    pub max_buffered_spans: usize,
    /// A trace that reaches this many records is released flagged incomplete
    /// (`trace_too_large`); its further records are counted as late and dropped.
    pub max_spans_per_trace: usize,
    /// The depth cap of every trajectory built: deeper spans are re-hung under their
    /// ancestor at the cap and the trajectory is flagged `DepthTruncated` (see
    /// [`crate::model::trajectory`]).
    pub max_trace_depth: usize,
    /// Linked evaluations (evaluator spans of other traces) kept per trace; further ones
    /// are dropped and counted in [`AssembleStats::linked_dropped`]. Default
    /// [`DEFAULT_MAX_LINKED_PER_TRACE`].
    pub max_linked_per_trace: usize,
}

/// Counters for self-metrics. Monotonic except `buffered_spans` and `open_traces`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssembleStats {
    /// Records held (spans, log events, linked spans) in open traces and grace entries.
    pub buffered_spans: usize,
    /// What those records cost, in bytes ([`crate::model::held`]). A grace entry that
    /// took no late data is counted at what its trace held when released: the released
    /// trajectory it shares with the pipeline holds those records.
    pub buffered_bytes: u64,
    pub open_traces: usize,
    /// Spans (and logs, linked spans) that arrived after the grace period, or for a trace
    /// released as too large: counted, not merged.
    pub late_dropped: u64,
    /// Spans (and logs, linked spans) merged into an already released trajectory within
    /// the grace period.
    pub late_merged: u64,
    /// Open traces released early to stay under `max_buffered_spans`.
    pub evicted_memory: u64,
    /// Traces released at `max_trace_age` without their root span.
    pub evicted_max_age: u64,
    /// Traces (or revisions) released at `max_spans_per_trace`.
    pub evicted_too_large: u64,
    /// Exact duplicates of a span (or log, linked span) already held (retrying
    /// clients), dropped.
    pub duplicates: u64,
    /// Copies of a span id with different content, beyond the one kept as evidence of
    /// the conflict: dropped, since they cannot change the trajectory.
    pub conflicts: u64,
    /// Log events and linked spans of a trace that never got a span before it was
    /// released (or that carry no trace id): dropped.
    pub unmatched_dropped: u64,
    /// Grace entries forgotten early to stay under `max_buffered_spans` (or the byte
    /// bound, [`Assembler::set_max_buffered_bytes`]).
    pub grace_forgotten: u64,
    /// Linked evaluations of a trace that already held `max_linked_per_trace`: dropped.
    pub linked_dropped: u64,
}

/// Tombstones kept at least this many, whatever `max_buffered_spans` is.
const MIN_TOMBSTONES: usize = 1024;
/// A lazy queue is compacted once it holds this many more entries than live ones.
const COMPACT_SLACK: usize = 1024;

/// One entry of a lazy queue: `at` is the queue's base time (first record, release,
/// closing), `epoch` the state it was made for.
#[derive(Debug, Clone, Copy)]
struct QueueEntry {
    at: Instant,
    trace: TraceId,
    epoch: u64,
}

struct TraceState {
    /// Unique to this state of this trace; queue entries of an earlier state are stale.
    epoch: u64,
    phase: Phase,
}

enum Phase {
    Open(OpenTrace),
    Grace(GraceTrace),
    /// A tombstone: records of the trace are counted in `late_dropped`. `last_touch` is
    /// the closing time or the last dropped record, whichever is later.
    Closed {
        last_touch: Instant,
    },
}

struct OpenTrace {
    buf: Buffer,
    last_seen: Instant,
    /// Whether the idle heap holds an entry for this state.
    idle_queued: bool,
}

/// A released trace in its grace. Until late data arrives, it holds no records of its
/// own: the released trajectory (shared with the pipeline) and the conflict witnesses
/// are enough to restore the buffer, which happens on the first late record.
struct GraceTrace {
    released: Arc<Trajectory>,
    witnesses: Vec<SpanRecord>,
    /// The restored buffer with the late records, once some arrived. Boxed, so that
    /// a trace's state is no larger in grace than open.
    late: Option<Box<Buffer>>,
    /// Records counted in `buffered` for this trace (the restored buffer's length once
    /// there is one).
    records: usize,
    /// What the released trajectory's records cost (what the trace held when released).
    released_bytes: u64,
    /// Counted in `buffered_bytes` for this trace: `released_bytes`, plus the restored
    /// buffer's bytes once there is one (both copies are held until the revision).
    bytes: u64,
    revision: u32,
    late_spans: u32,
    /// Late data merged since the last release.
    pending: bool,
    last_late: Instant,
    idle_queued: bool,
}

/// Why an open trace is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    Idle,
    MaxAge,
    Memory,
    TooLarge,
    Shutdown,
}

/// What to do with an idle deadline that came up.
enum IdleAction {
    ReleaseOpen,
    Requeue(Instant),
    Nothing,
}

enum Record {
    Span(SpanRecord),
    Log(LogEvent),
    Linked(Arc<LinkedEvaluation>),
}

pub struct Assembler {
    config: AssembleConfig,
    /// The latest `now` seen.
    clock: Option<Instant>,
    traces: HashMap<TraceId, TraceState>,
    next_epoch: u64,
    /// Open traces by first record.
    open_queue: VecDeque<QueueEntry>,
    /// Grace entries by first release.
    grace_queue: VecDeque<QueueEntry>,
    /// Tombstones by closing time.
    closed_queue: VecDeque<QueueEntry>,
    /// Idle deadlines by last arrival: open traces with a root, grace entries with a
    /// pending revision. At most one entry per state; an entry whose trace saw newer
    /// data is pushed again with the later time when it comes up.
    idle: BinaryHeap<Reverse<(Instant, u64, TraceId)>>,
    open_count: usize,
    grace_count: usize,
    closed_count: usize,
    idle_count: usize,
    buffered: usize,
    /// What the `buffered` records cost, and its bound.
    buffered_bytes: u64,
    max_buffered_bytes: u64,
    /// Traces whose grace entry was forgotten under the bounds since the last
    /// [`Assembler::take_forgotten`].
    forgotten: Vec<TraceId>,
    stats: AssembleStats,
}

impl Assembler {
    pub fn new(config: AssembleConfig) -> Assembler {
        Assembler {
            config,
            clock: None,
            traces: HashMap::new(),
            next_epoch: 0,
            open_queue: VecDeque::new(),
            grace_queue: VecDeque::new(),
            closed_queue: VecDeque::new(),
            idle: BinaryHeap::new(),
            open_count: 0,
            grace_count: 0,
            closed_count: 0,
            idle_count: 0,
            buffered: 0,
            buffered_bytes: 0,
            max_buffered_bytes: u64::MAX,
            forgotten: Vec::new(),
            stats: AssembleStats::default(),
        }
    }

    /// Adds spans of traces this assembler owns. Trajectories released right away (a
    /// trace hitting a bound) are pushed to `out`. Timers only fire in [`Self::tick`].
    pub fn push_spans(
        &mut self,
        spans: Vec<SpanRecord>,
        now: Instant,
        out: &mut Vec<Arc<Trajectory>>,
    ) {
        let now = self.advance(now);
        // Consecutive spans of one trace (a run) are reserved for at once, so that a
        // buffer grows once per run, to its size.
        let mut spans = spans.into_iter();
        let mut run_left = 0;
        while let Some(span) = spans.next() {
            let reserve = if run_left == 0 {
                let same = |s: &&SpanRecord| s.trace_id == span.trace_id;
                run_left = 1 + spans.as_slice().iter().take_while(same).count();
                run_left
            } else {
                0
            };
            run_left -= 1;
            self.add(span.trace_id, Record::Span(span), reserve, now, out);
        }
        self.compact();
    }

    /// Adds log events that carry a trace id of this assembler.
    pub fn push_logs(&mut self, logs: Vec<LogEvent>, now: Instant, out: &mut Vec<Arc<Trajectory>>) {
        let now = self.advance(now);
        for log in logs {
            match log.trace_id {
                Some(trace) => self.add(trace, Record::Log(log), 0, now, out),
                None => {
                    tracing::debug!("Log event without a trace id dropped.");
                    self.stats.unmatched_dropped += 1;
                }
            }
        }
        self.compact();
    }

    /// Adds evaluations by spans of other traces that link to a span of `target`
    /// (post-hoc evaluations, see [`linked_evaluations`]). A trace keeps at most
    /// `max_linked_per_trace` of them; further ones are dropped and counted.
    pub fn push_linked(
        &mut self,
        target: TraceId,
        evaluations: Vec<Arc<LinkedEvaluation>>,
        now: Instant,
        out: &mut Vec<Arc<Trajectory>>,
    ) {
        let now = self.advance(now);
        for evaluation in evaluations {
            self.add(target, Record::Linked(evaluation), 0, now, out);
        }
        self.compact();
    }

    /// Changes the record bound (the pipeline lowers it to keep a shard within its share
    /// of the memory budget). A lower bound takes effect as the next record is added.
    pub fn set_max_buffered_spans(&mut self, max: usize) {
        self.config.max_buffered_spans = max.max(1);
    }

    /// Bounds the bytes the buffered records cost ([`AssembleStats::buffered_bytes`]),
    /// like `max_buffered_spans` bounds their number and with the same policy: above it
    /// the oldest grace entries are forgotten, then the oldest open traces are released
    /// early. Unbounded (`u64::MAX`) unless set; the pipeline sets a shard's share of the
    /// memory budget. Takes effect as the next record is added.
    pub fn set_max_buffered_bytes(&mut self, max: u64) {
        self.max_buffered_bytes = max.max(1);
    }

    /// The traces whose grace entry was forgotten under the bounds since the last call:
    /// closed for good, so no revision of theirs will come. A holder of their released
    /// analysis (waiting for the grace to end) may let it go now.
    pub fn take_forgotten(&mut self, out: &mut Vec<TraceId>) {
        out.append(&mut self.forgotten);
    }

    /// Releases what is due at `now`: idle complete traces, traces past `max_trace_age`,
    /// revisions of released trajectories that took late data; forgets expired graces.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Arc<Trajectory>>) {
        let now = self.advance(now);
        self.release_idle(now, out);
        while let Some(e) = front_valid(&mut self.open_queue, &self.traces) {
            if !due(e.at, self.config.max_trace_age, now) {
                break;
            }
            self.open_queue.pop_front();
            self.release_open(e.trace, Release::MaxAge, now, out);
        }
        while let Some(e) = front_valid(&mut self.grace_queue, &self.traces) {
            if !due(e.at, self.config.late_grace, now) {
                break;
            }
            self.grace_queue.pop_front();
            self.close_grace(e.trace, now, out);
        }
        let ttl = self.tombstone_ttl();
        while let Some(e) = front_valid(&mut self.closed_queue, &self.traces) {
            if !due(e.at, ttl, now) {
                break;
            }
            self.closed_queue.pop_front();
            let last_touch = match self.traces.get(&e.trace) {
                Some(TraceState {
                    phase: Phase::Closed { last_touch },
                    ..
                }) => *last_touch,
                _ => continue,
            };
            if due(last_touch, ttl, now) {
                self.forget_tombstone(e.trace);
            } else {
                // Data kept arriving for the closed trace: keep its tombstone for another
                // period (queued at `now`, which keeps the queue in order).
                self.closed_queue.push_back(QueueEntry { at: now, ..e });
            }
        }
        self.compact();
    }

    /// Releases every open trace (flagged incomplete `shutdown` unless complete) and
    /// every pending revision. Used at shutdown.
    pub fn drain(&mut self, out: &mut Vec<Arc<Trajectory>>) {
        let now = match self.clock {
            Some(c) => c,
            None => return,
        };
        while let Some(e) = front_valid(&mut self.grace_queue, &self.traces) {
            self.grace_queue.pop_front();
            self.close_grace(e.trace, now, out);
        }
        while let Some(e) = front_valid(&mut self.open_queue, &self.traces) {
            self.open_queue.pop_front();
            self.release_open(e.trace, Release::Shutdown, now, out);
        }
        self.compact();
    }

    pub fn stats(&self) -> AssembleStats {
        AssembleStats {
            buffered_spans: self.buffered,
            buffered_bytes: self.buffered_bytes,
            open_traces: self.open_count,
            ..self.stats.clone()
        }
    }

    fn advance(&mut self, now: Instant) -> Instant {
        let now = match self.clock {
            Some(c) if c > now => c,
            _ => now,
        };
        self.clock = Some(now);
        now
    }

    fn new_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    fn max_spans_per_trace(&self) -> usize {
        self.config.max_spans_per_trace.max(1)
    }

    fn tombstone_ttl(&self) -> Duration {
        self.config.max_trace_age.max(self.config.late_grace)
    }

    fn max_tombstones(&self) -> usize {
        self.config.max_buffered_spans.max(MIN_TOMBSTONES)
    }

    /// Checks the byte accounting against a recount: every open buffer's bytes are those
    /// of its records, every grace entry's are its released trajectory's plus its
    /// restored buffer's, and the total is their sum.
    #[cfg(test)]
    fn check_bytes(&self) -> Result<(), String> {
        let mut sum = 0;
        for (id, state) in &self.traces {
            match &state.phase {
                Phase::Open(open) => {
                    let recount = open.buf.recount_bytes(*id);
                    if recount != open.buf.bytes() {
                        return Err(format!(
                            "open {id}: {} counted, {recount} held",
                            open.buf.bytes()
                        ));
                    }
                    sum += recount;
                }
                Phase::Grace(grace) => {
                    let late = grace.late.as_ref().map_or(0, |b| b.recount_bytes(*id));
                    if grace.bytes != grace.released_bytes + late {
                        return Err(format!(
                            "grace {id}: {} counted, {} released + {late} late",
                            grace.bytes, grace.released_bytes
                        ));
                    }
                    sum += grace.bytes;
                }
                Phase::Closed { .. } => {}
            }
        }
        if sum != self.buffered_bytes {
            return Err(format!(
                "{} counted in all, {sum} held",
                self.buffered_bytes
            ));
        }
        Ok(())
    }

    fn push_idle(&mut self, at: Instant, epoch: u64, trace: TraceId) {
        self.idle.push(Reverse((at, epoch, trace)));
    }

    /// Adds one record of `trace`, then enforces the bounds.
    /// Adds one record; `reserve` > 0 makes room for that many spans of this trace first.
    fn add(
        &mut self,
        trace: TraceId,
        record: Record,
        reserve: usize,
        now: Instant,
        out: &mut Vec<Arc<Trajectory>>,
    ) {
        let cap = self.max_spans_per_trace();
        let linked_cap = self.config.max_linked_per_trace;
        // A new trace's buffer costs its structure from the start.
        let mut new_trace = false;
        let state = match self.traces.entry(trace) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                new_trace = true;
                self.next_epoch += 1;
                let epoch = self.next_epoch;
                self.open_queue.push_back(QueueEntry {
                    at: now,
                    trace,
                    epoch,
                });
                self.open_count += 1;
                v.insert(TraceState {
                    epoch,
                    phase: Phase::Open(OpenTrace {
                        buf: Buffer::default(),
                        last_seen: now,
                        idle_queued: false,
                    }),
                })
            }
        };
        let epoch = state.epoch;
        let mut queue_idle = false;
        let mut restored = 0;
        // Bytes before and after the record was added.
        let (bytes_before, bytes_after);
        let (added, too_large) = match &mut state.phase {
            Phase::Open(open) => {
                bytes_before = if new_trace { 0 } else { open.buf.bytes() };
                if reserve > 0 {
                    open.buf.reserve_spans(reserve);
                }
                let added = add_record(&mut open.buf, record, linked_cap, trace);
                bytes_after = open.buf.bytes();
                if changed(added) {
                    open.last_seen = now;
                    if open.buf.has_root() && !open.idle_queued {
                        open.idle_queued = true;
                        queue_idle = true;
                    }
                }
                (added, open.buf.len() >= cap)
            }
            Phase::Grace(grace) => {
                bytes_before = grace.bytes;
                let buf = match &mut grace.late {
                    Some(buf) => buf,
                    None => {
                        let buf = Box::new(Buffer::restore(&grace.released, &grace.witnesses));
                        // The same records, though exact copies the first buffer held
                        // twice (a log hash collision) are now held once.
                        restored = grace.records.saturating_sub(buf.len());
                        grace.records = buf.len();
                        grace.late.insert(buf)
                    }
                };
                let added = add_record(buf, record, linked_cap, trace);
                grace.records = buf.len();
                // The released trajectory stays held (by the pipeline, until the grace
                // ends) beside the restored buffer: both copies are counted.
                grace.bytes = grace.released_bytes + buf.bytes();
                bytes_after = grace.bytes;
                if changed(added) {
                    self.stats.late_merged += 1;
                    grace.late_spans = grace.late_spans.saturating_add(1);
                    grace.pending = true;
                    grace.last_late = now;
                    if !grace.idle_queued {
                        grace.idle_queued = true;
                        queue_idle = true;
                    }
                }
                (added, grace.records >= cap)
            }
            Phase::Closed { last_touch } => {
                *last_touch = now;
                self.stats.late_dropped += 1;
                return;
            }
        };
        self.buffered -= restored;
        self.buffered_bytes = (self.buffered_bytes + bytes_after).saturating_sub(bytes_before);
        match added {
            Added::New => self.buffered += 1,
            Added::Replaced => {}
            Added::Duplicate => self.stats.duplicates += 1,
            Added::Conflict => self.stats.conflicts += 1,
            Added::OverLinkedCap => self.stats.linked_dropped += 1,
        }
        if queue_idle {
            self.push_idle(now, epoch, trace);
            self.idle_count += 1;
        }
        if too_large {
            self.release_too_large(trace, now, out);
        }
        self.enforce_budget(now, out);
    }

    /// Releases `trace` (open or in grace) flagged `TooManySpans` and closes it.
    fn release_too_large(&mut self, trace: TraceId, now: Instant, out: &mut Vec<Arc<Trajectory>>) {
        let is_open = matches!(
            self.traces.get(&trace).map(|s| &s.phase),
            Some(Phase::Open(_))
        );
        if is_open {
            self.release_open(trace, Release::TooLarge, now, out);
            return;
        }
        let Some(state) = self.traces.remove(&trace) else {
            return;
        };
        match state.phase {
            Phase::Grace(grace) => {
                self.grace_count -= 1;
                self.stats.evicted_too_large += 1;
                tracing::debug!(trace_id = %trace, "Late data made the trace too large; closing it.");
                self.release_revision(trace, grace, Some(IncompleteReason::TooManySpans), out);
                self.close(trace, now);
            }
            other => {
                self.traces.insert(
                    trace,
                    TraceState {
                        epoch: state.epoch,
                        phase: other,
                    },
                );
            }
        }
    }

    /// Frees records until the total is within `max_buffered_spans`: oldest grace
    /// entries first, then the oldest open traces.
    fn enforce_budget(&mut self, now: Instant, out: &mut Vec<Arc<Trajectory>>) {
        while self.buffered > self.config.max_buffered_spans
            || self.buffered_bytes > self.max_buffered_bytes
        {
            if let Some(e) = front_valid(&mut self.grace_queue, &self.traces) {
                self.grace_queue.pop_front();
                self.stats.grace_forgotten += 1;
                tracing::debug!(trace_id = %e.trace, "Grace entry forgotten under memory pressure.");
                self.close_grace(e.trace, now, out);
                self.forgotten.push(e.trace);
                continue;
            }
            if let Some(e) = front_valid(&mut self.open_queue, &self.traces) {
                self.open_queue.pop_front();
                self.release_open(e.trace, Release::Memory, now, out);
                continue;
            }
            break;
        }
    }

    /// Pops the idle deadlines that are due and acts on those still current.
    fn release_idle(&mut self, now: Instant, out: &mut Vec<Arc<Trajectory>>) {
        let idle = self.config.idle_timeout;
        let max_depth = self.config.max_trace_depth;
        while let Some(&Reverse((at, epoch, trace))) = self.idle.peek() {
            if !due(at, idle, now) {
                break;
            }
            self.idle.pop();
            let Some(state) = self.traces.get_mut(&trace) else {
                continue;
            };
            if state.epoch != epoch {
                continue;
            }
            let action = match &mut state.phase {
                Phase::Open(open) => {
                    if due(open.last_seen, idle, now) {
                        open.idle_queued = false;
                        IdleAction::ReleaseOpen
                    } else {
                        IdleAction::Requeue(open.last_seen)
                    }
                }
                Phase::Grace(grace) => {
                    if !grace.pending {
                        grace.idle_queued = false;
                        IdleAction::Nothing
                    } else if due(grace.last_late, idle, now) {
                        grace.idle_queued = false;
                        grace.pending = false;
                        grace.revision = grace.revision.saturating_add(1);
                        if let Some(buf) = grace.late.take() {
                            // The revision replaces the released trajectory: one copy.
                            let held = buf.bytes();
                            self.buffered_bytes =
                                (self.buffered_bytes + held).saturating_sub(grace.bytes);
                            grace.released_bytes = held;
                            grace.bytes = held;
                            let (mut t, witnesses) = buf.into_parts(trace, max_depth);
                            set_revision_fields(&mut t, grace, None);
                            let t = Arc::new(t);
                            grace.released = Arc::clone(&t);
                            grace.witnesses = witnesses;
                            out.push(t);
                        }
                        IdleAction::Nothing
                    } else {
                        IdleAction::Requeue(grace.last_late)
                    }
                }
                Phase::Closed { .. } => IdleAction::Nothing,
            };
            self.idle_count -= 1;
            match action {
                IdleAction::ReleaseOpen => self.release_open(trace, Release::Idle, now, out),
                IdleAction::Requeue(at) => {
                    self.push_idle(at, epoch, trace);
                    self.idle_count += 1;
                }
                IdleAction::Nothing => {}
            }
        }
    }

    /// Releases an open trace; it then enters its grace or is closed.
    fn release_open(
        &mut self,
        trace: TraceId,
        why: Release,
        now: Instant,
        out: &mut Vec<Arc<Trajectory>>,
    ) {
        let Some(state) = self.traces.remove(&trace) else {
            return;
        };
        let open = match state.phase {
            Phase::Open(open) => open,
            other => {
                self.traces.insert(
                    trace,
                    TraceState {
                        epoch: state.epoch,
                        phase: other,
                    },
                );
                return;
            }
        };
        self.open_count -= 1;
        if open.idle_queued {
            self.idle_count -= 1;
        }
        let records = open.buf.len();
        let bytes = open.buf.bytes();
        if why == Release::Memory {
            self.stats.evicted_memory += 1;
        }
        if !open.buf.has_spans() {
            // Only log events or linked spans: nothing to analyse.
            self.buffered -= records;
            self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
            self.stats.unmatched_dropped += records as u64;
            tracing::debug!(trace_id = %trace, records, "Trace without spans dropped.");
            return;
        }
        let has_root = open.buf.has_root();
        let reason = match why {
            Release::Idle => None,
            Release::MaxAge | Release::Shutdown if has_root => None,
            Release::MaxAge => Some(IncompleteReason::MaxAge),
            Release::Shutdown => Some(IncompleteReason::Shutdown),
            Release::Memory => Some(IncompleteReason::MemoryPressure),
            Release::TooLarge => Some(IncompleteReason::TooManySpans),
        };
        match why {
            Release::MaxAge if !has_root => self.stats.evicted_max_age += 1,
            Release::TooLarge => self.stats.evicted_too_large += 1,
            _ => {}
        }
        if reason.is_some() {
            tracing::debug!(trace_id = %trace, ?why, records, "Trace released incomplete.");
        }
        let keep_for_grace =
            matches!(why, Release::Idle | Release::MaxAge) && !self.config.late_grace.is_zero();
        if keep_for_grace {
            let (mut t, witnesses) = open.buf.into_parts(trace, self.config.max_trace_depth);
            t.complete = reason.is_none();
            t.incomplete_reason = reason;
            let t = Arc::new(t);
            let epoch = self.new_epoch();
            self.traces.insert(
                trace,
                TraceState {
                    epoch,
                    phase: Phase::Grace(GraceTrace {
                        released: Arc::clone(&t),
                        witnesses,
                        late: None,
                        records,
                        released_bytes: bytes,
                        bytes,
                        revision: 0,
                        late_spans: 0,
                        pending: false,
                        last_late: now,
                        idle_queued: false,
                    }),
                },
            );
            self.grace_queue.push_back(QueueEntry {
                at: now,
                trace,
                epoch,
            });
            self.grace_count += 1;
            out.push(t);
        } else {
            self.buffered -= records;
            self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
            let mut t = open.buf.into_trajectory(trace, self.config.max_trace_depth);
            self.close(trace, now);
            t.complete = reason.is_none();
            t.incomplete_reason = reason;
            out.push(Arc::new(t));
        }
    }

    /// Ends the grace of `trace`: releases its pending revision, then closes it.
    fn close_grace(&mut self, trace: TraceId, now: Instant, out: &mut Vec<Arc<Trajectory>>) {
        let Some(state) = self.traces.remove(&trace) else {
            return;
        };
        let grace = match state.phase {
            Phase::Grace(grace) => grace,
            other => {
                self.traces.insert(
                    trace,
                    TraceState {
                        epoch: state.epoch,
                        phase: other,
                    },
                );
                return;
            }
        };
        self.grace_count -= 1;
        if grace.pending {
            self.release_revision(trace, grace, None, out);
        } else {
            if grace.idle_queued {
                self.idle_count -= 1;
            }
            self.buffered -= grace.records;
            self.buffered_bytes = self.buffered_bytes.saturating_sub(grace.bytes);
        }
        self.close(trace, now);
    }

    /// Releases the next revision of a grace entry that is leaving its grace, giving its
    /// records away.
    fn release_revision(
        &mut self,
        trace: TraceId,
        mut grace: GraceTrace,
        reason: Option<IncompleteReason>,
        out: &mut Vec<Arc<Trajectory>>,
    ) {
        if grace.idle_queued {
            self.idle_count -= 1;
        }
        self.buffered -= grace.records;
        self.buffered_bytes = self.buffered_bytes.saturating_sub(grace.bytes);
        grace.revision = grace.revision.saturating_add(1);
        let mut t = match grace.late.take() {
            Some(buf) => buf.into_trajectory(trace, self.config.max_trace_depth),
            // Nothing merged since the last release (a trace made too large by late
            // data always has its buffer): the released trajectory again.
            None => Trajectory::clone(&grace.released),
        };
        set_revision_fields(&mut t, &grace, reason);
        out.push(Arc::new(t));
    }

    /// Leaves a tombstone for `trace`.
    fn close(&mut self, trace: TraceId, now: Instant) {
        let epoch = self.new_epoch();
        self.traces.insert(
            trace,
            TraceState {
                epoch,
                phase: Phase::Closed { last_touch: now },
            },
        );
        self.closed_queue.push_back(QueueEntry {
            at: now,
            trace,
            epoch,
        });
        self.closed_count += 1;
        while self.closed_count > self.max_tombstones() {
            match front_valid(&mut self.closed_queue, &self.traces) {
                Some(e) => {
                    self.closed_queue.pop_front();
                    self.forget_tombstone(e.trace);
                }
                None => break,
            }
        }
    }

    fn forget_tombstone(&mut self, trace: TraceId) {
        if let Some(TraceState {
            phase: Phase::Closed { .. },
            ..
        }) = self.traces.get(&trace)
        {
            self.traces.remove(&trace);
            self.closed_count -= 1;
        }
    }

    /// Drops stale entries from the lazy queues once they outnumber live ones.
    fn compact(&mut self) {
        let traces = &self.traces;
        let live = |e: &QueueEntry| traces.get(&e.trace).is_some_and(|s| s.epoch == e.epoch);
        if self.open_queue.len() > 2 * self.open_count + COMPACT_SLACK {
            self.open_queue.retain(live);
        }
        if self.grace_queue.len() > 2 * self.grace_count + COMPACT_SLACK {
            self.grace_queue.retain(live);
        }
        if self.closed_queue.len() > 2 * self.closed_count + COMPACT_SLACK {
            self.closed_queue.retain(live);
        }
        if self.idle.len() > 2 * self.idle_count + COMPACT_SLACK {
            self.idle.retain(|Reverse((_, epoch, trace))| {
                traces.get(trace).is_some_and(|s| s.epoch == *epoch)
            });
        }
    }
}

fn add_record(buf: &mut Buffer, record: Record, linked_cap: usize, trace: TraceId) -> Added {
    match record {
        Record::Span(span) => buf.add_span(span),
        Record::Log(log) => buf.add_log(log),
        Record::Linked(evaluation) => buf.add_linked(evaluation, linked_cap, trace),
    }
}

/// Whether adding a record changed what the trajectory would be.
fn changed(added: Added) -> bool {
    matches!(added, Added::New | Added::Replaced)
}

/// Whether `after` has passed since `at`. A deadline beyond the clock's range never is.
fn due(at: Instant, after: Duration, now: Instant) -> bool {
    at.checked_add(after)
        .is_some_and(|deadline| deadline <= now)
}

/// The first entry of `queue` that is still current, dropping stale ones before it.
fn front_valid(
    queue: &mut VecDeque<QueueEntry>,
    traces: &HashMap<TraceId, TraceState>,
) -> Option<QueueEntry> {
    while let Some(&e) = queue.front() {
        if traces.get(&e.trace).is_some_and(|s| s.epoch == e.epoch) {
            return Some(e);
        }
        queue.pop_front();
    }
    None
}

/// Sets the fields of a revision built from a grace entry whose `revision` is the one
/// being released.
fn set_revision_fields(t: &mut Trajectory, grace: &GraceTrace, reason: Option<IncompleteReason>) {
    let reason = reason.or_else(|| t.root.is_none().then_some(IncompleteReason::MaxAge));
    t.complete = reason.is_none();
    t.incomplete_reason = reason;
    t.revision = grace.revision;
    t.late_spans = grace.late_spans;
}
