//! OTLP/JSON into the `opentelemetry-proto` types, with the leniency OTLP asks of a receiver.
//!
//! The `with-serde` derives of `opentelemetry-proto` are close to OTLP/JSON but fail a
//! whole request for things that should cost at most one span: an id that is not hex
//! (e.g. base64, as the generic protobuf JSON mapping would write it) fails the request,
//! and an enum written by name (`"SPAN_KIND_SERVER"`) fails it too. So the envelope
//! levels (request, resource, scope, span, event, link, status, log record) and the
//! attribute values (`KeyValue`, `AnyValue`) are mirrored here and moved into the prost
//! types. (The crate's `AnyValue` deserializer also refuses `"arrayValue": {}`, which
//! the Python SDK writes for an empty list, e.g. an empty `retrieval.documents`.)
//!
//! What this module does, each choice tested in `src/ingest/tests/decode.rs` (service):
//! - ids: hex in either case. A string that is not hex (base64, odd length) becomes an
//!   all-zero marker of about half its length that is never 8 or 16 bytes, so the span
//!   (or log record) is rejected by `decode_*` as an id of the wrong length and counted,
//!   never the batch. An empty or missing id stays empty (a missing parent is a root).
//! - 64-bit integers: a JSON number or a decimal string; anything else fails the request.
//! - enums (`kind`, `status.code`, `severityNumber`): an integer, or the proto enum name
//!   (`"SPAN_KIND_SERVER"`) as a courtesy; an unknown name fails the request.
//! - unknown fields are ignored, including snake_case spellings of known fields
//!   (`trace_id`), which therefore leave the field missing.
//! - `null` for a message or scalar field means its default.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct TraceRequest {
    #[serde(deserialize_with = "nullable")]
    resource_spans: Vec<JResourceSpans>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct LogsRequest {
    #[serde(deserialize_with = "nullable")]
    resource_logs: Vec<JResourceLogs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JResourceSpans {
    #[serde(deserialize_with = "resource")]
    resource: Option<Resource>,
    #[serde(deserialize_with = "nullable")]
    scope_spans: Vec<JScopeSpans>,
    #[serde(deserialize_with = "nullable")]
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JScopeSpans {
    #[serde(deserialize_with = "scope")]
    scope: Option<InstrumentationScope>,
    #[serde(deserialize_with = "nullable")]
    spans: Vec<JSpan>,
    #[serde(deserialize_with = "nullable")]
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JSpan {
    #[serde(deserialize_with = "id")]
    trace_id: Vec<u8>,
    #[serde(deserialize_with = "id")]
    span_id: Vec<u8>,
    #[serde(deserialize_with = "nullable")]
    trace_state: String,
    #[serde(deserialize_with = "id")]
    parent_span_id: Vec<u8>,
    #[serde(deserialize_with = "nullable")]
    flags: u32,
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "span_kind")]
    kind: i32,
    #[serde(deserialize_with = "u64_lenient")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "u64_lenient")]
    end_time_unix_nano: u64,
    #[serde(deserialize_with = "attributes")]
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "nullable")]
    dropped_attributes_count: u32,
    #[serde(deserialize_with = "nullable")]
    events: Vec<JEvent>,
    #[serde(deserialize_with = "nullable")]
    dropped_events_count: u32,
    #[serde(deserialize_with = "nullable")]
    links: Vec<JLink>,
    #[serde(deserialize_with = "nullable")]
    dropped_links_count: u32,
    status: Option<JStatus>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JEvent {
    #[serde(deserialize_with = "u64_lenient")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "attributes")]
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "nullable")]
    dropped_attributes_count: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JLink {
    #[serde(deserialize_with = "id")]
    trace_id: Vec<u8>,
    #[serde(deserialize_with = "id")]
    span_id: Vec<u8>,
    #[serde(deserialize_with = "nullable")]
    trace_state: String,
    #[serde(deserialize_with = "attributes")]
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "nullable")]
    dropped_attributes_count: u32,
    #[serde(deserialize_with = "nullable")]
    flags: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JStatus {
    #[serde(deserialize_with = "nullable")]
    message: String,
    #[serde(deserialize_with = "status_code")]
    code: i32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JResourceLogs {
    #[serde(deserialize_with = "resource")]
    resource: Option<Resource>,
    #[serde(deserialize_with = "nullable")]
    scope_logs: Vec<JScopeLogs>,
    #[serde(deserialize_with = "nullable")]
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JScopeLogs {
    #[serde(deserialize_with = "scope")]
    scope: Option<InstrumentationScope>,
    #[serde(deserialize_with = "nullable")]
    log_records: Vec<JLogRecord>,
    #[serde(deserialize_with = "nullable")]
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JLogRecord {
    #[serde(deserialize_with = "u64_lenient")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "u64_lenient")]
    observed_time_unix_nano: u64,
    #[serde(deserialize_with = "severity_number")]
    severity_number: i32,
    #[serde(deserialize_with = "nullable")]
    severity_text: String,
    #[serde(deserialize_with = "any_value")]
    body: Option<AnyValue>,
    #[serde(deserialize_with = "attributes")]
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "nullable")]
    dropped_attributes_count: u32,
    #[serde(deserialize_with = "nullable")]
    flags: u32,
    #[serde(deserialize_with = "id")]
    trace_id: Vec<u8>,
    #[serde(deserialize_with = "id")]
    span_id: Vec<u8>,
    #[serde(deserialize_with = "nullable")]
    event_name: String,
}

impl From<TraceRequest> for ExportTraceServiceRequest {
    fn from(req: TraceRequest) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: req
                .resource_spans
                .into_iter()
                .map(|rs| ResourceSpans {
                    resource: rs.resource,
                    scope_spans: rs
                        .scope_spans
                        .into_iter()
                        .map(|ss| ScopeSpans {
                            scope: ss.scope,
                            spans: ss.spans.into_iter().map(Span::from).collect(),
                            schema_url: ss.schema_url,
                        })
                        .collect(),
                    schema_url: rs.schema_url,
                })
                .collect(),
        }
    }
}

