//! One mining run over a snapshot of the window: items, bitmaps, Apriori up to three
//! items, significance with false-discovery control, redundancy pruning and ranking.
//!
//! 1. **Items.** Every categorical value with its own code held by at least
//!    `min_support` rows (and not by all but `min_support`); for each numeric attribute,
//!    `x >= t` and `x < t` at the window's ventiles (5% steps) rounded to two
//!    significant digits.
//!    One bitmap per item over the snapshot's rows.
//! 2. **Outcomes.** All failures; failures blamed on each step with at least
//!    `min_outcome_failures`; failures blamed on each reason pattern likewise (16 most
//!    frequent patterns).
//! 3. **Apriori** per outcome over its positive rows only (bitmaps compressed to those
//!    rows): itemsets of items of distinct attributes, up to `max_level` items (two
//!    for per-step and per-pattern outcomes, whose step is already a condition), with at
//!    least `max(min_failures, min_failure_share · positives)` positives. Candidates
//!    are capped at `max_candidates` per run.
//! 4. **Tests.** Each frequent itemset with at least `min_support` rows is tested
//!    against the rest of the window: one-sided Fisher exact below `fisher_below`
//!    positives, else a pooled two-proportion z-test. Benjamini–Hochberg over *every*
//!    test of the run gives q-values; a cohort is significant when `q <= fdr`, its
//!    risk ratio is at least `min_risk_ratio`, its rate is at least
//!    `min_rate_difference` above the rest, its excess failures are at least
//!    `min_excess_share` of all failures per item, and it holds at most
//!    `max_support_share` of its population.
//! 5. **Redundancy.** A cohort of two or three items is kept only when it beats each
//!    parent P (one item fewer, the dropped item x) twice, within its outcome:
//!    - on its own rows against P's other rows: its rate at least `min_risk_ratio`
//!      times theirs and significantly above (one-sided test), and a risk ratio at
//!      least `child_risk_ratio_gain` times P's;
//!    - against the product of the two parts' effects: with the cells P ∧ x, P ∧ ¬x,
//!      ¬P ∧ x, ¬P ∧ ¬x of the outcome's population, the ratio of risk ratios
//!      `r(P∧x) · r(¬P∧¬x) / (r(P∧¬x) · r(¬P∧x))` at least `child_risk_ratio_gain` and
//!      significantly above 1 (Wald test of its log). Two conditions that each
//!      multiply the rate, even each too weakly or too broadly to be a cohort, raise
//!      their conjunction by the product: it beats both parents on their other rows,
//!      yet it is a refinement that adds a clause without explaining more failures.
//!
//!    The largest p over both tests and all parents must be below `child_p` and pass
//!    Benjamini–Yekutieli at `fdr` over all such claims of the run (they are nested and
//!    dependent). One entry per predicate (the outcome with the largest excess). Then,
//!    between two overlapping cohorts A and B, A is *explained* by B when the rows of A
//!    outside B are not significantly above the rest; an explained cohort is dropped
//!    (a confounded attribute correlated with the causal one, a parent whose excess is
//!    all in one child, two names of the same rows).
//! 6. **Ranking** by excess failures `f_S − n_S · p_C`, then the lower bound of the
//!    risk ratio's interval. Cohorts that differ only in one numeric threshold keep
//!    the best ranked.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::TraceId;

use super::stats::{bh_q_values, by_q_values, greater_p, interaction_greater, risk_ratio_ci};
use super::window::{Window, NO_CODE, NUMERIC, OTHER, UNSET};

/// Settings of a mining run.
#[derive(Debug, Clone, PartialEq)]
pub struct MineConfig {
    /// Fewest rows of a cohort (and of its complement).
    pub min_support: u32,
    /// Fewest positives of a frequent itemset...
    pub min_failures: u32,
    /// ...and at least this share of the outcome's positives.
    pub min_failure_share: f64,
    /// Fewest positives of a per-step or per-pattern outcome to mine it.
    pub min_outcome_failures: u32,
    /// Items per cohort, 1 to 3.
    pub max_level: usize,
    /// Benjamini–Hochberg level.
    pub fdr: f64,
    pub min_risk_ratio: f64,
    pub min_rate_difference: f64,
    /// Fewest excess failures, as a share of all failures in the window, per item of
    /// the cohort (a conjunction of three items needs three times the excess).
    pub min_excess_share: f64,
    /// Largest cohort, as a share of its population: a cohort of most runs says that
    /// the rest fails less, not that it fails more.
    pub max_support_share: f64,
    /// Fisher exact below this many positives in the cohort, z-test above.
    pub fisher_below: u64,
    /// Candidate itemsets counted per run at most.
    pub max_candidates: usize,
    /// A child must beat each parent at this p...
    pub child_p: f64,
    /// ...with a risk ratio this many times the parent's, and a rate this many times
    /// the product of the parent's and the added item's effects.
    pub child_risk_ratio_gain: f64,
    /// Rows of a cohort outside another are "elevated" below this p.
    pub explain_p: f64,
    /// Cohorts kept per run.
    pub max_results: usize,
    pub examples: usize,
    pub top_reasons: usize,
    /// Keys preferred between two names of the same rows (the cohort dimensions over
    /// other attributes, e.g. `service` over `service.namespace`).
    pub preferred_keys: Vec<Arc<str>>,
    /// Also mine the numeric attributes that are consequences of the run rather than
    /// conditions of it ([`SYMPTOM_NUMERIC`]: output size, step and tool-call counts,
    /// duration). Off by default: a failed run is slower or shorter because it failed,
    /// and a team cannot own "runs longer than 8 s".
    pub symptoms: bool,
    /// A per-pattern cohort needs at least this share of the pattern's failures outside
    /// it (see `own_wording`).
    pub min_outside_share: f64,
}

/// Columns of [`NUMERIC`] that describe how the run went, not what it was given.
pub const SYMPTOM_NUMERIC: [&str; 4] = ["output_tokens", "steps", "tool_calls", "duration_ms"];

impl Default for MineConfig {
    fn default() -> MineConfig {
        MineConfig {
            min_support: 30,
            min_failures: 5,
            min_failure_share: 0.01,
            min_outcome_failures: 30,
            max_level: 3,
            fdr: 0.05,
            min_risk_ratio: 1.5,
            min_rate_difference: 0.02,
            min_excess_share: 0.005,
            max_support_share: 0.5,
            fisher_below: 20,
            max_candidates: 100_000,
            child_p: 0.01,
            child_risk_ratio_gain: 1.2,
            explain_p: 0.01,
            max_results: 50,
            examples: 5,
            top_reasons: 3,
            preferred_keys: crate::aggregate::config::default_dimensions()
                .into_iter()
                .map(|d| d.name)
                .collect(),
            symptoms: false,
            min_outside_share: 0.1,
        }
    }
}

