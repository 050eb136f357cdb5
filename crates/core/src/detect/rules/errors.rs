//! Errors a span reports about itself: status ERROR (with its message), `exception`
//! events, `error.type` / `error.message`, an HTTP 429.
//!
//! One finding per span. Its kind is refined by the error text: a rate limit gives
//! `rate_limited`, an iteration or recursion limit `loop`, an unknown tool
//! `unknown_tool`, a validation error on a tool span `invalid_tool_args`; otherwise
//! `exception` when an exception event exists, else `error`.

use std::fmt::Write;

use crate::detect::signals::{
    classify_error_text, clip, is_llm_call, is_outgoing_call, is_tool_span, parse_json, tool_name,
    ErrorClass,
};
use crate::detect::Ctx;
use crate::model::{Finding, FindingKind, SpanRecord, SpanStatus, StepKind};

const EXCEPTION_EVENTS: [&str; 2] = ["exception", "gen_ai.client.operation.exception"];
const MAX_MESSAGE: usize = 500;

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (i, span) in ctx.spans() {
        let record = record_error(span);
        let record = record.as_ref().map(|(n, m)| (n.as_str(), m.as_str()));
        let Some(signal) = error_signal(span, record) else {
            continue;
        };
        let step = ctx.step(i);
        let on_tool = is_tool_span(span, &step);
        let mut lower = String::new();
        for part in [
            signal.exception_type,
            signal.exception_message,
            signal.status_message,
            signal.error_type,
            signal.error_message,
        ]
        .into_iter()
        .flatten()
        {
            lower.push_str(&part.to_ascii_lowercase());
            lower.push('\n');
        }
        if signal.http_429 {
            lower.push_str("429");
        }
        // A tool that reports a bare status ("TOOL_ERROR") says why in its result.
        if on_tool {
            if let Some((_, output)) = crate::detect::signals::tool_output(span) {
                lower.push_str(&clip(&output, 2000).to_ascii_lowercase());
            }
        }
        let kind = match classify_error_text(&lower, on_tool) {
            Some(ErrorClass::RateLimited) => FindingKind::RateLimited,
            Some(ErrorClass::Loop) => FindingKind::Loop,
            Some(ErrorClass::UnknownTool) => FindingKind::UnknownTool,
            Some(ErrorClass::InvalidToolArgs) => FindingKind::InvalidToolArgs,
            None if signal.exception_type.is_some() || signal.exception_message.is_some() => {
                FindingKind::Exception
            }
            None => FindingKind::Error,
        };
        let mut tool = if on_tool { tool_name(span) } else { None };
        // An outgoing call under a step (HTTP under a tool) is named by its step: the
        // reason reads as the step's failure, as the blame does.
        let run = ctx.run_of(i);
        let under_step =
            (run != i && tool.is_none() && is_outgoing_call(span)).then(|| ctx.span(run));
        if let Some(head) = under_step {
            tool = tool_name(head);
        }
        let who = match (under_step, tool) {
            (Some(_), Some(t)) => format!("tool `{t}`: call `{}`", span.name),
            (Some(head), None) => format!(
                "{} span `{}`: call `{}`",
                step.as_str(),
                head.name,
                span.name
            ),
            (None, tool) => match tool {
                Some(t) => format!("tool `{t}`"),
                // A run or chain span that records the run's model is not itself a call.
                None if is_llm_call(span) && !matches!(step, StepKind::Agent | StepKind::Chain) => {
                    format!("{} LLM call `{}`", step.as_str(), span.name)
                }
                None => format!("{} span `{}`", step.as_str(), span.name),
            },
        };
        let mut reason = String::new();
        let source = if signal.exception_type.is_some() || signal.exception_message.is_some() {
            let ty = signal.exception_type.unwrap_or("an exception");
            let _ = write!(reason, "{who} raised {ty}");
            if let Some(m) = signal.exception_message.filter(|m| !m.is_empty()) {
                let _ = write!(reason, ": {}", clip(m, MAX_MESSAGE));
            }
            "exception"
        } else if let Some(ty) = signal.error_type {
            let _ = write!(reason, "{who} failed with error.type {ty}");
            if let Some(m) = signal.error_message.or(signal.status_message) {
                let _ = write!(reason, ": {}", clip(m, MAX_MESSAGE));
            }
            "error.type"
        } else if signal.status_error {
            let _ = write!(reason, "{who} ended with status ERROR");
            if let Some(m) = signal.status_message.or(signal.error_message) {
                let _ = write!(reason, ": {}", clip(m, MAX_MESSAGE));
            }
            "status"
        } else if signal.http_429 {
            let _ = write!(reason, "{who} got HTTP 429 Too Many Requests");
            "http.response.status_code"
        } else {
            let _ = write!(reason, "{who} failed");
            if let Some(m) = signal.error_message {
                let _ = write!(reason, ": {}", clip(m, MAX_MESSAGE));
            }
            "error.message"
        };
        let mut finding = Finding::new(i, step, kind, reason, source);
        if let Some(t) = tool {
            finding = finding.with_subject(t);
        }
        out.push(finding);
    }
}

