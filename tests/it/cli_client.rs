//! The client commands (`top`, `trajectories`, `show`, `reasons`) run as the binary
//! against a server fed with simulated runs, their errors, and `faultline demo`.

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::api::feed;
use crate::support::{get_json, start_server};

async fn faultline(server: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env("FAULTLINE_SERVER", server)
        .env("FAULTLINE_LOG", "warn")
        .output()
        .await
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// Waits until the server's breakdown counts `n` trajectories (counted at the end of
/// their late grace).
async fn wait_counted(running: &faultline::server::Running, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = get_json(running, "/api/v1/breakdown?window=1h").await;
        let counted = body["totals"]["trajectories"].as_u64().unwrap_or(0);
        if counted >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {counted} of {n} trajectories counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_read_a_running_server() {
    let running = start_server("300ms").await;
    let labels = feed(&running, 80, 41).await;
    wait_counted(&running, labels.len() as u64).await;
    let server = format!("http://{}", running.api_address);

    // top --once: the step table; --json: the API's breakdown as is.
    let out = faultline(&server, &["top", "--once", "--window", "1h"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("trajectories 80"), "{text}");
    assert!(text.contains("STEP") && text.contains("ROOT%"), "{text}");
    let out = faultline(&server, &["top", "--once", "--json", "--window", "1h"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_of(&out)["totals"]["trajectories"], 80);
    let out = faultline(&server, &["top", "--once", "--by", "model"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("model="), "{}", stdout(&out));

    // trajectories --outcome failed: only failed runs, all of them.
    let (_, api) = get_json(&running, "/api/v1/trajectories?outcome=failed&limit=1000").await;
    let failed = api["trajectories"].as_array().expect("list").len();
    assert!(failed > 0, "the feed plants failures");
    let out = faultline(
        &server,
        &["trajectories", "--outcome", "failed", "--limit", "1000"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), failed, "{text}");
    assert!(rows.iter().all(|r| r.contains(" failed")), "{text}");
    let out = faultline(
        &server,
        &[
            "trajectories",
            "--outcome",
            "failed",
            "--limit",
            "2",
            "--json",
        ],
    )
    .await;
    let page = json_of(&out);
    assert_eq!(
        page["trajectories"].as_array().expect("page").len(),
        2.min(failed)
    );
    if failed > 2 {
        let cursor = page["next_cursor"].as_str().expect("a next page");
        let out = faultline(
            &server,
            &[
                "trajectories",
                "--outcome",
                "failed",
                "--limit",
                "2",
                "--cursor",
                cursor,
            ],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }

    // show <id>: the blamed span is marked, with its step.
    let blamed = api["trajectories"]
        .as_array()
        .expect("list")
        .iter()
        .find(|t| t["root_cause_step"].is_string())
        .expect("a failed run with a root cause");
    let id = blamed["trace_id"].as_str().expect("id");
    let step = blamed["root_cause_step"].as_str().expect("step");
    let (_, doc) = get_json(&running, &format!("/api/v1/trajectories/{id}")).await;
    let span_id = doc["root_cause"]["span_id"].as_str().expect("span");
    let span_name = doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["span_id"] == span_id)
        .and_then(|s| s["name"].as_str())
        .expect("blamed span");
    let out = faultline(&server, &["show", id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("ROOT CAUSE  {step} — ")), "{text}");
    let marked: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("◀ ROOT CAUSE"))
        .collect();
    assert_eq!(marked.len(), 1, "{text}");
    assert!(
        marked[0].contains(span_name) && marked[0].contains(step),
        "{text}"
    );
    assert!(
        text.contains("EVIDENCE") && text.contains("FINDINGS"),
        "{text}"
    );
    let out = faultline(&server, &["show", id, "--json"]).await;
    assert_eq!(json_of(&out)["trace_id"], id);

    // reasons.
    let out = faultline(&server, &["reasons", "--window", "1h", "--limit", "5"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("PATTERN"), "{}", stdout(&out));
    let out = faultline(&server, &["reasons", "--json"]).await;
    assert!(json_of(&out)["reasons"].is_array());

    // The server's own message on a bad request, exit code 2.
    let out = faultline(&server, &["trajectories", "--outcome", "bogus"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`outcome` must be"),
        "{}",
        stderr(&out)
    );
    let out = faultline(&server, &["show", "00000000000000000000000000000abc"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no trajectory"), "{}", stderr(&out));
    let out = faultline(&server, &["top", "--once", "--window", "soon"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a duration"), "{}", stderr(&out));

    // --server wins over the environment.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["top", "--once", "--json", "--server", &server])
        .env("FAULTLINE_SERVER", "http://127.0.0.1:1")
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_exit_1_naming_the_url() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["top", "--once"],
        vec!["trajectories"],
        vec!["show", "4bf92f3577b34da6a3ce929d0e0e4736"],
        vec!["reasons"],
        vec!["cohorts"],
    ] {
        let out = faultline(&url, &args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(&url), "{args:?}: {}", stderr(&out));
    }
    // An https server is reached the same way (TLS options: tests/it/security.rs).
    let https = format!("https://127.0.0.1:{port}");
    let out = faultline(&https, &["top", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&https), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_populates_the_page_within_30_seconds_and_stops_on_ctrl_c() {
    let _heavy = crate::support::heavy().await;
    let started = tokio::time::Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "demo",
            "--backfill",
            "15m",
            "--duration",
            "120s",
            "--api-address",
            "127.0.0.1:0",
            "--otlp-grpc-address",
            "127.0.0.1:0",
            "--otlp-http-address",
            "127.0.0.1:0",
        ])
        .env("FAULTLINE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("demo starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut page = None;
    let mut data_dir = None;
    while page.is_none() || data_dir.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the demo prints its addresses")
            .expect("stdout")
            .expect("more output");
        if let Some(url) = line.trim().strip_prefix("web page") {
            page = Some(url.trim().to_owned());
        }
        if let Some(dir) = line.trim().strip_prefix("data dir") {
            let dir = dir.trim().trim_end_matches(" (removed on exit)").to_owned();
            data_dir = Some(std::path::PathBuf::from(dir));
        }
    }
    let (page, data_dir) = (page.expect("page"), data_dir.expect("dir"));
    assert!(page.starts_with("http://127.0.0.1:"), "{page}");
    assert!(data_dir.exists());
    // Keep reading stdout so the demo never blocks on a full pipe; keep it to check.
    let drain = tokio::spawn(async move {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(line);
        }
        rest
    });

    // The page and the breakdown it reads are populated within 30 seconds.
    let html = reqwest::get(&page)
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert!(html.contains("<html") || html.contains("<!doctype") || html.contains("<!DOCTYPE"));
    let breakdown = format!("{page}api/v1/breakdown?window=1h");
    loop {
        let body: Value = reqwest::get(&breakdown)
            .await
            .expect("API answers")
            .json()
            .await
            .expect("JSON");
        let n = body["totals"]["trajectories"].as_u64().unwrap_or(0);
        let failed = body["totals"]["failed"].as_u64().unwrap_or(0);
        if n >= 50 && failed > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the demo's page is not populated after 30 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Nothing the demo sent has a timestamp in the future.
    let list: Value = reqwest::get(format!("{page}api/v1/trajectories?limit=200"))
        .await
        .expect("API answers")
        .json()
        .await
        .expect("JSON");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let listed = list["trajectories"].as_array().expect("list");
    assert!(!listed.is_empty());
    for t in listed {
        let end = t["end_unix_nano"].as_u64().expect("end");
        assert!(end <= now, "ends in the future: {t}");
    }

    // Ctrl-C stops it cleanly and removes the data directory.
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the demo stops after Ctrl-C")
        .expect("wait");
    assert_eq!(exit.code(), Some(0));
    assert!(!data_dir.exists(), "the data directory is removed");
    let rest = tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("stdout closes")
        .expect("drained");
    // The backfill sends the number of runs it announces.
    let runs_in = |prefix: &str| -> String {
        let line = rest
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in {rest:?}"));
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        match prefix {
            "Backfilling" => digits(line.split('(').nth(1).unwrap_or_default()),
            _ => digits(line.split(" runs").next().unwrap_or_default()),
        }
    };
    assert_eq!(runs_in("Backfilling"), "1800", "{rest:?}");
    assert_eq!(runs_in("Backfilled"), "1800", "{rest:?}");
}
