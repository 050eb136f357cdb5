//! Accuracy of the analysis against the simulator's ground truth: every run goes through
//! decode → trajectory → analyze exactly as the pipeline would take it (post-hoc
//! evaluator spans of other traces joined by their links, log events by trace id), and
//! the verdict is compared with the planted label. Printed beside the naive baseline
//! (blame the deepest errored span; else the first finding) on the same data, with the
//! span-level figure (the blamed step run is the labelled one) and the misses.
//!
//! The analysis runs with [`config`], the deployment config a user of the simulated
//! system would write: step SLOs, the critic's `REJECT` content rule and one classify
//! rule for the critic agent (see its doc). `ACCURACY_SEED=n` measures another seed;
//! `ACCURACY_DUMP=1` prints the first analysis of every kind of miss.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{FaultKind, Label, Scenario, SimConfig, Simulator, Variants};
use faultline_core::analyze::{analyze, AnalyzeConfig};
use faultline_core::detect::{DetectConfig, RawDetectConfig, RawOutputRule};
use faultline_core::model::{Analysis, Interner, Outcome, SpanStatus, TraceId, Trajectory};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// The config a user of the simulated system would write for it (the deployment config,
/// not a tuning of the analysis):
/// - latency SLOs for the steps (a request deadline is 20–30 s, a step normally takes
///   well under a few seconds);
/// - a content rule for the critic's verdict (`REJECT: ...`), as in the issue's example;
/// - one classify rule: the OpenAI-Agents-style deployment names its critic agent
///   `answer_critic` (`gen_ai.agent.name`), which no convention marks as a critic.
pub(super) fn config() -> AnalyzeConfig {
    let mut raw = RawDetectConfig::default();
    for (step, slo) in [
        ("retriever", "10s"),
        ("generator", "20s"),
        ("planner", "10s"),
        ("tool", "10s"),
        ("memory", "5s"),
    ] {
        raw.slo.insert(step.into(), slo.into());
    }
    raw.output_rules.push(RawOutputRule {
        step: "critic".into(),
        pattern: r"^\s*REJECT".into(),
        kind: "critic_rejected".into(),
    });
    let rules = faultline_core::classify::compile_rules(&[faultline_core::classify::RawRule {
        attribute: Some("gen_ai.agent.name".into()),
        equals: Some("answer_critic".into()),
        span_name_regex: None,
        step: "critic".into(),
        subtree: true,
    }])
    .expect("valid classify rule");
    AnalyzeConfig {
        classify: faultline_core::classify::ClassifyConfig { rules },
        detect: DetectConfig::from_raw(&raw).expect("valid detect config"),
    }
}

/// Analyses of every run's own trace, keyed by trace id, with the run's label.
fn analyse(runs: usize, seed: u64) -> Vec<(Label, Analysis)> {
    analyse_with(runs, seed, Variants::default(), &config())
        .into_iter()
        .map(|(label, a, _)| (label, a))
        .collect()
}

/// [`analyse`] of simulator variant `variants` with analysis config `config`.
fn analyse_with(
    runs: usize,
    seed: u64,
    variants: Variants,
    config: &AnalyzeConfig,
) -> Vec<(Label, Analysis, bool)> {
    let mut sim = Simulator::new(SimConfig {
        scenario: Scenario::uniform(0.04, 0.08),
        variants,
        ..SimConfig::new(seed, 1_790_000_000_000_000_000)
    });
    let interner = Interner::default();
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let run = sim.next_run();
        let within = run.slow_within_slo;
        let id = TraceId::from_hex(&run.label.trace_id).expect("label trace id");
        let traces = std::iter::once(run.traces).chain(run.late_traces);
        let t = assemble(id, traces, run.logs, &interner);
        out.push((run.label, analyze(Arc::new(t), config), within));
    }
    out
}

/// [`super::assemble`], for simulator output that must decode cleanly.
pub(super) fn assemble(
    id: TraceId,
    traces: impl IntoIterator<Item = ExportTraceServiceRequest>,
    logs: impl IntoIterator<Item = ExportLogsServiceRequest>,
    interner: &Interner,
) -> Trajectory {
    super::assemble(id, traces, logs, interner).expect("simulated spans decode")
}

/// The naive answer: the deepest errored span's step, else the first finding's step.
fn naive_blame(a: &Analysis) -> Option<String> {
    let t = &a.trajectory;
    let depth = |mut i: u32| {
        let mut d = 0;
        while let Some(p) = t.parent[i as usize] {
            d += 1;
            i = p;
            if d > t.spans.len() {
                break;
            }
        }
        d
    };
    let deepest = (0..t.spans.len() as u32)
        .filter(|&i| t.spans[i as usize].status == SpanStatus::Error)
        .max_by_key(|&i| (depth(i), std::cmp::Reverse(i)));
    match deepest {
        Some(i) => Some(a.steps[i as usize].kind.as_str().to_owned()),
        None => a.findings.first().map(|f| f.step.as_str().to_owned()),
    }
}

