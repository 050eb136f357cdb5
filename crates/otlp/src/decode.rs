//! OTLP wire types into model records: parsing, validation, interning, rejection reasons.
//!
//! Pure: no IO, no async, no clock. The servers and `faultline analyze` share it.
//!
//! - `parse_*_proto` / `parse_*_json` turn a (decompressed) body into the
//!   `opentelemetry-proto` request, or a [`DecodeError`] that fails the whole request
//!   (HTTP 400 / gRPC INVALID_ARGUMENT). Nesting is bounded by prost's recursion limit
//!   (100) and serde_json's (128), so hostile nesting is an error, not a stack overflow.
//!   Invalid UTF-8 in a protobuf string fails the request (prost's behaviour).
//! - `decode_traces` / `decode_logs` turn the request into model records. A span with
//!   an invalid trace, span or parent id is rejected alone and counted by reason; the
//!   rest are kept.
//!
//! What a decoded record keeps (bounded so one span cannot pin megabytes):
//! - attribute values longer than [`MAX_VALUE_BYTES`] keep a prefix (cut at a character
//!   boundary) followed by [`TRUNCATION_MARK`];
//! - at most [`MAX_ATTRIBUTES`] attributes per span, event, link, log and resource, and
//!   at most [`MAX_EVENTS`] events and [`MAX_LINKS`] links per span (the first ones);
//! - a key sent twice keeps its last value (OTLP requires unique keys);
//! - nested `kvlist` values become JSON text, arrays become [`Value::Array`], bytes
//!   become lowercase hex text, values nested deeper than [`MAX_VALUE_DEPTH`] become `"…"`;
//! - timestamps as sent (`end < start` and zeros are the assembler's to flag); `flags`
//!   are not kept.
//! - links with invalid ids are dropped (the span is kept).

use faultline_core::conventions;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as WireValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource as WireResource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use thin_vec::ThinVec;

use crate::json;
use crate::RejectReason;
use faultline_core::model::ids::IdError;
use faultline_core::model::{
    Attributes, Interner, LogEvent, Resource, SpanEvent, SpanId, SpanKind, SpanLink, SpanRecord,
    SpanStatus, Str, TraceId, Value,
};

/// Attribute values (and span names, status messages) longer than this are truncated.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Appended to a truncated value.
pub const TRUNCATION_MARK: &str = "…[truncated]";
/// Attributes kept per span, event, link, log record or resource.
pub const MAX_ATTRIBUTES: usize = 1024;
/// Events kept per span.
pub const MAX_EVENTS: usize = 1024;
/// Links kept per span.
pub const MAX_LINKS: usize = 1024;
/// Array elements kept per array value.
pub const MAX_ARRAY_ITEMS: usize = 1024;
/// Nesting of arrays and kvlists kept in a value.
pub const MAX_VALUE_DEPTH: usize = 32;

/// Why a request body could not be decoded at all. The message names the problem and is
/// what the client sees.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid OTLP protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("invalid OTLP/JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Records decoded from one request, and what was refused.
#[derive(Debug)]
pub struct Decoded<T> {
    pub items: Vec<T>,
    /// How many items were refused (invalid ids, ...).
    pub rejected: u64,
    /// The first reason, for the `partial_success` message.
    pub first_error: Option<String>,
    /// `rejected` split by reason, for the `rejected{reason}` counter. Only reasons that
    /// occurred are listed, each once.
    pub rejected_by: Vec<(RejectReason, u64)>,
    /// Values, names and messages cut at [`MAX_VALUE_BYTES`].
    pub truncated_values: u64,
    /// Attributes, events, links and array items dropped over their caps.
    pub dropped_items: u64,
}

impl<T> Default for Decoded<T> {
    fn default() -> Decoded<T> {
        Decoded {
            items: Vec::new(),
            rejected: 0,
            first_error: None,
            rejected_by: Vec::new(),
            truncated_values: 0,
            dropped_items: 0,
        }
    }
}

