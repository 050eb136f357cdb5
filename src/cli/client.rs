//! The HTTP client of the commands that read a running server (`top`, `trajectories`,
//! `show`, `reasons`, `cohorts`).
//!
//! Every such command takes `--server URL` (env `FAULTLINE_SERVER`, default
//! `http://127.0.0.1:8700`) and `--json` (print the API's answer as is). Errors map to
//! exit codes: the server cannot be reached → 1, naming the URL; the server refuses the
//! request (HTTP 4xx) → 2 with the server's own `error` message; a 5xx or an answer that
//! is not JSON → 1.

use std::time::Duration;

use clap::Args;
use reqwest::Url;
use serde_json::Value;

/// The server's default API address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8700";

/// Options shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The faultline server to ask (its API address).
    #[arg(
        long,
        env = "FAULTLINE_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL"
    )]
    pub server: String,
    /// Print the API's JSON answer as is, instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Why a request to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid --server `{url}`: {message}")]
    BadUrl { url: String, message: String },
    #[error("cannot reach the faultline server at {url}: {message} (is `faultline serve` running there? set --server or FAULTLINE_SERVER)")]
    Unreachable { url: String, message: String },
    #[error("the server refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the server at {url} failed (HTTP {status}): {message}")]
    Server {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the server at {url} answered with something that is not JSON: {message}")]
    NotJson { url: String, message: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ClientError {
    /// 2 for a refused request or bad usage, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::BadUrl { .. }
            | ClientError::Refused { .. }
            | ClientError::InvalidArgument(_) => 2,
            ClientError::Unreachable { .. }
            | ClientError::Server { .. }
            | ClientError::NotJson { .. } => 1,
        }
    }
}

/// An answer: the body as sent (for `--json`) and parsed.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub json: Value,
}

/// A client of one server.
#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
}

/// The longest error text echoed from a server.
const MAX_ECHO: usize = 500;

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_ECHO) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Parses `--server`: a URL, or `host:port` taken as `http://host:port`.
pub fn parse_server(server: &str) -> Result<Url, ClientError> {
    let text = server.trim();
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let bad = |message: String| ClientError::BadUrl {
        url: server.to_owned(),
        message,
    };
    let url = Url::parse(&with_scheme).map_err(|e| bad(e.to_string()))?;
    if url.scheme() != "http" {
        return Err(bad(format!(
            "scheme `{}` is not supported: use http:// (TLS is not built in)",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("give the server's address without a query".into()));
    }
    Ok(url)
}

impl Client {
    pub fn new(server: &str) -> Result<Client, ClientError> {
        let base = parse_server(server)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::BadUrl {
                url: server.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Client { base, http })
    }

    /// The server's base URL, as shown in messages.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL of `segments` (each percent-encoded) under the base path.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// GETs `segments` with `query` (empty values are left out) and parses the JSON.
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Answer, ClientError> {
        let url = self.url(segments);
        let shown = self.base.as_str().trim_end_matches('/').to_owned();
        let query: Vec<(&str, &str)> = query
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        tracing::debug!(%url, ?query, "GET");
        let response = self.http.get(url).query(&query).send().await.map_err(|e| {
            ClientError::Unreachable {
                url: shown.clone(),
                message: error_chain(&e),
            }
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: shown.clone(),
                message: error_chain(&e),
            })?;
        let json: Result<Value, _> = serde_json::from_str(&text);
        if status.is_client_error() {
            let message = json
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(clip))
                .unwrap_or_else(|| clip(&text));
            return Err(ClientError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        if !status.is_success() {
            return Err(ClientError::Server {
                url: shown,
                status: status.as_u16(),
                message: clip(&text),
            });
        }
        match json {
            Ok(json) => Ok(Answer { text, json }),
            Err(e) => Err(ClientError::NotJson {
                url: shown,
                message: e.to_string(),
            }),
        }
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)"), which says
/// more than reqwest's "error sending request"; timeouts say so.
fn error_chain(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = s.to_string();
        source = s.source();
    }
    message
}