impl From<JSpan> for Span {
    fn from(s: JSpan) -> Span {
        Span {
            trace_id: s.trace_id,
            span_id: s.span_id,
            trace_state: s.trace_state,
            parent_span_id: s.parent_span_id,
            flags: s.flags,
            name: s.name,
            kind: s.kind,
            start_time_unix_nano: s.start_time_unix_nano,
            end_time_unix_nano: s.end_time_unix_nano,
            attributes: s.attributes,
            dropped_attributes_count: s.dropped_attributes_count,
            events: s
                .events
                .into_iter()
                .map(|e| Event {
                    time_unix_nano: e.time_unix_nano,
                    name: e.name,
                    attributes: e.attributes,
                    dropped_attributes_count: e.dropped_attributes_count,
                })
                .collect(),
            dropped_events_count: s.dropped_events_count,
            links: s
                .links
                .into_iter()
                .map(|l| Link {
                    trace_id: l.trace_id,
                    span_id: l.span_id,
                    trace_state: l.trace_state,
                    attributes: l.attributes,
                    dropped_attributes_count: l.dropped_attributes_count,
                    flags: l.flags,
                })
                .collect(),
            dropped_links_count: s.dropped_links_count,
            status: s.status.map(|st| Status {
                message: st.message,
                code: st.code,
            }),
        }
    }
}

impl From<LogsRequest> for ExportLogsServiceRequest {
    fn from(req: LogsRequest) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: req
                .resource_logs
                .into_iter()
                .map(|rl| ResourceLogs {
                    resource: rl.resource,
                    scope_logs: rl
                        .scope_logs
                        .into_iter()
                        .map(|sl| ScopeLogs {
                            scope: sl.scope,
                            log_records: sl
                                .log_records
                                .into_iter()
                                .map(|r| LogRecord {
                                    time_unix_nano: r.time_unix_nano,
                                    observed_time_unix_nano: r.observed_time_unix_nano,
                                    severity_number: r.severity_number,
                                    severity_text: r.severity_text,
                                    body: r.body,
                                    attributes: r.attributes,
                                    dropped_attributes_count: r.dropped_attributes_count,
                                    flags: r.flags,
                                    trace_id: r.trace_id,
                                    span_id: r.span_id,
                                    event_name: r.event_name,
                                })
                                .collect(),
                            schema_url: sl.schema_url,
                        })
                        .collect(),
                    schema_url: rl.schema_url,
                })
                .collect(),
        }
    }
}

