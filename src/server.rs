//! `faultline serve`: binds the listeners, starts the pipeline, serves, and shuts down in
//! order.
//!
//! Shutdown order: readiness goes false; the receivers stop taking requests (in-flight
//! ones finish); the shards release every open trace (flagged incomplete) to analysis;
//! the store writes what is queued; the OTLP metrics push (if configured) sends the final
//! values; then the API stops and the process exits.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aggregate::Aggregator;
use crate::assemble::AssembleConfig;
use crate::config::Settings;
use crate::ingest::{self, Ingest, IngestLimits, IngestObserver};
use crate::metrics::SelfMetrics;
use crate::model::Interner;
use crate::pipeline::{Pipeline, PipelineConfig, Workers};
use crate::reasons::{ReasonConfig, ReasonIndex, ReasonStats, ReasonStatsConfig, SharedClusterer};
use crate::store::Recent;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {what} address {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the pipeline threads: {0}")]
    Threads(std::io::Error),
    #[error("invalid reason clustering settings: {0}")]
    Reasons(String),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot start the store writer thread: {0}")]
    StoreThread(std::io::Error),
    #[error("TLS of the {what} listener: {source}")]
    Tls {
        what: &'static str,
        source: crate::security::TlsError,
    },
    #[error("{0}")]
    Wal(#[from] crate::wal::WalError),
    #[error("{option} ([auth] {key}): {source}")]
    Token {
        option: &'static str,
        key: &'static str,
        source: crate::security::token::TokenError,
    },
}

impl ServerError {
    /// The exit code of `faultline serve` failing to start: 2 for a configuration that
    /// cannot be used as given — a TLS or token file, a data directory or store file (a
    /// file in the way, not writable, not a faultline store or corrupted, a newer schema,
    /// a full disk) — 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        use crate::store::StoreError;
        match self {
            ServerError::Tls { .. } | ServerError::Token { .. } => 2,
            ServerError::Store(
                StoreError::DataDir { .. }
                | StoreError::NotWritable { .. }
                | StoreError::Corrupt { .. }
                | StoreError::NewerSchema { .. }
                | StoreError::DiskFull { .. },
            ) => 2,
            _ => 1,
        }
    }
}

/// Ingest counts into the self-metrics.
pub struct MetricsObserver(pub Arc<SelfMetrics>);

impl IngestObserver for MetricsObserver {
    fn received(&self, transport: ingest::Transport, spans: u64) {
        self.0.received(transport.as_str(), spans);
    }

    fn rejected(&self, reason: ingest::RejectReason, spans: u64) {
        self.0.rejected(reason.as_str(), spans);
    }
}

/// A running server: its bound addresses, and what it holds for shutdown.
pub struct Running {
    pub otlp_grpc_address: SocketAddr,
    pub otlp_http_address: SocketAddr,
    pub api_address: SocketAddr,
    pub recent: Arc<Recent>,
    pub aggregator: Arc<Aggregator>,
    pub metrics: Arc<SelfMetrics>,
    pub store: Arc<dyn crate::store::Store>,
    pub store_metrics: Arc<crate::store::StoreMetrics>,
    store_writer: crate::store::StoreWriter,
    pub alerts: Arc<crate::alerts::AlertEngine>,
    ready: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    api_stop: watch::Sender<bool>,
    api_task: JoinHandle<()>,
    workers: Workers,
    metrics_push: Option<crate::push::Pusher>,
    pub wal: Option<Arc<crate::wal::Wal>>,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Which optional sinks run. `serve` runs all of them ([`OptionalSinks::ALL`]); the
/// ingest benchmark turns some off (with [`start_with`]) to measure their cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalSinks {
    /// The per-step aggregation sink (metrics, breakdowns).
    pub aggregation: bool,
    /// The discovery sinks (reason clusters, failure cohorts).
    pub discovery: bool,
}

impl OptionalSinks {
    pub const ALL: OptionalSinks = OptionalSinks {
        aggregation: true,
        discovery: true,
    };
}

/// Binds every listener (port 0 picks a free port) and starts serving.
pub async fn start(settings: &Settings) -> Result<Running, ServerError> {
    start_with(settings, OptionalSinks::ALL).await
}

