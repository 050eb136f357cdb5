//! The OTLP metrics push against in-process collectors: an OTLP/gRPC `MetricsService`
//! (tonic) and an OTLP/HTTP `/v1/metrics` endpoint (axum), fed by faultline serving
//! simulated traffic. What is pushed must equal what `/metrics` shows, read here with a
//! parser of its own; a collector that never answers must not slow ingest or shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline::config::FileConfig;
use faultline::push::RawPushConfig;
use faultline::server::Running;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
};
use prost::Message;

use crate::api::{feed, wait_counted};
use crate::support::{api_url, metrics_sum, start_server_with};

type LabelSet = BTreeMap<String, String>;

/// The `x-tenant` header of a push, and the push.
type Push = (Option<String>, ExportMetricsServiceRequest);

/// What a collector received, in arrival order.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Push>>>);

impl Received {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn get(&self, i: usize) -> Push {
        self.0.lock().unwrap()[i].clone()
    }

    async fn wait_len(&self, n: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the collector received {} pushes, not {n}, in {timeout:?}",
                self.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let tenant = request
            .metadata()
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.0.lock().unwrap().push((tenant, request.into_inner()));
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn grpc_collector() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Received::default();
    let service = MetricsServiceServer::new(received.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .expect("the test collector serves");
    });
    (addr, received)
}

async fn http_collector() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Received::default();
    let app = http_app(received.clone());
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("the test collector serves");
    });
    (addr, received)
}

/// The OTLP/HTTP `/v1/metrics` endpoint recording into `received`.
fn http_app(received: Received) -> axum::Router {
    let state = received;
    axum::Router::new().route(
        "/v1/metrics",
        axum::routing::post(
            move |headers: http::HeaderMap, body: axum::body::Bytes| async move {
                assert_eq!(
                    headers.get("content-type").and_then(|v| v.to_str().ok()),
                    Some("application/x-protobuf")
                );
                let request = ExportMetricsServiceRequest::decode(body).expect("OTLP protobuf");
                let tenant = headers
                    .get("x-tenant")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                state.0.lock().unwrap().push((tenant, request));
                (
                    [("content-type", "application/x-protobuf")],
                    ExportMetricsServiceResponse::default().encode_to_vec(),
                )
            },
        ),
    )
}

/// A collector over TLS (the certificate of `files`) that refuses a request without
/// `Authorization: Bearer push-token`: gRPC `MetricsService` or OTLP/HTTP.
async fn tls_collector(files: &crate::security::Files, grpc: bool) -> (SocketAddr, Received) {
    let received = Received::default();
    let app = if grpc {
        tonic::service::Routes::new(MetricsServiceServer::new(received.clone())).into_axum_router()
    } else {
        http_app(received.clone())
    };
    let app = app.layer(axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            let authorized = request
                .headers()
                .get("authorization")
                .is_some_and(|v| v.as_bytes() == b"Bearer push-token");
            if authorized {
                next.run(request).await
            } else {
                axum::response::IntoResponse::into_response(http::StatusCode::UNAUTHORIZED)
            }
        },
    ));
    let addr = crate::security::tls_server(files, app).await;
    (addr, received)
}

fn push_config(endpoint: String, interval: &str, protocol: &str) -> FileConfig {
    FileConfig {
        metrics_push: Some(RawPushConfig {
            endpoint: Some(endpoint),
            interval: Some(interval.into()),
            protocol: Some(protocol.into()),
            headers: Some(BTreeMap::from([("X-Tenant".into(), "team-a".into())]).into()),
            ..RawPushConfig::default()
        }),
        ..FileConfig::default()
    }
}

/// `/metrics` as name → label set → value, read independently of faultline's code.
type Exposition = BTreeMap<String, BTreeMap<LabelSet, f64>>;

async fn scrape(running: &Running) -> Exposition {
    let text = reqwest::get(api_url(running, "/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("text");
    let mut out = Exposition::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').expect("closing brace");
                (
                    &line[..open],
                    parse_labels(&line[open + 1..close]),
                    &line[close + 1..],
                )
            }
            None => {
                let space = line.find(' ').expect("a value");
                (&line[..space], LabelSet::new(), &line[space..])
            }
        };
        let value = rest.split_whitespace().next().expect("a value");
        let value: f64 = if value == "+Inf" {
            f64::INFINITY
        } else {
            value.parse().expect("a number")
        };
        let mut labels = labels;
        // Bucket bounds compared as numbers, written the way the test writes them.
        if let Some(le) = labels.get_mut("le").filter(|le| *le != "+Inf") {
            *le = format!("{:?}", le.parse::<f64>().expect("a bound"));
        }
        out.entry(name.to_owned())
            .or_default()
            .insert(labels, value);
    }
    out
}

fn parse_labels(s: &str) -> LabelSet {
    let mut labels = LabelSet::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("dangling escape"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

fn string(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => panic!("attribute {} is not a string: {other:?}", kv.key),
    }
}

fn label_set(attributes: &[KeyValue]) -> LabelSet {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), string(kv)))
        .collect()
}

