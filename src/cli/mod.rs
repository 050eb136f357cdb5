//! The command line: `faultline [serve]` and the other subcommands.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 invalid usage or configuration.

pub mod analyze;
pub mod client;
pub mod demo;
pub mod format;
pub mod reasons;
pub mod show;
pub mod top;
pub mod trajectories;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{FileConfig, Overrides, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "faultline",
    version,
    about = "Failure analysis for LLM-agent systems from OpenTelemetry traces",
    long_about = "faultline receives OpenTelemetry traces over OTLP (gRPC and HTTP), rebuilds each \
agent run from its spans, classifies every span into a step (planner, retriever, generator, \
critic, tool, ...), finds failures and blames the step that caused them.\n\n\
Without a subcommand, `faultline` runs `serve`. The options of the commands that read a \
running server (--server, --json, --api-token-file, --ca-file) are accepted before or after \
the subcommand."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub globals: GlobalArgs,
}

/// The client commands' options, accepted before the subcommand too
/// (`faultline --server URL top`). Each client command also defines them (with the same
/// ids), so clap hands a value given before the subcommand down to it; for the other
/// commands [`parse`] refuses them.
#[derive(Debug, Args, Default, Clone)]
pub struct GlobalArgs {
    /// The faultline server a client command (top, trajectories, show, reasons, cohorts)
    /// asks: its API address, such as http://127.0.0.1:8700 [env: FAULTLINE_SERVER].
    #[arg(long, id = "server", global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Client commands and analyze: print JSON instead of a table.
    #[arg(long, id = "json", global = true)]
    pub json: bool,
    /// Client commands: CA certificates (PEM) to trust for an https --server
    /// [env: FAULTLINE_CA_FILE]. (`--api-token-file` before a client command is its token
    /// file; after `serve`, or with no command, the server's.)
    #[arg(long, id = "ca_file", global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// The `serve` option that a client command takes too, with the same meaning seen from
/// the other side: the file of the API token.
const SHARED_WITH_CLIENTS: &str = "api_token_file";

/// Parses the command line, or exits with code 2 and clap's message: as
/// [`Parser::parse`], and also refuses `serve` options before another subcommand
/// (`faultline --idle-timeout 5s top`), and `--server`, `--json` or `--ca-file` given to
/// a command that does not take them. `--api-token-file` before a client command is
/// handed to it.
pub fn parse() -> Cli {
    match parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    }
}

