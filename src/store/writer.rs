//! The store's writer thread and the [`Sink`] that feeds it.
//!
//! ```text
//! shard threads ──publish/finalize──► [queue, charged to the memory budget] ──► writer thread:
//!                 (never blocks; successes shed          batch → one transaction
//!                  when behind, counted)                 + per-minute counts of the batch
//! ```
//!
//! - `publish`: upsert the trajectory by trace id when it is kept (every failed or
//!   recovered one, a hash sample of successful ones); a later revision that is no
//!   longer kept removes the row.
//! - `finalize`: marks the row final and adds *this trace's own counts* to its stored
//!   minute, in the same transaction. The aggregator is in the pipeline's `count` stage,
//!   which finalizes a trace before the store sink's stage sees it: it keeps what the
//!   trace added to its minute, and the sink takes that into the queued finalize
//!   ([`Aggregator::take_trace_counts`]). So a stored minute holds exactly the counts of
//!   the traces whose finalize is committed — never those of a trace counted but whose
//!   finalize still waits in the queue, which a kill would have the write-ahead log
//!   replay and count again.
//! - A batch that finalizes traces, when a [`CommitObserver`] is attached (the
//!   write-ahead log), is committed durably ([`Store::write_durable`]: SQLite's WAL file
//!   is fsynced at that commit); other batches are not synced (`synchronous=NORMAL`: a
//!   killed process loses nothing committed, a power loss may lose the last commits,
//!   which the log still holds).
//! - Nothing failed or recovered is dropped for room: each queued analysis is charged to
//!   the memory budget (`store` component) until its transaction commits, so a writer
//!   that falls behind makes the receivers refuse retryably at the soft mark. First
//!   release of a sampled *success* is shed instead of queued while the store is behind
//!   (more than `[store] queue` writes waiting, the budget past its soft mark, or the
//!   store failing), counted in `faultline_store_dropped_total{reason="shed"}`.
//! - A failed transaction is retried with backoff (50 ms doubling to 5 s) for as long as
//!   it fails, holding its writes; only at shutdown, after [`MAX_ATTEMPTS`], is it
//!   dropped and counted. Writes that cannot be encoded are dropped at once and counted.
//! - A store found corrupted (by a read, a write or the header check every second) is no
//!   longer written: what is queued is held (and charged) until restart.
//! - [`StoreMetrics::health`] tells the health endpoints whether the store is behind,
//!   failing or corrupted.
//! - Retention runs on this thread too, every `retention_interval`.
//! - A [`CommitObserver`] (the write-ahead log) is told which traces the store is done
//!   with: those whose finalize was committed (row and counts), or whose writes can never
//!   be encoded (dropped and counted). Writes given up at shutdown are not reported, so
//!   the log replays them at the next start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::aggregate::{Aggregator, Dimension, MinuteCounts};
use crate::memory::{AnalysisCharge, Component, MemoryBudget};
use crate::model::{Analysis, Outcome, TraceId};
use crate::pipeline::{Finalized, Sink};
use crate::store::config::StoreConfig;
use crate::store::record::{keep, record};
use crate::store::{Store, Write};

/// Attempts of one failing batch before it is dropped, once shutdown has begun.
pub const MAX_ATTEMPTS: u32 = 8;
/// The store is behind when the oldest write of a batch waited longer than this, or
/// writes wait while the writer has made no progress for this long.
pub const BEHIND_AFTER: Duration = Duration::from_secs(5);
/// The store is behind for this long after a success was shed.
pub const SHED_WINDOW: Duration = Duration::from_secs(10);
/// The longest the writer waits for work before it checks the store's health.
const TICK: Duration = Duration::from_secs(1);

/// Why the store is degraded; the `reason` label of `faultline_store_degraded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Degraded {
    /// Writes wait longer than [`BEHIND_AFTER`], or successes are being shed.
    Behind(String),
    /// The last transaction failed (disk full, lock held elsewhere, I/O error).
    Failing(String),
    /// The file is corrupted: no longer written until restart.
    Corrupted(String),
}

impl Degraded {
    pub const REASONS: [&'static str; 3] = ["behind", "failing", "corrupted"];

    pub fn reason(&self) -> &'static str {
        match self {
            Degraded::Behind(_) => "behind",
            Degraded::Failing(_) => "failing",
            Degraded::Corrupted(_) => "corrupted",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Degraded::Behind(d) | Degraded::Failing(d) | Degraded::Corrupted(d) => d,
        }
    }
}

