//! Golden tests of outcome and attribution: trajectory → detect → attribute, asserting
//! the outcome, the blamed step and span, the rule, and the evidence chain. Includes the
//! traps a naive "first errored span" baseline falls into.

use crate::attribute::attribute;
use crate::attribute::rules::RULES;
use crate::detect::tests::assign;
use crate::detect::{detect, DetectConfig, RawDetectConfig};
use crate::model::{Finding, FindingKind, Outcome, RootCause, SpanRecord, StepKind, Trajectory};
use crate::test_support::{span, span_id, trajectory};

struct Verdict {
    findings: Vec<Finding>,
    outcome: Outcome,
    root_cause: Option<RootCause>,
}

fn analyse_with(traj: &Trajectory, named: &[(u64, &str)], config: &DetectConfig) -> Verdict {
    let steps = assign(traj, named);
    let mut findings = detect(traj, &steps, config);
    let (outcome, root_cause) = attribute(traj, &steps, &mut findings);
    Verdict {
        findings,
        outcome,
        root_cause,
    }
}

fn analyse(traj: &Trajectory, named: &[(u64, &str)]) -> Verdict {
    analyse_with(traj, named, &DetectConfig::default())
}

fn idx(traj: &Trajectory, id: u64) -> u32 {
    traj.find(span_id(id)).unwrap()
}

/// The span ids (builder numbers) of the evidence findings, in chain order.
fn evidence_spans(traj: &Trajectory, v: &Verdict) -> Vec<u64> {
    let rc = v.root_cause.as_ref().unwrap();
    rc.evidence
        .iter()
        .map(|&f| {
            let s = &traj.spans[v.findings[f].span as usize];
            (1..10_000).find(|n| span_id(*n) == s.span_id).unwrap()
        })
        .collect()
}

fn critic_config() -> DetectConfig {
    let raw: RawDetectConfig = toml::from_str(
        r#"
        [[output_rules]]
        step = "critic"
        pattern = "^\\s*REJECT"
        kind = "critic_rejected"
        "#,
    )
    .unwrap();
    DetectConfig::from_raw(&raw).unwrap()
}

fn root() -> crate::test_support::SpanBuilder {
    span(1, 1, 0).name("agent").times(1, 1000)
}

#[test]
fn no_findings_is_success() {
    let t = trajectory(vec![root().ok().build(), span(1, 2, 1).build()]);
    let v = analyse(&t, &[(2, "tool")]);
    assert_eq!(v.outcome, Outcome::Success);
    assert!(v.root_cause.is_none());
}

/// Trap: the exception is recorded on the tool and on each of its 3 ancestors; the root
/// is not the origin.
#[test]
fn exception_propagated_through_three_parents_blames_the_deepest_origin() {
    let exc = |b: crate::test_support::SpanBuilder| {
        b.exception("ConnectionError", "inventory service unreachable")
            .error("ConnectionError: inventory service unreachable")
    };
    let t = trajectory(vec![
        exc(root()).build(),
        exc(span(1, 2, 1).name("graph")).build(),
        exc(span(1, 3, 2).name("tools")).build(),
        exc(span(1, 4, 3)
            .name("check_stock")
            .attr("tool.name", "check_stock"))
        .build(),
    ]);
    let v = analyse(&t, &[(2, "chain"), (3, "tool"), (4, "tool")]);
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.span, idx(&t, 4));
    assert_eq!(rc.step, StepKind::Tool);
    assert_eq!(rc.kind, FindingKind::Exception);
    assert_eq!(rc.rule, "tool_own_failure");
    assert_eq!(evidence_spans(&t, &v), [4, 3, 2, 1]);
    let propagated: Vec<bool> = v.findings.iter().map(|f| f.propagated).collect();
    assert_eq!(propagated, [true, true, true, false]);
    assert_eq!(rc.confidence, 0.8);
}

