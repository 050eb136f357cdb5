//! Classify: the step of every span of a trajectory.
//!
//! Input: a [`Trajectory`] and the user's [`ClassifyConfig`]. Output: one
//! [`StepAssignment`] per span, in the order of `Trajectory::spans`.
//!
//! The order of precedence (first match wins):
//! 1. the explicit `agent.trajectory.step` attribute ([`StepSource::Explicit`]);
//! 2. user rules, in order; a `subtree` rule also gives its step to every span under
//!    the matching span, unless a descendant has its own explicit attribute
//!    ([`StepSource::Rule`], [`StepSource::RuleSubtree`]);
//! 3. semantic conventions of real instrumentations, one table of data ([`table`]),
//!    read with no configuration ([`StepSource::Convention`]). An LLM call is a
//!    `planner` when it emits tool calls (or was offered tools and failed before the
//!    model answered), a `generator` otherwise;
//! 4. graph node names (LangGraph and alike): a container span named like a node gives
//!    its own step ([`StepSource::NodeName`]) and that of the containers and LLM calls
//!    under it ([`StepSource::Node`]); spans with a specific kind of their own keep it;
//! 5. the root of the trajectory is the `agent` step ([`StepSource::Root`]) unless it is
//!    marked more specifically; a plain container elsewhere at the orchestration level
//!    (under the agent or a chain) is `chain`;
//! 6. any other span is infrastructure and takes the step of its nearest step ancestor
//!    ([`StepSource::Inherited`]).
//!
//! Two refinements keep steps whole: an LLM call or a container directly inside a step
//! that is not orchestration (a tool, a critic, an explicit planner, another LLM call,
//! ...) is part of that step (inherited), so an LLM judge inside an evaluator is the
//! critic, not a generator. Only under the agent or a chain is an LLM call a step of its
//! own.
//!
//! Agent frameworks nest their spans in ways the steps above must see through (each rule
//! reads a general shape, never a framework's name; the tables are in [`table`]):
//! - a tool node over the tools it runs (a graph's `tools` node, a tool-executor span)
//!   is their container, `chain`, so that each tool keeps its own step;
//! - an answer-delivery or stop tool (`final_answer`, `final_result`, `finish`) hands
//!   back what the step around it produced and is plumbing of that step, not a tool;
//! - a span that only builds an agent (`create_agent`) runs nothing and is `chain`;
//! - an agent span over its own same-name workflow span is that agent, not a wrapper
//!   of another one; a root-less trace's top container is not the agent either;
//! - a model span over per-call model steps ([`table::MODEL_LOOP_STEP_OPERATIONS`]) is
//!   the loop around them, even with one call, and each step is classified as a call;
//! - a record of a tool's result ([`table::TOOL_RESULT_RECORD_FIELDS`]) takes the step
//!   of the tool it reports; an error record ([`error_record`]) is an error on its step;
//! - a model call instructed as a judge (a system message with the critic's words)
//!   whose answer is a verdict is a `critic`, wherever it sits.
//!
//! Invariants: the walk is iterative and linear in the number of spans (a child index
//! built once, parents before children); orphans hang under the root; spans on a parent
//! cycle are reached too. Nothing here fails: every span gets a step.

pub mod table;
mod turns;

#[cfg(test)]
mod tests;

use crate::conventions;
use regex::Regex;
use serde::Deserialize;
use thiserror::Error;

use crate::classify::table::Class;
use crate::model::{SpanRecord, StepAssignment, StepKind, StepSource, Trajectory, Value};

/// A user rule as written in the config file (`[[classify.rules]]`).
///
/// A rule matches on an attribute (present, or equal to `equals`), on the span name
/// (`span_name_regex`), or on both (both must hold).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// The attribute to match: a span attribute, else a resource attribute of that key.
    pub attribute: Option<String>,
    /// The value `attribute` must have (compared as text); without it, the attribute
    /// only has to be present.
    pub equals: Option<String>,
    /// A regular expression the span name must match (unanchored: use `^...$`).
    pub span_name_regex: Option<String>,
    /// The step of matching spans: a built-in kind (`planner`, `retriever`, ...) or any
    /// other name, kept as a custom step.
    pub step: String,
    /// Also give the step to every span under a matching span, whatever its own rules
    /// or conventions say, unless a descendant has its own explicit
    /// `agent.trajectory.step` (which then holds for that descendant and the spans
    /// under it).
    #[serde(default)]
    pub subtree: bool,
}

/// The `[classify]` table of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassifyConfig {
    /// User rules (`[[classify.rules]]`), tried in order before the conventions.
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

impl RawClassifyConfig {
    /// Validates the table into the stage's configuration.
    pub fn compile(&self) -> Result<ClassifyConfig, RuleError> {
        Ok(ClassifyConfig {
            rules: compile_rules(&self.rules)?,
        })
    }
}

/// A compiled user rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub matcher: RuleMatch,
    pub step: StepKind,
    /// Every span under a matching span gets this step too.
    pub subtree: bool,
}

/// What a rule matches. At least one part is present; all present parts must hold.
#[derive(Debug, Clone)]
pub struct RuleMatch {
    pub attribute: Option<AttributeMatch>,
    pub span_name: Option<Regex>,
}

/// An attribute test: present, or equal to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeMatch {
    pub key: String,
    /// `None`: the attribute only has to be present.
    pub equals: Option<String>,
}

/// A rule of the config that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("classify.rules[{index}]: {problem}")]
pub struct RuleError {
    /// Zero-based index of the rule in `[[classify.rules]]`.
    pub index: usize,
    pub problem: RuleProblem,
}

/// What is wrong with a rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleProblem {
    #[error("give `attribute`, `span_name_regex`, or both")]
    NoMatcher,
    #[error("`equals` needs `attribute`")]
    EqualsWithoutAttribute,
    #[error("`attribute` is empty")]
    EmptyAttribute,
    #[error("`step` is empty")]
    EmptyStep,
    #[error("bad `span_name_regex`: {0}")]
    BadRegex(String),
}

