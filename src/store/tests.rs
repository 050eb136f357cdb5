//! Store tests: schema and startup failures, writes and revisions, filters, sort and
//! cursor, hostile filter values, sampling, retention, the writer thread, and the
//! per-minute counts' round trip through the aggregator.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;

use super::*;
use crate::aggregate::{AggregateConfig, Aggregator, BreakdownQuery, Window};
use crate::analyze::{analyze, AnalyzeConfig};
use crate::model::Analysis;
use crate::store::record::{keep, record, sampled, tag};
use crate::test_support::{span, trajectory};

const MINUTE_MS: u64 = 60_000;
/// A base time (ms) well after the epoch: 2024-06-01.
const BASE_MS: u64 = 1_717_200_000_000;

/// A run: agent root, retriever, generator on `model`. `fail`: the generator errors
/// with `reason`. Starts `offset_ms` after the base and lasts `len_ms`.
fn run(trace: u64, offset_ms: u64, len_ms: u64, model: &str, fail: Option<&str>) -> Arc<Analysis> {
    let t0 = BASE_MS + offset_ms;
    let root = span(trace, 1, 0)
        .name("agent")
        .attr("agent.trajectory.step", "agent")
        .attr("session.id", format!("session-{}", trace % 3).as_str())
        .attr(
            "user.segment",
            if trace.is_multiple_of(2) {
                "free"
            } else {
                "pro"
            },
        )
        .times(t0, t0 + len_ms);
    let retriever = span(trace, 2, 1)
        .name("retrieve")
        .attr("agent.trajectory.step", "retriever")
        .times(t0 + 1, t0 + 2);
    let mut generator = span(trace, 3, 1)
        .name("generate")
        .attr("agent.trajectory.step", "generator")
        .attr("gen_ai.request.model", model)
        .times(t0 + 2, t0 + len_ms - 1);
    let mut root = root;
    if let Some(reason) = fail {
        generator = generator.error(reason);
        root = root.error(reason);
    }
    let t = trajectory(vec![root.build(), retriever.build(), generator.build()]);
    Arc::new(analyze(Arc::new(t), &AnalyzeConfig::default()))
}

fn dims() -> Vec<crate::aggregate::Dimension> {
    AggregateConfig::default_config().dimensions
}

fn put_all(store: &SqliteStore, runs: &[Arc<Analysis>]) {
    let writes: Vec<Write> = runs
        .iter()
        .map(|a| {
            let doc = crate::store::document::Document::from_analysis(a);
            Write::Put(record(a, &dims(), crate::compress::compress_json(&doc).unwrap()).unwrap())
        })
        .collect();
    store.write(&writes).unwrap();
}

fn open(dir: &std::path::Path) -> SqliteStore {
    SqliteStore::open(dir, StoreConfig::default()).unwrap()
}

fn ids(page: &Page) -> Vec<TraceId> {
    page.items.iter().map(|s| s.trace_id).collect()
}

#[test]
fn schema_is_versioned_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        put_all(&s, &[run(1, 0, 100, "m1", Some("boom"))]);
    }
    let s = open(dir.path());
    assert!(s.get(crate::test_support::trace_id(1)).unwrap().is_some());
    let conn = rusqlite::Connection::open(dir.path().join(sqlite::DB_FILE)).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, sqlite::SCHEMA_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn newer_schema_is_refused_naming_file_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let path = dir.path().join(sqlite::DB_FILE);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteStore::open(dir.path(), StoreConfig::default())
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("99") && msg.contains(&sqlite::SCHEMA_VERSION.to_string()),
        "{msg}"
    );
}

#[test]
fn bad_data_dirs_fail_with_actionable_messages() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = SqliteStore::open(&file, StoreConfig::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::DataDir { .. }), "{err}");
    assert!(err.to_string().contains("--data-dir"), "{err}");

    // The database path is a directory.
    let d2 = dir.path().join("d2");
    std::fs::create_dir_all(d2.join(sqlite::DB_FILE)).unwrap();
    let err = SqliteStore::open(&d2, StoreConfig::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");

    // A flipped header: not a database; the file is left as it was.
    let d3 = dir.path().join("d3");
    std::fs::create_dir_all(&d3).unwrap();
    let junk = vec![0x5a_u8; 8192];
    std::fs::write(d3.join(sqlite::DB_FILE), &junk).unwrap();
    let err = SqliteStore::open(&d3, StoreConfig::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("move it away"), "{err}");
    assert_eq!(std::fs::read(d3.join(sqlite::DB_FILE)).unwrap(), junk);
}

