//! Unit tests of aggregation: counting, event-time windows, horizon eviction, the
//! cardinality budget, breakdowns, percentiles and order independence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

use super::buckets::{latency_index, latency_value, Latency};
use super::cohort::{Cohort, SpaceSaving, OTHER, UNSET};
use super::*;
use crate::model::{Finding, RootCause, StepAssignment, StepSource};
use crate::pipeline::Sink;
use crate::test_support::{span, trajectory, SpanBuilder};

const MIN: u64 = 60_000_000_000;
/// 2024-06-01T00:00:00Z in unix nanoseconds; "now" in most tests.
const NOW: u64 = 1_717_200_000_000_000_000;
const NOW_MS: u64 = NOW / 1_000_000;

fn fixed_clock(now: u64) -> Clock {
    Arc::new(move || now)
}

fn config() -> AggregateConfig {
    AggregateConfig::default_config()
}

fn aggregator(config: AggregateConfig) -> (Aggregator, Registry) {
    let mut registry = Registry::default();
    let agg = Aggregator::new(config, &mut registry, fixed_clock(NOW));
    (agg, registry)
}

/// A run: agent root → planner node (with its LLM call) → retriever → generator.
struct Run {
    trace: u64,
    /// End of the run, ms since the epoch.
    end_ms: u64,
    planner_model: &'static str,
    generator_model: String,
    route: &'static str,
    segment: Option<&'static str>,
    /// Generator latency in ms.
    generator_ms: u64,
    empty_retrieval: bool,
    outcome: Outcome,
}

impl Run {
    fn new(trace: u64, end_ms: u64) -> Run {
        Run {
            trace,
            end_ms,
            planner_model: "planner-model",
            generator_model: "gen-model".into(),
            route: "/chat",
            segment: Some("free"),
            generator_ms: 40,
            empty_retrieval: false,
            outcome: Outcome::Success,
        }
    }
}

fn assign(traj: &crate::model::Trajectory, plan: &[(u64, StepKind, bool)]) -> Vec<StepAssignment> {
    traj.spans
        .iter()
        .map(|s| {
            let (_, kind, run_start) = plan
                .iter()
                .find(|(id, _, _)| crate::test_support::span_id(*id) == s.span_id)
                .expect("every span is planned");
            StepAssignment {
                kind: kind.clone(),
                source: StepSource::Explicit,
                run_start: *run_start,
            }
        })
        .collect()
}

fn index_of(traj: &crate::model::Trajectory, id: u64) -> u32 {
    traj.find(crate::test_support::span_id(id))
        .expect("span exists")
}

fn build(run: &Run) -> Analysis {
    let t = run.trace;
    let end = run.end_ms;
    let start = end - 100;
    let with_segment = |b: SpanBuilder| match run.segment {
        Some(s) => b.attr("user.segment", s),
        None => b,
    };
    let spans = vec![
        with_segment(
            span(t, 1, 0)
                .name("agent")
                .times(start, end)
                .attr("http.route", run.route)
                .resource_attr("deployment.environment.name", "prod"),
        )
        .build(),
        span(t, 2, 1)
            .name("plan")
            .times(start + 1, start + 20)
            .build(),
        span(t, 3, 2)
            .name("chat")
            .times(start + 2, start + 19)
            .attr("gen_ai.request.model", run.planner_model)
            .build(),
        span(t, 4, 1)
            .name("retrieve")
            .times(start + 21, start + 30)
            .build(),
        span(t, 5, 1)
            .name("generate")
            .times(start + 31, start + 31 + run.generator_ms)
            .attr("llm.model_name", run.generator_model.as_str())
            .build(),
    ];
    let traj = trajectory(spans);
    let steps = assign(
        &traj,
        &[
            (1, StepKind::Agent, true),
            (2, StepKind::Planner, true),
            (3, StepKind::Planner, false),
            (4, StepKind::Retriever, true),
            (5, StepKind::Generator, true),
        ],
    );
    let mut findings = Vec::new();
    let mut root_cause = None;
    if run.empty_retrieval {
        findings.push(Finding {
            propagated: false,
            redone: false,
            ..Finding::new(
                index_of(&traj, 4),
                StepKind::Retriever,
                FindingKind::EmptyRetrieval,
                "no documents".into(),
                "test",
            )
        });
        // An error propagated up to the root: not counted.
        findings.push(Finding {
            propagated: true,
            redone: false,
            ..Finding::new(
                index_of(&traj, 1),
                StepKind::Agent,
                FindingKind::Error,
                "propagated".into(),
                "test",
            )
        });
        if run.outcome == Outcome::Failed {
            root_cause = Some(RootCause {
                span: index_of(&traj, 4),
                step: StepKind::Retriever,
                kind: FindingKind::EmptyRetrieval,
                reason: "no documents".into(),
                confidence: 0.9,
                evidence: vec![0],
                rule: "test",
                agent: None,
            });
        }
    }
    Analysis {
        trajectory: Arc::new(traj),
        steps,
        findings,
        outcome: run.outcome,
        root_cause,
    }
}