/// What the writer and the sink know of the store's health.
struct HealthState {
    /// Milliseconds are counted from here.
    epoch: Instant,
    /// The last failed transaction's error, cleared by a commit.
    last_error: Mutex<Option<String>>,
    /// Why the store is corrupted (sticky).
    corrupted: Mutex<Option<String>>,
    /// When a success was last shed (ms since `epoch`, 0: never).
    shed_at: AtomicU64,
    /// When the writer last took or committed writes (ms since `epoch`).
    progress_at: AtomicU64,
    /// How long the oldest write of the latest batch waited (ms); 0 when idle.
    lag: AtomicU64,
}

impl HealthState {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis().min(u64::MAX as u128) as u64
    }
}

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
    /// 1 while the store is degraded for the label's reason: `behind`, `failing`,
    /// `corrupted`.
    pub degraded: Family<StoreReasonLabels, Gauge>,
    state: HealthState,
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
            degraded: Family::default(),
            state: HealthState {
                epoch: Instant::now(),
                last_error: Mutex::new(None),
                corrupted: Mutex::new(None),
                shed_at: AtomicU64::new(0),
                progress_at: AtomicU64::new(0),
                lag: AtomicU64::new(0),
            },
        };
        for op in ["put", "remove", "finalize", "counts"] {
            let _ = m.writes.get_or_create(&OpLabels { op });
        }
        for reason in ["queue_full", "write_error", "encode_error", "shed"] {
            let _ = m.dropped.get_or_create(&StoreReasonLabels { reason });
        }
        for reason in Degraded::REASONS {
            let _ = m.degraded.get_or_create(&StoreReasonLabels { reason });
        }
        for reason in ["age", "size"] {
            let _ = m.retained.get_or_create(&StoreReasonLabels { reason });
        }
        crate::metrics::register(registry, &crate::metrics::STORE_WRITES, m.writes.clone());
        crate::metrics::register(registry, &crate::metrics::STORE_DROPPED, m.dropped.clone());
        crate::metrics::register(registry, &crate::metrics::STORE_ERRORS, m.errors.clone());
        crate::metrics::register(registry, &crate::metrics::STORE_QUEUE, m.queued.clone());
        crate::metrics::register(registry, &crate::metrics::STORE_BYTES, m.bytes.clone());
        crate::metrics::register(
            registry,
            &crate::metrics::STORE_DEGRADED,
            m.degraded.clone(),
        );
        crate::metrics::register(
            registry,
            &crate::metrics::STORE_RETAINED,
            m.retained.clone(),
        );
        m
    }

    fn drop_one(&self, reason: &'static str, n: u64) {
        self.dropped
            .get_or_create(&StoreReasonLabels { reason })
            .inc_by(n);
    }

    /// Why the store is degraded now (empty: healthy); also sets
    /// `faultline_store_degraded`.
    pub fn health(&self) -> Vec<Degraded> {
        let st = &self.state;
        let now = st.now_ms();
        let lock = |m: &'_ Mutex<Option<String>>| m.lock().map(|g| g.clone()).unwrap_or(None);
        let mut out = Vec::new();
        let queued = self.queued.get().max(0);
        let lag = st.lag.load(Ordering::Relaxed);
        let idle_for = now.saturating_sub(st.progress_at.load(Ordering::Relaxed));
        let shed_at = st.shed_at.load(Ordering::Relaxed);
        let behind_ms = BEHIND_AFTER.as_millis() as u64;
        if shed_at != 0 && now.saturating_sub(shed_at) < SHED_WINDOW.as_millis() as u64 {
            out.push(Degraded::Behind(format!(
                "successful trajectories are being shed; {queued} writes waiting"
            )));
        } else if lag > behind_ms {
            out.push(Degraded::Behind(format!(
                "writes waited {:.1} s; {queued} writes waiting",
                lag as f64 / 1000.0
            )));
        } else if queued > 0 && idle_for > behind_ms {
            out.push(Degraded::Behind(format!(
                "no write for {:.1} s; {queued} writes waiting",
                idle_for as f64 / 1000.0
            )));
        }
        if let Some(e) = lock(&st.last_error) {
            out.push(Degraded::Failing(format!("the last write failed: {e}")));
        }
        if let Some(c) = lock(&st.corrupted) {
            out.push(Degraded::Corrupted(c));
        }
        for reason in Degraded::REASONS {
            let on = out.iter().any(|d| d.reason() == reason);
            self.degraded
                .get_or_create(&StoreReasonLabels { reason })
                .set(on as i64);
        }
        out
    }

    /// Whether writes cannot currently be made (failing or corrupted).
    fn blocked(&self) -> bool {
        let some = |m: &Mutex<Option<String>>| m.lock().map(|g| g.is_some()).unwrap_or(false);
        some(&self.state.last_error) || some(&self.state.corrupted)
    }

    fn set(&self, slot: &Mutex<Option<String>>, value: Option<String>) {
        if let Ok(mut g) = slot.lock() {
            *g = value;
        }
    }

    fn wrote(&self, op: &'static str, n: u64) {
        if n > 0 {
            self.writes.get_or_create(&OpLabels { op }).inc_by(n);
        }
    }
}

