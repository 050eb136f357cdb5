//! Builders for spans and trajectories in unit tests.
//!
//! `span(trace, id, parent).name("x").attr("k", "v").build()` gives a [`SpanRecord`]
//! with sensible defaults; ids are small integers turned into valid ids.

#![allow(dead_code)]

use std::sync::Arc;

use crate::model::{
    Attributes, LogEvent, Resource, SpanEvent, SpanId, SpanKind, SpanLink, SpanRecord, SpanStatus,
    TraceId, Trajectory, Value,
};

pub fn trace_id(n: u64) -> TraceId {
    let mut b = [0u8; 16];
    b[0] = 0xab;
    b[8..].copy_from_slice(&n.to_be_bytes());
    TraceId::from_bytes(&b).expect("non-zero by construction")
}

pub fn span_id(n: u64) -> SpanId {
    let mut b = [0u8; 8];
    b.copy_from_slice(&n.to_be_bytes());
    b[0] |= 0x10;
    SpanId::from_bytes(&b).expect("non-zero by construction")
}

pub fn value(v: impl Into<TestValue>) -> Value {
    v.into().0
}

/// Conversions for the `attr` builder methods.
pub struct TestValue(pub Value);

impl From<&str> for TestValue {
    fn from(s: &str) -> TestValue {
        TestValue(Value::Str(s.into()))
    }
}
impl From<String> for TestValue {
    fn from(s: String) -> TestValue {
        TestValue(Value::Str(s.into()))
    }
}
impl From<i64> for TestValue {
    fn from(i: i64) -> TestValue {
        TestValue(Value::Int(i))
    }
}
impl From<f64> for TestValue {
    fn from(d: f64) -> TestValue {
        TestValue(Value::Double(d))
    }
}
impl From<bool> for TestValue {
    fn from(b: bool) -> TestValue {
        TestValue(Value::Bool(b))
    }
}
impl From<Value> for TestValue {
    fn from(v: Value) -> TestValue {
        TestValue(v)
    }
}

pub struct SpanBuilder {
    span: SpanRecord,
}

/// A span of trace `trace` with id `id` under `parent` (0 = root). Starts at `id` ms and
/// lasts 1 ms unless told otherwise.
pub fn span(trace: u64, id: u64, parent: u64) -> SpanBuilder {
    SpanBuilder {
        span: SpanRecord {
            trace_id: trace_id(trace),
            span_id: span_id(id),
            parent_span_id: (parent != 0).then(|| span_id(parent)),
            name: format!("span-{id}").into(),
            kind: SpanKind::Internal,
            start_unix_nano: id * 1_000_000,
            end_unix_nano: id * 1_000_000 + 1_000_000,
            status: SpanStatus::Unset,
            status_message: None,
            attributes: Attributes::new(),
            events: Default::default(),
            links: Default::default(),
            resource: Arc::new(Resource {
                service_name: Some("test-agent".into()),
                attributes: Attributes::new(),
            }),
            scope_name: None,
        },
    }
}

impl SpanBuilder {
    pub fn name(mut self, name: &str) -> SpanBuilder {
        self.span.name = name.into();
        self
    }

    pub fn attr(mut self, key: &str, v: impl Into<TestValue>) -> SpanBuilder {
        self.span.attributes.insert(key.into(), v.into().0);
        self
    }

    pub fn resource_attr(mut self, key: &str, v: impl Into<TestValue>) -> SpanBuilder {
        let mut r = (*self.span.resource).clone();
        r.attributes.insert(key.into(), v.into().0);
        self.span.resource = Arc::new(r);
        self
    }

    pub fn times(mut self, start_ms: u64, end_ms: u64) -> SpanBuilder {
        self.span.start_unix_nano = start_ms * 1_000_000;
        self.span.end_unix_nano = end_ms * 1_000_000;
        self
    }

    pub fn error(mut self, message: &str) -> SpanBuilder {
        self.span.status = SpanStatus::Error;
        self.span.status_message = (!message.is_empty()).then(|| message.into());
        self
    }

    pub fn ok(mut self) -> SpanBuilder {
        self.span.status = SpanStatus::Ok;
        self
    }

    pub fn kind(mut self, kind: SpanKind) -> SpanBuilder {
        self.span.kind = kind;
        self
    }

    pub fn event(mut self, name: &str, attrs: &[(&str, &str)]) -> SpanBuilder {
        let mut attributes = Attributes::new();
        for (k, v) in attrs {
            attributes.insert((*k).into(), Value::Str((*v).into()));
        }
        self.span.events.push(SpanEvent {
            name: name.into(),
            time_unix_nano: self.span.end_unix_nano,
            attributes,
        });
        self
    }

    pub fn exception(self, ty: &str, message: &str) -> SpanBuilder {
        self.event(
            "exception",
            &[("exception.type", ty), ("exception.message", message)],
        )
    }

    pub fn link(mut self, trace: u64, span: u64) -> SpanBuilder {
        self.span.links.push(SpanLink {
            trace_id: trace_id(trace),
            span_id: span_id(span),
            attributes: Attributes::new(),
        });
        self
    }

    pub fn build(self) -> SpanRecord {
        self.span
    }
}

/// A log event on span `span` of trace `trace` with string attributes.
pub fn log_event(trace: u64, span: u64, event_name: &str, attrs: &[(&str, Value)]) -> LogEvent {
    let mut attributes = Attributes::new();
    for (k, v) in attrs {
        attributes.insert((*k).into(), v.clone());
    }
    LogEvent {
        trace_id: Some(trace_id(trace)),
        span_id: Some(span_id(span)),
        time_unix_nano: 1_000_000_000,
        event_name: event_name.into(),
        severity_number: 9,
        body: None,
        attributes,
        resource: Arc::new(Resource::default()),
    }
}

/// A trajectory of the given spans (all of one trace), built as the assembler would.
pub fn trajectory(spans: Vec<SpanRecord>) -> Trajectory {
    let trace = spans
        .first()
        .map(|s| s.trace_id)
        .unwrap_or_else(|| trace_id(1));
    Trajectory::build(trace, spans, Vec::new(), Vec::new())
}
