//! Unit tests of the detection rules: one or more golden cases per rule and per
//! transport, plus the `[detect]` config.

use crate::detect::{detect, DetectConfig, RawDetectConfig};
use crate::model::{
    Finding, FindingKind, SpanRecord, StepAssignment, StepKind, StepSource, Trajectory, Value,
};
use crate::test_support::{log_event, span, span_id, trace_id, trajectory};

/// Step assignments for `traj`: span `id` gets the named step; others inherit their
/// parent's step (the root defaults to `agent`). A span starts a run when its step differs
/// from its parent's.
pub(crate) fn assign(traj: &Trajectory, named: &[(u64, &str)]) -> Vec<StepAssignment> {
    let mut out: Vec<StepAssignment> = Vec::with_capacity(traj.spans.len());
    let mut kinds: Vec<Option<StepKind>> = vec![None; traj.spans.len()];
    // Parents first: canonical order is start order, and builders start children later.
    for (i, s) in traj.spans.iter().enumerate() {
        let parent_kind = traj.parent[i].and_then(|p| kinds[p as usize].clone());
        let explicit = named
            .iter()
            .find(|(id, _)| span_id(*id) == s.span_id)
            .map(|(_, name)| StepKind::from_name(name));
        let kind = explicit
            .clone()
            .or(parent_kind.clone())
            .unwrap_or(StepKind::Agent);
        kinds[i] = Some(kind.clone());
        out.push(StepAssignment {
            run_start: parent_kind.as_ref() != Some(&kind),
            source: if explicit.is_some() {
                StepSource::Explicit
            } else {
                StepSource::Inherited
            },
            kind,
        });
    }
    out
}

fn run(traj: &Trajectory, named: &[(u64, &str)]) -> Vec<Finding> {
    run_with(traj, named, &DetectConfig::default())
}

fn run_with(traj: &Trajectory, named: &[(u64, &str)], config: &DetectConfig) -> Vec<Finding> {
    let steps = assign(traj, named);
    detect(traj, &steps, config)
}

fn kinds(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.kind.as_str()).collect()
}

fn index_of(traj: &Trajectory, id: u64) -> u32 {
    traj.find(span_id(id)).unwrap()
}

fn config(toml_text: &str) -> DetectConfig {
    #[derive(serde::Deserialize)]
    struct File {
        detect: RawDetectConfig,
    }
    let file: File = toml::from_str(toml_text).unwrap();
    DetectConfig::from_raw(&file.detect).unwrap()
}

fn root() -> SpanRecord {
    span(1, 1, 0).name("agent").times(1, 100).build()
}

// ---- errors -------------------------------------------------------------------------

#[test]
fn status_error_with_message_is_an_error() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .name("lookup")
            .error("connection reset")
            .build(),
    ]);
    let f = run(&t, &[]);
    assert_eq!(kinds(&f), ["error"]);
    assert_eq!(f[0].span, index_of(&t, 2));
    assert_eq!(f[0].source, "status");
    assert_eq!(
        f[0].reason,
        "agent span `lookup` ended with status ERROR: connection reset"
    );
    assert!(!f[0].propagated);
}

#[test]
fn exception_event_gives_type_and_message() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .name("parse")
            .exception("KeyError", "'answer'")
            .error("")
            .build(),
    ]);
    let f = run(&t, &[(2, "generator")]);
    assert_eq!(kinds(&f), ["exception"]);
    assert_eq!(f[0].step, StepKind::Generator);
    assert_eq!(f[0].source, "exception");
    assert_eq!(
        f[0].reason,
        "generator span `parse` raised KeyError: 'answer'"
    );
}

#[test]
fn error_type_alone_is_an_error() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .name("chat gpt-4o")
            .attr("gen_ai.operation.name", "chat")
            .attr("error.type", "timeout")
            .build(),
    ]);
    let f = run(&t, &[(2, "generator")]);
    assert_eq!(kinds(&f), ["error"]);
    assert_eq!(f[0].source, "error.type");
    assert_eq!(
        f[0].reason,
        "generator LLM call `chat gpt-4o` failed with error.type timeout"
    );
}

#[test]
fn rate_limits_are_recognised_by_type_message_and_status_code() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .exception("openai.RateLimitError", "slow down")
            .build(),
        span(1, 3, 1).error("HTTP 429 Too Many Requests").build(),
        span(1, 4, 1)
            .attr("http.response.status_code", 429i64)
            .build(),
        span(1, 5, 1).error("request req_84291 failed").build(),
    ]);
    let f = run(&t, &[]);
    assert_eq!(
        kinds(&f),
        ["rate_limited", "rate_limited", "rate_limited", "error"]
    );
}

