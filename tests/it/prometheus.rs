//! A real Prometheus (Debian's `prometheus`, installed by `./scripts/test`) scrapes a
//! running faultline fed by the simulator; the per-step root-cause ratio from PromQL must
//! equal the breakdown API's.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::api::feed;
use crate::support::{get_json, start_server};

/// A Prometheus child process, killed on drop.
pub struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(target: std::net::SocketAddr) -> Prometheus {
    start_prometheus_with(&format!(
        "  - job_name: faultline\n    static_configs:\n      - targets: ['{target}']\n"
    ))
}

/// A Prometheus scraping every second with these `scrape_configs` entries (YAML, each
/// `  - job_name: ...`).
pub fn start_prometheus_with(scrape_configs: &str) -> Prometheus {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n{scrape_configs}"
        ),
    )
    .expect("write config");
    let port = crate::support::free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the `prometheus` binary is required: run ./scripts/test, which installs it");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

pub async fn query(prom: &Prometheus, promql: &str) -> Option<Value> {
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prom.url))
        .query(&[("query", promql)])
        .send()
        .await
        .ok()?;
    let body: Value = resp.json().await.ok()?;
    (body["status"] == "success").then(|| body["data"]["result"].clone())
}

fn total_trajectories(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("faultline_trajectories_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_root_cause_ratio_matches_the_breakdown_api() {
    let _heavy = crate::support::heavy().await;
    let running = start_server("300ms").await;
    let prom = start_prometheus(running.api_address);
    let labels = feed(&running, 300, 31).await;

    // Every run counted (counts are taken when a trace's 1 s grace ends).
    let metrics_url = format!("http://{}/metrics", running.api_address);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::get(&metrics_url)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if total_trajectories(&text) >= labels.len() as f64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every run was counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Prometheus has scraped the final counts once the trajectory total it sees is right.
    let promql_total = "sum(faultline_trajectories_total)";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = query(&prom, promql_total).await {
            let seen = r[0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok());
            if seen == Some(labels.len() as f64) {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never scraped the final counts"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let ratio =
        "sum by (step) (faultline_root_causes_total) / sum by (step) (faultline_step_runs_total)";
    let result = query(&prom, ratio).await.expect("PromQL answers");
    let from_prom: BTreeMap<String, f64> = result
        .as_array()
        .expect("vector")
        .iter()
        .filter_map(|s| {
            let step = s["metric"]["step"].as_str()?.to_owned();
            let v = s["value"][1].as_str()?.parse::<f64>().ok()?;
            Some((step, v))
        })
        .collect();
    let (status, breakdown) = get_json(&running, "/api/v1/breakdown?window=24h").await;
    assert_eq!(status, 200);
    let from_api: BTreeMap<String, f64> = breakdown["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["runs"].as_u64().unwrap_or(0) > 0)
        .map(|s| {
            (
                s["step"].as_str().unwrap_or_default().to_owned(),
                s["root_cause_rate"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    assert!(from_api.len() >= 5, "several steps ran: {from_api:?}");
    for (step, api_rate) in &from_api {
        // A step never blamed has no root-cause series, so PromQL has no ratio for it.
        let Some(&prom_rate) = from_prom.get(step) else {
            assert_eq!(*api_rate, 0.0, "{step} is blamed but has no PromQL ratio");
            continue;
        };
        assert!(
            (prom_rate - api_rate).abs() < 1e-9,
            "{step}: PromQL {prom_rate} vs breakdown {api_rate}"
        );
    }
    assert!(
        from_prom.keys().all(|k| from_api.contains_key(k)),
        "PromQL has steps the API lacks: {from_prom:?} vs {from_api:?}"
    );
    assert!(
        from_api.values().any(|&r| r > 0.0),
        "some step is blamed: {from_api:?}"
    );
    running.shutdown().await;
}
