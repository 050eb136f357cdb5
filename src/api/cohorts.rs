//! `GET /api/v1/cohorts` (discovered failure cohorts) and `GET /api/v1/compare` (two
//! filters side by side): handlers, parameters and JSON shapes.
//!
//! `/api/v1/cohorts?window=…&limit=…&refresh=…`
//! - `window`: `ring` (default: the whole sliding window of recent trajectories, mined
//!   periodically in the background) or a duration from `1m` to `31d` (the trajectories
//!   whose end is within that long of the newest one, mined on demand).
//! - `limit`: 1 to 100 cohorts (default 20). `refresh`: `true` runs a mining pass now.
//! - A cohort is listed once it was significant in two consecutive runs of the same
//!   window; `pending` counts those seen in one run so far.
//!
//! `/api/v1/compare?a=…&b=…[&a_from=&a_to=&b_from=&b_to=][&window=…]`
//! - `a`, `b`: filters `key=value[,key=value]`, also `key>=number` / `key<number` for
//!   `input_tokens`, `output_tokens`, `steps`, `tool_calls`, `duration_ms`; keys are
//!   cohort dimension names or attribute keys. Empty matches every trajectory.
//! - `a_from`, `a_to`, `b_from`, `b_to`: unix nanoseconds bounding each side's
//!   trajectory end, `[from, to)`.
//! - Differences are `b − a`, with a 95% Wald interval and a two-sided two-proportion
//!   z-test p-value.
//!
//! Anything else, or a bad value, is a 400 `{"error": "..."}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::{get, MethodRouter};
use axum::Json;
use serde::Serialize;

use super::ApiError;
use crate::cohorts::compare::{Difference, StepCounts};
use crate::cohorts::{
    compare, Clause, ClauseValue, CohortIndex, CohortResults, Discovered, Filter, WindowSpec,
};
use crate::reasons::{PatternId, SharedClusterer};

/// What the handlers read.
pub struct CohortsState {
    pub index: Arc<CohortIndex>,
    /// Resolves reason pattern ids to templates (absent: ids only).
    pub clusterer: Option<Arc<SharedClusterer>>,
}

const COHORTS_ALLOWED: [&str; 3] = ["window", "limit", "refresh"];
const COMPARE_ALLOWED: [&str; 7] = ["a", "b", "a_from", "a_to", "b_from", "b_to", "window"];
const MAX_LIMIT: usize = 100;
const DEFAULT_LIMIT: usize = 20;
const MAX_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);
const MAX_FILTER_BYTES: usize = 1024;

