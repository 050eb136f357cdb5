//! What decoding a request will cost, found before decoding it.
//!
//! The size limit counts wire bytes, but decoding amplifies them: an empty `Span` is two
//! bytes of protobuf (three of JSON, `{},`) and a few hundred bytes once decoded, so
//! 64 MiB of empty spans would take gigabytes. [`estimate_proto`] and [`estimate_json`]
//! walk the body once, without allocating per item, count the messages decoding will
//! build, and price each one; a request priced over what one request may hold is refused
//! before it is decoded (413 / `RESOURCE_EXHAUSTED`, not retryable, naming the limit).
//!
//! # Prices
//!
//! A message costs what holding it costs at the decoder's peak, when the wire types and
//! the model records built from them are both alive:
//! - its wire struct (`size_of` of the `opentelemetry-proto` type; the JSON path adds
//!   its mirror type), doubled for the slack a growing `Vec` may leave;
//! - the model record built from it (`SpanRecord`, an attribute pair, `SpanEvent`, ...);
//! - every string and bytes field twice (wire copy and model copy), the model copy
//!   capped at [`MAX_VALUE_BYTES`].
//!
//! The prices are `size_of` of the real types, so they follow the types; the
//! `estimate_is_an_upper_bound_of_what_decoding_allocates` test measures decoding with
//! a counting allocator and checks that the price is above what was allocated and not
//! far above it. Unknown fields cost nothing (prost skips them, serde ignores them).
//!
//! The walks never fail: malformed input is priced up to where it stops making sense,
//! which is where the real decoder fails too, and the decoder then reports the error.

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use crate::decode::MAX_VALUE_BYTES;
use faultline_core::model::{LogEvent, SpanEvent, SpanLink, SpanRecord, Str, Value};

/// Which request a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
}

/// The price of decoding one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Spans or log records in the request.
    pub items: u64,
    /// Bytes held at the decoder's peak.
    pub bytes: u64,
}

/// The kinds of message a request holds (both signals), plus `Ignored` for what the
/// decoder skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TraceRequest,
    LogsRequest,
    ResourceSpans,
    ResourceLogs,
    ScopeSpans,
    ScopeLogs,
    Resource,
    Scope,
    EntityRef,
    Span,
    Event,
    Link,
    Status,
    LogRecord,
    KeyValue,
    AnyValue,
    ArrayValue,
    KvList,
    /// A string or bytes field: priced by its length.
    Text,
    /// A repeated string (EntityRef keys): a `String` in a `Vec` plus its length.
    TextItem,
    /// An unknown field, or anything inside one.
    Ignored,
}

/// A growing `Vec` may hold up to twice what it needs.
const VEC_SLACK: u64 = 2;
/// An interned or shared string: its header (count, length) besides the text.
const STR_HEADER: u64 = 16;

const fn sz<T>() -> u64 {
    size_of::<T>() as u64
}

impl Kind {
    /// The wire (prost) struct and the model record one message of this kind costs.
    fn price(self) -> u64 {
        let attribute = sz::<(Str, Value)>();
        match self {
            Kind::TraceRequest | Kind::LogsRequest | Kind::Ignored | Kind::Text => 0,
            Kind::ResourceSpans => VEC_SLACK * sz::<ResourceSpans>(),
            Kind::ResourceLogs => VEC_SLACK * sz::<ResourceLogs>(),
            Kind::ScopeSpans => VEC_SLACK * sz::<ScopeSpans>(),
            Kind::ScopeLogs => VEC_SLACK * sz::<ScopeLogs>(),
            // The model's resource is shared behind an `Arc`, once per envelope.
            Kind::Resource => sz::<Resource>() + 64,
            Kind::Scope => sz::<InstrumentationScope>(),
            Kind::EntityRef => VEC_SLACK * sz::<EntityRef>(),
            Kind::Span => VEC_SLACK * sz::<Span>() + sz::<SpanRecord>(),
            Kind::Event => VEC_SLACK * sz::<Event>() + sz::<SpanEvent>(),
            Kind::Link => VEC_SLACK * sz::<Link>() + sz::<SpanLink>(),
            Kind::Status => sz::<Status>(),
            Kind::LogRecord => VEC_SLACK * sz::<LogRecord>() + sz::<LogEvent>(),
            Kind::KeyValue => VEC_SLACK * sz::<KeyValue>() + attribute,
            // Boxed inside a oneof or an element of an array; the model value is inline
            // in its attribute pair or array.
            Kind::AnyValue => VEC_SLACK * sz::<AnyValue>() + sz::<Value>(),
            Kind::ArrayValue => sz::<ArrayValue>() + 2 * sz::<usize>(),
            Kind::KvList => sz::<KeyValueList>(),
            Kind::TextItem => VEC_SLACK * sz::<String>(),
        }
    }

    fn is_item(self) -> bool {
        matches!(self, Kind::Span | Kind::LogRecord)
    }

