//! What one finalized analysis contributes to the window: the run's value of every
//! cohort dimension (read exactly as `aggregate` reads them), other low-cardinality
//! attributes of the root span and resource, the numeric attributes, the outcome, the
//! blamed step and per-step masks.
//!
//! Token counts are summed over the run without double counting: a span's count is
//! added only when no span below it carries one (instrumentations put the run total on
//! the root and the per-call counts on the LLM spans; either alone, or both, give the
//! run total).

use crate::conventions;
use std::cell::RefCell;
use std::sync::Arc;

use crate::aggregate::extract::{extract, value_of, KeyMemo, Scratch};
use crate::aggregate::Dimension;
use crate::model::{Analysis, Outcome, StepKind, Str, Value};

use super::window::RecordInput;

/// Keys whose values are per-run identifiers or payloads, never cohorts.
const DENY_SUBSTRINGS: [&str; 20] = [
    // The outcome itself, under another name, or its consequences (how long the run
    // took, what an evaluator said of its answer).
    "error",
    "status",
    "exception",
    "finish_reason",
    "outcome",
    "duration",
    "latency",
    "evaluation",
    "session",
    "conversation",
    conventions::USER_ID,
    "user_id",
    "input",
    "output",
    "message",
    "content",
    "prompt.",
    "request.id",
    "response.id",
    "trace",
];

/// Longest value of an extra attribute considered low-cardinality.
const MAX_EXTRA_VALUE_BYTES: usize = 64;
/// Extra attributes read per run at most.
const MAX_EXTRAS_PER_RUN: usize = 24;

const INPUT_TOKEN_KEYS: [&str; 3] = [
    "gen_ai.usage.input_tokens",
    "llm.token_count.prompt",
    "gen_ai.usage.prompt_tokens",
];
const OUTPUT_TOKEN_KEYS: [&str; 3] = [
    "gen_ai.usage.output_tokens",
    "llm.token_count.completion",
    "gen_ai.usage.completion_tokens",
];

thread_local! {
    static SCRATCH: RefCell<(Scratch, Vec<f64>, Vec<bool>)> =
        RefCell::new((Scratch::default(), Vec::new(), Vec::new()));
}

/// Decisions of [`extra_key_allowed`] per interned key, for the dimensions at `dims`
/// (an address): the substring tests were a third of this sink's cost.
#[derive(Default)]
struct AllowedCache {
    dims: usize,
    allowed: KeyMemo<bool>,
}

thread_local! {
    static ALLOWED: RefCell<AllowedCache> = RefCell::new(AllowedCache::default());
}

/// [`extra_key_allowed`], remembered for interned keys.
fn extra_key_allowed_cached(key: &Str, dims: &[Dimension]) -> bool {
    ALLOWED.with(|cell| {
        let Ok(mut cache) = cell.try_borrow_mut() else {
            return extra_key_allowed(key, dims);
        };
        let id = dims.as_ptr() as usize ^ dims.len();
        if cache.dims != id {
            cache.dims = id;
            cache.allowed.clear();
        }
        cache.allowed.get(key, |k| extra_key_allowed(k, dims))
    })
}

/// True when `key` may be used as an extra cohort attribute.
fn extra_key_allowed(key: &str, dims: &[Dimension]) -> bool {
    if key.ends_with(".id") || key.ends_with("_id") || key.len() > 96 {
        return false;
    }
    if DENY_SUBSTRINGS.iter().any(|d| key.contains(d)) {
        return false;
    }
    !dims.iter().any(|d| d.keys.iter().any(|k| &**k == key))
}

