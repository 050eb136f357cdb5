//! A post-hoc evaluation of another trace's run, as that run's trajectory holds it.
//!
//! An EVALUATOR span in a trace of its own (OpenInference post-hoc feedback) judges the
//! runs its links point at, possibly hundreds of them. The run's trajectory does not
//! keep a copy of the span: it keeps an [`Arc`] of one [`LinkedEvaluation`], built once
//! per evaluator span ([`LinkedEvaluation::of`]) and shared by every run it judges.
//! The record holds only what is read of it downstream — its ids and times, its name,
//! its evaluation attributes ([`conventions::EVALUATION_ATTRIBUTE_PREFIXES`]) and the
//! spans its links point at — so events, other attributes, link attributes and the
//! resource of the span are not held for the time the run's trace waits.

use std::sync::Arc;

use crate::conventions;

use super::ids::{SpanId, TraceId};
use super::intern::Str;
use super::span::{Attributes, SpanRecord};

/// What a run's trajectory keeps of an evaluator span of another trace that links to it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedEvaluation {
    /// The evaluator span's own trace and span id.
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The evaluator span's name.
    pub name: Str,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// The span's evaluator results: its attributes under
    /// [`conventions::EVALUATION_ATTRIBUTE_PREFIXES`], in the span's order.
    pub attributes: Attributes,
    /// The (trace, span) each of its links points at, in link order.
    pub links: Box<[(TraceId, SpanId)]>,
}

impl LinkedEvaluation {
    /// The linked evaluation of `span`, to be shared by every run it judges.
    pub fn of(span: &SpanRecord) -> Arc<LinkedEvaluation> {
        let attributes = span
            .attributes
            .entries()
            .iter()
            .filter(|(k, _)| is_evaluation_key(k))
            .cloned()
            .collect();
        Arc::new(LinkedEvaluation {
            trace_id: span.trace_id,
            span_id: span.span_id,
            name: span.name.clone(),
            start_unix_nano: span.start_unix_nano,
            end_unix_nano: span.end_unix_nano,
            attributes: Attributes::from_unique(attributes),
            links: span.links.iter().map(|l| (l.trace_id, l.span_id)).collect(),
        })
    }

    /// The first trace other than its own that it judges: the first of
    /// [`SpanRecord::evaluation_targets`] of its span.
    pub fn first_target(&self) -> Option<TraceId> {
        self.links
            .iter()
            .map(|(t, _)| *t)
            .find(|t| *t != self.trace_id)
    }

    /// The spans of `trace` its links point at, in link order.
    pub fn links_into(&self, trace: TraceId) -> impl Iterator<Item = SpanId> + '_ {
        self.links
            .iter()
            .filter(move |(t, _)| *t == trace)
            .map(|(_, s)| *s)
    }
}

/// Whether `key` is an evaluator result attribute.
pub fn is_evaluation_key(key: &str) -> bool {
    conventions::EVALUATION_ATTRIBUTE_PREFIXES
        .iter()
        .any(|p| key.starts_with(p))
}
