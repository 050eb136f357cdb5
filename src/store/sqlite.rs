//! The embedded store: one SQLite file (`faultline.db` under the data directory) in WAL
//! mode.
//!
//! Schema (version in `PRAGMA user_version`, migrations in [`MIGRATIONS`], each applied
//! in its own transaction together with the version bump, so a kill mid-migration
//! leaves the previous version intact):
//! - `trajectories`: one row per trace id (a revision replaces the row); the summary
//!   columns, the run's cohort values (JSON), the lowercased reasons searched by `q`, and
//!   the trajectory document (compressed JSON).
//! - `tags`: `(tag, end_ns, trace_id)`, one row per filter value of a trajectory
//!   (outcome, each step, each finding kind, root-cause step, service, session, each
//!   cohort value). Ordered by end time within a tag, so a filtered list newest-first is
//!   a range scan of one tag, whatever the tag's frequency.
//!   Each trajectory row lists its tags (`tag_list`, JSON), so they are deleted by this
//!   key: there is no index of tags by trace id (schema 3), which saves a random index
//!   insert per tag of every write.
//! - `minute_counts`: the aggregator's counts of one event minute, as JSON.
//!
//! Every query is a fixed SQL text with bound parameters; the only variable parts are
//! chosen from fixed fragments (sort column, direction, number of tag filters).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use crate::aggregate::MinuteCounts;
use crate::model::TraceId;
use crate::store::config::StoreConfig;
use crate::store::record::{decompress, Summary};
use crate::store::{
    outcome_from_str, Cursor, ListQuery, Order, Page, Retained, SortKey, Store, StoreError, Stored,
    Write,
};

/// The file name under the data directory.
pub const DB_FILE: &str = "faultline.db";

