//! The convention table: which attribute values mean which step.
//!
//! Everything that names a real instrumentation's attribute or value lives here, as
//! data: a new span-kind value, a new node name or a new tool-call marker is a one-line
//! change. The rules that read the table are in `classify/mod.rs`.
//!
//! Sources (the instrumentations' own conventions): OpenInference
//! `openinference.span.kind`; traceAI
//! `fi.span.kind` (TS/Java/C#) and `gen_ai.span.kind` (Python); OpenLLMetry
//! `traceloop.span.kind` and `llm.request.type`; OpenTelemetry GenAI
//! `gen_ai.operation.name`.

use crate::conventions;
use crate::model::StepKind;

/// What a convention value says about a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// A call to a language model: a planner when it emits tool calls or sits in a
    /// planner node, a generator otherwise.
    Llm,
    /// A container with no behaviour of its own (a chain, a task, a workflow): the
    /// agent at the root, the node's step inside a node, `chain` elsewhere.
    Container,
    /// No step of its own (`UNKNOWN`, `PROMPT`): infrastructure.
    Infra,
    /// A step kind of its own.
    Step(StepKind),
}

impl Class {
    /// How much a class says: a specific kind (LLM included) beats a container, which
    /// beats infrastructure, when a span carries several convention keys.
    pub(crate) fn specificity(&self) -> u8 {
        match self {
            Class::Llm | Class::Step(_) => 2,
            Class::Container => 1,
            Class::Infra => 0,
        }
    }
}

/// One span-kind attribute and the meaning of each of its values.
#[derive(Debug)]
pub struct KindKey {
    pub key: &'static str,
    /// Values compare ASCII-case-insensitively.
    pub values: &'static [(&'static str, Class)],
}

use Class::{Container, Infra, Llm, Step};
use StepKind::{
    Agent, Chain, Critic, Embedding, Guardrail, Memory, Planner, Reranker, Retriever, Tool,
};

/// OpenInference span kinds; traceAI uses the same names plus a few of its own.
const OPENINFERENCE_KINDS: &[(&str, Class)] = &[
    ("LLM", Llm),
    ("CHAIN", Container),
    ("AGENT", Step(Agent)),
    ("TOOL", Step(Tool)),
    ("RETRIEVER", Step(Retriever)),
    ("RERANKER", Step(Reranker)),
    ("EMBEDDING", Step(Embedding)),
    ("GUARDRAIL", Step(Guardrail)),
    (conventions::EVALUATOR_KIND, Step(Critic)),
    ("PROMPT", Infra),
    ("UNKNOWN", Infra),
];

/// traceAI span kinds (`FiSpanKindValues` / `FISpanKind`).
const TRACEAI_KINDS: &[(&str, Class)] = &[
    ("LLM", Llm),
    ("CHAIN", Container),
    ("AGENT", Step(Agent)),
    ("TOOL", Step(Tool)),
    ("RETRIEVER", Step(Retriever)),
    ("RERANKER", Step(Reranker)),
    ("EMBEDDING", Step(Embedding)),
    ("GUARDRAIL", Step(Guardrail)),
    (conventions::EVALUATOR_KIND, Step(Critic)),
    ("VECTOR_DB", Step(Retriever)),
    ("CONVERSATION", Container),
    ("A2A_CLIENT", Step(Agent)),
    ("A2A_SERVER", Step(Agent)),
    ("PROMPT", Infra),
    ("UNKNOWN", Infra),
];

