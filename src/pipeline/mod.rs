//! The pipeline: shards records by trace id onto worker threads, where each shard
//! assembles its traces and runs the analysis core on every released trajectory.
//!
//! ```text
//! ingest ──submit──► [bounded queue] ──► shard thread: Assembler → analyze() ──► stages
//!                    (one per shard)      (one per shard, owns its traces)     (discovery,
//!                                                                               count, sinks)
//! ```
//!
//! Invariants:
//! - A trace belongs to exactly one shard (by trace id), so shards share nothing and the
//!   hot path takes no global lock.
//! - The queues are bounded in spans, not just in messages: `submit_*` waits at most
//!   `submit_wait` for room and then refuses with [`Full`], which ingest turns into a
//!   retryable status. A batch is either queued whole or refused whole.
//! - The core stages run on the shard threads, never on the async runtime.
//! - What runs after analysis is declared in [`Stages`] (see [`stages`]): discovery
//!   outputs travel with the analysis ([`Finalized`]), and the only ordering between
//!   sinks (counts before the store that writes them) is a stage, not a list position.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::analyze::{analyze, AnalyzeConfig};
use crate::assemble::{linked_evaluations, AssembleConfig, AssembleStats, Assembler};
use crate::memory::{Charge, Component, MemoryBudget};
use crate::metrics::{KindLabels, SelfMetrics};
use crate::model::{Analysis, LinkedEvaluation, LogEvent, SpanRecord, TraceId, Trajectory};

pub mod stages;

pub use stages::{Finalized, Stages};

/// Where analyses go. Called on shard threads: implementations must be quick and must
/// not block on IO (hand off to their own thread if they write).
pub trait Sink: Send + Sync + 'static {
    /// Every release of a trajectory: the first, and each revision after late data. A
    /// revision replaces the earlier analysis of the same trace.
    fn publish(&self, analysis: Arc<Analysis>);

    /// Once per trace, when its grace period for late data has ended: the final
    /// analysis, with what the discovery stage found for it. Counts (metrics,
    /// aggregates) are taken here, so that a trajectory is counted exactly once even
    /// when late data revised it.
    fn finalize(&self, analysis: &Finalized) {
        let _ = analysis;
    }

    /// A trace released but not analysed as a trajectory of its own (an annotation
    /// trace: its evaluator spans went to the trace they evaluate). It is never
    /// published nor finalized.
    fn not_a_trajectory(&self, trace: TraceId) {
        let _ = trace;
    }
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Number of shard threads.
    pub shards: usize,
    /// Spans (and log records) waiting in all shard queues together before `submit_*`
    /// refuses.
    pub max_queued_spans: usize,
    /// How long `submit_*` waits for room before refusing.
    pub submit_wait: Duration,
    /// How often shards check their timers.
    pub tick: Duration,
    /// Assembly settings for the whole pipeline; `max_buffered_spans` is split evenly
    /// between the shards.
    pub assemble: AssembleConfig,
    pub analyze: Arc<AnalyzeConfig>,
    /// Released trajectories waiting for their grace period to end before they are
    /// finalized, per shard; above it the oldest is finalized early.
    pub max_pending_final: usize,
    /// The memory budget the shards charge their buffered records to, and whose share
    /// (see [`PIPELINE_SHARE_PERCENT`]) bounds them: past it the oldest open traces are
    /// released early, as at `max_buffered_spans`. `None`: bounded by count only.
    pub memory: Option<Arc<MemoryBudget>>,
}

/// The share of the memory budget the shards' buffered records may take together: the
/// rest is for requests in flight (one may hold a quarter of the budget).
pub const PIPELINE_SHARE_PERCENT: u64 = 75;

/// The pipeline refused a batch: its queues are full. Retryable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the analysis pipeline is full; retry after {retry_after:?}")]
pub struct Full {
    pub retry_after: Duration,
}

/// The request's charge to the memory budget, shared by the messages it was split into
/// and given back once the last of them is taken by its shard.
type Held = Option<Arc<Charge>>;

/// The linked evaluations of a request for the traces of one shard, by target trace.
type LinkedGroups = Vec<(TraceId, Vec<Arc<LinkedEvaluation>>)>;

enum ShardMsg {
    Spans(Vec<SpanRecord>, Held),
    Logs(Vec<LogEvent>, Held),
    /// One message per shard and request, however many traces the evaluations judge,
    /// so that a request takes at most two channel permits per shard.
    Linked(LinkedGroups, Held),
    /// Drain every open trace and stop.
    Shutdown,
}

