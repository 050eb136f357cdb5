//! A plan rendered as OTLP spans (and evaluation log records) in one semantic
//! convention: OpenInference, traceAI, OpenLLMetry, OTel GenAI, or the explicit
//! `agent.trajectory.step` attribute.
//!
//! Every attribute name is the one of its convention (see the conventions doc). HTTP
//! client calls are rendered the same way in all of them (OTel HTTP conventions).

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status as OtlpStatus,
};
use rand::rngs::SmallRng;
use rand::Rng;

use super::plan::{Eval, Node, Role, Status};
use super::scenario::Cohort;
use super::templates::{Plan, Template};
use super::text::lognormal;

/// The semantic convention a run is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Convention {
    /// Arize OpenInference (LangChain / LangGraph instrumentation).
    OpenInference,
    /// FutureAGI traceAI (`gen_ai.span.kind` from Python, `fi.span.kind` otherwise).
    TraceAi,
    /// Traceloop OpenLLMetry.
    OpenLlmetry,
    /// OpenTelemetry GenAI semantic conventions.
    GenAi,
    /// Application spans marked with `agent.trajectory.step`.
    Explicit,
}

impl Convention {
    pub const ALL: [Convention; 5] = [
        Convention::OpenInference,
        Convention::TraceAi,
        Convention::OpenLlmetry,
        Convention::GenAi,
        Convention::Explicit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Convention::OpenInference => "openinference",
            Convention::TraceAi => "traceai",
            Convention::OpenLlmetry => "openllmetry",
            Convention::GenAi => "genai",
            Convention::Explicit => "explicit",
        }
    }

    pub fn from_name(name: &str) -> Option<Convention> {
        Convention::ALL.into_iter().find(|c| c.as_str() == name)
    }

    fn scope(self) -> (&'static str, &'static str) {
        match self {
            Convention::OpenInference => ("openinference.instrumentation.langchain", "0.1.29"),
            Convention::TraceAi => ("traceai.langchain", "0.1.8"),
            Convention::OpenLlmetry => ("opentelemetry.instrumentation.langchain", "0.33.9"),
            Convention::GenAi => ("opentelemetry.instrumentation.openai_agents", "0.1.0"),
            Convention::Explicit => ("app.agent", "1.0.0"),
        }
    }
}

/// How one evaluator result reaches the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EvalChannel {
    /// Attributes on the evaluated span.
    SpanAttributes,
    /// An EVALUATOR child span of the evaluated span, in the same trace.
    EvaluatorChild,
    /// An EVALUATOR span in another trace, linked to the evaluated span, sent late.
    PostHoc,
    /// A `gen_ai.evaluation.result` log record parented to the evaluated span.
    LogRecord,
}

impl Convention {
    fn eval_channels(self) -> &'static [EvalChannel] {
        match self {
            Convention::OpenInference => &[EvalChannel::SpanAttributes, EvalChannel::PostHoc],
            Convention::TraceAi => &[
                EvalChannel::SpanAttributes,
                EvalChannel::EvaluatorChild,
                EvalChannel::LogRecord,
            ],
            Convention::OpenLlmetry | Convention::GenAi => &[EvalChannel::LogRecord],
            Convention::Explicit => &[EvalChannel::LogRecord, EvalChannel::PostHoc],
        }
    }
}

/// Per-run facts the renderer needs besides the plan.
pub(crate) struct RunInfo<'a> {
    pub template: Template,
    pub convention: Convention,
    pub cohort: &'a Cohort,
    pub trace_id: [u8; 16],
    pub session_id: String,
    pub user_id: String,
    /// traceAI: the Python SDK writes `gen_ai.span.kind`, the others `fi.span.kind`.
    pub traceai_python: bool,
}

/// A rendered run.
pub(crate) struct Rendered {
    pub spans: ResourceSpans,
    pub late: Option<ResourceSpans>,
    pub logs: Option<ResourceLogs>,
}

pub(crate) fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(v.into()))
}

fn i(key: &str, v: u64) -> KeyValue {
    kv(key, Value::IntValue(v.min(i64::MAX as u64) as i64))
}

fn f(key: &str, v: f64) -> KeyValue {
    kv(key, Value::DoubleValue(v))
}

fn str_array(key: &str, items: &[&str]) -> KeyValue {
    kv(
        key,
        Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|v| AnyValue {
                    value: Some(Value::StringValue((*v).to_string())),
                })
                .collect(),
        }),
    )
}

fn resource(info: &RunInfo) -> Resource {
    let version = match info.cohort.prompt_version {
        "v5" => "1.4.2",
        "v6" => "1.5.0",
        "v7" => "1.6.1",
        _ => "1.7.0",
    };
    Resource {
        attributes: vec![
            s("service.name", info.cohort.service),
            s("service.version", version),
            s("deployment.environment.name", info.cohort.environment),
            s("telemetry.sdk.name", "opentelemetry"),
            s("telemetry.sdk.language", "python"),
            s("telemetry.sdk.version", "1.27.0"),
        ],
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    }
}

fn scope(name: &str, version: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.to_string(),
        version: version.to_string(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    }
}

/// Whether a node is rendered as its own span in this convention.
fn rendered(node: &Node, conv: Convention) -> bool {
    match node.role {
        Role::Node => match conv {
            Convention::OpenInference | Convention::TraceAi | Convention::OpenLlmetry => true,
            Convention::GenAi => node.genai_agent.is_some(),
            Convention::Explicit => false,
        },
        _ => true,
    }
}

