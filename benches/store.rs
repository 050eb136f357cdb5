//! Store benchmark: 1 000 000 stored trajectories (24 h of event time, 10% failed,
//! 5% recovered), their per-minute counts restored into an aggregator as after a
//! restart, then p50/p99 latency of `GET /api/v1/breakdown` and of
//! `GET /api/v1/trajectories` with a mix of filters, sorts and cursors, through the real
//! router (in process, no network). Prints the figures and fails when breakdown p99 >
//! 50 ms or list p99 > 100 ms.
//!
//! Run with `cargo bench --bench store` (release). `FAULTLINE_BENCH_ROWS` changes the
//! row count; the database is written to a temporary directory.
//!
//! `FAULTLINE_BENCH_WRITER_ONLY=1 cargo bench --bench store` prints the store writer's
//! sustained throughput instead: analyses handed to the store's sink (as the pipeline
//! does: a publish at release, a finalize later) by two feeder threads, as fast as the
//! writer takes them, through the real writer thread into SQLite, with the per-minute
//! counts of an aggregator; once with the default success sample (10% failed, 5%
//! recovered, 5% of successes kept) and once with every trajectory kept; each of them
//! without a commit observer (every commit `synchronous=NORMAL`) and with one, as when
//! the write-ahead log is on (each commit that finalizes traces is durable:
//! `synchronous=FULL`, one fsync of SQLite's WAL file). Each analysis is counted by the
//! aggregator at its finalize, as the pipeline's count stage does, so the writer adds
//! its own counts to the stored minute.
//! `FAULTLINE_BENCH_WRITER_RUNS` changes the number of analyses (default 200 000). First
//! it prints what encoding a stored document costs, against the way it was encoded
//! before (the JSON text, then zstd), in the same run.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use tower::ServiceExt;

use faultline::aggregate::{AggregateConfig, Aggregator};
use faultline::analyze::{analyze, AnalyzeConfig};
use faultline::model::{
    Analysis, Attributes, Resource, SpanId, SpanKind, SpanRecord, SpanStatus, TraceId, Trajectory,
    Value,
};
use faultline::pipeline::Sink;
use faultline::store::{
    record, CommitObserver, SqliteStore, Store, StoreConfig, StoreMetrics, StoreWriter, Write,
};

/// Counts the traces a store writer reports committed (as the write-ahead log is told).
#[derive(Default)]
struct Resolved(std::sync::atomic::AtomicU64);

