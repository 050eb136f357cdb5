//! Step limits that end in a forced answer: some frameworks do not raise when an agent
//! reaches its turn/step/iteration limit, they make one last model call telling the
//! model to answer now, with no tools. That call's request carries the framework's own
//! words ([`FORCED_ANSWER_PROMPTS`], a convention table of framework quirks); such a
//! call is a `loop`: the agent ran out of steps without finishing.

use crate::detect::signals::is_llm_call;
use crate::detect::Ctx;
use crate::model::{Finding, FindingKind, Value};

/// What frameworks tell the model when they force an answer at the step limit, as
/// they write it (matched as written, so a request is not copied to be lowercased):
/// CrewAI's `max_iter`, smolagents' `max_steps`.
const FORCED_ANSWER_PROMPTS: &[(&str, &str)] = &[
    ("crewai max_iter", "give your absolute best final answer"),
    ("smolagents max_steps", "got stuck and failed to do so"),
];

/// Request attributes that hold the call's messages.
const REQUEST_KEY_PREFIXES: &[&str] = &[
    "llm.input_messages.",
    "gen_ai.input.messages",
    "gen_ai.prompt",
];

pub(crate) fn run(ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for (i, span) in ctx.spans() {
        if !is_llm_call(span) {
            continue;
        }
        let forced = span.attributes.iter().find_map(|(key, value)| {
            if !REQUEST_KEY_PREFIXES.iter().any(|p| key.starts_with(p)) {
                return None;
            }
            let Value::Str(text) = value else {
                return None;
            };
            FORCED_ANSWER_PROMPTS
                .iter()
                .find(|(_, prompt)| text.contains(prompt))
                .map(|(who, _)| *who)
        });
        let Some(who) = forced else {
            continue;
        };
        let reason = format!(
            "{} span `{}` was forced to answer: the agent reached its step limit ({who})",
            ctx.step(i).as_str(),
            span.name
        );
        out.push(Finding::new(
            i,
            ctx.step(i),
            FindingKind::Loop,
            reason,
            "step_limit",
        ));
    }
}
