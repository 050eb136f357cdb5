//! Configuration: the TOML file, `FAULTLINE_*` environment variables and flags, validated
//! once into [`Settings`].
//!
//! Precedence: flag, then environment variable (both handled by clap), then the config
//! file, then the built-in default. Every `serve` option is all three: the flag
//! `--idle-timeout`, the variable `FAULTLINE_IDLE_TIMEOUT` and the top-level key
//! `idle_timeout`. Lists (classification rules, detection rules) live in the file's
//! `[classify]` and `[detect]` tables. The OTLP metrics push is the exception to the
//! top-level rule: `--metrics-push-endpoint` / `FAULTLINE_METRICS_PUSH_ENDPOINT` set the
//! key `endpoint` of the `[metrics_push]` table, and so on for its other keys; so do
//! `--wal-enabled`, `--wal-fsync`, `--wal-fsync-interval`, `--wal-segment-bytes`,
//! `--wal-max-bytes` for the
//! keys of `[wal]` (`FAULTLINE_WAL_*`). Likewise
//! `--tls-cert-file`, `--tls-key-file` and `--tls-client-ca-file` set the keys of `[tls]`
//! (which per-listener tables `[tls.otlp_grpc]`, `[tls.otlp_http]`, `[tls.api]` refine),
//! and `--ingest-token-file`, `--api-token-file`, `--api-allowed-hosts`,
//! `--otlp-http-cors-origins` the keys of `[auth]` (lists comma-separated on the command
//! line, TOML arrays in the file).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A problem with the configuration, naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        /// The config file, or `flag or environment` when the value did not come from it.
        origin: String,
        key: String,
        message: String,
    },
}

/// The config file as written. Every key is optional; unknown keys are an error, so a
/// typo never silently falls back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// OTLP/gRPC listen address (`TraceService`, `LogsService`). Default `127.0.0.1:4317`.
    pub otlp_grpc_address: Option<String>,
    /// OTLP/HTTP listen address (`/v1/traces`, `/v1/logs`). Default `127.0.0.1:4318`.
    pub otlp_http_address: Option<String>,
    /// HTTP API, web page and `/metrics`. Default `127.0.0.1:8700`.
    pub api_address: Option<String>,
    /// Where the embedded store keeps its files. Default `./faultline-data`.
    pub data_dir: Option<PathBuf>,
    /// A trace whose root span ended completes after this long without new spans. Default `5s`.
    pub idle_timeout: Option<String>,
    /// A trace is released (flagged incomplete if it has no root) this long after its
    /// first span. Default `10m`.
    pub max_trace_age: Option<String>,
    /// Late spans and evaluator results within this period after release are merged and
    /// the trajectory is re-analysed; later ones are counted as late. Default `60s`.
    pub late_grace: Option<String>,
    /// Spans held in memory across all open traces. At the bound the oldest trace is
    /// released to analysis early, flagged incomplete. Default 1 000 000.
    pub max_buffered_spans: Option<usize>,
    /// Spans kept per trace; a trace reaching it is released flagged incomplete. Default 10 000.
    pub max_spans_per_trace: Option<usize>,
    /// Deepest parent chain kept in a trajectory; deeper spans are re-hung under their
    /// ancestor at this depth and the trajectory is flagged. Default 1 000.
    pub max_trace_depth: Option<usize>,
    /// Largest request accepted, in bytes after decompression. Default 64 MiB.
    pub max_request_bytes: Option<usize>,
    /// Connections open at once on each listener (OTLP/gRPC, OTLP/HTTP, API); at the
    /// cap a listener stops accepting until one closes. Default 4096.
    pub max_connections: Option<usize>,
    /// An HTTP connection without a request in flight for this long (one that sends
    /// nothing, or its request head too slowly, or idles) is closed; a gRPC connection
    /// must send its HTTP/2 preface within it. Default `10s`.
    pub header_read_timeout: Option<String>,
    /// Spans waiting for analysis before ingest refuses with a retryable status.
    /// Default 200 000.
    pub max_queued_spans: Option<usize>,
    /// Shard threads that assemble and analyse traces. Default: the number of cores.
    pub shards: Option<usize>,
    /// Analysed trajectories kept in memory for the API. Default 10 000.
    pub recent_trajectories: Option<usize>,
    /// Span classification rules (`[[classify.rules]]`).
    pub classify: Option<crate::classify::RawClassifyConfig>,
    /// Per-step metrics and cohort breakdowns (`[aggregate]`): horizon, top-K values per
    /// dimension, series cap, cohort dimensions.
    pub aggregate: Option<crate::aggregate::config::RawAggregateConfig>,
    /// Failure detection settings (`[detect]`): evaluator thresholds, tool-error
    /// patterns, loop threshold, per-step latency SLOs, output rules.
    pub detect: Option<crate::detect::RawDetectConfig>,
    /// The embedded store (`[store]`): retention, max_bytes, success_sample, queue.
    pub store: Option<crate::store::RawStoreConfig>,
    /// Built-in alerting (`[alerts]`): Alertmanager and webhook URLs, detection
    /// thresholds, bounds.
    pub alerts: Option<crate::alerts::RawAlertsConfig>,
    /// OTLP metrics push (`[metrics_push]`): the series of `/metrics` sent to a
    /// collector; `endpoint`, `interval`, `protocol`, `timeout`, `headers`, `ca_file`.
    pub metrics_push: Option<crate::push::RawPushConfig>,
    /// A client PING sooner than this after the previous one, or with no request in
    /// flight, is a strike; the third closes the gRPC connection. Default `10s`.
    pub grpc_keepalive_min_time: Option<String>,
    /// A gRPC connection with no request in flight for this long is closed. Default `5m`.
    pub grpc_max_connection_idle: Option<String>,
    /// TLS of the listeners (`[tls]`): `cert_file`, `key_file`, `client_ca_file`, and
    /// per-listener tables `[tls.otlp_grpc]`, `[tls.otlp_http]`, `[tls.api]` with the
    /// same keys.
    pub tls: Option<RawTls>,
    /// Tokens, allowed hosts and CORS (`[auth]`): `ingest_token_file`, `api_token_file`,
    /// `api_allowed_hosts`, `otlp_http_cors_origins`.
    pub auth: Option<RawAuth>,
    /// Resource limits (`[limits]`): `memory_bytes`, the memory budget.
    pub limits: Option<RawLimitsConfig>,
    /// The write-ahead log of accepted data (`[wal]`): `enabled`, `fsync`,
    /// `fsync_interval`, `segment_bytes`, `max_bytes`.
    pub wal: Option<crate::wal::RawWalConfig>,
}

