//! The attribution rule table: which origin finding a failed run is blamed on, and which
//! step takes the blame. Documented row by row in `RULES.md` beside this file.
//!
//! Rows are tried in order; the first row with a match decides. Within a row, the
//! earliest matching trigger (in span start order) wins: upstream before downstream.

use crate::model::{FindingKind, StepKind};

/// Which findings a pattern accepts, by kind.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kinds {
    /// Any kind except `slow_step` (slowness alone is never an origin).
    Any,
    /// Failures of the span itself: error, exception, rate_limited, tool_error,
    /// invalid_tool_args, unknown_tool, loop.
    ErrorClass,
    /// Judgements of an output: `eval_failed` or a content-rule kind (e.g.
    /// `critic_rejected`).
    Verdict,
    /// These kind strings.
    Named(&'static [&'static str]),
}

/// Which findings a pattern accepts, by the step of their span.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Steps {
    Any,
    /// These step names.
    Named(&'static [&'static str]),
}

/// A finding pattern: kind and step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Match {
    pub kinds: Kinds,
    pub steps: Steps,
}

/// Which step a matching row blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blame {
    /// The step of the trigger finding's span.
    Origin,
    /// The step of the upstream finding's span.
    Upstream,
    /// The planner that issued the call: the trigger itself when it is a planner, else
    /// the nearest planner ancestor, else the last planner run that started before it.
    Planner,
    /// The generator that produced the judged answer: the last generator run that
    /// started before the trigger.
    Producer,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub name: &'static str,
    /// The finding the rule starts from.
    pub trigger: Match,
    /// An earlier finding (in span start order) that must exist and takes the blame.
    pub upstream: Option<Match>,
    pub blame: Blame,
    /// Confidence before the penalty for competing origins.
    pub confidence: f64,
}

const ANSWER_STEPS: Steps = Steps::Named(&["generator", "critic", "guardrail", "agent", "chain"]);
const LLM_STEPS: Steps = Steps::Named(&[
    "planner",
    "generator",
    "critic",
    "router",
    "guardrail",
    "embedding",
    "reranker",
]);

/// The table. Order matters: specific data-flow rules first, generic fallbacks last.
pub(crate) const RULES: &[Rule] = &[
    Rule {
        name: "empty_retrieval_before_bad_answer",
        trigger: Match {
            kinds: Kinds::Verdict,
            steps: ANSWER_STEPS,
        },
        upstream: Some(Match {
            kinds: Kinds::Named(&["empty_retrieval"]),
            steps: Steps::Any,
        }),
        blame: Blame::Upstream,
        confidence: 0.85,
    },
    Rule {
        name: "irrelevant_retrieval_before_bad_answer",
        trigger: Match {
            kinds: Kinds::Verdict,
            steps: ANSWER_STEPS,
        },
        upstream: Some(Match {
            kinds: Kinds::Named(&["eval_failed"]),
            steps: Steps::Named(&["retriever", "reranker", "memory"]),
        }),
        blame: Blame::Upstream,
        confidence: 0.75,
    },
    Rule {
        name: "truncated_before_failure",
        trigger: Match {
            kinds: Kinds::Any,
            steps: Steps::Any,
        },
        upstream: Some(Match {
            kinds: Kinds::Named(&["truncated"]),
            steps: Steps::Any,
        }),
        blame: Blame::Upstream,
        confidence: 0.7,
    },
    Rule {
        name: "invalid_tool_args_blame_planner",
        trigger: Match {
            kinds: Kinds::Named(&["invalid_tool_args"]),
            steps: Steps::Any,
        },
        upstream: None,
        blame: Blame::Planner,
        confidence: 0.8,
    },
    Rule {
        name: "unknown_tool_blames_planner",
        trigger: Match {
            kinds: Kinds::Named(&["unknown_tool"]),
            steps: Steps::Any,
        },
        upstream: None,
        blame: Blame::Planner,
        confidence: 0.8,
    },
    Rule {
        name: "loop_blames_planner",
        trigger: Match {
            kinds: Kinds::Named(&["loop"]),
            steps: Steps::Any,
        },
        upstream: None,
        blame: Blame::Planner,
        confidence: 0.75,
    },
    Rule {
        name: "tool_own_failure",
        trigger: Match {
            kinds: Kinds::ErrorClass,
            steps: Steps::Named(&["tool"]),
        },
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.8,
    },
    Rule {
        name: "guardrail_tripped_blames_generator",
        trigger: Match {
            kinds: Kinds::Named(&["error", "exception"]),
            steps: Steps::Named(&["guardrail"]),
        },
        upstream: None,
        blame: Blame::Producer,
        confidence: 0.6,
    },
    Rule {
        name: "empty_retrieval",
        trigger: Match {
            kinds: Kinds::Named(&["empty_retrieval"]),
            steps: Steps::Any,
        },
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.7,
    },
    Rule {
        name: "failing_llm_call",
        trigger: Match {
            kinds: Kinds::Named(&["error", "exception", "rate_limited", "truncated"]),
            steps: LLM_STEPS,
        },
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.75,
    },
    Rule {
        name: "step_error",
        trigger: Match {
            kinds: Kinds::ErrorClass,
            steps: Steps::Any,
        },
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.65,
    },
    Rule {
        name: "rejection_blames_generator",
        trigger: Match {
            kinds: Kinds::Verdict,
            steps: Steps::Named(&["critic", "guardrail"]),
        },
        upstream: None,
        blame: Blame::Producer,
        confidence: 0.7,
    },
    Rule {
        name: "failed_evaluation",
        trigger: Match {
            kinds: Kinds::Verdict,
            steps: Steps::Any,
        },
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.6,
    },
    Rule {
        name: "any_signal",
        trigger: Match {
            kinds: Kinds::Any,
            steps: Steps::Any,
        },
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.4,
    },
];

impl Match {
    pub(crate) fn accepts(&self, kind: &FindingKind, step: &StepKind) -> bool {
        let kind_ok = match self.kinds {
            Kinds::Any => *kind != FindingKind::SlowStep,
            Kinds::ErrorClass => kind.is_error_class(),
            Kinds::Verdict => matches!(kind, FindingKind::EvalFailed | FindingKind::Custom(_)),
            Kinds::Named(names) => names.contains(&kind.as_str()),
        };
        kind_ok
            && match self.steps {
                Steps::Any => true,
                Steps::Named(names) => names.contains(&step.as_str()),
            }
    }
}
