//! The writer thread: the only code that writes or deletes segment files.
//!
//! Each turn takes everything waiting (up to [`MAX_TURN_BYTES`]), writes it as one
//! `write`, fsyncs once if any append waits for it (batch policy), answers the appends,
//! starts a new segment past `segment_bytes`, and deletes the oldest segments that wait
//! for nothing.
//!
//! Disk use is capped by `max_bytes`: an append whose frame would take the segments on
//! disk past it is answered [`WalError::Full`] at once, unwritten (the receiver refuses
//! the request retryably), and the current segment, if it holds records, is closed so
//! that it can be deleted as soon as its traces are stored. Cancel and done records are
//! always written: they are small, and done records are what lets segments go.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::model::TraceId;
use crate::wal::config::{FsyncPolicy, WalConfig};
use crate::wal::segment;
use crate::wal::tracker::{Pin, Tracker};
use crate::wal::{Entry, WalError, WalMetrics};

/// What the writer answers an append that it wrote (and fsynced, with the batch
/// policy): the segment holding the record, pinned until the request registers its
/// traces.
pub(crate) struct Written {
    pub pin: Pin,
}

type Reply = oneshot::Sender<Result<Written, WalError>>;

/// A turn stops taking commands past this many bytes to write.
const MAX_TURN_BYTES: usize = 8 * 1024 * 1024;
/// How often expiry and deletion run when nothing arrives.
const MAINTENANCE: Duration = Duration::from_millis(500);

pub(crate) enum Cmd {
    Append {
        seq: u64,
        entry: Entry,
        reply: oneshot::Sender<Result<Written, WalError>>,
    },
    Cancel {
        seq: u64,
    },
    Done {
        traces: Vec<TraceId>,
    },
    Stop,
}

struct Writer {
    dir: PathBuf,
    config: WalConfig,
    tracker: Arc<Mutex<Tracker>>,
    metrics: WalMetrics,
    segment: u64,
    file: Option<File>,
    size: u64,
    /// Written since the last fsync.
    dirty: bool,
    last_sync: Instant,
    /// The current segment could not be written: start a new one before the next write.
    broken: bool,
    /// Sizes of the segments on disk other than the current one, and their sum.
    closed: BTreeMap<u64, u64>,
    closed_bytes: u64,
    /// An append was refused for room: close the current segment after this turn.
    close_for_room: bool,
}

/// Starts the writer on a new segment `first_segment`; `found` are the segments already
/// on disk (id, bytes), counted against `max_bytes` until deleted.
pub(crate) fn start(
    dir: PathBuf,
    first_segment: u64,
    found: &[(u64, u64)],
    config: WalConfig,
    tracker: Arc<Mutex<Tracker>>,
    metrics: WalMetrics,
) -> Result<(Sender<Cmd>, JoinHandle<()>), WalError> {
    let mut w = Writer {
        dir,
        config,
        tracker,
        metrics,
        segment: first_segment,
        file: None,
        size: 0,
        dirty: false,
        last_sync: Instant::now(),
        broken: false,
        closed: found.iter().copied().collect(),
        closed_bytes: found.iter().map(|(_, b)| b).sum(),
        close_for_room: false,
    };
    w.open_segment()?;
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("faultline-wal".into())
        .spawn(move || w.run(rx))
        .map_err(WalError::Thread)?;
    Ok((tx, thread))
}

impl Writer {
    fn path(&self) -> PathBuf {
        segment::path(&self.dir, self.segment)
    }

    fn io(&self, source: std::io::Error) -> WalError {
        WalError::Io {
            path: self.path(),
            source,
        }
    }

