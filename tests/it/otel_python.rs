//! Python's `opentelemetry-sdk` with its OTLP gRPC and HTTP exporters as real clients.

use std::time::Duration;

use serde_json::Value;

use crate::support::{python, repo_path, start_server, step_of, wait_trajectory};

async fn run_client(protocol: &str, endpoint: String) -> Vec<Value> {
    let out = tokio::process::Command::new(python())
        .arg(repo_path("tests/python/agent_client.py"))
        .args([
            "--protocol",
            protocol,
            "--endpoint",
            &endpoint,
            "--runs",
            "3",
        ])
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "agent_client.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

async fn check(protocol: &str) {
    let running = start_server("300ms").await;
    let endpoint = match protocol {
        "grpc" => format!("http://{}", running.otlp_grpc_address),
        _ => format!("http://{}", running.otlp_http_address),
    };
    let runs = run_client(protocol, endpoint).await;
    assert_eq!(runs.len(), 3);
    for run in &runs {
        let trace_id = run["trace_id"].as_str().expect("trace id");
        let t = wait_trajectory(&running, trace_id, 9, Duration::from_secs(20)).await;
        assert_eq!(t["trace_id"], trace_id);
        assert_eq!(t["complete"], true);
        assert_eq!(t["service"], format!("py-agent-{protocol}"));
        assert!(t["session_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("session-")));
        assert_eq!(t["steps"].as_array().map(Vec::len), Some(9));
        assert_eq!(step_of(&t, "LangGraph").0, "agent");
        assert_eq!(step_of(&t, "VectorStoreRetriever").0, "retriever");
        assert_eq!(step_of(&t, "retrieve").0, "retriever");
        assert_eq!(step_of(&t, "ChatOpenAI").0, "generator");
        assert_eq!(step_of(&t, "StrOutputParser").0, "generator");
        assert_eq!(step_of(&t, "search_web").0, "tool");
        assert_eq!(step_of(&t, "GET"), ("tool", "inherited"));
        let tool = t["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "search_web"))
            .expect("tool span");
        if run["failing_tool"] == true {
            assert_eq!(tool["status"], "error");
            assert_eq!(tool["status_message"], "search backend timed out after 30s");
        } else {
            assert_eq!(tool["status"], "unset");
        }
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_grpc_exporter() {
    check("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_http_exporter() {
    check("http").await;
}
