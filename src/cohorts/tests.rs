//! Unit tests: the statistics against known values, the window's bounds, the miner on
//! small planted data (single, interaction, numeric, decoy, null), the consecutive-runs
//! rule, compare filters, and extraction from a real analysis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::compare::{compare, Filter, FilterError};
use super::mine::{mine, round_threshold, ClauseValue, MineConfig, Op, Snapshot};
use super::stats::*;
use super::window::{RecordInput, Window, OTHER};
use super::{CohortConfig, CohortIndex, WindowSpec};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-300)
}

#[test]
fn fisher_matches_the_tea_tasting_table() {
    // [[3, 1], [1, 3]]: P(X >= 3) = 17/70.
    assert!(close(fisher_greater(3, 4, 4, 8), 17.0 / 70.0, 1e-9));
    assert!(close(fisher_greater(4, 4, 4, 8), 1.0 / 70.0, 1e-9));
    assert_eq!(fisher_greater(0, 4, 4, 8), 1.0);
    // Nonsense counts never panic.
    assert_eq!(fisher_greater(5, 4, 4, 8), 1.0);
    assert_eq!(fisher_greater(1, 10, 4, 8), 1.0);
}

#[test]
fn fisher_agrees_with_the_z_test_on_large_counts() {
    let f = fisher_greater(80, 1000, 580, 11000);
    let z = z_test_greater(80, 1000, 500, 10000);
    assert!(f < 1e-3 && z < 1e-3, "{f} {z}");
    assert!((f.log10() - z.log10()).abs() < 1.0, "{f} {z}");
}

#[test]
fn normal_tail_and_z_tests_match_tables() {
    assert!(close(normal_upper(Z95), 0.025, 1e-5));
    assert!(close(normal_upper(0.0), 0.5, 1e-7));
    assert!(close(normal_upper(5.0), 2.866_515_7e-7, 1e-5));
    // 60/100 vs 40/100: z = 2.828.
    assert!(close(z_test_greater(60, 100, 40, 100), 0.002_339_1, 1e-3));
    assert!(close(z_test_two_sided(60, 100, 40, 100), 0.004_678_2, 1e-3));
    assert_eq!(z_test_greater(0, 0, 1, 10), 1.0);
    assert_eq!(greater_p(1, 100, 50, 100, 20), 1.0, "below the rest");
}

#[test]
fn benjamini_hochberg_q_values() {
    let q = bh_q_values(&[0.01, 0.04, 0.03, 0.005]);
    let want = [0.02, 0.04, 0.04, 0.02];
    for (a, b) in q.iter().zip(want) {
        assert!(close(*a, b, 1e-12), "{q:?}");
    }
    assert!(bh_q_values(&[]).is_empty());
    // Benjamini–Yekutieli: BH times H(4) = 25/12.
    let by = by_q_values(&[0.01, 0.04, 0.03, 0.005]);
    assert!(close(by[0], 0.02 * 25.0 / 12.0, 1e-12), "{by:?}");
    assert!(close(by[1], 0.04 * 25.0 / 12.0, 1e-12), "{by:?}");
    assert_eq!(bh_q_values(&[0.9, 1.0]), vec![1.0, 1.0]);
}

#[test]
fn risk_ratio_interval_by_the_log_method() {
    let (rr, ci) = risk_ratio_ci(20, 100, 10, 100);
    assert!(close(rr, 2.0, 1e-12));
    assert!(
        close(ci[0], 0.986_6, 1e-3) && close(ci[1], 4.054_5, 1e-3),
        "{ci:?}"
    );
    // Zero cells get the Haldane correction: finite.
    let (rr, ci) = risk_ratio_ci(5, 50, 0, 50);
    assert!(rr.is_finite() && ci[0].is_finite() && ci[1].is_finite());
    let (d, ci) = difference_ci(40, 100, 60, 100);
    assert!(close(d, 0.2, 1e-12));
    assert!(
        ci[0] > 0.06 && ci[0] < 0.07 && ci[1] > 0.33 && ci[1] < 0.34,
        "{ci:?}"
    );
}

