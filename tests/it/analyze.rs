//! `faultline analyze` on the simulator's files, run as the binary: gates, formats,
//! zstd, malformed input, and the replay check against live ingest.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use faultline::simulate::{read_length_prefixed, SimulateOptions};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;

use crate::support::{get_json, now_nanos, start_server_with};

/// Writes `runs` simulated runs with the library, as `faultline simulate --out` does.
async fn simulate(dir: &Path, runs: u64, seed: u64) {
    let args = SimulateOptions {
        seed,
        runs: Some(runs),
        out: Some(dir.to_path_buf()),
        target: None,
        protocol: None,
        rate: 20.0,
        duration: None,
        batch_spans: 350,
        allow_remote: false,
        // Within the server's horizon, in the past.
        start_unix_nano: Some(now_nanos() - 30 * 60 * 1_000_000_000),
        fault_rate: 0.03,
        recovered_rate: 0.05,
        conventions: Vec::new(),
    };
    faultline::simulate::run(&args).await.expect("simulate");
    for name in [
        "traces.otlp.pb",
        "traces.otlp.jsonl",
        "logs.otlp.pb",
        "logs.otlp.jsonl",
        "labels.jsonl",
    ] {
        assert!(dir.join(name).exists(), "the simulator writes {name}");
    }
}