/// The classify stage's configuration.
#[derive(Debug, Clone, Default)]
pub struct ClassifyConfig {
    /// User rules, in order: the first that matches a span wins.
    pub rules: Vec<Rule>,
}

/// Compiles the rules of the config file, in order. Fails on the first unusable rule.
pub fn compile_rules(raw: &[RawRule]) -> Result<Vec<Rule>, RuleError> {
    raw.iter()
        .enumerate()
        .map(|(index, rule)| compile_rule(rule).map_err(|problem| RuleError { index, problem }))
        .collect()
}

fn compile_rule(raw: &RawRule) -> Result<Rule, RuleProblem> {
    let step = raw.step.trim();
    if step.is_empty() {
        return Err(RuleProblem::EmptyStep);
    }
    let attribute = match (&raw.attribute, &raw.equals) {
        (None, Some(_)) => return Err(RuleProblem::EqualsWithoutAttribute),
        (None, None) => None,
        (Some(key), _) if key.trim().is_empty() => return Err(RuleProblem::EmptyAttribute),
        (Some(key), equals) => Some(AttributeMatch {
            key: key.trim().to_string(),
            equals: equals.clone(),
        }),
    };
    let span_name = match &raw.span_name_regex {
        None => None,
        Some(pattern) => {
            Some(Regex::new(pattern).map_err(|error| RuleProblem::BadRegex(error.to_string()))?)
        }
    };
    if attribute.is_none() && span_name.is_none() {
        return Err(RuleProblem::NoMatcher);
    }
    Ok(Rule {
        matcher: RuleMatch {
            attribute,
            span_name,
        },
        step: StepKind::from_name(step),
        subtree: raw.subtree,
    })
}

impl Rule {
    /// Whether this rule matches `span` (its own attributes, else its resource's).
    pub fn matches(&self, span: &SpanRecord) -> bool {
        if let Some(attribute) = &self.matcher.attribute {
            let Some(value) = span.attr(&attribute.key) else {
                return false;
            };
            if let Some(equals) = &attribute.equals {
                if !value_equals(value, equals) {
                    return false;
                }
            }
        }
        if let Some(name) = &self.matcher.span_name {
            if !name.is_match(&span.name) {
                return false;
            }
        }
        true
    }
}

/// A value compared as text; an array matches when one of its elements does.
fn value_equals(value: &Value, expected: &str) -> bool {
    match value {
        Value::Str(s) => **s == *expected,
        Value::Bool(b) => expected.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Int(i) => expected.trim().parse::<i64>() == Ok(*i),
        Value::Double(d) => expected.trim().parse::<f64>() == Ok(*d),
        Value::Array(items) => items.iter().any(|item| value_equals(item, expected)),
    }
}

/// The step of every span of `trajectory`, in the order of `trajectory.spans`.
pub fn classify(trajectory: &Trajectory, config: &ClassifyConfig) -> Vec<StepAssignment> {
    let n = trajectory.spans.len();
    let mut children = trajectory.child_index();
    // Orphans and extra roots hang under the root.
    for (i, parent) in trajectory.parent.iter().enumerate() {
        if parent.is_none() {
            if let Some(tree_parent) = trajectory.tree_parent(i as u32) {
                children[tree_parent as usize].push(i as u32);
            }
        }
    }

    let facts = Facts::new(trajectory, &children);
    let mut walk = Walk {
        config,
        facts: &facts,
        assignments: vec![PLACEHOLDER; n],
        contexts: vec![Ctx::default(); n],
        visited: vec![false; n],
    };
    let mut stack: Vec<(u32, Option<u32>)> = Vec::new();
    // The root first; then any span not reached from it, which only happens on a
    // parent cycle: such a span hangs under the root (or becomes the root if none).
    let mut top = trajectory.root;
    let starts = trajectory.root.into_iter().chain(0..n as u32);
    for start in starts {
        if walk.visited[start as usize] {
            continue;
        }
        let parent = top.filter(|&t| t != start && walk.visited[t as usize]);
        if top.is_none() {
            top = Some(start);
        }
        stack.push((start, parent));
        while let Some((i, parent)) = stack.pop() {
            walk.visit(&trajectory.spans[i as usize], i, parent);
            for &child in children[i as usize].iter().rev() {
                if !walk.visited[child as usize] {
                    stack.push((child, Some(i)));
                }
            }
        }
    }
    let mut assignments = walk.assignments;
    turns::assign_roles(
        trajectory,
        &children,
        &facts.order,
        &facts.class,
        &mut assignments,
    );
    tool_result_records(trajectory, &children, &facts.class, &mut assignments);
    assignments
}

/// A span that only records a tool's result (Mastra's `chunk: 'tool-result'`, see
/// [`table::TOOL_RESULT_RECORD_FIELDS`]) takes the step of the tool execution it
/// reports, a sibling of the same tool name; with none (the framework refused the
/// call before running it), it keeps the step it is in.
fn tool_result_records(
    trajectory: &Trajectory,
    children: &[Vec<u32>],
    class: &[Option<(&'static str, &'static Class)>],
    assignments: &mut [StepAssignment],
) {
    for (i, span) in trajectory.spans.iter().enumerate() {
        if !matches!(class[i], None | Some((_, Class::Infra))) {
            continue;
        }
        let Some(tool) = table::TOOL_RESULT_RECORD_FIELDS
            .iter()
            .find_map(|(key, field)| {
                let text = span.attributes.get_str(key)?;
                if !text.contains(table::TOOL_RESULT_FIELD) {
                    return None;
                }
                json_string_field(text, field, |v| !v.is_empty())
            })
        else {
            continue;
        };
        let Some(parent) = trajectory.tree_parent(i as u32) else {
            continue;
        };
        let ran = children[parent as usize].iter().find(|&&c| {
            matches!(class[c as usize], Some((_, Class::Step(_))))
                && tool_name(&trajectory.spans[c as usize]) == Some(tool)
        });
        if let Some(&c) = ran {
            let kind = assignments[c as usize].kind.clone();
            let run_start = assignments[parent as usize].kind != kind;
            assignments[i] = StepAssignment {
                kind,
                source: StepSource::Inherited,
                run_start,
            };
        }
    }
}

