//! The result of analysing one trajectory: steps, findings, outcome and root cause.

use std::sync::Arc;

use super::step::{StepAssignment, StepKind};
use super::trajectory::Trajectory;

/// What kind of failure signal a finding is. The names are the `kind` strings of the API
/// and the metric labels, so they never change once released.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// Span status ERROR.
    Error,
    /// An `exception` event.
    Exception,
    /// An evaluator score or label below its threshold.
    EvalFailed,
    /// A retriever that returned no documents.
    EmptyRetrieval,
    /// A tool that returned an error as data (`{"error": ...}`).
    ToolError,
    /// A tool called with arguments that failed validation.
    InvalidToolArgs,
    /// A tool call naming a tool that does not exist.
    UnknownTool,
    /// An LLM response cut off by the token limit (finish reason `length`).
    Truncated,
    /// The same action repeated until an iteration limit.
    Loop,
    /// A step slower than its SLO.
    SlowStep,
    /// A rate limit or quota error from a provider.
    RateLimited,
    /// A configured content rule matched; the rule names the kind.
    Custom(Arc<str>),
}

impl FindingKind {
    pub fn as_str(&self) -> &str {
        match self {
            FindingKind::Error => "error",
            FindingKind::Exception => "exception",
            FindingKind::EvalFailed => "eval_failed",
            FindingKind::EmptyRetrieval => "empty_retrieval",
            FindingKind::ToolError => "tool_error",
            FindingKind::InvalidToolArgs => "invalid_tool_args",
            FindingKind::UnknownTool => "unknown_tool",
            FindingKind::Truncated => "truncated",
            FindingKind::Loop => "loop",
            FindingKind::SlowStep => "slow_step",
            FindingKind::RateLimited => "rate_limited",
            FindingKind::Custom(name) => name,
        }
    }
}

/// One failure signal on one span.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Index of the span in `Trajectory::spans`.
    pub span: u32,
    pub step: StepKind,
    pub kind: FindingKind,
    /// A readable sentence built from the data.
    pub reason: String,
    pub score: Option<f64>,
    /// Where the signal came from: an attribute key, event name or rule name.
    pub source: &'static str,
    /// True when a failing descendant explains this finding (it is not an origin).
    pub propagated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    /// Step failures, but the run succeeded.
    Recovered,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Recovered => "recovered",
            Outcome::Failed => "failed",
        }
    }
}

/// The step blamed for a failed run, with the evidence that led there.
#[derive(Debug, Clone, PartialEq)]
pub struct RootCause {
    pub span: u32,
    pub step: StepKind,
    pub kind: FindingKind,
    pub reason: String,
    pub confidence: f64,
    /// Indices into `Analysis::findings`, in the order of the reasoning chain.
    pub evidence: Vec<usize>,
    /// The attribution rule that decided (its name in the rule table).
    pub rule: &'static str,
}

/// A trajectory with everything the pipeline concluded about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub trajectory: Arc<Trajectory>,
    /// `steps[i]` classifies `trajectory.spans[i]`.
    pub steps: Vec<StepAssignment>,
    pub findings: Vec<Finding>,
    pub outcome: Outcome,
    pub root_cause: Option<RootCause>,
}
