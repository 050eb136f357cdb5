//! An assembled trace: the spans of one agent run, as a tree.
//!
//! [`Trajectory::build`] is the one place that turns a bag of spans into a tree. It
//! never fails and never recurses: malformed input (missing parents, extra roots,
//! conflicting copies of a span id, parent cycles, trees deeper than the depth cap) is
//! reported as [`Anomaly`] data. The canonical orders defined here are total, so the
//! same records always give the same trajectory whatever order and batching they
//! arrived in.
//!
//! # Depth
//!
//! The depth of a span is the number of `parent` links from it to the top of its tree
//! (the root, an orphan, an extra root or the span that breaks a cycle, each at depth 0).
//! No span of a built trajectory is deeper than the cap (`max_trace_depth`, default
//! [`DEFAULT_MAX_TRACE_DEPTH`]): a span that would be is re-hung under its ancestor at
//! depth `cap - 1`, so it sits at depth `cap`, and the trajectory says so once with
//! [`Anomaly::DepthTruncated`]. Following `parent` from any span therefore takes at most
//! `cap` steps, and `tree_parent` (which hangs orphans under the root) at most `cap + 1`:
//! a stage that walks the ancestors of every span does O(n · cap) work at most.

use crate::conventions;
use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::ids::{SpanId, TraceId};
use super::linked::LinkedEvaluation;
use super::span::{
    Attributes, LogEvent, Resource, SpanEvent, SpanKind, SpanLink, SpanRecord, SpanStatus, Value,
};

/// Why a trajectory was released before it was known to be complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncompleteReason {
    /// No root span arrived before `max_trace_age`.
    MaxAge,
    /// Evicted to keep buffered spans under `max_buffered_spans`.
    MemoryPressure,
    /// The trace reached `max_spans_per_trace`.
    TooManySpans,
    /// The server shut down with the trace still open.
    Shutdown,
}

impl IncompleteReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IncompleteReason::MaxAge => "max_age",
            IncompleteReason::MemoryPressure => "memory",
            IncompleteReason::TooManySpans => "trace_too_large",
            IncompleteReason::Shutdown => "shutdown",
        }
    }
}

/// The default depth cap of a trajectory (see the module docs): deep enough for any
/// real agent run (nested agents, chains and tools rarely pass a few dozen levels),
/// shallow enough that walking the ancestors of every span stays cheap.
pub const DEFAULT_MAX_TRACE_DEPTH: usize = 1000;

/// Malformed telemetry found while assembling: reported as data, never as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// A span whose parent never arrived; it hangs under the root.
    MissingParent {
        span_id: SpanId,
        parent_span_id: SpanId,
    },
    /// More than one span without a parent; the earliest is the root.
    ExtraRoot { span_id: SpanId },
    /// A span id sent more than once with different contents. The canonical first copy
    /// (earliest start, then earliest end, then content) is kept; reported once per id.
    ConflictingDuplicate { span_id: SpanId },
    /// A span that ends before it starts.
    NegativeDuration { span_id: SpanId },
    /// The parent links of `span_id` lead back to itself (including a span that names
    /// itself as its parent). The cycle is broken at this span, the earliest of the
    /// cycle in canonical order: its `parent` is `None` and it hangs under the root
    /// like an orphan, so every tree walk terminates.
    Cycle { span_id: SpanId },
    /// The tree is deeper than the depth cap `max_depth`. Every span deeper than the cap
    /// is re-hung under its ancestor at depth `max_depth - 1` (so it sits at
    /// `max_depth`); `span_id` is the first of them in canonical order. Reported once
    /// per trajectory.
    DepthTruncated { span_id: SpanId, max_depth: usize },
}

impl Anomaly {
    /// The kind, as a metric label: a closed set.
    pub fn kind(&self) -> &'static str {
        match self {
            Anomaly::MissingParent { .. } => "missing_parent",
            Anomaly::ExtraRoot { .. } => "extra_root",
            Anomaly::ConflictingDuplicate { .. } => "conflicting_duplicate",
            Anomaly::NegativeDuration { .. } => "negative_duration",
            Anomaly::Cycle { .. } => "cycle",
            Anomaly::DepthTruncated { .. } => "depth_truncated",
        }
    }
}