/// Migrations: entry `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE trajectories (
        trace_id BLOB NOT NULL UNIQUE,
        end_ns INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        duration_ns INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        session_id TEXT,
        service TEXT,
        complete INTEGER NOT NULL,
        late_spans INTEGER NOT NULL,
        revision INTEGER NOT NULL,
        root_cause_step TEXT,
        root_cause_kind TEXT,
        span_count INTEGER NOT NULL,
        finding_count INTEGER NOT NULL,
        reasons TEXT NOT NULL,
        cohort TEXT NOT NULL,
        finalized INTEGER NOT NULL DEFAULT 0,
        body BLOB NOT NULL
    );
    CREATE INDEX trajectories_end ON trajectories (end_ns, trace_id);
    CREATE INDEX trajectories_duration ON trajectories (duration_ns, trace_id);
    CREATE TABLE tags (
        tag TEXT NOT NULL,
        end_ns INTEGER NOT NULL,
        trace_id BLOB NOT NULL,
        PRIMARY KEY (tag, end_ns, trace_id)
    ) WITHOUT ROWID;
    CREATE INDEX tags_trace ON tags (trace_id);
    CREATE TABLE minute_counts (
        minute INTEGER PRIMARY KEY,
        data TEXT NOT NULL
    );",
    // 2: the root cause's reason, shown in the trajectory list.
    "ALTER TABLE trajectories ADD COLUMN root_cause_reason TEXT;",
    // 3: fewer index rows per write. Each row lists its tags (a JSON array), so that
    // its tag rows are deleted by their primary key, and the index of tags by trace id
    // (one random insert per tag of every trajectory) goes.
    "ALTER TABLE trajectories ADD COLUMN tag_list TEXT NOT NULL DEFAULT '[]';
    UPDATE trajectories SET tag_list = (SELECT json_group_array(g.tag) FROM tags g
        WHERE g.trace_id = trajectories.trace_id);
    DROP INDEX tags_trace;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Largest trajectory document decompressed (a stored body is never bigger than what the
/// pipeline bounds produce; this guards against a corrupted row).
const MAX_DOCUMENT_BYTES: u64 = 256 << 20;
/// Stores at most this big are checked page by page (`quick_check`) at startup.
const CHECK_ON_START_BYTES: u64 = 512 << 20;
/// Rows deleted per statement by retention.
const RETENTION_CHUNK: usize = 2000;
/// Read connections kept open.
const READERS: usize = 4;
/// Page cache of the write connection, in KiB (SQLite's negative `cache_size`): large
/// enough that a batch's index pages stay in memory instead of being re-read and spilled
/// mid-transaction. A fixed amount, set aside in the memory budget's reserve
/// (`memory::MemoryBudget::with_reserve`) rather than charged as it fills.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
/// The same, in bytes.
pub const WRITER_CACHE_BYTES: u64 = WRITER_CACHE_KIB as u64 * 1024;
/// WAL pages between automatic checkpoints (SQLite's default is 1 000): fewer, larger
/// checkpoints on the writer thread.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 8192;
/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// What is written to the data directory to tell a full disk from other I/O errors.
const SPACE_PROBE_BYTES: usize = 64 * 1024;

const SUMMARY_COLS: &str = "t.trace_id, t.session_id, t.service, t.start_ns, t.end_ns, \
     t.complete, t.late_spans, t.revision, t.outcome, t.root_cause_step, t.root_cause_kind, \
     t.span_count, t.finding_count, t.root_cause_reason, t.cohort, t.finalized";

/// The SQLite store. Cheap to share: one write connection, a few read connections.
pub struct SqliteStore {
    path: PathBuf,
    config: StoreConfig,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Why the file is known to be corrupted; set by the first read or write that finds
    /// it so, or by the header check, and kept until restart.
    corrupted: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic mid-transaction rolls the transaction back when the connection is used
    // again; the connection itself stays valid.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Whether the directory `dir` has no room for a small file: writes (and removes) a probe
/// file. Tells a full disk apart from other I/O errors, which SQLite reports alike.
fn disk_full(dir: &Path) -> bool {
    let probe = dir.join(".faultline-space-probe");
    let written = std::fs::write(&probe, vec![0u8; SPACE_PROBE_BYTES]);
    let _ = std::fs::remove_file(&probe);
    matches!(written, Err(e) if e.kind() == std::io::ErrorKind::StorageFull)
}

/// What is wrong with the first 16 bytes of the file at `path`, if they are not the
/// SQLite header; `None` as well when the file cannot be read (removed, permissions):
/// that is not corruption, and the next open or write says what it is.
fn header_problem(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 16];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    match read {
        Ok(()) if &head == SQLITE_MAGIC => None,
        Ok(()) => Some("the file does not start with the SQLite header".into()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Some("the file is shorter than a SQLite header".into())
        }
        Err(_) => None,
    }
}

/// Classifies an open/first-read error into an actionable startup error.
pub(crate) fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    let detail = e.to_string();
    let full = || {
        e.sqlite_error_code() == Some(ErrorCode::DiskFull) || path.parent().is_some_and(disk_full)
    };
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_owned(),
            detail,
        },
        Some(
            ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly,
        ) if full() => StoreError::DiskFull {
            path: path.to_owned(),
            detail,
        },
        Some(ErrorCode::ReadOnly)
        | Some(ErrorCode::CannotOpen)
        | Some(ErrorCode::PermissionDenied)
        | Some(ErrorCode::SystemIoFailure) => StoreError::NotWritable {
            path: path.to_owned(),
            detail,
        },
        _ => StoreError::Sqlite {
            what: "open",
            source: e,
        },
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: readers never block the writer; a commit is durable once in the WAL, which
    // survives a killed process (synchronous=NORMAL may lose the last commits only on
    // power loss or an OS crash). The commits the write-ahead log waits for are made
    // with FULL (`write_durable`).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) `faultline.db` under `data_dir`, checks it and brings
    /// its schema up to date. Fails with an actionable message on a bad directory, an
    /// unwritable or corrupted file, or a schema newer than this build.
    pub fn open(data_dir: &Path, config: StoreConfig) -> Result<SqliteStore, StoreError> {
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(StoreError::DataDir {
                path: data_dir.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a file is in the way of the directory",
                ),
            });
        }
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        if path.is_dir() {
            return Err(StoreError::NotWritable {
                path: path.clone(),
                detail: "it is a directory, not a file".into(),
            });
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        // An empty file holds nothing to lose (SQLite itself treats it as an empty
        // database): it is initialised, with a warning, since it may be the remains of a
        // failed copy or a disk that filled up.
        let existed = path.exists() && size > 0;
        if path.exists() && size == 0 {
            tracing::warn!(
                path = %path.display(),
                "The store file is empty (zero bytes); initialising a new store in it."
            );
        }
        // Checked here, not left to SQLite: with a `-wal` file left by a killed run,
        // SQLite reads page 1 from that log and opens a file overwritten since as if
        // it were still the database (and would go on writing to it).
        if existed {
            if let Some(detail) = header_problem(&path) {
                return Err(StoreError::Corrupt { path, detail });
            }
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&path, e))?;
        // The first statement that reads the header tells a foreign or corrupted file.
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| open_error(&path, e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path,
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if !existed || version == 0 {
            // Only effective before the first table exists: lets retention hand freed
            // pages back to the file system.
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(|e| open_error(&path, e))?;
        }
        configure(&conn).map_err(|e| open_error(&path, e))?;
        if existed && size <= CHECK_ON_START_BYTES {
            let check: String = conn
                .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
                .map_err(|e| open_error(&path, e))?;
            if check != "ok" {
                return Err(StoreError::Corrupt {
                    path,
                    detail: check,
                });
            }
        }
        let mut conn = conn;
        migrate(&mut conn, &path, version)?;
        let store = SqliteStore {
            path,
            config,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            corrupted: Mutex::new(None),
        };
        // Fail now, not on the first request, when readers cannot open.
        let reader = store.reader()?;
        store.give_back(reader);
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn reader(&self) -> Result<Connection, StoreError> {
        if let Some(c) = lock(&self.readers).pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&self.path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(StoreError::sql("open a reader"))?;
        conn.pragma_update(None, "query_only", "ON")
            .map_err(StoreError::sql("open a reader"))?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut readers = lock(&self.readers);
        if readers.len() < READERS {
            readers.push(conn);
        }
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.reader()?;
        let out = f(&conn);
        self.give_back(conn);
        self.noted(out)
    }

    /// Remembers a corruption that `out` reports, and passes it on.
    fn noted<T>(&self, out: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &out {
            if e.is_corruption() {
                let mut c = lock(&self.corrupted);
                if c.is_none() {
                    tracing::error!(path = %self.path.display(), error = %e, "The store is corrupted; it is no longer written. Move the file away (or restore a backup) and restart.");
                    *c = Some(format!("{}: {e}", self.path.display()));
                }
            }
        }
        out
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the write connection.
    fn write_tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_tx_synced(false, f)
    }

    /// [`SqliteStore::write_tx`]; with `durable`, the commit runs with
    /// `synchronous=FULL`: SQLite fsyncs the WAL file before the commit returns, which
    /// puts this commit and every earlier one (they are before it in the same WAL file,
    /// or already checkpointed into the database file, which a checkpoint fsyncs) on
    /// stable storage. The connection is back to `NORMAL` afterwards.
    pub(crate) fn write_tx_synced<T>(
        &self,
        durable: bool,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.writer);
        if durable {
            if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
                drop(conn);
                return self.noted(Err(StoreError::sql("synchronous")(e)));
            }
        }
        let out = (|| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(StoreError::sql("begin"))?;
            let out = f(&tx)?;
            tx.commit().map_err(StoreError::sql("commit"))?;
            Ok(out)
        })();
        let out = match (durable, out) {
            (true, out) => {
                let back = conn
                    .pragma_update(None, "synchronous", "NORMAL")
                    .map_err(StoreError::sql("synchronous"));
                out.and_then(|o| back.map(|()| o))
            }
            (false, out) => out,
        };
        drop(conn);
        self.noted(out)
    }

    /// Applies `batch` in one transaction, durable (see [`SqliteStore::write_tx_synced`])
    /// or not.
    fn write_batch(&self, batch: &[Write], durable: bool) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write_tx_synced(durable, |tx| {
            for w in batch {
                match w {
                    Write::Put(r) => put(tx, r)?,
                    Write::Remove(id) => {
                        SqliteStore::delete_ids(tx, &[id.as_bytes().to_vec()])?;
                    }
                    Write::Finalized(id) => {
                        tx.prepare_cached(
                            "UPDATE trajectories SET finalized = 1 WHERE trace_id = ?1",
                        )
                        .and_then(|mut s| s.execute([id.as_bytes().as_slice()]))
                        .map_err(StoreError::sql("finalize"))?;
                    }
                    Write::Counts(m) => {
                        let data = serde_json::to_string(m)
                            .map_err(|e| StoreError::Data(e.to_string()))?;
                        tx.prepare_cached(
                            "INSERT OR REPLACE INTO minute_counts (minute, data) VALUES (?1, ?2)",
                        )
                        .and_then(|mut s| s.execute(params![i64_of(m.minute), data]))
                        .map_err(StoreError::sql("write counts"))?;
                    }
                    Write::AddCounts(m) => add_counts(tx, m)?,
                }
            }
            Ok(())
        })
    }

    /// Checks the file's header (16 bytes read): a file overwritten or truncated under a
    /// running server is found within one check, although SQLite may go on reading
    /// cached pages and appending to its WAL for a while.
    fn check_header(&self) -> Option<String> {
        header_problem(&self.path)
    }

    /// Deletes the trajectories `ids` and their tags (by primary key, from the row's
    /// list of its tags).
    fn delete_ids(tx: &rusqlite::Transaction<'_>, ids: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut find = tx
            .prepare_cached("SELECT end_ns, tag_list FROM trajectories WHERE trace_id = ?1")
            .map_err(StoreError::sql("delete"))?;
        let mut del_tag = tx
            .prepare_cached("DELETE FROM tags WHERE tag = ?1 AND end_ns = ?2 AND trace_id = ?3")
            .map_err(StoreError::sql("delete"))?;
        let mut del = tx
            .prepare_cached("DELETE FROM trajectories WHERE trace_id = ?1")
            .map_err(StoreError::sql("delete"))?;
        for id in ids {
            let row: Option<(i64, String)> = find
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(StoreError::sql("delete"))?;
            let Some((end_ns, tag_list)) = row else {
                continue;
            };
            let tags: Vec<String> = serde_json::from_str(&tag_list)
                .map_err(|e| StoreError::Data(format!("stored tag list: {e}")))?;
            for t in &tags {
                del_tag
                    .execute(params![t, end_ns, id])
                    .map_err(StoreError::sql("delete"))?;
            }
            del.execute([id]).map_err(StoreError::sql("delete"))?;
        }
        Ok(())
    }

    /// Bulk load for benchmarks and tests: writes `records` in one transaction.
    pub fn load(&self, records: &[crate::store::Record]) -> Result<(), StoreError> {
        self.write_tx(|tx| {
            for r in records {
                put(tx, r)?;
            }
            Ok(())
        })
    }
}

