//! Detect: failure signals of a classified trajectory, each a [`Finding`] with a reason.
//!
//! Input: a [`Trajectory`], its [`StepAssignment`]s (`steps[i]` for `spans[i]`) and a
//! [`DetectConfig`]. Output: findings sorted by span, then rule order.
//!
//! Each rule lives in its own file under `rules/` and is registered in one list,
//! [`rules::RULES`]. Rules only read; a rule never fails (malformed attributes are
//! skipped) and never panics on input. Findings start with `propagated = false`; the
//! attribute stage decides which ones are origins.
//!
//! Attribute values that are JSON documents (tool outputs, tool definitions, document
//! lists) are parsed only through `signals::parse_json`; rules inspect the parsed value.
//! This is the one place of the core that reads JSON text: the data itself is JSON,
//! not a wire format.
//!
//! Cost: a rule is a pass over the spans. The one walk up the tree, `Ctx::run_of`, may
//! be called per span; a trajectory is never deeper than its depth cap
//! (`max_trace_depth`, see [`crate::model::trajectory`]), so a rule does O(n · cap) work
//! at most.

pub mod config;
pub(crate) mod rules;
pub(crate) mod signals;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;

pub use config::{DetectConfig, DetectConfigError, RawDetectConfig, RawEvaluator, RawOutputRule};
pub use rules::MISROUTED_KIND;
pub(crate) use signals::is_outgoing_call;
pub use signals::MODEL_ERROR_TEXT;

use crate::model::{
    Finding, FindingKind, SpanId, SpanRecord, StepAssignment, StepKind, Trajectory,
};

/// All failure signals of `trajectory`.
pub fn detect(
    trajectory: &Trajectory,
    steps: &[StepAssignment],
    config: &DetectConfig,
) -> Vec<Finding> {
    debug_assert_eq!(trajectory.spans.len(), steps.len());
    let ctx = Ctx::new(trajectory, steps, config);
    let mut tagged: Vec<(usize, Finding)> = Vec::new();
    let mut buf = Vec::new();
    for (rule_index, rule) in rules::RULES.iter().enumerate() {
        (rule.run)(&ctx, &mut buf);
        if !buf.is_empty() {
            tracing::trace!(
                rule = rule.name,
                count = buf.len(),
                "Rule found failure signals."
            );
        }
        tagged.extend(buf.drain(..).map(|f| (rule_index, f)));
    }
    // By span (canonical start order), then rule order; the sort is stable, so detection
    // order breaks the remaining ties.
    tagged.sort_by_key(|(rule_index, f)| (f.span, *rule_index));
    // A critic's verdict read with no configuration gives way to a configured rule or
    // an evaluation that already judged the same critic run.
    let judged: std::collections::HashSet<u32> = tagged
        .iter()
        .filter(|(_, f)| {
            f.source != rules::CRITIC_VERDICT_SOURCE
                && matches!(f.kind, FindingKind::EvalFailed | FindingKind::Custom(_))
        })
        .map(|(_, f)| ctx.run_of(f.span))
        .collect();
    tagged
        .into_iter()
        .map(|(_, f)| f)
        .filter(|f| f.source != rules::CRITIC_VERDICT_SOURCE || !judged.contains(&f.span))
        .collect()
}

/// What every rule reads: the trajectory, the steps, the config and an index by span id.
pub(crate) struct Ctx<'a> {
    pub traj: &'a Trajectory,
    pub steps: &'a [StepAssignment],
    pub config: &'a DetectConfig,
    by_id: HashMap<SpanId, u32>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        traj: &'a Trajectory,
        steps: &'a [StepAssignment],
        config: &'a DetectConfig,
    ) -> Ctx<'a> {
        let by_id = traj
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id, i as u32))
            .collect();
        Ctx {
            traj,
            steps,
            config,
            by_id,
        }
    }

    pub(crate) fn span(&self, i: u32) -> &'a SpanRecord {
        &self.traj.spans[i as usize]
    }

    /// The spans with their indices.
    pub(crate) fn spans(&self) -> impl Iterator<Item = (u32, &'a SpanRecord)> {
        self.traj
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u32, s))
    }

    /// The step of span `i`; `agent` when the classifier gave none (a length mismatch).
    pub(crate) fn step(&self, i: u32) -> StepKind {
        self.steps
            .get(i as usize)
            .map(|s| s.kind.clone())
            .unwrap_or(StepKind::Agent)
    }

    pub(crate) fn step_ref(&self, i: u32) -> &StepKind {
        const AGENT: &StepKind = &StepKind::Agent;
        self.steps.get(i as usize).map(|s| &s.kind).unwrap_or(AGENT)
    }

    fn run_start(&self, i: u32) -> bool {
        self.steps.get(i as usize).is_some_and(|s| s.run_start)
    }

    pub(crate) fn find(&self, id: SpanId) -> Option<u32> {
        self.by_id.get(&id).copied()
    }

    /// The agent span that span `i` serves: its nearest strict agent ancestor.
    pub(crate) fn agent_of(&self, i: u32) -> Option<u32> {
        let mut cur = self.traj.parent.get(i as usize).copied().flatten();
        for _ in 0..self.traj.spans.len() {
            let p = cur?;
            if *self.step_ref(p) == StepKind::Agent {
                return Some(p);
            }
            cur = self.traj.parent.get(p as usize).copied().flatten();
        }
        None
    }

    /// The span that starts the step run containing span `i`: the nearest ancestor-or-self
    /// marked `run_start` with the same step, else `i`. At most the depth cap of steps.
    pub(crate) fn run_of(&self, i: u32) -> u32 {
        let step = self.step_ref(i);
        let mut cur = i;
        // Bounded by the number of spans: a parent chain cannot be longer.
        for _ in 0..self.traj.spans.len() {
            if self.run_start(cur) {
                return cur;
            }
            match self.traj.parent.get(cur as usize).copied().flatten() {
                Some(p) if self.step_ref(p) == step => cur = p,
                _ => return i,
            }
        }
        i
    }
}
