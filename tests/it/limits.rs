//! Hostile shapes at the bounds, end to end: a trace 100 000 spans deep sent over
//! OTLP/HTTP in several requests is accepted, assembled, capped at `max_trace_depth`
//! and flagged in the API and the store; clients that send request heads (or the HTTP/2
//! preface) a byte a second, or nothing, are disconnected after the header read timeout
//! while normal clients are served; 2 000 idle connections per listener do not stop a
//! normal request; the connection cap holds. HTTP/2 abuse on the gRPC and h2c
//! listeners (rapid reset, floods of empty DATA or CONTINUATION frames, a 1 MiB header,
//! streams past `max_concurrent_streams`) is refused with GOAWAY or `REFUSED_STREAM`
//! while other connections are served.

use std::time::Duration;

use faultline::config::{FileConfig, RawTopLevel};
use faultline::model::TraceId;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    api_url, ensure_open_files, heavy, start_server, start_server_with, wait_trajectory, Listeners,
    ServeChild,
};

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
        top: RawTopLevel {
            max_spans_per_trace: Some(200_000),
            ..RawTopLevel::default()
        },
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
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(anomalies[0]["kind"], "depth_truncated");
    assert_eq!(anomalies[0]["span_id"], cut.as_str());
    assert_eq!(anomalies[0]["max_depth"], 1000);

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
        top: RawTopLevel {
            header_read_timeout: Some(timeout.into()),
            max_connections: Some(cap),
            ..RawTopLevel::default()
        },
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
async fn normal_requests_are_served(running: &impl Listeners) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let resp = client
        .post(format!("http://{}/v1/traces", running.otlp_http_address()))
        .header("content-type", "application/x-protobuf")
        .body(ExportTraceServiceRequest::default().encode_to_vec())
        .send()
        .await
        .expect("OTLP/HTTP answers a normal client");
    assert_eq!(resp.status(), 200);
    let resp = client
        .get(format!("http://{}/healthz", running.api_address()))
        .send()
        .await
        .expect("the API answers a normal client");
    assert_eq!(resp.status(), 200);
}

/// The value of one series on `/metrics`, e.g. `faultline_connections{listener="api"}`.
async fn metric(running: &faultline::server::Running, series: &str) -> f64 {
    crate::support::metric_at(&format!("http://{}", running.api_address), series)
        .await
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
    // two file descriptors, 8 000 in all, plus what the rest of the suite holds.
    let _heavy = heavy().await;
    ensure_open_files(10_000);
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
    // Poll until the listener has met its cap (the connections past it were turned away).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(
        &running,
        "faultline_connections_at_cap_total{listener=\"otlp_http\"}",
    )
    .await
        < 1.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the OTLP/HTTP listener never reached its cap of {cap}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open = metric(&running, "faultline_connections{listener=\"otlp_http\"}").await;
    assert_eq!(open, cap as f64, "the listener holds the cap, no more");
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

// ---- HTTP/2 abuse --------------------------------------------------------------------

/// The two OTLP listeners that speak HTTP/2: gRPC, and OTLP/HTTP over h2c.
#[derive(Debug, Clone, Copy)]
enum H2Listener {
    Grpc,
    Http,
}

const H2_LISTENERS: [H2Listener; 2] = [H2Listener::Grpc, H2Listener::Http];

impl H2Listener {
    fn addr(self, running: &impl Listeners) -> std::net::SocketAddr {
        match self {
            H2Listener::Grpc => running.otlp_grpc_address(),
            H2Listener::Http => running.otlp_http_address(),
        }
    }

    fn path(self) -> &'static str {
        match self {
            H2Listener::Grpc => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            H2Listener::Http => "/v1/traces",
        }
    }

    /// The head of a trace export, its body to follow.
    fn request(self, addr: std::net::SocketAddr) -> http::Request<()> {
        let builder = http::Request::post(format!("http://{addr}{}", self.path()));
        let builder = match self {
            H2Listener::Grpc => builder
                .header("content-type", "application/grpc")
                .header("te", "trailers"),
            H2Listener::Http => builder.header("content-type", "application/x-protobuf"),
        };
        builder.body(()).expect("request")
    }

    /// The body of an empty export (a gRPC message is framed by 5 bytes).
    fn body(self) -> bytes::Bytes {
        match self {
            H2Listener::Grpc => bytes::Bytes::from_static(&[0; 5]),
            H2Listener::Http => bytes::Bytes::new(),
        }
    }
}

type H2Conn = tokio::task::JoinHandle<Result<(), h2::Error>>;

