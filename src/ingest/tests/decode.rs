//! Decoding tests: protobuf and OTLP/JSON parsing, validation, value conversion.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::any_value::Value as WireValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;

use super::support::*;
use crate::ingest::decode::{MAX_ATTRIBUTES, MAX_VALUE_BYTES, TRUNCATION_MARK};
use crate::ingest::{
    decode_logs, decode_traces, parse_logs_json, parse_logs_proto, parse_traces_json,
    parse_traces_proto, DecodeError, RejectReason,
};
use crate::model::{Interner, SpanId, SpanKind, SpanStatus, TraceId, Value};

fn interner() -> Interner {
    Interner::default()
}

#[test]
fn protobuf_round_trip_gives_model_records() {
    let mut root = wire_span(1, 0);
    root.kind = 2;
    root.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
        message: "boom".into(),
        code: 2,
    });
    let child = wire_span(2, 1);
    let body = traces(vec![root, child]).encode_to_vec();

    let req = parse_traces_proto(&body).unwrap();
    let decoded = decode_traces(req, &interner());

    assert_eq!(decoded.rejected, 0);
    assert!(decoded.first_error.is_none());
    assert_eq!(decoded.items.len(), 2);
    let (a, b) = (&decoded.items[0], &decoded.items[1]);
    assert_eq!(a.trace_id, TraceId::from_bytes(&TRACE).unwrap());
    assert_eq!(a.span_id, SpanId::from_bytes(&span_id(1)).unwrap());
    assert_eq!(a.parent_span_id, None);
    assert_eq!(b.parent_span_id, Some(a.span_id));
    assert_eq!(&*a.name, "span-1");
    assert_eq!(a.kind, SpanKind::Server);
    assert_eq!(b.kind, SpanKind::Internal);
    assert_eq!(a.status, SpanStatus::Error);
    assert_eq!(a.status_message.as_deref(), Some("boom"));
    assert_eq!(b.status, SpanStatus::Unset);
    assert_eq!(a.start_unix_nano, 1_000_000);
    assert_eq!(a.end_unix_nano, 1_500_000);
    assert_eq!(a.attributes.get_str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(a.scope_name.as_deref(), Some("openinference"));
    assert_eq!(a.resource.service_name.as_deref(), Some("agent-svc"));
    // One resource per ResourceSpans, shared by its spans.
    assert!(Arc::ptr_eq(&a.resource, &b.resource));
}

#[test]
fn keys_and_short_values_are_interned() {
    let interner = interner();
    // Strings are remembered from their second sighting on.
    let decoded = decode_traces(
        traces(vec![wire_span(3, 0), wire_span(1, 0), wire_span(2, 1)]),
        &interner,
    );
    let key = |i: usize| {
        decoded.items[i]
            .attributes
            .iter()
            .next()
            .map(|(k, _)| k.as_ptr())
            .unwrap()
    };
    assert_eq!(key(1), key(2));
    let value = |i: usize| {
        decoded.items[i]
            .attributes
            .get_str("gen_ai.operation.name")
            .unwrap()
            .as_ptr()
    };
    assert_eq!(value(1), value(2));
}

#[test]
fn invalid_ids_reject_only_their_span() {
    let mut zero_trace = wire_span(2, 1);
    zero_trace.trace_id = vec![0; 16];
    let mut short_trace = wire_span(3, 1);
    short_trace.trace_id = vec![1; 15];
    let mut long_trace = wire_span(4, 1);
    long_trace.trace_id = vec![1; 17];
    let mut zero_span = wire_span(5, 1);
    zero_span.span_id = vec![0; 8];
    let mut empty_span = wire_span(6, 1);
    empty_span.span_id = Vec::new();
    let mut bad_parent = wire_span(7, 1);
    bad_parent.parent_span_id = vec![1, 2, 3];
    let mut zero_parent = wire_span(8, 1);
    zero_parent.parent_span_id = vec![0; 8];
    let spans = vec![
        wire_span(1, 0),
        zero_trace,
        short_trace,
        long_trace,
        zero_span,
        empty_span,
        bad_parent,
        zero_parent,
        wire_span(9, 1),
    ];

    let decoded = decode_traces(traces(spans), &interner());

    let kept: Vec<String> = decoded.items.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(kept, ["span-1", "span-9"]);
    assert_eq!(decoded.rejected, 7);
    assert_eq!(
        decoded.first_error.as_deref(),
        Some("invalid trace_id: trace_id is all zero")
    );
    assert_eq!(
        decoded.rejected_by,
        vec![
            (RejectReason::InvalidTraceId, 3),
            (RejectReason::InvalidSpanId, 2),
            (RejectReason::InvalidParentSpanId, 2),
        ]
    );
}

