//! The web page in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core`; both installed by `./scripts/test`) at 1280×800: the numbers a
//! person sees match the API, charts have time axes, each step keeps one colour, the
//! blamed span is the one highlighted thing and the page says why, text and links meet
//! WCAG AA contrast, alerts are labelled and grouped, runs inside the late-data grace
//! show as pending, an empty server says how to send a first trace, anomalies render
//! from their structured JSON, and script payloads in span names, attribute keys and
//! values, service names and status messages stay inert text.

use std::process::Command;

use faultline::model::Outcome;
use serde_json::{json, Value};

use crate::api::{feed, wait_all};
use crate::support::{get_json, repo_path, start_server, start_server_graced, wait_trajectory};

const XSS_TRACE: &str = "5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c";
/// Sent by the page check to the quiet server: a span whose parent never arrives.
const ORPHAN_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
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

    // A second server, empty, whose runs stay pending (a long late-data grace).
    let quiet = start_server_graced(Default::default(), "300ms", "10m").await;

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
        .arg(format!("http://{}", quiet.api_address))
        .arg(quiet.otlp_http_address.to_string())
        .arg(ORPHAN_TRACE)
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
    assert_eq!(seen["csp_violations"], json!([]), "{seen}");

    check_overview(&seen, &breakdown);
    check_trajectory_view(&seen);
    check_lists_alerts_and_compare(&seen);
    check_list_matches_the_cli(&running, &seen).await;
    check_readability(&seen);
    check_quiet_server(&seen, &quiet).await;
    quiet.shutdown().await;
    running.shutdown().await;
}

/// A duration as a person writes it: "850 ms", "36.7 s", "2 min 5 s" — never 1000 ms or
/// more.
fn person_duration(text: &str) -> bool {
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        [n, "ms"] => n.parse::<f64>().is_ok_and(|v| v < 1000.0),
        [n, "s"] => n.parse::<f64>().is_ok_and(|v| v < 60.0),
        [n, "min", ..] | [n, "h", ..] => n.parse::<u64>().is_ok(),
        _ => false,
    }
}

fn check_overview(seen: &Value, breakdown: &Value) {
    // Runs still inside the grace: none here (every run was waited for).
    assert_eq!(
        seen["pending_card"], breakdown["pending_trajectories"],
        "{seen}"
    );
    let steps = seen["steps"].as_array().expect("steps");
    let mut colours: Vec<&str> = Vec::new();
    let mut widest = 0.0f64;
    for s in steps {
        for col in ["p50", "p99"] {
            let text = s[col].as_str().unwrap_or_default();
            assert!(text == "–" || person_duration(text), "{col} `{text}`: {s}");
        }
        colours.push(s["swatch"].as_str().expect("swatch"));
        for w in s["bar_widths"].as_array().expect("bars") {
            widest = widest.max(w.as_f64().unwrap_or(0.0));
        }
    }
    // One distinct colour per step, and the same in the timeline's lines and legend.
    let mut distinct = colours.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), colours.len(), "{colours:?}");
    for entry in seen["legend"].as_array().expect("legend") {
        let row = steps
            .iter()
            .find(|s| s["step"] == entry["step"])
            .unwrap_or_else(|| panic!("legend step not in the table: {entry}"));
        assert_eq!(row["swatch"], entry["swatch"], "{entry}");
    }
    assert!(!seen["timeline_lines"].as_array().expect("lines").is_empty());
    // Bars are scaled to the largest value, which fills its bar.
    assert!(widest > 0.97, "the largest bar fills {widest}");
    // The time axis: ticks with local time, and local and UTC on hover.
    let ticks = seen["timeline_ticks"].as_array().expect("ticks");
    assert!(ticks.len() >= 3, "{ticks:?}");
    for t in ticks {
        let hover = t["hover"].as_str().unwrap_or_default();
        assert!(hover.contains("local") && hover.contains("UTC"), "{t}");
        assert!(t["label"].as_str().unwrap_or_default().contains(':'), "{t}");
    }
    let explain = seen["explains_root_causes"].as_str().unwrap_or_default();
    assert!(
        explain.contains("Failures:") && explain.contains("Root causes:"),
        "{explain}"
    );
}

fn check_trajectory_view(seen: &Value) {
    let ticks = seen["waterfall_ticks"].as_array().expect("waterfall axis");
    assert!(ticks.len() >= 2, "{ticks:?}");
    assert!(ticks.iter().all(|t| t["hover"]
        .as_str()
        .is_some_and(|h| h.contains("UTC") && h.contains("local"))));
    let why = seen["why"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("Why this span: ") && why.len() > 40,
        "{why}"
    );
    // Bars take their step's colour: an error span is not painted red.
    let bad = seen["bad_color"].as_str().expect("--bad");
    for b in seen["bar_colors"].as_array().expect("bars") {
        assert_ne!(b["bar"].as_str(), Some(bad), "{b}");
    }
    assert!(
        seen["bar_colors"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["error"] == true)),
        "the failed run has an error span: {}",
        seen["bar_colors"]
    );
}

