//! Alerting end to end: a real Alertmanager (Debian `prometheus-alertmanager`) on a free
//! loopback port receives a firing and then a resolved built-in alert from a server fed
//! with simulated traffic holding a planted spike; a webhook receiver sees the same; the
//! `/api/v1/alerts` shape and its bad parameters; `promtool` and `amtool` accept the
//! shipped configuration and pass the rule unit tests. Missing programs fail the tests:
//! `./scripts/test` installs them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline::alerts::RawAlertsConfig;
use faultline::config::FileConfig;
use faultline::simulate::{Scenario, SimConfig, Simulator, TimeWindow};
use prost::Message;
use serde_json::Value;

use crate::support::{get_json, repo_path, start_server, start_server_with};

const MIN: u64 = 60_000_000_000;

/// A Debian program, or a failure naming the package that provides it.
fn program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("`{name}` is required (Debian package {package}): run ./scripts/test");
}

fn run_ok(program: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(repo_path("."))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{text}",
        program.display()
    );
    text
}

#[test]
fn promtool_and_amtool_accept_the_shipped_configuration() {
    let promtool = program("promtool", "prometheus");
    let amtool = program("amtool", "prometheus-alertmanager");
    let out = run_ok(
        &promtool,
        &["check", "rules", "deploy/prometheus/rules.yml"],
    );
    assert!(out.contains("SUCCESS"), "{out}");
    let tests: Vec<String> = std::fs::read_dir(repo_path("deploy/prometheus/tests"))
        .expect("deploy/prometheus/tests")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(!tests.is_empty());
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let out = run_ok(&promtool, &args);
    assert!(out.contains("SUCCESS"), "{out}");
    // The scrape config reads the API token and the CA from secrets/ beside it
    // (deploy/make-secrets.sh writes them, and promtool checks they exist): check a copy
    // with stand-ins.
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["prometheus.yml", "rules.yml"] {
        std::fs::copy(
            repo_path(&format!("deploy/prometheus/{f}")),
            dir.path().join(f),
        )
        .expect("copy");
    }
    std::fs::create_dir(dir.path().join("secrets")).expect("secrets dir");
    for f in ["api-token", "ca.crt"] {
        std::fs::write(dir.path().join("secrets").join(f), "stand-in\n").expect("write");
    }
    let config = dir.path().join("prometheus.yml").display().to_string();
    let out = run_ok(&promtool, &["check", "config", &config]);
    assert!(out.contains("SUCCESS"), "{out}");
    run_ok(
        &amtool,
        &["check-config", "deploy/alertmanager/alertmanager.yml"],
    );
}

#[test]
fn the_grafana_dashboard_is_json_and_queries_exported_metrics() {
    let text = std::fs::read_to_string(repo_path("deploy/grafana/dashboards/faultline.json"))
        .expect("dashboard");
    let dash: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let exprs: Vec<&str> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(|s| s.to_owned()))
        .map(|s| &*Box::leak(s.into_boxed_str()))
        .collect();
    assert!(exprs.len() >= 10);
    let rules = std::fs::read_to_string(repo_path("deploy/prometheus/rules.yml")).expect("rules");
    for metric in [
        "faultline_step_runs_total",
        "faultline_root_causes_total",
        "faultline_step_duration_seconds_bucket",
        "faultline_alert_firing",
        "faultline_trajectories_total",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "no panel uses {metric}"
        );
    }
    // Every recording rule a panel uses exists.
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
            if word.starts_with("faultline:") {
                assert!(rules.contains(&format!("record: {word}")), "{word}");
            }
        }
    }
}

async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

/// A webhook receiver recording every JSON body posted to it.
async fn webhook() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let seen = seen.clone();
            move |axum::Json(body): axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(body);
                    "ok"
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

/// Sends simulated runs over OTLP/HTTP until their event time reaches `until`.
async fn send_until(running: &faultline::server::Running, sim: &mut Simulator, until: u64) {
    let client = reqwest::Client::new();
    let base = format!("http://{}", running.otlp_http_address);
    loop {
        let batch = sim.next_batch(400);
        let mut bodies = vec![("/v1/traces", batch.traces.encode_to_vec())];
        if let Some(l) = batch.logs {
            bodies.push(("/v1/logs", l.encode_to_vec()));
        }
        for (_, t) in batch.late_traces {
            bodies.push(("/v1/traces", t.encode_to_vec()));
        }
        for (path, body) in bodies {
            let resp = client
                .post(format!("{base}{path}"))
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .expect("OTLP/HTTP answers");
            assert_eq!(resp.status(), 200, "{path}");
        }
        if batch
            .labels
            .last()
            .is_some_and(|l| l.start_unix_nano >= until)
        {
            return;
        }
    }
}