#[test]
fn recursion_limit_is_a_loop() {
    let t = trajectory(vec![span(1, 1, 0)
        .exception(
            "GraphRecursionError",
            "Recursion limit of 25 reached without hitting a stop condition.",
        )
        .error("")
        .build()]);
    let f = run(&t, &[]);
    assert_eq!(kinds(&f), ["loop"]);
}

#[test]
fn validation_errors_are_invalid_args_only_on_tools() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .attr("tool.name", "get_weather")
            .exception(
                "pydantic_core.ValidationError",
                "1 validation error for city",
            )
            .error("")
            .build(),
        span(1, 3, 1)
            .exception("ValidationError", "bad request body")
            .error("")
            .build(),
    ]);
    let f = run(&t, &[(2, "tool")]);
    assert_eq!(kinds(&f), ["invalid_tool_args", "exception"]);
    assert_eq!(f[0].subject.as_deref(), Some("get_weather"));
    assert!(f[0].reason.starts_with("tool `get_weather` raised"));
}

#[test]
fn tool_not_found_is_unknown_tool() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1).error("Tool not found: web_browse").build(),
    ]);
    assert_eq!(kinds(&run(&t, &[])), ["unknown_tool"]);
}

// ---- evaluations --------------------------------------------------------------------

#[test]
fn openinference_span_evaluations_fail_below_threshold_with_explanation() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .name("answer")
            .attr("evaluations.0.evaluation.name", "hallucination")
            .attr("evaluations.0.evaluation.score", 0.2)
            .attr(
                "evaluations.0.evaluation.explanation",
                "The answer cites a policy absent from the context.",
            )
            .attr("evaluations.1.evaluation.name", "toxicity")
            .attr("evaluations.1.evaluation.score", 0.9)
            .attr("evaluations.2.evaluation.name", "qa")
            .attr("evaluations.2.evaluation.label", "Hallucinated")
            .build(),
    ]);
    let f = run(&t, &[(2, "generator")]);
    assert_eq!(kinds(&f), ["eval_failed", "eval_failed"]);
    assert_eq!(f[0].span, index_of(&t, 2));
    assert_eq!(f[0].step, StepKind::Generator);
    assert_eq!(
        f[0].reason,
        "The answer cites a policy absent from the context."
    );
    assert_eq!(f[0].score, Some(0.2));
    assert_eq!(f[0].source, "evaluations.*");
    assert_eq!(f[0].subject.as_deref(), Some("hallucination"));
    assert!(!f[0].task_level);
    assert_eq!(
        f[1].reason,
        "evaluator `qa` on `answer` labelled it `Hallucinated`"
    );
}

#[test]
fn openinference_annotations_and_trace_scope() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .attr("annotations.0.annotation.name", "correctness")
            .attr("annotations.0.annotation.label", "incorrect")
            .attr("trace.evaluations.0.evaluation.name", "user_satisfaction")
            .attr("trace.evaluations.0.evaluation.score", 0.1)
            .build(),
    ]);
    let f = run(&t, &[(2, "generator")]);
    assert_eq!(kinds(&f), ["eval_failed", "eval_failed"]);
    // The trace-scoped result evaluates the root, so it sorts first and is task-level.
    assert_eq!(f[0].span, index_of(&t, 1));
    assert!(f[0].task_level);
    assert_eq!(f[0].source, "trace.evaluations.*");
    assert_eq!(f[1].span, index_of(&t, 2));
    assert_eq!(f[1].source, "annotations.*");
}

#[test]
fn gen_ai_flat_attributes_with_failing_label() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .attr("gen_ai.evaluation.name", "context_relevance")
            .attr("gen_ai.evaluation.score.label", "Not Relevant")
            .attr(
                "gen_ai.evaluation.explanation",
                "Documents are about billing, not refunds.",
            )
            .build(),
    ]);
    let f = run(&t, &[(2, "retriever")]);
    assert_eq!(kinds(&f), ["eval_failed"]);
    assert_eq!(f[0].step, StepKind::Retriever);
    assert_eq!(f[0].source, "gen_ai.evaluation.*");
    assert_eq!(f[0].reason, "Documents are about billing, not refunds.");
}

#[test]
fn ai_evaluation_eval_metric_with_reason_skips_metadata() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .attr("eval.faithfulness", 0.3)
            .attr("eval.faithfulness.reason", "Claim 2 is not supported.")
            .attr("eval.faithfulness.latency_ms", 120i64)
            .attr("eval.sample_rate", 0.1)
            .attr("eval.model", "gpt-4o-mini")
            .attr("eval.is_polite", true)
            .attr("eval.is_concise", false)
            .build(),
    ]);
    let f = run(&t, &[(2, "generator")]);
    assert_eq!(kinds(&f), ["eval_failed", "eval_failed"]);
    assert_eq!(f[0].reason, "Claim 2 is not supported.");
    assert_eq!(f[0].source, "eval.*");
    assert_eq!(f[1].subject.as_deref(), Some("is_concise"));
}