    fn open_segment(&mut self) -> Result<(), WalError> {
        let path = self.path();
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| self.io(e))?;
        file.write_all(segment::MAGIC).map_err(|e| self.io(e))?;
        file.sync_all().map_err(|e| self.io(e))?;
        // The new name must survive a power loss too.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.file = Some(file);
        self.size = segment::MAGIC.len() as u64;
        self.broken = false;
        if let Ok(mut t) = self.tracker.lock() {
            t.add_segment(self.segment, false);
        }
        Ok(())
    }

    /// Closes the current segment (fsynced) and opens the next.
    fn rotate(&mut self) -> Result<(), WalError> {
        self.closed.insert(self.segment, self.size);
        self.closed_bytes += self.size;
        if let Some(f) = self.file.take() {
            if !self.broken {
                let _ = f.sync_data();
                self.metrics.fsyncs.inc();
            }
        }
        if let Ok(mut t) = self.tracker.lock() {
            t.close_segment(self.segment);
        }
        self.segment += 1;
        self.dirty = false;
        self.open_segment()
    }

    fn run(mut self, rx: Receiver<Cmd>) {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut replies: Vec<Reply> = Vec::new();
        let mut next_maintenance = Instant::now() + MAINTENANCE;
        loop {
            let wait = self.next_wakeup(next_maintenance);
            let mut stop = false;
            match rx.recv_timeout(wait) {
                Ok(cmd) => {
                    stop |= self.take(cmd, &mut buf, &mut replies);
                    while !stop && buf.len() < MAX_TURN_BYTES {
                        match rx.try_recv() {
                            Ok(cmd) => stop |= self.take(cmd, &mut buf, &mut replies),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            let result = self.write_turn(&mut buf, !replies.is_empty() || stop);
            for reply in replies.drain(..) {
                let answer = match &result {
                    // Pinned before the segment can be closed (below): its records'
                    // traces are registered by the requests once decoded.
                    Ok(()) => Ok(Written {
                        pin: Pin::new(&self.tracker, self.segment),
                    }),
                    Err(e) => Err(WalError::Io {
                        path: self.path(),
                        source: std::io::Error::other(e.to_string()),
                    }),
                };
                // The request may have gone (client timeout): nothing to tell (the pin
                // is released with the answer).
                let _ = reply.send(answer);
            }
            if let FsyncPolicy::Interval(every) = self.config.fsync {
                if self.dirty && self.last_sync.elapsed() >= every {
                    let _ = self.sync();
                }
            }
            let close_for_room =
                std::mem::take(&mut self.close_for_room) && self.size > segment::MAGIC.len() as u64;
            if self.broken || close_for_room || self.size >= self.config.segment_bytes {
                if let Err(error) = self.rotate() {
                    self.metrics.errors.inc();
                    self.broken = true;
                    tracing::error!(%error, "Cannot start a new write-ahead log segment.");
                }
            }
            if stop {
                let _ = self.sync();
                self.maintain();
                return;
            }
            if Instant::now() >= next_maintenance {
                self.maintain();
                next_maintenance = Instant::now() + MAINTENANCE;
            }
        }
    }

    fn next_wakeup(&self, maintenance: Instant) -> Duration {
        let mut at = maintenance;
        if let FsyncPolicy::Interval(every) = self.config.fsync {
            if self.dirty {
                at = at.min(self.last_sync + every);
            }
        }
        at.saturating_duration_since(Instant::now())
    }

    /// Adds a command to the turn; true for Stop.
    fn take(&mut self, cmd: Cmd, buf: &mut Vec<u8>, replies: &mut Vec<Reply>) -> bool {
        match cmd {
            Cmd::Append { seq, entry, reply } => {
                let frame = segment::data_frame_len(entry.compressed.len()) as u64;
                let end = self.size + buf.len() as u64 + frame;
                if self.closed_bytes + end > self.config.max_bytes {
                    self.metrics.refused_full.inc();
                    self.close_for_room = true;
                    let _ = reply.send(Err(WalError::Full {
                        max_bytes: self.config.max_bytes,
                    }));
                    return false;
                }
                segment::encode_data(buf, seq, entry.signal, entry.format, &entry.compressed);
                self.metrics.appended.inc();
                replies.push(reply);
                false
            }
            Cmd::Cancel { seq } => {
                segment::encode_cancel(buf, seq);
                false
            }
            Cmd::Done { traces } => {
                segment::encode_done(buf, &traces);
                false
            }
            Cmd::Stop => true,
        }
    }

    /// Writes the turn's bytes; fsyncs when the batch policy asks for it.
    fn write_turn(&mut self, buf: &mut Vec<u8>, acks_wait: bool) -> Result<(), WalError> {
        if buf.is_empty() {
            return Ok(());
        }
        let result = match (&mut self.file, self.broken) {
            (Some(f), false) => f.write_all(buf).map_err(|e| WalError::Io {
                path: segment::path(&self.dir, self.segment),
                source: e,
            }),
            _ => Err(WalError::Stopped),
        };
        self.metrics.appended_bytes.inc_by(buf.len() as u64);
        self.size += buf.len() as u64;
        buf.clear();
        if buf.capacity() > 4 * MAX_TURN_BYTES {
            buf.shrink_to(1 << 20);
        }
        if let Err(error) = result {
            self.fail(&error);
            return Err(error);
        }
        self.dirty = true;
        if acks_wait && self.config.fsync == FsyncPolicy::Batch {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        if !self.dirty {
            return Ok(());
        }
        let Some(f) = &self.file else {
            return Err(WalError::Stopped);
        };
        match f.sync_data() {
            Ok(()) => {
                self.metrics.fsyncs.inc();
                self.dirty = false;
                self.last_sync = Instant::now();
                Ok(())
            }
            Err(e) => {
                let error = self.io(e);
                self.fail(&error);
                Err(error)
            }
        }
    }

    /// A write or fsync failed: what the segment holds after this point is not known,
    /// so the next turn starts a new segment (a torn tail is skipped at replay).
    fn fail(&mut self, error: &WalError) {
        self.metrics.errors.inc();
        self.broken = true;
        tracing::error!(%error, "Write-ahead log write failed; the requests concerned are refused (retryable).");
    }

    fn maintain(&mut self) {
        let (deletable, expired, traces, segments) = match self.tracker.lock() {
            Ok(mut t) => {
                t.expire(Instant::now());
                let d = t.deletable();
                (d, t.take_expired(), t.traces(), t.segments())
            }
            Err(_) => return,
        };
        for id in deletable {
            let path = segment::path(&self.dir, id);
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    // Still on disk: still counted against `max_bytes`.
                    self.metrics.errors.inc();
                    tracing::warn!(%error, path = %path.display(), "Cannot delete a write-ahead log segment.");
                }
                _ => {
                    if let Some(bytes) = self.closed.remove(&id) {
                        self.closed_bytes -= bytes;
                    }
                }
            }
        }
        if expired > 0 {
            self.metrics.expired_traces.inc_by(expired);
            tracing::debug!(
                traces = expired,
                "Write-ahead log traces never finalized were released by age."
            );
        }
        self.metrics.tracked_traces.set(traces as i64);
        self.metrics.segments.set(segments as i64);
        self.metrics
            .disk_bytes
            .set(i64::try_from(self.closed_bytes + self.size).unwrap_or(i64::MAX));
    }
}
