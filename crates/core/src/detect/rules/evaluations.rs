//! Evaluator results below their threshold or with a failing label (`eval_failed`), in
//! all three transports:
//!
//! 1. attributes on the evaluated span: OpenInference `evaluations.<i>.evaluation.*` and
//!    `annotations.<i>.annotation.*` (`name`, `score`, `label`, `explanation`; the
//!    `trace.` scoped forms evaluate the root), traceAI / GenAI flat
//!    `gen_ai.evaluation.{name,score.value,score.label,explanation}`, ai-evaluation
//!    `eval.<metric>` with `eval.<metric>.reason`;
//! 2. EVALUATOR spans carrying those attributes: in the trajectory (evaluating their
//!    `gen_ai.evaluation.target_span_id`, else their link target, else their parent) or
//!    in `Trajectory::linked` (evaluating the span their link points at; a linked
//!    evaluation keeps only the attributes under `EVALUATION_ATTRIBUTE_PREFIXES`, which
//!    cover every key read here);
//! 3. `gen_ai.evaluation.result` log events, joined to the evaluated span by
//!    `gen_ai.evaluation.target_span_id`, the record's span id, or `gen_ai.response.id`;
//!    and the same event recorded as a span event, evaluating its span (or its explicit
//!    target).
//!
//! A result with no span to join is about the whole run and lands on the root. A
//! recognised label decides (failing or passing); otherwise the score is compared with
//! the evaluator's threshold (default `default_eval_threshold`, for scores in [0, 1]).
//! The reason is the evaluator's explanation when it gives one. The same result seen in
//! two transports is reported once.

use crate::conventions;
use std::borrow::Cow;
use std::collections::HashSet;

use crate::content::PASSING_LABELS;
use crate::detect::config::normalize_label;
use crate::detect::signals::clip;
use crate::detect::Ctx;
use crate::model::{Attributes, Finding, FindingKind, SpanId, SpanRecord, Value};

/// `eval.<x>` keys that are metadata, not metrics (ai-evaluation conventions).
const EVAL_METADATA: &[&str] = &["evaluated_at", "evaluator_version", "sample_rate", "model"];

/// Indexed OpenInference forms: key prefix, field prefix, source, evaluates the root.
const INDEXED: &[(&str, &str, &str, bool)] = &[
    ("evaluations.", "evaluation.", "evaluations.*", false),
    ("annotations.", "annotation.", "annotations.*", false),
    (
        "trace.evaluations.",
        "evaluation.",
        "trace.evaluations.*",
        true,
    ),
    (
        "trace.annotations.",
        "annotation.",
        "trace.annotations.*",
        true,
    ),
];

const MAX_EXPLANATION: usize = 1000;
const TARGET_KEY: &str = conventions::GEN_AI_EVALUATION_TARGET_SPAN_ID;

/// One evaluator result, as read from any transport.
#[derive(Default)]
struct EvalResult<'a> {
    name: Option<Cow<'a, str>>,
    score: Option<f64>,
    label: Option<Cow<'a, str>>,
    explanation: Option<Cow<'a, str>>,
    /// Evaluates the root span (trace scope) rather than the carrier.
    trace_scope: bool,
    source: &'static str,
}

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mut seen: HashSet<(u32, String, Option<u64>, Option<String>)> = HashSet::new();
    let mut results = Vec::new();
    for (i, span) in ctx.spans() {
        // `gen_ai.evaluation.result` recorded as a span event (older GenAI
        // instrumentations record events on the span they belong to).
        for event in &span.events {
            if &*event.name != conventions::GEN_AI_EVALUATION_RESULT {
                continue;
            }
            results.clear();
            read_gen_ai(
                &event.attributes,
                conventions::GEN_AI_EVALUATION_RESULT,
                &mut results,
            );
            if results.is_empty() {
                continue;
            }
            let target = explicit_target(ctx, &event.attributes).or(Some(i));
            emit(ctx, target, None, &results, &mut seen, out);
        }
        results.clear();
        read_attributes(&span.attributes, &mut results);
        if results.is_empty() {
            continue;
        }
        let target = if span.is_evaluator() {
            evaluator_target(ctx, span).or_else(|| ctx.traj.tree_parent(i))
        } else {
            explicit_target(ctx, &span.attributes).or(Some(i))
        };
        let via = span.is_evaluator().then_some("evaluator_span");
        emit(ctx, target, via, &results, &mut seen, out);
    }
    for evaluation in &ctx.traj.linked {
        results.clear();
        read_attributes(&evaluation.attributes, &mut results);
        if results.is_empty() {
            continue;
        }
        let target = explicit_target(ctx, &evaluation.attributes)
            .or_else(|| {
                evaluation
                    .links_into(ctx.traj.trace_id)
                    .find_map(|s| ctx.find(s))
            })
            .or(ctx.traj.root);
        emit(
            ctx,
            target,
            Some("linked_evaluator"),
            &results,
            &mut seen,
            out,
        );
    }
    for log in &ctx.traj.logs {
        if &*log.event_name != conventions::GEN_AI_EVALUATION_RESULT {
            continue;
        }
        results.clear();
        read_gen_ai(
            &log.attributes,
            conventions::GEN_AI_EVALUATION_RESULT,
            &mut results,
        );
        if results.is_empty() {
            continue;
        }
        let target = log_target(ctx, log);
        emit(ctx, target, None, &results, &mut seen, out);
    }
}