/// `null` as the default value; anything else as `T` would read it.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The longest marker kept for an id that is not hex: long enough to be wrong, short
/// enough that a giant string does not turn into a giant id.
const MAX_MARKER_BYTES: usize = 64;

/// A hex id (either case). Not hex: an all-zero marker that no id validation accepts.
fn id<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct IdVisitor;
    impl Visitor<'_> for IdVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a hex-encoded id")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<u8>, E> {
            Ok(hex::decode(s).unwrap_or_else(|_| invalid_id_marker(s.len())))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<u8>, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(IdVisitor)
}

/// All zero and never 8 or 16 bytes long, so that no id validation accepts it and no
/// "all-zero means absent" rule (log records) mistakes it for a missing id.
fn invalid_id_marker(text_len: usize) -> Vec<u8> {
    let len = match (text_len / 2).clamp(1, MAX_MARKER_BYTES) {
        n @ (8 | 16) => n + 1,
        n => n,
    };
    vec![0; len]
}

/// A u64 as a JSON number or a decimal string; `null` is 0.
fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct U64Visitor;
    impl Visitor<'_> for U64Visitor {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an unsigned 64-bit integer as a number or a decimal string")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{v} is out of range for a u64")))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
            s.parse()
                .map_err(|_| E::custom(format!("{s:?} is not an unsigned 64-bit integer")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
            Ok(0)
        }
    }
    d.deserialize_any(U64Visitor)
}

/// An enum as its integer, or by its proto name through `from_name`.
fn enum_value<'de, D: Deserializer<'de>>(
    d: D,
    what: &'static str,
    from_name: fn(&str) -> Option<i32>,
) -> Result<i32, D::Error> {
    struct EnumVisitor {
        what: &'static str,
        from_name: fn(&str) -> Option<i32>,
    }
    impl Visitor<'_> for EnumVisitor {
        type Value = i32;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a {} as an integer", self.what)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
            i32::try_from(v).map_err(|_| E::custom(format!("{} {v} is out of range", self.what)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
            i32::try_from(v).map_err(|_| E::custom(format!("{} {v} is out of range", self.what)))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<i32, E> {
            (self.from_name)(s).ok_or_else(|| E::custom(format!("unknown {} {s:?}", self.what)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<i32, E> {
            Ok(0)
        }
    }
    d.deserialize_any(EnumVisitor { what, from_name })
}

fn span_kind<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    enum_value(d, "span kind", |s| {
        SpanKind::from_str_name(s).map(|k| k as i32)
    })
}

fn status_code<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    enum_value(d, "status code", |s| {
        StatusCode::from_str_name(s).map(|c| c as i32)
    })
}

fn severity_number<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    enum_value(d, "severity number", |s| {
        SeverityNumber::from_str_name(s).map(|n| n as i32)
    })
}

/// `KeyValue` as OTLP/JSON writes it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JKeyValue {
    #[serde(deserialize_with = "nullable")]
    key: String,
    value: Option<JAnyValue>,
}

/// `AnyValue`: one of the fields is set; an empty object is an empty value.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JAnyValue {
    string_value: Option<String>,
    bool_value: Option<bool>,
    #[serde(deserialize_with = "i64_opt")]
    int_value: Option<i64>,
    #[serde(deserialize_with = "f64_opt")]
    double_value: Option<f64>,
    array_value: Option<JValues<JAnyValue>>,
    kvlist_value: Option<JValues<JKeyValue>>,
    bytes_value: Option<String>,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    default,
    bound(deserialize = "T: Deserialize<'de>")
)]
struct JValues<T> {
    #[serde(deserialize_with = "nullable")]
    values: Vec<T>,
}

impl<T> Default for JValues<T> {
    fn default() -> JValues<T> {
        JValues { values: Vec::new() }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JResource {
    #[serde(deserialize_with = "attributes")]
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "nullable")]
    dropped_attributes_count: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JScope {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    version: String,
    #[serde(deserialize_with = "attributes")]
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "nullable")]
    dropped_attributes_count: u32,
}

impl From<JKeyValue> for KeyValue {
    fn from(kv: JKeyValue) -> KeyValue {
        KeyValue {
            key: kv.key,
            value: kv.value.map(AnyValue::from),
            ..KeyValue::default()
        }
    }
}

