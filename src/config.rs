//! Configuration: the TOML file, `FAULTLINE_*` environment variables and flags, merged
//! and validated once into [`Settings`].
//!
//! Each setting is declared once, as a field of the struct of its section: the field's
//! name is its key in the file, its `#[arg]` attribute gives its flag and variable, its
//! doc comment is both the `--help` text and the file's documentation. The sections with
//! flags — the top-level keys ([`RawTopLevel`], [`RawKeepalive`]), `[limits]`
//! ([`RawLimitsConfig`]), `[metrics_push]` ([`crate::push::RawPushConfig`]), `[wal]`
//! ([`crate::wal::RawWalConfig`]), `[tls]` ([`RawTls`]) and `[auth]` ([`RawAuth`]) —
//! derive both `clap::Args` (flattened into `serve`, see [`Overrides`]) and
//! `serde::Deserialize` (into [`FileConfig`]), every field an `Option`. The tables that
//! are only in the file (`[classify]`, `[aggregate]`, `[detect]`, `[store]`, `[alerts]`)
//! derive serde only.
//!
//! Precedence: flag, then environment variable (both handled by clap), then the config
//! file, then the default. One function, [`merge`], does it for every section; the
//! defaults are written once, in [`Overrides::defaults`] (shown in `--help` by
//! [`Overrides::show_defaults`]), except the two computed at startup (shards: the number
//! of cores; the memory budget: see `memory.rs`). Flag names follow the key: the
//! top-level key `idle_timeout` is `--idle-timeout` / `FAULTLINE_IDLE_TIMEOUT`; a
//! table's key adds the table's prefix (`[wal] fsync` is `--wal-fsync`,
//! `[metrics_push] endpoint` is `--metrics-push-endpoint`, `[tls] cert_file` is
//! `--tls-cert-file`, `[limits] memory_bytes` is `--max-memory-bytes`; the keys of
//! `[auth]` keep their names). Lists are comma-separated on the command line, TOML arrays
//! in the file.
//!
//! Every invalid value is one error shape, [`ConfigError::Invalid`]: the key (as in the
//! file, `wal.fsync`), its origin (the flag, the variable, the file, or the default) and
//! the message.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::push::RawPushConfig;
use crate::wal::RawWalConfig;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A flag on the command line, such as `--idle-timeout`.
    Flag(String),
    /// An environment variable, such as `FAULTLINE_IDLE_TIMEOUT`.
    Env(String),
    /// A flag or its variable, when the settings were built without the command line's
    /// record of which (in code).
    FlagOrEnv { flag: String, env: String },
    /// The config file (or `config` when it has no path).
    File(PathBuf),
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::FlagOrEnv { flag, env } => {
                write!(f, "flag {flag} or environment variable {env}")
            }
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// A problem with the configuration, naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not TOML, or has a key no section knows, or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value that does not validate: its key as written in the file (`idle_timeout`,
    /// `wal.fsync`), where it came from, and why.
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        key: String,
        origin: Origin,
        message: String,
    },
}

/// The top-level keys of the config file (each also a flag and a variable).
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize)]
pub struct RawTopLevel {
    /// OTLP/gRPC listen address (TraceService, LogsService).
    #[arg(long, env = "FAULTLINE_OTLP_GRPC_ADDRESS", value_name = "ADDR")]
    pub otlp_grpc_address: Option<String>,
    /// OTLP/HTTP listen address (POST /v1/traces, /v1/logs).
    #[arg(long, env = "FAULTLINE_OTLP_HTTP_ADDRESS", value_name = "ADDR")]
    pub otlp_http_address: Option<String>,
    /// HTTP API, web page and /metrics listen address.
    #[arg(long, env = "FAULTLINE_API_ADDRESS", value_name = "ADDR")]
    pub api_address: Option<String>,
    /// Directory of the embedded store.
    #[arg(long, env = "FAULTLINE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A trace whose root span has ended completes after this long with no new span,
    /// counted on receive time.
    #[arg(long, env = "FAULTLINE_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// A trace is released this long after its first span, flagged incomplete if it has
    /// no root yet.
    #[arg(long, env = "FAULTLINE_MAX_TRACE_AGE", value_name = "DURATION")]
    pub max_trace_age: Option<String>,
    /// Late spans and evaluator results arriving this long after release are merged and
    /// the trajectory re-analysed; later ones are counted as late.
    #[arg(long, env = "FAULTLINE_LATE_GRACE", value_name = "DURATION")]
    pub late_grace: Option<String>,
    /// Spans held in memory; at the bound the oldest trace is released early, flagged
    /// incomplete.
    #[arg(long, env = "FAULTLINE_MAX_BUFFERED_SPANS", value_name = "N")]
    pub max_buffered_spans: Option<usize>,
    /// Spans kept per trace; a trace reaching it is released flagged incomplete.
    #[arg(long, env = "FAULTLINE_MAX_SPANS_PER_TRACE", value_name = "N")]
    pub max_spans_per_trace: Option<usize>,
    /// Deepest parent chain kept in a trajectory; deeper spans are re-hung under their
    /// ancestor at this depth and the trajectory is flagged (anomaly depth_truncated).
    #[arg(long, env = "FAULTLINE_MAX_TRACE_DEPTH", value_name = "N")]
    pub max_trace_depth: Option<usize>,
    /// Post-hoc evaluations (evaluator spans of other traces linking to it) kept per
    /// trace; further ones are dropped and counted
    /// (faultline_linked_evaluations_dropped_total).
    #[arg(long, env = "FAULTLINE_MAX_LINKED_PER_TRACE", value_name = "N")]
    pub max_linked_per_trace: Option<usize>,
    /// Largest accepted request in bytes, after decompression.
    #[arg(long, env = "FAULTLINE_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Connections open at once on each listener (OTLP/gRPC, OTLP/HTTP, API); at the cap
    /// a listener stops accepting until one closes.
    #[arg(long, env = "FAULTLINE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// An HTTP connection with no request in flight for this long (sending nothing, a
    /// request head too slowly, or idle) is closed; gRPC connections must send their
    /// HTTP/2 preface within it.
    #[arg(long, env = "FAULTLINE_HEADER_READ_TIMEOUT", value_name = "DURATION")]
    pub header_read_timeout: Option<String>,
    /// Shard threads assembling and analysing traces [default: number of cores].
    #[arg(long, env = "FAULTLINE_SHARDS", value_name = "N")]
    pub shards: Option<usize>,
    /// Spans waiting for analysis before ingest refuses with a retryable status (file
    /// only).
    #[arg(skip)]
    pub max_queued_spans: Option<usize>,
    /// Analysed trajectories kept in memory for the API (file only).
    #[arg(skip)]
    pub recent_trajectories: Option<usize>,
}