/// [`parse`] of the given arguments; the error is clap's, to print and exit with.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    let matches = command.clone().try_get_matches_from(args)?;
    let given = |id: &str| {
        matches!(
            matches.try_get_raw(id),
            Ok(Some(_)) if matches.value_source(id) == Some(ValueSource::CommandLine)
        )
    };
    if let Some((name, sub)) = matches.subcommand() {
        let serve_ids: Vec<String> = ServeArgs::augment_args(clap::Command::new("serve"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        let takes_server = !matches!(name, "serve" | "simulate" | "analyze" | "demo");
        if let Some(id) = serve_ids
            .iter()
            .find(|id| given(id) && !(takes_server && id.as_str() == SHARED_WITH_CLIENTS))
        {
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "--{} is an option of `serve`; give it after `serve`, not before `{name}`",
                    id.replace('_', "-")
                ),
            ));
        }
        let sub_given = |id: &str| {
            matches!(sub.try_get_raw(id), Ok(Some(_)))
                && sub.value_source(id) == Some(ValueSource::CommandLine)
        };
        let takes_json = takes_server || name == "analyze";
        for (id, takes) in [
            ("server", takes_server),
            ("json", takes_json),
            ("ca_file", takes_server),
        ] {
            if !takes && (given(id) || sub_given(id)) {
                return Err(command.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("`{name}` does not take --{}", id.replace('_', "-")),
                ));
            }
        }
    } else if given("server") || given("json") || given("ca_file") {
        return Err(command.error(
            clap::error::ErrorKind::ArgumentConflict,
            "--server, --json and --ca-file are options of the client commands (top, trajectories, show, reasons, cohorts); `serve` does not take them",
        ));
    }
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    // `faultline --api-token-file FILE top`: the top-level option is `serve`'s (the
    // default command); before a client command it is that command's, unless the
    // command was given its own.
    if given(SHARED_WITH_CLIENTS) {
        if let Some(args) = cli.command.as_mut().and_then(Command::server_args_mut) {
            if args.api_token_file.is_none() {
                args.api_token_file = cli.serve.api_token_file.take();
            }
        }
    }
    Ok(cli)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive OTLP traces and logs, analyse them, serve the API (the default command).
    Serve(Box<ServeArgs>),
    /// Generate realistic agent traffic with planted faults and known root causes: send it
    /// to an OTLP endpoint, or write OTLP files and a labels file.
    Simulate(crate::simulate::SimulateArgs),
    /// Per-step failure table of a running server, redrawn like `top` (or --once).
    Top(top::TopArgs),
    /// List a running server's analysed trajectories, newest first, with filters.
    Trajectories(trajectories::TrajectoriesArgs),
    /// One trajectory: its span tree with steps, the blamed step, evidence and findings.
    Show(show::ShowArgs),
    /// Recurring failure reasons of a running server, ranked.
    Reasons(reasons::ReasonsArgs),
    /// Failure cohorts found by a running server, best first.
    Cohorts(reasons::CohortsArgs),
    /// Analyse exported trace files offline (no server) and gate on failure rates (CI).
    Analyze(analyze::AnalyzeArgs),
    /// Start a server fed with simulated traffic (a spike and a bad cohort planted) and
    /// print the address of its web page.
    Demo(demo::DemoArgs),
}

impl Command {
    /// The options of a client command (one that reads a running server).
    pub fn server_args_mut(&mut self) -> Option<&mut client::ServerArgs> {
        match self {
            Command::Top(a) => Some(&mut a.server),
            Command::Trajectories(a) => Some(&mut a.server),
            Command::Show(a) => Some(&mut a.server),
            Command::Reasons(a) => Some(&mut a.server),
            Command::Cohorts(a) => Some(&mut a.server),
            Command::Serve(_) | Command::Simulate(_) | Command::Analyze(_) | Command::Demo(_) => {
                None
            }
        }
    }
}

/// Runs a command other than `serve` and `simulate`; returns the process exit code.
pub async fn run_command(command: Command) -> u8 {
    let client = |name: &str, r: Result<(), client::ClientError>| match r {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("faultline {name}: {error}");
            error.exit_code()
        }
    };
    match command {
        Command::Top(args) => client("top", top::run(&args).await),
        Command::Trajectories(args) => client("trajectories", trajectories::run(&args).await),
        Command::Show(args) => client("show", show::run(&args).await),
        Command::Reasons(args) => client("reasons", reasons::run_reasons(&args).await),
        Command::Cohorts(args) => client("cohorts", reasons::run_cohorts(&args).await),
        Command::Analyze(args) => tokio::task::block_in_place(|| analyze::run(&args)),
        Command::Demo(args) => match demo::run(&args).await {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("faultline demo: {error}");
                error.exit_code()
            }
        },
        Command::Serve(_) | Command::Simulate(_) => {
            eprintln!("faultline: this command is run by main");
            2
        }
    }
}

