//! The attribute keys of the conventions faultline reads, each spelled once.
//!
//! OpenTelemetry semantic conventions (resource and GenAI), OpenInference, traceAI
//! (`fi.*`), OpenLLMetry (`traceloop.*`) and faultline's own explicit step attribute.
//! Code that reads a convention names the constant here, so a key that an
//! instrumentation renames is changed in one place, and a reader can see every key
//! faultline depends on. A leaf module: it depends on nothing, and [`crate::model`] may
//! use it.
//!
//! Tables of keys that are rules as data (the span-kind values of `classify::table`,
//! the cohort dimensions of the service's config) name these constants too.

// ---- resource ----

/// The service a span comes from (resource attribute).
pub const SERVICE_NAME: &str = "service.name";
pub const SERVICE_VERSION: &str = "service.version";
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";

// ---- sessions and users ----

pub const SESSION_ID: &str = "session.id";
pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";
pub const TRACELOOP_SESSION_ID: &str = "traceloop.association.properties.session_id";
pub const USER_ID: &str = "user.id";

// ---- span kinds ----

pub const OPENINFERENCE_SPAN_KIND: &str = "openinference.span.kind";
pub const FI_SPAN_KIND: &str = "fi.span.kind";
pub const GEN_AI_SPAN_KIND: &str = "gen_ai.span.kind";
pub const TRACELOOP_SPAN_KIND: &str = "traceloop.span.kind";

/// The upper-case span-kind attributes (`LLM`, `TOOL`, `RETRIEVER`, `EVALUATOR`, ...),
/// in the order they are trusted: a span's kind is the value of the first one present.
/// (`traceloop.span.kind` has lower-case values of its own and no evaluator.)
pub const SPAN_KIND_KEYS: [&str; 3] = [OPENINFERENCE_SPAN_KIND, FI_SPAN_KIND, GEN_AI_SPAN_KIND];

/// The span kind of an evaluator, compared without case.
pub const EVALUATOR_KIND: &str = "EVALUATOR";

/// faultline's explicit step attribute; it wins over every inference.
pub const EXPLICIT_STEP: &str = "agent.trajectory.step";

// ---- GenAI operations and models ----

pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const LLM_MODEL_NAME: &str = "llm.model_name";
pub const LLM_REQUEST_TYPE: &str = "llm.request.type";
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";

// ---- evaluations (`gen_ai.evaluation.result` events and log records) ----

pub const GEN_AI_EVALUATION_RESULT: &str = "gen_ai.evaluation.result";
pub const GEN_AI_EVALUATION_NAME: &str = "gen_ai.evaluation.name";
pub const GEN_AI_EVALUATION_SCORE_VALUE: &str = "gen_ai.evaluation.score.value";
pub const GEN_AI_EVALUATION_SCORE_LABEL: &str = "gen_ai.evaluation.score.label";
pub const GEN_AI_EVALUATION_EXPLANATION: &str = "gen_ai.evaluation.explanation";
pub const GEN_AI_EVALUATION_TARGET_SPAN_ID: &str = "gen_ai.evaluation.target_span_id";

/// The key prefixes of every evaluator result written as span attributes: OpenInference
/// `evaluations.<i>.*` and `annotations.<i>.*` (and their `trace.` scoped forms),
/// traceAI / GenAI `gen_ai.evaluation.*` (the target span id included), ai-evaluation
/// `eval.<metric>`. A linked evaluation keeps only these attributes of its span
/// (`model::LinkedEvaluation`); the `eval_failed` rule reads nothing else from it.
pub const EVALUATION_ATTRIBUTE_PREFIXES: [&str; 6] = [
    "evaluations.",
    "annotations.",
    "trace.evaluations.",
    "trace.annotations.",
    "gen_ai.evaluation.",
    "eval.",
];

// ---- cohort dimensions ----

pub const HTTP_ROUTE: &str = "http.route";
pub const PROMPT_VERSION: &str = "prompt.version";
