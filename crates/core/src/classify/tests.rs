//! Tests of the classify stage: one unit test per rule and precedence. The golden
//! trajectories, which decode OTLP/JSON, are the service crate's (`src/goldens/`).

use std::collections::HashMap;

use crate::classify::{
    classify, compile_rules, ClassifyConfig, RawClassifyConfig, RawRule, RuleError, RuleProblem,
};
use crate::model::{SpanRecord, StepAssignment, StepKind, StepSource, Value};
use crate::test_support::{span, trajectory};

const OI: &str = "openinference.span.kind";

/// Classifies `spans` and returns each span's assignment by name (names are unique).
fn run(spans: Vec<SpanRecord>, config: &ClassifyConfig) -> HashMap<String, StepAssignment> {
    let t = trajectory(spans);
    let steps = classify(&t, config);
    assert_eq!(steps.len(), t.spans.len());
    t.spans
        .iter()
        .zip(steps)
        .map(|(s, a)| (s.name.to_string(), a))
        .collect()
}

fn no_rules() -> ClassifyConfig {
    ClassifyConfig::default()
}

fn rules(raw: &[RawRule]) -> ClassifyConfig {
    ClassifyConfig {
        rules: compile_rules(raw).unwrap(),
    }
}

fn raw(step: &str) -> RawRule {
    RawRule {
        attribute: None,
        equals: None,
        span_name_regex: None,
        step: step.to_string(),
        subtree: false,
    }
}

#[track_caller]
fn assert_step(
    steps: &HashMap<String, StepAssignment>,
    name: &str,
    kind: StepKind,
    source: StepSource,
    run_start: bool,
) {
    let got = &steps[name];
    let want = StepAssignment {
        kind,
        source,
        run_start,
    };
    assert_eq!(got, &want, "span {name}");
}

// ---- 1. explicit attribute ----

#[test]
fn explicit_attribute_names_builtin_and_custom_steps() {
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 1)
                .name("p")
                .attr("agent.trajectory.step", "Planner")
                .build(),
            span(1, 3, 1)
                .name("c")
                .attr("agent.trajectory.step", " query_rewriter ")
                .build(),
            span(1, 4, 1)
                .name("empty")
                .attr("agent.trajectory.step", "  ")
                .build(),
        ],
        &no_rules(),
    );
    assert_step(&steps, "p", StepKind::Planner, StepSource::Explicit, true);
    assert_step(
        &steps,
        "c",
        StepKind::Custom("query_rewriter".into()),
        StepSource::Explicit,
        true,
    );
    assert_step(
        &steps,
        "empty",
        StepKind::Agent,
        StepSource::Inherited,
        false,
    );
}

#[test]
fn explicit_attribute_beats_rules_and_conventions() {
    let config = rules(&[RawRule {
        span_name_regex: Some("^x$".into()),
        ..raw("critic")
    }]);
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 1)
                .name("x")
                .attr(OI, "TOOL")
                .attr("agent.trajectory.step", "retriever")
                .build(),
        ],
        &config,
    );
    assert_step(&steps, "x", StepKind::Retriever, StepSource::Explicit, true);
}

#[test]
fn explicit_attribute_on_the_resource_is_ignored() {
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 1)
                .name("t")
                .attr(OI, "TOOL")
                .resource_attr("agent.trajectory.step", "critic")
                .build(),
        ],
        &no_rules(),
    );
    assert_step(
        &steps,
        "t",
        StepKind::Tool,
        StepSource::Convention(OI),
        true,
    );
}

// ---- 2. user rules ----

#[test]
fn rules_match_attribute_value_presence_and_name() {
    let config = rules(&[
        RawRule {
            attribute: Some("gen_ai.tool.name".into()),
            equals: Some("search_docs".into()),
            ..raw("retriever")
        },
        RawRule {
            attribute: Some("my.guard".into()),
            ..raw("guardrail")
        },
        RawRule {
            span_name_regex: Some("^(judge|grade)_.*".into()),
            ..raw("critic")
        },
        RawRule {
            attribute: Some("team".into()),
            equals: Some("ranking".into()),
            span_name_regex: Some("^score$".into()),
            ..raw("reranker")
        },
    ]);
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 1)
                .name("execute_tool search_docs")
                .attr("gen_ai.operation.name", "execute_tool")
                .attr("gen_ai.tool.name", "search_docs")
                .build(),
            span(1, 3, 1)
                .name("execute_tool calc")
                .attr("gen_ai.operation.name", "execute_tool")
                .attr("gen_ai.tool.name", "calc")
                .build(),
            span(1, 4, 1).name("guard").attr("my.guard", true).build(),
            span(1, 5, 1).name("judge_answer").build(),
            span(1, 6, 1).name("prejudge_answer").build(),
            span(1, 7, 1).name("score").attr("team", "ranking").build(),
            span(1, 8, 1).name("score2").attr("team", "ranking").build(),
        ],
        &config,
    );
    assert_step(
        &steps,
        "execute_tool search_docs",
        StepKind::Retriever,
        StepSource::Rule(0),
        true,
    );
    assert_step(
        &steps,
        "execute_tool calc",
        StepKind::Tool,
        StepSource::Convention("gen_ai.operation.name"),
        true,
    );
    assert_step(
        &steps,
        "guard",
        StepKind::Guardrail,
        StepSource::Rule(1),
        true,
    );
    assert_step(
        &steps,
        "judge_answer",
        StepKind::Critic,
        StepSource::Rule(2),
        true,
    );
    assert_step(
        &steps,
        "prejudge_answer",
        StepKind::Agent,
        StepSource::Inherited,
        false,
    );
    assert_step(
        &steps,
        "score",
        StepKind::Reranker,
        StepSource::Rule(3),
        true,
    );
    assert_step(
        &steps,
        "score2",
        StepKind::Agent,
        StepSource::Inherited,
        false,
    );
}

