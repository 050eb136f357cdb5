//! Replay at startup: the segments a previous run left, through the receivers' decode
//! into the pipeline, before the listeners serve.
//!
//! Two passes: the first collects the cancelled records and the traces already stored
//! and counted (done records) over every segment; the second decodes each data record
//! not cancelled, drops the items of done traces, tracks the rest under the record's
//! segment (which is deleted, as any other, once they are stored) and hands them to the
//! pipeline, waiting while it is full. A segment that ends in a torn or corrupt frame is
//! read up to it, with a warning, and counted in `faultline_wal_corrupt_segments_total`.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::memory::{Component, MemoryBudget};
use crate::model::{Interner, TraceId};
use crate::pipeline::Handoff;
use crate::store::Store;
use crate::wal::segment::{self, Format, Record, Signal};
use crate::wal::{log_traces, span_traces, Found, Wal, WalMetrics};

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    pub segments: usize,
    pub records: u64,
    pub items: u64,
    /// Records skipped: cancelled, or every item of a trace already stored.
    pub skipped_records: u64,
    /// Records that could not be decompressed or decoded (counted, skipped).
    pub undecodable: u64,
    /// Segments read only up to a torn or corrupt frame.
    pub corrupt_segments: u64,
}

/// What a replay knows of traces: done (skipped), or checked against the store and not
/// finalized there.
struct Seen<'a> {
    done: &'a mut HashSet<TraceId>,
    checked: &'a mut HashSet<TraceId>,
    store: Option<&'a Arc<dyn Store>>,
}

impl Seen<'_> {
    /// Asks the store (off the async workers) about traces not seen yet; those whose
    /// final analysis it holds become done.
    async fn check(&mut self, traces: impl Iterator<Item = TraceId>) {
        let Some(store) = self.store else { return };
        let mut ask: Vec<TraceId> = traces
            .filter(|t| !self.done.contains(t) && !self.checked.contains(t))
            .collect();
        ask.sort_unstable();
        ask.dedup();
        if ask.is_empty() {
            return;
        }
        let store = store.clone();
        let asked = ask.clone();
        let finalized = tokio::task::spawn_blocking(move || {
            asked
                .into_iter()
                .filter(|t| matches!(store.get(*t), Ok(Some(s)) if s.finalized))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        self.checked.extend(ask);
        self.done.extend(finalized);
    }
}

/// Reads a segment, calling `each` per record; returns the reason it stopped early.
fn read_segment(wal: &Wal, id: u64, mut each: impl FnMut(Record)) -> Option<String> {
    let path = segment::path(wal.dir(), id);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => return Some(format!("cannot open {}: {e}", path.display())),
    };
    let mut reader = segment::Reader::new(std::io::BufReader::with_capacity(1 << 20, file));
    loop {
        match reader.next_record() {
            Ok(Some(r)) => each(r),
            Ok(None) => return None,
            Err(torn) => return Some(torn.to_string()),
        }
    }
}

