//! The `[metrics_push]` table of the config file and its flags: where and how often the
//! metrics are pushed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

/// `[metrics_push]`: each key is also a flag `--metrics-push-<key>` and a variable
/// `FAULTLINE_METRICS_PUSH_<KEY>` (see `config.rs`). Every key is optional; without
/// `endpoint` nothing is pushed.
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPushConfig {
    /// Push the /metrics series over OTLP to this collector endpoint, such as
    /// http://collector:4317 (gRPC) or http://collector:4318 (HTTP, /v1/metrics is
    /// appended); https for TLS. File: [metrics_push] endpoint [default: no push].
    #[arg(
        id = "metrics_push_endpoint",
        long = "metrics-push-endpoint",
        env = "FAULTLINE_METRICS_PUSH_ENDPOINT",
        value_name = "URL"
    )]
    pub endpoint: Option<String>,
    /// Time between OTLP metrics pushes; one more is made at shutdown.
    #[arg(
        id = "metrics_push_interval",
        long = "metrics-push-interval",
        env = "FAULTLINE_METRICS_PUSH_INTERVAL",
        value_name = "DURATION"
    )]
    pub interval: Option<String>,
    /// OTLP metrics push protocol: grpc or http/protobuf.
    #[arg(
        id = "metrics_push_protocol",
        long = "metrics-push-protocol",
        env = "FAULTLINE_METRICS_PUSH_PROTOCOL",
        value_name = "PROTOCOL"
    )]
    pub protocol: Option<String>,
    /// Longest wait for one OTLP metrics push, connecting included.
    #[arg(
        id = "metrics_push_timeout",
        long = "metrics-push-timeout",
        env = "FAULTLINE_METRICS_PUSH_TIMEOUT",
        value_name = "DURATION"
    )]
    pub timeout: Option<String>,
    /// Headers (gRPC metadata) of every OTLP metrics push, as name=value,name=value;
    /// replaces [metrics_push] headers.
    #[arg(
        id = "metrics_push_headers",
        long = "metrics-push-headers",
        env = "FAULTLINE_METRICS_PUSH_HEADERS",
        value_name = "LIST",
        hide_env_values = true,
        value_parser = Headers::parse_list
    )]
    pub headers: Option<Headers>,
    /// CA certificates (PEM) trusted for an https metrics push endpoint, besides the
    /// system's. File: [metrics_push] ca_file.
    #[arg(
        id = "metrics_push_ca_file",
        long = "metrics-push-ca-file",
        env = "FAULTLINE_METRICS_PUSH_CA_FILE",
        value_name = "FILE"
    )]
    pub ca_file: Option<PathBuf>,
}

/// The push's headers: a table in the file (`headers = { "X-Tenant" = "a" }`), or
/// `name=value,name=value` on the command line (the form of
/// `OTEL_EXPORTER_OTLP_HEADERS`).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Headers {
    Table(BTreeMap<String, String>),
    List(String),
}

impl Headers {
    /// The command line's form, checked when the settings are resolved.
    fn parse_list(list: &str) -> Result<Headers, std::convert::Infallible> {
        Ok(Headers::List(list.to_owned()))
    }
}

impl From<BTreeMap<String, String>> for Headers {
    fn from(table: BTreeMap<String, String>) -> Headers {
        Headers::Table(table)
    }
}

