//! The store's writer thread and the [`Sink`] that feeds it.
//!
//! ```text
//! shard threads ──publish/finalize──► [bounded queue] ──► writer thread: batch → one transaction
//!                 (try_send; full: dropped and counted)      + per-minute counts of the batch
//! ```
//!
//! - `publish`: upsert the trajectory by trace id when it is kept (every failed or
//!   recovered one, a hash sample of successful ones); a later revision that is no
//!   longer kept removes the row.
//! - `finalize`: marks the row final and makes its event minute dirty; at the end of the
//!   batch the aggregator's counts of every dirty minute are written in the same
//!   transaction. The store sink runs after the aggregator in the sink list, so those
//!   counts include the trace.
//! - A failed transaction is retried with backoff (the queue keeps filling meanwhile, and
//!   overflows are counted); after [`MAX_ATTEMPTS`] the batch is dropped and counted.
//! - Retention runs on this thread too, every `retention_interval`.
//! - A [`CommitObserver`] (the write-ahead log) is told which traces the store is done
//!   with: those whose finalize was committed (row and counts), or dropped and counted.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::aggregate::{minute_of, Aggregator, Dimension};
use crate::model::{Analysis, TraceId};
use crate::pipeline::Sink;
use crate::store::config::StoreConfig;
use crate::store::record::{keep, record};
use crate::store::{Store, Write};

/// Attempts of one batch before it is dropped.
pub const MAX_ATTEMPTS: u32 = 8;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreReasonLabels {
    pub reason: &'static str,
}

/// The store's self-metrics.
pub struct StoreMetrics {
    /// Committed writes by op: `put`, `remove`, `finalize`, `counts`.
    pub writes: Family<OpLabels, Counter>,
    /// Writes not made, by reason: `queue_full`, `write_error`, `encode_error`.
    pub dropped: Family<StoreReasonLabels, Counter>,
    /// Failed transactions (each retry counts).
    pub errors: Counter,
    /// Writes waiting for the writer thread.
    pub queued: Gauge,
    /// Bytes of live pages, updated by each retention pass.
    pub bytes: Gauge,
    /// Trajectories deleted by retention, by reason: `age`, `size`.
    pub retained: Family<StoreReasonLabels, Counter>,
    /// False while the last transaction failed.
    pub healthy: AtomicBool,
}

impl StoreMetrics {
    pub fn register(registry: &mut Registry) -> StoreMetrics {
        let m = StoreMetrics {
            writes: Family::default(),
            dropped: Family::default(),
            errors: Counter::default(),
            queued: Gauge::default(),
            bytes: Gauge::default(),
            retained: Family::default(),
            healthy: AtomicBool::new(true),
        };
        for op in ["put", "remove", "finalize", "counts"] {
            let _ = m.writes.get_or_create(&OpLabels { op });
        }
        for reason in ["queue_full", "write_error", "encode_error"] {
            let _ = m.dropped.get_or_create(&StoreReasonLabels { reason });
        }
        for reason in ["age", "size"] {
            let _ = m.retained.get_or_create(&StoreReasonLabels { reason });
        }
        registry.register(
            "faultline_store_writes",
            "Store writes committed, by op",
            m.writes.clone(),
        );
        registry.register(
            "faultline_store_dropped",
            "Store writes not made (queue full, write error after retries, encode error)",
            m.dropped.clone(),
        );
        registry.register(
            "faultline_store_errors",
            "Store transactions that failed (retries included)",
            m.errors.clone(),
        );
        registry.register(
            "faultline_store_queue",
            "Writes waiting for the store writer",
            m.queued.clone(),
        );
        registry.register(
            "faultline_store_bytes",
            "Bytes used by the store's live pages",
            m.bytes.clone(),
        );
        registry.register(
            "faultline_store_retained",
            "Trajectories deleted by retention, by reason",
            m.retained.clone(),
        );
        m
    }

    fn drop_one(&self, reason: &'static str, n: u64) {
        self.dropped
            .get_or_create(&StoreReasonLabels { reason })
            .inc_by(n);
    }

    fn wrote(&self, op: &'static str, n: u64) {
        if n > 0 {
            self.writes.get_or_create(&OpLabels { op }).inc_by(n);
        }
    }
}

