//! Classify: the step of every span of a trajectory.
//!
//! Input: a [`Trajectory`] and the user's [`ClassifyConfig`]. Output: one
//! [`StepAssignment`] per span, in the order of `Trajectory::spans`.
//!
//! The order of precedence is product.md's (first match wins): the explicit
//! `agent.trajectory.step` attribute; user rules; semantic conventions of real
//! instrumentations (one table, [`table`]); otherwise the span is infrastructure and
//! belongs to its nearest step ancestor.

pub mod table;

use crate::model::{StepAssignment, Trajectory};

/// A user rule from `[[classify.rules]]`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub matcher: RuleMatch,
    pub step: crate::model::StepKind,
    /// Every span under a matching span gets this step too.
    pub subtree: bool,
}

#[derive(Debug, Clone)]
pub enum RuleMatch {
    AttributeEquals {
        attribute: String,
        equals: String,
    },
    AttributeExists {
        attribute: String,
    },
    SpanNameRegex(regex::Regex),
    /// Both must hold.
    AttributeEqualsAndName {
        attribute: String,
        equals: String,
        name: regex::Regex,
    },
}

#[derive(Debug, Clone, Default)]
pub struct ClassifyConfig {
    pub rules: Vec<Rule>,
}

pub fn classify(trajectory: &Trajectory, config: &ClassifyConfig) -> Vec<StepAssignment> {
    let _ = (trajectory, config);
    todo!("classify helper")
}
