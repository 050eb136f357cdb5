//! The content of a span, normalised once across conventions: what a model call or a
//! step answered, the output of a tool or chain, the instructions a model was given, and
//! whether a text states a verdict. Classification (a judge's call is a critic) and the
//! detection rules read content through these functions only.
//!
//! Attribute values that are JSON documents (message lists, payloads) are parsed here.

use std::borrow::Cow;

use serde_json::Value as Json;

use crate::model::{SpanRecord, Value};

/// The output text of a span (model completion, chain output, tool result). An output
/// recorded as a message list (GenAI `parts`, OpenAI-style `content`, or a graph node's
/// state `{"messages": [...]}`) gives the text of its messages, one per line, so that a
/// content rule sees what the step said rather than its JSON envelope.
pub fn output_text(span: &SpanRecord) -> Option<Cow<'_, str>> {
    const KEYS: [&str; 6] = [
        "output.value",
        "gen_ai.completion.0.content",
        "llm.output_messages.0.message.content",
        "traceloop.entity.output",
        "gen_ai.tool.call.result",
        "gen_ai.completion",
    ];
    if let Some(v) = KEYS.iter().find_map(|k| span.attributes.get(k)) {
        return Some(match v {
            Value::Str(s) => match parse_json(s).and_then(|json| message_text(&json)) {
                Some(text) => Cow::Owned(text),
                None => Cow::Borrowed(&**s),
            },
            other => Cow::Owned(other.to_text()),
        });
    }
    let messages = span.attributes.get_str("gen_ai.output.messages")?;
    parse_json(messages)
        .and_then(|json| message_text(&json))
        .map(Cow::Owned)
}

/// The first of `reasons` (compared without case) that a span's raw output records as
/// its finish reason, for outputs that carry the model's whole response as JSON rather
/// than in attributes of their own: a LangChain `LLMResult`
/// (`generations[][].generation_info.finish_reason`, or the message's
/// `response_metadata.finish_reason`), an OpenAI response (`choices[].finish_reason`),
/// an Anthropic one (`stop_reason`), a Gemini or Vercel one (`finishReason`). The output
/// is parsed only when its text names one of those keys and one of `reasons`, so the
/// common answer (`stop`) costs two substring scans.
pub fn output_finish_reason(span: &SpanRecord, reasons: &[&str]) -> Option<String> {
    const OUTPUT_KEYS: [&str; 3] = [
        "output.value",
        "traceloop.entity.output",
        "gen_ai.completion",
    ];
    const REASON_KEYS: [&str; 3] = ["finish_reason", "finishReason", "stop_reason"];
    let raw = OUTPUT_KEYS
        .iter()
        .find_map(|k| span.attributes.get_str(k))?;
    let names = |words: &[&str]| {
        words.iter().any(|w| {
            raw.as_bytes()
                .windows(w.len())
                .any(|win| win.eq_ignore_ascii_case(w.as_bytes()))
        })
    };
    if !names(&REASON_KEYS) || !names(reasons) {
        return None;
    }
    let is_reason = |r: &str| reasons.iter().any(|w| r.trim().eq_ignore_ascii_case(w));
    fn walk(v: &Json, depth: usize, is_reason: &dyn Fn(&str) -> bool) -> Option<String> {
        if depth > 12 {
            return None;
        }
        match v {
            Json::Object(map) => {
                for (k, v) in map {
                    if REASON_KEYS.contains(&k.as_str()) {
                        if let Some(r) = v.as_str().filter(|r| is_reason(r)) {
                            return Some(r.to_string());
                        }
                    }
                }
                map.values().find_map(|v| walk(v, depth + 1, is_reason))
            }
            Json::Array(items) => items.iter().find_map(|v| walk(v, depth + 1, is_reason)),
            _ => None,
        }
    }
    walk(&parse_json(raw)?, 0, &is_reason)
}