/// Told which traces the store is done with: their finalize was committed (the row, if
/// kept, and the per-minute counts that include them), or dropped and counted in
/// `faultline_store_dropped_total`. Called on the writer thread, or on a shard thread
/// for a write the full queue dropped; must be quick.
pub trait CommitObserver: Send + Sync + 'static {
    fn committed(&self, traces: &[TraceId]);
}

enum Msg {
    Publish(Arc<Analysis>),
    Finalize(Arc<Analysis>),
    Stop,
}

/// The [`Sink`] of the store: hands analyses to the writer thread without blocking.
pub struct StoreSink {
    tx: SyncSender<Msg>,
    metrics: Arc<StoreMetrics>,
    observer: Option<Arc<dyn CommitObserver>>,
}

impl StoreSink {
    fn send(&self, msg: Msg) {
        let dropped = match self.tx.try_send(msg) {
            Ok(()) => {
                self.metrics.queued.inc();
                return;
            }
            Err(TrySendError::Full(m)) => m,
            // The writer has stopped (shutdown): nothing to do.
            Err(TrySendError::Disconnected(m)) => m,
        };
        self.metrics.drop_one("queue_full", 1);
        if let (Msg::Finalize(a), Some(o)) = (dropped, &self.observer) {
            o.committed(&[a.trajectory.trace_id]);
        }
    }
}

impl Sink for StoreSink {
    fn publish(&self, analysis: Arc<Analysis>) {
        self.send(Msg::Publish(analysis));
    }

    fn finalize(&self, analysis: Arc<Analysis>) {
        self.send(Msg::Finalize(analysis));
    }
}

/// The writer thread; [`StoreWriter::shutdown`] drains its queue and stops it.
pub struct StoreWriter {
    tx: SyncSender<Msg>,
    thread: JoinHandle<()>,
}

struct Worker {
    store: Arc<dyn Store>,
    aggregator: Option<Arc<Aggregator>>,
    config: StoreConfig,
    dims: Vec<Dimension>,
    metrics: Arc<StoreMetrics>,
    observer: Option<Arc<dyn CommitObserver>>,
}

impl StoreWriter {
    /// Starts the writer thread. `aggregator` (when given) supplies the per-minute
    /// counts; `dims` are the cohort dimensions stored with each trajectory.
    pub fn start(
        store: Arc<dyn Store>,
        aggregator: Option<Arc<Aggregator>>,
        config: StoreConfig,
        dims: Vec<Dimension>,
        metrics: Arc<StoreMetrics>,
    ) -> std::io::Result<(StoreWriter, StoreSink)> {
        StoreWriter::start_observed(store, aggregator, config, dims, metrics, None)
    }

