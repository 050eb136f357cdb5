//! Security of the listeners with real clients and certificates generated here: the
//! Python and Rust OTel SDK exporters over TLS with a token, mutual TLS, a token and a
//! certificate rotated by rewriting their files, the API's Host check and headers, CORS
//! of OTLP/HTTP, gRPC keepalive enforcement and idle limit, Prometheus scraping over TLS
//! with a bearer token, the page asking for its token in headless Chromium, and alert
//! delivery over https with a CA file and headers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use faultline::config::{FileConfig, RawAuth, RawTls, RawTlsFiles};
use faultline::server::Running;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::Value;

use crate::support::{metrics_sum, python, repo_path, start_server_with};

pub const INGEST_TOKEN: &str = "ingest-token-0123456789";
const API_TOKEN: &str = "api-token-abcdef";

/// A certificate authority generated for one test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
            .expect("self-signed CA");
        let pem = issuer.pem();
        Ca { issuer, pem }
    }

    /// A leaf certificate (server: for localhost and 127.0.0.1; client: for `client`)
    /// signed by this CA: (certificate PEM, key PEM).
    fn leaf(&self, server: bool) -> (String, String) {
        let names: Vec<String> = if server {
            vec!["localhost".into(), "127.0.0.1".into()]
        } else {
            vec!["client.faultline.test".into()]
        };
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(
            DnType::CommonName,
            if server { "localhost" } else { "client" },
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &*self.issuer).expect("signed leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// The files of one test: a CA, the server's certificate, a client certificate of the
/// same CA and one of another CA, the token files.
pub struct Files {
    dir: tempfile::TempDir,
    pub ca: Ca,
}

impl Files {
    pub fn new() -> Files {
        let files = Files {
            dir: tempfile::tempdir().expect("tempdir"),
            ca: Ca::new("faultline test CA"),
        };
        files.write("ca.pem", &files.ca.pem);
        let (cert, key) = files.ca.leaf(true);
        files.write("server.pem", &cert);
        files.write("server.key", &key);
        let (cert, key) = files.ca.leaf(false);
        files.write("client.pem", &cert);
        files.write("client.key", &key);
        let other = Ca::new("another CA");
        let (cert, key) = other.leaf(false);
        files.write("other-client.pem", &cert);
        files.write("other-client.key", &key);
        files.write("ingest.tokens", &format!("# ingest\n{INGEST_TOKEN}\n"));
        files.write("api.tokens", &format!("{API_TOKEN}\n"));
        files
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn path_str(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read")
    }

    pub fn write(&self, name: &str, content: &str) {
        std::fs::write(self.path(name), content).expect("write");
    }

    /// TLS on every listener (mutual TLS on ingest when `mtls`), the ingest token, and
    /// the API token when `api_token`.
    fn config(&self, mtls: bool, api_token: bool) -> FileConfig {
        let ingest_ca = || {
            mtls.then(|| RawTlsFiles {
                client_ca_file: Some(self.path("ca.pem")),
                ..RawTlsFiles::default()
            })
        };
        FileConfig {
            tls: Some(RawTls {
                cert_file: Some(self.path("server.pem")),
                key_file: Some(self.path("server.key")),
                otlp_grpc: ingest_ca(),
                otlp_http: ingest_ca(),
                ..RawTls::default()
            }),
            auth: Some(RawAuth {
                ingest_token_file: Some(self.path("ingest.tokens")),
                api_token_file: api_token.then(|| self.path("api.tokens")),
                ..RawAuth::default()
            }),
            ..FileConfig::default()
        }
    }
}

/// Serves `app` over TLS with the certificate of `files` (HTTP/1.1 and HTTP/2) on a free
/// port of 127.0.0.1, until the test ends: a receiver for the outgoing clients.
pub async fn tls_server(files: &Files, app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = faultline::security::tls::acceptor(
        Some(&faultline::security::TlsFiles {
            cert_file: files.path("server.pem"),
            key_file: files.path("server.key"),
            client_ca_file: None,
        }),
        faultline::security::tls::ALPN_HTTP,
    )
    .expect("TLS config");
    tokio::spawn(faultline::net::serve_https(
        listener,
        app,
        faultline::net::ConnLimits::default(),
        faultline::net::ConnMetrics::default(),
        acceptor,
        std::future::pending(),
    ));
    addr
}

/// An HTTPS client trusting `ca_pem` (and presenting a client certificate if given);
/// no pooled connections, so each request makes a new TLS handshake.
fn https_client(ca_pem: &str, identity: Option<(String, String)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        builder = builder
            .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("id"));
    }
    builder.build().expect("client")
}

/// GET on the API over TLS with the API token: (status, JSON body).
async fn api_get(client: &reqwest::Client, running: &Running, path: &str) -> (u16, Value) {
    let resp = client
        .get(format!("https://{}{path}", running.api_address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("the API answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The value of one series of the `/metrics` text, 0 when absent.
fn series(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

async fn wait_trajectory_tls(client: &reqwest::Client, running: &Running, trace_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) =
            api_get(client, running, &format!("/api/v1/trajectories/{trace_id}")).await;
        if status == 200 {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trajectory {trace_id} never appeared (last status {status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs tests/python/secure_client.py: (trace id, "SUCCESS" or "FAILURE").
async fn python_export(
    files: &Files,
    protocol: &str,
    endpoint: &str,
    token: Option<&str>,
    client_cert: Option<(&str, &str)>,
) -> (String, String) {
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(repo_path("tests/python/secure_client.py"))
        .args(["--protocol", protocol, "--endpoint", endpoint])
        .args(["--ca-file", &files.path_str("ca.pem")])
        .args(["--service", &format!("py-secure-{protocol}")])
        // requests lets these variables win over a session's CA file (the exporter's
        // certificate_file): a machine that sets them would test its own bundle.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE");
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    if let Some((cert, key)) = client_cert {
        cmd.args(["--client-cert", &files.path_str(cert)])
            .args(["--client-key", &files.path_str(key)]);
    }
    let out = cmd.output().await.expect("python runs");
    assert!(
        out.status.success(),
        "secure_client.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    (
        v["trace_id"].as_str().unwrap_or_default().to_owned(),
        v["result"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_exporters_send_over_tls_with_a_token() {
    let files = Files::new();
    let running = start_server_with(files.config(false, true), "300ms").await;
    let client = https_client(&files.ca.pem, None);
    for (protocol, addr, listener) in [
        ("grpc", running.otlp_grpc_address, "otlp_grpc"),
        ("http", running.otlp_http_address, "otlp_http"),
    ] {
        let endpoint = format!("https://{addr}");
        let (trace_id, result) =
            python_export(&files, protocol, &endpoint, Some(INGEST_TOKEN), None).await;
        assert_eq!(result, "SUCCESS", "{protocol} with the token");
        let t = wait_trajectory_tls(&client, &running, &trace_id).await;
        assert_eq!(t["service"], format!("py-secure-{protocol}"));
        assert_eq!(t["root_cause"]["step"], "tool");

        let (_, result) = python_export(&files, protocol, &endpoint, Some("wrong"), None).await;
        assert_eq!(result, "FAILURE", "{protocol} with an unknown token");
        let (_, result) = python_export(&files, protocol, &endpoint, None, None).await;
        assert_eq!(result, "FAILURE", "{protocol} without a token");

        let metrics = client
            .get(format!("https://{}/metrics", running.api_address))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        for reason in ["unknown", "missing"] {
            let name = format!(
                "faultline_auth_refused_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
            );
            assert!(series(&metrics, &name) >= 1.0, "{name} counted:\n{metrics}");
        }
        assert!(
            !metrics.contains(INGEST_TOKEN),
            "the token is not in the metrics"
        );
    }
    // Plain text is not answered on a TLS listener.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", running.api_address))
        .send()
        .await;
    assert!(
        plain.map(|r| r.status().as_u16() != 200).unwrap_or(true),
        "plain HTTP was answered on the TLS API listener"
    );
    running.shutdown().await;
}

/// A small agent run through the Rust SDK: returns its trace id.
fn emit_run(provider: &opentelemetry_sdk::trace::SdkTracerProvider) -> String {
    use opentelemetry::trace::{Status, TraceContextExt, Tracer, TracerProvider as _};
    use opentelemetry::{Context, KeyValue};
    let tracer = provider.tracer("rust-secure");
    let root = tracer
        .span_builder("invoke_agent planner")
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "planner"),
        ])
        .start(&tracer);
    let cx = Context::new().with_span(root);
    let trace_id = cx.span().span_context().trace_id().to_string();
    let tool = tracer
        .span_builder("execute_tool lookup")
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", "lookup"),
        ])
        .start_with_context(&tracer, &cx);
    let tool_cx = cx.with_span(tool);
    tool_cx.span().set_status(Status::error("lookup failed"));
    tool_cx.span().end();
    cx.span().end();
    trace_id
}

async fn rust_export(exporter: opentelemetry_otlp::SpanExporter) -> String {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("rust-secure")
                .build(),
        )
        .build();
    tokio::task::spawn_blocking(move || {
        let id = emit_run(&provider);
        let _ = provider.shutdown();
        id
    })
    .await
    .expect("exporter thread")
}

/// The Rust SDK's HTTP exporter's client, over reqwest with rustls trusting the test CA
/// (the SDK's own reqwest client has no way to add a CA).
#[derive(Debug)]
struct TlsHttpClient(reqwest::Client);

#[tonic::async_trait]
impl opentelemetry_http::HttpClient for TlsHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut out = http::Response::new(response.bytes().await?);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_exporters_send_over_tls_with_a_token() {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};

    let files = Files::new();
    let running = start_server_with(files.config(false, true), "300ms").await;
    let client = https_client(&files.ca.pem, None);

    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(
        "authorization",
        format!("Bearer {INGEST_TOKEN}").parse().expect("metadata"),
    );
    let grpc = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("https://{}", running.otlp_grpc_address))
        .with_tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&files.ca.pem)),
        )
        .with_metadata(metadata)
        .build()
        .expect("gRPC exporter");
    let trace_id = rust_export(grpc).await;
    let t = wait_trajectory_tls(&client, &running, &trace_id).await;
    assert_eq!(t["service"], "rust-secure");

    let http_client = TlsHttpClient(https_client(&files.ca.pem, None));
    let http = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(http_client)
        .with_endpoint(format!("https://{}/v1/traces", running.otlp_http_address))
        .with_headers(HashMap::from([(
            "authorization".to_owned(),
            format!("Bearer {INGEST_TOKEN}"),
        )]))
        .build()
        .expect("HTTP exporter");
    let trace_id = rust_export(http).await;
    let t = wait_trajectory_tls(&client, &running, &trace_id).await;
    assert_eq!(t["service"], "rust-secure");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_the_ca_s_clients_and_refuses_others() {
    let files = Files::new();
    let running = start_server_with(files.config(true, false), "300ms").await;
    for (protocol, addr) in [
        ("grpc", running.otlp_grpc_address),
        ("http", running.otlp_http_address),
    ] {
        let endpoint = format!("https://{addr}");
        let (trace_id, result) = python_export(
            &files,
            protocol,
            &endpoint,
            Some(INGEST_TOKEN),
            Some(("client.pem", "client.key")),
        )
        .await;
        assert_eq!(
            result, "SUCCESS",
            "{protocol} with a client certificate of the CA"
        );
        let client = https_client(&files.ca.pem, None);
        wait_trajectory_tls(&client, &running, &trace_id).await;
        let (_, result) =
            python_export(&files, protocol, &endpoint, Some(INGEST_TOKEN), None).await;
        assert_eq!(result, "FAILURE", "{protocol} without a client certificate");
        let (_, result) = python_export(
            &files,
            protocol,
            &endpoint,
            Some(INGEST_TOKEN),
            Some(("other-client.pem", "other-client.key")),
        )
        .await;
        assert_eq!(
            result, "FAILURE",
            "{protocol} with another CA's certificate"
        );
    }
    // reqwest as a second client: the handshake itself is refused without a certificate.
    let url = format!("https://{}/v1/traces", running.otlp_http_address);
    let post = |client: reqwest::Client| {
        let url = url.clone();
        async move {
            client
                .post(url)
                .bearer_auth(INGEST_TOKEN)
                .header("content-type", "application/json")
                .body(r#"{"resourceSpans":[]}"#)
                .send()
                .await
        }
    };
    let with_cert = https_client(
        &files.ca.pem,
        Some((files.read("client.pem"), files.read("client.key"))),
    );
    assert_eq!(post(with_cert).await.expect("accepted").status(), 200);
    assert!(post(https_client(&files.ca.pem, None)).await.is_err());
    // The API has no client CA: it answers without a client certificate.
    let (status, _) = api_get(&https_client(&files.ca.pem, None), &running, "/healthz").await;
    assert_eq!(status, 200);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rotated_by_rewriting_its_file_takes_effect_without_restart() {
    let files = Files::new();
    let running = start_server_with(files.config(false, false), "300ms").await;
    let client = https_client(&files.ca.pem, None);
    let http = |token: &'static str| {
        let client = client.clone();
        let url = format!("https://{}/v1/traces", running.otlp_http_address);
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(r#"{"resourceSpans":[]}"#)
                .send()
                .await
                .expect("OTLP/HTTP answers")
                .status()
                .as_u16()
        }
    };
    let channel =
        tonic::transport::Channel::from_shared(format!("https://{}", running.otlp_grpc_address))
            .expect("uri")
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&files.ca.pem)),
            )
            .expect("tls")
            .connect()
            .await
            .expect("gRPC connects");
    let grpc = |token: &'static str| {
        let mut client = TraceServiceClient::new(channel.clone());
        async move {
            let mut request = tonic::Request::new(ExportTraceServiceRequest::default());
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("metadata"),
            );
            client
                .export(request)
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }
    };
    assert_eq!(http(INGEST_TOKEN).await, 200);
    assert_eq!(grpc(INGEST_TOKEN).await, Ok(()));
    assert_eq!(http("rotated-token").await, 401);
    assert_eq!(
        grpc("rotated-token").await,
        Err(tonic::Code::Unauthenticated)
    );

    files.write("ingest.tokens", "rotated-token\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while http("rotated-token").await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated token was never accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(grpc("rotated-token").await, Ok(()));
    assert_eq!(http(INGEST_TOKEN).await, 401);
    assert_eq!(grpc(INGEST_TOKEN).await, Err(tonic::Code::Unauthenticated));
    // The 401 says how to authenticate.
    let resp = client
        .post(format!("https://{}/v1/traces", running.otlp_http_address))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 401);
    assert!(resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer")));
    let body: Value = resp.json().await.expect("JSON status");
    assert_eq!(body["code"], 16, "UNAUTHENTICATED: {body}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_rotated_by_rewriting_its_files_is_served_without_restart() {
    let files = Files::new();
    let running = start_server_with(files.config(false, false), "300ms").await;
    let new_ca = Ca::new("the next CA");
    let (trusts_old, trusts_new) = (files.ca.pem.as_str(), new_ca.pem.as_str());
    // A new client per request: no TLS session to resume, so every handshake checks
    // the certificate served now.
    let healthz = |ca: &str| {
        let request = https_client(ca, None)
            .get(format!("https://{}/healthz", running.api_address))
            .send();
        async move { request.await.map(|r| r.status().as_u16()).ok() }
    };
    assert_eq!(healthz(trusts_old).await, Some(200));
    assert_eq!(healthz(trusts_new).await, None);

    let (cert, key) = new_ca.leaf(true);
    files.write("server.key", &key);
    files.write("server.pem", &cert);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while healthz(trusts_new).await != Some(200) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        healthz(trusts_old).await,
        None,
        "the old certificate is gone"
    );
    // The gRPC listener serves the new one too.
    let channel =
        tonic::transport::Channel::from_shared(format!("https://{}", running.otlp_grpc_address))
            .expect("uri")
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&new_ca.pem)),
            )
            .expect("tls")
            .connect()
            .await
            .expect("gRPC connects with the new certificate");
    let mut request = tonic::Request::new(ExportTraceServiceRequest::default());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {INGEST_TOKEN}").parse().expect("metadata"),
    );
    TraceServiceClient::new(channel)
        .export(request)
        .await
        .expect("export over the new certificate");
    running.shutdown().await;
}