/// The spans of one trace, assembled into a tree. Immutable once built.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub trace_id: TraceId,
    /// Every span, in a canonical order (start time, then span id; then end time and
    /// content for copies of one id), so that the same spans always give the same
    /// trajectory whatever order they arrived in.
    pub spans: Vec<SpanRecord>,
    /// `parent[i]` is the index in `spans` of span i's parent; `None` for the root, for
    /// spans whose parent is missing and for the span that breaks a parent cycle (those
    /// are listed in `anomalies`). Following `parent` always terminates, within the
    /// depth cap; a span re-hung by the cap has an ancestor here, not its parent.
    pub parent: Vec<Option<u32>>,
    /// Index of the root span: the earliest span without a parent.
    pub root: Option<u32>,
    /// Log events of this trace (e.g. `gen_ai.evaluation.result`), in canonical order.
    pub logs: Vec<LogEvent>,
    /// Evaluator spans of other traces that point at a span of this trace by a link
    /// (OpenInference post-hoc EVALUATOR spans), each shared with every run it judges
    /// (see [`LinkedEvaluation`]). Canonical order.
    pub linked: Vec<Arc<LinkedEvaluation>>,
    pub complete: bool,
    pub incomplete_reason: Option<IncompleteReason>,
    /// Records (spans, log events, linked spans) merged after the trajectory was first
    /// released, over all revisions so far.
    pub late_spans: u32,
    /// 0 for the first release, +1 for each re-analysis after late data.
    pub revision: u32,
    pub anomalies: Vec<Anomaly>,
}

impl Trajectory {
    /// Builds the tree from spans in any order, with the default depth cap
    /// ([`DEFAULT_MAX_TRACE_DEPTH`]); see [`Trajectory::build_with_depth_cap`].
    pub fn build(
        trace_id: TraceId,
        spans: Vec<SpanRecord>,
        logs: Vec<LogEvent>,
        linked: Vec<Arc<LinkedEvaluation>>,
    ) -> Trajectory {
        Trajectory::build_with_depth_cap(trace_id, spans, logs, linked, DEFAULT_MAX_TRACE_DEPTH)
    }

