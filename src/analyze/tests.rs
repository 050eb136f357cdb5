//! Golden tests of the whole core on traces captured from real instrumentations
//! (`tests/data/trajectories/real/*.otlp.json`, made by the agents under
//! `tests/python/agents/` with `--fixtures`): OTLP/JSON → decode → assemble → analyze,
//! rendered as stable text and compared with `<case>.expected` ([`crate::golden`]:
//! a hand-written header says what a reviewer should see).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::analyze::{analyze, AnalyzeConfig};
use crate::ingest::decode::{decode_traces, parse_traces_json};
use crate::model::{Analysis, Interner, Trajectory};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/trajectories/real")
}

/// The user rule the real-instrumentation test runs with.
fn config() -> AnalyzeConfig {
    let mut config = AnalyzeConfig::default();
    config.classify.rules = crate::classify::compile_rules(&[crate::classify::RawRule {
        attribute: Some("gen_ai.tool.name".into()),
        equals: Some("search_docs".into()),
        span_name_regex: None,
        step: "retriever".into(),
        subtree: false,
    }])
    .expect("valid rule");
    config
}

/// One line per span, indented by depth, then the findings and the verdict.
pub(crate) fn render(a: &Analysis) -> String {
    let t = &a.trajectory;
    let mut out = String::new();
    let children = t.child_index();
    let mut roots: Vec<u32> = (0..t.spans.len() as u32)
        .filter(|&i| t.tree_parent(i).is_none())
        .collect();
    // Orphans hang under the root in tree walks; list them after it at depth 1.
    let orphans: Vec<u32> = (0..t.spans.len() as u32)
        .filter(|&i| t.parent[i as usize].is_none() && Some(i) != t.root)
        .collect();
    roots.retain(|i| !orphans.contains(i));
    let mut stack: Vec<(u32, usize)> = roots.iter().rev().map(|&i| (i, 0)).collect();
    let mut seen = vec![false; t.spans.len()];
    let mut order = Vec::new();
    while let Some((i, d)) = stack.pop() {
        if std::mem::replace(&mut seen[i as usize], true) {
            continue;
        }
        order.push((i, d));
        if Some(i) == t.root {
            for &o in orphans.iter().rev() {
                stack.push((o, d + 1));
            }
        }
        for &c in children[i as usize].iter().rev() {
            stack.push((c, d + 1));
        }
    }
    for (i, d) in order {
        let s = &t.spans[i as usize];
        let step = &a.steps[i as usize];
        let _ = writeln!(
            out,
            "{:indent$}{}  {}  {}{}{}",
            "",
            s.name,
            step.kind.as_str(),
            step.source.as_str(),
            if step.run_start { "  run" } else { "" },
            if s.status == crate::model::SpanStatus::Error {
                "  ERROR"
            } else {
                ""
            },
            indent = d * 2
        );
    }
    let _ = writeln!(out, "outcome: {}", a.outcome.as_str());
    for f in &a.findings {
        let _ = writeln!(
            out,
            "finding: {} {} on {}{}: {}",
            f.step.as_str(),
            f.kind.as_str(),
            t.spans[f.span as usize].name,
            if f.propagated { " (propagated)" } else { "" },
            f.reason
        );
    }
    match &a.root_cause {
        Some(rc) => {
            let _ = writeln!(
                out,
                "root cause: {} {} on {} [{} {:.2}]: {}",
                rc.step.as_str(),
                rc.kind.as_str(),
                t.spans[rc.span as usize].name,
                rc.rule,
                rc.confidence,
                rc.reason
            );
            for &e in &rc.evidence {
                if let Some(f) = a.findings.get(e) {
                    let _ = writeln!(out, "  evidence: {} {}", f.step.as_str(), f.kind.as_str());
                }
            }
        }
        None => {
            let _ = writeln!(out, "root cause: none");
        }
    }
    out
}

fn analyse_file(path: &Path) -> Vec<Analysis> {
    let body = std::fs::read(path).expect("fixture readable");
    let req = parse_traces_json(&body).expect("fixture is OTLP/JSON");
    let decoded = decode_traces(req, &Interner::default());
    assert_eq!(
        decoded.rejected,
        0,
        "{}: {:?}",
        path.display(),
        decoded.first_error
    );
    let mut by_trace: std::collections::BTreeMap<_, Vec<_>> = Default::default();
    for s in decoded.items {
        by_trace.entry(s.trace_id).or_default().push(s);
    }
    let config = config();
    by_trace
        .into_iter()
        .map(|(id, spans)| {
            let t = Trajectory::build(id, spans, Vec::new(), Vec::new());
            analyze(Arc::new(t), &config)
        })
        .collect()
}

#[test]
fn golden_real_instrumentations() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".otlp.json"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 6, "fixtures present");
    let mut goldens = crate::golden::Goldens::new();
    for case in cases {
        let rendered: String = analyse_file(&case).iter().map(render).collect();
        let expected_path =
            PathBuf::from(case.to_string_lossy().replace(".otlp.json", ".expected"));
        goldens.check(&expected_path, &rendered, None);
    }
    goldens.finish();
}
