//! The write-ahead log against the release binary as a child process: failed runs sent
//! over OTLP/gRPC and OTLP/HTTP (traces and logs) and acknowledged, then `kill -9` at
//! once and one second later; restarted on the same data directory, every acknowledged
//! run is listed and the breakdown's counts agree with the list. A segment ending in a
//! torn write is replayed up to the tear, with the tear counted.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use faultline::model::Outcome;
use faultline::simulate::{Scenario, SimConfig, Simulator};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use serde_json::Value;

use crate::support::{fresh_data_dir, heavy, now_nanos, ServeChild};

async fn start_binary(data_dir: &Path) -> ServeChild {
    let config = data_dir.with_extension("toml");
    std::fs::write(&config, "[store]\nsuccess_sample = 1.0\n").expect("config");
    let mut args = vec![
        "--config".into(),
        config.into_os_string(),
        "--data-dir".into(),
        data_dir.as_os_str().to_owned(),
    ];
    // Runs are released half a second after their last span and finalized two seconds
    // later: a kill one second after the acknowledgements finds them published (listed,
    // pending) but not counted.
    args.extend(
        [
            "--idle-timeout",
            "500ms",
            "--late-grace",
            "2s",
            "--shards",
            "2",
        ]
        .map(std::ffi::OsString::from),
    );
    ServeChild::start(args).await
}

/// A counter of the child's `/metrics`, 0 while it has no series yet.
async fn counter(child: &ServeChild, series: &str) -> f64 {
    child.metric(series).await.unwrap_or(0.0)
}

/// Sends `n` failed simulated runs, even ones over OTLP/HTTP and odd ones over
/// OTLP/gRPC (their log records too), and returns their trace ids once every request
/// was acknowledged.
async fn send_failed_runs(child: &ServeChild, n: usize, seed: u64) -> Vec<String> {
    let mut sim = Simulator::new(SimConfig {
        scenario: Scenario::uniform(0.2, 0.0),
        ..SimConfig::new(seed, now_nanos() - 300_000_000_000)
    });
    let http = reqwest::Client::new();
    let channel = tonic::transport::Channel::from_shared(child.otlp_grpc.clone())
        .expect("uri")
        .connect()
        .await
        .expect("gRPC connects");
    let mut traces = TraceServiceClient::new(channel.clone());
    let mut logs = LogsServiceClient::new(channel);
    let mut ids = Vec::new();
    while ids.len() < n {
        let run = sim.next_run();
        if run.label.outcome != Outcome::Failed {
            continue;
        }
        let mut requests = vec![run.traces];
        requests.extend(run.late_traces);
        if ids.len() % 2 == 0 {
            for r in requests {
                post(
                    &http,
                    &format!("{}/v1/traces", child.otlp_http),
                    r.encode_to_vec(),
                )
                .await;
            }
            if let Some(l) = run.logs {
                post(
                    &http,
                    &format!("{}/v1/logs", child.otlp_http),
                    l.encode_to_vec(),
                )
                .await;
            }
        } else {
            for r in requests {
                let answer = traces.export(r).await.expect("gRPC traces acknowledged");
                assert!(answer.get_ref().partial_success.is_none());
            }
            if let Some(l) = run.logs {
                logs.export(l).await.expect("gRPC logs acknowledged");
            }
        }
        ids.push(run.label.trace_id);
    }
    ids
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) {
    let r = client
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("OTLP/HTTP answers");
    assert_eq!(r.status(), 200, "{url} acknowledged");
}

async fn get(url: &str) -> Value {
    let r = reqwest::get(url).await.expect("API answers");
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.expect("JSON")
}

async fn list_all(api: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{api}/api/v1/trajectories?limit=100&cursor={c}"),
            None => format!("{api}/api/v1/trajectories?limit=100"),
        };
        let body = get(&url).await;
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

