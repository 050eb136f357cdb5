//! Tests of the assembler (explicit clock) and of `Trajectory::build`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::model::{Anomaly, IncompleteReason, LogEvent, SpanId, Trajectory, Value};
use crate::test_support::{log_event, span, span_id, trace_id};

const IDLE: Duration = Duration::from_secs(10);
const MAX_AGE: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(30);

fn config() -> AssembleConfig {
    AssembleConfig {
        idle_timeout: IDLE,
        max_trace_age: MAX_AGE,
        late_grace: GRACE,
        max_buffered_spans: 1_000,
        max_spans_per_trace: 100,
        max_trace_depth: crate::model::trajectory::DEFAULT_MAX_TRACE_DEPTH,
        max_linked_per_trace: DEFAULT_MAX_LINKED_PER_TRACE,
    }
}

/// An explicit clock: `at(s)` is `s` seconds after a fixed start.
struct Clock(Instant);

impl Clock {
    fn new() -> Clock {
        Clock(Instant::now())
    }
    fn at(&self, secs: u64) -> Instant {
        self.0 + Duration::from_secs(secs)
    }
    fn at_ms(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

fn push(a: &mut Assembler, spans: Vec<SpanRecord>, now: Instant) -> Vec<Trajectory> {
    let mut out = Vec::new();
    a.push_spans(spans, now, &mut out);
    owned(out)
}

fn tick(a: &mut Assembler, now: Instant) -> Vec<Trajectory> {
    let mut out = Vec::new();
    a.tick(now, &mut out);
    owned(out)
}

fn owned(out: Vec<Arc<Trajectory>>) -> Vec<Trajectory> {
    out.into_iter().map(Arc::unwrap_or_clone).collect()
}

/// A small agent run of trace `t`: root 1, children 2 and 3, grandchild 4 under 3.
fn run(t: u64) -> Vec<SpanRecord> {
    vec![
        span(t, 1, 0).name("agent").build(),
        span(t, 2, 1).name("planner").build(),
        span(t, 3, 1).name("tool").build(),
        span(t, 4, 3).name("http").build(),
    ]
}

fn build(t: u64, spans: Vec<SpanRecord>) -> Trajectory {
    Trajectory::build(trace_id(t), spans, Vec::new(), Vec::new())
}

/// Follows `tree_parent` from every span and checks that each walk ends.
fn assert_walks_terminate(t: &Trajectory) {
    for i in 0..t.spans.len() as u32 {
        let mut cur = Some(i);
        let mut steps = 0usize;
        while let Some(c) = cur {
            cur = t.tree_parent(c);
            steps += 1;
            assert!(steps <= t.spans.len() + 1, "walk from {i} does not end");
        }
    }
}

// ---------------------------------------------------------------------------------
// Gathering, ordering, duplicates
// ---------------------------------------------------------------------------------

#[test]
fn children_before_parents_across_pushes_give_one_trajectory() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    let s = run(1);
    assert!(push(&mut a, vec![s[3].clone()], c.at(0)).is_empty());
    assert!(push(&mut a, vec![s[2].clone(), s[1].clone()], c.at(1)).is_empty());
    assert!(push(&mut a, vec![s[0].clone()], c.at(2)).is_empty());
    assert_eq!(a.stats().open_traces, 1);
    assert_eq!(a.stats().buffered_spans, 4);

    // Root seen at 2 s: idle until 12 s.
    assert!(tick(&mut a, c.at(11)).is_empty());
    let out = tick(&mut a, c.at(12));
    assert_eq!(out.len(), 1);
    let t = &out[0];
    assert_eq!(*t, build(1, run(1)));
    assert!(t.complete);
    assert_eq!(t.incomplete_reason, None);
    assert_eq!(t.revision, 0);
    assert_eq!(t.root, Some(0));
    assert_eq!(t.parent, vec![None, Some(0), Some(0), Some(2)]);
    assert_eq!(a.stats().open_traces, 0);
}

#[test]
fn each_new_span_restarts_the_idle_timer() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    let s = run(1);
    push(&mut a, vec![s[0].clone()], c.at(0));
    push(&mut a, vec![s[1].clone()], c.at(8));
    assert!(tick(&mut a, c.at(10)).is_empty());
    push(&mut a, vec![s[2].clone()], c.at(15));
    assert!(tick(&mut a, c.at(24)).is_empty());
    push(&mut a, vec![s[3].clone()], c.at(24));
    assert!(tick(&mut a, c.at(33)).is_empty());
    let out = tick(&mut a, c.at(34));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].spans.len(), 4);
}

#[test]
fn a_trace_without_root_is_not_released_on_idle_but_at_max_age() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    let s = run(1);
    push(&mut a, s[1..].to_vec(), c.at(0));
    assert!(tick(&mut a, c.at(59)).is_empty());
    let out = tick(&mut a, c.at(60));
    assert_eq!(out.len(), 1);
    assert!(!out[0].complete);
    assert_eq!(out[0].incomplete_reason, Some(IncompleteReason::MaxAge));
    assert_eq!(out[0].root, None);
    assert_eq!(a.stats().evicted_max_age, 1);
}

#[test]
fn a_trace_with_root_that_keeps_growing_is_released_complete_at_max_age() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    push(&mut a, vec![span(1, 1, 0).build()], c.at(0));
    let mut out = Vec::new();
    for (k, secs) in (5..=60).step_by(5).enumerate() {
        a.push_spans(
            vec![span(1, 10 + k as u64, 1).build()],
            c.at(secs),
            &mut out,
        );
        a.tick(c.at(secs), &mut out);
    }
    assert_eq!(out.len(), 1);
    assert!(out[0].complete);
    assert_eq!(out[0].incomplete_reason, None);
    // Counted only when released incomplete.
    assert_eq!(a.stats().evicted_max_age, 0);
}

#[test]
fn timers_run_on_receive_time_not_span_time() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    // Span timestamps in 2100 and at zero change nothing.
    let s = vec![
        span(1, 1, 0)
            .times(4_102_444_800_000, 4_102_444_800_001)
            .build(),
        span(1, 2, 1).times(0, 0).build(),
    ];
    push(&mut a, s, c.at(0));
    assert!(tick(&mut a, c.at(9)).is_empty());
    assert_eq!(tick(&mut a, c.at(10)).len(), 1);
}

#[test]
fn a_clock_running_backwards_is_held_at_the_latest_time() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    push(&mut a, run(1), c.at(100));
    // An earlier `now` counts as 100 s: the trace is not refreshed into the past.
    push(&mut a, vec![span(1, 9, 1).build()], c.at(50));
    assert!(tick(&mut a, c.at(60)).is_empty());
    assert_eq!(tick(&mut a, c.at(110)).len(), 1);
}

#[test]
fn exact_duplicates_are_dropped_and_counted() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    for k in 0..3 {
        push(&mut a, run(1), c.at(k));
    }
    assert_eq!(a.stats().duplicates, 8);
    assert_eq!(a.stats().buffered_spans, 4);
    let out = tick(&mut a, c.at(20));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0], build(1, run(1)));
    assert!(out[0].anomalies.is_empty());
}