fn number(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => panic!("a data point without a value"),
    }
}

fn metrics(request: &ExportMetricsServiceRequest) -> &[Metric] {
    assert_eq!(request.resource_metrics.len(), 1);
    let rm = &request.resource_metrics[0];
    let resource = label_set(&rm.resource.as_ref().expect("a resource").attributes);
    assert_eq!(
        resource.get("service.name").map(String::as_str),
        Some("faultline")
    );
    assert!(resource.contains_key("service.instance.id"));
    assert_eq!(rm.scope_metrics.len(), 1);
    &rm.scope_metrics[0].metrics
}

fn metric<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
    metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} was not pushed"))
}

/// The pushed points of a counter, as on `/metrics`; checks they are cumulative.
fn pushed_counter(metrics: &[Metric], name: &str) -> BTreeMap<LabelSet, f64> {
    let Some(metric::Data::Sum(sum)) = &metric(metrics, name).data else {
        panic!("{name} is not a sum");
    };
    assert!(sum.is_monotonic, "{name}");
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32,
        "{name}"
    );
    sum.data_points
        .iter()
        .map(|p| {
            assert!(
                p.start_time_unix_nano > 0 && p.start_time_unix_nano < p.time_unix_nano,
                "{name}: start {} time {}",
                p.start_time_unix_nano,
                p.time_unix_nano
            );
            (label_set(&p.attributes), number(p))
        })
        .collect()
}

fn pushed_gauge(metrics: &[Metric], name: &str) -> BTreeMap<LabelSet, f64> {
    let Some(metric::Data::Gauge(g)) = &metric(metrics, name).data else {
        panic!("{name} is not a gauge");
    };
    g.data_points
        .iter()
        .map(|p| (label_set(&p.attributes), number(p)))
        .collect()
}