/// The text a model call or a step answered, normalised across conventions: message
/// content keys (OpenInference, traceAI's flattened GenAI messages, OpenLLMetry, the
/// Vercel AI SDK), the GenAI `gen_ai.output.messages` parts, completion events
/// (`gen_ai.choice`, `gen_ai.content.completion`,
/// `gen_ai.client.inference.operation.details`), then [`output_text`] (a payload
/// `{"text": ...}` gives its text).
pub fn answer_text(span: &SpanRecord) -> Option<Cow<'_, str>> {
    const KEYS: [&str; 6] = [
        "llm.output_messages.0.message.content",
        "llm.output_messages.0.message.contents.0.message_content.text",
        "gen_ai.output.messages.0.message.content",
        "gen_ai.completion.0.content",
        "ai.response.text",
        "gen_ai.response.text",
    ];
    if let Some(text) = KEYS
        .iter()
        .find_map(|k| span.attributes.get_str(k))
        .filter(|t| !t.trim().is_empty())
    {
        return Some(Cow::Borrowed(text));
    }
    if let Some(text) = span
        .attributes
        .get_str("gen_ai.output.messages")
        .and_then(parse_json)
        .and_then(|json| message_text(&json))
    {
        return Some(Cow::Owned(text));
    }
    const EVENT_KEYS: [&str; 5] = [
        "gen_ai.completion",
        "gen_ai.output.messages",
        "message",
        "content",
        "body",
    ];
    for event in span.events.iter().rev() {
        if !matches!(
            &*event.name,
            "gen_ai.choice"
                | "gen_ai.content.completion"
                | "gen_ai.client.inference.operation.details"
        ) {
            continue;
        }
        for key in EVENT_KEYS {
            let Some(text) = event.attributes.get_str(key) else {
                continue;
            };
            let text = match parse_json(text) {
                Some(json) => message_text(&json).or_else(|| {
                    json.get("content")
                        .and_then(Json::as_str)
                        .map(str::to_string)
                }),
                None => Some(text.to_string()),
            };
            if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
                return Some(Cow::Owned(text));
            }
        }
    }
    let text =
        output_text(span).or_else(|| span.attributes.get_str("output").map(Cow::Borrowed))?;
    if let Some(Json::Object(map)) = parse_json(&text) {
        if let Some(inner) = ["text", "answer", "output", "content"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Json::as_str))
        {
            return Some(Cow::Owned(inner.to_string()));
        }
    }
    Some(text)
}

/// The instructions a model call was given: its system message, in any convention
/// (OpenInference `llm.input_messages.<i>`, OpenLLMetry `gen_ai.prompt.<i>`, GenAI
/// `gen_ai.system_instructions` or a `system` message of `gen_ai.input.messages`).
pub fn system_message(span: &SpanRecord) -> Option<Cow<'_, str>> {
    for (prefix, role, content) in [
        ("llm.input_messages.", ".message.role", ".message.content"),
        ("gen_ai.prompt.", ".role", ".content"),
    ] {
        for (key, value) in span.attributes.with_prefix(prefix) {
            let Some(head) = key.strip_suffix(role) else {
                continue;
            };
            if value.as_str() != Some("system") {
                continue;
            }
            if let Some(text) = span.attributes.get_str(&format!("{head}{content}")) {
                return Some(Cow::Borrowed(text));
            }
        }
    }
    if let Some(text) = span.attributes.get_str("gen_ai.system_instructions") {
        return Some(match parse_json(text).and_then(|json| parts_text(&json)) {
            Some(t) => Cow::Owned(t),
            None => Cow::Borrowed(text),
        });
    }
    let messages = parse_json(span.attributes.get_str("gen_ai.input.messages")?)?;
    let system = messages
        .as_array()?
        .iter()
        .find(|m| m.get("role").and_then(Json::as_str) == Some("system"))?;
    if let Some(text) = system.get("content").and_then(Json::as_str) {
        return Some(Cow::Owned(text.to_string()));
    }
    parts_text(system.get("parts")?).map(Cow::Owned)
}

/// The text parts of a GenAI parts list (`[{"type": "text", "content": ...}]`).
fn parts_text(json: &Json) -> Option<String> {
    let text: Vec<&str> = json
        .as_array()?
        .iter()
        .filter(|p| p.get("type").and_then(Json::as_str) == Some("text"))
        .filter_map(|p| p.get("content").and_then(Json::as_str))
        .collect();
    (!text.is_empty()).then(|| text.join("\n"))
}

/// The text of a message list: `[{"parts": [{"type": "text", "content": ...}]}]`
/// (GenAI), `[{"role": ..., "content": "..."}]`, or either under a `messages` key.
/// `None` when the JSON is not a list of messages (each with a `role` or `parts`) or
/// holds no text.
fn message_text(json: &Json) -> Option<String> {
    let list = match json {
        Json::Array(items) => items,
        Json::Object(map) => map.get("messages")?.as_array()?,
        _ => return None,
    };
    let mut text = String::new();
    let mut push = |part: &str| {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(part);
    };
    for message in list {
        // A message has a role or parts; other JSON (documents, tool data) is kept whole.
        if message.get("role").is_none() && message.get("parts").is_none() {
            return None;
        }
        if let Some(parts) = message.get("parts").and_then(Json::as_array) {
            for part in parts {
                if part.get("type").and_then(Json::as_str) == Some("text") {
                    if let Some(content) = part.get("content").and_then(Json::as_str) {
                        push(content);
                    }
                }
            }
        } else if let Some(content) = message.get("content").and_then(Json::as_str) {
            push(content);
        }
    }
    (!text.is_empty()).then_some(text)
}