/// The comparison operator of a clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Ge,
    Lt,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Lt => "<",
        }
    }
}

/// One predicate clause: `key op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// A cohort dimension name, an attribute key, or a numeric name of [`NUMERIC`].
    pub key: Arc<str>,
    pub op: Op,
    pub value: ClauseValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClauseValue {
    Text(Arc<str>),
    Number(f64),
}

impl std::fmt::Display for Clause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            ClauseValue::Text(t) => write!(f, "{}{}{}", self.key, self.op.as_str(), t),
            ClauseValue::Number(n) => write!(f, "{}{}{}", self.key, self.op.as_str(), n),
        }
    }
}

/// A discovered cohort with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovered {
    pub predicate: Vec<Clause>,
    /// The blamed step whose rate is raised; `None` for all failures.
    pub step: Option<Arc<str>>,
    /// The blamed reason pattern whose rate is raised, if the outcome is a pattern.
    pub pattern: Option<u64>,
    pub support: u32,
    pub failures: u32,
    pub failure_rate: f64,
    pub baseline_rate: f64,
    pub risk_ratio: f64,
    pub risk_ratio_ci: [f64; 2],
    pub excess_failures: f64,
    pub p_value: f64,
    pub q_value: f64,
    /// The most frequent blamed step among the cohort's failed runs, with its count.
    pub top_root_cause_step: Option<(Arc<str>, u32)>,
    /// The most frequent blamed reason patterns among its failed runs, with counts.
    pub top_reasons: Vec<(u64, u32)>,
    /// Newest first.
    pub example_trace_ids: Vec<TraceId>,
    /// Other names of the same rows: `(i, clause)` says that `clause` holds on exactly
    /// the rows of `predicate[i]` in this window (`prompt_version=v7 ≡
    /// service.version=1.6.1`). One cohort, several names.
    pub equivalents: Vec<(usize, Clause)>,
}

impl Discovered {
    /// The key that persists across runs: [`Discovered::key`] with numeric thresholds
    /// blanked, since a window's quantiles move a little between runs.
    pub fn persistence_key(&self) -> String {
        let mut k: String = self
            .predicate
            .iter()
            .map(|c| match c.value {
                ClauseValue::Number(_) => format!("{}{}#", c.key, c.op.as_str()),
                ClauseValue::Text(_) => c.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        if let Some(s) = &self.step {
            k.push_str("|step=");
            k.push_str(s);
        }
        if let Some(p) = self.pattern {
            k.push_str(&format!("|pattern={p}"));
        }
        k
    }

    /// A stable text key of the predicate and outcome (for persistence across runs).
    pub fn key(&self) -> String {
        let mut k: String = self
            .predicate
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("&");
        if let Some(s) = &self.step {
            k.push_str("|step=");
            k.push_str(s);
        }
        if let Some(p) = self.pattern {
            k.push_str(&format!("|pattern={p}"));
        }
        k
    }
}

/// What a run found and what it cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MineReport {
    pub cohorts: Vec<Discovered>,
    pub records: usize,
    pub failures: usize,
    pub items: usize,
    pub outcomes: usize,
    pub candidates: usize,
    pub tests: usize,
    pub significant: usize,
    pub elapsed: Duration,
    /// True when the candidate cap stopped the search early.
    pub truncated: bool,
}

/// The window's rows copied out of the lock (oldest first), so that mining never
/// blocks the sink.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub n: usize,
    pub attrs: Vec<Arc<str>>,
    /// `names[a][code]`.
    pub names: Vec<Vec<Option<Arc<str>>>>,
    /// `codes[row * attrs.len() + a]`.
    pub codes: Vec<u16>,
    pub numeric: Vec<f32>,
    pub failed: Vec<bool>,
    pub root_step: Vec<u16>,
    pub root_pattern: Vec<u16>,
    pub step_mask: Vec<u16>,
    pub fail_mask: Vec<u16>,
    pub trace_ids: Vec<Option<TraceId>>,
    pub end_unix_nano: Vec<u64>,
    pub steps: Vec<Arc<str>>,
    /// Pattern id by pattern code.
    pub pattern_ids: Vec<Option<u64>>,
}

impl Snapshot {
    /// The rows of `window` ending at or after `since_unix_nano` (all rows when `None`).
    pub fn from_window(window: &Window, since_unix_nano: Option<u64>) -> Snapshot {
        let attrs: Vec<Arc<str>> = window.attributes.iter().map(|d| d.key.clone()).collect();
        let names = window
            .attributes
            .iter()
            .map(|d| (0..d.codes()).map(|c| d.name(c as u16).cloned()).collect())
            .collect();
        let na = attrs.len();
        let rows: Vec<usize> = window
            .rows()
            .filter(|&r| since_unix_nano.is_none_or(|s| window.end_unix_nano[r] >= s))
            .collect();
        let n = rows.len();
        let mut s = Snapshot {
            n,
            attrs,
            names,
            codes: Vec::with_capacity(n * na),
            numeric: Vec::with_capacity(n * NUMERIC.len()),
            failed: Vec::with_capacity(n),
            root_step: Vec::with_capacity(n),
            root_pattern: Vec::with_capacity(n),
            step_mask: Vec::with_capacity(n),
            fail_mask: Vec::with_capacity(n),
            trace_ids: Vec::with_capacity(n),
            end_unix_nano: Vec::with_capacity(n),
            steps: window.steps.clone(),
            pattern_ids: (0..window.patterns.codes())
                .map(|c| window.pattern_id(c as u16))
                .collect(),
        };
        for &r in &rows {
            for a in 0..na {
                s.codes.push(window.code(r, a));
            }
            for i in 0..NUMERIC.len() {
                s.numeric.push(window.numeric_value(r, i));
            }
            s.failed.push(window.failed[r]);
            s.root_step.push(window.root_step[r]);
            s.root_pattern.push(window.root_pattern[r]);
            s.step_mask.push(window.step_mask[r]);
            s.fail_mask.push(window.fail_mask[r]);
            s.trace_ids.push(window.trace_ids[r]);
            s.end_unix_nano.push(window.end_unix_nano[r]);
        }
        s
    }

