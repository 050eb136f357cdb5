//! Store: where analyses go after the pipeline, and what the API reads.
//!
//! [`Recent`] keeps the most recent analyses in memory, replacing an earlier revision of
//! the same trace in place, so a trajectory is never listed twice; it is bounded by count
//! and by its share of the memory budget in bytes (the oldest forgotten first), and what
//! it forgets is read from the store.
//!
//! The persistent store sits behind the [`Store`] trait (put, get, list with filters,
//! sort and cursor, sessions, per-minute counts), so that another backend (PostgreSQL)
//! can be added beside the embedded one, [`sqlite::SqliteStore`]. What it keeps:
//! every failed and recovered trajectory in full, a deterministic sample of successful
//! ones (`[store] success_sample`, by trace id hash), and the aggregator's exact
//! per-minute counts, so breakdown rates stay exact while raw rows are sampled.
//!
//! Writes happen on one writer thread ([`writer`]) fed by a bounded queue from the
//! pipeline's [`Sink`] calls; a full queue drops the write and counts it
//! (`faultline_store_dropped_total`), never blocking a shard. See `README.md` beside
//! this file for the schema, crash behaviour and retention.

pub mod config;
pub mod document;
pub mod record;
pub mod sqlite;
pub mod writer;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::aggregate::MinuteCounts;
use crate::memory::{analysis_bytes, AnalysisCharge, Component, MemoryBudget};
use crate::model::{Analysis, Outcome, TraceId};
use crate::pipeline::Sink;

pub use config::{RawStoreConfig, StoreConfig, StoreConfigError};
pub use record::{Record, Summary};
pub use sqlite::SqliteStore;
pub use writer::{CommitObserver, Degraded, StoreMetrics, StoreSink, StoreWriter};

/// A store failure. The startup variants name the file and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the data directory {path}: {source}; `--data-dir` (or `data_dir` in the config file) must name a writable directory")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store {path} for writing: {detail}; check that the directory and the file are writable by this user, or choose another `--data-dir`")]
    NotWritable {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("{path} is not a faultline store or is corrupted ({detail}); faultline does not overwrite it: move it away (or restore a backup) and start again")]
    Corrupt {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("cannot open the store {path}: the disk is full ({detail}); free some space on the file system of `--data-dir` (or choose another `--data-dir`) and start again")]
    DiskFull {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("{path} has schema version {found}, newer than the version {supported} this faultline knows; run a newer faultline or choose another `--data-dir`")]
    NewerSchema {
        path: std::path::PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "{path}: migration to schema version {version} failed (nothing was changed): {detail}"
    )]
    Migration {
        path: std::path::PathBuf,
        version: i64,
        detail: String,
    },
    #[error("store {what}: {source}")]
    Sqlite {
        what: &'static str,
        source: rusqlite::Error,
    },
    #[error("store data: {0}")]
    Data(String),
    /// Found corrupted while running (sticky until restart).
    #[error("the store is corrupted ({0}); it is no longer written: move the file away (or restore a backup) and restart faultline")]
    Corrupted(String),
}

impl StoreError {
    /// Whether the error says the file is corrupted (or not a database at all).
    pub fn is_corruption(&self) -> bool {
        match self {
            StoreError::Corrupt { .. } | StoreError::Corrupted(_) => true,
            StoreError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            ),
            _ => false,
        }
    }

    /// Whether retrying the same writes cannot help (the data itself cannot be
    /// encoded).
    pub fn is_permanent(&self) -> bool {
        matches!(self, StoreError::Data(_))
    }

    pub(crate) fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Sqlite { what, source }
    }
}

/// One write of a batch, applied in order in one transaction.
#[derive(Debug, Clone)]
pub enum Write {
    /// Insert or replace the trajectory (by trace id).
    Put(Record),
    /// Delete the trajectory if stored (a revision that is no longer kept).
    Remove(TraceId),
    /// The trace's grace period ended: its counts are final.
    Finalized(TraceId),
    /// Replace the counts of one minute.
    Counts(MinuteCounts),
    /// Add counts to those stored for their minute ([`MinuteCounts::add`]), in the
    /// same transaction: what the store writer writes for the traces it finalizes.
    AddCounts(MinuteCounts),
}