/// A raw HTTP/2 client connection to `addr`, its connection driven by a task whose
/// result says how the server ended it.
async fn h2_connect(addr: std::net::SocketAddr) -> (h2::client::SendRequest<bytes::Bytes>, H2Conn) {
    let tcp = TcpStream::connect(addr).await.expect("connects");
    let (send, conn) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    (send, tokio::spawn(conn))
}

/// One empty export on `send`, answered with success.
async fn h2_export(
    send: h2::client::SendRequest<bytes::Bytes>,
    listener: H2Listener,
    addr: std::net::SocketAddr,
) -> Result<(), String> {
    let mut send = send.ready().await.map_err(|e| e.to_string())?;
    let (response, mut stream) = send
        .send_request(listener.request(addr), false)
        .map_err(|e| e.to_string())?;
    stream
        .send_data(listener.body(), true)
        .map_err(|e| e.to_string())?;
    let response = response.await.map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()));
    }
    let trailers_only = response.headers().get("grpc-status").cloned();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    if let H2Listener::Grpc = listener {
        let trailers = body.trailers().await.map_err(|e| e.to_string())?;
        let status = trailers_only.or_else(|| trailers.and_then(|t| t.get("grpc-status").cloned()));
        if status.as_ref().map(|s| s.as_bytes()) != Some(b"0") {
            return Err(format!("grpc-status {status:?}"));
        }
    }
    Ok(())
}

/// Normal clients of every listener are answered within 2 s, each on a new connection:
/// OTLP/HTTP over HTTP/1.1, the API, and an export over HTTP/2 to gRPC and to h2c.
async fn all_listeners_serve_normal_clients(running: &impl Listeners) {
    normal_requests_are_served(running).await;
    for listener in H2_LISTENERS {
        let addr = listener.addr(running);
        let start = tokio::time::Instant::now();
        let served = tokio::time::timeout(Duration::from_secs(2), async {
            let (send, conn) = h2_connect(addr).await;
            let served = h2_export(send, listener, addr).await;
            conn.abort();
            served
        })
        .await;
        match served {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{listener:?}: a normal HTTP/2 export failed: {e}"),
            Err(_) => panic!(
                "{listener:?}: a normal HTTP/2 export took over {:?}",
                start.elapsed()
            ),
        }
    }
}

/// How the server ended a connection: the connection task's error, within `limit`.
async fn h2_ended(conn: H2Conn, limit: Duration) -> Result<(), h2::Error> {
    tokio::time::timeout(limit, conn)
        .await
        .expect("the server ended the connection in time")
        .expect("connection task")
}

/// Asserts that the server ended a connection for abuse: with GOAWAY
/// `ENHANCE_YOUR_CALM`, or by closing it while the client was still writing (which the
/// client may notice before it reads the GOAWAY).
fn ended_by_server(listener: H2Listener, ended: Result<(), h2::Error>) {
    let error = ended.expect_err("the connection ends in error");
    if error.is_io() {
        return;
    }
    assert!(
        error.is_go_away() && error.is_remote(),
        "{listener:?}: ended by {error:?}, not by the server"
    );
    assert_eq!(
        error.reason(),
        Some(h2::Reason::ENHANCE_YOUR_CALM),
        "{listener:?}"
    );
}

