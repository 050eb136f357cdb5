//! The store's own trajectory document: what a stored row's body holds (as compressed
//! JSON), versioned, and independent of the API's response types.
//!
//! - Written as [`Document::from_analysis`] (attributes serialized straight from the
//!   spans, [`SpanAttributes`]), with `version` = [`DOCUMENT_VERSION`].
//! - Read as a [`StoredDocument`] ([`parse`]): every version this build knows is read
//!   into the same type. Version 1 is the document rows held before the store had its
//!   own type (the API's trajectory JSON of that time, without a `version` field); its
//!   fields are the ones version 2 has, so it reads as is.
//! - The API converts a document into its response (`api::dto::TrajectoryDto`), for
//!   stored rows and for analyses still in memory alike: a change of a response shape
//!   changes that conversion, never the bytes on disk. A change of this type that is not
//!   a pure addition of an optional field bumps [`DOCUMENT_VERSION`] and keeps reading
//!   the earlier versions here.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};

use crate::model::{Analysis, Anomaly, Finding, SpanRecord, Value};

/// The version [`Document::from_analysis`] writes.
pub const DOCUMENT_VERSION: u32 = 2;
/// The version of a document without a `version` field (written before it existed).
pub const LEGACY_VERSION: u32 = 1;

/// Text that is a fixed name when written (no copy) and owned when read.
pub type Text = Cow<'static, str>;

/// A span's attributes as read back: one JSON object.
pub type AttributeMap = serde_json::Map<String, serde_json::Value>;

/// A document as read from a row.
pub type StoredDocument = Document<AttributeMap>;

/// One trajectory: its summary fields, root cause, findings, steps (one per span, in
/// the trajectory's canonical order, with the span's attributes) and anomalies.
/// `A` is how a step's attributes are held: [`SpanAttributes`] when written,
/// [`AttributeMap`] when read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document<A> {
    #[serde(default = "legacy_version")]
    pub version: u32,
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
    pub root_cause: Option<RootCauseDoc>,
    pub findings: Vec<FindingDoc>,
    pub steps: Vec<StepDoc<A>>,
    pub anomalies: Vec<AnomalyDoc>,
}

fn legacy_version() -> u32 {
    LEGACY_VERSION
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootCauseDoc {
    pub step: String,
    pub span_id: String,
    pub kind: String,
    pub reason: String,
    pub confidence: f64,
    pub rule: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub evidence: Vec<EvidenceDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvidenceDoc {
    pub span_id: String,
    pub step: String,
    pub kind: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FindingDoc {
    pub span_id: String,
    pub step: String,
    pub kind: String,
    pub reason: String,
    pub score: Option<f64>,
    pub source: Text,
    pub propagated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepDoc<A> {
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
    // A missing field reads as `None` (serde's rule for `Option`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<A>,
}

/// Malformed telemetry found while assembling, or an agent span with nothing recorded
/// under it: `kind` is a closed set, the span ids are hex, `message` says it in words.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnomalyDoc {
    pub kind: Text,
    pub span_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub message: String,
}

/// Why a body could not be read as a document.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("the trajectory document is not valid: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error(
        "the trajectory document has version {found}; this build reads up to {DOCUMENT_VERSION}"
    )]
    TooNew { found: u32 },
}

/// Reads a (decompressed) body of any known version.
pub fn parse(json: &[u8]) -> Result<StoredDocument, DocumentError> {
    let doc: StoredDocument = serde_json::from_slice(json)?;
    if doc.version > DOCUMENT_VERSION {
        return Err(DocumentError::TooNew { found: doc.version });
    }
    Ok(doc)
}

