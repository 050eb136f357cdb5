//! The attribution rule table: which origin finding a failed run is blamed on, and which
//! step takes the blame. Documented row by row in `RULES.md` beside this file.
//!
//! Rows are tried in order; the first row with a match decides. Within a row, the
//! earliest matching trigger in data-flow order wins: upstream before downstream. The
//! data-flow order is the post-order of the span tree (a span after the spans inside it,
//! siblings in start order): a span's output exists once its children are done, so a
//! verdict on a container (the root's status, a task evaluation) comes after the work
//! it judges.

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
    /// An error-class finding that reports the run's time budget running out: its
    /// reason names a deadline or a timeout (`exceeded deadline of 25s`).
    Deadline,
    /// These kind strings.
    Named(&'static [&'static str]),
}

/// Words of a reason that report a time budget running out.
const DEADLINE_WORDS: [&str; 5] = [
    "deadline",
    "timed out",
    "timeout",
    "time limit",
    "time budget",
];

/// Whether a reason reports a deadline or a timeout.
pub(crate) fn names_deadline(reason: &str) -> bool {
    let lower = reason.to_ascii_lowercase();
    DEADLINE_WORDS.iter().any(|w| lower.contains(w))
}

/// Which findings a pattern accepts, by the step of their span.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Steps {
    Any,
    /// These step names.
    Named(&'static [&'static str]),
}

/// Which findings a pattern accepts, by where they sit in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    Any,
    /// A step of the run: not the root span.
    Step,
    /// The run's own outcome: a finding on the root span (its status, its evaluation)
    /// or a task-level evaluation. It says that the run failed, rarely why.
    Run,
}

/// A finding pattern: kind, step and site.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Match {
    pub kinds: Kinds,
    pub steps: Steps,
    pub site: Site,
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
    /// The generator that produced the judged answer: the trigger itself when it is a
    /// generator, else the last generator run before the trigger in data-flow order (for
    /// a verdict on the whole run, the last generator of the run).
    Producer,
    /// The step that used the time budget: a step over its latency SLO when one is,
    /// else the step run (not a container) that took the longest.
    BudgetUser,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub name: &'static str,
    /// The finding the rule starts from.
    pub trigger: Match,
    /// An earlier finding (in data-flow order, on another span) that must exist and
    /// takes the blame.
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

/// A trigger pattern on any site.
const fn any_site(kinds: Kinds, steps: Steps) -> Match {
    Match {
        kinds,
        steps,
        site: Site::Any,
    }
}

/// A trigger pattern on a step of the run (not the root).
const fn at_step(kinds: Kinds, steps: Steps) -> Match {
    Match {
        kinds,
        steps,
        site: Site::Step,
    }
}

/// A trigger pattern on the run's own outcome.
const fn at_run(kinds: Kinds) -> Match {
    Match {
        kinds,
        steps: Steps::Any,
        site: Site::Run,
    }
}

