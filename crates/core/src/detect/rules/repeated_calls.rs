//! Loops by repetition: the same tool called with the same arguments at least
//! `loop_threshold` times in one trajectory, each call answering (the agent is not
//! making progress). Calls that raised are retries of a failing tool, not a loop.
//!
//! Arguments are compared in canonical form (JSON with sorted keys, else trimmed text).
//! The finding sits on the call that reached the threshold; its score is the total
//! number of identical calls. Iteration-limit errors (`GraphRecursionError`, ...) are
//! the errors rule's.

use std::collections::HashMap;

use crate::detect::signals::{canonical_arguments, clip, is_tool_span, tool_arguments, tool_name};
use crate::detect::Ctx;
use crate::model::{Finding, FindingKind, StepKind};

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let threshold = ctx.config.loop_threshold.max(2) as usize;
    let mut keys: Vec<Option<String>> = vec![None; ctx.traj.spans.len()];
    let mut groups: Vec<(String, String, Vec<u32>)> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, span) in ctx.spans() {
        let step = ctx.step_ref(i);
        if !is_tool_span(span, step) {
            continue;
        }
        // A call that raised is a retry of a failing tool: its error explains the
        // repetition, not the planner's lack of progress.
        if span.status == crate::model::SpanStatus::Error
            || span.events.iter().any(|e| &*e.name == "exception")
        {
            continue;
        }
        let args = tool_arguments(span);
        let name = match tool_name(span) {
            Some(n) => n,
            None if matches!(step, StepKind::Tool | StepKind::Retriever) && args.is_some() => {
                &span.name
            }
            None => continue,
        };
        let canonical = args
            .as_ref()
            .map(|(_, a)| canonical_arguments(a))
            .unwrap_or_default();
        let key = format!("{name}\u{0}{canonical}");
        // Two instrumentations may wrap the same call: count the outer span only.
        let parent = ctx.traj.parent.get(i as usize).copied().flatten();
        if parent.is_some_and(|p| keys[p as usize].as_deref() == Some(key.as_str())) {
            continue;
        }
        let g = *by_key.entry(key.clone()).or_insert_with(|| {
            groups.push((name.to_string(), canonical, Vec::new()));
            groups.len() - 1
        });
        groups[g].2.push(i);
        keys[i as usize] = Some(key);
    }
    for (name, args, spans) in groups {
        if spans.len() < threshold {
            continue;
        }
        let at = spans[threshold - 1];
        let reason = format!(
            "tool `{name}` was called {} times with the same arguments {}",
            spans.len(),
            if args.is_empty() {
                "(none)".into()
            } else {
                clip(&args, 200)
            }
        );
        out.push(
            Finding::new(
                at,
                ctx.step(at),
                FindingKind::Loop,
                reason,
                "repeated_calls",
            )
            .with_score(spans.len() as f64)
            .with_subject(&name),
        );
    }
}