/// The span an evaluator span or log points at: explicit target id, else a link into
/// this trajectory.
fn evaluator_target(ctx: &Ctx<'_>, span: &SpanRecord) -> Option<u32> {
    if let Some(t) = explicit_target(ctx, &span.attributes) {
        return Some(t);
    }
    span.links
        .iter()
        .filter(|l| l.trace_id == ctx.traj.trace_id)
        .find_map(|l| ctx.find(l.span_id))
}

/// traceAI's `gen_ai.evaluation.target_span_id`, when it names a span of this trajectory.
fn explicit_target(ctx: &Ctx<'_>, attrs: &Attributes) -> Option<u32> {
    attrs
        .get_str(TARGET_KEY)
        .and_then(|h| SpanId::from_hex(h.trim()).ok())
        .and_then(|id| ctx.find(id))
}

fn log_target(ctx: &Ctx<'_>, log: &crate::model::LogEvent) -> Option<u32> {
    if let Some(t) = explicit_target(ctx, &log.attributes) {
        return Some(t);
    }
    if let Some(i) = log.span_id.and_then(|id| ctx.find(id)) {
        let span = ctx.span(i);
        if span.is_evaluator() {
            return evaluator_target(ctx, span).or_else(|| ctx.traj.tree_parent(i));
        }
        return Some(i);
    }
    if let Some(response_id) = log.attributes.get_str("gen_ai.response.id") {
        if let Some((i, _)) = ctx
            .spans()
            .find(|(_, s)| s.attributes.get_str("gen_ai.response.id") == Some(response_id))
        {
            return Some(i);
        }
    }
    ctx.traj.root
}

fn emit(
    ctx: &Ctx<'_>,
    target: Option<u32>,
    via: Option<&'static str>,
    results: &[EvalResult<'_>],
    seen: &mut HashSet<(u32, String, Option<u64>, Option<String>)>,
    out: &mut Vec<Finding>,
) {
    for r in results {
        let target = if r.trace_scope { ctx.traj.root } else { target };
        let Some(target) = target else {
            continue;
        };
        let name = r.name.as_deref().unwrap_or("evaluation").trim();
        let normalized = normalize_label(name);
        let label = r.label.as_deref().map(normalize_label);
        let key = (
            target,
            normalized.clone(),
            r.score.map(f64::to_bits),
            label.clone(),
        );
        if !seen.insert(key) {
            continue;
        }
        let Some(why) = judge(
            ctx,
            &normalized,
            r.score,
            label.as_deref(),
            r.label.as_deref(),
        ) else {
            continue;
        };
        let target_span = ctx.span(target);
        let reason = match r.explanation.as_deref().map(str::trim) {
            Some(e) if !e.is_empty() => clip(e, MAX_EXPLANATION).into_owned(),
            _ => format!("evaluator `{name}` on `{}` {why}", target_span.name),
        };
        let mut finding = Finding::new(
            target,
            ctx.step(target),
            FindingKind::EvalFailed,
            reason,
            via.unwrap_or(r.source),
        )
        .with_subject(name);
        finding.score = r.score;
        finding.task_level =
            Some(target) == ctx.traj.root || ctx.config.is_task_evaluator(&normalized);
        out.push(finding);
    }
}

/// Why the result fails (a phrase), or `None` when it passes or says nothing.
fn judge(
    ctx: &Ctx<'_>,
    name: &str,
    score: Option<f64>,
    label: Option<&str>,
    raw_label: Option<&str>,
) -> Option<String> {
    if let Some(label) = label {
        if ctx.config.is_failing_label(label) {
            return Some(format!(
                "labelled it `{}`",
                raw_label.unwrap_or(label).trim()
            ));
        }
        if PASSING_LABELS.contains(&label) {
            return None;
        }
    }
    let score = score.filter(|s| s.is_finite())?;
    let evaluator = ctx.config.evaluators.get(name);
    let lower_is_better = evaluator.is_some_and(|e| e.lower_is_better);
    let threshold = match evaluator.and_then(|e| e.threshold) {
        Some(t) => t,
        None if (0.0..=1.0).contains(&score) => ctx.config.default_eval_threshold,
        None => return None,
    };
    if lower_is_better && score > threshold {
        Some(format!("scored {score}, above its threshold {threshold}"))
    } else if !lower_is_better && score < threshold {
        Some(format!("scored {score}, below its threshold {threshold}"))
    } else {
        None
    }
}

/// Every evaluator result written as attributes of one span or log record.
fn read_attributes<'a>(attrs: &'a Attributes, out: &mut Vec<EvalResult<'a>>) {
    for &(prefix, field_prefix, source, trace_scope) in INDEXED {
        read_indexed(attrs, prefix, field_prefix, source, trace_scope, out);
    }
    read_gen_ai(attrs, "gen_ai.evaluation.*", out);
    read_eval_metrics(attrs, out);
}