#[test]
fn duplicates_do_not_restart_the_idle_timer() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    push(&mut a, run(1), c.at(0));
    push(&mut a, run(1), c.at(9));
    assert_eq!(tick(&mut a, c.at(10)).len(), 1);
}

#[test]
fn conflicting_copies_keep_the_canonical_one_and_one_witness() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    let v1 = span(1, 2, 1).attr("v", 1i64).build();
    let v2 = span(1, 2, 1).attr("v", 2i64).build();
    let v3 = span(1, 2, 1).attr("v", 3i64).build();
    push(&mut a, vec![v3.clone(), span(1, 1, 0).build()], c.at(0));
    push(&mut a, vec![v2.clone()], c.at(1));
    push(&mut a, vec![v1.clone(), v2.clone()], c.at(2));
    // v2 then v1 replaced the kept copy; the witness is now v2, so v2 re-sent is a
    // duplicate and v3 re-sent is a conflict that cannot change anything.
    push(&mut a, vec![v3.clone()], c.at(3));
    let st = a.stats();
    assert_eq!(st.buffered_spans, 3);
    assert_eq!(st.duplicates, 1);
    assert_eq!(st.conflicts, 1);
    let out = tick(&mut a, c.at(20));
    let expected = build(1, vec![span(1, 1, 0).build(), v3, v2, v1]);
    assert_eq!(out, vec![expected.clone()]);
    assert_eq!(
        expected.anomalies,
        vec![Anomaly::ConflictingDuplicate {
            span_id: span_id(2)
        }]
    );
    assert_eq!(expected.spans[1].attributes.get_i64("v"), Some(1));
}

// ---------------------------------------------------------------------------------
// Late data, revisions, grace
// ---------------------------------------------------------------------------------

#[test]
fn late_spans_within_grace_make_one_revision_after_quiet() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    push(&mut a, run(1), c.at(0));
    let first = tick(&mut a, c.at(10));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].revision, 0);
    // Grace entry keeps the records.
    assert_eq!(a.stats().buffered_spans, 4);
    assert_eq!(a.stats().open_traces, 0);

    // A burst of three late records over 6 s.
    push(&mut a, vec![span(1, 5, 3).build()], c.at(12));
    push(&mut a, vec![span(1, 6, 3).build()], c.at(15));
    let mut out = Vec::new();
    a.push_logs(
        vec![log_event(1, 2, "gen_ai.evaluation.result", &[])],
        c.at(18),
        &mut out,
    );
    assert!(out.is_empty());
    assert!(tick(&mut a, c.at(27)).is_empty());
    let rev = tick(&mut a, c.at(28));
    assert_eq!(rev.len(), 1);
    let r = &rev[0];
    assert_eq!(r.revision, 1);
    assert_eq!(r.late_spans, 3);
    assert_eq!(r.spans.len(), 6);
    assert_eq!(r.logs.len(), 1);
    assert!(r.complete);
    assert_eq!(a.stats().late_merged, 3);

    // A second burst still within the grace (grace ends at 40 s) gives revision 2.
    push(&mut a, vec![span(1, 7, 1).build()], c.at(35));
    let end = tick(&mut a, c.at(40));
    assert_eq!(
        end.len(),
        1,
        "pending revision released at the end of the grace"
    );
    assert_eq!(end[0].revision, 2);
    assert_eq!(end[0].late_spans, 4);
    assert_eq!(a.stats().buffered_spans, 0);

    // After the grace: counted, not merged.
    push(&mut a, vec![span(1, 8, 1).build()], c.at(41));
    assert!(tick(&mut a, c.at(100)).is_empty());
    assert_eq!(a.stats().late_dropped, 1);
}

#[test]
fn a_late_exact_duplicate_causes_no_revision() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    push(&mut a, run(1), c.at(0));
    assert_eq!(tick(&mut a, c.at(10)).len(), 1);
    push(&mut a, run(1), c.at(11));
    let mut out = tick(&mut a, c.at(25));
    out.extend(tick(&mut a, c.at(45)));
    assert!(out.is_empty());
    assert_eq!(a.stats().duplicates, 4);
    assert_eq!(a.stats().late_merged, 0);
}

#[test]
fn late_root_turns_a_max_age_release_into_a_complete_revision() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    push(&mut a, run(1)[1..].to_vec(), c.at(0));
    let first = tick(&mut a, c.at(60));
    assert_eq!(first[0].incomplete_reason, Some(IncompleteReason::MaxAge));
    push(&mut a, vec![span(1, 1, 0).build()], c.at(61));
    let rev = tick(&mut a, c.at(71));
    assert_eq!(rev.len(), 1);
    assert!(rev[0].complete);
    assert_eq!(rev[0].incomplete_reason, None);
    assert_eq!(rev[0].root, Some(0));
    assert_eq!(rev[0].revision, 1);
}

#[test]
fn without_grace_late_spans_are_dropped() {
    let c = Clock::new();
    let mut a = Assembler::new(AssembleConfig {
        late_grace: Duration::ZERO,
        ..config()
    });
    push(&mut a, run(1), c.at(0));
    assert_eq!(tick(&mut a, c.at(10)).len(), 1);
    assert_eq!(a.stats().buffered_spans, 0);
    push(&mut a, vec![span(1, 5, 1).build()], c.at(11));
    assert!(tick(&mut a, c.at(40)).is_empty());
    assert_eq!(a.stats().late_dropped, 1);
}

#[test]
fn each_trace_revision_is_released_exactly_once() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    let mut out = Vec::new();
    // Ten traces with late data trickling in every 4 s, ticks every second.
    for secs in 0..200u64 {
        for t in 1..=10u64 {
            if secs % 4 == t % 4 {
                a.push_spans(
                    vec![span(t, 1, 0).build(), span(t, 100 + secs, 1).build()],
                    c.at(secs),
                    &mut out,
                );
            }
        }
        a.tick(c.at(secs), &mut out);
    }
    a.drain(&mut out);
    // Closed traces that keep sending keep their tombstone: the rest was dropped.
    assert!(a.stats().late_dropped > 0);
    let mut keys: Vec<(TraceId, u32)> = out.iter().map(|t| (t.trace_id, t.revision)).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a (trace, revision) was released twice");
    // Revisions of each trace are consecutive from 0.
    for t in 1..=10u64 {
        let revs: Vec<u32> = keys
            .iter()
            .filter(|(id, _)| *id == trace_id(t))
            .map(|(_, r)| *r)
            .collect();
        assert_eq!(revs, (0..revs.len() as u32).collect::<Vec<_>>());
    }
}