/// What the top-down walk needs to know about a span's subtree, computed bottom-up
/// before it.
struct Facts {
    /// The convention class of each span.
    class: Vec<Option<(&'static str, &'static Class)>>,
    /// A container (not the root) named as an agent run.
    named_agent: Vec<bool>,
    /// The names of the agents that run in the trajectory.
    agent_names: Vec<String>,
    /// An LLM-typed span that made no model call (no messages, usage, response or
    /// model, no error): framework plumbing such as a request builder.
    plumbing: Vec<bool>,
    /// Model calls below this span (two, or one beside tool executions): an LLM-typed
    /// span over them is the loop around them (a container), not a call.
    llm_below: Vec<bool>,
    /// A wrapper around agents: an agent (or the root) whose model calls and tool
    /// executions all happen inside agent spans below it ("Agent workflow", a pipeline
    /// run, an HTTP handler around the agent). It is `chain`, so that the agent under
    /// it speaks for the run. Agents below of the same name are the same agent run
    /// (an `invoke_agent` span over the agent's own workflow span): not a wrapper.
    wrapper: Vec<bool>,
    /// Tool executions (tool or retriever spans) below this span: a node named as
    /// a tool step over them is the node that runs them (a container), not a tool.
    tool_below: Vec<bool>,
    /// Spans parents-first (breadth-first from the tops of the trees).
    order: Vec<u32>,
}

impl Facts {
    fn new(trajectory: &Trajectory, children: &[Vec<u32>]) -> Facts {
        let n = trajectory.spans.len();
        let class: Vec<_> = trajectory
            .spans
            .iter()
            .map(|s| table::convention_class(s.attributes.iter()))
            .collect();
        let plumbing: Vec<bool> = trajectory
            .spans
            .iter()
            .zip(&class)
            .map(|(s, c)| matches!(c, Some((_, Class::Llm))) && !made_model_call(s))
            .collect();
        let mut order: Vec<u32> = (0..n as u32)
            .filter(|&i| trajectory.tree_parent(i).is_none())
            .collect();
        let mut seen = vec![false; n];
        for &i in &order {
            seen[i as usize] = true;
        }
        let mut head = 0;
        while head < order.len() {
            let i = order[head] as usize;
            head += 1;
            for &c in &children[i] {
                if !std::mem::replace(&mut seen[c as usize], true) {
                    order.push(c);
                }
            }
        }
        let is_llm = |i: usize| matches!(class[i], Some((_, Class::Llm))) && !plumbing[i];
        let named_agent: Vec<bool> = (0..n)
            .map(|i| {
                matches!(class[i], Some((_, Class::Container)))
                    && trajectory.tree_parent(i as u32).is_some()
                    && agent_container_name(&trajectory.spans[i].name)
            })
            .collect();
        let is_agent = |i: usize| {
            matches!(class[i], Some((_, Class::Step(StepKind::Agent)))) || named_agent[i]
        };
        let is_work = |i: usize| {
            is_llm(i)
                || matches!(class[i], Some((_, Class::Step(k)))
                    if !matches!(k, StepKind::Agent | StepKind::Critic | StepKind::Chain))
        };
        // Model calls below (counted up to 2) and tool executions below.
        let mut llm_count = vec![0u8; n];
        let mut tool_below = vec![false; n];
        // The agents below: none, all of one name (an agent span's index), or several.
        let mut agent_below: Vec<AgentsBelow> = vec![AgentsBelow::None; n];
        let names: Vec<Option<crate::model::Str>> = (0..n)
            .map(|i| {
                if is_agent(i) {
                    agent_name(&trajectory.spans[i])
                } else {
                    None
                }
            })
            .collect();
        // Work in the subtree, not counting what happens inside agents below.
        let mut loose_work = vec![false; n];
        for &i in order.iter().rev() {
            let i = i as usize;
            loose_work[i] |= is_work(i);
            for &c in &children[i] {
                let c = c as usize;
                if !seen[c] {
                    continue;
                }
                llm_count[i] = llm_count[i]
                    .saturating_add(llm_count[c])
                    .saturating_add(u8::from(is_llm(c)))
                    .min(2);
                tool_below[i] |= tool_below[c]
                    || matches!(
                        class[c],
                        Some((_, Class::Step(StepKind::Tool | StepKind::Retriever)))
                    );
                let mut below = agent_below[c];
                if is_agent(c) {
                    below = below.join(AgentsBelow::One(c), &names);
                }
                agent_below[i] = agent_below[i].join(below, &names);
                if !is_agent(c) {
                    loose_work[i] |= loose_work[c];
                }
            }
        }
        // Two instrumentations may wrap one call (LangChain over the OpenAI SDK): one
        // call below and no tool is the same call, not a loop.
        let loop_step = |c: &u32| {
            trajectory.spans[*c as usize]
                .attributes
                .get_str(conventions::GEN_AI_OPERATION_NAME)
                .is_some_and(|op| table::MODEL_LOOP_STEP_OPERATIONS.contains(&op))
        };
        let llm_below = (0..n)
            .map(|i| {
                llm_count[i] >= 2
                    || (llm_count[i] == 1 && tool_below[i])
                    || children[i].iter().any(loop_step)
            })
            .collect();
        let wrapper = (0..n)
            .map(|i| {
                let top = trajectory.tree_parent(i as u32).is_none();
                let agentish = is_agent(i)
                    || (top && !matches!(class[i], Some((_, Class::Llm | Class::Step(_)))));
                let other_agent_below = match agent_below[i] {
                    AgentsBelow::None => false,
                    AgentsBelow::One(a) => names[a].is_none() || names[a] != names[i],
                    AgentsBelow::Several => true,
                };
                agentish && other_agent_below && !loose_work[i]
            })
            .collect();
        let mut agent_names: Vec<String> = (0..n)
            .filter(|&i| is_agent(i))
            .filter_map(|i| agent_name(&trajectory.spans[i]).map(|a| a.to_string()))
            .collect();
        agent_names.sort_unstable();
        agent_names.dedup();
        Facts {
            class,
            agent_names,
            named_agent,
            plumbing,
            llm_below,
            wrapper,
            tool_below,
            order,
        }
    }
}

