//! Pricing a request before decoding it: the price bounds what decoding allocates
//! (measured with a counting allocator), amplifying requests are refused before they
//! are decoded on both transports and both encodings, and a budget past its soft mark
//! refuses retryably.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

use super::grpc::export_raw;
use super::harness::*;
use super::http::{gzip, post, status_body, PROTO};
use super::support::*;
use crate::ingest::cost::{estimate_json, estimate_proto, Signal};
use crate::ingest::{decode_traces, parse_traces_json, parse_traces_proto, RejectReason};
use crate::memory::{Component, MemoryBudget};
use crate::model::Interner;

/// Counts the bytes allocated by the current thread, and their peak.
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = HELD.try_with(|held| {
        let now = held.get() + delta;
        held.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; only the sizes are
// counted, in thread-local cells that need no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The peak of bytes allocated (above the start) by this thread while `f` runs, with
/// what `f` returned still held.
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let start = HELD.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let r = f();
    let peak = PEAK.with(Cell::get) - start;
    (r, peak.max(0) as u64)
}

/// `n` spans with `attrs` attributes each (unique values), two events and a link.
fn rich_spans(n: usize, attrs: usize) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    (0..n)
        .map(|i| {
            let mut span = wire_span((i % 250) as u8 + 1, 0);
            span.span_id = (i as u64 + 1).to_be_bytes().to_vec();
            span.name = format!("step-{i}");
            span.attributes = (0..attrs)
                .map(|a| kv_str(&format!("key.{a}"), &format!("value {i} {a}")))
                .collect();
            span.events = (0..2)
                .map(|e| Event {
                    name: format!("event-{e}"),
                    attributes: vec![kv_str("e", "v")],
                    ..Default::default()
                })
                .collect();
            span.links = vec![Link {
                trace_id: vec![3; 16],
                span_id: vec![4; 8],
                ..Default::default()
            }];
            span
        })
        .collect()
}

/// A traces request of `n` empty spans, as protobuf, built without building the spans.
pub(super) fn empty_spans_proto(n: usize) -> Vec<u8> {
    fn len_field(field: u8, content: &[u8], out: &mut Vec<u8>) {
        out.push(field << 3 | 2);
        prost::encoding::encode_varint(content.len() as u64, out);
        out.extend_from_slice(content);
    }
    // An empty span: ScopeSpans field 2, length 0.
    let scope_spans = [0x12u8, 0x00].repeat(n);
    let mut resource_spans = Vec::new();
    len_field(2, &scope_spans, &mut resource_spans);
    drop(scope_spans);
    let mut request = Vec::new();
    len_field(1, &resource_spans, &mut request);
    request
}

/// The same as OTLP/JSON.
fn empty_spans_json(n: usize) -> Vec<u8> {
    let mut body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":["#.to_vec();
    body.extend_from_slice(&b"{},".repeat(n));
    body.pop();
    body.extend_from_slice(b"]}]}]}");
    body
}

fn check_bound(what: &str, estimate: u64, peak: u64) {
    eprintln!("{what}: estimate {estimate} bytes, measured peak {peak} bytes");
    assert!(
        estimate >= peak,
        "{what}: the estimate {estimate} is under the peak {peak}"
    );
    assert!(
        estimate <= peak * 4,
        "{what}: the estimate {estimate} is more than 4x the peak {peak}"
    );
}

#[test]
fn estimate_is_an_upper_bound_of_what_decoding_allocates() {
    let interner = Interner::default();
    // Interning the same text again costs nothing; warm it so the measurement is of the
    // first request a server sees, not the interner's growth.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("100k empty spans", empty_spans_proto(100_000)),
        (
            "2k spans x 20 attributes",
            traces(rich_spans(2_000, 20)).encode_to_vec(),
        ),
        (
            "5k spans x 2 attributes",
            traces(rich_spans(5_000, 2)).encode_to_vec(),
        ),
    ];
    for (what, body) in &cases {
        let estimate = estimate_proto(body, Signal::Traces);
        let (decoded, peak) = peak_of(|| {
            let req = parse_traces_proto(body).expect("decodes");
            decode_traces(req, &interner)
        });
        drop(decoded);
        check_bound(what, estimate.bytes, peak);
    }
    let json_cases: Vec<(&str, Vec<u8>)> = vec![
        ("100k empty JSON spans", empty_spans_json(100_000)),
        (
            "2k JSON spans x 20 attributes",
            json_traces(2_000, 20).into_bytes(),
        ),
    ];
    for (what, body) in &json_cases {
        let estimate = estimate_json(body, Signal::Traces);
        let (decoded, peak) = peak_of(|| {
            let req = parse_traces_json(body).expect("decodes");
            decode_traces(req, &interner)
        });
        drop(decoded);
        check_bound(what, estimate.bytes, peak);
    }
}