/// Sort key of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Trajectory end time.
    End,
    /// Trajectory duration.
    Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// A position in a list: the sort key and trace id of the last row returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub sort: SortKey,
    pub order: Order,
    pub key: u64,
    pub trace_id: TraceId,
}

impl Cursor {
    /// Opaque text: 50 hex digits.
    pub fn encode(&self) -> String {
        let flags = match (self.sort, self.order) {
            (SortKey::End, Order::Desc) => 0u8,
            (SortKey::End, Order::Asc) => 1,
            (SortKey::Duration, Order::Desc) => 2,
            (SortKey::Duration, Order::Asc) => 3,
        };
        let mut bytes = Vec::with_capacity(25);
        bytes.push(flags);
        bytes.extend_from_slice(&self.key.to_be_bytes());
        bytes.extend_from_slice(self.trace_id.as_bytes());
        hex::encode(bytes)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = hex::decode(text).ok()?;
        if bytes.len() != 25 {
            return None;
        }
        let (sort, order) = match bytes[0] {
            0 => (SortKey::End, Order::Desc),
            1 => (SortKey::End, Order::Asc),
            2 => (SortKey::Duration, Order::Desc),
            3 => (SortKey::Duration, Order::Asc),
            _ => return None,
        };
        let mut key = [0u8; 8];
        key.copy_from_slice(&bytes[1..9]);
        let trace_id = TraceId::from_bytes(&bytes[9..]).ok()?;
        Some(Cursor {
            sort,
            order,
            key: u64::from_be_bytes(key),
            trace_id,
        })
    }
}

/// A list query: every given filter must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// Exact filter tags ([`record::tag`]).
    pub tags: Vec<String>,
    /// End time at or after, unix ns.
    pub from: Option<u64>,
    /// End time before, unix ns.
    pub to: Option<u64>,
    /// Lowercased text that a finding or root-cause reason contains (literally).
    pub text: Option<String>,
    pub sort: SortKey,
    pub order: Order,
    pub limit: usize,
    pub after: Option<Cursor>,
}

