//! JSON shapes of the API. The only place that knows them; field names are a contract.

use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::model::{Analysis, Finding, Value};

#[derive(Serialize)]
pub struct TrajectoryDto {
    pub trace_id: String,
    pub session_id: Option<String>,
    pub service: Option<String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub complete: bool,
    pub incomplete_reason: Option<&'static str>,
    pub late_spans: u32,
    pub revision: u32,
    pub outcome: &'static str,
    pub root_cause: Option<RootCauseDto>,
    pub findings: Vec<FindingDto>,
    pub steps: Vec<StepDto>,
    pub anomalies: Vec<String>,
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
}

#[derive(Serialize)]
pub struct StepDto {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub step: String,
    pub step_source: &'static str,
    pub run_start: bool,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub status: &'static str,
    pub status_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Json>>,
}

#[derive(Serialize)]
pub struct FindingDto {
    pub span_id: String,
    pub step: String,
    pub kind: String,
    pub reason: String,
    pub score: Option<f64>,
    pub source: &'static str,
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
    pub rule: &'static str,
    pub evidence: Vec<EvidenceDto>,
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Str(s) => Json::String(s.to_string()),
        Value::Int(i) => Json::from(*i),
        Value::Double(d) => serde_json::Number::from_f64(*d)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(d.to_string())),
        Value::Bool(b) => Json::Bool(*b),
        Value::Array(items) => Json::Array(items.iter().map(value_json).collect()),
    }
}

fn span_id_of(a: &Analysis, span: u32) -> String {
    a.trajectory
        .spans
        .get(span as usize)
        .map(|s| s.span_id.to_hex())
        .unwrap_or_default()
}

fn finding_dto(a: &Analysis, f: &Finding) -> FindingDto {
    FindingDto {
        span_id: span_id_of(a, f.span),
        step: f.step.as_str().to_owned(),
        kind: f.kind.as_str().to_owned(),
        reason: f.reason.clone(),
        score: f.score.filter(|s| s.is_finite()),
        source: f.source,
        propagated: f.propagated,
    }
}

impl TrajectoryDto {
    pub fn from_analysis(a: &Analysis, with_attributes: bool) -> TrajectoryDto {
        let t = &a.trajectory;
        let steps = t
            .spans
            .iter()
            .zip(&a.steps)
            .map(|(s, step)| StepDto {
                span_id: s.span_id.to_hex(),
                parent_span_id: s.parent_span_id.map(|p| p.to_hex()),
                name: s.name.to_string(),
                step: step.kind.as_str().to_owned(),
                step_source: step.source.as_str(),
                run_start: step.run_start,
                start_unix_nano: s.start_unix_nano,
                end_unix_nano: s.end_unix_nano,
                status: s.status.as_str(),
                status_message: s.status_message.as_ref().map(|m| m.to_string()),
                attributes: with_attributes.then(|| {
                    let mut m = Map::new();
                    for (k, v) in s.resource.attributes.iter() {
                        m.insert(format!("resource.{k}"), value_json(v));
                    }
                    for (k, v) in s.attributes.iter() {
                        m.insert(k.to_owned(), value_json(v));
                    }
                    m
                }),
            })
            .collect();
        let root_cause = a.root_cause.as_ref().map(|rc| RootCauseDto {
            step: rc.step.as_str().to_owned(),
            span_id: span_id_of(a, rc.span),
            kind: rc.kind.as_str().to_owned(),
            reason: rc.reason.clone(),
            confidence: rc.confidence,
            rule: rc.rule,
            evidence: rc
                .evidence
                .iter()
                .filter_map(|&i| a.findings.get(i))
                .map(|f| EvidenceDto {
                    span_id: span_id_of(a, f.span),
                    step: f.step.as_str().to_owned(),
                    kind: f.kind.as_str().to_owned(),
                    reason: f.reason.clone(),
                })
                .collect(),
        });
        TrajectoryDto {
            trace_id: t.trace_id.to_hex(),
            session_id: t.session_id().map(str::to_owned),
            service: t.service().map(str::to_owned),
            start_unix_nano: t.start_unix_nano(),
            end_unix_nano: t.end_unix_nano(),
            complete: t.complete,
            incomplete_reason: t.incomplete_reason.map(|r| r.as_str()),
            late_spans: t.late_spans,
            revision: t.revision,
            outcome: a.outcome.as_str(),
            root_cause,
            findings: a.findings.iter().map(|f| finding_dto(a, f)).collect(),
            steps,
            anomalies: t.anomalies.iter().map(|x| format!("{x:?}")).collect(),
        }
    }
}

impl TrajectorySummaryDto {
    pub fn from_analysis(a: &Analysis) -> TrajectorySummaryDto {
        let t = &a.trajectory;
        TrajectorySummaryDto {
            trace_id: t.trace_id.to_hex(),
            session_id: t.session_id().map(str::to_owned),
            service: t.service().map(str::to_owned),
            start_unix_nano: t.start_unix_nano(),
            end_unix_nano: t.end_unix_nano(),
            complete: t.complete,
            late_spans: t.late_spans,
            revision: t.revision,
            outcome: a.outcome.as_str(),
            root_cause_step: a.root_cause.as_ref().map(|r| r.step.as_str().to_owned()),
            root_cause_kind: a.root_cause.as_ref().map(|r| r.kind.as_str().to_owned()),
            span_count: t.spans.len(),
            finding_count: a.findings.len(),
        }
    }
}