fn migrate(conn: &mut Connection, path: &Path, from: i64) -> Result<(), StoreError> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        let version = i as i64 + 1;
        let fail = |e: rusqlite::Error| {
            if matches!(
                e.sqlite_error_code(),
                Some(
                    ErrorCode::ReadOnly
                        | ErrorCode::CannotOpen
                        | ErrorCode::DiskFull
                        | ErrorCode::SystemIoFailure
                )
            ) {
                return open_error(path, e);
            }
            StoreError::Migration {
                path: path.to_owned(),
                version,
                detail: e.to_string(),
            }
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(path = %path.display(), version, "Store schema migrated.");
    }
    Ok(())
}

fn put(tx: &rusqlite::Transaction<'_>, r: &crate::store::Record) -> Result<(), StoreError> {
    let s = &r.summary;
    let id = s.trace_id.as_bytes().to_vec();
    let cohort = serde_json::to_string(
        &r.cohort
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect::<Vec<_>>(),
    )
    .map_err(|e| StoreError::Data(e.to_string()))?;
    let tag_list = serde_json::to_string(&r.tags).map_err(|e| StoreError::Data(e.to_string()))?;
    // A new trace (the common case) has nothing to replace: one lookup of the unique
    // index.
    SqliteStore::delete_ids(tx, std::slice::from_ref(&id))?;
    let mut ins = tx
        .prepare_cached(
            "INSERT INTO trajectories (trace_id, end_ns, start_ns, duration_ns, outcome,
                session_id, service, complete, late_spans, revision, root_cause_step,
                root_cause_kind, span_count, finding_count, reasons, cohort, body,
                root_cause_reason, tag_list)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                ?18, ?19)",
        )
        .map_err(StoreError::sql("insert"))?;
    ins.execute(params![
        id,
        i64_of(s.end_unix_nano),
        i64_of(s.start_unix_nano),
        i64_of(s.duration_nanos()),
        s.outcome.as_str(),
        s.session_id,
        s.service,
        s.complete,
        s.late_spans,
        s.revision,
        s.root_cause_step,
        s.root_cause_kind,
        i64_of(s.span_count as u64),
        i64_of(s.finding_count as u64),
        r.reasons,
        cohort,
        r.body,
        s.root_cause_reason,
        tag_list,
    ])
    .map_err(StoreError::sql("insert"))?;
    let mut tag = tx
        .prepare_cached("INSERT OR IGNORE INTO tags (tag, end_ns, trace_id) VALUES (?1, ?2, ?3)")
        .map_err(StoreError::sql("insert"))?;
    for t in &r.tags {
        tag.execute(params![t, i64_of(s.end_unix_nano), id])
            .map_err(StoreError::sql("insert"))?;
    }
    Ok(())
}

