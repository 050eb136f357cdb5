//! Golden tests per fault kind and per convention: one simulated run for every
//! (fault kind × convention) pair, stored under `tests/data/trajectories/simulated/`:
//! - `<fault>_<convention>.otlp.json`: the trace requests, one OTLP/JSON request per line
//!   (the run's own trace, then the late post-hoc evaluator trace if any);
//! - `<fault>_<convention>.logs.json`: its `gen_ai.evaluation.result` log requests, when
//!   it has some;
//! - `<fault>_<convention>.label.json`: the simulator's ground truth;
//! - `<fault>_<convention>.expected`: the analysis rendered by
//!   [`faultline_core::golden::render`] (steps, findings, outcome, root cause, evidence).
//!
//! The test decodes the stored requests, assembles the run's trajectory as the pipeline
//! does, analyses it with the accuracy test's deployment config, and checks the rendered
//! analysis against the expectation *and* the outcome and blamed step against the label.
//!
//! The inputs are data: they change only when regenerated on purpose
//! (`scripts/regenerate-goldens --simulated` sets `REGENERATE_SIMULATED=1`: from the
//! simulator at a fixed seed, keeping the smallest of the first few runs of each pair).
//! Expectations are rewritten by `scripts/regenerate-goldens` ([`faultline_core::golden`]); each
//! carries a header, made from its label, saying what a reviewer should see.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::accuracy::{assemble, config};
use crate::{
    to_otlp_json, Convention, FaultKind, Scenario, SimConfig, SimRun, Simulator, Template,
};
use faultline_core::analyze::analyze;
use faultline_core::golden::render;
use faultline_core::model::{Interner, TraceId};
use faultline_otlp::decode::{parse_logs_json, parse_traces_json};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/trajectories/simulated")
}

fn case_name(fault: FaultKind, convention: Convention) -> String {
    format!("{}_{}", fault.as_str(), convention.as_str())
}

/// A small run of `fault` written in `convention`: the one with the fewest spans among
/// the first runs the simulator plants the fault in.
fn pick_run(fault: FaultKind, convention: Convention) -> SimRun {
    const CANDIDATES: usize = 8;
    let templates: Vec<Template> = Template::ALL
        .into_iter()
        .filter(|t| t.faults().contains(&fault))
        .collect();
    let mut sim = Simulator::new(SimConfig {
        scenario: Scenario::uniform(0.0, 0.0).with_rate(fault, 0.95),
        templates,
        conventions: vec![convention],
        ..SimConfig::new(1_234, 1_790_000_000_000_000_000)
    });
    let mut best: Option<SimRun> = None;
    let mut seen = 0;
    while seen < CANDIDATES {
        let run = sim.next_run();
        if run.label.fault != Some(fault) {
            continue;
        }
        seen += 1;
        if best
            .as_ref()
            .is_none_or(|b| run.label.span_count < b.label.span_count)
        {
            best = Some(run);
        }
    }
    best.expect("the simulator plants the fault")
}

fn write_case(dir: &Path, name: &str, run: &SimRun) {
    let mut traces = to_otlp_json(&run.traces).expect("trace JSON");
    traces.push('\n');
    if let Some(late) = &run.late_traces {
        traces.push_str(&to_otlp_json(late).expect("late trace JSON"));
        traces.push('\n');
    }
    std::fs::write(dir.join(format!("{name}.otlp.json")), traces).expect("write traces");
    let logs_path = dir.join(format!("{name}.logs.json"));
    match &run.logs {
        Some(logs) => {
            let mut text = to_otlp_json(logs).expect("log JSON");
            text.push('\n');
            std::fs::write(&logs_path, text).expect("write logs");
        }
        None => {
            let _ = std::fs::remove_file(&logs_path);
        }
    }
    let mut label = run.label.to_json();
    label.push('\n');
    std::fs::write(dir.join(format!("{name}.label.json")), label).expect("write label");
}

