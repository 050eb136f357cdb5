use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::segment::{self, Reader, Record, Torn};
use super::tracker::Tracker;
use super::*;
use crate::ingest::{Handoff, Overloaded};
use crate::memory::{Charge, Component, MemoryBudget};
use crate::model::{Interner, LogEvent, SpanRecord};
use crate::store::Store;
use crate::test_support::trace_id;

/// One OTLP traces request body: `spans` spans of trace `trace`.
fn body(trace: u64, spans: u64) -> Vec<u8> {
    let spans = (1..=spans)
        .map(|i| Span {
            trace_id: trace_id(trace).as_bytes().to_vec(),
            span_id: (i + trace * 1000).to_be_bytes().to_vec(),
            name: format!("span {i}"),
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 2_000,
            ..Span::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

#[derive(Default)]
struct Collect {
    spans: Mutex<Vec<SpanRecord>>,
    /// Refuse this many hand-offs first (overloaded).
    refuse: Mutex<u32>,
}

impl Handoff for Arc<Collect> {
    async fn spans(&self, spans: Vec<SpanRecord>, _held: Arc<Charge>) -> Result<(), Overloaded> {
        {
            let mut refuse = self.refuse.lock().unwrap();
            if *refuse > 0 {
                *refuse -= 1;
                return Err(Overloaded {
                    retry_after: Duration::from_millis(1),
                });
            }
        }
        self.spans.lock().unwrap().extend(spans);
        Ok(())
    }

    async fn logs(&self, _logs: Vec<LogEvent>, _held: Arc<Charge>) -> Result<(), Overloaded> {
        Ok(())
    }
}

fn config(segment_bytes: u64) -> WalConfig {
    WalConfig {
        segment_bytes,
        ..WalConfig::default()
    }
}

fn open(dir: &std::path::Path, c: &WalConfig) -> (Arc<Wal>, Found, Arc<MemoryBudget>) {
    let budget = MemoryBudget::new(1 << 30);
    let (wal, found) = Wal::open(
        dir,
        c,
        Duration::from_secs(600),
        Some(budget.clone()),
        WalMetrics::default(),
    )
    .unwrap();
    (wal, found, budget)
}

async fn replay(
    wal: &Wal,
    found: Found,
    budget: &Arc<MemoryBudget>,
) -> (ReplayStats, Vec<SpanRecord>) {
    let sink = Arc::new(Collect::default());
    let stats = wal
        .replay(
            found,
            &sink,
            &Interner::default(),
            budget,
            64 << 20,
            &WalMetrics::default(),
            None,
        )
        .await;
    let spans = std::mem::take(&mut *sink.spans.lock().unwrap());
    (stats, spans)
}

async fn append(wal: &Wal, trace: u64, spans: u64) -> Appended {
    let entry = Entry::new(Signal::Traces, Format::Protobuf, &body(trace, spans)).unwrap();
    wal.append(entry, vec![trace_id(trace)]).await.unwrap()
}

#[test]
fn frames_read_back_and_a_torn_or_corrupt_tail_stops_the_reader() {
    let mut bytes = segment::MAGIC.to_vec();
    segment::encode_data(&mut bytes, 7, Signal::Logs, Format::Json, b"payload");
    segment::encode_cancel(&mut bytes, 7);
    segment::encode_done(&mut bytes, &[trace_id(1), trace_id(2)]);
    let whole = bytes.clone();
    let mut r = Reader::new(&whole[..]);
    assert_eq!(
        r.next_record().unwrap(),
        Some(Record::Data {
            seq: 7,
            signal: Signal::Logs,
            format: Format::Json,
            compressed: b"payload".to_vec()
        })
    );
    assert_eq!(r.next_record().unwrap(), Some(Record::Cancel { seq: 7 }));
    assert_eq!(
        r.next_record().unwrap(),
        Some(Record::Done {
            traces: vec![trace_id(1), trace_id(2)]
        })
    );
    assert_eq!(r.next_record().unwrap(), None);

    // Cut inside the last frame: the first two records, then a short frame.
    let cut = &whole[..whole.len() - 5];
    let mut r = Reader::new(cut);
    assert!(r.next_record().unwrap().is_some());
    assert!(r.next_record().unwrap().is_some());
    assert!(matches!(r.next_record(), Err(Torn::Short { .. })));

    // A flipped byte in the first frame's body: its checksum fails.
    let mut flipped = whole.clone();
    flipped[8 + 8 + 3] ^= 0xff;
    let mut r = Reader::new(&flipped[..]);
    assert_eq!(r.next_record(), Err(Torn::Checksum { offset: 8 }));

    // Not a segment at all.
    let mut r = Reader::new(&b"garbage!garbage"[..]);
    assert_eq!(r.next_record(), Err(Torn::BadMagic));
}

#[test]
fn tracker_deletes_segments_in_order_once_their_traces_resolve_and_expires_only_unfinalized() {
    let budget = MemoryBudget::new(1 << 30);
    let mut t = Tracker::new(Duration::from_secs(10), Some(budget.clone()));
    let now = Instant::now();
    t.add_segment(1, false);
    t.register(1, &[trace_id(1), trace_id(2)], now);
    t.register(1, &[trace_id(1)], now);
    t.close_segment(1);
    t.add_segment(2, false);
    t.register(2, &[trace_id(2), trace_id(3)], now);
    t.close_segment(2);
    t.add_segment(3, false);
    assert_eq!(t.outstanding(1), Some(2));
    assert_eq!(t.outstanding(2), Some(2));
    assert_eq!(
        budget.used_by(Component::Wal) as i64,
        3 * tracker::BYTES_PER_TRACE
    );

    // Segment 2 is waiting for nothing of its own only after trace 2 and 3 resolve, and
    // is deleted only after segment 1.
    assert_eq!(t.resolve(&[trace_id(3), trace_id(9)]), vec![trace_id(3)]);
    assert!(t.deletable().is_empty());
    t.resolve(&[trace_id(2)]);
    assert_eq!(t.outstanding(1), Some(1));
    assert_eq!(t.outstanding(2), Some(0));
    assert!(
        t.deletable().is_empty(),
        "segment 1 still waits for trace 1"
    );

    // Trace 1 finalized (waiting for the store): never expires.
    t.finalized(trace_id(1));
    t.expire(now + Duration::from_secs(3600));
    assert_eq!(t.take_expired(), 0);
    assert!(t.deletable().is_empty());
    t.resolve(&[trace_id(1)]);
    assert_eq!(t.deletable(), vec![1, 2], "the open segment 3 stays");
    assert_eq!(budget.used_by(Component::Wal), 0);

    // A trace never finalized expires after its last record's deadline.
    t.register(3, &[trace_id(4)], now);
    t.register(3, &[trace_id(4)], now + Duration::from_secs(5));
    t.expire(now + Duration::from_secs(11));
    assert_eq!(
        t.take_expired(),
        0,
        "its deadline moved with the second record"
    );
    t.expire(now + Duration::from_secs(16));
    assert_eq!(t.take_expired(), 1);
    assert_eq!(t.traces(), 0);
}

#[tokio::test]
async fn replay_gives_back_what_was_appended_less_cancelled_and_done_traces() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(segment::MAGIC.len() as u64 + 1);
    {
        let (wal, found, _) = open(dir.path(), &c);
        assert!(found.is_empty());
        append(&wal, 1, 3).await;
        let refused = append(&wal, 2, 2).await;
        wal.cancel(refused);
        append(&wal, 3, 4).await;
        append(&wal, 4, 1).await;
        // Trace 3 was stored and counted.
        wal.resolved(&[trace_id(3)]);
        wal.shutdown();
        // Killed here: nothing else runs.
    }
    let (wal, found, budget) = open(dir.path(), &c);
    assert!(!found.is_empty());
    let (stats, spans) = replay(&wal, found, &budget).await;
    let mut traces: Vec<_> = spans.iter().map(|s| s.trace_id).collect();
    traces.dedup();
    assert_eq!(traces, vec![trace_id(1), trace_id(4)]);
    assert_eq!(spans.len(), 4);
    assert_eq!(stats.records, 2);
    assert_eq!(stats.items, 4);
    assert_eq!(stats.skipped_records, 2, "one cancelled, one done");
    assert_eq!(stats.corrupt_segments, 0);
    // The replayed traces are tracked again; once stored their segments go.
    assert_eq!(wal.tracked().0, 2);
    wal.resolved(&[trace_id(1), trace_id(4)]);
    wal.shutdown();
    let left = segment::list(&dir.path().join("wal")).unwrap();
    assert_eq!(left.len(), 1, "only the last open segment stays: {left:?}");
}

#[tokio::test]
async fn a_torn_tail_is_replayed_up_to_the_tear_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(1 << 20);
    {
        let (wal, _, _) = open(dir.path(), &c);
        append(&wal, 1, 2).await;
        append(&wal, 2, 2).await;
        wal.shutdown();
    }
    let seg = segment::path(&dir.path().join("wal"), 1);
    let len = std::fs::metadata(&seg).unwrap().len();
    // A write cut in the middle of the second record.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    let (wal, found, budget) = open(dir.path(), &c);
    let (stats, spans) = replay(&wal, found, &budget).await;
    assert_eq!(stats.corrupt_segments, 1);
    assert_eq!(stats.records, 1);
    assert!(spans.iter().all(|s| s.trace_id == trace_id(1)));
    assert_eq!(spans.len(), 2);
    wal.shutdown();
}

#[tokio::test]
async fn replay_waits_while_the_pipeline_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(1 << 20);
    {
        let (wal, _, _) = open(dir.path(), &c);
        append(&wal, 1, 2).await;
        wal.shutdown();
    }
    let (wal, found, budget) = open(dir.path(), &c);
    let sink = Arc::new(Collect::default());
    *sink.refuse.lock().unwrap() = 3;
    let stats = wal
        .replay(
            found,
            &sink,
            &Interner::default(),
            &budget,
            64 << 20,
            &WalMetrics::default(),
            None,
        )
        .await;
    assert_eq!(stats.items, 2);
    assert_eq!(sink.spans.lock().unwrap().len(), 2);
    wal.shutdown();
}