#[test]
fn evaluator_child_span_evaluates_its_parent() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1).name("answer").build(),
        span(1, 3, 2)
            .name("eval.groundedness")
            .attr("openinference.span.kind", "EVALUATOR")
            .attr("gen_ai.evaluation.name", "groundedness")
            .attr("gen_ai.evaluation.score.value", 0.1)
            .attr("gen_ai.evaluation.explanation", "No supporting passage.")
            .build(),
    ]);
    let f = run(&t, &[(2, "generator"), (3, "critic")]);
    assert_eq!(kinds(&f), ["eval_failed"]);
    assert_eq!(f[0].span, index_of(&t, 2));
    assert_eq!(f[0].step, StepKind::Generator);
    assert_eq!(f[0].source, "evaluator_span");
}

#[test]
fn linked_evaluator_span_from_another_trace() {
    let evaluator = span(9, 50, 0)
        .attr("openinference.span.kind", "EVALUATOR")
        .attr("annotations.0.annotation.name", "correctness")
        .attr("annotations.0.annotation.score", 0.0)
        .attr(
            "annotations.0.annotation.explanation",
            "Wrong refund amount.",
        )
        .link(1, 2)
        .build();
    let t = Trajectory::build(
        trace_id(1),
        vec![root(), span(1, 2, 1).name("answer").build()],
        Vec::new(),
        vec![crate::model::LinkedEvaluation::of(&evaluator)],
    );
    let f = run(&t, &[(2, "generator")]);
    assert_eq!(kinds(&f), ["eval_failed"]);
    assert_eq!(f[0].span, index_of(&t, 2));
    assert_eq!(f[0].source, "linked_evaluator");
    assert_eq!(f[0].reason, "Wrong refund amount.");
}

/// A linked evaluation keeps only the evaluation attributes of its span: every form the
/// rule reads must survive, so that a run judged by a linked evaluator span gets the
/// same findings as one judged by the same span inside its own trace.
#[test]
fn a_linked_evaluation_keeps_every_evaluation_form() {
    let forms: [&[(&str, Value)]; 6] = [
        &[
            ("evaluations.0.evaluation.name", Value::Str("a".into())),
            ("evaluations.0.evaluation.score", Value::Double(0.1)),
        ],
        &[
            ("annotations.0.annotation.name", Value::Str("b".into())),
            (
                "annotations.0.annotation.label",
                Value::Str("incorrect".into()),
            ),
        ],
        &[
            (
                "trace.evaluations.0.evaluation.name",
                Value::Str("c".into()),
            ),
            ("trace.evaluations.0.evaluation.score", Value::Double(0.0)),
        ],
        &[
            (
                "trace.annotations.0.annotation.name",
                Value::Str("d".into()),
            ),
            (
                "trace.annotations.0.annotation.label",
                Value::Str("fail".into()),
            ),
        ],
        &[
            ("gen_ai.evaluation.name", Value::Str("e".into())),
            ("gen_ai.evaluation.score.value", Value::Double(0.2)),
            (
                "gen_ai.evaluation.explanation",
                Value::Str("Off topic.".into()),
            ),
            (
                "gen_ai.evaluation.target_span_id",
                Value::Str(span_id(3).to_hex().into()),
            ),
        ],
        &[
            ("eval.f", Value::Double(0.0)),
            ("eval.f.reason", Value::Str("Made up.".into())),
        ],
    ];
    for form in forms {
        let mut b = span(9, 50, 0)
            .attr("openinference.span.kind", "EVALUATOR")
            .attr("unrelated.key", "dropped")
            .link(1, 2);
        for (k, v) in form {
            b = b.attr(k, crate::test_support::TestValue(v.clone()));
        }
        let evaluator = b.build();
        let linked = crate::model::LinkedEvaluation::of(&evaluator);
        assert_eq!(linked.attributes.len(), form.len(), "{form:?}");
        let spans = || vec![root(), span(1, 2, 1).build(), span(1, 3, 1).build()];
        let t = Trajectory::build(trace_id(1), spans(), Vec::new(), vec![linked]);
        // The same span in the run's own trace, linked to the same span.
        let mut own = evaluator.clone();
        own.trace_id = trace_id(1);
        own.parent_span_id = Some(span_id(1));
        let mut with_own = spans();
        with_own.push(own);
        let u = Trajectory::build(trace_id(1), with_own, Vec::new(), Vec::new());
        let f = run(&t, &[]);
        let g = run(&u, &[]);
        assert_eq!(kinds(&f), ["eval_failed"], "{form:?}");
        assert_eq!(f[0].span, g[0].span, "{form:?}");
        assert_eq!(f[0].reason, g[0].reason, "{form:?}");
        assert_eq!(f[0].subject, g[0].subject, "{form:?}");
    }
}

