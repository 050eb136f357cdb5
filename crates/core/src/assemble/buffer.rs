//! The records of one trace while the assembler holds them, deduplicated on arrival.
//!
//! A buffer keeps the records themselves plus one small index entry per record, so that
//! an exact copy re-sent by a retrying client is recognised in O(1) and never stored
//! twice. For copies of one span id that differ, the buffer keeps the canonical first
//! copy (the one [`Trajectory::build`] keeps) and one differing copy as a witness, so
//! that the built trajectory reports [`crate::model::Anomaly::ConflictingDuplicate`]
//! exactly as if every copy had been kept, while a sender that varies one span id
//! endlessly costs at most two records.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::mem::size_of;

use std::sync::Arc;

use crate::model::held::{linked_ref_bytes, log_bytes, span_bytes};
use crate::model::trajectory::{linked_content_cmp, log_order, span_content_cmp};
use crate::model::{
    Attributes, LinkedEvaluation, LogEvent, SpanId, SpanRecord, TraceId, Trajectory, Value,
};

/// What adding a record did to the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Added {
    /// A new record: the buffer holds one more.
    New,
    /// The record replaced a held one (a canonically earlier copy of a span id): same
    /// count, but the trajectory changes.
    Replaced,
    /// An exact copy of a held record: dropped.
    Duplicate,
    /// A differing copy of a span id that already has its witness: dropped, since it
    /// cannot change the trajectory.
    Conflict,
    /// A new linked evaluation of a trace that already holds its cap of them: dropped.
    OverLinkedCap,
}

/// Where the copies of one span id are held. 8 bytes, so that an index entry with its
/// span id is 16.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The canonical first copy: the one the trajectory keeps.
    first: u32,
    /// One copy with different content, if any arrived; [`NO_WITNESS`] if none.
    witness: u32,
}

const NO_WITNESS: u32 = u32::MAX;

impl Slot {
    fn witness(self) -> Option<u32> {
        (self.witness != NO_WITNESS).then_some(self.witness)
    }
}

#[derive(Debug, Default)]
pub(super) struct Buffer {
    spans: Vec<SpanRecord>,
    slots: HashMap<SpanId, Slot>,
    /// Span ids whose kept copy has no parent.
    roots: u32,
    /// What the records held cost ([`crate::model::held`]): kept up to date as records
    /// come, are replaced and go, so that the assembler bounds its buffers in bytes.
    bytes: u64,
    /// Log events and linked evaluations: most traces have neither, so they sit behind
    /// one pointer, allocated with the first.
    others: Option<Box<Others>>,
}

#[derive(Debug, Default)]
struct Others {
    logs: Vec<LogEvent>,
    /// Content hash of a log → its index; a hash collision between two different logs
    /// only means the second one is not indexed.
    log_hashes: HashMap<u64, u32>,
    /// Shared with every other trace the evaluator span judges.
    linked: Vec<Arc<LinkedEvaluation>>,
    linked_index: HashMap<(TraceId, SpanId), u32>,
}

impl Buffer {
    /// Records held (spans including conflict witnesses, logs, linked spans).
    pub(super) fn len(&self) -> usize {
        self.spans.len()
            + self
                .others
                .as_ref()
                .map_or(0, |o| o.logs.len() + o.linked.len())
    }

    /// What the buffer holds, in bytes: its records ([`crate::model::held`]) plus its own
    /// structure: the buffer, its trace's entry in the assembler's map, the spare
    /// capacity of its vectors and its indexes at their capacity (a trace that holds
    /// one linked evaluation still holds a buffer and two small maps).
    pub(super) fn bytes(&self) -> u64 {
        self.bytes + self.overhead()
    }

    fn overhead(&self) -> u64 {
        // A hash map entry costs its pair and one control byte.
        fn map<K, V>(m: &HashMap<K, V>) -> usize {
            m.capacity() * (size_of::<(K, V)>() + 1)
        }
        let spare = |len: usize, capacity: usize, each: usize| (capacity - len) * each;
        let mut bytes = size_of::<Buffer>()
            + size_of::<(TraceId, super::TraceState)>()
            + spare(
                self.spans.len(),
                self.spans.capacity(),
                size_of::<SpanRecord>(),
            )
            + map(&self.slots);
        if let Some(o) = &self.others {
            // A held linked evaluation's pointer and index entry are counted with it
            // (`LINKED_REF_BYTES`): only the spare room is the buffer's.
            bytes += size_of::<Others>()
                + spare(o.logs.len(), o.logs.capacity(), size_of::<LogEvent>())
                + spare(
                    o.linked.len(),
                    o.linked.capacity(),
                    size_of::<Arc<LinkedEvaluation>>(),
                )
                + map(&o.log_hashes)
                + map(&o.linked_index)
                - o.linked_index.len() * size_of::<((TraceId, SpanId), u32)>();
        }
        bytes as u64
    }