/// The TLS acceptors and token files of the listeners.
struct Secrets {
    grpc_tls: Option<tokio_rustls::TlsAcceptor>,
    http_tls: Option<tokio_rustls::TlsAcceptor>,
    api_tls: Option<tokio_rustls::TlsAcceptor>,
    ingest_tokens: Option<Arc<crate::security::TokenFile>>,
    api_tokens: Option<Arc<crate::security::TokenFile>>,
}

/// TLS files and token files are read before anything starts, even binding: a bad
/// file stops startup with its option and name.
fn load_secrets(security: &crate::security::SecuritySettings) -> Result<Secrets, ServerError> {
    let tls = |what: &'static str, files: Option<&crate::security::TlsFiles>, alpn| {
        crate::security::tls::acceptor(files, alpn)
            .map_err(|source| ServerError::Tls { what, source })
    };
    let tokens = |option, key, path: Option<&std::path::Path>| {
        path.map(|p| {
            crate::security::TokenFile::load(p)
                .map(Arc::new)
                .map_err(|source| ServerError::Token {
                    option,
                    key,
                    source,
                })
        })
        .transpose()
    };
    Ok(Secrets {
        grpc_tls: tls(
            "OTLP/gRPC",
            security.otlp_grpc_tls.as_ref(),
            crate::security::tls::ALPN_GRPC,
        )?,
        http_tls: tls(
            "OTLP/HTTP",
            security.otlp_http_tls.as_ref(),
            crate::security::tls::ALPN_HTTP,
        )?,
        api_tls: tls(
            "API",
            security.api_tls.as_ref(),
            crate::security::tls::ALPN_HTTP,
        )?,
        ingest_tokens: tokens(
            "--ingest-token-file",
            "ingest_token_file",
            security.ingest_token_file.as_deref(),
        )?,
        api_tokens: tokens(
            "--api-token-file",
            "api_token_file",
            security.api_token_file.as_deref(),
        )?,
    })
}

/// The three listeners, bound, and their actual addresses.
struct Listeners {
    grpc: TcpListener,
    http: TcpListener,
    api: TcpListener,
    otlp_grpc_address: SocketAddr,
    otlp_http_address: SocketAddr,
    api_address: SocketAddr,
}

async fn bind_listeners(settings: &Settings) -> Result<Listeners, ServerError> {
    let grpc = bind("OTLP/gRPC", settings.otlp_grpc_address).await?;
    let http = bind("OTLP/HTTP", settings.otlp_http_address).await?;
    let api = bind("API", settings.api_address).await?;
    let local = |l: &TcpListener, fallback| l.local_addr().unwrap_or(fallback);
    Ok(Listeners {
        otlp_grpc_address: local(&grpc, settings.otlp_grpc_address),
        otlp_http_address: local(&http, settings.otlp_http_address),
        api_address: local(&api, settings.api_address),
        grpc,
        http,
        api,
    })
}

/// The store and the write-ahead log.
struct Storage {
    store: Arc<dyn crate::store::Store>,
    store_metrics: Arc<crate::store::StoreMetrics>,
    /// The log and what a previous run left in it (replayed once the pipeline runs).
    wal: Option<(Arc<crate::wal::Wal>, crate::wal::Found)>,
    wal_metrics: crate::wal::WalMetrics,
    store_writer: crate::store::StoreWriter,
    store_sink: crate::store::StoreSink,
}