/// Trap: the critic is the detector, not the cause.
#[test]
fn critic_rejection_alone_blames_the_generator() {
    let t = trajectory(vec![
        root().build(),
        span(1, 2, 1)
            .name("generate")
            .attr("output.value", "Refunds take 90 days.")
            .build(),
        span(1, 3, 1)
            .name("critic")
            .attr("output.value", "REJECT: unsupported claim")
            .build(),
    ]);
    let v = analyse_with(&t, &[(2, "generator"), (3, "critic")], &critic_config());
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.span, idx(&t, 2));
    assert_eq!(rc.step, StepKind::Generator);
    assert_eq!(rc.kind, FindingKind::Custom("critic_rejected".into()));
    assert_eq!(rc.rule, "rejection_blames_generator");
    assert_eq!(evidence_spans(&t, &v), [3]);
    assert!(rc
        .reason
        .starts_with("generator span `generate` produced the answer that critic rejected:"));
}

/// Trap: the hallucination is on the generator, but the retriever gave it nothing.
#[test]
fn empty_retrieval_then_hallucination_blames_the_retriever() {
    let t = trajectory(vec![
        root().build(),
        span(1, 2, 1)
            .name("retrieve")
            .attr("openinference.span.kind", "RETRIEVER")
            .build(),
        span(1, 3, 1)
            .name("generate")
            .attr("evaluations.0.evaluation.name", "hallucination")
            .attr("evaluations.0.evaluation.label", "hallucinated")
            .attr(
                "evaluations.0.evaluation.explanation",
                "No context supports the answer.",
            )
            .build(),
    ]);
    let v = analyse(&t, &[(2, "retriever"), (3, "generator")]);
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.span, idx(&t, 2));
    assert_eq!(rc.step, StepKind::Retriever);
    assert_eq!(rc.kind, FindingKind::EmptyRetrieval);
    assert_eq!(rc.rule, "empty_retrieval_before_bad_answer");
    assert_eq!(evidence_spans(&t, &v), [2, 3]);
    assert_eq!(rc.confidence, 0.85);
}

#[test]
fn irrelevant_retrieval_then_failed_answer_blames_the_retriever() {
    let t = trajectory(vec![
        root().build(),
        span(1, 2, 1)
            .attr("gen_ai.evaluation.name", "context_relevance")
            .attr("gen_ai.evaluation.score.value", 0.1)
            .build(),
        span(1, 3, 1)
            .attr("gen_ai.evaluation.name", "faithfulness")
            .attr("gen_ai.evaluation.score.value", 0.2)
            .build(),
    ]);
    let v = analyse(&t, &[(2, "retriever"), (3, "generator")]);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.step, StepKind::Retriever);
    assert_eq!(rc.rule, "irrelevant_retrieval_before_bad_answer");
}

/// Trap: the tool raised, but the planner invented the arguments.
#[test]
fn planner_invented_tool_arguments_blames_the_planner() {
    let t = trajectory(vec![
        root().error("ValidationError").build(),
        span(1, 2, 1)
            .name("plan")
            .attr("openinference.span.kind", "LLM")
            .build(),
        span(1, 3, 1)
            .name("book_flight")
            .attr("tool.name", "book_flight")
            .attr("input.value", r#"{"date": "next blue moon"}"#)
            .exception(
                "pydantic_core._pydantic_core.ValidationError",
                "1 validation error for book_flight: date: Input should be a valid date",
            )
            .error("")
            .build(),
    ]);
    let v = analyse(&t, &[(2, "planner"), (3, "tool")]);
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.span, idx(&t, 2));
    assert_eq!(rc.step, StepKind::Planner);
    assert_eq!(rc.kind, FindingKind::InvalidToolArgs);
    assert_eq!(rc.rule, "invalid_tool_args_blame_planner");
    assert_eq!(evidence_spans(&t, &v), [3, 1]);
    assert!(v.findings[rc.evidence[1]].propagated);
}

