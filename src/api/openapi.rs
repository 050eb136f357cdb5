//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every endpoint, hand-written
//! beside this file (`openapi.json`) and embedded in the binary. A test checks that
//! every route of the router is in it.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}

#[cfg(test)]
mod tests {
    use super::DOCUMENT;

    /// The paths given to `.route(` in the router's source.
    fn routes_in(source: &str) -> Vec<String> {
        let re = regex::Regex::new(r#"\.route\(\s*"([^"]+)""#).unwrap();
        re.captures_iter(source).map(|c| c[1].to_owned()).collect()
    }

    #[test]
    fn every_route_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let routes = routes_in(include_str!("mod.rs"));
        assert!(routes.len() >= 9, "routes found: {routes:?}");
        for r in &routes {
            assert!(paths.contains_key(r), "route {r} is not in openapi.json");
        }
        for p in [
            "/api/v1/trajectories",
            "/api/v1/trajectories/{trace_id}",
            "/api/v1/sessions/{session_id}",
            "/api/v1/breakdown",
            "/api/v1/reasons",
            "/api/v1/cohorts",
            "/api/v1/compare",
            "/api/v1/alerts",
            "/metrics",
            "/healthz",
            "/readyz",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
        // Every $ref resolves.
        let text = DOCUMENT;
        let re = regex::Regex::new(r##""\$ref": "#/components/(\w+)/(\w+)""##).unwrap();
        for c in re.captures_iter(text) {
            assert!(
                doc["components"][&c[1]].get(&c[2]).is_some(),
                "unresolved $ref {}/{}",
                &c[1],
                &c[2]
            );
        }
    }
}