#[test]
fn interaction_is_the_ratio_of_risk_ratios() {
    // Multiplicative effects (×2 and ×2, ×4 together): no interaction.
    let (ir, p) = interaction_greater([(20, 100), (10, 100), (10, 100), (5, 100)]);
    assert!(close(ir, 1.0, 1e-12));
    assert!(close(p, 0.5, 1e-6), "{p}");
    // ×4 only together: ln 4 / sqrt(1/40 − 1/100 + 3 (1/10 − 1/100)) = 2.5966.
    let (ir, p) = interaction_greater([(40, 100), (10, 100), (10, 100), (10, 100)]);
    assert!(close(ir, 4.0, 1e-12));
    assert!(close(p, normal_upper(2.596_6), 1e-3), "{p}");
    // Below the product: not significant; empty cells: no claim.
    assert!(interaction_greater([(5, 100), (10, 100), (10, 100), (10, 100)]).1 > 0.5);
    assert_eq!(
        interaction_greater([(5, 100), (0, 0), (10, 100), (10, 100)]).1,
        1.0
    );
    // A zero count gets Haldane's correction: finite.
    let (ir, p) = interaction_greater([(30, 100), (0, 100), (10, 100), (10, 100)]);
    assert!(ir.is_finite() && p < 0.01, "{ir} {p}");
}

#[test]
fn thresholds_round_to_two_significant_digits() {
    assert_eq!(round_threshold(4321.0), 4300.0);
    assert_eq!(round_threshold(1860.0), 1900.0);
    assert_eq!(round_threshold(7.0), 7.0);
    assert!(close(round_threshold(0.374), 0.37, 1e-12));
}

fn row(pairs: &[(&str, &str)], tokens: f64, failed: bool, step: &str) -> RecordInput {
    RecordInput {
        categorical: pairs
            .iter()
            .map(|(k, v)| (Arc::from(*k), v.to_string()))
            .collect(),
        numeric: [Some(tokens), None, Some(5.0), Some(1.0), Some(1000.0), None],
        failed,
        root_step: failed.then(|| step.to_string()),
        root_pattern: failed.then_some(7),
        steps: vec![("planner".into(), false), (step.into(), failed)],
        ..RecordInput::default()
    }
}

/// `n` rows: model (a,b,c,d), segment (x,y,z), route (r0..r4), tokens log-normal;
/// base rate 5%; `plant` multiplies the rate.
fn planted(
    n: usize,
    seed: u64,
    plant: impl Fn(&str, &str, &str, f64) -> f64,
    decoy: bool,
) -> Window {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut w = Window::new(n, 8, 50);
    for i in 0..n {
        let model = ["a", "b", "c", "d"][rng.random_range(0..4)];
        let mut segment = ["x", "y", "z"][rng.random_range(0..3)];
        if decoy && model == "c" && rng.random_bool(0.8) {
            segment = "z";
        }
        let route = ["r0", "r1", "r2", "r3", "r4"][rng.random_range(0..5)];
        let u: f64 = rng.random_range(0.0..1.0);
        let tokens = (1800.0 * (0.7 * (u * 2.0 - 1.0) * 2.0f64).exp()).round();
        let p = (0.05 * plant(model, segment, route, tokens)).min(0.95);
        let failed = rng.random_bool(p);
        // The blamed step: the generator for the planted excess of model c, else at
        // random.
        let planted_excess = model == "c" && rng.random_bool(((p - 0.05) / p).max(0.0));
        let step = if planted_excess {
            "generator"
        } else {
            ["retriever", "generator", "tool"][rng.random_range(0..3)]
        };
        let mut r = row(
            &[
                ("model", model),
                ("user_segment", segment),
                ("route", route),
            ],
            tokens,
            failed,
            step,
        );
        r.end_unix_nano = 1_000_000_000 * (i as u64 + 1);
        w.push(&r);
    }
    w
}

fn names(report: &super::MineReport) -> Vec<String> {
    report.cohorts.iter().map(|c| c.key()).collect()
}

