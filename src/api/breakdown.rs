//! `GET /api/v1/breakdown`: per-step failure rates, root causes and latency by cohort.
//!
//! State: the handler needs only the [`Aggregator`] (which is also a pipeline
//! [`Sink`](crate::pipeline::Sink)); [`breakdown_route`] binds it, so the route mounts
//! on a router of any state: `.route("/api/v1/breakdown", breakdown_route(aggregator))`.
//!
//! Parameters (unknown ones are refused): `window` (a duration such as `15m`, ending at
//! the newest event time seen; default `1h`) or `from` and `to` (unix nanoseconds,
//! `[from, to)`); `by`: zero or more dimension names, comma-separated or repeated. Bad
//! parameters answer 400 with `{"error": "..."}`. The JSON shape is documented in
//! `src/aggregate/README.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::{get, MethodRouter};
use axum::Json;
use serde::Serialize;

use crate::aggregate::{Aggregator, Breakdown, BreakdownQuery, CohortValues, OutcomeCounts};
use crate::api::ApiError;

/// The JSON answer. Field names are a contract.
#[derive(Debug, Serialize)]
pub struct BreakdownDto {
    pub window: WindowDto,
    /// The `by` dimensions, in the order asked.
    pub by: Vec<String>,
    pub totals: OutcomeDto,
    /// Trajectories per cohort (the run's values of the `by` dimensions).
    pub trajectories: Vec<TrajectoryRowDto>,
    /// One row per step and cohort (the step's values of the `by` dimensions).
    pub steps: Vec<StepRowDto>,
    /// Trajectories already received and analysed but still inside their late-data grace
    /// (`late_grace`): they are counted here once it ends. All of them, whatever their
    /// event time.
    pub pending_trajectories: u64,
}

#[derive(Debug, Serialize)]
pub struct WindowDto {
    /// The minutes covered, `[from, to)`, aligned to whole minutes.
    pub from_unix_nano: u64,
    pub to_unix_nano: u64,
}

#[derive(Debug, Serialize)]
pub struct OutcomeDto {
    pub trajectories: u64,
    pub success: u64,
    pub recovered: u64,
    pub failed: u64,
    /// `failed / trajectories`, 0 when there are none.
    pub failure_rate: f64,
}

#[derive(Debug, Serialize)]
pub struct TrajectoryRowDto {
    /// Dimension name → value; `null` when the attribute is absent, `"other"` for values
    /// folded by the cardinality budget.
    pub cohort: BTreeMap<String, Option<String>>,
    #[serde(flatten)]
    pub counts: OutcomeDto,
}

#[derive(Debug, Serialize)]
pub struct StepRowDto {
    pub step: String,
    pub cohort: BTreeMap<String, Option<String>>,
    pub runs: u64,
    /// Runs with at least one original (not propagated) finding.
    pub failures: u64,
    /// Failed trajectories blamed on a run of this step.
    pub root_causes: u64,
    /// `failures / runs`.
    pub failure_rate: f64,
    /// `root_causes / runs`.
    pub root_cause_rate: f64,
    /// Latency of the step's runs; `null` when there were none.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Original findings by kind.
    pub findings_by_kind: BTreeMap<String, u64>,
    /// Root causes by kind.
    pub root_causes_by_kind: BTreeMap<String, u64>,
}

impl OutcomeDto {
    fn from_counts(c: &OutcomeCounts) -> OutcomeDto {
        OutcomeDto {
            trajectories: c.total(),
            success: c.success,
            recovered: c.recovered,
            failed: c.failed,
            failure_rate: c.failure_rate(),
        }
    }
}

fn cohort(by: &[String], values: &CohortValues) -> BTreeMap<String, Option<String>> {
    by.iter()
        .zip(values)
        .map(|(name, value)| (name.clone(), value.as_deref().map(str::to_owned)))
        .collect()
}

/// Rounds to microseconds, so the JSON does not carry float noise.
fn ms(v: Option<f64>) -> Option<f64> {
    v.map(|v| (v * 1000.0).round() / 1000.0)
}

impl BreakdownDto {
    pub fn from_breakdown(b: &Breakdown) -> BreakdownDto {
        let by: Vec<String> = b.by.iter().map(|d| d.to_string()).collect();
        BreakdownDto {
            window: WindowDto {
                from_unix_nano: b.from_unix_nano,
                to_unix_nano: b.to_unix_nano,
            },
            totals: OutcomeDto::from_counts(&b.totals),
            trajectories: b
                .trajectories
                .iter()
                .map(|r| TrajectoryRowDto {
                    cohort: cohort(&by, &r.cohort),
                    counts: OutcomeDto::from_counts(&r.counts),
                })
                .collect(),
            steps: b
                .steps
                .iter()
                .map(|r| StepRowDto {
                    step: r.step.to_string(),
                    cohort: cohort(&by, &r.cohort),
                    runs: r.runs,
                    failures: r.failures,
                    root_causes: r.root_causes,
                    failure_rate: r.failure_rate(),
                    root_cause_rate: r.root_cause_rate(),
                    p50_ms: ms(r.p50_ms),
                    p90_ms: ms(r.p90_ms),
                    p99_ms: ms(r.p99_ms),
                    findings_by_kind: r
                        .findings_by_kind
                        .iter()
                        .map(|(k, n)| (k.to_string(), *n))
                        .collect(),
                    root_causes_by_kind: r
                        .root_causes_by_kind
                        .iter()
                        .map(|(k, n)| (k.to_string(), *n))
                        .collect(),
                })
                .collect(),
            by,
            pending_trajectories: 0,
        }
    }
}

