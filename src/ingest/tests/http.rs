//! OTLP/HTTP server tests through reqwest (and raw TCP for chunked bodies).

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::*;
use super::support::*;
use crate::ingest::RejectReason;

pub(super) const PROTO: &str = "application/x-protobuf";

fn url(h: &Harness, path: &str) -> String {
    format!("http://{}{path}", h.addr)
}

pub(super) async fn post(
    h: &Harness,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url(h, "/v1/traces"))
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        req = req.header("content-encoding", encoding);
    }
    req.send().await.unwrap()
}

pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A google.rpc.Status from an error body.
pub(super) async fn status_body(resp: reqwest::Response) -> tonic_types::Status {
    assert_eq!(resp.headers()["content-type"], PROTO);
    tonic_types::Status::decode(resp.bytes().await.unwrap()).unwrap()
}

fn with_invalid_spans() -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
    let mut zero_trace = wire_span(2, 1);
    zero_trace.trace_id = vec![0; 16];
    let mut long_trace = wire_span(3, 1);
    long_trace.trace_id = vec![7; 17];
    let mut bad_parent = wire_span(4, 1);
    bad_parent.parent_span_id = vec![1, 2, 3];
    vec![
        wire_span(1, 0),
        zero_trace,
        long_trace,
        bad_parent,
        wire_span(5, 1),
    ]
}

#[tokio::test]
async fn protobuf_export_is_accepted_and_handed_off() {
    let h = start_http(limits(1 << 20)).await;
    let body = traces(vec![wire_span(1, 0), wire_span(2, 1)]).encode_to_vec();
    let resp = post(&h, PROTO, None, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], PROTO);
    let parsed = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(parsed.partial_success, None);
    assert_eq!(h.handed_span_names(), ["span-1", "span-2"]);
    assert_eq!(h.received("http"), 2);
}

#[tokio::test]
async fn json_export_with_charset_and_gzip() {
    let h = start_http(limits(1 << 20)).await;
    let body = serde_json::to_vec(&traces(vec![wire_span(1, 0)])).unwrap();
    let resp = post(
        &h,
        "application/json; charset=utf-8",
        Some("gzip"),
        gzip(&body),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await.unwrap(), "{}");
    assert_eq!(h.handed_span_names(), ["span-1"]);
}

