//! The HTTP API on the API address: JSON under `/api/v1`, `/metrics`, `/healthz`,
//! `/readyz`.
//!
//! Invariants: the only module that knows the JSON shapes ([`dto`]); client errors are
//! 4xx with a JSON `{"error": "..."}` naming the problem and are not logged; nothing in
//! a request can make a handler panic.

pub mod alerts;
pub mod breakdown;
pub mod cohorts;
pub mod dto;
pub mod history;
pub mod openapi;
pub mod reasons;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;

use crate::store::Recent;

/// What the handlers read.
pub struct ApiState {
    pub recent: Arc<Recent>,
    pub aggregator: Arc<crate::aggregate::Aggregator>,
    /// The persistent store: trajectory lists, sessions, and trajectories no longer in
    /// `recent`.
    pub store: Arc<dyn crate::store::Store>,
    pub reasons: Arc<reasons::ReasonsState>,
    pub alerts: Arc<crate::alerts::AlertEngine>,
    pub cohorts: Arc<cohorts::CohortsState>,
    pub registry: Arc<Registry>,
    /// False before startup completes and once shutdown begins.
    pub ready: Arc<AtomicBool>,
    /// Why the store is degraded (behind, failing, corrupted); empty when healthy.
    /// `/healthz` and `/readyz` then report `degraded` with the reasons; ingest and
    /// metrics go on.
    pub store_health: Arc<dyn Fn() -> Vec<crate::store::Degraded> + Send + Sync>,
    /// What `GET /api/v1/info` tells a client about this server.
    pub info: ServerInfo,
}

/// `GET /api/v1/info`: where this server takes OTLP and how long it waits for late data,
/// so the page can tell a new user how to send a first trace, and why new runs are
/// pending. Addresses are the bound ones (a port 0 resolved).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ServerInfo {
    pub version: &'static str,
    pub otlp_grpc_address: String,
    pub otlp_http_address: String,
    /// The late-data grace: a run is counted by the breakdown this long after release.
    pub late_grace_seconds: f64,
}

impl ServerInfo {
    pub fn new(
        otlp_grpc: std::net::SocketAddr,
        otlp_http: std::net::SocketAddr,
        late_grace: std::time::Duration,
    ) -> ServerInfo {
        ServerInfo {
            version: env!("CARGO_PKG_VERSION"),
            otlp_grpc_address: otlp_grpc.to_string(),
            otlp_http_address: otlp_http.to_string(),
            late_grace_seconds: late_grace.as_secs_f64(),
        }
    }
}

async fn info(State(state): State<Arc<ApiState>>) -> Json<ServerInfo> {
    Json(state.info.clone())
}

/// A client or server error, rendered as `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
        .route("/api/v1/trajectories", get(history::list_trajectories))
        .route(
            "/api/v1/trajectories/{trace_id}",
            get(history::get_trajectory),
        )
        .route("/api/v1/sessions/{session_id}", get(history::get_session))
        .route("/api/v1/openapi.json", get(openapi::openapi))
        .route("/api/v1/info", get(info))
        .route(
            "/api/v1/breakdown",
            breakdown::breakdown_route(state.aggregator.clone()),
        )
        .route(
            "/api/v1/reasons",
            get(reasons::list_reasons).with_state(state.reasons.clone()),
        )
        .route("/api/v1/alerts", alerts::alerts_route(state.alerts.clone()))
        .route(
            "/api/v1/cohorts",
            cohorts::cohorts_route(state.cohorts.clone()),
        )
        .route(
            "/api/v1/compare",
            cohorts::compare_route(state.cohorts.clone()),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(crate::ui::routes())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

pub(crate) const MAX_LIMIT: usize = 1000;

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

/// The body line of a degraded store: `degraded: store behind (…); store failing (…)`.
fn degraded_line(state: &ApiState) -> Option<String> {
    let reasons = (state.store_health)();
    if reasons.is_empty() {
        return None;
    }
    let parts: Vec<String> = reasons
        .iter()
        .map(|d| format!("store {} ({})", d.reason(), d.detail()))
        .collect();
    Some(format!("degraded: {}\n", parts.join("; ")))
}

/// 200 `ok`, or 200 `degraded: store <reason> (<detail>); …` while the store is behind,
/// failing or corrupted: the service still takes and analyses data (what the store
/// cannot keep up with is refused retryably at the receivers), so a liveness probe must
/// not restart it — a restart would not free a full disk or mend a file.
async fn healthz(State(state): State<Arc<ApiState>>) -> Response {
    match degraded_line(&state) {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(line) => (StatusCode::OK, line).into_response(),
    }
}

/// 503 `not ready` before startup completes and once shutdown begins; otherwise 200
/// `ready`, or 200 `degraded: …` (as `/healthz`) while the store is degraded: the
/// receivers still take what fits and refuse the rest per request, so the instance stays
/// in rotation and its API keeps answering.
async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response();
    }
    match degraded_line(&state) {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(line) => (StatusCode::OK, line).into_response(),
    }
}
