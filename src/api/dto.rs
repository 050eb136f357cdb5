//! JSON shapes of the API. The only place that knows them; field names are a contract.
//!
//! A trajectory is answered from the store's document (`store::document`), whether the
//! run is still in memory ([`TrajectoryDto::from_analysis`] builds the document first)
//! or read from a stored row ([`TrajectoryDto::from_document`]): the response shape is
//! chosen here, the stored bytes there.

use serde::Serialize;

use crate::model::Analysis;
use crate::store::document::{
    AnomalyDoc, AttributeMap, Document, EvidenceDoc, FindingDoc, RootCauseDoc, SpanAttributes,
    StepDoc, Text,
};

#[derive(Serialize)]
pub struct TrajectoryDto<'a> {
    pub trace_id: String,
    pub session_id: Option<String>,
    pub service: Option<String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub complete: bool,
    pub incomplete_reason: Option<Text>,
    pub late_spans: u32,
    pub revision: u32,
    pub outcome: Text,
    pub root_cause: Option<RootCauseDto>,
    pub findings: Vec<FindingDto>,
    pub steps: Vec<StepDto<'a>>,
    pub anomalies: Vec<AnomalyDto>,
}

/// Malformed telemetry found while assembling (or an agent span with nothing recorded
/// under it), as data a client can read: `kind` is a closed set, the span ids are hex,
/// `message` says it in words.
#[derive(Serialize)]
pub struct AnomalyDto {
    /// `missing_parent`, `extra_root`, `conflicting_duplicate`, `negative_duration`,
    /// `cycle`, `depth_truncated` or `uninstrumented_agent`.
    pub kind: Text,
    pub span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub message: String,
}

#[derive(Serialize)]
pub struct TrajectorySummaryDto {
    pub trace_id: String,
    pub session_id: Option<String>,
    pub service: Option<String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub complete: bool,
    pub late_spans: u32,
    pub revision: u32,
    pub outcome: &'static str,
    pub root_cause_step: Option<String>,
    pub root_cause_kind: Option<String>,
    pub span_count: usize,
    pub finding_count: usize,
    /// The root cause's reason (at most 512 bytes), for a snippet in lists.
    pub root_cause_reason: Option<String>,
    /// The run's model (the `model` cohort dimension), when known.
    pub model: Option<String>,
    /// Still inside the late-data grace: shown, not yet counted in the breakdown.
    pub pending: bool,
}

#[derive(Serialize)]
pub struct StepDto<'a> {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub step: String,
    pub step_source: Text,
    pub run_start: bool,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub status: Text,
    pub status_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<AttributesJson<'a>>,
}

/// A span's attributes as one JSON object: the resource's as `resource.<key>`, then the
/// span's own, keys in byte order (see `store::document::SpanAttributes`); from a span
/// in memory, or as a stored document holds them.
#[derive(Serialize)]
#[serde(untagged)]
pub enum AttributesJson<'a> {
    Span(SpanAttributes<'a>),
    Stored(AttributeMap),
}

impl<'a> From<SpanAttributes<'a>> for AttributesJson<'a> {
    fn from(a: SpanAttributes<'a>) -> AttributesJson<'a> {
        AttributesJson::Span(a)
    }
}

impl From<AttributeMap> for AttributesJson<'_> {
    fn from(a: AttributeMap) -> Self {
        AttributesJson::Stored(a)
    }
}

#[derive(Serialize)]
pub struct FindingDto {
    pub span_id: String,
    pub step: String,
    pub kind: String,
    pub reason: String,
    pub score: Option<f64>,
    pub source: Text,
    pub propagated: bool,
}

#[derive(Serialize)]
pub struct EvidenceDto {
    pub span_id: String,
    pub step: String,
    pub kind: String,
    pub reason: String,
}

#[derive(Serialize)]
pub struct RootCauseDto {
    pub step: String,
    pub span_id: String,
    pub kind: String,
    pub reason: String,
    pub confidence: f64,
    pub rule: Text,
    /// The agent whose subtree holds the blamed span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub evidence: Vec<EvidenceDto>,
}

impl<'a> TrajectoryDto<'a> {
    pub fn from_analysis(a: &'a Analysis, with_attributes: bool) -> TrajectoryDto<'a> {
        TrajectoryDto::from_document(Document::from_analysis(a), with_attributes)
    }

    /// The response for a document (any version the store reads).
    pub fn from_document<A: Into<AttributesJson<'a>>>(
        doc: Document<A>,
        with_attributes: bool,
    ) -> TrajectoryDto<'a> {
        TrajectoryDto {
            trace_id: doc.trace_id,
            session_id: doc.session_id,
            service: doc.service,
            start_unix_nano: doc.start_unix_nano,
            end_unix_nano: doc.end_unix_nano,
            complete: doc.complete,
            incomplete_reason: doc.incomplete_reason,
            late_spans: doc.late_spans,
            revision: doc.revision,
            outcome: doc.outcome,
            root_cause: doc.root_cause.map(root_cause_dto),
            findings: doc.findings.into_iter().map(finding_dto).collect(),
            steps: doc
                .steps
                .into_iter()
                .map(|s| step_dto(s, with_attributes))
                .collect(),
            anomalies: doc.anomalies.into_iter().map(anomaly_dto).collect(),
        }
    }
}

fn step_dto<'a, A: Into<AttributesJson<'a>>>(s: StepDoc<A>, with_attributes: bool) -> StepDto<'a> {
    StepDto {
        span_id: s.span_id,
        parent_span_id: s.parent_span_id,
        name: s.name,
        step: s.step,
        step_source: s.step_source,
        run_start: s.run_start,
        start_unix_nano: s.start_unix_nano,
        end_unix_nano: s.end_unix_nano,
        status: s.status,
        status_message: s.status_message,
        attributes: s.attributes.filter(|_| with_attributes).map(Into::into),
    }
}

fn finding_dto(f: FindingDoc) -> FindingDto {
    FindingDto {
        span_id: f.span_id,
        step: f.step,
        kind: f.kind,
        reason: f.reason,
        score: f.score,
        source: f.source,
        propagated: f.propagated,
    }
}

fn evidence_dto(e: EvidenceDoc) -> EvidenceDto {
    EvidenceDto {
        span_id: e.span_id,
        step: e.step,
        kind: e.kind,
        reason: e.reason,
    }
}

fn root_cause_dto(rc: RootCauseDoc) -> RootCauseDto {
    RootCauseDto {
        step: rc.step,
        span_id: rc.span_id,
        kind: rc.kind,
        reason: rc.reason,
        confidence: rc.confidence,
        rule: rc.rule,
        agent: rc.agent,
        evidence: rc.evidence.into_iter().map(evidence_dto).collect(),
    }
}

fn anomaly_dto(a: AnomalyDoc) -> AnomalyDto {
    AnomalyDto {
        kind: a.kind,
        span_id: a.span_id,
        parent_span_id: a.parent_span_id,
        max_depth: a.max_depth,
        agent: a.agent,
        message: a.message,
    }
}
