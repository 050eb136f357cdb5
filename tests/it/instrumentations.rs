//! Real instrumentations, fake models: LangGraph under OpenInference's LangChain
//! instrumentation, and pydantic-ai's own OpenTelemetry instrumentation. Each agent fails
//! in a planted way (tool exception, empty retrieval, rate limit); faultline must blame
//! the planted step.

use std::time::Duration;

use faultline::config::FileConfig;
use serde_json::Value;

use crate::support::{get_json, python, repo_path, start_server_with};

/// The user rule of the issue's example: pydantic-ai's `search_docs` tool is a retriever.
const CONFIG: &str = r#"
[[classify.rules]]
attribute = "gen_ai.tool.name"
equals = "search_docs"
step = "retriever"
"#;

async fn run_agents(script: &str) {
    let file = FileConfig::parse(CONFIG, std::path::Path::new("test.toml")).expect("config");
    let running = start_server_with(file, "300ms").await;
    let out = tokio::process::Command::new(python())
        .arg(repo_path(script))
        .args([
            "--endpoint",
            &format!("http://{}", running.otlp_http_address),
        ])
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(runs.len(), 3, "three scenarios");
    for run in runs {
        let trace_id = run["trace_id"].as_str().expect("trace id");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let t = loop {
            let (status, t) = get_json(&running, &format!("/api/v1/trajectories/{trace_id}")).await;
            if status == 200 {
                break t;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{trace_id} never analysed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(t["outcome"], "failed", "{}: {t}", run["scenario"]);
        assert_eq!(
            t["root_cause"]["step"], run["expected_step"],
            "{}: blamed the wrong step: {}",
            run["scenario"], t["root_cause"]
        );
        assert!(
            !t["root_cause"]["evidence"]
                .as_array()
                .is_none_or(Vec::is_empty),
            "a verdict comes with evidence: {}",
            t["root_cause"]
        );
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn langgraph_with_openinference_blames_the_planted_step() {
    let _heavy = crate::support::heavy().await;
    run_agents("tests/python/agents/langgraph_agent.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pydantic_ai_instrumentation_blames_the_planted_step() {
    let _heavy = crate::support::heavy().await;
    run_agents("tests/python/agents/pydantic_ai_agent.py").await;
}
