//! Tool results seen only in the next model call's request: some instrumentations
//! record no tool span at all (CrewAI under OpenLLMetry), so a tool that failed or a
//! search that found nothing shows only as the `tool` message the framework sent back to
//! the model. Each new tool result in a request (after the last assistant turn) whose
//! tool has no span of its own in the trajectory is read: an error text gives
//! `tool_error` (or `invalid_tool_args`, by the error-text table), an empty result of a
//! search tool `empty_retrieval`. The finding sits on the model call that received the
//! result, with the step of the tool (`tool` or `retriever`); when a later request of
//! the same agent carries a good result of the same tool, it is marked `redone`.
//!
//! Messages are read in the GenAI parts format (`gen_ai.input.messages`, a
//! `tool_call_response` part) and OpenInference's flattened form
//! (`llm.input_messages.<i>.message.role = tool`).

use std::collections::HashSet;

use serde_json::Value as Json;

use crate::detect::signals::{
    classify_error_text, clip, is_llm_call, parse_json, tool_name, ErrorClass,
};
use crate::detect::Ctx;
use crate::model::{Finding, FindingKind, SpanRecord, StepKind};

pub(crate) const SOURCE: &str = "tool_result_in_request";

/// One tool result in a request.
struct ToolResult {
    name: String,
    text: String,
}

/// What a result says.
#[derive(PartialEq)]
enum Verdict {
    Good,
    Failed(FindingKind),
    Empty,
}

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    // Tools (and delegations to agents) that have spans of their own are judged there;
    // names compare as frameworks sanitise them.
    let traced: HashSet<String> = ctx
        .spans()
        .filter(|(i, _)| {
            matches!(
                ctx.step_ref(*i),
                StepKind::Tool | StepKind::Retriever | StepKind::Agent | StepKind::Critic
            )
        })
        .filter_map(|(_, s)| tool_name(s).or(Some(&*s.name)))
        .map(crate::classify::squashed)
        .collect();
    // Model calls in start order, with the agent each serves.
    let mut calls: Vec<(u32, &SpanRecord)> = ctx.spans().filter(|(_, s)| is_llm_call(s)).collect();
    calls.sort_by_key(|(i, s)| (s.start_unix_nano, *i));
    let results: Vec<(u32, Vec<ToolResult>)> =
        calls.iter().map(|(i, s)| (*i, new_results(s))).collect();
    for (k, (i, list)) in results.iter().enumerate() {
        for result in list {
            // A delegation's result is the sub-agent's outcome, judged on its own spans.
            let lower = result.name.to_ascii_lowercase();
            let delegation = crate::classify::table::HANDOFF_TOOL_PREFIXES
                .iter()
                .any(|p| lower.starts_with(p));
            if delegation || traced.contains(&crate::classify::squashed(&result.name)) {
                continue;
            }
            let retrieval = search_tool(&result.name);
            let kind = match judge(&result.text, retrieval) {
                Verdict::Good => continue,
                Verdict::Failed(kind) => kind,
                Verdict::Empty => FindingKind::EmptyRetrieval,
            };
            let agent = ctx.agent_of(*i);
            let redone = results[k + 1..].iter().any(|(j, later)| {
                ctx.agent_of(*j) == agent
                    && later.iter().any(|r| {
                        r.name == result.name && judge(&r.text, retrieval) == Verdict::Good
                    })
            });
            let step = if retrieval {
                StepKind::Retriever
            } else {
                StepKind::Tool
            };
            let reason = match kind {
                FindingKind::EmptyRetrieval => format!(
                    "search tool `{}` returned nothing (seen in the request of `{}`)",
                    result.name,
                    ctx.span(*i).name
                ),
                _ => format!(
                    "tool `{}` returned an error (seen in the request of `{}`): {}",
                    result.name,
                    ctx.span(*i).name,
                    clip(result.text.trim(), 300)
                ),
            };
            let mut finding =
                Finding::new(*i, step, kind, reason, SOURCE).with_subject(&result.name);
            finding.redone = redone;
            out.push(finding);
        }
    }
}