#[test]
fn corrupted_page_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        let runs: Vec<_> = (1..=300)
            .map(|i| {
                run(
                    i,
                    i * 10,
                    100,
                    "m1",
                    Some("a failure reason long enough to fill pages"),
                )
            })
            .collect();
        put_all(&s, &runs);
        // Checkpoint the WAL into the main file so the damage below hits live pages.
        let conn = rusqlite::Connection::open(dir.path().join(sqlite::DB_FILE)).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let path = dir.path().join(sqlite::DB_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 4096 * 6);
    // Trash pages 3.. (keep the header page intact).
    for b in &mut bytes[4096 * 2..4096 * 6] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(dir.path(), StoreConfig::default())
        .err()
        .expect("refused");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn put_get_and_revisions_replace() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let a = run(7, 0, 100, "m1", None);
    put_all(&s, std::slice::from_ref(&a));
    let got = s.get(a.trajectory.trace_id).unwrap().unwrap();
    // The stored summary also carries the run's model, from its cohort values.
    let mut expected = record::summary(&a);
    expected.model = Some("m1".into());
    assert_eq!(got.summary, expected);
    let doc = crate::store::document::parse(&got.document).unwrap();
    assert_eq!(doc.version, crate::store::document::DOCUMENT_VERSION);
    let doc =
        serde_json::to_value(crate::api::dto::TrajectoryDto::from_document(doc, true)).unwrap();
    let expected =
        serde_json::to_value(crate::api::dto::TrajectoryDto::from_analysis(&a, true)).unwrap();
    assert_eq!(doc, expected, "the document rebuilds the same DTO");
    assert_eq!(
        got.cohort
            .iter()
            .find(|(k, _)| k == "user_segment")
            .and_then(|(_, v)| v.clone()),
        Some("pro".into())
    );

    // A failed revision replaces the row and its tags.
    let b = run(7, 0, 100, "m1", Some("late failure"));
    put_all(&s, &[b]);
    let q = |t: &str| ListQuery {
        tags: vec![t.to_owned()],
        ..ListQuery::default()
    };
    assert_eq!(s.list(&q(&tag::outcome("success"))).unwrap().items.len(), 0);
    assert_eq!(s.list(&q(&tag::outcome("failed"))).unwrap().items.len(), 1);
    s.write(&[Write::Remove(a.trajectory.trace_id)]).unwrap();
    assert!(s.get(a.trajectory.trace_id).unwrap().is_none());
    assert_eq!(s.list(&q(&tag::outcome("failed"))).unwrap().items.len(), 0);
}

fn fixture() -> (tempfile::TempDir, SqliteStore, Vec<Arc<Analysis>>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let runs: Vec<_> = (1..=40u64)
        .map(|i| {
            let fail = match i % 4 {
                0 => Some("rate limit: 100% of quota_used"),
                1 => Some("tool 'search' failed"),
                _ => None,
            };
            let model = if i % 5 == 0 { "m2" } else { "m1" };
            run(i, i * 1000, 50 + (i * 37) % 400, model, fail)
        })
        .collect();
    put_all(&s, &runs);
    (dir, s, runs)
}

#[test]
fn filters_match_the_analyses() {
    let (_d, s, runs) = fixture();
    let all = |q: ListQuery| -> Vec<TraceId> {
        let mut q = ListQuery { limit: 1000, ..q };
        let mut out = Vec::new();
        loop {
            let p = s.list(&q).unwrap();
            out.extend(ids(&p));
            match p.next {
                Some(c) => q.after = Some(c),
                None => return out,
            }
        }
    };
    let expect = |f: &dyn Fn(&Analysis) -> bool| -> usize { runs.iter().filter(|a| f(a)).count() };
    let with = |tags: Vec<String>| ListQuery {
        tags,
        ..ListQuery::default()
    };
    assert_eq!(all(ListQuery::default()).len(), 40);
    assert_eq!(
        all(with(vec![tag::outcome("failed")])).len(),
        expect(&|a| a.outcome == Outcome::Failed)
    );
    assert_eq!(
        all(with(vec![tag::dim("model", "m2")])).len(),
        8,
        "cohort dimension filter"
    );
    assert_eq!(
        all(with(vec![tag::dim("model", "m2"), tag::outcome("failed")])).len(),
        expect(&|a| a.outcome == Outcome::Failed
            && a.trajectory
                .spans
                .iter()
                .any(|s| s.attr_str("gen_ai.request.model") == Some("m2")))
    );
    assert_eq!(all(with(vec![tag::dim("user_segment", "free")])).len(), 20);
    assert_eq!(all(with(vec![tag::step("retriever")])).len(), 40);
    assert_eq!(all(with(vec![tag::step("critic")])).len(), 0);
    assert_eq!(all(with(vec![tag::session("session-1")])).len(), 14);
    let failed_kinds = all(with(vec![tag::finding_kind("error")]));
    assert_eq!(
        failed_kinds.len(),
        expect(&|a| a.findings.iter().any(|f| f.kind.as_str() == "error"))
    );
    let rc = runs
        .iter()
        .find_map(|a| a.root_cause.as_ref().map(|r| r.step.as_str().to_owned()))
        .unwrap();
    assert_eq!(
        all(with(vec![tag::root_cause_step(&rc)])).len(),
        expect(&|a| a.root_cause.as_ref().is_some_and(|r| r.step.as_str() == rc))
    );
    // Text: literal, case-insensitive; `%` and `_` are not wildcards.
    let text = |t: &str| {
        all(ListQuery {
            text: Some(t.to_lowercase()),
            ..ListQuery::default()
        })
        .len()
    };
    assert_eq!(text("RATE LIMIT"), 10);
    assert_eq!(text("100%"), 10);
    assert_eq!(text("quota_used"), 10);
    assert_eq!(text("%"), 10);
    assert_eq!(text("_"), 10);
    assert_eq!(text("quota%used"), 0);
    assert_eq!(text("r_te"), 0);
    // Time range on end time.
    let from = (BASE_MS + 10_000) * 1_000_000;
    let to = (BASE_MS + 20_000) * 1_000_000;
    let in_range = all(ListQuery {
        from: Some(from),
        to: Some(to),
        ..ListQuery::default()
    });
    assert_eq!(
        in_range.len(),
        expect(&|a| (from..to).contains(&a.trajectory.end_unix_nano()))
    );
}