/// The top-level keys of the gRPC keepalive enforcement.
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize)]
pub struct RawKeepalive {
    /// gRPC keepalive enforcement: a client ping sooner than this after the previous one,
    /// or with no request in flight, is a strike; the third closes the connection.
    #[arg(
        long,
        env = "FAULTLINE_GRPC_KEEPALIVE_MIN_TIME",
        value_name = "DURATION"
    )]
    pub grpc_keepalive_min_time: Option<String>,
    /// A gRPC connection with no request in flight for this long is closed.
    #[arg(
        long,
        env = "FAULTLINE_GRPC_MAX_CONNECTION_IDLE",
        value_name = "DURATION"
    )]
    pub grpc_max_connection_idle: Option<String>,
}

/// The `[limits]` table.
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimitsConfig {
    /// Memory budget in bytes for decoded requests in flight and records held by the
    /// pipeline: past 80% receivers refuse with a retryable status, at 100% the oldest
    /// open traces are released early; one request may hold a quarter of it. File:
    /// [limits] memory_bytes [default: half the cgroup limit or machine memory].
    #[arg(
        id = "max_memory_bytes",
        long = "max-memory-bytes",
        env = "FAULTLINE_MAX_MEMORY_BYTES",
        value_name = "BYTES"
    )]
    pub memory_bytes: Option<u64>,
}

/// The TLS files of one listener (`[tls.otlp_grpc]`, `[tls.otlp_http]`, `[tls.api]`;
/// file only).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
}

/// `[tls]`: files for every listener, refined per listener in the file. For each file
/// of each listener: the flag (or variable), else the listener's table, else the top of
/// `[tls]`.
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// TLS certificate chain (PEM) of every listener; with --tls-key-file every listener
    /// speaks TLS only (1.2+). Re-read when the file changes. File: [tls] cert_file
    /// (per listener: [tls.otlp_grpc], [tls.otlp_http], [tls.api]).
    #[arg(
        id = "tls_cert_file",
        long = "tls-cert-file",
        env = "FAULTLINE_TLS_CERT_FILE",
        value_name = "FILE"
    )]
    pub cert_file: Option<PathBuf>,
    /// TLS private key (PEM) of every listener. Re-read when the file changes.
    /// File: [tls] key_file.
    #[arg(
        id = "tls_key_file",
        long = "tls-key-file",
        env = "FAULTLINE_TLS_KEY_FILE",
        value_name = "FILE"
    )]
    pub key_file: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by a CA of this PEM file
    /// (re-read when the file changes).
    /// File: [tls] client_ca_file (per listener, e.g. [tls.otlp_grpc] only).
    #[arg(
        id = "tls_client_ca_file",
        long = "tls-client-ca-file",
        env = "FAULTLINE_TLS_CLIENT_CA_FILE",
        value_name = "FILE"
    )]
    pub client_ca_file: Option<PathBuf>,
    #[arg(skip)]
    pub otlp_grpc: Option<RawTlsFiles>,
    #[arg(skip)]
    pub otlp_http: Option<RawTlsFiles>,
    #[arg(skip)]
    pub api: Option<RawTlsFiles>,
}

