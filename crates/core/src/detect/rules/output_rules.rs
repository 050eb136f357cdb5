//! Content rules from `[[detect.output_rules]]`: a regex on the output text of a step
//! (`output.value`, the completion, `traceloop.entity.output`, GenAI output messages).
//! One finding per step run and rule, on the first span of the run whose output matches.

use std::collections::HashSet;

use crate::detect::signals::{clip, output_text};
use crate::detect::Ctx;
use crate::model::Finding;

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let rules = &ctx.config.output_rules;
    if rules.is_empty() {
        return;
    }
    let mut reported: HashSet<(usize, u32)> = HashSet::new();
    for (i, span) in ctx.spans() {
        let step = ctx.step_ref(i);
        if !rules.iter().any(|r| r.step == *step) {
            continue;
        }
        let Some(text) = output_text(span) else {
            continue;
        };
        for (rule_index, rule) in rules.iter().enumerate() {
            if rule.step != *step || !rule.pattern.is_match(&text) {
                continue;
            }
            let run = ctx.run_of(i);
            if !reported.insert((rule_index, run)) {
                continue;
            }
            let reason = format!(
                "{} output matched /{}/: {}",
                step.as_str(),
                rule.pattern.as_str(),
                clip(text.trim(), 300)
            );
            out.push(
                Finding::new(i, step.clone(), rule.kind.clone(), reason, "output_rules")
                    .with_subject(rule.kind.as_str()),
            );
        }
    }
}