#[test]
fn hostile_values_are_just_values() {
    let (_d, s, _) = fixture();
    for v in [
        "' OR 1=1--",
        "\" OR \"\"=\"",
        "%",
        "_",
        "'; DROP TABLE trajectories; --",
        "\u{1f}",
    ] {
        for t in [
            tag::outcome(v),
            tag::step(v),
            tag::dim("model", v),
            tag::session(v),
        ] {
            let p = s
                .list(&ListQuery {
                    tags: vec![t],
                    ..ListQuery::default()
                })
                .unwrap();
            assert!(p.items.is_empty(), "{v} matched rows");
        }
        assert!(s.session(v, 10).unwrap().is_empty());
    }
    assert_eq!(
        s.list(&ListQuery {
            limit: 1000,
            ..ListQuery::default()
        })
        .unwrap()
        .items
        .len(),
        40,
        "nothing was dropped"
    );
}

#[test]
fn sort_order_and_cursor_cover_everything_once() {
    let (_d, s, runs) = fixture();
    for sort in [SortKey::End, SortKey::Duration] {
        for order in [Order::Asc, Order::Desc] {
            for tags in [vec![], vec![tag::outcome("success")]] {
                let mut q = ListQuery {
                    sort,
                    order,
                    limit: 7,
                    tags: tags.clone(),
                    ..ListQuery::default()
                };
                let mut keys = Vec::new();
                let mut seen = std::collections::HashSet::new();
                loop {
                    let p = s.list(&q).unwrap();
                    assert!(p.items.len() <= 7);
                    for it in &p.items {
                        assert!(seen.insert(it.trace_id), "listed twice");
                        keys.push(match sort {
                            SortKey::End => it.end_unix_nano,
                            SortKey::Duration => it.duration_nanos(),
                        });
                    }
                    match p.next {
                        Some(c) => {
                            // Opaque and round-trips.
                            assert_eq!(Cursor::decode(&c.encode()), Some(c));
                            q.after = Some(c);
                        }
                        None => break,
                    }
                }
                let expected = if tags.is_empty() {
                    runs.len()
                } else {
                    runs.iter()
                        .filter(|a| a.outcome == Outcome::Success)
                        .count()
                };
                assert_eq!(seen.len(), expected, "{sort:?} {order:?} {tags:?}");
                let mut sorted = keys.clone();
                sorted.sort_unstable();
                if order == Order::Desc {
                    sorted.reverse();
                }
                assert_eq!(keys, sorted, "{sort:?} {order:?}");
            }
        }
    }
    assert_eq!(Cursor::decode("zz"), None);
    assert_eq!(Cursor::decode(&"0".repeat(50)), None, "all-zero trace id");
}

#[test]
fn sessions_are_listed_by_start() {
    let (_d, s, _) = fixture();
    let items = s.session("session-2", 1000).unwrap();
    assert_eq!(items.len(), 13);
    assert!(items
        .windows(2)
        .all(|w| w[0].start_unix_nano <= w[1].start_unix_nano));
    assert!(items
        .iter()
        .all(|i| i.session_id.as_deref() == Some("session-2")));
    assert_eq!(s.session("session-2", 3).unwrap().len(), 3);
}

#[test]
fn sampling_is_deterministic_and_near_the_rate() {
    let n = 20_000;
    let kept = (1..=n)
        .filter(|i| sampled(crate::test_support::trace_id(*i), 0.05))
        .count();
    assert!((800..1200).contains(&kept), "kept {kept} of {n}");
    for i in 1..100 {
        let t = crate::test_support::trace_id(i);
        assert_eq!(sampled(t, 0.05), sampled(t, 0.05));
        assert!(sampled(t, 1.0));
        assert!(!sampled(t, 0.0));
    }
    // Failed runs are always kept.
    assert!((1..200).all(|i| keep(&run(i, 0, 10, "m", Some("x")), 0.0)));
}

