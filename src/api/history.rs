//! Trajectory history over the store: `GET /api/v1/trajectories` (filters, sort, cursor),
//! `GET /api/v1/trajectories/{trace_id}` (memory first, then the store) and
//! `GET /api/v1/sessions/{session_id}`.
//!
//! Parameters are parsed strictly: an unknown or repeated parameter, or a bad value, is a
//! 400 naming it; `limit` is clamped to 1..=1000. Filters reach the store as exact tags
//! and bound parameters only. Store calls run on the blocking pool, never on the async
//! runtime.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::Value;

use crate::api::{dto, ApiError, ApiState, MAX_LIMIT};
use crate::model::TraceId;
use crate::store::record::tag;
use crate::store::{Cursor, ListQuery, Order, SortKey, Store, StoreError, Summary};

/// The parameters of the list besides cohort dimensions.
pub const LIST_PARAMS: &[&str] = &[
    "limit",
    "cursor",
    "outcome",
    "step",
    "finding_kind",
    "root_cause_step",
    "q",
    "service",
    "session_id",
    "from",
    "to",
    "sort",
    "order",
];

/// Longest filter value accepted.
const MAX_VALUE_CHARS: usize = 1024;

fn echo(s: &str) -> String {
    s.chars().take(64).collect()
}

fn store_error(e: StoreError) -> ApiError {
    tracing::warn!(error = %e, "A store read failed.");
    match e {
        StoreError::Corrupted(_) => ApiError::Unavailable(e.to_string()),
        e if e.is_corruption() => {
            ApiError::Unavailable(StoreError::Corrupted(e.to_string()).to_string())
        }
        _ => ApiError::Unavailable("the store cannot answer right now; retry later".into()),
    }
}

/// A read of the store on the blocking pool; a store known to be corrupted answers a 503
/// saying so, without being read.
async fn read_store<T: Send + 'static>(
    store: Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    blocking(move || match store.corruption() {
        Some(c) => Err(StoreError::Corrupted(c)),
        None => f(&*store),
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(store_error),
        Err(_) => Err(ApiError::Unavailable(
            "the store read was interrupted".into(),
        )),
    }
}

fn parse_limit(v: &str) -> Result<usize, ApiError> {
    v.trim()
        .parse::<i128>()
        .map_err(|_| ApiError::BadRequest("`limit` must be an integer".into()))
        .map(|n| n.clamp(1, MAX_LIMIT as i128) as usize)
}

fn parse_nanos(name: &str, v: &str) -> Result<u64, ApiError> {
    v.trim().parse::<u64>().map_err(|_| {
        ApiError::BadRequest(format!(
            "`{name}` must be unix time in nanoseconds, not `{}`",
            echo(v)
        ))
    })
}

/// Parses the list parameters into a store query; `dims` are the configured cohort
/// dimension names.
pub fn parse_list(params: &[(String, String)], dims: &[&str]) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery::default();
    let mut seen: Vec<&str> = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for (key, value) in params {
        if seen.contains(&key.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "`{}` is given more than once",
                echo(key)
            )));
        }
        seen.push(key);
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(ApiError::BadRequest(format!(
                "`{}` is longer than {MAX_VALUE_CHARS} characters",
                echo(key)
            )));
        }
        let v = value.as_str();
        // A blank filter is no filter (forms send them).
        if v.is_empty() && !matches!(key.as_str(), "limit" | "cursor" | "from" | "to") {
            continue;
        }
        match key.as_str() {
            "limit" => q.limit = parse_limit(v)?,
            "cursor" => {
                cursor = Some(Cursor::decode(v).ok_or_else(|| {
                    ApiError::BadRequest("`cursor` is not a cursor of this API".into())
                })?)
            }
            "outcome" => match v {
                "failed" | "recovered" | "success" => q.tags.push(tag::outcome(v)),
                _ => {
                    return Err(ApiError::BadRequest(
                        "`outcome` must be failed, recovered or success".into(),
                    ))
                }
            },
            "step" => q.tags.push(tag::step(v)),
            "finding_kind" => q.tags.push(tag::finding_kind(v)),
            "root_cause_step" => q.tags.push(tag::root_cause_step(v)),
            "service" => q.tags.push(tag::service(v)),
            "session_id" => q.tags.push(tag::session(v)),
            "q" => q.text = Some(v.to_lowercase()),
            "from" => q.from = Some(parse_nanos("from", v)?),
            "to" => q.to = Some(parse_nanos("to", v)?),
            "sort" => {
                q.sort = match v {
                    "end" => SortKey::End,
                    "duration" => SortKey::Duration,
                    _ => {
                        return Err(ApiError::BadRequest(
                            "`sort` must be end or duration".into(),
                        ))
                    }
                }
            }
            "order" => {
                q.order = match v {
                    "desc" => Order::Desc,
                    "asc" => Order::Asc,
                    _ => return Err(ApiError::BadRequest("`order` must be asc or desc".into())),
                }
            }
            other => {
                let name = other.strip_prefix("dim.").unwrap_or(other);
                if !dims.contains(&name) {
                    return Err(ApiError::BadRequest(format!(
                        "unknown query parameter `{}`; allowed: {}, dim.<dimension> or a dimension name ({})",
                        echo(other),
                        LIST_PARAMS.join(", "),
                        dims.join(", ")
                    )));
                }
                q.tags.push(tag::dim(name, v));
            }
        }
    }
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from >= to {
            return Err(ApiError::BadRequest("`from` must be before `to`".into()));
        }
    }
    if let Some(c) = cursor {
        if c.sort != q.sort || c.order != q.order {
            return Err(ApiError::BadRequest(
                "`cursor` belongs to another sort or order".into(),
            ));
        }
        q.after = Some(c);
    }
    Ok(q)
}

