//! The HTTP API on the API address: JSON under `/api/v1`, `/metrics`, `/healthz`,
//! `/readyz`.
//!
//! Invariants: the only module that knows the JSON shapes ([`dto`]); client errors are
//! 4xx with a JSON `{"error": "..."}` naming the problem and are not logged; nothing in
//! a request can make a handler panic.

pub mod breakdown;
pub mod cohorts;
pub mod dto;
pub mod reasons;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;

use crate::model::{Analysis, Outcome, TraceId};
use crate::store::Recent;

/// What the handlers read.
pub struct ApiState {
    pub recent: Arc<Recent>,
    pub aggregator: Arc<crate::aggregate::Aggregator>,
    pub reasons: Arc<reasons::ReasonsState>,
    pub cohorts: Arc<cohorts::CohortsState>,
    pub registry: Arc<Registry>,
    /// False before startup completes and once shutdown begins.
    pub ready: Arc<AtomicBool>,
}

/// A client or server error, rendered as `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

pub fn app(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/trajectories", get(list_trajectories))
        .route("/api/v1/trajectories/{trace_id}", get(get_trajectory))
        .route(
            "/api/v1/breakdown",
            breakdown::breakdown_route(state.aggregator.clone()),
        )
        .route(
            "/api/v1/reasons",
            get(reasons::list_reasons).with_state(state.reasons.clone()),
        )
        .route(
            "/api/v1/cohorts",
            cohorts::cohorts_route(state.cohorts.clone()),
        )
        .route(
            "/api/v1/compare",
            cohorts::compare_route(state.cohorts.clone()),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(crate::ui::routes())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

const MAX_LIMIT: usize = 1000;

/// Parses a query string strictly: only `allowed` keys, each once.
fn strict_query(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    if let Some(k) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
        let shown: String = k.chars().take(64).collect();
        return Err(ApiError::BadRequest(format!(
            "unknown query parameter `{shown}`; allowed: {}",
            allowed.join(", ")
        )));
    }
    Ok(())
}

fn bool_param(q: &HashMap<String, String>, key: &str) -> Result<bool, ApiError> {
    match q.get(key).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(_) => Err(ApiError::BadRequest(format!(
            "`{key}` must be true or false"
        ))),
    }
}

/// Filters of the trajectory list, all optional; every given one must hold.
struct ListFilter {
    outcome: Option<Outcome>,
    step: Option<String>,
    finding_kind: Option<String>,
    root_cause_step: Option<String>,
    text: Option<String>,
    service: Option<String>,
    session_id: Option<String>,
}

impl ListFilter {
    fn parse(q: &HashMap<String, String>) -> Result<ListFilter, ApiError> {
        let get = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
        let outcome = match q.get("outcome").map(String::as_str) {
            None | Some("") => None,
            Some("failed") => Some(Outcome::Failed),
            Some("recovered") => Some(Outcome::Recovered),
            Some("success") => Some(Outcome::Success),
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "`outcome` must be failed, recovered or success".into(),
                ))
            }
        };
        Ok(ListFilter {
            outcome,
            step: get("step"),
            finding_kind: get("finding_kind"),
            root_cause_step: get("root_cause_step"),
            text: get("q").map(|t| t.to_lowercase()),
            service: get("service"),
            session_id: get("session_id"),
        })
    }

    fn matches(&self, a: &Analysis) -> bool {
        let t = &a.trajectory;
        self.outcome.is_none_or(|o| a.outcome == o)
            && self
                .step
                .as_deref()
                .is_none_or(|s| a.steps.iter().any(|st| st.kind.as_str() == s))
            && self
                .finding_kind
                .as_deref()
                .is_none_or(|k| a.findings.iter().any(|f| f.kind.as_str() == k))
            && self.root_cause_step.as_deref().is_none_or(|s| {
                a.root_cause
                    .as_ref()
                    .is_some_and(|rc| rc.step.as_str() == s)
            })
            && self.text.as_deref().is_none_or(|needle| {
                a.findings
                    .iter()
                    .any(|f| f.reason.to_lowercase().contains(needle))
            })
            && self
                .service
                .as_deref()
                .is_none_or(|s| t.service() == Some(s))
            && self
                .session_id
                .as_deref()
                .is_none_or(|s| t.session_id() == Some(s))
    }
}

async fn list_trajectories(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    strict_query(
        &q,
        &[
            "limit",
            "cursor",
            "outcome",
            "step",
            "finding_kind",
            "root_cause_step",
            "q",
            "service",
            "session_id",
        ],
    )?;
    let limit = match q.get("limit") {
        None => 50,
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| ApiError::BadRequest("`limit` must be an integer".into()))?
            .clamp(1, MAX_LIMIT as i64) as usize,
    };
    // The cursor is the number of matching trajectories already returned.
    let skip = match q.get("cursor") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::BadRequest("`cursor` is not a cursor of this API".into()))?,
    };
    let filter = ListFilter::parse(&q)?;
    let all = state.recent.list(usize::MAX);
    let mut matching = all.iter().filter(|a| filter.matches(a)).skip(skip);
    let page: Vec<dto::TrajectorySummaryDto> = matching
        .by_ref()
        .take(limit)
        .map(|a| dto::TrajectorySummaryDto::from_analysis(a))
        .collect();
    let next_cursor = matching.next().map(|_| (skip + page.len()).to_string());
    Ok(Json(
        serde_json::json!({ "trajectories": page, "next_cursor": next_cursor }),
    ))
}

async fn get_trajectory(
    State(state): State<Arc<ApiState>>,
    Path(trace_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<dto::TrajectoryDto>, ApiError> {
    strict_query(&q, &["attributes"])?;
    let with_attributes = bool_param(&q, "attributes")?;
    let id = TraceId::from_hex(&trace_id).map_err(|e| {
        ApiError::BadRequest(format!(
            "`trace_id` must be 32 hex digits, not all zero ({e})"
        ))
    })?;
    let a = state
        .recent
        .get(id)
        .ok_or_else(|| ApiError::NotFound(format!("no trajectory {}", id.to_hex())))?;
    Ok(Json(dto::TrajectoryDto::from_analysis(&a, with_attributes)))
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let body = crate::metrics::render(&state.registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}