fn summary_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Summary> {
    let id: Vec<u8> = row.get(0)?;
    let outcome: String = row.get(8)?;
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            format!("stored {what} is invalid").into(),
        )
    };
    Ok(Summary {
        trace_id: TraceId::from_bytes(&id).map_err(|_| bad("trace id"))?,
        session_id: row.get(1)?,
        service: row.get(2)?,
        start_unix_nano: u64_of(row.get(3)?),
        end_unix_nano: u64_of(row.get(4)?),
        complete: row.get(5)?,
        late_spans: row.get(6)?,
        revision: row.get(7)?,
        outcome: outcome_from_str(&outcome).ok_or_else(|| bad("outcome"))?,
        root_cause_step: row.get(9)?,
        root_cause_kind: row.get(10)?,
        span_count: u64_of(row.get(11)?) as usize,
        finding_count: u64_of(row.get(12)?) as usize,
        root_cause_reason: row.get(13)?,
        model: model_of_cohort(&row.get::<_, String>(14)?),
        finalized: row.get(15)?,
    })
}

/// The `model` dimension's value in a stored cohort (`[["model", "gpt-4o"], ...]`);
/// `None` when absent or unreadable (the list still shows the row).
fn model_of_cohort(cohort: &str) -> Option<String> {
    serde_json::from_str::<Vec<(String, Option<String>)>>(cohort)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == "model")
        .and_then(|(_, value)| value)
}