fn check_lists_alerts_and_compare(seen: &Value) {
    let headers: Vec<&str> = seen["list_headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        headers.contains(&"reason") && headers.contains(&"model"),
        "{headers:?}"
    );
    assert_eq!(headers[1], "end ↓", "sorted by end: {headers:?}");
    assert!(seen["list_reasons"].as_u64().unwrap_or(0) > 0, "{seen}");

    // Alerts: one incident holding the failure and root-cause alerts, told apart by
    // their signal, each with kind, reason and start time; the pending one on its own.
    let groups = seen["alert_groups"].as_array().expect("alert groups");
    assert_eq!(groups.len(), 2, "{groups:?}");
    let incident = &groups[0];
    assert_eq!(incident["group"], "incident 7");
    let signals: Vec<&str> = incident["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|a| a["signal"].as_str())
        .collect();
    assert_eq!(signals, ["failure rate", "root-cause rate"]);
    for a in incident["alerts"].as_array().expect("alerts") {
        assert_eq!(a["kind"], "spike");
        assert_eq!(a["reason"], "Timeout after <*> ms calling <*>", "{a}");
        assert_eq!(a["start"], seen["alert_expected_start"], "{a}");
        assert!(a["start_hover"]
            .as_str()
            .unwrap_or_default()
            .contains("UTC"));
    }
    assert_eq!(incident["reason"], "Timeout after <*> ms calling <*>");
    assert_eq!(groups[1]["group"], "not yet firing · tool");
    assert_eq!(groups[1]["alerts"][0]["signal"], "failure rate");
    assert_eq!(groups[1]["alerts"][0]["reason"], "none recorded");
    assert_eq!(
        groups[1]["alerts"][0]["start"],
        seen["alert_expected_start"]
    );
    assert_eq!(groups[1]["alerts"][0]["kind"], "sustained shift");
    assert_eq!(groups[1]["alerts"][0]["state"], "pending");

    // Compare: the significant row is marked, the other is not.
    assert_eq!(
        seen["compare_rows"],
        json!([
            {"step": "retriever", "significant": true, "marked": true},
            {"step": "tool", "significant": false, "marked": false}
        ])
    );
}

/// The CLI's columns, as the page names them: lower case, without the time zone.
fn cli_columns(text: &str) -> Vec<String> {
    text.lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| c.replace(" (UTC)", "").to_lowercase())
        .collect()
}