/// The `[limits]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimitsConfig {
    /// The memory budget in bytes (see `memory.rs`): decoded requests in flight and
    /// records queued and buffered by the shards are charged to it; past 80 % receivers
    /// refuse with a retryable status, at 100 % the oldest open traces are released
    /// early; one request may hold a quarter of it. Default: half of the cgroup memory
    /// limit, else half of the machine's memory, at least 256 MiB.
    pub memory_bytes: Option<u64>,
}

/// The TLS files of one listener (or of all, at the top of `[tls]`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
}

/// `[tls]`: files for every listener, overridden per listener.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub otlp_grpc: Option<RawTlsFiles>,
    pub otlp_http: Option<RawTlsFiles>,
    pub api: Option<RawTlsFiles>,
}

/// `[auth]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Tokens accepted on OTLP/gRPC and OTLP/HTTP, one per line.
    pub ingest_token_file: Option<PathBuf>,
    /// Tokens accepted on the API, the page's data and `/metrics`, one per line.
    pub api_token_file: Option<PathBuf>,
    /// Host names the API answers besides its own (`*.example.com` allowed).
    pub api_allowed_hosts: Option<Vec<String>>,
    /// Browser origins allowed to send OTLP/HTTP (`https://*.example.com` allowed).
    pub otlp_http_cors_origins: Option<Vec<String>>,
}

/// Values from flags and environment variables (clap fills these).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub otlp_grpc_address: Option<String>,
    pub otlp_http_address: Option<String>,
    pub api_address: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub idle_timeout: Option<String>,
    pub max_trace_age: Option<String>,
    pub late_grace: Option<String>,
    pub max_buffered_spans: Option<usize>,
    pub max_spans_per_trace: Option<usize>,
    pub max_trace_depth: Option<usize>,
    pub max_request_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub header_read_timeout: Option<String>,
    pub shards: Option<usize>,
    /// `--max-memory-bytes`, over `[limits] memory_bytes`.
    pub max_memory_bytes: Option<u64>,
    /// `--metrics-push-*`, each over the `[metrics_push]` key of the same name.
    pub metrics_push: crate::push::PushOverrides,
    /// `--wal-*`, each over the `[wal]` key of the same name.
    pub wal: crate::wal::WalOverrides,
    pub grpc_keepalive_min_time: Option<String>,
    pub grpc_max_connection_idle: Option<String>,
    /// `--tls-*-file`, over the `[tls]` keys of every listener.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_client_ca_file: Option<PathBuf>,
    /// `--ingest-token-file` etc., over the `[auth]` keys.
    pub ingest_token_file: Option<PathBuf>,
    pub api_token_file: Option<PathBuf>,
    /// Comma-separated.
    pub api_allowed_hosts: Option<String>,
    /// Comma-separated.
    pub otlp_http_cors_origins: Option<String>,
}