/// Whether span `blamed` is the labelled span (hex id `want`), or in the same step run
/// (an ancestor or descendant with the same step, e.g. a `retrieve` node and the
/// retriever call inside it).
fn same_step_run(a: &Analysis, blamed: u32, want: &str) -> bool {
    let t = &a.trajectory;
    let Some(want) = t.spans.iter().position(|s| s.span_id.to_hex() == want) else {
        return false;
    };
    let step = &a.steps[blamed as usize].kind;
    let within = |from: usize, to: usize| {
        let mut cur = Some(from);
        while let Some(i) = cur {
            if i == to {
                return true;
            }
            if a.steps[i].kind != *step {
                return false;
            }
            cur = t.parent[i].map(|p| p as usize);
        }
        false
    };
    a.steps[want].kind == *step && (within(want, blamed as usize) || within(blamed as usize, want))
}

#[test]
fn root_cause_and_outcome_accuracy_on_simulated_traffic() {
    // `ACCURACY_SEED=n` runs the same measure on another seed (the test's figure is seed 7).
    let seed = std::env::var("ACCURACY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let results = analyse(4000, seed);
    let mut outcome_ok = 0usize;
    let (mut failed, mut blame_ok, mut naive_ok) = (0usize, 0usize, 0usize);
    // The blamed span itself, or the step run that contains it (a node and the call
    // inside it are one step run), is the labelled one.
    let mut span_ok = 0usize;
    let mut span_misses: BTreeMap<String, usize> = BTreeMap::new();
    let mut misses: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_fault: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    // `ACCURACY_DUMP=1` prints the first analysis of every kind of miss.
    let dump = std::env::var_os("ACCURACY_DUMP").is_some();
    for (label, a) in &results {
        if a.outcome == label.outcome {
            outcome_ok += 1;
        } else {
            if dump {
                println!(
                    "=== outcome {} as {}\n{}",
                    label.outcome.as_str(),
                    a.outcome.as_str(),
                    faultline_core::golden::render(a)
                );
            }
            *misses
                .entry(format!(
                    "outcome {} as {} ({:?})",
                    label.outcome.as_str(),
                    a.outcome.as_str(),
                    label.fault.map(|f| f.as_str())
                ))
                .or_default() += 1;
        }
        if label.outcome != Outcome::Failed {
            continue;
        }
        failed += 1;
        let expected = label.root_cause_step.unwrap_or("?");
        let got = a
            .root_cause
            .as_ref()
            .map(|r| r.step.as_str())
            .unwrap_or("none");
        let fault = label.fault.map(|f| f.as_str()).unwrap_or("?").to_owned();
        let entry = per_fault.entry(fault.clone()).or_default();
        entry.1 += 1;
        if let (Some(rc), Some(want)) = (&a.root_cause, &label.root_cause_span_id) {
            if same_step_run(a, rc.span, want) {
                span_ok += 1;
            } else {
                let key = format!(
                    "{fault} ({}, {}): blamed span `{}`",
                    label.template.as_str(),
                    label.convention.as_str(),
                    a.trajectory.spans[rc.span as usize].name
                );
                if dump && !span_misses.contains_key(&key) {
                    println!("=== span {key}\n{}", faultline_core::golden::render(a));
                }
                *span_misses.entry(key).or_default() += 1;
            }
        }
        if got == expected {
            blame_ok += 1;
            entry.0 += 1;
        } else {
            let key = format!(
                "{fault} ({}, {}): expected {expected}, got {got}",
                label.template.as_str(),
                label.convention.as_str()
            );
            if dump && !misses.contains_key(&key) {
                println!("=== {key}\n{}", faultline_core::golden::render(a));
            }
            *misses.entry(key).or_default() += 1;
        }
        if naive_blame(a).as_deref() == Some(expected) {
            naive_ok += 1;
        }
    }
    let n = results.len();
    let outcome_acc = outcome_ok as f64 / n as f64;
    let blame_acc = blame_ok as f64 / failed.max(1) as f64;
    let naive_acc = naive_ok as f64 / failed.max(1) as f64;
    let span_acc = span_ok as f64 / failed.max(1) as f64;
    println!("runs {n}, failed {failed}");
    println!("outcome accuracy          {:.4}", outcome_acc);
    println!(
        "root-cause step accuracy  {:.4}   (naive baseline {:.4})",
        blame_acc, naive_acc
    );
    println!("root-cause span accuracy  {:.4}", span_acc);
    for (fault, (ok, total)) in &per_fault {
        println!("  {fault:<18} {ok:>4}/{total:<4}");
    }
    for (miss, count) in &misses {
        println!("  miss x{count}: {miss}");
    }
    for (miss, count) in &span_misses {
        println!("  span miss x{count}: {miss}");
    }
    assert!(failed >= 500, "enough failed runs to measure ({failed})");
    assert!(
        outcome_acc >= 0.99,
        "outcome accuracy {outcome_acc:.4} < 0.99"
    );
    assert!(
        blame_acc >= 0.98,
        "root-cause accuracy {blame_acc:.4} < 0.98"
    );
    assert!(
        blame_acc > naive_acc,
        "the analysis must beat the naive baseline ({blame_acc:.4} vs {naive_acc:.4})"
    );
}

/// Outcome and root-cause step accuracy of one set of analyses, as counts.
#[derive(Debug, Default)]
struct Score {
    runs: usize,
    outcome_ok: usize,
    failed: usize,
    step_ok: usize,
    /// Slow-step faults called failed with the labelled step and `slow_step` blamed (n, N).
    slow_failed: (usize, usize),
    /// Runs with a slow step under its SLO (labelled success) neither called failed nor
    /// given a `slow_step` finding (n, N).
    slow_within: (usize, usize),
    /// Critic rejections (the planted fault) called failed with the labelled step blamed
    /// for `critic_rejected` (n, N).
    critic: (usize, usize),
    misses: BTreeMap<String, usize>,
}

/// The name of the critic node of a run of the other-critics variant, if any.
fn critic_name(a: &Analysis) -> Option<&'static str> {
    a.trajectory.spans.iter().find_map(|sp| {
        ["reviewer", "judge", "fact_check"]
            .into_iter()
            .find(|c| sp.name.contains(c))
    })
}