#[test]
fn evaluation_log_events_join_by_span_response_id_and_target() {
    let spans = vec![
        root(),
        span(1, 2, 1).attr("gen_ai.response.id", "resp-7").build(),
        span(1, 3, 1).build(),
        span(1, 4, 1).build(),
    ];
    let by_span = log_event(
        1,
        2,
        "gen_ai.evaluation.result",
        &[
            ("gen_ai.evaluation.name", Value::Str("relevance".into())),
            (
                "gen_ai.evaluation.score.label",
                Value::Str("irrelevant".into()),
            ),
        ],
    );
    let mut by_response = log_event(
        1,
        1,
        "gen_ai.evaluation.result",
        &[
            ("gen_ai.evaluation.name", Value::Str("coherence".into())),
            ("gen_ai.evaluation.score.value", Value::Double(0.1)),
            ("gen_ai.response.id", Value::Str("resp-7".into())),
        ],
    );
    by_response.span_id = None;
    let by_target = log_event(
        1,
        1,
        "gen_ai.evaluation.result",
        &[
            ("gen_ai.evaluation.name", Value::Str("tool_use".into())),
            ("gen_ai.evaluation.score.label", Value::Str("fail".into())),
            (
                "gen_ai.evaluation.target_span_id",
                Value::Str(span_id(4).to_hex().into()),
            ),
        ],
    );
    let unrelated = log_event(1, 3, "gen_ai.client.inference.operation.details", &[]);
    let t = Trajectory::build(
        trace_id(1),
        spans,
        vec![by_span, by_response, by_target, unrelated],
        Vec::new(),
    );
    let f = run(&t, &[(2, "generator"), (4, "tool")]);
    assert_eq!(kinds(&f), ["eval_failed", "eval_failed", "eval_failed"]);
    let on = |id| {
        f.iter()
            .filter(|x| x.span == index_of(&t, id))
            .map(|x| x.subject.as_deref().unwrap())
            .collect::<Vec<_>>()
    };
    // Logs are in canonical order: the record with no span id sorts first.
    assert_eq!(on(2), ["coherence", "relevance"]);
    assert_eq!(on(4), ["tool_use"]);
    assert!(f.iter().all(|x| x.source == "gen_ai.evaluation.result"));
}

#[test]
fn thresholds_and_direction_per_evaluator() {
    let cfg = config(
        r#"
        [detect.evaluators.helpfulness]
        threshold = 0.8
        [detect.evaluators.hallucination]
        threshold = 0.3
        lower_is_better = true
        [detect.evaluators.stars]
        threshold = 3.0
        "#,
    );
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .attr("eval.helpfulness", 0.7)
            .attr("eval.hallucination", 0.6)
            .attr("eval.stars", 4i64)
            .attr("eval.rating", 7i64)
            .build(),
    ]);
    let f = run_with(&t, &[(2, "generator")], &cfg);
    let subjects: Vec<_> = f.iter().map(|x| x.subject.as_deref().unwrap()).collect();
    assert_eq!(subjects, ["helpfulness", "hallucination"]);
    assert_eq!(
        f[1].reason,
        "evaluator `hallucination` on `span-2` scored 0.6, above its threshold 0.3"
    );
    // Default config: 0.7 and 0.6 pass (higher is better); 4 and 7 have no known scale.
    assert!(run(&t, &[(2, "generator")]).is_empty());
}

#[test]
fn passing_label_overrides_a_low_score_and_same_result_is_reported_once() {
    let spans = vec![
        root(),
        span(1, 2, 1)
            .attr("gen_ai.evaluation.name", "relevance")
            .attr("gen_ai.evaluation.score.value", 0.2)
            .attr("gen_ai.evaluation.score.label", "fail")
            .attr("eval.tone", 0.1)
            .attr("eval.tone.label", "pass")
            .build(),
    ];
    let duplicate = log_event(
        1,
        2,
        "gen_ai.evaluation.result",
        &[
            ("gen_ai.evaluation.name", Value::Str("relevance".into())),
            ("gen_ai.evaluation.score.value", Value::Double(0.2)),
            ("gen_ai.evaluation.score.label", Value::Str("fail".into())),
        ],
    );
    let t = Trajectory::build(trace_id(1), spans, vec![duplicate], Vec::new());
    let f = run(&t, &[(2, "generator")]);
    assert_eq!(kinds(&f), ["eval_failed"]);
    assert_eq!(f[0].subject.as_deref(), Some("relevance"));
}

#[test]
fn task_evaluators_are_task_level_anywhere() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .attr("gen_ai.evaluation.name", "task_completion")
            .attr("gen_ai.evaluation.score.value", 0.0)
            .build(),
    ]);
    let f = run(&t, &[(2, "generator")]);
    assert_eq!(kinds(&f), ["eval_failed"]);
    assert!(f[0].task_level);
    assert_eq!(f[0].step, StepKind::Generator);
}

// ---- empty retrieval ----------------------------------------------------------------