/// The pushed histogram as the `_count`, `_sum` and `_bucket` series of `/metrics`.
fn pushed_histogram(metrics: &[Metric], name: &str) -> Exposition {
    let Some(metric::Data::Histogram(h)) = &metric(metrics, name).data else {
        panic!("{name} is not a histogram");
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let mut out = Exposition::new();
    for p in &h.data_points {
        let labels = label_set(&p.attributes);
        assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
        out.entry(format!("{name}_count"))
            .or_default()
            .insert(labels.clone(), p.count as f64);
        out.entry(format!("{name}_sum"))
            .or_default()
            .insert(labels.clone(), p.sum.expect("a sum"));
        let mut cumulative = 0;
        for (i, c) in p.bucket_counts.iter().enumerate() {
            cumulative += c;
            let le = match p.explicit_bounds.get(i) {
                Some(b) => format!("{b:?}"),
                None => "+Inf".to_owned(),
            };
            let mut with_le = labels.clone();
            with_le.insert("le".into(), le);
            out.entry(format!("{name}_bucket"))
                .or_default()
                .insert(with_le, cumulative as f64);
        }
    }
    out
}

/// Series that stop changing once every trajectory is counted.
const COUNTERS: [&str; 5] = [
    "faultline_trajectories_total",
    "faultline_root_causes_total",
    "faultline_step_runs_total",
    "faultline_step_failures_total",
    "faultline_spans_received_total",
];
const DURATION: &str = "faultline_step_duration_seconds";

fn stable_part(e: &Exposition) -> Exposition {
    e.iter()
        .filter(|(name, _)| COUNTERS.contains(&name.as_str()) || name.starts_with(DURATION))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// The names a scrape shows, histogram series under the histogram's name.
fn names(e: &Exposition) -> BTreeSet<String> {
    e.keys()
        .map(|n| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| n.strip_suffix(s).filter(|b| *b == DURATION))
                .unwrap_or(n)
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_push_carries_the_same_series_and_values_as_metrics() {
    let (addr, received) = grpc_collector().await;
    let running = start_server_with(
        push_config(format!("http://{addr}"), "200ms", "grpc"),
        "300ms",
    )
    .await;
    let labels = feed(&running, 80, 41).await;
    wait_counted(&running, labels.len()).await;

    // A push taken between two equal scrapes must equal them: wait for the second push
    // after the first scrape (the first may have been taken before it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (before, request, after) = loop {
        let before = scrape(&running).await;
        let n = received.len();
        received.wait_len(n + 2, Duration::from_secs(10)).await;
        let (tenant, request) = received.get(n + 1);
        assert_eq!(tenant.as_deref(), Some("team-a"), "headers are sent");
        let after = scrape(&running).await;
        if stable_part(&before) == stable_part(&after) {
            break (before, request, after);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the counts never settled"
        );
    };
    let pushed = metrics(&request);

    // Non-trivial data: every run counted, some failures blamed.
    let trajectories = pushed_counter(pushed, "faultline_trajectories_total");
    assert_eq!(trajectories.values().sum::<f64>(), labels.len() as f64);
    assert!(trajectories.keys().all(|l| l.contains_key("outcome")
        && l.contains_key("model")
        && l.contains_key("service")));
    let root_causes = pushed_counter(pushed, "faultline_root_causes_total");
    assert!(!root_causes.is_empty(), "no root causes pushed");

    for name in COUNTERS {
        assert_eq!(
            pushed_counter(pushed, name),
            before[name],
            "{name}: pushed vs /metrics"
        );
    }
    let histogram = pushed_histogram(pushed, DURATION);
    for suffix in ["_count", "_sum", "_bucket"] {
        let name = format!("{DURATION}{suffix}");
        assert_eq!(
            histogram[&name], before[&name],
            "{name}: pushed vs /metrics"
        );
    }
    assert_eq!(
        pushed_gauge(pushed, "faultline_build_info"),
        before["faultline_build_info"]
    );

    // The same names both ways: nothing left out, nothing added.
    let pushed_names: BTreeSet<String> = pushed.iter().map(|m| m.name.clone()).collect();
    assert_eq!(pushed_names, names(&after));

    // A healthy collector: no failure counted.
    assert_eq!(
        after["faultline_metrics_push_failures_total"][&LabelSet::new()],
        0.0
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_push_flushes_the_final_values_at_shutdown() {
    let (addr, received) = http_collector().await;
    // No periodic push within the test: the one push is the shutdown's.
    let running = start_server_with(
        push_config(format!("http://{addr}"), "1h", "http/protobuf"),
        "300ms",
    )
    .await;
    let labels = feed(&running, 30, 42).await;
    wait_counted(&running, labels.len()).await;
    let shown = scrape(&running).await;
    assert_eq!(received.len(), 0);
    running.shutdown().await;

    assert_eq!(received.len(), 1, "exactly one push, at shutdown");
    let (tenant, request) = received.get(0);
    assert_eq!(tenant.as_deref(), Some("team-a"));
    let pushed = metrics(&request);
    for name in [
        "faultline_trajectories_total",
        "faultline_root_causes_total",
    ] {
        assert_eq!(pushed_counter(pushed, name), shown[name], "{name}");
    }
    let total: f64 = pushed_counter(pushed, "faultline_trajectories_total")
        .values()
        .sum();
    assert_eq!(total, labels.len() as f64);
    let histogram = pushed_histogram(pushed, DURATION);
    assert_eq!(
        histogram[&format!("{DURATION}_count")],
        shown[&format!("{DURATION}_count")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_stalls_neither_ingest_nor_shutdown() {
    let _heavy = crate::support::heavy().await;
    // Accepts connections and never reads or answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let mut file = push_config(format!("http://{addr}"), "200ms", "grpc");
    file.metrics_push.as_mut().unwrap().timeout = Some("300ms".into());
    let running = start_server_with(file, "300ms").await;

    let started = tokio::time::Instant::now();
    let labels = feed(&running, 60, 43).await;
    let fed = started.elapsed();
    wait_counted(&running, labels.len()).await;
    // Ingest answered every request promptly while pushes were timing out.
    assert!(fed < Duration::from_secs(15), "feeding took {fed:?}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let failures =
            scrape(&running).await["faultline_metrics_push_failures_total"][&LabelSet::new()];
        if failures >= 2.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "failures not counted: {failures}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Shutdown waits for the final push only up to its timeout.
    let stopping = tokio::time::Instant::now();
    running.shutdown().await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_over_https_with_a_ca_file_and_a_token_header() {
    let files = crate::security::Files::new();
    for (protocol, grpc) in [("grpc", true), ("http/protobuf", false)] {
        let (addr, received) = tls_collector(&files, grpc).await;
        // The collector's certificate is for 127.0.0.1 and localhost, signed by the test
        // CA: trusted only through ca_file.
        let mut file = push_config(
            format!("https://127.0.0.1:{}", addr.port()),
            "200ms",
            protocol,
        );
        let push = file.metrics_push.as_mut().expect("push table");
        push.ca_file = Some(files.path("ca.pem"));
        let Some(faultline::push::Headers::Table(headers)) = push.headers.as_mut() else {
            panic!("the push's headers are a table");
        };
        headers.insert("Authorization".into(), "Bearer push-token".into());
        let running = start_server_with(file, "300ms").await;
        received.wait_len(1, Duration::from_secs(20)).await;
        let (tenant, request) = received.get(0);
        assert_eq!(tenant.as_deref(), Some("team-a"), "{protocol}");
        assert!(!metrics(&request).is_empty(), "{protocol}");
        running.shutdown().await;
    }
    // Without the CA file the collector's certificate is not trusted: nothing arrives.
    let (addr, received) = tls_collector(&files, false).await;
    let running = start_server_with(
        push_config(
            format!("https://127.0.0.1:{}", addr.port()),
            "200ms",
            "http/protobuf",
        ),
        "300ms",
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if metrics_sum(&running, "faultline_metrics_push_failures_total").await >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no push failure counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(received.len(), 0, "pushed to an untrusted certificate");
    running.shutdown().await;
}