#[test]
fn tombstones_expire_and_a_new_trace_may_then_start() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    push(&mut a, run(1), c.at(0));
    assert_eq!(tick(&mut a, c.at(10)).len(), 1);
    // Grace ends at 40 s, the tombstone (ttl = max age, 60 s) at 100 s.
    tick(&mut a, c.at(40));
    push(&mut a, vec![span(1, 5, 1).build()], c.at(99));
    assert_eq!(a.stats().late_dropped, 1);
    tick(&mut a, c.at(100));
    // The drop at 99 s kept the tombstone alive; it is looked at again one period after
    // 100 s and then forgotten, the trace having been silent for over 60 s.
    assert_eq!(a.traces.len(), 1);
    tick(&mut a, c.at(159));
    assert_eq!(a.traces.len(), 1);
    tick(&mut a, c.at(160));
    assert_eq!(a.traces.len(), 0);
    push(&mut a, vec![span(1, 5, 1).build()], c.at(161));
    assert_eq!(a.stats().open_traces, 1);
}

#[test]
fn tombstones_are_capped() {
    let c = Clock::new();
    let mut a = Assembler::new(AssembleConfig {
        late_grace: Duration::ZERO,
        max_buffered_spans: 10,
        ..config()
    });
    let mut out = Vec::new();
    for t in 1..=(MIN_TOMBSTONES as u64 + 500) {
        a.push_spans(vec![span(t, 1, 0).build()], c.at(0), &mut out);
    }
    a.tick(c.at(10), &mut out);
    assert!(a.closed_count <= MIN_TOMBSTONES);
    assert_eq!(a.traces.len(), a.closed_count);
}

// ---------------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------------

#[test]
fn the_byte_bound_forgets_grace_entries_first_then_evicts_the_oldest_open_trace() {
    use crate::model::held::span_bytes;
    let c = Clock::new();
    let mut a = Assembler::new(config());
    push(&mut a, run(1), c.at(0));
    // A run's records, plus its buffer's structure.
    let one = a.stats().buffered_bytes;
    assert!(one > run(1).iter().map(span_bytes).sum::<u64>());
    // Room for two and a half runs' bytes; the record bound (1 000) is far away.
    a.set_max_buffered_bytes(one * 5 / 2);
    let mut forgotten = Vec::new();
    // Trace 1 released at 10 s and held for its grace: its bytes stay counted.
    assert_eq!(tick(&mut a, c.at(10)).len(), 1);
    assert_eq!(a.stats().buffered_bytes, one);
    // Trace 2 open, then trace 3: three runs' bytes are over the bound.
    assert!(push(&mut a, run(2), c.at(11)).is_empty());
    assert!(push(&mut a, run(3), c.at(12)).is_empty());
    let st = a.stats();
    assert_eq!((st.grace_forgotten, st.evicted_memory), (1, 0));
    assert_eq!(st.buffered_bytes, 2 * one);
    a.take_forgotten(&mut forgotten);
    assert_eq!(forgotten, vec![trace_id(1)], "the pipeline is told");
    a.take_forgotten(&mut forgotten);
    assert_eq!(forgotten.len(), 1, "once");
    assert_eq!(a.check_bytes(), Ok(()));
    // Trace 4: no grace entry left, so the oldest open trace (2) goes, incomplete.
    let out = push(&mut a, run(4), c.at(14));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].trace_id, trace_id(2));
    assert_eq!(
        out[0].incomplete_reason,
        Some(IncompleteReason::MemoryPressure)
    );
    assert_eq!(a.stats().buffered_bytes, 2 * one);
    assert_eq!(a.check_bytes(), Ok(()));
    // Everything released and past its grace: nothing counted.
    tick(&mut a, c.at(30));
    tick(&mut a, c.at(100));
    assert_eq!(a.stats().buffered_bytes, 0);
    assert_eq!(a.stats().buffered_spans, 0);
}

#[test]
fn a_grace_entry_counts_its_released_trajectory_and_its_late_buffer() {
    use crate::model::held::span_bytes;
    let c = Clock::new();
    let mut a = Assembler::new(config());
    push(&mut a, run(1), c.at(0));
    let one = a.stats().buffered_bytes;
    assert_eq!(tick(&mut a, c.at(10)).len(), 1);
    assert_eq!(
        a.stats().buffered_bytes,
        one,
        "released, held for its grace"
    );
    // A late span: the buffer is restored beside the released trajectory, which the
    // pipeline still holds, so both copies count.
    let late = span(1, 9, 1).build();
    let late_bytes = span_bytes(&late);
    push(&mut a, vec![late], c.at(11));
    let both = a.stats().buffered_bytes;
    assert!(
        both >= 2 * one + late_bytes - 512,
        "{both} bytes for two copies of {one}"
    );
    assert_eq!(a.check_bytes(), Ok(()));
    // The revision replaces the released trajectory: one copy again.
    assert_eq!(tick(&mut a, c.at(25)).len(), 1);
    assert_eq!(a.stats().buffered_bytes, both - one);
    assert_eq!(a.check_bytes(), Ok(()));
}

#[test]
fn memory_pressure_forgets_grace_entries_first_then_evicts_oldest_open_trace() {
    let c = Clock::new();
    let mut a = Assembler::new(AssembleConfig {
        max_buffered_spans: 10,
        ..config()
    });
    // Trace 1 released at 10 s and held for its grace (4 records).
    push(&mut a, run(1), c.at(0));
    assert_eq!(tick(&mut a, c.at(10)).len(), 1);
    // Trace 2 open (4 records), then trace 3 pushes 4: 12 > 10.
    assert!(push(&mut a, run(2), c.at(11)).is_empty());
    assert!(push(&mut a, run(3), c.at(12)).is_empty());
    let st = a.stats();
    assert_eq!(st.grace_forgotten, 1);
    assert_eq!(st.evicted_memory, 0);
    assert_eq!(st.buffered_spans, 8);
    // Late data for trace 1 now counts as dropped.
    push(&mut a, vec![span(1, 9, 1).build()], c.at(13));
    assert_eq!(a.stats().late_dropped, 1);

    // Trace 4: no grace entry left, so the oldest open trace (2) goes.
    let out = push(&mut a, run(4), c.at(14));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].trace_id, trace_id(2));
    assert!(!out[0].complete);
    assert_eq!(
        out[0].incomplete_reason,
        Some(IncompleteReason::MemoryPressure)
    );
    assert_eq!(out[0].spans.len(), 4);
    let st = a.stats();
    assert_eq!(st.evicted_memory, 1);
    assert_eq!(st.buffered_spans, 8);
    assert_eq!(st.open_traces, 2);
    // An evicted trace is closed: its late spans are dropped, no second revision 0.
    push(&mut a, vec![span(2, 9, 1).build()], c.at(15));
    assert_eq!(a.stats().late_dropped, 2);
    let rest = tick(&mut a, c.at(30));
    assert!(rest.iter().all(|t| t.trace_id != trace_id(2)));
}