/// The SQL and parameters of a list query. Only fixed fragments are concatenated.
fn list_sql(q: &ListQuery) -> (String, Vec<SqlValue>) {
    let mut tags: Vec<&String> = q.tags.iter().collect();
    tags.sort_by_key(|t| crate::store::record::tag::rank(t));
    tags.dedup();
    let mut params: Vec<SqlValue> = Vec::new();
    let mut sql = format!("SELECT {SUMMARY_COLS} FROM ");
    // With tags and the end-time sort, the rarest tag drives: its index rows are in
    // end-time order already.
    let driven = q.sort == SortKey::End && !tags.is_empty();
    let (end_col, id_col) = if driven {
        sql.push_str("tags g JOIN trajectories t ON t.trace_id = g.trace_id WHERE g.tag = ?");
        params.push(SqlValue::Text(tags[0].clone()));
        ("g.end_ns", "g.trace_id")
    } else {
        sql.push_str("trajectories t WHERE 1 = 1");
        ("t.end_ns", "t.trace_id")
    };
    for t in tags.iter().skip(driven as usize) {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM tags x WHERE x.tag = ? AND x.end_ns = t.end_ns \
             AND x.trace_id = t.trace_id)",
        );
        params.push(SqlValue::Text((*t).clone()));
    }
    if let Some(from) = q.from {
        sql.push_str(&format!(" AND {end_col} >= ?"));
        params.push(SqlValue::Integer(i64_of(from)));
    }
    if let Some(to) = q.to {
        sql.push_str(&format!(" AND {end_col} < ?"));
        params.push(SqlValue::Integer(i64_of(to)));
    }
    if let Some(text) = &q.text {
        // instr: a literal substring, so `%` and `_` match themselves.
        sql.push_str(" AND instr(t.reasons, ?) > 0");
        params.push(SqlValue::Text(text.clone()));
    }
    let key_col = match q.sort {
        SortKey::End => end_col,
        SortKey::Duration => "t.duration_ns",
    };
    let (cmp, dir) = match q.order {
        Order::Desc => ("<", "DESC"),
        Order::Asc => (">", "ASC"),
    };
    if let Some(c) = &q.after {
        sql.push_str(&format!(" AND ({key_col}, {id_col}) {cmp} (?, ?)"));
        params.push(SqlValue::Integer(i64_of(c.key)));
        params.push(SqlValue::Blob(c.trace_id.as_bytes().to_vec()));
    }
    sql.push_str(&format!(
        " ORDER BY {key_col} {dir}, {id_col} {dir} LIMIT ?"
    ));
    params.push(SqlValue::Integer(q.limit as i64 + 1));
    (sql, params)
}