#[test]
fn empty_retrieval_in_every_shape() {
    let t = trajectory(vec![
        root(),
        // Retriever by convention with no documents at all.
        span(1, 2, 1)
            .attr("openinference.span.kind", "RETRIEVER")
            .attr("input.value", "refund policy")
            .build(),
        // With documents: fine.
        span(1, 3, 1)
            .attr("openinference.span.kind", "RETRIEVER")
            .attr("retrieval.documents.0.document.id", "d1")
            .attr("retrieval.documents.0.document.content", "text")
            .build(),
        // GenAI list, empty.
        span(1, 4, 1)
            .attr("gen_ai.operation.name", "retrieval")
            .attr("gen_ai.retrieval.documents", "[]")
            .build(),
        // Retriever by step only, output `[]`.
        span(1, 5, 1).attr("output.value", "[]").build(),
        // Retriever by step only, no evidence: a wrapper, not judged.
        span(1, 6, 1).build(),
        // Count attribute.
        span(1, 7, 1).attr("retrieval.document_count", 0i64).build(),
    ]);
    let named = [
        (2, "retriever"),
        (3, "retriever"),
        (4, "retriever"),
        (5, "retriever"),
        (6, "retriever"),
        (7, "retriever"),
    ];
    let f = run(&t, &named);
    let spans: Vec<u32> = f.iter().map(|x| x.span).collect();
    assert_eq!(kinds(&f), ["empty_retrieval"; 4]);
    assert_eq!(spans, [2, 4, 5, 7].map(|id| index_of(&t, id)).to_vec());
    assert_eq!(
        f[0].reason,
        "retriever span `span-2` returned no documents for query \"refund policy\""
    );
    assert_eq!(f[1].source, "gen_ai.retrieval.documents");
}

/// OpenLLMetry vector-DB spans record one `db.query.result` event per result: a
/// retrieval by convention with such events is not empty. No event is no evidence on a
/// span that is a retriever only by its step (OpenLLMetry's Qdrant instrumentation
/// records none at all).
#[test]
fn vector_db_result_events_count_as_documents() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .name("chroma.query")
            .attr("db.system", "chroma")
            .attr("gen_ai.operation.name", "vector_db_retrieve")
            .event("db.query.result", &[("db.query.result.id", "d1")])
            .build(),
        span(1, 3, 1)
            .name("qdrant.search")
            .attr("db.system", "qdrant")
            .attr("db.vector.query.top_k", 4)
            .build(),
    ]);
    let f = run(&t, &[(2, "retriever"), (3, "retriever")]);
    assert!(kinds(&f).is_empty(), "{f:#?}");
}

#[test]
fn errored_retriever_is_not_also_empty() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .attr("openinference.span.kind", "RETRIEVER")
            .error("index unavailable")
            .build(),
    ]);
    assert_eq!(kinds(&run(&t, &[(2, "retriever")])), ["error"]);
}

// ---- tool output as data ------------------------------------------------------------

#[test]
fn tool_errors_returned_as_data() {
    let cfg = config(
        r#"
        [detect]
        tool_error_patterns = ["^Error:"]
        "#,
    );
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .attr("gen_ai.tool.name", "lookup_order")
            .attr(
                "gen_ai.tool.call.result",
                r#"{"error": "order 42 not found"}"#,
            )
            .build(),
        span(1, 3, 1)
            .attr("tool.name", "mcp_fetch")
            .attr(
                "output.value",
                r#"{"isError": true, "content": [{"type": "text", "text": "403 Forbidden"}]}"#,
            )
            .build(),
        span(1, 4, 1)
            .attr("tool.name", "calc")
            .attr("output.value", "Error: division by zero")
            .build(),
        span(1, 5, 1)
            .attr("tool.name", "book")
            .attr(
                "output.value",
                r#"{"error": {"message": "Invalid arguments: date is required"}}"#,
            )
            .build(),
        span(1, 6, 1)
            .attr("tool.name", "ok_tool")
            .attr("output.value", r#"{"error": null, "result": 3}"#)
            .build(),
        // An error status is the errors rule's, not reported twice.
        span(1, 7, 1)
            .attr("tool.name", "failing")
            .attr("output.value", r#"{"error": "boom"}"#)
            .error("boom")
            .build(),
    ]);
    let named = [
        (2, "tool"),
        (3, "tool"),
        (4, "tool"),
        (5, "tool"),
        (6, "tool"),
        (7, "tool"),
    ];
    let f = run_with(&t, &named, &cfg);
    assert_eq!(
        kinds(&f),
        [
            "tool_error",
            "tool_error",
            "tool_error",
            "invalid_tool_args",
            "error"
        ]
    );
    assert_eq!(
        f[0].reason,
        "tool `lookup_order` returned an error: order 42 not found"
    );
    assert_eq!(f[0].source, "gen_ai.tool.call.result");
    assert_eq!(
        f[1].reason,
        "tool `mcp_fetch` returned an error: 403 Forbidden"
    );
    // Without the pattern, the plain-text error is not recognised.
    assert_eq!(run(&t, &named).len(), 4);
}

