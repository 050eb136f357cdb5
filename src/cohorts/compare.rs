//! The "did the fix work" check: two filtered sides of the window, per-step failure
//! and root-cause rates side by side, with the difference (b − a), its 95% Wald
//! interval and a two-sided two-proportion z-test p-value.
//!
//! Filter syntax (one per side): clauses joined by `,`, each `key=value`,
//! `key>=number` or `key<number`. Keys are cohort dimension names, attribute keys, or
//! the numeric names `input_tokens`, `output_tokens`, `steps`, `tool_calls`,
//! `duration_ms`. An empty filter matches every row. Time bounds (`from`/`to`, unix
//! nanoseconds of the trajectory's end, `[from, to)`) are given apart.

use std::sync::Arc;

use super::mine::{ClauseValue, Op, Snapshot};
use super::stats::{difference_ci, z_test_two_sided};
use super::window::NUMERIC;

/// Most clauses in one filter.
pub const MAX_CLAUSES: usize = 8;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub clauses: Vec<(Arc<str>, Op, ClauseValue)>,
    pub from_unix_nano: Option<u64>,
    pub to_unix_nano: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("clause `{0}` is not key=value, key>=number or key<number")]
    Syntax(String),
    #[error("`{0}` is compared with >= or < but is not one of {numeric}", numeric = NUMERIC.join(", "))]
    NotNumeric(String),
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error("at most {MAX_CLAUSES} clauses")]
    TooMany,
}

impl Filter {
    /// Parses `dim=value[,dim=value]`.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut clauses = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if clauses.len() == MAX_CLAUSES {
                return Err(FilterError::TooMany);
            }
            let shown = || part.chars().take(64).collect::<String>();
            let (key, op, value) = if let Some((k, v)) = part.split_once(">=") {
                (k, Op::Ge, v)
            } else if let Some((k, v)) = part.split_once('<') {
                (k, Op::Lt, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, Op::Eq, v)
            } else {
                return Err(FilterError::Syntax(shown()));
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() {
                return Err(FilterError::Syntax(shown()));
            }
            let value = match op {
                Op::Eq => ClauseValue::Text(Arc::from(value)),
                _ => {
                    if !NUMERIC.contains(&key) {
                        return Err(FilterError::NotNumeric(key.chars().take(64).collect()));
                    }
                    match value.parse::<f64>() {
                        Ok(x) if x.is_finite() => ClauseValue::Number(x),
                        _ => return Err(FilterError::NotANumber(value.chars().take(64).collect())),
                    }
                }
            };
            clauses.push((Arc::from(key), op, value));
        }
        Ok(Filter {
            clauses,
            from_unix_nano: None,
            to_unix_nano: None,
        })
    }

    /// The rows of `snap` this filter matches.
    pub fn matches(&self, snap: &Snapshot) -> Vec<bool> {
        // Resolve each clause to (attribute, code) or (numeric index) once.
        enum Resolved {
            /// The attribute and every code of the value (a displaced value seen again
            /// may hold two).
            Cat(usize, Vec<u16>),
            Num(usize, Op, f64),
            /// An equality on a numeric name.
            NumEq(usize, f64),
            Never,
        }
        let resolved: Vec<Resolved> = self
            .clauses
            .iter()
            .map(|(key, op, value)| match (op, value) {
                (Op::Eq, ClauseValue::Text(v)) => {
                    if let Some(a) = snap.attrs.iter().position(|k| k == key) {
                        let codes = snap.names[a]
                            .iter()
                            .enumerate()
                            .filter(|(c, n)| *c > 0 && n.as_deref() == Some(&**v))
                            .map(|(c, _)| c as u16)
                            .collect();
                        Resolved::Cat(a, codes)
                    } else if let Some(i) = NUMERIC.iter().position(|n| **n == **key) {
                        match v.parse::<f64>() {
                            Ok(x) => Resolved::NumEq(i, x),
                            Err(_) => Resolved::Never,
                        }
                    } else {
                        Resolved::Never
                    }
                }
                (op, ClauseValue::Number(x)) => match NUMERIC.iter().position(|n| **n == **key) {
                    Some(i) => Resolved::Num(i, *op, *x),
                    None => Resolved::Never,
                },
                _ => Resolved::Never,
            })
            .collect();
        (0..snap.n)
            .map(|r| {
                let t = snap.end_unix_nano[r];
                if self.from_unix_nano.is_some_and(|f| t < f)
                    || self.to_unix_nano.is_some_and(|to| t >= to)
                {
                    return false;
                }
                resolved.iter().all(|c| match c {
                    Resolved::Cat(a, codes) => codes.contains(&snap.code(r, *a)),
                    Resolved::Never => false,
                    Resolved::Num(i, op, x) => {
                        let v = snap.num(r, *i) as f64;
                        !v.is_nan()
                            && match op {
                                Op::Ge => v >= *x,
                                _ => v < *x,
                            }
                    }
                    Resolved::NumEq(i, x) => (snap.num(r, *i) as f64 - x).abs() < 1e-9,
                })
            })
            .collect()
    }
}