    pub fn code(&self, row: usize, a: usize) -> u16 {
        self.codes[row * self.attrs.len() + a]
    }

    pub fn num(&self, row: usize, i: usize) -> f32 {
        self.numeric[row * NUMERIC.len() + i]
    }

    /// The text of attribute `a`'s `code`.
    pub fn name(&self, a: usize, code: u16) -> Option<&Arc<str>> {
        self.names.get(a)?.get(code as usize)?.as_ref()
    }
}

/// A bitmap over rows.
#[derive(Debug, Clone)]
pub(crate) struct Bits(pub(crate) Vec<u64>);

impl Bits {
    pub(crate) fn zeros(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    pub(crate) fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    pub(crate) fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    pub(crate) fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
    pub(crate) fn and_count(&self, other: &Bits) -> u32 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a & b).count_ones())
            .sum()
    }
    pub(crate) fn and3_count(a: &Bits, b: &Bits, c: &Bits) -> u32 {
        a.0.iter()
            .zip(&b.0)
            .zip(&c.0)
            .map(|((x, y), z)| (x & y & z).count_ones())
            .sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ItemKind {
    Cat {
        attr: usize,
        code: u16,
    },
    Num {
        index: usize,
        op: Op,
        threshold: f64,
    },
}

struct Item {
    kind: ItemKind,
    /// Values of other attributes held by exactly the same rows (merged into this item).
    aliases: Vec<ItemKind>,
    /// Items of one group (an attribute) never combine.
    group: usize,
    bits: Bits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    All,
    Step(u16),
    Pattern(u16),
}

/// An itemset: sorted item indices, `u16::MAX` padding.
type Key = [u16; 3];
const PAD: u16 = u16::MAX;

fn key_len(k: &Key) -> usize {
    k.iter().take_while(|&&i| i != PAD).count()
}

#[derive(Debug, Clone, Copy)]
struct Tested {
    outcome: usize,
    key: Key,
    n: u32,
    f: u32,
    p: f64,
}

/// Numeric thresholds sit at the `1/QUANTILES` quantiles of the window (ventiles).
const QUANTILES: usize = 20;

/// `x` rounded to two significant digits.
pub fn round_threshold(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let mag = 10f64.powf(x.abs().log10().floor() - 1.0);
    (x / mag).round() * mag
}

/// Runs one mining pass over `snap`: the phases of the module documentation, in order.
pub fn mine(snap: &Snapshot, cfg: &MineConfig) -> MineReport {
    let started = Instant::now();
    let n = snap.n;
    let mut report = MineReport {
        records: n,
        failures: snap.failed.iter().filter(|&&f| f).count(),
        ..MineReport::default()
    };
    if n < 2 * cfg.min_support as usize || report.failures == 0 {
        report.elapsed = started.elapsed();
        return report;
    }
    // 1. Items.
    let items = build_items(snap, cfg);
    report.items = items.len();
    // 2. Outcomes.
    let outcomes = Outcomes::new(snap, cfg);
    report.outcomes = outcomes.targets.len();
    let run = Run {
        snap,
        cfg,
        items: &items,
        outcomes: &outcomes,
    };
    // 3. Apriori and 4. tests.
    let counted = count_itemsets(&run, &mut report);
    report.tests = counted.tests.len();
    // 5. Redundancy.
    let kept = significant_cohorts(&run, &counted, &mut report);
    let kept = one_per_predicate(&run, &counted, kept);
    let rows: Vec<Bits> = kept.iter().map(|(t, _)| rows_of(&items, &t.key)).collect();
    let dropped = explained(&run, &counted, &kept, &rows);
    // 6. Ranking.
    report.cohorts = rank(describe(&run, &counted, &kept, &rows, &dropped), cfg);
    report.elapsed = started.elapsed();
    report
}

/// What every phase of one mining run reads.
struct Run<'a> {
    snap: &'a Snapshot,
    cfg: &'a MineConfig,
    items: &'a [Item],
    outcomes: &'a Outcomes,
}

/// The outcomes of a run (phase 2) and the population each is tested in.
struct Outcomes {
    /// All failures, then per step, then per reason pattern.
    targets: Vec<Target>,
    /// The step whose runs are each outcome's population (`None`: every row).
    pop_step: Vec<Option<u16>>,
    /// The runs with each such step (`None`: no step data, every row).
    step_pops: HashMap<u16, Option<Bits>>,
    /// Rows in each outcome's population.
    pop_n: Vec<u32>,
}

impl Outcomes {
    fn new(snap: &Snapshot, cfg: &MineConfig) -> Outcomes {
        let targets = targets(snap, cfg);
        let n = snap.n;
        // The population of each outcome: a step can only be blamed in runs that have
        // it, so a per-step outcome is tested among the runs with that step (a
        // per-pattern outcome among the runs with its step). Without step data: every
        // row.
        let have_steps = snap.step_mask.iter().any(|&m| m != 0);
        let step_population = |s: u16| -> Option<Bits> {
            if !have_steps || s as usize >= 16 {
                return None;
            }
            let mut b = Bits::zeros(n);
            for r in 0..n {
                if snap.step_mask[r] & (1 << s) != 0 || (snap.failed[r] && snap.root_step[r] == s) {
                    b.set(r);
                }
            }
            Some(b)
        };
        let mut pop_step: Vec<Option<u16>> = Vec::with_capacity(targets.len());
        for &t in &targets {
            pop_step.push(match t {
                Target::All => None,
                Target::Step(s) => Some(s),
                Target::Pattern(p) => {
                    let mut by_step: HashMap<u16, u32> = HashMap::new();
                    for r in 0..n {
                        if snap.failed[r]
                            && snap.root_pattern[r] == p
                            && snap.root_step[r] != NO_CODE
                        {
                            *by_step.entry(snap.root_step[r]).or_default() += 1;
                        }
                    }
                    by_step
                        .into_iter()
                        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                        .map(|(s, _)| s)
                }
            });
        }
        let mut step_pops: HashMap<u16, Option<Bits>> = HashMap::new();
        for s in pop_step.iter().flatten() {
            step_pops.entry(*s).or_insert_with(|| step_population(*s));
        }
        let mut outcomes = Outcomes {
            targets,
            pop_step,
            step_pops,
            pop_n: Vec::new(),
        };
        outcomes.pop_n = (0..outcomes.targets.len())
            .map(|o| outcomes.population(o).map_or(n as u32, Bits::count))
            .collect();
        outcomes
    }