#[test]
fn miner_finds_single_and_interaction_cohorts() {
    let w = planted(
        20_000,
        1,
        |m, s, _, _| match (m, s) {
            ("c", _) => 3.0,
            ("a", "y") => 4.0,
            _ => 1.0,
        },
        false,
    );
    let report = mine(&Snapshot::from_window(&w, None), &MineConfig::default());
    let keys = names(&report);
    assert!(report.tests > 10, "{report:?}");
    let top: Vec<&str> = keys
        .iter()
        .take(2)
        .map(|k| k.split('|').next().unwrap_or(""))
        .collect();
    assert!(top.contains(&"model=c"), "{keys:?}");
    assert!(
        top.contains(&"model=a&user_segment=y") || top.contains(&"user_segment=y&model=a"),
        "{keys:?}"
    );
    let c = &report.cohorts[0];
    assert!(c.risk_ratio_ci[0] <= c.risk_ratio && c.risk_ratio <= c.risk_ratio_ci[1]);
    assert!(c.q_value <= 0.05 && c.p_value <= c.q_value);
    assert!(!c.example_trace_ids.is_empty() || c.failures > 0);
    // The dominant blamed step of model=c is the generator.
    let mc = report
        .cohorts
        .iter()
        .find(|c| c.key().starts_with("model=c"))
        .expect("model=c reported");
    assert_eq!(
        mc.top_root_cause_step.as_ref().map(|(s, _)| &**s),
        Some("generator")
    );
    assert_eq!(mc.top_reasons.first().map(|(p, _)| *p), Some(7));
    // No parent of the interaction is reported alone.
    assert!(
        !keys.iter().any(|k| k == "model=a" || k == "user_segment=y"),
        "{keys:?}"
    );
}

#[test]
fn miner_finds_a_numeric_threshold() {
    let w = planted(
        20_000,
        2,
        |_, _, _, t| if t >= 4000.0 { 3.0 } else { 1.0 },
        false,
    );
    let report = mine(&Snapshot::from_window(&w, None), &MineConfig::default());
    let first = report.cohorts.first().expect("a cohort");
    assert_eq!(first.predicate.len(), 1, "{:?}", names(&report));
    assert_eq!(&*first.predicate[0].key, "input_tokens");
    assert_eq!(first.predicate[0].op, Op::Ge);
    let ClauseValue::Number(t) = first.predicate[0].value else {
        panic!("numeric clause");
    };
    assert!((3000.0..=5000.0).contains(&t), "{t}");
}

#[test]
fn miner_ranks_the_cause_above_its_decoy_and_drops_the_decoy() {
    let w = planted(
        20_000,
        3,
        |m, _, _, _| if m == "c" { 3.0 } else { 1.0 },
        true,
    );
    let report = mine(&Snapshot::from_window(&w, None), &MineConfig::default());
    let keys = names(&report);
    assert!(
        keys.first().is_some_and(|k| k.starts_with("model=c")),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.starts_with("user_segment=z")),
        "{keys:?}"
    );
}

#[test]
fn miner_is_silent_on_null_data() {
    let mut reported = 0;
    for seed in 10..16 {
        let w = planted(10_000, seed, |_, _, _, _| 1.0, false);
        let report = mine(&Snapshot::from_window(&w, None), &MineConfig::default());
        reported += report.cohorts.len();
    }
    assert!(reported <= 1, "{reported} false cohorts over 6 null runs");
}

#[test]
fn small_windows_give_nothing_and_never_panic() {
    let w = Window::new(10, 4, 4);
    assert!(
        mine(&Snapshot::from_window(&w, None), &MineConfig::default())
            .cohorts
            .is_empty()
    );
    let mut w = Window::new(50, 4, 4);
    for i in 0..200 {
        w.push(&row(&[("model", "a")], i as f64, i % 2 == 0, "tool"));
    }
    assert_eq!(w.len(), 50);
    let r = mine(&Snapshot::from_window(&w, None), &MineConfig::default());
    assert!(r.cohorts.is_empty());
}

#[test]
fn dictionaries_stay_bounded_and_promote_heavy_values() {
    let mut w = Window::new(1000, 4, 10);
    for i in 0..5000 {
        let v = format!("u{i}");
        w.push(&row(&[("model", &v)], 1.0, false, "tool"));
    }
    let d = &w.attributes[0];
    assert!(d.codes() <= 22, "{}", d.codes());
    for _ in 0..1000 {
        w.push(&row(&[("model", "heavy")], 1.0, false, "tool"));
    }
    let d = &w.attributes[0];
    let code = d.code_of("heavy").expect("promoted");
    assert!(d.rows(code) > 900, "{}", d.rows(code));
    assert!(d.rows(OTHER) < 100);
    // More attributes than slots: counted, not stored.
    let mut w = Window::new(10, 2, 10);
    w.push(&row(
        &[("a", "1"), ("b", "2"), ("c", "3")],
        1.0,
        false,
        "tool",
    ));
    assert_eq!(w.attributes.len(), 2);
    assert_eq!(w.dropped_attributes, 1);
}

