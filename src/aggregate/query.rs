//! The breakdown query: which window of event time, grouped by which dimensions, and
//! the result rows. Parsing is strict: an unknown parameter, an unknown dimension, a bad
//! duration or a window beyond the horizon is a [`QueryError`].

use std::sync::Arc;
use std::time::Duration;

use crate::aggregate::config::AggregateConfig;

pub(crate) const NANOS_PER_MINUTE: u64 = 60_000_000_000;

/// The window used when the query names none.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60 * 60);

/// A window of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `minutes` whole minutes, ending with the newest event minute seen.
    Last { minutes: u64 },
    /// Minutes overlapping `[from, to)`, in unix nanoseconds.
    Range { from: u64, to: u64 },
}

/// A parsed breakdown query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakdownQuery {
    pub window: Window,
    /// Indices into the configured dimensions, in the order asked, without repeats.
    pub by: Vec<usize>,
}

/// Why a query was refused. The messages are shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("unknown query parameter `{0}`; allowed: window, from, to, by")]
    UnknownParameter(String),
    #[error("`{name}` is given more than once")]
    Repeated { name: &'static str },
    #[error("unknown dimension `{name}`; known: {known}")]
    UnknownDimension { name: String, known: String },
    #[error("dimension `{0}` is named twice in `by`")]
    DuplicateDimension(String),
    #[error("`window` is not a duration such as 15m or 2h: `{0}`")]
    BadDuration(String),
    #[error("`{name}` must be unix time in nanoseconds: `{value}`")]
    BadTime { name: &'static str, value: String },
    #[error("give either `window` or both `from` and `to`")]
    WindowConflict,
    #[error("`from` must be before `to`")]
    EmptyRange,
    #[error("the window reaches beyond the horizon of {horizon_minutes} minutes")]
    BeyondHorizon { horizon_minutes: u64 },
}

/// Echo at most this much of a client's text in an error.
const MAX_ECHO: usize = 64;

fn echo(s: &str) -> String {
    s.chars().take(MAX_ECHO).collect()
}

impl BreakdownQuery {
    /// Parses `window`, `from`, `to` and `by` (comma-separated and/or repeated) from
    /// decoded query pairs.
    pub fn parse(
        params: &[(String, String)],
        config: &AggregateConfig,
    ) -> Result<BreakdownQuery, QueryError> {
        let mut window: Option<&str> = None;
        let mut from: Option<&str> = None;
        let mut to: Option<&str> = None;
        let mut by: Vec<usize> = Vec::new();
        for (key, value) in params {
            let slot = match key.as_str() {
                "window" => &mut window,
                "from" => &mut from,
                "to" => &mut to,
                "by" => {
                    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        let d = config.dimension_index(name).ok_or_else(|| {
                            QueryError::UnknownDimension {
                                name: echo(name),
                                known: config
                                    .dimensions
                                    .iter()
                                    .map(|d| &*d.name)
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            }
                        })?;
                        if by.contains(&d) {
                            return Err(QueryError::DuplicateDimension(echo(name)));
                        }
                        by.push(d);
                    }
                    continue;
                }
                other => return Err(QueryError::UnknownParameter(echo(other))),
            };
            if slot.is_some() {
                let name = match key.as_str() {
                    "window" => "window",
                    "from" => "from",
                    _ => "to",
                };
                return Err(QueryError::Repeated { name });
            }
            *slot = Some(value.as_str());
        }
        let horizon = config.horizon_minutes;
        let window = match (window, from, to) {
            (Some(_), None, None) | (None, None, None) => {
                let d = match window {
                    Some(text) => humantime::parse_duration(text.trim())
                        .map_err(|_| QueryError::BadDuration(echo(text)))?,
                    None => DEFAULT_WINDOW.min(Duration::from_secs(horizon * 60)),
                };
                if d.is_zero() {
                    return Err(QueryError::BadDuration(echo(window.unwrap_or(""))));
                }
                let minutes = d.as_nanos().div_ceil(NANOS_PER_MINUTE as u128);
                if minutes > horizon as u128 {
                    return Err(QueryError::BeyondHorizon {
                        horizon_minutes: horizon,
                    });
                }
                Window::Last {
                    minutes: minutes as u64,
                }
            }
            (None, Some(from), Some(to)) => {
                let parse = |name: &'static str, value: &str| {
                    value
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| QueryError::BadTime {
                            name,
                            value: echo(value),
                        })
                };
                let from = parse("from", from)?;
                let to = parse("to", to)?;
                if from >= to {
                    return Err(QueryError::EmptyRange);
                }
                Window::Range { from, to }
            }
            _ => return Err(QueryError::WindowConflict),
        };
        Ok(BreakdownQuery { window, by })
    }
}

/// Trajectory counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    pub success: u64,
    pub recovered: u64,
    pub failed: u64,
}

impl OutcomeCounts {
    pub fn total(&self) -> u64 {
        self.success + self.recovered + self.failed
    }

    /// Failed trajectories over all; 0 when there are none.
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failed, self.total())
    }
}

/// The value of each `by` dimension for one row: `None` when the attribute is absent,
/// `Some("other")` for values folded by the cardinality budget.
pub type CohortValues = Vec<Option<Arc<str>>>;

#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoryRow {
    pub cohort: CohortValues,
    pub counts: OutcomeCounts,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub step: Arc<str>,
    pub cohort: CohortValues,
    pub runs: u64,
    /// Runs with at least one original (not propagated) finding.
    pub failures: u64,
    /// Failed trajectories blamed on a run of this step.
    pub root_causes: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Original findings by kind, sorted by kind.
    pub findings_by_kind: Vec<(Arc<str>, u64)>,
    /// Root causes by kind, sorted by kind.
    pub root_causes_by_kind: Vec<(Arc<str>, u64)>,
}

impl StepRow {
    /// Failed runs over runs.
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.runs)
    }

    /// Runs blamed as the root cause over runs.
    pub fn root_cause_rate(&self) -> f64 {
        ratio(self.root_causes, self.runs)
    }
}

/// The answer to a [`BreakdownQuery`].
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    /// The window actually covered, aligned to minutes: `[from, to)`.
    pub from_unix_nano: u64,
    pub to_unix_nano: u64,
    /// The `by` dimension names, in the order of every row's `cohort`.
    pub by: Vec<Arc<str>>,
    pub totals: OutcomeCounts,
    /// Trajectories per cohort of the `by` dimensions (the run's values), sorted by
    /// cohort.
    pub trajectories: Vec<TrajectoryRow>,
    /// One row per step and cohort of the `by` dimensions (the step's values), sorted
    /// by step (built-in kinds in pipeline order, then custom names) and cohort.
    pub steps: Vec<StepRow>,
}

pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