#[test]
fn config_resolves_and_names_bad_keys() {
    let raw = RawWalConfig {
        enabled: Some(false),
        fsync: Some("interval".into()),
        fsync_interval: Some("250ms".into()),
        segment_bytes: Some(1 << 20),
        max_bytes: None,
    };
    let c = WalConfig::resolve(Some(&raw)).unwrap();
    assert!(!c.enabled);
    assert_eq!(c.fsync, FsyncPolicy::Interval(Duration::from_millis(250)));
    assert_eq!(c.segment_bytes, 1 << 20);
    assert_eq!(WalConfig::resolve(None).unwrap(), WalConfig::default());
    let bad = RawWalConfig {
        fsync: Some("always".into()),
        ..RawWalConfig::default()
    };
    let e = WalConfig::resolve(Some(&bad)).unwrap_err();
    assert_eq!(e.key, "fsync");
    assert!(e.message.contains("always"), "{e}");
    let small = RawWalConfig {
        segment_bytes: Some(10),
        ..RawWalConfig::default()
    };
    let e = WalConfig::resolve(Some(&small)).unwrap_err();
    assert_eq!(e.key, "segment_bytes");

    // The disk cap: 4 GiB by default, raised with a larger segment size, never below it.
    assert_eq!(WalConfig::default().max_bytes, config::DEFAULT_MAX_BYTES);
    let c = WalConfig::resolve(Some(&RawWalConfig {
        segment_bytes: Some(1 << 20),
        max_bytes: Some(1 << 20),
        ..RawWalConfig::default()
    }))
    .unwrap();
    assert_eq!((c.segment_bytes, c.max_bytes), (1 << 20, 1 << 20));
    let big = RawWalConfig {
        segment_bytes: Some(8 << 30),
        ..RawWalConfig::default()
    };
    assert_eq!(WalConfig::resolve(Some(&big)).unwrap().max_bytes, 8 << 30);
    let tiny = RawWalConfig {
        max_bytes: Some(1000),
        ..RawWalConfig::default()
    };
    assert_eq!(
        WalConfig::resolve(Some(&tiny)).unwrap_err().key,
        "max_bytes"
    );
    let below = RawWalConfig {
        segment_bytes: Some(1 << 20),
        max_bytes: Some(1 << 19),
        ..RawWalConfig::default()
    };
    let e = WalConfig::resolve(Some(&below)).unwrap_err();
    assert_eq!(e.key, "max_bytes");
    assert!(e.message.contains("segment_bytes"), "{e}");
}