fn score(results: &[(Label, Analysis, bool)]) -> Score {
    let mut s = Score {
        runs: results.len(),
        ..Score::default()
    };
    for (label, a, within) in results {
        if *within {
            s.slow_within.1 += 1;
            s.slow_within.0 += usize::from(
                a.outcome != Outcome::Failed
                    && !a.findings.iter().any(|f| f.kind.as_str() == "slow_step"),
            );
        }
        let outcome_ok = a.outcome == label.outcome;
        s.outcome_ok += usize::from(outcome_ok);
        let blamed = a.root_cause.as_ref().map(|r| r.step.as_str());
        let kind = a.root_cause.as_ref().map(|r| r.kind.as_str());
        // The built-in critic reader names a rejection `eval_failed` (the critic judged
        // the answer); `critic_rejected` is the configured content rule's kind.
        let kind_ok = kind == label.root_cause_kind
            || (label.fault == Some(FaultKind::CriticRejected) && kind == Some("eval_failed"));
        let caught = outcome_ok && blamed == label.root_cause_step && kind_ok;
        if matches!(
            label.fault,
            Some(FaultKind::SlowStep | FaultKind::CriticRejected)
        ) && outcome_ok
            && blamed == label.root_cause_step
            && !kind_ok
        {
            *s.misses
                .entry(format!(
                    "{} ({}): right step {}, named {}",
                    label.fault.map_or("?", FaultKind::as_str),
                    label.template.as_str(),
                    blamed.unwrap_or("none"),
                    kind.unwrap_or("no root cause")
                ))
                .or_default() += 1;
        }
        if label.fault == Some(FaultKind::SlowStep) {
            s.slow_failed.1 += 1;
            s.slow_failed.0 += usize::from(caught);
        }
        if label.fault == Some(FaultKind::CriticRejected) {
            s.critic.1 += 1;
            s.critic.0 += usize::from(caught);
        }
        if !outcome_ok {
            *s.misses
                .entry(format!(
                    "outcome {} as {} ({})",
                    label.outcome.as_str(),
                    a.outcome.as_str(),
                    label.fault.map_or("no fault", FaultKind::as_str)
                ))
                .or_default() += 1;
        }
        if label.outcome != Outcome::Failed {
            continue;
        }
        s.failed += 1;
        if blamed == label.root_cause_step {
            s.step_ok += 1;
        } else {
            *s.misses
                .entry(format!(
                    "{} ({}, {}{}): expected {}, got {} ({})",
                    label.fault.map_or("?", FaultKind::as_str),
                    label.template.as_str(),
                    label.convention.as_str(),
                    critic_name(a).map_or(String::new(), |n| format!(", critic {n}")),
                    label.root_cause_step.unwrap_or("?"),
                    blamed.unwrap_or("none"),
                    kind.unwrap_or("no root cause")
                ))
                .or_default() += 1;
        }
    }
    s
}

