//! The write-ahead log of accepted OTLP data.
//!
//! ```text
//! receiver: priced ──start_append(zstd body)──► writer thread: write, fsync (batch) ─┐
//!             └── parse, convert (meanwhile) ──wait: register trace ids ◄───────────┘
//!                   └── then hand off to the pipeline, ack (refused: a cancel record is appended)
//! store writer: durable commit ──resolved(trace ids)──► tracker ──► done record; oldest empty segments deleted
//! startup: segments replayed through decode → pipeline, less cancelled records and done traces
//! ```
//!
//! Invariant: **an acknowledged request is in the log**, written by the writer thread
//! before the acknowledgement and, with `fsync = "batch"` (the default), fsynced before
//! it; with `fsync = "interval"` the write is in the operating system's cache (it
//! survives `kill -9`) and on disk within `fsync_interval`.
//!
//! What is appended is the request body as received, size-checked and priced (after
//! transport decompression), compressed with zstd on the receiving thread, with the
//! signal and wire format: replay decodes it as the receiver did. The append is started
//! before the body is decoded, so that the write and its fsync overlap the decoding
//! ([`Wal::start_append`]); the request then waits for it ([`Pending::wait`]), which
//! registers its traces under the segment that holds it, before the hand-off to the
//! pipeline and the acknowledgement. A body that fails to decode, or a request that
//! goes away before the hand-off, drops its [`Pending`], which appends a cancel record
//! (replay skips it). Each record has a sequence number given when it is queued; the
//! writer thread groups what is waiting into one write and one fsync (group commit),
//! and starts a new segment past `segment_bytes`. A segment written to is pinned from
//! the write until the request registers its traces (see [`tracker::Pin`]), so it is
//! never deleted in between. An append that would take the segments on
//! disk past `max_bytes` is refused unwritten ([`WalError::Full`]; the receiver answers
//! it retryably) and counted in `faultline_wal_refused_full_total`.
//!
//! A trace's data may be deleted once the trace is *stored and counted*: the store
//! writer's commit of its final analysis (the row, and the counts the aggregator took
//! of this trace at its finalize, added to its stored minute) calls [`Wal::resolved`].
//! That commit is **durable**: the writer commits a batch that finalizes traces with
//! `synchronous=FULL` (SQLite fsyncs its WAL file, so this commit and every earlier one
//! survive power loss) and reports the traces only after it returned; the store's other
//! commits are `NORMAL` (they survive `kill -9`, not a power loss), and nothing of the
//! log depends on them. The stored minute holds only the counts of traces whose
//! finalize is committed, so a trace still replayed is not in it yet (see
//! `store::writer`). The traces resolved are then
//! written as a done record, so that a replay skips them (their counts are already in
//! the store) even when their segment is still there for other traces. See
//! [`tracker`] for the other ways a trace is resolved and for the order of deletion.

pub mod config;
pub mod segment;
pub mod tracker;

mod replay;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::memory::MemoryBudget;
use crate::model::{Analysis, LogEvent, SpanRecord, TraceId};
use crate::pipeline::Sink;

pub use config::{FsyncPolicy, RawWalConfig, WalConfig, WalConfigError};
pub use replay::ReplayStats;
pub use segment::{Format, Signal};

/// A failure of the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("cannot use the write-ahead log directory {path}: {source}; `--data-dir` must name a writable directory (or turn the log off with `--wal-enabled false`)")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write-ahead log segment {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the write-ahead log writer has stopped")]
    Stopped,
    #[error("the write-ahead log is full: its segments would take more than {max_bytes} bytes on disk ([wal] max_bytes, --wal-max-bytes) until stored traces let the oldest go")]
    Full { max_bytes: u64 },
    #[error("cannot start the write-ahead log writer thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot compress a request for the write-ahead log: {0}")]
    Compress(std::io::Error),
}

/// The log's self-metrics.
#[derive(Clone, Default)]
pub struct WalMetrics {
    /// Data records appended.
    pub appended: Counter,
    /// Bytes written to segments (frames, compressed).
    pub appended_bytes: Counter,
    /// fsync calls.
    pub fsyncs: Counter,
    /// Data records replayed at startup.
    pub replayed_records: Counter,
    /// Spans and log records replayed at startup.
    pub replayed_items: Counter,
    /// Segments whose reading stopped at a torn or corrupt frame at startup.
    pub corrupt_segments: Counter,
    /// Traces that expired without being finalized (see `tracker`).
    pub expired_traces: Counter,
    /// Write or fsync failures (the requests concerned were refused, retryably).
    pub errors: Counter,
    /// Requests refused because the log would pass `max_bytes`.
    pub refused_full: Counter,
    /// Segments on disk.
    pub segments: Gauge,
    /// Bytes of the segments on disk.
    pub disk_bytes: Gauge,
    /// Traces with data in a segment not yet stored and counted.
    pub tracked_traces: Gauge,
}