/// Counts of one side.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SideCounts {
    pub trajectories: u64,
    pub failed: u64,
}

/// One step's counts on one side.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepCounts {
    /// Runs of this side that have the step.
    pub runs: u64,
    /// Runs with an original finding in the step.
    pub failures: u64,
    /// Failed runs blamed on the step.
    pub root_causes: u64,
}

/// A rate difference `b − a` with its evidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    pub a_rate: f64,
    pub b_rate: f64,
    pub difference: f64,
    pub ci: [f64; 2],
    pub p_value: f64,
}

impl Difference {
    pub fn of(fa: u64, na: u64, fb: u64, nb: u64) -> Difference {
        let rate = |f: u64, n: u64| if n == 0 { 0.0 } else { f as f64 / n as f64 };
        let (d, ci) = difference_ci(fa, na, fb, nb);
        Difference {
            a_rate: rate(fa, na),
            b_rate: rate(fb, nb),
            difference: d,
            ci,
            p_value: z_test_two_sided(fa, na, fb, nb),
        }
    }
}

/// One step side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct StepComparison {
    pub step: Arc<str>,
    pub a: StepCounts,
    pub b: StepCounts,
    /// Failure rate: failures / runs with the step.
    pub failure_rate: Difference,
    /// Root-cause rate: failed runs blamed on the step / all runs of the side.
    pub root_cause_rate: Difference,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub a: SideCounts,
    pub b: SideCounts,
    pub overall: Difference,
    pub steps: Vec<StepComparison>,
}

/// Compares the rows matched by `a` with those matched by `b`.
pub fn compare(snap: &Snapshot, a: &Filter, b: &Filter) -> Comparison {
    let ma = a.matches(snap);
    let mb = b.matches(snap);
    let nsteps = snap.steps.len().min(16);
    let mut sides = [SideCounts::default(); 2];
    let mut steps = vec![[StepCounts::default(); 2]; nsteps];
    for r in 0..snap.n {
        for (s, m) in [&ma, &mb].into_iter().enumerate() {
            if !m[r] {
                continue;
            }
            sides[s].trajectories += 1;
            sides[s].failed += u64::from(snap.failed[r]);
            for (bit, counts) in steps.iter_mut().enumerate() {
                let mask = 1u16 << bit;
                if snap.step_mask[r] & mask != 0 {
                    counts[s].runs += 1;
                }
                if snap.fail_mask[r] & mask != 0 {
                    counts[s].failures += 1;
                }
                if snap.failed[r] && snap.root_step[r] == bit as u16 {
                    counts[s].root_causes += 1;
                }
            }
        }
    }
    let [sa, sb] = sides;
    let steps = steps
        .into_iter()
        .enumerate()
        .filter(|(_, c)| c[0].runs + c[1].runs + c[0].root_causes + c[1].root_causes > 0)
        .map(|(bit, [ca, cb])| StepComparison {
            step: snap.steps[bit].clone(),
            a: ca,
            b: cb,
            failure_rate: Difference::of(ca.failures, ca.runs, cb.failures, cb.runs),
            root_cause_rate: Difference::of(
                ca.root_causes,
                sa.trajectories,
                cb.root_causes,
                sb.trajectories,
            ),
        })
        .collect();
    Comparison {
        a: sa,
        b: sb,
        overall: Difference::of(sa.failed, sa.trajectories, sb.failed, sb.trajectories),
        steps,
    }
}