impl ShardMsg {
    fn weight(&self) -> usize {
        match self {
            ShardMsg::Spans(v, _) => v.len(),
            ShardMsg::Logs(v, _) => v.len(),
            ShardMsg::Linked(groups, _) => groups.iter().map(|(_, v)| v.len()).sum(),
            ShardMsg::Shutdown => 0,
        }
    }
}

/// The handle ingest submits to. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    shards: Arc<[mpsc::Sender<ShardMsg>]>,
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    submit_wait: Duration,
}

/// The shard threads; `shutdown` drains them.
pub struct Workers {
    shards: Arc<[mpsc::Sender<ShardMsg>]>,
    threads: Vec<JoinHandle<()>>,
}

impl Pipeline {
    pub fn start(
        config: PipelineConfig,
        stages: impl Into<Stages>,
        metrics: Arc<SelfMetrics>,
    ) -> std::io::Result<(Pipeline, Workers)> {
        let n = config.shards.max(1);
        let queued = Arc::new(AtomicUsize::new(0));
        let stages: Arc<Stages> = Arc::new(stages.into());
        let mut senders = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        let mut assemble = config.assemble.clone();
        assemble.max_buffered_spans = (assemble.max_buffered_spans / n).max(1);
        for i in 0..n {
            // Messages are bounded by `max_queued_spans`; the channel bound only caps
            // the number of tiny messages.
            let (tx, rx) = mpsc::channel(4096);
            senders.push(tx);
            let memory = config.memory.clone().map(|budget| ShardMemory {
                share: ShardMemory::share_of(&budget, n),
                budget,
                shards: n,
                charged: 0,
            });
            let mut assembler = Assembler::new(assemble.clone());
            if let Some(memory) = &memory {
                assembler.set_max_buffered_bytes(memory.share);
            }
            let shard = Shard {
                rx,
                assembler,
                analyze: config.analyze.clone(),
                stages: stages.clone(),
                metrics: metrics.clone(),
                queued: queued.clone(),
                tick: config.tick,
                last_stats: AssembleStats::default(),
                pending: PendingFinal::new(
                    config.assemble.late_grace,
                    (config.max_pending_final / n).max(1),
                ),
                memory,
                forgotten: Vec::new(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("faultline-shard-{i}"))
                .spawn(move || shard.run())?;
            threads.push(handle);
        }
        let shards: Arc<[mpsc::Sender<ShardMsg>]> = senders.into();
        Ok((
            Pipeline {
                shards: shards.clone(),
                queued,
                max_queued: config.max_queued_spans.max(1),
                submit_wait: config.submit_wait,
            },
            Workers { shards, threads },
        ))
    }

    /// Queues spans on their shards; evaluator spans that link to a span of another
    /// trace are also sent, as one shared [`LinkedEvaluation`] each, to the shards of the
    /// traces they judge. All or nothing.
    pub async fn submit_spans(&self, spans: Vec<SpanRecord>, held: Held) -> Result<(), Full> {
        let n = self.shards.len();
        let mut per: Vec<Vec<SpanRecord>> = (0..n).map(|_| Vec::new()).collect();
        let mut linked: Vec<LinkedGroups> = (0..n).map(|_| Vec::new()).collect();
        for (target, evaluations) in linked_evaluations(&spans) {
            linked[target.shard(n)].push((target, evaluations));
        }
        for span in spans {
            per[span.trace_id.shard(n)].push(span);
        }
        let mut msgs: Vec<(usize, ShardMsg)> = per
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(i, v)| (i, ShardMsg::Spans(v, held.clone())))
            .collect();
        msgs.extend(
            linked
                .into_iter()
                .enumerate()
                .filter(|(_, groups)| !groups.is_empty())
                .map(|(i, groups)| (i, ShardMsg::Linked(groups, held.clone()))),
        );
        self.send_all(msgs).await
    }

