//! The pipeline's two promises, driven through real shard threads, assemblers and the
//! analysis core:
//!
//! - the queued-spans bound: a request waits at most `submit_wait` for room and is then
//!   refused whole, with nothing of it queued; once the shards catch up it is accepted;
//! - counted once, with the final verdict: a run released and then revised by a late
//!   evaluator is finalized exactly once, with the revised outcome, and the number of
//!   finalized runs is the number of runs sent.
//!
//! The only stand-in is the sink, which records what it is given and can hold a shard in
//! `publish` (as a shard stuck behind a slow analysis would be), so that the queues fill.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::analyze::{analyze, AnalyzeConfig};
use crate::assemble::AssembleConfig;
use crate::metrics::SelfMetrics;
use crate::model::{Analysis, Outcome, SpanRecord, TraceId, Trajectory};
use crate::test_support::{span, trace_id};

/// Records every publish and finalize; while held, `publish` blocks its shard.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Seen>,
    held: Mutex<bool>,
    opened: Condvar,
}

#[derive(Default, Clone)]
struct Seen {
    published: Vec<Arc<Analysis>>,
    finalized: Vec<Arc<Analysis>>,
    /// Shards waiting in `publish` for the sink to open.
    waiting: usize,
}

impl Recorder {
    fn hold(&self) {
        *self.held.lock().expect("gate") = true;
    }

    fn open(&self) {
        *self.held.lock().expect("gate") = false;
        self.opened.notify_all();
    }

    fn seen(&self) -> Seen {
        self.seen.lock().expect("seen").clone()
    }
}

impl Sink for Recorder {
    fn publish(&self, analysis: Arc<Analysis>) {
        self.seen.lock().expect("seen").published.push(analysis);
        let mut held = self.held.lock().expect("gate");
        if *held {
            self.seen.lock().expect("seen").waiting += 1;
            while *held {
                held = self.opened.wait(held).expect("gate");
            }
            self.seen.lock().expect("seen").waiting -= 1;
        }
    }

    fn finalize(&self, analysis: &Finalized) {
        self.seen
            .lock()
            .expect("seen")
            .finalized
            .push(analysis.analysis.clone());
    }
}

/// Opens the sink when a test ends, so that a failed assertion does not leave shard
/// threads blocked.
struct OpenOnDrop(Arc<Recorder>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

struct Setup {
    shards: usize,
    max_queued_spans: usize,
    submit_wait: Duration,
    late_grace: Duration,
    max_pending_final: usize,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            shards: 2,
            max_queued_spans: 10_000,
            submit_wait: Duration::from_millis(500),
            late_grace: Duration::from_secs(60),
            max_pending_final: 1000,
        }
    }
}

fn start(setup: Setup) -> (Pipeline, Workers, Arc<Recorder>, OpenOnDrop) {
    let recorder = Arc::new(Recorder::default());
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(SelfMetrics::register(&mut registry));
    let (pipeline, workers) = Pipeline::start(
        PipelineConfig {
            shards: setup.shards,
            max_queued_spans: setup.max_queued_spans,
            submit_wait: setup.submit_wait,
            tick: Duration::from_millis(10),
            assemble: AssembleConfig {
                idle_timeout: Duration::from_millis(30),
                max_trace_age: Duration::from_secs(600),
                late_grace: setup.late_grace,
                max_buffered_spans: 100_000,
                max_spans_per_trace: 10_000,
                max_trace_depth: 64,
                max_linked_per_trace: crate::assemble::DEFAULT_MAX_LINKED_PER_TRACE,
            },
            analyze: Arc::new(AnalyzeConfig::default()),
            max_pending_final: setup.max_pending_final,
            memory: None,
        },
        vec![recorder.clone() as Arc<dyn Sink>],
        metrics,
    )
    .expect("shard threads start");
    let guard = OpenOnDrop(recorder.clone());
    (pipeline, workers, recorder, guard)
}

async fn shutdown(workers: Workers) {
    tokio::task::spawn_blocking(move || workers.shutdown())
        .await
        .expect("shutdown");
}