impl WalMetrics {
    pub fn register(registry: &mut Registry) -> WalMetrics {
        let m = WalMetrics::default();
        crate::metrics::register(
            registry,
            &crate::metrics::WAL_APPENDED_RECORDS,
            m.appended.clone(),
        );
        crate::metrics::register(
            registry,
            &crate::metrics::WAL_APPENDED_BYTES,
            m.appended_bytes.clone(),
        );
        crate::metrics::register(registry, &crate::metrics::WAL_FSYNCS, m.fsyncs.clone());
        crate::metrics::register(
            registry,
            &crate::metrics::WAL_REPLAYED_RECORDS,
            m.replayed_records.clone(),
        );
        crate::metrics::register(
            registry,
            &crate::metrics::WAL_REPLAYED_ITEMS,
            m.replayed_items.clone(),
        );
        crate::metrics::register(
            registry,
            &crate::metrics::WAL_CORRUPT_SEGMENTS,
            m.corrupt_segments.clone(),
        );
        crate::metrics::register(
            registry,
            &crate::metrics::WAL_EXPIRED_TRACES,
            m.expired_traces.clone(),
        );
        crate::metrics::register(registry, &crate::metrics::WAL_ERRORS, m.errors.clone());
        crate::metrics::register(
            registry,
            &crate::metrics::WAL_REFUSED_FULL,
            m.refused_full.clone(),
        );
        crate::metrics::register(
            registry,
            &crate::metrics::WAL_DISK_BYTES,
            m.disk_bytes.clone(),
        );
        crate::metrics::register(registry, &crate::metrics::WAL_SEGMENTS, m.segments.clone());
        crate::metrics::register(
            registry,
            &crate::metrics::WAL_TRACKED_TRACES,
            m.tracked_traces.clone(),
        );
        m
    }
}

/// A request body ready to append: compressed, with what replay needs to decode it.
pub struct Entry {
    pub signal: Signal,
    pub format: Format,
    pub compressed: Vec<u8>,
}

impl Entry {
    /// Compresses a size-checked request body (after transport decompression).
    pub fn new(signal: Signal, format: Format, body: &[u8]) -> Result<Entry, WalError> {
        let compressed = crate::compress::compress(body).map_err(WalError::Compress)?;
        Ok(Entry {
            signal,
            format,
            compressed,
        })
    }
}

/// A record appended (and, with the batch policy, fsynced): its sequence number, for a
/// cancel if the pipeline refuses the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
}

/// An append under way: queued for the writer thread, which writes it (and fsyncs, with
/// the batch policy) while the request goes on decoding. [`Pending::wait`] waits for the
/// write and registers the request's traces under the segment holding it. Dropped
/// before that (the request was refused after all, or went away), a cancel record is
/// appended for it, so that replay skips it.
pub struct Pending {
    seq: u64,
    rx: tokio::sync::oneshot::Receiver<Result<writer::Written, WalError>>,
    tx: std::sync::mpsc::Sender<writer::Cmd>,
    armed: bool,
}

impl Pending {
    /// Waits until the record is written (and fsynced, with the batch policy) and
    /// registers `traces` under its segment. Call before handing the request to the
    /// pipeline, so that no trace can be resolved before it is registered.
    pub async fn wait(mut self, traces: &[TraceId]) -> Result<Appended, WalError> {
        let written = (&mut self.rx).await;
        // Refused unwritten, or a failed write (its segment is not written again): nothing
        // to cancel.
        self.armed = false;
        let written = written.map_err(|_| WalError::Stopped)??;
        written.pin.register(traces);
        Ok(Appended { seq: self.seq })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.tx.send(writer::Cmd::Cancel { seq: self.seq });
        }
    }
}

