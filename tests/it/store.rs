//! The store through the API (filters, sort, cursor, sessions, hostile input, the
//! OpenAPI document) and the crash test: the real binary killed with SIGKILL, restarted
//! on the same data directory.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use faultline::config::FileConfig;
use faultline::model::Outcome;
use faultline::simulate::{Label, Scenario, SimConfig, Simulator};
use prost::Message;
use serde_json::Value;

use crate::support::{api_url, fresh_data_dir, get_json, now_nanos, start_server_with, ServeChild};

/// Sends `n` simulated runs to an OTLP/HTTP base URL; returns their labels. Stops early
/// when the server stops answering, returning the runs sent so far with the one in
/// flight (the write-ahead log may hold a request whose answer the kill cut off).
async fn feed_to(base: &str, n: usize, seed: u64) -> Vec<Label> {
    let mut sim = Simulator::new(SimConfig {
        scenario: Scenario::uniform(0.04, 0.08),
        ..SimConfig::new(seed, now_nanos() - 600_000_000_000)
    });
    let client = reqwest::Client::new();
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
            let sent = client
                .post(format!("{base}{path}"))
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 200 => {}
                _ => {
                    labels.push(run.label);
                    return labels;
                }
            }
        }
        labels.push(run.label);
    }
    labels
}