/// `[auth]`: tokens, allowed hosts and CORS.
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// OTLP (gRPC and HTTP) needs `Authorization: Bearer <token>` with a token of this
    /// file (one per line, re-read when it changes). File: [auth] ingest_token_file.
    #[arg(long, env = "FAULTLINE_INGEST_TOKEN_FILE", value_name = "FILE")]
    pub ingest_token_file: Option<PathBuf>,
    /// The API, the page's data and /metrics need `Authorization: Bearer <token>` with a
    /// token of this file (/healthz and /readyz stay open). File: [auth] api_token_file.
    #[arg(long, env = "FAULTLINE_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Host names the API answers besides its own addresses, localhost and (on a
    /// non-loopback bind) the machine's name, comma-separated; `*.example.com` allowed.
    /// Other Host headers get 403 (DNS-rebinding guard). File: [auth] api_allowed_hosts.
    #[arg(
        long,
        env = "FAULTLINE_API_ALLOWED_HOSTS",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub api_allowed_hosts: Option<Vec<String>>,
    /// Browser origins allowed to send OTLP/HTTP (CORS), comma-separated, such as
    /// https://app.example.com or https://*.example.com [default: none, CORS off].
    /// File: [auth] otlp_http_cors_origins.
    #[arg(
        long,
        env = "FAULTLINE_OTLP_HTTP_CORS_ORIGINS",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub otlp_http_cors_origins: Option<Vec<String>>,
}

/// Whether a value on the command line's side came from the flag or the variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Given {
    Flag,
    Env,
}

/// The sections that are flags too: the values of flags and environment variables
/// (clap fills these, flattened into `serve`), and the shape of the defaults.
#[derive(Debug, Default, Clone, Args)]
pub struct Overrides {
    #[command(flatten)]
    pub top: RawTopLevel,
    #[command(flatten)]
    pub limits: RawLimitsConfig,
    #[command(flatten)]
    pub metrics_push: RawPushConfig,
    #[command(flatten)]
    pub wal: RawWalConfig,
    #[command(flatten)]
    pub tls: RawTls,
    #[command(flatten)]
    pub auth: RawAuth,
    #[command(flatten)]
    pub keepalive: RawKeepalive,
    /// Which values came from a flag and which from a variable, by argument id (filled
    /// by `cli::parse_from`; when a value is missing here, errors name both).
    #[arg(skip)]
    pub given: BTreeMap<String, Given>,
}

/// The config file as written. Every key is optional; unknown keys are an error, so a
/// typo never silently falls back to a default.
#[derive(Debug, Default, Deserialize)]
pub struct FileConfig {
    /// The top-level keys.
    #[serde(flatten)]
    pub top: RawTopLevel,
    /// The top-level keys of gRPC keepalive enforcement.
    #[serde(flatten)]
    pub keepalive: RawKeepalive,
    /// Resource limits (`[limits]`): `memory_bytes`, the memory budget.
    pub limits: Option<RawLimitsConfig>,
    /// OTLP metrics push (`[metrics_push]`): the series of `/metrics` sent to a
    /// collector; `endpoint`, `interval`, `protocol`, `timeout`, `headers`, `ca_file`.
    pub metrics_push: Option<RawPushConfig>,
    /// The write-ahead log of accepted data (`[wal]`): `enabled`, `fsync`,
    /// `fsync_interval`, `segment_bytes`.
    pub wal: Option<RawWalConfig>,
    /// TLS of the listeners (`[tls]`): `cert_file`, `key_file`, `client_ca_file`, and
    /// per-listener tables `[tls.otlp_grpc]`, `[tls.otlp_http]`, `[tls.api]` with the
    /// same keys.
    pub tls: Option<RawTls>,
    /// Tokens, allowed hosts and CORS (`[auth]`): `ingest_token_file`, `api_token_file`,
    /// `api_allowed_hosts`, `otlp_http_cors_origins`.
    pub auth: Option<RawAuth>,
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
    /// Keys no section knows. Not empty only while parsing: [`FileConfig::parse`]
    /// refuses them.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
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
    pub max_linked_per_trace: usize,
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

/// A duration as the defaults write it (`10s`, `5m`).
fn duration_text(d: Duration) -> Option<String> {
    Some(humantime::format_duration(d).to_string())
}

impl Overrides {
    /// The default of every setting that has a fixed one — the one place defaults are
    /// written. (The shard count and the memory budget are computed at startup; the
    /// other keys without one here are off or empty unless set.)
    pub fn defaults() -> Overrides {
        let wal = crate::wal::WalConfig::default();
        Overrides {
            top: RawTopLevel {
                otlp_grpc_address: Some(DEFAULT_OTLP_GRPC_ADDRESS.into()),
                otlp_http_address: Some(DEFAULT_OTLP_HTTP_ADDRESS.into()),
                api_address: Some(DEFAULT_API_ADDRESS.into()),
                data_dir: Some(PathBuf::from("./faultline-data")),
                idle_timeout: duration_text(Duration::from_secs(5)),
                max_trace_age: duration_text(Duration::from_secs(600)),
                late_grace: duration_text(Duration::from_secs(60)),
                max_buffered_spans: Some(1_000_000),
                max_spans_per_trace: Some(10_000),
                max_trace_depth: Some(crate::model::trajectory::DEFAULT_MAX_TRACE_DEPTH),
                max_linked_per_trace: Some(crate::assemble::DEFAULT_MAX_LINKED_PER_TRACE),
                max_request_bytes: Some(64 * 1024 * 1024),
                max_connections: Some(crate::net::DEFAULT_MAX_CONNECTIONS),
                header_read_timeout: duration_text(crate::net::DEFAULT_HEADER_READ_TIMEOUT),
                shards: None,
                max_queued_spans: Some(200_000),
                recent_trajectories: Some(10_000),
            },
            limits: RawLimitsConfig::default(),
            metrics_push: RawPushConfig {
                interval: duration_text(crate::push::config::DEFAULT_INTERVAL),
                protocol: Some(crate::push::config::DEFAULT_PROTOCOL.as_str().into()),
                timeout: duration_text(crate::push::config::DEFAULT_TIMEOUT),
                ..RawPushConfig::default()
            },
            wal: RawWalConfig {
                enabled: Some(wal.enabled),
                fsync: Some(wal.fsync.as_str().into()),
                fsync_interval: duration_text(crate::wal::config::DEFAULT_FSYNC_INTERVAL),
                segment_bytes: Some(wal.segment_bytes),
                // Computed: 4 GiB, or the segment size if larger (its help says so).
                max_bytes: None,
            },
            tls: RawTls::default(),
            auth: RawAuth::default(),
            keepalive: RawKeepalive {
                grpc_keepalive_min_time: duration_text(
                    crate::security::DEFAULT_GRPC_MIN_PING_INTERVAL,
                ),
                grpc_max_connection_idle: duration_text(
                    crate::security::DEFAULT_GRPC_MAX_CONNECTION_IDLE,
                ),
            },
            given: BTreeMap::new(),
        }
    }

