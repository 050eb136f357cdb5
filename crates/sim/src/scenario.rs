//! Fault kinds and the scenario that decides how often each is planted.
//!
//! A fault's probability is a function of the run's event time and cohort only:
//! `base rate × product of matching cohort multipliers × product of active window
//! multipliers`, capped so that all fault probabilities of a run sum to at most 0.95.

/// A planted fault. The names are the finding kinds of the analysis (plus
/// `critic_rejected`), so labels compare directly with findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// Span status ERROR with a message and no exception event.
    Error,
    /// An exception raised in a step (a tool, a retriever, a memory store).
    Exception,
    /// An evaluator flags a step (irrelevant retrieval, ungrounded answer).
    EvalFailed,
    /// The retriever returns no documents and the generator answers anyway.
    EmptyRetrieval,
    /// A tool returns `{"error": ...}` as data, with no error status.
    ToolError,
    /// The planner invents tool arguments that fail validation.
    InvalidToolArgs,
    /// The planner calls a tool that does not exist.
    UnknownTool,
    /// The generator stops at the token limit (finish reason `length`).
    Truncated,
    /// The planner repeats the same tool call until the iteration limit.
    Loop,
    /// A step runs far over its latency SLO.
    SlowStep,
    /// An LLM call is refused with a rate-limit error.
    RateLimited,
    /// The critic rejects an answer while nothing else is wrong.
    CriticRejected,
}

impl FaultKind {
    pub const ALL: [FaultKind; 12] = [
        FaultKind::Error,
        FaultKind::Exception,
        FaultKind::EvalFailed,
        FaultKind::EmptyRetrieval,
        FaultKind::ToolError,
        FaultKind::InvalidToolArgs,
        FaultKind::UnknownTool,
        FaultKind::Truncated,
        FaultKind::Loop,
        FaultKind::SlowStep,
        FaultKind::RateLimited,
        FaultKind::CriticRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Error => "error",
            FaultKind::Exception => "exception",
            FaultKind::EvalFailed => "eval_failed",
            FaultKind::EmptyRetrieval => "empty_retrieval",
            FaultKind::ToolError => "tool_error",
            FaultKind::InvalidToolArgs => "invalid_tool_args",
            FaultKind::UnknownTool => "unknown_tool",
            FaultKind::Truncated => "truncated",
            FaultKind::Loop => "loop",
            FaultKind::SlowStep => "slow_step",
            FaultKind::RateLimited => "rate_limited",
            FaultKind::CriticRejected => "critic_rejected",
        }
    }

    /// The kind by its name, or `None`.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The cohort of one run: the dimensions a failure cohort can be made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Cohort {
    pub route: &'static str,
    pub model: &'static str,
    pub prompt_version: &'static str,
    pub user_segment: &'static str,
    pub service: &'static str,
    pub environment: &'static str,
    /// Input tokens of the whole run.
    pub input_tokens: u64,
}

/// Which cohort dimension a multiplier matches.
#[derive(Debug, Clone, PartialEq)]
pub enum CohortMatch {
    Route(String),
    Model(String),
    PromptVersion(String),
    UserSegment(String),
    Service(String),
    Environment(String),
    /// Input tokens at or above the threshold.
    InputTokensAtLeast(u64),
}

impl CohortMatch {
    pub fn matches(&self, cohort: &Cohort) -> bool {
        match self {
            CohortMatch::Route(v) => cohort.route == v,
            CohortMatch::Model(v) => cohort.model == v,
            CohortMatch::PromptVersion(v) => cohort.prompt_version == v,
            CohortMatch::UserSegment(v) => cohort.user_segment == v,
            CohortMatch::Service(v) => cohort.service == v,
            CohortMatch::Environment(v) => cohort.environment == v,
            CohortMatch::InputTokensAtLeast(n) => cohort.input_tokens >= *n,
        }
    }
}

/// Multiplies the rate of some fault kinds (all kinds when `kinds` is empty) for the
/// runs whose cohort matches every predicate of `when` (a conjunction).
#[derive(Debug, Clone, PartialEq)]
pub struct CohortMultiplier {
    pub when: Vec<CohortMatch>,
    pub kinds: Vec<FaultKind>,
    pub factor: f64,
}

