//! An assembled trace: the spans of one agent run, as a tree.

use super::ids::{SpanId, TraceId};
use super::span::{LogEvent, SpanRecord};

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

/// Malformed telemetry found while assembling: reported as data, never as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// A span whose parent never arrived; it hangs under the root.
    MissingParent { span_id: SpanId, parent_span_id: SpanId },
    /// More than one span without a parent; the earliest is the root.
    ExtraRoot { span_id: SpanId },
    /// A span id sent twice with different contents; the first copy is kept.
    ConflictingDuplicate { span_id: SpanId },
    /// A span that ends before it starts.
    NegativeDuration { span_id: SpanId },
}

/// The spans of one trace, assembled into a tree. Immutable once built.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub trace_id: TraceId,
    /// Every span, in a canonical order (start time, then span id), so that the same
    /// spans always give the same trajectory whatever order they arrived in.
    pub spans: Vec<SpanRecord>,
    /// `parent[i]` is the index in `spans` of span i's parent; `None` for the root and
    /// for spans whose parent is missing (those are listed in `anomalies`).
    pub parent: Vec<Option<u32>>,
    /// Index of the root span: the earliest span without a parent.
    pub root: Option<u32>,
    /// Log events of this trace (e.g. `gen_ai.evaluation.result`), in canonical order.
    pub logs: Vec<LogEvent>,
    /// Spans from other traces that point at a span of this trace by a link, e.g.
    /// OpenInference post-hoc EVALUATOR spans. Canonical order.
    pub linked: Vec<SpanRecord>,
    pub complete: bool,
    pub incomplete_reason: Option<IncompleteReason>,
    /// Spans that arrived after the trajectory was first released.
    pub late_spans: u32,
    /// 0 for the first release, +1 for each re-analysis after late data.
    pub revision: u32,
    pub anomalies: Vec<Anomaly>,
}

impl Trajectory {
    /// Builds the tree from spans in any order. Duplicate span ids keep the first copy.
    pub fn build(
        trace_id: TraceId,
        mut spans: Vec<SpanRecord>,
        mut logs: Vec<LogEvent>,
        mut linked: Vec<SpanRecord>,
    ) -> Trajectory {
        let mut anomalies = Vec::new();
        spans.sort_by(|a, b| {
            (a.start_unix_nano, a.span_id, a.end_unix_nano).cmp(&(
                b.start_unix_nano,
                b.span_id,
                b.end_unix_nano,
            ))
        });
        // Dedup by span id: keep one copy, the canonical first of the sorted duplicates.
        {
            let mut seen = std::collections::HashMap::with_capacity(spans.len());
            let mut keep = Vec::with_capacity(spans.len());
            for span in spans.drain(..) {
                match seen.get(&span.span_id) {
                    Some(&idx) => {
                        let first: &SpanRecord = &keep[idx];
                        if *first != span {
                            anomalies.push(Anomaly::ConflictingDuplicate {
                                span_id: span.span_id,
                            });
                        }
                    }
                    None => {
                        seen.insert(span.span_id, keep.len());
                        keep.push(span);
                    }
                }
            }
            spans = keep;
        }
        let index: std::collections::HashMap<SpanId, u32> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id, i as u32))
            .collect();
        let mut root = None;
        let mut parent = Vec::with_capacity(spans.len());
        for (i, span) in spans.iter().enumerate() {
            if span.end_unix_nano < span.start_unix_nano {
                anomalies.push(Anomaly::NegativeDuration {
                    span_id: span.span_id,
                });
            }
            match span.parent_span_id {
                None => {
                    if root.is_none() {
                        root = Some(i as u32);
                    } else {
                        anomalies.push(Anomaly::ExtraRoot {
                            span_id: span.span_id,
                        });
                    }
                    parent.push(None);
                }
                Some(p) => match index.get(&p) {
                    Some(&pi) if pi as usize != i => parent.push(Some(pi)),
                    _ => {
                        anomalies.push(Anomaly::MissingParent {
                            span_id: span.span_id,
                            parent_span_id: p,
                        });
                        parent.push(None);
                    }
                },
            }
        }
        logs.sort_by(|a, b| {
            (a.time_unix_nano, a.span_id, &*a.event_name).cmp(&(
                b.time_unix_nano,
                b.span_id,
                &*b.event_name,
            ))
        });
        logs.dedup();
        linked.sort_by(|a, b| {
            (a.start_unix_nano, a.trace_id, a.span_id).cmp(&(
                b.start_unix_nano,
                b.trace_id,
                b.span_id,
            ))
        });
        linked.dedup_by(|a, b| a.trace_id == b.trace_id && a.span_id == b.span_id);
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
        self.spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0)
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
            "session.id",
            "gen_ai.conversation.id",
            "traceloop.association.properties.session_id",
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