#[test]
fn forgetting_a_grace_entry_releases_its_pending_revision() {
    let c = Clock::new();
    let mut a = Assembler::new(AssembleConfig {
        max_buffered_spans: 6,
        ..config()
    });
    push(&mut a, run(1), c.at(0));
    assert_eq!(tick(&mut a, c.at(10)).len(), 1);
    assert!(push(&mut a, vec![span(1, 5, 1).build()], c.at(11)).is_empty());
    let out = push(&mut a, run(2), c.at(12));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].trace_id, trace_id(1));
    assert_eq!(out[0].revision, 1);
    assert_eq!(out[0].late_spans, 1);
    assert_eq!(a.stats().buffered_spans, 4);
}

#[test]
fn one_huge_push_stays_within_the_budget() {
    let c = Clock::new();
    let mut a = Assembler::new(AssembleConfig {
        max_buffered_spans: 50,
        max_spans_per_trace: 1_000,
        ..config()
    });
    let spans: Vec<SpanRecord> = (1..=200u64).map(|t| span(t, 1, 0).build()).collect();
    let out = push(&mut a, spans, c.at(0));
    assert_eq!(out.len(), 150);
    assert!(out
        .iter()
        .all(|t| t.incomplete_reason == Some(IncompleteReason::MemoryPressure)));
    assert_eq!(a.stats().buffered_spans, 50);
    assert_eq!(a.stats().evicted_memory, 150);
}

#[test]
fn a_trace_reaching_max_spans_is_released_too_large() {
    let c = Clock::new();
    let mut a = Assembler::new(AssembleConfig {
        max_spans_per_trace: 5,
        ..config()
    });
    let spans: Vec<SpanRecord> = std::iter::once(span(1, 1, 0).build())
        .chain((2..=7u64).map(|i| span(1, i, 1).build()))
        .collect();
    let out = push(&mut a, spans, c.at(0));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].spans.len(), 5);
    assert!(!out[0].complete);
    assert_eq!(
        out[0].incomplete_reason,
        Some(IncompleteReason::TooManySpans)
    );
    let st = a.stats();
    assert_eq!(st.evicted_too_large, 1);
    assert_eq!(st.late_dropped, 2);
    assert_eq!(st.buffered_spans, 0);
    assert!(tick(&mut a, c.at(100)).is_empty());
}

#[test]
fn late_data_reaching_max_spans_releases_a_final_revision() {
    let c = Clock::new();
    let mut a = Assembler::new(AssembleConfig {
        max_spans_per_trace: 6,
        ..config()
    });
    push(&mut a, run(1), c.at(0));
    assert_eq!(tick(&mut a, c.at(10)).len(), 1);
    let out = push(
        &mut a,
        vec![
            span(1, 5, 1).build(),
            span(1, 6, 1).build(),
            span(1, 7, 1).build(),
        ],
        c.at(11),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].revision, 1);
    assert_eq!(
        out[0].incomplete_reason,
        Some(IncompleteReason::TooManySpans)
    );
    assert_eq!(out[0].late_spans, 2);
    assert_eq!(a.stats().late_dropped, 1);
    assert_eq!(a.stats().buffered_spans, 0);
    assert!(tick(&mut a, c.at(30)).is_empty());
}

// ---------------------------------------------------------------------------------
// Logs and linked spans
// ---------------------------------------------------------------------------------

#[test]
fn logs_join_their_trace_and_are_deduplicated() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    let mut out = Vec::new();
    let eval = log_event(
        1,
        2,
        "gen_ai.evaluation.result",
        &[("gen_ai.evaluation.score.value", Value::Double(0.2))],
    );
    // The log arrives before any span, then again (retry).
    a.push_logs(vec![eval.clone()], c.at(0), &mut out);
    a.push_logs(vec![eval.clone()], c.at(1), &mut out);
    a.push_spans(run(1), c.at(2), &mut out);
    a.tick(c.at(12), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].logs, vec![eval]);
    assert_eq!(a.stats().duplicates, 1);
}

#[test]
fn logs_alone_do_not_keep_a_trace_open_past_max_age() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    let mut out = Vec::new();
    a.push_logs(
        vec![log_event(1, 2, "e", &[]), log_event(1, 3, "e", &[])],
        c.at(0),
        &mut out,
    );
    let mut orphan = log_event(2, 2, "e", &[]);
    orphan.trace_id = None;
    a.push_logs(vec![orphan], c.at(0), &mut out);
    a.push_logs(vec![log_event(1, 4, "e", &[])], c.at(50), &mut out);
    a.tick(c.at(59), &mut out);
    assert_eq!(a.stats().open_traces, 1);
    a.tick(c.at(60), &mut out);
    assert!(out.is_empty());
    let st = a.stats();
    assert_eq!(st.open_traces, 0);
    assert_eq!(st.buffered_spans, 0);
    assert_eq!(st.unmatched_dropped, 4);
    // Not a tombstone: the trace may still arrive.
    a.push_spans(run(1), c.at(61), &mut out);
    assert_eq!(a.stats().open_traces, 1);
}

#[test]
fn linked_spans_join_the_target_and_late_ones_make_a_revision() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    let mut out = Vec::new();
    let eval1 = LinkedEvaluation::of(&span(7, 50, 0).name("evaluator").link(1, 2).build());
    let eval2 = LinkedEvaluation::of(&span(8, 60, 0).name("evaluator").link(1, 3).build());
    a.push_linked(trace_id(1), vec![eval1.clone()], c.at(0), &mut out);
    a.push_spans(run(1), c.at(1), &mut out);
    a.tick(c.at(11), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].linked, vec![eval1.clone()]);
    // A re-sent copy is a duplicate; a new evaluator is late data.
    a.push_linked(
        trace_id(1),
        vec![eval1.clone(), eval2.clone()],
        c.at(12),
        &mut out,
    );
    a.tick(c.at(22), &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].revision, 1);
    assert_eq!(out[1].linked, vec![eval1, eval2]);
    assert_eq!(out[1].late_spans, 1);
}

#[test]
fn a_trace_keeps_at_most_its_cap_of_linked_evaluations_and_counts_the_rest() {
    let c = Clock::new();
    let mut a = Assembler::new(AssembleConfig {
        max_linked_per_trace: 3,
        ..config()
    });
    let mut out = Vec::new();
    let evals: Vec<_> = (0..5u64)
        .map(|i| LinkedEvaluation::of(&span(7 + i, 50 + i, 0).link(1, 2).build()))
        .collect();
    a.push_linked(trace_id(1), evals.clone(), c.at(0), &mut out);
    // A re-sent copy of a kept one is a duplicate, not over the cap.
    a.push_linked(trace_id(1), vec![evals[0].clone()], c.at(0), &mut out);
    let st = a.stats();
    assert_eq!(st.linked_dropped, 2);
    assert_eq!(st.duplicates, 1);
    assert_eq!(st.buffered_spans, 3);
    a.push_spans(run(1), c.at(1), &mut out);
    a.tick(c.at(11), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].linked, evals[..3].to_vec());
    // In grace, the cap still holds.
    let more = LinkedEvaluation::of(&span(20, 70, 0).link(1, 2).build());
    a.push_linked(trace_id(1), vec![more], c.at(12), &mut out);
    assert_eq!(a.stats().linked_dropped, 3);
}

