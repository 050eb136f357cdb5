//! The `[aggregate]` table of the config file, and its validated form.
//!
//! ```toml
//! [aggregate]
//! horizon = "24h"     # how far back (event time) minute buckets are kept
//! top_k = 20          # label values kept per dimension on /metrics; the rest is `other`
//! max_series = 2000   # series per metric family (and per minute bucket); beyond: all-`other`
//!
//! [[aggregate.dimensions]]   # when given, replaces the default dimensions
//! name = "model"
//! keys = ["gen_ai.request.model", "llm.model_name"]
//! scope = "step"             # optional: "run" (default) or "step"
//! ```

use crate::conventions;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// The most dimensions a config may name. Each is a label on four metric families, and
/// the series key is a fixed-size array.
pub const MAX_DIMENSIONS: usize = 8;
/// Attribute keys one dimension may list (they are tracked as bits of a `u64`).
pub const MAX_KEYS_PER_DIMENSION: usize = 64;

/// How far ahead of the wall clock an event time may be before it is clamped.
pub const DEFAULT_FUTURE_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Labels the metric families use themselves; a dimension may not take these names.
const RESERVED_LABELS: [&str; 5] = ["step", "kind", "outcome", "le", "quantile"];

/// The `[aggregate]` table as written. Every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAggregateConfig {
    /// How far back from the newest event time minute buckets are kept, as a duration
    /// (`"24h"`, `"90m"`). Whole minutes, between 1 minute and 31 days. Default `24h`.
    pub horizon: Option<String>,
    /// Values kept per dimension on `/metrics` (a heavy-hitters sketch picks them); the
    /// rest is folded into `other`. The breakdown API keeps 8 times as many. Default 20.
    pub top_k: Option<usize>,
    /// Series per metric family; label sets beyond it fold into one series whose
    /// labels are all `other`. Also the cap on series per minute bucket. Default 2000.
    pub max_series: Option<usize>,
    /// The cohort dimensions. When present they replace the defaults (service, route,
    /// model, prompt_version, user_segment, environment).
    pub dimensions: Option<Vec<RawDimension>>,
}

/// One `[[aggregate.dimensions]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDimension {
    /// The label name on `/metrics` and the `by` value of the breakdown API.
    pub name: String,
    /// Attribute keys to read the value from, in order; the first present wins. Span
    /// attributes are looked up before resource attributes of the same key.
    pub keys: Vec<String>,
    /// `"run"` (default): read from the root span first (then the step's spans, then the
    /// most frequent value in the run). `"step"`: read from the step's own spans first
    /// (its LLM call), then the most frequent value in the run.
    pub scope: Option<String>,
}

/// Where a dimension's value is read first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A property of the whole run (service, route, user segment): root span first.
    Run,
    /// A property of each step (model, prompt version): the step's own spans first.
    Step,
}

/// A validated dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimension {
    pub name: Arc<str>,
    pub keys: Vec<Arc<str>>,
    pub scope: Scope,
}

/// Validated aggregation settings.
#[derive(Debug, Clone)]
pub struct AggregateConfig {
    /// Whole minutes, at least 1.
    pub horizon_minutes: u64,
    pub top_k: usize,
    pub max_series: usize,
    pub dimensions: Vec<Dimension>,
    /// How far past the wall clock an event time may go before it is clamped.
    pub future_tolerance: Duration,
}

/// A problem in the `[aggregate]` table; `key` names the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("aggregate.{key}: {message}")]
pub struct AggregateConfigError {
    pub key: String,
    pub message: String,
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> AggregateConfigError {
    AggregateConfigError {
        key: key.into(),
        message: message.into(),
    }
}

impl AggregateConfig {
    /// Validates the raw table; absent keys take their defaults.
    pub fn from_raw(raw: &RawAggregateConfig) -> Result<AggregateConfig, AggregateConfigError> {
        let horizon_minutes = match &raw.horizon {
            None => 24 * 60,
            Some(text) => {
                let d = humantime::parse_duration(text.trim())
                    .map_err(|e| invalid("horizon", format!("not a duration ({e})")))?;
                if d.as_secs() % 60 != 0 || d.subsec_nanos() != 0 {
                    return Err(invalid("horizon", "must be a whole number of minutes"));
                }
                let minutes = d.as_secs() / 60;
                if !(1..=31 * 24 * 60).contains(&minutes) {
                    return Err(invalid("horizon", "must be between 1m and 31d"));
                }
                minutes
            }
        };
        let top_k = raw.top_k.unwrap_or(20);
        if !(1..=1000).contains(&top_k) {
            return Err(invalid("top_k", "must be between 1 and 1000"));
        }
        let max_series = raw.max_series.unwrap_or(2000);
        if !(16..=1_000_000).contains(&max_series) {
            return Err(invalid("max_series", "must be between 16 and 1000000"));
        }
        let dimensions = match &raw.dimensions {
            None => default_dimensions(),
            Some(list) => validate_dimensions(list)?,
        };
        Ok(AggregateConfig {
            horizon_minutes,
            top_k,
            max_series,
            dimensions,
            future_tolerance: DEFAULT_FUTURE_TOLERANCE,
        })
    }