/// The span-kind keys, in the order they are trusted when a span carries several of
/// the same specificity.
pub static KIND_KEYS: &[KindKey] = &[
    KindKey {
        key: conventions::OPENINFERENCE_SPAN_KIND,
        values: OPENINFERENCE_KINDS,
    },
    KindKey {
        key: conventions::FI_SPAN_KIND,
        values: TRACEAI_KINDS,
    },
    KindKey {
        key: conventions::GEN_AI_SPAN_KIND,
        values: TRACEAI_KINDS,
    },
    KindKey {
        key: conventions::TRACELOOP_SPAN_KIND,
        values: &[
            ("workflow", Container),
            ("task", Container),
            ("agent", Step(Agent)),
            ("tool", Step(Tool)),
            ("unknown", Infra),
        ],
    },
    // The Vercel AI SDK's own telemetry: `ai.generateText` runs an agent loop, its
    // `.doGenerate` children are the model calls, `ai.toolCall` the tool executions.
    KindKey {
        key: "ai.operationId",
        values: &[
            ("ai.generateText", Step(Agent)),
            ("ai.streamText", Step(Agent)),
            ("ai.generateObject", Step(Agent)),
            ("ai.streamObject", Step(Agent)),
            ("ai.generateText.doGenerate", Llm),
            ("ai.streamText.doStream", Llm),
            ("ai.generateObject.doGenerate", Llm),
            ("ai.streamObject.doStream", Llm),
            ("ai.toolCall", Step(Tool)),
            ("ai.embed", Step(Embedding)),
            ("ai.embedMany", Step(Embedding)),
            ("ai.embed.doEmbed", Infra),
            ("ai.embedMany.doEmbed", Infra),
        ],
    },
    KindKey {
        key: conventions::LLM_REQUEST_TYPE,
        values: &[
            ("chat", Llm),
            ("completion", Llm),
            ("embedding", Step(Embedding)),
            ("rerank", Step(Reranker)),
            ("unknown", Infra),
        ],
    },
    KindKey {
        key: conventions::GEN_AI_OPERATION_NAME,
        values: &[
            ("chat", Llm),
            ("generate_content", Llm),
            ("text_completion", Llm),
            ("embeddings", Step(Embedding)),
            ("retrieval", Step(Retriever)),
            ("plan", Step(Planner)),
            // Building an agent (its configuration) runs nothing: plumbing.
            ("create_agent", Step(Chain)),
            ("invoke_agent", Step(Agent)),
            ("execute_tool", Step(Tool)),
            ("invoke_workflow", Container),
            ("search_memory", Step(Memory)),
            ("create_memory", Step(Memory)),
            ("update_memory", Step(Memory)),
            ("upsert_memory", Step(Memory)),
            ("delete_memory", Step(Memory)),
            ("create_memory_store", Step(Memory)),
            ("delete_memory_store", Step(Memory)),
            // Mastra's own operation names: a model step is one call, a chunk is a
            // piece of its stream.
            ("agent.run", Step(Agent)),
            ("model.step", Llm),
            ("model.chunk", Infra),
            ("tool.execute", Step(Tool)),
            ("workflow.run", Container),
            // OpenLLMetry's own operation names.
            ("llm_request", Llm),
            ("execute_task", Container),
            ("vector_db_retrieve", Step(Retriever)),
        ],
    },
];

/// `(attribute, field)`: a span with no kind of its own whose JSON attribute names a
/// tool in that field, and has a [`TOOL_RESULT_FIELD`], records the tool's result (Mastra's `model.chunk` spans of type
/// `tool-result`: `output = {"toolName": "search_docs", "result": ...}`). It belongs to
/// the step of the tool execution it reports.
pub static TOOL_RESULT_RECORD_FIELDS: &[(&str, &str)] = &[("output", "toolName")];

/// The field a tool-result record has and a tool-call record has not.
pub const TOOL_RESULT_FIELD: &str = "\"result\"";

/// JSON-text attributes of a span that records a stream event: `{"type": "error",
/// "error": {"name": ..., "message": ...}}` is an error (Mastra's `chunk: 'error'`), and
/// so is a tool result marked [`ERROR_RECORD_FLAG`].
pub static ERROR_RECORD_KEYS: &[&str] = &["output"];

/// A result flagged as an error in a record's JSON text.
pub const ERROR_RECORD_FLAG: &str = "\"error\":true";

/// `gen_ai.operation.name` values of one model call inside a model loop (Mastra's
/// `model.step` under its `chat` generation span). An LLM-typed span over one of them
/// is the loop (a container), even when the loop made a single call.
pub static MODEL_LOOP_STEP_OPERATIONS: &[&str] = &["model.step"];