/// Trap: a step failed, but the retry succeeded and so did the run.
#[test]
fn retried_tool_call_that_succeeded_is_recovered_without_root_cause() {
    let t = trajectory(vec![
        root().ok().build(),
        span(1, 2, 1)
            .attr("tool.name", "fetch_invoice")
            .exception("TimeoutError", "read timed out")
            .error("")
            .build(),
        span(1, 3, 1)
            .attr("tool.name", "fetch_invoice")
            .attr("output.value", r#"{"total": 42}"#)
            .build(),
    ]);
    let v = analyse(&t, &[(2, "tool"), (3, "tool")]);
    assert_eq!(v.findings.len(), 1);
    assert_eq!(v.outcome, Outcome::Recovered);
    assert!(v.root_cause.is_none());
}

#[test]
fn retry_that_failed_again_is_not_recovered() {
    let t = trajectory(vec![
        root().error("TimeoutError").build(),
        span(1, 2, 1)
            .attr("tool.name", "fetch_invoice")
            .error("read timed out")
            .build(),
        span(1, 3, 1)
            .attr("tool.name", "fetch_invoice")
            .error("read timed out")
            .build(),
    ]);
    let v = analyse(&t, &[(2, "tool"), (3, "tool")]);
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    // Upstream before downstream: the first unrecovered failure of the tool.
    assert_eq!(rc.span, idx(&t, 2));
    assert_eq!(rc.rule, "tool_own_failure");
    // The second attempt failed the run too: it is in the evidence, not a competitor.
    assert_eq!(rc.confidence, 0.8);
}

#[test]
fn repeated_calls_until_the_recursion_limit_blame_the_planner() {
    let mut spans: Vec<SpanRecord> = vec![root()
        .exception("GraphRecursionError", "Recursion limit of 25 reached")
        .error("")
        .build()];
    for k in 0..3u64 {
        let planner = 2 + 2 * k;
        spans.push(span(1, planner, 1).name("agent_llm").build());
        spans.push(
            span(1, planner + 1, 1)
                .attr("tool.name", "search")
                .attr("input.value", r#"{"q": "order status"}"#)
                .build(),
        );
    }
    let t = trajectory(spans);
    let named = [
        (2, "planner"),
        (3, "tool"),
        (4, "planner"),
        (5, "tool"),
        (6, "planner"),
        (7, "tool"),
    ];
    let v = analyse(&t, &named);
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "loop_blames_planner");
    assert_eq!(rc.step, StepKind::Planner);
    // The planner run that issued the call that closed the loop.
    assert_eq!(rc.span, idx(&t, 6));
    assert_eq!(evidence_spans(&t, &v), [7, 1]);
}

#[test]
fn rate_limited_llm_call_blames_the_step_it_served() {
    let t = trajectory(vec![
        root().error("RateLimitError").build(),
        span(1, 2, 1)
            .name("planner")
            .error("RateLimitError")
            .build(),
        span(1, 3, 2)
            .name("ChatOpenAI")
            .attr("openinference.span.kind", "LLM")
            .exception("openai.RateLimitError", "Error code: 429")
            .error("")
            .build(),
    ]);
    let v = analyse(&t, &[(2, "planner")]);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.span, idx(&t, 3));
    assert_eq!(rc.step, StepKind::Planner);
    assert_eq!(rc.kind, FindingKind::RateLimited);
    assert_eq!(rc.rule, "failing_llm_call");
    assert_eq!(evidence_spans(&t, &v), [3, 2, 1]);
}

#[test]
fn unknown_tool_blames_the_planner_that_called_it() {
    let t = trajectory(vec![
        root().error("ToolNotFound").build(),
        span(1, 2, 1).name("plan").build(),
        span(1, 3, 1).error("Tool not found: web_browse").build(),
    ]);
    let v = analyse(&t, &[(2, "planner"), (3, "tool")]);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "unknown_tool_blames_planner");
    assert_eq!(rc.span, idx(&t, 2));
}

#[test]
fn invalid_arguments_with_no_recorded_model_calls_blame_the_agents_planning() {
    // The agent's model calls are not instrumented: the blame lands on the agent span,
    // as its planning (the step that chose the call), with less confidence.
    let t = trajectory(vec![
        root().error("").build(),
        span(1, 2, 1)
            .attr("tool.name", "x")
            .exception("ValidationError", "bad")
            .build(),
    ]);
    let v = analyse(&t, &[(2, "tool")]);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.span, idx(&t, 1));
    assert_eq!(rc.step, StepKind::Planner);
    assert_eq!(rc.confidence, 0.6);
}