/// A cohort value to force; see [`Correlation`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CohortValue {
    Route(&'static str),
    Model(&'static str),
    PromptVersion(&'static str),
    UserSegment(&'static str),
    Environment(&'static str),
}

impl CohortValue {
    pub fn apply(self, cohort: &mut Cohort) {
        match self {
            CohortValue::Route(v) => cohort.route = v,
            CohortValue::Model(v) => cohort.model = v,
            CohortValue::PromptVersion(v) => cohort.prompt_version = v,
            CohortValue::UserSegment(v) => cohort.user_segment = v,
            CohortValue::Environment(v) => cohort.environment = v,
        }
    }
}

/// Correlates two cohort attributes: a run whose sampled cohort matches `when` gets
/// `then` with `probability` (e.g. most runs of one model come from one user segment:
/// a confounder for cohort discovery). Applied in order, after sampling.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    pub when: CohortMatch,
    pub then: CohortValue,
    pub probability: f64,
}

/// Multiplies the rate of some fault kinds (all when empty) for runs whose event time
/// falls in `[start_unix_nano, end_unix_nano)`: a failure-rate spike.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeWindow {
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub kinds: Vec<FaultKind>,
    pub factor: f64,
}

/// How often each fault is planted, by event time and cohort.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Base probability per run of each fault kind, indexed like [`FaultKind::ALL`].
    pub base_rates: [f64; 12],
    /// Probability per run of a recovered step failure (on a run with no fault).
    pub recovered_rate: f64,
    pub cohort_multipliers: Vec<CohortMultiplier>,
    pub windows: Vec<TimeWindow>,
    /// Correlations between cohort attributes; none by default.
    pub correlations: Vec<Correlation>,
}

impl Scenario {
    /// Every fault kind at the same base rate, no multipliers.
    pub fn uniform(rate_per_kind: f64, recovered_rate: f64) -> Scenario {
        Scenario {
            base_rates: [rate_per_kind; 12],
            recovered_rate,
            cohort_multipliers: Vec::new(),
            windows: Vec::new(),
            correlations: Vec::new(),
        }
    }

    pub fn with_rate(mut self, kind: FaultKind, rate: f64) -> Scenario {
        self.base_rates[kind.index()] = rate;
        self
    }

    pub fn with_cohort_multiplier(mut self, multiplier: CohortMultiplier) -> Scenario {
        self.cohort_multipliers.push(multiplier);
        self
    }

    pub fn with_correlation(mut self, correlation: Correlation) -> Scenario {
        self.correlations.push(correlation);
        self
    }

    pub fn with_window(mut self, window: TimeWindow) -> Scenario {
        self.windows.push(window);
        self
    }

    /// The probability of each fault kind for a run at `t_unix_nano` in `cohort`.
    /// Kinds not in `allowed` get 0. The sum is capped at 0.95.
    pub fn rates(&self, t_unix_nano: u64, cohort: &Cohort, allowed: &[FaultKind]) -> [f64; 12] {
        let mut rates = [0.0; 12];
        for kind in allowed {
            let mut rate = self.base_rates[kind.index()].max(0.0);
            for m in &self.cohort_multipliers {
                let kind_ok = m.kinds.is_empty() || m.kinds.contains(kind);
                if kind_ok && m.when.iter().all(|w| w.matches(cohort)) {
                    rate *= m.factor.max(0.0);
                }
            }
            for w in &self.windows {
                let kind_ok = w.kinds.is_empty() || w.kinds.contains(kind);
                if kind_ok && t_unix_nano >= w.start_unix_nano && t_unix_nano < w.end_unix_nano {
                    rate *= w.factor.max(0.0);
                }
            }
            rates[kind.index()] = rate;
        }
        let total: f64 = rates.iter().sum();
        if total > 0.95 {
            for r in &mut rates {
                *r *= 0.95 / total;
            }
        }
        rates
    }

    /// Picks a fault (or none) given the rates and a uniform draw in `[0, 1)`.
    pub fn pick(rates: &[f64; 12], draw: f64) -> Option<FaultKind> {
        let mut acc = 0.0;
        for kind in FaultKind::ALL {
            acc += rates[kind.index()];
            if draw < acc {
                return Some(kind);
            }
        }
        None
    }
}

impl Default for Scenario {
    /// About 24% failed runs (2% per kind) and 5% recovered runs.
    fn default() -> Scenario {
        Scenario::uniform(0.02, 0.05)
    }
}
