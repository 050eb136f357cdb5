//! The web page in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core`; both installed by `./scripts/test`): the numbers a person sees match
//! the API, the blamed step is highlighted, and script payloads in span names, attribute
//! keys and values, service names and status messages stay inert text.

use std::process::Command;

use faultline::model::Outcome;
use serde_json::{json, Value};

use crate::api::{feed, wait_all};
use crate::support::{get_json, repo_path, start_server, wait_trajectory};

const XSS_TRACE: &str = "5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c";
const PAYLOAD_NAME: &str = r#"<img src=x onerror="window.__xss=true;alert('name')">"#;
const PAYLOAD_KEY: &str = r#"<script>window.__xss=true</script>"#;
const PAYLOAD_VALUE: &str = r#""><svg onload="window.__xss=true;alert('value')">"#;

/// One failed run whose every piece of content is a script payload.
fn hostile_trace() -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let span = |id: &str, parent: &str, name: &str, kind: &str, error: bool| {
        json!({
            "traceId": XSS_TRACE, "spanId": id, "parentSpanId": parent, "name": name,
            "startTimeUnixNano": (now - 2_000_000_000).to_string(),
            "endTimeUnixNano": (now - 1_000_000_000).to_string(),
            "attributes": [
                {"key": "openinference.span.kind", "value": {"stringValue": kind}},
                {"key": PAYLOAD_KEY, "value": {"stringValue": PAYLOAD_VALUE}},
                {"key": "output.value", "value": {"stringValue": PAYLOAD_VALUE}}
            ],
            "status": if error { json!({"code": 2, "message": PAYLOAD_NAME}) } else { json!({}) },
            "events": if error { json!([{"name": "exception", "timeUnixNano": now.to_string(), "attributes": [
                {"key": "exception.type", "value": {"stringValue": PAYLOAD_KEY}},
                {"key": "exception.message", "value": {"stringValue": PAYLOAD_VALUE}}
            ]}]) } else { json!([]) }
        })
    };
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": PAYLOAD_NAME}}]},
        "scopeSpans": [{"spans": [
            span("1111111111111111", "", PAYLOAD_NAME, "AGENT", true),
            span("2222222222222222", "1111111111111111", PAYLOAD_VALUE, "TOOL", true)
        ]}]
    }]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_shows_the_api_numbers_and_keeps_payloads_inert() {
    let _heavy = crate::support::heavy().await;
    let running = start_server("300ms").await;
    let labels = feed(&running, 150, 41).await;
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", running.otlp_http_address))
        .header("content-type", "application/json")
        .body(hostile_trace().to_string())
        .send()
        .await
        .expect("OTLP/HTTP answers");
    assert_eq!(resp.status(), 200);
    wait_trajectory(&running, XSS_TRACE, 2, std::time::Duration::from_secs(20)).await;
    wait_all(&running, &labels).await;
    // Counts are taken once each trace's grace (1 s) has ended; wait for all of them.
    let expected_total = labels.len() as u64 + 1;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let breakdown = loop {
        let (_, b) = get_json(&running, "/api/v1/breakdown?window=24h").await;
        if b["totals"]["trajectories"].as_u64() == Some(expected_total) {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all counted: {}",
            b["totals"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let failed = labels
        .iter()
        .find(|l| l.outcome == Outcome::Failed)
        .expect("a failed run");
    let (_, failed_doc) = get_json(
        &running,
        &format!("/api/v1/trajectories/{}", failed.trace_id),
    )
    .await;

    // Screenshots go to FAULTLINE_SCREENSHOTS when set (to look at the page), else away.
    let shots = tempfile::tempdir().expect("tempdir");
    let shots_dir = std::env::var_os("FAULTLINE_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| shots.path().to_owned());
    let node_modules = repo_path("tests/browser/node_modules/playwright-core");
    assert!(
        node_modules.exists(),
        "playwright-core is required: run ./scripts/test, which installs it"
    );
    let out = Command::new("node")
        .arg(repo_path("tests/browser/check_page.mjs"))
        .arg(format!("http://{}", running.api_address))
        .arg(&failed.trace_id)
        .arg(XSS_TRACE)
        .arg(&shots_dir)
        .output()
        .expect("node is required: run ./scripts/test");
    assert!(
        out.status.success(),
        "the browser check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");

    // The numbers on the overview are the API's.
    for k in ["trajectories", "failed", "recovered", "success"] {
        assert_eq!(
            seen["totals"][k], breakdown["totals"][k],
            "total {k}: {seen}"
        );
    }
    let api_steps: Vec<(String, u64, u64)> = breakdown["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or_default().to_owned(),
                s["failures"].as_u64().unwrap_or(0),
                s["root_causes"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let page_steps: Vec<(String, u64, u64)> = seen["steps"]
        .as_array()
        .expect("steps on the page")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or_default().to_owned(),
                s["failures"].as_u64().unwrap_or(0),
                s["root_causes"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(page_steps, api_steps);

    // The blamed step is the API's, and its span is highlighted.
    assert_eq!(seen["blamed_step"], failed_doc["root_cause"]["step"]);
    assert_eq!(seen["highlighted_rows"], 1);

    // Payloads: shown as text, never run.
    assert_eq!(seen["xss_executed"], false, "{seen}");
    assert_eq!(seen["dialogs"], json!([]), "{seen}");
    assert_eq!(seen["injected_elements"], 0, "{seen}");
    assert_eq!(seen["page_errors"], json!([]), "{seen}");
    let names: Vec<&str> = seen["xss_span_names"]
        .as_array()
        .expect("names")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&PAYLOAD_NAME) && names.contains(&PAYLOAD_VALUE),
        "{names:?}"
    );
    let cells: Vec<&str> = seen["xss_attr_cells"]
        .as_array()
        .expect("attribute cells")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        cells.contains(&PAYLOAD_KEY) && cells.contains(&PAYLOAD_VALUE),
        "{cells:?}"
    );
    assert!(seen["list_rows"].as_u64().unwrap_or(0) >= labels.len() as u64);
    running.shutdown().await;
}