#[test]
fn truncated_answer_before_a_parse_error_blames_the_truncated_step() {
    let t = trajectory(vec![
        root().error("OutputParserException").build(),
        span(1, 2, 1)
            .name("generate")
            .attr("llm.finish_reason", "length")
            .build(),
        span(1, 3, 1)
            .name("parse")
            .exception("OutputParserException", "Unterminated string")
            .error("")
            .build(),
    ]);
    let v = analyse(&t, &[(2, "generator"), (3, "chain")]);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "truncated_before_failure");
    assert_eq!(rc.span, idx(&t, 2));
    assert_eq!(rc.kind, FindingKind::Truncated);
    assert_eq!(evidence_spans(&t, &v), [2, 3, 1]);
}

#[test]
fn task_level_evaluation_alone_fails_the_run() {
    let t = trajectory(vec![
        root()
            .attr("gen_ai.evaluation.name", "task_completion")
            .attr("gen_ai.evaluation.score.value", 0.0)
            .attr(
                "gen_ai.evaluation.explanation",
                "The refund was never issued.",
            )
            .build(),
        span(1, 2, 1).build(),
    ]);
    let v = analyse(&t, &[(2, "tool")]);
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    // No generator wrote the answer: the judged step itself, with less confidence.
    assert_eq!(rc.rule, "task_failure_blames_generator");
    assert_eq!(rc.step, StepKind::Agent);
    assert_eq!(rc.reason, "The refund was never issued.");
    assert_eq!(rc.confidence, 0.35);
}

/// Trap: the task evaluation is attached to the root, which starts first; it judges the
/// answer the generator wrote at the end, so the generator is blamed, not the agent.
#[test]
fn failed_task_evaluation_with_no_other_signal_blames_the_generator() {
    let t = trajectory(vec![
        root()
            .attr("gen_ai.evaluation.name", "task_completion")
            .attr("gen_ai.evaluation.score.value", 0.0)
            .error("The reply is not consistent with the user's memories.")
            .build(),
        span(1, 2, 1).name("memory_search").times(2, 10).build(),
        span(1, 3, 1).name("generate").times(11, 500).build(),
        span(1, 4, 1).name("memory_upsert").times(501, 600).build(),
    ]);
    let v = analyse(&t, &[(2, "memory"), (3, "generator"), (4, "memory")]);
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "task_failure_blames_generator");
    assert_eq!(rc.span, idx(&t, 3));
    assert_eq!(rc.step, StepKind::Generator);
}

/// The root's own status and a task evaluation say that the run failed; a failed
/// evaluation of the generator's answer says why.
#[test]
fn root_error_and_task_evaluation_defer_to_a_failed_step_evaluation() {
    let t = trajectory(vec![
        root()
            .attr("gen_ai.evaluation.name", "task_completion")
            .attr("gen_ai.evaluation.score.value", 0.0)
            .error("The reply is not consistent with the user's memories.")
            .build(),
        span(1, 2, 1)
            .name("generate")
            .attr("eval.groundedness", 0.1)
            .build(),
    ]);
    let v = analyse(&t, &[(2, "generator")]);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "failed_evaluation");
    assert_eq!(rc.span, idx(&t, 2));
    assert_eq!(rc.step, StepKind::Generator);
}

/// Trap: a task evaluation on the root is downstream of the retrieval it depends on,
/// even though the root span starts first.
#[test]
fn failed_task_evaluation_after_an_irrelevant_retrieval_blames_the_retriever() {
    let t = trajectory(vec![
        root()
            .attr("gen_ai.evaluation.name", "task_completion")
            .attr("gen_ai.evaluation.score.value", 0.0)
            .build(),
        span(1, 2, 1)
            .attr("openinference.span.kind", "RETRIEVER")
            .attr("retrieval.documents.0.document.id", "d1")
            .attr("eval.context_relevance", 0.1)
            .build(),
        span(1, 3, 1).name("generate").build(),
    ]);
    let v = analyse(&t, &[(2, "retriever"), (3, "generator")]);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "irrelevant_retrieval_before_bad_answer");
    assert_eq!(rc.step, StepKind::Retriever);
    assert_eq!(evidence_spans(&t, &v), [2, 1]);
}