fn extra_value(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) if !s.trim().is_empty() && s.len() <= MAX_EXTRA_VALUE_BYTES => {
            Some(s.to_string())
        }
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The window row of `analysis`; `root_pattern` is the blamed finding's reason
/// pattern, when known.
pub fn record_input(
    analysis: &Analysis,
    dims: &[Dimension],
    root_pattern: Option<u64>,
) -> RecordInput {
    let t = &*analysis.trajectory;
    let mut out = RecordInput {
        trace_id: Some(t.trace_id),
        end_unix_nano: t.end_unix_nano(),
        failed: analysis.outcome == Outcome::Failed,
        ..RecordInput::default()
    };
    SCRATCH.with(|cell| {
        let Ok(mut guard) = cell.try_borrow_mut() else {
            return;
        };
        let (scratch, tokens, below) = &mut *guard;
        extract(analysis, dims, scratch);
        for (d, dim) in dims.iter().enumerate() {
            let span = scratch.run_dims.get(d).copied().unwrap_or(u32::MAX);
            if let Some(v) = scratch.value(t, dims, d, span) {
                out.categorical.push((dim.name.clone(), v.into_owned()));
            }
        }
        // Step runs: counts and masks.
        let mut steps = 0u32;
        let mut tools = 0u32;
        for run in &scratch.runs {
            let Some(step) = analysis.steps.get(run.span as usize) else {
                continue;
            };
            steps += 1;
            if step.kind == StepKind::Tool {
                tools += 1;
            }
            let name = step.kind.as_str();
            match out.steps.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 |= run.failed,
                None => out.steps.push((name.to_string(), run.failed)),
            }
        }
        out.numeric[0] = run_sum(analysis, &INPUT_TOKEN_KEYS, tokens, below, None);
        out.numeric[1] = run_sum(analysis, &OUTPUT_TOKEN_KEYS, tokens, below, None);
        out.numeric[5] = run_sum(
            analysis,
            &INPUT_TOKEN_KEYS,
            tokens,
            below,
            Some(StepKind::Generator),
        );
        out.numeric[2] = Some(f64::from(steps));
        out.numeric[3] = Some(f64::from(tools));
    });
    let start = t.start_unix_nano();
    let end = t.end_unix_nano();
    out.numeric[4] = (end >= start && end > 0).then(|| (end - start) as f64 / 1e6);

    if let Some(root) = t.root_span() {
        let mut extras = 0;
        let attrs = root
            .attributes
            .entries()
            .iter()
            .chain(root.resource.attributes.entries());
        for (key, value) in attrs {
            if extras >= MAX_EXTRAS_PER_RUN {
                break;
            }
            if !extra_key_allowed_cached(key, dims)
                || out.categorical.iter().any(|(k, _)| **k == **key)
            {
                continue;
            }
            if let Some(v) = extra_value(value) {
                out.categorical.push((Arc::from(&**key), v));
                extras += 1;
            }
        }
    }
    if out.failed {
        if let Some(rc) = &analysis.root_cause {
            out.root_step = Some(rc.step.as_str().to_string());
            out.root_pattern = root_pattern;
        }
    }
    out
}

/// The run total of a token count: the sum over spans carrying one of `keys` that
/// have no carrying span below them (only spans of step `step` when given). `None`
/// when no span carries one.
fn run_sum(
    analysis: &Analysis,
    keys: &[&str],
    values: &mut Vec<f64>,
    below: &mut Vec<bool>,
    step: Option<StepKind>,
) -> Option<f64> {
    let t = &*analysis.trajectory;
    let n = t.spans.len();
    values.clear();
    values.resize(n, f64::NAN);
    below.clear();
    below.resize(n, false);
    let mut any = false;
    for (i, span) in t.spans.iter().enumerate() {
        if step
            .as_ref()
            .is_some_and(|k| analysis.steps.get(i).is_none_or(|a| a.kind != *k))
        {
            continue;
        }
        let v = keys
            .iter()
            .find_map(|k| value_of(span, k))
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0);
        if let Some(v) = v {
            values[i] = v;
            any = true;
        }
    }
    if !any {
        return None;
    }
    // Mark every ancestor of a carrying span; bounded by `n` steps per walk.
    for (i, v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        let mut j = i as u32;
        let mut steps = 0;
        while let Some(p) = t.tree_parent(j) {
            let p_us = p as usize;
            if p_us >= n || below[p_us] || steps > n {
                break;
            }
            below[p_us] = true;
            j = p;
            steps += 1;
        }
    }
    let total: f64 = (0..n)
        .filter(|&i| !values[i].is_nan() && !below[i])
        .map(|i| values[i])
        .sum();
    Some(total)
}