/// Adds `m` to the stored counts of its minute (read, merged and written back in the
/// transaction `tx`). A stored minute that no longer parses is replaced, with a warning:
/// its counts are lost either way, and refusing would hold every later write.
fn add_counts(tx: &rusqlite::Transaction<'_>, m: &MinuteCounts) -> Result<(), StoreError> {
    let minute = i64_of(m.minute);
    let stored: Option<String> = tx
        .prepare_cached("SELECT data FROM minute_counts WHERE minute = ?1")
        .and_then(|mut s| s.query_row([minute], |row| row.get(0)).optional())
        .map_err(StoreError::sql("read counts"))?;
    let merged = match stored.map(|d| serde_json::from_str::<MinuteCounts>(&d)) {
        Some(Ok(mut stored)) => {
            stored.add(m);
            stored
        }
        Some(Err(e)) => {
            tracing::warn!(minute = m.minute, error = %e, "Stored minute counts do not parse; replaced by the new counts.");
            m.clone()
        }
        None => m.clone(),
    };
    let data = serde_json::to_string(&merged).map_err(|e| StoreError::Data(e.to_string()))?;
    tx.prepare_cached("INSERT OR REPLACE INTO minute_counts (minute, data) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![minute, data]))
        .map_err(StoreError::sql("write counts"))?;
    Ok(())
}

impl Store for SqliteStore {
    fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.write_batch(batch, false)
    }

    fn write_durable(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.write_batch(batch, true)
    }

    fn get(&self, trace_id: TraceId) -> Result<Option<Stored>, StoreError> {
        self.read(|conn| {
            let row = conn
                .prepare_cached(&format!(
                    "SELECT {SUMMARY_COLS}, t.body FROM trajectories t \
                     WHERE t.trace_id = ?1"
                ))
                .and_then(|mut s| {
                    s.query_row([trace_id.as_bytes().as_slice()], |row| {
                        Ok((
                            summary_of(row)?,
                            row.get::<_, String>(14)?,
                            row.get::<_, bool>(15)?,
                            row.get::<_, Vec<u8>>(16)?,
                        ))
                    })
                    .optional()
                })
                .map_err(StoreError::sql("read"))?;
            let Some((summary, cohort, finalized, body)) = row else {
                return Ok(None);
            };
            let cohort: Vec<(String, Option<String>)> =
                serde_json::from_str(&cohort).map_err(|e| StoreError::Data(e.to_string()))?;
            let document = decompress(&body, MAX_DOCUMENT_BYTES)
                .map_err(|e| StoreError::Data(format!("trajectory document: {e}")))?;
            Ok(Some(Stored {
                summary,
                cohort,
                finalized,
                document,
            }))
        })
    }

    fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let (sql, params) = list_sql(query);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(StoreError::sql("list"))?;
            let mut items: Vec<Summary> = stmt
                .query_map(rusqlite::params_from_iter(params), summary_of)
                .and_then(|rows| rows.collect())
                .map_err(StoreError::sql("list"))?;
            let more = items.len() > query.limit;
            items.truncate(query.limit);
            let next = match items.last() {
                Some(last) if more => Some(Cursor {
                    sort: query.sort,
                    order: query.order,
                    key: match query.sort {
                        SortKey::End => last.end_unix_nano,
                        SortKey::Duration => last.duration_nanos(),
                    },
                    trace_id: last.trace_id,
                }),
                _ => None,
            };
            Ok(Page { items, next })
        })
    }

    fn session(&self, session_id: &str, limit: usize) -> Result<Vec<Summary>, StoreError> {
        let tag = crate::store::record::tag::session(session_id);
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SUMMARY_COLS} FROM tags g JOIN trajectories t ON t.trace_id = g.trace_id \
                 WHERE g.tag = ?1 ORDER BY t.start_ns, t.trace_id LIMIT ?2"
            ))
            .and_then(|mut s| {
                s.query_map(params![tag, limit as i64], summary_of)
                    .and_then(|rows| rows.collect())
            })
            .map_err(StoreError::sql("session"))
        })
    }

    fn counts(&self) -> Result<Vec<MinuteCounts>, StoreError> {
        let rows: Vec<(i64, String)> = self.read(|conn| {
            conn.prepare("SELECT minute, data FROM minute_counts ORDER BY minute")
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                        .and_then(|rows| rows.collect())
                })
                .map_err(StoreError::sql("read counts"))
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (minute, data) in rows {
            match serde_json::from_str::<MinuteCounts>(&data) {
                Ok(m) => out.push(m),
                Err(e) => {
                    tracing::warn!(minute, error = %e, "Unreadable stored counts skipped.");
                }
            }
        }
        Ok(out)
    }

    fn retain(&self, now_unix_nano: u64) -> Result<Retained, StoreError> {
        let mut done = Retained::default();
        let cutoff = now_unix_nano.saturating_sub(self.config.retention.as_nanos() as u64);
        // The oldest trajectories ending before `before`, at most one chunk.
        let oldest = |conn: &Connection, before: i64| -> Result<Vec<Vec<u8>>, StoreError> {
            conn.prepare_cached(
                "SELECT trace_id FROM trajectories WHERE end_ns < ?1 ORDER BY end_ns LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![before, RETENTION_CHUNK as i64], |r| r.get(0))
                    .and_then(|rows| rows.collect())
            })
            .map_err(StoreError::sql("retention"))
        };
        // By age, in chunks so that no transaction is long.
        loop {
            let n = self.write_tx(|tx| {
                let ids = oldest(tx, i64_of(cutoff))?;
                SqliteStore::delete_ids(tx, &ids)?;
                Ok(ids.len())
            })?;
            done.by_age += n as u64;
            if n < RETENTION_CHUNK {
                break;
            }
        }
        done.minutes = self.write_tx(|tx| {
            tx.execute(
                "DELETE FROM minute_counts WHERE minute < ?1",
                [i64_of(cutoff / 60_000_000_000)],
            )
            .map_err(StoreError::sql("retention"))
        })? as u64;
        // By size: the oldest first, until the live pages fit under 90% of the bound
        // (some room, so the next pass is not due at once). Each round deletes about as
        // many rows as the excess holds, at the average row size.
        let mut rounds = 0;
        let target = self.config.max_bytes / 10 * 9;
        loop {
            let used = self.used_bytes()?;
            if used <= self.config.max_bytes && (rounds == 0 || used <= target) || rounds >= 10_000
            {
                break;
            }
            rounds += 1;
            let n = self.write_tx(|tx| {
                let rows: i64 = tx
                    .query_row("SELECT count(*) FROM trajectories", [], |r| r.get(0))
                    .map_err(StoreError::sql("retention"))?;
                let per_row = (used / u64_of(rows).max(1)).max(1);
                let excess = used.saturating_sub(target);
                let want = (excess / per_row + 1).min(RETENTION_CHUNK as u64) as i64;
                let ids: Vec<Vec<u8>> = tx
                    .prepare_cached("SELECT trace_id FROM trajectories ORDER BY end_ns LIMIT ?1")
                    .and_then(|mut s| {
                        s.query_map([want], |r| r.get(0))
                            .and_then(|rows| rows.collect())
                    })
                    .map_err(StoreError::sql("retention"))?;
                SqliteStore::delete_ids(tx, &ids)?;
                Ok(ids.len())
            })?;
            done.by_size += n as u64;
            if n == 0 {
                break;
            }
        }
        if done.by_age + done.by_size + done.minutes > 0 {
            let conn = lock(&self.writer);
            // Hand freed pages back to the file system.
            conn.execute_batch("PRAGMA incremental_vacuum;")
                .map_err(StoreError::sql("retention"))?;
        }
        Ok(done)
    }

    fn corruption(&self) -> Option<String> {
        if let Some(c) = lock(&self.corrupted).clone() {
            return Some(c);
        }
        let found = self.check_header()?;
        tracing::error!(path = %self.path.display(), detail = %found, "The store is corrupted; it is no longer written. Move the file away (or restore a backup) and restart.");
        let detail = format!("{}: {found}", self.path.display());
        *lock(&self.corrupted) = Some(detail.clone());
        Some(detail)
    }

    fn used_bytes(&self) -> Result<u64, StoreError> {
        let conn = lock(&self.writer);
        let q = |p: &str| -> Result<i64, StoreError> {
            conn.pragma_query_value(None, p, |r| r.get(0))
                .map_err(StoreError::sql("size"))
        };
        let pages = q("page_count")?;
        let free = q("freelist_count")?;
        let size = q("page_size")?;
        Ok(u64_of((pages - free).max(0) * size))
    }
}