#[test]
fn one_evaluation_judging_many_runs_is_shared_not_copied() {
    let mut evaluator = span(9, 50, 0)
        .attr("openinference.span.kind", "EVALUATOR")
        .attr("eval.correct", 0.0)
        .attr("input.value", "x".repeat(1000).as_str());
    // Its own trace (9) is not judged: 99 runs.
    for t in 1..=100u64 {
        evaluator = evaluator.link(t, 2);
    }
    for i in 0..64u64 {
        evaluator = evaluator.event(&format!("e{i}"), &[("k", "v")]);
    }
    let evaluator = evaluator.build();
    let groups = linked_evaluations(std::slice::from_ref(&evaluator));
    assert_eq!(groups.len(), 99);
    let first = &groups[0].1[0];
    let judged = (1..=100u64).filter(|&t| t != 9);
    for ((target, evals), t) in groups.iter().zip(judged) {
        assert_eq!(*target, trace_id(t));
        assert_eq!(evals.len(), 1);
        assert!(Arc::ptr_eq(first, &evals[0]));
    }
    // Only the evaluation attributes and the link targets are kept.
    assert_eq!(first.attributes.len(), 1);
    assert_eq!(first.links.len(), 100);
    assert_eq!(
        first.links_into(trace_id(7)).collect::<Vec<_>>(),
        [span_id(2)]
    );
}

// ---------------------------------------------------------------------------------
// Drain, stats, lazy queues
// ---------------------------------------------------------------------------------

#[test]
fn drain_releases_open_traces_and_pending_revisions() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    let mut out = Vec::new();
    a.push_spans(run(1), c.at(0), &mut out);
    a.tick(c.at(10), &mut out);
    assert_eq!(out.len(), 1);
    a.push_spans(vec![span(1, 5, 1).build()], c.at(11), &mut out);
    a.push_spans(run(2), c.at(11), &mut out);
    a.push_spans(run(3)[1..].to_vec(), c.at(12), &mut out);
    a.drain(&mut out);
    assert_eq!(out.len(), 4);
    let by = |t: u64| out.iter().filter(move |x| x.trace_id == trace_id(t));
    let t1: Vec<_> = by(1).collect();
    assert_eq!(t1.len(), 2);
    assert_eq!(t1[1].revision, 1);
    let t2 = by(2).next().unwrap();
    assert!(t2.complete);
    let t3 = by(3).next().unwrap();
    assert_eq!(t3.incomplete_reason, Some(IncompleteReason::Shutdown));
    let st = a.stats();
    assert_eq!(st.open_traces, 0);
    assert_eq!(st.buffered_spans, 0);
    // Nothing more to release.
    let mut again = Vec::new();
    a.drain(&mut again);
    a.tick(c.at(1000), &mut again);
    assert!(again.is_empty());
}

#[test]
fn lazy_queues_stay_bounded_under_churn() {
    let c = Clock::new();
    let mut a = Assembler::new(AssembleConfig {
        late_grace: Duration::from_millis(500),
        max_trace_age: Duration::from_secs(3600),
        idle_timeout: Duration::from_millis(100),
        ..config()
    });
    let mut out = Vec::new();
    // 20 000 short traces, one every millisecond, each touched twice.
    for t in 1..=20_000u64 {
        a.push_spans(vec![span(t, 1, 0).build()], c.at_ms(t), &mut out);
        a.push_spans(vec![span(t, 2, 1).build()], c.at_ms(t), &mut out);
        a.tick(c.at_ms(t), &mut out);
    }
    assert!(out.len() > 19_000);
    // Open traces released long before their max age leave stale entries that compaction
    // removes; nothing grows with the number of traces seen.
    let live = a.open_count + a.grace_count + a.closed_count;
    assert!(a.open_queue.len() <= 2 * a.open_count + COMPACT_SLACK + 1);
    assert!(a.idle.len() <= 2 * a.idle_count + COMPACT_SLACK + 1);
    assert!(a.traces.len() == live);
    assert!(a.closed_count <= a.max_tombstones());
}

#[test]
fn stats_count_buffered_records_and_open_traces() {
    let c = Clock::new();
    let mut a = Assembler::new(config());
    assert_eq!(a.stats(), AssembleStats::default());
    push(&mut a, run(1), c.at(0));
    push(&mut a, run(2)[..2].to_vec(), c.at(0));
    let st = a.stats();
    assert_eq!(st.buffered_spans, 6);
    assert_eq!(st.open_traces, 2);
}

// ---------------------------------------------------------------------------------
// Trajectory::build
// ---------------------------------------------------------------------------------

#[test]
fn build_breaks_a_two_span_cycle() {
    // A→B→A with no root.
    let t = build(1, vec![span(1, 2, 3).build(), span(1, 3, 2).build()]);
    assert_eq!(t.root, None);
    assert_eq!(
        t.anomalies,
        vec![Anomaly::Cycle {
            span_id: span_id(2)
        }]
    );
    assert_eq!(t.parent, vec![None, Some(0)]);
    assert_walks_terminate(&t);
}

#[test]
fn build_breaks_a_self_parent() {
    let t = build(1, vec![span(1, 1, 0).build(), span(1, 2, 2).build()]);
    assert_eq!(
        t.anomalies,
        vec![Anomaly::Cycle {
            span_id: span_id(2)
        }]
    );
    assert_eq!(t.parent, vec![None, None]);
    assert_eq!(t.tree_parent(1), Some(0));
    assert_walks_terminate(&t);
}

#[test]
fn build_breaks_a_long_cycle_hanging_off_a_real_tree() {
    // Root 1, a child 2, and a 1000-long cycle 10 → 11 → ... → 1009 → 10, with a tail
    // 2000 → 500 leading into it.
    let mut spans = vec![span(1, 1, 0).build(), span(1, 2, 1).build()];
    for i in 10..1010u64 {
        let parent = if i == 1009 { 10 } else { i + 1 };
        spans.push(span(1, i, parent).build());
    }
    spans.push(span(1, 2000, 500).build());
    spans.reverse();
    let t = build(1, spans);
    let cycles: Vec<_> = t
        .anomalies
        .iter()
        .filter(|a| matches!(a, Anomaly::Cycle { .. }))
        .collect();
    assert_eq!(
        cycles,
        vec![&Anomaly::Cycle {
            span_id: span_id(10)
        }]
    );
    assert_eq!(t.anomalies.len(), 1);
    assert_eq!(t.root, Some(0));
    assert_walks_terminate(&t);
    // Every span of the former cycle now reaches the root.
    let i = t.find(span_id(2000)).unwrap();
    let mut cur = Some(i);
    let mut last = i;
    while let Some(c) = cur {
        last = c;
        cur = t.tree_parent(c);
    }
    assert_eq!(last, 0);
}

/// The number of `parent` links from span `i` to the top of its tree.
fn depth_of(t: &Trajectory, i: u32) -> usize {
    let mut d = 0;
    let mut cur = i;
    while let Some(p) = t.parent[cur as usize] {
        d += 1;
        cur = p;
        assert!(d <= t.spans.len(), "a parent walk must end");
    }
    d
}