    pub async fn submit_logs(&self, logs: Vec<LogEvent>, held: Held) -> Result<(), Full> {
        let n = self.shards.len();
        let mut per: Vec<Vec<LogEvent>> = (0..n).map(|_| Vec::new()).collect();
        for log in logs {
            // Logs without a trace id cannot be joined to a trajectory by the shards;
            // they go to shard 0, whose assembler counts them.
            let shard = log.trace_id.map(|t| t.shard(n)).unwrap_or(0);
            per[shard].push(log);
        }
        let msgs = per
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(i, v)| (i, ShardMsg::Logs(v, held.clone())))
            .collect();
        self.send_all(msgs).await
    }

    /// Spans and log records waiting in the shard queues.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    async fn send_all(&self, mut msgs: Vec<(usize, ShardMsg)>) -> Result<(), Full> {
        let weight: usize = msgs.iter().map(|(_, m)| m.weight()).sum();
        if weight == 0 {
            return Ok(());
        }
        let full = Full {
            retry_after: Duration::from_secs(1),
        };
        // Reserve queue room in spans first; wait a bounded time for the shards to
        // catch up.
        let deadline = tokio::time::Instant::now() + self.submit_wait;
        loop {
            let cur = self.queued.load(Ordering::Acquire);
            // A batch bigger than the whole budget is still let through when the queues
            // are empty, so that one large request is never refused forever.
            if cur == 0 || cur + weight <= self.max_queued {
                if self
                    .queued
                    .compare_exchange(cur, cur + weight, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    break;
                }
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(full);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Take channel permits in shard order (no deadlock between concurrent
        // submitters), then send everything: all or nothing.
        msgs.sort_by_key(|(i, _)| *i);
        let mut permits = Vec::with_capacity(msgs.len());
        for (i, _) in &msgs {
            match tokio::time::timeout_at(deadline, self.shards[*i].reserve()).await {
                Ok(Ok(permit)) => permits.push(permit),
                _ => {
                    self.queued.fetch_sub(weight, Ordering::AcqRel);
                    return Err(full);
                }
            }
        }
        for (permit, (_, msg)) in permits.into_iter().zip(msgs) {
            permit.send(msg);
        }
        Ok(())
    }
}

/// The pipeline's entrance: where the receivers and the write-ahead log's replay hand
/// decoded records (implemented by [`Pipeline`]; tests use a mock).
///
/// `held` is the request's charge to the memory budget: the pipeline keeps it until its
/// shards have taken the records (and charged them as buffered), so that records
/// waiting in the queues stay counted.
pub trait Handoff: Send + Sync + 'static {
    /// Hands spans over, waiting a bounded time for room. Err = overloaded (retryable).
    fn spans(
        &self,
        spans: Vec<SpanRecord>,
        held: Arc<Charge>,
    ) -> impl Future<Output = Result<(), Overloaded>> + Send;
    /// Hands log events over, waiting a bounded time for room. Err = overloaded.
    fn logs(
        &self,
        logs: Vec<LogEvent>,
        held: Arc<Charge>,
    ) -> impl Future<Output = Result<(), Overloaded>> + Send;
}

/// The pipeline had no room; the client should retry after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline is full, retry after {retry_after:?}")]
pub struct Overloaded {
    pub retry_after: Duration,
}

impl Handoff for Pipeline {
    async fn spans(&self, spans: Vec<SpanRecord>, held: Arc<Charge>) -> Result<(), Overloaded> {
        self.submit_spans(spans, Some(held))
            .await
            .map_err(|f| Overloaded {
                retry_after: f.retry_after,
            })
    }

    async fn logs(&self, logs: Vec<LogEvent>, held: Arc<Charge>) -> Result<(), Overloaded> {
        self.submit_logs(logs, Some(held))
            .await
            .map_err(|f| Overloaded {
                retry_after: f.retry_after,
            })
    }
}

/// A trace whose root is an evaluator span pointing at a span of another trace: the
/// carrier of post-hoc feedback (OpenInference), analysed as part of its target.
pub(crate) fn is_annotation_trace(t: &Trajectory) -> bool {
    t.root_span().is_some_and(|root| {
        root.is_evaluator() && root.links.iter().any(|l| l.trace_id != root.trace_id)
    })
}

impl Workers {
    /// Asks every shard to release its open traces (flagged incomplete) and waits for
    /// them to finish. Blocking: call from a blocking context.
    pub fn shutdown(self) {
        for tx in self.shards.iter() {
            // A shard that already stopped has dropped its receiver; nothing to do.
            let _ = tx.blocking_send(ShardMsg::Shutdown);
        }
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("A shard thread panicked during shutdown.");
            }
        }
    }
}

struct Shard {
    rx: mpsc::Receiver<ShardMsg>,
    assembler: Assembler,
    analyze: Arc<AnalyzeConfig>,
    stages: Arc<Stages>,
    metrics: Arc<SelfMetrics>,
    queued: Arc<AtomicUsize>,
    tick: Duration,
    last_stats: AssembleStats,
    pending: PendingFinal,
    memory: Option<ShardMemory>,
    /// Traces whose grace entry the assembler forgot (reused buffer).
    forgotten: Vec<TraceId>,
}

/// A shard's part of the memory budget. The assembler measures every record it takes
/// ([`crate::model::held`]) and keeps the bytes of its open traces
/// and grace entries within `share`, with its memory policy (oldest grace entries
/// forgotten, then oldest open traces released early, flagged incomplete and counted as
/// `memory` evictions); the shard charges what the assembler holds to the `pipeline`
/// component after every message and tick.
struct ShardMemory {
    budget: Arc<MemoryBudget>,
    share: u64,
    shards: usize,
    /// What this shard has added to the `pipeline` component.
    charged: i64,
}