#[test]
fn first_matching_rule_wins_and_rules_beat_conventions() {
    let config = rules(&[
        RawRule {
            span_name_regex: Some("search".into()),
            ..raw("retriever")
        },
        RawRule {
            span_name_regex: Some(".*".into()),
            ..raw("memory")
        },
    ]);
    let steps = run(
        vec![
            span(1, 1, 0).name("run").attr(OI, "AGENT").build(),
            span(1, 2, 1).name("search").attr(OI, "TOOL").build(),
        ],
        &config,
    );
    assert_step(
        &steps,
        "search",
        StepKind::Retriever,
        StepSource::Rule(0),
        true,
    );
    // The root matches the catch-all rule, which beats its AGENT kind.
    assert_step(&steps, "run", StepKind::Memory, StepSource::Rule(1), true);
}

#[test]
fn rules_read_resource_attributes_and_compare_non_strings_as_text() {
    let config = rules(&[
        RawRule {
            attribute: Some("service.role".into()),
            equals: Some("retrieval".into()),
            ..raw("retriever")
        },
        RawRule {
            attribute: Some("retry.attempt".into()),
            equals: Some("2".into()),
            ..raw("tool")
        },
    ]);
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 1)
                .name("remote")
                .resource_attr("service.role", "retrieval")
                .build(),
            span(1, 3, 1)
                .name("again")
                .attr("retry.attempt", 2i64)
                .build(),
        ],
        &config,
    );
    assert_step(
        &steps,
        "remote",
        StepKind::Retriever,
        StepSource::Rule(0),
        true,
    );
    assert_step(&steps, "again", StepKind::Tool, StepSource::Rule(1), true);
}

#[test]
fn subtree_rule_covers_descendants_until_an_explicit_attribute() {
    let config = rules(&[
        RawRule {
            attribute: Some("gen_ai.tool.name".into()),
            equals: Some("search_docs".into()),
            ..raw("retriever")
        },
        RawRule {
            attribute: Some("gen_ai.agent.name".into()),
            equals: Some("critic_agent".into()),
            subtree: true,
            ..raw("critic")
        },
    ]);
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 1)
                .name("invoke_agent critic_agent")
                .attr("gen_ai.operation.name", "invoke_agent")
                .attr("gen_ai.agent.name", "critic_agent")
                .build(),
            span(1, 3, 2)
                .name("chat gpt-4o")
                .attr("gen_ai.operation.name", "chat")
                .build(),
            // A rule of its own does not beat the subtree above.
            span(1, 4, 2)
                .name("execute_tool search_docs")
                .attr("gen_ai.tool.name", "search_docs")
                .build(),
            span(1, 5, 2)
                .name("marked")
                .attr("agent.trajectory.step", "tool")
                .build(),
            span(1, 6, 5).name("GET /lookup").build(),
        ],
        &config,
    );
    assert_step(
        &steps,
        "invoke_agent critic_agent",
        StepKind::Critic,
        StepSource::Rule(1),
        true,
    );
    assert_step(
        &steps,
        "chat gpt-4o",
        StepKind::Critic,
        StepSource::RuleSubtree(1),
        false,
    );
    assert_step(
        &steps,
        "execute_tool search_docs",
        StepKind::Critic,
        StepSource::RuleSubtree(1),
        false,
    );
    assert_step(&steps, "marked", StepKind::Tool, StepSource::Explicit, true);
    assert_step(
        &steps,
        "GET /lookup",
        StepKind::Tool,
        StepSource::Inherited,
        false,
    );
}

#[test]
fn compile_rules_names_the_bad_rule() {
    let bad_regex = compile_rules(&[
        RawRule {
            span_name_regex: Some("^ok".into()),
            ..raw("critic")
        },
        RawRule {
            span_name_regex: Some("(unclosed".into()),
            ..raw("critic")
        },
    ])
    .unwrap_err();
    assert_eq!(bad_regex.index, 1);
    assert!(matches!(bad_regex.problem, RuleProblem::BadRegex(_)));
    assert!(bad_regex
        .to_string()
        .starts_with("classify.rules[1]: bad `span_name_regex`"));

    let cases: [(RawRule, RuleProblem); 4] = [
        (raw("critic"), RuleProblem::NoMatcher),
        (
            RawRule {
                equals: Some("x".into()),
                ..raw("critic")
            },
            RuleProblem::EqualsWithoutAttribute,
        ),
        (
            RawRule {
                attribute: Some(" ".into()),
                ..raw("critic")
            },
            RuleProblem::EmptyAttribute,
        ),
        (
            RawRule {
                attribute: Some("a".into()),
                ..raw("")
            },
            RuleProblem::EmptyStep,
        ),
    ];
    for (rule, problem) in cases {
        assert_eq!(
            compile_rules(&[rule]).unwrap_err(),
            RuleError { index: 0, problem }
        );
    }
}