/// Validated settings of `faultline serve`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub otlp_grpc_address: SocketAddr,
    pub otlp_http_address: SocketAddr,
    pub api_address: SocketAddr,
    pub data_dir: PathBuf,
    pub idle_timeout: Duration,
    pub max_trace_age: Duration,
    pub late_grace: Duration,
    pub max_buffered_spans: usize,
    pub max_spans_per_trace: usize,
    pub max_trace_depth: usize,
    pub max_request_bytes: usize,
    /// The memory budget in bytes (`[limits] memory_bytes`).
    pub memory_bytes: u64,
    /// Connection cap and read deadline of every listener.
    pub conn_limits: crate::net::ConnLimits,
    pub max_queued_spans: usize,
    pub shards: usize,
    pub recent_trajectories: usize,
    pub analyze: crate::analyze::AnalyzeConfig,
    pub aggregate: crate::aggregate::config::AggregateConfig,
    /// Whether the per-step aggregation sink (metrics, breakdowns) runs. Always true in
    /// `serve`; the ingest benchmark turns it off to measure its cost.
    pub aggregation: bool,
    /// Whether the discovery sinks (reason clusters, failure cohorts) run. Always true in
    /// `serve`; the ingest benchmark turns them off to measure their cost.
    pub discovery: bool,
    pub store: crate::store::StoreConfig,
    pub alerts: crate::alerts::AlertsConfig,
    /// The OTLP metrics push; `None` when no endpoint is set.
    pub metrics_push: Option<crate::push::PushConfig>,
    /// The write-ahead log of accepted data (`[wal]`).
    pub wal: crate::wal::WalConfig,
    /// TLS, tokens, allowed hosts, CORS, gRPC keepalive enforcement.
    pub security: crate::security::SecuritySettings,
}

pub const DEFAULT_OTLP_GRPC_ADDRESS: &str = "127.0.0.1:4317";
pub const DEFAULT_OTLP_HTTP_ADDRESS: &str = "127.0.0.1:4318";
pub const DEFAULT_API_ADDRESS: &str = "127.0.0.1:8700";

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        FileConfig::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
    }
}

