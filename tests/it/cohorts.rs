//! Cohort discovery end to end: simulated runs with one planted bad model sent over
//! OTLP/HTTP; `/api/v1/cohorts` finds the model after two mining runs, with reason
//! templates from the clusterer and example trajectories the API knows;
//! `/api/v1/compare` puts it beside another model; bad parameters are 400.

use std::time::Duration;

use faultline::simulate::{CohortMatch, CohortMultiplier, Scenario, SimConfig, Simulator};
use prost::Message;

use crate::support::{get_json, start_server};

async fn feed_planted(running: &faultline::server::Running, n: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let scenario = Scenario::uniform(0.01, 0.02).with_cohort_multiplier(CohortMultiplier {
        when: vec![CohortMatch::Model("gpt-4o".into())],
        kinds: Vec::new(),
        factor: 5.0,
    });
    let mut sim = Simulator::new(SimConfig {
        scenario,
        ..SimConfig::new(5, now - 600_000_000_000)
    });
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/traces", running.otlp_http_address);
    for _ in 0..n {
        let run = sim.next_run();
        let resp = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(run.traces.encode_to_vec())
            .send()
            .await
            .expect("OTLP/HTTP answers");
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohorts_and_compare_over_the_api() {
    let running = start_server("300ms").await;
    let n = 400;
    feed_planted(&running, n).await;

    // Wait until every run is in the window (counted once its late grace ended).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut body;
    loop {
        let (status, b) = get_json(&running, "/api/v1/cohorts?refresh=true").await;
        assert_eq!(status, 200, "{b}");
        body = b;
        if body["records"].as_u64() == Some(n as u64) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "window holds {} of {n} runs",
            body["records"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The same rows once more: the second consecutive run confirms.
    let (_, body2) = get_json(&running, "/api/v1/cohorts?refresh=true").await;
    let cohorts = body2["cohorts"].as_array().expect("cohorts array");
    let first = cohorts
        .first()
        .unwrap_or_else(|| panic!("no cohort: {body2}"));
    assert_eq!(first["predicate"][0]["key"], "model", "{body2}");
    assert_eq!(first["predicate"][0]["value"], "gpt-4o", "{body2}");
    assert!(first["risk_ratio"].as_f64().is_some_and(|r| r > 1.5));
    assert!(first["q_value"].as_f64().is_some_and(|q| q <= 0.05));
    let reasons = first["top_reasons"].as_array().expect("top_reasons");
    assert!(
        reasons
            .iter()
            .any(|r| r["template"].as_str().is_some_and(|t| !t.is_empty())),
        "reason patterns reach the cohorts: {first}"
    );
    let example = first["example_trace_ids"][0].as_str().expect("an example");
    let (status, _) = get_json(&running, &format!("/api/v1/trajectories/{example}")).await;
    assert_eq!(status, 200);

    let (status, cmp) = get_json(
        &running,
        "/api/v1/compare?a=model%3Dgpt-4o-mini&b=model%3Dgpt-4o",
    )
    .await;
    assert_eq!(status, 200, "{cmp}");
    assert!(cmp["a"]["trajectories"].as_u64().is_some_and(|t| t > 50));
    assert!(cmp["b"]["trajectories"].as_u64().is_some_and(|t| t > 50));
    assert!(cmp["overall"]["difference"]
        .as_f64()
        .is_some_and(|d| d > 0.0));
    assert!(cmp["overall"]["p_value"].as_f64().is_some_and(|p| p < 0.05));
    assert!(!cmp["steps"].as_array().expect("steps").is_empty());

    for bad in [
        "/api/v1/cohorts?window=yesterday",
        "/api/v1/cohorts?limit=1000",
        "/api/v1/compare?a=model%3Dgpt-4o",
        "/api/v1/compare?a=steps%3E%3Dmany&b=",
    ] {
        let (status, body) = get_json(&running, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    running.shutdown().await;
}
