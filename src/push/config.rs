//! The `[metrics_push]` table of the config file and its flags: where and how often the
//! metrics are pushed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[metrics_push]` as written. Every key is optional; without `endpoint` nothing is
/// pushed.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPushConfig {
    /// The collector's OTLP endpoint, `http://collector:4317` for gRPC or
    /// `http://collector:4318` for HTTP. Default: none (no push).
    pub endpoint: Option<String>,
    /// Time between pushes. Default `60s`.
    pub interval: Option<String>,
    /// `grpc` or `http/protobuf`. Default `grpc`.
    pub protocol: Option<String>,
    /// Longest wait for one push, connection included. Default `10s`.
    pub timeout: Option<String>,
    /// Headers (gRPC metadata) sent with every push, such as an API key.
    pub headers: Option<BTreeMap<String, String>>,
    /// CA certificates (PEM) trusted for an https endpoint, besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// Values from flags and environment variables; each wins over the file's key.
#[derive(Debug, Default, Clone)]
pub struct PushOverrides {
    pub endpoint: Option<String>,
    pub interval: Option<String>,
    pub protocol: Option<String>,
    pub timeout: Option<String>,
    /// `name=value,name=value`, replacing the file's `headers`.
    pub headers: Option<String>,
    pub ca_file: Option<PathBuf>,
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
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// A bad `[metrics_push]` value: the key, and whether it came from the file (else from a
/// flag or the environment).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metrics_push.{key}: {message}")]
pub struct PushConfigError {
    pub key: &'static str,
    pub message: String,
    pub from_file: bool,
}

impl PushConfig {
    /// Merges the flags over the file and validates every key, also when there is no
    /// endpoint (a typo is an error either way). `Ok(None)`: no push.
    pub fn resolve(
        raw: Option<&RawPushConfig>,
        over: &PushOverrides,
    ) -> Result<Option<PushConfig>, PushConfigError> {
        let empty = RawPushConfig::default();
        let raw = raw.unwrap_or(&empty);
        let pick = |o: &Option<String>, f: &Option<String>| match (o, f) {
            (Some(v), _) => Some((v.clone(), false)),
            (None, Some(v)) => Some((v.clone(), true)),
            (None, None) => None,
        };
        let err = |key: &'static str, from_file: bool, message: String| PushConfigError {
            key,
            message,
            from_file,
        };
        let duration = |key: &'static str, v: Option<(String, bool)>, default: Duration| {
            let Some((v, from_file)) = v else {
                return Ok(default);
            };
            humantime::parse_duration(v.trim()).map_err(|e| {
                err(
                    key,
                    from_file,
                    format!("`{v}` is not a duration such as 10s or 1m ({e})"),
                )
            })
        };

        let interval = duration(
            "interval",
            pick(&over.interval, &raw.interval),
            DEFAULT_INTERVAL,
        )?;
        if interval < MIN_INTERVAL {
            return Err(err(
                "interval",
                over.interval.is_none(),
                format!(
                    "must be at least {}",
                    humantime::format_duration(MIN_INTERVAL)
                ),
            ));
        }
        let timeout = duration(
            "timeout",
            pick(&over.timeout, &raw.timeout),
            DEFAULT_TIMEOUT,
        )?;
        if timeout.is_zero() {
            return Err(err(
                "timeout",
                over.timeout.is_none(),
                "must be greater than zero".into(),
            ));
        }
        let protocol = match pick(&over.protocol, &raw.protocol) {
            None => Protocol::Grpc,
            Some((p, from_file)) => match p.trim() {
                "grpc" => Protocol::Grpc,
                "http/protobuf" => Protocol::HttpProtobuf,
                _ => {
                    return Err(err(
                        "protocol",
                        from_file,
                        format!("`{p}` is not `grpc` or `http/protobuf`"),
                    ))
                }
            },
        };
        let headers = match (&over.headers, &raw.headers) {
            (Some(list), _) => parse_header_list(list)
                .and_then(|h| check_headers(h.into_iter()))
                .map_err(|m| err("headers", false, m))?,
            (None, Some(map)) => check_headers(map.iter().map(|(n, v)| (n.clone(), v.clone())))
                .map_err(|m| err("headers", true, m))?,
            (None, None) => Vec::new(),
        };
        let ca_file = match (&over.ca_file, &raw.ca_file) {
            (Some(f), _) => Some((f.clone(), false)),
            (None, Some(f)) => Some((f.clone(), true)),
            (None, None) => None,
        };
        if let Some((path, from_file)) = &ca_file {
            crate::security::tls::read_ca_file(path)
                .map_err(|e| err("ca_file", *from_file, e.to_string()))?;
        }
        let ca_file = ca_file.map(|(f, _)| f);
        let Some((endpoint, from_file)) = pick(&over.endpoint, &raw.endpoint) else {
            return Ok(None);
        };
        let endpoint =
            check_endpoint(endpoint.trim(), protocol).map_err(|m| err("endpoint", from_file, m))?;
        Ok(Some(PushConfig {
            endpoint,
            protocol,
            interval,
            timeout,
            headers,
            ca_file,
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
