//! Tool failures returned as data: a tool output (`gen_ai.tool.call.result`,
//! `output.value`, `traceloop.entity.output`) that is a JSON object with an `error`
//! field (or MCP's `isError: true`, or a LangChain tool message with `status: "error"`),
//! or that matches a configured pattern, on a span with no error status.
//!
//! The kind is `tool_error`, refined by the error text like a raised error: a validation
//! error gives `invalid_tool_args`, an unknown tool `unknown_tool`.

use serde_json::Value as Json;

use crate::detect::signals::{
    classify_error_text, clip, is_tool_span, json_text, parse_json, tool_name, tool_output,
    ErrorClass,
};
use crate::detect::Ctx;
use crate::model::{Finding, FindingKind, SpanStatus};

const MAX_MESSAGE: usize = 500;

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (i, span) in ctx.spans() {
        let step = ctx.step(i);
        if !is_tool_span(span, &step) || span.status == SpanStatus::Error {
            continue;
        }
        // A span that also reports the error itself is the errors rule's.
        if span.attributes.contains("error.type")
            || span.events.iter().any(|e| &*e.name == "exception")
        {
            continue;
        }
        let Some((key, text)) = tool_output(span) else {
            continue;
        };
        let message = match parse_json(&text) {
            Some(Json::Object(map)) => error_in_object(&map),
            _ => None,
        };
        let message = match message {
            Some(m) => m,
            None => match ctx
                .config
                .tool_error_patterns
                .iter()
                .find(|p| p.is_match(&text))
            {
                Some(_) => text.to_string(),
                None => continue,
            },
        };
        let kind = match classify_error_text(&message.to_ascii_lowercase(), true) {
            Some(ErrorClass::InvalidToolArgs) => FindingKind::InvalidToolArgs,
            Some(ErrorClass::UnknownTool) => FindingKind::UnknownTool,
            Some(ErrorClass::RateLimited) => FindingKind::RateLimited,
            Some(ErrorClass::Loop) | None => FindingKind::ToolError,
        };
        let name = tool_name(span).unwrap_or(&span.name);
        let reason = format!(
            "tool `{name}` returned an error: {}",
            clip(&message, MAX_MESSAGE)
        );
        out.push(Finding::new(i, step, kind, reason, key).with_subject(name));
    }
}

/// The error message of a tool result object, if it reports one.
fn error_in_object(map: &serde_json::Map<String, Json>) -> Option<String> {
    if let Some(e) = map.get("error") {
        let present = match e {
            Json::Null | Json::Bool(false) => false,
            Json::String(s) => !s.trim().is_empty(),
            Json::Object(o) => !o.is_empty(),
            Json::Array(a) => !a.is_empty(),
            _ => true,
        };
        if present {
            return Some(json_text(e));
        }
    }
    let is_error = map.get("isError").and_then(Json::as_bool) == Some(true)
        || map.get("status").and_then(Json::as_str) == Some("error");
    if is_error {
        let content = map.get("content").map(content_text);
        return Some(content.unwrap_or_else(|| "the tool reported an error".to_string()));
    }
    None
}

/// Text of a tool result's `content`: a string, or MCP content blocks.
fn content_text(v: &Json) -> String {
    match v {
        Json::Array(blocks) => {
            let texts: Vec<&str> = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Json::as_str))
                .collect();
            if texts.is_empty() {
                v.to_string()
            } else {
                texts.join(" ")
            }
        }
        other => json_text(other),
    }
}