/// Polls until every sent run is listed, none is pending, and the breakdown counts what
/// the list holds; panics with the last state at the deadline.
async fn wait_all_listed_and_counted(child: &ServeChild, sent: &[String]) {
    let from = now_nanos() - 3 * 3600 * 1_000_000_000;
    let to = now_nanos() + 3600 * 1_000_000_000;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let list = list_all(&child.api).await;
        let listed: HashSet<&str> = list.iter().filter_map(|t| t["trace_id"].as_str()).collect();
        let missing = sent
            .iter()
            .filter(|id| !listed.contains(id.as_str()))
            .count();
        let pending = list.iter().filter(|t| t["pending"] == true).count();
        let failed_listed = list.iter().filter(|t| t["outcome"] == "failed").count() as u64;
        let breakdown = get(&format!(
            "{}/api/v1/breakdown?from={from}&to={to}&by=service",
            child.api
        ))
        .await;
        let totals = &breakdown["totals"];
        let counted = totals["trajectories"].as_u64().unwrap_or(0);
        let failed_counted = totals["failed"].as_u64().unwrap_or(0);
        if missing == 0
            && pending == 0
            && counted == list.len() as u64
            && failed_counted == failed_listed
        {
            assert_eq!(list.len(), sent.len(), "nothing listed twice or invented");
            assert!(failed_listed > 0);
            return;
        }
        let last = format!(
            "{missing} of {} missing, {pending} pending, {} listed ({failed_listed} failed), \
             breakdown {counted} ({failed_counted} failed)",
            sent.len(),
            list.len()
        );
        assert!(tokio::time::Instant::now() < deadline, "{last}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn kill_after_acks_and_restart(delay: Duration, tear: bool, seed: u64) {
    const RUNS: usize = 300;
    let data_dir = fresh_data_dir();
    let child = start_binary(&data_dir).await;
    let sent = send_failed_runs(&child, RUNS, seed).await;
    assert_eq!(sent.len(), RUNS);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    child.kill9().await;

    let wal_dir = data_dir.join("wal");
    let segments: Vec<_> = std::fs::read_dir(&wal_dir)
        .expect("the log's directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    assert!(!segments.is_empty(), "segments under {}", wal_dir.display());
    if tear {
        // A write cut by the crash: a frame header announcing 4 KiB, then 10 bytes.
        let last = segments.iter().max().expect("a segment");
        let mut bytes = std::fs::read(last).expect("segment");
        bytes.extend_from_slice(&4096u32.to_le_bytes());
        bytes.extend_from_slice(&[0xab; 14]);
        std::fs::write(last, bytes).expect("tear the tail");
    }

    let child = start_binary(&data_dir).await;
    assert!(
        counter(&child, "faultline_wal_replayed_records_total").await > 0.0,
        "the restart replayed the log"
    );
    assert_eq!(
        counter(&child, "faultline_wal_corrupt_segments_total").await,
        if tear { 1.0 } else { 0.0 }
    );
    wait_all_listed_and_counted(&child, &sent).await;

    // Once stored and counted, the segments of the first run are deleted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while segments.iter().any(|p| p.exists()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replayed segments were not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A second kill finds nothing more to replay and the same counts.
    let before = list_all(&child.api).await.len();
    child.kill9().await;
    let child = start_binary(&data_dir).await;
    assert_eq!(
        counter(&child, "faultline_wal_replayed_records_total").await,
        0.0
    );
    wait_all_listed_and_counted(&child, &sent).await;
    assert_eq!(list_all(&child.api).await.len(), before);
    child.kill9().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = std::fs::remove_file(data_dir.with_extension("toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_runs_survive_kill_9_at_once_with_a_torn_tail() {
    let _heavy = heavy().await;
    kill_after_acks_and_restart(Duration::ZERO, true, 71).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_runs_survive_kill_9_after_one_second() {
    let _heavy = heavy().await;
    kill_after_acks_and_restart(Duration::from_secs(1), false, 72).await;
}

/// `[wal] max_bytes`: with nothing stored (a ten-minute idle timeout), the log fills its
/// cap and then refuses requests retryably on both transports (503 + `Retry-After`,
/// `UNAVAILABLE`), counted, its segments staying under the cap. Everything it
/// acknowledged survives `kill -9` and is stored after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_refuses_retryably_and_keeps_what_it_acknowledged() {
    let _heavy = heavy().await;
    const MAX: u64 = 128 * 1024;
    let data_dir = fresh_data_dir();
    std::fs::create_dir_all(&data_dir).expect("dir");
    let config = data_dir.with_extension("toml");
    std::fs::write(&config, "[store]\nsuccess_sample = 1.0\n").expect("config");
    let mut args: Vec<std::ffi::OsString> = vec![
        "--config".into(),
        config.clone().into_os_string(),
        "--data-dir".into(),
        data_dir.as_os_str().to_owned(),
    ];
    args.extend(
        [
            "--idle-timeout",
            "10m",
            "--wal-segment-bytes",
            "65536",
            "--wal-max-bytes",
            &MAX.to_string(),
        ]
        .map(std::ffi::OsString::from),
    );
    let child = ServeChild::start(args).await;

    let mut sim = Simulator::new(SimConfig {
        scenario: Scenario::uniform(0.2, 0.0),
        ..SimConfig::new(81, now_nanos() - 300_000_000_000)
    });
    let http = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    let refusal = loop {
        let run = sim.next_run();
        if run.label.outcome != Outcome::Failed || run.late_traces.is_some() {
            continue;
        }
        let r = http
            .post(format!("{}/v1/traces", child.otlp_http))
            .header("content-type", "application/x-protobuf")
            .body(run.traces.encode_to_vec())
            .send()
            .await
            .expect("OTLP/HTTP answers");
        if r.status() == 200 {
            acknowledged.push(run.label.trace_id);
            assert!(acknowledged.len() < 10_000, "never refused");
            continue;
        }
        break r;
    };
    assert_eq!(refusal.status(), 503);
    let retry_after = refusal
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
    assert!(!acknowledged.is_empty());

    let channel = tonic::transport::Channel::from_shared(child.otlp_grpc.clone())
        .expect("uri")
        .connect()
        .await
        .expect("gRPC connects");
    let run = loop {
        let run = sim.next_run();
        if run.label.outcome == Outcome::Failed {
            break run;
        }
    };
    let status = TraceServiceClient::new(channel)
        .export(run.traces)
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("write-ahead log is full")
            && status.message().contains("max_bytes"),
        "{}",
        status.message()
    );
    assert!(counter(&child, "faultline_wal_refused_full_total").await >= 2.0);
    // Refusals for the disk cap have their own reason; nothing failed to be written.
    assert!(
        counter(
            &child,
            "faultline_spans_rejected_total{reason=\"wal_full\"}"
        )
        .await
            >= 2.0
    );
    assert_eq!(
        counter(
            &child,
            "faultline_spans_rejected_total{reason=\"wal_error\"}"
        )
        .await,
        0.0
    );
    assert!(counter(&child, "faultline_wal_disk_bytes").await <= MAX as f64);
    let wal_dir = data_dir.join("wal");
    let on_disk: u64 = std::fs::read_dir(&wal_dir)
        .expect("the log's directory")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(on_disk <= MAX, "{on_disk} bytes on disk");
    child.kill9().await;

    // Restarted without the long idle timeout: every acknowledged run is stored.
    let child = start_binary(&data_dir).await;
    wait_all_listed_and_counted(&child, &acknowledged).await;
    child.kill9().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = std::fs::remove_file(config);
}