#[test]
fn build_caps_a_chain_100k_deep_at_the_default_depth() {
    let n = 100_000u64;
    let cap = crate::model::trajectory::DEFAULT_MAX_TRACE_DEPTH;
    let spans: Vec<SpanRecord> = (1..=n).rev().map(|i| span(1, i, i - 1).build()).collect();
    let t = build(1, spans);
    assert_eq!(t.spans.len(), n as usize);
    assert_eq!(t.root, Some(0));
    // Span k (index k - 1) is at depth k - 1. Spans 1..=cap+1 keep their parent; every
    // deeper one is re-hung under span `cap` (depth cap - 1), so it sits at the cap.
    assert_eq!(
        t.anomalies,
        vec![Anomaly::DepthTruncated {
            span_id: span_id(cap as u64 + 2),
            max_depth: cap,
        }]
    );
    for (i, p) in t.parent.iter().enumerate() {
        let expected = match i {
            0 => None,
            i if i <= cap => Some(i as u32 - 1),
            _ => Some(cap as u32 - 1),
        };
        assert_eq!(*p, expected, "parent of index {i}");
    }
    assert_eq!(depth_of(&t, n as u32 - 1), cap);
    assert_eq!(depth_of(&t, cap as u32), cap);
    let children = t.child_index();
    assert_eq!(children[cap - 1].len(), n as usize - cap);
    assert_walks_terminate(&t);
}

#[test]
fn build_without_a_cap_keeps_a_chain_100k_deep() {
    let n = 100_000u64;
    let spans: Vec<SpanRecord> = (1..=n).rev().map(|i| span(1, i, i - 1).build()).collect();
    let t =
        Trajectory::build_with_depth_cap(trace_id(1), spans, Vec::new(), Vec::new(), usize::MAX);
    assert_eq!(t.spans.len(), n as usize);
    assert!(t.anomalies.is_empty());
    assert_eq!(t.root, Some(0));
    assert_eq!(t.parent[n as usize - 1], Some(n as u32 - 2));
    let children = t.child_index();
    assert_eq!(children[0], vec![1]);
    // Walk from the leaf to the root.
    let mut depth = 0;
    let mut cur = Some(n as u32 - 1);
    while let Some(c) = cur {
        depth += 1;
        cur = t.tree_parent(c);
    }
    assert_eq!(depth, n);
}

/// A chain of spans 1..=len under `top` (0: span 1 is the root).
fn chain(len: u64, top: u64) -> Vec<SpanRecord> {
    (1..=len)
        .map(|i| span(1, i, if i == 1 { top } else { i - 1 }).build())
        .collect()
}

#[test]
fn a_tree_as_deep_as_the_cap_is_not_flagged() {
    // Spans at depths 0..=10 with a cap of 10, in both arrival orders.
    for reverse in [false, true] {
        let mut spans = chain(11, 0);
        if reverse {
            spans.reverse();
        }
        let t = Trajectory::build_with_depth_cap(trace_id(1), spans, Vec::new(), Vec::new(), 10);
        assert!(t.anomalies.is_empty(), "{:?}", t.anomalies);
        assert_eq!(depth_of(&t, 10), 10);
    }
}

#[test]
fn one_span_past_the_cap_is_rehung_and_flagged() {
    let t = Trajectory::build_with_depth_cap(trace_id(1), chain(12, 0), Vec::new(), Vec::new(), 10);
    assert_eq!(
        t.anomalies,
        vec![Anomaly::DepthTruncated {
            span_id: span_id(12),
            max_depth: 10,
        }]
    );
    // Span 12 now hangs beside span 11, under span 10.
    assert_eq!(t.parent[11], Some(9));
    assert_eq!(t.parent[10], Some(9));
}

#[test]
fn the_cap_applies_below_orphans_and_broken_cycles_and_is_reported_once() {
    // Root 1; an orphan chain 100..=120 (its top's parent 99 never arrives); a cycle
    // 200 → 201 → … → 230 → 200, broken at 200, with a tail 300 → 230.
    let mut spans = vec![span(1, 1, 0).build()];
    spans.extend((100..=120).map(|i| span(1, i, if i == 100 { 99 } else { i - 1 }).build()));
    spans.extend((200..=230).map(|i| span(1, i, if i == 230 { 200 } else { i + 1 }).build()));
    spans.push(span(1, 300, 230).build());
    let cap = 5;
    let t = Trajectory::build_with_depth_cap(trace_id(1), spans, Vec::new(), Vec::new(), cap);
    let cuts: Vec<_> = t
        .anomalies
        .iter()
        .filter(|a| matches!(a, Anomaly::DepthTruncated { .. }))
        .collect();
    // Span 106 is the first span past the cap in canonical (start time) order.
    assert_eq!(
        cuts,
        vec![&Anomaly::DepthTruncated {
            span_id: span_id(106),
            max_depth: cap,
        }]
    );
    for i in 0..t.spans.len() as u32 {
        assert!(depth_of(&t, i) <= cap, "span {i} deeper than the cap");
    }
    // Deep spans keep an ancestor of their own tree: the anchor at depth cap - 1.
    let anchor = t.find(span_id(104));
    assert_eq!(t.parent[t.find(span_id(120)).unwrap() as usize], anchor);
    // The broken cycle 200 (top) ← 230 ← 229 … : 227 is at depth 4 (the anchor).
    let anchor = t.find(span_id(227));
    assert_eq!(t.parent[t.find(span_id(201)).unwrap() as usize], anchor);
    assert_eq!(
        t.parent[t.find(span_id(300)).unwrap() as usize],
        t.find(span_id(230))
    );
    assert_walks_terminate(&t);
}

#[test]
fn a_cap_of_zero_is_taken_as_one() {
    let t = Trajectory::build_with_depth_cap(trace_id(1), chain(3, 0), Vec::new(), Vec::new(), 0);
    assert_eq!(t.parent, vec![None, Some(0), Some(0)]);
    assert_eq!(
        t.anomalies,
        vec![Anomaly::DepthTruncated {
            span_id: span_id(3),
            max_depth: 1,
        }]
    );
}

#[test]
fn the_assembler_applies_its_depth_cap() {
    let c = Clock::new();
    let mut a = Assembler::new(AssembleConfig {
        max_trace_depth: 3,
        ..config()
    });
    push(&mut a, chain(6, 0), c.at(0));
    let out = tick(&mut a, c.at(20));
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].anomalies,
        vec![Anomaly::DepthTruncated {
            span_id: span_id(5),
            max_depth: 3,
        }]
    );
    assert_eq!(
        out[0].parent,
        vec![None, Some(0), Some(1), Some(2), Some(2), Some(2)]
    );
}