/// Told which traces the store is done with: their finalize was committed durably (the
/// row, if kept, and their per-minute counts; the commit survives power loss), or could
/// never be encoded and was counted in `faultline_store_dropped_total`. Called on the
/// writer thread after the commit has returned; must be quick.
pub trait CommitObserver: Send + Sync + 'static {
    fn committed(&self, traces: &[TraceId]);
}

enum Msg {
    /// A kept analysis to upsert, with its charge to the memory budget.
    Publish {
        analysis: Arc<Analysis>,
        _charge: Option<AnalysisCharge>,
        at: Instant,
    },
    /// A revision no longer kept: its row goes.
    Remove {
        trace_id: TraceId,
        at: Instant,
    },
    /// A trace's grace ended: its row is final (when kept) and its minute's counts are
    /// written.
    Finalize {
        trace_id: TraceId,
        /// What counting this trace added to its minute (from the aggregator); `None`
        /// without an aggregator, or when it was not counted (older than the horizon).
        counts: Option<MinuteCounts>,
        kept: bool,
        at: Instant,
    },
    Stop,
}

impl Msg {
    fn at(&self) -> Option<Instant> {
        match self {
            Msg::Publish { at, .. } | Msg::Remove { at, .. } | Msg::Finalize { at, .. } => {
                Some(*at)
            }
            Msg::Stop => None,
        }
    }
}

/// The [`Sink`] of the store: hands analyses to the writer thread without blocking.
pub struct StoreSink {
    tx: Sender<Msg>,
    /// Hands over each finalized trace's own counts.
    aggregator: Option<Arc<Aggregator>>,
    metrics: Arc<StoreMetrics>,
    budget: Option<Arc<MemoryBudget>>,
    success_sample: f64,
    /// Writes waiting past which successes are shed.
    queue: usize,
}

impl StoreSink {
    fn send(&self, msg: Msg) {
        match self.tx.send(msg) {
            Ok(()) => {
                self.metrics.queued.inc();
            }
            // The writer has stopped (after shutdown): nothing can be written any more.
            Err(_) => self.metrics.drop_one("write_error", 1),
        };
    }

    /// Whether a first release of a success is shed rather than queued.
    fn shed(&self) -> bool {
        self.metrics.queued.get() >= self.queue as i64
            || self.budget.as_ref().is_some_and(|b| b.past_soft())
            || self.metrics.blocked()
    }
}

impl Sink for StoreSink {
    fn publish(&self, analysis: Arc<Analysis>) {
        let trace_id = analysis.trajectory.trace_id;
        if !keep(&analysis, self.success_sample) {
            // A first release not kept has nothing stored to replace.
            if analysis.trajectory.revision > 0 {
                self.send(Msg::Remove {
                    trace_id,
                    at: Instant::now(),
                });
            }
            return;
        }
        if analysis.outcome == Outcome::Success && analysis.trajectory.revision == 0 && self.shed()
        {
            self.metrics.drop_one("shed", 1);
            let st = &self.metrics.state;
            st.shed_at.store(st.now_ms().max(1), Ordering::Relaxed);
            return;
        }
        let _charge = self
            .budget
            .as_ref()
            .map(|b| b.charge_analysis(Component::Store, &analysis));
        self.send(Msg::Publish {
            analysis,
            _charge,
            at: Instant::now(),
        });
    }

    fn finalize(&self, analysis: &Finalized) {
        let trace_id = analysis.trajectory.trace_id;
        self.send(Msg::Finalize {
            trace_id,
            counts: self
                .aggregator
                .as_ref()
                .and_then(|a| a.take_trace_counts(trace_id)),
            kept: keep(analysis, self.success_sample),
            at: Instant::now(),
        });
    }
}