/// Polls until `cond` holds (generous deadline for a loaded machine).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A trace number whose trace lands on `shard` of `shards`; `seq` keeps them apart.
fn trace_on(shard: usize, shards: usize, seq: u64) -> u64 {
    (0..256u64)
        .map(|i| seq | (i << 56))
        .find(|&t| trace_id(t).shard(shards) == shard)
        .expect("some high byte puts the trace on every shard")
}

/// A successful run of `spans` spans: an agent root and its children.
fn run_of(trace: u64, spans: u64) -> Vec<SpanRecord> {
    (1..=spans)
        .map(|id| {
            let parent = if id == 1 { 0 } else { 1 };
            let name = if id == 1 { "agent" } else { "answer" };
            span(trace, id, parent).name(name).times(id, 100).build()
        })
        .collect()
}

/// A post-hoc evaluator span in a trace of its own (OpenInference), failing the run of
/// `target` (a task-level evaluator linked to its root).
fn late_evaluator(eval_trace: u64, target: u64) -> SpanRecord {
    span(eval_trace, 1, 0)
        .name("eval.task_completion")
        .attr("openinference.span.kind", "EVALUATOR")
        .attr("gen_ai.evaluation.name", "task_completion")
        .attr("gen_ai.evaluation.score.value", 0.0)
        .attr(
            "gen_ai.evaluation.explanation",
            "The refund was never issued.",
        )
        .link(target, 1)
        .build()
}

fn traces_of(analyses: &[Arc<Analysis>]) -> HashSet<TraceId> {
    analyses.iter().map(|a| a.trajectory.trace_id).collect()
}

fn outcomes(analyses: &[Arc<Analysis>]) -> BTreeMap<String, Vec<Outcome>> {
    let mut by: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    for a in analyses {
        by.entry(a.trajectory.trace_id.to_hex())
            .or_default()
            .push(a.outcome);
    }
    by
}

// ---- the queued-spans bound ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_bound_waits_then_is_refused_whole_and_is_accepted_once_drained() {
    let wait = Duration::from_millis(300);
    let (pipeline, workers, recorder, _open) = start(Setup {
        max_queued_spans: 8,
        submit_wait: wait,
        ..Setup::default()
    });
    // One run per shard; once released (idle timeout) both shards stop in `publish`.
    recorder.hold();
    let (a, b) = (trace_on(0, 2, 1), trace_on(1, 2, 2));
    for t in [a, b] {
        pipeline
            .submit_spans(vec![span(t, 1, 0).build()], None)
            .await
            .expect("empty queues take a request");
    }
    until("both shards held in publish", || {
        recorder.seen().waiting == 2
    })
    .await;
    assert_eq!(pipeline.queued(), 0);

    // Exactly the bound, across both shards: accepted, and waiting in the queues.
    let (c, d) = (trace_on(0, 2, 3), trace_on(1, 2, 4));
    let fill: Vec<_> = run_of(c, 4).into_iter().chain(run_of(d, 4)).collect();
    pipeline
        .submit_spans(fill, None)
        .await
        .expect("a request that fits the bound is accepted");
    assert_eq!(pipeline.queued(), 8);

    // One span more for each shard: waits its bound, then refused whole.
    let (e, f) = (trace_on(0, 2, 5), trace_on(1, 2, 6));
    let started = Instant::now();
    let refused = pipeline
        .submit_spans(vec![span(e, 1, 0).build(), span(f, 1, 0).build()], None)
        .await;
    let waited = started.elapsed();
    assert_eq!(
        refused,
        Err(Full {
            retry_after: Duration::from_secs(1)
        })
    );
    assert!(waited >= wait, "refused after {waited:?}, before its wait");
    assert_eq!(
        pipeline.queued(),
        8,
        "nothing of a refused request is queued"
    );
    // Logs are held to the same bound.
    let log = crate::test_support::log_event(e, 1, "gen_ai.evaluation.result", &[]);
    assert!(pipeline.submit_logs(vec![log], None).await.is_err());
    assert_eq!(pipeline.queued(), 8);

    // The shards catch up; the next request is accepted.
    recorder.open();
    until("the queues drained", || pipeline.queued() == 0).await;
    let (g, h) = (trace_on(0, 2, 7), trace_on(1, 2, 8));
    pipeline
        .submit_spans(vec![span(g, 1, 0).build(), span(h, 1, 0).build()], None)
        .await
        .expect("accepted once the queues drained");
    shutdown(workers).await;

    let seen = recorder.seen();
    let expected: HashSet<TraceId> = [a, b, c, d, g, h].into_iter().map(trace_id).collect();
    assert_eq!(
        traces_of(&seen.published),
        expected,
        "every accepted run analysed, no refused one"
    );
    let spans: usize = seen
        .published
        .iter()
        .map(|a| a.trajectory.spans.len())
        .sum();
    assert_eq!(spans, 12, "every accepted span, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_whole_bound_passes_only_when_the_queues_are_empty() {
    let (pipeline, workers, recorder, _open) = start(Setup {
        max_queued_spans: 4,
        submit_wait: Duration::from_millis(100),
        ..Setup::default()
    });
    recorder.hold();
    let a = trace_on(0, 2, 1);
    pipeline
        .submit_spans(run_of(a, 10), None)
        .await
        .expect("empty queues let one oversized request through");
    until("the shard held in publish", || recorder.seen().waiting == 1).await;
    let b = trace_on(0, 2, 2);
    pipeline
        .submit_spans(run_of(b, 10), None)
        .await
        .expect("still empty queues");
    assert_eq!(pipeline.queued(), 10);
    let c = trace_on(1, 2, 3);
    assert!(pipeline.submit_spans(run_of(c, 1), None).await.is_err());
    assert_eq!(pipeline.queued(), 10);
    recorder.open();
    shutdown(workers).await;
    let expected: HashSet<TraceId> = [a, b].into_iter().map(trace_id).collect();
    assert_eq!(traces_of(&recorder.seen().published), expected);
}