#[tokio::test]
async fn invalid_spans_give_partial_success_and_the_rest_is_kept() {
    let h = start_http(limits(1 << 20)).await;
    let body = traces(with_invalid_spans()).encode_to_vec();
    let resp = post(&h, PROTO, None, body).await;
    assert_eq!(resp.status(), 200);
    let parsed = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    let partial = parsed.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 3);
    assert!(
        partial
            .error_message
            .contains("invalid trace_id: trace_id is all zero"),
        "{}",
        partial.error_message
    );
    assert_eq!(h.handed_span_names(), ["span-1", "span-5"]);
    assert_eq!(h.received("http"), 2);
    assert_eq!(h.rejected(RejectReason::InvalidTraceId), 2);
    assert_eq!(h.rejected(RejectReason::InvalidParentSpanId), 1);

    // The same in JSON: the response is JSON too.
    let body = serde_json::to_vec(&traces(with_invalid_spans())).unwrap();
    let resp = post(&h, "application/json", None, body).await;
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["partialSuccess"]["rejectedSpans"], 3);
    assert!(json["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("trace_id"));
    assert_eq!(h.handed_span_names().len(), 4);
}

#[tokio::test]
async fn empty_requests_succeed_without_partial_success() {
    let h = start_http(limits(1 << 20)).await;
    let resp = post(&h, PROTO, None, Vec::new()).await;
    assert_eq!(resp.status(), 200);
    let parsed = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(parsed.partial_success, None);
    for body in ["{}", r#"{"resourceSpans":[{"scopeSpans":[{"spans":[]}]}]}"#] {
        let resp = post(&h, "application/json", None, body.into()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "{}");
    }
    assert!(h.handed_span_names().is_empty());
    assert_eq!(h.received("http"), 0);
}

#[tokio::test]
async fn undecodable_bodies_are_400_with_a_status_in_the_request_encoding() {
    let h = start_http(limits(1 << 20)).await;
    // Garbage protobuf.
    let resp = post(&h, PROTO, None, vec![0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]).await;
    assert_eq!(resp.status(), 400);
    let status = status_body(resp).await;
    assert_eq!(status.code, 3);
    assert!(
        status.message.contains("invalid OTLP protobuf"),
        "{}",
        status.message
    );
    assert_eq!(
        status.details[0].type_url,
        "type.googleapis.com/google.rpc.BadRequest"
    );
    // Truncated protobuf.
    let body = traces(vec![wire_span(1, 0)]).encode_to_vec();
    let resp = post(&h, PROTO, None, body[..body.len() - 3].to_vec()).await;
    assert_eq!(resp.status(), 400);
    // Bad JSON: the Status is JSON.
    let resp = post(
        &h,
        "application/json",
        None,
        b"{\"resourceSpans\":[".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["code"], 3);
    assert!(json["message"]
        .as_str()
        .unwrap()
        .contains("invalid OTLP/JSON"));
    // JSON nested too deep.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let resp = post(&h, "application/json", None, deep.into_bytes()).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(h.rejected(RejectReason::Undecodable), 4);
    assert!(h.handed_span_names().is_empty());
}

#[tokio::test]
async fn wrong_media_type_method_path_and_encoding() {
    let h = start_http(limits(1 << 20)).await;
    let body = traces(vec![wire_span(1, 0)]).encode_to_vec();

    let resp = post(&h, "text/plain", None, body.clone()).await;
    assert_eq!(resp.status(), 415);
    assert_eq!(status_body(resp).await.code, 3);

    let resp = reqwest::get(url(&h, "/v1/traces")).await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    assert_eq!(status_body(resp).await.code, 12);

    let resp = reqwest::Client::new()
        .post(url(&h, "/v1/metrics-nope"))
        .header("content-type", PROTO)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(status_body(resp).await.code, 5);

    let resp = post(&h, PROTO, Some("br"), body.clone()).await;
    assert_eq!(resp.status(), 400);
    assert!(status_body(resp).await.message.contains("br"));

    // A gzip header on a plain body.
    let resp = post(&h, PROTO, Some("gzip"), body.clone()).await;
    assert_eq!(resp.status(), 400);
    assert!(status_body(resp).await.message.contains("gzip"));

    // A bad gzip CRC.
    let mut zipped = gzip(&body);
    let crc_at = zipped.len() - 8;
    zipped[crc_at] ^= 0xff;
    let resp = post(&h, PROTO, Some("gzip"), zipped).await;
    assert_eq!(resp.status(), 400);

    assert!(h.handed_span_names().is_empty());
    assert_eq!(h.rejected(RejectReason::UnsupportedMediaType), 1);
    assert_eq!(h.rejected(RejectReason::MethodNotAllowed), 1);
    assert_eq!(h.rejected(RejectReason::UnsupportedEncoding), 1);
    assert_eq!(h.rejected(RejectReason::Undecodable), 2);
}

#[tokio::test]
async fn the_same_batch_resent_is_accepted_each_time() {
    let h = start_http(limits(1 << 20)).await;
    let body = traces(vec![wire_span(1, 0), wire_span(2, 1)]).encode_to_vec();
    for _ in 0..3 {
        let resp = post(&h, PROTO, None, body.clone()).await;
        assert_eq!(resp.status(), 200);
    }
    // Dedup is the assembler's job; ingest hands every copy on.
    assert_eq!(h.handed_span_names().len(), 6);
    assert_eq!(h.received("http"), 6);
}

#[tokio::test]
async fn odd_timestamps_and_reserved_flags_are_accepted() {
    let h = start_http(limits(1 << 20)).await;
    let mut backwards = wire_span(1, 0);
    backwards.start_time_unix_nano = 10;
    backwards.end_time_unix_nano = 5;
    backwards.flags = 0xffff_ff00;
    let mut zero = wire_span(2, 1);
    zero.start_time_unix_nano = 0;
    zero.end_time_unix_nano = 0;
    let resp = post(
        &h,
        PROTO,
        None,
        traces(vec![backwards, zero]).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.handed_span_names(), ["span-1", "span-2"]);
}

/// A trace request whose protobuf encoding is exactly `size` bytes.
pub fn request_of_size(size: usize) -> Vec<u8> {
    let mut pad = size.saturating_sub(200);
    loop {
        let mut span = wire_span(1, 0);
        span.attributes.push(kv_str("pad", &"x".repeat(pad)));
        let body = traces(vec![span]).encode_to_vec();
        match body.len().cmp(&size) {
            std::cmp::Ordering::Equal => return body,
            std::cmp::Ordering::Less => pad += size - body.len(),
            std::cmp::Ordering::Greater => pad -= (body.len() - size).min(pad),
        }
    }
}

#[tokio::test]
async fn body_at_the_limit_passes_and_one_byte_over_is_413() {
    let limit = 64 * 1024;
    let h = start_http(limits(limit)).await;
    let resp = post(&h, PROTO, None, request_of_size(limit)).await;
    assert_eq!(resp.status(), 200);
    let resp = post(&h, PROTO, None, request_of_size(limit + 1)).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(status_body(resp).await.code, 8);
    // Over the limit only after decompression.
    let resp = post(&h, PROTO, Some("gzip"), gzip(&request_of_size(limit + 1))).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(h.handed_span_names(), ["span-1"]);
    assert_eq!(h.rejected(RejectReason::TooLarge), 2);
}

/// 1 GiB of zeros as 256 gzip members of 4 MiB each (about 1 MB on the wire).
fn gzip_bomb() -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(&vec![0u8; 4 << 20]).unwrap();
    enc.finish().unwrap().repeat(256)
}

