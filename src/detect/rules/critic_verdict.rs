//! Critic verdicts: a critic step (a reviewer agent, a judge node or call) whose output
//! is a rejection — `REJECT: …`, `FAIL`, `{"verdict": "reject"}`, `approved: false` — is
//! a failed evaluation of the answer it judged, with no configuration.
//!
//! One finding per critic run, on the run's outermost span, reading the outputs of the
//! run's spans in order (a reviewer agent's own output, else its model calls'). The
//! first line that states a verdict decides; an approval ends the search.

use std::collections::HashSet;

use crate::detect::signals::{answer_text, clip};
use crate::detect::Ctx;
use crate::model::{Finding, FindingKind, StepKind};

/// The `source` of the findings of this rule.
pub(crate) const SOURCE: &str = "critic_verdict";

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

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let mut judged: HashSet<u32> = HashSet::new();
    for (i, span) in ctx.spans() {
        if *ctx.step_ref(i) != StepKind::Critic {
            continue;
        }
        let run = ctx.run_of(i);
        if judged.contains(&run) {
            continue;
        }
        let Some(text) = answer_text(span) else {
            continue;
        };
        match verdict(&text) {
            Some(false) => {}
            Some(true) => {
                judged.insert(run);
                continue;
            }
            None => continue,
        }
        judged.insert(run);
        let name = crate::classify::agent_name(ctx.span(run))
            .map(|n| n.to_string())
            .unwrap_or_else(|| ctx.span(run).name.to_string());
        let reason = format!(
            "critic `{name}` rejected the answer: {}",
            clip(text.trim(), 300)
        );
        out.push(
            Finding::new(
                run,
                StepKind::Critic,
                FindingKind::EvalFailed,
                reason,
                SOURCE,
            )
            .with_score(0.0)
            .with_subject(&name),
        );
    }
}

/// `Some(true)` for an approval, `Some(false)` for a rejection, `None` when the text
/// states no verdict in its first lines.
pub(crate) fn verdict(text: &str) -> Option<bool> {
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
    for key in ["verdict", "decision", "result"] {
        if let Some(v) = json.get(key).and_then(|v| v.as_str()) {
            return verdict(v);
        }
    }
    for key in ["approved", "pass", "passed", "accepted"] {
        if let Some(b) = json.get(key).and_then(|v| v.as_bool()) {
            return Some(b);
        }
    }
    None
}