    /// The rows outcome `o` is tested among (`None`: every row).
    fn population(&self, o: usize) -> Option<&Bits> {
        self.pop_step[o].and_then(|s| self.step_pops.get(&s).and_then(Option::as_ref))
    }
}

/// Outcomes and their positive rows: all failures, each step blamed at least
/// `min_outcome_failures` times, the 16 most frequent reason patterns likewise.
fn targets(snap: &Snapshot, cfg: &MineConfig) -> Vec<Target> {
    let mut targets = vec![Target::All];
    let mut step_counts: HashMap<u16, u32> = HashMap::new();
    let mut pattern_counts: HashMap<u16, u32> = HashMap::new();
    for r in 0..snap.n {
        if snap.failed[r] {
            if snap.root_step[r] != NO_CODE {
                *step_counts.entry(snap.root_step[r]).or_default() += 1;
            }
            if snap.root_pattern[r] != NO_CODE {
                *pattern_counts.entry(snap.root_pattern[r]).or_default() += 1;
            }
        }
    }
    let mut steps: Vec<(u16, u32)> = step_counts
        .into_iter()
        .filter(|&(_, c)| c >= cfg.min_outcome_failures)
        .collect();
    steps.sort_unstable();
    targets.extend(steps.iter().map(|&(s, _)| Target::Step(s)));
    let mut patterns: Vec<(u16, u32)> = pattern_counts
        .into_iter()
        .filter(|&(_, c)| c >= cfg.min_outcome_failures)
        .collect();
    patterns.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    patterns.truncate(16);
    // A pattern that is the only pattern of its step's failures repeats the step outcome.
    targets.extend(patterns.iter().map(|&(p, _)| Target::Pattern(p)));
    targets
}

/// Whether row `r` is a positive of outcome `t`.
fn positive(snap: &Snapshot, t: Target, r: usize) -> bool {
    snap.failed[r]
        && match t {
            Target::All => true,
            Target::Step(s) => snap.root_step[r] == s,
            Target::Pattern(p) => snap.root_pattern[r] == p,
        }
}

/// What phases 3 and 4 counted, for the later phases.
struct Counted {
    /// Every itemset tested (frequent, with `min_support` rows in and out).
    tests: Vec<Tested>,
    /// `(rows, positives)` of every frequent itemset, by outcome and itemset.
    counts: HashMap<(usize, Key), (u32, u32)>,
    /// Positives of each outcome.
    totals: Vec<u32>,
}

impl Counted {
    /// `(rate inside, rate of the rest of the population, risk ratio)` of `n_s` rows
    /// with `f_s` positives of outcome `o`.
    fn stats(&self, outcomes: &Outcomes, o: usize, n_s: u32, f_s: u32) -> (f64, f64, f64) {
        let total = self.totals[o];
        let nc = outcomes.pop_n[o].saturating_sub(n_s);
        let ps = f_s as f64 / n_s.max(1) as f64;
        let pc = (total - f_s) as f64 / nc.max(1) as f64;
        let rr = if pc > 0.0 { ps / pc } else { f64::INFINITY };
        (ps, pc, rr)
    }

    /// Failures of `t` above what the rest of its population's rate predicts.
    fn excess(&self, outcomes: &Outcomes, t: &Tested) -> f64 {
        let (_, pc, _) = self.stats(outcomes, t.outcome, t.n, t.f);
        t.f as f64 - t.n as f64 * pc
    }
}

/// Phases 3 and 4: per outcome, the frequent itemsets over its positive rows (Apriori),
/// each counted over the outcome's population and tested against its rest.
fn count_itemsets(run: &Run, report: &mut MineReport) -> Counted {
    let (snap, cfg, items, outcomes) = (run.snap, run.cfg, run.items, run.outcomes);
    let n = snap.n;
    let mut n_memo: HashMap<(Key, Option<u16>), u32> = HashMap::new();
    let mut counted = Counted {
        tests: Vec::new(),
        counts: HashMap::new(),
        totals: Vec::with_capacity(outcomes.targets.len()),
    };
    let mut budget = cfg.max_candidates;
    for (o, &t) in outcomes.targets.iter().enumerate() {
        let pos: Vec<u32> = (0..n)
            .filter(|&r| positive(snap, t, r))
            .map(|r| r as u32)
            .collect();
        let total = pos.len() as u32;
        counted.totals.push(total);
        if total < cfg.min_failures {
            continue;
        }
        let fmin = cfg
            .min_failures
            .max((cfg.min_failure_share * total as f64).ceil() as u32);
        // The blamed step (or pattern) is itself a condition: those outcomes are mined
        // to one item fewer.
        let max_level = if t == Target::All {
            cfg.max_level
        } else {
            cfg.max_level.min(2)
        };
        let frequent = frequent_itemsets(items, &pos, fmin, max_level, &mut budget, report);
        for (key, f) in frequent {
            let pop_key = outcomes.population(o).and(outcomes.pop_step[o]);
            let ns = *n_memo.entry((key, pop_key)).or_insert_with(|| {
                let mut maps: [&Bits; 4] = [&items[key[0] as usize].bits; 4];
                let mut m = 1;
                for &i in &key[1..key_len(&key)] {
                    maps[m] = &items[i as usize].bits;
                    m += 1;
                }
                if let Some(p) = outcomes.population(o) {
                    maps[m] = p;
                    m += 1;
                }
                count_all(&maps[..m])
            });
            counted.counts.insert((o, key), (ns, f));
            let nc = outcomes.pop_n[o].saturating_sub(ns);
            if ns < cfg.min_support || nc < cfg.min_support {
                continue;
            }
            let p = greater_p(
                f as u64,
                ns as u64,
                (total - f) as u64,
                nc as u64,
                cfg.fisher_below,
            );
            counted.tests.push(Tested {
                outcome: o,
                key,
                n: ns,
                f,
                p,
            });
        }
    }
    counted
}

