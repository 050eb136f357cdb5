//! Hostile shapes at the bounds, end to end: a trace 100 000 spans deep sent over
//! OTLP/HTTP in several requests is accepted, assembled, capped at `max_trace_depth`
//! and flagged in the API and the store.

use std::time::Duration;

use faultline::config::FileConfig;
use faultline::model::TraceId;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::support::{heavy, start_server_with, wait_trajectory};

/// One OTLP request holding spans `ids` of a chain of `len` in trace `trace`: span k's
/// parent is k - 1 (span 1 is the root), each span inside its parent in time, the root
/// starting at `base`.
fn chain_request(
    trace: [u8; 16],
    base: u64,
    ids: std::ops::RangeInclusive<u64>,
    len: u64,
) -> Vec<u8> {
    let spans = ids
        .map(|k| Span {
            trace_id: trace.to_vec(),
            span_id: k.to_be_bytes().to_vec(),
            parent_span_id: if k == 1 {
                Vec::new()
            } else {
                (k - 1).to_be_bytes().to_vec()
            },
            name: if k == 1 { "agent".into() } else { "hop".into() },
            kind: 1,
            start_time_unix_nano: base + k * 1_000,
            end_time_unix_nano: base + (2 * len - k) * 1_000,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_100k_deep_is_assembled_and_flagged_at_the_depth_cap() {
    let _heavy = heavy().await;
    let len = 100_000u64;
    let file = FileConfig {
        max_spans_per_trace: Some(200_000),
        ..FileConfig::default()
    };
    let running = start_server_with(file, "1s").await;
    let trace = [0xd7; 16];
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/traces", running.otlp_http_address);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        - 60_000_000_000;
    // Ten requests, deepest spans first, the root last: children before parents.
    let chunk = len / 10;
    for c in (0..10).rev() {
        let body = chain_request(trace, base, c * chunk + 1..=(c + 1) * chunk, len);
        let resp = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .expect("OTLP/HTTP answers");
        assert_eq!(resp.status(), 200, "request {c}");
    }

    let id = TraceId::from_bytes(&trace).expect("16 bytes");
    let hex = id.to_hex();
    let t = wait_trajectory(&running, &hex, len as usize, Duration::from_secs(120)).await;
    assert_eq!(t["complete"], true, "{}", t["incomplete_reason"]);
    assert_eq!(t["steps"].as_array().map(Vec::len), Some(len as usize));
    // The first span past the cap of 1 000 is span 1 002 (at depth 1 001).
    let cut = format!("{:016x}", 1002u64);
    let anomalies = t["anomalies"].as_array().expect("anomalies");
    assert_eq!(
        anomalies,
        &vec![serde_json::Value::String(format!(
            "DepthTruncated {{ span_id: SpanId({cut}), max_depth: 1000 }}"
        ))],
    );

    // The stored document (written by the store's thread) says the same.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let store = running.store.clone();
        let got = tokio::task::spawn_blocking(move || store.get(id))
            .await
            .expect("store lookup runs")
            .expect("store answers");
        if let Some(s) = got {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trajectory not stored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let doc: serde_json::Value = serde_json::from_slice(&stored.document).expect("JSON document");
    assert_eq!(doc["anomalies"], t["anomalies"]);
    running.shutdown().await;
}