#[test]
fn build_handles_a_span_with_100k_children() {
    let n = 100_000u64;
    let mut spans: Vec<SpanRecord> = (2..=n + 1).map(|i| span(1, i, 1).build()).collect();
    spans.push(span(1, 1, 0).build());
    let t = build(1, spans);
    assert!(t.anomalies.is_empty());
    let children = t.child_index();
    assert_eq!(children[0].len(), n as usize);
    assert!(children[0].windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn build_reports_orphans_and_hangs_them_under_the_root() {
    let t = build(1, vec![span(1, 1, 0).build(), span(1, 5, 4).build()]);
    assert_eq!(
        t.anomalies,
        vec![Anomaly::MissingParent {
            span_id: span_id(5),
            parent_span_id: span_id(4)
        }]
    );
    assert_eq!(t.parent[1], None);
    assert_eq!(t.tree_parent(1), Some(0));
}

#[test]
fn build_picks_the_earliest_of_several_roots() {
    let t = build(
        1,
        vec![
            span(1, 3, 0).build(),
            span(1, 1, 0).times(5, 6).build(),
            span(1, 2, 0).build(),
        ],
    );
    // Span 2 starts at 2 ms, span 3 at 3 ms, span 1 at 5 ms.
    assert_eq!(t.root_span().map(|s| s.span_id), Some(span_id(2)));
    assert_eq!(
        t.anomalies,
        vec![
            Anomaly::ExtraRoot {
                span_id: span_id(3)
            },
            Anomaly::ExtraRoot {
                span_id: span_id(1)
            },
        ]
    );
}

#[test]
fn build_is_independent_of_the_order_of_conflicting_copies() {
    let a = span(1, 2, 1).attr("v", "a").build();
    let b = span(1, 2, 1).attr("v", "b").build();
    let c = span(1, 2, 1).attr("v", "b").times(1, 9).build();
    let root = span(1, 1, 0).build();
    let orders = [
        vec![root.clone(), a.clone(), b.clone(), c.clone()],
        vec![c.clone(), b.clone(), root.clone(), a.clone()],
        vec![b.clone(), c.clone(), a.clone(), root.clone(), b.clone()],
    ];
    let built: Vec<Trajectory> = orders.iter().map(|o| build(1, o.clone())).collect();
    assert_eq!(built[0], built[1]);
    assert_eq!(built[0], built[2]);
    // The copy starting earliest (c, at 1 ms) is kept; one anomaly for the id.
    assert_eq!(built[0].spans.len(), 2);
    assert_eq!(built[0].spans[0].start_unix_nano, 1_000_000);
    assert_eq!(
        built[0].anomalies,
        vec![Anomaly::ConflictingDuplicate {
            span_id: span_id(2)
        }]
    );
}

#[test]
fn build_treats_a_resent_span_with_nan_as_an_exact_copy() {
    let s = span(1, 1, 0).attr("score", f64::NAN).build();
    let t = build(1, vec![s.clone(), s]);
    assert_eq!(t.spans.len(), 1);
    assert!(t.anomalies.is_empty());
}

#[test]
fn build_orders_logs_and_linked_spans_canonically() {
    let l1 = log_event(1, 2, "e", &[("k", Value::Int(1))]);
    let l2 = log_event(1, 2, "e", &[("k", Value::Int(2))]);
    let k1 = LinkedEvaluation::of(&span(5, 9, 0).build());
    let k2 = LinkedEvaluation::of(&span(5, 9, 0).attr("eval.x", 1i64).build());
    let x = Trajectory::build(
        trace_id(1),
        run(1),
        vec![l2.clone(), l1.clone(), l2.clone()],
        vec![k2.clone(), k1.clone()],
    );
    let y = Trajectory::build(
        trace_id(1),
        run(1),
        vec![l1.clone(), l2.clone()],
        vec![k1.clone(), k2.clone(), k1.clone()],
    );
    assert_eq!(x, y);
    assert_eq!(x.logs, vec![l1, l2]);
    assert_eq!(x.linked, vec![k1]);
}

#[test]
fn deeply_nested_values_compare_without_recursion() {
    fn nest(depth: usize, leaf: i64) -> Value {
        let mut v = Value::Int(leaf);
        for _ in 0..depth {
            v = Value::Array(Arc::from(vec![v]));
        }
        v
    }
    let a = nest(2_000, 1);
    let b = nest(2_000, 2);
    assert_eq!(
        crate::model::trajectory::cmp_value(&a, &b),
        std::cmp::Ordering::Less
    );
    assert_eq!(
        crate::model::trajectory::cmp_value(&a, &a.clone()),
        std::cmp::Ordering::Equal
    );
}

// ---------------------------------------------------------------------------------
// Property: arrival order and batching do not matter
// ---------------------------------------------------------------------------------

/// One record as it arrives in the property tests.
#[derive(Debug, Clone)]
enum Item {
    Span(SpanRecord),
    Log(LogEvent),
    Linked(Arc<LinkedEvaluation>),
}

/// A trace of `parents.len()` spans. Span i+1 has the parent picked by `parents[i]`:
/// 0 = a parent that never arrives, k = span k (so cycles and self-parents occur).
/// With `root`, span 1 is a root. `extras` re-send copies of spans: exact or
/// conflicting. `logs` adds log events and linked spans, some of them sent twice.
fn scenario_items(
    parents: &[prop::sample::Index],
    extras: &[(prop::sample::Index, bool)],
    logs: &[(prop::sample::Index, u8)],
    root: bool,
) -> Vec<Item> {
    let n = parents.len();
    let spans: Vec<SpanRecord> = (0..n)
        .map(|i| {
            let id = i as u64 + 1;
            let p = parents[i].index(n + 1) as u64;
            let parent = if id == 1 && root {
                0
            } else if p == 0 {
                10_000 + id
            } else {
                p
            };
            span(1, id, parent).attr("i", id as i64).build()
        })
        .collect();
    let mut items: Vec<Item> = spans.iter().cloned().map(Item::Span).collect();
    for (k, (idx, conflict)) in extras.iter().enumerate() {
        let mut s = spans[idx.index(n)].clone();
        if *conflict {
            s.attributes.insert("copy".into(), Value::Int(k as i64 % 3));
            if k % 2 == 0 {
                s.start_unix_nano = s.start_unix_nano.saturating_sub(500_000);
            }
        }
        items.push(Item::Span(s));
    }
    for (idx, what) in logs {
        let on = idx.index(n) as u64 + 1;
        let item = match what % 4 {
            0 | 1 => Item::Log(log_event(
                1,
                on,
                "gen_ai.evaluation.result",
                &[("score", Value::Int(i64::from(*what)))],
            )),
            _ => Item::Linked(LinkedEvaluation::of(
                &span(9, 500 + u64::from(*what % 8), 0).link(1, on).build(),
            )),
        };
        if what % 3 == 0 {
            items.push(item.clone());
        }
        items.push(item);
    }
    items
}

fn expected_trajectory(items: &[Item]) -> Trajectory {
    let mut spans = Vec::new();
    let mut logs = Vec::new();
    let mut linked = Vec::new();
    for item in items {
        match item {
            Item::Span(s) => spans.push(s.clone()),
            Item::Log(l) => logs.push(l.clone()),
            Item::Linked(s) => linked.push(s.clone()),
        }
    }
    Trajectory::build_with_depth_cap(trace_id(1), spans, logs, linked, PROP_DEPTH)
}

/// The depth cap of the property tests: low, so that random trees often pass it.
const PROP_DEPTH: usize = 3;

type Scenario = (Vec<Item>, Vec<Item>, Vec<bool>, usize);

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(any::<prop::sample::Index>(), 1..30),
        prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..12),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        any::<bool>(),
    )
        .prop_flat_map(|(parents, extras, logs, root)| {
            let all = scenario_items(&parents, &extras, &logs, root);
            let len = all.len();
            (
                Just(all.clone()),
                Just(all).prop_shuffle(),
                prop::collection::vec(any::<bool>(), len),
                0..=len,
            )
        })
}

