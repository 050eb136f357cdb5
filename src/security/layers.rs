//! The security layers of the listeners' routers and the gRPC interceptor.
//!
//! - OTLP/HTTP: CORS (outermost, so that a preflight never needs a token), then the
//!   ingest token.
//! - OTLP/gRPC: the ingest token in an interceptor (`UNAUTHENTICATED`).
//! - API: the `Host` check (outermost, every path), then the API token (every path but
//!   `/healthz`, `/readyz` and the page's own files), and `nosniff` / `no-store` on the
//!   responses.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD,
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, ORIGIN, VARY, WWW_AUTHENTICATE,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;

use super::hosts::{AllowedHosts, OriginPatterns};
use super::token::{AuthRefusal, TokenFile};

/// A token file and the refusal counters of one listener.
#[derive(Clone, Debug)]
pub struct TokenGuard {
    tokens: Arc<TokenFile>,
    /// One counter per [`AuthRefusal`], in [`AuthRefusal::ALL`] order.
    refused: Arc<[Counter; 3]>,
}

impl TokenGuard {
    pub fn new(tokens: Arc<TokenFile>, refused: [Counter; 3]) -> TokenGuard {
        TokenGuard {
            tokens,
            refused: Arc::new(refused),
        }
    }

    /// Checks an `Authorization` value and counts a refusal.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), AuthRefusal> {
        let result = self.tokens.check(authorization);
        if let Err(reason) = result {
            if let Some(i) = AuthRefusal::ALL.iter().position(|r| *r == reason) {
                self.refused[i].inc();
            }
        }
        result
    }

    fn check_headers(&self, headers: &HeaderMap) -> Result<(), AuthRefusal> {
        self.check(headers.get(AUTHORIZATION).map(HeaderValue::as_bytes))
    }
}

/// `WWW-Authenticate` of a 401 (RFC 6750).
fn challenge(reason: AuthRefusal) -> HeaderValue {
    HeaderValue::from_static(match reason {
        AuthRefusal::Unknown => r#"Bearer realm="faultline", error="invalid_token""#,
        AuthRefusal::Missing | AuthRefusal::Malformed => r#"Bearer realm="faultline""#,
    })
}

/// The gRPC interceptor of the OTLP services: a missing or unknown token is
/// `UNAUTHENTICATED`. Passes everything when `guard` is `None`.
pub fn grpc_interceptor(
    guard: Option<TokenGuard>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |request: tonic::Request<()>| {
        if let Some(guard) = &guard {
            let value = request
                .metadata()
                .get("authorization")
                .map(|v| v.as_bytes());
            guard
                .check(value)
                .map_err(|reason| tonic::Status::unauthenticated(reason.message()))?;
        }
        Ok(request)
    }
}

/// The body of a refused OTLP/HTTP request, in the encoding the request asked for
/// (ingest knows OTLP's status shapes; this module does not).
pub type RefusalBody = fn(&HeaderMap, &str) -> Response;

async fn ingest_auth(
    State((guard, refusal)): State<(TokenGuard, RefusalBody)>,
    request: Request,
    next: Next,
) -> Response {
    match guard.check_headers(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            let mut response = refusal(request.headers(), reason.message());
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, challenge(reason));
            response
        }
    }
}

/// Request headers a browser may send to OTLP/HTTP (besides the CORS-safelisted ones).
const CORS_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "authorization",
    "accept",
    "x-requested-with",
];
/// How long a browser may cache a preflight answer, in seconds.
const CORS_MAX_AGE: &str = "7200";

#[derive(Debug, Clone)]
struct Cors {
    origins: OriginPatterns,
    /// Whether `Authorization` is allowed (tokens are on).
    authorization: bool,
}

impl Cors {
    fn header_allowed(&self, name: &str) -> bool {
        let name = name.trim().to_ascii_lowercase();
        name.is_empty()
            || (CORS_HEADERS.contains(&name.as_str())
                && (self.authorization || name != "authorization"))
    }
}