pub(crate) fn render(rng: &mut SmallRng, plan: &Plan, info: &RunInfo) -> Rendered {
    let conv = info.convention;
    let nodes = &plan.nodes;
    // The rendered parent of every node: the nearest rendered ancestor.
    let mut parent_span: Vec<Option<[u8; 8]>> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let mut cur = node.parent;
        let mut found = None;
        while let Some(p) = cur {
            if rendered(&nodes[p], conv) {
                found = Some(nodes[p].span_id);
                break;
            }
            cur = nodes[p].parent;
        }
        parent_span.push(found);
    }

    // Evaluations: choose a channel for each.
    let channels: Vec<EvalChannel> = plan
        .evals
        .iter()
        .map(|_| {
            let options = conv.eval_channels();
            options[rng.random_range(0..options.len())]
        })
        .collect();

    // The first and last child of every node: a container shows its step's input (the
    // first attempt's) and output (the last attempt's).
    let mut first_child: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut last_child: Vec<Option<usize>> = vec![None; nodes.len()];
    for (idx, node) in nodes.iter().enumerate() {
        if let Some(p) = node.parent {
            first_child[p].get_or_insert(idx);
            last_child[p] = Some(idx);
        }
    }

    let mut agent_spans = Vec::with_capacity(nodes.len());
    let mut http_spans = Vec::new();
    for (idx, node) in nodes.iter().enumerate() {
        if !rendered(node, conv) {
            continue;
        }
        let mut span = base_span(info, node, parent_span[idx]);
        if node.role == Role::Http {
            http_attributes(node, &mut span);
            http_spans.push(span);
            continue;
        }
        step_attributes(info, node, &mut span);
        if node.role == Role::Node {
            if let (Some(first), Some(last)) = (first_child[idx], last_child[idx]) {
                container_attributes(info, node, &nodes[first], &nodes[last], idx, &mut span);
            }
        }
        if idx == 0 {
            root_attributes(info, node, &mut span);
        }
        error_attributes(conv, node, &mut span);
        // Evaluations carried as attributes of this span.
        let mut n_eval = 0;
        for (e, ch) in plan.evals.iter().zip(&channels) {
            if e.target == idx && *ch == EvalChannel::SpanAttributes {
                eval_span_attributes(conv, e, n_eval, &mut span);
                n_eval += 1;
            }
        }
        agent_spans.push(span);
    }

    // In-trace evaluator child spans (traceAI).
    for (e, ch) in plan.evals.iter().zip(&channels) {
        if *ch == EvalChannel::EvaluatorChild {
            agent_spans.push(evaluator_child(rng, info, nodes, e));
        }
    }

    let (scope_name, scope_version) = conv.scope();
    let spans = ResourceSpans {
        resource: Some(resource(info)),
        scope_spans: vec![
            ScopeSpans {
                scope: Some(scope(scope_name, scope_version)),
                spans: agent_spans,
                schema_url: String::new(),
            },
            ScopeSpans {
                scope: Some(scope("opentelemetry.instrumentation.httpx", "0.48b0")),
                spans: http_spans,
                schema_url: String::new(),
            },
        ],
        schema_url: String::new(),
    };

    let run_end = nodes.first().map(|n| n.end).unwrap_or(0);
    let late_spans: Vec<Span> = plan
        .evals
        .iter()
        .zip(&channels)
        .filter(|(_, ch)| **ch == EvalChannel::PostHoc)
        .map(|(e, _)| post_hoc_span(rng, info, nodes, e, run_end))
        .collect();
    let late = (!late_spans.is_empty()).then(|| ResourceSpans {
        resource: Some(resource(info)),
        scope_spans: vec![ScopeSpans {
            scope: Some(scope("app.evaluators", "0.3.0")),
            spans: late_spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    });

    let records: Vec<LogRecord> = plan
        .evals
        .iter()
        .zip(&channels)
        .filter(|(_, ch)| **ch == EvalChannel::LogRecord)
        .map(|(e, _)| eval_log_record(rng, info, nodes, e))
        .collect();
    let logs = (!records.is_empty()).then(|| ResourceLogs {
        resource: Some(resource(info)),
        scope_logs: vec![ScopeLogs {
            scope: Some(scope("app.evaluators", "0.3.0")),
            log_records: records,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    });

    Rendered { spans, late, logs }
}

fn base_span(info: &RunInfo, node: &Node, parent: Option<[u8; 8]>) -> Span {
    let conv = info.convention;
    let (name, kind) = span_name(info, node);
    let code = match (&node.status, conv) {
        (Status::Error(_), _) => StatusCode::Error,
        (Status::Unset, Convention::OpenInference | Convention::TraceAi) => StatusCode::Ok,
        (Status::Unset, _) => StatusCode::Unset,
    };
    let message = match &node.status {
        Status::Error(m) => m.clone(),
        Status::Unset => String::new(),
    };
    let mut events = Vec::new();
    if let Some(ex) = &node.exception {
        events.push(Event {
            time_unix_nano: node.end.saturating_sub(1_000),
            name: "exception".to_string(),
            attributes: vec![
                s("exception.type", ex.ty.clone()),
                s("exception.message", ex.message.clone()),
                s("exception.stacktrace", ex.stacktrace.clone()),
            ],
            dropped_attributes_count: 0,
        });
    }
    Span {
        trace_id: info.trace_id.to_vec(),
        span_id: node.span_id.to_vec(),
        trace_state: String::new(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags: 0x100 | 0x1,
        name,
        kind: kind as i32,
        start_time_unix_nano: node.start,
        end_time_unix_nano: node.end,
        attributes: Vec::with_capacity(12),
        dropped_attributes_count: 0,
        events,
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Some(OtlpStatus {
            message,
            code: code as i32,
        }),
    }
}

fn span_name(info: &RunInfo, node: &Node) -> (String, SpanKind) {
    let conv = info.convention;
    let model = node.model.map(|m| m.name).unwrap_or("unknown");
    match (conv, node.role) {
        (_, Role::Http) => (node.name.clone(), SpanKind::Client),
        // Root.
        (Convention::OpenInference | Convention::TraceAi, Role::Agent) => {
            let name = if info.template == Template::RagQa {
                "RunnableSequence"
            } else {
                "LangGraph"
            };
            (name.to_string(), SpanKind::Internal)
        }
        (Convention::OpenLlmetry, Role::Agent) => {
            (format!("{}.workflow", node.name), SpanKind::Internal)
        }
        (Convention::GenAi, Role::Agent | Role::SubAgent) => {
            (format!("invoke_agent {}", node.name), SpanKind::Internal)
        }
        (Convention::OpenLlmetry, Role::SubAgent) => {
            (format!("{}.agent", node.name), SpanKind::Internal)
        }
        (
            Convention::OpenInference | Convention::TraceAi | Convention::Explicit,
            Role::SubAgent,
        ) => (node.name.clone(), SpanKind::Internal),
        (Convention::Explicit, Role::Agent) => {
            (format!("agent_run {}", node.name), SpanKind::Internal)
        }
        // Containers.
        (Convention::OpenLlmetry, Role::Node) => {
            (format!("{}.task", node.name), SpanKind::Internal)
        }
        (Convention::GenAi, Role::Node) => (
            format!("invoke_agent {}", node.genai_agent.unwrap_or(&node.name)),
            SpanKind::Internal,
        ),
        (_, Role::Node) => (node.name.clone(), SpanKind::Internal),
        // LLM calls.
        (Convention::OpenInference | Convention::TraceAi, r) if r.is_llm() => {
            (node.name.clone(), SpanKind::Internal)
        }
        (Convention::OpenLlmetry, r) if r.is_llm() => {
            let prefix = node.model.map(|m| m.traceloop_prefix).unwrap_or("openai");
            (format!("{prefix}.chat"), SpanKind::Client)
        }
        (Convention::GenAi, r) if r.is_llm() => (format!("chat {model}"), SpanKind::Client),
        (Convention::Explicit, r) if r.is_llm() => (r.step().to_string(), SpanKind::Client),
        // Retrieval.
        (Convention::OpenLlmetry, Role::Retriever) => {
            ("qdrant.search".to_string(), SpanKind::Client)
        }
        (Convention::GenAi, Role::Retriever) => ("retrieval docs".to_string(), SpanKind::Client),
        (Convention::Explicit, Role::Retriever) => {
            ("retrieve_documents".to_string(), SpanKind::Internal)
        }
        (_, Role::Retriever) => (node.name.clone(), SpanKind::Internal),
        (Convention::OpenLlmetry, Role::Reranker) => {
            ("cohere.rerank".to_string(), SpanKind::Client)
        }
        (Convention::GenAi | Convention::Explicit, Role::Reranker) => {
            ("rerank".to_string(), SpanKind::Internal)
        }
        (_, Role::Reranker) => (node.name.clone(), SpanKind::Internal),
        // Tools.
        (Convention::OpenLlmetry, Role::Tool) => {
            (format!("{}.tool", node.name), SpanKind::Internal)
        }
        (Convention::GenAi, Role::Tool) => {
            (format!("execute_tool {}", node.name), SpanKind::Internal)
        }
        (_, Role::Tool) => (node.name.clone(), SpanKind::Internal),
        // Memory.
        (Convention::OpenLlmetry, Role::MemorySearch | Role::MemoryUpsert) => {
            (format!("{}.task", node.name), SpanKind::Internal)
        }
        (Convention::GenAi, Role::MemorySearch) => {
            ("search_memory user_memories".to_string(), SpanKind::Client)
        }
        (Convention::GenAi, Role::MemoryUpsert) => {
            ("upsert_memory user_memories".to_string(), SpanKind::Client)
        }
        (_, Role::MemorySearch | Role::MemoryUpsert) => (node.name.clone(), SpanKind::Internal),
        (_, _) => (node.name.clone(), SpanKind::Internal),
    }
}

fn http_attributes(node: &Node, span: &mut Span) {
    let Some(h) = &node.http else { return };
    span.attributes.push(s("http.request.method", h.method));
    span.attributes.push(s("url.full", h.url.clone()));
    span.attributes.push(s("server.address", h.host));
    span.attributes.push(i("server.port", u64::from(h.port)));
    span.attributes
        .push(i("http.response.status_code", u64::from(h.status)));
    span.attributes.push(s("network.protocol.version", "1.1"));
    let agent = match h.host {
        "api.openai.com" => "OpenAI/Python 1.54.3",
        "api.anthropic.com" => "Anthropic/Python 0.39.0",
        _ => "python-httpx/0.27.2",
    };
    span.attributes.push(s("user_agent.original", agent));
    let size = u64::from(u16::from_le_bytes([node.span_id[0], node.span_id[1]])) % 4000 + 120;
    span.attributes.push(i("http.response.body.size", size));
    if h.status >= 400 {
        span.attributes.push(s("error.type", h.status.to_string()));
    }
}

/// The OpenInference / traceAI span kind value of a role.
fn oi_kind(role: Role) -> &'static str {
    match role {
        Role::Agent | Role::Node => "CHAIN",
        Role::SubAgent => "AGENT",
        Role::Router | Role::Planner | Role::Generator | Role::Critic => "LLM",
        Role::Retriever => "RETRIEVER",
        Role::Reranker => "RERANKER",
        Role::Tool => "TOOL",
        Role::MemorySearch | Role::MemoryUpsert => "CHAIN",
        Role::Http => "UNKNOWN",
    }
}

fn docs_value(node: &Node) -> serde_json::Value {
    node.docs
        .iter()
        .map(|d| serde_json::json!({"id": d.id, "score": d.score, "content": d.content}))
        .collect()
}

fn docs_json(node: &Node) -> String {
    docs_value(node).to_string()
}

fn docs_ids_json(node: &Node) -> String {
    let docs: Vec<serde_json::Value> = node
        .docs
        .iter()
        .map(|d| serde_json::json!({"id": d.id, "score": d.score}))
        .collect();
    serde_json::Value::Array(docs).to_string()
}

fn genai_input_messages(node: &Node) -> String {
    serde_json::json!([
        {"role": "user", "parts": [{"type": "text", "content": node.input}]}
    ])
    .to_string()
}

fn genai_output_messages(node: &Node) -> String {
    let mut parts: Vec<serde_json::Value> = Vec::new();
    if !node.output.is_empty() {
        parts.push(serde_json::json!({"type": "text", "content": node.output}));
    }
    for call in &node.tool_calls {
        let args: serde_json::Value = serde_json::from_str(&call.arguments)
            .unwrap_or_else(|_| serde_json::Value::String(call.arguments.clone()));
        parts.push(serde_json::json!({"type": "tool_call", "id": call.id, "name": call.name, "arguments": args}));
    }
    serde_json::json!([{"role": "assistant", "parts": parts, "finish_reason": node.finish_reason}])
        .to_string()
}

fn tool_definitions_json(node: &Node) -> String {
    let defs: Vec<serde_json::Value> = node
        .tool_defs
        .iter()
        .map(|d| {
            let params: serde_json::Value =
                serde_json::from_str(d.schema).unwrap_or(serde_json::Value::Null);
            serde_json::json!({"type": "function", "name": d.name, "description": d.description, "parameters": params})
        })
        .collect();
    serde_json::Value::Array(defs).to_string()
}

fn step_attributes(info: &RunInfo, node: &Node, span: &mut Span) {
    match info.convention {
        Convention::OpenInference => openinference(node, span),
        Convention::TraceAi => traceai(info, node, span),
        Convention::OpenLlmetry => openllmetry(info, node, span),
        Convention::GenAi => genai(node, span),
        Convention::Explicit => explicit(node, span),
    }
}

fn openinference(node: &Node, span: &mut Span) {
    let a = &mut span.attributes;
    a.push(s("openinference.span.kind", oi_kind(node.role)));
    match node.role {
        r if r.is_llm() => {
            if let Some(m) = node.model {
                a.push(s("llm.model_name", m.name));
                a.push(s("llm.provider", m.provider));
                a.push(s("llm.system", m.system));
                a.push(s(
                    "llm.invocation_parameters",
                    format!(r#"{{"model": "{}", "temperature": 0.2, "max_tokens": 1024, "stream": false}}"#, m.name),
                ));
            }
            a.push(s("llm.input_messages.0.message.role", "system"));
            a.push(s(
                "llm.input_messages.0.message.content",
                node.system.clone(),
            ));
            a.push(s("llm.input_messages.1.message.role", "user"));
            a.push(s(
                "llm.input_messages.1.message.content",
                node.input.clone(),
            ));
            if !node.response_id.is_empty() {
                a.push(s("llm.output_messages.0.message.role", "assistant"));
                if !node.output.is_empty() {
                    a.push(s(
                        "llm.output_messages.0.message.content",
                        node.output.clone(),
                    ));
                }
                for (j, call) in node.tool_calls.iter().enumerate() {
                    let p = format!("llm.output_messages.0.message.tool_calls.{j}.tool_call");
                    a.push(s(&format!("{p}.id"), call.id.clone()));
                    a.push(s(&format!("{p}.function.name"), call.name.clone()));
                    a.push(s(
                        &format!("{p}.function.arguments"),
                        call.arguments.clone(),
                    ));
                }
                a.push(s("llm.finish_reason", node.finish_reason));
                a.push(i("llm.token_count.prompt", node.input_tokens));
                a.push(i("llm.token_count.completion", node.output_tokens));
                a.push(i(
                    "llm.token_count.total",
                    node.input_tokens + node.output_tokens,
                ));
            }
            for (j, d) in node.tool_defs.iter().enumerate() {
                a.push(s(&format!("llm.tools.{j}.tool.json_schema"), format!(r#"{{"type":"function","function":{{"name":"{}","description":"{}","parameters":{}}}}}"#, d.name, d.description, d.schema)));
            }
        }
        Role::Retriever => {
            a.push(s("input.value", node.input.clone()));
            for (j, d) in node.docs.iter().enumerate() {
                let p = format!("retrieval.documents.{j}.document");
                a.push(s(&format!("{p}.id"), d.id.clone()));
                a.push(f(&format!("{p}.score"), d.score));
                a.push(s(&format!("{p}.content"), d.content.clone()));
            }
        }
        Role::Reranker => {
            a.push(s("reranker.query", node.input.clone()));
            a.push(s("reranker.model_name", "rerank-english-v3.0"));
            a.push(i("reranker.top_k", 3));
            for (j, d) in node.docs.iter().enumerate() {
                a.push(s(
                    &format!("reranker.input_documents.{j}.document.id"),
                    d.id.clone(),
                ));
                a.push(f(
                    &format!("reranker.input_documents.{j}.document.score"),
                    d.score,
                ));
            }
            for (j, d) in node.docs.iter().take(3).enumerate() {
                a.push(s(
                    &format!("reranker.output_documents.{j}.document.id"),
                    d.id.clone(),
                ));
            }
        }
        Role::Tool => {
            a.push(s("tool.name", node.name.clone()));
            if let Some(d) = node.tool_def {
                a.push(s("tool.description", d.description));
                a.push(s("tool.parameters", d.schema));
            }
            a.push(s("input.value", node.input.clone()));
            a.push(s("input.mime_type", "application/json"));
            if !node.output.is_empty() {
                a.push(s("output.value", node.output.clone()));
            }
        }
        Role::Node | Role::SubAgent | Role::MemorySearch | Role::MemoryUpsert => {
            a.push(s("graph.node.id", node.name.clone()));
            a.push(s("graph.node.name", node.name.clone()));
            if node.role == Role::SubAgent {
                a.push(s("agent.name", node.name.clone()));
            }
            if !node.input.is_empty() {
                a.push(s("input.value", node.input.clone()));
            }
            if !node.docs.is_empty() {
                a.push(s("output.value", docs_json(node)));
                a.push(s("output.mime_type", "application/json"));
            } else if !node.output.is_empty() {
                a.push(s("output.value", node.output.clone()));
            }
        }
        _ => {}
    }
}

fn traceai(info: &RunInfo, node: &Node, span: &mut Span) {
    let key = if info.traceai_python {
        "gen_ai.span.kind"
    } else {
        "fi.span.kind"
    };
    let a = &mut span.attributes;
    a.push(s(key, oi_kind(node.role)));
    match node.role {
        r if r.is_llm() => {
            if let Some(m) = node.model {
                a.push(s("gen_ai.request.model", m.name));
                a.push(s("gen_ai.provider.name", m.provider));
            }
            a.push(f("gen_ai.request.temperature", 0.2));
            a.push(i("gen_ai.request.max_tokens", 1024));
            a.push(s("gen_ai.system_instructions", node.system.clone()));
            a.push(s("input.value", node.input.clone()));
            if !node.response_id.is_empty() {
                a.push(s("gen_ai.response.id", node.response_id.clone()));
                a.push(s("output.value", genai_output_messages(node)));
                a.push(str_array(
                    "gen_ai.response.finish_reasons",
                    &[node.finish_reason],
                ));
                a.push(i("gen_ai.usage.input_tokens", node.input_tokens));
                a.push(i("gen_ai.usage.output_tokens", node.output_tokens));
            }
            if !node.tool_defs.is_empty() {
                a.push(s("gen_ai.tool.definitions", tool_definitions_json(node)));
            }
        }
        Role::Retriever => {
            a.push(s("input.value", node.input.clone()));
            for (j, d) in node.docs.iter().enumerate() {
                let p = format!("retrieval.documents.{j}.document");
                a.push(s(&format!("{p}.id"), d.id.clone()));
                a.push(f(&format!("{p}.score"), d.score));
                a.push(s(&format!("{p}.content"), d.content.clone()));
            }
        }
        Role::Reranker => {
            a.push(s("input.value", node.input.clone()));
            a.push(s("output.value", node.output.clone()));
        }
        Role::Tool => {
            a.push(s("gen_ai.tool.name", node.name.clone()));
            a.push(s("gen_ai.tool.call.id", node.tool_call_id.clone()));
            a.push(s("input.value", node.input.clone()));
            if !node.output.is_empty() {
                a.push(s("output.value", node.output.clone()));
            }
        }
        Role::Node | Role::SubAgent | Role::MemorySearch | Role::MemoryUpsert => {
            a.push(s("gen_ai.agent.graph.node_name", node.name.clone()));
            if !node.input.is_empty() {
                a.push(s("input.value", node.input.clone()));
            }
            if !node.docs.is_empty() {
                a.push(s("output.value", docs_json(node)));
            } else if !node.output.is_empty() {
                a.push(s("output.value", node.output.clone()));
            }
        }
        _ => {}
    }
}

fn openllmetry(info: &RunInfo, node: &Node, span: &mut Span) {
    let a = &mut span.attributes;
    match node.role {
        r if r.is_llm() => {
            a.push(s("llm.request.type", "chat"));
            if let Some(m) = node.model {
                a.push(s("gen_ai.system", m.system));
                a.push(s("gen_ai.request.model", m.name));
                a.push(s("gen_ai.response.model", m.name));
            }
            a.push(f("gen_ai.request.temperature", 0.2));
            a.push(i("gen_ai.request.max_tokens", 1024));
            a.push(kv("llm.is_streaming", Value::BoolValue(false)));
            a.push(s("gen_ai.prompt.0.role", "system"));
            a.push(s("gen_ai.prompt.0.content", node.system.clone()));
            a.push(s("gen_ai.prompt.1.role", "user"));
            a.push(s("gen_ai.prompt.1.content", node.input.clone()));
            if !node.response_id.is_empty() {
                a.push(s("gen_ai.response.id", node.response_id.clone()));
                a.push(s("gen_ai.completion.0.role", "assistant"));
                a.push(s("gen_ai.completion.0.finish_reason", node.finish_reason));
                if !node.output.is_empty() {
                    a.push(s("gen_ai.completion.0.content", node.output.clone()));
                }
                for (j, call) in node.tool_calls.iter().enumerate() {
                    a.push(s(
                        &format!("gen_ai.completion.0.tool_calls.{j}.id"),
                        call.id.clone(),
                    ));
                    a.push(s(
                        &format!("gen_ai.completion.0.tool_calls.{j}.name"),
                        call.name.clone(),
                    ));
                    a.push(s(
                        &format!("gen_ai.completion.0.tool_calls.{j}.arguments"),
                        call.arguments.clone(),
                    ));
                }
                a.push(i("gen_ai.usage.prompt_tokens", node.input_tokens));
                a.push(i("gen_ai.usage.completion_tokens", node.output_tokens));
                a.push(i(
                    "llm.usage.total_tokens",
                    node.input_tokens + node.output_tokens,
                ));
            }
            for (j, d) in node.tool_defs.iter().enumerate() {
                a.push(s(&format!("llm.request.functions.{j}.name"), d.name));
                a.push(s(
                    &format!("llm.request.functions.{j}.parameters"),
                    d.schema,
                ));
            }
        }
        Role::Retriever => {
            a.push(s("db.system", "qdrant"));
            a.push(s("qdrant.search.collection_name", "docs_v3"));
            a.push(i("db.vector.query.top_k", node.docs.len().max(4) as u64));
            for d in &node.docs {
                span.events.push(Event {
                    time_unix_nano: node.end,
                    name: "db.query.result".to_string(),
                    attributes: vec![
                        s("db.query.result.id", d.id.clone()),
                        f("db.query.result.score", d.score),
                        s("db.query.result.document", d.content.clone()),
                    ],
                    dropped_attributes_count: 0,
                });
            }
        }
        Role::Reranker => {
            a.push(s("llm.request.type", "rerank"));
            a.push(s("gen_ai.system", "Cohere"));
            a.push(s("gen_ai.request.model", "rerank-english-v3.0"));
        }
        Role::Tool => {
            a.push(s("traceloop.span.kind", "tool"));
            a.push(s("traceloop.entity.name", node.name.clone()));
            a.push(s("traceloop.workflow.name", info.template.agent_name()));
            a.push(s("traceloop.entity.input", node.input.clone()));
            if !node.output.is_empty() {
                a.push(s("traceloop.entity.output", node.output.clone()));
            }
        }
        Role::Node | Role::MemorySearch | Role::MemoryUpsert | Role::SubAgent => {
            let kind = if node.role == Role::SubAgent {
                "agent"
            } else {
                "task"
            };
            a.push(s("traceloop.span.kind", kind));
            a.push(s("traceloop.entity.name", node.name.clone()));
            a.push(s("traceloop.workflow.name", info.template.agent_name()));
            if !node.input.is_empty() {
                a.push(s("traceloop.entity.input", node.input.clone()));
            }
            if !node.docs.is_empty() {
                a.push(s("traceloop.entity.output", docs_json(node)));
            } else if !node.output.is_empty() {
                a.push(s("traceloop.entity.output", node.output.clone()));
            }
        }
        _ => {}
    }
}

fn genai(node: &Node, span: &mut Span) {
    let a = &mut span.attributes;
    match node.role {
        r if r.is_llm() => {
            a.push(s("gen_ai.operation.name", "chat"));
            if let Some(m) = node.model {
                a.push(s("gen_ai.provider.name", m.provider));
                a.push(s("gen_ai.request.model", m.name));
            }
            a.push(f("gen_ai.request.temperature", 0.2));
            a.push(i("gen_ai.request.max_tokens", 1024));
            a.push(s("gen_ai.system_instructions", node.system.clone()));
            a.push(s("gen_ai.input.messages", genai_input_messages(node)));
            if !node.response_id.is_empty() {
                if let Some(m) = node.model {
                    a.push(s("gen_ai.response.model", m.name));
                }
                a.push(s("gen_ai.response.id", node.response_id.clone()));
                a.push(str_array(
                    "gen_ai.response.finish_reasons",
                    &[node.finish_reason],
                ));
                a.push(i("gen_ai.usage.input_tokens", node.input_tokens));
                a.push(i("gen_ai.usage.output_tokens", node.output_tokens));
                a.push(s("gen_ai.output.messages", genai_output_messages(node)));
            }
            if !node.tool_defs.is_empty() {
                a.push(s("gen_ai.tool.definitions", tool_definitions_json(node)));
            }
        }
        Role::Retriever => {
            a.push(s("gen_ai.operation.name", "retrieval"));
            a.push(s("gen_ai.data_source.id", "docs"));
            a.push(s("gen_ai.retrieval.query.text", node.input.clone()));
            a.push(s("gen_ai.retrieval.documents", docs_ids_json(node)));
        }
        Role::Tool => {
            a.push(s("gen_ai.operation.name", "execute_tool"));
            a.push(s("gen_ai.tool.name", node.name.clone()));
            a.push(s("gen_ai.tool.type", "function"));
            a.push(s("gen_ai.tool.call.id", node.tool_call_id.clone()));
            a.push(s("gen_ai.tool.call.arguments", node.input.clone()));
            if !node.output.is_empty() {
                a.push(s("gen_ai.tool.call.result", node.output.clone()));
            }
            if let Some(d) = node.tool_def {
                a.push(s("gen_ai.tool.description", d.description));
            }
        }
        Role::SubAgent | Role::Node => {
            a.push(s("gen_ai.operation.name", "invoke_agent"));
            a.push(s(
                "gen_ai.agent.name",
                node.genai_agent.unwrap_or(&node.name),
            ));
        }
        Role::MemorySearch => {
            a.push(s("gen_ai.operation.name", "search_memory"));
            a.push(s("gen_ai.memory.store.id", "user_memories"));
            a.push(s("gen_ai.memory.query.text", node.input.clone()));
            a.push(i("gen_ai.memory.record.count", node.docs.len() as u64));
            a.push(s("gen_ai.memory.records", docs_ids_json(node)));
        }
        Role::MemoryUpsert => {
            a.push(s("gen_ai.operation.name", "upsert_memory"));
            a.push(s("gen_ai.memory.store.id", "user_memories"));
        }
        Role::Reranker => {
            a.push(s("input.value", node.input.clone()));
        }
        _ => {}
    }
}

fn explicit(node: &Node, span: &mut Span) {
    let a = &mut span.attributes;
    if node.role != Role::Http {
        a.push(s("agent.trajectory.step", node.role.step()));
    }
    match node.role {
        r if r.is_llm() => {
            if let Some(m) = node.model {
                a.push(s("gen_ai.request.model", m.name));
            }
            a.push(s("gen_ai.system_instructions", node.system.clone()));
            a.push(s("gen_ai.input.messages", genai_input_messages(node)));
            if !node.response_id.is_empty() {
                a.push(s("gen_ai.response.id", node.response_id.clone()));
                a.push(str_array(
                    "gen_ai.response.finish_reasons",
                    &[node.finish_reason],
                ));
                a.push(i("gen_ai.usage.input_tokens", node.input_tokens));
                a.push(i("gen_ai.usage.output_tokens", node.output_tokens));
                a.push(s("gen_ai.output.messages", genai_output_messages(node)));
            }
            if !node.tool_defs.is_empty() {
                a.push(s("gen_ai.tool.definitions", tool_definitions_json(node)));
            }
        }
        Role::Retriever | Role::MemorySearch => {
            a.push(s("gen_ai.retrieval.query.text", node.input.clone()));
            a.push(s("gen_ai.retrieval.documents", docs_ids_json(node)));
        }
        Role::Tool => {
            a.push(s("gen_ai.tool.name", node.name.clone()));
            a.push(s("gen_ai.tool.call.id", node.tool_call_id.clone()));
            a.push(s("gen_ai.tool.call.arguments", node.input.clone()));
            if !node.output.is_empty() {
                a.push(s("gen_ai.tool.call.result", node.output.clone()));
            }
        }
        Role::SubAgent => a.push(s("gen_ai.agent.name", node.name.clone())),
        _ => {}
    }
}

/// What graph frameworks record on a node (container) span: its state in and out, and
/// the framework's metadata. A retrieval node returns its documents
/// (`{"documents": [...]}`), any other node its new messages.
fn container_attributes(
    info: &RunInfo,
    node: &Node,
    first: &Node,
    last: &Node,
    idx: usize,
    span: &mut Span,
) {
    let input =
        serde_json::json!({"messages": [{"role": "user", "content": first.input}]}).to_string();
    let output = if last.role == Role::Retriever {
        serde_json::json!({ "documents": docs_value(last) }).to_string()
    } else {
        let output_text = if !last.output.is_empty() {
            last.output.clone()
        } else if let Some(call) = last.tool_calls.first() {
            format!("{}({})", call.name, call.arguments)
        } else {
            String::new()
        };
        serde_json::json!({"messages": [{"role": "assistant", "content": output_text}]}).to_string()
    };
    let a = &mut span.attributes;
    match info.convention {
        Convention::OpenInference | Convention::TraceAi => {
            a.push(s("input.value", input));
            a.push(s("input.mime_type", "application/json"));
            a.push(s("output.value", output));
            a.push(s("output.mime_type", "application/json"));
            let metadata = serde_json::json!({
                "langgraph_step": idx,
                "langgraph_node": node.name,
                "langgraph_triggers": [format!("branch:to:{}", node.name)],
                "langgraph_path": ["__pregel_pull", node.name],
                "langgraph_checkpoint_ns": format!("{}:{}", node.name, hex::encode(node.span_id)),
            });
            a.push(s("metadata", metadata.to_string()));
        }
        Convention::OpenLlmetry => {
            a.push(s("traceloop.entity.input", input));
            a.push(s("traceloop.entity.output", output));
            a.push(s(
                "traceloop.entity.path",
                format!("{}.{}", info.template.agent_name(), node.name),
            ));
        }
        Convention::GenAi | Convention::Explicit => {
            a.push(s(
                "gen_ai.agent.id",
                format!("asst_{}", hex::encode(node.span_id)),
            ));
        }
    }
}

fn root_attributes(info: &RunInfo, node: &Node, span: &mut Span) {
    let c = info.cohort;
    let a = &mut span.attributes;
    a.push(s("http.route", c.route));
    a.push(s("user.segment", c.user_segment));
    a.push(s("session.id", info.session_id.clone()));
    match info.convention {
        Convention::OpenInference => {
            a.push(s("llm.model_name", c.model));
            a.push(s("llm.prompt_template.version", c.prompt_version));
            a.push(i("llm.token_count.prompt", c.input_tokens));
            a.push(s("user.id", info.user_id.clone()));
            a.push(s("input.value", node.input.clone()));
            if !node.output.is_empty() {
                a.push(s("output.value", node.output.clone()));
            }
        }
        Convention::TraceAi => {
            a.push(s("gen_ai.request.model", c.model));
            a.push(s("gen_ai.prompt.template.version", c.prompt_version));
            a.push(i("gen_ai.usage.input_tokens", c.input_tokens));
            a.push(s("user.id", info.user_id.clone()));
            a.push(s("input.value", node.input.clone()));
            if !node.output.is_empty() {
                a.push(s("output.value", node.output.clone()));
            }
        }
        Convention::OpenLlmetry => {
            a.push(s("traceloop.span.kind", "workflow"));
            a.push(s("traceloop.workflow.name", info.template.agent_name()));
            a.push(s("traceloop.entity.name", info.template.agent_name()));
            a.push(s("gen_ai.request.model", c.model));
            a.push(s("traceloop.prompt.version", c.prompt_version));
            a.push(i("gen_ai.usage.input_tokens", c.input_tokens));
            a.push(s(
                "traceloop.association.properties.session_id",
                info.session_id.clone(),
            ));
            a.push(s(
                "traceloop.association.properties.user_id",
                info.user_id.clone(),
            ));
            a.push(s("traceloop.entity.input", node.input.clone()));
        }
        Convention::GenAi | Convention::Explicit => {
            if info.convention == Convention::GenAi {
                a.push(s("gen_ai.operation.name", "invoke_agent"));
            }
            a.push(s("gen_ai.agent.name", info.template.agent_name()));
            a.push(s("gen_ai.agent.version", c.prompt_version));
            a.push(s("gen_ai.request.model", c.model));
            a.push(s(
                "gen_ai.provider.name",
                super::catalog::model_by_name(c.model).provider,
            ));
            a.push(i("gen_ai.usage.input_tokens", c.input_tokens));
            a.push(i("gen_ai.usage.output_tokens", node.output_tokens));
            a.push(s("gen_ai.conversation.id", info.session_id.clone()));
        }
    }
}

fn error_attributes(conv: Convention, node: &Node, span: &mut Span) {
    if !matches!(node.status, Status::Error(_)) {
        return;
    }
    match conv {
        Convention::GenAi | Convention::Explicit | Convention::TraceAi => {
            let ty = node
                .exception
                .as_ref()
                .map(|e| e.ty.as_str())
                .unwrap_or("_OTHER");
            span.attributes.push(s("error.type", ty));
        }
        _ => {}
    }
}

fn eval_span_attributes(conv: Convention, e: &Eval, n: usize, span: &mut Span) {
    let a = &mut span.attributes;
    match conv {
        Convention::TraceAi => {
            a.push(s("gen_ai.evaluation.name", e.name));
            a.push(f("gen_ai.evaluation.score.value", e.score));
            a.push(s("gen_ai.evaluation.score.label", e.label));
            a.push(s("gen_ai.evaluation.explanation", e.explanation.clone()));
        }
        _ => {
            let p = format!("evaluations.{n}.evaluation");
            a.push(s(&format!("{p}.name"), e.name));
            a.push(f(&format!("{p}.score"), e.score));
            a.push(s(&format!("{p}.label"), e.label));
            a.push(s(&format!("{p}.explanation"), e.explanation.clone()));
            a.push(s(&format!("{p}.annotator_kind"), "LLM"));
        }
    }
}

fn random_span_id(rng: &mut SmallRng) -> [u8; 8] {
    loop {
        let id: [u8; 8] = rng.random();
        if id != [0; 8] {
            return id;
        }
    }
}

fn evaluator_child(rng: &mut SmallRng, info: &RunInfo, nodes: &[Node], e: &Eval) -> Span {
    let target = &nodes[e.target];
    let key = if info.traceai_python {
        "gen_ai.span.kind"
    } else {
        "fi.span.kind"
    };
    let start = target.end + 1_000_000;
    let end = start + (lognormal(rng, 700.0, 0.4) * 1e6) as u64;
    Span {
        trace_id: info.trace_id.to_vec(),
        span_id: random_span_id(rng).to_vec(),
        trace_state: String::new(),
        parent_span_id: target.span_id.to_vec(),
        flags: 0x101,
        name: format!("eval.{}", e.name),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: vec![
            s(key, "EVALUATOR"),
            s("gen_ai.evaluation.name", e.name),
            f("gen_ai.evaluation.score.value", e.score),
            s("gen_ai.evaluation.score.label", e.label),
            s("gen_ai.evaluation.explanation", e.explanation.clone()),
            s(
                "gen_ai.evaluation.target_span_id",
                hex::encode(target.span_id),
            ),
            f(&format!("eval.{}", e.name), e.score),
            s(&format!("eval.{}.reason", e.name), e.explanation.clone()),
        ],
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Some(OtlpStatus {
            message: String::new(),
            code: StatusCode::Ok as i32,
        }),
    }
}

fn post_hoc_span(
    rng: &mut SmallRng,
    info: &RunInfo,
    nodes: &[Node],
    e: &Eval,
    run_end: u64,
) -> Span {
    let target = &nodes[e.target];
    let mut trace_id: [u8; 16] = rng.random();
    trace_id[0] |= 0x01;
    let start = run_end + (lognormal(rng, 40_000.0, 0.6) * 1e6) as u64;
    let end = start + (lognormal(rng, 900.0, 0.4) * 1e6) as u64;
    let mut attributes = vec![
        s("openinference.span.kind", "EVALUATOR"),
        s("evaluations.0.evaluation.name", e.name),
        f("evaluations.0.evaluation.score", e.score),
        s("evaluations.0.evaluation.label", e.label),
        s(
            "evaluations.0.evaluation.explanation",
            e.explanation.clone(),
        ),
        s("evaluations.0.evaluation.annotator_kind", "LLM"),
    ];
    if info.convention == Convention::Explicit {
        attributes.push(s("agent.trajectory.step", "critic"));
    }
    Span {
        trace_id: trace_id.to_vec(),
        span_id: random_span_id(rng).to_vec(),
        trace_state: String::new(),
        parent_span_id: Vec::new(),
        flags: 0x101,
        name: e.name.to_string(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: vec![Link {
            trace_id: info.trace_id.to_vec(),
            span_id: target.span_id.to_vec(),
            trace_state: String::new(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            flags: 0x101,
        }],
        dropped_links_count: 0,
        status: Some(OtlpStatus {
            message: String::new(),
            code: StatusCode::Ok as i32,
        }),
    }
}

fn eval_log_record(rng: &mut SmallRng, info: &RunInfo, nodes: &[Node], e: &Eval) -> LogRecord {
    let target = &nodes[e.target];
    let t = target.end + (rng.random_range(5.0..800.0) * 1e6) as u64;
    let mut attributes = vec![
        s("gen_ai.evaluation.name", e.name),
        f("gen_ai.evaluation.score.value", e.score),
        s("gen_ai.evaluation.score.label", e.label),
        s("gen_ai.evaluation.explanation", e.explanation.clone()),
    ];
    if !target.response_id.is_empty() {
        attributes.push(s("gen_ai.response.id", target.response_id.clone()));
    }
    LogRecord {
        time_unix_nano: t,
        observed_time_unix_nano: t,
        severity_number: 9,
        severity_text: "INFO".to_string(),
        body: None,
        attributes,
        dropped_attributes_count: 0,
        flags: 0x1,
        trace_id: info.trace_id.to_vec(),
        span_id: target.span_id.to_vec(),
        event_name: "gen_ai.evaluation.result".to_string(),
    }
}