    /// What a protobuf field of a message of this kind holds; `None` for scalars.
    fn proto_field(self, field: u64) -> Option<Kind> {
        use Kind::*;
        Some(match (self, field) {
            (TraceRequest, 1) => ResourceSpans,
            (LogsRequest, 1) => ResourceLogs,
            (ResourceSpans | ResourceLogs, 1) => Resource,
            (ResourceSpans, 2) => ScopeSpans,
            (ResourceLogs, 2) => ScopeLogs,
            (ResourceSpans | ResourceLogs | ScopeSpans | ScopeLogs, 3) => Text,
            (ScopeSpans | ScopeLogs, 1) => Scope,
            (ScopeSpans, 2) => Span,
            (ScopeLogs, 2) => LogRecord,
            (Resource, 1) => KeyValue,
            (Resource, 3) => EntityRef,
            (Scope, 1 | 2) => Text,
            (Scope, 3) => KeyValue,
            (EntityRef, 1 | 2) => Text,
            (EntityRef, 3 | 4) => TextItem,
            (Span, 1..=5) => Text,
            (Span, 9) => KeyValue,
            (Span, 11) => Event,
            (Span, 13) => Link,
            (Span, 15) => Status,
            (Event, 2) => Text,
            (Event, 3) => KeyValue,
            (Link, 1..=3) => Text,
            (Link, 4) => KeyValue,
            (Status, 2) => Text,
            (LogRecord, 3 | 9 | 10 | 12) => Text,
            (LogRecord, 5) => AnyValue,
            (LogRecord, 6) => KeyValue,
            (KeyValue, 1) => Text,
            (KeyValue, 2) => AnyValue,
            (AnyValue, 1 | 7) => Text,
            (AnyValue, 5) => ArrayValue,
            (AnyValue, 6) => KvList,
            (ArrayValue, 1) => AnyValue,
            (KvList, 1) => KeyValue,
            _ => return None,
        })
    }

    /// What a JSON key of an object of this kind holds (OTLP/JSON lowerCamelCase names).
    fn json_field(self, key: &str) -> Kind {
        use Kind::*;
        match (self, key) {
            (TraceRequest, "resourceSpans") => ResourceSpans,
            (LogsRequest, "resourceLogs") => ResourceLogs,
            (ResourceSpans | ResourceLogs, "resource") => Resource,
            (ResourceSpans, "scopeSpans") => ScopeSpans,
            (ResourceLogs, "scopeLogs") => ScopeLogs,
            (ResourceSpans | ResourceLogs | ScopeSpans | ScopeLogs, "schemaUrl") => Text,
            (ScopeSpans | ScopeLogs, "scope") => Scope,
            (ScopeSpans, "spans") => Span,
            (ScopeLogs, "logRecords") => LogRecord,
            (Resource | Scope | Span | Event | Link | LogRecord, "attributes") => KeyValue,
            (Scope, "name" | "version") => Text,
            (Span, "traceId" | "spanId" | "parentSpanId" | "traceState" | "name") => Text,
            (Span, "events") => Event,
            (Span, "links") => Link,
            (Span, "status") => Status,
            (Event, "name") => Text,
            (Link, "traceId" | "spanId" | "traceState") => Text,
            (Status, "message") => Text,
            (LogRecord, "severityText" | "traceId" | "spanId" | "eventName") => Text,
            (LogRecord, "body") => AnyValue,
            (KeyValue, "key") => Text,
            (KeyValue, "value") => AnyValue,
            (AnyValue, "stringValue" | "bytesValue") => Text,
            (AnyValue, "arrayValue") => ArrayValue,
            (AnyValue, "kvlistValue") => KvList,
            (ArrayValue, "values") => AnyValue,
            (KvList, "values") => KeyValue,
            _ => Ignored,
        }
    }

    /// What the JSON path adds: its own mirror of the envelope and attribute types,
    /// built first and then moved into the prost types.
    fn json_price(self) -> u64 {
        self.price() + VEC_SLACK * crate::json::mirror_size(self.mirror())
    }

    fn mirror(self) -> Option<crate::json::Mirror> {
        use crate::json::Mirror;
        Some(match self {
            Kind::ResourceSpans | Kind::ResourceLogs => Mirror::Resource,
            Kind::ScopeSpans | Kind::ScopeLogs => Mirror::Scope,
            Kind::Span => Mirror::Span,
            Kind::Event => Mirror::Event,
            Kind::Link => Mirror::Link,
            Kind::LogRecord => Mirror::LogRecord,
            Kind::KeyValue => Mirror::KeyValue,
            Kind::AnyValue => Mirror::AnyValue,
            _ => return None,
        })
    }
}

/// The price of a string or bytes field of `len` bytes: the wire copy and the model
/// copy (cut at the value cap).
fn text_price(len: u64) -> u64 {
    len + STR_HEADER + len.min(MAX_VALUE_BYTES as u64)
}

fn root(signal: Signal) -> Kind {
    match signal {
        Signal::Traces => Kind::TraceRequest,
        Signal::Logs => Kind::LogsRequest,
    }
}

/// prost's recursion limit: deeper input fails to decode, so the walk stops there too.
const MAX_DEPTH: usize = 100;

