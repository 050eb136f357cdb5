//! The configurations of `collector-config/`, run through a real OpenTelemetry Collector
//! built from its released Go modules (`tests/collector/`, built by `./scripts/test`),
//! between the OpenTelemetry Python SDK (traces and evaluator log events) and faultline.
//!
//! Each file is used as shipped: faultline's address, CA and token file come through the
//! environment variables the files read (`FAULTLINE_ENDPOINT`, `FAULTLINE_REPLICA_<n>`,
//! `FAULTLINE_CA_FILE`, `FAULTLINE_TOKEN_FILE`), so the collector speaks TLS with the
//! ingest token to a faultline that requires both; only the collector's own receiver
//! addresses (and tee.yaml's stand-in backend) are rewritten to the test's ports, and
//! every address the test rewrites must be in the file, so an edited config cannot
//! silently test something else.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use faultline::config::{FileConfig, RawAuth, RawTls, RawTlsFiles};
use faultline::server::Running;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::security::{Files, INGEST_TOKEN};
use crate::support::{get_json, heavy, python, repo_path, start_server, start_server_with};

/// Spans in one run of `tests/python/collector_client.py`.
const SPANS_PER_RUN: usize = 7;

/// The collector binary; missing is a failure, never a skip.
fn otelcol() -> PathBuf {
    let p = std::env::var_os("FAULTLINE_TEST_OTELCOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path("target/otelcol-faultline-test"));
    assert!(
        p.exists(),
        "the test OpenTelemetry Collector is required: run ./scripts/test, which builds \
         tests/collector (looked for {})",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running collector, killed on drop.
struct Collector {
    _child: tokio::process::Child,
    grpc: SocketAddr,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Starts the collector on `collector-config/<file>` with its receivers on free loopback
/// ports and each `(from, to)` address rewritten. A port taken between choosing and
/// binding makes the collector exit; it is then started again on other ports.
async fn start_collector(
    file: &str,
    rewrites: &[(&str, String)],
    env: &[(String, String)],
) -> Collector {
    let shipped = std::fs::read_to_string(repo_path(&format!("collector-config/{file}")))
        .expect("collector config readable");
    for attempt in 0..5 {
        let (grpc_port, http_port) = (free_port(), free_port());
        let mut config = shipped.clone();
        let receivers = [
            ("0.0.0.0:4317", format!("127.0.0.1:{grpc_port}")),
            ("0.0.0.0:4318", format!("127.0.0.1:{http_port}")),
        ];
        for (from, to) in receivers
            .iter()
            .map(|(f, t)| (*f, t))
            .chain(rewrites.iter().map(|(f, t)| (*f, t)))
        {
            assert!(
                config.contains(from),
                "collector-config/{file} no longer names {from}; update this test with it"
            );
            config = config.replace(from, to);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(file);
        std::fs::write(&path, config).expect("config written");
        // The collector's own telemetry would listen on :8888; the test needs none.
        let quiet = dir.path().join("quiet.yaml");
        std::fs::write(
            &quiet,
            "service:\n  telemetry:\n    metrics:\n      level: none\n",
        )
        .expect("overlay written");
        let mut child = tokio::process::Command::new(otelcol())
            .envs(env.iter().cloned())
            .arg(format!("--config={}", path.display()))
            .arg(format!("--config={}", quiet.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the collector starts");
        let grpc: SocketAddr = format!("127.0.0.1:{grpc_port}").parse().expect("address");
        let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().expect("address");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("collector status") {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err).await;
                }
                if err.contains("address already in use") && attempt < 4 {
                    break;
                }
                panic!("the collector exited ({status}) on collector-config/{file}:\n{err}");
            }
            if TcpStream::connect(grpc).is_ok() && TcpStream::connect(http).is_ok() {
                return Collector {
                    _child: child,
                    grpc,
                    http,
                    _dir: dir,
                };
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the collector did not listen on {grpc} and {http} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    unreachable!("five attempts either returned or panicked")
}

/// A faultline whose OTLP/gRPC listener needs TLS and the ingest token (its API stays
/// plain, as when only ingest is exposed).
async fn secured(files: &Files) -> Running {
    let file = FileConfig {
        tls: Some(RawTls {
            otlp_grpc: Some(RawTlsFiles {
                cert_file: Some(files.path("server.pem")),
                key_file: Some(files.path("server.key")),
                client_ca_file: None,
            }),
            ..RawTls::default()
        }),
        auth: Some(RawAuth {
            ingest_token_file: Some(files.path("ingest.tokens")),
            ..RawAuth::default()
        }),
        ..FileConfig::default()
    };
    start_server_with(file, "1s").await
}

/// The collector's environment for `files`: faultline's CA and the token file its
/// `bearertokenauth` extension reads, and each `(variable, faultline)` address.
fn collector_env(files: &Files, addresses: &[(&str, &Running)]) -> Vec<(String, String)> {
    files.write("collector.token", INGEST_TOKEN);
    let mut env = vec![
        (
            "FAULTLINE_CA_FILE".to_string(),
            files.path("ca.pem").display().to_string(),
        ),
        (
            "FAULTLINE_TOKEN_FILE".to_string(),
            files.path("collector.token").display().to_string(),
        ),
    ];
    for (var, running) in addresses {
        env.push((var.to_string(), running.otlp_grpc_address.to_string()));
    }
    env
}

/// Requests refused by a faultline's TLS/token checks: none may be.
async fn refused(running: &Running) -> f64 {
    crate::support::metrics_sum(running, "faultline_auth_refused_total").await
}

#[derive(Debug)]
struct Sent {
    trace_id: String,
    failing_tool: bool,
    failing_evaluation: bool,
}

/// Runs the Python client against the collector's receiver; `evaluations` is how the
/// evaluator's results travel (`log` events or `span-event`s).
async fn send(
    collector: &Collector,
    protocol: &str,
    runs: usize,
    service: &str,
    evaluations: &str,
) -> Vec<Sent> {
    let endpoint = match protocol {
        "grpc" => format!("http://{}", collector.grpc),
        _ => format!("http://{}", collector.http),
    };
    let out = tokio::process::Command::new(python())
        .arg(repo_path("tests/python/collector_client.py"))
        .args(["--protocol", protocol, "--endpoint", &endpoint])
        .args(["--runs", &runs.to_string(), "--service", service])
        .args(["--evaluations", evaluations])
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "collector_client.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Vec<Sent> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("one JSON object per line");
            Sent {
                trace_id: v["trace_id"].as_str().expect("trace id").to_string(),
                failing_tool: v["failing_tool"] == true,
                failing_evaluation: v["failing_evaluation"] == true,
            }
        })
        .collect();
    assert_eq!(sent.len(), runs);
    sent
}

/// The trajectory of `trace_id` on `running`, if it holds every span of the run.
async fn whole(running: &Running, trace_id: &str) -> Option<Value> {
    let (status, body) = get_json(running, &format!("/api/v1/trajectories/{trace_id}")).await;
    (status == 200 && body["steps"].as_array().map(Vec::len) == Some(SPANS_PER_RUN)).then_some(body)
}

/// Whether a trajectory shows what was planted in its run: the failing tool blamed, the
/// evaluator's `incorrect` blamed on the generator it judged, the rest a success.
fn shows(sent: &Sent, t: &Value) -> bool {
    let root_cause = t["root_cause"]["step"].as_str();
    if sent.failing_tool {
        t["outcome"] == "failed" && root_cause == Some("tool")
    } else if sent.failing_evaluation {
        t["outcome"] == "failed" && root_cause == Some("generator")
    } else {
        t["outcome"] == "success"
    }
}

/// Polls until every sent run is whole, with its planted outcome, on `running`.
async fn wait_all(running: &Running, sent: &[Sent], what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut missing = Vec::new();
        for s in sent {
            match whole(running, &s.trace_id).await {
                Some(t) if shows(s, &t) => {}
                other => missing.push(format!("{s:?}: {}", other.unwrap_or(Value::Null))),
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} of {} runs not whole with their planted outcome after 60 s, e.g. {}",
            missing.len(),
            sent.len(),
            missing[0]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_yaml_forwards_traces_and_evaluations_over_grpc_and_http() {
    let _heavy = heavy().await;
    let files = Files::new();
    let faultline = secured(&files).await;
    let env = collector_env(&files, &[("FAULTLINE_ENDPOINT", &faultline)]);
    let collector = start_collector("otlp.yaml", &[], &env).await;
    for protocol in ["grpc", "http"] {
        let sent = send(
            &collector,
            protocol,
            6,
            &format!("via-collector-{protocol}"),
            "log",
        )
        .await;
        wait_all(
            &faultline,
            &sent,
            &format!("otlp.yaml, {protocol} into the collector"),
        )
        .await;
    }
    assert_eq!(refused(&faultline).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_yaml_without_the_token_is_refused_and_nothing_arrives() {
    let _heavy = heavy().await;
    let files = Files::new();
    let faultline = secured(&files).await;
    let mut env = collector_env(&files, &[("FAULTLINE_ENDPOINT", &faultline)]);
    // The collector sends a token faultline does not know.
    files.write("wrong.token", "not-the-ingest-token");
    for (k, v) in env.iter_mut() {
        if k == "FAULTLINE_TOKEN_FILE" {
            *v = files.path("wrong.token").display().to_string();
        }
    }
    let collector = start_collector("otlp.yaml", &[], &env).await;
    let sent = send(&collector, "grpc", 3, "wrong-token", "log").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while refused(&faultline).await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "faultline counted no refusal of the collector's wrong token in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for s in &sent {
        let (status, _) =
            get_json(&faultline, &format!("/api/v1/trajectories/{}", s.trace_id)).await;
        assert_eq!(status, 404, "a trace sent with a wrong token was accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tee_yaml_sends_every_span_to_faultline_and_the_backend() {
    let _heavy = heavy().await;
    let files = Files::new();
    let faultline = secured(&files).await;
    // The "existing backend" is a second, plain faultline: it must receive every span too.
    let backend = start_server("1s").await;
    let env = collector_env(&files, &[("FAULTLINE_ENDPOINT", &faultline)]);
    let collector = start_collector(
        "tee.yaml",
        &[("tempo:4317", backend.otlp_grpc_address.to_string())],
        &env,
    )
    .await;
    let sent = send(&collector, "grpc", 6, "tee", "log").await;
    wait_all(&faultline, &sent, "tee.yaml, faultline").await;
    // The backend's pipeline carries traces only (tee.yaml sends logs to faultline
    // alone), so it sees whole traces but not the evaluator's verdict.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for s in &sent {
        while whole(&backend, &s.trace_id).await.is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "tee.yaml: the backend never received all of {}",
                s.trace_id
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadbalancing_yaml_keeps_every_trace_whole_on_one_replica() {
    let _heavy = heavy().await;
    let files = Files::new();
    let replicas = [
        secured(&files).await,
        secured(&files).await,
        secured(&files).await,
    ];
    let env = collector_env(
        &files,
        &[
            ("FAULTLINE_REPLICA_0", &replicas[0]),
            ("FAULTLINE_REPLICA_1", &replicas[1]),
            ("FAULTLINE_REPLICA_2", &replicas[2]),
        ],
    );
    let collector = start_collector("loadbalancing.yaml", &[], &env).await;
    // Evaluator results as span events travel with their trace. As log events they
    // would not: the loadbalancing exporter hashes a log record's trace id in another
    // form than a span's, so they reach another replica (collector-config/README.md).
    let sent = send(&collector, "grpc", 24, "sharded", "span-event").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut used = HashSet::new();
    for s in &sent {
        // Exactly one replica holds the trace, whole and with its planted outcome.
        loop {
            let mut holders = Vec::new();
            for (i, r) in replicas.iter().enumerate() {
                let (status, body) =
                    get_json(r, &format!("/api/v1/trajectories/{}", s.trace_id)).await;
                if status == 200 {
                    holders.push((i, body));
                }
            }
            assert!(
                holders.len() <= 1,
                "trace {} was split across replicas {:?}",
                s.trace_id,
                holders.iter().map(|(i, _)| i).collect::<Vec<_>>()
            );
            if let Some((i, t)) = holders.first() {
                if t["steps"].as_array().map(Vec::len) == Some(SPANS_PER_RUN) && shows(s, t) {
                    used.insert(*i);
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "loadbalancing.yaml: {s:?} not whole with its planted outcome on one replica \
                 after 60 s: {:?}",
                holders
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // 24 trace ids over three replicas: all on one has a chance of 3·3⁻²⁴.
    assert!(used.len() >= 2, "every trace went to replica {used:?}");
}