/// The writer thread; [`StoreWriter::shutdown`] drains its queue and stops it.
pub struct StoreWriter {
    tx: Sender<Msg>,
    stopping: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

struct Worker {
    store: Arc<dyn Store>,
    config: StoreConfig,
    dims: Vec<Dimension>,
    metrics: Arc<StoreMetrics>,
    stopping: Arc<AtomicBool>,
    observer: Option<Arc<dyn CommitObserver>>,
}

impl StoreWriter {
    /// Starts the writer thread. `aggregator` (when given, it must be in the pipeline's
    /// count stage) supplies each finalized trace's counts, which the writer adds to the
    /// stored minute in the transaction that commits the finalize; `dims` are the cohort dimensions stored with each trajectory; `budget`
    /// (when given) is charged with what waits for the writer.
    pub fn start(
        store: Arc<dyn Store>,
        aggregator: Option<Arc<Aggregator>>,
        config: StoreConfig,
        dims: Vec<Dimension>,
        metrics: Arc<StoreMetrics>,
        budget: Option<Arc<MemoryBudget>>,
    ) -> std::io::Result<(StoreWriter, StoreSink)> {
        StoreWriter::start_observed(store, aggregator, config, dims, metrics, budget, None)
    }

    /// [`StoreWriter::start`], telling `observer` which traces the store is done with.
    pub fn start_observed(
        store: Arc<dyn Store>,
        aggregator: Option<Arc<Aggregator>>,
        config: StoreConfig,
        dims: Vec<Dimension>,
        metrics: Arc<StoreMetrics>,
        budget: Option<Arc<MemoryBudget>>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> std::io::Result<(StoreWriter, StoreSink)> {
        let (tx, rx) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        if let Some(a) = &aggregator {
            a.keep_trace_counts();
        }
        let sink = StoreSink {
            tx: tx.clone(),
            aggregator,
            metrics: metrics.clone(),
            budget,
            success_sample: config.success_sample,
            queue: config.queue,
        };
        let st = &metrics.state;
        st.progress_at.store(st.now_ms(), Ordering::Relaxed);
        let worker = Worker {
            store,
            config,
            dims,
            metrics,
            stopping: stopping.clone(),
            observer,
        };
        let thread = std::thread::Builder::new()
            .name("faultline-store".into())
            .spawn(move || worker.run(rx))?;
        Ok((
            StoreWriter {
                tx,
                stopping,
                thread,
            },
            sink,
        ))
    }

    /// Writes what is queued and stops. Blocking: call after the pipeline has drained.
    /// A batch that keeps failing is given up after [`MAX_ATTEMPTS`] (counted).
    pub fn shutdown(self) {
        self.stopping.store(true, Ordering::Relaxed);
        // Everything queued before is written first.
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
        let st = &self.metrics.state;
        loop {
            let mut stop = false;
            let wait = next_retention
                .saturating_duration_since(Instant::now())
                .min(TICK);
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
                Err(RecvTimeoutError::Timeout) => st.lag.store(0, Ordering::Relaxed),
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            self.check_corruption();
            if !batch.is_empty() {
                let oldest = batch.iter().filter_map(Msg::at).min();
                let lag = oldest.map_or(0, |at| at.elapsed().as_millis() as u64);
                st.lag.store(lag, Ordering::Relaxed);
                st.progress_at.store(st.now_ms(), Ordering::Relaxed);
                let n = batch.len() as i64;
                self.commit(&mut batch);
                // Counted as waiting until written (or given up).
                self.metrics.queued.dec_by(n);
                st.progress_at.store(st.now_ms(), Ordering::Relaxed);
            }
            let _ = self.metrics.health();
            if stop {
                // Anything sent before Stop was received before it.
                return;
            }
            if Instant::now() >= next_retention {
                if !self.metrics.blocked() {
                    self.retention();
                }
                next_retention = Instant::now() + self.config.retention_interval;
            }
        }
    }

    /// Asks the store whether it is corrupted (a cheap check) and remembers it.
    fn check_corruption(&self) -> bool {
        let st = &self.metrics.state;
        if st.corrupted.lock().map(|g| g.is_some()).unwrap_or(false) {
            return true;
        }
        match self.store.corruption() {
            Some(c) => {
                self.metrics.set(&st.corrupted, Some(c));
                true
            }
            None => false,
        }
    }

    fn commit(&self, batch: &mut Vec<Msg>) {
        let mut writes: Vec<Write> = Vec::with_capacity(batch.len() + 2);
        // The counts of the traces finalized in this batch, by minute.
        let mut counts: BTreeMap<u64, Vec<&MinuteCounts>> = BTreeMap::new();
        let mut finalized: Vec<TraceId> = Vec::new();
        for msg in batch.iter() {
            match msg {
                Msg::Publish { analysis: a, .. } => match self.encode(a) {
                    Ok(r) => writes.push(Write::Put(r)),
                    Err(e) => {
                        tracing::warn!(error = %e, "A trajectory could not be encoded for the store.");
                        self.metrics.drop_one("encode_error", 1);
                    }
                },
                Msg::Remove { trace_id, .. } => writes.push(Write::Remove(*trace_id)),
                Msg::Finalize {
                    trace_id,
                    counts: own,
                    kept,
                    ..
                } => {
                    finalized.push(*trace_id);
                    if *kept {
                        writes.push(Write::Finalized(*trace_id));
                    }
                    if let Some(own) = own {
                        counts.entry(own.minute).or_default().push(own);
                    }
                }
                Msg::Stop => {}
            }
        }
        writes.extend(counts.into_iter().map(|(minute, own)| {
            let mut sum = MinuteCounts {
                minute,
                ..MinuteCounts::default()
            };
            sum.add_all(own);
            Write::AddCounts(sum)
        }));
        // A batch that lets the write-ahead log delete data is committed durably: the
        // log keeps a trace's data until its row and counts survive power loss.
        let durable = self.observer.is_some() && !finalized.is_empty();
        if writes.is_empty() || self.write(&writes, durable) {
            if let (Some(o), false) = (&self.observer, finalized.is_empty()) {
                o.committed(&finalized);
            }
        }
        // The analyses and their charges to the budget go now.
        batch.clear();
    }

    /// Writes one batch, retrying while it fails; gives up only at shutdown. True when
    /// the batch is settled (committed, or dropped for good because it cannot be
    /// encoded), false when given up at shutdown.
    fn write(&self, writes: &[Write], durable: bool) -> bool {
        let st = &self.metrics.state;
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0u32;
        loop {
            let stopping = self.stopping.load(Ordering::Relaxed);
            if self.check_corruption() {
                // Not written: the file cannot be trusted. Held (and charged) until
                // restart, unless shutting down.
                if stopping {
                    tracing::error!(
                        writes = writes.len(),
                        "Store writes given up at shutdown: the store is corrupted."
                    );
                    self.metrics.drop_one("write_error", writes.len() as u64);
                    return false;
                }
                let _ = self.metrics.health();
                std::thread::sleep(TICK);
                continue;
            }
            attempt += 1;
            let result = if durable {
                self.store.write_durable(writes)
            } else {
                self.store.write(writes)
            };
            match result {
                Ok(()) => {
                    self.metrics.healthy.store(true, Ordering::Relaxed);
                    self.metrics.set(&st.last_error, None);
                    let mut n = [0u64; 4];
                    for w in writes {
                        n[match w {
                            Write::Put(_) => 0,
                            Write::Remove(_) => 1,
                            Write::Finalized(_) => 2,
                            Write::Counts(_) | Write::AddCounts(_) => 3,
                        }] += 1;
                    }
                    self.metrics.wrote("put", n[0]);
                    self.metrics.wrote("remove", n[1]);
                    self.metrics.wrote("finalize", n[2]);
                    self.metrics.wrote("counts", n[3]);
                    return true;
                }
                Err(e) if e.is_permanent() => {
                    tracing::error!(error = %e, writes = writes.len(), "Store writes dropped: they cannot be encoded.");
                    self.metrics.drop_one("encode_error", writes.len() as u64);
                    return true;
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    self.metrics.healthy.store(false, Ordering::Relaxed);
                    if e.is_corruption() {
                        self.metrics.set(&st.corrupted, Some(e.to_string()));
                    } else {
                        self.metrics.set(&st.last_error, Some(e.to_string()));
                    }
                    let _ = self.metrics.health();
                    if stopping && attempt >= MAX_ATTEMPTS {
                        tracing::error!(
                            error = %e,
                            writes = writes.len(),
                            "Store writes given up at shutdown after repeated failures."
                        );
                        self.metrics.drop_one("write_error", writes.len() as u64);
                        return false;
                    }
                    tracing::warn!(error = %e, attempt, "A store transaction failed; retrying.");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn encode(&self, a: &Analysis) -> std::io::Result<crate::store::Record> {
        let doc = crate::store::document::Document::from_analysis(a);
        record(a, &self.dims, crate::compress::compress_json(&doc)?)
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