/// A server in a child process of its own, so that the growth of its resident memory is
/// its own and not that of tests running beside it in this process.
async fn child_server() -> ServeChild {
    let dir = crate::support::fresh_data_dir();
    let mut args = vec!["--data-dir".into(), dir.into_os_string()];
    args.extend(["--idle-timeout", "1s"].map(std::ffi::OsString::from));
    ServeChild::start(args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_streams_end_the_connection_with_goaway() {
    let _heavy = heavy().await;
    let running = child_server().await;
    let before = running.resident_bytes();
    for listener in H2_LISTENERS {
        let addr = listener.addr(&running);
        let (mut send, conn) = h2_connect(addr).await;
        // Open streams and cancel each at once, as fast as the client goes.
        let attempts = 10_000;
        let mut opened = 0;
        let stopped = loop {
            if opened == attempts {
                break None;
            }
            send = match tokio::time::timeout(Duration::from_secs(5), send.ready()).await {
                Ok(Ok(send)) => send,
                Ok(Err(e)) => break Some(e),
                Err(_) => panic!("{listener:?}: no stream slot after {opened} resets"),
            };
            match send.send_request(listener.request(addr), false) {
                Ok((_response, mut stream)) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    opened += 1;
                }
                Err(e) => break Some(e),
            }
        };
        let ended = h2_ended(conn, Duration::from_secs(10)).await;
        eprintln!("{listener:?}: {opened} streams opened and reset; client stopped by {stopped:?}; connection ended with {ended:?}");
        assert!(
            opened < attempts,
            "{listener:?}: all {attempts} streams were opened and reset on one connection"
        );
        ended_by_server(listener, ended);
        all_listeners_serve_normal_clients(&running).await;
    }
    let grown = running.resident_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_empty_data_frames_ends_the_connection_with_goaway() {
    let _heavy = heavy().await;
    let running = child_server().await;
    let before = running.resident_bytes();
    for listener in H2_LISTENERS {
        let addr = listener.addr(&running);
        let (send, conn) = h2_connect(addr).await;
        let mut send = send.ready().await.expect("ready");
        let (response, mut stream) = send
            .send_request(listener.request(addr), false)
            .expect("stream opens");
        // 100 000 empty DATA frames, then the body; the writes stop once the
        // connection is gone.
        let flood = 100_000;
        let mut sent = 0;
        while sent < flood && stream.send_data(bytes::Bytes::new(), false).is_ok() {
            sent += 1;
            if sent % 1_000 == 0 {
                // Let the connection task write them.
                tokio::task::yield_now().await;
            }
        }
        let _ = stream.send_data(listener.body(), true);
        // Normal clients are served while the flooded connection is open or closing.
        all_listeners_serve_normal_clients(&running).await;
        let answer = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("the flooded stream is answered or ended in time");
        let ended = h2_ended(conn, Duration::from_secs(10)).await;
        eprintln!(
            "{listener:?}: {sent} empty DATA frames queued; answer {:?}; connection ended with {ended:?}",
            answer.as_ref().map(|r| r.status())
        );
        assert!(
            answer.is_err(),
            "{listener:?}: the flooded stream was answered"
        );
        ended_by_server(listener, ended);
        all_listeners_serve_normal_clients(&running).await;
    }
    let grown = running.resident_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_capped_and_a_full_connection_does_not_stop_others() {
    let _heavy = heavy().await;
    let running = start_server("1s").await;
    for listener in H2_LISTENERS {
        let addr = listener.addr(&running);
        let (send, conn) = h2_connect(addr).await;
        // After one exchange the server's SETTINGS are in.
        h2_export(send.clone(), listener, addr)
            .await
            .expect("a first export");
        let max = send.current_max_send_streams();
        assert_eq!(
            max, 128,
            "{listener:?}: the server's max_concurrent_streams"
        );
        // Fill the connection with streams whose body never ends: the gRPC ones
        // announce a 100-byte message and send none of it.
        let mut slow = Vec::new();
        let mut send = send;
        for _ in 0..max {
            send = tokio::time::timeout(Duration::from_secs(5), send.ready())
                .await
                .expect("a stream slot")
                .expect("ready");
            let (response, mut stream) = send
                .send_request(listener.request(addr), false)
                .expect("stream opens");
            if let H2Listener::Grpc = listener {
                stream
                    .send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 100]), false)
                    .expect("partial body");
            }
            slow.push((response, stream));
        }
        // (The h2 client holds any further stream back itself; the raw test below
        // goes past the limit.)
        // Other connections are served.
        all_listeners_serve_normal_clients(&running).await;
        drop(slow);
        conn.abort();
    }
    running.shutdown().await;
}

/// One HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame length");
    let mut frame = len.to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// Sends a request head on a raw connection and never ends it: HEADERS without
/// END_HEADERS, then `count` empty CONTINUATION frames. Returns the error code of the
/// server's GOAWAY, or `None` if the server closed the connection without one; panics
/// if the connection is still open after `limit`.
async fn continuation_flood(
    addr: std::net::SocketAddr,
    path: &str,
    count: usize,
    limit: Duration,
) -> Option<u32> {
    const HEADERS: u8 = 0x1;
    const SETTINGS: u8 = 0x4;
    const GOAWAY: u8 = 0x7;
    const CONTINUATION: u8 = 0x9;
    let mut tcp = TcpStream::connect(addr).await.expect("connects");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(SETTINGS, 0, 0, &[]));
    // HPACK: :method POST, :scheme http (static table), :path as a literal.
    let mut block = vec![
        0x83,
        0x86,
        0x04,
        u8::try_from(path.len()).expect("short path"),
    ];
    block.extend(path.as_bytes());
    out.extend(h2_frame(HEADERS, 0, 1, &block));
    for _ in 0..count {
        out.extend(h2_frame(CONTINUATION, 0, 1, &[]));
    }
    // The server may close before reading all of it.
    let _ = tcp.write_all(&out).await;
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Err(_) => panic!("the connection is still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == GOAWAY && len >= 8 {
                return Some(u32::from_be_bytes(buf[13..17].try_into().expect("4 bytes")));
            }
            buf.drain(..9 + len);
        }
    }
}

