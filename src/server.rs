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

/// Binds every listener (port 0 picks a free port) and starts serving.
pub async fn start(settings: &Settings) -> Result<Running, ServerError> {
    // TLS files and token files are read before anything starts, even binding: a bad
    // file stops startup with its option and name.
    let security = &settings.security;
    let tls = |what: &'static str, files: Option<&crate::security::TlsFiles>, alpn| {
        crate::security::tls::acceptor(files, alpn)
            .map_err(|source| ServerError::Tls { what, source })
    };
    let grpc_tls = tls(
        "OTLP/gRPC",
        security.otlp_grpc_tls.as_ref(),
        crate::security::tls::ALPN_GRPC,
    )?;
    let http_tls = tls(
        "OTLP/HTTP",
        security.otlp_http_tls.as_ref(),
        crate::security::tls::ALPN_HTTP,
    )?;
    let api_tls = tls(
        "API",
        security.api_tls.as_ref(),
        crate::security::tls::ALPN_HTTP,
    )?;
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
    let ingest_tokens = tokens(
        "--ingest-token-file",
        "ingest_token_file",
        security.ingest_token_file.as_deref(),
    )?;
    let api_tokens = tokens(
        "--api-token-file",
        "api_token_file",
        security.api_token_file.as_deref(),
    )?;
    let grpc_listener = bind("OTLP/gRPC", settings.otlp_grpc_address).await?;
    let http_listener = bind("OTLP/HTTP", settings.otlp_http_address).await?;
    let api_listener = bind("API", settings.api_address).await?;
    let local = |l: &TcpListener, fallback| l.local_addr().unwrap_or(fallback);
    let otlp_grpc_address = local(&grpc_listener, settings.otlp_grpc_address);
    let otlp_http_address = local(&http_listener, settings.otlp_http_address);
    let api_address = local(&api_listener, settings.api_address);

    let mut registry = Registry::default();
    let metrics = Arc::new(SelfMetrics::register(&mut registry));
    let budget = crate::memory::MemoryBudget::new(settings.memory_bytes);
    crate::metrics::register_memory(&mut registry, budget.clone());
    metrics.init_series(
        &[
            ingest::Transport::Grpc.as_str(),
            ingest::Transport::Http.as_str(),
        ],
        &ingest::RejectReason::ALL.map(|r| r.as_str()),
    );
    let guard = |tokens: &Option<Arc<crate::security::TokenFile>>, listener| {
        tokens.as_ref().map(|t| {
            crate::security::layers::TokenGuard::new(t.clone(), metrics.token_refusals(listener))
        })
    };
    let grpc_guard = guard(&ingest_tokens, "otlp_grpc");
    let http_guard = guard(&ingest_tokens, "otlp_http");
    let api_guard = guard(&api_tokens, "api");
    let recent = Arc::new(Recent::new(settings.recent_trajectories));
    let aggregator = Arc::new(Aggregator::new(
        settings.aggregate.clone(),
        &mut registry,
        crate::aggregate::system_clock(),
    ));
    // The embedded store; its per-minute counts go back into the aggregator, so the
    // breakdown covers the stored period after a restart.
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::SqliteStore::open(
        &settings.data_dir,
        settings.store.clone(),
    )?);
    let restored = aggregator.import_minutes(&store.counts()?);
    tracing::info!(minutes = restored, path = %settings.data_dir.display(), "Store opened.");
    let store_metrics = Arc::new(crate::store::StoreMetrics::register(&mut registry));
    // The write-ahead log: opened before anything is accepted; what a previous run
    // left is replayed below, once the pipeline runs and before the listeners serve.
    let wal_metrics = crate::wal::WalMetrics::register(&mut registry);
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
    // The aggregator is a count stage: the store writes its per-minute counts, which
    // must include every trace the store is told is final.
    let mut stages = crate::pipeline::Stages::default();
    stages.sinks.push(recent.clone());
    if settings.aggregation {
        stages.count.push(aggregator.clone());
    }
    if settings.discovery {
        stages.discovery = Some(reasons);
        stages.sinks.push(cohorts.clone());
    }
    if let Some((w, _)) = &wal {
        stages.sinks.push(Arc::new(crate::wal::WalSink(w.clone())));
    }
    stages.sinks.push(Arc::new(store_sink));
    let (pipeline, workers) = Pipeline::start(
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
            },
            analyze: Arc::new(settings.analyze.clone()),
            max_pending_final: settings.max_buffered_spans / 4,
            memory: Some(budget.clone()),
        },
        stages,
        metrics.clone(),
    )
    .map_err(ServerError::Threads)?;

    let interner = Arc::new(Interner::default());
    let wal = match wal {
        Some((w, found)) => {
            w.replay(
                found,
                &pipeline,
                &interner,
                &budget,
                settings.max_request_bytes.max(64 * 1024 * 1024),
                &wal_metrics,
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
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let alert_tasks = crate::alerts::start(
        settings.alerts.clone(),
        &mut registry,
        aggregator.clone(),
        Some(crate::alerts::reason_lookup(
            reason_clusterer.clone(),
            reason_stats.clone(),
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
    tasks.extend(alert_tasks.tasks);
    let alerts = alert_tasks.engine;
    // Registered last: every other metric is in the registry the push reads.
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

    let conn_limits = settings.conn_limits;
    let grpc_conns = metrics.listener("otlp_grpc");
    let http_conns = metrics.listener("otlp_http");
    let api_conns = metrics.listener("api");
    {
        let ingest = ingest.clone();
        let shutdown = stopped(stop_rx.clone());
        let grpc_security = ingest::grpc::GrpcSecurity {
            tls: grpc_tls,
            tokens: grpc_guard,
            keepalive: Some(security.grpc_keepalive),
        };
        tasks.push(tokio::spawn(async move {
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
        }));
    }
    {
        let router = crate::security::layers::otlp_http(
            ingest::http::http_router(ingest.clone()),
            http_guard,
            crate::security::OriginPatterns::new(&security.otlp_http_cors_origins),
            ingest::http::unauthenticated_response,
        );
        let shutdown = stopped(stop_rx.clone());
        tasks.push(tokio::spawn(crate::net::serve_https(
            http_listener,
            router,
            conn_limits,
            http_conns,
            http_tls,
            shutdown,
        )));
    }
    let api = crate::api::app(Arc::new(crate::api::ApiState {
        recent: recent.clone(),
        aggregator: aggregator.clone(),
        store: store.clone(),
        cohorts: Arc::new(crate::api::cohorts::CohortsState {
            index: cohorts,
            clusterer: Some(reason_clusterer.clone()),
        }),
        reasons: Arc::new(crate::api::reasons::ReasonsState {
            clusterer: reason_clusterer,
            stats: reason_stats,
            horizon: reasons_horizon,
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
    }));
    let api = crate::security::layers::api(
        api,
        api_guard,
        crate::security::AllowedHosts::new(api_address, &security.api_allowed_hosts),
        metrics.host_refusals(),
    );
    // The API stops last, after the pipeline has released its traces.
    let (api_stop, api_stop_rx) = watch::channel(false);
    let api_task = tokio::spawn(crate::net::serve_https(
        api_listener,
        api,
        conn_limits,
        api_conns,
        api_tls,
        stopped(api_stop_rx),
    ));
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