impl Settings {
    /// Merges flags/environment over the file over the defaults, and validates.
    /// `file_path` names the file in errors.
    pub fn resolve(
        file: FileConfig,
        file_path: Option<&Path>,
        over: Overrides,
    ) -> Result<Settings, ConfigError> {
        let file_origin = file_path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "config".to_owned());
        // Which origin a value came from, for the error message.
        let pick = |o: Option<String>, f: Option<String>| -> (Option<String>, String) {
            match (o, f) {
                (Some(v), _) => (Some(v), "flag or environment".to_owned()),
                (None, Some(v)) => (Some(v), file_origin.clone()),
                (None, None) => (None, "default".to_owned()),
            }
        };
        let invalid = |origin: &str, key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            message,
        };
        let addr = |key: &str, o: Option<String>, f: Option<String>, default: &str| {
            let (v, origin) = pick(o, f);
            let v = v.unwrap_or_else(|| default.to_owned());
            v.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    &origin,
                    key,
                    format!("`{v}` is not a socket address such as 127.0.0.1:4317 ({e})"),
                )
            })
        };
        let duration = |key: &str, o: Option<String>, f: Option<String>, default: Duration| {
            let (v, origin) = pick(o, f);
            match v {
                None => Ok(default),
                Some(v) => {
                    let d = humantime::parse_duration(v.trim()).map_err(|e| {
                        invalid(
                            &origin,
                            key,
                            format!("`{v}` is not a duration such as 5s or 10m ({e})"),
                        )
                    })?;
                    if d.is_zero() {
                        return Err(invalid(&origin, key, "must be greater than zero".into()));
                    }
                    Ok(d)
                }
            }
        };
        let count = |key: &str, o: Option<usize>, f: Option<usize>, default: usize| {
            let (v, origin) = match (o, f) {
                (Some(v), _) => (v, "flag or environment".to_owned()),
                (None, Some(v)) => (v, file_origin.clone()),
                (None, None) => (default, "default".to_owned()),
            };
            if v == 0 {
                return Err(invalid(&origin, key, "must be greater than zero".into()));
            }
            Ok(v)
        };

        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let mut analyze = crate::analyze::AnalyzeConfig::default();
        if let Some(raw) = &file.detect {
            analyze.detect =
                crate::detect::DetectConfig::from_raw(raw).map_err(|e| ConfigError::Invalid {
                    origin: file_origin.clone(),
                    key: "detect".into(),
                    message: e.to_string(),
                })?;
        }
        let aggregate = match &file.aggregate {
            Some(raw) => crate::aggregate::config::AggregateConfig::from_raw(raw).map_err(|e| {
                ConfigError::Invalid {
                    origin: file_origin.clone(),
                    key: "aggregate".into(),
                    message: e.to_string(),
                }
            })?,
            None => crate::aggregate::config::AggregateConfig::default_config(),
        };
        let store = match &file.store {
            Some(raw) => {
                crate::store::StoreConfig::from_raw(raw).map_err(|e| ConfigError::Invalid {
                    origin: file_origin.clone(),
                    key: format!("store.{}", e.key),
                    message: e.message,
                })?
            }
            None => crate::store::StoreConfig::default(),
        };
        let alerts = match &file.alerts {
            Some(raw) => {
                crate::alerts::AlertsConfig::from_raw(raw).map_err(|e| ConfigError::Invalid {
                    origin: file_origin.clone(),
                    key: "alerts".into(),
                    message: e.to_string(),
                })?
            }
            None => crate::alerts::AlertsConfig::default(),
        };
        let metrics_push =
            crate::push::PushConfig::resolve(file.metrics_push.as_ref(), &over.metrics_push)
                .map_err(|e| ConfigError::Invalid {
                    origin: if e.from_file {
                        file_origin.clone()
                    } else {
                        "flag or environment".to_owned()
                    },
                    key: format!("metrics_push.{}", e.key),
                    message: e.message,
                })?;
        let wal = crate::wal::WalConfig::resolve(file.wal.as_ref(), &over.wal).map_err(|e| {
            ConfigError::Invalid {
                origin: if e.from_file {
                    file_origin.clone()
                } else {
                    "flag or environment".to_owned()
                },
                key: format!("wal.{}", e.key),
                message: e.message,
            }
        })?;
        let security = resolve_security(&file, &over, &file_origin)?;
        let keepalive = crate::security::GrpcKeepalive {
            min_ping_interval: duration(
                "grpc_keepalive_min_time",
                over.grpc_keepalive_min_time.clone(),
                file.grpc_keepalive_min_time.clone(),
                crate::security::DEFAULT_GRPC_MIN_PING_INTERVAL,
            )?,
            max_connection_idle: duration(
                "grpc_max_connection_idle",
                over.grpc_max_connection_idle.clone(),
                file.grpc_max_connection_idle.clone(),
                crate::security::DEFAULT_GRPC_MAX_CONNECTION_IDLE,
            )?,
        };
        let security = crate::security::SecuritySettings {
            grpc_keepalive: keepalive,
            ..security
        };
        if let Some(raw) = &file.classify {
            analyze.classify = raw.compile().map_err(|e| ConfigError::Invalid {
                origin: file_origin.clone(),
                key: "classify".into(),
                message: e.to_string(),
            })?;
        }
        Ok(Settings {
            otlp_grpc_address: addr(
                "otlp_grpc_address",
                over.otlp_grpc_address,
                file.otlp_grpc_address,
                DEFAULT_OTLP_GRPC_ADDRESS,
            )?,
            otlp_http_address: addr(
                "otlp_http_address",
                over.otlp_http_address,
                file.otlp_http_address,
                DEFAULT_OTLP_HTTP_ADDRESS,
            )?,
            api_address: addr(
                "api_address",
                over.api_address,
                file.api_address,
                DEFAULT_API_ADDRESS,
            )?,
            data_dir: over
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./faultline-data")),
            idle_timeout: duration(
                "idle_timeout",
                over.idle_timeout,
                file.idle_timeout,
                Duration::from_secs(5),
            )?,
            max_trace_age: duration(
                "max_trace_age",
                over.max_trace_age,
                file.max_trace_age,
                Duration::from_secs(600),
            )?,
            late_grace: duration(
                "late_grace",
                over.late_grace,
                file.late_grace,
                Duration::from_secs(60),
            )?,
            max_buffered_spans: count(
                "max_buffered_spans",
                over.max_buffered_spans,
                file.max_buffered_spans,
                1_000_000,
            )?,
            max_spans_per_trace: count(
                "max_spans_per_trace",
                over.max_spans_per_trace,
                file.max_spans_per_trace,
                10_000,
            )?,
            max_trace_depth: count(
                "max_trace_depth",
                over.max_trace_depth,
                file.max_trace_depth,
                crate::model::trajectory::DEFAULT_MAX_TRACE_DEPTH,
            )?,
            max_request_bytes: count(
                "max_request_bytes",
                over.max_request_bytes,
                file.max_request_bytes,
                64 * 1024 * 1024,
            )?,
            memory_bytes: {
                let from_file = file.limits.as_ref().and_then(|l| l.memory_bytes);
                let origin = if over.max_memory_bytes.is_some() {
                    "flag or environment".to_owned()
                } else {
                    file_origin.clone()
                };
                match over.max_memory_bytes.or(from_file) {
                    Some(0) => {
                        return Err(ConfigError::Invalid {
                            origin,
                            key: "limits.memory_bytes".into(),
                            message: "must be at least 1".into(),
                        })
                    }
                    Some(v) => v,
                    None => crate::memory::default_budget(),
                }
            },
            conn_limits: crate::net::ConnLimits {
                max_connections: count(
                    "max_connections",
                    over.max_connections,
                    file.max_connections,
                    crate::net::DEFAULT_MAX_CONNECTIONS,
                )?,
                header_read_timeout: duration(
                    "header_read_timeout",
                    over.header_read_timeout,
                    file.header_read_timeout,
                    crate::net::DEFAULT_HEADER_READ_TIMEOUT,
                )?,
            },
            max_queued_spans: count("max_queued_spans", None, file.max_queued_spans, 200_000)?,
            shards: count("shards", over.shards, file.shards, cores)?,
            recent_trajectories: count(
                "recent_trajectories",
                None,
                file.recent_trajectories,
                10_000,
            )?,
            analyze,
            aggregate,
            aggregation: true,
            discovery: true,
            store,
            alerts,
            metrics_push,
            wal,
            security,
        })
    }
}