#[derive(Debug, Serialize, PartialEq)]
pub struct CohortsDto {
    /// `ring` or the duration asked for.
    pub window: String,
    pub records: usize,
    pub failures: usize,
    /// Mining runs of this window so far.
    pub runs: u64,
    /// Significant in the latest run, not yet confirmed.
    pub pending: usize,
    pub until_unix_nano: u64,
    pub tests: usize,
    pub mining_ms: f64,
    pub cohorts: Vec<CohortDto>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ClauseDto {
    pub key: String,
    pub op: &'static str,
    pub value: serde_json::Value,
    /// Other attributes holding on exactly the same rows (`service.version=1.6.1` for
    /// `prompt_version=v7`): one condition, several names.
    pub equivalent: Vec<ClauseDto>,
}

fn clause_dto(cl: &Clause) -> ClauseDto {
    ClauseDto {
        key: cl.key.to_string(),
        op: cl.op.as_str(),
        value: match &cl.value {
            ClauseValue::Text(t) => serde_json::Value::from(t.to_string()),
            ClauseValue::Number(n) => serde_json::Value::from(*n),
        },
        equivalent: Vec::new(),
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ReasonRefDto {
    pub pattern_id: String,
    /// Empty when the pattern is unknown to the clusterer (evicted).
    pub template: String,
    pub count: u32,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct CohortDto {
    pub predicate: Vec<ClauseDto>,
    /// The blamed step whose rate is raised; null for all failures.
    pub step: Option<String>,
    /// The blamed reason pattern whose rate is raised, if any.
    pub reason_pattern: Option<String>,
    pub support: u32,
    pub failures: u32,
    pub failure_rate: f64,
    pub baseline_rate: f64,
    pub risk_ratio: f64,
    pub risk_ratio_ci: [f64; 2],
    pub excess_failures: f64,
    pub p_value: f64,
    pub q_value: f64,
    pub top_root_cause_step: Option<String>,
    pub top_reasons: Vec<ReasonRefDto>,
    pub example_trace_ids: Vec<String>,
}

fn pattern_dto(state: &CohortsState, id: u64, count: u32) -> ReasonRefDto {
    let template = state
        .clusterer
        .as_ref()
        .and_then(|c| c.pattern(PatternId(id)))
        .map(|p| p.template)
        .unwrap_or_default();
    ReasonRefDto {
        pattern_id: PatternId(id).to_string(),
        template,
        count,
    }
}

fn cohort_dto(state: &CohortsState, c: &Discovered) -> CohortDto {
    CohortDto {
        predicate: c
            .predicate
            .iter()
            .enumerate()
            .map(|(i, cl)| ClauseDto {
                equivalent: c
                    .equivalents
                    .iter()
                    .filter(|(x, _)| *x == i)
                    .map(|(_, e)| clause_dto(e))
                    .collect(),
                ..clause_dto(cl)
            })
            .collect(),
        step: c.step.as_ref().map(|s| s.to_string()),
        reason_pattern: c.pattern.map(|p| PatternId(p).to_string()),
        support: c.support,
        failures: c.failures,
        failure_rate: c.failure_rate,
        baseline_rate: c.baseline_rate,
        risk_ratio: c.risk_ratio,
        risk_ratio_ci: c.risk_ratio_ci,
        excess_failures: c.excess_failures,
        p_value: c.p_value,
        q_value: c.q_value,
        top_root_cause_step: c.top_root_cause_step.as_ref().map(|(s, _)| s.to_string()),
        top_reasons: c
            .top_reasons
            .iter()
            .map(|&(p, n)| pattern_dto(state, p, n))
            .collect(),
        example_trace_ids: c.example_trace_ids.iter().map(|t| t.to_hex()).collect(),
    }
}

fn refuse_unknown(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    if let Some(k) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
        let shown: String = k.chars().take(64).collect();
        return Err(ApiError::BadRequest(format!(
            "unknown query parameter `{shown}`; allowed: {}",
            allowed.join(", ")
        )));
    }
    Ok(())
}

/// `ring` or a duration between 1m and 31d.
pub fn parse_window(v: Option<&str>) -> Result<WindowSpec, ApiError> {
    match v {
        None | Some("ring") => Ok(WindowSpec::Ring),
        Some(text) => {
            let d = humantime::parse_duration(text.trim()).map_err(|_| {
                ApiError::BadRequest("`window` must be `ring` or a duration such as 1h".into())
            })?;
            if d < Duration::from_secs(60) || d > MAX_WINDOW {
                return Err(ApiError::BadRequest(
                    "`window` must be between 1m and 31d".into(),
                ));
            }
            Ok(WindowSpec::Seconds(d.as_secs()))
        }
    }
}

/// Validated `/api/v1/cohorts` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CohortsQuery {
    pub window: WindowSpec,
    pub limit: usize,
    pub refresh: bool,
}

pub fn parse_cohorts_query(q: &HashMap<String, String>) -> Result<CohortsQuery, ApiError> {
    refuse_unknown(q, &COHORTS_ALLOWED)?;
    let window = parse_window(q.get("window").map(String::as_str))?;
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`limit` must be an integer from 1 to {MAX_LIMIT}"
                )))
            }
        },
    };
    let refresh = match q.get("refresh").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`refresh` must be true or false".into(),
            ))
        }
    };
    Ok(CohortsQuery {
        window,
        limit,
        refresh,
    })
}

fn window_text(w: WindowSpec) -> String {
    match w {
        WindowSpec::Ring => "ring".into(),
        WindowSpec::Seconds(s) => humantime::format_duration(Duration::from_secs(s)).to_string(),
    }
}

/// Builds the response from results (also used by tests).
pub fn cohorts_dto(state: &CohortsState, q: &CohortsQuery, r: &CohortResults) -> CohortsDto {
    let last = r.last.as_ref();
    CohortsDto {
        window: window_text(q.window),
        records: last.map_or(0, |l| l.records),
        failures: last.map_or(0, |l| l.failures),
        runs: r.runs,
        pending: r.pending,
        until_unix_nano: r.until_unix_nano,
        tests: last.map_or(0, |l| l.tests),
        mining_ms: last.map_or(0.0, |l| l.elapsed.as_secs_f64() * 1e3),
        cohorts: r
            .cohorts
            .iter()
            .take(q.limit)
            .map(|c| cohort_dto(state, c))
            .collect(),
    }
}