/// The agent spans below a span, by name.
#[derive(Debug, Clone, Copy)]
enum AgentsBelow {
    None,
    /// Agents of one name (or one unnamed agent): the index of one of them.
    One(usize),
    Several,
}

impl AgentsBelow {
    fn join(self, other: AgentsBelow, names: &[Option<crate::model::Str>]) -> AgentsBelow {
        match (self, other) {
            (AgentsBelow::None, x) | (x, AgentsBelow::None) => x,
            (AgentsBelow::One(a), AgentsBelow::One(b))
                if a == b || (names[a].is_some() && names[a] == names[b]) =>
            {
                AgentsBelow::One(a)
            }
            _ => AgentsBelow::Several,
        }
    }
}

impl Facts {
    /// Whether a tool span delegates to an agent: a handoff (`transfer_to_<agent>`,
    /// `handoff to <agent>`, `<from> → <to>.handoff`) or a tool named after an agent
    /// of the run (an agent called as a tool).
    fn delegation(&self, span: &SpanRecord) -> bool {
        let name = tool_name(span).unwrap_or(&span.name);
        let lower = name.to_ascii_lowercase();
        table::HANDOFF_TOOL_PREFIXES
            .iter()
            .any(|p| lower.starts_with(p) || span.name.to_ascii_lowercase().starts_with(p))
            || table::HANDOFF_SPAN_SUFFIXES
                .iter()
                .any(|s| span.name.ends_with(s))
            || self.agent_names.iter().any(|a| a == name)
    }
}

/// Whether an LLM-typed span shows a model call: messages, usage, a response, a model
/// name, or a failure. A span that records a payload (`input.value`, `output.value`)
/// and none of these only prepared one.
fn made_model_call(span: &SpanRecord) -> bool {
    if span.status == crate::model::SpanStatus::Error || !span.events.is_empty() {
        return true;
    }
    let payload = ["input.value", "output.value"]
        .iter()
        .any(|k| span.attributes.contains(k));
    if !payload {
        return true;
    }
    span.attributes.iter().any(|(key, _)| {
        table::MODEL_CALL_EVIDENCE_PREFIXES
            .iter()
            .any(|p| key.starts_with(p))
    })
}

/// The tool a span executes, by the tool-name attributes of the conventions
/// ([`table::TOOL_NAME_KEYS`]).
pub fn tool_name(span: &SpanRecord) -> Option<&str> {
    table::TOOL_NAME_KEYS
        .iter()
        .find_map(|k| span.attributes.get_str(k))
}