/// The embedded store; its per-minute counts go back into the aggregator, so the
/// breakdown covers the stored period after a restart. The write-ahead log is opened
/// before anything is accepted; the store's writer tells it what is committed.
fn open_storage(
    settings: &Settings,
    registry: &mut Registry,
    aggregator: &Arc<Aggregator>,
    budget: &Arc<crate::memory::MemoryBudget>,
) -> Result<Storage, ServerError> {
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::SqliteStore::open(
        &settings.data_dir,
        settings.store.clone(),
    )?);
    let restored = aggregator.import_minutes(&store.counts()?);
    tracing::info!(minutes = restored, path = %settings.data_dir.display(), "Store opened.");
    let store_metrics = Arc::new(crate::store::StoreMetrics::register(registry));
    let wal_metrics = crate::wal::WalMetrics::register(registry);
    let wal = if settings.wal.enabled {
        // Past this a trace never finalized had nothing the pipeline would finalize.
        let expire_after = settings.max_trace_age
            + settings.late_grace
            + settings.idle_timeout
            + Duration::from_secs(60);
        Some(crate::wal::Wal::open(
            &settings.data_dir,
            &settings.wal,
            expire_after,
            Some(budget.clone()),
            wal_metrics.clone(),
        )?)
    } else {
        None
    };
    let (store_writer, store_sink) = crate::store::StoreWriter::start_observed(
        store.clone(),
        Some(aggregator.clone()),
        settings.store.clone(),
        settings.aggregate.dimensions.clone(),
        store_metrics.clone(),
        Some(budget.clone()),
        wal.as_ref()
            .map(|(w, _)| w.clone() as Arc<dyn crate::store::CommitObserver>),
    )
    .map_err(ServerError::StoreThread)?;
    Ok(Storage {
        store,
        store_metrics,
        wal,
        wal_metrics,
        store_writer,
        store_sink,
    })
}

/// Reason clustering and cohort discovery.
struct Discovery {
    reason_clusterer: Arc<SharedClusterer>,
    reason_stats: Arc<std::sync::Mutex<ReasonStats>>,
    reasons_horizon: Duration,
    reasons: Arc<ReasonIndex>,
    cohorts: Arc<crate::cohorts::CohortIndex>,
}

fn start_discovery(settings: &Settings) -> Result<Discovery, ServerError> {
    let reason_clusterer = Arc::new(
        SharedClusterer::new(ReasonConfig::default(), settings.shards.max(1))
            .map_err(|e| ServerError::Reasons(e.to_string()))?,
    );
    // The same horizon as the per-step aggregates, so every window of the page works.
    let reason_stats_config = ReasonStatsConfig {
        horizon: Duration::from_secs(settings.aggregate.horizon_minutes * 60),
        ..ReasonStatsConfig::default()
    };
    let reasons_horizon = reason_stats_config.horizon;
    let reason_stats = Arc::new(std::sync::Mutex::new(ReasonStats::new(reason_stats_config)));
    let reasons = Arc::new(ReasonIndex::new(
        reason_clusterer.clone(),
        reason_stats.clone(),
        crate::reasons::system_clock,
    ));
    // Cohort discovery reads the blamed finding's pattern from the discovery stage's
    // output, which comes with every finalized analysis.
    let cohorts = Arc::new(crate::cohorts::CohortIndex::new(
        crate::cohorts::CohortConfig {
            dimensions: settings.aggregate.dimensions.clone(),
            ..crate::cohorts::CohortConfig::default()
        },
    ));
    cohorts.spawn_miner().map_err(ServerError::Threads)?;
    Ok(Discovery {
        reason_clusterer,
        reason_stats,
        reasons_horizon,
        reasons,
        cohorts,
    })
}

/// The pipeline's shards and its configuration from the settings.
fn start_pipeline(
    settings: &Settings,
    stages: crate::pipeline::Stages,
    metrics: Arc<SelfMetrics>,
    budget: &Arc<crate::memory::MemoryBudget>,
) -> Result<(Pipeline, Workers), ServerError> {
    Pipeline::start(
        PipelineConfig {
            shards: settings.shards,
            max_queued_spans: settings.max_queued_spans,
            submit_wait: Duration::from_millis(500),
            tick: Duration::from_millis(100),
            assemble: AssembleConfig {
                idle_timeout: settings.idle_timeout,
                max_trace_age: settings.max_trace_age,
                late_grace: settings.late_grace,
                max_buffered_spans: settings.max_buffered_spans,
                max_spans_per_trace: settings.max_spans_per_trace,
                max_trace_depth: settings.max_trace_depth,
                max_linked_per_trace: settings.max_linked_per_trace,
            },
            analyze: Arc::new(settings.analyze.clone()),
            max_pending_final: settings.max_buffered_spans / 4,
            memory: Some(budget.clone()),
        },
        stages,
        metrics,
    )
    .map_err(ServerError::Threads)
}

type ServerIngest = Ingest<Pipeline, MetricsObserver>;