impl CommitObserver for Resolved {
    fn committed(&self, traces: &[TraceId]) {
        self.0
            .fetch_add(traces.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

const MINUTE_NS: u64 = 60_000_000_000;
const MODELS: [&str; 4] = ["gpt-4o", "gpt-4o-mini", "claude-3-5", "llama-3-70b"];
const ROUTES: [&str; 6] = [
    "/chat",
    "/search",
    "/summarize",
    "/qa",
    "/agent",
    "/support",
];
const SEGMENTS: [&str; 3] = ["free", "pro", "enterprise"];

fn trace_id(n: u64) -> TraceId {
    let mut b = [0u8; 16];
    // Spread like random ids, never all zero.
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    b[..8].copy_from_slice(&h.to_be_bytes());
    b[8..].copy_from_slice(&n.to_be_bytes());
    TraceId::from_bytes(&b).expect("valid id")
}

fn span(
    trace: TraceId,
    id: u64,
    parent: Option<u64>,
    name: &str,
    start: u64,
    end: u64,
) -> SpanRecord {
    SpanRecord {
        trace_id: trace,
        span_id: SpanId::from_bytes(&id.to_be_bytes()).expect("span id"),
        parent_span_id: parent.map(|p| SpanId::from_bytes(&p.to_be_bytes()).expect("span id")),
        name: name.into(),
        kind: SpanKind::Internal,
        start_unix_nano: start,
        end_unix_nano: end,
        status: SpanStatus::Unset,
        status_message: None,
        attributes: Attributes::new(),
        events: Default::default(),
        links: Default::default(),
        resource: Arc::new(Resource {
            service_name: Some("bench-agent".into()),
            attributes: Attributes::new(),
        }),
        scope_name: None,
    }
}

/// One run: agent → planner, retriever, generator (model, route, segment); `fault`
/// 0 none, 1 failed retriever, 2 failed generator, 3 recovered tool error.
fn run(n: u64, end: u64, fault: u8) -> Analysis {
    let t = trace_id(n);
    let len = 200_000_000 + (n % 97) * 20_000_000;
    let start = end - len;
    let mut root = span(t, 1, None, "agent", start, end);
    root.attributes
        .insert("agent.trajectory.step".into(), Value::Str("agent".into()));
    root.attributes.insert(
        "http.route".into(),
        Value::Str(ROUTES[(n % 6) as usize].into()),
    );
    root.attributes.insert(
        "user.segment".into(),
        Value::Str(SEGMENTS[(n % 3) as usize].into()),
    );
    root.attributes.insert(
        "session.id".into(),
        Value::Str(format!("s-{}", n / 4).into()),
    );
    let mut planner = span(t, 2, Some(1), "plan", start + 1_000_000, start + 50_000_000);
    planner
        .attributes
        .insert("agent.trajectory.step".into(), Value::Str("planner".into()));
    let mut retriever = span(
        t,
        3,
        Some(1),
        "retrieve",
        start + 50_000_000,
        start + 100_000_000,
    );
    retriever.attributes.insert(
        "agent.trajectory.step".into(),
        Value::Str("retriever".into()),
    );
    let mut tool = span(
        t,
        5,
        Some(1),
        "search_tool",
        start + 100_000_000,
        start + 120_000_000,
    );
    tool.attributes
        .insert("agent.trajectory.step".into(), Value::Str("tool".into()));
    let mut generator = span(
        t,
        4,
        Some(1),
        "generate",
        start + 120_000_000,
        end - 1_000_000,
    );
    generator.attributes.insert(
        "agent.trajectory.step".into(),
        Value::Str("generator".into()),
    );
    generator.attributes.insert(
        "gen_ai.request.model".into(),
        Value::Str(MODELS[(n % 4) as usize].into()),
    );
    match fault {
        1 => {
            retriever.status = SpanStatus::Error;
            retriever.status_message =
                Some(format!("vector index timeout after {} ms", n % 900).into());
            root.status = SpanStatus::Error;
        }
        2 => {
            generator.status = SpanStatus::Error;
            generator.status_message =
                Some(format!("rate limit exceeded for org-{}", n % 50).into());
            root.status = SpanStatus::Error;
        }
        3 => {
            tool.status = SpanStatus::Error;
            tool.status_message = Some("connection reset; retried".into());
            let mut retry = span(
                t,
                6,
                Some(1),
                "search_tool",
                start + 121_000_000,
                start + 130_000_000,
            );
            retry
                .attributes
                .insert("agent.trajectory.step".into(), Value::Str("tool".into()));
            return analyze(
                Arc::new(Trajectory::build(
                    t,
                    vec![root, planner, retriever, tool, retry, generator],
                    Vec::new(),
                    Vec::new(),
                )),
                &AnalyzeConfig::default(),
            );
        }
        _ => {}
    }
    analyze(
        Arc::new(Trajectory::build(
            t,
            vec![root, planner, retriever, tool, generator],
            Vec::new(),
            Vec::new(),
        )),
        &AnalyzeConfig::default(),
    )
}

fn fault_of(n: u64) -> u8 {
    match n % 20 {
        0 | 1 => 1,
        2 => 2,
        3 => 3,
        _ => 0,
    }
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn call(app: &axum::Router, uri: &str) -> (u16, serde_json::Value) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

async fn measure(app: &axum::Router, uris: &[String], rounds: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(uris.len() * rounds);
    for _ in 0..rounds {
        for u in uris {
            let t = Instant::now();
            let (status, body) = call(app, u).await;
            times.push(t.elapsed());
            assert_eq!(status, 200, "{u}: {body}");
        }
    }
    times.sort();
    times
}

/// The writer's throughput: analyses/s handled and trajectories/s stored, feeding the
/// sink from two threads without ever overrunning the queue (a feeder waits while the
/// queue is nearly full), so nothing is shed or dropped.
/// The writer's encoding of a stored document, as it is (serialized straight into zstd,
/// `compress::compress_json`) against the reference it replaced, measured in the same
/// run: the JSON text built first, then compressed in one call into a buffer of zstd's
/// bound for it (one reused context). Five interleaved rounds over `n` analyses; medians
/// and their ratio.
fn encode_bench(n: u64) {
    let analyses: Vec<Analysis> = (0..n)
        .map(|i| run(i + 1, 1_000 + i, fault_of(i + 1)))
        .collect();
    let mut reference_context = zstd::bulk::Compressor::new(1).expect("zstd");
    let (mut streamed, mut reference) = (Vec::new(), Vec::new());
    let mut bytes = (0usize, 0usize);
    for _ in 0..5 {
        let t = Instant::now();
        for a in &analyses {
            let doc = faultline::store::document::Document::from_analysis(a);
            bytes.0 = faultline::compress::compress_json(&doc)
                .expect("encoded")
                .len();
        }
        streamed.push(n as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for a in &analyses {
            let doc = faultline::store::document::Document::from_analysis(a);
            let json = serde_json::to_vec(&doc).expect("json");
            bytes.1 = reference_context.compress(&json).expect("encoded").len();
        }
        reference.push(n as f64 / t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s, r) = (median(&mut streamed), median(&mut reference));
    println!(
        "document encoding, {n} analyses, median of 5 interleaved rounds: streamed into zstd {s:.0}/s, JSON text then zstd (reference) {r:.0}/s, ratio {:.2} (last document {} vs {} bytes)",
        s / r,
        bytes.0,
        bytes.1
    );
}

fn writer_bench(runs: u64, success_sample: f64, observed: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = AggregateConfig::default_config();
    let dims = config.dimensions.clone();
    let store_config = StoreConfig {
        success_sample,
        ..StoreConfig::default()
    };
    let store = Arc::new(SqliteStore::open(dir.path(), store_config.clone()).expect("store"));
    let mut registry = Registry::default();
    let aggregator = Arc::new(Aggregator::new(
        config,
        &mut registry,
        faultline::aggregate::system_clock(),
    ));
    let metrics = Arc::new(StoreMetrics::register(&mut registry));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    // Distinct analyses, prepared before the clock starts.
    let analyses: Vec<Arc<Analysis>> = (0..runs)
        .map(|n| {
            let end = now - (runs - n) * 1_000_000;
            Arc::new(run(n + 1, end, fault_of(n + 1)))
        })
        .collect();
    let kept = analyses
        .iter()
        .filter(|a| record::keep(a, success_sample))
        .count() as u64;
    let resolved = Arc::new(Resolved::default());
    let (writer, sink) = StoreWriter::start_observed(
        store.clone() as Arc<dyn Store>,
        Some(aggregator.clone()),
        store_config.clone(),
        dims,
        metrics.clone(),
        None,
        observed.then(|| resolved.clone() as Arc<dyn CommitObserver>),
    )
    .expect("writer");
    let sink = Arc::new(sink);
    let analyses = Arc::new(analyses);
    let room = store_config.queue as i64 - 64;
    let start = Instant::now();
    let feeders: Vec<_> = (0..2usize)
        .map(|f| {
            let (sink, analyses, metrics) = (sink.clone(), analyses.clone(), metrics.clone());
            let aggregator = aggregator.clone();
            std::thread::spawn(move || {
                let mine: Vec<&Arc<Analysis>> = analyses.iter().skip(f).step_by(2).collect();
                // A finalize follows its publish by 1 000 releases, as after a grace.
                for i in 0..mine.len() + 1000 {
                    while metrics.queued.get() >= room {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    if let Some(a) = mine.get(i) {
                        sink.publish((*a).clone());
                    }
                    if let Some(a) = i.checked_sub(1000).and_then(|j| mine.get(j)) {
                        // Counted first (the count stage), then to the store's sink.
                        let finalized: faultline::pipeline::Finalized = (*a).clone().into();
                        aggregator.finalize(&finalized);
                        sink.finalize(&finalized);
                    }
                }
            })
        })
        .collect();
    for f in feeders {
        f.join().expect("feeder");
    }
    let finalized = |m: &StoreMetrics| {
        m.writes
            .get_or_create(&faultline::store::writer::OpLabels { op: "finalize" })
            .get()
    };
    let reported = || resolved.0.load(std::sync::atomic::Ordering::Relaxed);
    while finalized(&metrics) < kept || (observed && reported() < runs) {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the writer did not finish"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = start.elapsed().as_secs_f64();
    let dropped: u64 = ["queue_full", "write_error", "encode_error", "shed"]
        .iter()
        .map(|reason| {
            metrics
                .dropped
                .get_or_create(&faultline::store::writer::StoreReasonLabels { reason })
                .get()
        })
        .sum();
    let commits = if observed {
        "finalizing commits durable"
    } else {
        "all commits NORMAL"
    };
    println!(
        "store writer, success_sample {success_sample}, {commits}: {runs} analyses ({kept} stored) in {secs:.2} s: \
         {:.0} analyses/s handled, {:.0} trajectories/s stored; {dropped} dropped",
        runs as f64 / secs,
        kept as f64 / secs,
    );
    drop(sink);
    writer.shutdown();
}

fn main() {
    if std::env::var_os("FAULTLINE_BENCH_WRITER_ONLY").is_some() {
        let runs = std::env::var("FAULTLINE_BENCH_WRITER_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        encode_bench(runs.min(50_000));
        for observed in [false, true] {
            writer_bench(runs, 0.05, observed);
            writer_bench(runs, 1.0, observed);
        }
        return;
    }
    let rows: u64 = std::env::var("FAULTLINE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = AggregateConfig::default_config();
    let dims = config.dimensions.clone();
    let store = Arc::new(SqliteStore::open(dir.path(), StoreConfig::default()).expect("store"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let newest_minute = now / MINUTE_NS;
    let minutes = 24 * 60;

    // 1. Rows: one analysed template per fault kind and residue, re-stamped per row.
    let load = Instant::now();
    let live = Aggregator::new(
        config.clone(),
        &mut Registry::default(),
        faultline::aggregate::system_clock(),
    );
    let per_minute = rows.div_ceil(minutes);
    let mut batch = Vec::with_capacity(50_000);
    let mut n = 0u64;
    for m in 0..minutes {
        let minute = newest_minute - (minutes - 1) + m;
        for k in 0..per_minute {
            if n >= rows {
                break;
            }
            n += 1;
            let end = minute * MINUTE_NS + (k * 997_000_000) % MINUTE_NS;
            let a = run(n, end, fault_of(n));
            live.record(&a, now);
            let doc = faultline::store::document::Document::from_analysis(&a);
            let body = faultline::compress::compress_json(&doc).expect("compressed document");
            batch.push(record::record(&a, &dims, body).expect("record"));
            if batch.len() == 50_000 {
                store.load(&batch).expect("load");
                batch.clear();
            }
        }
    }
    store.load(&batch).expect("load");
    let counts: Vec<Write> = (newest_minute - minutes + 1..=newest_minute)
        .filter_map(|m| live.export_minute(m))
        .map(Write::Counts)
        .collect();
    store.write(&counts).expect("counts");
    let db_bytes = store.used_bytes().expect("size");
    println!(
        "loaded {rows} trajectories in {:.1} s; database {:.0} MiB",
        load.elapsed().as_secs_f64(),
        db_bytes as f64 / (1 << 20) as f64
    );

    // 2. A restarted process: counts restored from the store.
    let mut registry = Registry::default();
    let aggregator = Arc::new(Aggregator::new(
        config,
        &mut registry,
        faultline::aggregate::system_clock(),
    ));
    let restore = Instant::now();
    let restored = aggregator.import_minutes(&store.counts().expect("counts"));
    println!(
        "restored {restored} minutes of counts in {:.0} ms",
        restore.elapsed().as_secs_f64() * 1000.0
    );
    let state = Arc::new(faultline::api::ApiState {
        recent: Arc::new(faultline::store::Recent::new(16)),
        aggregator: aggregator.clone(),
        store: store.clone() as Arc<dyn Store>,
        store_health: Arc::new(Vec::new),
        info: faultline::api::ServerInfo::default(),
        cohorts: Arc::new(faultline::api::cohorts::CohortsState {
            index: Arc::new(faultline::cohorts::CohortIndex::new(
                faultline::cohorts::CohortConfig::default(),
            )),
            clusterer: None,
        }),
        alerts: Arc::new(faultline::alerts::AlertEngine::new(
            faultline::alerts::AlertsConfig::default(),
            &mut registry,
            None,
            "http://127.0.0.1:8700",
        )),
        reasons: Arc::new(faultline::api::reasons::ReasonsState {
            clusterer: Arc::new(
                faultline::reasons::SharedClusterer::new(
                    faultline::reasons::ReasonConfig::default(),
                    1,
                )
                .expect("clusterer"),
            ),
            stats: Arc::new(Mutex::new(faultline::reasons::ReasonStats::new(
                faultline::reasons::ReasonStatsConfig::default(),
            ))),
            horizon: Duration::from_secs(3600),
        }),
        registry: Arc::new(registry),
        ready: Arc::new(AtomicBool::new(true)),
    });
    let app = faultline::api::app(state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    rt.block_on(async {
        let (_, total) = call(&app, "/api/v1/breakdown?window=24h").await;
        assert_eq!(
            total["totals"]["trajectories"], rows,
            "exact counts restored"
        );

        let breakdown: Vec<String> = [
            "/api/v1/breakdown?window=1h",
            "/api/v1/breakdown?window=24h",
            "/api/v1/breakdown?window=24h&by=model",
            "/api/v1/breakdown?window=6h&by=route,user_segment",
            "/api/v1/breakdown?window=24h&by=model,route,user_segment",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let b = measure(&app, &breakdown, 40).await;

        // A cursor into the middle of the list.
        let (_, page) = call(&app, "/api/v1/trajectories?limit=1000").await;
        let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
        let (_, dpage) = call(&app, "/api/v1/trajectories?limit=1000&sort=duration").await;
        let dcursor = dpage["next_cursor"].as_str().expect("cursor").to_owned();
        let mid = now - 12 * 3600 * 1_000_000_000;
        let list: Vec<String> = vec![
            "/api/v1/trajectories".into(),
            "/api/v1/trajectories?limit=100".into(),
            format!("/api/v1/trajectories?limit=100&cursor={cursor}"),
            "/api/v1/trajectories?outcome=failed".into(),
            "/api/v1/trajectories?outcome=recovered&limit=100".into(),
            "/api/v1/trajectories?model=claude-3-5".into(),
            "/api/v1/trajectories?dim.route=/qa&outcome=failed".into(),
            "/api/v1/trajectories?root_cause_step=retriever&user_segment=pro".into(),
            "/api/v1/trajectories?finding_kind=error&step=tool".into(),
            "/api/v1/trajectories?session_id=s-123456".into(),
            format!(
                "/api/v1/trajectories?from={mid}&to={}&outcome=failed",
                mid + 3_600_000_000_000
            ),
            "/api/v1/trajectories?sort=duration&order=desc".into(),
            format!("/api/v1/trajectories?sort=duration&cursor={dcursor}"),
            "/api/v1/trajectories?sort=end&order=asc&outcome=failed".into(),
            "/api/v1/trajectories?q=rate%20limit".into(),
            "/api/v1/trajectories?q=timeout&outcome=failed".into(),
        ];
        let l = measure(&app, &list, 20).await;

        let (b50, b99) = (percentile(&b, 0.5), percentile(&b, 0.99));
        let (l50, l99) = (percentile(&l, 0.5), percentile(&l, 0.99));
        println!(
            "breakdown API ({} calls): p50 {b50:.2} ms, p99 {b99:.2} ms (bound 50 ms)",
            b.len()
        );
        println!(
            "trajectory list ({} calls): p50 {l50:.2} ms, p99 {l99:.2} ms (bound 100 ms)",
            l.len()
        );
        for u in &list {
            let t = measure(&app, std::slice::from_ref(u), 5).await;
            println!("  {:>8.2} ms p50  {u}", percentile(&t, 0.5));
        }
        assert!(b99 <= 50.0, "breakdown p99 {b99:.1} ms > 50 ms");
        assert!(l99 <= 100.0, "list p99 {l99:.1} ms > 100 ms");
    });
}