/// `GET /api/v1/breakdown` with the aggregator as state.
pub async fn breakdown_handler(
    State(aggregator): State<Arc<Aggregator>>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<BreakdownDto>, ApiError> {
    let Query(params) = params
        .map_err(|e| ApiError::BadRequest(format!("malformed query string: {}", e.body_text())))?;
    let query = BreakdownQuery::parse(&params, aggregator.config())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let now = aggregator.now();
    let breakdown = aggregator
        .breakdown(&query, now)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut dto = BreakdownDto::from_breakdown(&breakdown);
    dto.pending_trajectories = aggregator.pending();
    Ok(Json(dto))
}

/// The route, bound to `aggregator`, mountable on a router of any state.
pub fn breakdown_route<S>(aggregator: Arc<Aggregator>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    get(breakdown_handler).with_state(aggregator)
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::Router;
    use prometheus_client::registry::Registry;
    use tower::ServiceExt;

    use crate::aggregate::{AggregateConfig, Clock};
    use crate::model::{Analysis, Outcome, StepAssignment, StepKind, StepSource};
    use crate::test_support::{span, trajectory};

    const NOW_MS: u64 = 1_717_200_000_000;

    fn app() -> Router {
        let mut registry = Registry::default();
        let clock: Clock = Arc::new(|| NOW_MS * 1_000_000);
        let agg = Arc::new(Aggregator::new(
            AggregateConfig::default_config(),
            &mut registry,
            clock,
        ));
        for (i, model) in ["m1", "m1", "m2"].iter().enumerate() {
            let traj = trajectory(vec![span(i as u64 + 1, 1, 0)
                .times(NOW_MS - 50, NOW_MS)
                .attr("gen_ai.request.model", *model)
                .build()]);
            agg.record(&generator_success(traj), NOW_MS * 1_000_000);
        }
        Router::new().route("/api/v1/breakdown", breakdown_route(agg))
    }

    /// A successful run of one generator span.
    fn generator_success(traj: crate::model::Trajectory) -> Analysis {
        Analysis {
            trajectory: Arc::new(traj),
            steps: vec![StepAssignment {
                kind: StepKind::Generator,
                source: StepSource::Root,
                run_start: true,
            }],
            findings: Vec::new(),
            outcome: Outcome::Success,
            root_cause: None,
        }
    }

    async fn get_json(uri: &str) -> (StatusCode, serde_json::Value) {
        let response = app()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn answers_json_by_cohort() {
        let (status, body) = get_json("/api/v1/breakdown?window=15m&by=model").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["by"], serde_json::json!(["model"]));
        assert_eq!(body["totals"]["trajectories"], 3);
        let steps = body["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0]["step"], "generator");
        assert_eq!(steps[0]["cohort"], serde_json::json!({"model": "m1"}));
        assert_eq!(steps[0]["runs"], 2);
        assert_eq!(steps[0]["failure_rate"], 0.0);
        assert!(steps[0]["p50_ms"].as_f64().unwrap() > 45.0);
        assert_eq!(body["trajectories"][1]["cohort"]["model"], "m2");
        assert_eq!(body["trajectories"][1]["success"], 1);
    }

    #[tokio::test]
    async fn runs_inside_the_grace_are_a_pending_count_until_finalized() {
        use crate::pipeline::Sink;
        let mut registry = Registry::default();
        let clock: Clock = Arc::new(|| NOW_MS * 1_000_000);
        let agg = Arc::new(Aggregator::new(
            AggregateConfig::default_config(),
            &mut registry,
            clock,
        ));
        let release = |trace: u64, revision: u32| {
            let mut traj = trajectory(vec![span(trace, 1, 0).times(NOW_MS - 50, NOW_MS).build()]);
            traj.revision = revision;
            Arc::new(generator_success(traj))
        };
        let router = Router::new().route("/api/v1/breakdown", breakdown_route(agg.clone()));
        let get = |router: Router| async move {
            let response = router
                .oneshot(
                    Request::get("/api/v1/breakdown?window=15m")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        };
        agg.publish(release(1, 0));
        agg.publish(release(2, 0));
        agg.publish(release(1, 1)); // a revision: still one pending run
        let body = get(router.clone()).await;
        assert_eq!(body["pending_trajectories"], 2);
        assert_eq!(body["totals"]["trajectories"], 0);
        agg.finalize(&release(1, 1).into());
        // A revision of a run already finalized does not make it pending again.
        agg.publish(release(1, 2));
        let body = get(router.clone()).await;
        assert_eq!(body["pending_trajectories"], 1);
        assert_eq!(body["totals"]["trajectories"], 1);
        agg.finalize(&release(2, 0).into());
        let body = get(router).await;
        assert_eq!(body["pending_trajectories"], 0);
        assert_eq!(body["totals"]["trajectories"], 2);
    }

    #[tokio::test]
    async fn bad_parameters_are_400_with_a_message() {
        for (uri, message) in [
            ("/api/v1/breakdown?by=colour", "unknown dimension"),
            ("/api/v1/breakdown?window=soon", "not a duration"),
            ("/api/v1/breakdown?window=30d", "beyond the horizon"),
            ("/api/v1/breakdown?sort=1", "unknown query parameter"),
        ] {
            let (status, body) = get_json(uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            let error = body["error"].as_str().unwrap();
            assert!(error.contains(message), "{uri}: {error}");
        }
    }
}