async fn am_alerts(port: u16) -> Vec<Value> {
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/api/v2/alerts"))
        .await
        .expect("Alertmanager answers");
    assert_eq!(resp.status(), 200);
    resp.json::<Vec<Value>>().await.expect("alert list")
}

fn is_ours(a: &Value) -> bool {
    a["labels"]["kind"] == "spike"
        && a["labels"]["alertname"]
            .as_str()
            .is_some_and(|n| n.starts_with("FaultlineStep"))
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_receives_a_firing_then_a_resolved_spike() {
    let _heavy = crate::support::heavy().await;
    let binary = program("prometheus-alertmanager", "prometheus-alertmanager");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: default\n  group_wait: 1s\nreceivers:\n  - name: default\n",
    )
    .expect("write config");
    let port = free_port().await;
    let mut am = tokio::process::Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start alertmanager");
    wait_for("Alertmanager ready", Duration::from_secs(30), || async {
        match reqwest::get(format!("http://127.0.0.1:{port}/-/ready")).await {
            Ok(r) if r.status() == 200 => Some(Value::Null),
            _ => None,
        }
    })
    .await;

    let (hook, seen) = webhook().await;
    let file = FileConfig {
        alerts: Some(RawAlertsConfig {
            alertmanager_url: Some(format!("http://127.0.0.1:{port}")),
            webhook_url: Some(format!("http://{hook}/hook")),
            eval_interval: Some("200ms".into()),
            warmup: Some("20m".into()),
            min_baseline_runs: Some(100),
            spike_p_pending: Some(1e-4),
            spike_p_firing: Some(1e-6),
            resend_interval: Some("1s".into()),
            max_notifications_per_minute: Some(600),
            ..RawAlertsConfig::default()
        }),
        ..FileConfig::default()
    };
    let running = start_server_with(file, "200ms").await;

    // 80 minutes of event time ending now; every fault × 4 from minute 50 to 60.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let t0 = (now - 80 * MIN) / MIN * MIN;
    let spike = (t0 + 50 * MIN, t0 + 60 * MIN);
    let mut sim = Simulator::new(SimConfig {
        runs_per_second: 0.5,
        scenario: Scenario::default().with_window(TimeWindow {
            start_unix_nano: spike.0,
            end_unix_nano: spike.1,
            kinds: Vec::new(),
            factor: 4.0,
        }),
        ..SimConfig::new(42, t0)
    });

    // Up to two minutes into the spike: Alertmanager shows it firing.
    send_until(&running, &mut sim, spike.0 + 3 * MIN).await;
    let firing = wait_for(
        "a firing alert in Alertmanager",
        Duration::from_secs(180),
        || async {
            am_alerts(port)
                .await
                .into_iter()
                .find(|a| is_ours(a) && a["status"]["state"] == "active")
        },
    )
    .await;
    let labels = firing["labels"].clone();
    assert_eq!(labels["severity"], "critical", "{firing}");
    assert!(
        labels["step"].is_string() && labels["signal"].is_string(),
        "{firing}"
    );
    let annotations = &firing["annotations"];
    for key in ["summary", "rate", "baseline", "cohorts", "link"] {
        assert!(annotations[key].is_string(), "no {key}: {firing}");
    }
    assert!(
        annotations["link"]
            .as_str()
            .unwrap()
            .contains("/#/trajectories?step="),
        "{firing}"
    );
    assert!(firing["generatorURL"]
        .as_str()
        .unwrap()
        .ends_with("&outcome=failed"));

    // The API lists it firing, with event times inside the spike.
    let (status, body) = get_json(&running, "/api/v1/alerts?state=firing").await;
    assert_eq!(status, 200);
    let list = body["alerts"].as_array().expect("alerts");
    let ours = list
        .iter()
        .find(|a| a["kind"] == "spike" && a["step"] == labels["step"])
        .unwrap_or_else(|| panic!("{body}"));
    for key in [
        "step",
        "kind",
        "cohort",
        "state",
        "started_unix_nano",
        "resolved_unix_nano",
        "rate",
        "baseline",
    ] {
        assert!(ours.get(key).is_some(), "no {key}: {ours}");
    }
    assert_eq!(ours["state"], "firing");
    // The reason it is about: the step's top reason pattern, as Alertmanager's
    // `top_reason` annotation names it.
    let reason = ours["reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "no reason: {ours}");
    assert!(
        annotations["top_reason"].is_string(),
        "no top_reason: {firing}"
    );
    assert!(ours["resolved_unix_nano"].is_null());
    assert!(ours["cohort"].is_object());
    let started = ours["started_unix_nano"].as_u64().expect("started");
    assert!(
        started >= spike.0 - 3 * MIN && started < spike.0 + 3 * MIN,
        "started {started} vs spike at {}",
        spike.0
    );
    assert!(ours["rate"].as_f64().unwrap() > 2.0 * ours["baseline"].as_f64().unwrap());
    let text = metrics_text(&running).await;
    assert_eq!(
        firing_gauge(&text, &labels),
        Some(1.0),
        "faultline_alert_firing of {labels} while it fires:\n{text}"
    );

    // The rest of the traffic, back to normal: the alert resolves everywhere.
    send_until(&running, &mut sim, t0 + 80 * MIN).await;
    let labels_for_match = labels.clone();
    wait_for(
        "the alert resolved in Alertmanager",
        Duration::from_secs(180),
        || {
            let labels = labels_for_match.clone();
            async move {
                let now =
                    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
                let same: Vec<Value> = am_alerts(port)
                    .await
                    .into_iter()
                    .filter(|a| a["labels"] == labels)
                    .collect();
                // Resolved: gone from the list, or ended (endsAt in the past). A firing alert
                // is valid for five minutes after each re-send, so within this wait only
                // faultline's resolved post can make it go.
                let resolved = same.iter().all(|a| {
                    a["endsAt"].as_str().is_some_and(|e| e <= now.as_str())
                        || a["status"]["state"] != "active"
                });
                resolved.then_some(Value::Array(same))
            }
        },
    )
    .await;
    let (_, body) = get_json(&running, "/api/v1/alerts?state=resolved").await;
    let resolved = body["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .find(|a| a["kind"] == "spike" && a["step"] == labels["step"])
        .unwrap_or_else(|| panic!("not resolved in the API: {body}"))
        .clone();
    let ended = resolved["resolved_unix_nano"]
        .as_u64()
        .expect("resolved time");
    assert!(
        ended >= spike.1 - MIN && ended <= spike.1 + 15 * MIN,
        "{resolved}"
    );

    // The webhook saw the same incident fire and resolve.
    let hooks = seen.lock().unwrap().clone();
    let statuses: Vec<(String, Value)> = hooks
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"] == labels)
        .map(|a| (a["status"].as_str().unwrap_or("").to_owned(), a))
        .collect();
    assert!(statuses.iter().any(|(s, _)| s == "firing"), "{hooks:?}");
    assert!(statuses.iter().any(|(s, _)| s == "resolved"), "{hooks:?}");

    // The gauge is back to zero for that group.
    let text = metrics_text(&running).await;
    assert_eq!(
        firing_gauge(&text, &labels),
        Some(0.0),
        "faultline_alert_firing of {labels} after the resolution:\n{text}"
    );
    assert!(
        text.contains(
            "faultline_alert_notifications_total{destination=\"alertmanager\",result=\"ok\"}"
        ),
        "{text}"
    );

    running.shutdown().await;
    let _ = am.kill().await;
}

#[tokio::test]
async fn the_alerts_endpoint_answers_its_shape_and_refuses_bad_parameters() {
    let running = start_server("200ms").await;
    let (status, body) = get_json(&running, "/api/v1/alerts").await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({ "alerts": [] }));
    let (status, _) = get_json(
        &running,
        "/api/v1/alerts?state=firing&kind=spike&limit=5&step=tool",
    )
    .await;
    assert_eq!(status, 200);
    for bad in [
        "state=burning",
        "kind=trend",
        "limit=0",
        "limit=5000",
        "limit=x",
        "step=",
        "since=1",
    ] {
        let (status, body) = get_json(&running, &format!("/api/v1/alerts?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    running.shutdown().await;
}

async fn metrics_text(running: &faultline::server::Running) -> String {
    reqwest::get(format!("http://{}/metrics", running.api_address))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of `faultline_alert_firing` for the spike of an Alertmanager alert's
/// `signal` and `step` labels.
fn firing_gauge(text: &str, labels: &Value) -> Option<f64> {
    let want = [
        format!("signal=\"{}\"", labels["signal"].as_str()?),
        format!("step=\"{}\"", labels["step"].as_str()?),
        "kind=\"spike\"".to_string(),
    ];
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("faultline_alert_firing{")?;
        let (set, value) = rest.split_once("} ")?;
        want.iter()
            .all(|w| set.split(',').any(|p| p == w))
            .then(|| value.trim().parse().ok())?
    })
}