#[test]
fn garbage_and_truncated_protobuf_are_errors() {
    let garbage = [0xffu8, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02];
    assert!(matches!(
        parse_traces_proto(&garbage),
        Err(DecodeError::Protobuf(_))
    ));
    let body = traces(vec![wire_span(1, 0)]).encode_to_vec();
    let err = parse_traces_proto(&body[..body.len() - 5]).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid OTLP protobuf"),
        "{err}"
    );
    assert!(parse_logs_proto(&garbage).is_err());
}

#[test]
fn invalid_utf8_in_protobuf_fails_the_request() {
    let mut span = wire_span(1, 0);
    span.name = "NAME".into();
    let mut body = traces(vec![span]).encode_to_vec();
    let at = body.windows(4).position(|w| w == b"NAME").unwrap();
    body[at] = 0xff;
    assert!(parse_traces_proto(&body).is_err());
}

#[test]
fn deep_protobuf_nesting_is_an_error_not_a_crash() {
    let mut value = AnyValue {
        value: Some(WireValue::StringValue("leaf".into())),
    };
    for _ in 0..200 {
        value = AnyValue {
            value: Some(WireValue::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "k".into(),
                    value: Some(value),
                    key_strindex: 0,
                }],
            })),
        };
    }
    let mut span = wire_span(1, 0);
    span.attributes.push(KeyValue {
        key: "deep".into(),
        value: Some(value),
        key_strindex: 0,
    });
    let body = traces(vec![span]).encode_to_vec();
    assert!(parse_traces_proto(&body).is_err());
}

#[test]
fn empty_requests_decode_to_nothing() {
    let req = parse_traces_proto(&[]).unwrap();
    let decoded = decode_traces(req, &interner());
    assert!(decoded.items.is_empty());
    assert_eq!(decoded.rejected, 0);

    for body in [
        "{}",
        r#"{"resourceSpans":[]}"#,
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[]}]}]}"#,
        r#"{"resourceSpans":null}"#,
    ] {
        let decoded = decode_traces(parse_traces_json(body.as_bytes()).unwrap(), &interner());
        assert!(decoded.items.is_empty(), "{body}");
        assert_eq!(decoded.rejected, 0, "{body}");
    }
}

const TRACE_HEX: &str = "ab0102030405060708090a0b0c0d0e0f";

fn json_span(fields: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},
            "scopeSpans":[{{"scope":{{"name":"s"}},"spans":[{{{fields}}}]}}]}}]}}"#
    )
}

fn decode_json(body: &str) -> crate::ingest::Decoded<crate::model::SpanRecord> {
    decode_traces(parse_traces_json(body.as_bytes()).unwrap(), &interner())
}

#[test]
fn json_hex_ids_in_either_case() {
    let lower = decode_json(&json_span(&format!(
        r#""traceId":"{TRACE_HEX}","spanId":"10000000000000aa","parentSpanId":"10000000000000bb","name":"x""#
    )));
    let upper = decode_json(&json_span(&format!(
        r#""traceId":"{}","spanId":"10000000000000AA","parentSpanId":"10000000000000BB","name":"x""#,
        TRACE_HEX.to_uppercase()
    )));
    assert_eq!(lower.items.len(), 1);
    assert_eq!(lower.items, upper.items);
    assert_eq!(lower.items[0].trace_id.to_hex(), TRACE_HEX);
    assert_eq!(lower.items[0].span_id.to_hex(), "10000000000000aa");
    assert_eq!(
        lower.items[0].parent_span_id.map(|p| p.to_hex()).as_deref(),
        Some("10000000000000bb")
    );
    assert_eq!(lower.items[0].resource.service_name.as_deref(), Some("svc"));
}