/// The table. Order matters: specific data-flow rules first, generic fallbacks last,
/// and the run's own outcome only when no step explains it.
pub(crate) const RULES: &[Rule] = &[
    Rule {
        name: "empty_retrieval_before_bad_answer",
        trigger: any_site(Kinds::Verdict, ANSWER_STEPS),
        upstream: Some(any_site(Kinds::Named(&["empty_retrieval"]), Steps::Any)),
        blame: Blame::Upstream,
        confidence: 0.85,
    },
    Rule {
        name: "irrelevant_retrieval_before_bad_answer",
        trigger: any_site(Kinds::Verdict, ANSWER_STEPS),
        upstream: Some(any_site(
            Kinds::Named(&["eval_failed"]),
            Steps::Named(&["retriever", "reranker", "memory"]),
        )),
        blame: Blame::Upstream,
        confidence: 0.75,
    },
    Rule {
        name: "misrouted_before_rejection",
        trigger: any_site(Kinds::Verdict, ANSWER_STEPS),
        upstream: Some(any_site(Kinds::Named(&["misrouted"]), Steps::Any)),
        blame: Blame::Upstream,
        confidence: 0.7,
    },
    Rule {
        name: "truncated_before_failure",
        trigger: any_site(Kinds::Any, Steps::Any),
        upstream: Some(any_site(Kinds::Named(&["truncated"]), Steps::Any)),
        blame: Blame::Upstream,
        confidence: 0.7,
    },
    Rule {
        name: "invalid_tool_args_blame_planner",
        trigger: any_site(Kinds::Named(&["invalid_tool_args"]), Steps::Any),
        upstream: None,
        blame: Blame::Planner,
        confidence: 0.8,
    },
    Rule {
        name: "unknown_tool_blames_planner",
        trigger: any_site(Kinds::Named(&["unknown_tool"]), Steps::Any),
        upstream: None,
        blame: Blame::Planner,
        confidence: 0.8,
    },
    Rule {
        name: "loop_blames_planner",
        trigger: any_site(Kinds::Named(&["loop"]), Steps::Any),
        upstream: None,
        blame: Blame::Planner,
        confidence: 0.75,
    },
    Rule {
        name: "tool_own_failure",
        trigger: at_step(Kinds::ErrorClass, Steps::Named(&["tool"])),
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.8,
    },
    Rule {
        name: "guardrail_tripped_blames_generator",
        trigger: at_step(
            Kinds::Named(&["error", "exception"]),
            Steps::Named(&["guardrail"]),
        ),
        upstream: None,
        blame: Blame::Producer,
        confidence: 0.6,
    },
    Rule {
        name: "empty_retrieval",
        trigger: any_site(Kinds::Named(&["empty_retrieval"]), Steps::Any),
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.7,
    },
    Rule {
        name: "failing_llm_call",
        trigger: any_site(
            Kinds::Named(&["error", "exception", "rate_limited", "truncated"]),
            LLM_STEPS,
        ),
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.75,
    },
    Rule {
        name: "agent_deadline_blames_the_step_that_used_it",
        trigger: at_step(Kinds::Deadline, Steps::Named(&["agent", "chain"])),
        upstream: None,
        blame: Blame::BudgetUser,
        confidence: 0.55,
    },
    Rule {
        name: "step_error",
        trigger: at_step(Kinds::ErrorClass, Steps::Any),
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.65,
    },
    Rule {
        name: "rejection_blames_generator",
        trigger: at_step(Kinds::Verdict, Steps::Named(&["critic", "guardrail"])),
        upstream: None,
        blame: Blame::Producer,
        confidence: 0.7,
    },
    Rule {
        name: "failed_evaluation",
        trigger: at_step(Kinds::Verdict, Steps::Any),
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.6,
    },
    Rule {
        name: "slow_step_before_run_failure",
        trigger: at_run(Kinds::ErrorClass),
        upstream: Some(any_site(Kinds::Named(&["slow_step"]), Steps::Any)),
        blame: Blame::Upstream,
        confidence: 0.6,
    },
    Rule {
        name: "run_deadline_blames_the_step_that_used_it",
        trigger: at_run(Kinds::Deadline),
        upstream: None,
        blame: Blame::BudgetUser,
        confidence: 0.55,
    },
    Rule {
        name: "task_failure_blames_generator",
        trigger: at_run(Kinds::Verdict),
        upstream: None,
        blame: Blame::Producer,
        confidence: 0.55,
    },
    Rule {
        name: "run_failed",
        trigger: at_run(Kinds::Any),
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.5,
    },
    Rule {
        name: "any_signal",
        trigger: any_site(Kinds::Any, Steps::Any),
        upstream: None,
        blame: Blame::Origin,
        confidence: 0.4,
    },
];

impl Match {
    /// Whether the pattern accepts a finding of `kind` on a `step`; `run_site` is true
    /// for a finding on the run's own outcome (see [`Site::Run`]).
    pub(crate) fn accepts(
        &self,
        kind: &FindingKind,
        step: &StepKind,
        reason: &str,
        run_site: bool,
    ) -> bool {
        let site_ok = match self.site {
            Site::Any => true,
            Site::Step => !run_site,
            Site::Run => run_site,
        };
        let kind_ok = match self.kinds {
            Kinds::Any => *kind != FindingKind::SlowStep,
            Kinds::ErrorClass => kind.is_error_class(),
            Kinds::Deadline => kind.is_error_class() && names_deadline(reason),
            Kinds::Verdict => is_verdict(kind),
            Kinds::Named(names) => names.contains(&kind.as_str()),
        };
        site_ok
            && kind_ok
            && match self.steps {
                Steps::Any => true,
                Steps::Named(names) => names.contains(&step.as_str()),
            }
    }
}

/// Whether a finding is a verdict on an answer: a failed evaluation or a content rule.
/// A misrouting is a finding about the routing, not a verdict on an answer.
pub(crate) fn is_verdict(kind: &FindingKind) -> bool {
    match kind {
        FindingKind::EvalFailed => true,
        FindingKind::Custom(k) => &**k != crate::detect::MISROUTED_KIND,
        _ => false,
    }
}
