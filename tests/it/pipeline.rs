//! The pipeline's two promises end to end, over OTLP/HTTP:
//!
//! - a full pipeline refuses a request whole (503 with `Retry-After`, after waiting its
//!   bound) and takes the next one once its shards catch up: the real ingest router in
//!   front of a real pipeline whose sink holds its shard (as a slow shard would), so that
//!   the queue fills when the test says;
//! - a run released and then failed by a late evaluator is counted once, with the new
//!   verdict: the server as `faultline serve` runs it, `n` runs sent, a late evaluator
//!   after their release, the breakdown polled until nothing is pending.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use faultline::analyze::AnalyzeConfig;
use faultline::assemble::AssembleConfig;
use faultline::ingest::{Ingest, IngestLimits};
use faultline::memory::MemoryBudget;
use faultline::metrics::SelfMetrics;
use faultline::model::{Analysis, Interner};
use faultline::pipeline::{Pipeline, PipelineConfig, Sink};
use faultline::server::MetricsObserver;
use serde_json::{json, Value};

use crate::support::{get_json, metrics_sum, now_nanos, start_server_graced};

/// Polls until `cond` holds, with a generous deadline for a loaded machine.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The OTLP/JSON trace id of run `n`.
fn trace_hex(n: u64) -> String {
    format!("{:016x}{:016x}", 0x7e57_0000_0000_0000u64 | n, n)
}

/// One OTLP/JSON span.
fn span(trace: &str, id: &str, parent: &str, name: &str, attrs: Value, links: Value) -> Value {
    let now = now_nanos();
    json!({
        "traceId": trace, "spanId": id, "parentSpanId": parent, "name": name,
        "startTimeUnixNano": (now - 2_000_000_000).to_string(),
        "endTimeUnixNano": (now - 1_000_000_000).to_string(),
        "attributes": attrs, "links": links, "status": {}
    })
}

fn attr(key: &str, value: Value) -> Value {
    let v = match value {
        Value::String(s) => json!({ "stringValue": s }),
        Value::Number(n) if n.is_f64() => json!({ "doubleValue": n }),
        other => json!({ "intValue": other.to_string() }),
    };
    json!({ "key": key, "value": v })
}

/// A successful run: an agent root and a generator call, `spans` spans in all.
fn run(n: u64, spans: usize) -> Vec<Value> {
    let trace = trace_hex(n);
    let mut out = vec![span(
        &trace,
        "a000000000000001",
        "",
        "agent",
        json!([attr("agent.trajectory.step", json!("agent"))]),
        json!([]),
    )];
    for i in 1..spans {
        out.push(span(
            &trace,
            &format!("b{i:015x}"),
            "a000000000000001",
            "answer",
            json!([attr("agent.trajectory.step", json!("generator"))]),
            json!([]),
        ));
    }
    out
}

/// An OpenInference evaluator in a trace of its own, failing run `target` afterwards.
fn late_evaluator(target: u64) -> Vec<Value> {
    vec![span(
        &trace_hex(10_000 + target),
        "e000000000000001",
        "",
        "eval.task_completion",
        json!([
            attr("openinference.span.kind", json!("EVALUATOR")),
            attr("gen_ai.evaluation.name", json!("task_completion")),
            attr("gen_ai.evaluation.score.value", json!(0.0)),
            attr(
                "gen_ai.evaluation.explanation",
                json!("The refund was never issued.")
            ),
        ]),
        json!([{ "traceId": trace_hex(target), "spanId": "a000000000000001" }]),
    )]
}

fn body(spans: Vec<Value>) -> String {
    json!({"resourceSpans": [{
        "resource": {"attributes": [attr("service.name", json!("pipeline-e2e"))]},
        "scopeSpans": [{"spans": spans}]
    }]})
    .to_string()
}

async fn post(client: &reqwest::Client, base: &str, spans: Vec<Value>) -> reqwest::Response {
    client
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/json")
        .body(body(spans))
        .send()
        .await
        .expect("OTLP/HTTP answers")
}

// ---- the queued-spans bound --------------------------------------------------------

/// Records what it is given; while held, `publish` blocks its shard.
#[derive(Default)]
struct HeldSink {
    published: Mutex<Vec<Arc<Analysis>>>,
    waiting: Mutex<usize>,
    held: Mutex<bool>,
    opened: Condvar,
}

impl HeldSink {
    fn set_held(&self, held: bool) {
        *self.held.lock().expect("gate") = held;
        self.opened.notify_all();
    }
}