// ---- tool calls: unknown tools, broken arguments -----------------------------------

#[test]
fn undeclared_tool_calls_and_broken_arguments() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .name("plan")
            .attr("openinference.span.kind", "LLM")
            .attr(
                "llm.tools.0.tool.json_schema",
                r#"{"type": "function", "function": {"name": "search"}}"#,
            )
            .attr(
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.name",
                "browse",
            )
            .attr(
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
                r#"{"url": "#,
            )
            .build(),
        span(1, 3, 1).attr("gen_ai.tool.name", "browse").build(),
        span(1, 4, 1)
            .attr("gen_ai.tool.name", "search")
            .attr("gen_ai.tool.call.arguments", r#"{"q": "refunds""#)
            .build(),
    ]);
    let f = run(&t, &[(2, "planner"), (3, "tool"), (4, "tool")]);
    assert_eq!(
        kinds(&f),
        [
            "unknown_tool",
            "invalid_tool_args",
            "unknown_tool",
            "invalid_tool_args"
        ]
    );
    assert_eq!(f[0].step, StepKind::Planner);
    assert_eq!(
        f[0].reason,
        "planner span `plan` called undeclared tool `browse` (declared: `search`)"
    );
    assert_eq!(f[2].span, index_of(&t, 3));
    assert_eq!(f[3].source, "gen_ai.tool.call.arguments");
}

#[test]
fn gen_ai_definitions_and_output_messages() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .attr("gen_ai.operation.name", "chat")
            .attr(
                "gen_ai.tool.definitions",
                r#"[{"type": "function", "name": "get_weather"}]"#,
            )
            .attr(
                "gen_ai.output.messages",
                r#"[{"role": "assistant", "parts": [{"type": "tool_call", "name": "get_weather", "arguments": {"city": "Paris"}}]}]"#,
            )
            .build(),
    ]);
    assert!(run(&t, &[(2, "planner")]).is_empty());
}

// ---- truncation ---------------------------------------------------------------------

#[test]
fn truncation_by_finish_reason_in_each_convention() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .attr(
                "gen_ai.response.finish_reasons",
                Value::Array(vec![Value::Str("length".into())].into()),
            )
            .attr("gen_ai.request.max_tokens", 256i64)
            .build(),
        span(1, 3, 1).attr("llm.finish_reason", "stop").build(),
        span(1, 4, 1)
            .attr("gen_ai.completion.0.finish_reason", "length")
            .build(),
        span(1, 5, 1)
            .attr("llm.finish_reason", "max_tokens")
            .build(),
    ]);
    let f = run(&t, &[(2, "generator")]);
    assert_eq!(kinds(&f), ["truncated", "truncated", "truncated"]);
    assert_eq!(
        f[0].reason,
        "generator span `span-2` was cut off by the token limit (finish reason `length`, max_tokens 256)"
    );
    assert_eq!(f[1].source, "gen_ai.completion.*.finish_reason");
}

// ---- loops by repetition ------------------------------------------------------------