impl Default for ListQuery {
    fn default() -> ListQuery {
        ListQuery {
            tags: Vec::new(),
            from: None,
            to: None,
            text: None,
            sort: SortKey::End,
            order: Order::Desc,
            limit: 50,
            after: None,
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Summary>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// A stored trajectory: its summary and its document (JSON, with attributes).
#[derive(Debug, Clone)]
pub struct Stored {
    pub summary: Summary,
    pub cohort: Vec<(String, Option<String>)>,
    pub finalized: bool,
    pub document: Vec<u8>,
}

/// A persistent store of trajectories and per-minute counts. Every method is blocking:
/// call it from a writer thread or `spawn_blocking`, never on the async runtime.
pub trait Store: Send + Sync + 'static {
    /// Applies a batch of writes atomically. The commit survives a killed process; it
    /// may be lost with the last few commits on power loss or an OS crash.
    fn write(&self, batch: &[Write]) -> Result<(), StoreError>;
    /// [`Store::write`], and the commit (with every commit before it) is on stable
    /// storage when this returns: it survives power loss. The writer uses it for the
    /// batches whose commit lets the write-ahead log delete data.
    fn write_durable(&self, batch: &[Write]) -> Result<(), StoreError>;
    fn get(&self, trace_id: TraceId) -> Result<Option<Stored>, StoreError>;
    fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;
    /// The trajectories of one session, by start time, at most `limit`.
    fn session(&self, session_id: &str, limit: usize) -> Result<Vec<Summary>, StoreError>;
    /// Every stored minute of counts, oldest first.
    fn counts(&self) -> Result<Vec<MinuteCounts>, StoreError>;
    /// Deletes what is older than the retention or beyond the size bound; `now` is unix ns.
    fn retain(&self, now_unix_nano: u64) -> Result<Retained, StoreError>;
    /// Bytes used by live pages.
    fn used_bytes(&self) -> Result<u64, StoreError>;
    /// Why the store is known to be corrupted, after a cheap check; `None` when it is
    /// not known to be. Once corrupted, a store stays so until restart.
    fn corruption(&self) -> Option<String> {
        None
    }
}

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    pub by_age: u64,
    pub by_size: u64,
    pub minutes: u64,
}

/// The outcome stored as text.
pub(crate) fn outcome_from_str(s: &str) -> Option<Outcome> {
    match s {
        "success" => Some(Outcome::Success),
        "recovered" => Some(Outcome::Recovered),
        "failed" => Some(Outcome::Failed),
        _ => None,
    }
}

/// The most recent analyses, newest first: at most `capacity` of them and at most
/// `max_bytes` of them ([`crate::memory::analysis_bytes`]), the oldest forgotten first.
/// An analysis larger than `max_bytes` alone is not kept (an earlier revision of its
/// trace goes too, so that the store's copy, which is the newer one, is what is read).
/// With a budget, what the list holds is charged to it (`recent`), counted once with the
/// store's queue (`MemoryBudget::charge_analysis`). Forgetting loses nothing: the API's
/// list reads the store, and a trajectory not found here is read from the store.
pub struct Recent {
    capacity: usize,
    max_bytes: u64,
    budget: Option<Arc<MemoryBudget>>,
    inner: Mutex<RecentInner>,
}

struct Entry {
    seq: u64,
    analysis: Arc<Analysis>,
    bytes: u64,
    /// Given back when the entry goes.
    _charge: Option<AnalysisCharge>,
}

struct RecentInner {
    by_trace: HashMap<TraceId, Entry>,
    /// (sequence, trace) in release order; entries whose sequence no longer matches
    /// `by_trace` are stale (the trace was re-released) and skipped.
    order: VecDeque<(u64, TraceId)>,
    next_seq: u64,
    /// The sum of the entries' bytes.
    bytes: u64,
}

impl RecentInner {
    fn remove(&mut self, id: &TraceId) {
        if let Some(old) = self.by_trace.remove(id) {
            self.bytes -= old.bytes;
        }
    }
}

impl Recent {
    /// A list bounded by count only, charged to no budget.
    pub fn new(capacity: usize) -> Recent {
        Recent::bounded(capacity, u64::MAX, None)
    }

    /// A list bounded by count and by its share of `budget`, and charged to it.
    pub fn with_budget(capacity: usize, budget: Arc<MemoryBudget>) -> Recent {
        Recent::bounded(capacity, budget.recent_share(), Some(budget))
    }

    pub fn bounded(capacity: usize, max_bytes: u64, budget: Option<Arc<MemoryBudget>>) -> Recent {
        Recent {
            capacity: capacity.max(1),
            max_bytes,
            budget,
            inner: Mutex::new(RecentInner {
                by_trace: HashMap::new(),
                order: VecDeque::new(),
                next_seq: 0,
                bytes: 0,
            }),
        }
    }

    pub fn get(&self, trace_id: TraceId) -> Option<Arc<Analysis>> {
        let inner = self.lock();
        inner.by_trace.get(&trace_id).map(|e| e.analysis.clone())
    }