/// Trap: the critic is the detector and the root's error status only reports the
/// rejection; the generator wrote the rejected answer.
#[test]
fn critic_rejection_reported_by_the_root_blames_the_generator() {
    let t = trajectory(vec![
        root()
            .error("Answer rejected by critic after 1 review(s)")
            .build(),
        span(1, 2, 1).name("retrieve").build(),
        span(1, 3, 1).name("generate").build(),
        span(1, 4, 1)
            .name("critic")
            .attr("output.value", "REJECT: the answer cites no source")
            .build(),
    ]);
    let named = [(2, "retriever"), (3, "generator"), (4, "critic")];
    let v = analyse_with(&t, &named, &critic_config());
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "rejection_blames_generator");
    assert_eq!(rc.span, idx(&t, 3));
    assert_eq!(rc.step, StepKind::Generator);
    assert_eq!(evidence_spans(&t, &v), [4, 1]);
}

/// A run that fails on its deadline with no error below: the step over its SLO.
#[test]
fn deadline_failure_blames_the_step_over_its_slo() {
    let raw: RawDetectConfig = toml::from_str(
        r#"
        slo = { retriever = "10s", generator = "20s" }
        "#,
    )
    .unwrap();
    let config = DetectConfig::from_raw(&raw).unwrap();
    let t = trajectory(vec![
        root()
            .times(0, 40_000)
            .error("Request exceeded deadline of 30s (took 40.0s)")
            .build(),
        span(1, 2, 1).name("retrieve").times(1, 35_000).build(),
        span(1, 3, 1).name("generate").times(35_001, 39_000).build(),
    ]);
    let v = analyse_with(&t, &[(2, "retriever"), (3, "generator")], &config);
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "slow_step_before_run_failure");
    assert_eq!(rc.span, idx(&t, 2));
    assert_eq!(rc.kind, FindingKind::SlowStep);
    assert_eq!(evidence_spans(&t, &v), [2, 1]);
}

/// A slow step does not explain a failure that a step's own error explains.
#[test]
fn slow_step_does_not_outrank_a_step_error() {
    let raw: RawDetectConfig = toml::from_str(r#"slo = { retriever = "10s" }"#).unwrap();
    let config = DetectConfig::from_raw(&raw).unwrap();
    let t = trajectory(vec![
        root().times(0, 40_000).error("failed").build(),
        span(1, 2, 1).name("retrieve").times(1, 35_000).build(),
        span(1, 3, 1)
            .name("lookup")
            .attr("tool.name", "lookup")
            .times(35_001, 39_000)
            .error("HTTP 500")
            .build(),
    ]);
    let v = analyse_with(&t, &[(2, "retriever"), (3, "tool")], &config);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "tool_own_failure");
    assert_eq!(rc.span, idx(&t, 3));
}

#[test]
fn rejection_followed_by_an_accepted_answer_is_recovered() {
    let t = trajectory(vec![
        root().build(),
        span(1, 2, 1).name("generate").build(),
        span(1, 3, 1)
            .name("critic")
            .attr("output.value", "REJECT: too vague")
            .build(),
        span(1, 4, 1).name("generate").build(),
        span(1, 5, 1)
            .name("critic")
            .attr("output.value", "ACCEPT")
            .build(),
    ]);
    let named = [
        (2, "generator"),
        (3, "critic"),
        (4, "generator"),
        (5, "critic"),
    ];
    let v = analyse_with(&t, &named, &critic_config());
    assert_eq!(v.findings.len(), 1);
    assert_eq!(v.outcome, Outcome::Recovered);
    assert!(v.root_cause.is_none());
}

