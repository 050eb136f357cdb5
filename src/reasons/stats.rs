//! Per-pattern statistics for the API: counts per event-time minute over a horizon,
//! example trace ids, the steps a pattern occurs in, and the share of root causes.
//!
//! Time is event time, not wall time: "now" is the latest event time recorded (the
//! watermark), so a replayed file gives the same answers as live traffic. Records
//! older than the horizon behind the watermark are ignored. Memory is bounded: at most
//! `max_patterns` patterns (the one seen longest ago is dropped), `max_steps` steps per
//! pattern (the rest counts as `other`), `max_examples` trace ids, and one bucket per
//! (minute, step) inside the horizon.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::cluster::PatternId;
use crate::model::{StepKind, TraceId};

#[derive(Debug, Clone, PartialEq)]
pub struct ReasonStatsConfig {
    /// How far back counts are kept, behind the latest event time.
    pub horizon: Duration,
    pub max_patterns: usize,
    pub max_steps: usize,
    pub max_examples: usize,
}

impl Default for ReasonStatsConfig {
    fn default() -> Self {
        ReasonStatsConfig {
            horizon: Duration::from_secs(6 * 3600),
            max_patterns: 5000,
            max_steps: 16,
            max_examples: 5,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    minute: u64,
    step: u16,
    count: u32,
    root: u32,
}

#[derive(Debug, Default)]
struct Entry {
    /// Sorted by minute.
    buckets: VecDeque<Bucket>,
    steps: Vec<StepKind>,
    /// Most recent last.
    examples: VecDeque<TraceId>,
    last_minute: u64,
}

/// One step's part of a pattern's count in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepShare {
    pub step: String,
    pub count: u64,
}

/// A pattern's statistics in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct ReasonSummary {
    pub pattern: PatternId,
    pub count: u64,
    pub root_causes: u64,
    /// `root_causes / count`.
    pub root_cause_share: f64,
    /// Largest first.
    pub steps: Vec<StepShare>,
    /// Most recent first.
    pub examples: Vec<TraceId>,
    /// (minute start as unix seconds, count), oldest first.
    pub per_minute: Vec<(u64, u64)>,
}

pub struct ReasonStats {
    cfg: ReasonStatsConfig,
    patterns: HashMap<PatternId, Entry>,
    /// Latest event minute recorded (unix minutes).
    watermark: u64,
    /// Records ignored because they were older than the horizon.
    pub too_old: u64,
}

const OTHER: &str = "other";

impl ReasonStats {
    pub fn new(cfg: ReasonStatsConfig) -> ReasonStats {
        ReasonStats {
            cfg,
            patterns: HashMap::new(),
            watermark: 0,
            too_old: 0,
        }
    }

    fn horizon_minutes(&self) -> u64 {
        (self.cfg.horizon.as_secs() / 60).max(1)
    }

    /// Latest event time recorded, as unix seconds at the start of its minute.
    pub fn watermark_secs(&self) -> u64 {
        self.watermark * 60
    }

    pub fn patterns(&self) -> usize {
        self.patterns.len()
    }

    /// Records one finding of `pattern` at `event_time_unix_nanos`.
    pub fn record(
        &mut self,
        pattern: PatternId,
        event_time_unix_nanos: u64,
        trace: TraceId,
        step: &StepKind,
        is_root_cause: bool,
    ) {
        let minute = event_time_unix_nanos / 60_000_000_000;
        let horizon = self.horizon_minutes();
        if minute + horizon <= self.watermark {
            self.too_old += 1;
            return;
        }
        self.watermark = self.watermark.max(minute);
        let floor = self.watermark.saturating_sub(horizon - 1);
        if !self.patterns.contains_key(&pattern) && self.patterns.len() >= self.cfg.max_patterns {
            self.evict_one();
        }
        let (max_steps, max_examples) = (self.cfg.max_steps.max(1), self.cfg.max_examples);
        let e = self.patterns.entry(pattern).or_default();
        e.last_minute = e.last_minute.max(minute);
        let step_idx = match e.steps.iter().position(|s| s == step) {
            Some(i) => i,
            None if e.steps.len() + 1 < max_steps => {
                e.steps.push(step.clone());
                e.steps.len() - 1
            }
            None => match e.steps.iter().position(|s| s.as_str() == OTHER) {
                Some(i) => i,
                None => {
                    e.steps.push(StepKind::Custom(OTHER.into()));
                    e.steps.len() - 1
                }
            },
        } as u16;
        while e.buckets.front().is_some_and(|b| b.minute < floor) {
            e.buckets.pop_front();
        }
        // Buckets are sorted by minute; late events land near the back.
        let mut at = e.buckets.len();
        while at > 0 && e.buckets[at - 1].minute > minute {
            at -= 1;
        }
        let mut found = false;
        let mut k = at;
        while k > 0 && e.buckets[k - 1].minute == minute {
            if e.buckets[k - 1].step == step_idx {
                let b = &mut e.buckets[k - 1];
                b.count = b.count.saturating_add(1);
                b.root = b.root.saturating_add(u32::from(is_root_cause));
                found = true;
                break;
            }
            k -= 1;
        }
        if !found {
            e.buckets.insert(
                at,
                Bucket {
                    minute,
                    step: step_idx,
                    count: 1,
                    root: u32::from(is_root_cause),
                },
            );
        }
        if max_examples > 0 && !e.examples.contains(&trace) {
            if e.examples.len() >= max_examples {
                e.examples.pop_front();
            }
            e.examples.push_back(trace);
        }
    }

