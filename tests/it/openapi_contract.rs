//! `openapi.json` against a running server: every documented query parameter of every
//! documented path is sent (with its documented example) and must be taken, and the
//! parameters the server takes (the `allowed:` list of its answer to an unknown one)
//! must be exactly the documented ones.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::api::{feed, wait_all};
use crate::support::{api_url, get_json, start_server};

/// The breakdown's `from` and `to` go together and must lie within its horizon (the
/// documented examples are fixed instants): the last ten minutes.
fn breakdown_range() -> Vec<(String, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    vec![
        ("from".to_owned(), (now - 600_000_000_000).to_string()),
        ("to".to_owned(), now.to_string()),
    ]
}

/// The parameter names of an `unknown query parameter `x`; allowed: a, b, c` error (a
/// trailing `dim.<dimension> or a dimension name (...)` is the dimension filters).
fn allowed_list(message: &str) -> Option<BTreeSet<String>> {
    let list = message.split_once("allowed: ")?.1;
    Some(
        list.split(", ")
            .take_while(|p| !p.starts_with("dim."))
            .map(|p| p.trim().to_owned())
            .collect(),
    )
}

fn example_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_parameter_is_taken_and_every_taken_one_documented() {
    let running = start_server("300ms").await;
    let labels = feed(&running, 30, 5).await;
    wait_all(&running, &labels).await;
    let (_, page) = get_json(&running, "/api/v1/trajectories?limit=1").await;
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next cursor with 30 runs stored")
        .to_owned();
    let trace_id = labels[0].trace_id.clone();
    let (_, t) = get_json(&running, &format!("/api/v1/trajectories/{trace_id}")).await;
    let session_id = t["session_id"].as_str().unwrap_or("no-session").to_owned();

    let (status, doc) = get_json(&running, "/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let client = reqwest::Client::new();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let Some(op) = item.get("get") else { continue };
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let mut concrete = path.clone();
        for p in params.iter().filter(|p| p["in"] == "path") {
            let name = p["name"].as_str().expect("name");
            let value = match name {
                "trace_id" => trace_id.clone(),
                "session_id" => session_id.clone(),
                other => panic!("{path}: no value for the path parameter {other}"),
            };
            concrete = concrete.replace(&format!("{{{name}}}"), &value);
        }
        let documented: BTreeSet<String> = params
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().expect("name").to_owned())
            .collect();
        let required: Vec<(String, String)> = params
            .iter()
            .filter(|p| p["in"] == "query" && p["required"] == true)
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or_default().to_owned(),
                    example_text(&p["example"]),
                )
            })
            .collect();
        let get = |query: Vec<(String, String)>| {
            client
                .get(api_url(&running, &concrete))
                .query(&query)
                .send()
        };

        // What the server takes, from its answer to an unknown parameter.
        let mut bogus = required.clone();
        bogus.push(("zz_not_a_parameter".into(), "1".into()));
        let resp = get(bogus).await.expect("the API answers");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if documented.is_empty() {
            // No query parameters documented: the endpoint reads none.
            assert_eq!(status, 200, "{path} takes no parameters: {body}");
        } else {
            assert_eq!(status, 400, "{path} refuses an unknown parameter: {body}");
            let message = body["error"].as_str().unwrap_or_default();
            assert!(
                message.contains("unknown query parameter"),
                "{path}: {message}"
            );
            let taken = allowed_list(message).expect("an allowed: list");
            assert_eq!(
                taken, documented,
                "{path}: parameters the server takes vs openapi.json"
            );
        }

        // Each documented parameter, with its example, is taken.
        for p in params.iter().filter(|p| p["in"] == "query") {
            let name = p["name"].as_str().expect("name").to_owned();
            let value = if name == "cursor" {
                cursor.clone()
            } else {
                assert!(
                    !p["example"].is_null(),
                    "{path}: parameter {name} has no example"
                );
                example_text(&p["example"])
            };
            let mut query: Vec<(String, String)> = required
                .iter()
                .filter(|(n, _)| *n != name)
                .cloned()
                .collect();
            if path == "/api/v1/breakdown" && (name == "from" || name == "to") {
                query.extend(breakdown_range());
            } else {
                query.push((name.clone(), value));
            }
            let resp = get(query.clone()).await.expect("the API answers");
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            assert_eq!(status, 200, "{path} {query:?}: {body}");
            checked += 1;
        }
        if documented.is_empty() || !required.is_empty() {
            let resp = get(required.clone()).await.expect("answers");
            assert_eq!(resp.status(), 200, "{path} with its required parameters");
        }
    }
    assert!(checked >= 30, "only {checked} parameters checked");
    running.shutdown().await;
}