#[test]
fn json_base64_wrong_length_or_empty_ids_reject_the_span() {
    let cases = [
        // base64 of 16 bytes, as the generic protobuf JSON mapping would write it.
        (
            r#""traceId":"qwECAwQFBgcICQoLDA0ODw==","spanId":"10000000000000aa""#,
            RejectReason::InvalidTraceId,
        ),
        // 15 bytes of hex.
        (
            r#""traceId":"ab0102030405060708090a0b0c0d0e","spanId":"10000000000000aa""#,
            RejectReason::InvalidTraceId,
        ),
        // 32 characters that are not hex.
        (
            r#""traceId":"zz0102030405060708090a0b0c0d0e0f","spanId":"10000000000000aa""#,
            RejectReason::InvalidTraceId,
        ),
        (
            r#""traceId":"","spanId":"10000000000000aa""#,
            RejectReason::InvalidTraceId,
        ),
        (
            r#""spanId":"10000000000000aa""#,
            RejectReason::InvalidTraceId,
        ),
        (
            &format!(r#""traceId":"{TRACE_HEX}","spanId":"EAAAAAAAAKo=""#),
            RejectReason::InvalidSpanId,
        ),
        (
            &format!(r#""traceId":"{TRACE_HEX}","spanId":"abc""#),
            RejectReason::InvalidSpanId,
        ),
        // A parent that is not hex must not turn the span into a root.
        (
            &format!(
                r#""traceId":"{TRACE_HEX}","spanId":"10000000000000aa","parentSpanId":"not-hex-at-all!!""#
            ),
            RejectReason::InvalidParentSpanId,
        ),
        (
            &format!(r#""traceId":"{TRACE_HEX}","spanId":"10000000000000aa","parentSpanId":"x""#),
            RejectReason::InvalidParentSpanId,
        ),
    ];
    for (fields, reason) in cases {
        let decoded = decode_json(&json_span(fields));
        assert!(decoded.items.is_empty(), "{fields}");
        assert_eq!(decoded.rejected_by, vec![(reason, 1)], "{fields}");
    }
}

#[test]
fn json_missing_or_null_parent_is_a_root() {
    for parent in ["", r#","parentSpanId":"""#, r#","parentSpanId":null"#] {
        let decoded = decode_json(&json_span(&format!(
            r#""traceId":"{TRACE_HEX}","spanId":"10000000000000aa"{parent}"#
        )));
        assert_eq!(decoded.items.len(), 1, "{parent}");
        assert!(decoded.items[0].is_root());
    }
}

#[test]
fn json_int64_as_number_or_string() {
    let as_string = decode_json(&json_span(&format!(
        r#""traceId":"{TRACE_HEX}","spanId":"10000000000000aa",
           "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000000000001",
           "attributes":[{{"key":"n","value":{{"intValue":"-42"}}}}]"#
    )));
    let as_number = decode_json(&json_span(&format!(
        r#""traceId":"{TRACE_HEX}","spanId":"10000000000000aa",
           "startTimeUnixNano":1700000000000000000,"endTimeUnixNano":1700000000000000001,
           "attributes":[{{"key":"n","value":{{"intValue":-42}}}}]"#
    )));
    assert_eq!(as_string.items.len(), 1);
    assert_eq!(as_string.items, as_number.items);
    let span = &as_string.items[0];
    assert_eq!(span.start_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(span.end_unix_nano, 1_700_000_000_000_000_001);
    assert_eq!(span.attributes.get("n"), Some(&Value::Int(-42)));
}

#[test]
fn json_out_of_range_or_non_numeric_integers_fail_the_request() {
    for fields in [
        r#""startTimeUnixNano":"-1""#,
        r#""startTimeUnixNano":-1"#,
        r#""startTimeUnixNano":"18446744073709551616""#,
        r#""startTimeUnixNano":"soon""#,
        r#""startTimeUnixNano":1.5"#,
        r#""attributes":[{"key":"n","value":{"intValue":"9223372036854775808"}}]"#,
        r#""attributes":[{"key":"n","value":{"intValue":"x"}}]"#,
    ] {
        let err = parse_traces_json(json_span(fields).as_bytes()).unwrap_err();
        assert!(matches!(err, DecodeError::Json(_)), "{fields}");
        assert!(err.to_string().starts_with("invalid OTLP/JSON"), "{err}");
    }
}

#[test]
fn json_unknown_fields_are_ignored() {
    let decoded = decode_json(&json_span(&format!(
        r#""traceId":"{TRACE_HEX}","spanId":"10000000000000aa","futureField":{{"a":[1,2]}},
           "name":"x","attributes":[{{"key":"k","value":{{"stringValue":"v","newKind":1}}}}]"#
    )));
    assert_eq!(decoded.items.len(), 1);
    assert_eq!(decoded.items[0].attributes.get_str("k"), Some("v"));
    let decoded = decode_json(r#"{"resourceSpans":[],"extra":true}"#);
    assert!(decoded.items.is_empty());
}

#[test]
fn json_snake_case_keys_are_unknown_fields() {
    // `trace_id` is not an OTLP/JSON key: the id is missing and the span is rejected
    // with a count, the rest of the batch is kept.
    let body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[
            {{"trace_id":"{TRACE_HEX}","span_id":"10000000000000aa"}},
            {{"traceId":"{TRACE_HEX}","spanId":"10000000000000bb","start_time_unix_nano":"5"}}
        ]}}]}}]}}"#
    );
    let decoded = decode_json(&body);
    assert_eq!(decoded.items.len(), 1);
    assert_eq!(decoded.items[0].start_unix_nano, 0);
    assert_eq!(decoded.rejected_by, vec![(RejectReason::InvalidTraceId, 1)]);
}