    /// Builds the tree from spans in any order; no span ends up deeper than `max_depth`
    /// (taken as at least 1).
    ///
    /// Linear after sorting and free of recursion: a chain 100 000 deep or a span with
    /// 100 000 children builds like any other trace. Copies of one span id keep the
    /// canonical first copy (exact copies silently, differing ones with
    /// [`Anomaly::ConflictingDuplicate`]); parent cycles are broken
    /// ([`Anomaly::Cycle`]); spans deeper than the cap are re-hung
    /// ([`Anomaly::DepthTruncated`]). Logs are deduplicated by content, linked spans by
    /// (trace id, span id) keeping their canonical first copy.
    pub fn build_with_depth_cap(
        trace_id: TraceId,
        mut spans: Vec<SpanRecord>,
        mut logs: Vec<LogEvent>,
        mut linked: Vec<Arc<LinkedEvaluation>>,
        max_depth: usize,
    ) -> Trajectory {
        let mut anomalies = Vec::new();
        spans.sort_unstable_by(span_order);

        // Dedup by span id: keep the canonical first of the copies.
        let mut index: HashMap<SpanId, u32> = HashMap::with_capacity(spans.len());
        let mut keep: Vec<SpanRecord> = Vec::with_capacity(spans.len());
        let mut conflict_reported: Vec<bool> = Vec::new();
        for span in spans {
            match index.entry(span.span_id) {
                Entry::Occupied(e) => {
                    let first = *e.get() as usize;
                    if span_content_cmp(&keep[first], &span) != Ordering::Equal {
                        if conflict_reported.len() <= first {
                            conflict_reported.resize(keep.len(), false);
                        }
                        if !conflict_reported[first] {
                            conflict_reported[first] = true;
                            anomalies.push(Anomaly::ConflictingDuplicate {
                                span_id: span.span_id,
                            });
                        }
                    }
                }
                Entry::Vacant(v) => {
                    v.insert(index_u32(keep.len()));
                    keep.push(span);
                }
            }
        }
        let spans = keep;

        let mut root = None;
        let mut parent: Vec<Option<u32>> = Vec::with_capacity(spans.len());
        for (i, span) in spans.iter().enumerate() {
            if span.end_unix_nano < span.start_unix_nano {
                anomalies.push(Anomaly::NegativeDuration {
                    span_id: span.span_id,
                });
            }
            match span.parent_span_id {
                None => {
                    if root.is_none() {
                        root = Some(index_u32(i));
                    } else {
                        anomalies.push(Anomaly::ExtraRoot {
                            span_id: span.span_id,
                        });
                    }
                    parent.push(None);
                }
                Some(p) if p == span.span_id => {
                    anomalies.push(Anomaly::Cycle {
                        span_id: span.span_id,
                    });
                    parent.push(None);
                }
                Some(p) => match index.get(&p) {
                    Some(&pi) => parent.push(Some(pi)),
                    None => {
                        anomalies.push(Anomaly::MissingParent {
                            span_id: span.span_id,
                            parent_span_id: p,
                        });
                        parent.push(None);
                    }
                },
            }
        }
        break_cycles(&spans, &mut parent, &mut anomalies);
        cap_depth(&spans, &mut parent, max_depth, &mut anomalies);

        logs.sort_unstable_by(log_order);
        logs.dedup_by(|a, b| log_order(a, b) == Ordering::Equal);

        linked.sort_unstable_by(|a, b| linked_order(a, b));
        {
            let mut seen: HashSet<(TraceId, SpanId)> = HashSet::with_capacity(linked.len());
            linked.retain(|s| seen.insert((s.trace_id, s.span_id)));
        }

        Trajectory {
            trace_id,
            spans,
            parent,
            root,
            logs,
            linked,
            complete: true,
            incomplete_reason: None,
            late_spans: 0,
            revision: 0,
            anomalies,
        }
    }

    pub fn root_span(&self) -> Option<&SpanRecord> {
        self.root.map(|i| &self.spans[i as usize])
    }

    /// Children of span `i`, in canonical order. O(n); build a child index when calling
    /// this for every span.
    pub fn children(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        self.parent
            .iter()
            .enumerate()
            .filter(move |(_, p)| **p == Some(i))
            .map(|(c, _)| c as u32)
    }

    /// Child lists for every span, built once: `children[i]` in canonical order.
    pub fn child_index(&self) -> Vec<Vec<u32>> {
        let mut children = vec![Vec::new(); self.spans.len()];
        for (c, p) in self.parent.iter().enumerate() {
            if let Some(p) = p {
                children[*p as usize].push(c as u32);
            }
        }
        children
    }

    /// The effective parent of span `i` for tree walks: its parent, or the root for an
    /// orphan (so that infrastructure under a missing span still belongs to the run).
    pub fn tree_parent(&self, i: u32) -> Option<u32> {
        match self.parent[i as usize] {
            Some(p) => Some(p),
            None if Some(i) == self.root => None,
            None => self.root,
        }
    }

    pub fn start_unix_nano(&self) -> u64 {
        self.root_span()
            .map(|r| r.start_unix_nano)
            .or_else(|| self.spans.iter().map(|s| s.start_unix_nano).min())
            .unwrap_or(0)
    }

    pub fn end_unix_nano(&self) -> u64 {
        self.spans
            .iter()
            .map(|s| s.end_unix_nano)
            .max()
            .unwrap_or(0)
    }

    pub fn find(&self, span_id: SpanId) -> Option<u32> {
        self.spans
            .iter()
            .position(|s| s.span_id == span_id)
            .map(|i| i as u32)
    }