fn query(agg: &Aggregator, params: &[(&str, &str)]) -> Result<Breakdown, QueryError> {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let q = BreakdownQuery::parse(&params, agg.config())?;
    agg.breakdown(&q, NOW)
}

fn row<'a>(b: &'a Breakdown, step: &str, cohort: &[Option<&str>]) -> &'a StepRow {
    b.steps
        .iter()
        .find(|r| {
            &*r.step == step
                && r.cohort.len() == cohort.len()
                && r.cohort.iter().zip(cohort).all(|(a, b)| a.as_deref() == *b)
        })
        .unwrap_or_else(|| panic!("no row {step} {cohort:?} in {:#?}", b.steps))
}

fn render(registry: &Registry) -> String {
    crate::metrics::render(registry)
}

#[test]
fn counts_runs_failures_root_causes_and_outcomes() {
    let (agg, registry) = aggregator(config());
    let mut failed = Run::new(1, NOW_MS - 1000);
    failed.empty_retrieval = true;
    failed.outcome = Outcome::Failed;
    let mut recovered = Run::new(2, NOW_MS - 2000);
    recovered.empty_retrieval = true;
    recovered.outcome = Outcome::Recovered;
    agg.record(&build(&failed), NOW);
    agg.record(&build(&recovered), NOW);
    agg.record(&build(&Run::new(3, NOW_MS - 3000)), NOW);

    let b = query(&agg, &[("window", "15m")]).unwrap();
    assert_eq!(
        b.totals,
        OutcomeCounts {
            success: 1,
            recovered: 1,
            failed: 1
        }
    );
    let retriever = row(&b, "retriever", &[]);
    assert_eq!(retriever.runs, 3);
    assert_eq!(retriever.failures, 2);
    assert_eq!(retriever.root_causes, 1);
    assert!((retriever.failure_rate() - 2.0 / 3.0).abs() < 1e-9);
    assert!((retriever.root_cause_rate() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        retriever.findings_by_kind,
        vec![(Arc::from("empty_retrieval"), 2)]
    );
    assert_eq!(
        retriever.root_causes_by_kind,
        vec![(Arc::from("empty_retrieval"), 1)]
    );
    // One planner run per trajectory although the planner has two spans.
    assert_eq!(row(&b, "planner", &[]).runs, 3);
    // The propagated error on the root is not counted.
    let agent = row(&b, "agent", &[]);
    assert_eq!((agent.runs, agent.failures), (3, 0));
    assert!(agent.findings_by_kind.is_empty());
    // Steps in pipeline order.
    let order: Vec<&str> = b.steps.iter().map(|r| &*r.step).collect();
    assert_eq!(order, ["agent", "planner", "retriever", "generator"]);

    let text = render(&registry);
    assert!(text.contains(
        "faultline_trajectories_total{outcome=\"failed\",service=\"test-agent\",route=\"/chat\",model=\"planner-model\",prompt_version=\"\",user_segment=\"free\",environment=\"prod\"} 1"
    ), "{text}");
    assert!(text.contains(
        "faultline_step_failures_total{step=\"retriever\",kind=\"empty_retrieval\",service=\"test-agent\""
    ));
    assert!(
        text.contains("faultline_root_causes_total{step=\"retriever\",kind=\"empty_retrieval\"")
    );
    assert!(
        !text.contains("kind=\"error\""),
        "propagated findings are not counted"
    );
    assert!(text.contains("faultline_step_duration_seconds_count{step=\"generator\"} 3"));
    assert_eq!(agg.stats().recorded, 3);
}

#[test]
fn model_is_the_steps_own_for_steps_and_the_main_one_for_trajectories() {
    let (agg, registry) = aggregator(config());
    let mut run = Run::new(1, NOW_MS);
    run.generator_model = "gpt-x".into();
    run.planner_model = "gpt-x";
    agg.record(&build(&run), NOW);
    let mut run = Run::new(2, NOW_MS);
    run.generator_model = "claude-y".into();
    run.planner_model = "small-z";
    agg.record(&build(&run), NOW);

    let b = query(&agg, &[("window", "5m"), ("by", "model")]).unwrap();
    assert_eq!(row(&b, "generator", &[Some("gpt-x")]).runs, 1);
    assert_eq!(row(&b, "generator", &[Some("claude-y")]).runs, 1);
    assert_eq!(row(&b, "planner", &[Some("small-z")]).runs, 1);
    // The retriever has no model of its own: it takes the run's main model.
    assert_eq!(row(&b, "retriever", &[Some("gpt-x")]).runs, 1);
    // Trajectory 1 uses gpt-x twice: its main model. Trajectory 2 ties 1:1; the first
    // LLM call in canonical order (the planner's) wins.
    let cohorts: Vec<_> = b
        .trajectories
        .iter()
        .map(|r| (r.cohort[0].as_deref().map(str::to_owned), r.counts.total()))
        .collect();
    assert_eq!(
        cohorts,
        vec![
            (Some("gpt-x".to_owned()), 1),
            (Some("small-z".to_owned()), 1)
        ]
    );
    assert!(render(&registry).contains("faultline_step_runs_total{step=\"generator\",service=\"test-agent\",route=\"/chat\",model=\"claude-y\""));
}

#[test]
fn breakdown_by_zero_one_and_two_dimensions() {
    let (agg, _registry) = aggregator(config());
    let mut id = 0;
    for (route, segment, n_fail, n_ok) in [
        ("/a", Some("free"), 2, 1),
        ("/a", Some("pro"), 0, 3),
        ("/b", None, 1, 1),
    ] {
        for i in 0..(n_fail + n_ok) {
            id += 1;
            let mut run = Run::new(id, NOW_MS - id * 10);
            run.route = route;
            run.segment = segment;
            if i < n_fail {
                run.empty_retrieval = true;
                run.outcome = Outcome::Failed;
            }
            agg.record(&build(&run), NOW);
        }
    }
    let none = query(&agg, &[]).unwrap();
    assert!(none.by.is_empty());
    assert_eq!(row(&none, "retriever", &[]).runs, 8);
    assert_eq!(row(&none, "retriever", &[]).failures, 3);
    assert_eq!(none.totals.failed, 3);
    assert_eq!(none.trajectories.len(), 1);

    let one = query(&agg, &[("by", "route")]).unwrap();
    assert_eq!(&*one.by[0], "route");
    assert_eq!(row(&one, "retriever", &[Some("/a")]).runs, 6);
    assert_eq!(row(&one, "retriever", &[Some("/a")]).failures, 2);
    assert_eq!(row(&one, "retriever", &[Some("/b")]).failures, 1);

    // Comma-separated and repeated `by` are the same.
    let two = query(&agg, &[("by", "route,user_segment")]).unwrap();
    let two_repeated = query(&agg, &[("by", "route"), ("by", "user_segment")]).unwrap();
    assert_eq!(two, two_repeated);
    assert_eq!(
        row(&two, "retriever", &[Some("/a"), Some("free")]).failures,
        2
    );
    assert_eq!(
        row(&two, "retriever", &[Some("/a"), Some("pro")]).failures,
        0
    );
    let unset = row(&two, "retriever", &[Some("/b"), None]);
    assert_eq!((unset.runs, unset.root_causes), (2, 1));
    let traj: Vec<_> = two
        .trajectories
        .iter()
        .map(|r| (r.cohort.clone(), r.counts.failed, r.counts.total()))
        .collect();
    assert_eq!(
        traj,
        vec![
            (vec![Some(Arc::from("/a")), Some(Arc::from("free"))], 2, 3),
            (vec![Some(Arc::from("/a")), Some(Arc::from("pro"))], 0, 3),
            (vec![Some(Arc::from("/b")), None], 1, 2),
        ]
    );
}

#[test]
fn windows_follow_event_time_so_a_replay_counts_like_live_traffic() {
    // Last month's traffic replayed today: counted, and windows end at its newest minute.
    let (agg, _registry) = aggregator(config());
    let month_ago_ms = NOW_MS - 30 * 24 * 3_600_000;
    for i in 0..20 {
        agg.record(&build(&Run::new(i + 1, month_ago_ms - i * 60_000)), NOW);
    }
    let b = query(&agg, &[("window", "15m")]).unwrap();
    // Minutes month_ago-14 .. month_ago: runs at i = 0..=14 (one per minute).
    assert_eq!(b.totals.total(), 15);
    assert_eq!(b.to_unix_nano, (month_ago_ms * 1_000_000 / MIN + 1) * MIN);
    assert_eq!(
        query(&agg, &[("window", "24h")]).unwrap().totals.total(),
        20
    );
    assert_eq!(agg.stats().too_old, 0);

    // The same data live (now = its own time) gives the same numbers.
    let mut registry = Registry::default();
    let live = Aggregator::new(config(), &mut registry, fixed_clock(0));
    for i in (0..20).rev() {
        let t = month_ago_ms - i * 60_000;
        live.record(&build(&Run::new(i + 1, t)), t * 1_000_000);
    }
    let q = BreakdownQuery::parse(&[("window".into(), "15m".into())], live.config()).unwrap();
    assert_eq!(live.breakdown(&q, 0).unwrap(), b);
}

#[test]
fn a_span_stamped_in_2100_is_clamped_and_cannot_move_the_window() {
    let (agg, _registry) = aggregator(config());
    let year_2100_ms = 4_102_444_800_000;
    agg.record(&build(&Run::new(1, year_2100_ms)), NOW);
    agg.record(&build(&Run::new(2, NOW_MS - 10 * 60_000)), NOW);
    assert_eq!(agg.stats().clamped_future, 1);
    let b = query(&agg, &[("window", "30m")]).unwrap();
    // Both are in the window: the 2100 one at now + 5 min, the other 10 min ago.
    assert_eq!(b.totals.total(), 2);
    assert_eq!(b.to_unix_nano, ((NOW + 5 * MIN) / MIN + 1) * MIN);
    // A later query range in real time is still within the horizon.
    let from = (NOW - 20 * MIN).to_string();
    let to = NOW.to_string();
    let b = query(&agg, &[("from", &from), ("to", &to)]).unwrap();
    assert_eq!(b.totals.total(), 1);
}

#[test]
fn minutes_leave_the_horizon_and_older_data_is_not_bucketed() {
    let raw: RawAggregateConfig = toml::from_str("horizon = \"10m\"").unwrap();
    let (agg, registry) = aggregator(AggregateConfig::from_raw(&raw).unwrap());
    agg.record(&build(&Run::new(1, NOW_MS - 30 * 60_000)), NOW);
    assert_eq!(query(&agg, &[("window", "10m")]).unwrap().totals.total(), 1);
    agg.record(&build(&Run::new(2, NOW_MS)), NOW);
    // The first minute left the horizon when the newest moved 30 minutes on.
    let b = query(&agg, &[("window", "10m")]).unwrap();
    assert_eq!(b.totals.total(), 1);
    assert_eq!(
        agg.bucket_usage().1,
        5,
        "one trajectory and four step cells remain"
    );
    // Data older than the horizon behind the newest minute is not bucketed ...
    agg.record(&build(&Run::new(3, NOW_MS - 11 * 60_000)), NOW);
    assert_eq!(agg.stats().too_old, 1);
    assert_eq!(query(&agg, &[("window", "10m")]).unwrap().totals.total(), 1);
    // ... but the cumulative counters on /metrics count it.
    let text = render(&registry);
    let total: u64 = text
        .lines()
        .filter(|l| l.starts_with("faultline_trajectories_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(total, 3);
    // A window beyond the horizon is refused.
    assert!(matches!(
        query(&agg, &[("window", "11m")]),
        Err(QueryError::BeyondHorizon {
            horizon_minutes: 10
        })
    ));
    let from = (NOW - 60 * MIN).to_string();
    let to = NOW.to_string();
    assert!(matches!(
        query(&agg, &[("from", &from), ("to", &to)]),
        Err(QueryError::BeyondHorizon { .. })
    ));
}

#[test]
fn a_flood_of_distinct_models_stays_under_the_caps_and_keeps_heavy_hitters() {
    let raw: RawAggregateConfig = toml::from_str("top_k = 5\nmax_series = 60").unwrap();
    let config = AggregateConfig::from_raw(&raw).unwrap();
    let (agg, registry) = aggregator(config);
    // The flood comes first, then real traffic mixed with more flood.
    let mut trace = 0;
    for i in 0..100_000u64 {
        trace += 1;
        let mut run = Run::new(trace, NOW_MS - 1000);
        run.generator_model = format!("junk-model-{i}");
        run.planner_model = "planner-model";
        agg.record(&build(&run), NOW);
        if i >= 90_000 && i % 10 == 0 {
            trace += 1;
            let mut run = Run::new(trace, NOW_MS - 1000);
            run.generator_model = "gpt-real".into();
            run.empty_retrieval = true;
            run.outcome = Outcome::Failed;
            agg.record(&build(&run), NOW);
        }
    }
    let text = render(&registry);
    for family in [
        "faultline_trajectories_total{",
        "faultline_step_runs_total{",
        "faultline_step_failures_total{",
        "faultline_root_causes_total{",
        "faultline_step_duration_seconds_count{",
    ] {
        let n = text.lines().filter(|l| l.starts_with(family)).count();
        assert!(n <= 60, "{family}: {n} series");
    }
    let model_values: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split("model=\"").nth(1)?.split('"').next())
        .collect();
    assert!(model_values.len() <= 5 + 2, "{model_values:?}"); // top 5, other, unset
    assert!(model_values.contains("gpt-real"), "{model_values:?}");
    assert!(model_values.contains("other"));
    assert!(text.len() < 64 * 1024, "scrape is {} bytes", text.len());
    assert!(agg.metric_series().iter().all(|&n| n <= 60));

    // The breakdown keeps more values than /metrics, still bounded, and the real model
    // has its own row.
    let b = query(&agg, &[("window", "5m"), ("by", "model")]).unwrap();
    let gen_rows = b.steps.iter().filter(|r| &*r.step == "generator").count();
    assert!(gen_rows <= 61, "{gen_rows} generator rows");
    // Its first occurrence, still a candidate, went to `other`.
    let real = row(&b, "generator", &[Some("gpt-real")]);
    assert!((990..=1000).contains(&real.runs), "{}", real.runs);
    let total_gen_runs: u64 = b
        .steps
        .iter()
        .filter(|r| &*r.step == "generator")
        .map(|r| r.runs)
        .sum();
    assert_eq!(total_gen_runs, 101_000, "folding loses no counts");
    let (bytes, series) = agg.bucket_usage();
    println!("flood: {series} bucket series, {bytes} bytes");
}

#[test]
fn space_saving_keeps_heavy_hitters_not_the_first_seen() {
    let mut cohort = Cohort::new(3, 6);
    // Six values seen once fill the promoted sets first.
    for i in 0..6 {
        cohort.observe(Some(&format!("early-{i}")));
    }
    let mut last = (OTHER, OTHER);
    for _ in 0..50 {
        last = cohort.observe(Some("heavy"));
        for i in 0..20 {
            cohort.observe(Some(&format!("noise-{i}-{}", last.0)));
        }
    }
    assert_ne!(last.0, OTHER, "the heavy value got a /metrics label");
    assert_ne!(last.1, OTHER, "and a bucket id");
    assert_eq!(cohort.prom.promoted_len(), 3);
    assert_eq!(cohort.observe(None), (UNSET, UNSET));
    assert!(cohort.sketch_len() <= 256);

    let mut sketch = SpaceSaving::new(4);
    for v in ["a", "b", "a", "c", "d", "e", "a"] {
        sketch.observe(v);
    }
    assert_eq!(sketch.len(), 4);
    assert!(sketch.guaranteed("a") >= 2);
}

#[test]
fn percentiles_are_within_the_bucket_error() {
    let (agg, _registry) = aggregator(config());
    for i in 1..=1000u64 {
        let mut run = Run::new(i, NOW_MS - 1000);
        run.generator_ms = i % 100 + 1; // 1..=100 ms, ten times each
        agg.record(&build(&run), NOW);
    }
    let b = query(&agg, &[("window", "5m")]).unwrap();
    let g = row(&b, "generator", &[]);
    let close = |got: Option<f64>, want: f64| {
        let got = got.expect("a percentile");
        assert!((got - want).abs() / want < 0.04, "got {got}, want {want}");
    };
    close(g.p50_ms, 50.0);
    close(g.p90_ms, 90.0);
    close(g.p99_ms, 99.0);

    for micros in [0, 1, 15, 16, 17, 100, 1_000, 123_456, 10_000_000, u64::MAX] {
        let index = latency_index(micros);
        assert!(index <= 975);
        if micros > 0 && micros < u64::MAX / 2 {
            let mid = latency_value(index);
            assert!(
                (mid - micros as f64).abs() / (micros as f64) < 0.07,
                "{micros}"
            );
        }
    }
    let mut h = Latency::default();
    h.record(5);
    h.record(5);
    h.record(50_000);
    let mut dense = Vec::new();
    h.merge_into(&mut dense);
    assert_eq!(dense.iter().sum::<u64>(), 3);
    assert_eq!(h.heap_bytes() / 4, h_entries(&h));
}

fn h_entries(h: &Latency) -> usize {
    let mut dense = Vec::new();
    h.merge_into(&mut dense);
    dense
        .iter()
        .filter(|&&c| c > 0)
        .count()
        .max(h.heap_bytes() / 4)
}

fn mixed_runs() -> Vec<Analysis> {
    let models = ["m1", "m2", "m3"];
    let routes = ["/a", "/b"];
    (0..300u64)
        .map(|i| {
            let mut run = Run::new(i + 1, NOW_MS - (i % 37) * 60_000 - i);
            run.generator_model = models[(i % 3) as usize].into();
            run.route = routes[(i % 2) as usize];
            run.generator_ms = 5 + i % 50;
            if i % 4 == 0 {
                run.empty_retrieval = true;
                run.outcome = if i % 8 == 0 {
                    Outcome::Failed
                } else {
                    Outcome::Recovered
                };
            }
            build(&run)
        })
        .collect()
}

fn breakdowns(agg: &Aggregator) -> Vec<Breakdown> {
    [
        vec![("window", "1h")],
        vec![("window", "1h"), ("by", "model")],
        vec![("window", "1h"), ("by", "route,model")],
        vec![("window", "10m"), ("by", "user_segment")],
    ]
    .iter()
    .map(|p| query(agg, p).unwrap())
    .collect()
}

#[test]
fn the_same_analyses_in_any_order_or_interleaving_give_identical_breakdowns() {
    let analyses = mixed_runs();
    let (sequential, _r1) = aggregator(config());
    for a in &analyses {
        sequential.record(a, NOW);
    }
    let expected = breakdowns(&sequential);
    assert_eq!(expected[0].totals.total(), 300);

    // Reversed.
    let (reversed, _r2) = aggregator(config());
    for a in analyses.iter().rev() {
        reversed.record(a, NOW);
    }
    assert_eq!(breakdowns(&reversed), expected);

    // Four threads, interleaved through the Sink path.
    let mut registry = Registry::default();
    let threaded = Arc::new(Aggregator::new(config(), &mut registry, fixed_clock(NOW)));
    let shared: Arc<Vec<Arc<Analysis>>> =
        Arc::new(analyses.iter().cloned().map(Arc::new).collect());
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let agg = threaded.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                for a in shared.iter().skip(k).step_by(4) {
                    agg.publish(a.clone()); // counts nothing
                    agg.finalize(&a.clone().into());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(breakdowns(&threaded), expected);

    // Replaying the same input twice doubles every count, identically.
    for a in &analyses {
        sequential.record(a, NOW);
    }
    let twice = breakdowns(&sequential);
    assert_eq!(twice[0].totals.total(), 600);
    for (a, b) in twice[1].steps.iter().zip(&expected[1].steps) {
        assert_eq!((a.runs, a.failures), (2 * b.runs, 2 * b.failures));
    }
}

#[test]
fn bad_queries_are_refused_with_a_message() {
    let (agg, _registry) = aggregator(config());
    let cases: [(&[(&str, &str)], &str); 8] = [
        (&[("by", "colour")], "unknown dimension `colour`"),
        (&[("window", "fortnight")], "not a duration"),
        (&[("window", "25h")], "beyond the horizon"),
        (&[("limit", "5")], "unknown query parameter `limit`"),
        (&[("window", "5m"), ("from", "1")], "either `window`"),
        (&[("from", "5"), ("to", "1")], "before `to`"),
        (&[("by", "model,model")], "named twice"),
        (&[("from", "x"), ("to", "1")], "unix time"),
    ];
    for (params, message) in cases {
        let err = query(&agg, params).unwrap_err().to_string();
        assert!(err.contains(message), "{params:?}: {err}");
    }
    assert!(query(&agg, &[("window", "5m"), ("window", "6m")]).is_err());
    // An empty aggregator answers with zeros.
    let b = query(&agg, &[("window", "15m"), ("by", "model")]).unwrap();
    assert_eq!(b.totals.total(), 0);
    assert!(b.steps.is_empty());
}

#[test]
fn config_is_validated() {
    let raw: RawAggregateConfig = toml::from_str(
        r#"
        horizon = "2h"
        top_k = 7
        max_series = 500
        [[dimensions]]
        name = "tenant"
        keys = ["tenant.id", "org.id"]
        [[dimensions]]
        name = "model"
        keys = ["gen_ai.request.model"]
        scope = "step"
        "#,
    )
    .unwrap();
    let c = AggregateConfig::from_raw(&raw).unwrap();
    assert_eq!((c.horizon_minutes, c.top_k, c.max_series), (120, 7, 500));
    assert_eq!(c.dimensions.len(), 2);
    assert_eq!(c.dimensions[1].scope, Scope::Step);
    assert_eq!(c.breakdown_top_k(), 56);

    assert!(toml::from_str::<RawAggregateConfig>("horizn = \"1h\"").is_err());
    assert!(toml::from_str::<RawAggregateConfig>(
        "[[dimensions]]\nname = \"a\"\nkeys = [\"k\"]\nkey = \"x\""
    )
    .is_err());
    let bad = |text: &str| {
        let raw: RawAggregateConfig = toml::from_str(text).unwrap();
        AggregateConfig::from_raw(&raw).unwrap_err().to_string()
    };
    assert!(bad("horizon = \"90s\"").contains("whole number of minutes"));
    assert!(bad("horizon = \"60d\"").contains("between"));
    assert!(bad("top_k = 0").contains("top_k"));
    assert!(bad("[[dimensions]]\nname = \"step\"\nkeys = [\"k\"]").contains("label of the metrics"));
    assert!(bad("[[dimensions]]\nname = \"a-b\"\nkeys = [\"k\"]").contains("must match"));
    assert!(bad("[[dimensions]]\nname = \"a\"\nkeys = []").contains("non-empty"));
    assert!(
        bad("[[dimensions]]\nname = \"a\"\nkeys = [\"k\"]\nscope = \"trace\"").contains("scope")
    );
    let dup = "[[dimensions]]\nname = \"a\"\nkeys = [\"k\"]\n[[dimensions]]\nname = \"a\"\nkeys = [\"j\"]";
    assert!(bad(dup).contains("named twice"));

    let config = config();
    let names: Vec<&str> = config.dimensions.iter().map(|d| &*d.name).collect();
    assert_eq!(
        names,
        [
            "service",
            "route",
            "model",
            "prompt_version",
            "user_segment",
            "environment"
        ]
    );
}

#[test]
fn custom_steps_and_kinds_are_bounded_too() {
    let raw: RawAggregateConfig = toml::from_str("top_k = 3\nmax_series = 40").unwrap();
    let (agg, registry) = aggregator(AggregateConfig::from_raw(&raw).unwrap());
    for i in 0..5_000u64 {
        let spans = vec![span(i + 1, 1, 0).times(NOW_MS - 10, NOW_MS).build()];
        let traj = trajectory(spans);
        let step = StepKind::Custom(format!("step-{i}").into());
        let analysis = Analysis {
            steps: vec![StepAssignment {
                kind: step.clone(),
                source: StepSource::Explicit,
                run_start: true,
            }],
            findings: vec![Finding::new(
                0,
                step,
                FindingKind::Custom(format!("rule-{}", i % 100).into()),
                String::new(),
                "test",
            )],
            trajectory: Arc::new(traj),
            outcome: Outcome::Recovered,
            root_cause: None,
        };
        agg.record(&analysis, NOW);
    }
    let text = render(&registry);
    let steps: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split("step=\"").nth(1)?.split('"').next())
        .collect();
    assert!(steps.len() <= 3 + 1, "{steps:?}");
    let kinds: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split("kind=\"").nth(1)?.split('"').next())
        .collect();
    assert!(kinds.len() <= 65, "{} kinds", kinds.len());
    let b = query(&agg, &[("window", "5m")]).unwrap();
    assert_eq!(b.steps.iter().map(|r| r.runs).sum::<u64>(), 5_000);
}

#[test]
fn malformed_analyses_do_not_panic() {
    let (agg, _registry) = aggregator(config());
    let traj = trajectory(vec![
        span(1, 1, 0).times(NOW_MS - 5, NOW_MS).build(),
        span(1, 2, 1).times(NOW_MS - 4, NOW_MS).build(),
    ]);
    // Fewer step assignments than spans, findings and a root cause pointing nowhere.
    let analysis = Analysis {
        trajectory: Arc::new(traj),
        steps: vec![StepAssignment {
            kind: StepKind::Tool,
            source: StepSource::Root,
            run_start: false,
        }],
        findings: vec![Finding {
            propagated: false,
            redone: false,
            ..Finding::new(
                99,
                StepKind::Tool,
                FindingKind::ToolError,
                String::new(),
                "test",
            )
        }],
        outcome: Outcome::Failed,
        root_cause: Some(RootCause {
            span: 1234,
            step: StepKind::Tool,
            kind: FindingKind::ToolError,
            reason: String::new(),
            confidence: 0.5,
            evidence: vec![],
            rule: "test",
            agent: None,
        }),
    };
    agg.record(&analysis, NOW);
    let empty = Analysis {
        trajectory: Arc::new(trajectory(Vec::new())),
        steps: Vec::new(),
        findings: Vec::new(),
        outcome: Outcome::Success,
        root_cause: None,
    };
    agg.record(&empty, NOW); // end time 0: older than the horizon
    let b = query(&agg, &[("window", "5m")]).unwrap();
    assert_eq!(b.totals.failed, 1);
    let tool = row(&b, "tool", &[]);
    assert_eq!((tool.runs, tool.root_causes), (0, 1));
    assert_eq!(agg.stats().too_old, 1);
}

/// Prints what one `finalize` costs and how large the buckets are; asserts only sizes
/// that do not depend on the machine.
#[test]
fn cost_and_memory_measurement() {
    let (agg, _registry) = aggregator(config());
    let analyses = mixed_runs();
    // Warm up: ids, series and scratch buffers exist.
    for a in &analyses {
        agg.record(a, NOW);
    }
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        for a in &analyses {
            agg.record(a, NOW);
        }
    }
    let per = start.elapsed() / (rounds * analyses.len() as u32);
    println!("record(): {per:?} per analysis of 5 spans and 4 step runs (debug build)");
    let (bytes, series) = agg.bucket_usage();
    println!(
        "buckets: {series} series in 37 minutes, {bytes} bytes, {} bytes per series",
        bytes / series.max(1)
    );
    assert_eq!(std::mem::size_of::<buckets::StepCell>(), 40);
    // One hdrhistogram per cell and minute would be far larger than the sparse scale.
    let hdr = hdrhistogram::Histogram::<u32>::new_with_bounds(1, 3_600_000_000, 2).unwrap();
    println!(
        "an hdrhistogram<u32> over 1us..1h at 2 significant digits: {} counters = {} bytes",
        hdr.distinct_values(),
        hdr.distinct_values() * 4
    );
    assert!(per < Duration::from_secs(1));
}