/// A name squashed for comparison as frameworks sanitise names: ASCII letters and
/// digits only, lowercase (`Delegate work to coworker` ~ `delegate_work_to_coworker`).
pub fn squashed(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The JSON text of a span that records an error of a stream or of a tool call, per
/// [`table::ERROR_RECORD_KEYS`]: `{"type": "error", "error": {"name": ..., "message":
/// ...}}` (Mastra's `chunk: 'error'`), or a result marked `"error": true` (its
/// `chunk: 'tool-result'` of a call the framework refused).
pub fn error_record(span: &SpanRecord) -> Option<&str> {
    table::ERROR_RECORD_KEYS.iter().find_map(|key| {
        let text = span.attributes.get_str(key)?;
        let typed = json_string_field(text, "type", |v| !v.is_empty()) == Some("error");
        (typed || text.contains(table::ERROR_RECORD_FLAG)).then_some(text)
    })
}

/// Whether a tool span hands the answer back or ends the loop
/// ([`table::FINAL_ANSWER_TOOLS`], [`table::STOP_TOOLS`]), by its
/// tool name, else its span name less a private method (`finish.__call__`).
fn answer_tool(span: &SpanRecord) -> bool {
    let name = tool_name(span).unwrap_or_else(|| match span.name.rsplit_once('.') {
        Some((owner, method)) if method.starts_with('_') && !owner.is_empty() => owner,
        _ => &span.name,
    });
    is_answer_tool(name) || table::STOP_TOOLS.contains(&squashed(name).as_str())
}

/// Whether a tool name is one of [`table::FINAL_ANSWER_TOOLS`].
pub fn is_answer_tool(name: &str) -> bool {
    table::FINAL_ANSWER_TOOLS.contains(&squashed(name).as_str())
}

/// Whether a tool span is a search over documents, by its name or description.
fn retrieval_like(span: &SpanRecord) -> bool {
    let name = tool_name(span).unwrap_or(&span.name);
    let description = table::TOOL_DESCRIPTION_KEYS
        .iter()
        .find_map(|k| span.attributes.get_str(k))
        .unwrap_or("");
    let summary = description.split(['.', '\n']).next().unwrap_or("");
    let text = format!("{name} {summary}").to_ascii_lowercase();
    table::RETRIEVAL_TOOL_WORDS.iter().any(|w| text.contains(w))
        && table::DOCUMENT_WORDS.iter().any(|w| text.contains(w))
}

static CRITIC: StepKind = StepKind::Critic;

/// Whether a container's name names an agent run (see [`table::AGENT_CONTAINER_WORDS`]).
fn agent_container_name(name: &str) -> bool {
    let mut base = table::strip_node_suffix(name);
    if let Some((owner, method)) = base.rsplit_once('.') {
        // `Agent.setup_agent` is a step of an agent, `FunctionAgent.run` its run.
        if !(table::GENERIC_METHODS.contains(&method) || method.starts_with('_')) {
            return false;
        }
        base = owner;
    }
    // The head noun (the last word) names what the span is: `FunctionAgent`,
    // `support_agent`, but not `ToolsAgentOutputParser`.
    let squashed = squashed(base);
    !base.eq_ignore_ascii_case("agent")
        && (table::AGENT_CONTAINER_WORDS
            .iter()
            .any(|a| squashed.ends_with(a))
            || table::AGENT_CONTAINER_NAMES
                .iter()
                .any(|n| base.eq_ignore_ascii_case(n)))
}

/// Whether a span name (`Owner.method`, `Module(Signature)`) names a judge: a word of
/// [`table::CRITIC_AGENT_WORDS`] in its last segment, or in its owner when the method is
/// generic.
fn critic_name(name: &str) -> bool {
    let mut segment = name;
    if let Some((owner, method)) = name.rsplit_once('.') {
        segment = if table::GENERIC_METHODS.contains(&method) {
            owner
        } else {
            method
        };
    }
    words(segment).any(critic_word) || checker_name(segment)
}

/// Whether one word of a name names a judge: it starts with a word of
/// [`table::CRITIC_AGENT_WORDS`], or is one of [`table::CHECKER_NOUNS`].
fn critic_word(w: &str) -> bool {
    table::CRITIC_AGENT_WORDS
        .iter()
        .any(|c| w.len() >= c.len() && w[..c.len()].eq_ignore_ascii_case(c))
        || is_one_of(w, table::CHECKER_NOUNS)
}

/// Whether a name is a checker by its words: a [`table::CHECKER_NOUNS`] word anywhere,
/// or a [`table::CHECK_NOUNS`] word last, before any [`table::NAME_FILLER_WORDS`].
fn checker_name(name: &str) -> bool {
    let words: Vec<&str> = words(name).collect();
    let end = words
        .iter()
        .rposition(|w| !is_one_of(w, table::NAME_FILLER_WORDS));
    words.iter().any(|w| is_one_of(w, table::CHECKER_NOUNS))
        || end.is_some_and(|i| is_one_of(words[i], table::CHECK_NOUNS))
}

fn is_one_of(word: &str, list: &[&str]) -> bool {
    list.iter().any(|c| word.eq_ignore_ascii_case(c))
}

/// The words of an identifier: split at non-alphanumeric characters and at camelCase
/// humps.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .flat_map(|part| {
            let bytes = part.as_bytes();
            let mut cuts = vec![0];
            for i in 1..bytes.len() {
                if bytes[i].is_ascii_uppercase() && bytes[i - 1].is_ascii_lowercase() {
                    cuts.push(i);
                }
            }
            cuts.push(bytes.len());
            cuts.windows(2)
                .map(move |w| &part[w[0]..w[1]])
                .collect::<Vec<_>>()
        })
        .filter(|w| !w.is_empty())
}

/// Whether an agent span is a judge of other work, by its name.
fn critic_agent(span: &SpanRecord) -> bool {
    agent_name(span).is_some_and(|name| {
        let lower = name.to_ascii_lowercase();
        table::CRITIC_AGENT_WORDS.iter().any(|w| lower.contains(w)) || checker_name(&name)
    })
}

/// Filler before a span is visited; every span is overwritten by the walk.
const PLACEHOLDER: StepAssignment = StepAssignment {
    kind: StepKind::Agent,
    source: StepSource::Root,
    run_start: false,
};

/// What a span passes down to its children.
#[derive(Debug, Clone, Copy, Default)]
struct Ctx<'t> {
    /// The graph node this span is in, if any.
    node: Option<NodeCtx<'t>>,
    /// A `subtree` rule (index) that covers this span's descendants.
    subtree: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct NodeCtx<'t> {
    /// The node name as the span gave it.
    label: &'t str,
    kind: &'static StepKind,
}

struct Walk<'c, 't> {
    config: &'c ClassifyConfig,
    facts: &'c Facts,
    assignments: Vec<StepAssignment>,
    contexts: Vec<Ctx<'t>>,
    visited: Vec<bool>,
}

impl<'t> Walk<'_, 't> {
    fn visit(&mut self, span: &'t SpanRecord, i: u32, parent: Option<u32>) {
        let parent_state = parent.map(|p| {
            (
                &self.assignments[p as usize].kind,
                self.contexts[p as usize],
            )
        });
        let (kind, source, ctx) = decide(span, i as usize, parent_state, self.config, self.facts);
        let run_start = match (&source, parent) {
            (StepSource::Inherited, _) => false,
            (_, None) => true,
            (_, Some(p)) => self.assignments[p as usize].kind != kind,
        };
        self.assignments[i as usize] = StepAssignment {
            kind,
            source,
            run_start,
        };
        self.contexts[i as usize] = ctx;
        self.visited[i as usize] = true;
    }
}