    /// Appends `[default: …]` from [`Overrides::defaults`] to the help of every flag
    /// that has a fixed default, in `command` (which has the `serve` flags flattened).
    pub fn show_defaults(mut command: clap::Command) -> clap::Command {
        for (id, value) in Overrides::defaults().flag_values() {
            if !command.get_arguments().any(|a| a.get_id() == id.as_str()) {
                continue;
            }
            command = command.mut_arg(id, |arg| {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let long = arg.get_long_help().map(|h| h.to_string());
                let arg = arg.help(format!("{help} [default: {value}]"));
                match long {
                    Some(long) => arg.long_help(format!("{long} [default: {value}]")),
                    None => arg,
                }
            });
        }
        command
    }

    /// Every value set here, by argument id, as text.
    fn flag_values(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut add = |section: Section, value: Result<serde_json::Value, _>| {
            if let Ok(serde_json::Value::Object(map)) = value {
                for (key, v) in map {
                    let text = match v {
                        serde_json::Value::Null => continue,
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.push((format!("{}{key}", section.flag_prefix), text));
                }
            }
        };
        add(TOP, serde_json::to_value(&self.top));
        add(LIMITS, serde_json::to_value(&self.limits));
        add(METRICS_PUSH, serde_json::to_value(&self.metrics_push));
        add(WAL, serde_json::to_value(&self.wal));
        add(TLS, serde_json::to_value(&self.tls));
        add(AUTH, serde_json::to_value(&self.auth));
        add(TOP, serde_json::to_value(&self.keepalive));
        out
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        FileConfig::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        if let Some(key) = file.unknown.keys().next() {
            return Err(ConfigError::Parse {
                path: path.to_owned(),
                message: format!(
                    "unknown field `{key}`: not a top-level key nor a table of the config file"
                ),
            });
        }
        Ok(file)
    }
}

/// Where a section sits: its table in the file (empty for the top level) and what its
/// flags' ids add before its keys (`wal_` + `fsync` is `--wal-fsync`).
#[derive(Debug, Clone, Copy)]
struct Section {
    table: &'static str,
    flag_prefix: &'static str,
}

const TOP: Section = Section {
    table: "",
    flag_prefix: "",
};
const LIMITS: Section = Section {
    table: "limits",
    flag_prefix: "max_",
};
const METRICS_PUSH: Section = Section {
    table: "metrics_push",
    flag_prefix: "metrics_push_",
};
const WAL: Section = Section {
    table: "wal",
    flag_prefix: "wal_",
};
const TLS: Section = Section {
    table: "tls",
    flag_prefix: "tls_",
};
const AUTH: Section = Section {
    table: "auth",
    flag_prefix: "",
};

impl Section {
    /// The key as written in the file: `idle_timeout`, `wal.fsync`.
    fn key(&self, key: &str) -> String {
        if self.table.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.table)
        }
    }
}

/// The sources of the values, to name them.
struct Sources<'a> {
    file: PathBuf,
    given: &'a BTreeMap<String, Given>,
    /// Each `serve` argument's id: its flag and its variable.
    args: BTreeMap<String, (String, Option<String>)>,
}

/// One layer of values, in the order of precedence.
#[derive(Debug, Clone, Copy)]
enum Layer {
    CommandLine,
    File,
    Default,
}

