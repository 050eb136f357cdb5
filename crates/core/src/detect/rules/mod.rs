//! The detection rules, one per file, registered in [`RULES`].
//!
//! Adding a rule touches two places: its file and the list below. The order of the list
//! is the order of findings on the same span.

mod critic_verdict;
mod empty_retrieval;
mod errors;
mod evaluations;
mod misrouting;
mod output_rules;
mod repeated_calls;
mod request_tool_results;
mod slow_step;
mod step_limit;
mod tool_calls;
mod tool_output;
mod tool_schema;
mod truncation;

use crate::detect::Ctx;

use crate::model::Finding;
pub(crate) use critic_verdict::SOURCE as CRITIC_VERDICT_SOURCE;
pub use misrouting::KIND as MISROUTED_KIND;
#[cfg(test)]
pub(crate) use tool_schema::violation as schema_violation;

/// A detection rule: a name (for logs and docs) and the function that appends findings.
pub(crate) struct Rule {
    pub name: &'static str,
    pub run: fn(&Ctx<'_>, &mut Vec<Finding>),
}

/// Every rule, in the order findings on one span are listed.
pub(crate) const RULES: &[Rule] = &[
    Rule {
        name: "errors",
        run: errors::run,
    },
    Rule {
        name: "tool_output",
        run: tool_output::run,
    },
    Rule {
        name: "tool_calls",
        run: tool_calls::run,
    },
    Rule {
        name: "request_tool_results",
        run: request_tool_results::run,
    },
    Rule {
        name: "tool_schema",
        run: tool_schema::run,
    },
    Rule {
        name: "empty_retrieval",
        run: empty_retrieval::run,
    },
    Rule {
        name: "truncation",
        run: truncation::run,
    },
    Rule {
        name: "repeated_calls",
        run: repeated_calls::run,
    },
    Rule {
        name: "step_limit",
        run: step_limit::run,
    },
    Rule {
        name: "evaluations",
        run: evaluations::run,
    },
    Rule {
        name: "output_rules",
        run: output_rules::run,
    },
    Rule {
        name: "misrouting",
        run: misrouting::run,
    },
    Rule {
        name: "critic_verdict",
        run: critic_verdict::run,
    },
    Rule {
        name: "slow_step",
        run: slow_step::run,
    },
];
