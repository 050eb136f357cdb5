//! Turn roles: whether a model call planned the next action or wrote the answer, read
//! from the calls and tool executions of the agent it serves.
//!
//! A model call is a `planner` when its response holds tool calls (other than a
//! final-answer tool, whose call *is* the answer), or when a tool execution of the same
//! agent starts after it and before the agent's next model call (instrumentations that
//! record no output at all still show what followed). A call that failed before the
//! model answered takes the role of the turn it served: before any tool result of its
//! agent, the planner; after one, the generator. Any other call is the generator.
//!
//! Runs after the top-down walk, on the model calls it classified by their own
//! convention (not those inside a node or another step); steps inherited from a
//! changed call follow it. Linear in spans, plus a sort of each agent's calls.

use serde_json::Value as Json;

use super::table::{self, Class};
use crate::model::{SpanRecord, SpanStatus, StepAssignment, StepKind, StepSource, Trajectory};

pub(super) fn assign_roles(
    traj: &Trajectory,
    children: &[Vec<u32>],
    order: &[u32],
    class: &[Option<(&'static str, &'static Class)>],
    assignments: &mut [StepAssignment],
) {
    let n = traj.spans.len();
    // The agent each span serves: its nearest agent ancestor (`u32::MAX` for none).
    let mut owner = vec![u32::MAX; n];
    for &i in order {
        for &c in &children[i as usize] {
            owner[c as usize] = if assignments[i as usize].kind == StepKind::Agent {
                i
            } else {
                owner[i as usize]
            };
        }
    }
    // Actions per agent: tool executions and sub-agent runs, as (start, end); results
    // also count memory reads and writes (a call after them answers with them).
    let mut actions: std::collections::HashMap<u32, Vec<(u64, u64)>> = Default::default();
    let mut results: std::collections::HashMap<u32, Vec<u64>> = Default::default();
    let mut calls: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for &i in order {
        let a = &assignments[i as usize];
        let span = &traj.spans[i as usize];
        let is_action = a.run_start
            && match a.kind {
                StepKind::Tool | StepKind::Retriever => true,
                // A sub-agent the call delegated to (a judge is not delegated to).
                StepKind::Agent => owner[i as usize] != u32::MAX,
                _ => false,
            };
        if is_action {
            actions
                .entry(owner[i as usize])
                .or_default()
                .push((span.start_unix_nano, span.end_unix_nano));
        }
        if is_action || (a.run_start && a.kind == StepKind::Memory) {
            results
                .entry(owner[i as usize])
                .or_default()
                .push(span.end_unix_nano);
        }
        let own_call = matches!(class[i as usize], Some((_, Class::Llm)))
            && matches!(a.source, StepSource::Convention(_))
            && matches!(a.kind, StepKind::Planner | StepKind::Generator);
        if own_call {
            calls.entry(owner[i as usize]).or_default().push(i);
        }
    }
    let mut changed = false;
    for (agent, mut list) in calls {
        list.sort_by_key(|&i| (traj.spans[i as usize].start_unix_nano, i));
        let acts = actions.get(&agent).map(Vec::as_slice).unwrap_or(&[]);
        let ends = results.get(&agent).map(Vec::as_slice).unwrap_or(&[]);
        for (k, &i) in list.iter().enumerate() {
            let span = &traj.spans[i as usize];
            let next_call = list
                .get(k + 1)
                .map(|&j| traj.spans[j as usize].start_unix_nano)
                .unwrap_or(u64::MAX);
            let failed = failed(span)
                || children[i as usize]
                    .iter()
                    .any(|&c| super::error_record(&traj.spans[c as usize]).is_some());
            let kind = role(span, failed, acts, ends, next_call);
            if assignments[i as usize].kind != kind {
                assignments[i as usize].kind = kind;
                changed = true;
            }
        }
    }
    if !changed {
        return;
    }
    // Inherited steps follow their parent; runs start where the step changes.
    let mut parent = vec![None; n];
    for &i in order {
        for &c in &children[i as usize] {
            parent[c as usize] = Some(i);
        }
    }
    for &i in order {
        let Some(p) = parent[i as usize] else {
            continue;
        };
        if assignments[i as usize].source == StepSource::Inherited {
            assignments[i as usize].kind = assignments[p as usize].kind.clone();
        } else {
            assignments[i as usize].run_start =
                assignments[p as usize].kind != assignments[i as usize].kind;
        }
    }
}