/// 16 KiB that zstd cannot shrink.
fn noise(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..16 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn on_disk(dir: &std::path::Path) -> u64 {
    let wal = dir.join("wal");
    segment::list(&wal)
        .unwrap()
        .iter()
        .map(|&id| std::fs::metadata(segment::path(&wal, id)).unwrap().len())
        .sum()
}

#[tokio::test]
async fn past_max_bytes_appends_are_refused_until_stored_traces_free_segments() {
    let dir = tempfile::tempdir().unwrap();
    let max = 160 * 1024;
    let c = WalConfig {
        segment_bytes: 64 * 1024,
        max_bytes: max,
        ..WalConfig::default()
    };
    let metrics = WalMetrics::default();
    let (wal, _) = Wal::open(
        dir.path(),
        &c,
        Duration::from_secs(600),
        Some(MemoryBudget::new(1 << 30)),
        metrics.clone(),
    )
    .unwrap();
    let entry = |i: u64| Entry::new(Signal::Traces, Format::Protobuf, &noise(i)).unwrap();
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 1..=100u64 {
        match wal.append(entry(i), vec![trace_id(i)]).await {
            Ok(_) => accepted.push(trace_id(i)),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("refused before 100 × 16 KiB");
    assert!(
        matches!(e, WalError::Full { max_bytes } if max_bytes == max),
        "{e}"
    );
    assert!(e.to_string().contains("max_bytes"), "{e}");
    assert!(accepted.len() >= 8, "{} taken", accepted.len());
    assert_eq!(metrics.refused_full.get(), 1);
    assert!(
        on_disk(dir.path()) <= max,
        "{} on disk",
        on_disk(dir.path())
    );
    // Nothing stored yet: still refused.
    assert!(matches!(
        wal.append(entry(101), vec![trace_id(101)]).await,
        Err(WalError::Full { .. })
    ));
    assert_eq!(metrics.refused_full.get(), 2);

    // Stored and counted: every segment written goes (the one being written when the
    // cap was hit was closed for that), and appends are taken again.
    wal.resolved(&accepted);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match wal.append(entry(102), vec![trace_id(102)]).await {
            Ok(_) => break,
            Err(WalError::Full { .. }) => {
                assert!(Instant::now() < deadline, "never taken again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // Left: the one open segment.
    assert!(on_disk(dir.path()) < 64 * 1024);
    assert_eq!(segment::list(&dir.path().join("wal")).unwrap().len(), 1);
    assert_eq!(wal.tracked(), (1, 1), "one trace in the one open segment");
    wal.shutdown();
}

/// A failed run of trace `trace`, ending at `end_ms`.
fn failed_run(trace: u64, end_ms: u64) -> Arc<crate::model::Analysis> {
    use crate::test_support::{span, trajectory};
    let root = span(trace, 1, 0)
        .name("agent")
        .attr("agent.trajectory.step", "agent")
        .error("boom")
        .times(end_ms - 10, end_ms);
    let tool = span(trace, 2, 1)
        .name("search")
        .attr("agent.trajectory.step", "tool")
        .error("boom")
        .times(end_ms - 9, end_ms - 1);
    let t = trajectory(vec![root.build(), tool.build()]);
    Arc::new(crate::analyze::analyze(
        Arc::new(t),
        &crate::analyze::AnalyzeConfig::default(),
    ))
}

/// The real SQLite store, whose durable commits fail while `refuse_durable` is set (as
/// a store whose fsync fails); plain commits go through.
struct DurableGate {
    inner: crate::store::SqliteStore,
    refuse_durable: std::sync::atomic::AtomicBool,
    durable_attempts: std::sync::atomic::AtomicU64,
}

impl crate::store::Store for DurableGate {
    fn write(&self, batch: &[crate::store::Write]) -> Result<(), crate::store::StoreError> {
        self.inner.write(batch)
    }
    fn write_durable(&self, batch: &[crate::store::Write]) -> Result<(), crate::store::StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.durable_attempts.fetch_add(1, SeqCst);
        if self.refuse_durable.load(SeqCst) {
            return Err(crate::store::StoreError::Sqlite {
                what: "commit",
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                    Some("disk I/O error".into()),
                ),
            });
        }
        self.inner.write_durable(batch)
    }
    fn get(
        &self,
        trace_id: crate::model::TraceId,
    ) -> Result<Option<crate::store::Stored>, crate::store::StoreError> {
        self.inner.get(trace_id)
    }
    fn list(
        &self,
        q: &crate::store::ListQuery,
    ) -> Result<crate::store::Page, crate::store::StoreError> {
        self.inner.list(q)
    }
    fn session(
        &self,
        s: &str,
        limit: usize,
    ) -> Result<Vec<crate::store::Summary>, crate::store::StoreError> {
        self.inner.session(s, limit)
    }
    fn counts(&self) -> Result<Vec<crate::aggregate::MinuteCounts>, crate::store::StoreError> {
        self.inner.counts()
    }
    fn retain(&self, now: u64) -> Result<crate::store::Retained, crate::store::StoreError> {
        self.inner.retain(now)
    }
    fn used_bytes(&self) -> Result<u64, crate::store::StoreError> {
        self.inner.used_bytes()
    }
}

async fn poll(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn segment_ids(dir: &std::path::Path) -> Vec<u64> {
    segment::list(&dir.join("wal")).unwrap()
}

#[tokio::test]
async fn a_segment_is_kept_until_the_store_commit_of_its_traces_is_durable() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments: each append starts a new one, closing the one before.
    let (wal, _, _) = open(dir.path(), &config(1));
    append(&wal, 1, 2).await;
    append(&wal, 2, 2).await;
    let first = segment_ids(dir.path())[0];
    let store = Arc::new(DurableGate {
        inner: crate::store::SqliteStore::open(dir.path(), crate::store::StoreConfig::default())
            .unwrap(),
        refuse_durable: std::sync::atomic::AtomicBool::new(true),
        durable_attempts: Default::default(),
    });
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(crate::store::StoreMetrics::register(&mut registry));
    let (writer, sink) = crate::store::StoreWriter::start_observed(
        store.clone(),
        None,
        crate::store::StoreConfig::default(),
        Vec::new(),
        metrics,
        None,
        Some(wal.clone() as Arc<dyn crate::store::CommitObserver>),
    )
    .unwrap();
    let a = failed_run(1, 1_717_200_000_000);
    sink.publish(a.clone());
    sink.finalize(&a.clone().into());
    // Committed durably? Not yet: the segment holding trace 1 stays, with the trace.
    poll("durable attempts", || {
        store.durable_attempts.load(SeqCst) >= 3
    })
    .await;
    assert!(segment_ids(dir.path()).contains(&first));
    assert_eq!(wal.tracked().0, 2, "traces 1 and 2 still tracked");
    store.refuse_durable.store(false, SeqCst);
    poll(
        "the first segment deleted once the commit is durable",
        || !segment_ids(dir.path()).contains(&first),
    )
    .await;
    assert_eq!(wal.tracked().0, 1, "trace 2 still tracked");
    assert!(store.get(a.trajectory.trace_id).unwrap().unwrap().finalized);
    drop(sink);
    writer.shutdown();
    wal.shutdown();
}

/// The breakdown after a restart counts each trace once. The aggregator counts a trace
/// at its finalize (count stage), before the store's sink queues that finalize: a batch
/// committed in between must not store the trace's counts, or a kill then (the trace's
/// log data not yet resolved, so replayed and counted again) counts it twice.
#[tokio::test]
async fn counts_stored_before_a_kill_hold_only_traces_whose_finalize_was_committed() {
    use crate::pipeline::{Finalized, Sink};
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, budget) = open(dir.path(), &config(64 << 20));
    append(&wal, 1, 2).await;
    append(&wal, 2, 2).await;
    let store = Arc::new(
        crate::store::SqliteStore::open(
            dir.path(),
            crate::store::StoreConfig {
                success_sample: 1.0,
                ..crate::store::StoreConfig::default()
            },
        )
        .unwrap(),
    );
    let aggregator = |registry: &mut prometheus_client::registry::Registry| {
        Arc::new(crate::aggregate::Aggregator::new(
            crate::aggregate::AggregateConfig::default_config(),
            registry,
            crate::aggregate::system_clock(),
        ))
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let counting = aggregator(&mut registry);
    let metrics = Arc::new(crate::store::StoreMetrics::register(&mut registry));
    let (writer, sink) = crate::store::StoreWriter::start_observed(
        store.clone(),
        Some(counting.clone()),
        crate::store::StoreConfig {
            success_sample: 1.0,
            ..crate::store::StoreConfig::default()
        },
        Vec::new(),
        metrics,
        None,
        Some(wal.clone() as Arc<dyn crate::store::CommitObserver>),
    )
    .unwrap();
    let end_ms = 1_717_200_000_000;
    let (a, t) = (failed_run(1, end_ms), failed_run(2, end_ms + 1));
    let (fa, ft): (Finalized, Finalized) = (a.clone().into(), t.clone().into());
    sink.publish(a.clone());
    sink.publish(t.clone());
    // Both counted (count stage); only A's finalize reaches the store's queue before
    // the kill: T's is still on its way.
    counting.finalize(&fa);
    counting.finalize(&ft);
    sink.finalize(&fa);
    poll("A resolved in the log", || wal.tracked().0 == 1).await;

    // kill -9: what is committed stays; T's finalize never arrives.
    drop(sink);
    writer.shutdown();
    wal.shutdown();
    let stored = store.counts().unwrap();
    drop(store);

    // Restart: counts restored from the store, then the log replayed.
    let (wal, found, _) = open(dir.path(), &config(64 << 20));
    let (_, replayed) = replay(&wal, found, &budget).await;
    let replayed_traces: std::collections::BTreeSet<_> =
        replayed.iter().map(|s| s.trace_id).collect();
    assert_eq!(
        replayed_traces.into_iter().collect::<Vec<_>>(),
        vec![trace_id(2)],
        "only T is replayed"
    );
    let restarted = aggregator(&mut prometheus_client::registry::Registry::default());
    restarted.import_minutes(&stored);
    // The replayed trace is analysed and finalized again: counted again.
    restarted.finalize(&ft);
    let minute = (end_ms * 1_000_000) / 60_000_000_000;
    let counts = restarted
        .export_minute(minute)
        .expect("the minute is counted");
    let failed: u32 = counts.trajectories.iter().map(|c| c.outcomes[2]).sum();
    assert_eq!(
        failed, 2,
        "A and T counted once each, not T twice: {counts:?}"
    );
    wal.shutdown();
}

#[test]
fn a_written_record_pins_its_segment_until_its_traces_are_registered() {
    let tracker = Arc::new(Mutex::new(Tracker::new(Duration::from_secs(600), None)));
    tracker.lock().unwrap().add_segment(1, false);
    let pin = super::tracker::Pin::new(&tracker, 1);
    tracker.lock().unwrap().close_segment(1);
    // Closed and with no trace registered yet: still kept for the pinned record.
    assert_eq!(tracker.lock().unwrap().deletable(), Vec::<u64>::new());
    pin.register(&[trace_id(7)]);
    assert_eq!(tracker.lock().unwrap().outstanding(1), Some(1));
    assert_eq!(tracker.lock().unwrap().deletable(), Vec::<u64>::new());
    tracker.lock().unwrap().resolve(&[trace_id(7)]);
    assert_eq!(tracker.lock().unwrap().deletable(), vec![1]);

    // A pin dropped unregistered (the request went away) lets the segment go.
    tracker.lock().unwrap().add_segment(2, false);
    let pin = super::tracker::Pin::new(&tracker, 2);
    tracker.lock().unwrap().close_segment(2);
    assert_eq!(tracker.lock().unwrap().deletable(), Vec::<u64>::new());
    drop(pin);
    assert_eq!(tracker.lock().unwrap().deletable(), vec![2]);
}

#[tokio::test]
async fn an_append_given_up_before_its_wait_is_cancelled_and_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(1 << 20);
    {
        let (wal, _, _) = open(dir.path(), &c);
        append(&wal, 1, 2).await;
        // Started, then dropped (a body that failed to decode, a client that left).
        let entry = Entry::new(Signal::Traces, Format::Protobuf, &body(2, 3)).unwrap();
        drop(wal.start_append(entry).unwrap());
        append(&wal, 3, 1).await;
        wal.shutdown();
    }
    let (wal, found, budget) = open(dir.path(), &c);
    let (stats, spans) = replay(&wal, found, &budget).await;
    assert_eq!(stats.records, 2);
    assert_eq!(stats.skipped_records, 1);
    assert!(spans.iter().all(|s| s.trace_id != trace_id(2)));
    assert_eq!(spans.len(), 3);
    wal.shutdown();
}