#[test]
fn tool_error_that_nothing_redid_fails_the_run_even_when_the_root_ends_ok() {
    // Recovery needs a later successful redo; an agent that carried on without the
    // tool's result did not recover.
    let t = trajectory(vec![
        root().ok().build(),
        span(1, 2, 1)
            .attr("tool.name", "lookup")
            .attr("output.value", r#"{"error": "no such order"}"#)
            .build(),
    ]);
    let v = analyse(&t, &[(2, "tool")]);
    assert_eq!(v.outcome, Outcome::Failed);
    assert_eq!(v.root_cause.as_ref().unwrap().step, StepKind::Tool);
}

#[test]
fn tool_error_as_data_redone_by_a_later_call_is_recovered() {
    let t = trajectory(vec![
        root().ok().build(),
        span(1, 2, 1)
            .attr("tool.name", "lookup")
            .attr("output.value", r#"{"error": "no such order"}"#)
            .times(0, 10)
            .build(),
        span(1, 3, 1)
            .attr("tool.name", "lookup")
            .attr("output.value", r#"{"status": "shipped"}"#)
            .times(20, 30)
            .build(),
    ]);
    let v = analyse(&t, &[(2, "tool"), (3, "tool")]);
    assert_eq!(v.outcome, Outcome::Recovered);
    assert!(v.root_cause.is_none());
}

#[test]
fn root_error_with_nothing_below_blames_the_root_step() {
    let t = trajectory(vec![root().error("deadline exceeded").build()]);
    let v = analyse(&t, &[]);
    let rc = v.root_cause.as_ref().unwrap();
    // No step used the budget: the root is blamed, with less confidence.
    assert_eq!(rc.rule, "run_deadline_blames_the_step_that_used_it");
    assert_eq!(rc.span, 0);
    let t = trajectory(vec![root().error("internal error").build()]);
    let v = analyse(&t, &[]);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "run_failed");
    assert_eq!(rc.step, StepKind::Agent);
    assert_eq!(rc.evidence, [0]);
}

#[test]
fn a_recovered_failure_does_not_explain_a_later_root_error() {
    let t = trajectory(vec![
        root().error("budget exceeded").build(),
        span(1, 2, 1).attr("tool.name", "t").error("flaky").build(),
        span(1, 3, 1).attr("tool.name", "t").build(),
    ]);
    let v = analyse(&t, &[(2, "tool"), (3, "tool")]);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.span, idx(&t, 1));
    assert!(!v.findings.iter().any(|f| f.propagated));
}

#[test]
fn deep_trees_are_handled_without_recursion() {
    let depth = 20_000u64;
    let mut spans = Vec::with_capacity(depth as usize);
    for id in 1..=depth {
        let parent = id - 1;
        let mut b = span(1, id, parent).times(id, 2 * depth - id);
        b = b.error("boom");
        spans.push(b.build());
    }
    // Above the default depth cap, so that the chain is kept whole.
    let t = crate::model::Trajectory::build_with_depth_cap(
        crate::test_support::trace_id(1),
        spans,
        Vec::new(),
        Vec::new(),
        depth as usize,
    );
    assert!(t.anomalies.is_empty());
    let v = analyse(&t, &[]);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.span, idx(&t, depth));
    assert_eq!(rc.evidence.len(), depth as usize);
    assert_eq!(
        v.findings.iter().filter(|f| f.propagated).count(),
        depth as usize - 1
    );
}

#[test]
fn every_rule_of_the_table_is_documented() {
    let doc = include_str!("RULES.md");
    for rule in RULES {
        assert!(
            doc.contains(&format!("`{}`", rule.name)),
            "rule {} is missing from RULES.md",
            rule.name
        );
    }
    let mut names: Vec<&str> = RULES.iter().map(|r| r.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), RULES.len(), "rule names are unique");
}

#[test]
fn output_guardrail_tripwire_blames_the_generator() {
    let t = trajectory(vec![
        root().error("OutputGuardrailTripwireTriggered").build(),
        span(1, 2, 1).name("generate").build(),
        span(1, 3, 1)
            .name("pii_guard")
            .exception("OutputGuardrailTripwireTriggered", "PII in answer")
            .error("")
            .build(),
    ]);
    let v = analyse(&t, &[(2, "generator"), (3, "guardrail")]);
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "guardrail_tripped_blames_generator");
    assert_eq!(rc.span, idx(&t, 2));
    assert_eq!(rc.step, StepKind::Generator);
    assert_eq!(evidence_spans(&t, &v), [3, 1]);
}