#[test]
fn retention_by_age_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(
        dir.path(),
        StoreConfig {
            retention: Duration::from_secs(3600),
            max_bytes: 1 << 20,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    // 10 runs two hours old, 10 recent.
    let now_ms = BASE_MS + 3 * 3600 * 1000;
    let old: Vec<_> = (1..=10).map(|i| run(i, i, 10, "m", Some("x"))).collect();
    let new: Vec<_> = (11..=20)
        .map(|i| run(i, 3 * 3600 * 1000 - 60_000 + i, 10, "m", Some("x")))
        .collect();
    put_all(&s, &old);
    put_all(&s, &new);
    s.write(&[Write::Counts(crate::aggregate::MinuteCounts {
        minute: BASE_MS / MINUTE_MS,
        ..Default::default()
    })])
    .unwrap();
    let r = s.retain(now_ms * 1_000_000).unwrap();
    assert_eq!(r.by_age, 10);
    assert_eq!(r.minutes, 1);
    assert_eq!(r.by_size, 0);
    assert!(s.get(old[0].trajectory.trace_id).unwrap().is_none());
    assert!(s.get(new[0].trajectory.trace_id).unwrap().is_some());

    // Past max_bytes, the oldest go first until the live pages fit.
    let big_reason = "y".repeat(2000);
    let many: Vec<_> = (100..1100)
        .map(|i| {
            run(
                i,
                3 * 3600 * 1000 - 30_000 + i,
                10,
                "m",
                Some(&format!("{big_reason}{i}")),
            )
        })
        .collect();
    put_all(&s, &many);
    assert!(s.used_bytes().unwrap() > 1 << 20);
    let r = s.retain(now_ms * 1_000_000).unwrap();
    assert!(r.by_size > 0, "{r:?}");
    assert!(s.used_bytes().unwrap() <= 1 << 20);
    assert!(
        s.get(many[999].trajectory.trace_id).unwrap().is_some(),
        "newest kept"
    );
    assert!(
        s.get(new[0].trajectory.trace_id).unwrap().is_none(),
        "oldest gone first"
    );
}

fn breakdown_json(agg: &Aggregator, minutes: u64) -> String {
    let b = agg
        .breakdown(
            &BreakdownQuery {
                window: Window::Last { minutes },
                by: vec![0, 2],
            },
            0,
        )
        .unwrap();
    format!("{b:?}")
}

#[test]
fn minute_counts_round_trip_through_the_aggregator() {
    let config = AggregateConfig::default_config();
    let a = Aggregator::new(
        config.clone(),
        &mut Registry::default(),
        crate::aggregate::system_clock(),
    );
    let runs: Vec<_> = (1..=200u64)
        .map(|i| {
            let fail = (i % 7 == 0).then_some("boom");
            run(
                i,
                (i % 5) * MINUTE_MS + i,
                20 + i,
                ["m1", "m2", "m3"][i as usize % 3],
                fail,
            )
        })
        .collect();
    let now = (BASE_MS + 10 * MINUTE_MS) * 1_000_000;
    for r in &runs {
        a.record(r, now);
    }
    let minutes: Vec<_> = (0..6)
        .filter_map(|m| a.export_minute(BASE_MS / MINUTE_MS + m))
        .collect();
    assert_eq!(minutes.len(), 5);
    // Through the store and back.
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.write(
        &minutes
            .iter()
            .cloned()
            .map(Write::Counts)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let stored = s.counts().unwrap();
    assert_eq!(stored, minutes);
    let b = Aggregator::new(
        config,
        &mut Registry::default(),
        crate::aggregate::system_clock(),
    );
    assert_eq!(b.import_minutes(&stored), 5);
    assert_eq!(breakdown_json(&a, 10), breakdown_json(&b, 10));
    // Re-exported minutes are identical.
    for m in &minutes {
        assert_eq!(b.export_minute(m.minute).as_ref(), Some(m));
    }
}

#[test]
fn writer_stores_kept_trajectories_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        success_sample: 0.0,
        ..StoreConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), config.clone()).unwrap());
    let mut registry = Registry::default();
    let agg = Arc::new(Aggregator::new(
        AggregateConfig::default_config(),
        &mut registry,
        Arc::new(|| (BASE_MS + 5 * MINUTE_MS) * 1_000_000),
    ));
    let metrics = Arc::new(StoreMetrics::register(&mut registry));
    let (writer, sink) = StoreWriter::start(
        store.clone(),
        Some(agg.clone()),
        config,
        dims(),
        metrics.clone(),
        None,
    )
    .unwrap();
    let runs: Vec<_> = (1..=50u64)
        .map(|i| run(i, i * 100, 10, "m1", (i % 5 == 0).then_some("boom")))
        .collect();
    for r in &runs {
        sink.publish(r.clone());
        let f = crate::pipeline::Finalized::from(r.clone());
        agg.finalize(&f);
        sink.finalize(&f);
    }
    writer.shutdown();
    let failed: Vec<_> = runs
        .iter()
        .filter(|a| a.outcome != Outcome::Success)
        .collect();
    let page = store
        .list(&ListQuery {
            limit: 1000,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(
        page.items.len(),
        failed.len(),
        "successes sampled out at rate 0"
    );
    for a in &failed {
        assert!(store.get(a.trajectory.trace_id).unwrap().unwrap().finalized);
    }
    // The list carries what its columns show: finalized, the model, the reason.
    for s in &page.items {
        assert!(s.finalized, "{s:?}");
        assert_eq!(s.model.as_deref(), Some("m1"));
        let a = failed
            .iter()
            .find(|a| a.trajectory.trace_id == s.trace_id)
            .unwrap();
        assert_eq!(
            s.root_cause_reason.as_deref(),
            a.root_cause.as_ref().map(|r| r.reason.as_str())
        );
        assert!(s.root_cause_reason.is_some(), "{s:?}");
    }
    let counts = store.counts().unwrap();
    let total: u32 = counts
        .iter()
        .flat_map(|m| &m.trajectories)
        .map(|t| t.outcomes.iter().sum::<u32>())
        .sum();
    assert_eq!(total, 50, "exact counts although rows are sampled");
    let text = crate::metrics::render(&registry);
    assert!(
        text.contains("faultline_store_writes_total{op=\"put\"} 10"),
        "{text}"
    );
    assert!(
        text.contains("faultline_store_dropped_total{reason=\"queue_full\"} 0"),
        "{text}"
    );
}

/// A store whose writes take `delay`, fail while `failing` is set (as a full disk does),
/// and which reports corruption while `corrupt` is set; it remembers what was put.
#[derive(Default)]
struct Fake {
    delay: Duration,
    failing: std::sync::atomic::AtomicBool,
    corrupt: std::sync::atomic::AtomicBool,
    writes: std::sync::atomic::AtomicU64,
    put: std::sync::Mutex<Vec<TraceId>>,
    /// Every transaction committed: durable or not, and the traces it finalized.
    commits: std::sync::Mutex<Vec<(bool, Vec<TraceId>)>>,
}

impl Fake {
    fn commit(&self, batch: &[Write], durable: bool) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        std::thread::sleep(self.delay);
        self.writes.fetch_add(1, SeqCst);
        if self.failing.load(SeqCst) {
            return Err(StoreError::Sqlite {
                what: "commit",
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                    Some("database or disk is full".into()),
                ),
            });
        }
        let mut put = self.put.lock().unwrap();
        for w in batch {
            if let Write::Put(r) = w {
                put.push(r.summary.trace_id);
            }
        }
        let finalized = batch
            .iter()
            .filter_map(|w| match w {
                Write::Finalized(id) => Some(*id),
                _ => None,
            })
            .collect();
        self.commits.lock().unwrap().push((durable, finalized));
        Ok(())
    }
}