#[test]
fn json_enums_by_integer_or_name() {
    let by_int = decode_json(&json_span(&format!(
        r#""traceId":"{TRACE_HEX}","spanId":"10000000000000aa","kind":3,"status":{{"code":2,"message":"m"}}"#
    )));
    let by_name = decode_json(&json_span(&format!(
        r#""traceId":"{TRACE_HEX}","spanId":"10000000000000aa","kind":"SPAN_KIND_CLIENT","status":{{"code":"STATUS_CODE_ERROR","message":"m"}}"#
    )));
    assert_eq!(by_int.items, by_name.items);
    assert_eq!(by_int.items[0].kind, SpanKind::Client);
    assert_eq!(by_int.items[0].status, SpanStatus::Error);
    // An unknown integer is unspecified; an unknown name is not OTLP.
    let unknown = decode_json(&json_span(&format!(
        r#""traceId":"{TRACE_HEX}","spanId":"10000000000000aa","kind":42"#
    )));
    assert_eq!(unknown.items[0].kind, SpanKind::Unspecified);
    assert!(parse_traces_json(json_span(r#""kind":"SERVER""#).as_bytes()).is_err());
}

#[test]
fn bad_json_and_deep_nesting_are_errors() {
    for body in ["", "not json", "{", r#"{"resourceSpans":{}}"#, "[1,2]"] {
        assert!(parse_traces_json(body.as_bytes()).is_err(), "{body:?}");
    }
    // 10 000 levels of nested array values: serde_json's recursion limit.
    let deep = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"k","value":{}{}}}]}}}}]}}"#,
        r#"{"arrayValue":{"values":["#.repeat(10_000),
        "]}}".repeat(10_000)
    );
    let err = parse_traces_json(deep.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("recursion limit"), "{err}");
    // In an unknown field it is skipped without recursion (serde_json skips iteratively).
    let deep = format!(
        r#"{{"unknown":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let skipped = parse_traces_json(deep.as_bytes()).unwrap();
    assert!(skipped.resource_spans.is_empty());
    let deep_value = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"k","value":{}"x"{}}}]}}]}}]}}]}}"#,
        r#"{"kvlistValue":{"values":[{"key":"k","value":"#.repeat(5_000),
        "}]}}".repeat(5_000)
    );
    assert!(parse_traces_json(deep_value.as_bytes()).is_err());
    assert!(parse_logs_json(b"{").is_err());
}