    /// [`StoreWriter::start`], telling `observer` which traces the store is done with.
    pub fn start_observed(
        store: Arc<dyn Store>,
        aggregator: Option<Arc<Aggregator>>,
        config: StoreConfig,
        dims: Vec<Dimension>,
        metrics: Arc<StoreMetrics>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> std::io::Result<(StoreWriter, StoreSink)> {
        let (tx, rx) = mpsc::sync_channel(config.queue.max(1));
        let worker = Worker {
            store,
            aggregator,
            config,
            dims,
            metrics: metrics.clone(),
            observer: observer.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("faultline-store".into())
            .spawn(move || worker.run(rx))?;
        Ok((
            StoreWriter {
                tx: tx.clone(),
                thread,
            },
            StoreSink {
                tx,
                metrics,
                observer,
            },
        ))
    }

    /// Writes what is queued and stops. Blocking: call after the pipeline has drained.
    pub fn shutdown(self) {
        // Waits for room: everything queued before is written first.
        let _ = self.tx.send(Msg::Stop);
        if self.thread.join().is_err() {
            tracing::error!("The store writer panicked.");
        }
    }
}

fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

impl Worker {
    fn run(self, rx: mpsc::Receiver<Msg>) {
        let mut batch: Vec<Msg> = Vec::with_capacity(self.config.max_batch);
        // First retention pass soon after start.
        let mut next_retention = Instant::now() + Duration::from_secs(1);
        loop {
            let mut stop = false;
            let wait = next_retention.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Msg::Stop) => stop = true,
                Ok(m) => {
                    batch.push(m);
                    while batch.len() < self.config.max_batch {
                        match rx.try_recv() {
                            Ok(Msg::Stop) => {
                                stop = true;
                                break;
                            }
                            Ok(m) => batch.push(m),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            if !batch.is_empty() {
                self.metrics.queued.dec_by(batch.len() as i64);
                self.commit(&mut batch);
            }
            if stop {
                // Anything sent before Stop was received before it.
                return;
            }
            if Instant::now() >= next_retention {
                self.retention();
                next_retention = Instant::now() + self.config.retention_interval;
            }
        }
    }

    fn commit(&self, batch: &mut Vec<Msg>) {
        let now = now_unix_nano();
        let mut writes: Vec<Write> = Vec::with_capacity(batch.len() + 2);
        let mut dirty: BTreeSet<u64> = BTreeSet::new();
        let mut finalized: Vec<TraceId> = Vec::new();
        for msg in batch.drain(..) {
            match msg {
                Msg::Publish(a) => {
                    if keep(&a, self.config.success_sample) {
                        match self.encode(&a) {
                            Ok(r) => writes.push(Write::Put(r)),
                            Err(e) => {
                                tracing::warn!(error = %e, "A trajectory could not be encoded for the store.");
                                self.metrics.drop_one("encode_error", 1);
                            }
                        }
                    } else if a.trajectory.revision > 0 {
                        writes.push(Write::Remove(a.trajectory.trace_id));
                    }
                }
                Msg::Finalize(a) => {
                    finalized.push(a.trajectory.trace_id);
                    if keep(&a, self.config.success_sample) {
                        writes.push(Write::Finalized(a.trajectory.trace_id));
                    }
                    if let Some(agg) = &self.aggregator {
                        dirty.insert(minute_of(agg.config(), a.trajectory.end_unix_nano(), now));
                    }
                }
                Msg::Stop => {}
            }
        }
        if let Some(agg) = &self.aggregator {
            for m in dirty {
                if let Some(counts) = agg.export_minute(m) {
                    writes.push(Write::Counts(counts));
                }
            }
        }
        if writes.is_empty() {
            self.done(&finalized);
            return;
        }
        let mut backoff = Duration::from_millis(50);
        for attempt in 1..=MAX_ATTEMPTS {
            match self.store.write(&writes) {
                Ok(()) => {
                    self.done(&finalized);
                    self.metrics.healthy.store(true, Ordering::Relaxed);
                    let mut n = [0u64; 4];
                    for w in &writes {
                        n[match w {
                            Write::Put(_) => 0,
                            Write::Remove(_) => 1,
                            Write::Finalized(_) => 2,
                            Write::Counts(_) => 3,
                        }] += 1;
                    }
                    self.metrics.wrote("put", n[0]);
                    self.metrics.wrote("remove", n[1]);
                    self.metrics.wrote("finalize", n[2]);
                    self.metrics.wrote("counts", n[3]);
                    return;
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    self.metrics.healthy.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, attempt, "A store transaction failed; retrying.");
                    if attempt < MAX_ATTEMPTS {
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
        tracing::error!(
            writes = writes.len(),
            "Store writes dropped after repeated failures."
        );
        self.metrics.drop_one("write_error", writes.len() as u64);
        self.done(&finalized);
    }

    fn done(&self, finalized: &[TraceId]) {
        if let (Some(o), false) = (&self.observer, finalized.is_empty()) {
            o.committed(finalized);
        }
    }

    fn encode(&self, a: &Analysis) -> std::io::Result<crate::store::Record> {
        let doc = crate::api::dto::TrajectoryDto::from_analysis(a, true);
        let json = serde_json::to_vec(&doc).map_err(std::io::Error::other)?;
        record(a, &self.dims, &json)
    }

    fn retention(&self) {
        match self.store.retain(now_unix_nano()) {
            Ok(r) => {
                if r.by_age > 0 {
                    self.metrics
                        .retained
                        .get_or_create(&StoreReasonLabels { reason: "age" })
                        .inc_by(r.by_age);
                }
                if r.by_size > 0 {
                    self.metrics
                        .retained
                        .get_or_create(&StoreReasonLabels { reason: "size" })
                        .inc_by(r.by_size);
                }
            }
            Err(e) => {
                self.metrics.errors.inc();
                tracing::warn!(error = %e, "Store retention failed; will retry.");
            }
        }
        if let Ok(b) = self.store.used_bytes() {
            self.metrics.bytes.set(i64::try_from(b).unwrap_or(i64::MAX));
        }
    }
}