#[test]
fn rules_deserialize_from_the_documented_toml() {
    #[derive(serde::Deserialize)]
    struct File {
        classify: RawClassifyConfig,
    }
    let text = r#"
        [[classify.rules]]
        attribute = "gen_ai.tool.name"
        equals = "search_docs"
        step = "retriever"
        [[classify.rules]]
        attribute = "gen_ai.agent.name"
        equals = "critic_agent"
        step = "critic"
        subtree = true
        [[classify.rules]]
        span_name_regex = "^(judge|grade)_.*"
        step = "critic"
    "#;
    let file: File = toml::from_str(text).unwrap();
    let compiled = file.classify.compile().unwrap().rules;
    assert_eq!(compiled.len(), 3);
    assert_eq!(compiled[0].step, StepKind::Retriever);
    assert!(!compiled[0].subtree);
    assert!(compiled[1].subtree);
    assert!(compiled[2].matcher.span_name.is_some());

    let typo = "[[classify.rules]]\nattribute = \"a\"\nstep = \"tool\"\nsubtre = true\n";
    assert!(toml::from_str::<File>(typo).is_err());
    let unknown_table = "[classify]\nrule = []\n";
    assert!(toml::from_str::<File>(unknown_table).is_err());
    let empty: File = toml::from_str("[classify]\n").unwrap();
    assert!(empty.classify.compile().unwrap().rules.is_empty());
}

// ---- 3. conventions ----

#[test]
fn each_convention_key_maps_its_kinds() {
    let cases: &[(&str, &str, StepKind)] = &[
        (OI, "AGENT", StepKind::Agent),
        (OI, "TOOL", StepKind::Tool),
        (OI, "RETRIEVER", StepKind::Retriever),
        (OI, "RERANKER", StepKind::Reranker),
        (OI, "EMBEDDING", StepKind::Embedding),
        (OI, "GUARDRAIL", StepKind::Guardrail),
        (OI, "EVALUATOR", StepKind::Critic),
        ("fi.span.kind", "VECTOR_DB", StepKind::Retriever),
        ("fi.span.kind", "EVALUATOR", StepKind::Critic),
        ("gen_ai.span.kind", "TOOL", StepKind::Tool),
        ("gen_ai.span.kind", "A2A_CLIENT", StepKind::Agent),
        ("traceloop.span.kind", "tool", StepKind::Tool),
        ("traceloop.span.kind", "agent", StepKind::Agent),
        ("llm.request.type", "embedding", StepKind::Embedding),
        ("llm.request.type", "rerank", StepKind::Reranker),
        ("gen_ai.operation.name", "plan", StepKind::Planner),
        ("gen_ai.operation.name", "execute_tool", StepKind::Tool),
        ("gen_ai.operation.name", "invoke_agent", StepKind::Agent),
        ("gen_ai.operation.name", "retrieval", StepKind::Retriever),
        ("gen_ai.operation.name", "embeddings", StepKind::Embedding),
        ("gen_ai.operation.name", "search_memory", StepKind::Memory),
        ("gen_ai.operation.name", "upsert_memory", StepKind::Memory),
    ];
    for (key, value, kind) in cases {
        let steps = run(
            vec![
                span(1, 1, 0).name("run").build(),
                span(1, 2, 1).name("s").attr(key, *value).build(),
            ],
            &no_rules(),
        );
        // A plain root around one agent is a wrapper (chain): every kind starts a run.
        let run_start = true;
        assert_step(
            &steps,
            "s",
            kind.clone(),
            StepSource::Convention(key),
            run_start,
        );
    }
}

#[test]
fn unknown_and_prompt_kinds_are_infrastructure() {
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 1).name("search").attr(OI, "TOOL").build(),
            span(1, 3, 2).name("template").attr(OI, "PROMPT").build(),
            span(1, 4, 2).name("misc").attr(OI, "UNKNOWN").build(),
            span(1, 5, 2)
                .name("other")
                .attr("traceloop.span.kind", "unknown")
                .build(),
        ],
        &no_rules(),
    );
    for name in ["template", "misc", "other"] {
        assert_step(&steps, name, StepKind::Tool, StepSource::Inherited, false);
    }
}

#[test]
fn a_specific_kind_beats_a_container_or_unknown_kind_on_the_same_span() {
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 1)
                .name("a")
                .attr(OI, "UNKNOWN")
                .attr("gen_ai.operation.name", "execute_tool")
                .build(),
            span(1, 3, 1)
                .name("b")
                .attr("traceloop.span.kind", "task")
                .attr("gen_ai.operation.name", "retrieval")
                .build(),
        ],
        &no_rules(),
    );
    assert_step(
        &steps,
        "a",
        StepKind::Tool,
        StepSource::Convention("gen_ai.operation.name"),
        true,
    );
    assert_step(
        &steps,
        "b",
        StepKind::Retriever,
        StepSource::Convention("gen_ai.operation.name"),
        true,
    );
}