/// Opens `count` streams on a raw connection, ignoring the server's
/// `max_concurrent_streams`: request heads whose bodies never come. Returns how many
/// the server refused (RST_STREAM `REFUSED_STREAM`) within `limit`.
async fn streams_past_the_limit(
    listener: H2Listener,
    addr: std::net::SocketAddr,
    count: u32,
    limit: Duration,
) -> u32 {
    const HEADERS: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    const RST_STREAM: u8 = 0x3;
    const SETTINGS: u8 = 0x4;
    const REFUSED_STREAM: u32 = 0x7;
    let (path, content_type) = match listener {
        H2Listener::Grpc => (listener.path(), "application/grpc"),
        H2Listener::Http => (listener.path(), "application/x-protobuf"),
    };
    // HPACK: :method POST, :scheme http, :path and content-type as literals.
    let mut block = vec![0x83, 0x86, 0x04, u8::try_from(path.len()).expect("short")];
    block.extend(path.as_bytes());
    block.extend([0x0f, 0x10, u8::try_from(content_type.len()).expect("short")]);
    block.extend(content_type.as_bytes());
    let mut tcp = TcpStream::connect(addr).await.expect("connects");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(SETTINGS, 0, 0, &[]));
    for k in 0..count {
        out.extend(h2_frame(HEADERS, END_HEADERS, 2 * k + 1, &block));
    }
    tcp.write_all(&out).await.expect("request heads sent");
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut refused = 0;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return refused,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == RST_STREAM
                && len == 4
                && u32::from_be_bytes(buf[9..13].try_into().expect("4 bytes")) == REFUSED_STREAM
            {
                refused += 1;
            }
            buf.drain(..9 + len);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_max_concurrent_streams_are_refused() {
    let _heavy = heavy().await;
    let running = start_server("1s").await;
    for listener in H2_LISTENERS {
        let addr = listener.addr(&running);
        let refused = streams_past_the_limit(listener, addr, 200, Duration::from_secs(2)).await;
        assert_eq!(refused, 200 - 128, "{listener:?}: streams refused past 128");
        all_listeners_serve_normal_clients(&running).await;
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_ends_the_connection_with_goaway() {
    let _heavy = heavy().await;
    let running = start_server("1s").await;
    for listener in H2_LISTENERS {
        let code = continuation_flood(
            listener.addr(&running),
            listener.path(),
            10_000,
            Duration::from_secs(5),
        )
        .await;
        eprintln!("{listener:?}: CONTINUATION flood ended with GOAWAY code {code:?}");
        assert_eq!(
            code,
            Some(u32::from(h2::Reason::ENHANCE_YOUR_CALM)),
            "{listener:?}"
        );
        all_listeners_serve_normal_clients(&running).await;
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mebibyte_header_is_refused() {
    let _heavy = heavy().await;
    let running = start_server("1s").await;
    let big = http::HeaderValue::from_str(&"a".repeat(1 << 20)).expect("header value");
    for listener in H2_LISTENERS {
        let addr = listener.addr(&running);
        let (send, conn) = h2_connect(addr).await;
        let mut send = send.ready().await.expect("ready");
        let mut request = listener.request(addr);
        request.headers_mut().insert("x-big", big.clone());
        let answer = match send.send_request(request, false) {
            Ok((response, mut stream)) => {
                let _ = stream.send_data(listener.body(), true);
                tokio::time::timeout(Duration::from_secs(5), response)
                    .await
                    .expect("answered or ended in time")
                    .map(|r| r.status())
            }
            Err(e) => Err(e),
        };
        let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
        eprintln!("{listener:?}: 1 MiB header answered with {answer:?}; connection {ended:?}");
        match answer {
            Ok(status) => assert_eq!(status, 431, "{listener:?}"),
            // The server may close the connection while the client still writes.
            Err(e) => assert!(
                e.is_io() || (e.is_remote() && (e.is_go_away() || e.is_reset())),
                "{listener:?}: {e:?} does not come from the server"
            ),
        }
        all_listeners_serve_normal_clients(&running).await;
    }
    running.shutdown().await;
}
