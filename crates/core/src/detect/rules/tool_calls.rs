//! Tool calls that could not work: a call naming a tool that was never declared to the
//! model (`llm.tools.*`, `gen_ai.tool.definitions`) gives `unknown_tool`; call arguments
//! that start as JSON but do not parse give `invalid_tool_args`.
//!
//! Calls are read on the model span that asked for them (OpenInference
//! `llm.output_messages.*.tool_calls.*`, OpenLLMetry `gen_ai.completion.*.tool_calls.*`,
//! GenAI `gen_ai.output.messages`) and on tool spans (`tool.name`, `gen_ai.tool.name`,
//! `gen_ai.tool.call.arguments`, `tool_call.function.arguments`). With no declared
//! tools anywhere in the trajectory, names are not checked.

use crate::detect::signals::{
    clip, declared_tools, is_broken_json, is_tool_span, requested_calls, tool_name,
};
use crate::detect::Ctx;
use crate::model::{Finding, FindingKind, StepKind};

const ARGUMENT_KEYS: [&str; 2] = ["gen_ai.tool.call.arguments", "tool_call.function.arguments"];

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mut all_declared = Vec::new();
    // Agents the run knows are callable too: a delegation to a sub-agent (managed
    // agents, agents called as tools, handoffs to a named agent) is no unknown tool.
    let mut agents = Vec::new();
    for (i, span) in ctx.spans() {
        declared_tools(span, &mut all_declared);
        if matches!(ctx.step_ref(i), StepKind::Agent | StepKind::Critic) {
            if let Some(name) = crate::classify::agent_name(span) {
                agents.push(name.to_string());
            }
        }
        for (key, value) in span.attributes.iter() {
            let sub_agent = crate::classify::table::SUB_AGENT_NAME_KEYS
                .iter()
                .any(|(prefix, suffix)| key.starts_with(prefix) && key.ends_with(suffix));
            if let (true, Some(name)) = (sub_agent, value.as_str()) {
                agents.push(name.to_string());
            }
        }
    }
    all_declared.sort_unstable();
    all_declared.dedup();
    let mut own = Vec::new();
    for (i, span) in ctx.spans() {
        let step = ctx.step(i);
        let calls = requested_calls(span);
        if !calls.is_empty() {
            own.clear();
            declared_tools(span, &mut own);
            let declared = if own.is_empty() { &all_declared } else { &own };
            let unknown: Vec<&str> = calls
                .iter()
                .map(|c| c.name.as_str())
                .filter(|n| !declared.is_empty() && !declared.iter().any(|d| d == n))
                .filter(|n| !agents.iter().any(|a| a == n))
                .collect();
            if let Some(first) = unknown.first() {
                let reason = format!(
                    "{} span `{}` called undeclared tool{} {} (declared: {})",
                    step.as_str(),
                    span.name,
                    if unknown.len() > 1 { "s" } else { "" },
                    quoted(&unknown),
                    quoted(declared),
                );
                out.push(
                    Finding::new(
                        i,
                        step.clone(),
                        FindingKind::UnknownTool,
                        reason,
                        "tool_calls",
                    )
                    .with_subject(first),
                );
            }
            if let Some(bad) = calls
                .iter()
                .find(|c| c.arguments.as_deref().is_some_and(is_broken_json))
            {
                let reason = format!(
                    "{} span `{}` called tool `{}` with arguments that are not valid JSON: {}",
                    step.as_str(),
                    span.name,
                    bad.name,
                    clip(bad.arguments.as_deref().unwrap_or_default(), 200),
                );
                out.push(
                    Finding::new(
                        i,
                        step.clone(),
                        FindingKind::InvalidToolArgs,
                        reason,
                        "tool_calls",
                    )
                    .with_subject(&bad.name),
                );
            }
        }
        // A delegation to an agent is no tool call to check.
        if !is_tool_span(span, &step) || matches!(step, StepKind::Agent | StepKind::Critic) {
            continue;
        }
        let name = tool_name(span);
        if let Some(name) = name {
            // Frameworks sanitise tool names for the model (`Delegate work to coworker`
            // is offered as `delegate_work_to_coworker`).
            let known = all_declared.iter().any(|d| same_tool_name(d, name))
                || agents.iter().any(|a| a == name);
            if !all_declared.is_empty() && !known {
                let reason = format!(
                    "tool `{name}` is not among the declared tools ({})",
                    quoted(&all_declared)
                );
                out.push(
                    Finding::new(
                        i,
                        step.clone(),
                        FindingKind::UnknownTool,
                        reason,
                        "tool.name",
                    )
                    .with_subject(name),
                );
            }
        }
        if let Some((key, args)) = ARGUMENT_KEYS
            .iter()
            .find_map(|k| span.attributes.get_str(k).map(|v| (*k, v)))
        {
            if is_broken_json(args) {
                let tool = name.unwrap_or(&span.name);
                let reason = format!(
                    "tool `{tool}` was called with arguments that are not valid JSON: {}",
                    clip(args, 200)
                );
                out.push(
                    Finding::new(i, step, FindingKind::InvalidToolArgs, reason, key)
                        .with_subject(tool),
                );
            }
        }
    }
}

/// Tool names compared as frameworks sanitise them: case, spaces, dashes and
/// underscores aside.
fn same_tool_name(a: &str, b: &str) -> bool {
    a == b || crate::classify::squashed(a) == crate::classify::squashed(b)
}

fn quoted<S: AsRef<str>>(names: &[S]) -> String {
    let mut s = String::new();
    for (k, n) in names.iter().enumerate() {
        if k > 0 {
            s.push_str(", ");
        }
        s.push('`');
        s.push_str(n.as_ref());
        s.push('`');
    }
    s
}