impl Store for Fake {
    fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.commit(batch, false)
    }
    fn write_durable(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.commit(batch, true)
    }
    fn get(&self, _: TraceId) -> Result<Option<Stored>, StoreError> {
        Ok(None)
    }
    fn list(&self, _: &ListQuery) -> Result<Page, StoreError> {
        Ok(Page {
            items: Vec::new(),
            next: None,
        })
    }
    fn session(&self, _: &str, _: usize) -> Result<Vec<Summary>, StoreError> {
        Ok(Vec::new())
    }
    fn counts(&self) -> Result<Vec<crate::aggregate::MinuteCounts>, StoreError> {
        Ok(Vec::new())
    }
    fn retain(&self, _: u64) -> Result<Retained, StoreError> {
        Ok(Retained::default())
    }
    fn used_bytes(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn corruption(&self) -> Option<String> {
        self.corrupt
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| "the file no longer starts with the SQLite header".into())
    }
}

fn metric(registry: &Registry, series: &str) -> u64 {
    let text = crate::metrics::render(registry);
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in {text}"))
}

fn poll(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_slow_store_sheds_successes_keeps_every_failure_and_charges_the_budget() {
    let mut registry = Registry::default();
    let metrics = Arc::new(StoreMetrics::register(&mut registry));
    let budget = crate::memory::MemoryBudget::new(1 << 30);
    let store = Arc::new(Fake {
        delay: Duration::from_millis(100),
        ..Fake::default()
    });
    let config = StoreConfig {
        queue: 4,
        success_sample: 1.0,
        ..StoreConfig::default()
    };
    let (writer, sink) = StoreWriter::start(
        store.clone(),
        None,
        config,
        dims(),
        metrics.clone(),
        Some(budget.clone()),
    )
    .unwrap();
    let runs: Vec<_> = (1..=200u64)
        .map(|i| run(i, 0, 10, "m", (i % 10 == 0).then_some("boom")))
        .collect();
    let started = std::time::Instant::now();
    for r in &runs {
        sink.publish(r.clone());
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "publish blocked"
    );
    // What waits is charged to the budget, and the store says it is behind.
    assert!(budget.used_by(crate::memory::Component::Store) > 0);
    let health = metrics.health();
    assert!(health.iter().any(|d| d.reason() == "behind"), "{health:?}");
    assert_eq!(
        metric(&registry, "faultline_store_degraded{reason=\"behind\"}"),
        1
    );
    writer.shutdown();
    let put = store.put.lock().unwrap().clone();
    for r in runs.iter().filter(|a| a.outcome != Outcome::Success) {
        assert!(
            put.contains(&r.trajectory.trace_id),
            "a failure was not written"
        );
    }
    let shed = metric(&registry, "faultline_store_dropped_total{reason=\"shed\"}");
    assert!(shed > 100, "successes shed: {shed}");
    assert_eq!(put.len() as u64 + shed, 200, "every run written or shed");
    assert_eq!(
        metric(
            &registry,
            "faultline_store_dropped_total{reason=\"write_error\"}"
        ),
        0
    );
    assert_eq!(
        budget.used_by(crate::memory::Component::Store),
        0,
        "charges given back"
    );
}

#[test]
fn a_failing_store_is_retried_until_it_recovers_and_health_says_failing() {
    use std::sync::atomic::Ordering::SeqCst;
    let mut registry = Registry::default();
    let metrics = Arc::new(StoreMetrics::register(&mut registry));
    let store = Arc::new(Fake::default());
    store.failing.store(true, SeqCst);
    let config = StoreConfig {
        success_sample: 1.0,
        ..StoreConfig::default()
    };
    let (writer, sink) =
        StoreWriter::start(store.clone(), None, config, dims(), metrics.clone(), None).unwrap();
    let failed = run(1, 0, 10, "m", Some("boom"));
    sink.publish(failed.clone());
    // More attempts than the old limit, and the failure still waits.
    poll("retries", || store.writes.load(SeqCst) >= 3);
    let health = metrics.health();
    assert!(
        health
            .iter()
            .any(|d| d.reason() == "failing" && d.detail().contains("disk is full")),
        "{health:?}"
    );
    assert_eq!(
        metric(&registry, "faultline_store_degraded{reason=\"failing\"}"),
        1
    );
    // A success offered while failing is shed, not queued behind the failure.
    sink.publish(run(2, 0, 10, "m", None));
    assert_eq!(
        metric(&registry, "faultline_store_dropped_total{reason=\"shed\"}"),
        1
    );
    store.failing.store(false, SeqCst);
    poll("the failure written once the store recovers", || {
        store
            .put
            .lock()
            .unwrap()
            .contains(&failed.trajectory.trace_id)
    });
    poll("healthy again", || {
        !metrics.health().iter().any(|d| d.reason() == "failing")
    });
    assert_eq!(
        metric(&registry, "faultline_store_writes_total{op=\"put\"}"),
        1
    );
    writer.shutdown();
    assert_eq!(
        metric(
            &registry,
            "faultline_store_dropped_total{reason=\"write_error\"}"
        ),
        0
    );
}

#[test]
fn a_corrupted_store_is_not_written_and_health_says_corrupted() {
    use std::sync::atomic::Ordering::SeqCst;
    let mut registry = Registry::default();
    let metrics = Arc::new(StoreMetrics::register(&mut registry));
    let store = Arc::new(Fake::default());
    let config = StoreConfig {
        success_sample: 1.0,
        ..StoreConfig::default()
    };
    let (writer, sink) =
        StoreWriter::start(store.clone(), None, config, dims(), metrics.clone(), None).unwrap();
    sink.publish(run(1, 0, 10, "m", Some("boom")));
    poll("first write", || store.writes.load(SeqCst) == 1);
    store.corrupt.store(true, SeqCst);
    poll("corruption found", || {
        metrics.health().iter().any(|d| d.reason() == "corrupted")
    });
    sink.publish(run(2, 0, 10, "m", Some("boom")));
    sink.publish(run(3, 0, 10, "m", None));
    // Held, not written, and never counted as written.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(store.writes.load(SeqCst), 1);
    assert_eq!(
        metric(&registry, "faultline_store_writes_total{op=\"put\"}"),
        1
    );
    assert_eq!(
        metric(&registry, "faultline_store_dropped_total{reason=\"shed\"}"),
        1
    );
    assert_eq!(
        metric(&registry, "faultline_store_degraded{reason=\"corrupted\"}"),
        1
    );
    // Given up only at shutdown, and counted.
    writer.shutdown();
    assert_eq!(store.writes.load(SeqCst), 1);
    assert_eq!(
        metric(
            &registry,
            "faultline_store_dropped_total{reason=\"write_error\"}"
        ),
        1
    );
}

#[test]
fn a_store_file_overwritten_while_open_is_found_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), StoreConfig::default()).unwrap();
    put_all(&s, &[run(1, 0, 10, "m", Some("boom"))]);
    assert_eq!(s.corruption(), None);
    let path = dir.path().join(sqlite::DB_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&path, &bytes).unwrap();
    let found = s.corruption().expect("found");
    assert!(found.contains("faultline.db"), "{found}");
    assert!(found.contains("header"), "{found}");
}