impl Wal {
    /// Replays the segments found at open into `handoff`. `max_body` bounds a
    /// decompressed body (the larger of the request limit and 64 MiB).
    /// `store` (when given) is asked whether a trace's final analysis is already
    /// committed (a done record may not have been written before a kill): such traces
    /// are skipped too.
    #[allow(clippy::too_many_arguments)]
    pub async fn replay<H: Handoff>(
        &self,
        found: Found,
        handoff: &H,
        interner: &Interner,
        budget: &Arc<MemoryBudget>,
        max_body: usize,
        metrics: &WalMetrics,
        store: Option<Arc<dyn Store>>,
    ) -> ReplayStats {
        let mut stats = ReplayStats {
            segments: found.segments.len(),
            ..ReplayStats::default()
        };
        if found.segments.is_empty() {
            return stats;
        }
        let started = Instant::now();
        let mut cancelled: HashSet<u64> = HashSet::new();
        let mut done: HashSet<TraceId> = HashSet::new();
        let mut checked: HashSet<TraceId> = HashSet::new();
        for &id in &found.segments {
            let torn = read_segment(self, id, |r| match r {
                Record::Cancel { seq } => {
                    cancelled.insert(seq);
                }
                Record::Done { traces } => done.extend(traces),
                Record::Data { .. } => {}
            });
            if let Some(reason) = torn {
                stats.corrupt_segments += 1;
                metrics.corrupt_segments.inc();
                tracing::warn!(
                    segment = %segment::path(self.dir(), id).display(),
                    %reason,
                    "A write-ahead log segment ends in a torn or corrupt record (a write cut by a crash); replaying what precedes it."
                );
            }
        }
        for &id in &found.segments {
            let mut records = Vec::new();
            // Records are decoded and handed over one at a time (the pipeline may make
            // us wait), so the segment is read into compressed records first.
            let _ = read_segment(self, id, |r| {
                if let Record::Data {
                    seq,
                    signal,
                    format,
                    compressed,
                } = r
                {
                    if cancelled.contains(&seq) {
                        stats.skipped_records += 1;
                    } else {
                        records.push((signal, format, compressed));
                    }
                }
            });
            for (signal, format, compressed) in records {
                match self
                    .replay_record(
                        id,
                        (signal, format, &compressed),
                        Seen {
                            done: &mut done,
                            checked: &mut checked,
                            store: store.as_ref(),
                        },
                        handoff,
                        interner,
                        budget,
                        max_body,
                    )
                    .await
                {
                    Ok(0) => stats.skipped_records += 1,
                    Ok(items) => {
                        stats.records += 1;
                        stats.items += items;
                        metrics.replayed_records.inc();
                        metrics.replayed_items.inc_by(items);
                    }
                    Err(reason) => {
                        stats.undecodable += 1;
                        tracing::warn!(
                            segment = %segment::path(self.dir(), id).display(),
                            %reason,
                            "A write-ahead log record could not be replayed; skipped."
                        );
                    }
                }
            }
        }
        tracing::info!(
            segments = stats.segments,
            records = stats.records,
            items = stats.items,
            skipped = stats.skipped_records,
            corrupt_segments = stats.corrupt_segments,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Write-ahead log replayed."
        );
        stats
    }

    /// Decodes one record and hands what is not done to the pipeline; returns the items
    /// handed over.
    #[allow(clippy::too_many_arguments)]
    async fn replay_record<H: Handoff>(
        &self,
        segment_id: u64,
        (signal, format, compressed): (Signal, Format, &[u8]),
        mut seen: Seen<'_>,
        handoff: &H,
        interner: &Interner,
        budget: &Arc<MemoryBudget>,
        max_body: usize,
    ) -> Result<u64, String> {
        let mut body = Vec::new();
        zstd::stream::read::Decoder::new(compressed)
            .map_err(|e| format!("zstd: {e}"))?
            .take(max_body as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("zstd: {e}"))?;
        if body.len() > max_body {
            return Err(format!("body over {max_body} bytes"));
        }
        let json = format == Format::Json;
        match signal {
            Signal::Traces => {
                let req = if json {
                    faultline_otlp::parse_traces_json(&body)
                } else {
                    faultline_otlp::parse_traces_proto(&body)
                }
                .map_err(|e| e.to_string())?;
                drop(body);
                let mut spans = faultline_otlp::decode_traces(req, interner).items;
                seen.check(spans.iter().map(|s| s.trace_id)).await;
                spans.retain(|s| !seen.done.contains(&s.trace_id));
                if spans.is_empty() {
                    return Ok(0);
                }
                let n = spans.len() as u64;
                self.track(segment_id, &span_traces(&spans));
                let held = Arc::new(budget.charge(Component::Requests, 0));
                while handoff.spans(spans.clone(), held.clone()).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(n)
            }
            Signal::Logs => {
                let req = if json {
                    faultline_otlp::parse_logs_json(&body)
                } else {
                    faultline_otlp::parse_logs_proto(&body)
                }
                .map_err(|e| e.to_string())?;
                drop(body);
                let mut logs = faultline_otlp::decode_logs(req, interner).items;
                seen.check(logs.iter().filter_map(|l| l.trace_id)).await;
                logs.retain(|l| !l.trace_id.is_some_and(|t| seen.done.contains(&t)));
                if logs.is_empty() {
                    return Ok(0);
                }
                let n = logs.len() as u64;
                self.track(segment_id, &log_traces(&logs));
                let held = Arc::new(budget.charge(Component::Requests, 0));
                while handoff.logs(logs.clone(), held.clone()).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(n)
            }
        }
    }

    fn track(&self, segment_id: u64, traces: &[TraceId]) {
        if let Ok(mut t) = self.tracker.lock() {
            t.register(segment_id, traces, Instant::now());
        }
    }
}