impl<'a> Sources<'a> {
    fn new(file: Option<&Path>, given: &'a BTreeMap<String, Given>) -> Sources<'a> {
        let args = Overrides::augment_args(clap::Command::new("serve"))
            .get_arguments()
            .map(|a| {
                (
                    a.get_id().to_string(),
                    (
                        format!("--{}", a.get_long().unwrap_or(a.get_id().as_str())),
                        a.get_env().map(|e| e.to_string_lossy().into_owned()),
                    ),
                )
            })
            .collect();
        Sources {
            file: file.map_or_else(|| PathBuf::from("config"), Path::to_owned),
            given,
            args,
        }
    }

    fn origin(&self, layer: Layer, section: Section, key: &str) -> Origin {
        match layer {
            Layer::File => Origin::File(self.file.clone()),
            Layer::Default => Origin::Default,
            Layer::CommandLine => {
                let id = format!("{}{key}", section.flag_prefix);
                let (flag, env) = self
                    .args
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| (format!("--{}", id.replace('_', "-")), None));
                match (self.given.get(&id), env) {
                    (Some(Given::Env), Some(env)) => Origin::Env(env),
                    (None, Some(env)) => Origin::FlagOrEnv { flag, env },
                    _ => Origin::Flag(flag),
                }
            }
        }
    }
}

/// A section merged from its layers, and where each key's value came from.
struct Merged<T> {
    value: T,
    section: Section,
    origins: BTreeMap<String, Origin>,
}

impl<T> Merged<T> {
    fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// The one error shape: the key as in the file, its origin, the message.
    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: self.section.key(key),
            origin: self.origin(key),
            message: message.into(),
        }
    }

    /// A value every layer left unset although the defaults set it (not expected).
    fn required<V: Clone>(&self, key: &str, v: &Option<V>) -> Result<V, ConfigError> {
        v.clone().ok_or_else(|| self.invalid(key, "has no value"))
    }

    fn addr(&self, key: &str, v: &Option<String>) -> Result<SocketAddr, ConfigError> {
        let v = self.required(key, v)?;
        v.parse::<SocketAddr>().map_err(|e| {
            self.invalid(
                key,
                format!("`{v}` is not a socket address such as 127.0.0.1:4317 ({e})"),
            )
        })
    }

    /// A duration greater than zero.
    fn duration(&self, key: &str, v: &Option<String>) -> Result<Duration, ConfigError> {
        let v = self.required(key, v)?;
        let d = humantime::parse_duration(v.trim()).map_err(|e| {
            self.invalid(
                key,
                format!("`{v}` is not a duration such as 5s or 10m ({e})"),
            )
        })?;
        if d.is_zero() {
            return Err(self.invalid(key, "must be greater than zero"));
        }
        Ok(d)
    }

    /// A count greater than zero.
    fn count(&self, key: &str, v: Option<usize>) -> Result<usize, ConfigError> {
        let v = self.required(key, &v)?;
        if v == 0 {
            return Err(self.invalid(key, "must be greater than zero"));
        }
        Ok(v)
    }
}

/// The one merge: for each key of a section, the command line's value (flag or
/// variable), else the file's, else the default; and where it came from. The layers are
/// compared as serialized values, so the same code serves every section.
fn merge<T: Serialize + DeserializeOwned>(
    section: Section,
    command_line: &T,
    file: Option<&T>,
    defaults: &T,
    sources: &Sources<'_>,
) -> Result<Merged<T>, ConfigError> {
    let mut merged = serde_json::Map::new();
    let mut origins = BTreeMap::new();
    let layers = [
        (Layer::CommandLine, Some(command_line)),
        (Layer::File, file),
        (Layer::Default, Some(defaults)),
    ];
    for (layer, value) in layers {
        let Some(value) = value else { continue };
        let value = serde_json::to_value(value).map_err(|e| ConfigError::Invalid {
            key: section.table.to_owned(),
            origin: sources.origin(layer, section, ""),
            message: e.to_string(),
        })?;
        let serde_json::Value::Object(map) = value else {
            continue;
        };
        for (key, v) in map {
            if v.is_null() || merged.contains_key(&key) {
                continue;
            }
            origins.insert(key.clone(), sources.origin(layer, section, &key));
            merged.insert(key, v);
        }
    }
    let value = serde_json::from_value(serde_json::Value::Object(merged)).map_err(|e| {
        ConfigError::Invalid {
            key: section.table.to_owned(),
            origin: Origin::Default,
            message: e.to_string(),
        }
    })?;
    Ok(Merged {
        value,
        section,
        origins,
    })
}