#[test]
fn odd_timestamps_and_reserved_flags_are_accepted() {
    let mut backwards = wire_span(1, 0);
    backwards.start_time_unix_nano = 2_000;
    backwards.end_time_unix_nano = 1_000;
    backwards.flags = 0xffff_ff00;
    let mut zero = wire_span(2, 1);
    zero.start_time_unix_nano = 0;
    zero.end_time_unix_nano = 0;
    let mut far = wire_span(3, 1);
    far.start_time_unix_nano = 4_102_444_800_000_000_000; // 2100-01-01
    far.end_time_unix_nano = u64::MAX;
    let decoded = decode_traces(traces(vec![backwards, zero, far]), &interner());
    assert_eq!(decoded.rejected, 0);
    assert_eq!(decoded.items.len(), 3);
    assert_eq!(decoded.items[0].duration_nanos(), 0);
    assert_eq!(decoded.items[1].start_unix_nano, 0);
    assert_eq!(decoded.items[2].end_unix_nano, u64::MAX);
}

#[test]
fn nested_values_become_text_arrays_and_hex() {
    let mut span = wire_span(1, 0);
    span.attributes = vec![
        kv(
            "gen_ai.input.messages",
            WireValue::KvlistValue(KeyValueList {
                values: vec![
                    kv_str("role", "user"),
                    kv_str("content", "say \"hi\"\n"),
                    kv("n", WireValue::IntValue(3)),
                    kv(
                        "parts",
                        WireValue::ArrayValue(ArrayValue {
                            values: vec![
                                AnyValue {
                                    value: Some(WireValue::BoolValue(true)),
                                },
                                AnyValue {
                                    value: Some(WireValue::DoubleValue(0.5)),
                                },
                            ],
                        }),
                    ),
                ],
            }),
        ),
        kv(
            "tags",
            WireValue::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(WireValue::StringValue("a".into())),
                    },
                    AnyValue {
                        value: Some(WireValue::IntValue(2)),
                    },
                ],
            }),
        ),
        kv("raw", WireValue::BytesValue(vec![0xde, 0xad, 0xbe, 0xef])),
        kv("ok", WireValue::BoolValue(true)),
        kv("score", WireValue::DoubleValue(0.25)),
        KeyValue {
            key: "empty".into(),
            value: None,
            key_strindex: 0,
        },
    ];
    let decoded = decode_traces(traces(vec![span]), &interner());
    let attrs = &decoded.items[0].attributes;
    let text = attrs.get_str("gen_ai.input.messages").unwrap();
    assert_eq!(
        text,
        r#"{"role":"user","content":"say \"hi\"\n","n":3,"parts":[true,0.5]}"#
    );
    let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(parsed["content"], "say \"hi\"\n");
    assert_eq!(
        attrs.get("tags"),
        Some(&Value::Array(
            vec![Value::Str("a".into()), Value::Int(2)].into()
        ))
    );
    assert_eq!(attrs.get_str("raw"), Some("deadbeef"));
    assert_eq!(attrs.get("ok"), Some(&Value::Bool(true)));
    assert_eq!(attrs.get("score"), Some(&Value::Double(0.25)));
    assert!(attrs.get("empty").is_none());
}

#[test]
fn giant_values_are_truncated_with_a_mark() {
    let giant = "é".repeat(MAX_VALUE_BYTES); // 2 bytes each: twice the cap
    let mut span = wire_span(1, 0);
    span.name = "n".repeat(MAX_VALUE_BYTES * 3);
    span.attributes = vec![
        kv_str("gen_ai.output.messages", &giant),
        kv(
            "nested",
            WireValue::KvlistValue(KeyValueList {
                values: (0..10).map(|i| kv_str(&format!("k{i}"), &giant)).collect(),
            }),
        ),
    ];
    let decoded = decode_traces(traces(vec![span]), &interner());
    let record = &decoded.items[0];
    let value = record.attributes.get_str("gen_ai.output.messages").unwrap();
    assert!(value.ends_with(TRUNCATION_MARK));
    assert!(value.len() <= MAX_VALUE_BYTES + TRUNCATION_MARK.len());
    assert!(value.starts_with("éé"));
    let nested = record.attributes.get_str("nested").unwrap();
    assert!(nested.ends_with(TRUNCATION_MARK));
    assert!(nested.len() <= MAX_VALUE_BYTES + TRUNCATION_MARK.len() + 8);
    assert!(record.name.len() <= MAX_VALUE_BYTES + TRUNCATION_MARK.len());
    assert_eq!(decoded.truncated_values, 3);
}

