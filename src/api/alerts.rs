//! `GET /api/v1/alerts`: the built-in alerts, pending and firing first, then recently
//! resolved ones.
//!
//! Parameters, all optional: `state` (`pending`, `firing` or `resolved`), `step` (a step
//! name), `kind` (`spike` or `sustained`), `limit` (1..=1000, default 100). Anything
//! else, or a bad value, is a 400 with `{"error": "..."}`.
//!
//! ```json
//! {"alerts": [{"id": 7, "step": "retriever", "kind": "spike", "signal": "root_cause",
//!   "alertname": "FaultlineStepRootCauseRate", "severity": "critical",
//!   "cohort": {"model": "gpt-4o"}, "state": "firing",
//!   "started_unix_nano": 1717200000000000000, "resolved_unix_nano": null,
//!   "updated_unix_nano": 1717200180000000000, "rate": 0.31, "baseline": 0.08,
//!   "runs": 412, "failures": 128, "incident": 8,
//!   "reason": "Timeout after <*> ms calling <*>",
//!   "link": "http://127.0.0.1:8700/#/trajectories?step=retriever&outcome=failed"}]}
//! ```
//! Times are event times. `cohort` is `{}` for the whole step. `rate` is the rate of the
//! window that decided (a spike's short window, a shift's CUSUM excursion or its last
//! ten minutes); `baseline` the learned rate it was compared with. `reason` is the step's
//! most frequent failure reason pattern in the minutes before the alert opened (updated
//! when it fires), `null` when none is recorded.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::{get, MethodRouter};
use axum::Json;
use serde::Serialize;

use crate::alerts::{Alert, AlertEngine, AlertFilter, AlertKind, AlertState};
use crate::api::ApiError;

const ALLOWED: [&str; 4] = ["state", "step", "kind", "limit"];
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: i64 = 1000;
const MAX_STEP_LEN: usize = 128;

#[derive(Debug, Serialize, PartialEq)]
pub struct AlertsDto {
    pub alerts: Vec<AlertDto>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct AlertDto {
    pub id: u64,
    pub step: String,
    pub kind: &'static str,
    pub signal: &'static str,
    pub alertname: &'static str,
    pub severity: &'static str,
    pub cohort: BTreeMap<String, String>,
    pub state: &'static str,
    pub started_unix_nano: u64,
    pub resolved_unix_nano: Option<u64>,
    pub updated_unix_nano: u64,
    pub rate: f64,
    pub baseline: f64,
    pub runs: u64,
    pub failures: u64,
    pub incident: Option<u64>,
    /// The step's most frequent failure reason around the alert's start (the reason
    /// index's pattern template, cut at 200 characters); `null` when none is recorded.
    pub reason: Option<String>,
    pub link: String,
}

impl AlertDto {
    pub fn from_alert(a: &Alert, engine: &AlertEngine) -> AlertDto {
        AlertDto {
            id: a.id,
            step: a.step.to_string(),
            kind: a.kind.as_str(),
            signal: a.signal.as_str(),
            alertname: a.signal.alertname(),
            severity: a.kind.severity(),
            cohort: a
                .cohort
                .iter()
                .map(|(d, v)| (d.to_string(), v.to_string()))
                .collect(),
            state: a.state.as_str(),
            started_unix_nano: a.started_unix_nano,
            resolved_unix_nano: a.resolved_unix_nano,
            updated_unix_nano: a.updated_unix_nano,
            rate: a.rate,
            baseline: a.baseline,
            runs: a.runs,
            failures: a.failures,
            incident: a.incident,
            reason: a.reason.clone(),
            link: engine.link(&a.step),
        }
    }
}

/// Parses and validates the query string.
pub fn parse_query(q: &HashMap<String, String>) -> Result<AlertFilter, ApiError> {
    if let Some(k) = q.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        let shown: String = k.chars().take(64).collect();
        return Err(ApiError::BadRequest(format!(
            "unknown query parameter `{shown}`; allowed: {}",
            ALLOWED.join(", ")
        )));
    }
    let state = match q.get("state").map(String::as_str) {
        None => None,
        Some(s) => Some(AlertState::from_name(s).ok_or_else(|| {
            ApiError::BadRequest("`state` must be pending, firing or resolved".into())
        })?),
    };
    let kind = match q.get("kind").map(String::as_str) {
        None => None,
        Some("spike") => Some(AlertKind::Spike),
        Some("sustained") => Some(AlertKind::Sustained),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`kind` must be spike or sustained".into(),
            ))
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
    Ok(AlertFilter {
        state,
        step,
        kind,
        limit,
    })
}

/// The response for `filter`.
pub fn alerts_dto(engine: &AlertEngine, filter: &AlertFilter) -> AlertsDto {
    AlertsDto {
        alerts: engine
            .alerts(filter)
            .iter()
            .map(|a| AlertDto::from_alert(a, engine))
            .collect(),
    }
}

async fn list_alerts(
    State(engine): State<Arc<AlertEngine>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<AlertsDto>, ApiError> {
    let filter = parse_query(&q)?;
    Ok(Json(alerts_dto(&engine, &filter)))
}

/// The route, bound to its engine, mountable on a router of any state:
/// `.route("/api/v1/alerts", alerts_route(engine))`.
pub fn alerts_route<S>(engine: Arc<AlertEngine>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    get(list_alerts).with_state(engine)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every field of an alert is documented in `openapi.json`'s `Alert` schema, and
    /// nothing else is.
    #[test]
    fn the_alert_schema_lists_exactly_the_fields_served() {
        let dto = AlertDto {
            id: 7,
            step: "retriever".into(),
            kind: "spike",
            signal: "root_cause",
            alertname: "FaultlineStepRootCauseRate",
            severity: "critical",
            cohort: BTreeMap::from([("model".to_owned(), "gpt-4o".to_owned())]),
            state: "firing",
            started_unix_nano: 1,
            resolved_unix_nano: None,
            updated_unix_nano: 2,
            rate: 0.3,
            baseline: 0.1,
            runs: 10,
            failures: 3,
            incident: Some(8),
            reason: Some("Timeout after <*> ms".into()),
            link: "http://x/#/trajectories".into(),
        };
        let served = serde_json::to_value(&dto).expect("serializes");
        let served: BTreeSet<String> = served
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        let doc: serde_json::Value =
            serde_json::from_str(crate::api::openapi::DOCUMENT).expect("the document parses");
        let schema = &doc["components"]["schemas"]["Alert"];
        let documented: BTreeSet<String> = schema["properties"]
            .as_object()
            .expect("Alert properties")
            .keys()
            .cloned()
            .collect();
        assert_eq!(served, documented);
        let required: BTreeSet<String> = schema["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        assert_eq!(required, documented, "every field is always present");
        assert_eq!(
            doc["paths"]["/api/v1/alerts"]["get"]["responses"]["200"]["content"]
                ["application/json"]["schema"]["$ref"],
            "#/components/schemas/Alerts"
        );
    }
}