/// An error of a table only the file has (`[detect]`, `[store]`, …), in the one shape.
fn file_invalid(sources: &Sources<'_>, key: String, message: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key,
        origin: Origin::File(sources.file.clone()),
        message: message.to_string(),
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
        let sources = Sources::new(file_path, &over.given);
        let defaults = Overrides::defaults();
        let top = merge(TOP, &over.top, Some(&file.top), &defaults.top, &sources)?;
        let keepalive = merge(
            TOP,
            &over.keepalive,
            Some(&file.keepalive),
            &defaults.keepalive,
            &sources,
        )?;
        let limits = merge(
            LIMITS,
            &over.limits,
            file.limits.as_ref(),
            &defaults.limits,
            &sources,
        )?;
        let push = merge(
            METRICS_PUSH,
            &over.metrics_push,
            file.metrics_push.as_ref(),
            &defaults.metrics_push,
            &sources,
        )?;
        let wal = merge(WAL, &over.wal, file.wal.as_ref(), &defaults.wal, &sources)?;
        let tls = merge(TLS, &over.tls, file.tls.as_ref(), &defaults.tls, &sources)?;
        let auth = merge(
            AUTH,
            &over.auth,
            file.auth.as_ref(),
            &defaults.auth,
            &sources,
        )?;

        // The tables only the file has.
        let mut analyze = crate::analyze::AnalyzeConfig::default();
        if let Some(raw) = &file.detect {
            analyze.detect = crate::detect::DetectConfig::from_raw(raw)
                .map_err(|e| file_invalid(&sources, "detect".into(), e))?;
        }
        if let Some(raw) = &file.classify {
            analyze.classify = raw
                .compile()
                .map_err(|e| file_invalid(&sources, "classify".into(), e))?;
        }
        let aggregate = match &file.aggregate {
            Some(raw) => crate::aggregate::config::AggregateConfig::from_raw(raw)
                .map_err(|e| file_invalid(&sources, "aggregate".into(), e))?,
            None => crate::aggregate::config::AggregateConfig::default_config(),
        };
        let store = match &file.store {
            Some(raw) => crate::store::StoreConfig::from_raw(raw)
                .map_err(|e| file_invalid(&sources, format!("store.{}", e.key), e.message))?,
            None => crate::store::StoreConfig::default(),
        };
        let alerts = match &file.alerts {
            Some(raw) => crate::alerts::AlertsConfig::from_raw(raw)
                .map_err(|e| file_invalid(&sources, "alerts".into(), e))?,
            None => crate::alerts::AlertsConfig::default(),
        };

        let metrics_push = crate::push::PushConfig::resolve(Some(&push.value))
            .map_err(|e| push.invalid(e.key, e.message))?;
        let wal_config = crate::wal::WalConfig::resolve(Some(&wal.value))
            .map_err(|e| wal.invalid(e.key, e.message))?;
        let security = crate::security::SecuritySettings {
            grpc_keepalive: crate::security::GrpcKeepalive {
                min_ping_interval: keepalive.duration(
                    "grpc_keepalive_min_time",
                    &keepalive.value.grpc_keepalive_min_time,
                )?,
                max_connection_idle: keepalive.duration(
                    "grpc_max_connection_idle",
                    &keepalive.value.grpc_max_connection_idle,
                )?,
            },
            ..resolve_security(&tls, &auth, &sources)?
        };
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let t = &top.value;
        Ok(Settings {
            otlp_grpc_address: top.addr("otlp_grpc_address", &t.otlp_grpc_address)?,
            otlp_http_address: top.addr("otlp_http_address", &t.otlp_http_address)?,
            api_address: top.addr("api_address", &t.api_address)?,
            data_dir: top.required("data_dir", &t.data_dir)?,
            idle_timeout: top.duration("idle_timeout", &t.idle_timeout)?,
            max_trace_age: top.duration("max_trace_age", &t.max_trace_age)?,
            late_grace: top.duration("late_grace", &t.late_grace)?,
            max_buffered_spans: top.count("max_buffered_spans", t.max_buffered_spans)?,
            max_spans_per_trace: top.count("max_spans_per_trace", t.max_spans_per_trace)?,
            max_trace_depth: top.count("max_trace_depth", t.max_trace_depth)?,
            max_linked_per_trace: top.count("max_linked_per_trace", t.max_linked_per_trace)?,
            max_request_bytes: top.count("max_request_bytes", t.max_request_bytes)?,
            memory_bytes: match limits.value.memory_bytes {
                Some(0) => return Err(limits.invalid("memory_bytes", "must be at least 1")),
                Some(v) => v,
                None => crate::memory::default_budget(),
            },
            conn_limits: crate::net::ConnLimits {
                max_connections: top.count("max_connections", t.max_connections)?,
                header_read_timeout: top.duration("header_read_timeout", &t.header_read_timeout)?,
            },
            max_queued_spans: top.count("max_queued_spans", t.max_queued_spans)?,
            shards: top.count("shards", t.shards.or(Some(cores)))?,
            recent_trajectories: top.count("recent_trajectories", t.recent_trajectories)?,
            analyze,
            aggregate,
            store,
            alerts,
            metrics_push,
            wal: wal_config,
            security,
        })
    }
}

