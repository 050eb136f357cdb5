//! Attribute: the outcome of a run and, for a failed run, the step to blame.
//!
//! Input: a [`Trajectory`], its [`StepAssignment`]s and the findings of the detect stage.
//! Output: the [`Outcome`], and a [`RootCause`] when the outcome is failed. The findings
//! are updated in place: `propagated` is set on errors explained by a failing descendant.
//!
//! The decision has four passes, each linear in spans and findings (no recursion, so
//! deep trees are fine; the blame walks up the tree from the trigger a few times per run,
//! each walk bounded by the trajectory's depth cap):
//! 1. *recovery*: a step failure is recovered when a later run of the same action (same
//!    step and tool or span name) came out clean (never a loop or a slow step);
//! 2. *propagation*: an error-class finding whose span has a descendant with an
//!    unrecovered error-class finding is propagated, not an origin;
//! 3. *outcome*: failed on a root-span error, a failed task-level evaluation, a failed
//!    evaluation of the answer, or a critic/guardrail rejection that was not recovered;
//!    recovered when there are other findings; success otherwise;
//! 4. *blame*: for a failed run, the rule table of [`rules`] (documented in `RULES.md`)
//!    picks the origin among unrecovered, non-propagated findings, upstream before
//!    downstream in data-flow order (the post-order of the span tree: a span comes after
//!    the spans inside it, so a verdict on the whole run comes after the steps it
//!    judges). Findings on the run's own outcome (the root's status, a task evaluation)
//!    are blamed on the agent only when no step explains them; a `slow_step` is never a
//!    trigger, only the upstream cause of a run failing with nothing else to explain it.

pub(crate) mod rules;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::model::{
    Finding, FindingKind, Outcome, RootCause, StepAssignment, StepKind, StepSource, Str, Trajectory,
};

use rules::{Blame, Rule, RULES};

/// Confidence lost per competing origin that the verdict's evidence does not explain.
const COMPETITOR_PENALTY: f64 = 0.1;
/// Confidence lost when the blamed step had to fall back (no planner or generator found).
const FALLBACK_PENALTY: f64 = 0.2;
const MIN_CONFIDENCE: f64 = 0.1;

pub fn attribute(
    trajectory: &Trajectory,
    steps: &[StepAssignment],
    findings: &mut [Finding],
) -> (Outcome, Option<RootCause>) {
    if findings.is_empty() {
        return (Outcome::Success, None);
    }
    let ctx = Ctx::new(trajectory, steps, findings);
    let recovered = ctx.recovered(findings);
    ctx.mark_propagated(findings, &recovered);
    let fatal: Vec<usize> = (0..findings.len())
        .filter(|&f| ctx.is_fatal(&findings[f], recovered[f]))
        .collect();
    if fatal.is_empty() {
        return (Outcome::Recovered, None);
    }
    let mut candidates: Vec<usize> = (0..findings.len())
        .filter(|&f| !recovered[f] && !findings[f].propagated)
        .collect();
    // Upstream before downstream: data-flow order.
    candidates.sort_by_key(|&f| (ctx.post_of(findings[f].span), f));
    let root_cause = ctx.blame(findings, &candidates, &fatal);
    (Outcome::Failed, Some(root_cause))
}

/// Indexes built once per call.
struct Ctx<'a> {
    traj: &'a Trajectory,
    steps: &'a [StepAssignment],
    /// Effective parent of each span (orphans hang under the root).
    parent: Vec<Option<u32>>,
    /// Spans parents-first (breadth-first from the roots); spans caught in a parent
    /// cycle are left out.
    order: Vec<u32>,
    /// `post[i]`: the rank of span i in data-flow order, the post-order of the tree
    /// (children before their parent, siblings in start order). Spans caught in a parent
    /// cycle rank last, in span order.
    post: Vec<u32>,
    /// Finding indices per span.
    by_span: Vec<Vec<usize>>,
    /// The agent each span serves: its nearest strict agent ancestor (`u32::MAX` for
    /// none). Recovery, "the planner that issued the call" and the run's speakers are
    /// looked up within an agent: another agent's later success is no recovery.
    owner: Vec<u32>,
}