impl Sink for HeldSink {
    fn publish(&self, analysis: Arc<Analysis>) {
        self.published.lock().expect("published").push(analysis);
        let mut held = self.held.lock().expect("gate");
        if *held {
            *self.waiting.lock().expect("waiting") += 1;
            while *held {
                held = self.opened.wait(held).expect("gate");
            }
            *self.waiting.lock().expect("waiting") -= 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pipeline_answers_503_and_queues_nothing_then_takes_the_retry() {
    let wait = Duration::from_millis(300);
    let sink = Arc::new(HeldSink::default());
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(SelfMetrics::register(&mut registry));
    let (pipeline, workers) = Pipeline::start(
        PipelineConfig {
            shards: 1,
            max_queued_spans: 4,
            submit_wait: wait,
            tick: Duration::from_millis(10),
            assemble: AssembleConfig {
                idle_timeout: Duration::from_millis(50),
                max_trace_age: Duration::from_secs(600),
                late_grace: Duration::from_secs(60),
                max_buffered_spans: 100_000,
                max_spans_per_trace: 10_000,
                max_trace_depth: 64,
                max_linked_per_trace: faultline::assemble::DEFAULT_MAX_LINKED_PER_TRACE,
            },
            analyze: Arc::new(AnalyzeConfig::default()),
            max_pending_final: 1000,
            memory: None,
        },
        vec![sink.clone() as Arc<dyn Sink>],
        metrics.clone(),
    )
    .expect("shard threads");
    let ingest = Arc::new(Ingest {
        handoff: pipeline.clone(),
        observer: MetricsObserver(metrics.clone()),
        interner: Arc::new(Interner::new(200_000, 96)),
        limits: IngestLimits::default(),
        budget: MemoryBudget::new(1 << 30),
        wal: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move {
        axum::serve(listener, faultline::ingest::http::http_router(ingest))
            .await
            .expect("serves");
    });
    let client = reqwest::Client::new();
    // Whatever happens, let the shard go at the end.
    struct Release(Arc<HeldSink>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.set_held(false);
        }
    }
    let _release = Release(sink.clone());

    // Run 1 is released and holds the shard in publish; run 2 fills the bound.
    sink.set_held(true);
    assert_eq!(post(&client, &base, run(1, 1)).await.status(), 200);
    until("the shard held", || {
        *sink.waiting.lock().expect("waiting") == 1
    })
    .await;
    assert_eq!(post(&client, &base, run(2, 4)).await.status(), 200);
    assert_eq!(pipeline.queued(), 4);

    // Runs 3 and 4 in one request: refused whole after the wait, nothing queued.
    let mut both = run(3, 1);
    both.extend(run(4, 2));
    let started = Instant::now();
    let refused = post(&client, &base, both.clone()).await;
    let waited = started.elapsed();
    assert_eq!(refused.status(), 503);
    let retry_after = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
    assert!(waited >= wait, "answered after {waited:?}, before the wait");
    assert_eq!(
        pipeline.queued(),
        4,
        "nothing of the refused request is queued"
    );

    // The shard catches up; the client's retry of the same request is taken.
    sink.set_held(false);
    until("the queue drained", || pipeline.queued() == 0).await;
    assert_eq!(post(&client, &base, both).await.status(), 200);
    tokio::task::spawn_blocking(move || workers.shutdown())
        .await
        .expect("shutdown");
    server.abort();

    // Every run analysed once with all its spans: the refused attempt added nothing.
    let mut spans: HashMap<String, Vec<usize>> = HashMap::new();
    for a in sink.published.lock().expect("published").iter() {
        spans
            .entry(a.trajectory.trace_id.to_hex())
            .or_default()
            .push(a.trajectory.spans.len());
    }
    let expected: HashMap<String, Vec<usize>> = [(1, 1), (2, 4), (3, 1), (4, 2)]
        .into_iter()
        .map(|(n, s)| (trace_hex(n), vec![s]))
        .collect();
    assert_eq!(spans, expected);
}

// ---- counted once, with the final verdict -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_evaluator_after_release_flips_one_run_and_the_totals_stay_n() {
    let n = 5u64;
    let target = 3u64;
    // Runs are released 300 ms after their last span and counted 10 s after that: the
    // evaluator is sent after the release, inside the grace.
    let running = start_server_graced(Default::default(), "300ms", "10s").await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", running.otlp_http_address);
    for i in 1..=n {
        assert_eq!(post(&client, &base, run(i, 2)).await.status(), 200);
    }
    // All released: listed, successful, pending.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = get_json(&running, "/api/v1/trajectories?service=pipeline-e2e").await;
        let rows = list["trajectories"].as_array().cloned().unwrap_or_default();
        if rows.len() == n as usize {
            assert!(rows.iter().all(|t| t["outcome"] == "success"), "{list}");
            break;
        }
        assert!(Instant::now() < deadline, "not all released: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Inside their grace: analysed, not yet counted.
    let (_, before) = get_json(&running, "/api/v1/breakdown?window=24h").await;
    assert_eq!(before["pending_trajectories"], n, "{before}");
    assert_eq!(before["totals"]["trajectories"], 0, "{before}");

    assert_eq!(
        post(&client, &base, late_evaluator(target)).await.status(),
        200
    );
    let path = format!("/api/v1/trajectories/{}", trace_hex(target));
    let deadline = Instant::now() + Duration::from_secs(60);
    let revised = loop {
        let (_, t) = get_json(&running, &path).await;
        if t["outcome"] == "failed" {
            break t;
        }
        assert!(Instant::now() < deadline, "never revised: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(revised["revision"].as_u64().unwrap_or(0) >= 1, "{revised}");

    // Until nothing is pending: every run counted once, the evaluated one as failed.
    let deadline = Instant::now() + Duration::from_secs(90);
    let after = loop {
        let (_, b) = get_json(&running, "/api/v1/breakdown?window=24h").await;
        if b["pending_trajectories"] == 0 && b["totals"]["trajectories"].as_u64() >= Some(n) {
            break b;
        }
        assert!(Instant::now() < deadline, "still pending: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let totals = &after["totals"];
    assert_eq!(totals["trajectories"], n, "{after}");
    assert_eq!(totals["failed"], 1, "{after}");
    assert_eq!(totals["success"], n - 1, "{after}");
    assert_eq!(
        metrics_sum(&running, "faultline_trajectories_total{").await,
        n as f64
    );
    assert_eq!(
        metrics_sum(
            &running,
            "faultline_trajectories_total{outcome=\"failed\",service=\"pipeline-e2e\""
        )
        .await,
        1.0
    );
    running.shutdown().await;
}
