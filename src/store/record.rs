//! What the store keeps of one analysis: the indexed columns of a summary, the filter
//! tags, the text searched by `q`, the run's cohort values, and the full trajectory
//! document (the store's own versioned [`Document`](super::document::Document), with
//! attributes, as compressed JSON), from which the API answers exactly as it does from
//! memory.

use std::collections::HashMap;
use std::io::Read;

use crate::aggregate::Dimension;
use crate::model::{Analysis, Outcome, SpanRecord, TraceId, Value};

/// Longest cohort value kept (as in the aggregates), cut at a char boundary.
const MAX_VALUE_BYTES: usize = 128;
/// Longest session id or service name indexed.
const MAX_TAG_BYTES: usize = 256;

/// The columns of the trajectory list.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub trace_id: TraceId,
    pub session_id: Option<String>,
    pub service: Option<String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub complete: bool,
    pub late_spans: u32,
    pub revision: u32,
    pub outcome: Outcome,
    pub root_cause_step: Option<String>,
    pub root_cause_kind: Option<String>,
    pub span_count: usize,
    pub finding_count: usize,
    /// The root cause's reason, cut to [`MAX_REASON_BYTES`].
    pub root_cause_reason: Option<String>,
    /// The run's value of the `model` dimension, when one is configured.
    pub model: Option<String>,
    /// The late-data grace has ended and the run is counted (false: still pending).
    pub finalized: bool,
}

/// Longest root-cause reason kept in a summary.
pub const MAX_REASON_BYTES: usize = 512;

impl Summary {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }
}

/// One trajectory ready to be written.
#[derive(Debug, Clone)]
pub struct Record {
    pub summary: Summary,
    /// Filter tags ([`tag`]); distinct.
    pub tags: Vec<String>,
    /// Finding and root-cause reasons, lowercased, one per line (searched by `q`).
    pub reasons: String,
    /// The run's value of each configured dimension (`None`: absent).
    pub cohort: Vec<(String, Option<String>)>,
    /// Deflated JSON of the trajectory document.
    pub body: Vec<u8>,
}

/// A filter tag. Tags are matched exactly, through bound parameters only.
pub mod tag {
    pub fn outcome(o: &str) -> String {
        format!("o:{o}")
    }
    pub fn step(s: &str) -> String {
        format!("s:{s}")
    }
    pub fn finding_kind(k: &str) -> String {
        format!("k:{k}")
    }
    pub fn root_cause_step(s: &str) -> String {
        format!("r:{s}")
    }
    pub fn service(s: &str) -> String {
        format!("v:{s}")
    }
    pub fn session(s: &str) -> String {
        format!("n:{s}")
    }
    /// A cohort dimension's value; the unit separator cannot be typed in a name.
    pub fn dim(name: &str, value: &str) -> String {
        format!("d:{name}\u{1f}{value}")
    }

    /// How selective a tag usually is (lower: fewer rows); the rarest one drives a
    /// filtered list.
    pub fn rank(tag: &str) -> u8 {
        match tag.as_bytes().first() {
            Some(b'n') => 0,
            Some(b'r') => 1,
            Some(b'k') => 2,
            Some(b'd') => 3,
            Some(b'v') => 4,
            Some(b's') => 5,
            _ => 6,
        }
    }
}

/// `s` cut to at most `max` bytes at a char boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn value_text(v: &Value) -> String {
    truncate(&v.to_text(), MAX_VALUE_BYTES).to_owned()
}

fn span_value(span: &SpanRecord, d: &Dimension) -> Option<String> {
    d.keys.iter().find_map(|k| span.attr(k)).map(value_text)
}

/// The run's value of dimension `d`: the root span's, else the most frequent among the
/// spans (ties: the first seen).
fn run_value(a: &Analysis, d: &Dimension) -> Option<String> {
    let t = &a.trajectory;
    if let Some(v) = t.root_span().and_then(|r| span_value(r, d)) {
        return Some(v);
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for s in &t.spans {
        if let Some(v) = span_value(s, d) {
            if let Some(i) = counts.iter().position(|(x, _)| *x == v) {
                counts[i].1 += 1;
            } else if counts.len() < 16 {
                counts.push((v, 1));
            }
        }
    }
    let max = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == max).map(|(v, _)| v)
}

/// The run's cohort values for the configured dimensions.
pub fn cohort_values(a: &Analysis, dims: &[Dimension]) -> Vec<(String, Option<String>)> {
    dims.iter()
        .map(|d| (d.name.to_string(), run_value(a, d)))
        .collect()
}