#[test]
fn repeated_keys_keep_the_last_value() {
    let mut small = wire_span(1, 0);
    small.attributes = vec![kv_str("k", "first"), kv_str("x", "1"), kv_str("k", "last")];
    let mut large = wire_span(2, 1);
    large.attributes = (0..100).map(|i| kv_str(&format!("a{i}"), "v")).collect();
    large.attributes.push(kv_str("a7", "last"));
    let decoded = decode_traces(traces(vec![small, large]), &interner());
    let small = &decoded.items[0].attributes;
    assert_eq!(small.len(), 2);
    assert_eq!(small.get_str("k"), Some("last"));
    let large = &decoded.items[1].attributes;
    assert_eq!(large.len(), 100);
    assert_eq!(large.get_str("a7"), Some("last"));
}

#[test]
fn attribute_count_is_capped() {
    let mut span = wire_span(1, 0);
    span.attributes = (0..MAX_ATTRIBUTES + 500)
        .map(|i| kv_str(&format!("a{i}"), "v"))
        .collect();
    let decoded = decode_traces(traces(vec![span]), &interner());
    assert_eq!(decoded.items[0].attributes.len(), MAX_ATTRIBUTES);
    assert_eq!(decoded.dropped_items, 500);
}

#[test]
fn links_and_events_are_decoded_and_bad_links_dropped() {
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    let mut span = wire_span(1, 0);
    span.events = vec![Event {
        time_unix_nano: 7,
        name: "exception".into(),
        attributes: vec![kv_str("exception.type", "ValueError")],
        dropped_attributes_count: 0,
    }];
    span.links = vec![
        Link {
            trace_id: TRACE.to_vec(),
            span_id: span_id(9),
            ..Link::default()
        },
        Link {
            trace_id: vec![0; 16],
            span_id: span_id(9),
            ..Link::default()
        },
    ];
    let decoded = decode_traces(traces(vec![span]), &interner());
    let record = &decoded.items[0];
    assert_eq!(record.events.len(), 1);
    assert_eq!(&*record.events[0].name, "exception");
    assert_eq!(
        record.events[0].attributes.get_str("exception.type"),
        Some("ValueError")
    );
    assert_eq!(record.links.len(), 1);
    assert_eq!(record.links[0].span_id.to_hex(), "1000000000000009");
    assert_eq!(decoded.dropped_items, 1);
}

fn log_record(trace: Vec<u8>, span: Vec<u8>) -> LogRecord {
    LogRecord {
        time_unix_nano: 42,
        severity_number: 9,
        trace_id: trace,
        span_id: span,
        ..LogRecord::default()
    }
}