    /// The defaults, as if the table were empty.
    pub fn default_config() -> AggregateConfig {
        AggregateConfig {
            horizon_minutes: 24 * 60,
            top_k: 20,
            max_series: 2000,
            dimensions: default_dimensions(),
            future_tolerance: DEFAULT_FUTURE_TOLERANCE,
        }
    }

    /// Values per dimension kept in the minute buckets for the breakdown API.
    pub fn breakdown_top_k(&self) -> usize {
        self.top_k.saturating_mul(8).min(u16::MAX as usize / 4)
    }

    pub fn dimension_index(&self, name: &str) -> Option<usize> {
        self.dimensions.iter().position(|d| &*d.name == name)
    }
}

fn dimension(name: &str, keys: &[&str], scope: Scope) -> Dimension {
    Dimension {
        name: name.into(),
        keys: keys.iter().map(|k| Arc::from(*k)).collect(),
        scope,
    }
}

/// service, route, model, prompt_version, user_segment, environment.
pub fn default_dimensions() -> Vec<Dimension> {
    vec![
        dimension("service", &[conventions::SERVICE_NAME], Scope::Run),
        dimension(
            "route",
            &[
                conventions::HTTP_ROUTE,
                "url.template",
                "url.path",
                "http.target",
            ],
            Scope::Run,
        ),
        dimension(
            "model",
            &[
                conventions::GEN_AI_REQUEST_MODEL,
                conventions::LLM_MODEL_NAME,
                "llm.request.model_name",
                "llm.request.model",
                conventions::GEN_AI_RESPONSE_MODEL,
                "llm.response.model_name",
            ],
            Scope::Step,
        ),
        dimension(
            "prompt_version",
            &[
                "llm.prompt_template.version",
                "gen_ai.prompt.version",
                "gen_ai.prompt.template.version",
                "traceloop.prompt.version",
                conventions::PROMPT_VERSION,
            ],
            Scope::Step,
        ),
        dimension(
            "user_segment",
            &[
                "user.segment",
                "enduser.segment",
                "app.user.segment",
                "traceloop.association.properties.user_segment",
            ],
            Scope::Run,
        ),
        dimension(
            "environment",
            &["deployment.environment.name", "deployment.environment"],
            Scope::Run,
        ),
    ]
}

fn validate_dimensions(list: &[RawDimension]) -> Result<Vec<Dimension>, AggregateConfigError> {
    if list.len() > MAX_DIMENSIONS {
        return Err(invalid(
            "dimensions",
            format!("at most {MAX_DIMENSIONS} dimensions"),
        ));
    }
    let mut out: Vec<Dimension> = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let key = |field: &str| format!("dimensions[{i}].{field}");
        if !is_label_name(&raw.name) {
            return Err(invalid(
                key("name"),
                "must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __",
            ));
        }
        if RESERVED_LABELS.contains(&raw.name.as_str()) {
            return Err(invalid(
                key("name"),
                format!("`{}` is a label of the metrics themselves", raw.name),
            ));
        }
        if out.iter().any(|d| *d.name == *raw.name) {
            return Err(invalid(
                key("name"),
                format!("`{}` is named twice", raw.name),
            ));
        }
        if raw.keys.is_empty() || raw.keys.iter().any(|k| k.trim().is_empty()) {
            return Err(invalid(key("keys"), "needs at least one non-empty key"));
        }
        if raw.keys.len() > MAX_KEYS_PER_DIMENSION {
            return Err(invalid(
                key("keys"),
                format!("at most {MAX_KEYS_PER_DIMENSION} keys"),
            ));
        }
        let scope = match raw.scope.as_deref() {
            None | Some("run") => Scope::Run,
            Some("step") => Scope::Step,
            Some(other) => {
                return Err(invalid(
                    key("scope"),
                    format!("`{other}` is not `run` or `step`"),
                ))
            }
        };
        out.push(Dimension {
            name: raw.name.as_str().into(),
            keys: raw.keys.iter().map(|k| Arc::from(k.trim())).collect(),
            scope,
        });
    }
    Ok(out)
}

/// A Prometheus label name that is not reserved (`__` prefix).
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with("__")
}