/// A list's items trimmed, empty ones dropped (`a, b,` is `a` and `b`).
fn clean_list(list: &Option<Vec<String>>) -> Vec<String> {
    list.iter()
        .flatten()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `[tls]` and `[auth]` merged. For each TLS file of each listener: the flag (or
/// variable), else the listener's table, else the top of `[tls]`.
fn resolve_security(
    tls: &Merged<RawTls>,
    auth: &Merged<RawAuth>,
    sources: &Sources<'_>,
) -> Result<crate::security::SecuritySettings, ConfigError> {
    let listener = |name: &str,
                    own: &Option<RawTlsFiles>|
     -> Result<Option<crate::security::TlsFiles>, ConfigError> {
        let own = own.clone().unwrap_or_default();
        let pick = |key: &str, own: Option<PathBuf>, top: &Option<PathBuf>| {
            let origin = tls.origin(key);
            let from_command_line = !matches!(origin, Origin::File(_) | Origin::Default);
            match (from_command_line, own) {
                (false, Some(own)) => Some((own, Origin::File(sources.file.clone()))),
                _ => top.clone().map(|top| (top, origin)),
            }
        };
        let cert = pick("cert_file", own.cert_file, &tls.value.cert_file);
        let key = pick("key_file", own.key_file, &tls.value.key_file);
        let ca = pick(
            "client_ca_file",
            own.client_ca_file,
            &tls.value.client_ca_file,
        );
        let invalid = |origin: &Origin, message: &str| ConfigError::Invalid {
            key: format!("tls.{name}"),
            origin: origin.clone(),
            message: message.to_owned(),
        };
        match (cert, key) {
            (Some((cert_file, _)), Some((key_file, _))) => Ok(Some(crate::security::TlsFiles {
                cert_file,
                key_file,
                client_ca_file: ca.map(|(f, _)| f),
            })),
            (None, None) => match ca {
                Some((_, origin)) => Err(invalid(
                    &origin,
                    "client_ca_file (mutual TLS) needs cert_file and key_file",
                )),
                None => Ok(None),
            },
            (Some((_, origin)), None) => {
                Err(invalid(&origin, "cert_file is set but key_file is not"))
            }
            (None, Some((_, origin))) => {
                Err(invalid(&origin, "key_file is set but cert_file is not"))
            }
        }
    };
    let a = &auth.value;
    Ok(crate::security::SecuritySettings {
        otlp_grpc_tls: listener("otlp_grpc", &tls.value.otlp_grpc)?,
        otlp_http_tls: listener("otlp_http", &tls.value.otlp_http)?,
        api_tls: listener("api", &tls.value.api)?,
        ingest_token_file: a.ingest_token_file.clone(),
        api_token_file: a.api_token_file.clone(),
        api_allowed_hosts: clean_list(&a.api_allowed_hosts),
        otlp_http_cors_origins: clean_list(&a.otlp_http_cors_origins),
        grpc_keepalive: crate::security::GrpcKeepalive::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn error(file: &str, over: Overrides) -> String {
        let path = Path::new("faultline.toml");
        let file = FileConfig::parse(file, path).expect("parses");
        Settings::resolve(file, Some(path), over)
            .expect_err("invalid")
            .to_string()
    }

    fn given(id: &str, how: Given) -> BTreeMap<String, Given> {
        BTreeMap::from([(id.to_owned(), how)])
    }

    #[test]
    fn config_flags_and_variables_are_named_after_their_keys() {
        let command = Overrides::augment_args(clap::Command::new("serve"));
        let mut n = 0;
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            assert_eq!(arg.get_long(), Some(id.replace('_', "-").as_str()), "{id}");
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(
                env,
                Some(format!("FAULTLINE_{}", id.to_uppercase())),
                "{id}"
            );
            n += 1;
        }
        assert_eq!(n, 36, "every serve setting that is a flag");
    }

    #[test]
    fn config_errors_name_the_key_and_where_the_value_came_from() {
        let top = |v: &str| RawTopLevel {
            idle_timeout: Some(v.into()),
            ..RawTopLevel::default()
        };
        let e = error("idle_timeout = \"0s\"\n", Overrides::default());
        assert_eq!(
            e,
            "faultline.toml: key `idle_timeout`: must be greater than zero"
        );
        // The flag's value wins over the file's, and is named as the flag's.
        let e = error(
            "idle_timeout = \"5s\"\n",
            Overrides {
                top: top("soon"),
                given: given("idle_timeout", Given::Flag),
                ..Overrides::default()
            },
        );
        assert!(
            e.starts_with("flag --idle-timeout: key `idle_timeout`: `soon` is not a duration"),
            "{e}"
        );
        let e = error(
            "",
            Overrides {
                top: top("0s"),
                given: given("idle_timeout", Given::Env),
                ..Overrides::default()
            },
        );
        assert!(
            e.starts_with("environment variable FAULTLINE_IDLE_TIMEOUT: key `idle_timeout`"),
            "{e}"
        );
        // Built in code, without the command line's record: both are named.
        let e = error(
            "",
            Overrides {
                top: top("0s"),
                ..Overrides::default()
            },
        );
        assert!(
            e.starts_with(
                "flag --idle-timeout or environment variable FAULTLINE_IDLE_TIMEOUT: key `idle_timeout`"
            ),
            "{e}"
        );
        // A table's key: the file's, then a flag's.
        let e = error("[wal]\nfsync = \"often\"\n", Overrides::default());
        assert!(e.starts_with("faultline.toml: key `wal.fsync`"), "{e}");
        let e = error(
            "[wal]\nfsync = \"batch\"\n",
            Overrides {
                wal: RawWalConfig {
                    fsync: Some("often".into()),
                    ..RawWalConfig::default()
                },
                given: given("wal_fsync", Given::Flag),
                ..Overrides::default()
            },
        );
        assert!(e.starts_with("flag --wal-fsync: key `wal.fsync`"), "{e}");
        let e = error(
            "",
            Overrides {
                limits: RawLimitsConfig {
                    memory_bytes: Some(0),
                },
                given: given("max_memory_bytes", Given::Env),
                ..Overrides::default()
            },
        );
        assert!(
            e.starts_with(
                "environment variable FAULTLINE_MAX_MEMORY_BYTES: key `limits.memory_bytes`"
            ),
            "{e}"
        );
        let e = error("[metrics_push]\ninterval = \"1ms\"\n", Overrides::default());
        assert!(
            e.starts_with("faultline.toml: key `metrics_push.interval`: must be at least"),
            "{e}"
        );
        // [tls]: a listener's table without its key file.
        let e = error("[tls.api]\ncert_file = \"c.pem\"\n", Overrides::default());
        assert_eq!(
            e,
            "faultline.toml: key `tls.api`: cert_file is set but key_file is not"
        );
    }

    #[test]
    fn config_flags_win_over_the_file_which_wins_over_the_defaults() {
        let path = Path::new("faultline.toml");
        let file = FileConfig::parse(
            "late_grace = \"2m\"\nmax_trace_age = \"20m\"\n\
             [tls]\ncert_file = \"top.pem\"\nkey_file = \"top.key\"\n\
             [tls.api]\ncert_file = \"api.pem\"\n\
             [auth]\napi_allowed_hosts = [\"file.example.com\"]\n",
            path,
        )
        .unwrap();
        let s = Settings::resolve(
            file,
            Some(path),
            Overrides {
                top: RawTopLevel {
                    late_grace: Some("3s".into()),
                    ..RawTopLevel::default()
                },
                auth: RawAuth {
                    api_allowed_hosts: Some(vec![" a.example.com".into(), "".into()]),
                    ..RawAuth::default()
                },
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(s.late_grace, Duration::from_secs(3));
        assert_eq!(s.max_trace_age, Duration::from_secs(1200));
        assert_eq!(s.idle_timeout, Duration::from_secs(5));
        assert_eq!(s.security.api_allowed_hosts, ["a.example.com"]);
        let api = s.security.api_tls.expect("api TLS");
        assert_eq!(api.cert_file, Path::new("api.pem"));
        assert_eq!(api.key_file, Path::new("top.key"));
        let grpc = s.security.otlp_grpc_tls.expect("gRPC TLS");
        assert_eq!(grpc.cert_file, Path::new("top.pem"));
        // A flag wins over a listener's table too.
        let file = FileConfig::parse("[tls.api]\ncert_file = \"api.pem\"\n", path).unwrap();
        let s = Settings::resolve(
            file,
            Some(path),
            Overrides {
                tls: RawTls {
                    cert_file: Some("flag.pem".into()),
                    key_file: Some("flag.key".into()),
                    ..RawTls::default()
                },
                ..Overrides::default()
            },
        )
        .unwrap();
        let api = s.security.api_tls.expect("api TLS");
        assert_eq!(api.cert_file, Path::new("flag.pem"));
    }

    #[test]
    fn config_file_refuses_unknown_keys_at_every_level() {
        let path = Path::new("faultline.toml");
        for (text, key) in [
            ("idle_timout = \"5s\"\n", "idle_timout"),
            ("[wal]\nfsynk = \"batch\"\n", "fsynk"),
            ("[limits]\nmemory = 1\n", "memory"),
            ("[tls.api]\ncert = \"c\"\n", "cert"),
        ] {
            let e = FileConfig::parse(text, path).expect_err(text).to_string();
            assert!(
                e.starts_with("faultline.toml: ") && e.contains(&format!("`{key}`")),
                "{text}: {e}"
            );
        }
        // The keepalive keys are top-level keys too.
        let f = FileConfig::parse("grpc_keepalive_min_time = \"1s\"\n", path).unwrap();
        assert_eq!(f.keepalive.grpc_keepalive_min_time.as_deref(), Some("1s"));
    }

    #[test]
    fn config_defaults_are_shown_in_the_help() {
        let command =
            Overrides::show_defaults(Overrides::augment_args(clap::Command::new("serve")));
        let help = |id: &str| {
            command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default()
        };
        for (id, default) in [
            ("otlp_grpc_address", "127.0.0.1:4317"),
            ("data_dir", "./faultline-data"),
            ("idle_timeout", "5s"),
            ("max_trace_age", "10m"),
            ("max_request_bytes", "67108864"),
            ("max_connections", "4096"),
            ("metrics_push_protocol", "grpc"),
            ("wal_enabled", "true"),
            ("wal_segment_bytes", "67108864"),
            ("grpc_max_connection_idle", "5m"),
        ] {
            assert!(
                help(id).ends_with(&format!("[default: {default}]")),
                "{id}: {}",
                help(id)
            );
        }
        // The ones computed at startup say how, once.
        assert!(help("shards").ends_with("[default: number of cores]"));
        assert_eq!(help("shards").matches("[default:").count(), 1);
        // The whole command line shows them, before and after `serve`.
        let mut cli = crate::cli::Cli::command().mut_subcommand("serve", Overrides::show_defaults);
        let serve = cli.find_subcommand_mut("serve").expect("serve");
        let text = serve.render_help().to_string();
        assert!(
            text.contains("[default: 60s]") || text.contains("[default: 1m]"),
            "{text}"
        );
    }
}