impl fmt::Debug for Headers {
    // Header values are often credentials: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Headers::Table(t) => f.debug_list().entries(t.keys()).finish(),
            Headers::List(_) => f.write_str("[list]"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Validated push settings.
#[derive(Clone, PartialEq)]
pub struct PushConfig {
    /// The URL requests go to: the endpoint as given for gRPC; for HTTP, the endpoint
    /// with `/v1/metrics` appended when it has no path.
    pub endpoint: String,
    pub protocol: Protocol,
    pub interval: Duration,
    pub timeout: Duration,
    /// Lower-case names, values of visible ASCII.
    pub headers: Vec<(String, String)>,
    /// Extra CA certificates for an https endpoint (checked to load).
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for PushConfig {
    // Header values are often credentials: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_PROTOCOL: Protocol = Protocol::Grpc;
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// A bad `[metrics_push]` value: the key (where it came from is known to the caller,
/// which merged the sources).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metrics_push.{key}: {message}")]
pub struct PushConfigError {
    pub key: &'static str,
    pub message: String,
}

impl PushConfig {
    /// Validates every key of the merged `[metrics_push]` (flags, environment and file
    /// already merged by `config.rs`), also when there is no endpoint (a typo is an
    /// error either way). `Ok(None)`: no push.
    pub fn resolve(raw: Option<&RawPushConfig>) -> Result<Option<PushConfig>, PushConfigError> {
        let empty = RawPushConfig::default();
        let raw = raw.unwrap_or(&empty);
        let err = |key: &'static str, message: String| PushConfigError { key, message };
        let duration = |key: &'static str, v: &Option<String>, default: Duration| {
            let Some(v) = v else {
                return Ok(default);
            };
            humantime::parse_duration(v.trim()).map_err(|e| {
                err(
                    key,
                    format!("`{v}` is not a duration such as 10s or 1m ({e})"),
                )
            })
        };

        let interval = duration("interval", &raw.interval, DEFAULT_INTERVAL)?;
        if interval < MIN_INTERVAL {
            return Err(err(
                "interval",
                format!(
                    "must be at least {}",
                    humantime::format_duration(MIN_INTERVAL)
                ),
            ));
        }
        let timeout = duration("timeout", &raw.timeout, DEFAULT_TIMEOUT)?;
        if timeout.is_zero() {
            return Err(err("timeout", "must be greater than zero".into()));
        }
        let protocol = match &raw.protocol {
            None => DEFAULT_PROTOCOL,
            Some(p) => match p.trim() {
                "grpc" => Protocol::Grpc,
                "http/protobuf" => Protocol::HttpProtobuf,
                _ => {
                    return Err(err(
                        "protocol",
                        format!("`{p}` is not `grpc` or `http/protobuf`"),
                    ))
                }
            },
        };
        let headers = match &raw.headers {
            Some(Headers::List(list)) => parse_header_list(list)
                .and_then(|h| check_headers(h.into_iter()))
                .map_err(|m| err("headers", m))?,
            Some(Headers::Table(map)) => {
                check_headers(map.iter().map(|(n, v)| (n.clone(), v.clone())))
                    .map_err(|m| err("headers", m))?
            }
            None => Vec::new(),
        };
        if let Some(path) = &raw.ca_file {
            crate::security::tls::read_ca_file(path).map_err(|e| err("ca_file", e.to_string()))?;
        }
        let Some(endpoint) = &raw.endpoint else {
            return Ok(None);
        };
        let endpoint = check_endpoint(endpoint.trim(), protocol).map_err(|m| err("endpoint", m))?;
        Ok(Some(PushConfig {
            endpoint,
            protocol,
            interval,
            timeout,
            headers,
            ca_file: raw.ca_file.clone(),
        }))
    }
}

/// The URL to send to, or why the endpoint is not usable.
fn check_endpoint(endpoint: &str, protocol: Protocol) -> Result<String, String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("`{endpoint}` is not a URL such as http://collector:4317 ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "`{endpoint}` is not a URL such as http://collector:4317"
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{endpoint}` has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("`{endpoint}` must not have a query"));
    }
    let path = uri.path();
    match protocol {
        Protocol::Grpc if path != "/" && !path.is_empty() => Err(format!(
            "`{endpoint}`: a gRPC endpoint has no path (the service's path is fixed)"
        )),
        Protocol::Grpc => Ok(endpoint.trim_end_matches('/').to_owned()),
        Protocol::HttpProtobuf if path == "/" || path.is_empty() => {
            Ok(format!("{}/v1/metrics", endpoint.trim_end_matches('/')))
        }
        Protocol::HttpProtobuf => Ok(endpoint.to_owned()),
    }
}

/// `name=value,name=value` (the form of `OTEL_EXPORTER_OTLP_HEADERS`, without
/// percent-decoding).
fn parse_header_list(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((n, v)) => Ok((n.trim().to_owned(), v.trim().to_owned())),
            None => Err(format!("`{pair}` is not `name=value`")),
        })
        .collect()
}

/// Validated header names (lower case) and values, shared by every outgoing client.
pub(crate) fn check_headers(
    headers: impl Iterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if lower.is_empty()
            || http::HeaderName::from_bytes(lower.as_bytes()).is_err()
            || lower.starts_with("grpc-")
        {
            return Err(format!("`{name}` is not a usable header name"));
        }
        if matches!(lower.as_str(), "content-type" | "te" | "content-length") {
            return Err(format!("`{name}` is set by faultline itself"));
        }
        // Visible ASCII and spaces: valid both as an HTTP header and as gRPC metadata.
        if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            return Err(format!("the value of `{name}` must be printable ASCII"));
        }
        if out.iter().any(|(n, _)| *n == lower) {
            return Err(format!("`{name}` is given twice"));
        }
        out.push((lower, value));
    }
    Ok(out)
}
