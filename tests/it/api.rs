//! The JSON API, `/metrics`, health endpoints and the web page, against a server fed by
//! the simulator over OTLP/HTTP.

use std::time::Duration;

use faultline::model::Outcome;
use faultline::simulate::{Label, Scenario, SimConfig, Simulator};
use prost::Message;
use serde_json::Value;

use crate::support::{api_url, get_json, start_server};

/// Sends `n` simulated runs (and their logs and late evaluator traces) over OTLP/HTTP
/// protobuf; returns their labels.
pub async fn feed(running: &faultline::server::Running, n: usize, seed: u64) -> Vec<Label> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let mut sim = Simulator::new(SimConfig {
        scenario: Scenario::uniform(0.04, 0.08),
        ..SimConfig::new(seed, now - 600_000_000_000)
    });
    let client = reqwest::Client::new();
    let base = format!("http://{}", running.otlp_http_address);
    let mut labels = Vec::new();
    for _ in 0..n {
        let run = sim.next_run();
        let mut bodies = vec![("/v1/traces", run.traces.encode_to_vec())];
        if let Some(l) = run.logs {
            bodies.push(("/v1/logs", l.encode_to_vec()));
        }
        if let Some(t) = run.late_traces {
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
        labels.push(run.label);
    }
    labels
}