#[test]
fn content_rule_on_the_final_answer_fails_the_run() {
    let raw: RawDetectConfig = toml::from_str(
        r#"
        [[output_rules]]
        step = "generator"
        pattern = "(?i)^I cannot help"
        kind = "refusal"
        "#,
    )
    .unwrap();
    let config = DetectConfig::from_raw(&raw).unwrap();
    let t = trajectory(vec![
        root().build(),
        span(1, 2, 1)
            .attr("output.value", "I cannot help with that request.")
            .build(),
    ]);
    let v = analyse_with(&t, &[(2, "generator")], &config);
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.kind, FindingKind::Custom("refusal".into()));
    assert_eq!(rc.step, StepKind::Generator);
    assert_eq!(rc.rule, "failed_evaluation");
}

#[test]
fn findings_in_any_order_give_the_same_verdict() {
    let t = trajectory(vec![
        root().build(),
        span(1, 2, 1)
            .attr("openinference.span.kind", "RETRIEVER")
            .build(),
        span(1, 3, 1).attr("eval.faithfulness", 0.1).build(),
    ]);
    let steps = assign(&t, &[(2, "retriever"), (3, "generator")]);
    let mut findings = detect(&t, &steps, &DetectConfig::default());
    let (_, sorted) = attribute(&t, &steps, &mut findings);
    findings.reverse();
    let (_, reversed) = attribute(&t, &steps, &mut findings);
    let (sorted, reversed) = (sorted.unwrap(), reversed.unwrap());
    assert_eq!(sorted.span, reversed.span);
    assert_eq!(sorted.rule, reversed.rule);
    assert_eq!(sorted.step, StepKind::Retriever);
}

/// A run that fails on its deadline with no error below and no SLO configured: the step
/// that used the budget (the longest step run), not the run.
#[test]
fn deadline_failure_without_slo_blames_the_longest_step() {
    let t = trajectory(vec![
        root()
            .times(0, 40_000)
            .error("Request exceeded deadline of 30s (took 40.0s)")
            .build(),
        span(1, 2, 1).name("plan").times(1, 2_000).build(),
        span(1, 3, 1)
            .name("lookup")
            .attr("tool.name", "lookup")
            .times(2_001, 36_000)
            .build(),
        span(1, 4, 1).name("generate").times(36_001, 39_000).build(),
    ]);
    let v = analyse(&t, &[(2, "planner"), (3, "tool"), (4, "generator")]);
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "run_deadline_blames_the_step_that_used_it");
    assert_eq!(rc.span, idx(&t, 3));
    assert_eq!(rc.step, StepKind::Tool);
    assert!(rc.reason.contains("used the time budget"), "{}", rc.reason);
}

/// An agent under an OK wrapper that ends on its deadline: the same, found on the agent.
#[test]
fn agent_deadline_blames_the_longest_step_inside() {
    let t = trajectory(vec![
        root().times(0, 40_000).build(),
        span(1, 2, 1)
            .name("invoke_agent support")
            .times(1, 39_999)
            .error("agent timed out after 30s")
            .build(),
        span(1, 3, 2).name("plan").times(2, 30_000).build(),
        span(1, 4, 2)
            .name("lookup")
            .attr("tool.name", "lookup")
            .times(30_001, 31_000)
            .build(),
    ]);
    let v = analyse(
        &t,
        &[(1, "chain"), (2, "agent"), (3, "planner"), (4, "tool")],
    );
    assert_eq!(v.outcome, Outcome::Failed);
    let rc = v.root_cause.as_ref().unwrap();
    assert_eq!(rc.rule, "agent_deadline_blames_the_step_that_used_it");
    assert_eq!(rc.span, idx(&t, 3));
    assert_eq!(rc.step, StepKind::Planner);
}