    /// Up to `limit` analyses, most recently released first.
    pub fn list(&self, limit: usize) -> Vec<Arc<Analysis>> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|(seq, id)| match inner.by_trace.get(id) {
                Some(e) if e.seq == *seq => Some(e.analysis.clone()),
                _ => None,
            })
            .take(limit)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().by_trace.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the entries hold, in bytes.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecentInner> {
        // A panic while holding this lock cannot leave the maps inconsistent in a way
        // that matters to readers, so a poisoned lock is still used.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sink for Recent {
    fn publish(&self, analysis: Arc<Analysis>) {
        let id = analysis.trajectory.trace_id;
        {
            let inner = self.lock();
            if let Some(old) = inner.by_trace.get(&id) {
                // Never replace a newer revision with an older one.
                if old.analysis.trajectory.revision > analysis.trajectory.revision {
                    return;
                }
            }
        }
        // Measured (and charged) outside the lock.
        let charge = self
            .budget
            .as_ref()
            .map(|b| b.charge_analysis(Component::Recent, &analysis));
        let bytes = charge
            .as_ref()
            .map_or_else(|| analysis_bytes(&analysis), AnalysisCharge::bytes);
        let mut inner = self.lock();
        if let Some(old) = inner.by_trace.get(&id) {
            if old.analysis.trajectory.revision > analysis.trajectory.revision {
                return;
            }
        }
        inner.remove(&id);
        if bytes > self.max_bytes {
            // Too large to keep at all; the store has it (or, for a sampled-out success,
            // only the counts do). The charge is given back on return.
            tracing::debug!(
                trace_id = %id.to_hex(),
                bytes,
                max_bytes = self.max_bytes,
                "a trajectory larger than the recent list's share is not kept in memory"
            );
            return;
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.bytes += bytes;
        inner.by_trace.insert(
            id,
            Entry {
                seq,
                analysis,
                bytes,
                _charge: charge,
            },
        );
        inner.order.push_back((seq, id));
        while inner.by_trace.len() > self.capacity || inner.bytes > self.max_bytes {
            let Some((seq, id)) = inner.order.pop_front() else {
                break;
            };
            if matches!(inner.by_trace.get(&id), Some(e) if e.seq == seq) {
                inner.remove(&id);
            }
        }
        // Stale entries of re-released traces are dropped once they pile up.
        if inner.order.len() > 2 * inner.by_trace.len() + 16 {
            let RecentInner {
                by_trace, order, ..
            } = &mut *inner;
            order.retain(|(seq, id)| matches!(by_trace.get(id), Some(e) if e.seq == *seq));
        }
    }
}

#[cfg(test)]
mod recent_tests {
    use super::*;
    use crate::model::Trajectory;
    use crate::test_support::{span, trajectory};

    fn analysis(trace: u64, revision: u32) -> Arc<Analysis> {
        sized(trace, revision, 0)
    }

    /// An analysis of one span carrying `text` bytes of attribute text.
    fn sized(trace: u64, revision: u32, text: usize) -> Arc<Analysis> {
        let mut t: Trajectory = trajectory(vec![span(trace, 1, 0)
            .attr("text", "x".repeat(text).as_str())
            .build()]);
        t.revision = revision;
        Arc::new(Analysis {
            trajectory: Arc::new(t),
            steps: Vec::new(),
            findings: Vec::new(),
            outcome: Outcome::Success,
            root_cause: None,
        })
    }

    #[test]
    fn revisions_replace_and_capacity_holds() {
        let r = Recent::new(2);
        r.publish(analysis(1, 0));
        r.publish(analysis(2, 0));
        r.publish(analysis(1, 1));
        let listed: Vec<(TraceId, u32)> = r
            .list(10)
            .iter()
            .map(|a| (a.trajectory.trace_id, a.trajectory.revision))
            .collect();
        let t = crate::test_support::trace_id;
        assert_eq!(listed, vec![(t(1), 1), (t(2), 0)]);
        r.publish(analysis(1, 0));
        assert_eq!(r.get(t(1)).unwrap().trajectory.revision, 1);
        r.publish(analysis(3, 0));
        assert_eq!(r.len(), 2);
        assert!(r.get(t(2)).is_none());
        assert_eq!(r.list(1)[0].trajectory.trace_id, t(3));
    }

    fn listed(r: &Recent) -> Vec<TraceId> {
        r.list(usize::MAX)
            .iter()
            .map(|a| a.trajectory.trace_id)
            .collect()
    }

    #[test]
    fn the_oldest_go_by_bytes_and_the_charge_follows() {
        let t = crate::test_support::trace_id;
        let one = analysis_bytes(&sized(1, 0, 10_000));
        let budget = MemoryBudget::new(1 << 30);
        // Room for two analyses of 10 000 bytes of text, not three.
        let r = Recent::bounded(100, 2 * one + one / 2, Some(budget.clone()));
        r.publish(sized(1, 0, 10_000));
        r.publish(sized(2, 0, 10_000));
        assert_eq!(r.bytes(), 2 * one);
        assert_eq!(budget.used_by(Component::Recent), 2 * one);
        r.publish(sized(3, 0, 10_000));
        assert_eq!(listed(&r), vec![t(3), t(2)], "the oldest went");
        assert_eq!(r.bytes(), 2 * one);
        assert_eq!(budget.used_by(Component::Recent), 2 * one);

        // A revision replaces its entry: the charge is the new revision's.
        let small = sized(2, 1, 100);
        let small_bytes = analysis_bytes(&small);
        r.publish(small);
        assert_eq!(listed(&r), vec![t(2), t(3)]);
        assert_eq!(r.get(t(2)).expect("kept").trajectory.revision, 1);
        assert_eq!(r.bytes(), one + small_bytes);
        assert_eq!(budget.used_by(Component::Recent), one + small_bytes);
        // A bigger revision makes room by forgetting the oldest other entry.
        r.publish(sized(2, 2, 20_000));
        assert_eq!(listed(&r), vec![t(2)]);
        let big = analysis_bytes(&r.get(t(2)).expect("kept"));
        assert_eq!(r.bytes(), big);
        assert_eq!(budget.used_by(Component::Recent), big);

        // Larger than the whole share: not kept, and the older revision goes too (the
        // store has the newer one).
        r.publish(sized(2, 3, 100_000));
        assert!(r.get(t(2)).is_none());
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
        assert_eq!(
            budget.used_by(Component::Recent),
            0,
            "emptied, nothing charged"
        );
        assert_eq!(budget.used(), 0);
        // Stale order entries do not pile up.
        for rev in 0..100 {
            r.publish(sized(4, rev, 10));
        }
        assert_eq!(listed(&r), vec![t(4)]);
        let len = r.len();
        assert!(r.lock().order.len() <= 2 * len + 17);
    }

    #[test]
    fn an_analysis_in_the_store_queue_and_the_list_is_charged_once() {
        let budget = MemoryBudget::new(1 << 30);
        let r = Recent::with_budget(100, budget.clone());
        let a = sized(1, 0, 10_000);
        let bytes = analysis_bytes(&a);
        r.publish(a.clone());
        // The store's queue takes the same allocation.
        let queued = budget.charge_analysis(Component::Store, &a);
        assert_eq!(queued.bytes(), bytes);
        assert_eq!(budget.used(), bytes, "one allocation, counted once");
        assert_eq!(budget.used_by(Component::Recent), bytes);
        // The list lets go of it (a revision replaces it) while it is still queued: the
        // queue is charged now.
        let revised = sized(1, 1, 10);
        let revised_bytes = analysis_bytes(&revised);
        r.publish(revised);
        assert_eq!(budget.used_by(Component::Recent), revised_bytes);
        assert_eq!(budget.used_by(Component::Store), bytes);
        drop(queued);
        assert_eq!(budget.used_by(Component::Store), 0);
        drop(r);
        assert_eq!(budget.used(), 0);
        // A copy of the same content is another allocation, counted on its own.
        let b = sized(3, 0, 10);
        let c = Arc::new((*b).clone());
        let one = budget.charge_analysis(Component::Store, &b);
        let two = budget.charge_analysis(Component::Store, &c);
        assert_eq!(budget.used(), one.bytes() + two.bytes());
        drop((one, two));
        assert_eq!(budget.used(), 0);
    }
}