impl ShardMemory {
    /// One shard's part of what the budget leaves for clients.
    fn share_of(budget: &MemoryBudget, shards: usize) -> u64 {
        budget.held_limit() / 100 * PIPELINE_SHARE_PERCENT / shards.max(1) as u64
    }

    /// The share again, when the budget's reserve changed since it was taken.
    fn changed_share(&mut self) -> Option<u64> {
        let share = Self::share_of(&self.budget, self.shards);
        (share != self.share).then(|| {
            self.share = share;
            share
        })
    }

    /// Charges the bytes now held.
    fn held(&mut self, bytes: u64) {
        let target = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.budget
            .adjust(Component::Pipeline, target - self.charged);
        self.charged = target;
    }
}

impl Drop for ShardMemory {
    fn drop(&mut self) {
        self.budget.adjust(Component::Pipeline, -self.charged);
    }
}

/// Released analyses waiting for the end of their grace period. A trace's deadline is
/// its first release plus `late_grace`; revisions replace the analysis, not the deadline.
struct PendingFinal {
    grace: Duration,
    max: usize,
    by_trace: std::collections::HashMap<TraceId, Arc<Analysis>>,
    /// (deadline, trace) in first-release order, so deadlines are sorted.
    order: std::collections::VecDeque<(Instant, TraceId)>,
    /// Traces finalized early (over the bound) whose grace may not be over: a revision
    /// of one of them must not be finalized a second time. Bounded like `by_trace`.
    finalized: std::collections::HashSet<TraceId>,
    finalized_order: std::collections::VecDeque<TraceId>,
}

impl PendingFinal {
    fn new(grace: Duration, max: usize) -> PendingFinal {
        PendingFinal {
            grace,
            max,
            by_trace: std::collections::HashMap::new(),
            order: std::collections::VecDeque::new(),
            finalized: std::collections::HashSet::new(),
            finalized_order: std::collections::VecDeque::new(),
        }
    }

    /// Records a release; returns analyses to finalize now (over the bound).
    fn released(&mut self, analysis: Arc<Analysis>, now: Instant, due: &mut Vec<Arc<Analysis>>) {
        let id = analysis.trajectory.trace_id;
        if self.finalized.contains(&id) {
            return;
        }
        if self.by_trace.insert(id, analysis).is_none() {
            self.order.push_back((now + self.grace, id));
        }
        while self.by_trace.len() > self.max {
            let Some((_, id)) = self.order.pop_front() else {
                break;
            };
            due.extend(self.by_trace.remove(&id));
            self.finalized.insert(id);
            self.finalized_order.push_back(id);
            if self.finalized_order.len() > self.max {
                if let Some(old) = self.finalized_order.pop_front() {
                    self.finalized.remove(&old);
                }
            }
        }
    }

    /// Finalizes `id` now, if it waits: its trace was closed early, no revision follows.
    fn close(&mut self, id: TraceId, due: &mut Vec<Arc<Analysis>>) {
        if let Some(analysis) = self.by_trace.remove(&id) {
            // Its entry in `order` goes stale and is skipped when it comes up.
            due.push(analysis);
        }
    }

    fn due(&mut self, now: Instant, due: &mut Vec<Arc<Analysis>>) {
        while let Some(&(deadline, id)) = self.order.front() {
            if deadline > now {
                break;
            }
            self.order.pop_front();
            due.extend(self.by_trace.remove(&id));
        }
    }

    fn drain(&mut self, due: &mut Vec<Arc<Analysis>>) {
        for (_, id) in self.order.drain(..) {
            due.extend(self.by_trace.remove(&id));
        }
    }
}