/// The OTLP/gRPC and OTLP/HTTP receivers, until `stop_rx` says stop.
fn serve_ingest(
    ingest: &Arc<ServerIngest>,
    listeners: (TcpListener, TcpListener),
    secrets: &mut Secrets,
    settings: &Settings,
    metrics: &SelfMetrics,
    stop_rx: &watch::Receiver<bool>,
) -> [JoinHandle<()>; 2] {
    let security = &settings.security;
    let conn_limits = settings.conn_limits;
    let guard = |listener| {
        secrets.ingest_tokens.as_ref().map(|t| {
            crate::security::layers::TokenGuard::new(t.clone(), metrics.token_refusals(listener))
        })
    };
    let (grpc_guard, http_guard) = (guard("otlp_grpc"), guard("otlp_http"));
    let (grpc_listener, http_listener) = listeners;
    let grpc = {
        let ingest = ingest.clone();
        let shutdown = stopped(stop_rx.clone());
        let grpc_conns = metrics.listener("otlp_grpc");
        let grpc_security = ingest::grpc::GrpcSecurity {
            tls: secrets.grpc_tls.take(),
            tokens: grpc_guard,
            keepalive: Some(security.grpc_keepalive),
        };
        tokio::spawn(async move {
            if let Err(error) = ingest::grpc::serve_grpc_secured(
                ingest,
                grpc_listener,
                conn_limits,
                grpc_conns,
                grpc_security,
                shutdown,
            )
            .await
            {
                tracing::error!(%error, "The OTLP/gRPC server stopped.");
            }
        })
    };
    let router = crate::security::layers::otlp_http(
        ingest::http::http_router(ingest.clone()),
        http_guard,
        crate::security::OriginPatterns::new(&security.otlp_http_cors_origins),
        ingest::http::unauthenticated_response,
    );
    let http = tokio::spawn(crate::net::serve_https(
        http_listener,
        router,
        conn_limits,
        metrics.listener("otlp_http"),
        secrets.http_tls.take(),
        stopped(stop_rx.clone()),
    ));
    [grpc, http]
}

/// What a previous run left in the write-ahead log is replayed into the pipeline
/// before the receivers serve; then the receivers' shared state.
async fn open_ingest(
    pipeline: Pipeline,
    wal: Option<(Arc<crate::wal::Wal>, crate::wal::Found)>,
    wal_metrics: &crate::wal::WalMetrics,
    store: &Arc<dyn crate::store::Store>,
    metrics: &Arc<SelfMetrics>,
    budget: &Arc<crate::memory::MemoryBudget>,
    settings: &Settings,
) -> (Arc<ServerIngest>, Option<Arc<crate::wal::Wal>>) {
    let interner = Arc::new(Interner::default());
    let wal = match wal {
        Some((w, found)) => {
            w.replay(
                found,
                &pipeline,
                &interner,
                budget,
                settings.max_request_bytes.max(64 * 1024 * 1024),
                wal_metrics,
                Some(store.clone()),
            )
            .await;
            Some(w)
        }
        None => None,
    };
    let ingest = Arc::new(Ingest {
        handoff: pipeline,
        observer: MetricsObserver(metrics.clone()),
        interner,
        limits: IngestLimits {
            max_request_bytes: settings.max_request_bytes,
            ..IngestLimits::default()
        },
        budget: budget.clone(),
        wal: wal.clone(),
    });
    (ingest, wal)
}

/// Alerting, and the OTLP metrics push (registered last: every other metric is in the
/// registry the push reads).
struct Monitoring {
    tasks: Vec<JoinHandle<()>>,
    alerts: Arc<crate::alerts::AlertEngine>,
    registry: Arc<Registry>,
    metrics_push: Option<crate::push::Pusher>,
}