/// A comma-separated list, trimmed, empty items dropped.
fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `[tls]`, `[auth]` and their flags. For each TLS file of each listener: the flag (or
/// variable), else the listener's table, else the top of `[tls]`.
fn resolve_security(
    file: &FileConfig,
    over: &Overrides,
    file_origin: &str,
) -> Result<crate::security::SecuritySettings, ConfigError> {
    let tls = file.tls.clone().unwrap_or_default();
    let listener = |name: &str,
                    own: &Option<RawTlsFiles>|
     -> Result<Option<crate::security::TlsFiles>, ConfigError> {
        let own = own.clone().unwrap_or_default();
        let pick = |flag: &Option<PathBuf>, own: Option<PathBuf>, top: &Option<PathBuf>| {
            flag.clone().or(own).or_else(|| top.clone())
        };
        let cert = pick(&over.tls_cert_file, own.cert_file, &tls.cert_file);
        let key = pick(&over.tls_key_file, own.key_file, &tls.key_file);
        let ca = pick(
            &over.tls_client_ca_file,
            own.client_ca_file,
            &tls.client_ca_file,
        );
        let invalid = |message: &str| ConfigError::Invalid {
            origin: format!("{file_origin} or flags"),
            key: format!("tls.{name}"),
            message: message.to_owned(),
        };
        match (cert, key) {
            (Some(cert_file), Some(key_file)) => Ok(Some(crate::security::TlsFiles {
                cert_file,
                key_file,
                client_ca_file: ca,
            })),
            (None, None) if ca.is_some() => Err(invalid(
                "client_ca_file (mutual TLS) needs cert_file and key_file",
            )),
            (None, None) => Ok(None),
            (Some(_), None) => Err(invalid("cert_file is set but key_file is not")),
            (None, Some(_)) => Err(invalid("key_file is set but cert_file is not")),
        }
    };
    let auth = file.auth.clone().unwrap_or_default();
    Ok(crate::security::SecuritySettings {
        otlp_grpc_tls: listener("otlp_grpc", &tls.otlp_grpc)?,
        otlp_http_tls: listener("otlp_http", &tls.otlp_http)?,
        api_tls: listener("api", &tls.api)?,
        ingest_token_file: over.ingest_token_file.clone().or(auth.ingest_token_file),
        api_token_file: over.api_token_file.clone().or(auth.api_token_file),
        api_allowed_hosts: match &over.api_allowed_hosts {
            Some(list) => split_list(list),
            None => auth.api_allowed_hosts.unwrap_or_default(),
        },
        otlp_http_cors_origins: match &over.otlp_http_cors_origins {
            Some(list) => split_list(list),
            None => auth.otlp_http_cors_origins.unwrap_or_default(),
        },
        grpc_keepalive: crate::security::GrpcKeepalive::default(),
    })
}