/// `n` OTLP/JSON spans with `attrs` string attributes each, an event and a link.
fn json_traces(n: usize, attrs: usize) -> String {
    let spans: Vec<String> = (0..n)
        .map(|i| {
            let attributes: Vec<String> = (0..attrs)
                .map(|a| {
                    format!(r#"{{"key":"key.{a}","value":{{"stringValue":"value {i} {a}"}}}}"#)
                })
                .collect();
            format!(
                r#"{{"traceId":"{:032x}","spanId":"{:016x}","name":"step-{i}","kind":1,
                "startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{}],
                "events":[{{"name":"e","attributes":[{{"key":"k","value":{{"intValue":"3"}}}}]}}],
                "links":[{{"traceId":"{:032x}","spanId":"{:016x}"}}]}}"#,
                i + 1,
                i + 1,
                attributes.join(","),
                7,
                9
            )
        })
        .collect();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

#[test]
fn counts_follow_the_schema_and_ignore_unknown_fields() {
    let body = traces(rich_spans(3, 4)).encode_to_vec();
    assert_eq!(estimate_proto(&body, Signal::Traces).items, 3);
    // A span hidden in an unknown field of the request costs nothing: prost skips it.
    let mut hidden = Vec::new();
    hidden.push(7 << 3 | 2);
    prost::encoding::encode_varint(body.len() as u64, &mut hidden);
    hidden.extend_from_slice(&body);
    assert_eq!(estimate_proto(&hidden, Signal::Traces).items, 0);
    let json = json_traces(3, 2);
    assert_eq!(estimate_json(json.as_bytes(), Signal::Traces).items, 3);
    // A key written with an escape is the same key to serde, and to the estimate.
    let escaped = br#"{"resourceSpans":[{"scopeSpans":[{"sp\u0061ns":[{},{}]}]}]}"#;
    assert_eq!(estimate_json(escaped, Signal::Traces).items, 2);
    let unknown = br#"{"resourceSpans":[{"scopeSpans":[{"other":[{},{}]}]}]}"#;
    assert_eq!(estimate_json(unknown, Signal::Traces).items, 0);
    // Braces inside strings are text, not objects.
    let text = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"{{{[[["}]}]}]}"#;
    assert_eq!(estimate_json(text, Signal::Traces).items, 1);
}

/// 64 MiB of empty spans (33.5 M), 64 KiB once gzipped: the shape of the reported abort.
fn bomb_of_spans() -> Vec<u8> {
    empty_spans_proto(32 << 20)
}

#[tokio::test]
async fn an_amplifying_http_request_is_refused_before_it_is_decoded() {
    let h = start_http(limits(65 << 20)).await;
    let body = bomb_of_spans();
    let zipped = {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&body).unwrap();
        enc.finish().unwrap()
    };
    assert!(zipped.len() < 100 << 10, "{} bytes gzipped", zipped.len());
    let started = Instant::now();
    let resp = post(&h, PROTO, Some("gzip"), zipped).await;
    assert_eq!(resp.status(), 413);
    let status = status_body(resp).await;
    assert_eq!(status.code, Code::ResourceExhausted as i32);
    assert!(
        status.message.contains("one request may hold") && status.message.contains("memory_bytes"),
        "{}",
        status.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(h.handed_span_names().is_empty());
    assert_eq!(h.rejected(RejectReason::TooLarge), 1);

    // The same as JSON: 21 M empty objects in 64 MiB.
    let json = empty_spans_json(21 << 20);
    let resp = post(&h, "application/json", Some("gzip"), gzip(&json)).await;
    assert_eq!(resp.status(), 413);
    assert!(h.handed_span_names().is_empty());
    assert_eq!(h.rejected(RejectReason::TooLarge), 2);
}

#[tokio::test]
async fn an_amplifying_grpc_request_is_refused_before_it_is_decoded() {
    let h = start_grpc(limits(65 << 20)).await;
    let err = export_raw(&h, bomb_of_spans(), true).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("one request may hold"), "{err:?}");
    // No RetryInfo: not retryable.
    assert!(err.get_details_retry_info().is_none());
    assert!(h.handed_span_names().is_empty());
    assert_eq!(h.rejected(RejectReason::TooLarge), 1);
}

#[tokio::test]
async fn past_the_soft_mark_requests_are_refused_retryably_until_memory_is_given_back() {
    let budget = MemoryBudget::new(64 << 20);
    let http = start_http_with(limits(1 << 20), budget.clone()).await;
    let grpc = start_grpc_with(limits(1 << 20), budget.clone()).await;
    let body = traces(rich_spans(50, 4)).encode_to_vec();
    // Something else holds nearly the soft mark (80 % of 64 MiB).
    let held = budget.charge(Component::Pipeline, 52 << 20);
    let resp = post(&http, PROTO, None, body.clone()).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let status = status_body(resp).await;
    assert_eq!(status.code, Code::Unavailable as i32);
    let err = export_raw(&grpc, body.clone(), false).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.get_details_retry_info().is_some());
    assert_eq!(budget.refused(), 2);
    assert_eq!(http.rejected(RejectReason::Overloaded), 50);
    assert!(http.handed_span_names().is_empty());
    // Given back: accepted, and the request's own charge is given back too.
    drop(held);
    let resp = post(&http, PROTO, None, body.clone()).await;
    assert_eq!(resp.status(), 200);
    export_raw(&grpc, body, false).await.expect("accepted");
    assert_eq!(http.handed_span_names().len(), 50);
    assert_eq!(grpc.handed_span_names().len(), 50);
    assert_eq!(budget.used(), 0);
}
