//! Step kinds: what part of an agent run a span belongs to.

use super::intern::Str;
use crate::conventions;

/// The step a span belongs to. Known names map to the fixed kinds; anything else that a
/// user names explicitly is kept as a custom step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepKind {
    /// The run itself / the orchestrator.
    Agent,
    /// An LLM call that decides the next action or tool calls.
    Planner,
    Retriever,
    Reranker,
    Embedding,
    /// An LLM call that produces content or answers.
    Generator,
    /// Evaluator, reflection or judge.
    Critic,
    Tool,
    Guardrail,
    Router,
    Memory,
    /// A container with no behaviour of its own.
    Chain,
    Custom(Str),
}

impl StepKind {
    pub const BUILTIN: [StepKind; 12] = [
        StepKind::Agent,
        StepKind::Planner,
        StepKind::Retriever,
        StepKind::Reranker,
        StepKind::Embedding,
        StepKind::Generator,
        StepKind::Critic,
        StepKind::Tool,
        StepKind::Guardrail,
        StepKind::Router,
        StepKind::Memory,
        StepKind::Chain,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            StepKind::Agent => "agent",
            StepKind::Planner => "planner",
            StepKind::Retriever => "retriever",
            StepKind::Reranker => "reranker",
            StepKind::Embedding => "embedding",
            StepKind::Generator => "generator",
            StepKind::Critic => "critic",
            StepKind::Tool => "tool",
            StepKind::Guardrail => "guardrail",
            StepKind::Router => "router",
            StepKind::Memory => "memory",
            StepKind::Chain => "chain",
            StepKind::Custom(name) => name,
        }
    }

    /// A built-in kind by its name (case-insensitive), or `None`.
    pub fn builtin(name: &str) -> Option<StepKind> {
        StepKind::BUILTIN
            .iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name))
            .cloned()
    }

    /// A step name as a user wrote it: a built-in kind or a custom step.
    pub fn from_name(name: &str) -> StepKind {
        StepKind::builtin(name).unwrap_or_else(|| StepKind::Custom(name.into()))
    }
}

/// Where a span's step came from, in the order of precedence (first match wins).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StepSource {
    /// The explicit `agent.trajectory.step` attribute.
    Explicit,
    /// A user rule from the config file (index into the rule list).
    Rule(usize),
    /// A user rule with `subtree = true` on an ancestor.
    RuleSubtree(usize),
    /// A semantic convention; the attribute key that decided it.
    Convention(&'static str),
    /// A LangGraph-style node name on this span.
    NodeName,
    /// Inside a node that named its step (e.g. an output parser in `generate`).
    Node,
    /// The root of the trajectory, not marked more specifically.
    Root,
    /// Infrastructure: the step of the nearest step ancestor.
    Inherited,
}

impl StepSource {
    /// The `step_source` string of the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            StepSource::Explicit => conventions::EXPLICIT_STEP,
            StepSource::Rule(_) => "rule",
            StepSource::RuleSubtree(_) => "rule_subtree",
            StepSource::Convention(key) => key,
            StepSource::NodeName => "node_name",
            StepSource::Node => "node",
            StepSource::Root => "root",
            StepSource::Inherited => "inherited",
        }
    }
}

/// The classification of one span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepAssignment {
    pub kind: StepKind,
    pub source: StepSource,
    /// True for the outermost span of a run of this step: a step run is counted once per
    /// such span (a planner node and the LLM call inside it are one planner run).
    pub run_start: bool,
}
