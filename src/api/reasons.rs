//! `GET /api/v1/reasons?window=…&step=…&limit=…`: the recurring failure reasons (reason
//! patterns) ranked by their count in a window of event time.
//!
//! Parameters: `window` a duration (`15m`, `1h`; default `1h`, at most the stats
//! horizon), `step` a step name (optional; only findings in that step), `limit`
//! 1..=1000 (default 20). Anything else, or a bad value, is a 400.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use serde::Serialize;

use super::ApiError;
use crate::reasons::{ReasonStats, ReasonSummary, SharedClusterer};

/// What the handler reads. The pipeline assigns reasons through `clusterer` and records
/// them in `stats`.
pub struct ReasonsState {
    pub clusterer: Arc<SharedClusterer>,
    pub stats: Arc<Mutex<ReasonStats>>,
    /// The stats horizon: the longest window a client may ask for.
    pub horizon: Duration,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ReasonsDto {
    pub window_seconds: u64,
    pub step: Option<String>,
    /// Event time (unix seconds) the window ends at: the latest event recorded.
    pub until_unix: u64,
    pub reasons: Vec<ReasonDto>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ReasonDto {
    pub pattern_id: String,
    /// The key the pattern belongs to (step, finding kind, exception type...); empty
    /// when the pattern was evicted from the clusterer.
    pub key: String,
    pub template: String,
    pub count: u64,
    pub root_causes: u64,
    pub root_cause_share: f64,
    pub steps: Vec<StepCountDto>,
    pub example_trace_ids: Vec<String>,
    pub per_minute: Vec<MinuteCountDto>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct StepCountDto {
    pub step: String,
    pub count: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct MinuteCountDto {
    pub minute_unix: u64,
    pub count: u64,
}

const ALLOWED: [&str; 3] = ["window", "step", "limit"];
const MAX_LIMIT: i64 = 1000;
const DEFAULT_LIMIT: usize = 20;
const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
const MAX_STEP_LEN: usize = 128;

/// Validated query parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ReasonsQuery {
    pub window: Duration,
    pub step: Option<String>,
    pub limit: usize,
}

/// Parses and validates the query string.
pub fn parse_query(
    q: &HashMap<String, String>,
    horizon: Duration,
) -> Result<ReasonsQuery, ApiError> {
    if let Some(k) = q.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        let shown: String = k.chars().take(64).collect();
        return Err(ApiError::BadRequest(format!(
            "unknown query parameter `{shown}`; allowed: {}",
            ALLOWED.join(", ")
        )));
    }
    let window = match q.get("window") {
        None => DEFAULT_WINDOW.min(horizon),
        Some(v) => {
            let d = humantime::parse_duration(v).map_err(|_| {
                ApiError::BadRequest("`window` must be a duration such as 15m or 1h".into())
            })?;
            if d < Duration::from_secs(60) || d > horizon {
                return Err(ApiError::BadRequest(format!(
                    "`window` must be between 1m and {}",
                    humantime::format_duration(horizon)
                )));
            }
            d
        }
    };
    let step = match q.get("step") {
        None => None,
        Some(s) if s.is_empty() || s.len() > MAX_STEP_LEN => {
            return Err(ApiError::BadRequest(format!(
                "`step` must be 1 to {MAX_STEP_LEN} bytes"
            )))
        }
        Some(s) => Some(s.clone()),
    };
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n as usize,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`limit` must be an integer from 1 to {MAX_LIMIT}"
                )))
            }
        },
    };
    Ok(ReasonsQuery {
        window,
        step,
        limit,
    })
}

/// Builds the response from the shared state (also used by tests and the CLI).
pub fn reasons_dto(state: &ReasonsState, query: &ReasonsQuery) -> ReasonsDto {
    let (top, until) = {
        let stats = state
            .stats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let top = stats.top(query.window, query.step.as_deref(), query.limit, |id| {
            state.clusterer.resolve(id)
        });
        (top, stats.watermark_secs())
    };
    ReasonsDto {
        window_seconds: query.window.as_secs(),
        step: query.step.clone(),
        until_unix: until,
        reasons: top.into_iter().map(|s| reason_dto(state, s)).collect(),
    }
}

fn reason_dto(state: &ReasonsState, s: ReasonSummary) -> ReasonDto {
    let pattern = state.clusterer.pattern(s.pattern);
    ReasonDto {
        pattern_id: s.pattern.to_string(),
        key: pattern
            .as_ref()
            .map(|p| p.key.to_string())
            .unwrap_or_default(),
        template: pattern.map(|p| p.template).unwrap_or_default(),
        count: s.count,
        root_causes: s.root_causes,
        root_cause_share: s.root_cause_share,
        steps: s
            .steps
            .into_iter()
            .map(|x| StepCountDto {
                step: x.step,
                count: x.count,
            })
            .collect(),
        example_trace_ids: s.examples.iter().map(|t| t.to_hex()).collect(),
        per_minute: s
            .per_minute
            .into_iter()
            .map(|(minute_unix, count)| MinuteCountDto { minute_unix, count })
            .collect(),
    }
}

/// `GET /api/v1/reasons`.
pub async fn list_reasons(
    State(state): State<Arc<ReasonsState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<ReasonsDto>, ApiError> {
    let query = parse_query(&q, state.horizon)?;
    Ok(Json(reasons_dto(&state, &query)))
}