/// The trace ids of the CLI's rows, top to bottom.
fn cli_traces(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .take_while(|l| !l.starts_with('(') && !l.starts_with("more:"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// `faultline trajectories` renders the same API answer with the page's columns, in the
/// page's order and sort, for the default sort and for a sort by duration.
async fn check_list_matches_the_cli(running: &faultline::server::Running, seen: &Value) {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    };
    for (query, sort, order, page) in [
        ("limit=1000", "end", "desc", &seen["list_headers"]),
        (
            "limit=1000&sort=duration&order=asc",
            "duration",
            "asc",
            &seen["list_by_duration"]["headers"],
        ),
    ] {
        let (_, answer) = get_json(running, &format!("/api/v1/trajectories?{query}")).await;
        let text = faultline::cli::trajectories::render_sorted(&answer, sort, order);
        assert_eq!(cli_columns(&text), strings(page), "{query}:\n{text}");
        let page_traces = if sort == "end" {
            strings(&seen["list_traces"])
        } else {
            strings(&seen["list_by_duration"]["traces"])
        };
        assert!(page_traces.len() > 100, "{query}: {}", page_traces.len());
        assert_eq!(
            cli_traces(&text),
            page_traces,
            "{query}: the same rows in the same order"
        );
    }
    let hash = seen["list_by_duration"]["hash"]
        .as_str()
        .unwrap_or_default();
    assert!(
        hash.contains("sort=duration") && hash.contains("order=asc"),
        "{hash}"
    );
    // Sorted by duration, the rows are not in end order (the data has varied durations).
    assert_ne!(seen["list_traces"], seen["list_by_duration"]["traces"]);
}

/// What fails WCAG AA (4.5:1 for text and links) in one view's contrast report; empty
/// when the view passes.
fn contrast_failures(view: &str, c: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    if c["checked"].as_u64().unwrap_or(0) == 0 {
        failures.push(format!("{view}: no text checked: {c}"));
    }
    let text = c["min_text"].as_f64().unwrap_or(0.0);
    if text < 4.5 {
        failures.push(format!("{view}: text contrast {text} < 4.5: {c}"));
    }
    if c["links"].as_u64().unwrap_or(0) > 0 {
        let link = c["min_link"].as_f64().unwrap_or(0.0);
        if link < 4.5 {
            failures.push(format!("{view}: link contrast {link} < 4.5: {c}"));
        }
    }
    failures
}

fn check_readability(seen: &Value) {
    for (view, c) in seen["contrast"].as_object().expect("contrast") {
        assert!(c["checked"].as_u64().unwrap_or(0) > 5, "{view}: {c}");
        let failures = contrast_failures(view, c);
        assert!(failures.is_empty(), "{failures:#?}");
    }
    check_contrast_probes(&seen["contrast_probe"]);
    assert!(
        seen["contrast"]["trajectories"]["links"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "links were checked"
    );
    for (view, px) in seen["overflow_px"].as_object().expect("overflow") {
        assert!(
            px.as_i64().is_some_and(|px| px <= 0),
            "{view} is wider than 1280 px: {px}"
        );
    }
}

/// The contrast check can fail: run on the overview with known colour pairs injected,
/// it measures them as WCAG does (#767676 on white is 4.54:1, the lightest grey that
/// passes; #777777 is 4.48:1; a dark blue link on a dark panel 1.72:1) and the
/// check above reports the failing ones.
fn check_contrast_probes(probe: &Value) {
    let ratio = |name: &str| -> f64 {
        probe["probes"]
            .as_array()
            .expect("probe results")
            .iter()
            .find(|p| p["probe"] == name)
            .unwrap_or_else(|| panic!("probe {name} not measured: {probe}"))["ratio"]
            .as_f64()
            .expect("a ratio")
    };
    assert_eq!(ratio("black-on-white"), 21.0, "{probe}");
    assert_eq!(ratio("aa-grey-on-white"), 4.54, "{probe}");
    assert_eq!(ratio("lighter-grey-on-white"), 4.48, "{probe}");
    let link = ratio("dark-link-on-dark");
    assert_eq!(link, 1.72, "{probe}");
    let failures = contrast_failures("probe", probe);
    assert_eq!(failures.len(), 2, "text and link both fail: {failures:#?}");
    assert!(failures[0].contains("text contrast 4.48"), "{failures:#?}");
    assert!(
        failures[1].contains(&format!("link contrast {link}")),
        "{failures:#?}"
    );
}

async fn check_quiet_server(seen: &Value, quiet: &faultline::server::Running) {
    // Empty: how to send a first trace, with this server's own OTLP addresses.
    let empty = seen["empty_state"].as_str().unwrap_or_default();
    assert!(
        empty.contains(&format!("http://{}", quiet.otlp_http_address))
            && empty.contains(&quiet.otlp_grpc_address.to_string())
            && empty.contains("OTEL_EXPORTER_OTLP_ENDPOINT")
            && empty.contains("otlphttp"),
        "{empty}"
    );
    assert_eq!(seen["orphan_sent"], 200);
    // Inside the grace: a pending count, not an absence.
    assert_eq!(seen["quiet_pending_card"], 1, "{seen}");
    let pending = seen["pending_state"].as_str().unwrap_or_default();
    assert!(
        pending.contains("1 trajectory") && pending.contains("grace"),
        "{pending}"
    );
    assert_eq!(seen["quiet_list_pending"], 1);
    // The anomaly, from structured JSON.
    let (_, doc) = get_json(quiet, &format!("/api/v1/trajectories/{ORPHAN_TRACE}")).await;
    assert_eq!(
        doc["anomalies"][0],
        json!({
            "kind": "missing_parent",
            "span_id": "eee19b7ec3c1b174",
            "parent_span_id": "eee19b7ec3c1b173",
            "message": "the parent span eee19b7ec3c1b173 never arrived; this span hangs under the root"
        })
    );
    let shown = seen["anomalies"].as_array().expect("anomalies shown");
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["kind"], "missing_parent");
    let text = shown[0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("missing parent")
            && text.contains("eee19b7ec3c1b174")
            && text.contains("eee19b7ec3c1b173"),
        "{text}"
    );
    let (_, b) = get_json(quiet, "/api/v1/breakdown?window=1h").await;
    assert_eq!(b["pending_trajectories"], 1, "{b}");
    assert_eq!(b["totals"]["trajectories"], 0, "{b}");
}