/// A killed run leaves `faultline.db-wal` holding page 1; SQLite would read the header
/// from there and open the file overwritten since. The open checks the file itself.
#[test]
fn a_file_overwritten_beside_a_leftover_sqlite_wal_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(sqlite::DB_FILE);
    let wal = dir.path().join(format!("{}-wal", sqlite::DB_FILE));
    let s = SqliteStore::open(dir.path(), StoreConfig::default()).unwrap();
    put_all(&s, &[run(1, 0, 10, "m", Some("boom"))]);
    // What a kill leaves: copies of the files taken while the store is open (a clean
    // close would checkpoint the log away).
    let kept_wal = std::fs::read(&wal).unwrap();
    assert!(!kept_wal.is_empty());
    drop(s);
    std::fs::write(&wal, &kept_wal).unwrap();
    let notes = b"these are notes, not a database\n".repeat(200);
    std::fs::write(&path, &notes).unwrap();
    let err = SqliteStore::open(dir.path(), StoreConfig::default())
        .err()
        .expect("refused");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("SQLite header"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), notes, "never overwritten");
}

#[test]
fn an_empty_store_file_is_initialised_and_a_full_disk_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(sqlite::DB_FILE), b"").unwrap();
    let s = SqliteStore::open(dir.path(), StoreConfig::default()).unwrap();
    put_all(&s, &[run(1, 0, 10, "m", Some("boom"))]);
    assert!(s.get(crate::test_support::trace_id(1)).unwrap().is_some());
    // SQLITE_FULL from the file's first write is a full disk, naming the file.
    let e = rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
        Some("database or disk is full".into()),
    );
    let path = dir.path().join(sqlite::DB_FILE);
    let text = sqlite::open_error(&path, e).to_string();
    assert!(text.contains("disk is full"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("free some space"), "{text}");
}

