//! What the rules read from a span: convention kinds, tool names and arguments, output
//! text, and the error-text table that tells rate limits, loops and tool-call mistakes
//! apart from other errors.
//!
//! Attribute values that are JSON documents (tool outputs, tool definitions, message
//! lists) are parsed here and nowhere else, so the rules see plain answers.

use crate::conventions;
use std::borrow::Cow;

use serde_json::Value as Json;

use crate::model::{SpanRecord, StepKind, Value};

pub(crate) use crate::content::{output_text, parse_json, system_message};

/// The convention span kind (`LLM`, `TOOL`, `RETRIEVER`, `EVALUATOR`, ...), if any.
pub(crate) fn convention_kind(span: &SpanRecord) -> Option<&str> {
    span.convention_kind()
}

fn kind_is(span: &SpanRecord, kind: &str) -> bool {
    convention_kind(span).is_some_and(|k| k.eq_ignore_ascii_case(kind))
}

/// A single call to a language model.
pub(crate) fn is_llm_call(span: &SpanRecord) -> bool {
    if kind_is(span, "LLM") {
        return true;
    }
    if let Some(op) = span.attributes.get_str(conventions::GEN_AI_OPERATION_NAME) {
        return matches!(
            op,
            "chat" | "generate_content" | "text_completion" | "llm_request"
        );
    }
    span.attributes
        .get_str(conventions::LLM_REQUEST_TYPE)
        .is_some_and(|t| matches!(t, "completion" | "chat"))
        || span.attributes.contains(conventions::GEN_AI_REQUEST_MODEL)
        || span.attributes.contains(conventions::LLM_MODEL_NAME)
}

/// An outgoing call that is not a model call (HTTP or a database under a tool): it does
/// the work of the step above it and is named and blamed by that step.
pub(crate) fn is_outgoing_call(span: &SpanRecord) -> bool {
    span.kind == crate::model::SpanKind::Client && !is_llm_call(span)
}

/// The tool name a span declares, if it is a tool execution.
pub(crate) fn tool_name(span: &SpanRecord) -> Option<&str> {
    crate::classify::tool_name(span)
}

/// A tool execution: by step, convention kind, `execute_tool` or a tool name.
pub(crate) fn is_tool_span(span: &SpanRecord, step: &StepKind) -> bool {
    *step == StepKind::Tool
        || kind_is(span, "TOOL")
        || span.attributes.get_str(conventions::GEN_AI_OPERATION_NAME) == Some("execute_tool")
        || span.attributes.get_str(conventions::TRACELOOP_SPAN_KIND) == Some("tool")
        || tool_name(span).is_some()
}

/// A retrieval by convention (not merely by step): its missing documents mean none came back.
pub(crate) fn is_retrieval_by_convention(span: &SpanRecord) -> bool {
    kind_is(span, "RETRIEVER")
        || kind_is(span, "VECTOR_DB")
        || matches!(
            span.attributes.get_str(conventions::GEN_AI_OPERATION_NAME),
            Some("retrieval") | Some("vector_db_retrieve")
        )
}

/// The arguments of a tool call as text (`gen_ai.tool.call.arguments`, ...).
pub(crate) fn tool_arguments(span: &SpanRecord) -> Option<(&'static str, Cow<'_, str>)> {
    const KEYS: [&str; 4] = [
        "gen_ai.tool.call.arguments",
        "tool_call.function.arguments",
        "input.value",
        "traceloop.entity.input",
    ];
    KEYS.iter().find_map(|k| {
        span.attributes.get(k).map(|v| {
            let text = match v {
                Value::Str(s) => Cow::Borrowed(&**s),
                other => Cow::Owned(other.to_text()),
            };
            (*k, text)
        })
    })
}

/// The output of a tool as text, with the key it came from.
pub(crate) fn tool_output(span: &SpanRecord) -> Option<(&'static str, Cow<'_, str>)> {
    const KEYS: [&str; 3] = [
        "gen_ai.tool.call.result",
        "output.value",
        "traceloop.entity.output",
    ];
    KEYS.iter().find_map(|k| {
        span.attributes.get(k).map(|v| {
            let text = match v {
                Value::Str(s) => Cow::Borrowed(&**s),
                other => Cow::Owned(other.to_text()),
            };
            (*k, text)
        })
    })
}

/// True when `text` starts like a JSON document but does not parse as one.
pub(crate) fn is_broken_json(text: &str) -> bool {
    let t = text.trim_start();
    (t.starts_with('{') || t.starts_with('[')) && serde_json::from_str::<Json>(t).is_err()
}

/// A JSON value as short text: strings as they are, the rest as JSON.
pub(crate) fn json_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Object(map) => ["message", "detail", "error", "msg"]
            .iter()
            .find_map(|k| map.get(*k).map(json_text))
            .unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

/// The canonical form of tool arguments for comparing calls: JSON re-serialized with
/// sorted keys, else the trimmed text.
pub(crate) fn canonical_arguments(text: &str) -> String {
    let canonical = match parse_json(text) {
        Some(json) => json.to_string(),
        None => text.trim().to_string(),
    };
    mask_addresses(&canonical)
}