/// Phase 3 for one outcome: the itemsets of items of distinct attributes, up to
/// `max_level` items, held by at least `fmin` of the positive rows `pos`, with their
/// positives. Each pair or triple tried takes one from `budget`; an empty budget stops
/// the search (`report.truncated`).
fn frequent_itemsets(
    items: &[Item],
    pos: &[u32],
    fmin: u32,
    max_level: usize,
    budget: &mut usize,
    report: &mut MineReport,
) -> Vec<(Key, u32)> {
    // Item bitmaps over the positives only.
    let compressed: Vec<Bits> = items
        .iter()
        .map(|it| {
            let mut b = Bits::zeros(pos.len());
            for (j, &r) in pos.iter().enumerate() {
                if it.bits.get(r as usize) {
                    b.set(j);
                }
            }
            b
        })
        .collect();
    let mut frequent: Vec<(Key, u32)> = Vec::new();
    let l1: Vec<usize> = (0..items.len())
        .filter(|&i| compressed[i].count() >= fmin)
        .collect();
    for &i in &l1 {
        frequent.push(([i as u16, PAD, PAD], compressed[i].count()));
    }
    let mut l2: HashSet<(u16, u16)> = HashSet::new();
    let mut l2_list: Vec<(usize, usize)> = Vec::new();
    if max_level >= 2 {
        'pairs: for (x, &i) in l1.iter().enumerate() {
            for &j in &l1[x + 1..] {
                if items[i].group == items[j].group {
                    continue;
                }
                if *budget == 0 {
                    report.truncated = true;
                    break 'pairs;
                }
                *budget -= 1;
                report.candidates += 1;
                let f = compressed[i].and_count(&compressed[j]);
                if f >= fmin {
                    l2.insert((i as u16, j as u16));
                    l2_list.push((i, j));
                    frequent.push(([i as u16, j as u16, PAD], f));
                }
            }
        }
    }
    if max_level >= 3 {
        'triples: for &(i, j) in &l2_list {
            for &k in l1.iter().filter(|&&k| k > j) {
                if items[k].group == items[i].group || items[k].group == items[j].group {
                    continue;
                }
                if !l2.contains(&(i as u16, k as u16)) || !l2.contains(&(j as u16, k as u16)) {
                    continue;
                }
                if *budget == 0 {
                    report.truncated = true;
                    break 'triples;
                }
                *budget -= 1;
                report.candidates += 1;
                let f = Bits::and3_count(&compressed[i], &compressed[j], &compressed[k]);
                if f >= fmin {
                    frequent.push(([i as u16, j as u16, k as u16], f));
                }
            }
        }
    }
    frequent
}

/// Phases 4 and 5: the significant cohorts (Benjamini–Hochberg over every test), each
/// of two or three items pruned against its parents, with its q-value.
fn significant_cohorts(
    run: &Run,
    counted: &Counted,
    report: &mut MineReport,
) -> Vec<(Tested, f64)> {
    let (cfg, outcomes) = (run.cfg, run.outcomes);
    let q = bh_q_values(&counted.tests.iter().map(|t| t.p).collect::<Vec<_>>());
    // Significant, then pruned against parents.
    let min_excess = cfg.min_excess_share * report.failures as f64;
    let mut kept: Vec<(Tested, f64)> = Vec::new();
    let mut claims: Vec<(Tested, f64, f64)> = Vec::new();
    for (t, &qv) in counted.tests.iter().zip(&q) {
        let (ps, pc, rr) = counted.stats(outcomes, t.outcome, t.n, t.f);
        let excess = t.f as f64 - t.n as f64 * pc;
        if qv > cfg.fdr
            || rr < cfg.min_risk_ratio
            || ps - pc < cfg.min_rate_difference
            || excess < min_excess * key_len(&t.key) as f64
            || t.n as f64 > cfg.max_support_share * outcomes.pop_n[t.outcome] as f64
            || own_wording(
                outcomes.targets[t.outcome],
                t.f,
                counted.totals[t.outcome],
                cfg,
            )
            || rewords_its_step(t, run)
        {
            continue;
        }
        report.significant += 1;
        if key_len(&t.key) == 1 {
            kept.push((*t, qv));
            continue;
        }
        if let Some(worst_p) = beats_parents(run, counted, t) {
            claims.push((*t, qv, worst_p));
        }
    }
    // Benjamini–Yekutieli: the claims share rows and parents.
    let claim_q = by_q_values(&claims.iter().map(|c| c.2).collect::<Vec<_>>());
    for ((t, qv, p_child), cq) in claims.into_iter().zip(claim_q) {
        if p_child < cfg.child_p && cq <= cfg.fdr {
            kept.push((t, qv));
        }
    }
    kept
}

/// A cohort of two or three items claims an interaction: it must beat each parent
/// (one item fewer) on its own rows against the parent's other rows, by
/// `min_risk_ratio`, by `child_risk_ratio_gain` times the parent's risk ratio, and
/// significantly; and it must beat the product of the parent's and the dropped item's
/// effects by `child_risk_ratio_gain`, significantly. The largest p over its parents
/// and both tests when it does (Benjamini–Yekutieli over every such claim of the run
/// follows), `None` when it does not.
fn beats_parents(run: &Run, counted: &Counted, t: &Tested) -> Option<f64> {
    let (cfg, outcomes) = (run.cfg, run.outcomes);
    let (ps, _, rr) = counted.stats(outcomes, t.outcome, t.n, t.f);
    let len = key_len(&t.key);
    let mut worst_p = 0.0f64;
    for drop in 0..len {
        let mut parent = [PAD; 3];
        let mut w = 0;
        for (x, &i) in t.key[..len].iter().enumerate() {
            if x != drop {
                parent[w] = i;
                w += 1;
            }
        }
        let &(np, fp) = counted.counts.get(&(t.outcome, parent))?;
        let (nr, fr) = (np.saturating_sub(t.n), fp.saturating_sub(t.f));
        let rest_rate = fr as f64 / nr.max(1) as f64;
        let (_, _, rr_parent) = counted.stats(outcomes, t.outcome, np, fp);
        if nr == 0
            || ps < cfg.min_risk_ratio * rest_rate
            || rr < cfg.child_risk_ratio_gain * rr_parent
        {
            return None;
        }
        let p_child = greater_p(
            t.f as u64,
            t.n as u64,
            fr as u64,
            nr as u64,
            cfg.fisher_below,
        );
        // Two conditions that each raise the rate on their own (or each a little,
        // below the thresholds) raise their conjunction by the product: that beats
        // both parents without any interaction. The conjunction must beat that
        // product too (the parent and the dropped item as the two conditions).
        let item = [t.key[drop], PAD, PAD];
        let &(nx, fx) = counted.counts.get(&(t.outcome, item))?;
        let (n_pop, f_pop) = (
            outcomes.pop_n[t.outcome] as u64,
            counted.totals[t.outcome] as u64,
        );
        let (n, f, np, fp, nx, fx) = (
            t.n as u64, t.f as u64, np as u64, fp as u64, nx as u64, fx as u64,
        );
        let cells = [
            (f, n),
            (fr as u64, nr as u64),
            (fx.saturating_sub(f), nx.saturating_sub(n)),
            (
                (f_pop + f).saturating_sub(fp + fx),
                (n_pop + n).saturating_sub(np + nx),
            ),
        ];
        let (ir, p_interaction) = interaction_greater(cells);
        if ir.is_nan() || ir < cfg.child_risk_ratio_gain {
            return None;
        }
        worst_p = worst_p.max(p_child).max(p_interaction);
    }
    Some(worst_p)
}