/// Prices a (decompressed) OTLP protobuf request. Linear in the body; no allocation
/// beyond a stack of at most [`MAX_DEPTH`] frames.
pub fn estimate_proto(body: &[u8], signal: Signal) -> Estimate {
    let mut est = Estimate::default();
    // (kind, end offset) of each open message.
    let mut stack: Vec<(Kind, usize)> = vec![(root(signal), body.len())];
    let mut pos = 0usize;
    while let Some(&(kind, end)) = stack.last() {
        if pos >= end {
            stack.pop();
            continue;
        }
        let Some(key) = varint(body, &mut pos) else {
            return est;
        };
        let field = key >> 3;
        match key & 7 {
            0 => {
                if varint(body, &mut pos).is_none() {
                    return est;
                }
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let Some(len) = varint(body, &mut pos) else {
                    return est;
                };
                let Some(len) = usize::try_from(len).ok().filter(|l| *l <= end - pos) else {
                    return est;
                };
                match kind.proto_field(field) {
                    Some(Kind::Text) => est.bytes += text_price(len as u64),
                    Some(Kind::TextItem) => {
                        est.bytes += Kind::TextItem.price() + text_price(len as u64)
                    }
                    Some(child) => {
                        est.bytes += child.price();
                        est.items += u64::from(child.is_item());
                        if stack.len() >= MAX_DEPTH {
                            return est;
                        }
                        stack.push((child, pos + len));
                        continue;
                    }
                    None => {}
                }
                pos += len;
            }
            // Groups (deprecated) are skipped by prost in unknown fields; their content
            // is walked as unknown fields of the same message, which costs nothing.
            3 | 4 => {}
            _ => return est,
        }
        if pos > end {
            return est;
        }
    }
    est
}

fn varint(body: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *body.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Prices an OTLP/JSON request: one pass over the bytes, tracking which message each
/// object is from the keys that lead to it. Keys with escapes are unescaped before they
/// are looked up (serde matches the unescaped key).
pub fn estimate_json(body: &[u8], signal: Signal) -> Estimate {
    #[derive(Clone, Copy)]
    enum Frame {
        /// An object of `kind`; `next` is what the value after the last key holds.
        Object { kind: Kind, next: Kind },
        /// An array whose elements are of `kind`.
        Array { kind: Kind },
    }
    let mut est = Estimate::default();
    let mut stack: Vec<Frame> = Vec::new();
    // What the next value is: the root first.
    let mut pending = root(signal);
    let mut expect_key = false;
    let mut pos = 0usize;
    while pos < body.len() {
        let b = body[pos];
        match b {
            b'{' => {
                pos += 1;
                let kind = pending;
                est.bytes += kind.json_price();
                est.items += u64::from(kind.is_item());
                stack.push(Frame::Object {
                    kind,
                    next: Kind::Ignored,
                });
                expect_key = true;
            }
            b'[' => {
                pos += 1;
                stack.push(Frame::Array { kind: pending });
                expect_key = false;
            }
            b'}' | b']' => {
                pos += 1;
                if stack.pop().is_none() {
                    return est;
                }
                expect_key = false;
            }
            b',' => {
                pos += 1;
                match stack.last() {
                    Some(Frame::Object { .. }) => expect_key = true,
                    Some(Frame::Array { kind }) => pending = *kind,
                    None => return est,
                }
            }
            b':' => {
                pos += 1;
                if let Some(Frame::Object { next, .. }) = stack.last() {
                    pending = *next;
                }
            }
            b'"' => {
                let start = pos + 1;
                let Some((end, escaped)) = string_end(body, start) else {
                    return est;
                };
                pos = end + 1;
                let raw = &body[start..end];
                if expect_key {
                    expect_key = false;
                    if let Some(Frame::Object { kind, next }) = stack.last_mut() {
                        *next = json_key(*kind, raw, escaped, &body[start - 1..=end]);
                    }
                } else if pending == Kind::Text {
                    est.bytes += text_price(raw.len() as u64);
                }
            }
            _ => {
                // Whitespace, numbers, literals.
                pos += 1;
            }
        }
    }
    est
}

/// The kind of the value under `raw` (a key's bytes without quotes) in an object of
/// `kind`.
fn json_key(kind: Kind, raw: &[u8], escaped: bool, quoted: &[u8]) -> Kind {
    if kind == Kind::Ignored {
        return Kind::Ignored;
    }
    if escaped {
        return match serde_json::from_slice::<String>(quoted) {
            Ok(key) => kind.json_field(&key),
            Err(_) => Kind::Ignored,
        };
    }
    match std::str::from_utf8(raw) {
        Ok(key) => kind.json_field(key),
        Err(_) => Kind::Ignored,
    }
}

/// The index of the closing quote of a string starting at `start`, and whether it holds
/// escapes.
fn string_end(body: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start;
    let mut escaped = false;
    while i < body.len() {
        match body[i] {
            b'"' => return Some((i, escaped)),
            b'\\' => {
                escaped = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}
