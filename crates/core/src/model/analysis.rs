//! The result of analysing one trajectory: steps, findings, outcome and root cause.

use std::sync::Arc;

use super::intern::Str;
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

    /// The kind named `name`: a built-in kind by its string, else a custom kind.
    pub fn from_name(name: &str) -> FindingKind {
        const BUILTIN: [FindingKind; 11] = [
            FindingKind::Error,
            FindingKind::Exception,
            FindingKind::EvalFailed,
            FindingKind::EmptyRetrieval,
            FindingKind::ToolError,
            FindingKind::InvalidToolArgs,
            FindingKind::UnknownTool,
            FindingKind::Truncated,
            FindingKind::Loop,
            FindingKind::SlowStep,
            FindingKind::RateLimited,
        ];
        BUILTIN
            .iter()
            .find(|k| k.as_str() == name)
            .cloned()
            .unwrap_or_else(|| FindingKind::Custom(name.into()))
    }

    /// Kinds that report the span itself failing (an error, exception or refusal of its
    /// input), as opposed to judging its output or timing. Errors of this class
    /// propagate up the parent chain in most instrumentations.
    pub fn is_error_class(&self) -> bool {
        matches!(
            self,
            FindingKind::Error
                | FindingKind::Exception
                | FindingKind::ToolError
                | FindingKind::InvalidToolArgs
                | FindingKind::UnknownTool
                | FindingKind::Loop
                | FindingKind::RateLimited
        )
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
    /// What the signal is about, when it has a name: the evaluator of an `eval_failed`,
    /// the tool of a tool finding, the rule kind of a content rule.
    pub subject: Option<Str>,
    /// True for an evaluation that judges the whole task: a task-level evaluator
    /// (`task_completion`, ...) or an evaluation of the root span. Its failure fails the run.
    pub task_level: bool,
    /// True when a failing descendant explains this finding (it is not an origin).
    pub propagated: bool,
    /// True when the trace records, as data, that what failed was later redone
    /// successfully (a tool whose failed result and later good result are only seen in
    /// the requests of the model calls, with no tool span).
    pub redone: bool,
}

impl Finding {
    /// A finding with no score and no subject, not (yet) propagated.
    pub fn new(
        span: u32,
        step: StepKind,
        kind: FindingKind,
        reason: String,
        source: &'static str,
    ) -> Finding {
        Finding {
            span,
            step,
            kind,
            reason,
            score: None,
            source,
            subject: None,
            task_level: false,
            propagated: false,
            redone: false,
        }
    }

    pub fn with_score(mut self, score: f64) -> Finding {
        self.score = Some(score);
        self
    }

    pub fn with_subject(mut self, subject: &str) -> Finding {
        self.subject = Some(subject.into());
        self
    }
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
    /// The agent whose subtree holds the blamed span (the nearest agent run above it or
    /// the span itself), by the name the trace gives it.
    pub agent: Option<Str>,
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