/// One entry per predicate: the outcome with the largest excess; at most twice
/// `max_results` of them, by excess.
fn one_per_predicate(
    run: &Run,
    counted: &Counted,
    mut kept: Vec<(Tested, f64)>,
) -> Vec<(Tested, f64)> {
    let excess = |t: &Tested| counted.excess(run.outcomes, t);
    kept.sort_by(|a, b| {
        excess(&b.0)
            .total_cmp(&excess(&a.0))
            .then(a.0.key.cmp(&b.0.key))
            .then(a.0.outcome.cmp(&b.0.outcome))
    });
    let mut seen: HashSet<Key> = HashSet::new();
    kept.retain(|(t, _)| seen.insert(t.key));
    kept.truncate(2 * run.cfg.max_results.max(1));
    kept
}

/// Explained cohorts: between two overlapping cohorts, one whose rows outside the other
/// are not significantly above the rest is dropped. `rows[i]` are the rows of
/// `kept[i]`; the answer says which are dropped.
fn explained(run: &Run, counted: &Counted, kept: &[(Tested, f64)], rows: &[Bits]) -> Vec<bool> {
    let (snap, cfg, items, outcomes) = (run.snap, run.cfg, run.items, run.outcomes);
    let n = snap.n;
    let targets = &outcomes.targets;
    let pos_bits: Vec<Option<Bits>> = {
        let mut v: Vec<Option<Bits>> = vec![None; targets.len()];
        for (t, _) in kept {
            if v[t.outcome].is_none() {
                let mut b = Bits::zeros(n);
                for r in 0..n {
                    if positive(snap, targets[t.outcome], r) {
                        b.set(r);
                    }
                }
                v[t.outcome] = Some(b);
            }
        }
        v
    };
    let mut dropped = vec![false; kept.len()];
    let floor = |n_x: u32| cfg.min_support.max(n_x / 10);
    // Clauses on preferred keys, then fewer clauses.
    let preference = |t: &Tested| -> (usize, usize) {
        let len = key_len(&t.key);
        let preferred = t.key[..len]
            .iter()
            .filter(|&&i| match items[i as usize].kind {
                ItemKind::Cat { attr, .. } => cfg.preferred_keys.contains(&snap.attrs[attr]),
                ItemKind::Num { .. } => true,
            })
            .count();
        (preferred, 3 - len)
    };
    for a in 0..kept.len() {
        if dropped[a] {
            continue;
        }
        for b in a + 1..kept.len() {
            if dropped[b] || dropped[a] {
                continue;
            }
            if rows[a].and_count(&rows[b]) == 0 {
                continue;
            }
            let (ta, tb) = (&kept[a].0, &kept[b].0);
            let rest = |t: &Tested, pos: &Option<Bits>| -> (u32, bool) {
                let Some(pos) = pos else {
                    return (0, false);
                };
                let in_both = outcomes
                    .population(t.outcome)
                    .map_or_else(
                        || rows[a].and_count(&rows[b]),
                        |p| count_all(&[&rows[a], &rows[b], p]),
                    )
                    .min(t.n);
                let nr = t.n - in_both;
                let fr = t.f - count_all(&[&rows[a], &rows[b], pos]).min(t.f);
                let total = counted.totals[t.outcome];
                let (nc, fc) = (outcomes.pop_n[t.outcome].saturating_sub(t.n), total - t.f);
                let elevated = nr > 0
                    && greater_p(fr as u64, nr as u64, fc as u64, nc as u64, cfg.fisher_below)
                        < cfg.explain_p;
                (nr, elevated)
            };
            let (nr_a, elev_a) = rest(ta, &pos_bits[ta.outcome]);
            let (nr_b, elev_b) = rest(tb, &pos_bits[tb.outcome]);
            // A cohort of all failures is never dropped for a per-step or per-pattern
            // one (their baselines differ); the reverse is allowed.
            let (all_a, all_b) = (
                targets[ta.outcome] == Target::All,
                targets[tb.outcome] == Target::All,
            );
            let may_drop_a = !all_a || all_b;
            let may_drop_b = !all_b || all_a;
            match (elev_a, elev_b) {
                (true, true) => {}
                (false, true) => dropped[a] = may_drop_a,
                (true, false) => dropped[b] = may_drop_b,
                (false, false) => {
                    // Each explains the other: keep the precise one when one is nearly
                    // inside the other, else the higher ranked (a cohort of all
                    // failures before a per-step one).
                    let a_inside = nr_a < floor(ta.n);
                    let b_inside = nr_b < floor(tb.n);
                    let same_rows = a_inside && b_inside && may_drop_a && may_drop_b;
                    if same_rows && preference(ta) != preference(tb) {
                        if preference(ta) < preference(tb) {
                            dropped[a] = true;
                        } else {
                            dropped[b] = true;
                        }
                    } else if (b_inside && !a_inside && may_drop_a) || !may_drop_b {
                        dropped[a] = true;
                    } else {
                        dropped[b] = true;
                    }
                }
            }
        }
    }
    dropped
}

