//! Hostile shapes at the bounds, end to end: a trace 100 000 spans deep sent over
//! OTLP/HTTP in several requests is accepted, assembled, capped at `max_trace_depth`
//! and flagged in the API and the store; clients that send request heads (or the HTTP/2
//! preface) a byte a second, or nothing, are disconnected after the header read timeout
//! while normal clients are served; 2 000 idle connections per listener do not stop a
//! normal request; the connection cap holds.

use std::time::Duration;

use faultline::config::FileConfig;
use faultline::model::TraceId;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{api_url, heavy, start_server_with, wait_trajectory};

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

    // And /metrics counts it once the trace is final (after the 1 s grace).
    let line = "faultline_trajectory_anomalies_total{kind=\"depth_truncated\"} 1";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::get(api_url(&running, "/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if text.lines().any(|l| l == line) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/metrics lacks {line}:\n{}",
            text.lines()
                .filter(|l| l.contains("anomalies"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.shutdown().await;
}

// ---- slow and idle clients ----------------------------------------------------------

/// A server whose connections time out after `timeout` without a request, with at most
/// `cap` connections per listener.
async fn server_with_conn_limits(timeout: &str, cap: usize) -> faultline::server::Running {
    let file = FileConfig {
        header_read_timeout: Some(timeout.into()),
        max_connections: Some(cap),
        ..FileConfig::default()
    };
    start_server_with(file, "1s").await
}

/// Writes `bytes` one at a time, `gap` apart, until done or the peer is gone.
fn trickle(
    mut w: tokio::net::tcp::OwnedWriteHalf,
    bytes: &'static [u8],
    gap: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for b in bytes {
            if w.write_all(std::slice::from_ref(b)).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
        // Then hold the connection open.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    })
}

/// How long after `start` the server closed the connection (read end of stream or an
/// error); panics after `limit`.
async fn closed_after(
    mut r: tokio::net::tcp::OwnedReadHalf,
    start: tokio::time::Instant,
    limit: Duration,
) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(start + limit, r.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            // A 408 response may come first.
            Ok(Ok(_)) => continue,
        }
    }
}

/// An empty OTLP/HTTP export and a health check, each answered within 2 s.
async fn normal_requests_are_served(running: &faultline::server::Running) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let resp = client
        .post(format!("http://{}/v1/traces", running.otlp_http_address))
        .header("content-type", "application/x-protobuf")
        .body(ExportTraceServiceRequest::default().encode_to_vec())
        .send()
        .await
        .expect("OTLP/HTTP answers a normal client");
    assert_eq!(resp.status(), 200);
    let resp = client
        .get(format!("http://{}/healthz", running.api_address))
        .send()
        .await
        .expect("the API answers a normal client");
    assert_eq!(resp.status(), 200);
}

/// The value of one series on `/metrics`, e.g. `faultline_connections{listener="api"}`.
async fn metric(running: &faultline::server::Running, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", running.api_address))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{series} not on /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_disconnected_while_normal_ones_are_served() {
    let _heavy = heavy().await;
    let timeout = Duration::from_secs(2);
    let running = server_with_conn_limits("2s", 100).await;
    // Closed within the timeout, plus the 1 s close grace, plus slack for a busy machine.
    let limit = timeout + Duration::from_secs(3);
    let start = tokio::time::Instant::now();
    let mut clients = Vec::new();
    // Request heads at one byte per second, on both HTTP listeners.
    let head: &'static [u8] =
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n";
    for addr in [running.otlp_http_address, running.api_address] {
        let (r, w) = TcpStream::connect(addr)
            .await
            .expect("connects")
            .into_split();
        clients.push((
            format!("slow head to {addr}"),
            r,
            Some(trickle(w, head, Duration::from_secs(1))),
        ));
    }
    // The HTTP/2 preface at one byte per second, on the gRPC listener.
    let (r, w) = TcpStream::connect(running.otlp_grpc_address)
        .await
        .expect("connects")
        .into_split();
    clients.push((
        "slow HTTP/2 preface to gRPC".into(),
        r,
        Some(trickle(
            w,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            Duration::from_secs(1),
        )),
    ));
    // Silent clients on every listener.
    for addr in [
        running.otlp_http_address,
        running.api_address,
        running.otlp_grpc_address,
    ] {
        let (r, w) = TcpStream::connect(addr)
            .await
            .expect("connects")
            .into_split();
        std::mem::forget(w);
        clients.push((format!("silent client of {addr}"), r, None));
    }

    // Meanwhile normal clients are served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    normal_requests_are_served(&running).await;

    for (what, r, writer) in clients {
        let after = closed_after(r, start, limit).await;
        assert!(
            after >= timeout - Duration::from_millis(100),
            "{what}: closed after {after:?}"
        );
        if let Some(w) = writer {
            w.abort();
        }
    }
    normal_requests_are_served(&running).await;
    for listener in ["otlp_http", "api", "otlp_grpc"] {
        let series = format!("faultline_connections_timed_out_total{{listener=\"{listener}\"}}");
        assert!(metric(&running, &series).await >= 1.0, "{series}");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_do_not_stop_a_normal_request() {
    // 2 000 idle connections per HTTP listener: with the server in this process each is
    // two file descriptors, 8 000 in all, within the limit of usual test machines.
    let _heavy = heavy().await;
    let running = server_with_conn_limits("60s", 4096).await;
    let mut idle = Vec::new();
    for addr in [running.otlp_http_address, running.api_address] {
        for _ in 0..2000 {
            idle.push(TcpStream::connect(addr).await.expect("connects"));
        }
    }
    // All accepted (the API's own scrape is one more).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let http = metric(&running, "faultline_connections{listener=\"otlp_http\"}").await;
        let api = metric(&running, "faultline_connections{listener=\"api\"}").await;
        if http >= 2000.0 && api >= 2000.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {http} and {api} idle connections accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start = tokio::time::Instant::now();
    normal_requests_are_served(&running).await;
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(idle);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_and_idle_connections_make_room() {
    let _heavy = heavy().await;
    let cap = 50usize;
    let running = server_with_conn_limits("2s", cap).await;
    // Twice the cap of silent clients on the OTLP/HTTP listener.
    let mut idle = Vec::new();
    for _ in 0..2 * cap {
        idle.push(
            TcpStream::connect(running.otlp_http_address)
                .await
                .expect("connects"),
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = metric(&running, "faultline_connections{listener=\"otlp_http\"}").await;
    assert_eq!(open, cap as f64, "the listener holds the cap, no more");
    assert!(
        metric(
            &running,
            "faultline_connections_at_cap_total{listener=\"otlp_http\"}"
        )
        .await
            >= 1.0
    );
    // The API has a cap of its own.
    normal_requests_api_only(&running).await;
    // The silent ones time out in turn, two rounds of 2 s: a normal client gets in.
    let start = tokio::time::Instant::now();
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
        .post(format!("http://{}/v1/traces", running.otlp_http_address))
        .header("content-type", "application/x-protobuf")
        .body(ExportTraceServiceRequest::default().encode_to_vec())
        .send()
        .await
        .expect("served once idle connections time out");
    assert_eq!(resp.status(), 200);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert!(metric(&running, "faultline_connections{listener=\"otlp_http\"}").await <= cap as f64);
    drop(idle);
    running.shutdown().await;
}

async fn normal_requests_api_only(running: &faultline::server::Running) {
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client")
        .get(format!("http://{}/healthz", running.api_address))
        .send()
        .await
        .expect("the API answers while OTLP/HTTP is at its cap");
    assert_eq!(resp.status(), 200);
}