impl<T> Decoded<T> {
    fn with_capacity(items: usize) -> Decoded<T> {
        Decoded {
            items: Vec::with_capacity(items),
            ..Decoded::default()
        }
    }

    fn reject(&mut self, reason: RejectReason, message: impl FnOnce() -> String) {
        self.rejected += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
        match self.rejected_by.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.rejected_by.push((reason, 1)),
        }
    }
}

pub fn parse_traces_proto(body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    Ok(ExportTraceServiceRequest::decode(body)?)
}

pub fn parse_logs_proto(body: &[u8]) -> Result<ExportLogsServiceRequest, DecodeError> {
    Ok(ExportLogsServiceRequest::decode(body)?)
}

/// OTLP/JSON (hex ids, int64 as number or string); see the `json` module for the
/// exact leniencies.
pub fn parse_traces_json(body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    let req: json::TraceRequest = serde_json::from_slice(body)?;
    Ok(req.into())
}

pub fn parse_logs_json(body: &[u8]) -> Result<ExportLogsServiceRequest, DecodeError> {
    let req: json::LogsRequest = serde_json::from_slice(body)?;
    Ok(req.into())
}

pub fn decode_traces(req: ExportTraceServiceRequest, interner: &Interner) -> Decoded<SpanRecord> {
    let total: usize = req
        .resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .map(|ss| ss.spans.len())
        .sum();
    let mut out = Decoded::with_capacity(total);
    let mut ctx = Ctx::new(interner);
    for rs in req.resource_spans {
        if rs.scope_spans.iter().all(|ss| ss.spans.is_empty()) {
            continue;
        }
        let resource = ctx.resource(rs.resource);
        for ss in rs.scope_spans {
            let scope_name = ss
                .scope
                .map(|s| s.name)
                .filter(|n| !n.is_empty())
                .map(|n| ctx.text(n));
            for span in ss.spans {
                match ctx.span(span, &resource, &scope_name) {
                    Ok(record) => out.items.push(record),
                    Err((reason, error)) => out.reject(reason, || error.to_string()),
                }
            }
        }
    }
    ctx.finish(out)
}

pub fn decode_logs(req: ExportLogsServiceRequest, interner: &Interner) -> Decoded<LogEvent> {
    let total: usize = req
        .resource_logs
        .iter()
        .flat_map(|rl| rl.scope_logs.iter())
        .map(|sl| sl.log_records.len())
        .sum();
    let mut out = Decoded::with_capacity(total);
    let mut ctx = Ctx::new(interner);
    for rl in req.resource_logs {
        if rl.scope_logs.iter().all(|sl| sl.log_records.is_empty()) {
            continue;
        }
        let resource = ctx.resource(rl.resource);
        for sl in rl.scope_logs {
            for record in sl.log_records {
                match ctx.log(record, &resource) {
                    Ok(event) => out.items.push(event),
                    Err((reason, error)) => out.reject(reason, || error.to_string()),
                }
            }
        }
    }
    ctx.finish(out)
}

/// Why one item was refused: the counter reason and the client-facing message.
#[derive(Debug)]
struct ItemError {
    field: &'static str,
    error: IdError,
}

impl std::fmt::Display for ItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.error)
    }
}

struct Ctx<'a> {
    interner: &'a Interner,
    truncated: u64,
    dropped: u64,
}

impl<'a> Ctx<'a> {
    fn new(interner: &'a Interner) -> Ctx<'a> {
        Ctx {
            interner,
            truncated: 0,
            dropped: 0,
        }
    }

    /// Hands the counts of truncated values and dropped items over to the result.
    fn finish<T>(self, mut out: Decoded<T>) -> Decoded<T> {
        out.truncated_values = self.truncated;
        out.dropped_items = self.dropped;
        out
    }
}

impl Ctx<'_> {
    fn resource(&mut self, resource: Option<WireResource>) -> Arc<Resource> {
        let attributes = match resource {
            Some(r) => self.attributes(r.attributes),
            None => Attributes::new(),
        };
        let service_name = attributes
            .get_str(conventions::SERVICE_NAME)
            .map(|s| self.interner.intern(s));
        Arc::new(Resource {
            service_name,
            attributes,
        })
    }

