//! OTLP/HTTP receiver: `POST /v1/traces` and `POST /v1/logs`, protobuf or JSON, gzip.
//!
//! - `Content-Type`: `application/x-protobuf` or `application/json` (parameters such as
//!   `; charset=utf-8` ignored); anything else is 415. The response has the request's
//!   content type; error bodies are a `google.rpc.Status` in the request's encoding
//!   (protobuf when the request's content type is not one we read). Protobuf ones carry
//!   `BadRequest` (400, 415) or `RetryInfo` (503) details; JSON ones code and message.
//! - `Content-Encoding`: none, `identity` or `gzip`; anything else is 400.
//! - Size: the body is read frame by frame and refused (413) as soon as it passes the
//!   limit, whatever `Content-Length` says or whether it is chunked; the gzip stream is
//!   inflated into a buffer that stops at the limit, so a bomb costs at most the limit.
//! - A full pipeline is 503 with `Retry-After` (whole seconds, at least 1).
//! - Other methods are 405 (with `Allow: POST`), other paths 404, both with a Status body.

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::{Bytes, BytesMut};
use flate2::read::MultiGzDecoder;
use http::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::StatusCode;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use crate::ingest::accept::{decode_off_thread, price, wal_start, Accepted, Refusal};
use crate::ingest::cost;
use crate::ingest::decode::{
    decode_logs, decode_traces, parse_logs_json, parse_logs_proto, parse_traces_json,
    parse_traces_proto,
};
use crate::ingest::{Handoff, Ingest, IngestObserver, Transport};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The router for the OTLP/HTTP listener. It has its own fallback (404 with a Status
/// body), so serve it on its own listener rather than merging it into another router.
pub fn http_router<H, O>(ingest: Arc<Ingest<H, O>>) -> Router
where
    H: Handoff,
    O: IngestObserver,
{
    Router::new()
        .route(
            "/v1/traces",
            post(export_traces::<H, O>).fallback(method_not_allowed::<H, O>),
        )
        .route(
            "/v1/logs",
            post(export_logs::<H, O>).fallback(method_not_allowed::<H, O>),
        )
        .fallback(not_found)
        // The handlers stream the body under their own limit.
        .layer(DefaultBodyLimit::disable())
        .with_state(ingest)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Traces,
    Logs,
}

async fn export_traces<H: Handoff, O: IngestObserver>(
    State(ingest): State<Arc<Ingest<H, O>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(ingest, Signal::Traces, headers, body).await
}

async fn export_logs<H: Handoff, O: IngestObserver>(
    State(ingest): State<Arc<Ingest<H, O>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(ingest, Signal::Logs, headers, body).await
}

async fn method_not_allowed<H: Handoff, O: IngestObserver>(
    State(ingest): State<Arc<Ingest<H, O>>>,
) -> Response {
    ingest.count_refusal(&Refusal::MethodNotAllowed);
    let mut response = refusal_response(&Refusal::MethodNotAllowed, Encoding::Protobuf);
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("POST"));
    response
}

async fn not_found() -> Response {
    status_response(
        StatusCode::NOT_FOUND,
        Encoding::Protobuf,
        Code::NotFound,
        "unknown path: use /v1/traces or /v1/logs",
        ErrorDetails::new(),
    )
}

async fn export<H: Handoff, O: IngestObserver>(
    ingest: Arc<Ingest<H, O>>,
    signal: Signal,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let encoding = match media_type(&headers) {
        Ok(encoding) => encoding,
        Err(refusal) => {
            ingest.count_refusal(&refusal);
            return refusal_response(&refusal, Encoding::Protobuf);
        }
    };
    match handle(&ingest, signal, encoding, &headers, body).await {
        Ok(accepted) => success_response(signal, encoding, &accepted),
        Err(refusal) => {
            ingest.count_refusal(&refusal);
            refusal_response(&refusal, encoding)
        }
    }
}