/// The cohorts kept and not dropped, described: clauses, rates, risk ratio and its
/// interval, and their evidence.
fn describe(
    run: &Run,
    counted: &Counted,
    kept: &[(Tested, f64)],
    rows: &[Bits],
    dropped: &[bool],
) -> Vec<Discovered> {
    let (snap, cfg, items, outcomes) = (run.snap, run.cfg, run.items, run.outcomes);
    let mut out: Vec<Discovered> = Vec::new();
    for (i, (t, qv)) in kept.iter().enumerate() {
        if dropped[i] {
            continue;
        }
        let (ps, pc, _) = counted.stats(outcomes, t.outcome, t.n, t.f);
        let total = counted.totals[t.outcome];
        let (rr, ci) = risk_ratio_ci(
            t.f as u64,
            t.n as u64,
            (total - t.f) as u64,
            outcomes.pop_n[t.outcome].saturating_sub(t.n) as u64,
        );
        let (step, pattern) = match outcomes.targets[t.outcome] {
            Target::All => (None, None),
            Target::Step(s) => (snap.steps.get(s as usize).cloned(), None),
            Target::Pattern(p) => (None, snap.pattern_ids.get(p as usize).copied().flatten()),
        };
        let mut d = Discovered {
            predicate: t.key[..key_len(&t.key)]
                .iter()
                .map(|&i| clause(snap, &items[i as usize].kind))
                .collect(),
            step,
            pattern,
            support: t.n,
            failures: t.f,
            failure_rate: ps,
            baseline_rate: pc,
            risk_ratio: rr,
            risk_ratio_ci: ci,
            excess_failures: t.f as f64 - t.n as f64 * pc,
            p_value: t.p,
            q_value: *qv,
            top_root_cause_step: None,
            top_reasons: Vec::new(),
            example_trace_ids: Vec::new(),
            equivalents: t.key[..key_len(&t.key)]
                .iter()
                .enumerate()
                .flat_map(|(x, &i)| {
                    items[i as usize]
                        .aliases
                        .iter()
                        .map(move |kind| (x, clause(snap, kind)))
                })
                .collect(),
        };
        evidence(snap, &rows[i], outcomes.targets[t.outcome], cfg, &mut d);
        out.push(d);
    }
    out
}

/// Phase 6: by excess failures, then the lower bound of the risk ratio's interval;
/// cohorts that differ only in a numeric threshold keep the best ranked; at most
/// `max_results`.
fn rank(mut out: Vec<Discovered>, cfg: &MineConfig) -> Vec<Discovered> {
    out.sort_by(|a, b| {
        b.excess_failures
            .total_cmp(&a.excess_failures)
            .then(b.risk_ratio_ci[0].total_cmp(&a.risk_ratio_ci[0]))
    });
    // Cohorts that differ only in a numeric threshold (same key and operator) describe
    // one effect: keep the best ranked.
    let mut shapes: HashSet<String> = HashSet::new();
    out.retain(|d| {
        let shape: Vec<String> = d
            .predicate
            .iter()
            .map(|c| match c.value {
                ClauseValue::Number(_) => format!("{}{}#", c.key, c.op.as_str()),
                ClauseValue::Text(_) => c.to_string(),
            })
            .collect();
        shapes.insert(format!("{}|{:?}|{:?}", shape.join("&"), d.step, d.pattern))
    });
    out.truncate(cfg.max_results);
    out
}

/// A reason pattern found (almost) only inside a cohort is that cohort's own wording of
/// a failure (each service or instrumentation phrases its errors its own way), not a
/// higher rate of it: the same failures elsewhere read differently. Such a per-pattern
/// cohort says nothing the per-step outcome would not, and is not reported.
fn own_wording(target: Target, f_s: u32, total: u32, cfg: &MineConfig) -> bool {
    matches!(target, Target::Pattern(_))
        && f64::from(total - f_s.min(total)) < cfg.min_outside_share * f64::from(total)
}

/// A per-pattern cohort whose step fails no more often there than elsewhere only words
/// its failures differently (an instrumentation's or a service's own evaluator name or
/// message): more of this pattern is less of the step's others. It is not a cohort of
/// failures, and is not reported; a pattern cohort must also raise its step's rate of
/// blame by `min_risk_ratio`.
fn rewords_its_step(t: &Tested, run: &Run) -> bool {
    let (snap, cfg, items, outcomes) = (run.snap, run.cfg, run.items, run.outcomes);
    let (Target::Pattern(_), Some(step)) =
        (outcomes.targets[t.outcome], outcomes.pop_step[t.outcome])
    else {
        return false;
    };
    let pop = outcomes.population(t.outcome);
    let len = key_len(&t.key);
    let (mut n_in, mut f_in, mut n_out, mut f_out) = (0u32, 0u32, 0u32, 0u32);
    for r in 0..snap.failed.len() {
        if pop.is_some_and(|p| !p.get(r)) {
            continue;
        }
        let inside = t.key[..len].iter().all(|&i| items[i as usize].bits.get(r));
        let blamed = snap.failed[r] && snap.root_step[r] == step;
        if inside {
            n_in += 1;
            f_in += u32::from(blamed);
        } else {
            n_out += 1;
            f_out += u32::from(blamed);
        }
    }
    let rate_in = f64::from(f_in) / f64::from(n_in.max(1));
    let rate_out = f64::from(f_out) / f64::from(n_out.max(1));
    rate_in < cfg.min_risk_ratio * rate_out
}

/// Rows set in every bitmap of `maps` (all of one length), without allocating.
fn count_all(maps: &[&Bits]) -> u32 {
    let Some(first) = maps.first() else {
        return 0;
    };
    let mut total = 0;
    for w in 0..first.0.len() {
        let mut x = !0u64;
        for m in maps {
            x &= m.0[w];
        }
        total += x.count_ones();
    }
    total
}

/// The rows of an itemset.
fn rows_of(items: &[Item], key: &Key) -> Bits {
    let len = key_len(key);
    let mut b = items[key[0] as usize].bits.clone();
    for &i in &key[1..len] {
        for (w, o) in b.0.iter_mut().zip(&items[i as usize].bits.0) {
            *w &= o;
        }
    }
    b
}

fn clause(snap: &Snapshot, kind: &ItemKind) -> Clause {
    match *kind {
        ItemKind::Cat { attr, code } => Clause {
            key: snap.attrs[attr].clone(),
            op: Op::Eq,
            value: ClauseValue::Text(
                snap.name(attr, code)
                    .cloned()
                    .unwrap_or_else(|| Arc::from("")),
            ),
        },
        ItemKind::Num {
            index,
            op,
            threshold,
        } => Clause {
            key: Arc::from(NUMERIC[index]),
            op,
            value: ClauseValue::Number(threshold),
        },
    }
}

