//! Planted-cohort benchmark of failure-cohort discovery, on the simulator.
//!
//! Scenarios (simulated runs with known cohort multipliers on every fault kind):
//! - `single`: model=claude-3-5-sonnet-20241022 (20% of runs) ×3 and prompt_version=v8
//!   (25%) ×2;
//! - `interaction`: model=gpt-4o-mini ∧ prompt_version=v7 (7.5%) ×3, with the other
//!   cells of that model and that prompt version lowered so that each alone is flat;
//! - `numeric`: input_tokens >= 4000 (about 13%) ×2.5;
//! - `rare`: user_segment=internal ∧ prompt_version=v8 (about 1.25%) ×4;
//! - `decoy`: model=gpt-4.1 (10%) ×3; 80% of its runs are moved to
//!   user_segment=enterprise, which is therefore correlated but not causal;
//! - `null`: no cohort.
//!
//! Each (scenario, seed) simulates 50 000 runs and analyses each one as the pipeline
//! does (its trace, linked late evaluators, evaluation logs): the window is fed the
//! analyser's verdicts (outcome, blamed step and kind, step runs) with the cohort values
//! the run's spans carry, never the planted outcomes; how often the analysed outcome is
//! the planted one is printed beside. It mines once, adds 1 000 runs and mines again; the second run's confirmed cohorts are scored. A reported cohort
//! matches a planted one when its predicate is equal, or (lenient) when their row sets
//! have a Jaccard index of at least 0.8. Metrics: recall of planted cohorts with
//! support >= 1% and risk ratio >= 2; precision among the top 10; false-discovery
//! proportion on null runs; causal ranked above decoy; mining time per run.
//!
//! A last row checks the whole path once: simulated OTLP → decode → assemble →
//! analyze → sink → miner, for the `single` scenario at 20 000 runs.
//!
//! Targets (exit code 1 when one is missed): recall >= 0.9, precision@10 >= 0.8, null
//! FDP <= 0.2, the causal cohort above its decoy in every seed, mining <= 2 s.
//!
//! Run with `cargo bench --bench cohorts` (release build). `COHORTS_SEEDS` sets the
//! number of seeds (default 5); `COHORTS_E2E_ONLY=N` runs only the end-to-end check with
//! N runs; `COHORTS_VERBOSE=1` lists every reported cohort.

mod common;

use std::sync::Arc;
use std::time::Instant;

use faultline::analyze::{analyze, AnalyzeConfig};
use faultline::cohorts::{
    extract, mine, ClauseValue, CohortConfig, CohortIndex, Discovered, MineConfig, Op, RecordInput,
    Snapshot, Window, WindowSpec,
};
use faultline::ingest::decode::decode_traces;
use faultline::model::{Interner, Outcome, Trajectory};
use faultline::simulate::{
    CohortMatch, CohortMultiplier, CohortValue, Correlation, Label, Scenario, SimConfig, Simulator,
};

const WINDOW: usize = 50_000;
const EXTRA: usize = 1_000;
const START: u64 = 1_700_000_000_000_000_000;