async fn handle<H: Handoff, O: IngestObserver>(
    ingest: &Ingest<H, O>,
    signal: Signal,
    encoding: Encoding,
    headers: &HeaderMap,
    body: Body,
) -> Result<Accepted, Refusal> {
    let gzip = content_encoding(headers)?;
    let limit = ingest.limits.max_request_bytes;
    if declared_length(headers).is_some_and(|len| len > limit as u64) {
        return Err(Refusal::TooLarge { limit });
    }
    let raw = tokio::time::timeout(ingest.limits.request_timeout, read_limited(body, limit))
        .await
        .map_err(|_| Refusal::Timeout)??;
    // A plain body larger than the inline threshold, and every gzip body (a few
    // compressed bytes can inflate to the whole limit), is priced and decoded on the
    // blocking pool.
    let size = if gzip { usize::MAX } else { raw.len() };
    let interner = Arc::clone(&ingest.interner);
    let budget = Arc::clone(&ingest.budget);
    let json = encoding == Encoding::Json;
    let wal = ingest.wal.clone();
    match signal {
        Signal::Traces => {
            let (decoded, charge, entry) = decode_off_thread(size, move || {
                let body = inflate(raw, gzip, limit)?;
                let charge = price(&budget, &body, cost::Signal::Traces, json)?;
                let entry = wal_start(wal.as_deref(), crate::wal::Signal::Traces, json, &body)?;
                let req = if json {
                    parse_traces_json(&body)
                } else {
                    parse_traces_proto(&body)
                }
                .map_err(|e| Refusal::Undecodable(e.to_string()))?;
                drop(body);
                Ok((decode_traces(req, &interner), charge, entry))
            })
            .await??;
            ingest
                .accept_spans(Transport::Http, decoded, charge, entry)
                .await
        }
        Signal::Logs => {
            let (decoded, charge, entry) = decode_off_thread(size, move || {
                let body = inflate(raw, gzip, limit)?;
                let charge = price(&budget, &body, cost::Signal::Logs, json)?;
                let entry = wal_start(wal.as_deref(), crate::wal::Signal::Logs, json, &body)?;
                let req = if json {
                    parse_logs_json(&body)
                } else {
                    parse_logs_proto(&body)
                }
                .map_err(|e| Refusal::Undecodable(e.to_string()))?;
                drop(body);
                Ok((decode_logs(req, &interner), charge, entry))
            })
            .await??;
            ingest
                .accept_logs(Transport::Http, decoded, charge, entry)
                .await
        }
    }
}

fn media_type(headers: &HeaderMap) -> Result<Encoding, Refusal> {
    let raw = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let essence = raw.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(PROTOBUF) {
        Ok(Encoding::Protobuf)
    } else if essence.eq_ignore_ascii_case(JSON) {
        Ok(Encoding::Json)
    } else {
        Err(Refusal::UnsupportedMediaType(
            raw.chars().take(100).collect(),
        ))
    }
}