impl<'a> Ctx<'a> {
    fn new(traj: &'a Trajectory, steps: &'a [StepAssignment], findings: &[Finding]) -> Ctx<'a> {
        let n = traj.spans.len();
        let parent: Vec<Option<u32>> = (0..n as u32).map(|i| traj.tree_parent(i)).collect();
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut order = Vec::with_capacity(n);
        for (i, p) in parent.iter().enumerate() {
            match p {
                Some(p) => children[*p as usize].push(i as u32),
                None => order.push(i as u32),
            }
        }
        let mut head = 0;
        while head < order.len() {
            let i = order[head] as usize;
            head += 1;
            order.extend_from_slice(&children[i]);
        }
        let post = post_order(&parent, &children);
        let mut owner = vec![u32::MAX; n];
        for &i in &order {
            let agent = steps
                .get(i as usize)
                .is_some_and(|s| s.kind == StepKind::Agent);
            for &c in &children[i as usize] {
                owner[c as usize] = if agent { i } else { owner[i as usize] };
            }
        }
        let mut by_span = vec![Vec::new(); n];
        for (f, finding) in findings.iter().enumerate() {
            if let Some(list) = by_span.get_mut(finding.span as usize) {
                list.push(f);
            }
        }
        Ctx {
            traj,
            steps,
            parent,
            order,
            post,
            by_span,
            owner,
        }
    }

    /// A span that speaks for the run: the root, a top span of a root-less trace, or an
    /// outermost agent invocation (frameworks wrap the agent in a root that ends OK).
    fn is_speaker(&self, i: u32) -> bool {
        self.is_root(i)
            || self.parent.get(i as usize).is_some_and(Option::is_none)
            || (*self.step(i) == StepKind::Agent && self.owner.get(i as usize) == Some(&u32::MAX))
    }

    /// The data-flow rank of span `i` (see `post`).
    fn post_of(&self, i: u32) -> u32 {
        self.post.get(i as usize).copied().unwrap_or(u32::MAX)
    }

    /// Whether a finding is about the run's own outcome: on the root span, or a
    /// task-level evaluation.
    fn is_run_site(&self, f: &Finding) -> bool {
        self.is_root(f.span) || f.task_level
    }

    fn step(&self, i: u32) -> &StepKind {
        const AGENT: &StepKind = &StepKind::Agent;
        self.steps.get(i as usize).map(|s| &s.kind).unwrap_or(AGENT)
    }

    fn run_start(&self, i: u32) -> bool {
        self.steps.get(i as usize).is_some_and(|s| s.run_start)
    }

    fn is_root(&self, i: u32) -> bool {
        self.traj.root == Some(i)
    }

    /// The nearest span at or above `i` whose step is its own (not inherited).
    fn own_step_span(&self, i: u32) -> u32 {
        let mut cur = i;
        for _ in 0..self.traj.spans.len() {
            let inherited = self
                .steps
                .get(cur as usize)
                .is_some_and(|s| s.source == crate::model::StepSource::Inherited);
            match self.parent.get(cur as usize).copied().flatten() {
                Some(p) if inherited => cur = p,
                _ => return cur,
            }
        }
        cur
    }

    /// What redoes span `i`: a later run of the same step in the same agent — the same
    /// tool again, or for a model call, a later call of the same step.
    fn action_key(&self, i: u32) -> (u32, &StepKind, &str) {
        let step = self.step(i);
        let name = match step {
            StepKind::Tool | StepKind::Retriever | StepKind::Memory => {
                let span = &self.traj.spans[i as usize];
                crate::classify::tool_name(span).unwrap_or(&span.name)
            }
            _ => "",
        };
        (self.owner[i as usize], step, name)
    }

    /// `recovered[f]`: a later run of the same action came out clean. Findings on the
    /// root, task-level evaluations, loops and slow steps are never recovered.
    fn recovered(&self, findings: &[Finding]) -> Vec<bool> {
        let n = self.traj.spans.len();
        // dirty[i]: span i has a finding, or an error-class finding below it.
        let mut dirty = vec![false; n];
        let mut error_below = vec![false; n];
        for f in findings {
            if let Some(d) = dirty.get_mut(f.span as usize) {
                if f.kind != FindingKind::SlowStep {
                    *d = true;
                }
            }
            if f.kind.is_error_class() {
                if let Some(e) = error_below.get_mut(f.span as usize) {
                    *e = true;
                }
            }
        }
        for &i in self.order.iter().rev() {
            if let Some(p) = self.parent[i as usize] {
                if error_below[i as usize] {
                    error_below[p as usize] = true;
                }
            }
        }
        // The last clean span of each action.
        let mut last_clean: HashMap<(u32, &StepKind, &str), u32> = HashMap::new();
        let mut last_clean_named: HashMap<(u32, &StepKind, &str), u32> = HashMap::new();
        for i in 0..n as u32 {
            // A redo is a step run of its own (not a span inside the failed one).
            let own_step = self
                .steps
                .get(i as usize)
                .is_some_and(|s| s.source != crate::model::StepSource::Inherited);
            if !dirty[i as usize] && !error_below[i as usize] {
                if own_step {
                    last_clean.insert(self.action_key(i), i);
                }
                // Infrastructure retried inside one step run (the same client call
                // again) is matched by name.
                last_clean_named.insert(
                    (
                        self.owner[i as usize],
                        self.step(i),
                        &*self.traj.spans[i as usize].name,
                    ),
                    i,
                );
            }
        }
        let mut recovered: Vec<bool> = findings
            .iter()
            .map(|f| {
                // Time lost is not won back by a faster later call.
                // A routing that sent the request to the wrong agent is not undone by a
                // later call either.
                if self.is_root(f.span)
                    || f.task_level
                    || matches!(f.kind, FindingKind::Loop | FindingKind::SlowStep)
                    || matches!(&f.kind, FindingKind::Custom(k) if &**k == crate::detect::MISROUTED_KIND)
                {
                    return false;
                }
                if (f.span as usize) >= n {
                    return false;
                }
                // A failure seen from another span (a tool with no span of its own, read
                // from the next model call's request) is redone only as the data says.
                if f.step != *self.step(f.span) {
                    return f.redone;
                }
                // An error on infrastructure (an HTTP call) is judged by the step span
                // above it: a redo is a later run of that step.
                let after = |j: u32, failed: u32| {
                    j > failed
                        && self.traj.spans[j as usize].start_unix_nano
                            >= self.traj.spans[failed as usize].end_unix_nano
                };
                let own = self.own_step_span(f.span);
                let redone = last_clean
                    .get(&self.action_key(own))
                    .is_some_and(|&j| after(j, own));
                let retried = last_clean_named
                    .get(&(
                        self.owner[f.span as usize],
                        self.step(f.span),
                        &*self.traj.spans[f.span as usize].name,
                    ))
                    .is_some_and(|&j| after(j, f.span));
                redone || retried
            })
            .collect();
        // An error that only carries recovered errors from below is recovered with them
        // (a step that reported its tool's failed first attempt).
        let mut open_below = vec![false; n];
        let mut closed_below = vec![false; n];
        let mut open_own = vec![false; n];
        let mut closed_own = vec![false; n];
        for (f, finding) in findings.iter().enumerate() {
            if finding.kind.is_error_class() && (finding.span as usize) < n {
                if recovered[f] {
                    closed_own[finding.span as usize] = true;
                } else {
                    open_own[finding.span as usize] = true;
                }
            }
        }
        for &i in self.order.iter().rev() {
            if let Some(p) = self.parent[i as usize] {
                let (i, p) = (i as usize, p as usize);
                open_below[p] |= open_below[i] || open_own[i];
                closed_below[p] |= closed_below[i] || closed_own[i];
            }
        }
        for (f, finding) in findings.iter().enumerate() {
            let s = finding.span as usize;
            if !recovered[f]
                && finding.kind.is_error_class()
                && finding.kind != FindingKind::Loop
                && s < n
                && !self.is_root(finding.span)
                && closed_below[s]
                && !open_below[s]
            {
                recovered[f] = true;
            }
        }
        recovered
    }

    /// Sets `propagated` on error-class findings with an unrecovered error-class finding
    /// on a strict descendant. A container (the root, an agent or a chain) does no work
    /// of its own: its error is also explained by any other unrecovered failure below it
    /// (an agent that ends in error because its critic rejected the answer, or because
    /// its retrieval found nothing), but not by slowness or a misrouting.
    fn mark_propagated(&self, findings: &mut [Finding], recovered: &[bool]) {
        const ERROR: u8 = 1;
        const FAILURE: u8 = 2;
        let n = self.traj.spans.len();
        let mut own = vec![0u8; n];
        for (f, finding) in findings.iter().enumerate() {
            if recovered[f] {
                continue;
            }
            let bit = if finding.kind.is_error_class() {
                ERROR
            } else if explains_a_container(&finding.kind) {
                FAILURE
            } else {
                0
            };
            if let Some(o) = own.get_mut(finding.span as usize) {
                *o |= bit;
            }
        }
        // below[i]: what strict descendants of i hold, unrecovered.
        let mut below = vec![0u8; n];
        for &i in self.order.iter().rev() {
            if let Some(p) = self.parent[i as usize] {
                below[p as usize] |= own[i as usize] | below[i as usize];
            }
        }
        for finding in findings.iter_mut() {
            let s = finding.span as usize;
            let below = below.get(s).copied().unwrap_or(0);
            let container = self.parent.get(s).is_some_and(Option::is_none)
                || self
                    .steps
                    .get(s)
                    .is_some_and(|a| matches!(a.kind, StepKind::Agent | StepKind::Chain));
            let explained = if container { ERROR | FAILURE } else { ERROR };
            finding.propagated = finding.kind.is_error_class() && below & explained != 0;
        }
    }

    /// Whether a finding fails the run by itself.
    fn is_fatal(&self, f: &Finding, recovered: bool) -> bool {
        if self.is_speaker(f.span) && f.kind.is_error_class() && !recovered {
            return true;
        }
        if self.is_root(f.span) && f.kind.is_error_class() {
            return true;
        }
        if f.kind == FindingKind::EvalFailed && f.task_level {
            return true;
        }
        if recovered {
            return false;
        }
        // A loop or a turn limit, a step failure nothing redid, an answer given after
        // only empty retrievals, a model output cut off by the token limit that no later
        // call redid (the answer the user got is unfinished): the run did not get what
        // it needed.
        if f.kind.is_error_class()
            || matches!(f.kind, FindingKind::EmptyRetrieval | FindingKind::Truncated)
        {
            return true;
        }
        if matches!(&f.kind, FindingKind::Custom(k) if &**k == crate::detect::MISROUTED_KIND) {
            return false;
        }
        match (&f.kind, &f.step) {
            // An evaluation of the answer itself, or a content rule matching it.
            (
                FindingKind::EvalFailed | FindingKind::Custom(_),
                StepKind::Generator | StepKind::Agent | StepKind::Chain | StepKind::Custom(_),
            ) => true,
            // A critic or guardrail rejecting the answer.
            (FindingKind::EvalFailed | FindingKind::Custom(_), StepKind::Critic)
            | (FindingKind::EvalFailed | FindingKind::Custom(_), StepKind::Guardrail) => true,
            // A guardrail rejects by raising.
            (FindingKind::Error | FindingKind::Exception, StepKind::Guardrail) => true,
            _ => false,
        }
    }

    /// The verdict of the rule table for a failed run.
    fn blame(&self, findings: &[Finding], candidates: &[usize], fatal: &[usize]) -> RootCause {
        for rule in RULES {
            if let Some((upstream, trigger)) = self.first_match(rule, findings, candidates) {
                return self.verdict(rule, findings, candidates, fatal, upstream, trigger);
            }
        }
        // Unreachable in practice (a fatal finding is either a candidate or explained by
        // one); kept so that a failed run always names a step.
        let f = fatal[0];
        let finding = &findings[f];
        RootCause {
            span: finding.span,
            step: finding.step.clone(),
            kind: finding.kind.clone(),
            reason: finding.reason.clone(),
            confidence: MIN_CONFIDENCE,
            evidence: fatal.to_vec(),
            rule: "unexplained",
            agent: self.agent_name(finding.span),
        }
    }

    /// The earliest trigger of `rule` among the candidates (with its earliest upstream
    /// finding, when the rule needs one).
    fn first_match(
        &self,
        rule: &Rule,
        findings: &[Finding],
        candidates: &[usize],
    ) -> Option<(Option<usize>, usize)> {
        // Candidates are in data-flow order.
        for &t in candidates {
            let trigger = &findings[t];
            if !rule.trigger.accepts(
                &trigger.kind,
                &trigger.step,
                &trigger.reason,
                self.is_run_site(trigger),
            ) {
                continue;
            }
            let Some(pattern) = rule.upstream else {
                return Some((None, t));
            };
            let before = self.post_of(trigger.span);
            let upstream = candidates.iter().copied().find(|&u| {
                let f = &findings[u];
                u != t
                    && f.span != trigger.span
                    && self.post_of(f.span) < before
                    && pattern.accepts(&f.kind, &f.step, &f.reason, self.is_run_site(f))
            });
            if let Some(u) = upstream {
                return Some((Some(u), t));
            }
        }
        None
    }

    fn verdict(
        &self,
        rule: &Rule,
        findings: &[Finding],
        candidates: &[usize],
        fatal: &[usize],
        upstream: Option<usize>,
        trigger: usize,
    ) -> RootCause {
        let t = &findings[trigger];
        let mut confidence = rule.confidence;
        let (span, step, kind, reason) = match (rule.blame, upstream) {
            (Blame::Upstream, Some(u)) => {
                let u = &findings[u];
                (
                    u.span,
                    u.step.clone(),
                    u.kind.clone(),
                    format!("{}, before: {}", u.reason, t.reason),
                )
            }
            (Blame::Planner, _) => match self.planner_for(t.span) {
                Some(p) if p == t.span => (p, t.step.clone(), t.kind.clone(), t.reason.clone()),
                Some(p) => (
                    p,
                    self.step(p).clone(),
                    t.kind.clone(),
                    format!(
                        "{} span `{}` chose the call: {}",
                        self.step(p).as_str(),
                        self.traj.spans[p as usize].name,
                        t.reason
                    ),
                ),
                None => {
                    confidence -= FALLBACK_PENALTY;
                    let a = self.agent_for(t.span);
                    if self.records_no_model_calls(a) {
                        // The agent's model calls are not instrumented: its planning,
                        // which the trace cannot show, chose the call.
                        (
                            a,
                            StepKind::Planner,
                            t.kind.clone(),
                            format!(
                                "the agent records no model calls; its planning chose the call: {}",
                                t.reason
                            ),
                        )
                    } else {
                        (
                            a,
                            self.step(a).clone(),
                            t.kind.clone(),
                            format!(
                                "no planner step found; the agent chose the call: {}",
                                t.reason
                            ),
                        )
                    }
                }
            },
            (Blame::Producer, _) => match self.producer_for(t.span) {
                Some(g) => (
                    g,
                    self.step(g).clone(),
                    t.kind.clone(),
                    format!(
                        "{} span `{}` produced the answer that {} rejected: {}",
                        self.step(g).as_str(),
                        self.traj.spans[g as usize].name,
                        t.step.as_str(),
                        t.reason
                    ),
                ),
                None => {
                    confidence -= FALLBACK_PENALTY;
                    (t.span, t.step.clone(), t.kind.clone(), t.reason.clone())
                }
            },
            (Blame::BudgetUser, _) => match self.budget_user(findings) {
                Some(b) => {
                    let span = &self.traj.spans[b as usize];
                    (
                        b,
                        self.step(b).clone(),
                        t.kind.clone(),
                        format!(
                            "{} span `{}` used the time budget ({} ms of the run's {} ms): {}",
                            self.step(b).as_str(),
                            span.name,
                            span.duration_nanos() / 1_000_000,
                            self.run_duration_nanos() / 1_000_000,
                            t.reason
                        ),
                    )
                }
                None => {
                    confidence -= FALLBACK_PENALTY;
                    (t.span, t.step.clone(), t.kind.clone(), t.reason.clone())
                }
            },
            (Blame::Origin | Blame::Upstream, _) => {
                match self.unrecorded_model_call(t) {
                    Some(role) => (
                        t.span,
                        role,
                        t.kind.clone(),
                        format!(
                            "a model call of the agent failed (the instrumentation records no model calls): {}",
                            t.reason
                        ),
                    ),
                    None => match self.step_head(t.span) {
                        // Infrastructure under a step (an HTTP call under a tool) failed:
                        // the step is blamed, in its own words when it has any.
                        Some(head) => {
                            let own = self.by_span[head as usize]
                                .iter()
                                .map(|&f| &findings[f])
                                .find(|f| f.kind.is_error_class());
                            let reason = match own {
                                Some(f) if error_status(&t.reason)
                                    .is_none_or(|code| f.reason.contains(code)) =>
                                {
                                    f.reason.clone()
                                }
                                Some(f) => format!("{}; {}", f.reason, t.reason),
                                None => format!(
                                    "{} span `{}` failed: {}",
                                    t.step.as_str(),
                                    self.traj.spans[head as usize].name,
                                    t.reason
                                ),
                            };
                            (head, t.step.clone(), t.kind.clone(), reason)
                        }
                        None => (t.span, t.step.clone(), t.kind.clone(), t.reason.clone()),
                    },
                }
            }
        };
        let evidence = self.evidence(findings, upstream, trigger, fatal);
        let mut in_evidence = vec![false; findings.len()];
        for &f in &evidence {
            in_evidence[f] = true;
        }
        // Slowness alone competes with nothing: it is a cause only by a rule's choice.
        let competitors = candidates
            .iter()
            .filter(|&&c| !in_evidence[c] && findings[c].kind != FindingKind::SlowStep)
            .count()
            .min(5);
        confidence -= COMPETITOR_PENALTY * competitors as f64;
        let confidence = (confidence.max(MIN_CONFIDENCE) * 100.0).round() / 100.0;
        RootCause {
            span,
            step,
            kind,
            reason,
            confidence,
            evidence,
            rule: rule.name,
            agent: self.agent_name(span),
        }
    }

    /// The step that used the run's time budget: the longest step over its latency SLO
    /// (a `slow_step` finding), else the longest step run with a step of its own that is
    /// not a container (agent, chain) nor the root.
    fn budget_user(&self, findings: &[Finding]) -> Option<u32> {
        let longest = |it: &mut dyn Iterator<Item = u32>| {
            it.max_by_key(|&i| {
                (
                    self.traj.spans[i as usize].duration_nanos(),
                    std::cmp::Reverse(i),
                )
            })
        };
        let slow = longest(
            &mut findings
                .iter()
                .filter(|f| f.kind == FindingKind::SlowStep)
                .map(|f| f.span),
        );
        slow.or_else(|| {
            longest(&mut (0..self.traj.spans.len() as u32).filter(|&i| {
                let a = &self.steps[i as usize];
                self.parent[i as usize].is_some()
                    && a.source != StepSource::Inherited
                    && !matches!(a.kind, StepKind::Agent | StepKind::Chain)
            }))
        })
    }

    /// The run's time: from its first span's start to its last span's end.
    fn run_duration_nanos(&self) -> u64 {
        let spans = &self.traj.spans;
        let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
        end.saturating_sub(start)
    }

    /// The span that heads the step run of `span` when `span` is infrastructure that
    /// inherited its step (an outgoing call, such as HTTP under a tool, that is not a
    /// model call): its nearest ancestor of the same step with a step of its own.
    /// `None` for a span with a step of its own.
    fn step_head(&self, span: u32) -> Option<u32> {
        let own = self.steps.get(span as usize)?;
        let record = &self.traj.spans[span as usize];
        if own.source != StepSource::Inherited || !crate::detect::is_outgoing_call(record) {
            return None;
        }
        let mut s = span;
        // A trajectory is never deeper than `max_trace_depth`: the walk is bounded.
        while let Some(p) = self.parent[s as usize] {
            let a = &self.steps[p as usize];
            if a.kind != own.kind {
                return None;
            }
            if a.source != StepSource::Inherited {
                return Some(p);
            }
            s = p;
        }
        None
    }

    /// The reasoning chain: the upstream origin, the trigger, the findings its error
    /// propagated to (deepest first), then the fatal findings not yet listed.
    fn evidence(
        &self,
        findings: &[Finding],
        upstream: Option<usize>,
        trigger: usize,
        fatal: &[usize],
    ) -> Vec<usize> {
        let mut listed = vec![false; findings.len()];
        let mut chain: Vec<usize> = Vec::new();
        let mut push = |f: usize, chain: &mut Vec<usize>| {
            if !listed[f] {
                listed[f] = true;
                chain.push(f);
            }
        };
        if let Some(u) = upstream {
            push(u, &mut chain);
        }
        push(trigger, &mut chain);
        let mut cur = self
            .parent
            .get(findings[trigger].span as usize)
            .copied()
            .flatten();
        let mut hops = 0;
        while let Some(s) = cur {
            if hops > self.traj.spans.len() {
                break;
            }
            hops += 1;
            for &f in &self.by_span[s as usize] {
                if findings[f].propagated {
                    push(f, &mut chain);
                }
            }
            cur = self.parent[s as usize];
        }
        for &f in fatal {
            push(f, &mut chain);
        }
        chain
    }

    /// The planner that issued the call made in span `i`.
    fn planner_for(&self, i: u32) -> Option<u32> {
        if *self.step(i) == StepKind::Planner {
            return Some(self.run_of(i));
        }
        let mut cur = self.parent.get(i as usize).copied().flatten();
        let mut hops = 0;
        while let Some(s) = cur {
            if hops > self.traj.spans.len() {
                break;
            }
            hops += 1;
            if *self.step(s) == StepKind::Planner {
                return Some(self.run_of(s));
            }
            cur = self.parent[s as usize];
        }
        let agent = self.owner_of_work(i);
        self.last_before_in(i, &StepKind::Planner, agent)
            .or_else(|| self.last_before_same_agent(i, agent))
            .or_else(|| self.last_before(i, &StepKind::Planner))
    }

    /// The last planner before span `i` served by another run of the same agent (by
    /// name): an agent handed the turn back and forth fails in its last, empty run; the
    /// routing that looped was its earlier runs' planning.
    fn last_before_same_agent(&self, i: u32, agent: u32) -> Option<u32> {
        if agent == u32::MAX {
            return None;
        }
        let name = crate::classify::agent_name_in(self.traj, agent)?;
        let limit = self.post_of(i);
        // Each agent run's name is looked up once, however many planners it has.
        let mut same: HashMap<u32, bool> = HashMap::new();
        (0..self.traj.spans.len() as u32)
            .filter(|&j| *self.step(j) == StepKind::Planner && self.post_of(j) < limit)
            .filter(|&j| {
                let owner = self.owner[j as usize];
                owner != u32::MAX
                    && *same.entry(owner).or_insert_with(|| {
                        crate::classify::agent_name_in(self.traj, owner).as_ref() == Some(&name)
                    })
            })
            .max_by_key(|&j| self.post_of(j))
            .map(|j| self.run_of(j))
    }

    /// The agent whose work span `i` is: the span itself when it is an agent (a loop
    /// or limit reported on the agent), else the agent it serves.
    fn owner_of_work(&self, i: u32) -> u32 {
        if *self.step(i) == StepKind::Agent {
            i
        } else {
            self.owner[i as usize]
        }
    }

    /// [`Self::last_before`] among the spans that serve `agent` (or any span under it
    /// when `agent` is a span).
    fn last_before_in(&self, i: u32, step: &StepKind, agent: u32) -> Option<u32> {
        if agent == u32::MAX {
            return None;
        }
        let limit = self.post_of(i);
        (0..self.traj.spans.len() as u32)
            .filter(|&j| {
                self.step(j) == step && self.post_of(j) < limit && self.owner[j as usize] == agent
            })
            .max_by_key(|&j| self.post_of(j))
            .map(|j| self.run_of(j))
    }

    /// The generator whose answer span `i` judged: span `i` itself when it is a
    /// generator, else the last generator before it in data-flow order.
    fn producer_for(&self, i: u32) -> Option<u32> {
        if *self.step(i) == StepKind::Generator {
            return Some(self.run_of(i));
        }
        self.last_before(i, &StepKind::Generator)
            .map(|g| self.author_of(g))
    }

    /// The generator that wrote the answer generator run `g` gave: a manager that
    /// relays a sub-agent's answer word for word only passed it on, so the earliest
    /// generator of another agent that gave the same answer wrote it. Short answers
    /// ("OK") say nothing of their origin and stay with `g`.
    fn author_of(&self, g: u32) -> u32 {
        const MIN_RELAYED_CHARS: usize = 20;
        let text_of = |j: u32| {
            self.traj
                .spans
                .get(j as usize)
                .and_then(crate::content::answer_text)
                .map(|t| t.trim().to_string())
        };
        let Some(answer) = text_of(g).filter(|t| t.len() >= MIN_RELAYED_CHARS) else {
            return g;
        };
        let agent = self.agent_name(g);
        let limit = self.post_of(g);
        (0..self.traj.spans.len() as u32)
            .filter(|&j| *self.step(j) == StepKind::Generator && self.post_of(j) < limit)
            .filter(|&j| self.run_of(j) != g && self.agent_name(j) != agent)
            .filter(|&j| text_of(j).is_some_and(|t| t == answer))
            .min_by_key(|&j| self.post_of(j))
            .map(|j| self.run_of(j))
            .unwrap_or(g)
    }

    /// The run of `step` that ended last before span `i` in data-flow order (for an
    /// ancestor of such runs, the last one inside it).
    fn last_before(&self, i: u32, step: &StepKind) -> Option<u32> {
        let limit = self.post_of(i);
        (0..self.traj.spans.len() as u32)
            .filter(|&j| self.step(j) == step && self.post_of(j) < limit)
            .max_by_key(|&j| self.post_of(j))
            .map(|j| self.run_of(j))
    }

    /// The outermost span of the step run containing span `i`.
    fn run_of(&self, i: u32) -> u32 {
        let step = self.step(i);
        let mut cur = i;
        for _ in 0..self.traj.spans.len() {
            if self.run_start(cur) {
                return cur;
            }
            match self.parent.get(cur as usize).copied().flatten() {
                Some(p) if self.step(p) == step => cur = p,
                _ => return cur,
            }
        }
        cur
    }

    /// The name of the agent whose subtree holds span `i`: the nearest agent run at or
    /// above it, by the name the trace gives it.
    fn agent_name(&self, i: u32) -> Option<Str> {
        let mut cur = Some(i);
        let mut hops = 0;
        while let Some(s) = cur {
            if hops > self.traj.spans.len() {
                break;
            }
            hops += 1;
            if *self.step(s) == StepKind::Agent {
                return crate::classify::agent_name_in(self.traj, s);
            }
            cur = self.parent.get(s as usize).copied().flatten();
        }
        None
    }

    /// Whether agent span `a` records no model call below it (an instrumentation that
    /// traces agents and tools only).
    fn records_no_model_calls(&self, a: u32) -> bool {
        if *self.step(a) != StepKind::Agent {
            return false;
        }
        !(0..self.traj.spans.len() as u32).any(|j| {
            matches!(
                self.step(j),
                StepKind::Planner | StepKind::Generator | StepKind::Critic | StepKind::Router
            ) && self.is_within(j, a)
        })
    }

    /// Whether span `j` is `a` or below it.
    fn is_within(&self, j: u32, a: u32) -> bool {
        let mut cur = Some(j);
        for _ in 0..=self.traj.spans.len() {
            match cur {
                Some(c) if c == a => return true,
                Some(c) => cur = self.parent.get(c as usize).copied().flatten(),
                None => return false,
            }
        }
        false
    }

    /// For a model provider's error reported on an agent span whose model calls are not
    /// recorded, the role of the failed call by the turn it served: before any tool
    /// result of the agent, the planner; after one, the generator.
    fn unrecorded_model_call(&self, t: &Finding) -> Option<StepKind> {
        if t.step != StepKind::Agent || !self.records_no_model_calls(t.span) {
            return None;
        }
        let lower = t.reason.to_ascii_lowercase();
        let provider_error = t.kind == FindingKind::RateLimited
            || crate::detect::MODEL_ERROR_TEXT
                .iter()
                .any(|m| lower.contains(m));
        if !provider_error {
            return None;
        }
        let start = self.traj.spans[t.span as usize].start_unix_nano;
        let end = self.traj.spans[t.span as usize].end_unix_nano;
        let tool_result = (0..self.traj.spans.len() as u32).any(|j| {
            matches!(self.step(j), StepKind::Tool | StepKind::Retriever)
                && self.is_within(j, t.span)
                && self.traj.spans[j as usize].end_unix_nano <= end
                && self.traj.spans[j as usize].start_unix_nano >= start
        });
        Some(if tool_result {
            StepKind::Generator
        } else {
            StepKind::Planner
        })
    }

    /// The nearest agent ancestor of span `i`, else the root, else `i`.
    fn agent_for(&self, i: u32) -> u32 {
        let mut cur = self.parent.get(i as usize).copied().flatten();
        let mut hops = 0;
        while let Some(s) = cur {
            if hops > self.traj.spans.len() {
                break;
            }
            hops += 1;
            if *self.step(s) == StepKind::Agent {
                return s;
            }
            cur = self.parent[s as usize];
        }
        self.traj.root.unwrap_or(i)
    }
}