/// The step of one span given its parent's step and context (`None` at the root).
fn decide<'t>(
    span: &'t SpanRecord,
    i: usize,
    parent: Option<(&StepKind, Ctx<'t>)>,
    config: &ClassifyConfig,
    facts: &Facts,
) -> (StepKind, StepSource, Ctx<'t>) {
    // 1. The explicit attribute; it also ends any subtree rule and node above.
    if let Some(kind) = explicit_step(span) {
        return (kind, StepSource::Explicit, Ctx::default());
    }
    // 2. A subtree rule above, then this span's own rules.
    if let Some(index) = parent.and_then(|(_, ctx)| ctx.subtree) {
        if let Some(rule) = config.rules.get(index) {
            let ctx = Ctx {
                node: None,
                subtree: Some(index),
            };
            return (rule.step.clone(), StepSource::RuleSubtree(index), ctx);
        }
    }
    if let Some((index, rule)) = config
        .rules
        .iter()
        .enumerate()
        .find(|(_, rule)| rule.matches(span))
    {
        let ctx = Ctx {
            node: None,
            subtree: rule.subtree.then_some(index),
        };
        return (rule.step.clone(), StepSource::Rule(index), ctx);
    }

    // 3. Conventions. An agent that only wraps other agents is a chain; an agent
    //    named as a judge is a critic; a tool named or described as a search is a
    //    retriever; an LLM-typed span over model calls is their loop (a container),
    //    and one that made no call is plumbing.
    let mut convention = facts.class[i];
    match convention {
        Some((key, Class::Step(StepKind::Agent))) if facts.wrapper[i] => {
            return (StepKind::Chain, StepSource::Convention(key), Ctx::default());
        }
        Some((key, Class::Step(StepKind::Agent))) if critic_agent(span) => {
            return (
                StepKind::Critic,
                StepSource::Convention(key),
                Ctx::default(),
            );
        }
        Some((key, Class::Step(StepKind::Tool))) if answer_tool(span) => {
            // Handing the answer back is part of the step that produced it.
            return match parent {
                Some((kind, ctx)) if !is_orchestration(kind) => {
                    (kind.clone(), StepSource::Inherited, ctx)
                }
                _ => (StepKind::Chain, StepSource::Convention(key), Ctx::default()),
            };
        }
        Some((key, Class::Step(StepKind::Tool))) if facts.delegation(span) => {
            return (StepKind::Agent, StepSource::Convention(key), Ctx::default());
        }
        Some((key, Class::Step(StepKind::Tool))) if retrieval_like(span) => {
            return (
                StepKind::Retriever,
                StepSource::Convention(key),
                Ctx::default(),
            );
        }
        Some((key, Class::Step(kind))) => {
            return (kind.clone(), StepSource::Convention(key), Ctx::default());
        }
        Some((key, Class::Llm)) if facts.llm_below[i] => {
            convention = Some((key, &Class::Container));
        }
        Some((_, Class::Llm)) if facts.plumbing[i] => convention = None,
        Some((key, Class::Llm)) => return decide_llm(span, key, parent),
        _ => {}
    }

    // 5. The root, unless marked more specifically above.
    let Some((parent_kind, parent_ctx)) = parent else {
        // A container whose parent never arrived (a root-less trace: the agent span
        // was not exported) is a piece of the run, not the agent.
        let orphan = span.parent_span_id.is_some();
        if facts.wrapper[i] || (orphan && matches!(convention, Some((_, Class::Container)))) {
            return (StepKind::Chain, StepSource::Root, Ctx::default());
        }
        return (StepKind::Agent, StepSource::Root, Ctx::default());
    };

    // 4. Node names: the span's own name, else a node attribute naming a node other
    //    than the one the span is already in.
    if let Some(node) = named_node(span).or_else(|| {
        attribute_node(span).filter(|node| {
            !parent_ctx
                .node
                .is_some_and(|outer| outer.label.eq_ignore_ascii_case(node.label))
        })
    }) {
        // A tool node over the tool executions it runs is their container.
        if *node.kind == StepKind::Tool && facts.tool_below[i] {
            return (StepKind::Chain, StepSource::NodeName, Ctx::default());
        }
        let ctx = Ctx {
            node: Some(node),
            subtree: None,
        };
        return (node.kind.clone(), StepSource::NodeName, ctx);
    }

    // A container named as an agent run is one (a wrapper of agents is a chain).
    if facts.named_agent[i] && parent_ctx.node.is_none() {
        if facts.wrapper[i] {
            return (StepKind::Chain, StepSource::NodeName, Ctx::default());
        }
        if critic_agent(span) {
            return (StepKind::Critic, StepSource::NodeName, Ctx::default());
        }
        return (StepKind::Agent, StepSource::NodeName, Ctx::default());
    }

    // A container named as a judge (`SupportWithReview.review`, `Predict(ReviewAnswer)`)
    // is a critic, and so is the work inside it.
    if matches!(convention, Some((_, Class::Container))) && critic_name(&span.name) {
        let ctx = Ctx {
            node: Some(NodeCtx {
                label: &span.name,
                kind: &CRITIC,
            }),
            subtree: None,
        };
        return (StepKind::Critic, StepSource::NodeName, ctx);
    }

    match convention {
        Some((key, Class::Container)) => {
            if let Some(node) = parent_ctx.node {
                (node.kind.clone(), StepSource::Node, parent_ctx)
            } else if is_orchestration(parent_kind) {
                (StepKind::Chain, StepSource::Convention(key), Ctx::default())
            } else {
                (parent_kind.clone(), StepSource::Inherited, parent_ctx)
            }
        }
        // 6. Infrastructure.
        _ => (parent_kind.clone(), StepSource::Inherited, parent_ctx),
    }
}

/// An LLM call: the node it is in, the step it is part of, or planner / generator.
fn decide_llm<'t>(
    span: &'t SpanRecord,
    key: &'static str,
    parent: Option<(&StepKind, Ctx<'t>)>,
) -> (StepKind, StepSource, Ctx<'t>) {
    let own = || {
        let kind = if decides_action(span) {
            StepKind::Planner
        } else if judge_call(span) {
            StepKind::Critic
        } else {
            StepKind::Generator
        };
        (kind, StepSource::Convention(key), Ctx::default())
    };
    let Some((parent_kind, parent_ctx)) = parent else {
        return own();
    };
    let node = attribute_node(span).or(parent_ctx.node);
    if let Some(node) = node {
        let ctx = Ctx {
            node: Some(node),
            subtree: None,
        };
        return (node.kind.clone(), StepSource::Node, ctx);
    }
    if !is_orchestration(parent_kind) {
        return (parent_kind.clone(), StepSource::Inherited, parent_ctx);
    }
    own()
}