/// CORS of OTLP/HTTP, as the collector's receiver answers: a preflight from an allowed
/// origin for `POST` with allowed headers gets 204 with the `Access-Control-*`
/// headers; any other preflight gets 204 without them (the browser then refuses); an
/// actual request from an allowed origin gets `Access-Control-Allow-Origin`.
async fn cors(State(cors): State<Arc<Cors>>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let allowed = origin.to_str().is_ok_and(|o| cors.origins.allows(o));
    let vary = HeaderValue::from_static(
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    );
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    {
        let headers = request.headers();
        let method_ok = headers
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|m| m.as_bytes() == b"POST");
        let requested = headers
            .get(ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let headers_ok = requested.split(',').all(|h| cors.header_allowed(h));
        let mut response = StatusCode::NO_CONTENT.into_response();
        let out = response.headers_mut();
        out.insert(VARY, vary);
        if allowed && method_ok && headers_ok {
            out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            out.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST"),
            );
            if let Ok(v) = HeaderValue::from_str(requested.trim()) {
                if !v.is_empty() {
                    out.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
                }
            }
            out.insert(
                ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(CORS_MAX_AGE),
            );
        }
        return response;
    }
    let mut response = next.run(request).await;
    let out = response.headers_mut();
    out.insert(VARY, HeaderValue::from_static("Origin"));
    if allowed {
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}

/// The OTLP/HTTP router with its token check and CORS; a refused token gets a 401 with
/// the body `refusal` makes.
pub fn otlp_http(
    router: Router,
    guard: Option<TokenGuard>,
    origins: OriginPatterns,
    refusal: RefusalBody,
) -> Router {
    let authorization = guard.is_some();
    let router = match guard {
        Some(guard) => router.layer(axum::middleware::from_fn_with_state(
            (guard, refusal),
            ingest_auth,
        )),
        None => router,
    };
    if origins.is_empty() {
        return router;
    }
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(Cors {
            origins,
            authorization,
        }),
        cors,
    ))
}

fn json_error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Paths of the API listener answered without a token: the probes and the page's own
/// files (which hold no data; the page asks for the token, then sends it).
fn open_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/") || path.starts_with("/assets/")
}

async fn api_auth(State(guard): State<TokenGuard>, request: Request, next: Next) -> Response {
    if open_path(request.uri().path()) {
        return next.run(request).await;
    }
    match guard.check_headers(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            let mut response = json_error(StatusCode::UNAUTHORIZED, reason.message().to_owned());
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, challenge(reason));
            response
        }
    }
}

#[derive(Debug, Clone)]
struct HostCheck {
    hosts: AllowedHosts,
    refused: Counter,
}

/// The `Host` of a request: the `:authority` of HTTP/2, else the `Host` header.
fn request_host(request: &Request) -> Option<String> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.as_str().to_owned());
    }
    request
        .headers()
        .get(HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn host_check(State(check): State<Arc<HostCheck>>, request: Request, next: Next) -> Response {
    let host = request_host(&request);
    if host.as_deref().is_some_and(|h| check.hosts.allows(h)) {
        return next.run(request).await;
    }
    check.refused.inc();
    let shown: String = host
        .as_deref()
        .unwrap_or("")
        .chars()
        .take(100)
        .filter(|c| !c.is_control())
        .collect();
    let message = match host {
        None => "the request has no Host header".to_owned(),
        Some(_) => format!(
            "the Host `{shown}` is not a name of this server (DNS-rebinding guard); \
             add it with --api-allowed-hosts or [auth] api_allowed_hosts"
        ),
    };
    json_error(StatusCode::FORBIDDEN, message)
}

/// `nosniff` on every response, and `Cache-Control: no-store` on data (JSON and the
/// metrics), unless the handler set its own.
async fn api_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !headers.contains_key(X_CONTENT_TYPE_OPTIONS) {
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    }
    let is_data = headers.get(CONTENT_TYPE).is_some_and(|t| {
        let t = t.as_bytes();
        t.starts_with(b"application/json") || t.starts_with(b"application/openmetrics-text")
    });
    if is_data && !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The API router with its headers, token check and `Host` check.
pub fn api(
    router: Router,
    guard: Option<TokenGuard>,
    hosts: AllowedHosts,
    host_refused: Counter,
) -> Router {
    let router = match guard {
        Some(guard) => router.layer(axum::middleware::from_fn_with_state(guard, api_auth)),
        None => router,
    };
    // A refused Host learns nothing, not even whether a token is needed; every answer,
    // refusals included, carries the headers.
    router
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(HostCheck {
                hosts,
                refused: host_refused,
            }),
            host_check,
        ))
        .layer(axum::middleware::from_fn(api_headers))
}