/// Attributes that name the agent an agent span runs, in the order they are trusted.
pub static AGENT_NAME_KEYS: &[&str] = &[
    "gen_ai.agent.name",
    "agent.name",
    "agent_name",
    "ai.telemetry.functionId",
    "gen_ai.agent.id",
    "agent.id",
];

/// Operation prefixes of agent span names (`invoke_agent triage` is the agent `triage`).
pub static AGENT_SPAN_NAME_PREFIXES: &[&str] = &[
    "invoke_agent ",
    "create_agent ",
    "execute_task ",
    "agent run: ",
    "agent.",
];

/// Attributes that list an agent's sub-agents (`(prefix, suffix)` of flattened keys):
/// smolagents' `smolagents.managed_agents.<i>.name`. A call to one is a delegation.
pub static SUB_AGENT_NAME_KEYS: &[(&str, &str)] = &[("smolagents.managed_agents.", ".name")];

/// Tool names (prefixes) and span-name parts of a handoff to another agent: such a
/// tool span is a delegation, an `agent` step.
pub static HANDOFF_TOOL_PREFIXES: &[&str] = &[
    "transfer_to_",
    "handoff_to_",
    "handoff to ",
    // CrewAI's delegation tools.
    "delegate work to coworker",
    "ask question to coworker",
    "delegate_work_to_coworker",
    "ask_question_to_coworker",
];
pub static HANDOFF_SPAN_SUFFIXES: &[&str] = &[".handoff"];

/// Payload fields that name the running agent when its span does not (LlamaIndex's
/// workflow agents record `current_agent_name` in their run state, as JSON or a Python
/// repr; CrewAI's delegation names its `coworker`): `(attribute, field)`.
pub static AGENT_NAME_PAYLOAD_FIELDS: &[(&str, &str)] = &[
    ("input.value", "current_agent_name"),
    ("output.value", "current_agent_name"),
];

/// `(attribute, field)` of a delegation's own payload that names the agent it hands the
/// task to (CrewAI's delegation tools name the coworker). Read on the span itself only:
/// a child's delegation does not name its parent.
pub static DELEGATE_PAYLOAD_FIELDS: &[(&str, &str)] = &[("input.value", "coworker")];

/// Agent-span name suffixes of instrumentations (smolagents' `<name>.run`, OpenLLMetry's
/// `<name>.agent`).
pub static AGENT_SPAN_NAME_SUFFIXES: &[&str] = &[".run", ".agent"];

/// Words in an agent's name that make it a judge of other agents' work: such an agent
/// is a `critic` step.
pub static CRITIC_AGENT_WORDS: &[&str] = &[
    "review",
    "critic",
    "critique",
    "judge",
    "verifier",
    "verify",
    "grader",
    "evaluator",
];

/// Nouns that make a name a judge of other agents' work wherever they stand as a whole
/// word (`FactChecker`, `quality-checker`); [`CRITIC_AGENT_WORDS`] match inside words,
/// which these cannot (a `checkout_agent` checks nothing).
pub static CHECKER_NOUNS: &[&str] = &["checker", "checkers"];

/// Words that make a name a judge only as its last word, a noun there (`fact_check`,
/// `quality_check`), where leading they are a verb with an object (`check_order` looks an
/// order up). Trailing [`NAME_FILLER_WORDS`] are skipped first.
pub static CHECK_NOUNS: &[&str] = &["check", "checks"];

/// Words that end a name without saying what it does (`fact_check_agent`).
pub static NAME_FILLER_WORDS: &[&str] = &["agent", "node", "step", "run"];

/// Words in a container's name that make it an agent run when no convention says so
/// (`FunctionAgent.run`, a graph named `support_agent`, DSPy's `ReAct.forward`). A span
/// named just `agent` is a graph node of that name, not an agent run.
pub static AGENT_CONTAINER_WORDS: &[&str] = &["agent", "react"];

/// Agent runners named otherwise (LangChain's `AgentExecutor`).
pub static AGENT_CONTAINER_NAMES: &[&str] = &["AgentExecutor"];