/// Whether a model call judged other work: it was instructed as a judge (a word of
/// [`table::CRITIC_AGENT_WORDS`] in its system message: "You review answers…") and its
/// answer states a verdict (`REJECT: …`, `APPROVE`). An inline LLM-as-judge check is a
/// critic even outside any reviewer agent.
fn judge_call(span: &SpanRecord) -> bool {
    let Some(instructions) = crate::content::system_message(span) else {
        return false;
    };
    let instructed = words(&instructions).any(|w| {
        let w = w.to_ascii_lowercase();
        table::CRITIC_AGENT_WORDS.iter().any(|c| w.starts_with(c))
    });
    instructed
        && crate::content::answer_text(span).is_some_and(|t| crate::content::verdict(&t).is_some())
}

/// Steps under which an LLM call or a container is a step of its own.
fn is_orchestration(kind: &StepKind) -> bool {
    matches!(kind, StepKind::Agent | StepKind::Chain)
}

/// The name of the agent an agent span runs: an agent-name attribute
/// ([`table::AGENT_NAME_KEYS`]), else the span name less an operation prefix
/// ([`table::AGENT_SPAN_NAME_PREFIXES`]).
pub fn agent_name(span: &SpanRecord) -> Option<crate::model::Str> {
    if let Some(name) = table::AGENT_NAME_KEYS
        .iter()
        .find_map(|k| span.attributes.get_str(k))
        .filter(|n| !n.trim().is_empty())
    {
        return Some(name.trim().into());
    }
    if let Some(name) = table::AGENT_NAME_PAYLOAD_FIELDS
        .iter()
        .chain(table::DELEGATE_PAYLOAD_FIELDS)
        .find_map(|(key, field)| payload_field(span.attributes.get_str(key)?, field))
    {
        return Some(name.into());
    }
    let mut name: &str = &span.name;
    // `Owner._private_method`: the owner is the agent.
    if let Some((owner, method)) = name.rsplit_once('.') {
        if method.starts_with('_') && !owner.is_empty() {
            name = owner;
        }
    }
    for prefix in table::AGENT_SPAN_NAME_PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest;
            break;
        }
    }
    for suffix in table::AGENT_SPAN_NAME_SUFFIXES {
        if let Some(rest) = name.strip_suffix(suffix) {
            name = rest;
            break;
        }
    }
    let name = name.trim();
    (!name.is_empty()).then(|| name.into())
}

/// The value of `field` in a payload written as JSON (`"field": "value"`) or as a
/// Python repr (`field='value'`).
fn payload_field<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    if let Some(v) = json_string_field(text, field, |v| !v.is_empty()) {
        return Some(v);
    }
    let at = text.find(field)?;
    let rest = text.get(at + field.len()..)?.strip_prefix('=')?;
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let rest = &rest[1..];
    let end = rest.find(quote)?;
    let value = &rest[..end];
    (!value.is_empty() && value.len() < 200).then_some(value)
}

/// The name of the agent that agent span `i` runs: [`agent_name`], or when the span
/// names it only by its class, the agent named in the run state its direct children
/// record ([`table::AGENT_NAME_PAYLOAD_FIELDS`]).
pub fn agent_name_in(trajectory: &Trajectory, i: u32) -> Option<crate::model::Str> {
    let span = trajectory.spans.get(i as usize)?;
    let named_by_attribute = table::AGENT_NAME_KEYS.iter().any(|k| {
        span.attributes
            .get_str(k)
            .is_some_and(|n| !n.trim().is_empty())
    });
    if !named_by_attribute {
        let from_children = trajectory
            .parent
            .iter()
            .enumerate()
            .filter(|(_, p)| **p == Some(i))
            .find_map(|(c, _)| {
                let child = &trajectory.spans[c];
                table::AGENT_NAME_PAYLOAD_FIELDS
                    .iter()
                    .find_map(|(key, field)| payload_field(child.attributes.get_str(key)?, field))
            });
        if let Some(name) = from_children {
            return Some(name.into());
        }
    }
    agent_name(span)
}

/// Agent runs the instrumentation cannot see into: an agent invocation (by convention)
/// with no model call, tool, retrieval or other agent below it. Blame stops at such an
/// agent; the API, the page and `show` say why (`Uninstrumented`).
pub fn uninstrumented_agents(trajectory: &Trajectory, steps: &[StepAssignment]) -> Vec<u32> {
    let n = trajectory.spans.len().min(steps.len());
    let mut work_below = vec![false; n];
    // Children come after their parents in canonical order only by start time, so walk
    // up from every working span instead (bounded by the depth cap).
    for (i, step) in steps.iter().enumerate().take(n) {
        let working = matches!(
            step.kind,
            StepKind::Planner
                | StepKind::Generator
                | StepKind::Critic
                | StepKind::Tool
                | StepKind::Retriever
                | StepKind::Memory
                | StepKind::Agent
        ) && step.source != StepSource::Inherited;
        if !working {
            continue;
        }
        let mut cur = trajectory.parent[i];
        while let Some(p) = cur {
            let p = p as usize;
            if p >= n || work_below[p] {
                break;
            }
            work_below[p] = true;
            cur = trajectory.parent[p];
        }
    }
    (0..n)
        .filter(|&i| {
            steps[i].kind == StepKind::Agent
                && !work_below[i]
                && matches!(
                    table::convention_class(trajectory.spans[i].attributes.iter()),
                    Some((_, Class::Step(StepKind::Agent)))
                )
        })
        .map(|i| i as u32)
        .collect()
}