impl From<JAnyValue> for AnyValue {
    fn from(v: JAnyValue) -> AnyValue {
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
        let value = if let Some(s) = v.string_value {
            Some(V::StringValue(s))
        } else if let Some(b) = v.bool_value {
            Some(V::BoolValue(b))
        } else if let Some(i) = v.int_value {
            Some(V::IntValue(i))
        } else if let Some(d) = v.double_value {
            Some(V::DoubleValue(d))
        } else if let Some(a) = v.array_value {
            Some(V::ArrayValue(ArrayValue {
                values: a.values.into_iter().map(AnyValue::from).collect(),
            }))
        } else if let Some(kv) = v.kvlist_value {
            Some(V::KvlistValue(KeyValueList {
                values: kv.values.into_iter().map(KeyValue::from).collect(),
            }))
        } else {
            v.bytes_value.map(|b| {
                use base64::Engine as _;
                // OTLP/JSON writes bytes as base64; undecodable text is kept as its bytes.
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .unwrap_or_else(|_| b.into_bytes());
                V::BytesValue(bytes)
            })
        };
        AnyValue { value }
    }
}

fn attributes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KeyValue>, D::Error> {
    let v: Option<Vec<JKeyValue>> = Option::deserialize(d)?;
    Ok(v.unwrap_or_default()
        .into_iter()
        .map(KeyValue::from)
        .collect())
}

fn any_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AnyValue>, D::Error> {
    let v: Option<JAnyValue> = Option::deserialize(d)?;
    Ok(v.map(AnyValue::from))
}

fn resource<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Resource>, D::Error> {
    let v: Option<JResource> = Option::deserialize(d)?;
    Ok(v.map(|r| Resource {
        attributes: r.attributes,
        dropped_attributes_count: r.dropped_attributes_count,
        ..Resource::default()
    }))
}

fn scope<'de, D: Deserializer<'de>>(d: D) -> Result<Option<InstrumentationScope>, D::Error> {
    let v: Option<JScope> = Option::deserialize(d)?;
    Ok(v.map(|s| InstrumentationScope {
        name: s.name,
        version: s.version,
        attributes: s.attributes,
        dropped_attributes_count: s.dropped_attributes_count,
    }))
}

fn i64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrString {
        Int(i64),
        Str(String),
    }
    match Option::<IntOrString>::deserialize(d)? {
        None => Ok(None),
        Some(IntOrString::Int(i)) => Ok(Some(i)),
        Some(IntOrString::Str(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("intValue `{s}` is not a 64-bit integer"))),
    }
}

fn f64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrString {
        Num(f64),
        Str(String),
    }
    match Option::<NumOrString>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrString::Num(x)) => Ok(Some(x)),
        Some(NumOrString::Str(s)) => match s.as_str() {
            "NaN" => Ok(Some(f64::NAN)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            other => other
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| de::Error::custom(format!("doubleValue `{s}` is not a number"))),
        },
    }
}

/// The mirror types, for pricing a JSON request before it is parsed (see `cost`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mirror {
    Resource,
    Scope,
    Span,
    Event,
    Link,
    LogRecord,
    KeyValue,
    AnyValue,
}

/// `size_of` the mirror type of a message (0 for messages parsed straight into prost).
pub(crate) fn mirror_size(mirror: Option<Mirror>) -> u64 {
    use std::mem::size_of;
    let size = match mirror {
        None => 0,
        Some(Mirror::Resource) => size_of::<JResourceSpans>().max(size_of::<JResourceLogs>()),
        Some(Mirror::Scope) => size_of::<JScopeSpans>().max(size_of::<JScopeLogs>()),
        Some(Mirror::Span) => size_of::<JSpan>() + size_of::<JStatus>(),
        Some(Mirror::Event) => size_of::<JEvent>(),
        Some(Mirror::Link) => size_of::<JLink>(),
        Some(Mirror::LogRecord) => size_of::<JLogRecord>(),
        Some(Mirror::KeyValue) => size_of::<JKeyValue>(),
        Some(Mirror::AnyValue) => size_of::<JAnyValue>() + size_of::<JValues<JAnyValue>>(),
    };
    size as u64
}