async fn analyze(args: &[&str], files: &[PathBuf]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("analyze")
        .args(args)
        .args(files)
        .env("FAULTLINE_LOG", "warn")
        .output()
        .await
        .expect("the binary runs")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn files(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(|n| dir.join(n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_pass_and_fail_with_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    simulate(dir.path(), 300, 31).await;
    let input = files(dir.path(), &["traces.otlp.pb", "logs.otlp.pb"]);

    let out = analyze(&["--json"], &input).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json_of(&out);
    let totals = &report["breakdown"]["totals"];
    assert_eq!(totals["trajectories"], 300);
    let failure_rate = totals["failure_rate"].as_f64().expect("rate");
    assert!(failure_rate > 0.0);
    let top = &report["root_causes"][0];
    let step = top["step"].as_str().expect("a blamed step");
    let step_rate: f64 = report["root_causes"]
        .as_array()
        .expect("root causes")
        .iter()
        .filter(|r| r["step"] == step)
        .map(|r| r["rate"].as_f64().expect("rate"))
        .sum();

    // Generous limits pass.
    let loose_step = format!("{step}={:.4}", (step_rate + 0.01).min(1.0));
    let loose_rate = format!("{:.4}", (failure_rate + 0.01).min(1.0));
    let out = analyze(
        &[
            "--max-failure-rate",
            &loose_rate,
            "--max-root-cause-rate",
            &loose_step,
        ],
        &input,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("TOP ROOT CAUSES") && text.contains("GATES"),
        "{text}"
    );
    assert!(!text.contains("FAIL "), "{text}");

    // A step gate below the step's rate fails with exit code 1, and says which.
    let tight = format!("{step}={:.4}", step_rate / 2.0);
    let out = analyze(
        &[
            "--json",
            "--max-root-cause-rate",
            &tight,
            "--max-failure-rate",
            "1",
        ],
        &input,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["passed"], false);
    let failed: Vec<&Value> = report["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .filter(|g| g["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["step"], step);

    // The overall failure-rate gate.
    let tight = format!("{:.4}", failure_rate / 2.0);
    let out = analyze(&["--max-failure-rate", &tight], &input).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  failed / trajectories"));

    // A bad gate argument is a usage error.
    let out = analyze(&["--max-root-cause-rate", "retriever"], &input).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_proto_and_zstd_give_the_same_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    simulate(dir.path(), 200, 32).await;
    for name in ["traces.otlp.pb", "logs.otlp.jsonl"] {
        let raw = std::fs::read(dir.path().join(name)).expect("read");
        let packed = zstd::encode_all(&raw[..], 3).expect("zstd");
        std::fs::write(dir.path().join(format!("{name}.zst")), packed).expect("write");
    }
    let proto = analyze(
        &["--json"],
        &files(dir.path(), &["traces.otlp.pb", "logs.otlp.pb"]),
    )
    .await;
    let json = analyze(
        &["--json"],
        &files(dir.path(), &["traces.otlp.jsonl", "logs.otlp.jsonl"]),
    )
    .await;
    let zstd = analyze(
        &["--json"],
        &files(dir.path(), &["traces.otlp.pb.zst", "logs.otlp.jsonl.zst"]),
    )
    .await;
    let (proto, json, zstd) = (json_of(&proto), json_of(&json), json_of(&zstd));
    assert_eq!(proto["breakdown"]["totals"]["trajectories"], 200);
    assert_eq!(proto["breakdown"], json["breakdown"]);
    assert_eq!(proto["breakdown"], zstd["breakdown"]);
    assert_eq!(proto["root_causes"], json["root_causes"]);
    assert_eq!(zstd["files"][0]["compression"], "zstd");
    assert_eq!(zstd["files"][0]["format"], "proto");
    assert_eq!(zstd["files"][1]["format"], "json");
    assert!(
        proto["files"][1]["log_records"].as_u64().expect("logs") > 0,
        "evaluation logs are read from the proto logs file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_files_name_the_file_and_offset_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    simulate(dir.path(), 80, 33).await;
    let raw = std::fs::read(dir.path().join("traces.otlp.pb")).expect("read");
    let first = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
    // Keep the first record whole, then corrupt the second one's body.
    let mut bad = raw.clone();
    let second = 4 + first;
    for b in bad.iter_mut().skip(second + 4).take(16) {
        *b = 0xff;
    }
    let path = dir.path().join("corrupt.otlp.pb");
    std::fs::write(&path, &bad).expect("write");
    let out = analyze(&[], std::slice::from_ref(&path)).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt.otlp.pb"), "{err}");
    assert!(err.contains(&format!("byte offset {second}")), "{err}");

    let path = dir.path().join("broken.jsonl");
    std::fs::write(&path, "{\"resourceSpans\": [\n").expect("write");
    let out = analyze(&[], std::slice::from_ref(&path)).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.jsonl: line 1"), "{err}");
}

/// The breakdown of a server, polled until it counts `expected` trajectories, has none
/// pending in the late-data grace, and reads the same three times in a row (500 ms
/// apart), so a late revision still in flight cannot slip past the comparison.
async fn live_breakdown(
    running: &faultline::server::Running,
    from: u64,
    to: u64,
    expected: u64,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let path = format!("/api/v1/breakdown?from={from}&to={to}");
    let mut last: Option<Value> = None;
    let mut same = 0;
    loop {
        let (status, body) = get_json(running, &path).await;
        assert_eq!(status, 200, "{body}");
        let n = body["totals"]["trajectories"].as_u64().unwrap_or(0);
        let pending = body["pending_trajectories"].as_u64().unwrap_or(0);
        if n == expected && pending == 0 && last.as_ref() == Some(&body) {
            same += 1;
            if same == 2 {
                return body;
            }
        } else {
            same = 0;
        }
        assert!(
            n <= expected,
            "the server counted {n} of {expected} trajectories"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the breakdown did not settle: {n} of {expected} trajectories, {pending} pending"
        );
        last = Some(body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sends a file's requests over OTLP/HTTP in file order.
async fn replay(running: &faultline::server::Running, dir: &Path) {
    let client = reqwest::Client::new();
    let base = format!("http://{}", running.otlp_http_address);
    let traces = std::fs::read(dir.join("traces.otlp.pb")).expect("read");
    let logs = std::fs::read(dir.join("logs.otlp.pb")).expect("read");
    let traces: Vec<ExportTraceServiceRequest> = read_length_prefixed(&traces).expect("traces");
    let logs: Vec<ExportLogsServiceRequest> = read_length_prefixed(&logs).expect("logs");
    let bodies = traces
        .iter()
        .map(|r| ("/v1/traces", r.encode_to_vec()))
        .chain(logs.iter().map(|r| ("/v1/logs", r.encode_to_vec())));
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_offline_and_live_give_identical_breakdowns() {
    let dir = tempfile::tempdir().expect("tempdir");
    simulate(dir.path(), 250, 34).await;
    let input = files(dir.path(), &["traces.otlp.pb", "logs.otlp.pb"]);

    // The same file analysed twice: the same report.
    let first = json_of(&analyze(&["--json"], &input).await);
    let second = json_of(&analyze(&["--json"], &input).await);
    assert_eq!(first, second, "offline analysis is deterministic");
    let offline = &first["breakdown"];
    let expected = offline["totals"]["trajectories"].as_u64().expect("count");
    assert_eq!(expected, 250);

    // The same file sent twice to a live server: duplicates are merged, not counted
    // twice. A long idle timeout keeps each trace open until all of its data arrived,
    // as the offline analysis sees it.
    let running = start_server_with(faultline::config::FileConfig::default(), "5s").await;
    replay(&running, dir.path()).await;
    replay(&running, dir.path()).await;
    let from = offline["window"]["from_unix_nano"].as_u64().expect("from");
    let to = offline["window"]["to_unix_nano"].as_u64().expect("to");
    let live = live_breakdown(&running, from, to, expected).await;
    running.shutdown().await;

    assert_eq!(live["window"], offline["window"]);
    assert_eq!(live["totals"], offline["totals"]);
    assert_eq!(
        live["steps"], offline["steps"],
        "per-step counts and latencies"
    );
    assert_eq!(live["trajectories"], offline["trajectories"]);
}