fn evidence(snap: &Snapshot, rows: &Bits, target: Target, cfg: &MineConfig, d: &mut Discovered) {
    let mut steps: HashMap<u16, u32> = HashMap::new();
    let mut patterns: HashMap<u16, u32> = HashMap::new();
    for r in (0..snap.n).rev() {
        if !rows.get(r) || !snap.failed[r] {
            continue;
        }
        if snap.root_step[r] != NO_CODE {
            *steps.entry(snap.root_step[r]).or_default() += 1;
        }
        if snap.root_pattern[r] != NO_CODE {
            *patterns.entry(snap.root_pattern[r]).or_default() += 1;
        }
        if d.example_trace_ids.len() < cfg.examples && positive(snap, target, r) {
            if let Some(id) = snap.trace_ids[r] {
                d.example_trace_ids.push(id);
            }
        }
    }
    d.top_root_cause_step = steps
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .and_then(|(s, c)| snap.steps.get(s as usize).map(|name| (name.clone(), c)));
    let mut p: Vec<(u16, u32)> = patterns.into_iter().collect();
    p.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    d.top_reasons = p
        .into_iter()
        .filter_map(|(code, c)| Some((snap.pattern_ids.get(code as usize).copied()??, c)))
        .take(cfg.top_reasons)
        .collect();
}

/// Merges categorical items of different attributes that hold exactly the same rows
/// (a release and the prompt version it ships, a service and its namespace): they are
/// one condition under several names, tested once. The kept name is a preferred key
/// (a cohort dimension) if one is among them, else the first attribute seen.
fn merge_equivalent(items: Vec<Item>, snap: &Snapshot, cfg: &MineConfig) -> Vec<Item> {
    let preferred = |it: &Item| match it.kind {
        ItemKind::Cat { attr, .. } => cfg.preferred_keys.contains(&snap.attrs[attr]),
        ItemKind::Num { .. } => false,
    };
    let mut by_rows: HashMap<&[u64], usize> = HashMap::with_capacity(items.len());
    let mut target: Vec<usize> = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let t = *by_rows.entry(it.bits.0.as_slice()).or_insert(i);
        target.push(t);
    }
    // The name each group keeps.
    let mut keeper: HashMap<usize, usize> = HashMap::new();
    for (i, &t) in target.iter().enumerate() {
        let k = keeper.entry(t).or_insert(i);
        if !preferred(&items[*k]) && preferred(&items[i]) {
            *k = i;
        }
    }
    let mut aliases: HashMap<usize, Vec<ItemKind>> = HashMap::new();
    for (i, &t) in target.iter().enumerate() {
        let k = keeper[&t];
        if i != k {
            aliases.entry(k).or_default().push(items[i].kind);
        }
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keeper[&target[*i]] == *i)
        .map(|(i, mut it)| {
            it.aliases = aliases.remove(&i).unwrap_or_default();
            it
        })
        .collect()
}

fn build_items(snap: &Snapshot, cfg: &MineConfig) -> Vec<Item> {
    let n = snap.n;
    let na = snap.attrs.len();
    let max_n = n as u32 - cfg.min_support;
    let mut items: Vec<Item> = Vec::new();
    // Categorical: count per code, then one bitmap per kept code.
    let mut index: Vec<Vec<u32>> = Vec::with_capacity(na);
    for a in 0..na {
        let codes = snap.names[a].len();
        let mut count = vec![0u32; codes];
        for r in 0..n {
            let c = snap.code(r, a) as usize;
            if c < codes {
                count[c] += 1;
            }
        }
        // A value displaced and seen again holds two codes while its old rows remain:
        // its codes are one item (the first code names it).
        let mut by_name: HashMap<&str, (u16, u32, Vec<usize>)> = HashMap::new();
        for (c, &k) in count.iter().enumerate() {
            let c16 = c as u16;
            if c16 == UNSET || c16 == OTHER {
                continue;
            }
            if let Some(name) = snap.name(a, c16) {
                let e = by_name.entry(&**name).or_insert((c16, 0, Vec::new()));
                e.1 += k;
                e.2.push(c);
            }
        }
        let mut values: Vec<(u16, u32, Vec<usize>)> = by_name.into_values().collect();
        values.sort_unstable_by_key(|v| v.0);
        let mut map = vec![u32::MAX; codes];
        for (first, k, cs) in values {
            if k >= cfg.min_support && k <= max_n {
                for c in cs {
                    map[c] = items.len() as u32;
                }
                items.push(Item {
                    kind: ItemKind::Cat {
                        attr: a,
                        code: first,
                    },
                    aliases: Vec::new(),
                    group: a,
                    bits: Bits::zeros(n),
                });
            }
        }
        index.push(map);
    }
    for r in 0..n {
        for (a, map) in index.iter().enumerate() {
            let c = snap.code(r, a) as usize;
            if let Some(&i) = map.get(c) {
                if i != u32::MAX {
                    items[i as usize].bits.set(r);
                }
            }
        }
    }
    let mut items = merge_equivalent(items, snap, cfg);
    // Numeric: thresholds at deciles, rounded.
    let mut values: Vec<f32> = Vec::with_capacity(n);
    for (k, name) in NUMERIC.iter().enumerate() {
        if !cfg.symptoms && SYMPTOM_NUMERIC.contains(name) {
            continue;
        }
        values.clear();
        values.extend((0..n).map(|r| snap.num(r, k)).filter(|v| !v.is_nan()));
        if values.len() < 2 * cfg.min_support as usize {
            continue;
        }
        values.sort_unstable_by(|a, b| a.total_cmp(b));
        let mut thresholds: Vec<f64> = (1..QUANTILES)
            .map(|d| round_threshold(values[values.len() * d / QUANTILES] as f64))
            .collect();
        thresholds.dedup();
        // `<` on a run's sums (fewer input tokens, fewer steps, shorter output or
        // duration) mostly says that a failure ended the run early, before the calls
        // that would have added to them: a consequence rather than a cohort. It is
        // mined only with the symptoms.
        let ops: &[Op] = if k == 0 && cfg.symptoms {
            &[Op::Ge, Op::Lt]
        } else {
            &[Op::Ge]
        };
        for t in thresholds {
            for &op in ops {
                let mut bits = Bits::zeros(n);
                for r in 0..n {
                    let v = snap.num(r, k);
                    let hit = !v.is_nan()
                        && match op {
                            Op::Ge => v as f64 >= t,
                            _ => (v as f64) < t,
                        };
                    if hit {
                        bits.set(r);
                    }
                }
                let count = bits.count();
                if count >= cfg.min_support && count <= max_n {
                    items.push(Item {
                        kind: ItemKind::Num {
                            index: k,
                            op,
                            threshold: t,
                        },
                        aliases: Vec::new(),
                        group: na + k,
                        bits,
                    });
                }
            }
        }
    }
    items.truncate(u16::MAX as usize - 1);
    items
}
