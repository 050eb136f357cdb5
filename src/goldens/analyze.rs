//! Golden tests of the whole core on traces captured from real instrumentations
//! (`tests/data/trajectories/real/*.otlp.json`, made by the agents under
//! `tests/python/agents/` with `--fixtures`): OTLP/JSON → decode → assemble → analyze,
//! rendered as stable text and compared with `<case>.expected` (`faultline_core::golden`:
//! a hand-written header says what a reviewer should see).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::analyze::{analyze, AnalyzeConfig};
use crate::ingest::decode::{decode_traces, parse_traces_json};
use crate::model::{Analysis, Interner, Trajectory};
use faultline_core::golden::render;

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