/// Method names that say nothing of what a `Owner.method` span does: the owner names
/// it (`Predict(ReviewAnswer).forward` is the `ReviewAnswer` module).
pub static GENERIC_METHODS: &[&str] = &[
    "forward", "run", "arun", "call", "__call__", "acall", "invoke", "ainvoke", "execute", "step",
    "kickoff",
];

/// Words in a tool's name or description that make it a search. A search over
/// documents (a word of [`DOCUMENT_WORDS`] beside it) is a `retriever` step; a search
/// through another service (flights, orders) stays a `tool`.
pub static RETRIEVAL_TOOL_WORDS: &[&str] = &["search", "retriev", "lookup", "look_up", "look up"];

/// Words that say a search returns documents.
pub static DOCUMENT_WORDS: &[&str] = &[
    "doc",
    "knowledge",
    "kb",
    "corpus",
    "article",
    "passage",
    "wiki",
    "faq",
    "manual",
    "context",
    "note",
    "vector",
    "index",
    "polic",
];

/// Attributes that hold a tool's description.
pub static TOOL_DESCRIPTION_KEYS: &[&str] = &["tool.description", "gen_ai.tool.description"];

/// Attributes that name the tool a span executes.
pub static TOOL_NAME_KEYS: &[&str] = &[
    "tool.name",
    conventions::GEN_AI_TOOL_NAME,
    "tool_call.function.name",
    "ai.toolCall.name",
];

/// Tools whose only work is to hand the answer back to the caller (smolagents'
/// `final_answer` / `FinalAnswerTool`, pydantic-ai's `final_result`), compared squashed
/// ([`super::squashed`]). A model call that only calls them writes the answer (a
/// generator); executing one is part of the step around it (plumbing), not a tool step.
pub static FINAL_ANSWER_TOOLS: &[&str] = &[
    "finalanswer",
    "finalanswertool",
    "finalresult",
    "submitfinalanswer",
];

/// Tools that only mark the end of an agent loop (DSPy ReAct's `finish`): calling one
/// is still a decision (planning), the answer is written after it; executing one is
/// plumbing, like [`FINAL_ANSWER_TOOLS`].
pub static STOP_TOOLS: &[&str] = &["finish"];

/// Attribute keys (or prefixes) that only a span that really called a model carries:
/// its messages, usage, response or model. An LLM-typed span with none of them, and no
/// error, is framework plumbing (a request builder), not a model call.
pub static MODEL_CALL_EVIDENCE_PREFIXES: &[&str] = &[
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.token_count.",
    "llm.finish_reason",
    "llm.prompts",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.usage.",
    "gen_ai.response.",
    conventions::GEN_AI_REQUEST_MODEL,
    "ai.response.",
    "ai.usage.",
    "ai.prompt",
];

/// The explicit step attribute (rule 1).
pub const EXPLICIT_STEP_KEY: &str = conventions::EXPLICIT_STEP;

/// Node names of graph frameworks (LangGraph and alike), compared
/// ASCII-case-insensitively with the span name (less a [`NODE_NAME_SUFFIXES`] suffix)
/// or with a [`NODE_NAME_KEYS`] attribute.
pub static NODE_NAMES: &[(&str, StepKind)] = &[
    ("planner", Planner),
    ("plan", Planner),
    ("replan", Planner),
    ("replanner", Planner),
    ("retrieve", Retriever),
    ("retriever", Retriever),
    ("retrieval", Retriever),
    ("retrieve_documents", Retriever),
    ("rerank", Reranker),
    ("reranker", Reranker),
    ("generate", StepKind::Generator),
    ("generator", StepKind::Generator),
    ("generate_answer", StepKind::Generator),
    ("answer", StepKind::Generator),
    ("respond", StepKind::Generator),
    ("tools", Tool),
    ("tool", Tool),
    ("action", Tool),
    ("call_tool", Tool),
    ("execute_tools", Tool),
    ("router", StepKind::Router),
    ("route", StepKind::Router),
    ("route_question", StepKind::Router),
    ("supervisor", StepKind::Router),
    ("critic", Critic),
    ("critique", Critic),
    ("review", Critic),
    ("reviewer", Critic),
    ("reflect", Critic),
    ("reflection", Critic),
    ("grade", Critic),
    ("grader", Critic),
    ("grade_documents", Critic),
    ("judge", Critic),
    ("evaluate", Critic),
    ("evaluator", Critic),
    ("guardrail", Guardrail),
    ("guardrails", Guardrail),
    ("moderate", Guardrail),
    // Memory nodes: a long-term memory read or write (mem0, LangGraph stores, ...).
    ("memory", Memory),
    ("memories", Memory),
    ("memory_search", Memory),
    ("search_memory", Memory),
    ("memory_retrieval", Memory),
    ("retrieve_memory", Memory),
    ("retrieve_memories", Memory),
    ("read_memory", Memory),
    ("load_memory", Memory),
    ("load_memories", Memory),
    ("recall", Memory),
    ("recall_memory", Memory),
    ("recall_memories", Memory),
    ("memory_upsert", Memory),
    ("upsert_memory", Memory),
    ("memory_update", Memory),
    ("update_memory", Memory),
    ("save_memory", Memory),
    ("save_memories", Memory),
    ("store_memory", Memory),
    ("write_memory", Memory),
    ("remember", Memory),
    ("memorize", Memory),
];