/// The handle: appends from the receivers, resolutions from the store, the sink.
pub struct Wal {
    tx: std::sync::mpsc::Sender<writer::Cmd>,
    /// The last sequence number given to a record. Sequence numbers only need to be
    /// unique within what a replay reads together: the time in nanoseconds at start is
    /// above any number a previous run gave.
    seq: std::sync::atomic::AtomicU64,
    tracker: Arc<Mutex<tracker::Tracker>>,
    dir: PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Segments found at startup, to replay.
pub struct Found {
    segments: Vec<u64>,
}

impl Found {
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

impl Wal {
    /// Opens `data_dir/wal`, starts a new segment after those found and the writer
    /// thread. `expire_after` is the time after which a trace never finalized is
    /// released (see [`tracker`]).
    pub fn open(
        data_dir: &Path,
        config: &WalConfig,
        expire_after: Duration,
        budget: Option<Arc<MemoryBudget>>,
        metrics: WalMetrics,
    ) -> Result<(Arc<Wal>, Found), WalError> {
        let dir = data_dir.join("wal");
        let dir_err = |source| WalError::Dir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(dir_err)?;
        let found = segment::list(&dir).map_err(dir_err)?;
        let next = found.last().map_or(1, |last| last + 1);
        let sizes: Vec<(u64, u64)> = found
            .iter()
            .map(|&id| {
                let bytes = std::fs::metadata(segment::path(&dir, id)).map_or(0, |m| m.len());
                (id, bytes)
            })
            .collect();
        let mut tracker = tracker::Tracker::new(expire_after, budget);
        for id in &found {
            tracker.add_segment(*id, true);
        }
        let tracker = Arc::new(Mutex::new(tracker));
        let (tx, thread) = writer::start(
            dir.clone(),
            next,
            &sizes,
            config.clone(),
            tracker.clone(),
            metrics,
        )?;
        Ok((
            Arc::new(Wal {
                tx,
                seq: std::sync::atomic::AtomicU64::new(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(1),
                ),
                tracker,
                dir,
                thread: Mutex::new(Some(thread)),
            }),
            Found { segments: found },
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues a record for the writer thread and returns at once; see [`Pending`].
    pub fn start_append(&self, entry: Entry) -> Result<Pending, WalError> {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(writer::Cmd::Append { seq, entry, reply })
            .map_err(|_| WalError::Stopped)?;
        Ok(Pending {
            seq,
            rx,
            tx: self.tx.clone(),
            armed: true,
        })
    }

    /// Appends a record of `traces` and waits until it is written (and fsynced, with the
    /// batch policy). The traces are tracked from here on.
    pub async fn append(&self, entry: Entry, traces: Vec<TraceId>) -> Result<Appended, WalError> {
        self.start_append(entry)?.wait(&traces).await
    }

    /// The request of `appended` was refused after all: replay must skip it.
    pub fn cancel(&self, appended: Appended) {
        let _ = self.tx.send(writer::Cmd::Cancel { seq: appended.seq });
    }

    /// The store committed the final analyses of these traces (row and counts): their
    /// data is no longer needed.
    pub fn resolved(&self, traces: &[TraceId]) {
        let done = match self.tracker.lock() {
            Ok(mut t) => t.resolve(traces),
            Err(_) => return,
        };
        if !done.is_empty() {
            let _ = self.tx.send(writer::Cmd::Done { traces: done });
        }
    }

    /// Writes what is queued, fsyncs, and stops the writer. Blocking.
    pub fn shutdown(&self) {
        let _ = self.tx.send(writer::Cmd::Stop);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("The write-ahead log writer panicked.");
            }
        }
    }

    /// Traces tracked and segments on disk (tests, metrics).
    pub fn tracked(&self) -> (usize, usize) {
        self.tracker
            .lock()
            .map(|t| (t.traces(), t.segments()))
            .unwrap_or((0, 0))
    }
}

/// The trace ids a batch of spans must be tracked under: each span's own trace, and the
/// trace an evaluator span evaluates (its linked copy is merged there).
pub fn span_traces(spans: &[SpanRecord]) -> Vec<TraceId> {
    let mut ids: Vec<TraceId> = Vec::new();
    let mut last = None;
    for span in spans {
        if last != Some(span.trace_id) {
            ids.push(span.trace_id);
            last = Some(span.trace_id);
        }
        ids.extend(span.evaluation_targets());
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The trace ids of log records (records without one are not part of any trajectory).
pub fn log_traces(logs: &[LogEvent]) -> Vec<TraceId> {
    let mut ids: Vec<TraceId> = logs.iter().filter_map(|l| l.trace_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The log's [`Sink`]: marks traces finalized (so they no longer expire), and resolves
/// at once the traces the pipeline finds are not trajectories of their own.
pub struct WalSink(pub Arc<Wal>);

impl Sink for WalSink {
    fn publish(&self, _analysis: Arc<Analysis>) {}

    fn finalize(&self, analysis: &crate::pipeline::Finalized) {
        if let Ok(mut t) = self.0.tracker.lock() {
            t.finalized(analysis.trajectory.trace_id);
        }
    }

    fn not_a_trajectory(&self, trace: TraceId) {
        self.0.resolved(&[trace]);
    }
}

impl crate::store::CommitObserver for Wal {
    fn committed(&self, traces: &[TraceId]) {
        self.resolved(traces);
    }
}