#[test]
fn an_llm_call_with_tool_calls_is_a_planner() {
    let planners: Vec<(&str, &str, Value)> = vec![
        (
            OI,
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name",
            Value::Str("search".into()),
        ),
        (OI, "llm.finish_reason", Value::Str("tool_calls".into())),
        (
            "gen_ai.operation.name",
            "gen_ai.response.finish_reasons",
            Value::Array(vec![Value::Str("tool_use".into())].into()),
        ),
        (
            "gen_ai.operation.name",
            "gen_ai.response.finish_reasons",
            Value::Str("[\"tool_calls\"]".into()),
        ),
        (
            "gen_ai.operation.name",
            "gen_ai.output.messages",
            Value::Str(
                r#"[{"role":"assistant","parts":[{"type": "tool_call","id":"c1","name":"search","arguments":{"q":"x"}}]}]"#
                    .into(),
            ),
        ),
        (
            "llm.request.type",
            "gen_ai.completion.0.tool_calls.0.name",
            Value::Str("search".into()),
        ),
        (
            "llm.request.type",
            "gen_ai.completion.0.finish_reason",
            Value::Str("tool_calls".into()),
        ),
    ];
    for (kind_key, key, value) in planners {
        let kind_value = if kind_key == OI { "LLM" } else { "chat" };
        let steps = run(
            vec![
                span(1, 1, 0).name("run").build(),
                span(1, 2, 1)
                    .name("llm")
                    .attr(kind_key, kind_value)
                    .attr(key, value.clone())
                    .build(),
            ],
            &no_rules(),
        );
        assert_step(
            &steps,
            "llm",
            StepKind::Planner,
            StepSource::Convention(kind_key),
            true,
        );
    }
}

#[test]
fn an_llm_call_without_tool_calls_is_a_generator() {
    let generators: Vec<(&str, Value)> = vec![
        ("llm.finish_reason", Value::Str("stop".into())),
        (
            "gen_ai.response.finish_reasons",
            Value::Array(vec![Value::Str("stop".into())].into()),
        ),
        (
            "gen_ai.output.messages",
            Value::Str(
                r#"[{"role":"assistant","parts":[{"type":"text","content":"say \"type\": \"tool_call\""}]}]"#
                    .into(),
            ),
        ),
        (
            "llm.output_messages.0.message.content",
            Value::Str("tool_calls".into()),
        ),
    ];
    for (key, value) in generators {
        let steps = run(
            vec![
                span(1, 1, 0).name("run").build(),
                span(1, 2, 1)
                    .name("llm")
                    .attr("gen_ai.operation.name", "chat")
                    .attr(key, value.clone())
                    .build(),
            ],
            &no_rules(),
        );
        assert_step(
            &steps,
            "llm",
            StepKind::Generator,
            StepSource::Convention("gen_ai.operation.name"),
            true,
        );
    }
}

/// A planner call refused before the model answered (a rate limit) records the tools it
/// offered and no response: it was deciding the next action. Offered tools with a text
/// answer make a generator.
#[test]
fn an_llm_call_offered_tools_that_failed_before_answering_is_a_planner() {
    let offered: [(&str, &str); 3] = [
        (
            "gen_ai.tool.definitions",
            r#"[{"type":"function","name":"get_weather"}]"#,
        ),
        ("llm.tools.0.tool.json_schema", r#"{"type":"function"}"#),
        ("llm.request.functions.0.name", "get_weather"),
    ];
    for (key, value) in offered {
        let steps = run(
            vec![
                span(1, 1, 0).name("run").build(),
                span(1, 2, 1)
                    .name("refused")
                    .attr("gen_ai.operation.name", "chat")
                    .attr(key, value)
                    .error("RateLimitError: 429")
                    .build(),
                span(1, 3, 1)
                    .name("answered")
                    .attr("gen_ai.operation.name", "chat")
                    .attr(key, value)
                    .attr("gen_ai.response.id", "chatcmpl-1")
                    .attr(
                        "gen_ai.output.messages",
                        r#"[{"role":"assistant","parts":[{"type":"text","content":"Sunny."}]}]"#,
                    )
                    .build(),
            ],
            &no_rules(),
        );
        let source = StepSource::Convention("gen_ai.operation.name");
        assert_step(&steps, "refused", StepKind::Planner, source.clone(), true);
        assert_step(&steps, "answered", StepKind::Generator, source, true);
    }
}

/// Memory nodes of graph frameworks, by span name or node attribute.
#[test]
fn memory_node_names_are_memory_steps() {
    for name in [
        "memory_search",
        "memory_upsert",
        "recall",
        "remember",
        "save_memory",
    ] {
        let steps = run(
            vec![
                span(1, 1, 0).name("run").build(),
                span(1, 2, 1).name(name).attr(OI, "CHAIN").build(),
                span(1, 3, 2).name("POST").build(),
            ],
            &no_rules(),
        );
        assert_step(&steps, name, StepKind::Memory, StepSource::NodeName, true);
        assert_step(
            &steps,
            "POST",
            StepKind::Memory,
            StepSource::Inherited,
            false,
        );
    }
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 1)
                .name("task")
                .attr("traceloop.span.kind", "task")
                .attr("gen_ai.agent.graph.node_name", "memory_search")
                .build(),
        ],
        &no_rules(),
    );
    assert_step(&steps, "task", StepKind::Memory, StepSource::NodeName, true);
}