/// Suffixes that instrumentations append to a node's span name (OpenLLMetry names a
/// LangChain chain `<name>.task`).
pub static NODE_NAME_SUFFIXES: &[&str] = &[".task", ".workflow"];

/// Attributes that name the graph node a span belongs to.
pub static NODE_NAME_KEYS: &[&str] = &[
    "graph.node.name",
    "gen_ai.agent.graph.node_name",
    "langgraph.node",
    "traceloop.association.properties.langgraph_node",
];

/// JSON-text attributes with a node field: OpenInference copies LangChain run metadata
/// (`{"langgraph_node": "generate", ...}`) into `metadata`.
pub static NODE_NAME_JSON_FIELDS: &[(&str, &str)] = &[("metadata", "langgraph_node")];

/// Flattened attribute keys that show an LLM call emitted tool calls:
/// `(prefix, infix)` matches `<prefix><i><infix>...`.
pub static TOOL_CALL_KEY_PATTERNS: &[(&str, &str)] = &[
    // OpenInference: llm.output_messages.<i>.message.tool_calls.<j>.tool_call.function.name
    ("llm.output_messages.", ".message.tool_calls."),
    // OpenLLMetry: gen_ai.completion.<i>.tool_calls.<j>.name
    ("gen_ai.completion.", ".tool_calls."),
    // OpenLLMetry, legacy function calling: gen_ai.completion.<i>.function_call.name
    ("gen_ai.completion.", ".function_call."),
];

/// Attributes holding finish reasons, as a string or an array of strings.
pub static FINISH_REASON_KEYS: &[&str] = &[
    "llm.finish_reason",
    "gen_ai.response.finish_reasons",
    "ai.response.finishReason",
];

/// Flattened finish-reason keys: `(prefix, suffix)` matches `<prefix><i><suffix>`.
pub static FINISH_REASON_KEY_PATTERNS: &[(&str, &str)] =
    &[("gen_ai.completion.", ".finish_reason")];

/// Finish reasons that mean the model stopped to call tools.
pub static TOOL_CALL_FINISH_REASONS: &[&str] =
    &["tool_calls", "tool_use", "function_call", "tool-calls"];

/// JSON-text attributes with message parts; a part `{"type": "tool_call", ...}` is a
/// tool call (OTel GenAI output messages).
pub static OUTPUT_MESSAGE_KEYS: &[&str] = &["gen_ai.output.messages"];

/// JSON-text attributes holding a list of tool calls, each with its tool's name under
/// one of [`TOOL_CALL_NAME_FIELDS`] (the Vercel AI SDK's `ai.response.toolCalls`,
/// Mastra's step `output`).
pub static TOOL_CALL_LIST_KEYS: &[&str] = &["ai.response.toolCalls", "output"];

/// The name field of a tool call in JSON text.
pub static TOOL_CALL_NAME_FIELDS: &[&str] = &["toolName", "name"];