/// The post-order rank of every span: children before their parent, siblings in
/// canonical (start) order, roots in span order. Iterative. Spans not reachable from a
/// root (a parent cycle) rank after all others, in span order.
fn post_order(parent: &[Option<u32>], children: &[Vec<u32>]) -> Vec<u32> {
    let n = parent.len();
    let mut post = vec![u32::MAX; n];
    let mut next = 0u32;
    // (span, index of the next child to visit)
    let mut stack: Vec<(u32, usize)> = Vec::new();
    for root in (0..n as u32).filter(|&i| parent[i as usize].is_none()) {
        stack.push((root, 0));
        while let Some(top) = stack.last_mut() {
            let (span, child) = *top;
            if let Some(&c) = children[span as usize].get(child) {
                top.1 += 1;
                stack.push((c, 0));
            } else {
                stack.pop();
                post[span as usize] = next;
                next += 1;
            }
        }
    }
    for rank in post.iter_mut().filter(|r| **r == u32::MAX) {
        *rank = next;
        next += 1;
    }
    post
}

/// The HTTP error status (400–599) a reason names, if any: the last such word.
fn error_status(reason: &str) -> Option<&str> {
    reason
        .split(|c: char| !c.is_ascii_digit())
        .rfind(|w| w.len() == 3 && (w.starts_with('4') || w.starts_with('5')))
}

/// Whether an unrecovered finding of this kind below a container explains the
/// container's error: a failure of a step that is not itself an error (a verdict, an
/// empty retrieval, a truncation). Slowness explains a deadline only through the budget
/// rows; a misrouting fails nothing by itself.
fn explains_a_container(kind: &FindingKind) -> bool {
    match kind {
        FindingKind::SlowStep => false,
        FindingKind::Custom(k) => &**k != crate::detect::MISROUTED_KIND,
        _ => true,
    }
}
