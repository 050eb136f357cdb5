//! JSON shapes of the API. The only place that knows them; field names are a contract.

use std::cmp::Ordering;
use std::fmt;

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use crate::model::{Analysis, Anomaly, Finding, SpanRecord, Value};

#[derive(Serialize)]
pub struct TrajectoryDto<'a> {
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
    pub kind: &'static str,
    pub span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub message: String,
}

impl AnomalyDto {
    pub fn from_anomaly(a: &Anomaly) -> AnomalyDto {
        let mut dto = AnomalyDto {
            kind: a.kind(),
            span_id: String::new(),
            parent_span_id: None,
            max_depth: None,
            agent: None,
            message: String::new(),
        };
        match a {
            Anomaly::MissingParent {
                span_id,
                parent_span_id,
            } => {
                dto.span_id = span_id.to_hex();
                dto.parent_span_id = Some(parent_span_id.to_hex());
                dto.message = format!(
                    "the parent span {} never arrived; this span hangs under the root",
                    parent_span_id.to_hex()
                );
            }
            Anomaly::ExtraRoot { span_id } => {
                dto.span_id = span_id.to_hex();
                dto.message = "another span without a parent; the earliest one is the root".into();
            }
            Anomaly::ConflictingDuplicate { span_id } => {
                dto.span_id = span_id.to_hex();
                dto.message =
                    "this span id was sent more than once with different contents; the first copy is kept"
                        .into();
            }
            Anomaly::NegativeDuration { span_id } => {
                dto.span_id = span_id.to_hex();
                dto.message = "this span ends before it starts".into();
            }
            Anomaly::Cycle { span_id } => {
                dto.span_id = span_id.to_hex();
                dto.message =
                    "the parent links of this span lead back to itself; the cycle is broken here"
                        .into();
            }
            Anomaly::DepthTruncated { span_id, max_depth } => {
                dto.span_id = span_id.to_hex();
                dto.max_depth = Some(*max_depth);
                dto.message = format!(
                    "the tree is deeper than {max_depth} levels; deeper spans, this one first, hang under their ancestor at that depth"
                );
            }
        }
        dto
    }
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
    pub step_source: &'static str,
    pub run_start: bool,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub status: &'static str,
    pub status_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<AttributesJson<'a>>,
}

/// A span's attributes as one JSON object: the resource's as `resource.<key>`, then the
/// span's own, keys in byte order, a span attribute winning over a resource one of the
/// same name. Serialized straight from the span, without copying keys or values (the
/// store encodes one of these per span of every kept trajectory).
pub struct AttributesJson<'a> {
    span: &'a SpanRecord,
}

#[derive(Clone, Copy)]
enum Key<'a> {
    Resource(&'a str),
    Span(&'a str),
}

impl Key<'_> {
    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        let (prefix, key): (&[u8], &str) = match self {
            Key::Resource(k) => (b"resource.", k),
            Key::Span(k) => (b"", k),
        };
        prefix.iter().chain(key.as_bytes()).copied()
    }
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Resource(k) => write!(f, "resource.{k}"),
            Key::Span(k) => f.write_str(k),
        }
    }
}

impl Serialize for Key<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self {
            Key::Span(k) => ser.serialize_str(k),
            Key::Resource(_) => ser.collect_str(self),
        }
    }
}

impl Serialize for AttributesJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let span = self.span;
        let mut entries: Vec<(Key<'_>, &Value)> =
            Vec::with_capacity(span.resource.attributes.len() + span.attributes.len());
        entries.extend(
            span.resource
                .attributes
                .iter()
                .map(|(k, v)| (Key::Resource(k), v)),
        );
        entries.extend(span.attributes.iter().map(|(k, v)| (Key::Span(k), v)));
        // Stable: of two equal keys the span's (pushed later) stays last, and is kept.
        entries.sort_by(|a, b| a.0.bytes().cmp(b.0.bytes()));
        let mut map = ser.serialize_map(None)?;
        for (i, (key, value)) in entries.iter().enumerate() {
            let shadowed = entries
                .get(i + 1)
                .is_some_and(|next| next.0.bytes().cmp(key.bytes()) == Ordering::Equal);
            if !shadowed {
                map.serialize_entry(key, &ValueJson(value))?;
            }
        }
        map.end()
    }
}

/// An attribute value as JSON: numbers as numbers (a non-finite double as its text),
/// arrays as arrays.
struct ValueJson<'a>(&'a Value);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Str(s) => ser.serialize_str(s),
            Value::Int(i) => ser.serialize_i64(*i),
            Value::Double(d) if d.is_finite() => ser.serialize_f64(*d),
            Value::Double(d) => ser.collect_str(d),
            Value::Bool(b) => ser.serialize_bool(*b),
            Value::Array(items) => {
                let mut seq = ser.serialize_seq(Some(items.len()))?;
                for item in items.iter() {
                    seq.serialize_element(&ValueJson(item))?;
                }
                seq.end()
            }
        }
    }
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
    /// The agent whose subtree holds the blamed span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub evidence: Vec<EvidenceDto>,
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

impl<'a> TrajectoryDto<'a> {
    pub fn from_analysis(a: &'a Analysis, with_attributes: bool) -> TrajectoryDto<'a> {
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
                attributes: with_attributes.then_some(AttributesJson { span: s }),
            })
            .collect();
        let root_cause = a.root_cause.as_ref().map(|rc| RootCauseDto {
            step: rc.step.as_str().to_owned(),
            span_id: span_id_of(a, rc.span),
            kind: rc.kind.as_str().to_owned(),
            reason: rc.reason.clone(),
            confidence: rc.confidence,
            rule: rc.rule,
            agent: rc.agent.as_ref().map(|a| a.to_string()),
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
            anomalies: t
                .anomalies
                .iter()
                .map(AnomalyDto::from_anomaly)
                .chain(
                    crate::classify::uninstrumented_agents(t, &a.steps)
                        .into_iter()
                        .filter_map(|i| t.spans.get(i as usize))
                        .map(|span| AnomalyDto {
                            kind: "uninstrumented_agent",
                            span_id: span.span_id.to_hex(),
                            parent_span_id: None,
                            max_depth: None,
                            agent: crate::classify::agent_name(span).map(|n| n.to_string()),
                            message: "no model or tool calls are recorded under this agent, so blame stops at it".into(),
                        }),
                )
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::test_support::span;

    #[test]
    fn attributes_serialize_sorted_with_the_resource_prefixed_and_shadowed_by_the_span() {
        let mut s = span(1, 1, 0)
            .resource_attr("service.name", "svc")
            .resource_attr("host", "h1")
            .attr("resource.host", "from-span")
            .attr("b", 2i64)
            .attr("a", "x\"y")
            .build();
        s.attributes.insert("nan".into(), Value::Double(f64::NAN));
        s.attributes.insert("d".into(), Value::Double(0.5));
        s.attributes.insert(
            "arr".into(),
            Value::Array(Arc::new(vec![Value::Bool(true), Value::Int(-3)])),
        );
        let json = serde_json::to_string(&AttributesJson { span: &s }).unwrap();
        assert_eq!(
            json,
            r#"{"a":"x\"y","arr":[true,-3],"b":2,"d":0.5,"nan":"NaN","resource.host":"from-span","resource.service.name":"svc"}"#
        );
    }
}