/// Options of `serve`. Each is also an environment variable `FAULTLINE_<NAME>` and a
/// top-level key of the config file (`idle_timeout = "5s"`); flags win over the
/// environment, which wins over the file.
#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// TOML config file. Invalid content exits with code 2, naming the file and key.
    #[arg(long, env = "FAULTLINE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// OTLP/gRPC listen address (TraceService, LogsService) [default: 127.0.0.1:4317].
    #[arg(long, env = "FAULTLINE_OTLP_GRPC_ADDRESS", value_name = "ADDR")]
    pub otlp_grpc_address: Option<String>,
    /// OTLP/HTTP listen address (POST /v1/traces, /v1/logs) [default: 127.0.0.1:4318].
    #[arg(long, env = "FAULTLINE_OTLP_HTTP_ADDRESS", value_name = "ADDR")]
    pub otlp_http_address: Option<String>,
    /// HTTP API, web page and /metrics listen address [default: 127.0.0.1:8700].
    #[arg(long, env = "FAULTLINE_API_ADDRESS", value_name = "ADDR")]
    pub api_address: Option<String>,
    /// Directory of the embedded store [default: ./faultline-data].
    #[arg(long, env = "FAULTLINE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A trace whose root span has ended completes after this long with no new span,
    /// counted on receive time [default: 5s].
    #[arg(long, env = "FAULTLINE_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// A trace is released this long after its first span, flagged incomplete if it has
    /// no root yet [default: 10m].
    #[arg(long, env = "FAULTLINE_MAX_TRACE_AGE", value_name = "DURATION")]
    pub max_trace_age: Option<String>,
    /// Late spans and evaluator results arriving this long after release are merged and
    /// the trajectory re-analysed; later ones are counted as late [default: 60s].
    #[arg(long, env = "FAULTLINE_LATE_GRACE", value_name = "DURATION")]
    pub late_grace: Option<String>,
    /// Spans held in memory; at the bound the oldest trace is released early, flagged
    /// incomplete [default: 1000000].
    #[arg(long, env = "FAULTLINE_MAX_BUFFERED_SPANS", value_name = "N")]
    pub max_buffered_spans: Option<usize>,
    /// Spans kept per trace; a trace reaching it is released flagged incomplete
    /// [default: 10000].
    #[arg(long, env = "FAULTLINE_MAX_SPANS_PER_TRACE", value_name = "N")]
    pub max_spans_per_trace: Option<usize>,
    /// Deepest parent chain kept in a trajectory; deeper spans are re-hung under their
    /// ancestor at this depth and the trajectory is flagged (anomaly depth_truncated)
    /// [default: 1000].
    #[arg(long, env = "FAULTLINE_MAX_TRACE_DEPTH", value_name = "N")]
    pub max_trace_depth: Option<usize>,
    /// Largest accepted request in bytes, after decompression [default: 67108864].
    #[arg(long, env = "FAULTLINE_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Connections open at once on each listener (OTLP/gRPC, OTLP/HTTP, API); at the cap
    /// a listener stops accepting until one closes [default: 4096].
    #[arg(long, env = "FAULTLINE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// An HTTP connection with no request in flight for this long (sending nothing, a
    /// request head too slowly, or idle) is closed; gRPC connections must send their
    /// HTTP/2 preface within it [default: 10s].
    #[arg(long, env = "FAULTLINE_HEADER_READ_TIMEOUT", value_name = "DURATION")]
    pub header_read_timeout: Option<String>,
    /// Shard threads assembling and analysing traces [default: number of cores].
    #[arg(long, env = "FAULTLINE_SHARDS", value_name = "N")]
    pub shards: Option<usize>,
    /// Memory budget in bytes for decoded requests in flight and records held by the
    /// pipeline: past 80% receivers refuse with a retryable status, at 100% the oldest
    /// open traces are released early; one request may hold a quarter of it. File:
    /// [limits] memory_bytes [default: half the cgroup limit or machine memory].
    #[arg(long, env = "FAULTLINE_MAX_MEMORY_BYTES", value_name = "BYTES")]
    pub max_memory_bytes: Option<u64>,
    /// Push the /metrics series over OTLP to this collector endpoint, such as
    /// http://collector:4317 (gRPC) or http://collector:4318 (HTTP, /v1/metrics is
    /// appended); https for TLS. File: [metrics_push] endpoint [default: no push].
    #[arg(long, env = "FAULTLINE_METRICS_PUSH_ENDPOINT", value_name = "URL")]
    pub metrics_push_endpoint: Option<String>,
    /// Time between OTLP metrics pushes; one more is made at shutdown [default: 60s].
    #[arg(long, env = "FAULTLINE_METRICS_PUSH_INTERVAL", value_name = "DURATION")]
    pub metrics_push_interval: Option<String>,
    /// OTLP metrics push protocol: grpc or http/protobuf [default: grpc].
    #[arg(long, env = "FAULTLINE_METRICS_PUSH_PROTOCOL", value_name = "PROTOCOL")]
    pub metrics_push_protocol: Option<String>,
    /// Longest wait for one OTLP metrics push, connecting included [default: 10s].
    #[arg(long, env = "FAULTLINE_METRICS_PUSH_TIMEOUT", value_name = "DURATION")]
    pub metrics_push_timeout: Option<String>,
    /// Headers (gRPC metadata) of every OTLP metrics push, as name=value,name=value;
    /// replaces [metrics_push] headers.
    #[arg(
        long,
        env = "FAULTLINE_METRICS_PUSH_HEADERS",
        value_name = "LIST",
        hide_env_values = true
    )]
    pub metrics_push_headers: Option<String>,
    /// CA certificates (PEM) trusted for an https metrics push endpoint, besides the
    /// system's. File: [metrics_push] ca_file.
    #[arg(long, env = "FAULTLINE_METRICS_PUSH_CA_FILE", value_name = "FILE")]
    pub metrics_push_ca_file: Option<PathBuf>,
    /// Append every accepted request to the write-ahead log under the data directory
    /// before acknowledging it, and replay it at startup: true or false. File: [wal]
    /// enabled [default: true].
    #[arg(long, env = "FAULTLINE_WAL_ENABLED", value_name = "BOOL")]
    pub wal_enabled: Option<bool>,
    /// When the write-ahead log is fsynced: batch (before each acknowledgement, shared by
    /// the requests written together) or interval (every --wal-fsync-interval; an
    /// acknowledged request survives a crash of the process, not of the machine within
    /// the interval). File: [wal] fsync [default: batch].
    #[arg(long, env = "FAULTLINE_WAL_FSYNC", value_name = "POLICY")]
    pub wal_fsync: Option<String>,
    /// Time between write-ahead log fsyncs with --wal-fsync interval. File: [wal]
    /// fsync_interval [default: 1s].
    #[arg(long, env = "FAULTLINE_WAL_FSYNC_INTERVAL", value_name = "DURATION")]
    pub wal_fsync_interval: Option<String>,
    /// A write-ahead log segment file is closed and a new one started past this size
    /// (at least 65536). File: [wal] segment_bytes [default: 67108864].
    #[arg(long, env = "FAULTLINE_WAL_SEGMENT_BYTES", value_name = "BYTES")]
    pub wal_segment_bytes: Option<u64>,
    /// The most the write-ahead log's segments may take on disk (at least
    /// --wal-segment-bytes); a request that would take it past this is refused
    /// retryably (503 + Retry-After / UNAVAILABLE). File: [wal] max_bytes [default:
    /// 4294967296].
    #[arg(long, env = "FAULTLINE_WAL_MAX_BYTES", value_name = "BYTES")]
    pub wal_max_bytes: Option<u64>,
    /// TLS certificate chain (PEM) of every listener; with --tls-key-file every listener
    /// speaks TLS only (1.2+). Re-read when the file changes. File: [tls] cert_file
    /// (per listener: [tls.otlp_grpc], [tls.otlp_http], [tls.api]).
    #[arg(long, env = "FAULTLINE_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS private key (PEM) of every listener. Re-read when the file changes.
    /// File: [tls] key_file.
    #[arg(long, env = "FAULTLINE_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by a CA of this PEM file
    /// (re-read when the file changes).
    /// File: [tls] client_ca_file (per listener, e.g. [tls.otlp_grpc] only).
    #[arg(long, env = "FAULTLINE_TLS_CLIENT_CA_FILE", value_name = "FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
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
    #[arg(long, env = "FAULTLINE_API_ALLOWED_HOSTS", value_name = "LIST")]
    pub api_allowed_hosts: Option<String>,
    /// Browser origins allowed to send OTLP/HTTP (CORS), comma-separated, such as
    /// https://app.example.com or https://*.example.com [default: none, CORS off].
    /// File: [auth] otlp_http_cors_origins.
    #[arg(long, env = "FAULTLINE_OTLP_HTTP_CORS_ORIGINS", value_name = "LIST")]
    pub otlp_http_cors_origins: Option<String>,
    /// gRPC keepalive enforcement: a client ping sooner than this after the previous one,
    /// or with no request in flight, is a strike; the third closes the connection
    /// [default: 10s].
    #[arg(
        long,
        env = "FAULTLINE_GRPC_KEEPALIVE_MIN_TIME",
        value_name = "DURATION"
    )]
    pub grpc_keepalive_min_time: Option<String>,
    /// A gRPC connection with no request in flight for this long is closed [default: 5m].
    #[arg(
        long,
        env = "FAULTLINE_GRPC_MAX_CONNECTION_IDLE",
        value_name = "DURATION"
    )]
    pub grpc_max_connection_idle: Option<String>,
}