#[test]
fn an_llm_call_inside_a_step_is_part_of_it() {
    let steps = run(
        vec![
            span(1, 1, 0).name("run").attr(OI, "AGENT").build(),
            span(1, 2, 1)
                .name("eval.faithfulness")
                .attr(OI, "EVALUATOR")
                .build(),
            span(1, 3, 2).name("judge llm").attr(OI, "LLM").build(),
            span(1, 4, 1)
                .name("ChatOpenAI")
                .attr(OI, "LLM")
                .attr("llm.finish_reason", "stop")
                .build(),
            span(1, 5, 4).name("openai.chat").attr(OI, "LLM").build(),
        ],
        &no_rules(),
    );
    assert_step(
        &steps,
        "judge llm",
        StepKind::Critic,
        StepSource::Inherited,
        false,
    );
    assert_step(
        &steps,
        "ChatOpenAI",
        StepKind::Generator,
        StepSource::Convention(OI),
        true,
    );
    // A nested LLM span (a provider SDK under a framework) is the same call.
    assert_step(
        &steps,
        "openai.chat",
        StepKind::Generator,
        StepSource::Inherited,
        false,
    );
}

// ---- 4. node names ----

#[test]
fn a_node_gives_its_step_to_the_chains_and_llm_calls_inside() {
    let steps = run(
        vec![
            span(1, 1, 0).name("LangGraph").attr(OI, "CHAIN").build(),
            span(1, 2, 1).name("planner").attr(OI, "CHAIN").build(),
            span(1, 3, 2)
                .name("ChatOpenAI")
                .attr(OI, "LLM")
                .attr("llm.finish_reason", "stop")
                .build(),
            span(1, 4, 1).name("generate").attr(OI, "CHAIN").build(),
            span(1, 5, 4)
                .name("RunnableSequence")
                .attr(OI, "CHAIN")
                .build(),
            span(1, 6, 5)
                .name("ChatAnthropic")
                .attr(OI, "LLM")
                .attr("llm.finish_reason", "tool_use")
                .build(),
            span(1, 7, 5)
                .name("StrOutputParser")
                .attr(OI, "CHAIN")
                .build(),
            span(1, 8, 1).name("tools").attr(OI, "CHAIN").build(),
            span(1, 9, 8).name("search").attr(OI, "TOOL").build(),
            span(1, 10, 9).name("POST /search").build(),
            span(1, 11, 1).name("Grade").attr(OI, "CHAIN").build(),
            span(1, 12, 11)
                .name("vector search")
                .attr(OI, "RETRIEVER")
                .build(),
        ],
        &no_rules(),
    );
    assert_step(&steps, "LangGraph", StepKind::Agent, StepSource::Root, true);
    assert_step(
        &steps,
        "planner",
        StepKind::Planner,
        StepSource::NodeName,
        true,
    );
    assert_step(
        &steps,
        "ChatOpenAI",
        StepKind::Planner,
        StepSource::Node,
        false,
    );
    assert_step(
        &steps,
        "generate",
        StepKind::Generator,
        StepSource::NodeName,
        true,
    );
    assert_step(
        &steps,
        "RunnableSequence",
        StepKind::Generator,
        StepSource::Node,
        false,
    );
    assert_step(
        &steps,
        "ChatAnthropic",
        StepKind::Generator,
        StepSource::Node,
        false,
    );
    assert_step(
        &steps,
        "StrOutputParser",
        StepKind::Generator,
        StepSource::Node,
        false,
    );
    // The tool node runs the tool below it: a container, not a second tool step.
    assert_step(&steps, "tools", StepKind::Chain, StepSource::NodeName, true);
    assert_step(
        &steps,
        "search",
        StepKind::Tool,
        StepSource::Convention(OI),
        true,
    );
    assert_step(
        &steps,
        "POST /search",
        StepKind::Tool,
        StepSource::Inherited,
        false,
    );
    assert_step(
        &steps,
        "Grade",
        StepKind::Critic,
        StepSource::NodeName,
        true,
    );
    assert_step(
        &steps,
        "vector search",
        StepKind::Retriever,
        StepSource::Convention(OI),
        true,
    );
}