async fn get(url: &str) -> (u16, Value) {
    match reqwest::get(url).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Every trace id listed, following cursors.
async fn list_all(api: &str, filter: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{api}/api/v1/trajectories?limit=100&{filter}&cursor={c}"),
            None => format!("{api}/api/v1/trajectories?limit=100&{filter}"),
        };
        let (status, body) = get(&url).await;
        assert_eq!(status, 200, "{url}: {body}");
        out.extend(
            body["trajectories"]
                .as_array()
                .expect("list")
                .iter()
                .cloned(),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

async fn wait_listed(api: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let listed = list_all(api, "").await.len();
        if listed >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {listed} of {n} stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(list: &[Value]) -> HashSet<String> {
    list.iter()
        .map(|t| t["trace_id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_sort_cursor_sessions_and_bad_input() {
    // A small memory list, so most trajectories are read back from the store.
    let running = start_server_with(
        FileConfig {
            top: faultline::config::RawTopLevel {
                recent_trajectories: Some(5),
                ..Default::default()
            },
            ..FileConfig::default()
        },
        "300ms",
    )
    .await;
    let base = format!("http://{}", running.otlp_http_address);
    let labels = feed_to(&base, 80, 21).await;
    assert_eq!(labels.len(), 80);
    let api = format!("http://{}", running.api_address);
    wait_listed(&api, labels.len()).await;

    let all = list_all(&api, "").await;
    assert_eq!(
        ids(&all),
        labels.iter().map(|l| l.trace_id.clone()).collect()
    );
    let ends: Vec<u64> = all
        .iter()
        .map(|t| t["end_unix_nano"].as_u64().unwrap())
        .collect();
    assert!(ends.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let expect = |f: &dyn Fn(&Label) -> bool| -> HashSet<String> {
        labels
            .iter()
            .filter(|l| f(l))
            .map(|l| l.trace_id.clone())
            .collect()
    };
    assert_eq!(
        ids(&list_all(&api, "outcome=failed").await),
        expect(&|l| l.outcome == Outcome::Failed)
    );
    assert_eq!(
        ids(&list_all(&api, "outcome=recovered").await),
        expect(&|l| l.outcome == Outcome::Recovered)
    );
    // Root-cause step, finding kind and step: every row holds, none is missing.
    for t in all.iter().filter(|t| t["outcome"] == "failed").take(3) {
        let step = t["root_cause_step"].as_str().expect("blamed step");
        let listed = list_all(&api, &format!("root_cause_step={step}")).await;
        let want: HashSet<String> = all
            .iter()
            .filter(|x| x["root_cause_step"] == step)
            .map(|x| x["trace_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids(&listed), want);
        let kind = t["root_cause_kind"].as_str().expect("kind");
        let (_, doc) = get(&format!(
            "{api}/api/v1/trajectories/{}",
            t["trace_id"].as_str().unwrap()
        ))
        .await;
        let with_kind = list_all(&api, &format!("finding_kind={kind}")).await;
        assert!(
            doc["findings"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["kind"] != kind)
                || ids(&with_kind).contains(t["trace_id"].as_str().unwrap())
        );
    }
    let with_generator = list_all(&api, "step=generator").await;
    assert!(!with_generator.is_empty());
    assert!(list_all(&api, "step=no_such_step").await.is_empty());

    // Cohort dimensions, dotted and bare, agree; every listed one carries the value.
    let doc = {
        let id = all[0]["trace_id"].as_str().unwrap();
        get(&format!("{api}/api/v1/trajectories/{id}?attributes=true"))
            .await
            .1
    };
    let service = doc["service"].as_str().expect("service").to_owned();
    let dotted = list_all(&api, &format!("dim.service={service}")).await;
    let bare = list_all(&api, &format!("service={service}")).await;
    assert!(!dotted.is_empty());
    assert_eq!(ids(&dotted), ids(&bare));
    assert!(dotted.iter().all(|t| t["service"] == service.as_str()));
    let model = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| {
            s["attributes"]["gen_ai.request.model"]
                .as_str()
                .or(s["attributes"]["llm.model_name"].as_str())
        })
        .map(str::to_owned);
    if let Some(model) = model {
        let by_model = list_all(&api, &format!("model={model}")).await;
        assert!(ids(&by_model).contains(all[0]["trace_id"].as_str().unwrap()));
        assert_eq!(
            ids(&by_model),
            ids(&list_all(&api, &format!("dim.model={model}")).await)
        );
    }

    // Time range on the end time.
    let mid = ends[ends.len() / 2];
    let newer = list_all(&api, &format!("from={mid}")).await;
    let older = list_all(&api, &format!("to={mid}")).await;
    assert_eq!(newer.len() + older.len(), all.len());
    assert!(newer
        .iter()
        .all(|t| t["end_unix_nano"].as_u64().unwrap() >= mid));

    // Duration ascending, paged by cursor.
    let by_duration = list_all(&api, "sort=duration&order=asc").await;
    assert_eq!(ids(&by_duration), ids(&all));
    let durations: Vec<u64> = by_duration
        .iter()
        .map(|t| t["end_unix_nano"].as_u64().unwrap() - t["start_unix_nano"].as_u64().unwrap())
        .collect();
    assert!(durations.windows(2).all(|w| w[0] <= w[1]));

    // Text in reasons: a word of a real reason finds its trajectory.
    let failed_id = all.iter().find(|t| t["outcome"] == "failed").unwrap()["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, failed_doc) = get(&format!("{api}/api/v1/trajectories/{failed_id}")).await;
    let word = failed_doc["root_cause"]["reason"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .max_by_key(|w| w.len())
        .unwrap()
        .to_uppercase();
    let found = list_all(&api, &format!("q={}", urlencode(&word))).await;
    assert!(ids(&found).contains(&failed_id), "q={word}");

    // A trajectory no longer in memory comes from the store, same shape.
    let oldest = all.last().unwrap();
    let (status, t) = get(&format!(
        "{api}/api/v1/trajectories/{}",
        oldest["trace_id"].as_str().unwrap()
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(t["trace_id"], oldest["trace_id"]);
    assert_eq!(t["outcome"], oldest["outcome"]);
    assert_eq!(
        t["steps"].as_array().unwrap().len() as u64,
        oldest["span_count"].as_u64().unwrap()
    );
    assert!(t["steps"][0].get("attributes").is_none());
    let (_, t) = get(&format!(
        "{api}/api/v1/trajectories/{}?attributes=true",
        oldest["trace_id"].as_str().unwrap()
    ))
    .await;
    assert!(t["steps"][0]["attributes"].is_object());

    // Sessions.
    if let Some(session) = all.iter().find_map(|t| t["session_id"].as_str()) {
        let (status, body) = get(&format!("{api}/api/v1/sessions/{}", urlencode(session))).await;
        assert_eq!(status, 200, "{body}");
        let members = body["trajectories"].as_array().unwrap();
        let want: HashSet<String> = all
            .iter()
            .filter(|t| t["session_id"] == session)
            .map(|t| t["trace_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids(members), want);
        let starts: Vec<u64> = members
            .iter()
            .map(|t| t["start_unix_nano"].as_u64().unwrap())
            .collect();
        assert!(starts.windows(2).all(|w| w[0] <= w[1]));
    }
    let (status, body) = get(&format!("{api}/api/v1/sessions/no-such-session")).await;
    assert_eq!(status, 200);
    assert_eq!(body["trajectories"].as_array().unwrap().len(), 0);

    // Limits are clamped.
    let (status, body) = get(&format!("{api}/api/v1/trajectories?limit=-1")).await;
    assert_eq!(status, 200);
    assert_eq!(body["trajectories"].as_array().unwrap().len(), 1);
    let (status, body) = get(&format!("{api}/api/v1/trajectories?limit=1000000000000")).await;
    assert_eq!(status, 200);
    assert_eq!(body["trajectories"].as_array().unwrap().len(), 80);

    // Injection strings are values: 200 and nothing matches; the table is intact.
    for evil in [
        "' OR 1=1--",
        "%",
        "_",
        "x'); DROP TABLE trajectories;--",
        "\" OR \"1\"=\"1",
    ] {
        for key in [
            "step",
            "finding_kind",
            "root_cause_step",
            "service",
            "session_id",
            "dim.model",
            "model",
        ] {
            let url = format!("{api}/api/v1/trajectories?{key}={}", urlencode(evil));
            let (status, body) = get(&url).await;
            assert_eq!(status, 200, "{url}");
            assert_eq!(body["trajectories"].as_array().unwrap().len(), 0, "{url}");
        }
        let (status, _) = get(&format!("{api}/api/v1/sessions/{}", urlencode(evil))).await;
        assert_eq!(status, 200);
    }
    let (_, body) = get(&format!("{api}/api/v1/trajectories?q={}", urlencode("%"))).await;
    assert!(body["trajectories"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["finding_count"].as_u64() > Some(0)));
    assert_eq!(list_all(&api, "").await.len(), 80, "nothing was deleted");

    // Bad input: 400 with a message naming the problem.
    for (path, needle) in [
        ("/api/v1/trajectories?colour=red", "colour"),
        ("/api/v1/trajectories?dim.colour=red", "colour"),
        ("/api/v1/trajectories?sort=name", "sort"),
        ("/api/v1/trajectories?sort=end;DROP", "sort"),
        ("/api/v1/trajectories?order=up", "order"),
        ("/api/v1/trajectories?limit=ten", "limit"),
        ("/api/v1/trajectories?from=yesterday", "from"),
        ("/api/v1/trajectories?from=10&to=5", "from"),
        ("/api/v1/trajectories?cursor=abc", "cursor"),
        ("/api/v1/trajectories?outcome=maybe", "outcome"),
        ("/api/v1/trajectories?step=a&step=b", "step"),
        ("/api/v1/trajectories/xyz", "trace_id"),
        (
            "/api/v1/trajectories/0123456789abcdef0123456789abcdef?attributes=maybe",
            "attributes",
        ),
        ("/api/v1/sessions/s?colour=red", "colour"),
        ("/api/v1/sessions/s?limit=x", "limit"),
    ] {
        let (status, body) = get_json(&running, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{path}: {msg}");
    }
    // A cursor of another sort is refused.
    let (_, page) = get(&format!("{api}/api/v1/trajectories?limit=2")).await;
    let c = page["next_cursor"].as_str().unwrap();
    let (status, _) = get(&format!(
        "{api}/api/v1/trajectories?limit=2&sort=duration&cursor={c}"
    ))
    .await;
    assert_eq!(status, 400);
    let (status, _) = get_json(
        &running,
        "/api/v1/trajectories/0123456789abcdef0123456789abcdef",
    )
    .await;
    assert_eq!(status, 404);

    // The OpenAPI document is served as JSON.
    let resp = reqwest::get(api_url(&running, "/api/v1/openapi.json"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["paths"]["/api/v1/sessions/{session_id}"].is_object());

    running.shutdown().await;
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn start_binary(data_dir: &Path) -> ServeChild {
    start_binary_with(data_dir, "[store]\nsuccess_sample = 1.0\n", &[]).await
}

/// The binary on port 0 with `config` as its config file and `args` added; returns once
/// it serves and `/readyz` answers 200.
async fn start_binary_with(data_dir: &Path, config: &str, args: &[&str]) -> ServeChild {
    let config_path = data_dir.with_extension("toml");
    std::fs::create_dir_all(config_path.parent().expect("parent")).expect("dir");
    std::fs::write(&config_path, config).expect("config");
    let mut all = vec![
        "--config".into(),
        config_path.into_os_string(),
        "--data-dir".into(),
        data_dir.as_os_str().to_owned(),
    ];
    all.extend(
        [
            "--idle-timeout",
            "300ms",
            "--late-grace",
            "1s",
            "--shards",
            "2",
        ]
        .iter()
        .chain(args)
        .map(std::ffi::OsString::from),
    );
    ServeChild::start(all).await
}

/// A counter of the child's `/metrics`, 0 while it has no series yet.
async fn counter(child: &ServeChild, series: &str) -> u64 {
    child.metric(series).await.map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_kill_9_with_trajectories_and_counts_intact() {
    let _heavy = crate::support::heavy().await;
    let data_dir = fresh_data_dir();
    let from = now_nanos() - 3 * 3600 * 1_000_000_000;
    let to = now_nanos() + 3600 * 1_000_000_000;
    let breakdown_path = format!("/api/v1/breakdown?from={from}&to={to}&by=service");

    // 1. Traffic, then quiescence: everything analysed, finalized and committed.
    let child = start_binary(&data_dir).await;
    let labels = feed_to(&child.otlp_http, 60, 5).await;
    assert_eq!(labels.len(), 60);
    wait_listed(&child.api, 60).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while counter(&child, "faultline_store_writes_total{op=\"finalize\"}").await < 60 {
        assert!(tokio::time::Instant::now() < deadline, "not finalized");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before_list = list_all(&child.api, "").await;
    let (status, before) = get(&format!("{}{breakdown_path}", child.api)).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["totals"]["trajectories"], 60);
    child.kill9().await;

    // 2. Restart: every trajectory and the exact breakdown are back.
    let child = start_binary(&data_dir).await;
    let after_list = list_all(&child.api, "").await;
    assert_eq!(ids(&after_list), ids(&before_list));
    assert_eq!(after_list, before_list, "same rows, same order");
    let (_, after) = get(&format!("{}{breakdown_path}", child.api)).await;
    assert_eq!(after, before, "breakdown over the stored period");
    for t in before_list.iter().filter(|t| t["outcome"] == "failed") {
        let (status, doc) = get(&format!(
            "{}/api/v1/trajectories/{}",
            child.api,
            t["trace_id"].as_str().unwrap()
        ))
        .await;
        assert_eq!(status, 200);
        assert!(doc["root_cause"].is_object());
    }

    // 3. SIGKILL in the middle of ingest.
    let otlp = child.otlp_http.clone();
    let feeding = tokio::spawn(async move { feed_to(&otlp, 20_000, 6).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while counter(&child, "faultline_store_writes_total{op=\"put\"}").await < 80 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no writes during ingest"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill9().await;
    let sent = feeding.await.expect("feeder");
    assert!(
        sent.len() < 20_000,
        "killed mid-ingest ({} sent)",
        sent.len()
    );

    // 4. Restart: the database opens, everything committed before is there, and every
    // stored row reads back whole.
    let child = start_binary(&data_dir).await;
    let list = list_all(&child.api, "").await;
    let stored = ids(&list);
    assert!(ids(&before_list).is_subset(&stored));
    assert!(
        stored.len() >= 80,
        "writes committed during ingest survive: {}",
        stored.len()
    );
    let sent_ids: HashSet<String> = sent.iter().map(|l| l.trace_id.clone()).collect();
    assert!(stored
        .iter()
        .all(|id| ids(&before_list).contains(id) || sent_ids.contains(id)));
    for t in &list {
        let (status, doc) = get(&format!(
            "{}/api/v1/trajectories/{}",
            child.api,
            t["trace_id"].as_str().unwrap()
        ))
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            doc["steps"].as_array().unwrap().len() as u64,
            t["span_count"].as_u64().unwrap()
        );
    }
    let (_, counts) = get(&format!("{}{breakdown_path}", child.api)).await;
    assert!(counts["totals"]["trajectories"].as_u64().unwrap() >= 60);
    child.kill9().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn bad_data_dir_fails_startup_with_a_message() {
    let dir = fresh_data_dir();
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::fs::write(&dir, b"a file, not a directory").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("serve")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--otlp-grpc-address", "127.0.0.1:0"])
        .args(["--otlp-http-address", "127.0.0.1:0"])
        .args(["--api-address", "127.0.0.1:0"])
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--data-dir"), "{stderr}");
    assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
    let _ = std::fs::remove_file(&dir);
}

/// What one flood sender saw: runs acknowledged (their whole request answered 200) and
/// refusals, each of which must be retryable.
#[derive(Default)]
struct Flooded {
    acknowledged: usize,
    refused: usize,
}

/// Sends `requests` batches of about 1 000 spans (~10% of runs failing) to `base`,
/// retrying a refused batch as a collector does after `Retry-After`; fails on any
/// answer but 200 or a retryable 503 with `Retry-After`.
async fn flood(base: String, seed: u64, requests: usize) -> Flooded {
    let mut sim = Simulator::new(SimConfig {
        scenario: Scenario::uniform(0.0085, 0.03),
        ..SimConfig::new(seed, now_nanos() - 600_000_000_000)
    });
    let client = reqwest::Client::new();
    let mut out = Flooded::default();
    for _ in 0..requests {
        let batch = sim.next_batch(1000);
        let body = batch.traces.encode_to_vec();
        loop {
            let r = client
                .post(format!("{base}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(body.clone())
                .send()
                .await
                .expect("the server answers");
            match r.status().as_u16() {
                200 => {
                    out.acknowledged += batch.labels.len();
                    break;
                }
                503 => {
                    assert!(
                        r.headers().contains_key("retry-after"),
                        "a 503 without Retry-After"
                    );
                    out.refused += 1;
                    // A client's backoff, not a wait for a condition.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!(
                    "not retryable: {other} {}",
                    r.text().await.unwrap_or_default()
                ),
            }
        }
    }
    out
}

/// Issue 14, point 4: four senders flood the server (about 1 000-span requests, ~10% of
/// runs failing) with a small memory budget and a short store queue. Every failed and
/// recovered trajectory of an acknowledged request reaches the store: the stored rows
/// of each outcome equal the server's own count of that outcome, every acknowledged run
/// is counted, refusals are retryable, and the store dropped nothing (only successes may
/// be shed, and are counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_loses_no_acknowledged_failure_and_refusals_are_retryable() {
    let _heavy = crate::support::heavy().await;
    let data_dir = fresh_data_dir();
    let child = start_binary_with(
        &data_dir,
        "[store]\nsuccess_sample = 0.05\nqueue = 50\n",
        &["--max-memory-bytes", "100000000"],
    )
    .await;
    let senders: Vec<_> = (0..4u64)
        .map(|i| tokio::spawn(flood(child.otlp_http.clone(), 100 + i, 30)))
        .collect();
    let mut acknowledged = 0;
    let mut refused = 0;
    for s in senders {
        let f = s.await.expect("sender");
        acknowledged += f.acknowledged;
        refused += f.refused;
    }
    assert!(acknowledged > 1000, "{acknowledged} runs acknowledged");

    // Every acknowledged run is analysed and counted once its grace ends.
    let from = now_nanos() - 3 * 3600 * 1_000_000_000;
    let to = now_nanos() + 3600 * 1_000_000_000;
    let url = format!("{}/api/v1/breakdown?from={from}&to={to}", child.api);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let totals = loop {
        let (status, body) = get(&url).await;
        assert_eq!(status, 200, "{body}");
        if body["totals"]["trajectories"].as_u64() == Some(acknowledged as u64) {
            break body["totals"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counted {} of {acknowledged}",
            body["totals"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let failed = totals["failed"].as_u64().expect("failed");
    let recovered = totals["recovered"].as_u64().expect("recovered");
    assert!(failed > 50, "{totals}");

    // Every failed and recovered one reaches the store.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stored_failed = list_all(&child.api, "outcome=failed").await.len() as u64;
        let stored_recovered = list_all(&child.api, "outcome=recovered").await.len() as u64;
        if stored_failed == failed && stored_recovered == recovered {
            break;
        }
        assert!(
            stored_failed <= failed && stored_recovered <= recovered,
            "more stored than counted"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "stored {stored_failed} of {failed} failed, {stored_recovered} of {recovered} recovered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for reason in ["queue_full", "write_error", "encode_error"] {
        assert_eq!(
            counter(
                &child,
                &format!("faultline_store_dropped_total{{reason=\"{reason}\"}}")
            )
            .await,
            0,
            "{reason}"
        );
    }
    let shed = counter(&child, "faultline_store_dropped_total{reason=\"shed\"}").await;
    eprintln!("{acknowledged} runs acknowledged, {refused} requests refused (retried), {shed} successes shed");
    child.kill9().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A full disk at startup: the data directory on a 256 KiB tmpfs already filled, in a
/// private mount namespace (`unshare`, util-linux; a user namespace maps the caller to
/// root, so no privilege is needed where user namespaces are enabled). The error says
/// the disk is full and names the file; exit code 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_startup_is_named() {
    let dir = fresh_data_dir();
    std::fs::create_dir_all(&dir).expect("dir");
    let script = r#"mount -t tmpfs -o size=256k tmpfs "$1" || exit 97
cat /dev/zero > "$1/filler" 2>/dev/null
exec "$2" serve --data-dir "$1" --otlp-grpc-address 127.0.0.1:0 --otlp-http-address 127.0.0.1:0 --api-address 127.0.0.1:0"#;
    let out = tokio::process::Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&dir)
        .arg(env!("CARGO_BIN_EXE_faultline"))
        .kill_on_drop(true)
        .output()
        .await
        .expect("unshare (util-linux) is installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(97),
        "cannot mount a tmpfs: {stderr}"
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the disk is full"), "{stderr}");
    assert!(
        stderr.contains(&dir.join("faultline.db").display().to_string()),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A row in the format written before the store had its own document type (the API's
/// trajectory JSON, without a `version` field, as the store wrote it then): the real
/// binary, started on a data directory holding it, answers it exactly as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_written_in_the_first_document_format_reads_back_identically() {
    use faultline::store::record::{compress, Record, Summary};
    use faultline::store::{SqliteStore, Store, StoreConfig, Write};

    let fixture: &[u8] = include_bytes!("../data/store/trajectory-v1.json");
    let doc: Value = serde_json::from_slice(fixture).expect("fixture is JSON");
    assert!(
        doc.get("version").is_none(),
        "the fixture is the unversioned format"
    );
    let hex = doc["trace_id"].as_str().expect("trace id").to_owned();
    let trace_id = faultline::model::TraceId::from_hex(&hex).expect("trace id");
    let data_dir = fresh_data_dir();
    {
        let store = SqliteStore::open(&data_dir, StoreConfig::default()).expect("store");
        let summary = Summary {
            trace_id,
            session_id: doc["session_id"].as_str().map(str::to_owned),
            service: doc["service"].as_str().map(str::to_owned),
            start_unix_nano: doc["start_unix_nano"].as_u64().expect("start"),
            end_unix_nano: doc["end_unix_nano"].as_u64().expect("end"),
            complete: false,
            late_spans: 2,
            revision: 1,
            outcome: Outcome::Failed,
            root_cause_step: Some("tool".into()),
            root_cause_kind: Some("exception".into()),
            span_count: 5,
            finding_count: 4,
            root_cause_reason: doc["root_cause"]["reason"].as_str().map(str::to_owned),
            model: None,
            finalized: true,
        };
        let record = Record {
            summary,
            tags: vec!["o:failed".into()],
            reasons: String::new(),
            cohort: Vec::new(),
            body: compress(fixture).expect("compress"),
        };
        store
            .write(&[Write::Put(record), Write::Finalized(trace_id)])
            .expect("write the old row");
    }
    let child = start_binary(&data_dir).await;
    let url = format!("{}/api/v1/trajectories/{hex}", child.api);
    let (status, with) = get(&format!("{url}?attributes=true")).await;
    assert_eq!(status, 200, "{with}");
    assert_eq!(with, doc, "read back with attributes exactly as written");
    let (status, without) = get(&url).await;
    assert_eq!(status, 200, "{without}");
    let mut stripped = doc.clone();
    for step in stripped["steps"].as_array_mut().expect("steps") {
        step.as_object_mut().expect("step").remove("attributes");
    }
    assert_eq!(without, stripped, "read back without attributes");
}

/// The health line and the status of `/healthz` or `/readyz`.
async fn health(api: &str, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("{api}{path}")).await.expect("answers");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Polls `/healthz` (which must stay 200: liveness) until its line contains `wanted`
/// (or is exactly `ok` when `wanted` is "ok").
async fn wait_health(child: &ServeChild, wanted: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, line) = health(&child.api, "/healthz").await;
        assert_eq!(status, 200, "liveness stays up: {line}");
        if (wanted == "ok" && line == "ok\n") || (wanted != "ok" && line.contains(wanted)) {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never said {wanted:?}; still {line:?}\n{}",
            child.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `faultline serve` on `data_dir` expected to fail at startup: its exit code and
/// stderr. A server that starts instead is stopped after 60 s (the test then fails on
/// the exit code rather than hanging).
async fn serve_once(data_dir: &Path) -> (Option<i32>, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--otlp-grpc-address", "127.0.0.1:0"])
        .args(["--otlp-http-address", "127.0.0.1:0"])
        .args(["--api-address", "127.0.0.1:0"])
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(60), run).await {
        Ok(out) => {
            let out = out.expect("runs");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => (None, "still running after 60 s: it started".into()),
    }
}

/// Startup on `data_dir` stops with exit code 2 and a message naming `path` as not a
/// faultline store, telling the operator to move it away.
async fn refused_as_not_a_store(data_dir: &Path, path: &Path) {
    let (code, stderr) = serve_once(data_dir).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("not a faultline store or is corrupted"),
        "{stderr}"
    );
    assert!(stderr.contains("move it away"), "{stderr}");
}

/// Issue 14, point 8: the store file overwritten under a running server. Health says
/// `degraded` (200, the reason in the body and in `faultline_store_degraded`), lists
/// answer a clear 503, later writes are held and not counted as written; the restart on
/// that file (beside the SQLite `-wal` file the kill left) is a startup error (exit
/// code 2) naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_corrupted_while_running_is_degraded_and_not_written() {
    let _heavy = crate::support::heavy().await;
    let data_dir = fresh_data_dir();
    let child = start_binary(&data_dir).await;
    assert_eq!(health(&child.api, "/healthz").await, (200, "ok\n".into()));
    let labels = feed_to(&child.otlp_http, 20, 11).await;
    assert_eq!(labels.len(), 20);
    wait_listed(&child.api, 20).await;
    assert_eq!(
        counter(&child, "faultline_store_degraded{reason=\"corrupted\"}").await,
        0
    );

    let path = data_dir.join("faultline.db");
    let mut bytes = std::fs::read(&path).expect("db");
    bytes[..16].copy_from_slice(b"overwritten!!!!!");
    std::fs::write(&path, &bytes).expect("overwrite");
    let line = wait_health(&child, "corrupted").await;
    assert!(line.starts_with("degraded: store corrupted"), "{line}");
    assert!(line.contains("faultline.db"), "{line}");
    let (status, ready) = health(&child.api, "/readyz").await;
    assert_eq!(status, 200);
    assert!(ready.starts_with("degraded: store corrupted"), "{ready}");
    assert_eq!(
        counter(&child, "faultline_store_degraded{reason=\"corrupted\"}").await,
        1
    );
    let (status, body) = get(&format!("{}/api/v1/trajectories", child.api)).await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"].as_str().expect("error");
    assert!(
        message.contains("corrupted") && message.contains("faultline.db"),
        "{message}"
    );

    // Later trajectories are held, not written, and not counted as written.
    let puts = counter(&child, "faultline_store_writes_total{op=\"put\"}").await;
    assert_eq!(feed_to(&child.otlp_http, 10, 12).await.len(), 10);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while counter(&child, "faultline_store_queue").await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nothing held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        counter(&child, "faultline_store_writes_total{op=\"put\"}").await,
        puts
    );
    child.kill9().await;
    assert!(
        data_dir.join("faultline.db-wal").exists(),
        "the kill leaves SQLite's log beside the file"
    );

    // Restart on the corrupted file: a startup error naming it, exit code 2.
    refused_as_not_a_store(&data_dir, &path).await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A zero-length `faultline.db` is initialised with a warning naming it; a non-empty
/// file that is not a database (written over the store a killed run left, its SQLite
/// `-wal` file still there) stops startup with exit code 2, naming it, and is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_store_file_warns_and_a_foreign_file_stops_startup() {
    let _heavy = crate::support::heavy().await;
    let data_dir = fresh_data_dir();
    std::fs::create_dir_all(&data_dir).expect("dir");
    let path = data_dir.join("faultline.db");
    std::fs::write(&path, b"").expect("empty file");
    let child = start_binary(&data_dir).await;
    assert_eq!(feed_to(&child.otlp_http, 5, 13).await.len(), 5);
    wait_listed(&child.api, 5).await;
    let log = child.log_tail();
    child.kill9().await;
    assert!(
        log.contains("empty (zero bytes)") && log.contains(&path.display().to_string()),
        "{log}"
    );

    let notes = b"these are notes, not a database\n".repeat(200);
    std::fs::write(&path, &notes).expect("file");
    refused_as_not_a_store(&data_dir, &path).await;
    assert_eq!(
        std::fs::read(&path).expect("kept"),
        notes,
        "never overwritten"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Issue 14: `degraded: store behind` and `store failing` from a real server. Another
/// process holds the database's write lock (as a `sqlite3` shell in a `BEGIN EXCLUSIVE`
/// transaction or a backup tool would): the writer's transactions time out (failing),
/// and writes wait longer than the behind threshold (behind). Once the lock is
/// released, health is `ok` again and every trajectory acknowledged meanwhile is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_process_is_behind_and_failing_then_recovers() {
    let _heavy = crate::support::heavy().await;
    let data_dir = fresh_data_dir();
    let child = start_binary(&data_dir).await;
    assert_eq!(feed_to(&child.otlp_http, 10, 21).await.len(), 10);
    wait_listed(&child.api, 10).await;
    assert_eq!(health(&child.api, "/healthz").await, (200, "ok\n".into()));

    let lock = rusqlite::Connection::open(data_dir.join("faultline.db")).expect("opens");
    lock.execute_batch("BEGIN EXCLUSIVE;")
        .expect("takes the write lock");
    let later = feed_to(&child.otlp_http, 10, 22).await;
    assert_eq!(later.len(), 10);
    let failing = wait_health(&child, "store failing").await;
    assert!(failing.starts_with("degraded: "), "{failing}");
    assert!(failing.contains("locked"), "{failing}");
    let behind = wait_health(&child, "store behind").await;
    assert!(behind.contains("writes waiting"), "{behind}");
    let (status, ready) = health(&child.api, "/readyz").await;
    assert_eq!(status, 200);
    assert!(ready.starts_with("degraded: "), "{ready}");
    assert_eq!(
        counter(&child, "faultline_store_degraded{reason=\"failing\"}").await,
        1
    );
    assert!(counter(&child, "faultline_store_errors_total").await > 0);
    assert_eq!(
        counter(
            &child,
            "faultline_store_dropped_total{reason=\"write_error\"}"
        )
        .await,
        0
    );

    lock.execute_batch("ROLLBACK;").expect("releases the lock");
    drop(lock);
    // Every failed or recovered run is stored; successes may have been shed (counted)
    // while the store was failing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let listed = list_all(&child.api, "").await.len() as u64;
        let shed = counter(&child, "faultline_store_dropped_total{reason=\"shed\"}").await;
        if listed + shed >= 20 {
            assert_eq!(listed + shed, 20);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{listed} stored and {shed} shed of 20"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = ids(&list_all(&child.api, "").await);
    for l in later.iter().filter(|l| l.outcome != Outcome::Success) {
        assert!(stored.contains(&l.trace_id), "{} not stored", l.trace_id);
    }
    wait_health(&child, "ok").await;
    assert_eq!(
        counter(&child, "faultline_store_degraded{reason=\"failing\"}").await,
        0
    );
    assert_eq!(
        counter(&child, "faultline_store_degraded{reason=\"behind\"}").await,
        0
    );
    child.kill9().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
