//! The web page: static assets embedded in the binary, served at `/` and `/assets/*`.
//!
//! No build step: plain HTML, CSS and JavaScript. All span content is rendered as inert
//! text by `assets/app.js`, and a strict Content-Security-Policy forbids inline scripts,
//! inline styles in markup, and any origin but our own. `assets/auth.js`, loaded first,
//! adds the API token (kept in sessionStorage for the tab) to the page's requests and
//! asks for it with a small form when the server answers 401.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const AUTH_JS: &str = include_str!("assets/auth.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The Content-Security-Policy of every page and asset: nothing inline, nothing from
/// another origin. (`assets/app.js` positions bars through the CSSOM, which CSP allows.)
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// Routes of the web page, merged into the API router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/auth.js",
            get(|| async { asset("text/javascript; charset=utf-8", AUTH_JS) }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}
