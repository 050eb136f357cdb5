//! Tool-call arguments checked against the tool's JSON schema: a model call that asked
//! for a tool with arguments its declared schema refuses (a required argument missing,
//! an argument the schema does not allow, a value of the wrong type) made a bad call —
//! `invalid_tool_args` on the model call, whether or not the framework then ran the tool
//! or said why (frameworks often hide the validation error or record no tool span).
//!
//! Schemas are read where the conventions put the tools offered to the call
//! (OpenInference `llm.tools.<i>.tool.json_schema`, GenAI `gen_ai.tool.definitions`, the
//! Vercel AI SDK's `ai.prompt.tools`), else from any call or tool span of the trajectory
//! (`tool.parameters`, `gen_ai.tool.json_schema`).
//!
//! A tool that ran to completion with exactly those arguments accepted them (it coerced
//! a number given as text, or its declared schema is stricter than its code): that call
//! is not reported.

use std::collections::{HashMap, HashSet};

use serde_json::Value as Json;

use crate::detect::signals::{
    canonical_arguments, clip, for_each_tool_definition, is_tool_span, parse_json, requested_calls,
    tool_arguments, tool_name,
};
use crate::detect::Ctx;
use crate::model::{Finding, FindingKind, SpanRecord, SpanStatus};

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mut all: HashMap<String, Json> = HashMap::new();
    for (_, span) in ctx.spans() {
        declared_schemas(span, &mut all);
    }
    if all.is_empty() {
        return;
    }
    // (tool, canonical arguments) of tool executions that ended without error.
    let mut accepted: HashSet<(&str, String)> = HashSet::new();
    for (i, span) in ctx.spans() {
        if span.status == SpanStatus::Error || !is_tool_span(span, ctx.step_ref(i)) {
            continue;
        }
        if let (Some(name), Some((_, args))) = (tool_name(span), tool_arguments(span)) {
            accepted.insert((name, canonical_arguments(&args)));
        }
    }
    let mut own = HashMap::new();
    for (i, span) in ctx.spans() {
        let calls = requested_calls(span);
        if calls.is_empty() {
            continue;
        }
        own.clear();
        declared_schemas(span, &mut own);
        let schemas = if own.is_empty() { &all } else { &own };
        for call in &calls {
            let Some(schema) = schemas.get(&call.name) else {
                continue;
            };
            let args = match call.arguments.as_deref().map(str::trim) {
                None | Some("") => Json::Object(Default::default()),
                Some(text) => match parse_json(text) {
                    Some(json) => json,
                    // Broken JSON is the tool_calls rule's.
                    None => continue,
                },
            };
            let Some(problem) = violation(&args, schema) else {
                continue;
            };
            if !accepted.is_empty()
                && accepted.contains(&(call.name.as_str(), canonical_arguments(&args.to_string())))
            {
                continue;
            }
            let step = ctx.step(i);
            let reason = format!(
                "{} span `{}` called `{}` with arguments its schema refuses ({problem}): {}",
                step.as_str(),
                span.name,
                call.name,
                clip(&args.to_string(), 200)
            );
            out.push(
                Finding::new(i, step, FindingKind::InvalidToolArgs, reason, "tool_schema")
                    .with_subject(&call.name),
            );
            break;
        }
    }
}

/// The schemas a span declares, by tool name.
fn declared_schemas(span: &SpanRecord, out: &mut HashMap<String, Json>) {
    let mut add = |json: &Json| {
        let def = json.get("function").unwrap_or(json);
        let Some(name) = def.get("name").and_then(Json::as_str) else {
            return;
        };
        if let Some(schema) = ["parameters", "input_schema", "inputSchema", "json_schema"]
            .iter()
            .find_map(|k| def.get(*k))
        {
            out.insert(name.to_string(), schema.clone());
        }
    };
    for_each_tool_definition(span, &mut add);
    // A tool span's own schema.
    if let Some(name) = tool_name(span) {
        for key in ["tool.parameters", "gen_ai.tool.json_schema"] {
            if let Some(schema) = span.attributes.get_str(key).and_then(parse_json) {
                out.entry(name.to_string()).or_insert(schema);
            }
        }
    }
}

/// What is wrong with `args` under `schema`, if anything: a missing required argument,
/// an argument the schema does not allow, or a value of the wrong JSON type.
pub(crate) fn violation(args: &Json, schema: &Json) -> Option<String> {
    let schema = schema.get("jsonSchema").unwrap_or(schema);
    let Json::Object(args) = args else {
        return Some("the arguments are not an object".into());
    };
    let properties = schema.get("properties").and_then(Json::as_object);
    if let Some(required) = schema.get("required").and_then(Json::as_array) {
        // A property that may be null (`nullable`, a `null` type) or has a default can
        // be left out, whatever `required` says.
        let optional = |name: &str| {
            properties.and_then(|p| p.get(name)).is_some_and(|prop| {
                prop.get("nullable") == Some(&Json::Bool(true))
                    || prop.get("default").is_some()
                    || prop
                        .get("type")
                        .and_then(Json::as_array)
                        .is_some_and(|t| t.iter().any(|t| t == "null"))
            })
        };
        if let Some(missing) = required
            .iter()
            .filter_map(Json::as_str)
            .find(|r| !args.contains_key(*r) && !optional(r))
        {
            return Some(format!("missing required argument `{missing}`"));
        }
    }
    if let Some(properties) = properties {
        let closed = schema.get("additionalProperties") == Some(&Json::Bool(false));
        for (key, value) in args {
            match properties.get(key) {
                None if closed => return Some(format!("unexpected argument `{key}`")),
                None => {}
                Some(prop) => {
                    if let Some(want) = prop.get("type").and_then(Json::as_str) {
                        if !type_matches(value, want) {
                            return Some(format!("argument `{key}` is not {want}"));
                        }
                    }
                }
            }
        }
    }
    None
}

fn type_matches(value: &Json, want: &str) -> bool {
    match want {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}
