//! A span as the pipeline keeps it: compact, with interned keys, no wire types.

use std::sync::Arc;

use thin_vec::ThinVec;

use super::ids::{SpanId, TraceId};
use super::intern::Str;
use crate::conventions;

/// An attribute value. Nested OTLP `kvlist` values are kept as their JSON text, since
/// analysis only ever reads them as text; arrays are kept as arrays.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Str),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Behind one thin pointer, so that a `Value` is 16 bytes (arrays are rare).
    Array(Arc<Vec<Value>>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Integers and doubles as `f64`; numeric strings too (instrumentations disagree).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Double(d) => Some(*d),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Double(d) if d.fract() == 0.0 => Some(*d as i64),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// A display form: strings as they are, everything else as JSON-like text.
    pub fn to_text(&self) -> String {
        match self {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Double(d) => d.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(items) => {
                let parts: Vec<String> = items.iter().map(|v| v.to_text()).collect();
                format!("[{}]", parts.join(","))
            }
        }
    }
}

/// Attributes in arrival order. Lookups are linear: spans carry a handful to a few dozen
/// attributes, where a scan beats hashing. Held as an exact-size boxed slice (16 bytes
/// inline, no spare capacity): a buffered span's attributes are built once and then
/// only read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(Box<[(Str, Value)]>);

impl Attributes {
    pub fn new() -> Attributes {
        Attributes::default()
    }

    /// Attributes from pairs whose keys are known to be unique (the decoder checks them
    /// once per span).
    pub fn from_unique(pairs: Vec<(Str, Value)>) -> Attributes {
        Attributes(pairs.into_boxed_slice())
    }

    /// Adds `key`. OTLP requires unique keys; when a sender repeats one, the last wins.
    /// Reallocates: for building a few attributes by hand, not for bulk decoding.
    pub fn insert(&mut self, key: Str, value: Value) {
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| **k == *key) {
            slot.1 = value;
        } else {
            let mut pairs = std::mem::take(&mut self.0).into_vec();
            pairs.push((key, value));
            self.0 = pairs.into_boxed_slice();
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| &**k == key).map(|(_, v)| v)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The pairs as held, keys as shared strings (e.g. to use an interned key's address).
    pub fn entries(&self) -> &[(Str, Value)] {
        &self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (&**k, v))
    }

    /// Keys starting with `prefix`, e.g. `retrieval.documents.`.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.iter().filter(move |(k, _)| k.starts_with(prefix))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The resource of a batch of spans, shared by all spans decoded from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resource {
    /// `service.name`, kept apart because every view needs it.
    pub service_name: Option<Str>,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanStatus {
    Unset,
    Ok,
    Error,
}

impl SpanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Unset => "unset",
            SpanStatus::Ok => "ok",
            SpanStatus::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub name: Str,
    pub time_unix_nano: u64,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub attributes: Attributes,
}

/// One span, decoded and validated: ids are valid, strings are interned where they repeat.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span (empty `parent_span_id` on the wire).
    pub parent_span_id: Option<SpanId>,
    pub name: Str,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub status: SpanStatus,
    pub status_message: Option<Str>,
    pub attributes: Attributes,
    /// Thin (8 bytes, no allocation when empty): most spans have neither.
    pub events: ThinVec<SpanEvent>,
    pub links: ThinVec<SpanLink>,
    pub resource: Arc<Resource>,
    pub scope_name: Option<Str>,
}

impl SpanRecord {
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }

    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// A span attribute, else the resource attribute of the same key.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes
            .get(key)
            .or_else(|| self.resource.attributes.get(key))
    }

    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(Value::as_str)
    }

    /// The convention span kind (`LLM`, `TOOL`, `RETRIEVER`, `EVALUATOR`, ...): the value
    /// of the first of [`conventions::SPAN_KIND_KEYS`] the span carries.
    pub fn convention_kind(&self) -> Option<&str> {
        conventions::SPAN_KIND_KEYS
            .iter()
            .find_map(|k| self.attributes.get_str(k))
    }

    /// An evaluator span (OpenInference, traceAI): its results are about another span,
    /// its parent or the target of its links.
    pub fn is_evaluator(&self) -> bool {
        self.convention_kind()
            .is_some_and(|k| k.eq_ignore_ascii_case(conventions::EVALUATOR_KIND))
    }

    /// The other traces this span's evaluation is about, each once: the traces of its
    /// links, if it is an evaluator span. The one rule by which the pipeline, `faultline
    /// analyze` and the simulator route a post-hoc evaluation to the run it judges.
    pub fn evaluation_targets(&self) -> impl Iterator<Item = TraceId> + '_ {
        let evaluator = self.is_evaluator();
        self.links
            .iter()
            .enumerate()
            .filter(move |&(i, l)| {
                evaluator
                    && l.trace_id != self.trace_id
                    && !self.links[..i].iter().any(|e| e.trace_id == l.trace_id)
            })
            .map(|(_, l)| l.trace_id)
    }
}

/// A log record received on the logs endpoints, kept when it belongs to a trace or is
/// an event that analysis reads (e.g. `gen_ai.evaluation.result`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub time_unix_nano: u64,
    /// The OTLP `event_name` field, else the `event.name` attribute, else empty.
    pub event_name: Str,
    pub severity_number: i32,
    pub body: Option<Value>,
    pub attributes: Attributes,
    pub resource: Arc<Resource>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes the memory budget of a buffered span rests on (see ARCHITECTURE.md).
    #[test]
    fn buffered_span_layout_stays_compact() {
        use std::mem::size_of;
        assert_eq!(size_of::<Str>(), 8);
        assert_eq!(size_of::<Value>(), 16);
        assert_eq!(size_of::<(Str, Value)>(), 24);
        assert!(
            size_of::<SpanRecord>() <= 128,
            "{}",
            size_of::<SpanRecord>()
        );
    }
}