#[test]
fn node_attributes_name_nodes_and_mark_spans_inside_them() {
    let steps = run(
        vec![
            span(1, 1, 0).name("LangGraph.workflow").build(),
            // OpenLLMetry names a LangGraph node `<node>.task`.
            span(1, 2, 1)
                .name("retrieve.task")
                .attr("traceloop.span.kind", "task")
                .build(),
            // OpenInference copies the LangGraph metadata onto every span in the node.
            span(1, 3, 1)
                .name("call_llm_node")
                .attr(OI, "CHAIN")
                .attr(
                    "metadata",
                    r#"{"langgraph_step": 2, "langgraph_node": "critic"}"#,
                )
                .build(),
            span(1, 4, 3)
                .name("RunnableLambda")
                .attr(OI, "CHAIN")
                .attr("metadata", r#"{"langgraph_node":"critic"}"#)
                .build(),
            // An LLM call naming its node without a node span above it.
            span(1, 5, 1)
                .name("chat gpt-4o")
                .attr("gen_ai.operation.name", "chat")
                .attr("gen_ai.agent.graph.node_name", "router")
                .build(),
            span(1, 6, 1)
                .name("unknown_node")
                .attr(OI, "CHAIN")
                .attr("graph.node.name", "summarize_everything")
                .build(),
        ],
        &no_rules(),
    );
    assert_step(
        &steps,
        "LangGraph.workflow",
        StepKind::Agent,
        StepSource::Root,
        true,
    );
    assert_step(
        &steps,
        "retrieve.task",
        StepKind::Retriever,
        StepSource::NodeName,
        true,
    );
    assert_step(
        &steps,
        "call_llm_node",
        StepKind::Critic,
        StepSource::NodeName,
        true,
    );
    assert_step(
        &steps,
        "RunnableLambda",
        StepKind::Critic,
        StepSource::Node,
        false,
    );
    assert_step(
        &steps,
        "chat gpt-4o",
        StepKind::Router,
        StepSource::Node,
        true,
    );
    assert_step(
        &steps,
        "unknown_node",
        StepKind::Chain,
        StepSource::Convention(OI),
        true,
    );
}

#[test]
fn a_node_name_does_not_override_the_root_or_a_specific_kind() {
    let steps = run(
        vec![
            span(1, 1, 0).name("agent").attr(OI, "CHAIN").build(),
            span(1, 2, 1).name("retrieve").attr(OI, "TOOL").build(),
        ],
        &no_rules(),
    );
    assert_step(&steps, "agent", StepKind::Agent, StepSource::Root, true);
    assert_step(
        &steps,
        "retrieve",
        StepKind::Tool,
        StepSource::Convention(OI),
        true,
    );
}

// ---- 5. root and chains ----

#[test]
fn the_root_is_the_agent_unless_marked_more_specifically() {
    let root_of = |s: SpanRecord| {
        let name = s.name.to_string();
        run(vec![s], &no_rules())[&name].clone()
    };
    let plain = root_of(span(1, 1, 0).name("handle_request").build());
    assert_eq!(
        (plain.kind, plain.source),
        (StepKind::Agent, StepSource::Root)
    );
    let chain = root_of(
        span(1, 1, 0)
            .name("RunnableSequence")
            .attr(OI, "CHAIN")
            .build(),
    );
    assert_eq!(
        (chain.kind, chain.source),
        (StepKind::Agent, StepSource::Root)
    );
    let workflow = root_of(
        span(1, 1, 0)
            .name("pipeline.workflow")
            .attr("traceloop.span.kind", "workflow")
            .build(),
    );
    assert_eq!(
        (workflow.kind, workflow.source),
        (StepKind::Agent, StepSource::Root)
    );
    let llm = root_of(
        span(1, 1, 0)
            .name("openai.chat")
            .attr("llm.request.type", "chat")
            .build(),
    );
    assert_eq!(
        (llm.kind, llm.source),
        (
            StepKind::Generator,
            StepSource::Convention("llm.request.type")
        )
    );
    let tool = root_of(span(1, 1, 0).name("search").attr(OI, "TOOL").build());
    assert_eq!(
        (tool.kind, tool.source),
        (StepKind::Tool, StepSource::Convention(OI))
    );
    let agent = root_of(
        span(1, 1, 0)
            .name("AgentExecutor")
            .attr(OI, "AGENT")
            .build(),
    );
    assert_eq!(
        (agent.kind, agent.source, agent.run_start),
        (StepKind::Agent, StepSource::Convention(OI), true)
    );
}

#[test]
fn a_plain_chain_is_chain_at_the_orchestration_level_only() {
    let steps = run(
        vec![
            span(1, 1, 0)
                .name("AgentExecutor")
                .attr(OI, "AGENT")
                .build(),
            span(1, 2, 1)
                .name("RunnableSequence")
                .attr(OI, "CHAIN")
                .build(),
            span(1, 3, 2)
                .name("RunnableParallel")
                .attr(OI, "CHAIN")
                .build(),
            span(1, 4, 1).name("lookup").attr(OI, "TOOL").build(),
            span(1, 5, 4).name("ToolChain").attr(OI, "CHAIN").build(),
        ],
        &no_rules(),
    );
    assert_step(
        &steps,
        "RunnableSequence",
        StepKind::Chain,
        StepSource::Convention(OI),
        true,
    );
    assert_step(
        &steps,
        "RunnableParallel",
        StepKind::Chain,
        StepSource::Convention(OI),
        false,
    );
    assert_step(
        &steps,
        "ToolChain",
        StepKind::Tool,
        StepSource::Inherited,
        false,
    );
}

// ---- 6. infrastructure, tree shape, run_start ----

#[test]
fn infrastructure_belongs_to_its_nearest_step() {
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 1)
                .name("execute_tool weather")
                .attr("gen_ai.operation.name", "execute_tool")
                .build(),
            span(1, 3, 2).name("GET").build(),
            span(1, 4, 3).name("connect").build(),
            span(1, 5, 1).name("SELECT orders").build(),
        ],
        &no_rules(),
    );
    assert_step(&steps, "GET", StepKind::Tool, StepSource::Inherited, false);
    assert_step(
        &steps,
        "connect",
        StepKind::Tool,
        StepSource::Inherited,
        false,
    );
    assert_step(
        &steps,
        "SELECT orders",
        StepKind::Agent,
        StepSource::Inherited,
        false,
    );
}