    pub(super) fn has_spans(&self) -> bool {
        !self.spans.is_empty()
    }

    pub(super) fn has_root(&self) -> bool {
        self.roots > 0
    }

    /// Makes room for `n` more spans about to arrive together. The first batch of a trace
    /// gets exactly its size (a trace often arrives whole, e.g. from a collector that
    /// groups by trace); later growth is by half the held count, not double, so that a
    /// root span arriving on its own does not double a large buffer.
    pub(super) fn reserve_spans(&mut self, n: usize) {
        let len = self.spans.len();
        if self.spans.capacity() - len < n {
            self.spans.reserve_exact(n.max(len / 2));
        }
    }

    pub(super) fn add_span(&mut self, span: SpanRecord) -> Added {
        let next = index_u32(self.spans.len());
        match self.slots.entry(span.span_id) {
            Entry::Vacant(v) => {
                v.insert(Slot {
                    first: next,
                    witness: NO_WITNESS,
                });
                if span.is_root() {
                    self.roots += 1;
                }
                self.bytes += span_bytes(&span);
                self.spans.push(span);
                Added::New
            }
            Entry::Occupied(mut o) => {
                let slot = o.get_mut();
                let first = slot.first as usize;
                let order = span_content_cmp(&span, &self.spans[first]);
                if order == Ordering::Equal {
                    return Added::Duplicate;
                }
                if let Some(w) = slot.witness() {
                    if span_content_cmp(&span, &self.spans[w as usize]) == Ordering::Equal {
                        return Added::Duplicate;
                    }
                }
                if order == Ordering::Less {
                    // The new copy becomes the kept one; the old kept copy becomes the
                    // witness of the conflict.
                    let was_root = self.spans[first].is_root();
                    let is_root = span.is_root();
                    self.bytes += span_bytes(&span);
                    let old = std::mem::replace(&mut self.spans[first], span);
                    self.roots = self.roots + u32::from(is_root) - u32::from(was_root);
                    match slot.witness() {
                        Some(w) => {
                            let dropped = std::mem::replace(&mut self.spans[w as usize], old);
                            self.bytes -= span_bytes(&dropped);
                            Added::Replaced
                        }
                        None => {
                            slot.witness = next;
                            self.spans.push(old);
                            Added::New
                        }
                    }
                } else if slot.witness().is_none() {
                    slot.witness = next;
                    self.bytes += span_bytes(&span);
                    self.spans.push(span);
                    Added::New
                } else {
                    Added::Conflict
                }
            }
        }
    }

    pub(super) fn add_log(&mut self, log: LogEvent) -> Added {
        let hash = hash_log(&log);
        let others = self.others.get_or_insert_default();
        let next = index_u32(others.logs.len());
        match others.log_hashes.entry(hash) {
            Entry::Occupied(o) => {
                if log_order(&log, &others.logs[*o.get() as usize]) == Ordering::Equal {
                    return Added::Duplicate;
                }
            }
            Entry::Vacant(v) => {
                v.insert(next);
            }
        }
        self.bytes += log_bytes(&log);
        others.logs.push(log);
        Added::New
    }

    /// Adds a linked evaluation of trace `holder` (this buffer's trace) unless the
    /// buffer already holds `cap` others.
    pub(super) fn add_linked(
        &mut self,
        evaluation: Arc<LinkedEvaluation>,
        cap: usize,
        holder: TraceId,
    ) -> Added {
        let others = self.others.get_or_insert_default();
        let next = index_u32(others.linked.len());
        match others
            .linked_index
            .entry((evaluation.trace_id, evaluation.span_id))
        {
            Entry::Vacant(_) if others.linked.len() >= cap => Added::OverLinkedCap,
            Entry::Vacant(v) => {
                v.insert(next);
                self.bytes += linked_ref_bytes(&evaluation, holder);
                others.linked.push(evaluation);
                Added::New
            }
            Entry::Occupied(o) => {
                let held = &mut others.linked[*o.get() as usize];
                match linked_content_cmp(&evaluation, held) {
                    Ordering::Equal => Added::Duplicate,
                    // The trajectory keeps the canonical first copy of a linked span.
                    Ordering::Less => {
                        self.bytes += linked_ref_bytes(&evaluation, holder);
                        self.bytes -= linked_ref_bytes(held, holder);
                        *held = evaluation;
                        Added::Replaced
                    }
                    Ordering::Greater => Added::Conflict,
                }
            }
        }
    }

