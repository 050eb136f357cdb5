//! Golden trajectories of the classify stage: `tests/data/trajectories/classify/` and
//! the real-instrumentation traces of `tests/data/trajectories/real/`, decoded from
//! OTLP/JSON by the same decoder the receivers use.

use crate::classify::{classify, ClassifyConfig, RawClassifyConfig};
use crate::model::{StepAssignment, StepSource};

/// Renders one line per span in canonical order, indented by depth:
/// `name  step  step_source  run_start`.
fn render(t: &crate::model::Trajectory, steps: &[StepAssignment]) -> String {
    let mut out = String::new();
    for (i, (span, step)) in t.spans.iter().zip(steps).enumerate() {
        let mut depth = 0;
        let mut at = i as u32;
        while let Some(p) = t.tree_parent(at) {
            depth += 1;
            at = p;
            if depth > t.spans.len() {
                break;
            }
        }
        let source = match &step.source {
            StepSource::Rule(i) => format!("rule[{i}]"),
            StepSource::RuleSubtree(i) => format!("rule_subtree[{i}]"),
            other => other.as_str().to_string(),
        };
        out.push_str(&format!(
            "{}{}  {}  {}  {}\n",
            "  ".repeat(depth),
            span.name,
            step.kind.as_str(),
            source,
            step.run_start
        ));
    }
    out
}

/// The rules of `<case>.toml` beside the trajectory, if there is one.
fn case_config(dir: &std::path::Path, case: &str) -> ClassifyConfig {
    #[derive(serde::Deserialize)]
    struct File {
        classify: RawClassifyConfig,
    }
    match std::fs::read_to_string(dir.join(format!("{case}.toml"))) {
        Ok(text) => {
            let file: File = toml::from_str(&text).unwrap();
            file.classify.compile().unwrap()
        }
        Err(_) => ClassifyConfig::default(),
    }
}

/// Classifies `tests/data/trajectories/classify/<case>.otlp.json` and compares the
/// rendering with `<case>.expected` ([`crate::golden`]).
fn check(case: &str) {
    let dir = classify_data_dir();
    check_file(
        &dir.join(format!("{case}.otlp.json")),
        &dir.join(format!("{case}.expected")),
        &case_config(&dir, case),
    );
}

/// The same for a trace captured from a real instrumentation run
/// (`tests/data/trajectories/real/<case>.otlp.json`), expected in
/// `classify/real_<case>.expected`.
fn check_real(case: &str) {
    let dir = classify_data_dir();
    let input = dir.join("../real").join(format!("{case}.otlp.json"));
    check_file(
        &input,
        &dir.join(format!("real_{case}.expected")),
        &ClassifyConfig::default(),
    );
}

fn classify_data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/trajectories/classify")
}

fn check_file(input: &std::path::Path, expected_path: &std::path::Path, config: &ClassifyConfig) {
    use crate::ingest::decode::{decode_traces, parse_traces_json};
    let json = std::fs::read(input).unwrap();
    let request = parse_traces_json(&json).unwrap();
    let decoded = decode_traces(request, &crate::model::Interner::default());
    assert_eq!(decoded.rejected, 0, "{:?}", decoded.first_error);
    let spans = decoded.items;
    let trace_id = spans[0].trace_id;
    let t = crate::model::Trajectory::build(trace_id, spans, Vec::new(), Vec::new());
    let actual = render(&t, &classify(&t, config));
    let mut goldens = crate::golden::Goldens::new();
    goldens.check(expected_path, &actual, None);
    goldens.finish();
}

#[test]
fn golden_explicit() {
    check("explicit");
}

#[test]
fn golden_openinference() {
    check("openinference");
}

#[test]
fn golden_traceai_fi() {
    check("traceai_fi");
}

#[test]
fn golden_traceai_python() {
    check("traceai_python");
}

#[test]
fn golden_openllmetry() {
    check("openllmetry");
}

#[test]
fn golden_genai() {
    check("genai");
}

#[test]
fn golden_langgraph() {
    check("langgraph");
}

#[test]
fn golden_rules() {
    check("rules");
}

#[test]
fn golden_real_langgraph_tool_exception() {
    check_real("langgraph_tool_exception");
}

#[test]
fn golden_real_langgraph_empty_retrieval() {
    check_real("langgraph_empty_retrieval");
}

#[test]
fn golden_real_langgraph_rate_limit() {
    check_real("langgraph_rate_limit");
}

#[test]
fn golden_real_pydantic_ai_tool_exception() {
    check_real("pydantic_ai_tool_exception");
}

#[test]
fn golden_real_pydantic_ai_empty_retrieval() {
    check_real("pydantic_ai_empty_retrieval");
}

#[test]
fn golden_real_pydantic_ai_rate_limit() {
    check_real("pydantic_ai_rate_limit");
}