#[test]
fn orphans_hang_under_the_root() {
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 1).name("search").attr(OI, "TOOL").build(),
            // Parent 99 never arrived.
            span(1, 3, 99).name("lost http").build(),
            span(1, 4, 99).name("lost llm").attr(OI, "LLM").build(),
        ],
        &no_rules(),
    );
    assert_step(
        &steps,
        "lost http",
        StepKind::Agent,
        StepSource::Inherited,
        false,
    );
    assert_step(
        &steps,
        "lost llm",
        StepKind::Generator,
        StepSource::Convention(OI),
        true,
    );
}

#[test]
fn spans_on_a_parent_cycle_are_classified() {
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 3).name("a").attr(OI, "TOOL").build(),
            span(1, 3, 2).name("b").build(),
        ],
        &no_rules(),
    );
    assert_step(
        &steps,
        "a",
        StepKind::Tool,
        StepSource::Convention(OI),
        true,
    );
    assert_step(&steps, "b", StepKind::Tool, StepSource::Inherited, false);
}

#[test]
fn a_trace_that_is_only_a_parent_cycle_still_gets_an_agent() {
    let steps = run(
        vec![
            span(1, 1, 2).name("a").build(),
            span(1, 2, 1).name("b").attr(OI, "LLM").build(),
        ],
        &no_rules(),
    );
    assert_step(&steps, "a", StepKind::Agent, StepSource::Root, true);
    assert_step(
        &steps,
        "b",
        StepKind::Generator,
        StepSource::Convention(OI),
        true,
    );
}

#[test]
fn a_run_starts_where_the_step_changes() {
    let steps = run(
        vec![
            span(1, 1, 0).name("run").build(),
            span(1, 2, 1).name("llm 1").attr(OI, "LLM").build(),
            span(1, 3, 1).name("llm 2").attr(OI, "LLM").build(),
            span(1, 4, 1)
                .name("explicit tool")
                .attr("agent.trajectory.step", "tool")
                .build(),
            span(1, 5, 4).name("inner tool").attr(OI, "TOOL").build(),
        ],
        &no_rules(),
    );
    assert!(steps["run"].run_start);
    assert!(steps["llm 1"].run_start);
    assert!(steps["llm 2"].run_start);
    assert!(steps["explicit tool"].run_start);
    assert!(!steps["inner tool"].run_start);
}

#[test]
fn deep_trees_need_no_recursion() {
    let depth = 100_000u64;
    let mut spans = vec![span(1, 1, 0).name("run").build()];
    spans.push(span(1, 2, 1).name("tool").attr(OI, "TOOL").build());
    for id in 3..=depth {
        spans.push(span(1, id, id - 1).name("hop").build());
    }
    let t = trajectory(spans);
    let steps = classify(&t, &no_rules());
    assert_eq!(steps.len(), depth as usize);
    let last = &steps[depth as usize - 1];
    assert_eq!(last.kind, StepKind::Tool);
    assert_eq!(last.source, StepSource::Inherited);
}

#[test]
fn an_empty_trajectory_has_no_steps() {
    let t = trajectory(Vec::new());
    assert!(classify(&t, &no_rules()).is_empty());
}

#[test]
fn a_workflow_root_around_an_agent_is_a_chain_and_the_agent_speaks() {
    let t = trajectory(vec![
        span(1, 1, 0)
            .name("Agent workflow")
            .attr(OI, "AGENT")
            .build(),
        span(1, 2, 1)
            .name("support_agent")
            .attr(OI, "AGENT")
            .build(),
        span(1, 3, 2)
            .name("plan")
            .attr(OI, "LLM")
            .attr(
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.name",
                "search_docs",
            )
            .times(1, 10)
            .build(),
        span(1, 4, 2)
            .name("search_docs")
            .attr(OI, "TOOL")
            .attr("tool.name", "search_docs")
            .attr("tool.description", "Search the product documentation.")
            .times(11, 20)
            .build(),
        span(1, 5, 2)
            .name("answer")
            .attr(OI, "LLM")
            .attr(
                "llm.output_messages.0.message.content",
                "Refunds within 30 days.",
            )
            .times(21, 30)
            .build(),
    ]);
    let steps = classify(&t, &no_rules());
    let kind = |name: &str| {
        let i = t.spans.iter().position(|s| &*s.name == name).unwrap();
        steps[i].kind.as_str().to_string()
    };
    assert_eq!(kind("Agent workflow"), "chain");
    assert_eq!(kind("support_agent"), "agent");
    assert_eq!(kind("plan"), "planner");
    assert_eq!(kind("search_docs"), "retriever");
    assert_eq!(kind("answer"), "generator");
}