/// Parses `text` as JSON when it looks like an object or array.
pub fn parse_json(text: &str) -> Option<Json> {
    let t = text.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    serde_json::from_str(t).ok()
}

/// Evaluation labels that mean the judged output failed (`hallucinated`, `incorrect`, …),
/// normalized as [`normalize_label`] does. The detector's default list of failing labels.
pub const FAILING_LABELS: &[&str] = &[
    "fail",
    "failed",
    "failure",
    "incorrect",
    "wrong",
    "hallucinated",
    "hallucination",
    "not_relevant",
    "irrelevant",
    "unfaithful",
    "not_faithful",
    "ungrounded",
    "not_grounded",
    "unsupported",
    "no",
    "false",
    "bad",
    "toxic",
    "unsafe",
    "reject",
    "rejected",
    "incomplete",
    "not_completed",
];

/// Evaluation labels that mean the judged output passed (a low score does not override
/// them), normalized as [`normalize_label`] does.
pub const PASSING_LABELS: &[&str] = &[
    "pass",
    "passed",
    "correct",
    "relevant",
    "factual",
    "faithful",
    "grounded",
    "yes",
    "true",
    "good",
    "safe",
    "accept",
    "accepted",
    "complete",
    "completed",
    "success",
    "ok",
];

/// Lowercase, trimmed, with spaces and hyphens as underscores: how labels and evaluator
/// names are compared.
pub fn normalize_label(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| match c {
            ' ' | '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Leading words of a rejection, compared case-insensitively after field markers.
const REJECT: [&str; 6] = [
    "reject",
    "fail",
    "not approved",
    "disapprove",
    "deny",
    "denied",
];
/// Leading words of an approval.
const APPROVE: [&str; 5] = ["approve", "pass", "accept", "lgtm", "ok"];

/// `Some(true)` for an approval, `Some(false)` for a rejection, `None` when the text
/// states no verdict in its first lines.
pub fn verdict(text: &str) -> Option<bool> {
    let lower = text.to_ascii_lowercase();
    if let Some(v) = json_verdict(&lower) {
        return Some(v);
    }
    for line in lower
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(6)
    {
        // Field markers: DSPy's `[[ ## verdict ## ]]`, `verdict:`, markdown emphasis.
        if line.starts_with("[[") {
            continue;
        }
        let mut l = line.trim_start_matches(['*', '#', '>', '-', '"', '\'', '`', ' ']);
        for label in ["verdict:", "decision:", "result:", "review:"] {
            if let Some(rest) = l.strip_prefix(label) {
                l = rest.trim_start_matches(['*', '"', '\'', ' ']);
            }
        }
        if REJECT.iter().any(|w| l.starts_with(w)) {
            return Some(false);
        }
        if APPROVE.iter().any(|w| starts_with_word(l, w)) {
            return Some(true);
        }
        return None;
    }
    None
}

fn starts_with_word(text: &str, word: &str) -> bool {
    text.strip_prefix(word).is_some_and(|rest| {
        rest.chars()
            .next()
            .is_none_or(|c| !c.is_ascii_alphabetic() || word.len() > 3)
    })
}

/// A verdict in a small JSON object: `"verdict": "reject"`, `"approved": false`.
fn json_verdict(lower: &str) -> Option<bool> {
    let t = lower.trim_start();
    if !t.starts_with('{') || t.len() > 2000 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(t).ok()?;
    for key in ["verdict", "decision", "result", "label"] {
        if let Some(v) = json.get(key).and_then(|v| v.as_str()) {
            // A verdict word (`reject`), else an evaluation label (`hallucinated`).
            let label = normalize_label(v);
            return verdict(v).or_else(|| {
                if FAILING_LABELS.contains(&label.as_str()) {
                    Some(false)
                } else if PASSING_LABELS.contains(&label.as_str()) {
                    Some(true)
                } else {
                    None
                }
            });
        }
    }
    for key in ["approved", "pass", "passed", "accepted"] {
        if let Some(b) = json.get(key).and_then(|v| v.as_bool()) {
            return Some(b);
        }
    }
    None
}