#[test]
fn a_cohort_is_reported_after_two_consecutive_runs() {
    let index = CohortIndex::new(CohortConfig {
        window: 20_000,
        ..CohortConfig::default()
    });
    let w = planted(
        20_000,
        4,
        |m, _, _, _| if m == "c" { 3.0 } else { 1.0 },
        false,
    );
    let snap = Snapshot::from_window(&w, None);
    for r in 0..snap.n {
        let mut input = row(
            &[(
                "model",
                &snap
                    .name(0, snap.code(r, 0))
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            )],
            1000.0,
            snap.failed[r],
            "generator",
        );
        input.end_unix_nano = snap.end_unix_nano[r];
        index.push(&input);
    }
    let first = index.mine_now(WindowSpec::Ring);
    assert!(first.cohorts.is_empty());
    assert!(first.pending >= 1);
    let second = index.mine_now(WindowSpec::Ring);
    assert!(
        second
            .cohorts
            .iter()
            .any(|c| c.key().starts_with("model=c")),
        "{second:?}"
    );
    assert_eq!(second.runs, 2);
    assert_eq!(index.results(WindowSpec::Ring), Some(second));
    // A duration window keeps its own streak, but its first reading, which nothing
    // would mine again before the next call, confirms itself.
    let recent = index.mine_now(WindowSpec::Seconds(10_000));
    assert!(
        recent
            .cohorts
            .iter()
            .any(|c| c.key().starts_with("model=c")),
        "{recent:?}"
    );
    assert_eq!(recent.runs, 1);
    assert!(recent.last.as_ref().is_some_and(|r| r.records <= 10_001));
}

/// Rows of [`planted`] with model `c` failing three times as often, as inputs.
fn model_c_inputs(n: usize, seed: u64) -> Vec<RecordInput> {
    let w = planted(
        n,
        seed,
        |m, _, _, _| if m == "c" { 3.0 } else { 1.0 },
        false,
    );
    let snap = Snapshot::from_window(&w, None);
    (0..snap.n)
        .map(|r| {
            let model = snap
                .name(0, snap.code(r, 0))
                .map(|s| s.to_string())
                .unwrap_or_default();
            let mut input = row(&[("model", &model)], 1000.0, snap.failed[r], "generator");
            input.end_unix_nano = snap.end_unix_nano[r];
            input
        })
        .collect()
}