    /// `session.id` or `gen_ai.conversation.id` from the root span, else any span.
    pub fn session_id(&self) -> Option<&str> {
        const KEYS: [&str; 3] = [
            conventions::SESSION_ID,
            conventions::GEN_AI_CONVERSATION_ID,
            conventions::TRACELOOP_SESSION_ID,
        ];
        fn from(s: &SpanRecord) -> Option<&str> {
            KEYS.iter().find_map(|k| s.attr_str(k))
        }
        self.root_span()
            .and_then(from)
            .or_else(|| self.spans.iter().find_map(from))
    }

    pub fn service(&self) -> Option<&str> {
        self.root_span()
            .or(self.spans.first())
            .and_then(|s| s.resource.service_name.as_deref())
    }
}

/// `u32` index of a span. Traces are capped far below `u32::MAX` spans by the assembler;
/// a larger input saturates rather than wraps.
fn index_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Finds the cycles of the parent graph and breaks each at its earliest span (canonical
/// order). Each span has at most one parent, so the graph is a set of chains that end in
/// a root, an orphan or a cycle: one walk per unvisited span, every span visited once.
fn break_cycles(spans: &[SpanRecord], parent: &mut [Option<u32>], anomalies: &mut Vec<Anomaly>) {
    const UNSEEN: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![UNSEEN; spans.len()];
    let mut path: Vec<usize> = Vec::new();
    for start in 0..spans.len() {
        if state[start] != UNSEEN {
            continue;
        }
        path.clear();
        let mut cur = start;
        loop {
            match state[cur] {
                UNSEEN => {
                    state[cur] = ON_PATH;
                    path.push(cur);
                    match parent[cur] {
                        Some(p) => cur = p as usize,
                        None => break,
                    }
                }
                ON_PATH => {
                    // `cur` is on this walk's path: path[pos..] is the cycle.
                    let pos = path.iter().rposition(|&x| x == cur).unwrap_or(0);
                    if let Some(&breaker) = path[pos..].iter().min() {
                        parent[breaker] = None;
                        anomalies.push(Anomaly::Cycle {
                            span_id: spans[breaker].span_id,
                        });
                    }
                    break;
                }
                _ => break,
            }
        }
        for &x in &path {
            state[x] = DONE;
        }
    }
}

/// Re-hangs every span deeper than `max_depth` under its ancestor at depth
/// `max_depth - 1` and reports the first one cut. Runs after `break_cycles`, on a forest.
///
/// Linear and iterative: each span's depth is found once, by walking up to the nearest
/// span of known depth (or a top) and then assigning depths down that path; the path
/// carries the ancestor at depth `max_depth - 1` (the anchor) for the spans below it.
fn cap_depth(
    spans: &[SpanRecord],
    parent: &mut [Option<u32>],
    max_depth: usize,
    anomalies: &mut Vec<Anomaly>,
) {
    let n = spans.len();
    let max_depth = max_depth.max(1);
    // A span's depth is below the number of spans.
    if n <= max_depth {
        return;
    }
    const UNKNOWN: usize = usize::MAX;
    let mut depth = vec![UNKNOWN; n];
    let mut path: Vec<usize> = Vec::new();
    let mut first_cut: Option<usize> = None;
    for start in 0..n {
        if depth[start] != UNKNOWN {
            continue;
        }
        // Up to a span of known depth, or a top. The bound only guards against a parent
        // graph that is not a forest, which `break_cycles` rules out.
        path.clear();
        let mut cur = start;
        let mut above: Option<usize> = None;
        while depth[cur] == UNKNOWN && path.len() <= n {
            path.push(cur);
            match parent[cur] {
                Some(p) => cur = p as usize,
                None => break,
            }
        }
        if depth[cur] != UNKNOWN {
            above = Some(cur);
        }
        // The depth and anchor just above the path's top.
        let (mut d, mut anchor) = match above {
            None => (None, None),
            Some(a) if depth[a] + 1 == max_depth => (Some(depth[a]), Some(a)),
            // `a` sits at the cap: its parent is the anchor (it was re-hung there, or
            // was there already).
            Some(a) if depth[a] == max_depth => (Some(depth[a]), parent[a].map(|p| p as usize)),
            Some(a) => (Some(depth[a]), None),
        };
        for &s in path.iter().rev() {
            let here = d.map_or(0, |d| d + 1);
            if here > max_depth {
                // Below a span at the cap: re-hang under the anchor, at the cap.
                parent[s] = anchor.map(index_u32);
                depth[s] = max_depth;
                if first_cut.is_none_or(|f| s < f) {
                    first_cut = Some(s);
                }
            } else {
                depth[s] = here;
                if here + 1 == max_depth {
                    anchor = Some(s);
                }
            }
            d = Some(depth[s]);
        }
    }
    if let Some(s) = first_cut {
        anomalies.push(Anomaly::DepthTruncated {
            span_id: spans[s].span_id,
            max_depth,
        });
    }
}

/// The canonical order of spans: start time, span id, end time, then content.
pub(crate) fn span_order(a: &SpanRecord, b: &SpanRecord) -> Ordering {
    a.start_unix_nano
        .cmp(&b.start_unix_nano)
        .then_with(|| a.span_id.cmp(&b.span_id))
        .then_with(|| span_content_cmp(a, b))
}

/// The canonical order of linked evaluations: start time, trace id, span id, then
/// content.
fn linked_order(a: &LinkedEvaluation, b: &LinkedEvaluation) -> Ordering {
    a.start_unix_nano
        .cmp(&b.start_unix_nano)
        .then_with(|| a.trace_id.cmp(&b.trace_id))
        .then_with(|| a.span_id.cmp(&b.span_id))
        .then_with(|| linked_content_cmp(a, b))
}

/// A total order on everything a linked evaluation holds; `Equal` means the same record.
pub(crate) fn linked_content_cmp(a: &LinkedEvaluation, b: &LinkedEvaluation) -> Ordering {
    if std::ptr::eq(a, b) {
        return Ordering::Equal;
    }
    a.start_unix_nano
        .cmp(&b.start_unix_nano)
        .then_with(|| a.end_unix_nano.cmp(&b.end_unix_nano))
        .then_with(|| a.span_id.cmp(&b.span_id))
        .then_with(|| a.trace_id.cmp(&b.trace_id))
        .then_with(|| a.name.cmp(&b.name))
        .then_with(|| cmp_attributes(&a.attributes, &b.attributes))
        .then_with(|| a.links.cmp(&b.links))
}

/// The canonical order of log events: time, span id, event name, then content.
pub(crate) fn log_order(a: &LogEvent, b: &LogEvent) -> Ordering {
    a.time_unix_nano
        .cmp(&b.time_unix_nano)
        .then_with(|| a.span_id.cmp(&b.span_id))
        .then_with(|| a.event_name.cmp(&b.event_name))
        .then_with(|| a.trace_id.cmp(&b.trace_id))
        .then_with(|| a.severity_number.cmp(&b.severity_number))
        .then_with(|| cmp_opt_value(a.body.as_ref(), b.body.as_ref()))
        .then_with(|| cmp_attributes(&a.attributes, &b.attributes))
        .then_with(|| cmp_resource(&a.resource, &b.resource))
}

/// A total order on everything a span holds. `Equal` means the two records are the
/// same span (floats compare by `total_cmp`, so a re-sent span with a NaN attribute is
/// still an exact copy of itself). Cheap fields first.
pub(crate) fn span_content_cmp(a: &SpanRecord, b: &SpanRecord) -> Ordering {
    a.start_unix_nano
        .cmp(&b.start_unix_nano)
        .then_with(|| a.end_unix_nano.cmp(&b.end_unix_nano))
        .then_with(|| a.span_id.cmp(&b.span_id))
        .then_with(|| a.trace_id.cmp(&b.trace_id))
        .then_with(|| a.parent_span_id.cmp(&b.parent_span_id))
        .then_with(|| kind_rank(a.kind).cmp(&kind_rank(b.kind)))
        .then_with(|| status_rank(a.status).cmp(&status_rank(b.status)))
        .then_with(|| a.name.cmp(&b.name))
        .then_with(|| a.status_message.cmp(&b.status_message))
        .then_with(|| a.scope_name.cmp(&b.scope_name))
        .then_with(|| cmp_attributes(&a.attributes, &b.attributes))
        .then_with(|| cmp_slices(&a.events, &b.events, cmp_event))
        .then_with(|| cmp_slices(&a.links, &b.links, cmp_link))
        .then_with(|| cmp_resource(&a.resource, &b.resource))
}

fn kind_rank(k: SpanKind) -> u8 {
    match k {
        SpanKind::Unspecified => 0,
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn status_rank(s: SpanStatus) -> u8 {
    match s {
        SpanStatus::Unset => 0,
        SpanStatus::Ok => 1,
        SpanStatus::Error => 2,
    }
}

fn cmp_slices<T>(a: &[T], b: &[T], cmp: impl Fn(&T, &T) -> Ordering) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = cmp(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn cmp_event(a: &SpanEvent, b: &SpanEvent) -> Ordering {
    a.time_unix_nano
        .cmp(&b.time_unix_nano)
        .then_with(|| a.name.cmp(&b.name))
        .then_with(|| cmp_attributes(&a.attributes, &b.attributes))
}

fn cmp_link(a: &SpanLink, b: &SpanLink) -> Ordering {
    a.trace_id
        .cmp(&b.trace_id)
        .then_with(|| a.span_id.cmp(&b.span_id))
        .then_with(|| cmp_attributes(&a.attributes, &b.attributes))
}

fn cmp_resource(a: &Arc<Resource>, b: &Arc<Resource>) -> Ordering {
    if Arc::ptr_eq(a, b) {
        return Ordering::Equal;
    }
    a.service_name
        .cmp(&b.service_name)
        .then_with(|| cmp_attributes(&a.attributes, &b.attributes))
}

fn cmp_attributes(a: &Attributes, b: &Attributes) -> Ordering {
    let mut ai = a.iter();
    let mut bi = b.iter();
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((ka, va)), Some((kb, vb))) => {
                let o = ka.cmp(kb).then_with(|| cmp_value(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

fn cmp_opt_value(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => cmp_value(x, y),
    }
}

/// One level of a value comparison: decided, or two arrays whose items come next.
enum Shallow<'a> {
    Decided(Ordering),
    Arrays(&'a [Value], &'a [Value]),
}

fn cmp_shallow<'a>(a: &'a Value, b: &'a Value) -> Shallow<'a> {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Str(_) => 0,
            Value::Int(_) => 1,
            Value::Double(_) => 2,
            Value::Bool(_) => 3,
            Value::Array(_) => 4,
        }
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Shallow::Decided(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Shallow::Decided(x.cmp(y)),
        (Value::Double(x), Value::Double(y)) => Shallow::Decided(x.total_cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Shallow::Decided(x.cmp(y)),
        (Value::Array(x), Value::Array(y)) => Shallow::Arrays(x, y),
        _ => Shallow::Decided(rank(a).cmp(&rank(b))),
    }
}

/// A total order on values, iterative so that deeply nested arrays cannot exhaust the
/// stack.
pub(crate) fn cmp_value(a: &Value, b: &Value) -> Ordering {
    let mut stack: Vec<(std::slice::Iter<'_, Value>, std::slice::Iter<'_, Value>)> = Vec::new();
    match cmp_shallow(a, b) {
        Shallow::Decided(o) => return o,
        Shallow::Arrays(x, y) => stack.push((x.iter(), y.iter())),
    }
    while let Some((xs, ys)) = stack.last_mut() {
        match (xs.next(), ys.next()) {
            (None, None) => {
                stack.pop();
            }
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match cmp_shallow(x, y) {
                Shallow::Decided(Ordering::Equal) => {}
                Shallow::Decided(o) => return o,
                Shallow::Arrays(p, q) => stack.push((p.iter(), q.iter())),
            },
        }
    }
    Ordering::Equal
}