/// A plain-text server with the API token, an allowed host name and CORS.
async fn plain_server(files: &Files, extra: impl FnOnce(&mut FileConfig)) -> Running {
    let mut file = FileConfig {
        auth: Some(RawAuth {
            api_token_file: Some(files.path("api.tokens")),
            api_allowed_hosts: Some(vec!["faultline.example.com".into()]),
            ..RawAuth::default()
        }),
        ..FileConfig::default()
    };
    extra(&mut file);
    start_server_with(file, "300ms").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_is_refused_and_the_api_needs_its_token() {
    let files = Files::new();
    let running = plain_server(&files, |_| {}).await;
    let client = reqwest::Client::new();
    let get = |path: &str, host: Option<&str>, token: bool| {
        let mut request = client.get(format!("http://{}{path}", running.api_address));
        if let Some(h) = host {
            request = request.header("host", h);
        }
        if token {
            request = request.bearer_auth(API_TOKEN);
        }
        request.send()
    };
    // A page on evil.example re-pointed at this address reads nothing, token or not.
    let resp = get("/api/v1/trajectories", Some("evil.example"), true)
        .await
        .expect("answers");
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("JSON");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("evil.example") && message.contains("--api-allowed-hosts"),
        "{message}"
    );
    for path in ["/", "/healthz", "/metrics"] {
        let resp = get(path, Some("evil.example:8700"), false)
            .await
            .expect("answers");
        assert_eq!(resp.status(), 403, "{path}");
    }
    // The listener's own names, and the configured one.
    let port = running.api_address.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "faultline.example.com".to_owned(),
    ] {
        let resp = get("/api/v1/trajectories", Some(&host), true)
            .await
            .expect("answers");
        assert_eq!(resp.status(), 200, "{host}");
        let headers = resp.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "no-store");
    }
    // The token: probes and the page's files are open; data and /metrics are not.
    for path in ["/healthz", "/readyz", "/", "/assets/auth.js"] {
        let resp = get(path, None, false).await.expect("answers");
        assert_eq!(resp.status(), 200, "{path} is open");
    }
    for path in ["/api/v1/trajectories", "/api/v1/breakdown", "/metrics"] {
        let resp = get(path, None, false).await.expect("answers");
        assert_eq!(resp.status(), 401, "{path} needs the token");
        assert_eq!(
            resp.headers()["www-authenticate"],
            r#"Bearer realm="faultline""#
        );
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let resp = get(path, None, true).await.expect("answers");
        assert_eq!(resp.status(), 200, "{path} with the token");
    }
    let resp = client
        .get(format!("http://{}/metrics", running.api_address))
        .bearer_auth("not-the-token")
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer realm="faultline", error="invalid_token""#
    );
    let metrics = get("/metrics", None, true)
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    assert!(
        series(
            &metrics,
            "faultline_auth_refused_total{listener=\"api\",reason=\"host\"}"
        ) >= 4.0,
        "{metrics}"
    );
    assert!(
        series(
            &metrics,
            "faultline_auth_refused_total{listener=\"api\",reason=\"unknown\"}"
        ) >= 1.0
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_cors_preflight_and_request() {
    let files = Files::new();
    let running = plain_server(&files, |f| {
        let auth = f.auth.get_or_insert_with(RawAuth::default);
        auth.ingest_token_file = Some(files.path("ingest.tokens"));
        auth.otlp_http_cors_origins = Some(vec!["https://*.example.com".into()]);
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/traces", running.otlp_http_address);
    let preflight = |origin: &str, headers: &str| {
        client
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .send()
    };
    let resp = preflight("https://app.example.com", "content-type,authorization")
        .await
        .expect("answers");
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-methods"], "POST");
    assert_eq!(
        h["access-control-allow-headers"],
        "content-type,authorization"
    );
    assert!(h.contains_key("access-control-max-age"));
    // Another origin, or a header not allowed: no CORS headers, so the browser refuses.
    for (origin, headers) in [
        ("https://evil.test", "content-type"),
        ("https://example.com", "content-type"),
        ("https://app.example.com", "x-custom"),
    ] {
        let resp = preflight(origin, headers).await.expect("answers");
        assert_eq!(resp.status(), 204);
        assert!(
            !resp.headers().contains_key("access-control-allow-origin"),
            "{origin} {headers}"
        );
    }
    // The request itself: allowed origin gets the header, with or without a token.
    let post = |token: Option<&str>| {
        let mut r = client
            .post(&url)
            .header("origin", "https://app.example.com")
            .header("content-type", "application/json")
            .body(r#"{"resourceSpans":[]}"#);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let resp = post(Some(INGEST_TOKEN)).await.expect("answers");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let resp = post(None).await.expect("answers");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_pings_without_requests_and_idle_connections_are_closed() {
    // Pings: three on a connection with no request in flight close it.
    let running = start_server_with(
        FileConfig {
            keepalive: faultline::config::RawKeepalive {
                grpc_max_connection_idle: Some("60s".into()),
                ..Default::default()
            },
            ..FileConfig::default()
        },
        "300ms",
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(running.otlp_grpc_address)
        .await
        .expect("connects");
    let (_send, mut connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let mut ping_pong = connection.ping_pong().expect("ping pong");
    let closed = tokio::spawn(connection);
    let mut answered = 0;
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_secs(5), ping_pong.ping(h2::Ping::opaque())).await
        {
            Ok(Ok(_pong)) => answered += 1,
            _ => break,
        }
    }
    assert!(answered <= 3, "{answered} pings answered before the close");
    // The server closed it (an error or a clean end, either way the connection is over).
    let _ended = tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the connection was closed")
        .expect("task");
    running.shutdown().await;

    // Idle: a connection with no request in flight for the limit is closed.
    let running = start_server_with(
        FileConfig {
            keepalive: faultline::config::RawKeepalive {
                grpc_max_connection_idle: Some("1s".into()),
                ..Default::default()
            },
            ..FileConfig::default()
        },
        "300ms",
    )
    .await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", running.otlp_grpc_address))
            .expect("uri")
            .connect()
            .await
            .expect("connects");
    TraceServiceClient::new(channel.clone())
        .export(ExportTraceServiceRequest::default())
        .await
        .expect("export");
    let open = "faultline_connections{listener=\"otlp_grpc\"}";
    assert_eq!(metrics_sum(&running, open).await, 1.0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if metrics_sum(&running, open).await == 0.0 {
            let timed_out = "faultline_connections_timed_out_total{listener=\"otlp_grpc\"}";
            assert!(metrics_sum(&running, timed_out).await >= 1.0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle gRPC connection was never closed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The client reconnects on its next call.
    TraceServiceClient::new(channel)
        .export(ExportTraceServiceRequest::default())
        .await
        .expect("export after the idle close");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_metrics_over_tls_with_a_bearer_token() {
    let _heavy = crate::support::heavy().await;
    let files = Files::new();
    let running = start_server_with(files.config(false, true), "300ms").await;
    files.write("wrong.tokens", "not-the-token\n");
    let target = running.api_address;
    let job = |name: &str, tokens: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    authorization:\n      credentials_file: {}\n    tls_config:\n      ca_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
            files.path_str(tokens),
            files.path_str("ca.pem"),
        )
    };
    let prom = crate::prometheus::start_prometheus_with(&format!(
        "{}{}",
        job("faultline", "api.tokens"),
        job("wrong_token", "wrong.tokens")
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let up = |job: &'static str| {
            let prom = &prom;
            async move {
                crate::prometheus::query(prom, &format!("up{{job=\"{job}\"}}"))
                    .await
                    .and_then(|r| r[0]["value"][1].as_str().map(str::to_owned))
            }
        };
        let build = crate::prometheus::query(&prom, "faultline_build_info{job=\"faultline\"}")
            .await
            .and_then(|r| r[0]["value"][1].as_str().map(str::to_owned));
        if up("faultline").await.as_deref() == Some("1")
            && up("wrong_token").await.as_deref() == Some("0")
            && build.as_deref() == Some("1")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never scraped over TLS with the token"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_asks_for_the_api_token_once_per_tab() {
    let _heavy = crate::support::heavy().await;
    let files = Files::new();
    let running = plain_server(&files, |_| {}).await;
    let labels = crate::api::feed(&running, 20, 7).await;
    let client = reqwest::Client::new();
    // Every run counted before the page reads the totals.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let total = loop {
        let b: Value = client
            .get(format!(
                "http://{}/api/v1/breakdown?window=24h",
                running.api_address
            ))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("API")
            .json()
            .await
            .expect("JSON");
        if b["totals"]["trajectories"].as_u64() == Some(labels.len() as u64) {
            break labels.len() as u64;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all counted: {b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        repo_path("tests/browser/node_modules/playwright-core").exists(),
        "playwright-core is required: run ./scripts/test, which installs it"
    );
    let out = std::process::Command::new("node")
        .arg(repo_path("tests/browser/check_token.mjs"))
        .arg(format!("http://{}", running.api_address))
        .arg(API_TOKEN)
        .output()
        .expect("node is required: run ./scripts/test");
    assert!(
        out.status.success(),
        "the browser check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(seen["error"], Value::Null, "{seen}");
    assert_eq!(seen["form_shown"], true, "{seen}");
    assert!(
        seen["refused_label"]
            .as_str()
            .is_some_and(|l| l.contains("refused")),
        "{seen}"
    );
    assert_eq!(seen["trajectories_after_token"], total, "{seen}");
    assert_eq!(seen["form_after_token"], false, "{seen}");
    assert_eq!(seen["stored"], API_TOKEN, "{seen}");
    assert_eq!(seen["form_after_reload"], false, "{seen}");
    let after_reload = seen["requests_after_reload"].as_array().expect("requests");
    assert!(!after_reload.is_empty(), "{seen}");
    for r in after_reload {
        assert_eq!(r["authorization"], format!("Bearer {API_TOKEN}"), "{seen}");
    }
    assert_eq!(seen["new_tab_asks"], true, "{seen}");
    assert_eq!(seen["page_errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["csp_violations"], serde_json::json!([]), "{seen}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_delivered_over_https_with_a_ca_file_and_headers() {
    use faultline::alerts::deliver::{self, DeliveryConfig, DeliveryMetrics, Notification};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    let files = Files::new();
    // A receiver over TLS (the test CA's certificate) recording path and headers.
    /// Path, `Authorization` and `X-Hook-Token` of one post.
    type Post = (String, Option<String>, Option<String>);
    let seen: Arc<Mutex<Vec<Post>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let record = record.clone();
        async move {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let entry = (
                request.uri().path().to_owned(),
                header("authorization"),
                header("x-hook-token"),
            );
            record.lock().expect("lock").push(entry);
            "ok"
        }
    });
    let port = tls_server(&files, app).await.port();

    let mut registry = prometheus_client::registry::Registry::default();
    let config = DeliveryConfig {
        alertmanager_url: Some(format!("https://127.0.0.1:{port}")),
        webhook_url: Some(format!("https://127.0.0.1:{port}/hook")),
        alertmanager_headers: faultline::security::SecretHeaders(vec![(
            "authorization".into(),
            "Bearer am-token".into(),
        )]),
        webhook_headers: faultline::security::SecretHeaders(vec![(
            "x-hook-token".into(),
            "hook-secret".into(),
        )]),
        ca_file: Some(files.path("ca.pem")),
        max_per_minute: 30,
        resend_interval: Duration::from_secs(60),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(deliver::run(
        config,
        rx,
        DeliveryMetrics::register(&mut registry),
        stop_rx,
    ));
    tx.send(vec![Notification {
        incident: 1,
        labels: BTreeMap::from([
            ("alertname".into(), "FaultlineStepRootCauseRate".into()),
            ("step".into(), "tool".into()),
        ]),
        annotations: BTreeMap::new(),
        starts_unix_nano: 1_700_000_000_000_000_000,
        resolved_unix_nano: None,
        generator_url: "https://localhost:8700/".into(),
    }])
    .await
    .expect("queued");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = seen.lock().expect("lock").clone();
        let alertmanager = got.iter().any(|(path, auth, _)| {
            path == "/api/v2/alerts" && auth.as_deref() == Some("Bearer am-token")
        });
        let webhook = got
            .iter()
            .any(|(path, _, hook)| path == "/hook" && hook.as_deref() == Some("hook-secret"));
        if alertmanager && webhook {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered over https with the headers: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// Runs the `faultline` binary with `args` and `env` (the token and CA variables of the
/// caller's environment removed), within a minute.
pub async fn faultline_bin(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
    command
        .args(args)
        .env("FAULTLINE_LOG", "warn")
        .env_remove("FAULTLINE_SERVER")
        .env_remove("FAULTLINE_API_TOKEN")
        .env_remove("FAULTLINE_API_TOKEN_FILE")
        .env_remove("FAULTLINE_CA_FILE")
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the binary ends within a minute")
        .expect("the binary runs")
}

pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_reach_a_server_with_tls_and_an_api_token() {
    let files = Files::new();
    let running = start_server_with(files.config(false, true), "300ms").await;
    let server = format!("https://{}", running.api_address);
    let (tokens, ca) = (files.path_str("api.tokens"), files.path_str("ca.pem"));

    // Options before the subcommand, after it, and from the environment.
    let ok = |out: &std::process::Output| {
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(out));
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON answer")
    };
    let before = [
        "--server",
        &server,
        "--api-token-file",
        &tokens,
        "--ca-file",
        &ca,
    ];
    let out = faultline_bin(&[&before[..], &["trajectories", "--json"]].concat(), &[]).await;
    assert!(ok(&out)["trajectories"].is_array());
    let out = faultline_bin(
        &[
            "top",
            "--once",
            "--json",
            "--window",
            "1h",
            "--server",
            &server,
            "--api-token-file",
            &tokens,
            "--ca-file",
            &ca,
        ],
        &[],
    )
    .await;
    assert!(ok(&out)["totals"].is_object());
    let out = faultline_bin(
        &["reasons", "--json"],
        &[
            ("FAULTLINE_SERVER", &server),
            ("FAULTLINE_API_TOKEN", API_TOKEN),
            ("FAULTLINE_CA_FILE", &ca),
        ],
    )
    .await;
    assert!(ok(&out)["reasons"].is_array());
    let out = faultline_bin(
        &["cohorts", "--json"],
        &[
            ("FAULTLINE_SERVER", &server),
            ("FAULTLINE_API_TOKEN_FILE", &tokens),
            ("FAULTLINE_CA_FILE", &ca),
        ],
    )
    .await;
    assert!(ok(&out)["cohorts"].is_array());
    // The table form, over TLS with the token.
    let out = faultline_bin(&[&before[..], &["top", "--once"]].concat(), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("trajectories 0"));

    // Each failure is exit 2 with one line saying what to do, never the token.
    let fails = |out: &std::process::Output, wants: &[&str]| {
        let text = stderr_of(out);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
        for want in wants {
            assert!(text.contains(want), "`{want}` missing: {text}");
        }
        assert!(!text.contains(API_TOKEN), "the token is shown: {text}");
        assert!(!text.contains("{\""), "a raw body: {text}");
    };
    fn with<'a>(server: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["trajectories", "--server", server];
        args.extend_from_slice(extra);
        args
    }
    // No token.
    let out = faultline_bin(&with(&server, &["--ca-file", &ca]), &[]).await;
    fails(
        &out,
        &[
            "needs an API token",
            "HTTP 401",
            "--api-token-file",
            "FAULTLINE_API_TOKEN",
        ],
    );
    // A token the server does not know.
    files.write("wrong.tokens", "not-the-api-token\n");
    let wrong = files.path_str("wrong.tokens");
    let out = faultline_bin(
        &with(&server, &["--ca-file", &ca, "--api-token-file", &wrong]),
        &[],
    )
    .await;
    fails(&out, &["refused the API token", &wrong, "HTTP 401"]);
    let out = faultline_bin(
        &with(&server, &["--ca-file", &ca]),
        &[("FAULTLINE_API_TOKEN", "not-the-api-token")],
    )
    .await;
    fails(&out, &["refused the API token from FAULTLINE_API_TOKEN"]);
    // No CA, then a CA that did not sign the server's certificate.
    let out = faultline_bin(&with(&server, &["--api-token-file", &tokens]), &[]).await;
    fails(&out, &["is not trusted", "--ca-file"]);
    files.write("other-ca.pem", &Ca::new("not the server's CA").pem);
    let other = files.path_str("other-ca.pem");
    let out = faultline_bin(
        &with(&server, &["--api-token-file", &tokens, "--ca-file", &other]),
        &[],
    )
    .await;
    fails(&out, &["is not trusted", "--ca-file"]);
    // Unusable files, named.
    files.write("empty", "\n");
    files.write("not-pem", "hello\n");
    let (empty, not_pem) = (files.path_str("empty"), files.path_str("not-pem"));
    let missing = files.path_str("missing");
    for (extra, wants) in [
        (
            vec!["--api-token-file", &empty, "--ca-file", &ca],
            vec!["--api-token-file", &empty, "holds no token"],
        ),
        (
            vec!["--api-token-file", &missing, "--ca-file", &ca],
            vec!["--api-token-file", &missing, "cannot read"],
        ),
        (
            vec!["--api-token-file", &tokens, "--ca-file", &not_pem],
            vec!["--ca-file", &not_pem, "no PEM certificate"],
        ),
        (
            vec!["--api-token-file", &tokens, "--ca-file", &missing],
            vec!["--ca-file", &missing, "cannot read"],
        ),
    ] {
        let out = faultline_bin(&with(&server, &extra), &[]).await;
        fails(&out, &wants);
    }
    let out = faultline_bin(
        &with(&server, &["--ca-file", &ca]),
        &[("FAULTLINE_API_TOKEN_FILE", &empty)],
    )
    .await;
    fails(
        &out,
        &["FAULTLINE_API_TOKEN_FILE", &empty, "holds no token"],
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_unusable_tls_and_token_files_before_binding() {
    let files = Files::new();
    files.write("empty", "");
    files.write("not-pem", "this is not PEM\n");
    let data = tempfile::tempdir().expect("data dir");
    // The API address is taken: a server that bound before reading its files would fail
    // on it instead (exit 1, "cannot listen").
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let api = taken.local_addr().expect("addr").to_string();
    let p = |name: &str| files.path_str(name);
    let (cert, key) = (p("server.pem"), p("server.key"));
    let (empty, not_pem, missing, dir) = (
        p("empty"),
        p("not-pem"),
        p("missing"),
        files.dir.path().display().to_string(),
    );
    let tls = |c: &str, k: &str| {
        vec![
            "--tls-cert-file".to_owned(),
            c.to_owned(),
            "--tls-key-file".to_owned(),
            k.to_owned(),
        ]
    };
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            tls(&missing, &key),
            vec!["--tls-cert-file", &missing, "cannot read"],
        ),
        (
            tls(&dir, &key),
            vec!["--tls-cert-file", &dir, "cannot read"],
        ),
        (
            tls(&empty, &key),
            vec!["--tls-cert-file", &empty, "no PEM certificate"],
        ),
        (
            tls(&not_pem, &key),
            vec!["--tls-cert-file", &not_pem, "no PEM certificate"],
        ),
        (
            tls(&cert, &missing),
            vec!["--tls-key-file", &missing, "cannot read"],
        ),
        (
            tls(&cert, &empty),
            vec!["--tls-key-file", &empty, "no usable PEM private key"],
        ),
        (
            tls(&cert, &not_pem),
            vec!["--tls-key-file", &not_pem, "no usable PEM private key"],
        ),
        (
            tls(&cert, &p("client.key")),
            vec!["--tls-key-file", "does not go with the certificate"],
        ),
        (
            [
                tls(&cert, &key),
                vec!["--tls-client-ca-file".into(), not_pem.clone()],
            ]
            .concat(),
            vec!["--tls-client-ca-file", &not_pem, "no PEM certificate"],
        ),
        (
            vec!["--api-token-file".into(), missing.clone()],
            vec!["--api-token-file", &missing, "cannot read"],
        ),
        (
            vec!["--ingest-token-file".into(), empty.clone()],
            vec!["--ingest-token-file", &empty, "holds no token"],
        ),
        (
            [
                tls(&cert, &key),
                vec!["--api-token-file".into(), dir.clone()],
            ]
            .concat(),
            vec!["--api-token-file", &dir, "cannot read"],
        ),
    ];
    for (flags, wants) in cases {
        let mut args: Vec<String> = [
            "serve",
            "--api-address",
            &api,
            "--otlp-grpc-address",
            "127.0.0.1:0",
            "--otlp-http-address",
            "127.0.0.1:0",
            "--data-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(data.path().display().to_string());
        args.extend(flags);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = faultline_bin(&argv, &[]).await;
        let text = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {text}");
        assert_eq!(text.trim().lines().count(), 1, "{argv:?}: one line: {text}");
        assert!(
            text.starts_with("faultline: invalid configuration: "),
            "{text}"
        );
        assert!(!text.contains("cannot listen"), "bound first: {text}");
        for want in wants {
            assert!(text.contains(want), "{argv:?}: `{want}` missing: {text}");
        }
    }
    // The same files from the config file are named by their keys too.
    files.write(
        "faultline.toml",
        &format!("[tls]\ncert_file = {:?}\nkey_file = {key:?}\n", empty),
    );
    let out = faultline_bin(
        &[
            "serve",
            "--config",
            &p("faultline.toml"),
            "--api-address",
            &api,
        ],
        &[],
    )
    .await;
    let text = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("[tls] cert_file") && text.contains(&empty),
        "{text}"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ca_rotated_by_rewriting_its_file_takes_effect_without_restart() {
    let files = Files::new();
    let running = start_server_with(files.config(true, false), "300ms").await;
    let next = Ca::new("the next client CA");
    let (next_cert, next_key) = next.leaf(false);
    let old_client = (files.read("client.pem"), files.read("client.key"));
    let new_client = (next_cert, next_key);
    // A new client per request: every request makes a new handshake.
    let post = |identity: &(String, String)| {
        let request = https_client(&files.ca.pem, Some(identity.clone()))
            .post(format!("https://{}/v1/traces", running.otlp_http_address))
            .bearer_auth(INGEST_TOKEN)
            .header("content-type", "application/json")
            .body(r#"{"resourceSpans":[]}"#)
            .send();
        async move { request.await.map(|r| r.status().as_u16()).ok() }
    };
    assert_eq!(post(&old_client).await, Some(200));
    assert_eq!(
        post(&new_client).await,
        None,
        "the next CA is not trusted yet"
    );

    files.write("ca.pem", &next.pem);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while post(&new_client).await != Some(200) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a client of the new CA was never accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        post(&old_client).await,
        None,
        "the old CA is no longer trusted"
    );
    // A CA file rewritten with something that does not load keeps the CAs in force.
    files.write("ca.pem", "not a certificate\n");
    let settle = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < settle {
        assert_eq!(
            post(&new_client).await,
            Some(200),
            "the CAs in force were dropped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The gRPC listener reloads it too.
    files.write("ca.pem", &files.ca.pem);
    let grpc = |identity: &(String, String)| {
        let endpoint = tonic::transport::Channel::from_shared(format!(
            "https://{}",
            running.otlp_grpc_address
        ))
        .expect("uri")
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&files.ca.pem))
                .identity(tonic::transport::Identity::from_pem(
                    &identity.0,
                    &identity.1,
                )),
        )
        .expect("tls");
        async move {
            let channel = endpoint.connect().await.ok()?;
            let mut request = tonic::Request::new(ExportTraceServiceRequest::default());
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {INGEST_TOKEN}").parse().expect("metadata"),
            );
            TraceServiceClient::new(channel).export(request).await.ok()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while grpc(&old_client).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gRPC never accepted the restored CA's client"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        grpc(&new_client).await.is_none(),
        "gRPC still trusts the removed CA"
    );
    running.shutdown().await;
}