#[test]
fn logs_keep_valid_ids_and_event_names() {
    let mut named = log_record(TRACE.to_vec(), span_id(3));
    named.event_name = "gen_ai.evaluation.result".into();
    named.attributes = vec![kv(
        "gen_ai.evaluation.score.value",
        WireValue::DoubleValue(0.2),
    )];
    let mut by_attribute = log_record(Vec::new(), Vec::new());
    by_attribute.attributes = vec![kv_str("event.name", "gen_ai.client.operation.exception")];
    by_attribute.body = Some(AnyValue {
        value: Some(WireValue::KvlistValue(KeyValueList {
            values: vec![kv_str("a", "b")],
        })),
    });
    by_attribute.time_unix_nano = 0;
    by_attribute.observed_time_unix_nano = 99;
    let zero_ids = log_record(vec![0; 16], vec![0; 8]);
    let bad_trace = log_record(vec![1; 5], span_id(3));
    let bad_span = log_record(TRACE.to_vec(), vec![1; 3]);

    let decoded = decode_logs(
        logs(vec![named, by_attribute, zero_ids, bad_trace, bad_span]),
        &interner(),
    );

    assert_eq!(decoded.items.len(), 3);
    let (a, b, c) = (&decoded.items[0], &decoded.items[1], &decoded.items[2]);
    assert_eq!(&*a.event_name, "gen_ai.evaluation.result");
    assert_eq!(a.trace_id, Some(TraceId::from_bytes(&TRACE).unwrap()));
    assert_eq!(a.span_id, Some(SpanId::from_bytes(&span_id(3)).unwrap()));
    assert_eq!(a.severity_number, 9);
    assert_eq!(a.time_unix_nano, 42);
    assert_eq!(
        a.attributes.get_f64("gen_ai.evaluation.score.value"),
        Some(0.2)
    );
    assert_eq!(a.resource.service_name.as_deref(), Some("agent-svc"));
    assert_eq!(&*b.event_name, "gen_ai.client.operation.exception");
    assert_eq!(b.trace_id, None);
    assert_eq!(b.span_id, None);
    assert_eq!(b.time_unix_nano, 99);
    assert_eq!(b.body, Some(Value::Str(r#"{"a":"b"}"#.into())));
    assert_eq!(c.trace_id, None);
    assert_eq!(&*c.event_name, "");
    assert_eq!(decoded.rejected, 2);
    assert_eq!(
        decoded.rejected_by,
        vec![
            (RejectReason::InvalidTraceId, 1),
            (RejectReason::InvalidSpanId, 1)
        ]
    );
}

#[test]
fn logs_json_decodes_with_the_same_rules() {
    let body = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},
            "scopeLogs":[{{"logRecords":[
              {{"timeUnixNano":"10","severityNumber":"SEVERITY_NUMBER_INFO","traceId":"{TRACE_HEX}",
                "spanId":"10000000000000AA","eventName":"gen_ai.evaluation.result",
                "attributes":[{{"key":"gen_ai.evaluation.name","value":{{"stringValue":"faithfulness"}}}}]}},
              {{"timeUnixNano":11,"severityNumber":17,"body":{{"stringValue":"plain log"}}}},
              {{"traceId":"qwECAwQFBgcICQoLDA0ODw==","spanId":"10000000000000AA"}},
              {{"traceId":"zz0102030405060708090a0b0c0d0e0f"}},
              {{"traceId":"{TRACE_HEX}","spanId":"not-hex-at-all!!"}}
            ]}}]}}]}}"#
    );
    let req = parse_logs_json(body.as_bytes()).unwrap();
    let decoded = decode_logs(req, &interner());
    assert_eq!(decoded.items.len(), 2);
    assert_eq!(decoded.items[0].severity_number, 9);
    assert_eq!(decoded.items[0].time_unix_nano, 10);
    assert_eq!(
        decoded.items[0].span_id.map(|s| s.to_hex()).as_deref(),
        Some("10000000000000aa")
    );
    assert_eq!(
        decoded.items[0]
            .attributes
            .get_str("gen_ai.evaluation.name"),
        Some("faithfulness")
    );
    assert_eq!(decoded.items[1].trace_id, None);
    assert_eq!(decoded.items[1].body, Some(Value::Str("plain log".into())));
    assert_eq!(
        decoded.items[1].resource.service_name.as_deref(),
        Some("svc")
    );
    // Ids that are not hex are malformed, not absent.
    assert_eq!(
        decoded.rejected_by,
        vec![
            (RejectReason::InvalidTraceId, 2),
            (RejectReason::InvalidSpanId, 1)
        ]
    );
}

#[test]
fn json_and_protobuf_give_the_same_records() {
    let mut span = wire_span(1, 0);
    span.kind = 3;
    span.attributes.push(kv("n", WireValue::IntValue(i64::MIN)));
    let req = traces(vec![span, wire_span(2, 1)]);
    // The crate's serializer writes OTLP/JSON (hex ids, int64 as strings).
    let json = serde_json::to_vec(&req).unwrap();
    let from_json = decode_traces(parse_traces_json(&json).unwrap(), &interner());
    let from_proto = decode_traces(
        parse_traces_proto(&req.encode_to_vec()).unwrap(),
        &interner(),
    );
    assert_eq!(from_json.items.len(), 2);
    assert_eq!(from_json.items, from_proto.items);
}