// ---- counted once, with the final verdict ------------------------------------------

#[test]
fn pending_final_keeps_the_first_deadline_and_the_last_revision() {
    let grace = Duration::from_secs(10);
    let mut pending = PendingFinal::new(grace, 100);
    let t0 = Instant::now();
    let first = Arc::new(analyze(
        Arc::new(Trajectory::build(
            trace_id(1),
            run_of(1, 2),
            Vec::new(),
            Vec::new(),
        )),
        &AnalyzeConfig::default(),
    ));
    let revised = Arc::new(analyze(
        Arc::new(Trajectory::build(
            trace_id(1),
            run_of(1, 2),
            Vec::new(),
            vec![crate::model::LinkedEvaluation::of(&late_evaluator(9, 1))],
        )),
        &AnalyzeConfig::default(),
    ));
    assert_eq!(first.outcome, Outcome::Success);
    assert_eq!(revised.outcome, Outcome::Failed);

    let mut due = Vec::new();
    pending.released(first, t0, &mut due);
    pending.released(
        revised.clone(),
        t0 + grace - Duration::from_secs(1),
        &mut due,
    );
    pending.due(t0 + grace - Duration::from_millis(1), &mut due);
    assert!(due.is_empty(), "nothing is final inside the grace");
    pending.due(t0 + grace, &mut due);
    assert_eq!(due.len(), 1, "one final analysis per trace");
    assert!(
        Arc::ptr_eq(&due[0], &revised),
        "the final one is the revision"
    );
    pending.due(t0 + grace * 10, &mut due);
    pending.drain(&mut due);
    assert_eq!(due.len(), 1);
}