#[tokio::test]
async fn gzip_bomb_is_413() {
    let h = start_http(limits(4 << 20)).await;
    let bomb = gzip_bomb();
    assert!(bomb.len() < 4 << 20);
    let resp = post(&h, PROTO, Some("gzip"), bomb).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(h.rejected(RejectReason::TooLarge), 1);
    assert!(h.handed_span_names().is_empty());
}

/// Sends a chunked HTTP/1.1 request (no Content-Length) over raw TCP and returns the
/// status line.
async fn post_chunked(h: &Harness, encoding: &str, body: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PROTO}\r\n\
         Content-Encoding: {encoding}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(16 * 1024) {
        let framed = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk.to_vec(),
            b"\r\n".to_vec(),
        ]
        .concat();
        // The server may answer and close before the whole body is sent.
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn chunked_bodies_without_content_length_are_limited() {
    let limit = 256 * 1024;
    let h = start_http(limits(limit)).await;
    let plain = request_of_size(limit + 1);
    assert_eq!(
        post_chunked(&h, "identity", &plain).await,
        "HTTP/1.1 413 Payload Too Large"
    );
    let bomb = gzip_bomb();
    assert_eq!(
        post_chunked(&h, "gzip", &bomb[..200 * 1024]).await,
        "HTTP/1.1 413 Payload Too Large"
    );
    let ok = request_of_size(limit);
    assert_eq!(post_chunked(&h, "identity", &ok).await, "HTTP/1.1 200 OK");
    assert_eq!(h.handed_span_names(), ["span-1"]);
}

#[tokio::test]
async fn overloaded_pipeline_is_503_with_retry_after() {
    let h = start_http(limits(1 << 20)).await;
    h.set_overloaded(true);
    let body = traces(vec![wire_span(1, 0), wire_span(2, 1)]).encode_to_vec();
    let resp = post(&h, PROTO, None, body.clone()).await;
    assert_eq!(resp.status(), 503);
    // 1.5 s rounds up to whole seconds.
    assert_eq!(resp.headers()["retry-after"], "2");
    let status = status_body(resp).await;
    assert_eq!(status.code, 14);
    let retry = tonic_types::pb::RetryInfo::decode(&status.details[0].value[..]).unwrap();
    assert_eq!(
        retry.retry_delay.map(|d| (d.seconds, d.nanos)),
        Some((1, 500_000_000))
    );
    assert!(h.handed_span_names().is_empty());
    assert_eq!(h.rejected(RejectReason::Overloaded), 2);
    assert_eq!(h.received("http"), 0);

    // Logs too.
    let logs_body = logs(vec![Default::default()]).encode_to_vec();
    let resp = reqwest::Client::new()
        .post(url(&h, "/v1/logs"))
        .header("content-type", PROTO)
        .body(logs_body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);

    // Back to normal once there is room.
    h.set_overloaded(false);
    let resp = post(&h, PROTO, None, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.handed_span_names(), ["span-1", "span-2"]);
}

#[tokio::test]
async fn logs_endpoint_accepts_protobuf_and_json() {
    let h = start_http(limits(1 << 20)).await;
    let mut record = opentelemetry_proto::tonic::logs::v1::LogRecord {
        trace_id: TRACE.to_vec(),
        span_id: span_id(1),
        event_name: "gen_ai.evaluation.result".into(),
        ..Default::default()
    };
    let mut bad = record.clone();
    bad.trace_id = vec![1; 3];
    let body = logs(vec![record.clone(), bad]).encode_to_vec();
    let resp = reqwest::Client::new()
        .post(url(&h, "/v1/logs"))
        .header("content-type", PROTO)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let parsed =
        opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(
            resp.bytes().await.unwrap(),
        )
        .unwrap();
    assert_eq!(parsed.partial_success.unwrap().rejected_log_records, 1);

    record.event_name.clear();
    let body = serde_json::to_vec(&logs(vec![record])).unwrap();
    let resp = reqwest::Client::new()
        .post(url(&h, "/v1/logs"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "{}");
    assert_eq!(h.handed_logs(), 2);
    assert_eq!(h.received("http"), 2);
    assert_eq!(h.rejected(RejectReason::InvalidTraceId), 1);
}