#[test]
fn config_table_is_validated() {
    let ok = StoreConfig::from_raw(&RawStoreConfig {
        retention: Some("3d".into()),
        max_bytes: Some(10 << 20),
        success_sample: Some(0.5),
        queue: Some(10),
    })
    .unwrap();
    assert_eq!(ok.retention, Duration::from_secs(3 * 86400));
    assert_eq!(ok.success_sample, 0.5);
    for (raw, key) in [
        (
            RawStoreConfig {
                success_sample: Some(1.5),
                ..Default::default()
            },
            "success_sample",
        ),
        (
            RawStoreConfig {
                retention: Some("soon".into()),
                ..Default::default()
            },
            "retention",
        ),
        (
            RawStoreConfig {
                max_bytes: Some(10),
                ..Default::default()
            },
            "max_bytes",
        ),
    ] {
        assert_eq!(StoreConfig::from_raw(&raw).unwrap_err().key, key);
    }
}

/// What the write-ahead log would be told, and whether a durable commit finalizing
/// each trace had returned by then.
struct Told {
    store: Arc<Fake>,
    told: std::sync::Mutex<Vec<(TraceId, bool)>>,
}

impl CommitObserver for Told {
    fn committed(&self, traces: &[TraceId]) {
        let commits = self.store.commits.lock().unwrap();
        let mut told = self.told.lock().unwrap();
        for t in traces {
            let durable = commits.iter().any(|(d, ids)| *d && ids.contains(t));
            told.push((*t, durable));
        }
    }
}

#[test]
fn the_log_is_told_of_a_finalize_only_after_a_durable_commit_of_it() {
    use std::sync::atomic::Ordering::SeqCst;
    let mut registry = Registry::default();
    let metrics = Arc::new(StoreMetrics::register(&mut registry));
    let store = Arc::new(Fake::default());
    store.failing.store(true, SeqCst);
    let told = Arc::new(Told {
        store: store.clone(),
        told: std::sync::Mutex::new(Vec::new()),
    });
    let config = StoreConfig {
        success_sample: 1.0,
        ..StoreConfig::default()
    };
    let (writer, sink) = StoreWriter::start_observed(
        store.clone(),
        None,
        config,
        dims(),
        metrics.clone(),
        None,
        Some(told.clone() as Arc<dyn CommitObserver>),
    )
    .unwrap();
    let failed = run(1, 0, 10, "m", Some("boom"));
    sink.publish(failed.clone());
    sink.finalize(&failed.clone().into());
    // While the commit fails, the log is told nothing: it keeps the trace's data.
    poll("retries", || store.writes.load(SeqCst) >= 3);
    assert!(told.told.lock().unwrap().is_empty());
    store.failing.store(false, SeqCst);
    poll("told once committed", || {
        !told.told.lock().unwrap().is_empty()
    });
    assert_eq!(
        *told.told.lock().unwrap(),
        vec![(failed.trajectory.trace_id, true)],
        "told only after a durable commit of the finalize"
    );
    // A batch that finalizes nothing lets the log delete nothing: not synced.
    let later = run(2, 0, 10, "m", Some("boom"));
    sink.publish(later.clone());
    poll("the later publish written", || {
        store
            .put
            .lock()
            .unwrap()
            .contains(&later.trajectory.trace_id)
    });
    assert_eq!(
        store.commits.lock().unwrap().last(),
        Some(&(false, Vec::new()))
    );
    writer.shutdown();
}