/// Waits until `n` trajectories are counted (each trace's counts are taken when its
/// late grace, 1 s in the tests, has ended).
pub async fn wait_counted(running: &faultline::server::Running, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, b) = get_json(running, "/api/v1/breakdown?window=24h").await;
        if b["totals"]["trajectories"].as_u64().unwrap_or(0) >= n as u64 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} trajectories counted",
            b["totals"]["trajectories"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every label's trajectory is listed.
pub async fn wait_all(running: &faultline::server::Running, labels: &[Label]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = get_json(running, "/api/v1/trajectories?limit=1000").await;
        let listed = body["trajectories"].as_array().map(Vec::len).unwrap_or(0);
        if listed >= labels.len() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {listed} of {} trajectories analysed",
            labels.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trajectories_list_filters_and_pages() {
    let running = start_server("300ms").await;
    let labels = feed(&running, 120, 11).await;
    wait_all(&running, &labels).await;

    let failed = labels
        .iter()
        .filter(|l| l.outcome == Outcome::Failed)
        .count();
    let (status, body) = get_json(&running, "/api/v1/trajectories?outcome=failed&limit=1000").await;
    assert_eq!(status, 200);
    let list = body["trajectories"].as_array().expect("list");
    assert_eq!(list.len(), failed, "every failed run and only those");
    assert!(list.iter().all(|t| t["outcome"] == "failed"));

    // Filter by root-cause step: each listed trajectory is blamed on that step.
    let some_step = list
        .iter()
        .find_map(|t| t["root_cause_step"].as_str())
        .expect("a blamed step")
        .to_owned();
    let (_, body) = get_json(
        &running,
        &format!("/api/v1/trajectories?root_cause_step={some_step}&limit=1000"),
    )
    .await;
    let blamed = body["trajectories"].as_array().expect("list");
    assert!(!blamed.is_empty());
    assert!(blamed
        .iter()
        .all(|t| t["root_cause_step"] == some_step.as_str()));

    // Pagination: pages of 7 cover everything once, newest first.
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/trajectories?limit=7&cursor={c}"),
            None => "/api/v1/trajectories?limit=7".to_owned(),
        };
        let (status, body) = get_json(&running, &path).await;
        assert_eq!(status, 200);
        for t in body["trajectories"].as_array().expect("page") {
            assert!(
                seen.insert(t["trace_id"].as_str().expect("id").to_owned()),
                "listed twice"
            );
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), labels.len());

    // One trajectory in full, with attributes on demand.
    let label = labels
        .iter()
        .find(|l| l.outcome == Outcome::Failed)
        .expect("a failed run");
    let (status, t) = get_json(
        &running,
        &format!("/api/v1/trajectories/{}?attributes=true", label.trace_id),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(t["outcome"], "failed");
    assert!(t["root_cause"]["evidence"]
        .as_array()
        .is_some_and(|e| !e.is_empty()));
    assert!(t["steps"][0]["attributes"].is_object());
    let (_, t) = get_json(
        &running,
        &format!("/api/v1/trajectories/{}", label.trace_id),
    )
    .await;
    assert!(
        t["steps"][0].get("attributes").is_none(),
        "attributes only on demand"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_with_a_message_and_unknowns_404() {
    let running = start_server("300ms").await;
    for (path, status, needle) in [
        ("/api/v1/trajectories?limit=abc", 400, "limit"),
        ("/api/v1/trajectories?colour=red", 400, "colour"),
        ("/api/v1/trajectories?outcome=maybe", 400, "outcome"),
        ("/api/v1/trajectories?cursor=-1", 400, "cursor"),
        ("/api/v1/trajectories/not-hex", 400, "trace_id"),
        (
            "/api/v1/trajectories/00000000000000000000000000000000",
            400,
            "trace_id",
        ),
        (
            "/api/v1/trajectories/0123456789abcdef0123456789abcdef",
            404,
            "no trajectory",
        ),
        (
            "/api/v1/trajectories/0123456789abcdef0123456789abcdef?attributes=perhaps",
            400,
            "attributes",
        ),
        ("/api/v1/breakdown?window=forever", 400, "window"),
        ("/api/v1/breakdown?by=colour", 400, "colour"),
        ("/api/v1/nothing", 404, "no such endpoint"),
    ] {
        let (got, body) = get_json(&running, path).await;
        assert_eq!(got, status, "{path}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{path}: `{msg}` should name `{needle}`"
        );
    }
    // Limits are clamped, not refused.
    let (status, _) = get_json(&running, "/api/v1/trajectories?limit=1000000000000").await;
    assert_eq!(status, 200);
    let (status, _) = get_json(&running, "/api/v1/trajectories?limit=-5").await;
    assert_eq!(status, 200);
    running.shutdown().await;
}

/// The sum of every series of metric `name` (exactly that name, any labels).
fn series_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of every series line starting with `prefix` (a name and its first labels).
fn prefix_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_page() {
    let running = start_server("300ms").await;
    let labels = feed(&running, 30, 5).await;
    wait_all(&running, &labels).await;
    // Counts are taken once a trace's late grace (1 s here) has ended.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = reqwest::get(api_url(&running, "/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let counted: f64 = text
            .lines()
            .filter(|l| l.starts_with("faultline_trajectories_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if counted >= labels.len() as f64 {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no trajectory counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The values, not only the names: every run counted once by outcome as planted, one
    // root cause per failed run, one duration sample per step run, nothing refused.
    let planted = |o: Outcome| labels.iter().filter(|l| l.outcome == o).count() as f64;
    let outcome = |o: &str| format!("faultline_trajectories_total{{outcome=\"{o}\",");
    assert_eq!(series_sum(&text, "faultline_trajectories_total"), 30.0);
    assert_eq!(
        prefix_sum(&text, &outcome("failed")),
        planted(Outcome::Failed)
    );
    assert_eq!(
        prefix_sum(&text, &outcome("recovered")),
        planted(Outcome::Recovered)
    );
    assert_eq!(
        prefix_sum(&text, &outcome("success")),
        planted(Outcome::Success)
    );
    assert!(
        planted(Outcome::Failed) > 0.0,
        "the sample holds failed runs"
    );
    assert_eq!(
        series_sum(&text, "faultline_root_causes_total"),
        planted(Outcome::Failed)
    );
    let runs = series_sum(&text, "faultline_step_runs_total");
    assert!(runs >= 30.0 * 2.0, "{runs} step runs");
    assert_eq!(
        series_sum(&text, "faultline_step_duration_seconds_count"),
        runs
    );
    assert!(series_sum(&text, "faultline_step_failures_total") >= planted(Outcome::Failed));
    let spans: usize = labels.iter().map(|l| l.span_count).sum();
    assert!(prefix_sum(&text, "faultline_spans_received_total{transport=\"http\"") >= spans as f64);
    assert_eq!(series_sum(&text, "faultline_spans_rejected_total"), 0.0);
    assert_eq!(series_sum(&text, "faultline_traces_evicted_total"), 0.0);
    assert!(text.contains("faultline_buffered_spans"));
    assert_eq!(prefix_sum(&text, "faultline_build_info{version="), 1.0);
    let health = reqwest::get(api_url(&running, "/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(api_url(&running, "/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let page = reqwest::get(api_url(&running, "/")).await.expect("page");
    assert_eq!(page.status(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let js = reqwest::get(api_url(&running, "/assets/app.js"))
        .await
        .expect("js");
    assert_eq!(js.status(), 200);
    let body: Value = serde_json::json!(js.text().await.expect("js text").len());
    assert!(body.as_u64().unwrap_or(0) > 1000);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasons_are_clustered_and_ranked() {
    let running = start_server("300ms").await;
    let labels = feed(&running, 200, 21).await;
    wait_all(&running, &labels).await;
    wait_counted(&running, labels.len()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = get_json(&running, "/api/v1/reasons?window=24h&limit=50").await;
        assert_eq!(status, 200);
        if body["reasons"].as_array().is_some_and(|r| !r.is_empty()) {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "no reasons: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reasons = body["reasons"].as_array().expect("reasons");
    let counts: Vec<u64> = reasons
        .iter()
        .map(|r| r["count"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "ranked by count: {counts:?}"
    );
    // Reasons with variable parts collapse into fewer patterns than findings.
    let findings: u64 = counts.iter().sum();
    assert!(
        (reasons.len() as u64) < findings,
        "{} patterns for {findings} findings",
        reasons.len()
    );
    assert!(reasons
        .iter()
        .any(|r| r["template"].as_str().is_some_and(|t| t.contains("<*>"))));
    let (status, body) = get_json(&running, "/api/v1/reasons?step=tool&window=24h").await;
    assert_eq!(status, 200);
    for r in body["reasons"].as_array().expect("reasons") {
        assert!(r["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["step"] == "tool")));
    }
    let (status, _) = get_json(&running, "/api/v1/reasons?window=soon").await;
    assert_eq!(status, 400);
    running.shutdown().await;
}