/// `<prefix><i>.<field_prefix><field>` groups, in index order of first appearance.
fn read_indexed<'a>(
    attrs: &'a Attributes,
    prefix: &'static str,
    field_prefix: &str,
    source: &'static str,
    trace_scope: bool,
    out: &mut Vec<EvalResult<'a>>,
) {
    let start = out.len();
    let mut indices: Vec<&'a str> = Vec::new();
    for (key, value) in attrs.with_prefix(prefix) {
        let rest = &key[prefix.len()..];
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        let Some(field) = field.strip_prefix(field_prefix) else {
            continue;
        };
        if !index.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let slot = match indices.iter().position(|i| *i == index) {
            Some(p) => start + p,
            None => {
                indices.push(index);
                out.push(EvalResult {
                    trace_scope,
                    source,
                    ..EvalResult::default()
                });
                out.len() - 1
            }
        };
        let r = &mut out[slot];
        match field {
            "name" => r.name = text(value),
            "score" => r.score = value.as_f64(),
            "label" => r.label = text(value),
            "explanation" => r.explanation = text(value),
            _ => {}
        }
    }
}

/// Flat `gen_ai.evaluation.*` keys: one result.
fn read_gen_ai<'a>(attrs: &'a Attributes, source: &'static str, out: &mut Vec<EvalResult<'a>>) {
    let name = attrs
        .get(conventions::GEN_AI_EVALUATION_NAME)
        .and_then(text);
    let score = attrs.get_f64(conventions::GEN_AI_EVALUATION_SCORE_VALUE);
    let label = attrs
        .get(conventions::GEN_AI_EVALUATION_SCORE_LABEL)
        .and_then(text);
    if name.is_none() && score.is_none() && label.is_none() {
        return;
    }
    out.push(EvalResult {
        name,
        score,
        label,
        explanation: attrs
            .get(conventions::GEN_AI_EVALUATION_EXPLANATION)
            .and_then(text),
        trace_scope: false,
        source,
    });
}

/// ai-evaluation `eval.<metric>` (score, boolean or label) with `eval.<metric>.reason`.
fn read_eval_metrics<'a>(attrs: &'a Attributes, out: &mut Vec<EvalResult<'a>>) {
    for (key, value) in attrs.with_prefix("eval.") {
        let metric = &key["eval.".len()..];
        if metric.is_empty() || metric.contains('.') || EVAL_METADATA.contains(&metric) {
            continue;
        }
        let (score, label) = match value {
            Value::Int(_) | Value::Double(_) => (value.as_f64(), None),
            Value::Bool(b) => (None, Some(Cow::Borrowed(if *b { "true" } else { "false" }))),
            Value::Str(s) => match s.trim().parse::<f64>() {
                Ok(n) => (Some(n), None),
                Err(_) => (None, Some(Cow::Borrowed(&**s))),
            },
            Value::Array(_) => continue,
        };
        let reason_key = format!("eval.{metric}.reason");
        let label_key = format!("eval.{metric}.label");
        out.push(EvalResult {
            name: Some(Cow::Borrowed(metric)),
            score,
            label: label.or_else(|| attrs.get(&label_key).and_then(text)),
            explanation: attrs.get(&reason_key).and_then(text),
            trace_scope: false,
            source: "eval.*",
        });
    }
}

fn text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Str(s) => Some(Cow::Borrowed(&**s)),
        Value::Array(_) => None,
        other => Some(Cow::Owned(other.to_text())),
    }
}