impl ServeArgs {
    /// Reads the config file (if any) and validates everything into settings.
    pub fn settings(&self) -> Result<Settings, crate::config::ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Settings::resolve(
            file,
            self.config.as_deref(),
            Overrides {
                otlp_grpc_address: self.otlp_grpc_address.clone(),
                otlp_http_address: self.otlp_http_address.clone(),
                api_address: self.api_address.clone(),
                data_dir: self.data_dir.clone(),
                idle_timeout: self.idle_timeout.clone(),
                max_trace_age: self.max_trace_age.clone(),
                late_grace: self.late_grace.clone(),
                max_buffered_spans: self.max_buffered_spans,
                max_spans_per_trace: self.max_spans_per_trace,
                max_trace_depth: self.max_trace_depth,
                max_request_bytes: self.max_request_bytes,
                max_connections: self.max_connections,
                header_read_timeout: self.header_read_timeout.clone(),
                shards: self.shards,
                max_memory_bytes: self.max_memory_bytes,
                metrics_push: crate::push::PushOverrides {
                    endpoint: self.metrics_push_endpoint.clone(),
                    interval: self.metrics_push_interval.clone(),
                    protocol: self.metrics_push_protocol.clone(),
                    timeout: self.metrics_push_timeout.clone(),
                    headers: self.metrics_push_headers.clone(),
                    ca_file: self.metrics_push_ca_file.clone(),
                },
                wal: crate::wal::WalOverrides {
                    enabled: self.wal_enabled,
                    fsync: self.wal_fsync.clone(),
                    fsync_interval: self.wal_fsync_interval.clone(),
                    segment_bytes: self.wal_segment_bytes,
                    max_bytes: self.wal_max_bytes,
                },
                grpc_keepalive_min_time: self.grpc_keepalive_min_time.clone(),
                grpc_max_connection_idle: self.grpc_max_connection_idle.clone(),
                tls_cert_file: self.tls_cert_file.clone(),
                tls_key_file: self.tls_key_file.clone(),
                tls_client_ca_file: self.tls_client_ca_file.clone(),
                ingest_token_file: self.ingest_token_file.clone(),
                api_token_file: self.api_token_file.clone(),
                api_allowed_hosts: self.api_allowed_hosts.clone(),
                otlp_http_cors_origins: self.otlp_http_cors_origins.clone(),
            },
        )
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