/// The part type of a tool call in [`OUTPUT_MESSAGE_KEYS`].
pub const TOOL_CALL_PART_TYPE: &str = "tool_call";

/// Attribute keys (or key prefixes of flattened lists) that record the tools offered
/// to an LLM call: GenAI `gen_ai.tool.definitions`, OpenInference
/// `llm.tools.<i>.tool.json_schema`, OpenLLMetry `llm.request.functions.<i>.*`.
pub static TOOL_DEFINITION_KEY_PREFIXES: &[&str] = &[
    "gen_ai.tool.definitions",
    "ai.prompt.tools",
    "llm.tools.",
    "llm.request.functions.",
];

/// Attribute keys (or key prefixes) that only a call with a response carries: its id,
/// finish reasons, output messages or output token count. An LLM call with none of them
/// failed before the model answered.
pub static RESPONSE_KEY_PREFIXES: &[&str] = &[
    "gen_ai.response.id",
    "gen_ai.response.finish_reasons",
    "llm.finish_reason",
    "gen_ai.output.messages",
    "llm.output_messages.",
    "gen_ai.completion",
    "output.value",
    "llm.token_count.completion",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "ai.response.",
];

/// The convention kind of a span: the most specific class among its kind keys (ties
/// go to the earlier key of [`KIND_KEYS`]), with the key that decided. One pass over
/// the span's attributes.
pub fn convention_class<'a, I>(attributes: I) -> Option<(&'static str, &'static Class)>
where
    I: IntoIterator<Item = (&'a str, &'a crate::model::Value)>,
{
    let mut best: Option<(usize, &'static str, &'static Class)> = None;
    for (key, value) in attributes {
        let Some(key_idx) = KIND_KEYS.iter().position(|k| k.key == key) else {
            continue;
        };
        let Some(text) = value.as_str() else {
            continue;
        };
        let kind_key = &KIND_KEYS[key_idx];
        let text = text.trim();
        let Some((_, class)) = kind_key
            .values
            .iter()
            .find(|(v, _)| v.eq_ignore_ascii_case(text))
        else {
            continue;
        };
        let better = match best {
            None => true,
            Some((best_idx, _, best_class)) => {
                (class.specificity(), std::cmp::Reverse(key_idx))
                    > (best_class.specificity(), std::cmp::Reverse(best_idx))
            }
        };
        if better {
            best = Some((key_idx, kind_key.key, class));
        }
    }
    best.map(|(_, key, class)| (key, class))
}

/// Verbs that name a node's step when they lead a `verb_object` node name
/// (`evaluate_answer`, `grade_response`, `retrieve_context`, `plan_steps`). Verbs whose
/// node often does something else (`generate_query_or_respond` plans) are left out.
pub static NODE_VERBS: &[(&str, StepKind)] = &[
    ("plan", Planner),
    ("retrieve", Retriever),
    ("rerank", Reranker),
    ("route", StepKind::Router),
    ("critique", Critic),
    ("review", Critic),
    ("grade", Critic),
    ("judge", Critic),
    ("evaluate", Critic),
    ("verify", Critic),
    ("moderate", Guardrail),
];

/// The step of a node name, if it is one: a [`NODE_NAMES`] name, else a `verb_object`
/// name led by one of [`NODE_VERBS`].
pub fn node_kind(name: &str) -> Option<&'static StepKind> {
    NODE_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .or_else(|| {
            let (verb, object) = name.split_once('_')?;
            if object.is_empty() {
                return None;
            }
            NODE_VERBS
                .iter()
                .find(|(v, _)| v.eq_ignore_ascii_case(verb))
        })
        .map(|(_, kind)| kind)
}

/// A span name less the first matching [`NODE_NAME_SUFFIXES`] suffix.
pub fn strip_node_suffix(name: &str) -> &str {
    for suffix in NODE_NAME_SUFFIXES {
        let Some(at) = name.len().checked_sub(suffix.len()) else {
            continue;
        };
        if at == 0 || !name.is_char_boundary(at) {
            continue;
        }
        let (head, tail) = name.split_at(at);
        if tail.eq_ignore_ascii_case(suffix) {
            return head;
        }
    }
    name
}