    fn span(
        &mut self,
        span: Span,
        resource: &Arc<Resource>,
        scope_name: &Option<Str>,
    ) -> Result<SpanRecord, (RejectReason, ItemError)> {
        let trace_id = TraceId::from_bytes(&span.trace_id).map_err(|error| {
            (
                RejectReason::InvalidTraceId,
                ItemError {
                    field: "trace_id",
                    error,
                },
            )
        })?;
        let span_id = SpanId::from_bytes(&span.span_id).map_err(|error| {
            (
                RejectReason::InvalidSpanId,
                ItemError {
                    field: "span_id",
                    error,
                },
            )
        })?;
        let parent_span_id = if span.parent_span_id.is_empty() {
            None
        } else {
            Some(SpanId::from_bytes(&span.parent_span_id).map_err(|error| {
                (
                    RejectReason::InvalidParentSpanId,
                    ItemError {
                        field: "parent_span_id",
                        error,
                    },
                )
            })?)
        };
        let (status, status_message) = match span.status {
            Some(st) => {
                let status = match st.code {
                    1 => SpanStatus::Ok,
                    2 => SpanStatus::Error,
                    _ => SpanStatus::Unset,
                };
                let message = (!st.message.is_empty()).then(|| self.text(st.message));
                (status, message)
            }
            None => (SpanStatus::Unset, None),
        };
        let events = self.events(span.events);
        let links = self.links(span.links);
        Ok(SpanRecord {
            trace_id,
            span_id,
            parent_span_id,
            name: self.text(span.name),
            kind: span_kind(span.kind),
            start_unix_nano: span.start_time_unix_nano,
            end_unix_nano: span.end_time_unix_nano,
            status,
            status_message,
            attributes: self.attributes(span.attributes),
            events,
            links,
            resource: Arc::clone(resource),
            scope_name: scope_name.clone(),
        })
    }

    fn events(&mut self, events: Vec<Event>) -> ThinVec<SpanEvent> {
        if events.len() > MAX_EVENTS {
            self.dropped += (events.len() - MAX_EVENTS) as u64;
        }
        events
            .into_iter()
            .take(MAX_EVENTS)
            .map(|e| SpanEvent {
                name: self.text(e.name),
                time_unix_nano: e.time_unix_nano,
                attributes: self.attributes(e.attributes),
            })
            .collect()
    }

    fn links(&mut self, links: Vec<Link>) -> ThinVec<SpanLink> {
        if links.len() > MAX_LINKS {
            self.dropped += (links.len() - MAX_LINKS) as u64;
        }
        let mut out = ThinVec::with_capacity(links.len().min(MAX_LINKS));
        for link in links.into_iter().take(MAX_LINKS) {
            match (
                TraceId::from_bytes(&link.trace_id),
                SpanId::from_bytes(&link.span_id),
            ) {
                (Ok(trace_id), Ok(span_id)) => out.push(SpanLink {
                    trace_id,
                    span_id,
                    attributes: self.attributes(link.attributes),
                }),
                _ => self.dropped += 1,
            }
        }
        out
    }