#[test]
fn pending_cohorts_are_confirmed_on_the_timer_without_new_rows() {
    let index = Arc::new(CohortIndex::new(CohortConfig {
        window: 20_000,
        mine_every_records: 20_000,
        mine_every: Duration::from_secs(3600),
        min_interval: Duration::from_millis(200),
        ..CohortConfig::default()
    }));
    index.spawn_miner().expect("the miner thread starts");
    // One burst, then nothing: the burst wakes the miner once.
    for input in model_c_inputs(20_000, 4) {
        index.push(&input);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let confirmed = loop {
        let r = index.results(WindowSpec::Ring);
        if r.as_ref().is_some_and(|r| !r.cohorts.is_empty()) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let confirmed = confirmed.expect("the ring was mined");
    assert!(
        confirmed
            .cohorts
            .iter()
            .any(|c| c.key().starts_with("model=c")),
        "{confirmed:?}"
    );
    assert!(confirmed.runs >= 2, "{confirmed:?}");
}

#[test]
fn compare_filters_parse_and_compare() {
    let f = Filter::parse("model=a, input_tokens>=4000,steps<3").expect("valid");
    assert_eq!(f.clauses.len(), 3);
    assert_eq!(f.clauses[1].1, Op::Ge);
    assert!(Filter::parse("").expect("empty").clauses.is_empty());
    assert!(matches!(
        Filter::parse("model"),
        Err(FilterError::Syntax(_))
    ));
    assert!(matches!(
        Filter::parse("model>=3"),
        Err(FilterError::NotNumeric(_))
    ));
    assert!(matches!(
        Filter::parse("input_tokens>=lots"),
        Err(FilterError::NotANumber(_))
    ));
    let w = planted(
        10_000,
        5,
        |m, _, _, _| if m == "c" { 4.0 } else { 1.0 },
        false,
    );
    let snap = Snapshot::from_window(&w, None);
    let cmp = compare(
        &snap,
        &Filter::parse("model=a").expect("a"),
        &Filter::parse("model=c").expect("c"),
    );
    assert!(cmp.a.trajectories > 2000 && cmp.b.trajectories > 2000);
    assert!(cmp.overall.difference > 0.1, "{:?}", cmp.overall);
    assert!(cmp.overall.p_value < 1e-6);
    assert!(cmp.overall.ci[0] > 0.0);
    let gen = cmp
        .steps
        .iter()
        .find(|s| &*s.step == "generator")
        .expect("generator row");
    assert!(gen.a.runs > 0);
    assert!(gen.b.runs > 2000 && gen.root_cause_rate.difference > 0.1);
    // Unknown keys and values match nothing; time bounds apply.
    let none = Filter::parse("model=zzz").expect("f");
    assert!(none.matches(&snap).iter().all(|m| !m));
    let mut timed = Filter::parse("").expect("f");
    timed.from_unix_nano = Some(5_000 * 1_000_000_000);
    timed.to_unix_nano = Some(6_000 * 1_000_000_000);
    assert_eq!(timed.matches(&snap).iter().filter(|m| **m).count(), 1000);
}

#[test]
fn extraction_reads_dimensions_tokens_and_steps_from_an_analysis() {
    use crate::analyze::{analyze, AnalyzeConfig};
    use crate::test_support::{span, trajectory};
    let spans = vec![
        span(1, 1, 0)
            .name("agent")
            .attr("openinference.span.kind", "AGENT")
            .attr("llm.model_name", "m1")
            .attr("http.route", "/ask")
            .attr("llm.token_count.prompt", 1000i64)
            .attr("session.id", "s-1")
            .attr("app.tier", "gold")
            .resource_attr("service.name", "svc")
            .times(0, 100)
            .build(),
        span(1, 2, 1)
            .name("llm")
            .attr("openinference.span.kind", "LLM")
            .attr("llm.token_count.prompt", 600i64)
            .attr("llm.token_count.completion", 50i64)
            .times(1, 40)
            .build(),
        span(1, 3, 1)
            .name("llm")
            .attr("openinference.span.kind", "LLM")
            .attr("llm.token_count.prompt", 400i64)
            .times(41, 80)
            .build(),
        span(1, 4, 1)
            .name("search")
            .attr("openinference.span.kind", "TOOL")
            .error("boom")
            .times(81, 90)
            .build(),
    ];
    let a = analyze(Arc::new(trajectory(spans)), &AnalyzeConfig::default());
    let dims = crate::aggregate::config::default_dimensions();
    let r = super::extract::record_input(&a, &dims, Some(42));
    let get = |k: &str| {
        r.categorical
            .iter()
            .find(|(key, _)| &**key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("model"), Some("m1"));
    assert_eq!(get("route"), Some("/ask"));
    assert_eq!(get("service"), Some("svc"));
    assert_eq!(get("app.tier"), Some("gold"));
    assert_eq!(get("session.id"), None, "identifiers are not cohorts");
    assert_eq!(get("http.route"), None, "dimension keys are read once");
    assert_eq!(
        r.numeric[0],
        Some(1000.0),
        "children sum, root not added again"
    );
    assert_eq!(r.numeric[1], Some(50.0));
    assert_eq!(r.numeric[3], Some(1.0), "one tool call");
    assert!(r.numeric[2].is_some_and(|s| s >= 3.0));
    assert!(close(r.numeric[4].unwrap_or(0.0), 100.0, 1e-9));
    assert!(r.steps.iter().any(|(s, failed)| s == "tool" && *failed));
    if r.failed {
        assert_eq!(r.root_pattern, Some(42));
        assert!(r.root_step.is_some());
    }
}

#[test]
fn a_value_displaced_and_promoted_again_is_one_value() {
    let mut w = Window::new(1000, 2, 2);
    let push = |w: &mut Window, v: &str, k: usize| {
        for _ in 0..k {
            w.push(&row(&[("model", v)], 1.0, false, "tool"));
        }
    };
    push(&mut w, "a", 10);
    push(&mut w, "b", 10);
    push(&mut w, "c", 40);
    push(&mut w, "a", 60);
    let snap = Snapshot::from_window(&w, None);
    let a_codes: Vec<u16> = (0..snap.names[0].len() as u16)
        .filter(|&c| c > 0 && snap.name(0, c).is_some_and(|n| &**n == "a"))
        .collect();
    assert_eq!(a_codes.len(), 2, "{:?}", snap.names[0]);
    let coded = (0..snap.n)
        .filter(|&r| a_codes.contains(&snap.code(r, 0)))
        .count();
    let matched = Filter::parse("model=a")
        .expect("f")
        .matches(&snap)
        .iter()
        .filter(|m| **m)
        .count();
    assert_eq!(matched, coded);
    assert!(coded > 50);
}

/// `n` rows: the planted cohort `input_tokens >= 4000` (×3, about a fifth of the rows)
/// and a broad path, `environment=production` (55% of the rows, ×2): too broad to be
/// a cohort (more than half of the runs), but it multiplies the rate of every cohort
/// it intersects.
fn planted_with_broad_path(n: usize, seed: u64) -> Window {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut w = Window::new(n, 8, 50);
    for i in 0..n {
        let model = ["a", "b", "c", "d"][rng.random_range(0..4)];
        let environment = if rng.random_bool(0.55) {
            "production"
        } else {
            "staging"
        };
        let u: f64 = rng.random_range(0.0..1.0);
        let tokens = (1800.0 * (0.7 * (u * 2.0 - 1.0) * 2.0f64).exp()).round();
        let mut p = 0.02;
        if tokens >= 4000.0 {
            p *= 3.0;
        }
        if environment == "production" {
            p *= 2.0;
        }
        let failed = rng.random_bool(p);
        let step = ["retriever", "generator", "tool"][rng.random_range(0..3)];
        let mut r = row(
            &[("model", model), ("environment", environment)],
            tokens,
            failed,
            step,
        );
        r.end_unix_nano = 1_000_000_000 * (i as u64 + 1);
        w.push(&r);
    }
    w
}

#[test]
fn a_refinement_that_only_multiplies_two_effects_is_pruned() {
    // `environment=production & input_tokens>=T` (T below 4000) beats each parent on
    // its other rows (×2 over the staging rows with T tokens or more, and over the
    // production rows below T, as many of its rows reach 4000), and its rows outside
    // the reported threshold are elevated by the broad path, so they are not
    // explained by it. Only the product of its parts' effects shows that the
    // conjunction adds nothing to them. Without that test the refinement is reported
    // (for all failures, a step or the pattern) for four of these six seeds.
    for seed in 21..27 {
        let w = planted_with_broad_path(40_000, seed);
        let report = mine(&Snapshot::from_window(&w, None), &MineConfig::default());
        let keys = names(&report);
        assert!(
            keys.first()
                .is_some_and(|k| k.starts_with("input_tokens>=") && !k.contains('&')),
            "{keys:?}"
        );
        assert!(
            !keys.iter().any(|k| k.contains("environment=")),
            "seed {seed}: {keys:?}"
        );
    }
}

#[test]
fn attributes_holding_the_same_rows_are_one_cohort_with_equivalent_names() {
    let mut rng = SmallRng::seed_from_u64(9);
    let mut w = Window::new(20_000, 8, 50);
    for i in 0..20_000u64 {
        let version = ["v5", "v6", "v7"][rng.random_range(0..3)];
        let release = match version {
            "v5" => "1.4.3",
            "v6" => "1.5.2",
            _ => "1.6.1",
        };
        let model = ["a", "b"][rng.random_range(0..2)];
        let failed = rng.random_bool(if version == "v7" { 0.15 } else { 0.05 });
        let mut r = row(
            &[
                ("prompt_version", version),
                ("service.version", release),
                ("model", model),
            ],
            1000.0,
            failed,
            "generator",
        );
        r.end_unix_nano = 1_000_000_000 * (i + 1);
        w.push(&r);
    }
    let report = mine(&Snapshot::from_window(&w, None), &MineConfig::default());
    let v7: Vec<&super::Discovered> = report
        .cohorts
        .iter()
        .filter(|c| {
            c.predicate
                .iter()
                .any(|cl| cl.to_string() == "prompt_version=v7")
        })
        .collect();
    assert!(!v7.is_empty(), "{:?}", names(&report));
    assert!(
        v7[0]
            .equivalents
            .iter()
            .any(|(i, cl)| *i == 0 && cl.to_string() == "service.version=1.6.1"),
        "{:?}",
        v7[0]
    );
    assert!(
        !names(&report)
            .iter()
            .any(|k| k.starts_with("service.version")),
        "one cohort, not two: {:?}",
        names(&report)
    );
}

#[test]
fn symptoms_are_not_mined_by_default() {
    let mut rng = SmallRng::seed_from_u64(10);
    let mut w = Window::new(20_000, 8, 50);
    for i in 0..20_000u64 {
        let model = ["a", "b", "c"][rng.random_range(0..3)];
        let failed = rng.random_bool(0.08);
        let mut r = row(&[("model", model)], 1000.0, failed, "generator");
        // Failed runs are slow and short: consequences of failing.
        let duration = if failed {
            9000.0
        } else {
            rng.random_range(500.0..3000.0)
        };
        r.numeric = [
            Some(rng.random_range(500.0..5000.0)),
            Some(if failed { 10.0 } else { 300.0 }),
            Some(if failed { 2.0 } else { 6.0 }),
            Some(1.0),
            Some(duration),
            None,
        ];
        r.end_unix_nano = 1_000_000_000 * (i + 1);
        w.push(&r);
    }
    let snap = Snapshot::from_window(&w, None);
    let report = mine(&snap, &MineConfig::default());
    assert!(
        report.cohorts.iter().all(|c| c.predicate.iter().all(|cl| ![
            "duration_ms",
            "output_tokens",
            "steps"
        ]
        .contains(&&*cl.key))),
        "{:?}",
        names(&report)
    );
    let with = mine(
        &snap,
        &MineConfig {
            symptoms: true,
            ..MineConfig::default()
        },
    );
    assert!(
        names(&with).iter().any(|k| k.starts_with("duration_ms>=")),
        "{:?}",
        names(&with)
    );
}

#[test]
fn the_candidate_cap_stops_the_search_at_exactly_the_cap() {
    let w = planted(
        20_000,
        1,
        |m, s, _, _| match (m, s) {
            ("c", _) => 3.0,
            ("a", "y") => 4.0,
            _ => 1.0,
        },
        false,
    );
    let snap = Snapshot::from_window(&w, None);
    let full = mine(&snap, &MineConfig::default());
    assert!(!full.truncated, "{full:?}");
    assert!(full.candidates > 20, "{full:?}");
    let interaction = |r: &super::MineReport| {
        names(r).iter().any(|k| {
            k.starts_with("model=a&user_segment=y") || k.starts_with("user_segment=y&model=a")
        })
    };
    assert!(interaction(&full), "{:?}", names(&full));

    // Capped below what the search needs: it stops at the cap, says so, and what needs
    // a pair is not found, while single items still are.
    for cap in [0, 1, 10, full.candidates - 1] {
        let capped = mine(
            &snap,
            &MineConfig {
                max_candidates: cap,
                ..MineConfig::default()
            },
        );
        assert_eq!(capped.candidates, cap, "cap {cap}: {capped:?}");
        assert!(capped.truncated, "cap {cap}");
        if cap == 0 {
            assert!(!interaction(&capped), "{:?}", names(&capped));
            assert!(
                names(&capped).iter().any(|k| k.starts_with("model=c")),
                "{:?}",
                names(&capped)
            );
        }
    }
    // A cap the search does not reach changes nothing.
    let roomy = mine(
        &snap,
        &MineConfig {
            max_candidates: full.candidates,
            ..MineConfig::default()
        },
    );
    assert!(!roomy.truncated);
    assert_eq!(names(&roomy), names(&full));
}
