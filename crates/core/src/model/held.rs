//! What holding a record costs, in bytes: the measures the memory budget rests on.
//!
//! Each measure counts the record's own struct, the text it owns and the collections it
//! points to, from the sizes of the real types. Interned strings shared with other
//! records are counted once per record that names them, and resources shared by a
//! request's spans not at all (one per request); so the measures over-count shared text
//! and never under-count what a record owns. They are cheap (a walk of the record's
//! attributes, no allocation except for nested arrays) and are taken once per record,
//! when it is added to a holder.

use std::mem::size_of;
use std::sync::Arc;

use super::{
    Analysis, Attributes, Finding, LinkedEvaluation, LogEvent, RootCause, SpanEvent, SpanId,
    SpanLink, SpanRecord, StepAssignment, Str, TraceId, Trajectory, Value,
};

/// What one span holds once decoded: the record, its attribute pairs, events and links,
/// and the text it owns.
pub fn span_bytes(span: &SpanRecord) -> u64 {
    let mut bytes = size_of::<SpanRecord>() as u64
        + text(&span.name)
        + span.status_message.as_deref().map_or(0, text)
        + span.scope_name.as_deref().map_or(0, text)
        + attributes(&span.attributes);
    for event in &span.events {
        bytes += size_of::<SpanEvent>() as u64 + text(&event.name) + attributes(&event.attributes);
    }
    for link in &span.links {
        bytes += size_of::<SpanLink>() as u64 + attributes(&link.attributes);
    }
    bytes
}

/// What one log event holds: the record, its body and attributes.
pub fn log_bytes(log: &LogEvent) -> u64 {
    size_of::<LogEvent>() as u64
        + text(&log.event_name)
        + log.body.as_ref().map_or(0, value)
        + attributes(&log.attributes)
}

/// What a trace holds per linked evaluation it keeps: the shared pointer and its index
/// entry (trace id, span id, position). The evaluation itself is shared by every trace
/// it judges and counted once ([`linked_bytes`]).
pub const LINKED_REF_BYTES: u64 =
    (size_of::<Arc<LinkedEvaluation>>() + size_of::<((TraceId, SpanId), u32)>()) as u64;

/// What one linked evaluation holds, once for all the traces it judges: the record with
/// its reference counts, its name, its evaluation attributes and its link targets.
pub fn linked_bytes(e: &LinkedEvaluation) -> u64 {
    (size_of::<LinkedEvaluation>() + 16) as u64
        + text(&e.name)
        + attributes(&e.attributes)
        + (e.links.len() * size_of::<(TraceId, SpanId)>()) as u64
}

/// What `holder` is charged for keeping evaluation `e`: its reference, plus the shared
/// evaluation itself when `holder` is the first trace it judges. So an evaluation that
/// judges a thousand runs is counted once, not a thousand times, by whichever holder
/// is its first target; if that trace is not held, it is not counted (a reference to
/// it is at most what its other targets are charged).
pub fn linked_ref_bytes(e: &LinkedEvaluation, holder: TraceId) -> u64 {
    let owner = e.first_target() == Some(holder);
    LINKED_REF_BYTES + if owner { linked_bytes(e) } else { 0 }
}

/// What one analysis holds: its spans ([`span_bytes`]), logs ([`log_bytes`]) and linked
/// evaluations ([`linked_bytes`], each counted whole: an analysis is one run's), their
/// step assignments, and its findings and root cause with their reasons.
pub fn analysis_bytes(a: &Analysis) -> u64 {
    let t = &a.trajectory;
    let spans: u64 = t.spans.iter().map(span_bytes).sum();
    let logs: u64 = t.logs.iter().map(log_bytes).sum();
    let linked: u64 = t
        .linked
        .iter()
        .map(|e| LINKED_REF_BYTES + linked_bytes(e))
        .sum();
    let findings: u64 = a
        .findings
        .iter()
        .map(|f| size_of::<Finding>() as u64 + text(&f.reason))
        .sum();
    size_of::<Analysis>() as u64
        + size_of::<Trajectory>() as u64
        + spans
        + logs
        + linked
        + (a.steps.len() * size_of::<StepAssignment>()) as u64
        + findings
        + a.root_cause
            .as_ref()
            .map_or(0, |r| size_of::<RootCause>() as u64 + text(&r.reason))
}

/// Owned text: its bytes plus an allocation header.
fn text(s: &str) -> u64 {
    s.len() as u64 + 16
}

fn attributes(attrs: &Attributes) -> u64 {
    attrs
        .iter()
        .map(|(k, v)| size_of::<(Str, Value)>() as u64 + text(k) + value(v))
        .sum()
}

fn value(v: &Value) -> u64 {
    // Iterative: arrays nest.
    let mut bytes = 0;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Str(s) => bytes += text(s),
            Value::Array(items) => {
                bytes += 16 + (items.len() * size_of::<Value>()) as u64;
                stack.extend(items.iter());
            }
            Value::Int(_) | Value::Double(_) | Value::Bool(_) => {}
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::span as build;

    fn span(attrs: usize, value_len: usize) -> SpanRecord {
        let filler = "x".repeat(value_len);
        (0..attrs)
            .fold(build(1, 2, 0).name("chat"), |b, i| {
                b.attr(&format!("k{i}"), filler.as_str())
            })
            .build()
    }

    #[test]
    fn a_span_costs_at_least_the_text_it_owns() {
        let small = span_bytes(&span(0, 0));
        assert!(small >= size_of::<SpanRecord>() as u64);
        let big = span_bytes(&span(10, 65_000));
        assert!(big >= small + 650_000, "{big}");
        assert!(big < small + 660_000, "{big}");
    }
}