/// The collector batch processor's default batch: 8 192 evaluator spans, each in a trace
/// of its own and judging a different run. It takes one channel permit per shard for its
/// linked evaluations (not one per judged trace, which a shard's channel of 4 096 could
/// never give at once), so an idle pipeline accepts it, on one shard as on several, and
/// the evaluations reach their runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_8192_evaluator_spans_each_judging_its_own_run_is_accepted() {
    for shards in [1, 2] {
        let (pipeline, workers, recorder, _open) = start(Setup {
            shards,
            ..Setup::default()
        });
        let batch: Vec<SpanRecord> = (0..8192u64)
            .map(|i| late_evaluator(1_000_000 + i, 1 + i))
            .collect();
        pipeline
            .submit_spans(batch, None)
            .await
            .unwrap_or_else(|e| panic!("{shards} shard(s): refused: {e}"));
        // Three of the judged runs arrive after their evaluations.
        let runs = [1u64, 4096, 8192];
        for t in runs {
            pipeline
                .submit_spans(run_of(t, 2), None)
                .await
                .expect("room");
        }
        let failed = |s: &Seen| {
            runs.iter().all(|&t| {
                s.published
                    .iter()
                    .any(|a| a.trajectory.trace_id == trace_id(t) && a.outcome == Outcome::Failed)
            })
        };
        until("the judged runs failed", || failed(&recorder.seen())).await;
        shutdown(workers).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_evaluator_after_release_changes_the_verdict_and_the_run_is_counted_once() {
    let n = 4;
    let (pipeline, workers, recorder, _open) = start(Setup {
        late_grace: Duration::from_secs(5),
        ..Setup::default()
    });
    for t in 1..=n {
        pipeline
            .submit_spans(run_of(t, 2), None)
            .await
            .expect("room");
    }
    until("every run released", || {
        traces_of(&recorder.seen().published).len() == n as usize
    })
    .await;
    let seen = recorder.seen();
    assert!(seen.published.iter().all(|a| a.outcome == Outcome::Success));

    // After the release, inside the grace: the evaluator fails run 3.
    let target = 3;
    pipeline
        .submit_spans(vec![late_evaluator(100, target)], None)
        .await
        .expect("room");
    let revised = |s: &Seen| {
        s.published
            .iter()
            .any(|a| a.trajectory.trace_id == trace_id(target) && a.outcome == Outcome::Failed)
    };
    until("the revision of the evaluated run", || {
        revised(&recorder.seen())
    })
    .await;
    // Finalized when each run's grace ends, without a shutdown.
    until("every run finalized", || {
        recorder.seen().finalized.len() >= n as usize
    })
    .await;
    shutdown(workers).await;

    let seen = recorder.seen();
    assert_eq!(
        seen.finalized.len(),
        n as usize,
        "totals equal the runs sent"
    );
    let finals = outcomes(&seen.finalized);
    assert_eq!(finals.len(), n as usize, "each run once");
    for t in 1..=n {
        let expected = if t == target {
            Outcome::Failed
        } else {
            Outcome::Success
        };
        assert_eq!(finals[&trace_id(t).to_hex()], [expected], "run {t}");
    }
    let published = outcomes(&seen.published);
    assert_eq!(
        published[&trace_id(target).to_hex()],
        [Outcome::Success, Outcome::Failed],
        "released, then revised"
    );
    assert!(
        !published.contains_key(&trace_id(100).to_hex()),
        "the evaluator's own trace is not a run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_finalized_early_over_the_pending_bound_is_not_counted_again_when_revised() {
    let (pipeline, workers, recorder, _open) = start(Setup {
        shards: 1,
        max_pending_final: 1,
        ..Setup::default()
    });
    pipeline
        .submit_spans(run_of(1, 2), None)
        .await
        .expect("room");
    until("run 1 released", || recorder.seen().published.len() == 1).await;
    pipeline
        .submit_spans(run_of(2, 2), None)
        .await
        .expect("room");
    // Two pending over a bound of one: run 1 is finalized before its grace ends.
    until("run 1 finalized early", || {
        recorder.seen().finalized.len() == 1
    })
    .await;
    pipeline
        .submit_spans(vec![late_evaluator(100, 1)], None)
        .await
        .expect("room");
    until("the revision of run 1", || {
        recorder
            .seen()
            .published
            .iter()
            .any(|a| a.trajectory.trace_id == trace_id(1) && a.outcome == Outcome::Failed)
    })
    .await;
    shutdown(workers).await;

    let finals = outcomes(&recorder.seen().finalized);
    assert_eq!(finals.len(), 2);
    // Counted once, with the verdict it had when it was counted.
    assert_eq!(finals[&trace_id(1).to_hex()], [Outcome::Success]);
    assert_eq!(finals[&trace_id(2).to_hex()], [Outcome::Success]);
}

// ---- stages: sink order carries no meaning -------------------------------------------

/// A sink that records, at finalize, the blamed finding's reason template it is given
/// and whether the count stage (the aggregator) had already counted the trace.
struct Probe {
    aggregator: Arc<crate::aggregate::Aggregator>,
    clusterer: Arc<crate::reasons::SharedClusterer>,
    seen: Mutex<Vec<(TraceId, Outcome, Option<String>)>>,
    counted_before: Mutex<bool>,
}

impl Sink for Probe {
    fn publish(&self, _analysis: Arc<Analysis>) {}

    fn finalize(&self, analysis: &Finalized) {
        let template = analysis
            .root_pattern()
            .and_then(|p| self.clusterer.pattern(p))
            .map(|p| p.template);
        let mut seen = self.seen.lock().expect("seen");
        seen.push((analysis.trajectory.trace_id, analysis.outcome, template));
        // Every trace this sink was given, this one included, was counted before.
        if self.aggregator.stats().recorded < seen.len() as u64 {
            *self.counted_before.lock().expect("flag") = false;
        }
    }
}

/// What one pipeline run with all the real stages produced.
#[derive(Debug, PartialEq)]
struct Outputs {
    /// (trace, outcome, blamed reason template) as the sinks were given them, sorted.
    finalized: Vec<(TraceId, Outcome, Option<String>)>,
    /// (trace, blamed reason template) of every cohort window row, sorted.
    cohort_rows: Vec<(TraceId, Option<String>)>,
    /// Trajectories counted by the aggregator.
    counted: u64,
    /// The store's per-minute counts after shutdown, and the aggregator's.
    stored_counts: Vec<crate::aggregate::MinuteCounts>,
    aggregated_counts: Vec<crate::aggregate::MinuteCounts>,
    reason_patterns: usize,
}

/// Runs `runs` through a pipeline whose sinks are given in `order` (indices into
/// [in-memory view, cohort window, store, probe]).
async fn run_with_sink_order(order: [usize; 4], runs: &[Vec<SpanRecord>]) -> (Outputs, bool) {
    use crate::aggregate::{AggregateConfig, Aggregator};
    use crate::cohorts::{CohortConfig, CohortIndex, WindowSpec};
    use crate::reasons::{ReasonConfig, ReasonIndex, ReasonStats, ReasonStatsConfig};
    use crate::store::{Recent, SqliteStore, Store, StoreConfig, StoreMetrics, StoreWriter};

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(SelfMetrics::register(&mut registry));
    let aggregator = Arc::new(Aggregator::new(
        AggregateConfig::default_config(),
        &mut registry,
        crate::aggregate::system_clock(),
    ));
    let clusterer = Arc::new(
        crate::reasons::SharedClusterer::new(ReasonConfig::default(), 2).expect("clusterer"),
    );
    let reasons = Arc::new(ReasonIndex::new(
        clusterer.clone(),
        Arc::new(Mutex::new(ReasonStats::new(ReasonStatsConfig::default()))),
        crate::reasons::system_clock,
    ));
    let cohorts = Arc::new(CohortIndex::new(CohortConfig::default()));
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), StoreConfig::default()).expect("store"));
    let (writer, store_sink) = StoreWriter::start(
        store.clone(),
        Some(aggregator.clone()),
        StoreConfig::default(),
        AggregateConfig::default_config().dimensions,
        Arc::new(StoreMetrics::register(&mut registry)),
        None,
    )
    .expect("store writer");
    let probe = Arc::new(Probe {
        aggregator: aggregator.clone(),
        clusterer: clusterer.clone(),
        seen: Mutex::new(Vec::new()),
        counted_before: Mutex::new(true),
    });
    let all: [Arc<dyn Sink>; 4] = [
        Arc::new(Recent::new(1000)),
        cohorts.clone(),
        Arc::new(store_sink),
        probe.clone(),
    ];
    let stages = Stages {
        discovery: Some(reasons),
        count: vec![aggregator.clone()],
        sinks: order.iter().map(|&i| all[i].clone()).collect(),
    };
    let (pipeline, workers) = Pipeline::start(
        PipelineConfig {
            shards: 2,
            max_queued_spans: 100_000,
            submit_wait: Duration::from_secs(5),
            tick: Duration::from_millis(10),
            assemble: AssembleConfig {
                idle_timeout: Duration::from_millis(30),
                max_trace_age: Duration::from_secs(600),
                late_grace: Duration::from_millis(20),
                max_buffered_spans: 100_000,
                max_spans_per_trace: 10_000,
                max_trace_depth: 64,
                max_linked_per_trace: crate::assemble::DEFAULT_MAX_LINKED_PER_TRACE,
            },
            analyze: Arc::new(AnalyzeConfig::default()),
            max_pending_final: 1000,
            memory: None,
        },
        stages,
        metrics,
    )
    .expect("shard threads start");
    for run in runs {
        pipeline
            .submit_spans(run.clone(), None)
            .await
            .expect("queued");
    }
    until("every run finalized", || {
        probe.seen.lock().expect("seen").len() >= runs.len()
    })
    .await;
    shutdown(workers).await;
    tokio::task::spawn_blocking(move || writer.shutdown())
        .await
        .expect("store writer stops");

    let mut finalized = probe.seen.lock().expect("seen").clone();
    finalized.sort_by_key(|(t, _, _)| *t);
    let snap = cohorts.snapshot(WindowSpec::Ring);
    let mut cohort_rows: Vec<(TraceId, Option<String>)> = (0..snap.n)
        .map(|r| {
            let pattern = snap
                .pattern_ids
                .get(snap.root_pattern[r] as usize)
                .copied()
                .flatten()
                .and_then(|id| clusterer.pattern(crate::reasons::PatternId(id)))
                .map(|p| p.template);
            (snap.trace_ids[r].expect("rows carry their trace"), pattern)
        })
        .collect();
    cohort_rows.sort();
    let stored_counts = store.counts().expect("stored counts");
    let aggregated_counts = stored_counts
        .iter()
        .filter_map(|m| aggregator.export_minute(m.minute))
        .collect();
    let counted_before = *probe.counted_before.lock().expect("flag");
    (
        Outputs {
            finalized,
            cohort_rows,
            counted: aggregator.stats().recorded,
            stored_counts,
            aggregated_counts,
            reason_patterns: clusterer.live(),
        },
        counted_before,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_in_any_order_give_the_same_results() {
    let reasons = [
        "connection refused by vector-db-1",
        "connection refused by vector-db-2",
        "rate limit exceeded for model gpt-4o",
    ];
    let runs: Vec<Vec<SpanRecord>> = (1..=24u64)
        .map(|t| {
            let mut spans = run_of(t, 3);
            if t % 3 != 0 {
                let reason = reasons[(t % 3) as usize];
                spans[2] = span(t, 3, 1)
                    .name("answer")
                    .times(3, 100)
                    .error(reason)
                    .build();
            }
            spans
        })
        .collect();
    let (forward, counted_forward) = run_with_sink_order([0, 1, 2, 3], &runs).await;
    let (reversed, counted_reversed) = run_with_sink_order([3, 2, 1, 0], &runs).await;
    assert!(
        counted_forward && counted_reversed,
        "the count stage ran first"
    );
    assert_eq!(forward.counted, 24);
    assert_eq!(forward.finalized.len(), 24);
    assert_eq!(forward.cohort_rows.len(), 24);
    // Failed runs carry their blamed reason's pattern to the sinks and the cohort rows.
    let failed = forward
        .finalized
        .iter()
        .filter(|(_, o, _)| *o == Outcome::Failed)
        .count();
    assert_eq!(failed, 16);
    assert!(forward
        .finalized
        .iter()
        .all(|(_, o, p)| (*o == Outcome::Failed) == p.is_some()));
    assert_eq!(
        forward
            .cohort_rows
            .iter()
            .filter(|(_, p)| p.is_some())
            .count(),
        16
    );
    assert!(!forward.stored_counts.is_empty());
    assert_eq!(forward.stored_counts, forward.aggregated_counts);
    assert_eq!(forward, reversed);
}