fn start_monitoring(
    settings: &Settings,
    mut registry: Registry,
    aggregator: &Arc<Aggregator>,
    discovery: &Discovery,
    api_address: SocketAddr,
    stop_rx: &watch::Receiver<bool>,
) -> Monitoring {
    let alert_tasks = crate::alerts::start(
        settings.alerts.clone(),
        &mut registry,
        aggregator.clone(),
        Some(crate::alerts::reason_lookup(
            discovery.reason_clusterer.clone(),
            discovery.reason_stats.clone(),
        )),
        &format!(
            "{}://{api_address}",
            if settings.security.api_tls.is_some() {
                "https"
            } else {
                "http"
            }
        ),
        stop_rx.clone(),
    );
    let push_metrics = settings
        .metrics_push
        .as_ref()
        .map(|_| crate::push::PushMetrics::register(&mut registry));
    let registry = Arc::new(registry);
    let metrics_push = settings
        .metrics_push
        .clone()
        .zip(push_metrics)
        .map(|(config, m)| crate::push::Pusher::start(config, registry.clone(), m));
    Monitoring {
        tasks: alert_tasks.tasks,
        alerts: alert_tasks.engine,
        registry,
        metrics_push,
    }
}

/// The API behind its token guard and allowed hosts, until the returned sender says
/// stop.
fn serve_api(
    state: crate::api::ApiState,
    listener: TcpListener,
    api_address: SocketAddr,
    secrets: &mut Secrets,
    settings: &Settings,
    metrics: &SelfMetrics,
) -> (watch::Sender<bool>, JoinHandle<()>) {
    let guard = secrets.api_tokens.as_ref().map(|t| {
        crate::security::layers::TokenGuard::new(t.clone(), metrics.token_refusals("api"))
    });
    let api = crate::security::layers::api(
        crate::api::app(Arc::new(state)),
        guard,
        crate::security::AllowedHosts::new(api_address, &settings.security.api_allowed_hosts),
        metrics.host_refusals(),
    );
    let (api_stop, api_stop_rx) = watch::channel(false);
    let task = tokio::spawn(crate::net::serve_https(
        listener,
        api,
        settings.conn_limits,
        metrics.listener("api"),
        secrets.api_tls.take(),
        stopped(api_stop_rx),
    ));
    (api_stop, task)
}

