//! Misrouting: a request handed to a sub-agent whose own description does not match it
//! (a password question handed to the agent that "answers questions about the
//! weather"). The sub-agent may answer fluently; nothing errs. The finding
//! (`misrouted`) sits on the routing model call that chose the sub-agent and does not
//! fail the run by itself: when a critic or evaluator rejects the answer, the
//! attribution blames the routing.
//!
//! A sub-agent's description is read from its own span (`gen_ai.agent.description`),
//! from the manager's list of sub-agents (`smolagents.managed_agents.<i>.description`),
//! else from the instructions (system message) of its first model call.
//! The request is the run's first user message. They match when they share a content
//! word (four letters or more, a plural `s` dropped, common words left out). A sub-agent
//! that called tools of its own (a tool span, or a model call of its that chose tools)
//! was working in its domain and is not reported.

use std::collections::HashSet;

use serde_json::Value as Json;

use crate::detect::signals::{clip, is_llm_call, parse_json, system_message};
use crate::detect::Ctx;
use crate::model::{Finding, FindingKind, SpanRecord, StepKind};

/// The kind of the finding.
pub const KIND: &str = "misrouted";

const STOP: &[&str] = &[
    "about",
    "answer",
    "answers",
    "question",
    "questions",
    "handle",
    "handles",
    "customer",
    "customers",
    "please",
    "with",
    "from",
    "that",
    "this",
    "what",
    "when",
    "where",
    "which",
    "your",
    "their",
    "agent",
    "agents",
    "help",
    "helps",
    "user",
    "users",
    "task",
    "tasks",
    "request",
    "requests",
    "specialist",
    "assistant",
    "looks",
    "look",
    "give",
    "gives",
    // Boilerplate of agent instructions, not a domain.
    "helpful",
    "tool",
    "tools",
    "personal",
    "goal",
    "always",
    "never",
    "only",
    "must",
    "should",
    "respond",
    "reply",
    "concise",
    "friendly",
    "knowledge",
];

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let Some(request) = request_text(ctx) else {
        return;
    };
    let asked = content_words(&request);
    if asked.is_empty() {
        return;
    }
    let listed = listed_descriptions(ctx);
    let mut reported = HashSet::new();
    for (i, span) in ctx.spans() {
        if *ctx.step_ref(i) != StepKind::Agent {
            continue;
        }
        let Some(name) = crate::classify::agent_name(span) else {
            continue;
        };
        let description = span
            .attributes
            .get_str("gen_ai.agent.description")
            .filter(|d| !d.trim().is_empty())
            .map(str::to_string)
            .or_else(|| {
                listed
                    .iter()
                    .find(|(n, _)| *n == *name)
                    .map(|(_, d)| d.clone())
            });
        // Else the instructions of its first model call: what it was told it is for.
        let description = description.or_else(|| instructions(ctx, i));
        let Some(description) = description else {
            continue;
        };
        let offered = content_words(&description);
        if offered.is_empty() || !asked.is_disjoint(&offered) {
            continue;
        }
        // A sub-agent that did its own work (called its tools, searched its documents)
        // was working in its domain; one that answered straight away, outside it, was
        // misrouted.
        let worked = ctx.spans().any(|(j, s)| {
            let acted = match ctx.step_ref(j) {
                StepKind::Tool | StepKind::Retriever => !crate::detect::signals::tool_name(s)
                    .is_some_and(crate::classify::is_answer_tool),
                // A call that chose tools (their spans may not be recorded).
                StepKind::Planner => true,
                _ => false,
            };
            acted && j != i && inside(ctx, j, i)
        });
        if worked {
            continue;
        }
        // The routing call: the last model call that ended before the sub-agent started,
        // outside it.
        let Some(router) = routing_call(ctx, i, span) else {
            continue;
        };
        if !reported.insert(router) {
            continue;
        }
        let reason = format!(
            "the request {:?} was handed to `{name}`, whose description ({:?}) does not match it",
            clip(request.trim(), 200),
            clip(description.trim(), 200)
        );
        out.push(
            Finding::new(
                router,
                ctx.step(router),
                FindingKind::Custom(KIND.into()),
                reason,
                "misrouting",
            )
            .with_subject(&name),
        );
    }
}