/// Pushes `arrivals` cut into batches where `splits` says, one second apart (a batch
/// holds one kind of record, as a request does). Returns the time of the last push.
fn push_batches(
    a: &mut Assembler,
    arrivals: &[Item],
    splits: &[bool],
    c: &Clock,
    start: u64,
    out: &mut Vec<Arc<Trajectory>>,
) -> u64 {
    let mut secs = start;
    let mut spans = Vec::new();
    let mut logs = Vec::new();
    let mut linked = Vec::new();
    for (k, item) in arrivals.iter().enumerate() {
        match item {
            Item::Span(s) => spans.push(s.clone()),
            Item::Log(l) => logs.push(l.clone()),
            Item::Linked(s) => linked.push(s.clone()),
        }
        if splits[k] || k + 1 == arrivals.len() {
            let now = c.at(secs);
            a.push_logs(std::mem::take(&mut logs), now, out);
            a.push_spans(std::mem::take(&mut spans), now, out);
            a.push_linked(trace_id(1), std::mem::take(&mut linked), now, out);
            a.tick(now, out);
            secs += 1;
        }
    }
    secs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arrival_order_and_batching_do_not_change_the_trajectory(
        (all, arrivals, splits, _cut) in scenario()
    ) {
        let c = Clock::new();
        let mut a = Assembler::new(AssembleConfig {
            max_trace_age: Duration::from_secs(3600),
            max_trace_depth: PROP_DEPTH,
            ..config()
        });
        let mut out = Vec::new();
        let last = push_batches(&mut a, &arrivals, &splits, &c, 0, &mut out);
        prop_assert!(out.is_empty());
        a.tick(c.at(last + 3600), &mut out);
        prop_assert_eq!(out.len(), 1);
        let mut expected = expected_trajectory(&all);
        if expected.root.is_none() {
            expected.complete = false;
            expected.incomplete_reason = Some(IncompleteReason::MaxAge);
        }
        prop_assert_eq!(&*out[0], &expected);
        assert_walks_terminate(&out[0]);
    }

    #[test]
    fn late_arrivals_give_the_same_final_trajectory(
        (all, arrivals, splits, cut) in scenario()
    ) {
        let c = Clock::new();
        let mut a = Assembler::new(AssembleConfig {
            late_grace: Duration::from_secs(3600),
            max_trace_depth: PROP_DEPTH,
            ..config()
        });
        let mut out = Vec::new();
        let last = push_batches(&mut a, &arrivals[..cut], &splits[..cut], &c, 0, &mut out);
        prop_assert_eq!(a.check_bytes(), Ok(()));
        a.tick(c.at(last + 60), &mut out);
        prop_assert_eq!(a.check_bytes(), Ok(()));
        let first = out.len();
        push_batches(&mut a, &arrivals[cut..], &splits[cut..], &c, last + 61, &mut out);
        prop_assert_eq!(a.check_bytes(), Ok(()));
        a.tick(c.at(last + 1000), &mut out);
        prop_assert_eq!(a.check_bytes(), Ok(()));
        a.drain(&mut out);
        let expected = expected_trajectory(&all);
        // A first part of logs and linked spans only is dropped at max age, not
        // released; the spans that follow make a trace of their own.
        let has_spans = arrivals[..cut].iter().any(|i| matches!(i, Item::Span(_)));
        let dropped_first = cut > 0 && !has_spans;
        prop_assert!(first <= usize::from(has_spans));
        let fin = out.last().expect("every scenario has spans");
        prop_assert_eq!(&fin.spans, &expected.spans);
        prop_assert_eq!(&fin.parent, &expected.parent);
        prop_assert_eq!(fin.root, expected.root);
        prop_assert_eq!(&fin.anomalies, &expected.anomalies);
        if !dropped_first {
            prop_assert_eq!(&fin.logs, &expected.logs);
            prop_assert_eq!(&fin.linked, &expected.linked);
        }
        prop_assert_eq!(fin.revision as usize, out.len() - 1);
        prop_assert_eq!(a.stats().buffered_spans, 0);
        prop_assert_eq!(a.stats().buffered_bytes, 0);
    }
}

/// The depth cap done the slow way: on the uncapped tree, every span deeper than `cap`
/// hangs under its ancestor at depth `cap - 1`; the first of them (in span order) is
/// reported after the other anomalies.
fn capped_by_hand(uncapped: &Trajectory, cap: usize) -> Trajectory {
    let mut t = uncapped.clone();
    let mut first_cut = None;
    for i in 0..t.spans.len() {
        // i, its parent, …, the top.
        let mut path = vec![i];
        while let Some(p) = uncapped.parent[*path.last().unwrap()] {
            path.push(p as usize);
        }
        if path.len() - 1 > cap {
            t.parent[i] = Some(path[path.len() - cap] as u32);
            first_cut.get_or_insert(i);
        }
    }
    if let Some(i) = first_cut {
        t.anomalies.push(Anomaly::DepthTruncated {
            span_id: t.spans[i].span_id,
            max_depth: cap,
        });
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_depth_cap_matches_the_slow_way(
        (all, arrivals, _splits, _cut) in scenario(),
        cap in 1usize..8,
    ) {
        let spans = |items: &[Item]| -> Vec<SpanRecord> {
            items
                .iter()
                .filter_map(|i| match i {
                    Item::Span(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        };
        let uncapped = Trajectory::build_with_depth_cap(
            trace_id(1), spans(&all), Vec::new(), Vec::new(), usize::MAX,
        );
        let capped = Trajectory::build_with_depth_cap(
            trace_id(1), spans(&arrivals), Vec::new(), Vec::new(), cap,
        );
        prop_assert_eq!(&capped, &capped_by_hand(&uncapped, cap));
        for i in 0..capped.spans.len() as u32 {
            prop_assert!(depth_of(&capped, i) <= cap);
        }
    }
}

#[test]
fn span_ids_in_tests_are_distinct() {
    // Guards the scenario generator: the test id scheme must not collide.
    let ids: std::collections::HashSet<SpanId> = (1..20_000u64).map(span_id).collect();
    assert_eq!(ids.len(), 19_999);
}