    /// The trajectory of what is held, giving the records away.
    pub(super) fn into_trajectory(self, trace_id: TraceId, max_depth: usize) -> Trajectory {
        let Others { logs, linked, .. } = self.others.map(|o| *o).unwrap_or_default();
        Trajectory::build_with_depth_cap(trace_id, self.spans, logs, linked, max_depth)
    }

    /// The trajectory of what is held, plus copies of the conflict witnesses: with the
    /// trajectory, they are all [`Buffer::restore`] needs to hold the same records again
    /// (the trajectory keeps every other record). Witnesses are rare, so this costs no
    /// copy of the trace.
    pub(super) fn into_parts(
        self,
        trace_id: TraceId,
        max_depth: usize,
    ) -> (Trajectory, Vec<SpanRecord>) {
        let witnesses = self
            .slots
            .values()
            .filter_map(|slot| slot.witness())
            .map(|w| self.spans[w as usize].clone())
            .collect();
        (self.into_trajectory(trace_id, max_depth), witnesses)
    }

    /// The bytes of the records held, counted again from scratch; [`Buffer::bytes`] must
    /// equal it.
    #[cfg(test)]
    pub(super) fn recount_bytes(&self, holder: TraceId) -> u64 {
        self.recount_records(holder) + self.overhead()
    }

    #[cfg(test)]
    fn recount_records(&self, holder: TraceId) -> u64 {
        let spans: u64 = self.spans.iter().map(span_bytes).sum();
        let others = self.others.as_ref().map_or(0, |o| {
            o.logs.iter().map(log_bytes).sum::<u64>()
                + o.linked
                    .iter()
                    .map(|e| linked_ref_bytes(e, holder))
                    .sum::<u64>()
        });
        spans + others
    }

    /// A buffer holding what the buffer behind `released` held: its spans, log events
    /// and linked spans plus the conflict `witnesses`, so that records merged later give
    /// the trajectory the first buffer would have given.
    pub(super) fn restore(released: &Trajectory, witnesses: &[SpanRecord]) -> Buffer {
        let mut buf = Buffer::default();
        buf.reserve_spans(released.spans.len() + witnesses.len());
        for span in released.spans.iter().chain(witnesses) {
            buf.add_span(span.clone());
        }
        for log in &released.logs {
            buf.add_log(log.clone());
        }
        for evaluation in &released.linked {
            // What was held before is within the cap.
            buf.add_linked(evaluation.clone(), usize::MAX, released.trace_id);
        }
        buf
    }
}

fn index_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// A content hash of a log event, consistent with `log_order` equality (floats hash by
/// their bits; the resource is left out and compared on a hash hit).
fn hash_log(log: &LogEvent) -> u64 {
    let mut h = DefaultHasher::new();
    log.time_unix_nano.hash(&mut h);
    log.trace_id.hash(&mut h);
    log.span_id.hash(&mut h);
    log.event_name.hash(&mut h);
    log.severity_number.hash(&mut h);
    match &log.body {
        None => 0u8.hash(&mut h),
        Some(v) => {
            1u8.hash(&mut h);
            hash_value(v, &mut h);
        }
    }
    hash_attributes(&log.attributes, &mut h);
    h.finish()
}

fn hash_attributes(attrs: &Attributes, h: &mut DefaultHasher) {
    attrs.len().hash(h);
    for (k, v) in attrs.iter() {
        k.hash(h);
        hash_value(v, h);
    }
}

/// Hashes a value without recursion (arrays may nest).
fn hash_value(v: &Value, h: &mut DefaultHasher) {
    let mut stack: Vec<&Value> = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Str(s) => {
                0u8.hash(h);
                s.hash(h);
            }
            Value::Int(i) => {
                1u8.hash(h);
                i.hash(h);
            }
            Value::Double(d) => {
                2u8.hash(h);
                d.to_bits().hash(h);
            }
            Value::Bool(b) => {
                3u8.hash(h);
                b.hash(h);
            }
            Value::Array(items) => {
                4u8.hash(h);
                items.len().hash(h);
                stack.extend(items.iter().rev());
            }
        }
    }
}