fn ratio(n: usize, d: usize) -> String {
    format!("{:>5.1}% ({n}/{d})", 100.0 * n as f64 / d.max(1) as f64)
}

/// The accuracy on simulator variants the config was not tuned for, next to the tuned
/// figure: slow steps near their SLO (half of them just under it, which must not be
/// flagged), critics under other names with other verdict wording, and the analysis
/// with `AnalyzeConfig::default()` (no SLOs, content rules or classify rules). Each row
/// asserts a floor a margin below what it measured (seed 7, 4 000 runs a row); a drop
/// below one is a change in the analysis to look at, not a floor to lower.
#[test]
fn accuracy_on_variants_the_config_was_not_tuned_for() {
    let tuned = config();
    let untuned = AnalyzeConfig::default();
    let near = Variants {
        slow_near_slo: true,
        ..Variants::default()
    };
    let critics = Variants {
        other_critics: true,
        ..Variants::default()
    };
    let both = Variants {
        slow_near_slo: true,
        other_critics: true,
    };
    // Floors, in runs, a margin below the measured counts (seed 7, 4 000 runs a row;
    // measured: see the sim crate's docs): outcome, root-cause step, slow step caught,
    // slow step within its SLO left alone, critic rejection caught. With the default
    // config (no SLOs) a slow step is blamed on the right step but named `error`, so
    // its "caught" column has no floor (0): reported, not asserted.
    struct Row<'a> {
        name: &'a str,
        variants: Variants,
        config: &'a AnalyzeConfig,
        floors: [usize; 5],
    }
    let rows = [
        Row {
            name: "tuned baseline",
            variants: Variants::default(),
            config: &tuned,
            floors: [3960, 1224, 145, 0, 37],
        },
        Row {
            name: "slow near SLO",
            variants: near,
            config: &tuned,
            floors: [3960, 1194, 73, 81, 38],
        },
        Row {
            name: "other critic names",
            variants: critics,
            config: &tuned,
            floors: [3960, 1260, 151, 0, 30],
        },
        Row {
            name: "default config",
            variants: Variants::default(),
            config: &untuned,
            floors: [3960, 1224, 0, 0, 37],
        },
        Row {
            name: "all, tuned config",
            variants: both,
            config: &tuned,
            floors: [3960, 1150, 65, 91, 39],
        },
        Row {
            name: "all, default config",
            variants: both,
            config: &untuned,
            floors: [3960, 1150, 0, 91, 39],
        },
    ];
    let mut table = String::from(
        "variant                 outcome (failed or not)  root-cause step         slow step caught      slow within SLO unflagged  critic rejection caught\n",
    );
    let mut scores = Vec::new();
    for Row {
        name,
        variants,
        config,
        ..
    } in &rows
    {
        let s = score(&analyse_with(4000, 7, *variants, config));
        table.push_str(&format!(
            "{name:<23} {:<24} {:<23} {:<21} {:<26} {}\n",
            ratio(s.outcome_ok, s.runs),
            ratio(s.step_ok, s.failed),
            ratio(s.slow_failed.0, s.slow_failed.1),
            ratio(s.slow_within.0, s.slow_within.1),
            ratio(s.critic.0, s.critic.1),
        ));
        scores.push(s);
    }
    println!("{table}");
    for (Row { name, .. }, s) in rows.iter().zip(&scores) {
        let mut misses: Vec<_> = s.misses.iter().collect();
        misses.sort_by(|a, b| b.1.cmp(a.1));
        println!("{name}: most frequent misses");
        for (miss, count) in misses.into_iter().take(8) {
            println!("  x{count}: {miss}");
        }
    }
    for (Row { name, floors, .. }, s) in rows.iter().zip(&scores) {
        let got = [
            (s.outcome_ok, s.runs, "outcome"),
            (s.step_ok, s.failed, "root-cause step"),
            (s.slow_failed.0, s.slow_failed.1, "slow step caught"),
            (
                s.slow_within.0,
                s.slow_within.1,
                "slow within SLO unflagged",
            ),
            (s.critic.0, s.critic.1, "critic rejection caught"),
        ];
        for ((n, d, what), floor) in got.into_iter().zip(floors) {
            assert!(
                n >= *floor,
                "{name}: {what} {n}/{d} below the floor {floor}"
            );
        }
    }
    assert!(
        scores.iter().all(|s| s.failed >= 1000),
        "enough failed runs in every row to measure"
    );
}