/// The system message of the first model call inside agent span `agent`.
fn instructions(ctx: &Ctx<'_>, agent: u32) -> Option<String> {
    ctx.spans()
        .filter(|(j, s)| *j != agent && is_llm_call(s) && inside(ctx, *j, agent))
        .min_by_key(|(j, s)| (s.start_unix_nano, *j))
        .and_then(|(_, s)| system_message(s))
        .map(|t| t.into_owned())
}

/// The last planner or router call that ended before span `agent` started, outside it.
fn routing_call(ctx: &Ctx<'_>, agent: u32, span: &SpanRecord) -> Option<u32> {
    ctx.spans()
        .filter(|(j, s)| {
            matches!(ctx.step_ref(*j), StepKind::Planner | StepKind::Router)
                && s.end_unix_nano <= span.start_unix_nano
                && !inside(ctx, *j, agent)
        })
        .max_by_key(|(j, s)| (s.end_unix_nano, *j))
        .map(|(j, _)| ctx.run_of(j))
}

fn inside(ctx: &Ctx<'_>, j: u32, ancestor: u32) -> bool {
    let mut cur = Some(j);
    for _ in 0..ctx.traj.spans.len() {
        match cur {
            Some(c) if c == ancestor => return true,
            Some(c) => cur = ctx.traj.parent.get(c as usize).copied().flatten(),
            None => return false,
        }
    }
    false
}

/// Sub-agents a manager lists with their descriptions.
fn listed_descriptions(ctx: &Ctx<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (_, span) in ctx.spans() {
        for (key, value) in span.attributes.with_prefix("smolagents.managed_agents.") {
            let Some(index) = key
                .strip_prefix("smolagents.managed_agents.")
                .and_then(|r| r.strip_suffix(".name"))
            else {
                continue;
            };
            let description = span
                .attributes
                .get_str(&format!("smolagents.managed_agents.{index}.description"));
            if let (Some(name), Some(d)) = (value.as_str(), description) {
                out.push((name.to_string(), d.to_string()));
            }
        }
    }
    out
}

/// The run's first user message.
fn request_text(ctx: &Ctx<'_>) -> Option<String> {
    let mut spans: Vec<(u32, &SpanRecord)> = ctx.spans().collect();
    spans.sort_by_key(|(i, s)| (s.start_unix_nano, *i));
    spans.into_iter().find_map(|(_, s)| user_message(s))
}

fn user_message(span: &SpanRecord) -> Option<String> {
    for (key, value) in span.attributes.with_prefix("llm.input_messages.") {
        let Some(prefix) = key.strip_suffix(".message.role") else {
            continue;
        };
        if value.as_str() != Some("user") {
            continue;
        }
        for field in [
            ".message.content",
            ".message.contents.0.message_content.text",
        ] {
            if let Some(text) = span.attributes.get_str(&format!("{prefix}{field}")) {
                return Some(text.trim_start_matches("New task:").trim().to_string());
            }
        }
    }
    let messages = span
        .attributes
        .get_str("gen_ai.input.messages")
        .and_then(parse_json)?;
    let first_user = messages
        .as_array()?
        .iter()
        .find(|m| m.get("role").and_then(Json::as_str) == Some("user"))?;
    if let Some(text) = first_user.get("content").and_then(Json::as_str) {
        return Some(text.to_string());
    }
    first_user
        .get("parts")?
        .as_array()?
        .iter()
        .find_map(|p| p.get("content").and_then(Json::as_str))
        .map(str::to_string)
}

/// Lowercase words of four letters or more, a plural `s` dropped, common words left out.
fn content_words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() >= 4)
        .map(|w| w.to_ascii_lowercase())
        .filter(|w| !STOP.contains(&w.as_str()))
        .map(|w| w.strip_suffix('s').map(str::to_string).unwrap_or(w))
        .collect()
}