pub fn summary_dto(s: &Summary) -> dto::TrajectorySummaryDto {
    dto::TrajectorySummaryDto {
        trace_id: s.trace_id.to_hex(),
        session_id: s.session_id.clone(),
        service: s.service.clone(),
        start_unix_nano: s.start_unix_nano,
        end_unix_nano: s.end_unix_nano,
        complete: s.complete,
        late_spans: s.late_spans,
        revision: s.revision,
        outcome: s.outcome.as_str(),
        root_cause_step: s.root_cause_step.clone(),
        root_cause_kind: s.root_cause_kind.clone(),
        span_count: s.span_count,
        finding_count: s.finding_count,
        root_cause_reason: s.root_cause_reason.clone(),
        model: s.model.clone(),
        pending: !s.finalized,
    }
}

pub async fn list_trajectories(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let config = state.aggregator.config();
    let dims: Vec<&str> = config.dimensions.iter().map(|d| &*d.name).collect();
    let query = parse_list(&params, &dims)?;
    let page = read_store(state.store.clone(), move |s| s.list(&query)).await?;
    let items: Vec<dto::TrajectorySummaryDto> = page.items.iter().map(summary_dto).collect();
    Ok(Json(serde_json::json!({
        "trajectories": items,
        "next_cursor": page.next.map(|c| c.encode()),
    })))
}

fn parse_trace_id(trace_id: &str) -> Result<TraceId, ApiError> {
    TraceId::from_hex(trace_id).map_err(|e| {
        ApiError::BadRequest(format!(
            "`trace_id` must be 32 hex digits, not all zero ({e})"
        ))
    })
}

pub async fn get_trajectory(
    State(state): State<Arc<ApiState>>,
    Path(trace_id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut with_attributes = false;
    for (k, v) in &params {
        match (k.as_str(), v.as_str()) {
            ("attributes", "true" | "1" | "") => with_attributes = true,
            ("attributes", "false" | "0") => with_attributes = false,
            ("attributes", _) => {
                return Err(ApiError::BadRequest(
                    "`attributes` must be true or false".into(),
                ))
            }
            (other, _) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{}`; allowed: attributes",
                    echo(other)
                )))
            }
        }
    }
    let id = parse_trace_id(&trace_id)?;
    if let Some(a) = state.recent.get(id) {
        let doc = dto::TrajectoryDto::from_analysis(&a, with_attributes);
        return serde_json::to_value(doc)
            .map(Json)
            .map_err(|e| ApiError::Unavailable(format!("cannot encode the trajectory: {e}")));
    }
    let stored = read_store(state.store.clone(), move |s| s.get(id)).await?;
    let Some(stored) = stored else {
        return Err(ApiError::NotFound(format!("no trajectory {}", id.to_hex())));
    };
    let doc = crate::store::document::parse(&stored.document)
        .map_err(|e| store_error(StoreError::Data(e.to_string())))?;
    serde_json::to_value(dto::TrajectoryDto::from_document(doc, with_attributes))
        .map(Json)
        .map_err(|e| ApiError::Unavailable(format!("cannot encode the trajectory: {e}")))
}

pub async fn get_session(
    State(state): State<Arc<ApiState>>,
    Path(session_id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut limit = MAX_LIMIT;
    let mut seen = false;
    for (k, v) in &params {
        match k.as_str() {
            "limit" if !seen => {
                seen = true;
                limit = parse_limit(v)?;
            }
            "limit" => {
                return Err(ApiError::BadRequest(
                    "`limit` is given more than once".into(),
                ))
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{}`; allowed: limit",
                    echo(other)
                )))
            }
        }
    }
    if session_id.is_empty() || session_id.chars().count() > MAX_VALUE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "`session_id` must be 1 to {MAX_VALUE_CHARS} characters"
        )));
    }
    let sid = session_id.clone();
    let mut items = read_store(state.store.clone(), move |s| s.session(&sid, limit)).await?;
    // Trajectories still in memory that the store does not keep (sampled-out successes).
    for a in state.recent.list(usize::MAX) {
        if a.trajectory.session_id() == Some(session_id.as_str())
            && !items.iter().any(|s| s.trace_id == a.trajectory.trace_id)
        {
            items.push(crate::store::record::summary(&a));
        }
    }
    items.sort_by(|a, b| {
        (a.start_unix_nano, a.trace_id.as_bytes()).cmp(&(b.start_unix_nano, b.trace_id.as_bytes()))
    });
    items.truncate(limit);
    let list: Vec<dto::TrajectorySummaryDto> = items.iter().map(summary_dto).collect();
    Ok(Json(serde_json::json!({
        "session_id": session_id,
        "trajectories": list,
    })))
}