async fn cohorts_handler(
    State(state): State<Arc<CohortsState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<CohortsDto>, ApiError> {
    let query = parse_cohorts_query(&q)?;
    let cached = if query.refresh {
        None
    } else {
        state.index.results(query.window)
    };
    let results = match cached {
        Some(r) => r,
        None => {
            let index = state.index.clone();
            let window = query.window;
            tokio::task::spawn_blocking(move || index.mine_now(window))
                .await
                .map_err(|_| ApiError::BadRequest("the mining run failed".into()))?
        }
    };
    Ok(Json(cohorts_dto(&state, &query, &results)))
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SideDto {
    pub filter: String,
    pub from_unix_nano: Option<u64>,
    pub to_unix_nano: Option<u64>,
    pub trajectories: u64,
    pub failed: u64,
    pub failure_rate: f64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct DifferenceDto {
    pub a_rate: f64,
    pub b_rate: f64,
    /// `b_rate − a_rate`.
    pub difference: f64,
    pub difference_ci: [f64; 2],
    pub p_value: f64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct StepSideDto {
    pub runs: u64,
    pub failures: u64,
    pub failure_rate: f64,
    pub root_causes: u64,
    pub root_cause_rate: f64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct StepCompareDto {
    pub step: String,
    pub a: StepSideDto,
    pub b: StepSideDto,
    pub failure_rate: DifferenceDto,
    pub root_cause_rate: DifferenceDto,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct CompareDto {
    pub window: String,
    pub a: SideDto,
    pub b: SideDto,
    pub overall: DifferenceDto,
    pub steps: Vec<StepCompareDto>,
}

fn diff_dto(d: &Difference) -> DifferenceDto {
    DifferenceDto {
        a_rate: d.a_rate,
        b_rate: d.b_rate,
        difference: d.difference,
        difference_ci: d.ci,
        p_value: d.p_value,
    }
}

fn rate(f: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        f as f64 / n as f64
    }
}

fn step_side(c: &StepCounts, trajectories: u64) -> StepSideDto {
    StepSideDto {
        runs: c.runs,
        failures: c.failures,
        failure_rate: rate(c.failures, c.runs),
        root_causes: c.root_causes,
        root_cause_rate: rate(c.root_causes, trajectories),
    }
}

/// Validated `/api/v1/compare` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareQuery {
    pub window: WindowSpec,
    pub a_text: String,
    pub b_text: String,
    pub a: Filter,
    pub b: Filter,
}

fn time_param(q: &HashMap<String, String>, key: &str) -> Result<Option<u64>, ApiError> {
    match q.get(key) {
        None => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            ApiError::BadRequest(format!("`{key}` must be unix nanoseconds (an integer)"))
        }),
    }
}

pub fn parse_compare_query(q: &HashMap<String, String>) -> Result<CompareQuery, ApiError> {
    refuse_unknown(q, &COMPARE_ALLOWED)?;
    let window = parse_window(q.get("window").map(String::as_str))?;
    let side = |name: &str| -> Result<(String, Filter), ApiError> {
        let text = q
            .get(name)
            .ok_or_else(|| ApiError::BadRequest(format!("`{name}` (a filter) is required")))?;
        if text.len() > MAX_FILTER_BYTES {
            return Err(ApiError::BadRequest(format!(
                "`{name}` is longer than {MAX_FILTER_BYTES} bytes"
            )));
        }
        let mut f =
            Filter::parse(text).map_err(|e| ApiError::BadRequest(format!("`{name}`: {e}")))?;
        f.from_unix_nano = time_param(q, &format!("{name}_from"))?;
        f.to_unix_nano = time_param(q, &format!("{name}_to"))?;
        if let (Some(from), Some(to)) = (f.from_unix_nano, f.to_unix_nano) {
            if from >= to {
                return Err(ApiError::BadRequest(format!(
                    "`{name}_from` must be before `{name}_to`"
                )));
            }
        }
        Ok((text.clone(), f))
    };
    let (a_text, a) = side("a")?;
    let (b_text, b) = side("b")?;
    Ok(CompareQuery {
        window,
        a_text,
        b_text,
        a,
        b,
    })
}

/// Computes the comparison (blocking: copies the window).
pub fn compare_dto(index: &CohortIndex, q: &CompareQuery) -> CompareDto {
    let snap = index.snapshot(q.window);
    let c = compare(&snap, &q.a, &q.b);
    let side = |text: &str, f: &Filter, s: &crate::cohorts::compare::SideCounts| SideDto {
        filter: text.to_string(),
        from_unix_nano: f.from_unix_nano,
        to_unix_nano: f.to_unix_nano,
        trajectories: s.trajectories,
        failed: s.failed,
        failure_rate: rate(s.failed, s.trajectories),
    };
    CompareDto {
        window: window_text(q.window),
        a: side(&q.a_text, &q.a, &c.a),
        b: side(&q.b_text, &q.b, &c.b),
        overall: diff_dto(&c.overall),
        steps: c
            .steps
            .iter()
            .map(|s| StepCompareDto {
                step: s.step.to_string(),
                a: step_side(&s.a, c.a.trajectories),
                b: step_side(&s.b, c.b.trajectories),
                failure_rate: diff_dto(&s.failure_rate),
                root_cause_rate: diff_dto(&s.root_cause_rate),
            })
            .collect(),
    }
}

async fn compare_handler(
    State(state): State<Arc<CohortsState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<CompareDto>, ApiError> {
    let query = parse_compare_query(&q)?;
    let index = state.index.clone();
    let dto = tokio::task::spawn_blocking(move || compare_dto(&index, &query))
        .await
        .map_err(|_| ApiError::BadRequest("the comparison failed".into()))?;
    Ok(Json(dto))
}

/// `GET /api/v1/cohorts`, bound to its state (mounts on a router of any state).
pub fn cohorts_route<S>(state: Arc<CohortsState>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    get(cohorts_handler).with_state(state)
}

/// `GET /api/v1/compare`, bound to its state.
pub fn compare_route<S>(state: Arc<CohortsState>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    get(compare_handler).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::Router;
    use tower::ServiceExt;

    use crate::cohorts::{CohortConfig, RecordInput};

    fn app() -> Router {
        let index = Arc::new(CohortIndex::new(CohortConfig {
            window: 1000,
            ..CohortConfig::default()
        }));
        for i in 0..400u64 {
            let model = if i % 4 == 0 { "bad" } else { "good" };
            let failed = if model == "bad" {
                i % 8 == 0
            } else {
                i % 40 == 1
            };
            index.push(&RecordInput {
                categorical: vec![(Arc::from("model"), model.to_string())],
                failed,
                root_step: failed.then(|| "retriever".to_string()),
                steps: vec![("retriever".into(), failed)],
                end_unix_nano: (i + 1) * 1_000_000_000,
                ..RecordInput::default()
            });
        }
        let state = Arc::new(CohortsState {
            index,
            clusterer: None,
        });
        Router::new()
            .route("/api/v1/cohorts", cohorts_route(state.clone()))
            .route("/api/v1/compare", compare_route(state))
    }

    async fn get_status(app: &Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let resp = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn bad_parameters_are_400() {
        let app = app();
        for uri in [
            "/api/v1/cohorts?window=soon",
            "/api/v1/cohorts?window=10s",
            "/api/v1/cohorts?window=400d",
            "/api/v1/cohorts?limit=0",
            "/api/v1/cohorts?limit=many",
            "/api/v1/cohorts?refresh=maybe",
            "/api/v1/cohorts?colour=red",
            "/api/v1/compare?a=model=bad",
            "/api/v1/compare?b=model=bad",
            "/api/v1/compare?a=model&b=model=good",
            "/api/v1/compare?a=model%3E%3D3&b=",
            "/api/v1/compare?a=input_tokens%3E%3Dx&b=",
            "/api/v1/compare?a=&b=&a_from=yesterday",
            "/api/v1/compare?a=&b=&b_from=10&b_to=5",
            "/api/v1/compare?a=&b=&c=1",
        ] {
            let (status, body) = get_status(&app, uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{uri}"
            );
        }
    }

    #[tokio::test]
    async fn cohorts_confirm_on_the_second_run_and_compare_answers() {
        let app = app();
        let (status, first) = get_status(&app, "/api/v1/cohorts?refresh=true").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(first["runs"], 1);
        assert_eq!(first["cohorts"].as_array().map(Vec::len), Some(0));
        assert!(first["pending"].as_u64().is_some_and(|p| p >= 1), "{first}");
        let (_, second) = get_status(&app, "/api/v1/cohorts?refresh=1").await;
        let c = &second["cohorts"][0];
        assert_eq!(c["predicate"][0]["key"], "model");
        assert_eq!(c["predicate"][0]["op"], "=");
        assert_eq!(c["predicate"][0]["value"], "bad");
        assert_eq!(c["top_root_cause_step"], "retriever");
        assert!(c["risk_ratio_ci"][0].as_f64().is_some_and(|lo| lo > 1.0));
        assert!(c["q_value"].as_f64().is_some_and(|q| q <= 0.05));
        // Cached without refresh.
        let (_, cached) = get_status(&app, "/api/v1/cohorts").await;
        assert_eq!(cached["runs"], 2);
        let (status, cmp) = get_status(&app, "/api/v1/compare?a=model%3Dgood&b=model%3Dbad").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cmp["a"]["trajectories"], 300);
        assert_eq!(cmp["b"]["trajectories"], 100);
        assert!(cmp["overall"]["difference"]
            .as_f64()
            .is_some_and(|d| d > 0.05));
        assert_eq!(cmp["steps"][0]["step"], "retriever");
        let (status, timed) = get_status(
            &app,
            "/api/v1/compare?a=&b=&a_to=100000000000&b_from=100000000000&window=1h",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(timed["a"]["trajectories"], 99);
        assert_eq!(timed["b"]["trajectories"], 301);
    }
}