/// Object addresses (`0x7f3a…`) and UUIDs replaced by a placeholder: arguments that
/// differ only in them are the same call.
fn mask_addresses(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        // 0x followed by 6+ hex digits.
        if bytes[i] == b'0' && bytes.get(i + 1) == Some(&b'x') {
            let run = bytes[i + 2..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            if run >= 6 {
                out.push_str("0x…");
                i += 2 + run;
                continue;
            }
        }
        // A UUID: 8-4-4-4-12 hex digits.
        if i + 36 <= bytes.len() && (i == 0 || !bytes[i - 1].is_ascii_hexdigit()) {
            let candidate = &bytes[i..i + 36];
            let uuid = candidate.iter().enumerate().all(|(k, b)| match k {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            });
            if uuid {
                out.push_str("<uuid>");
                i += 36;
                continue;
            }
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Names of the tools declared to a model on this span (`llm.tools.*`,
/// `gen_ai.tool.definitions`).
pub(crate) fn declared_tools(span: &SpanRecord, out: &mut Vec<String>) {
    for (key, value) in span.attributes.with_prefix("llm.tools.") {
        if key.ends_with(".tool.name") {
            if let Some(name) = value.as_str() {
                out.push(name.to_string());
            }
        }
    }
    for_each_tool_definition(span, &mut |json| {
        if let Some(name) = definition_name(json) {
            out.push(name.to_string());
        }
    });
}

/// Calls `f` on every tool definition offered to a model call, wherever its convention
/// lists them: OpenInference `llm.tools.<i>.tool.json_schema`, GenAI
/// `gen_ai.tool.definitions`, the Vercel AI SDK's `ai.prompt.tools` (an array of JSON
/// strings).
pub(crate) fn for_each_tool_definition(span: &SpanRecord, f: &mut dyn FnMut(&Json)) {
    for (key, value) in span.attributes.iter() {
        let listed = key == "gen_ai.tool.definitions"
            || key == "ai.prompt.tools"
            || (key.starts_with("llm.tools.") && key.ends_with(".tool.json_schema"));
        if listed {
            for_each_json(value, f);
        }
    }
}

/// Calls `f` on the JSON of a value: one document, a list of them, or an array of
/// JSON strings.
fn for_each_json(value: &Value, f: &mut dyn FnMut(&Json)) {
    match value {
        Value::Str(s) => match parse_json(s) {
            Some(Json::Array(items)) => items.iter().for_each(&mut *f),
            Some(json) => f(&json),
            None => {}
        },
        Value::Array(items) => {
            for item in items.iter() {
                if let Some(json) = item.as_str().and_then(parse_json) {
                    f(&json);
                }
            }
        }
        _ => {}
    }
}

/// The name in a tool definition: `name`, `function.name` or `title`.
fn definition_name(json: &Json) -> Option<&str> {
    json.get("name")
        .and_then(Json::as_str)
        .or_else(|| json.get("function")?.get("name")?.as_str())
        .or_else(|| json.get("title")?.as_str())
}

/// A tool call a model asked for in its output.
pub(crate) struct RequestedCall {
    pub name: String,
    pub arguments: Option<String>,
}

/// The tool calls in a model span's output: OpenInference flattened messages, OpenLLMetry
/// `gen_ai.completion.<i>.tool_calls.<j>.*`, GenAI `gen_ai.output.messages`.
pub(crate) fn requested_calls(span: &SpanRecord) -> Vec<RequestedCall> {
    let mut calls: Vec<(String, RequestedCall)> = Vec::new();
    for (key, value) in span.attributes.iter() {
        let (prefix, field) = if let Some(p) = key
            .strip_prefix("llm.output_messages.")
            .and_then(|_| key.rsplit_once(".tool_call.function."))
        {
            p
        } else if key.starts_with("gen_ai.completion.") && key.contains(".tool_calls.") {
            match key.rsplit_once('.') {
                Some(p) => p,
                None => continue,
            }
        } else {
            continue;
        };
        let Some(text) = value.as_str() else {
            continue;
        };
        let slot = match calls.iter().position(|(p, _)| p == prefix) {
            Some(i) => i,
            None => {
                calls.push((
                    prefix.to_string(),
                    RequestedCall {
                        name: String::new(),
                        arguments: None,
                    },
                ));
                calls.len() - 1
            }
        };
        match field {
            "name" => calls[slot].1.name = text.to_string(),
            "arguments" => calls[slot].1.arguments = Some(text.to_string()),
            _ => {}
        }
    }
    let mut out: Vec<RequestedCall> = calls
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| !c.name.is_empty())
        .collect();
    // JSON lists of calls with `toolName` (the Vercel AI SDK, Mastra's model steps).
    for key in crate::classify::table::TOOL_CALL_LIST_KEYS {
        let Some(text) = span.attributes.get_str(key) else {
            continue;
        };
        if !text.contains("\"toolName\"") {
            continue;
        }
        let Some(json) = parse_json(text) else {
            continue;
        };
        let list = match &json {
            Json::Array(items) => items.as_slice(),
            Json::Object(map) => map
                .get("toolCalls")
                .and_then(Json::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            _ => &[],
        };
        for call in list {
            if let Some(name) = call.get("toolName").and_then(Json::as_str) {
                out.push(RequestedCall {
                    name: name.to_string(),
                    arguments: ["input", "args", "arguments"]
                        .iter()
                        .find_map(|k| call.get(*k))
                        .map(|a| match a {
                            Json::String(s) => s.clone(),
                            other => other.to_string(),
                        }),
                });
            }
        }
    }
    if let Some(json) = span
        .attributes
        .get_str("gen_ai.output.messages")
        .and_then(parse_json)
    {
        for message in json.as_array().into_iter().flatten() {
            for part in message
                .get("parts")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                if part.get("type").and_then(Json::as_str) != Some("tool_call") {
                    continue;
                }
                if let Some(name) = part.get("name").and_then(Json::as_str) {
                    out.push(RequestedCall {
                        name: name.to_string(),
                        arguments: part.get("arguments").map(|a| match a {
                            Json::String(s) => s.clone(),
                            other => other.to_string(),
                        }),
                    });
                }
            }
        }
    }
    out
}

/// What an error text says beyond "an error happened".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    RateLimited,
    Loop,
    UnknownTool,
    InvalidToolArgs,
}

/// The error-text table: lowercase substrings of `exception.type`, `exception.message`,
/// `error.type` or the status message, first row that matches wins. Invalid-argument rows
/// only count on tool spans (elsewhere "invalid argument" is usually a bad request to a
/// provider).
const ERROR_TEXT: &[(ErrorClass, &[&str])] = &[
    (
        ErrorClass::RateLimited,
        &[
            "ratelimit",
            "rate limit",
            "rate_limit",
            "rate-limit",
            "too many requests",
            "quota exceeded",
            "insufficient_quota",
            "resource_exhausted",
            "resourceexhausted",
        ],
    ),
    (
        ErrorClass::Loop,
        &[
            "graphrecursionerror",
            "recursion limit",
            "recursion_limit",
            "max iterations",
            "max_iterations",
            "maximum iterations",
            "iteration limit",
            "maxturnsexceeded",
            "max turns",
            "max_turns",
            "llmcallslimitexceeded",
            "llm calls limit",
            "max number of llm calls",
            "usagelimitexceeded",
            "request_limit",
            "max steps",
            "max_steps",
            "maximum number of steps",
            "step limit",
            "turn limit",
            "maximum number of messages",
        ],
    ),
    (
        ErrorClass::UnknownTool,
        &[
            "unknown tool",
            "tool not found",
            "toolnotfound",
            "no such tool",
            "not a valid tool",
            "tool does not exist",
            "unknown function",
            "function not found",
        ],
    ),
    (
        ErrorClass::InvalidToolArgs,
        &[
            "validationerror",
            "validation error",
            "invalid argument",
            "invalid tool argument",
            "invalid input",
            "jsondecodeerror",
            "json decode",
            "failed to parse arguments",
            "missing required",
            "required positional argument",
            "unexpected keyword argument",
            "field required",
            "type validation failed",
            "mandatory input parameters",
            "arguments validation failed",
            "did not match expected schema",
        ],
    ),
];

/// Errors of a model provider's API, as SDKs name them (lowercase).
pub const MODEL_ERROR_TEXT: &[&str] = &[
    "internalservererror",
    "apierror",
    "apiconnectionerror",
    "apitimeouterror",
    "ratelimiterror",
    "serviceunavailableerror",
    "modelhttperror",
    "error code: 5",
    "error code: 429",
    "server_error",
];

/// Tool-call mistakes in words that name the tool call itself: they count on any span
/// (a framework may report them on its step span, with no tool span at all).
const TOOL_CALL_ERROR_TEXT: &[&str] = &[
    "invalid json input for tool",
    "invalid input for tool",
    "tool's input schema",
    "tool's args",
    "toolcallerror",
    "arguments validation failed",
    "tool validation failed",
    "did not match expected schema",
    "error invoking tool",
];

/// Classifies error texts (already lowercased) of a span.
pub(crate) fn classify_error_text(lower: &str, on_tool: bool) -> Option<ErrorClass> {
    if has_number_429(lower) {
        return Some(ErrorClass::RateLimited);
    }
    let found = ERROR_TEXT
        .iter()
        .filter(|(class, _)| on_tool || *class != ErrorClass::InvalidToolArgs)
        .find(|(_, needles)| needles.iter().any(|n| lower.contains(n)))
        .map(|(class, _)| *class);
    if found.is_none() && TOOL_CALL_ERROR_TEXT.iter().any(|n| lower.contains(n)) {
        return Some(ErrorClass::InvalidToolArgs);
    }
    found
}

/// `429` as a whole number (an HTTP status), not inside a longer number or id.
fn has_number_429(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices("429").any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + 3).copied();
        !before.is_some_and(|b| b.is_ascii_alphanumeric())
            && !after.is_some_and(|b| b.is_ascii_alphanumeric())
    })
}

/// Cuts `text` to at most `max` bytes on a char boundary, marking the cut.
pub(crate) fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}
