//! Empty retrieval: a retriever whose documents are absent or empty, or whose document
//! count is 0.
//!
//! Evidence, first found wins: OpenInference `retrieval.documents.<i>.document.*` keys;
//! a `retrieval.documents` or `gen_ai.retrieval.documents` list; a count attribute;
//! OpenLLMetry vector-DB spans, one `db.query.result` event per result (only some of
//! its vector-DB instrumentations record them, so no event is no evidence);
//! the step's output (`output.value`, `gen_ai.tool.call.result`, `traceloop.entity.output`)
//! as a JSON list (`[]`) or an object with a `documents` list. A span that
//! is a retriever by convention (`RETRIEVER`, `VECTOR_DB`, operation `retrieval`) and
//! records no documents at all returned none; a span that is a retriever only by its
//! step is judged only on evidence (it may be a wrapper around the real retrieval).
//! A retriever with status ERROR is left to the errors rule.

use std::collections::HashSet;

use serde_json::Value as Json;

use crate::detect::signals::{is_retrieval_by_convention, parse_json};
use crate::detect::Ctx;
use crate::model::{Finding, FindingKind, SpanRecord, SpanStatus, StepKind, Value};

const LIST_KEYS: [&str; 2] = ["retrieval.documents", "gen_ai.retrieval.documents"];
const COUNT_KEYS: [&str; 3] = [
    "retrieval.documents.count",
    "retrieval.document_count",
    "gen_ai.retrieval.document_count",
];

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mut reported_runs: HashSet<u32> = HashSet::new();
    for (i, span) in ctx.spans() {
        let by_convention = is_retrieval_by_convention(span);
        if !(by_convention || *ctx.step_ref(i) == StepKind::Retriever) {
            continue;
        }
        if span.status == SpanStatus::Error {
            continue;
        }
        let (count, source) = match document_count(span) {
            Some(found) => found,
            None if by_convention => (0, "retrieval.documents"),
            None => continue,
        };
        if count > 0 {
            continue;
        }
        let run = ctx.run_of(i);
        if !reported_runs.insert(run) {
            continue;
        }
        let query = ["gen_ai.retrieval.query.text", "input.value"]
            .iter()
            .find_map(|k| span.attributes.get_str(k));
        let step = ctx.step(i);
        let reason = match query {
            Some(q) => format!(
                "{} span `{}` returned no documents for query {:?}",
                step.as_str(),
                span.name,
                crate::detect::signals::clip(q, 200)
            ),
            None => format!(
                "{} span `{}` returned no documents",
                step.as_str(),
                span.name
            ),
        };
        out.push(
            Finding::new(i, step, FindingKind::EmptyRetrieval, reason, source).with_score(0.0),
        );
    }
}

/// The number of documents the span records, and the attribute that says so.
fn document_count(span: &SpanRecord) -> Option<(usize, &'static str)> {
    let a = &span.attributes;
    // Flattened OpenInference documents: count distinct indices.
    let mut last_index: Option<&str> = None;
    let mut indexed = 0usize;
    for (key, _) in a.with_prefix("retrieval.documents.") {
        let rest = &key["retrieval.documents.".len()..];
        let Some((index, _)) = rest.split_once('.') else {
            continue;
        };
        if !index.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if last_index != Some(index) {
            last_index = Some(index);
            indexed += 1;
        }
    }
    if indexed > 0 {
        return Some((indexed, "retrieval.documents"));
    }
    for key in LIST_KEYS {
        match a.get(key) {
            Some(Value::Array(items)) => return Some((items.len(), key)),
            Some(Value::Str(s)) => {
                if let Some(Json::Array(items)) = parse_json(s) {
                    return Some((items.len(), key));
                }
                if s.trim().is_empty() {
                    return Some((0, key));
                }
            }
            _ => {}
        }
    }
    for key in COUNT_KEYS {
        if let Some(n) = a.get_i64(key) {
            return Some((n.max(0) as usize, key));
        }
    }
    let results = span
        .events
        .iter()
        .filter(|e| &*e.name == RESULT_EVENT)
        .count();
    if results > 0 {
        return Some((results, RESULT_EVENT));
    }
    // The step's output: OpenInference `output.value`, a GenAI tool result (a tool
    // classified as a retriever by a user rule), OpenLLMetry's entity output.
    for key in OUTPUT_KEYS {
        let Some(output) = a.get_str(key) else {
            continue;
        };
        return match parse_json(output) {
            Some(json) => result_count(&json, 0).map(|n| (n, key)),
            None if output.trim().is_empty() || nothing_found(output) => Some((0, key)),
            None => None,
        };
    }
    None
}

/// OpenLLMetry's per-result event of a vector-DB query (Qdrant, Chroma, Pinecone, ...).
const RESULT_EVENT: &str = "db.query.result";

const OUTPUT_KEYS: [&str; 6] = [
    "output.value",
    "gen_ai.tool.call.result",
    "traceloop.entity.output",
    "ai.toolCall.result",
    "gen_ai.tool.output",
    "output",
];

/// Fields that hold a tool's result inside the envelope a framework wraps it in
/// (`{"result": [...]}`, a LangChain ToolMessage's `content`, LlamaIndex's
/// `raw_output`, ...).
const RESULT_FIELDS: [&str; 9] = [
    "documents",
    "result",
    "results",
    "raw_output",
    "content",
    "output",
    "kwargs",
    "data",
    "items",
];

/// Texts a search tool answers with when it found nothing.
const NOTHING_FOUND: [&str; 6] = [
    "no results",
    "no documents",
    "nothing found",
    "no matching",
    "not find any",
    "found nothing",
];

/// The number of results in a tool's output: a JSON list, a list under one of the
/// envelope's result fields, or a "no results" text (0).
fn result_count(json: &Json, depth: usize) -> Option<usize> {
    match json {
        Json::Array(items) => Some(items.len()),
        Json::Object(map) if depth < 4 => RESULT_FIELDS
            .iter()
            .find_map(|k| map.get(*k).and_then(|v| result_count(v, depth + 1))),
        Json::String(text) if depth > 0 => {
            let t = text.trim();
            match parse_json(t) {
                Some(inner) => result_count(&inner, depth + 1),
                None if t.is_empty() => Some(0),
                None => nothing_found(t).then_some(0),
            }
        }
        _ => None,
    }
}

fn nothing_found(text: &str) -> bool {
    // A LangChain tool message written as a Python repr: `content=[] name='search_docs'`.
    let t = text.trim_start();
    if ["content=[]", "content='[]'", "content=''", "content=\"\""]
        .iter()
        .any(|p| t.starts_with(p))
    {
        return true;
    }
    text.len() < 200 && {
        let lower = text.to_ascii_lowercase();
        NOTHING_FOUND.iter().any(|n| lower.contains(n))
    }
}