    fn log(
        &mut self,
        record: LogRecord,
        resource: &Arc<Resource>,
    ) -> Result<LogEvent, (RejectReason, ItemError)> {
        // Logs outside a span carry no ids; some SDKs send all-zero ids instead. Both
        // mean "none". A non-empty id of the wrong length is malformed.
        let trace_id = optional_id(&record.trace_id, 16, TraceId::from_bytes).map_err(|error| {
            (
                RejectReason::InvalidTraceId,
                ItemError {
                    field: "trace_id",
                    error,
                },
            )
        })?;
        let span_id = optional_id(&record.span_id, 8, SpanId::from_bytes).map_err(|error| {
            (
                RejectReason::InvalidSpanId,
                ItemError {
                    field: "span_id",
                    error,
                },
            )
        })?;
        let attributes = self.attributes(record.attributes);
        let event_name = if !record.event_name.is_empty() {
            self.text(record.event_name)
        } else {
            match attributes.get_str("event.name") {
                Some(name) => self.interner.intern(name),
                None => self.interner.intern(""),
            }
        };
        let body = record.body.and_then(|b| self.value(b, 0));
        Ok(LogEvent {
            trace_id,
            span_id,
            time_unix_nano: if record.time_unix_nano != 0 {
                record.time_unix_nano
            } else {
                record.observed_time_unix_nano
            },
            event_name,
            severity_number: record.severity_number,
            body,
            attributes,
            resource: Arc::clone(resource),
        })
    }

    /// Converts attributes: interned keys, last value wins for a repeated key, capped.
    fn attributes(&mut self, kvs: Vec<KeyValue>) -> Attributes {
        // For a handful of keys `insert` finds repeats by a scan; past that, keep only the
        // last occurrence of each key (found with a map) so the conversion stays linear.
        const SCAN_MAX: usize = 16;
        let keep: Option<Vec<bool>> = (kvs.len() > SCAN_MAX).then(|| {
            let last: HashMap<&str, usize> = kvs
                .iter()
                .enumerate()
                .map(|(i, kv)| (kv.key.as_str(), i))
                .collect();
            kvs.iter()
                .enumerate()
                .map(|(i, kv)| last.get(kv.key.as_str()) == Some(&i))
                .collect()
        });
        let mut out: Vec<(Str, Value)> = Vec::with_capacity(kvs.len().min(MAX_ATTRIBUTES));
        for (i, kv) in kvs.into_iter().enumerate() {
            if let Some(keep) = &keep {
                if !keep[i] {
                    continue;
                }
            }
            if out.len() >= MAX_ATTRIBUTES {
                self.dropped += 1;
                continue;
            }
            let Some(value) = kv.value.and_then(|v| self.value(v, 0)) else {
                continue;
            };
            let key = self.interner.intern_owned(kv.key);
            // Past SCAN_MAX the repeats are already gone.
            let repeat = match keep {
                None => out.iter_mut().find(|(k, _)| *k == key),
                Some(_) => None,
            };
            match repeat {
                Some(slot) => slot.1 = value,
                None => out.push((key, value)),
            }
        }
        Attributes::from_unique(out)
    }

    fn value(&mut self, value: AnyValue, depth: usize) -> Option<Value> {
        Some(match value.value? {
            WireValue::StringValue(s) => Value::Str(self.text(s)),
            WireValue::BoolValue(b) => Value::Bool(b),
            WireValue::IntValue(i) => Value::Int(i),
            WireValue::DoubleValue(d) => Value::Double(d),
            WireValue::StringValueStrindex(i) => Value::Int(i64::from(i)),
            WireValue::BytesValue(b) => {
                let mut text = hex::encode(&b[..b.len().min(MAX_VALUE_BYTES / 2)]);
                if b.len() > MAX_VALUE_BYTES / 2 {
                    self.truncated += 1;
                    text.push_str(TRUNCATION_MARK);
                }
                Value::Str(Str::from(text))
            }
            WireValue::ArrayValue(a) => {
                if depth >= MAX_VALUE_DEPTH {
                    self.truncated += 1;
                    return Some(Value::Str(self.interner.intern("…")));
                }
                if a.values.len() > MAX_ARRAY_ITEMS {
                    self.dropped += (a.values.len() - MAX_ARRAY_ITEMS) as u64;
                }
                let items: Vec<Value> = a
                    .values
                    .into_iter()
                    .take(MAX_ARRAY_ITEMS)
                    .filter_map(|v| self.value(v, depth + 1))
                    .collect();
                Value::Array(items.into())
            }
            WireValue::KvlistValue(kv) => {
                let mut text = String::new();
                let mut cut = false;
                write_kvlist(&kv.values, depth, &mut text, &mut cut);
                if cut {
                    self.truncated += 1;
                    truncate_at_boundary(&mut text, MAX_VALUE_BYTES);
                    text.push_str(TRUNCATION_MARK);
                }
                Value::Str(Str::from(text))
            }
        })
    }