/// The `agent.trajectory.step` attribute of the span itself (never the resource's).
fn explicit_step(span: &SpanRecord) -> Option<StepKind> {
    let Some(Value::Str(name)) = span.attributes.get(table::EXPLICIT_STEP_KEY) else {
        return None;
    };
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return None;
    }
    if let Some(kind) = StepKind::builtin(trimmed) {
        return Some(kind);
    }
    if trimmed.len() == name.len() {
        Some(StepKind::Custom(name.clone()))
    } else {
        Some(StepKind::Custom(trimmed.into()))
    }
}

/// The step a node name says: the table's names and verbs ([`table::node_kind`]), else a
/// judge when it names a checker ([`checker_name`]: a `fact_check` node).
fn node_kind(label: &str) -> Option<&'static StepKind> {
    static CRITIC: StepKind = StepKind::Critic;
    table::node_kind(label).or_else(|| checker_name(label).then_some(&CRITIC))
}

/// The node a span's own name says it is (less an instrumentation suffix).
fn named_node(span: &SpanRecord) -> Option<NodeCtx<'_>> {
    let label = table::strip_node_suffix(&span.name);
    node_kind(label).map(|kind| NodeCtx { label, kind })
}

/// The node a span's attributes say it belongs to, when the table knows that name.
fn attribute_node(span: &SpanRecord) -> Option<NodeCtx<'_>> {
    let from_keys = table::NODE_NAME_KEYS
        .iter()
        .filter_map(|key| span.attributes.get_str(key));
    let from_json = table::NODE_NAME_JSON_FIELDS
        .iter()
        .filter_map(|(key, field)| {
            span.attributes
                .get_str(key)
                .and_then(|text| json_string_field(text, field, |_| true))
        });
    from_keys.chain(from_json).find_map(|label| {
        let label = label.trim();
        node_kind(label).map(|kind| NodeCtx { label, kind })
    })
}

/// Whether an LLM span decided the next action: it emitted tool calls, or it was
/// offered tools and failed before the model answered (a planner call refused by a rate
/// limit records its request, tools included, and no response). A call that was offered
/// tools and answered in text is a generator.
pub(crate) fn decides_action(span: &SpanRecord) -> bool {
    if emits_tool_calls(span) {
        return true;
    }
    let mut offered_tools = false;
    for (key, _) in span.attributes.iter() {
        if table::RESPONSE_KEY_PREFIXES
            .iter()
            .any(|prefix| key.starts_with(prefix))
        {
            return false;
        }
        offered_tools |= table::TOOL_DEFINITION_KEY_PREFIXES
            .iter()
            .any(|prefix| key.starts_with(prefix));
    }
    offered_tools
}

/// Whether an LLM span shows it emitted tool calls. One pass over its attributes.
pub(crate) fn emits_tool_calls(span: &SpanRecord) -> bool {
    span.attributes.iter().any(|(key, value)| {
        let flattened_call = table::TOOL_CALL_KEY_PATTERNS.iter().any(|(prefix, infix)| {
            key.strip_prefix(prefix)
                .is_some_and(|rest| rest.contains(infix))
        });
        if flattened_call {
            return true;
        }
        let finish_key = table::FINISH_REASON_KEYS.contains(&key)
            || table::FINISH_REASON_KEY_PATTERNS
                .iter()
                .any(|(prefix, suffix)| key.starts_with(prefix) && key.ends_with(suffix));
        if finish_key && is_tool_call_finish(value) {
            return true;
        }
        table::OUTPUT_MESSAGE_KEYS.contains(&key)
            && value.as_str().is_some_and(|text| {
                json_string_field(text, "type", |t| t == table::TOOL_CALL_PART_TYPE).is_some()
            })
    })
}

/// A finish reason (a string, an array of strings, or an array as JSON text) that
/// means the model stopped to call tools.
fn is_tool_call_finish(value: &Value) -> bool {
    match value {
        Value::Str(s) => {
            let s = s.trim();
            table::TOOL_CALL_FINISH_REASONS.iter().any(|reason| {
                s.eq_ignore_ascii_case(reason) || (s.starts_with('[') && quoted_in(s, reason))
            })
        }
        Value::Array(items) => items.iter().any(is_tool_call_finish),
        _ => false,
    }
}

/// Whether `text` holds `needle` as a whole quoted string (`"needle"` or `'needle'`).
fn quoted_in(text: &str, needle: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(needle).any(|(start, _)| {
        let end = start + needle.len();
        let before = start.checked_sub(1).and_then(|b| bytes.get(b));
        let after = bytes.get(end);
        matches!(
            (before, after),
            (Some(b'"'), Some(b'"')) | (Some(b'\''), Some(b'\''))
        )
    })
}

/// The first string value of a `"field": "value"` pair in JSON text for which `accept`
/// holds. A scan, not a parser: the core does not depend on a JSON library, and these
/// attributes are only searched for one short unescaped value. Escaped values are
/// skipped.
pub(crate) fn json_string_field<'a>(
    text: &'a str,
    field: &str,
    accept: impl Fn(&str) -> bool,
) -> Option<&'a str> {
    if field.is_empty() {
        return None;
    }
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(offset) = text.get(from..).and_then(|rest| rest.find(field)) {
        let start = from + offset;
        let end = start + field.len();
        from = end;
        let opened = start >= 1 && bytes[start - 1] == b'"';
        let escaped = start >= 2 && bytes[start - 2] == b'\\';
        let closed = bytes.get(end) == Some(&b'"');
        if !(opened && closed) || escaped {
            continue;
        }
        let mut j = end + 1;
        while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        if bytes.get(j) != Some(&b':') {
            continue;
        }
        j += 1;
        while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        if bytes.get(j) != Some(&b'"') {
            continue;
        }
        let rest = text.get(j + 1..)?;
        let len = rest.find('"')?;
        let value = &rest[..len];
        if !value.contains('\\') && accept(value) {
            return Some(value);
        }
    }
    None
}