/// A planted cohort: its clauses as the miner would name them.
#[derive(Clone)]
struct Plant {
    clauses: Vec<(&'static str, Op, PlantValue)>,
    factor: f64,
    /// Scored for recall (support >= 1%, RR >= 2).
    target: bool,
}

#[derive(Clone, Copy)]
enum PlantValue {
    Text(&'static str),
    Number(f64),
}

fn cm(key: &str, value: &str) -> CohortMatch {
    match key {
        "model" => CohortMatch::Model(value.into()),
        "prompt_version" => CohortMatch::PromptVersion(value.into()),
        "user_segment" => CohortMatch::UserSegment(value.into()),
        "route" => CohortMatch::Route(value.into()),
        "environment" => CohortMatch::Environment(value.into()),
        _ => CohortMatch::Service(value.into()),
    }
}

fn multiplier(when: Vec<CohortMatch>, factor: f64) -> CohortMultiplier {
    CohortMultiplier {
        when,
        kinds: Vec::new(),
        factor,
    }
}

fn base() -> Scenario {
    // About 6% of runs fail in the null scenario.
    Scenario::uniform(0.008, 0.03)
}

fn scenario(name: &str) -> (Scenario, Vec<Plant>, Option<(Plant, Plant)>) {
    let text = |k: &'static str, v: &'static str| (k, Op::Eq, PlantValue::Text(v));
    match name {
        "single" => (
            base()
                .with_cohort_multiplier(multiplier(
                    vec![cm("model", "claude-3-5-sonnet-20241022")],
                    3.0,
                ))
                .with_cohort_multiplier(multiplier(vec![cm("prompt_version", "v8")], 2.0)),
            vec![
                Plant {
                    clauses: vec![text("model", "claude-3-5-sonnet-20241022")],
                    factor: 3.0,
                    target: true,
                },
                Plant {
                    clauses: vec![text("prompt_version", "v8")],
                    factor: 2.0,
                    target: true,
                },
            ],
            None,
        ),
        "interaction" => {
            let mut s = base().with_cohort_multiplier(multiplier(
                vec![cm("model", "gpt-4o-mini"), cm("prompt_version", "v7")],
                3.0,
            ));
            for v in ["v5", "v6", "v8"] {
                s = s.with_cohort_multiplier(multiplier(
                    vec![cm("model", "gpt-4o-mini"), cm("prompt_version", v)],
                    1.0 / 3.0,
                ));
            }
            for m in ["gpt-4o", "claude-3-5-sonnet-20241022", "gpt-4.1"] {
                s = s.with_cohort_multiplier(multiplier(
                    vec![cm("model", m), cm("prompt_version", "v7")],
                    1.0 / 7.0,
                ));
            }
            (
                s,
                vec![Plant {
                    clauses: vec![text("model", "gpt-4o-mini"), text("prompt_version", "v7")],
                    factor: 3.0,
                    target: true,
                }],
                None,
            )
        }
        "numeric" => (
            base().with_cohort_multiplier(multiplier(
                vec![CohortMatch::InputTokensAtLeast(4000)],
                2.5,
            )),
            vec![Plant {
                clauses: vec![("input_tokens", Op::Ge, PlantValue::Number(4000.0))],
                factor: 2.5,
                target: true,
            }],
            None,
        ),
        "rare" => (
            base().with_cohort_multiplier(multiplier(
                vec![cm("user_segment", "internal"), cm("prompt_version", "v8")],
                4.0,
            )),
            vec![Plant {
                clauses: vec![
                    text("user_segment", "internal"),
                    text("prompt_version", "v8"),
                ],
                factor: 4.0,
                target: true,
            }],
            None,
        ),
        "decoy" => {
            let causal = Plant {
                clauses: vec![text("model", "gpt-4.1")],
                factor: 3.0,
                target: true,
            };
            let decoy = Plant {
                clauses: vec![text("user_segment", "enterprise")],
                factor: 1.0,
                target: false,
            };
            (
                base()
                    .with_cohort_multiplier(multiplier(vec![cm("model", "gpt-4.1")], 3.0))
                    .with_correlation(Correlation {
                        when: cm("model", "gpt-4.1"),
                        then: CohortValue::UserSegment("enterprise"),
                        probability: 0.8,
                    }),
                vec![causal.clone()],
                Some((causal, decoy)),
            )
        }
        _ => (base(), Vec::new(), None),
    }
}

fn label_value(l: &Label, key: &str) -> Option<String> {
    let c = &l.cohort;
    Some(
        match key {
            "model" => c.model,
            "prompt_version" => c.prompt_version,
            "user_segment" => c.user_segment,
            "route" => c.route,
            "service" => c.service,
            "environment" => c.environment,
            "input_tokens" => return Some(c.input_tokens.to_string()),
            _ => return None,
        }
        .to_string(),
    )
}

/// Whether `key op value` holds for a run: `text` for equality, `number` otherwise.
fn holds(l: &Label, key: &str, op: Op, text: Option<&str>, number: Option<f64>) -> bool {
    let Some(v) = label_value(l, key) else {
        return false;
    };
    match (op, text, number) {
        (Op::Eq, Some(t), _) => v == t,
        (op, _, Some(x)) => v.parse::<f64>().is_ok_and(|y| match op {
            Op::Ge => y >= x,
            Op::Lt => y < x,
            Op::Eq => y == x,
        }),
        _ => false,
    }
}

fn clause_holds(l: &Label, key: &str, op: Op, value: &PlantValue) -> bool {
    match value {
        PlantValue::Text(t) => holds(l, key, op, Some(t), None),
        PlantValue::Number(x) => holds(l, key, op, None, Some(*x)),
    }
}

fn plant_rows(labels: &[Label], p: &Plant) -> Vec<bool> {
    labels
        .iter()
        .map(|l| {
            p.clauses
                .iter()
                .all(|(k, op, v)| clause_holds(l, k, *op, v))
        })
        .collect()
}

fn cohort_rows(labels: &[Label], d: &Discovered) -> Vec<bool> {
    labels
        .iter()
        .map(|l| {
            d.predicate.iter().all(|c| match &c.value {
                ClauseValue::Text(t) => holds(l, &c.key, c.op, Some(t), None),
                ClauseValue::Number(x) => holds(l, &c.key, c.op, None, Some(*x)),
            })
        })
        .collect()
}

fn jaccard(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

fn exact(d: &Discovered, p: &Plant) -> bool {
    d.predicate.len() == p.clauses.len()
        && p.clauses.iter().all(|(k, op, v)| {
            d.predicate.iter().any(|c| {
                &*c.key == *k
                    && c.op == *op
                    && match (&c.value, v) {
                        (ClauseValue::Text(a), PlantValue::Text(b)) => &**a == *b,
                        (ClauseValue::Number(a), PlantValue::Number(b)) => a == b,
                        _ => false,
                    }
            })
        })
}

/// One run as the miner sees it: the cohort values the run's spans carry (its label's
/// cohort), and the outcome, blamed step, blamed kind and step runs the analyser
/// concluded from its spans, not what the simulator planted.
struct Row {
    label: Label,
    verdict: RecordInput,
}

/// Simulates `n` runs and analyses each as the pipeline would (own trace, linked late
/// evaluators, evaluation logs).
fn analysed_rows(sim: &mut Simulator, n: usize) -> Vec<Row> {
    let interner = Interner::default();
    let config = AnalyzeConfig::default();
    let dims = CohortConfig::default().dimensions;
    (0..n)
        .map(|_| {
            let (label, trajectory) = sim
                .next_run()
                .assemble(&interner)
                .expect("simulated runs decode");
            let analysis = analyze(Arc::new(trajectory), &config);
            // The blamed kind stands in for the reason pattern the clusterer would give.
            let pattern = analysis.root_cause.as_ref().map(|rc| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                rc.kind.as_str().hash(&mut h);
                h.finish()
            });
            let verdict = extract::record_input(&analysis, &dims, pattern);
            Row { label, verdict }
        })
        .collect()
}

fn record(row: &Row, i: usize) -> RecordInput {
    let c = &row.label.cohort;
    let cat = |k: &str, v: &str| (Arc::<str>::from(k), v.to_string());
    let v = &row.verdict;
    RecordInput {
        trace_id: v.trace_id,
        end_unix_nano: START + i as u64 * 100_000_000,
        categorical: vec![
            cat("service", c.service),
            cat("route", c.route),
            cat("model", c.model),
            cat("prompt_version", c.prompt_version),
            cat("user_segment", c.user_segment),
            cat("environment", c.environment),
        ],
        numeric: [Some(c.input_tokens as f64), None, None, None, None, None],
        failed: v.failed,
        root_step: v.root_step.clone(),
        root_pattern: v.root_pattern,
        steps: v.steps.clone(),
    }
}

struct Score {
    recall_hits: usize,
    recall_total: usize,
    top10: usize,
    top10_true: usize,
    exact_hits: usize,
    null_fdp: Option<f64>,
    decoy_ok: Option<bool>,
    mine_ms: f64,
    reported: usize,
    base_rate: f64,
    /// Runs whose analysed outcome (failed or not) is the planted one.
    verdicts_agree: usize,
    runs: usize,
}

fn run(name: &str, seed: u64) -> Score {
    let (scenario, plants, decoy) = scenario(name);
    let mut sim = Simulator::new(SimConfig {
        scenario,
        ..SimConfig::new(seed, START)
    });
    let rows = analysed_rows(&mut sim, WINDOW + EXTRA);
    let agree = rows
        .iter()
        .filter(|r| r.verdict.failed == (r.label.outcome == Outcome::Failed))
        .count();
    let cfg = MineConfig::default();
    let mut window = Window::new(WINDOW, 24, 50);
    let mut streak: std::collections::HashMap<String, u32> = Default::default();
    let mut report = None;
    let mut mine_ms = 0.0;
    for (round, upto) in [WINDOW, WINDOW + EXTRA].into_iter().enumerate() {
        let from = if round == 0 { 0 } else { WINDOW };
        for (i, row) in rows.iter().enumerate().take(upto).skip(from) {
            window.push(&record(row, i));
        }
        let t = Instant::now();
        let snap = Snapshot::from_window(&window, None);
        let r = mine(&snap, &cfg);
        mine_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut next = std::collections::HashMap::new();
        for c in &r.cohorts {
            let k = c.persistence_key();
            let s = streak.get(&k).copied().unwrap_or(0) + 1;
            next.insert(k, s);
        }
        streak = next;
        report = Some(r);
    }
    let report = report.unwrap_or_default();
    let confirmed: Vec<&Discovered> = report
        .cohorts
        .iter()
        .filter(|c| streak.get(&c.persistence_key()).copied().unwrap_or(0) >= 2)
        .collect();
    // Score against the rows of the current window.
    let labels: Vec<Label> = rows.into_iter().map(|r| r.label).collect();
    let in_window = &labels[EXTRA..];
    let plant_sets: Vec<Vec<bool>> = plants.iter().map(|p| plant_rows(in_window, p)).collect();
    let matches = |d: &Discovered| -> Option<usize> {
        let rows = cohort_rows(in_window, d);
        plants
            .iter()
            .enumerate()
            .find(|(i, p)| exact(d, p) || jaccard(&rows, &plant_sets[*i]) >= 0.8)
            .map(|(i, _)| i)
    };
    let n = in_window.len() as f64;
    let mut recall_total = 0;
    let mut recall_hits = 0;
    let found: Vec<Option<usize>> = confirmed.iter().map(|d| matches(d)).collect();
    for (i, p) in plants.iter().enumerate() {
        let support = plant_sets[i].iter().filter(|x| **x).count() as f64 / n;
        if p.target && support >= 0.01 && p.factor >= 2.0 {
            recall_total += 1;
            if found.contains(&Some(i)) {
                recall_hits += 1;
            }
        }
    }
    let top10 = confirmed.len().min(10);
    let top10_true = found.iter().take(10).filter(|f| f.is_some()).count();
    let exact_hits = confirmed
        .iter()
        .filter(|d| plants.iter().any(|p| exact(d, p)))
        .count();
    // Every reported cohort of a null run is false: its FDP is 1 unless it is silent.
    let null_fdp = plants
        .is_empty()
        .then_some(if confirmed.is_empty() { 0.0 } else { 1.0 });
    let decoy_ok = decoy.map(|(causal, decoy)| {
        let causal_rank = confirmed.iter().position(|d| exact(d, &causal));
        let decoy_rank = confirmed.iter().position(|d| exact(d, &decoy));
        match (causal_rank, decoy_rank) {
            (Some(c), Some(d)) => c < d,
            (Some(_), None) => true,
            _ => false,
        }
    });
    if std::env::var_os("COHORTS_VERBOSE").is_some() {
        for (d, f) in confirmed.iter().zip(&found) {
            eprintln!(
                "  {name} {seed}: {} n={} rr={:.2} E={:.1} match={f:?}",
                d.key(),
                d.support,
                d.risk_ratio,
                d.excess_failures
            );
        }
    }
    Score {
        recall_hits,
        recall_total,
        top10,
        top10_true,
        exact_hits,
        null_fdp,
        decoy_ok,
        mine_ms,
        reported: confirmed.len(),
        base_rate: report.failures as f64 / report.records.max(1) as f64,
        verdicts_agree: agree,
        runs: labels.len(),
    }
}

/// The whole path once: OTLP → decode → assemble → analyze → sink → miner.
fn end_to_end(runs: usize) {
    let (scenario, plants, _) = scenario("single");
    let mut sim = Simulator::new(SimConfig {
        scenario,
        ..SimConfig::new(77, START)
    });
    let index = CohortIndex::new(CohortConfig {
        window: runs,
        ..CohortConfig::default()
    });
    let interner = Interner::default();
    let config = AnalyzeConfig::default();
    let t = Instant::now();
    for _ in 0..runs {
        let run = sim.next_run();
        let decoded = decode_traces(run.traces, &interner);
        let Some(first) = decoded.items.first() else {
            continue;
        };
        let trajectory = Trajectory::build(first.trace_id, decoded.items, Vec::new(), Vec::new());
        let analysis = analyze(Arc::new(trajectory), &config);
        index.record(&analysis, None);
    }
    let ingest_s = t.elapsed().as_secs_f64();
    index.mine_now(WindowSpec::Ring);
    let t = Instant::now();
    let results = index.mine_now(WindowSpec::Ring);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let want: Vec<String> = plants
        .iter()
        .map(|p| {
            p.clauses
                .iter()
                .map(|(k, _, v)| match v {
                    PlantValue::Text(t) => format!("{k}={t}"),
                    PlantValue::Number(x) => format!("{k}>={x}"),
                })
                .collect::<Vec<_>>()
                .join("&")
        })
        .collect();
    let got: Vec<String> = results.cohorts.iter().map(|c| c.key()).collect();
    if std::env::var_os("COHORTS_VERBOSE").is_some() {
        for c in &results.cohorts {
            eprintln!(
                "  e2e: {} n={} rr={:.2} E={:.1}",
                c.key(),
                c.support,
                c.risk_ratio,
                c.excess_failures
            );
        }
    }
    // The simulator's resource ties `service.version` to the prompt version one to one,
    // and two of its five conventions carry no prompt-version key of the dimension: the
    // complete name of the prompt_version=v8 rows is service.version=1.7.0.
    let alias = |w: &str| match w {
        "prompt_version=v8" => Some("service.version=1.7.0"),
        _ => None,
    };
    let hits = want
        .iter()
        .filter(|w| {
            got.iter().any(|g| {
                let p = g.split('|').next();
                p == Some(w.as_str()) || (p.is_some() && p == alias(w))
            })
        })
        .count();
    println!(
        "\nend to end (simulated OTLP -> analyze -> sink -> miner), scenario single, {runs} runs: \
         {hits}/{} planted cohorts found; reported {:?}; simulate+decode+analyze {:.1} s; mining {ms:.1} ms",
        want.len(),
        got.iter().take(5).collect::<Vec<_>>(),
        ingest_s
    );
}

fn main() {
    if let Some(runs) = std::env::var("COHORTS_E2E_ONLY")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        end_to_end(runs);
        return;
    }
    let seeds: u64 = std::env::var("COHORTS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!(
        "Planted-cohort benchmark: window {WINDOW}, +{EXTRA} runs between two mining runs, {seeds} seeds\n"
    );
    println!(
        "| scenario | base fail rate | recall (sup>=1%, RR>=2) | precision@10 | exact matches | reported | null FDP | causal > decoy | mining ms (mean / max) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut all_ms: Vec<f64> = Vec::new();
    let (mut rh, mut rt, mut pt, mut pn) = (0, 0, 0, 0);
    let (mut agree, mut runs) = (0, 0);
    let (mut fdp_all, mut decoy_all): (Vec<f64>, Vec<bool>) = (Vec::new(), Vec::new());
    for name in ["single", "interaction", "numeric", "rare", "decoy", "null"] {
        let scores: Vec<Score> = (1..=seeds).map(|s| run(name, s)).collect();
        let recall_hits: usize = scores.iter().map(|s| s.recall_hits).sum();
        let recall_total: usize = scores.iter().map(|s| s.recall_total).sum();
        let top10: usize = scores.iter().map(|s| s.top10).sum();
        let top10_true: usize = scores.iter().map(|s| s.top10_true).sum();
        let exact: usize = scores.iter().map(|s| s.exact_hits).sum();
        let reported: usize = scores.iter().map(|s| s.reported).sum();
        let fdp: Vec<f64> = scores.iter().filter_map(|s| s.null_fdp).collect();
        let decoy: Vec<bool> = scores.iter().filter_map(|s| s.decoy_ok).collect();
        let ms: Vec<f64> = scores.iter().map(|s| s.mine_ms).collect();
        let base: f64 = scores.iter().map(|s| s.base_rate).sum::<f64>() / scores.len() as f64;
        all_ms.extend(&ms);
        fdp_all.extend(&fdp);
        decoy_all.extend(&decoy);
        agree += scores.iter().map(|s| s.verdicts_agree).sum::<usize>();
        runs += scores.iter().map(|s| s.runs).sum::<usize>();
        rh += recall_hits;
        rt += recall_total;
        pt += top10_true;
        pn += top10;
        let ratio = |a: usize, b: usize| {
            if b == 0 {
                "–".to_string()
            } else {
                format!("{:.2} ({a}/{b})", a as f64 / b as f64)
            }
        };
        println!(
            "| {name} | {:.3} | {} | {} | {exact} | {reported} | {} | {} | {:.1} / {:.1} |",
            base,
            ratio(recall_hits, recall_total),
            ratio(top10_true, top10),
            if fdp.is_empty() {
                "–".to_string()
            } else {
                format!(
                    "{:.2} ({} of {} runs silent)",
                    fdp.iter().sum::<f64>() / fdp.len() as f64,
                    fdp.iter().filter(|f| **f == 0.0).count(),
                    fdp.len()
                )
            },
            if decoy.is_empty() {
                "–".to_string()
            } else {
                format!("{}/{}", decoy.iter().filter(|d| **d).count(), decoy.len())
            },
            ms.iter().sum::<f64>() / ms.len() as f64,
            ms.iter().cloned().fold(0.0, f64::max),
        );
    }
    println!(
        "\noverall: recall {:.3} ({rh}/{rt}), precision@10 {:.3} ({pt}/{pn}), mining mean {:.1} ms, max {:.1} ms",
        rh as f64 / rt.max(1) as f64,
        pt as f64 / pn.max(1) as f64,
        all_ms.iter().sum::<f64>() / all_ms.len().max(1) as f64,
        all_ms.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "analysed outcome (failed or not) = planted outcome: {agree}/{runs} runs ({:.4})",
        agree as f64 / runs.max(1) as f64
    );
    end_to_end(20_000);

    // The targets: what a user of discovered cohorts relies on.
    let recall = rh as f64 / rt.max(1) as f64;
    let precision = pt as f64 / pn.max(1) as f64;
    let fdp = fdp_all.iter().sum::<f64>() / fdp_all.len().max(1) as f64;
    let max_ms = all_ms.iter().cloned().fold(0.0, f64::max);
    let targets = [
        (recall >= 0.9, format!("recall {recall:.3} >= 0.9")),
        (
            precision >= 0.8,
            format!("precision@10 {precision:.3} >= 0.8"),
        ),
        (fdp <= 0.2, format!("null FDP {fdp:.2} <= 0.2")),
        (
            decoy_all.iter().all(|d| *d),
            "causal cohort ranked above its decoy in every seed".to_string(),
        ),
        (
            max_ms <= 2000.0,
            format!("mining max {max_ms:.0} ms <= 2000 ms"),
        ),
    ];
    let mut ok = true;
    for (met, what) in &targets {
        println!("{} {what}", if *met { "ok  " } else { "MISS" });
        ok &= met;
    }
    common::finish(ok);
}