    /// A name, message or string value: interned when short, truncated when giant.
    fn text(&mut self, mut s: String) -> Str {
        if s.len() > MAX_VALUE_BYTES {
            self.truncated += 1;
            truncate_at_boundary(&mut s, MAX_VALUE_BYTES);
            s.push_str(TRUNCATION_MARK);
        }
        self.interner.intern_owned(s)
    }
}

/// An id that may be absent: empty, or all zero at the right length, is `None`.
fn optional_id<T>(
    bytes: &[u8],
    expected_len: usize,
    parse: fn(&[u8]) -> Result<T, IdError>,
) -> Result<Option<T>, IdError> {
    if bytes.is_empty() || (bytes.len() == expected_len && bytes.iter().all(|b| *b == 0)) {
        return Ok(None);
    }
    parse(bytes).map(Some)
}

fn span_kind(kind: i32) -> SpanKind {
    match kind {
        1 => SpanKind::Internal,
        2 => SpanKind::Server,
        3 => SpanKind::Client,
        4 => SpanKind::Producer,
        5 => SpanKind::Consumer,
        _ => SpanKind::Unspecified,
    }
}

fn truncate_at_boundary(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

/// Writes a kvlist as a JSON object. Stops (setting `cut`) once `out` passes
/// [`MAX_VALUE_BYTES`], so a giant kvlist costs no more than the cap.
fn write_kvlist(values: &[KeyValue], depth: usize, out: &mut String, cut: &mut bool) {
    if depth >= MAX_VALUE_DEPTH {
        *cut = true;
        out.push_str("\"…\"");
        return;
    }
    out.push('{');
    for (i, kv) in values.iter().enumerate() {
        if out.len() > MAX_VALUE_BYTES {
            *cut = true;
            return;
        }
        if i > 0 {
            out.push(',');
        }
        write_json_string(&kv.key, out);
        out.push(':');
        match &kv.value {
            Some(v) => write_any(v, depth + 1, out, cut),
            None => out.push_str("null"),
        }
    }
    out.push('}');
}

fn write_any(value: &AnyValue, depth: usize, out: &mut String, cut: &mut bool) {
    match &value.value {
        None => out.push_str("null"),
        Some(WireValue::StringValue(s)) => write_json_string(s, out),
        Some(WireValue::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(WireValue::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(WireValue::StringValueStrindex(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(WireValue::DoubleValue(d)) => {
            if d.is_finite() {
                let _ = write!(out, "{d}");
            } else {
                // JSON has no NaN or infinities; OTLP/JSON writes them as strings.
                let _ = write!(out, "\"{d}\"");
            }
        }
        Some(WireValue::BytesValue(b)) => {
            out.push('"');
            out.push_str(&hex::encode(&b[..b.len().min(MAX_VALUE_BYTES / 2)]));
            out.push('"');
        }
        Some(WireValue::ArrayValue(a)) => {
            if depth >= MAX_VALUE_DEPTH {
                *cut = true;
                out.push_str("\"…\"");
                return;
            }
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if out.len() > MAX_VALUE_BYTES {
                    *cut = true;
                    return;
                }
                if i > 0 {
                    out.push(',');
                }
                write_any(v, depth + 1, out, cut);
            }
            out.push(']');
        }
        Some(WireValue::KvlistValue(kv)) => write_kvlist(&kv.values, depth, out, cut),
    }
}

fn write_json_string(s: &str, out: &mut String) {
    let budget = MAX_VALUE_BYTES.saturating_sub(out.len()).saturating_add(1);
    let s = if s.len() > budget {
        let mut end = budget;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    } else {
        s
    };
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