fn lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The stored case analysed: the rendered analysis, the header its expectation holds
/// (what the label says a reviewer should see), and a mismatch with the label if any.
fn check_case(dir: &Path, name: &str) -> (String, String, Option<String>) {
    let label_text = std::fs::read_to_string(dir.join(format!("{name}.label.json")))
        .unwrap_or_else(|e| {
            panic!("{name}: label missing ({e}); run scripts/regenerate-goldens --simulated")
        });
    let label: serde_json::Value = serde_json::from_str(&label_text).expect("label JSON");
    let id = TraceId::from_hex(label["trace_id"].as_str().expect("trace id")).expect("hex id");
    let traces = lines(&dir.join(format!("{name}.otlp.json")))
        .iter()
        .map(|l| parse_traces_json(l.as_bytes()).expect("OTLP/JSON traces"))
        .collect::<Vec<_>>();
    let logs = lines(&dir.join(format!("{name}.logs.json")))
        .iter()
        .map(|l| parse_logs_json(l.as_bytes()).expect("OTLP/JSON logs"))
        .collect::<Vec<_>>();
    let t = assemble(id, traces, logs, &Interner::default());
    let header = header(&label, &t);
    let a = analyze(Arc::new(t), &config());
    let rendered = render(&a);
    let want_outcome = label["outcome"].as_str().unwrap_or("?");
    let want_step = label["root_cause_step"].as_str().unwrap_or("none");
    let got_step = a
        .root_cause
        .as_ref()
        .map(|rc| rc.step.as_str())
        .unwrap_or("none");
    let mismatch = (a.outcome.as_str() != want_outcome || got_step != want_step).then(|| {
        format!(
            "{name}: label says {want_outcome}, blame {want_step}; analysis says {}, blame {got_step}",
            a.outcome.as_str()
        )
    });
    (rendered, header, mismatch)
}

/// What a reviewer should see in a simulated golden, from its label (the simulator's
/// ground truth, which the test also checks the analysis against).
fn header(label: &serde_json::Value, t: &faultline_core::model::Trajectory) -> String {
    let text = |k: &str| label[k].as_str().unwrap_or("?").to_string();
    let span_name = |k: &str| {
        label[k]
            .as_str()
            .and_then(|hex| t.spans.iter().find(|s| s.span_id.to_hex() == hex))
            .map(|s| s.name.to_string())
    };
    let mut h = format!(
        "# A simulated `{}` run in the `{}` convention, with `{}` planted.\n",
        text("template"),
        text("convention"),
        label["fault"].as_str().unwrap_or("no fault")
    );
    let outcome = text("outcome");
    match (outcome.as_str(), span_name("root_cause_span_id")) {
        ("failed", Some(span)) => h.push_str(&format!(
            "# Its label says: failed, caused by the {} span `{span}` ({}). The root cause\n\
             # line must name that step and span; the findings above it are its symptoms.\n",
            text("root_cause_step"),
            text("root_cause_kind"),
        )),
        ("recovered", _) => h.push_str(&format!(
            "# Its label says: recovered (the {} step failed, then succeeded). No root cause\n\
             # line: a recovered run is not a failure.\n",
            text("recovered_step"),
        )),
        _ => h.push_str(&format!(
            "# Its label says: {outcome}. The outcome line must say the same.\n"
        )),
    }
    h
}

#[test]
fn golden_simulated_fault_kinds_by_convention() {
    let dir = data_dir();
    if std::env::var_os(faultline_core::golden::REGENERATE_VAR).is_some() {
        std::fs::create_dir_all(&dir).expect("create the data dir");
        for fault in FaultKind::ALL {
            for convention in Convention::ALL {
                let name = case_name(fault, convention);
                write_case(&dir, &name, &pick_run(fault, convention));
            }
        }
    }
    let mut goldens = faultline_core::golden::Goldens::new();
    let mut cases = 0;
    for fault in FaultKind::ALL {
        for convention in Convention::ALL {
            let name = case_name(fault, convention);
            let (rendered, header, mismatch) = check_case(&dir, &name);
            cases += 1;
            if let Some(m) = mismatch {
                goldens.fail(m);
            }
            goldens.check(
                &dir.join(format!("{name}.expected")),
                &rendered,
                Some(&header),
            );
        }
    }
    assert_eq!(cases, FaultKind::ALL.len() * Convention::ALL.len());
    goldens.finish();
}