#[test]
fn a_durable_transaction_runs_with_synchronous_full_and_the_others_with_normal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mode = |durable: bool| {
        store
            .write_tx_synced(durable, |tx| {
                tx.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))
                    .map_err(StoreError::sql("read"))
            })
            .unwrap()
    };
    // 1: NORMAL, 2: FULL (the WAL file is fsynced at the commit).
    assert_eq!(mode(false), 1);
    assert_eq!(mode(true), 2);
    assert_eq!(mode(false), 1, "back to NORMAL after a durable commit");
    let a = run(1, 0, 10, "m", Some("boom"));
    let doc = crate::store::document::Document::from_analysis(&a);
    let put =
        Write::Put(record(&a, &dims(), crate::compress::compress_json(&doc).unwrap()).unwrap());
    store.write_durable(&[put]).unwrap();
    assert!(store.get(a.trajectory.trace_id).unwrap().is_some());
    assert_eq!(mode(false), 1);
}

#[test]
fn added_counts_sum_with_the_stored_minute_and_follow_the_new_dimensions() {
    use crate::aggregate::{DimValue, KindCounts, MinuteCounts, StepCounts, TrajectoryCounts};
    let v = |s: &str| DimValue::Value(s.into());
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let old = MinuteCounts {
        minute: 7,
        dimensions: vec!["model".into(), "route".into()],
        trajectories: vec![TrajectoryCounts {
            dims: vec![v("m"), v("/a")],
            outcomes: [1, 0, 2],
        }],
        steps: vec![StepCounts {
            step: v("generator"),
            dims: vec![v("m"), v("/a")],
            runs: 3,
            failed_runs: 2,
            root_causes: 2,
            latency: vec![(5, 1), (9, 2)],
        }],
        kinds: vec![KindCounts {
            step: v("generator"),
            kind: Some("error_status".into()),
            dims: vec![v("m"), v("/a")],
            findings: 2,
            root_causes: 2,
        }],
    };
    store.write(&[Write::Counts(old)]).unwrap();
    // The configured dimensions changed: `route` is gone, `segment` is new.
    let delta = MinuteCounts {
        minute: 7,
        dimensions: vec!["model".into(), "segment".into()],
        trajectories: vec![TrajectoryCounts {
            dims: vec![v("m"), DimValue::Unset],
            outcomes: [0, 0, 1],
        }],
        steps: vec![StepCounts {
            step: v("generator"),
            dims: vec![v("m"), DimValue::Unset],
            runs: 1,
            failed_runs: 1,
            root_causes: 1,
            latency: vec![(9, 1), (12, 1)],
        }],
        kinds: vec![KindCounts {
            step: v("generator"),
            kind: Some("error_status".into()),
            dims: vec![v("m"), v("pro")],
            findings: 1,
            root_causes: 1,
        }],
    };
    store.write(&[Write::AddCounts(delta.clone())]).unwrap();
    // A minute with nothing stored takes the counts as they are.
    let other = MinuteCounts {
        minute: 8,
        ..delta.clone()
    };
    store.write(&[Write::AddCounts(other.clone())]).unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(counts.len(), 2);
    assert_eq!(counts[1], other);
    let m = &counts[0];
    assert_eq!(m.dimensions, delta.dimensions);
    assert_eq!(
        m.trajectories,
        vec![TrajectoryCounts {
            dims: vec![v("m"), DimValue::Unset],
            outcomes: [1, 0, 3],
        }]
    );
    assert_eq!(m.steps.len(), 1);
    assert_eq!(
        (
            m.steps[0].runs,
            m.steps[0].failed_runs,
            m.steps[0].root_causes
        ),
        (4, 3, 3)
    );
    assert_eq!(m.steps[0].latency, vec![(5, 1), (9, 3), (12, 1)]);
    assert_eq!(m.kinds.len(), 2, "{:?}", m.kinds);
    assert_eq!(m.kinds[0].dims, vec![v("m"), DimValue::Unset]);
    assert_eq!((m.kinds[0].findings, m.kinds[0].root_causes), (2, 2));
    assert_eq!(m.kinds[1].dims, vec![v("m"), v("pro")]);
    assert_eq!((m.kinds[1].findings, m.kinds[1].root_causes), (1, 1));
}
