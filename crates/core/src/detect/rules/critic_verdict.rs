//! Critic verdicts: a critic step (a reviewer agent, a judge node or call) whose output
//! is a rejection — `REJECT: …`, `FAIL`, `{"verdict": "reject"}`, `approved: false` — is
//! a failed evaluation of the answer it judged, with no configuration.
//!
//! One finding per critic run, on the run's outermost span, reading the outputs of the
//! run's spans in order (a reviewer agent's own output, else its model calls'). The
//! first line that states a verdict decides; an approval ends the search.

use std::collections::HashSet;

use crate::content::{answer_text, verdict};
use crate::detect::signals::clip;
use crate::detect::Ctx;
use crate::model::{Finding, FindingKind, StepKind};

/// The `source` of the findings of this rule.
pub(crate) const SOURCE: &str = "critic_verdict";

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mut judged: HashSet<u32> = HashSet::new();
    for (i, span) in ctx.spans() {
        if *ctx.step_ref(i) != StepKind::Critic {
            continue;
        }
        let run = ctx.run_of(i);
        if judged.contains(&run) {
            continue;
        }
        let Some(text) = answer_text(span) else {
            continue;
        };
        match verdict(&text) {
            Some(false) => {}
            Some(true) => {
                judged.insert(run);
                continue;
            }
            None => continue,
        }
        judged.insert(run);
        let name = crate::classify::agent_name(ctx.span(run))
            .map(|n| n.to_string())
            .unwrap_or_else(|| ctx.span(run).name.to_string());
        let reason = format!(
            "critic `{name}` rejected the answer: {}",
            clip(text.trim(), 300)
        );
        out.push(
            Finding::new(
                run,
                StepKind::Critic,
                FindingKind::EvalFailed,
                reason,
                SOURCE,
            )
            .with_score(0.0)
            .with_subject(&name),
        );
    }
}