#[test]
fn same_tool_same_arguments_three_times_is_a_loop() {
    let call = |id: u64, args: &str| {
        span(1, id, 1)
            .attr("tool.name", "search")
            .attr("input.value", args)
            .build()
    };
    let t = trajectory(vec![
        root(),
        call(2, r#"{"q": "refund", "k": 3}"#),
        call(3, r#"{"k": 3, "q": "refund"}"#),
        call(4, r#"{"q": "other"}"#),
        call(5, r#"{"q":"refund","k":3}"#),
        call(6, r#"{"q": "refund", "k": 3}"#),
    ]);
    let named = [
        (2, "tool"),
        (3, "tool"),
        (4, "tool"),
        (5, "tool"),
        (6, "tool"),
    ];
    let f = run(&t, &named);
    assert_eq!(kinds(&f), ["loop"]);
    assert_eq!(f[0].span, index_of(&t, 5));
    assert_eq!(f[0].score, Some(4.0));
    assert_eq!(
        f[0].reason,
        r#"tool `search` was called 4 times with the same arguments {"k":3,"q":"refund"}"#
    );
    let strict = config("[detect]\nloop_threshold = 5\n");
    assert!(run_with(&t, &named, &strict).is_empty());
}

// ---- slow steps ---------------------------------------------------------------------

#[test]
fn step_runs_over_their_slo_are_slow() {
    let cfg = config("[detect]\nslo = { retriever = \"2s\" }\n");
    let t = trajectory(vec![
        span(1, 1, 0).times(0, 10_000).build(),
        span(1, 2, 1).times(1, 3_501).build(),
        // Inside the slow run: not counted again.
        span(1, 3, 2).times(2, 3_400).build(),
        span(1, 4, 1).times(4_000, 5_000).build(),
    ]);
    let f = run_with(&t, &[(2, "retriever"), (4, "retriever")], &cfg);
    assert_eq!(kinds(&f), ["slow_step"]);
    assert_eq!(f[0].span, index_of(&t, 2));
    assert_eq!(
        f[0].reason,
        "retriever span `span-2` took 3s 500ms, over its 2s SLO"
    );
}

// ---- content rules and config -------------------------------------------------------

const CRITIC_RULE: &str = r#"
[detect]

[[detect.output_rules]]
step = "critic"
pattern = "^\\s*REJECT"      # regex on the step's output text
kind = "critic_rejected"
"#;

#[test]
fn output_rule_toml_is_accepted_as_written_and_matches_once_per_run() {
    let cfg = config(CRITIC_RULE);
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .name("critic")
            .attr("output.value", "  REJECT: the answer cites no source")
            .build(),
        span(1, 3, 2)
            .name("ChatOpenAI")
            .attr(
                "llm.output_messages.0.message.content",
                "REJECT: the answer cites no source",
            )
            .build(),
        span(1, 4, 1)
            .name("critic")
            .attr("output.value", "ACCEPT")
            .build(),
    ]);
    let f = run_with(&t, &[(2, "critic"), (4, "critic")], &cfg);
    assert_eq!(kinds(&f), ["critic_rejected"]);
    assert_eq!(f[0].kind, FindingKind::Custom("critic_rejected".into()));
    assert_eq!(f[0].span, index_of(&t, 2));
    assert_eq!(
        f[0].reason,
        r"critic output matched /^\s*REJECT/: REJECT: the answer cites no source"
    );
}

/// Outputs recorded as message lists are matched on their text, not their JSON: a graph
/// node's state (OpenInference `output.value`), GenAI parts (traceAI `output.value`,
/// `gen_ai.output.messages`). Other JSON outputs are matched as they are.
#[test]
fn output_rules_match_the_text_of_message_lists() {
    let cfg = config(CRITIC_RULE);
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .name("critic")
            .attr(
                "output.value",
                r#"{"messages": [{"role": "assistant", "content": "REJECT: no source"}]}"#,
            )
            .build(),
        span(1, 3, 1)
            .name("judge")
            .attr(
                "output.value",
                r#"[{"role": "assistant", "parts": [{"type": "text", "content": "REJECT: vague"}], "finish_reason": "stop"}]"#,
            )
            .build(),
        span(1, 4, 1)
            .name("review")
            .attr(
                "gen_ai.output.messages",
                r#"[{"role": "assistant", "parts": [{"type": "text", "content": " REJECT: wrong"}]}]"#,
            )
            .build(),
        span(1, 5, 1)
            .name("grader")
            .attr("output.value", r#"[{"id": "d1", "content": "REJECT"}]"#)
            .build(),
    ]);
    let named = [(2, "critic"), (3, "critic"), (4, "critic"), (5, "critic")];
    let f = run_with(&t, &named, &cfg);
    let spans: Vec<u32> = f.iter().map(|f| f.span).collect();
    assert_eq!(
        spans,
        [index_of(&t, 2), index_of(&t, 3), index_of(&t, 4)],
        "{f:#?}"
    );
    assert!(
        f[0].reason.ends_with(": REJECT: no source"),
        "{}",
        f[0].reason
    );
}

#[test]
fn config_errors_name_the_key() {
    let bad = |toml_text: &str| {
        #[derive(serde::Deserialize)]
        struct File {
            detect: RawDetectConfig,
        }
        match toml::from_str::<File>(toml_text) {
            Ok(file) => DetectConfig::from_raw(&file.detect)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            Err(e) => e.to_string(),
        }
    };
    assert_eq!(
        bad("[[detect.output_rules]]\nstep = \"critic\"\npattern = \"(\"\nkind = \"x\"\n")
            .split(':')
            .next(),
        Some("detect.output_rules[0].pattern")
    );
    assert_eq!(
        bad("[[detect.output_rules]]\nstep = \"critc\"\npattern = \"x\"\nkind = \"x\"\n"),
        "detect.output_rules[0].step: unknown step `critc` (not a built-in step nor listed in detect.custom_steps)"
    );
    assert!(bad("[detect]\nslo = { planner = \"fast\" }\n")
        .starts_with("detect.slo.planner: invalid duration `fast`"));
    assert!(bad("[detect]\nloop_threshold = 1\n").starts_with("detect.loop_threshold:"));
    assert!(bad("[detect]\ntool_error_patterns = [\"[\"]\n")
        .starts_with("detect.tool_error_patterns[0]:"));
    assert!(bad(
        "[[detect.output_rules]]\nstep = \"critic\"\npattern = \"x\"\nkind = \"Bad Kind\"\n"
    )
    .starts_with("detect.output_rules[0].kind:"));
    assert!(bad("[detect]\nloop_treshold = 4\n").contains("unknown field `loop_treshold`"));
    // Custom steps are accepted once declared.
    assert_eq!(
        bad("[detect]\ncustom_steps = [\"summarize\"]\nslo = { summarize = \"1s\" }\n"),
        ""
    );
}

#[test]
fn raw_default_is_the_typed_default() {
    let from_raw = DetectConfig::from_raw(&RawDetectConfig::default()).unwrap();
    let default = DetectConfig::default();
    assert_eq!(from_raw.failing_labels, default.failing_labels);
    assert_eq!(from_raw.task_evaluators, default.task_evaluators);
    assert_eq!(from_raw.loop_threshold, default.loop_threshold);
    assert_eq!(
        from_raw.default_eval_threshold,
        default.default_eval_threshold
    );
    // An empty table deserializes to the defaults.
    let empty: RawDetectConfig = toml::from_str("").unwrap();
    assert_eq!(empty, RawDetectConfig::default());
}

#[test]
fn findings_are_sorted_by_span_and_deterministic() {
    let t = trajectory(vec![
        root(),
        span(1, 2, 1)
            .attr("tool.name", "a")
            .attr("output.value", r#"{"error": "x"}"#)
            .attr("llm.finish_reason", "length")
            .build(),
        span(1, 3, 1).error("late").build(),
    ]);
    let first = run(&t, &[(2, "tool")]);
    assert_eq!(kinds(&first), ["tool_error", "truncated", "error"]);
    assert_eq!(first, run(&t, &[(2, "tool")]));
}

#[test]
fn a_critics_verdict_is_read_in_its_common_shapes() {
    use crate::content::verdict;
    assert_eq!(verdict("REJECT: not supported"), Some(false));
    assert_eq!(
        verdict("[[ ## verdict ## ]]\nREJECT: the answer is wrong"),
        Some(false)
    );
    assert_eq!(verdict("**Verdict:** FAIL"), Some(false));
    assert_eq!(
        verdict(r#"{"verdict": "reject", "reason": "x"}"#),
        Some(false)
    );
    assert_eq!(verdict(r#"{"approved": false}"#), Some(false));
    assert_eq!(verdict("APPROVE"), Some(true));
    assert_eq!(verdict("PASS - grounded"), Some(true));
    assert_eq!(verdict("The refund policy is 30 days."), None);
    assert_eq!(verdict("Okay, here is the answer"), None);
}

#[test]
fn tool_arguments_are_checked_against_the_schema() {
    use crate::detect::rules::schema_violation as violation;
    let schema: serde_json::Value = serde_json::from_str(
        r#"{"type":"object","properties":{"order_id":{"type":"string"},"note":{"type":"string","nullable":true}},"required":["order_id","note"],"additionalProperties":false}"#,
    )
    .unwrap();
    let args = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
    assert_eq!(violation(&args(r#"{"order_id":"A-1"}"#), &schema), None);
    assert!(violation(&args(r#"{"order":12}"#), &schema)
        .unwrap()
        .contains("missing required argument `order_id`"));
    assert!(violation(&args(r#"{"order_id":12}"#), &schema)
        .unwrap()
        .contains("is not string"));
    assert!(violation(&args(r#"{"order_id":"A","x":1}"#), &schema)
        .unwrap()
        .contains("unexpected argument `x`"));
}

#[test]
fn a_model_response_recorded_whole_as_output_is_read_for_its_finish_reason() {
    // traceAI's LangChain instrumentation records the LLMResult as the span's output.
    let llm_result = r#"{"generations": [[{"text": "Refunds are accepted within 30 days of delivery and are paid back to the original", "generation_info": {"finish_reason": "length"}, "type": "ChatGeneration"}]], "llm_output": {"model_name": "gpt-4o-mini"}}"#;
    let t = trajectory(vec![
        span(1, 1, 0)
            .name("support_agent")
            .attr("gen_ai.span.kind", "AGENT")
            .build(),
        span(1, 2, 1)
            .name("ChatOpenAI")
            .attr("gen_ai.span.kind", "LLM")
            .attr("output.value", llm_result)
            .build(),
        // A node above holding the same response in its state is not cut off itself.
        span(1, 3, 1)
            .name("generate")
            .attr("output.value", llm_result)
            .build(),
    ]);
    let findings = run(&t, &[(2, "generator"), (3, "generator")]);
    let truncated: Vec<_> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::Truncated)
        .collect();
    assert_eq!(truncated.len(), 1, "{findings:?}");
    assert_eq!(truncated[0].span, index_of(&t, 2));
    assert!(
        truncated[0].reason.contains("finish reason `length`"),
        "{}",
        truncated[0].reason
    );
}