    fn evict_one(&mut self) {
        if let Some(victim) = self
            .patterns
            .iter()
            .min_by_key(|(id, e)| (e.last_minute, **id))
            .map(|(id, _)| *id)
        {
            self.patterns.remove(&victim);
        }
    }

    /// The `limit` patterns with the most findings in the last `window` (up to the
    /// watermark), optionally only those in `step`, largest count first (ties: lower
    /// id). `resolve` maps an id to the pattern it was merged into, so that counts of
    /// merged patterns add up; it returns `None` for an evicted pattern, whose counts are
    /// then reported under its own id.
    pub fn top(
        &self,
        window: Duration,
        step: Option<&str>,
        limit: usize,
        resolve: impl Fn(PatternId) -> Option<PatternId>,
    ) -> Vec<ReasonSummary> {
        let minutes = (window.as_secs() / 60).clamp(1, self.horizon_minutes());
        let from = self.watermark.saturating_sub(minutes - 1);
        let mut acc: HashMap<PatternId, Acc> = HashMap::new();
        for (&id, e) in &self.patterns {
            let mut a = Acc::default();
            for b in e.buckets.iter().filter(|b| b.minute >= from) {
                let name = e.steps.get(b.step as usize).map_or(OTHER, |s| s.as_str());
                if step.is_some_and(|s| s != name) {
                    continue;
                }
                a.count += u64::from(b.count);
                a.root += u64::from(b.root);
                *a.steps.entry(name.to_string()).or_default() += u64::from(b.count);
                *a.minutes.entry(b.minute).or_default() += u64::from(b.count);
            }
            if a.count == 0 {
                continue;
            }
            a.examples.extend(e.examples.iter().rev().copied());
            let target = resolve(id).unwrap_or(id);
            acc.entry(target).or_default().absorb(a);
        }
        let mut out: Vec<ReasonSummary> = acc
            .into_iter()
            .map(|(pattern, a)| {
                let mut steps: Vec<StepShare> = a
                    .steps
                    .into_iter()
                    .map(|(step, count)| StepShare { step, count })
                    .collect();
                steps.sort_by(|x, y| y.count.cmp(&x.count).then_with(|| x.step.cmp(&y.step)));
                let mut per_minute: Vec<(u64, u64)> =
                    a.minutes.into_iter().map(|(m, c)| (m * 60, c)).collect();
                per_minute.sort_unstable();
                let mut examples = a.examples;
                examples.truncate(self.cfg.max_examples);
                ReasonSummary {
                    pattern,
                    count: a.count,
                    root_causes: a.root,
                    root_cause_share: a.root as f64 / a.count as f64,
                    steps,
                    examples,
                    per_minute,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.pattern.cmp(&b.pattern))
        });
        out.truncate(limit);
        out
    }
}

#[derive(Default)]
struct Acc {
    count: u64,
    root: u64,
    steps: HashMap<String, u64>,
    minutes: HashMap<u64, u64>,
    examples: Vec<TraceId>,
}

impl Acc {
    fn absorb(&mut self, o: Acc) {
        self.count += o.count;
        self.root += o.root;
        for (k, v) in o.steps {
            *self.steps.entry(k).or_default() += v;
        }
        for (k, v) in o.minutes {
            *self.minutes.entry(k).or_default() += v;
        }
        for t in o.examples {
            if !self.examples.contains(&t) {
                self.examples.push(t);
            }
        }
    }
}