impl Shard {
    fn run(mut self) {
        let mut out: Vec<Arc<Trajectory>> = Vec::new();
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let now = Instant::now();
            if now >= next_tick {
                self.assembler.tick(now, &mut out);
                next_tick = now + self.tick;
                self.release(&mut out);
            }
            let msg = match recv_timeout(&mut self.rx, next_tick) {
                Recv::Msg(m) => m,
                Recv::Timeout => continue,
                Recv::Closed => ShardMsg::Shutdown,
            };
            let now = Instant::now();
            let weight = msg.weight();
            let stop = match msg {
                ShardMsg::Spans(spans, _held) => {
                    self.assembler.push_spans(spans, now, &mut out);
                    false
                }
                ShardMsg::Logs(logs, _held) => {
                    self.assembler.push_logs(logs, now, &mut out);
                    false
                }
                ShardMsg::Linked(groups, _held) => {
                    for (target, evaluations) in groups {
                        self.assembler
                            .push_linked(target, evaluations, now, &mut out);
                    }
                    false
                }
                ShardMsg::Shutdown => {
                    self.assembler.drain(&mut out);
                    true
                }
            };
            self.queued.fetch_sub(weight, Ordering::AcqRel);
            self.release(&mut out);
            if stop {
                let mut due = Vec::new();
                self.pending.drain(&mut due);
                self.finalize(due);
                return;
            }
        }
    }

    fn release(&mut self, out: &mut Vec<Arc<Trajectory>>) {
        let now = Instant::now();
        let mut due = Vec::new();
        for trajectory in out.drain(..) {
            if is_annotation_trace(&trajectory) {
                // Post-hoc evaluations of another trace (sent to that trace's shard as
                // linked spans): not an agent run of its own.
                self.metrics.annotation_traces.inc();
                self.stages.not_a_trajectory(trajectory.trace_id);
                continue;
            }
            let analysis = Arc::new(analyze(trajectory, &self.analyze));
            self.metrics.trajectories_analysed.inc();
            self.stages.publish(&analysis);
            self.pending.released(analysis, now, &mut due);
        }
        // Grace entries forgotten under the bounds: closed for good, so their analyses
        // are final now, and holding them to the end of the grace would keep the bytes
        // the assembler just gave up.
        self.assembler.take_forgotten(&mut self.forgotten);
        for id in self.forgotten.drain(..) {
            self.pending.close(id, &mut due);
        }
        self.pending.due(now, &mut due);
        self.finalize(due);
        self.publish_stats();
    }

    fn finalize(&self, due: Vec<Arc<Analysis>>) {
        for analysis in due {
            for anomaly in &analysis.trajectory.anomalies {
                self.metrics
                    .trajectory_anomalies
                    .get_or_create(&KindLabels {
                        kind: anomaly.kind(),
                    })
                    .inc();
            }
            self.stages.finalize(analysis);
        }
    }

    fn publish_stats(&mut self) {
        let s = self.assembler.stats();
        if let Some(memory) = &mut self.memory {
            memory.held(s.buffered_bytes);
            if let Some(share) = memory.changed_share() {
                self.assembler.set_max_buffered_bytes(share);
            }
        }
        let last = &self.last_stats;
        let m = &self.metrics;
        m.late_spans
            .inc_by(s.late_dropped.saturating_sub(last.late_dropped));
        m.late_spans_merged
            .inc_by(s.late_merged.saturating_sub(last.late_merged));
        m.duplicate_spans
            .inc_by(s.duplicates.saturating_sub(last.duplicates));
        m.linked_dropped(
            "per_trace_cap",
            s.linked_dropped.saturating_sub(last.linked_dropped),
        );
        m.evicted(
            "memory",
            s.evicted_memory.saturating_sub(last.evicted_memory),
        );
        m.evicted(
            "max_age",
            s.evicted_max_age.saturating_sub(last.evicted_max_age),
        );
        m.evicted(
            "trace_too_large",
            s.evicted_too_large.saturating_sub(last.evicted_too_large),
        );
        m.buffered_spans
            .inc_by(s.buffered_spans as i64 - last.buffered_spans as i64);
        m.open_traces
            .inc_by(s.open_traces as i64 - last.open_traces as i64);
        self.last_stats = s;
    }
}

enum Recv {
    Msg(ShardMsg),
    Timeout,
    Closed,
}

/// Blocking receive with a deadline, on a shard thread (not on the async runtime).
fn recv_timeout(rx: &mut mpsc::Receiver<ShardMsg>, deadline: Instant) -> Recv {
    match rx.try_recv() {
        Ok(m) => return Recv::Msg(m),
        Err(mpsc::error::TryRecvError::Disconnected) => return Recv::Closed,
        Err(mpsc::error::TryRecvError::Empty) => {}
    }
    // Park on the channel with a small current-thread runtime owned by this call's
    // thread: cheap, and it keeps the shard off the shared runtime.
    thread_local! {
        static RT: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .ok();
    }
    RT.with(|rt| {
        let Some(rt) = rt else {
            // No timer runtime could be built: fall back to polling.
            std::thread::sleep(Duration::from_millis(1));
            return Recv::Timeout;
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        rt.block_on(async {
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(m)) => Recv::Msg(m),
                Ok(None) => Recv::Closed,
                Err(_) => Recv::Timeout,
            }
        })
    })
}

#[cfg(test)]
mod tests;