impl<'a> Document<SpanAttributes<'a>> {
    /// The document of `a`, every step with its span's attributes.
    pub fn from_analysis(a: &'a Analysis) -> Document<SpanAttributes<'a>> {
        let t = &a.trajectory;
        let steps = t
            .spans
            .iter()
            .zip(&a.steps)
            .map(|(s, step)| StepDoc {
                span_id: s.span_id.to_hex(),
                parent_span_id: s.parent_span_id.map(|p| p.to_hex()),
                name: s.name.to_string(),
                step: step.kind.as_str().to_owned(),
                step_source: Cow::Borrowed(step.source.as_str()),
                run_start: step.run_start,
                start_unix_nano: s.start_unix_nano,
                end_unix_nano: s.end_unix_nano,
                status: Cow::Borrowed(s.status.as_str()),
                status_message: s.status_message.as_ref().map(|m| m.to_string()),
                attributes: Some(SpanAttributes { span: s }),
            })
            .collect();
        let root_cause = a.root_cause.as_ref().map(|rc| RootCauseDoc {
            step: rc.step.as_str().to_owned(),
            span_id: span_id_of(a, rc.span),
            kind: rc.kind.as_str().to_owned(),
            reason: rc.reason.clone(),
            confidence: rc.confidence,
            rule: Cow::Borrowed(rc.rule),
            agent: rc.agent.as_ref().map(|a| a.to_string()),
            evidence: rc
                .evidence
                .iter()
                .filter_map(|&i| a.findings.get(i))
                .map(|f| EvidenceDoc {
                    span_id: span_id_of(a, f.span),
                    step: f.step.as_str().to_owned(),
                    kind: f.kind.as_str().to_owned(),
                    reason: f.reason.clone(),
                })
                .collect(),
        });
        Document {
            version: DOCUMENT_VERSION,
            trace_id: t.trace_id.to_hex(),
            session_id: t.session_id().map(str::to_owned),
            service: t.service().map(str::to_owned),
            start_unix_nano: t.start_unix_nano(),
            end_unix_nano: t.end_unix_nano(),
            complete: t.complete,
            incomplete_reason: t.incomplete_reason.map(|r| Cow::Borrowed(r.as_str())),
            late_spans: t.late_spans,
            revision: t.revision,
            outcome: Cow::Borrowed(a.outcome.as_str()),
            root_cause,
            findings: a.findings.iter().map(|f| finding_doc(a, f)).collect(),
            steps,
            anomalies: t
                .anomalies
                .iter()
                .map(AnomalyDoc::from_anomaly)
                .chain(
                    crate::classify::uninstrumented_agents(t, &a.steps)
                        .into_iter()
                        .filter_map(|i| t.spans.get(i as usize))
                        .map(|span| AnomalyDoc {
                            kind: Cow::Borrowed("uninstrumented_agent"),
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

impl AnomalyDoc {
    pub fn from_anomaly(a: &Anomaly) -> AnomalyDoc {
        let mut doc = AnomalyDoc {
            kind: Cow::Borrowed(a.kind()),
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
                doc.span_id = span_id.to_hex();
                doc.parent_span_id = Some(parent_span_id.to_hex());
                doc.message = format!(
                    "the parent span {} never arrived; this span hangs under the root",
                    parent_span_id.to_hex()
                );
            }
            Anomaly::ExtraRoot { span_id } => {
                doc.span_id = span_id.to_hex();
                doc.message = "another span without a parent; the earliest one is the root".into();
            }
            Anomaly::ConflictingDuplicate { span_id } => {
                doc.span_id = span_id.to_hex();
                doc.message =
                    "this span id was sent more than once with different contents; the first copy is kept"
                        .into();
            }
            Anomaly::NegativeDuration { span_id } => {
                doc.span_id = span_id.to_hex();
                doc.message = "this span ends before it starts".into();
            }
            Anomaly::Cycle { span_id } => {
                doc.span_id = span_id.to_hex();
                doc.message =
                    "the parent links of this span lead back to itself; the cycle is broken here"
                        .into();
            }
            Anomaly::DepthTruncated { span_id, max_depth } => {
                doc.span_id = span_id.to_hex();
                doc.max_depth = Some(*max_depth);
                doc.message = format!(
                    "the tree is deeper than {max_depth} levels; deeper spans, this one first, hang under their ancestor at that depth"
                );
            }
        }
        doc
    }
}

fn span_id_of(a: &Analysis, span: u32) -> String {
    a.trajectory
        .spans
        .get(span as usize)
        .map(|s| s.span_id.to_hex())
        .unwrap_or_default()
}

fn finding_doc(a: &Analysis, f: &Finding) -> FindingDoc {
    FindingDoc {
        span_id: span_id_of(a, f.span),
        step: f.step.as_str().to_owned(),
        kind: f.kind.as_str().to_owned(),
        reason: f.reason.clone(),
        score: f.score.filter(|s| s.is_finite()),
        source: Cow::Borrowed(f.source),
        propagated: f.propagated,
    }
}

/// A span's attributes as one JSON object: the resource's as `resource.<key>`, then the
/// span's own, keys in byte order, a span attribute winning over a resource one of the
/// same name. Serialized straight from the span, without copying keys or values (the
/// store encodes one of these per span of every kept trajectory).
#[derive(Debug, Clone, Copy)]
pub struct SpanAttributes<'a> {
    span: &'a SpanRecord,
}

impl<'a> SpanAttributes<'a> {
    pub fn new(span: &'a SpanRecord) -> SpanAttributes<'a> {
        SpanAttributes { span }
    }
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

impl Serialize for SpanAttributes<'_> {
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
        let json = serde_json::to_string(&SpanAttributes { span: &s }).unwrap();
        assert_eq!(
            json,
            r#"{"a":"x\"y","arr":[true,-3],"b":2,"d":0.5,"nan":"NaN","resource.host":"from-span","resource.service.name":"svc"}"#
        );
    }

    /// A body in the format rows held before the store had its own document type:
    /// the API's trajectory JSON, without a `version` field.
    const V1: &[u8] = include_bytes!("../../tests/data/store/trajectory-v1.json");

    #[test]
    fn a_version_1_body_reads_and_writes_back_the_same_fields() {
        let doc = parse(V1).unwrap();
        assert_eq!(doc.version, LEGACY_VERSION);
        assert_eq!(doc.steps.len(), 5);
        assert_eq!(doc.anomalies[0].kind, "missing_parent");
        // Every field it had is kept: written again, it is the same JSON plus the
        // version.
        let mut again = serde_json::to_value(&doc).unwrap();
        let obj = again.as_object_mut().unwrap();
        assert_eq!(obj.remove("version"), Some(serde_json::json!(1)));
        let original: serde_json::Value = serde_json::from_slice(V1).unwrap();
        assert_eq!(again, original);
    }

    #[test]
    fn a_newer_version_is_refused_with_its_number() {
        let mut v: serde_json::Value = serde_json::from_slice(V1).unwrap();
        v["version"] = serde_json::json!(DOCUMENT_VERSION + 1);
        let err = parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, DocumentError::TooNew { found } if found == DOCUMENT_VERSION + 1));
        assert!(parse(b"{\"trace_id\": 3}").is_err());
    }
}
