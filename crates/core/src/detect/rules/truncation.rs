//! Truncation: an LLM response cut off by the token limit. Finish reason `length`
//! (OpenAI), `max_tokens` (Anthropic, Gemini) or `max_output_tokens`, read from
//! `gen_ai.response.finish_reasons`, `llm.finish_reason` or OpenLLMetry
//! `gen_ai.completion.<i>.finish_reason`, else from a model response recorded whole as
//! the span's JSON output (a LangChain `LLMResult`, an OpenAI or Anthropic response;
//! [`crate::content::output_finish_reason`]).

use crate::conventions;
use crate::detect::signals::parse_json;
use crate::detect::Ctx;
use crate::model::{Finding, FindingKind, SpanRecord, Value};

const TRUNCATING: [&str; 3] = ["length", "max_tokens", "max_output_tokens"];

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (i, span) in ctx.spans() {
        let Some((source, reason_value)) = truncating_reason(span) else {
            continue;
        };
        let step = ctx.step(i);
        let model = [
            conventions::GEN_AI_RESPONSE_MODEL,
            conventions::GEN_AI_REQUEST_MODEL,
            conventions::LLM_MODEL_NAME,
        ]
        .iter()
        .find_map(|k| span.attributes.get_str(k));
        let mut reason = format!(
            "{} span `{}` was cut off by the token limit (finish reason `{reason_value}`",
            step.as_str(),
            span.name
        );
        if let Some(max) = span.attributes.get_i64("gen_ai.request.max_tokens") {
            reason.push_str(&format!(", max_tokens {max}"));
        }
        if let Some(m) = model {
            reason.push_str(&format!(", model {m}"));
        }
        reason.push(')');
        out.push(Finding::new(
            i,
            step,
            FindingKind::Truncated,
            reason,
            source,
        ));
    }
}

fn is_truncating(v: &str) -> bool {
    TRUNCATING.iter().any(|t| v.trim().eq_ignore_ascii_case(t))
}

fn truncating_reason(span: &SpanRecord) -> Option<(&'static str, String)> {
    let a = &span.attributes;
    match a.get("gen_ai.response.finish_reasons") {
        Some(Value::Array(items)) => {
            if let Some(v) = items
                .iter()
                .filter_map(Value::as_str)
                .find(|v| is_truncating(v))
            {
                return Some(("gen_ai.response.finish_reasons", v.to_string()));
            }
        }
        Some(Value::Str(s)) => {
            let hit = match parse_json(s) {
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .find(|v| is_truncating(v))
                    .map(str::to_string),
                _ => is_truncating(s).then(|| s.trim().to_string()),
            };
            if let Some(v) = hit {
                return Some(("gen_ai.response.finish_reasons", v));
            }
        }
        _ => {}
    }
    if let Some(v) = a.get_str("llm.finish_reason").filter(|v| is_truncating(v)) {
        return Some(("llm.finish_reason", v.to_string()));
    }
    if let Some(v) = a
        .with_prefix("gen_ai.completion.")
        .filter(|(k, _)| k.ends_with(".finish_reason"))
        .find_map(|(_, v)| v.as_str().filter(|v| is_truncating(v)))
    {
        return Some(("gen_ai.completion.*.finish_reason", v.to_string()));
    }
    // Only a model call's own output: a node or a chain above it often carries the same
    // response in its state, and the cut is the call's, not theirs.
    if !crate::detect::signals::is_llm_call(span) {
        return None;
    }
    crate::content::output_finish_reason(span, &TRUNCATING).map(|v| ("output", v))
}