#[test]
fn a_failed_call_plans_before_any_tool_result_and_answers_after_one() {
    let t = trajectory(vec![
        span(1, 1, 0).name("agent").attr(OI, "AGENT").build(),
        span(1, 2, 1)
            .name("llm")
            .attr(OI, "LLM")
            .attr(
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.name",
                "get_order_status",
            )
            .times(0, 10)
            .build(),
        span(1, 3, 1)
            .name("get_order_status")
            .attr(OI, "TOOL")
            .attr("tool.name", "get_order_status")
            .times(11, 20)
            .build(),
        span(1, 4, 1)
            .name("failed")
            .attr(OI, "LLM")
            .error("Error code: 429")
            .times(21, 30)
            .build(),
    ]);
    let steps = classify(&t, &no_rules());
    assert_eq!(steps[3].kind, StepKind::Generator);
    let t = trajectory(vec![
        span(1, 1, 0).name("agent").attr(OI, "AGENT").build(),
        span(1, 2, 1)
            .name("failed")
            .attr(OI, "LLM")
            .error("Error code: 500")
            .build(),
    ]);
    assert_eq!(classify(&t, &no_rules())[1].kind, StepKind::Planner);
}

#[test]
fn judges_and_agent_runs_are_named_by_their_containers() {
    let t = trajectory(vec![
        span(1, 1, 0)
            .name("SupportWithReview.run")
            .attr(OI, "CHAIN")
            .build(),
        span(1, 2, 1)
            .name("FunctionAgent.run")
            .attr(OI, "CHAIN")
            .build(),
        span(1, 3, 1)
            .name("BaseWorkflowAgent.setup_agent")
            .attr(OI, "CHAIN")
            .build(),
        span(1, 4, 1)
            .name("SupportWithReview.review")
            .attr(OI, "CHAIN")
            .build(),
        span(1, 5, 4)
            .name("Predict(ReviewAnswer).forward")
            .attr(OI, "CHAIN")
            .build(),
    ]);
    let steps = classify(&t, &no_rules());
    let kind = |name: &str| {
        let i = t.spans.iter().position(|s| &*s.name == name).unwrap();
        steps[i].kind.as_str().to_string()
    };
    // The workflow only wraps an agent and a judge: a chain.
    assert_eq!(kind("SupportWithReview.run"), "chain");
    assert_eq!(kind("FunctionAgent.run"), "agent");
    assert_eq!(kind("BaseWorkflowAgent.setup_agent"), "chain");
    assert_eq!(kind("SupportWithReview.review"), "critic");
    assert_eq!(kind("Predict(ReviewAnswer).forward"), "critic");
}

#[test]
fn an_agent_with_nothing_recorded_under_it_is_uninstrumented() {
    let t = trajectory(vec![
        span(1, 1, 0).name("run").build(),
        span(1, 2, 1)
            .name("invoke_agent helper")
            .attr("gen_ai.operation.name", "invoke_agent")
            .build(),
        span(1, 3, 1)
            .name("invoke_agent worker")
            .attr("gen_ai.operation.name", "invoke_agent")
            .build(),
        span(1, 4, 3)
            .name("execute_tool x")
            .attr("gen_ai.operation.name", "execute_tool")
            .build(),
    ]);
    let steps = classify(&t, &no_rules());
    let names: Vec<&str> = crate::classify::uninstrumented_agents(&t, &steps)
        .into_iter()
        .map(|i| &*t.spans[i as usize].name)
        .collect();
    assert_eq!(names, ["invoke_agent helper"]);
}

#[test]
fn checkers_are_critics_by_their_names_words_not_by_substrings() {
    let agent = |i: u64, name: &str| {
        span(1, i, 1)
            .name(&format!("invoke_agent {name}"))
            .attr("gen_ai.operation.name", "invoke_agent")
            .attr("gen_ai.agent.name", name)
            .build()
    };
    let names = [
        "fact_check",
        "FactChecker",
        "quality-checker",
        "fact_check_agent",
        "checkout_agent",
        "check_order",
        "checklist_writer",
    ];
    let mut spans = vec![span(1, 1, 0).name("run").build()];
    for (i, n) in names.iter().enumerate() {
        spans.push(agent(i as u64 + 2, n));
    }
    let t = trajectory(spans);
    let steps = classify(&t, &no_rules());
    let critic: Vec<bool> = (1..=names.len())
        .map(|i| steps[i].kind == StepKind::Critic)
        .collect();
    assert_eq!(
        critic,
        [true, true, true, true, false, false, false],
        "{names:?}"
    );
}

#[test]
fn a_node_named_for_a_check_is_a_critic() {
    let t = trajectory(vec![
        span(1, 1, 0).name("rag.workflow").build(),
        span(1, 2, 1)
            .name("fact_check.task")
            .attr("traceloop.span.kind", "task")
            .attr("traceloop.entity.name", "fact_check")
            .build(),
        span(1, 3, 1)
            .name("check_inventory.task")
            .attr("traceloop.span.kind", "task")
            .attr("traceloop.entity.name", "check_inventory")
            .build(),
    ]);
    let steps = classify(&t, &no_rules());
    assert_eq!(steps[1].kind, StepKind::Critic);
    assert_ne!(steps[2].kind, StepKind::Critic);
}