pub fn summary(a: &Analysis) -> Summary {
    let t = &a.trajectory;
    Summary {
        trace_id: t.trace_id,
        session_id: t
            .session_id()
            .map(|s| truncate(s, MAX_TAG_BYTES).to_owned()),
        service: t.service().map(|s| truncate(s, MAX_TAG_BYTES).to_owned()),
        start_unix_nano: t.start_unix_nano(),
        end_unix_nano: t.end_unix_nano(),
        complete: t.complete,
        late_spans: t.late_spans,
        revision: t.revision,
        outcome: a.outcome,
        root_cause_step: a.root_cause.as_ref().map(|r| r.step.as_str().to_owned()),
        root_cause_kind: a.root_cause.as_ref().map(|r| r.kind.as_str().to_owned()),
        span_count: t.spans.len(),
        finding_count: a.findings.len(),
        root_cause_reason: a
            .root_cause
            .as_ref()
            .map(|r| truncate(&r.reason, MAX_REASON_BYTES).to_owned()),
        model: None,
        finalized: false,
    }
}

/// Builds the record of `a`; `body` is its trajectory document, compressed
/// ([`crate::compress::compress_json`]).
pub fn record(a: &Analysis, dims: &[Dimension], body: Vec<u8>) -> std::io::Result<Record> {
    let mut summary = summary(a);
    let cohort = cohort_values(a, dims);
    summary.model = cohort
        .iter()
        .find(|(name, _)| name == "model")
        .and_then(|(_, value)| value.clone());
    let mut tags = vec![tag::outcome(a.outcome.as_str())];
    for s in &a.steps {
        tags.push(tag::step(s.kind.as_str()));
    }
    for f in &a.findings {
        tags.push(tag::finding_kind(f.kind.as_str()));
    }
    if let Some(rc) = &a.root_cause {
        tags.push(tag::root_cause_step(rc.step.as_str()));
    }
    if let Some(s) = &summary.service {
        tags.push(tag::service(s));
    }
    if let Some(s) = &summary.session_id {
        tags.push(tag::session(s));
    }
    for (name, value) in &cohort {
        if let Some(v) = value {
            tags.push(tag::dim(name, v));
        }
    }
    tags.sort_unstable();
    tags.dedup();
    let mut reasons = String::new();
    let mut seen: HashMap<&str, ()> = HashMap::new();
    for r in a
        .findings
        .iter()
        .map(|f| f.reason.as_str())
        .chain(a.root_cause.as_ref().map(|r| r.reason.as_str()))
    {
        if seen.insert(r, ()).is_none() {
            reasons.push_str(&r.to_lowercase());
            reasons.push('\n');
        }
    }
    Ok(Record {
        summary,
        tags,
        reasons,
        cohort,
        body,
    })
}

/// Stored bodies are compressed by [`crate::compress`].
pub use crate::compress::compress;

/// The first bytes of every zstd frame. A raw deflate stream can never start with them
/// (as a stored block, its length would have to equal the complement of itself), so
/// bodies written by earlier versions, raw deflate, are still read.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Inflates a stored body (zstd, or raw deflate from earlier versions), refusing more
/// than `limit` bytes.
pub fn decompress(bytes: &[u8], limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if bytes.starts_with(&ZSTD_MAGIC) {
        zstd::stream::read::Decoder::new(bytes)?
            .take(limit)
            .read_to_end(&mut out)?;
    } else {
        flate2::read::DeflateDecoder::new(bytes)
            .take(limit)
            .read_to_end(&mut out)?;
    }
    Ok(out)
}

/// Whether a successful trajectory is kept in full: a fixed hash of its trace id below
/// `rate`, so the decision is the same on every replica and every revision.
pub fn sampled(trace_id: TraceId, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    let b = trace_id.as_bytes();
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&b[..8]);
    hi.copy_from_slice(&b[8..]);
    // splitmix64's finalizer over both halves.
    let mut z = u64::from_le_bytes(lo) ^ u64::from_le_bytes(hi).rotate_left(29);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 11) as f64 / (1u64 << 53) as f64) < rate
}

/// Whether the store keeps `a` in full.
pub fn keep(a: &Analysis, success_sample: f64) -> bool {
    a.outcome != Outcome::Success || sampled(a.trajectory.trace_id, success_sample)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn bodies_round_trip_and_old_deflate_bodies_still_read() {
        let doc = br#"{"trace_id":"0102","steps":[{"name":"plan"},{"name":"plan"}]}"#.repeat(50);
        let body = compress(&doc).unwrap();
        assert!(body.starts_with(&ZSTD_MAGIC));
        assert!(body.len() < doc.len() / 4);
        assert_eq!(decompress(&body, 1 << 20).unwrap(), doc);

        // A body as earlier versions wrote it: raw deflate.
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&doc).unwrap();
        let old = e.finish().unwrap();
        assert_eq!(decompress(&old, 1 << 20).unwrap(), doc);
    }

    #[test]
    fn decompress_stops_at_the_limit() {
        let doc = vec![b'x'; 1 << 20];
        let body = compress(&doc).unwrap();
        assert_eq!(decompress(&body, 1000).unwrap().len(), 1000);
    }
}