/// The role of one model call of an agent, given the agent's actions and the start of
/// its next model call.
/// `failed`: the call, or a record of its stream, reports an error.
fn role(
    span: &SpanRecord,
    failed: bool,
    actions: &[(u64, u64)],
    results: &[u64],
    next_call: u64,
) -> StepKind {
    let names = tool_call_names(span);
    if !names.is_empty() {
        let all_final = names.iter().all(|n| super::is_answer_tool(n));
        return if all_final {
            StepKind::Generator
        } else {
            StepKind::Planner
        };
    }
    if super::emits_tool_calls(span) {
        return StepKind::Planner;
    }
    if failed {
        // Before any result of the agent's steps, the call was planning the turn; after
        // one (a step's result ended before it, or its request carries a tool result),
        // it was answering with them.
        let after_result =
            results.iter().any(|&end| end <= span.start_unix_nano) || carries_tool_result(span);
        return if after_result {
            StepKind::Generator
        } else {
            StepKind::Planner
        };
    }
    let followed_by_action = actions
        .iter()
        .any(|&(start, _)| start >= span.start_unix_nano && start < next_call);
    if followed_by_action {
        StepKind::Planner
    } else {
        StepKind::Generator
    }
}

/// Whether a model call's request holds a tool result (a message of role `tool`, a
/// `tool_call_response` or `tool-result` part).
fn carries_tool_result(span: &SpanRecord) -> bool {
    span.attributes.iter().any(|(key, value)| {
        let Some(text) = value.as_str() else {
            return false;
        };
        (key.starts_with("llm.input_messages.") && key.ends_with(".message.role") && text == "tool")
            || (key.starts_with("gen_ai.input.messages.")
                && key.ends_with(".role")
                && text == "tool")
            || ((key == "gen_ai.input.messages" || key == "ai.prompt.messages" || key == "input")
                && (text.contains("\"tool_call_response\"")
                    || text.contains("\"tool-result\"")
                    || text.contains("\"role\":\"tool\"")
                    || text.contains("\"role\": \"tool\"")))
    })
}

fn failed(span: &SpanRecord) -> bool {
    span.status == SpanStatus::Error || span.events.iter().any(|e| &*e.name == "exception")
}

/// The names of the tools a model call asked for, in any convention's output.
pub(super) fn tool_call_names(span: &SpanRecord) -> Vec<String> {
    let mut names = Vec::new();
    for (key, value) in span.attributes.iter() {
        let flattened = [
            "llm.output_messages.",
            "gen_ai.completion.",
            "gen_ai.output.messages.",
        ]
        .iter()
        .any(|p| key.starts_with(p))
            && key.contains(".tool_calls.")
            && key.ends_with(".name");
        if flattened {
            if let Some(v) = value.as_str() {
                names.push(v.to_string());
            }
            continue;
        }
        let json_key =
            table::TOOL_CALL_LIST_KEYS.contains(&key) || table::OUTPUT_MESSAGE_KEYS.contains(&key);
        if !json_key {
            continue;
        }
        let Some(text) = value.as_str() else {
            continue;
        };
        let t = text.trim_start();
        if !(t.starts_with('[') || t.starts_with('{')) || !t.contains("ame\"") {
            continue;
        }
        if let Ok(json) = serde_json::from_str::<Json>(t) {
            collect_call_names(&json, &mut names, 0);
        }
    }
    names
}

/// Tool-call names in parsed output: objects of type `tool_call` / `function_call`
/// with a `name`, objects with a `toolName`, under `toolCalls` / `tool_calls` lists.
fn collect_call_names(json: &Json, out: &mut Vec<String>, depth: usize) {
    if depth > 8 {
        return;
    }
    match json {
        Json::Array(items) => {
            for item in items {
                collect_call_names(item, out, depth + 1);
            }
        }
        Json::Object(map) => {
            if let Some(name) = map.get("toolName").and_then(Json::as_str) {
                out.push(name.to_string());
                return;
            }
            let typed_call = map
                .get("type")
                .and_then(Json::as_str)
                .is_some_and(|t| matches!(t, "tool_call" | "function_call" | "tool-call"));
            if typed_call {
                if let Some(name) = map.get("name").and_then(Json::as_str) {
                    out.push(name.to_string());
                    return;
                }
            }
            for key in ["toolCalls", "tool_calls", "parts", "messages"] {
                if let Some(v) = map.get(key) {
                    collect_call_names(v, out, depth + 1);
                }
            }
        }
        _ => {}
    }
}
