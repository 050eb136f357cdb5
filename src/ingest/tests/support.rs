//! Builders for OTLP wire requests used by the ingest tests.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as WireValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

pub const TRACE: [u8; 16] = [0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

pub fn span_id(n: u8) -> Vec<u8> {
    vec![0x10, 0, 0, 0, 0, 0, 0, n]
}

pub fn kv(key: &str, value: WireValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

pub fn kv_str(key: &str, value: &str) -> KeyValue {
    kv(key, WireValue::StringValue(value.to_string()))
}

/// A valid span `n` of [`TRACE`] under `parent` (0 = root).
pub fn wire_span(n: u8, parent: u8) -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: span_id(n),
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            span_id(parent)
        },
        name: format!("span-{n}"),
        kind: 1,
        start_time_unix_nano: 1_000_000 * u64::from(n),
        end_time_unix_nano: 1_000_000 * u64::from(n) + 500_000,
        attributes: vec![kv_str("gen_ai.operation.name", "chat")],
        status: Some(Status {
            message: String::new(),
            code: 0,
        }),
        ..Span::default()
    }
}

pub fn traces(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "agent-svc")],
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "openinference".to_string(),
                    ..InstrumentationScope::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

pub fn logs(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "agent-svc")],
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            }),
            scope_logs: vec![ScopeLogs {
                scope: None,
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