/// Binds every listener and starts serving, with only the given optional sinks.
pub async fn start_with(
    settings: &Settings,
    optional: OptionalSinks,
) -> Result<Running, ServerError> {
    let mut secrets = load_secrets(&settings.security)?;
    let listeners = bind_listeners(settings).await?;
    let (otlp_grpc_address, otlp_http_address, api_address) = (
        listeners.otlp_grpc_address,
        listeners.otlp_http_address,
        listeners.api_address,
    );

    // Self-metrics, the memory budget, and the sinks' shared state.
    let mut registry = Registry::default();
    let metrics = Arc::new(SelfMetrics::register(&mut registry));
    // The budget covers the process's own footprint too: what it holds before serving
    // (code, runtime, listeners, then the store opened and the stages started: measured
    // again below) and the store writer's page cache, which fills as it writes. The
    // marks are parts of the rest.
    let own_footprint =
        || crate::memory::resident_bytes().unwrap_or(0) + crate::store::sqlite::WRITER_CACHE_BYTES;
    let budget = crate::memory::MemoryBudget::with_reserve(settings.memory_bytes, own_footprint());
    crate::metrics::register_memory(&mut registry, budget.clone());
    metrics.init_series(
        &[
            ingest::Transport::Grpc.as_str(),
            ingest::Transport::Http.as_str(),
        ],
        &ingest::RejectReason::ALL.map(|r| r.as_str()),
    );
    let recent = Arc::new(Recent::with_budget(
        settings.recent_trajectories,
        budget.clone(),
    ));
    let aggregator = Arc::new(Aggregator::new(
        settings.aggregate.clone(),
        &mut registry,
        crate::aggregate::system_clock(),
    ));
    let storage = open_storage(settings, &mut registry, &aggregator, &budget)?;
    let discovery = start_discovery(settings)?;

    // The pipeline's stages. The aggregator is a count stage: the store writes its
    // per-minute counts, which must include every trace the store is told is final.
    let mut stages = crate::pipeline::Stages::default();
    stages.sinks.push(recent.clone());
    if optional.aggregation {
        stages.count.push(aggregator.clone());
    }
    if optional.discovery {
        stages.discovery = Some(discovery.reasons.clone());
        stages.sinks.push(discovery.cohorts.clone());
    }
    if let Some((w, _)) = &storage.wal {
        stages.sinks.push(Arc::new(crate::wal::WalSink(w.clone())));
    }
    stages.sinks.push(Arc::new(storage.store_sink));
    let (pipeline, workers) = start_pipeline(settings, stages, metrics.clone(), &budget)?;
    // Everything but the receivers and the API is up, and nothing is replayed yet.
    budget.set_reserve(budget.reserved().max(own_footprint()));
    tracing::info!(
        budget = budget.limit(),
        reserved = budget.reserved(),
        "Memory budget set: what is left after the process's own footprint is for what is held for clients."
    );
    let Storage {
        store,
        store_metrics,
        wal,
        wal_metrics,
        store_writer,
        ..
    } = storage;
    let (ingest, wal) = open_ingest(
        pipeline,
        wal,
        &wal_metrics,
        &store,
        &metrics,
        &budget,
        settings,
    )
    .await;

    // Alerting and the OTLP metrics push.
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stop_rx) = watch::channel(false);
    let Monitoring {
        mut tasks,
        alerts,
        registry,
        metrics_push,
    } = start_monitoring(
        settings,
        registry,
        &aggregator,
        &discovery,
        api_address,
        &stop_rx,
    );
    // The receivers.
    tasks.extend(serve_ingest(
        &ingest,
        (listeners.grpc, listeners.http),
        &mut secrets,
        settings,
        &metrics,
        &stop_rx,
    ));

    // The API, which stops last, after the pipeline has released its traces.
    let state = crate::api::ApiState {
        recent: recent.clone(),
        aggregator: aggregator.clone(),
        store: store.clone(),
        cohorts: Arc::new(crate::api::cohorts::CohortsState {
            index: discovery.cohorts,
            clusterer: Some(discovery.reason_clusterer.clone()),
        }),
        reasons: Arc::new(crate::api::reasons::ReasonsState {
            clusterer: discovery.reason_clusterer,
            stats: discovery.reason_stats,
            horizon: discovery.reasons_horizon,
        }),
        alerts: alerts.clone(),
        registry,
        ready: ready.clone(),
        store_health: {
            let m = store_metrics.clone();
            Arc::new(move || m.health())
        },
        info: crate::api::ServerInfo::new(
            otlp_grpc_address,
            otlp_http_address,
            settings.late_grace,
        ),
    };
    let (api_stop, api_task) = serve_api(
        state,
        listeners.api,
        api_address,
        &mut secrets,
        settings,
        &metrics,
    );
    ready.store(true, Ordering::Release);
    tracing::info!(
        otlp_grpc = %otlp_grpc_address,
        otlp_http = %otlp_http_address,
        api = %api_address,
        "Serving."
    );
    Ok(Running {
        otlp_grpc_address,
        otlp_http_address,
        api_address,
        recent,
        aggregator,
        metrics,
        store,
        store_metrics,
        store_writer,
        alerts,
        ready,
        stop,
        tasks,
        api_stop,
        api_task,
        workers,
        metrics_push,
        wal,
    })
}

impl Running {
    /// Stops in order and waits: receivers, then the pipeline (open traces are
    /// released to analysis), the store writer, the metrics push (one final push), then
    /// the API.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        for task in self.tasks {
            // Give in-flight requests a bounded time to finish.
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let workers = self.workers;
        if tokio::task::spawn_blocking(move || workers.shutdown())
            .await
            .is_err()
        {
            tracing::error!("The pipeline did not shut down cleanly.");
        }
        // The pipeline has finalized everything: write what is queued.
        let writer = self.store_writer;
        if tokio::task::spawn_blocking(move || writer.shutdown())
            .await
            .is_err()
        {
            tracing::error!("The store writer did not shut down cleanly.");
        }
        // Everything is stored: the log's last done records are written and fsynced.
        if let Some(wal) = self.wal {
            if tokio::task::spawn_blocking(move || wal.shutdown())
                .await
                .is_err()
            {
                tracing::error!("The write-ahead log did not shut down cleanly.");
            }
        }
        // Every trace is counted now: the final push carries the final values.
        if let Some(push) = self.metrics_push {
            push.shutdown().await;
        }
        let _ = self.api_stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.api_task).await;
    }
}

/// Serves until `signal` resolves, then shuts down in order.
pub async fn serve(
    settings: &Settings,
    signal: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let running = start(settings).await?;
    signal.await;
    tracing::info!("Shutting down.");
    running.shutdown().await;
    Ok(())
}