/// `true` for gzip, `false` for no encoding.
fn content_encoding(headers: &HeaderMap) -> Result<bool, Refusal> {
    let mut gzip = false;
    for value in headers.get_all(CONTENT_ENCODING) {
        let value = String::from_utf8_lossy(value.as_bytes());
        let value = value.trim();
        if value.eq_ignore_ascii_case("gzip") && !gzip {
            gzip = true;
        } else if !(value.is_empty() || value.eq_ignore_ascii_case("identity")) {
            return Err(Refusal::UnsupportedEncoding(
                value.chars().take(100).collect(),
            ));
        }
    }
    Ok(gzip)
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads the body frame by frame, refusing it as soon as it passes `limit`.
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, Refusal> {
    let mut body = body;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Refusal::Undecodable(format!("reading body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(Refusal::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Inflates a gzip body into at most `limit` bytes; past that the body is too large.
fn inflate(raw: Bytes, gzip: bool, limit: usize) -> Result<Bytes, Refusal> {
    if !gzip {
        return Ok(raw);
    }
    // Start from a guess (gzip of OTLP is typically 5-10x) and let the buffer grow;
    // `take` stops reading one byte past the limit, so a bomb never inflates further.
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
    let mut decoder = MultiGzDecoder::new(&raw[..]).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| Refusal::Undecodable(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(Refusal::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

fn success_response(signal: Signal, encoding: Encoding, accepted: &Accepted) -> Response {
    let partial = accepted.rejected > 0;
    let rejected = i64::try_from(accepted.rejected).unwrap_or(i64::MAX);
    let body: Vec<u8> = match encoding {
        Encoding::Protobuf => match signal {
            Signal::Traces => ExportTraceServiceResponse {
                partial_success: partial.then(|| ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: accepted.error_message(),
                }),
            }
            .encode_to_vec(),
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: partial.then(|| ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: accepted.error_message(),
                }),
            }
            .encode_to_vec(),
        },
        Encoding::Json => {
            // Full success leaves `partialSuccess` out entirely (not `null`).
            let value = if partial {
                let count_key = match signal {
                    Signal::Traces => "rejectedSpans",
                    Signal::Logs => "rejectedLogRecords",
                };
                serde_json::json!({
                    "partialSuccess": {
                        count_key: rejected,
                        "errorMessage": accepted.error_message(),
                    }
                })
            } else {
                serde_json::json!({})
            };
            value.to_string().into_bytes()
        }
    };
    (
        StatusCode::OK,
        [(CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

/// The HTTP response for a refused request; the one place HTTP codes are chosen.
fn refusal_response(refusal: &Refusal, encoding: Encoding) -> Response {
    let message = refusal.message();
    let (http, code, details) = match refusal {
        Refusal::Undecodable(_) | Refusal::UnsupportedEncoding(_) => (
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            ErrorDetails::with_bad_request_violation("body", message.clone()),
        ),
        Refusal::TooLarge { .. } | Refusal::TooCostly { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ResourceExhausted,
            ErrorDetails::new(),
        ),
        Refusal::UnsupportedMediaType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::InvalidArgument,
            ErrorDetails::with_bad_request_violation("Content-Type", message.clone()),
        ),
        Refusal::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unimplemented,
            ErrorDetails::new(),
        ),
        Refusal::Timeout => (
            StatusCode::REQUEST_TIMEOUT,
            Code::DeadlineExceeded,
            ErrorDetails::new(),
        ),
        Refusal::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            ErrorDetails::new(),
        ),
        Refusal::Overloaded(_) | Refusal::OverBudget { .. } | Refusal::WalUnavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Unavailable,
            ErrorDetails::with_retry_info(refusal.retry_after()),
        ),
    };
    let mut response = status_response(http, encoding, code, &message, details);
    if let Some(retry_after) = refusal.retry_after() {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// 401 with a `google.rpc.Status` (`UNAUTHENTICATED`) in the request's encoding
/// (protobuf when it names none): the answer of the ingest token check.
pub(crate) fn unauthenticated_response(headers: &HeaderMap, message: &str) -> Response {
    let encoding = media_type(headers).unwrap_or(Encoding::Protobuf);
    status_response(
        StatusCode::UNAUTHORIZED,
        encoding,
        Code::Unauthenticated,
        message,
        ErrorDetails::new(),
    )
}

/// A `google.rpc.Status` body: protobuf with its details (`BadRequest`, `RetryInfo`),
/// or JSON with code and message.
fn status_response(
    http: StatusCode,
    encoding: Encoding,
    code: Code,
    message: &str,
    details: ErrorDetails,
) -> Response {
    let body = match encoding {
        // tonic-types encodes the whole google.rpc.Status (code, message, details as
        // `Any`) into the status details.
        Encoding::Protobuf => tonic::Status::with_error_details(code, message, details)
            .details()
            .to_vec(),
        Encoding::Json => serde_json::json!({ "code": code as i32, "message": message })
            .to_string()
            .into_bytes(),
    };
    (http, [(CONTENT_TYPE, encoding.content_type())], body).into_response()
}