fn search_tool(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    crate::classify::table::RETRIEVAL_TOOL_WORDS
        .iter()
        .any(|w| lower.contains(w))
}

fn judge(text: &str, retrieval: bool) -> Verdict {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let head = lower.get(..lower.len().min(200)).unwrap_or(&lower);
    let failed = head.starts_with("error")
        || head.contains("error executing tool")
        || head.starts_with("exception")
        || head.starts_with("traceback")
        || head.contains("tool validation failed");
    if failed {
        let kind = match classify_error_text(&lower, true) {
            Some(ErrorClass::InvalidToolArgs) => FindingKind::InvalidToolArgs,
            Some(ErrorClass::UnknownTool) => FindingKind::UnknownTool,
            Some(ErrorClass::RateLimited) => FindingKind::RateLimited,
            _ => FindingKind::ToolError,
        };
        return Verdict::Failed(kind);
    }
    let empty = matches!(t, "" | "[]" | "{}" | "null" | "None" | "N/A")
        || (t.len() < 200
            && ["no results", "no documents", "nothing found"]
                .iter()
                .any(|n| lower.contains(n)));
    if retrieval && empty {
        return Verdict::Empty;
    }
    Verdict::Good
}

/// The tool results a request adds after its last assistant turn.
fn new_results(span: &SpanRecord) -> Vec<ToolResult> {
    // Requests grow with the conversation: parse one only when it holds a tool result.
    if let Some(messages) = span
        .attributes
        .get_str("gen_ai.input.messages")
        .filter(|text| text.contains("\"tool_call_response\""))
        .and_then(parse_json)
    {
        if let Some(list) = messages.as_array() {
            return parts_results(list);
        }
    }
    flattened_results(span)
}

fn parts_results(list: &[Json]) -> Vec<ToolResult> {
    let Some(last_call) = list.iter().rposition(|m| {
        m.get("role").and_then(Json::as_str) == Some("assistant")
            && m.get("parts").and_then(Json::as_array).is_some_and(|p| {
                p.iter()
                    .any(|p| p.get("type").and_then(Json::as_str) == Some("tool_call"))
            })
    }) else {
        return Vec::new();
    };
    let calls: Vec<(&str, &str)> = list[last_call]
        .get("parts")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p.get("id")?.as_str()?, p.get("name")?.as_str()?)))
        .collect();
    let mut out = Vec::new();
    for message in &list[last_call + 1..] {
        for part in message
            .get("parts")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if part.get("type").and_then(Json::as_str) != Some("tool_call_response") {
                continue;
            }
            let id = part.get("id").and_then(Json::as_str).unwrap_or("");
            let Some(name) = calls.iter().find(|(c, _)| *c == id).map(|(_, n)| *n) else {
                continue;
            };
            let text = match part.get("response") {
                Some(Json::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            out.push(ToolResult {
                name: name.to_string(),
                text,
            });
        }
    }
    out
}

fn flattened_results(span: &SpanRecord) -> Vec<ToolResult> {
    // Indices of the messages, their roles, and the last assistant turn.
    let mut roles: Vec<(usize, &str)> = span
        .attributes
        .with_prefix("llm.input_messages.")
        .filter_map(|(key, value)| {
            let index = key
                .strip_prefix("llm.input_messages.")?
                .strip_suffix(".message.role")?
                .parse()
                .ok()?;
            Some((index, value.as_str()?))
        })
        .collect();
    roles.sort_unstable();
    let Some(last_assistant) = roles.iter().rposition(|(_, r)| *r == "assistant") else {
        return Vec::new();
    };
    roles[last_assistant + 1..]
        .iter()
        .filter(|(_, r)| *r == "tool")
        .filter_map(|(index, _)| {
            let get = |field: &str| {
                span.attributes
                    .get_str(&format!("llm.input_messages.{index}.message.{field}"))
            };
            Some(ToolResult {
                name: get("name")?.to_string(),
                text: get("content").unwrap_or("").to_string(),
            })
        })
        .collect()
}