/// The error evidence on one span.
struct ErrorSignal<'a> {
    status_error: bool,
    status_message: Option<&'a str>,
    exception_type: Option<&'a str>,
    exception_message: Option<&'a str>,
    error_type: Option<&'a str>,
    error_message: Option<&'a str>,
    http_429: bool,
}

/// `record`: the error name and message of a record of an error ([`record_error`]).
fn error_signal<'a>(
    span: &'a SpanRecord,
    record: Option<(&'a str, &'a str)>,
) -> Option<ErrorSignal<'a>> {
    let a = &span.attributes;
    // The last exception event is the one the span ended with.
    let event = span
        .events
        .iter()
        .rev()
        .find(|e| EXCEPTION_EVENTS.contains(&&*e.name));
    let exception_type = event
        .and_then(|e| e.attributes.get_str("exception.type"))
        .or_else(|| a.get_str("exception.type"));
    let exception_message = event
        .and_then(|e| e.attributes.get_str("exception.message"))
        .or_else(|| a.get_str("exception.message"));
    let status_code = a
        .get_i64("http.response.status_code")
        .or_else(|| a.get_i64("http.status_code"));
    let signal = ErrorSignal {
        status_error: span.status == SpanStatus::Error,
        status_message: span.status_message.as_deref().filter(|m| !m.is_empty()),
        exception_type,
        exception_message,
        error_type: a.get_str("error.type").filter(|t| !t.is_empty()),
        error_message: a.get_str("error.message").filter(|m| !m.is_empty()),
        http_429: status_code == Some(429),
    };
    // A record of an error (Mastra's `chunk: 'error'`, a refused tool call's result).
    let signal = ErrorSignal {
        error_type: signal
            .error_type
            .or(record.map(|r| r.0).filter(|t| !t.is_empty())),
        error_message: signal
            .error_message
            .or(record.map(|r| r.1).filter(|m| !m.is_empty())),
        ..signal
    };
    let finish_error = crate::classify::table::FINISH_REASON_KEYS.iter().any(|k| {
        a.get(k)
            .is_some_and(|v| v.to_text().trim_matches(['[', ']', '"']) == "error")
    });
    let signal = ErrorSignal {
        status_error: signal.status_error || finish_error,
        status_message: signal
            .status_message
            .or(finish_error.then_some("the model call ended with finish reason `error`")),
        ..signal
    };
    let any = record.is_some()
        || signal.status_error
        || event.is_some()
        || signal.exception_type.is_some()
        || signal.error_type.is_some()
        || signal.error_message.is_some()
        || signal.http_429;
    any.then_some(signal)
}

/// The error name and message of a span that records an error
/// ([`crate::classify::error_record`]): the `error` object's `name` and `message`, else
/// the first `message` anywhere in the record.
fn record_error(span: &SpanRecord) -> Option<(String, String)> {
    let json = parse_json(crate::classify::error_record(span)?)?;
    let text = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let error = json.get("error").filter(|e| e.is_object());
    let name = text(error.and_then(|e| e.get("name")));
    let mut message = text(error.and_then(|e| e.get("message")));
    if message.is_empty() {
        message = text(json.get("result").and_then(|r| r.get("message")));
    }
    if message.is_empty() {
        message = text(json.get("message"));
    }
    Some((name, message))
}
