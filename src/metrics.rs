//! Self-metrics: every metric name faultline exports about itself, in one place.
//!
//! Each metric is a [`MetricDef`] constant below: its name (prometheus-client appends
//! `_total` to counters), its help and, by its type parameter, its type. Modules that
//! own a metric's handles register it with [`register`] and its constant, so the
//! compiler checks that the handle has the defined type; no module names a metric
//! itself (`tests/it/tidy.rs` checks the sources for it).
//!
//! Labels come only from closed sets (transport, reject reason, eviction reason), never
//! from telemetry content, so this registry cannot grow with hostile input. The
//! aggregation families' cohort labels are bounded by the cardinality budget instead
//! (`aggregate::prom`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A self-metric: its name, its help and (by `K`, one of [`kind`]) its type.
pub struct MetricDef<K> {
    pub name: &'static str,
    pub help: &'static str,
    kind: std::marker::PhantomData<K>,
}

impl<K> MetricDef<K> {
    const fn new(name: &'static str, help: &'static str) -> MetricDef<K> {
        MetricDef {
            name,
            help,
            kind: std::marker::PhantomData,
        }
    }
}

/// The metric types of [`MetricDef`]: a family has the type of its members.
pub mod kind {
    pub enum Counter {}
    pub enum Gauge {}
    pub enum Histogram {}
}

/// The [`kind`] of a prometheus-client metric.
pub trait Kinded {
    type Kind;
}

impl<N, A> Kinded for Counter<N, A> {
    type Kind = kind::Counter;
}

impl<N, A> Kinded for Gauge<N, A> {
    type Kind = kind::Gauge;
}

impl Kinded for prometheus_client::metrics::histogram::Histogram {
    type Kind = kind::Histogram;
}

impl<S, M: Kinded, C> Kinded for Family<S, M, C> {
    type Kind = M::Kind;
}

/// Registers `metric` in `registry` under `def`'s name and help.
pub fn register<M>(registry: &mut Registry, def: &MetricDef<M::Kind>, metric: M)
where
    M: Kinded + prometheus_client::registry::Metric,
{
    registry.register(def.name, def.help, metric);
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerReasonLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: &'static str,
}

/// The self-metrics. Cheap to update from any thread (atomics).
pub struct SelfMetrics {
    pub spans_received: Family<TransportLabels, Counter>,
    pub spans_rejected: Family<ReasonLabels, Counter>,
    pub traces_evicted: Family<ReasonLabels, Counter>,
    pub late_spans: Counter,
    pub late_spans_merged: Counter,
    pub duplicate_spans: Counter,
    pub linked_evaluations_dropped: Family<ReasonLabels, Counter>,
    pub buffered_spans: Gauge,
    pub open_traces: Gauge,
    pub trajectories_analysed: Counter,
    pub annotation_traces: Counter,
    pub trajectory_anomalies: Family<KindLabels, Counter>,
    pub connections: Family<ListenerLabels, Gauge>,
    pub connections_timed_out: Family<ListenerLabels, Counter>,
    pub connections_at_cap: Family<ListenerLabels, Counter>,
    pub build_info: Family<VersionLabels, Gauge>,
    pub auth_refused: Family<ListenerReasonLabels, Counter>,
}

impl SelfMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> SelfMetrics {
        let m = SelfMetrics {
            spans_received: Family::default(),
            spans_rejected: Family::default(),
            traces_evicted: Family::default(),
            late_spans: Counter::default(),
            late_spans_merged: Counter::default(),
            duplicate_spans: Counter::default(),
            linked_evaluations_dropped: Family::default(),
            buffered_spans: Gauge::default(),
            open_traces: Gauge::default(),
            trajectories_analysed: Counter::default(),
            annotation_traces: Counter::default(),
            trajectory_anomalies: Family::default(),
            connections: Family::default(),
            connections_timed_out: Family::default(),
            connections_at_cap: Family::default(),
            build_info: Family::default(),
            auth_refused: Family::default(),
        };
        // prometheus-client appends `_total` to counters.
        register(registry, &SPANS_RECEIVED, m.spans_received.clone());
        register(registry, &SPANS_REJECTED, m.spans_rejected.clone());
        register(registry, &TRACES_EVICTED, m.traces_evicted.clone());
        register(registry, &LATE_SPANS, m.late_spans.clone());
        register(registry, &LATE_SPANS_MERGED, m.late_spans_merged.clone());
        register(registry, &DUPLICATE_SPANS, m.duplicate_spans.clone());
        register(
            registry,
            &LINKED_EVALUATIONS_DROPPED,
            m.linked_evaluations_dropped.clone(),
        );
        register(registry, &BUFFERED_SPANS, m.buffered_spans.clone());
        register(registry, &OPEN_TRACES, m.open_traces.clone());
        register(
            registry,
            &TRAJECTORIES_ANALYSED,
            m.trajectories_analysed.clone(),
        );
        register(registry, &ANNOTATION_TRACES, m.annotation_traces.clone());
        register(
            registry,
            &TRAJECTORY_ANOMALIES,
            m.trajectory_anomalies.clone(),
        );
        register(registry, &CONNECTIONS, m.connections.clone());
        register(
            registry,
            &CONNECTIONS_TIMED_OUT,
            m.connections_timed_out.clone(),
        );
        register(registry, &CONNECTIONS_AT_CAP, m.connections_at_cap.clone());
        register(registry, &AUTH_REFUSED, m.auth_refused.clone());
        register(registry, &BUILD_INFO, m.build_info.clone());
        m.build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        m
    }

    /// Creates the series of every known label value at zero, so that dashboards and
    /// alert rules see `0` rather than no data before the first event.
    pub fn init_series(&self, transports: &[&'static str], reject_reasons: &[&'static str]) {
        for t in transports {
            self.received(t, 0);
        }
        for r in reject_reasons {
            self.rejected(r, 0);
        }
        for r in ["memory", "max_age", "trace_too_large"] {
            self.evicted(r, 0);
        }
        self.linked_dropped("per_trace_cap", 0);
    }

    /// The connection metrics of one listener (their series exist from this call on).
    pub fn listener(&self, listener: &'static str) -> crate::net::ConnMetrics {
        let labels = ListenerLabels { listener };
        crate::net::ConnMetrics {
            open: self.connections.get_or_create(&labels).clone(),
            timed_out: self.connections_timed_out.get_or_create(&labels).clone(),
            at_cap: self.connections_at_cap.get_or_create(&labels).clone(),
        }
    }

    /// The token refusal counters of one listener, in `AuthRefusal::ALL` order (their
    /// series exist from this call on).
    pub fn token_refusals(&self, listener: &'static str) -> [Counter; 3] {
        crate::security::AuthRefusal::ALL.map(|r| {
            self.auth_refused
                .get_or_create(&ListenerReasonLabels {
                    listener,
                    reason: r.as_str(),
                })
                .clone()
        })
    }

    /// The counter of requests refused by the API's `Host` check.
    pub fn host_refusals(&self) -> Counter {
        self.auth_refused
            .get_or_create(&ListenerReasonLabels {
                listener: "api",
                reason: "host",
            })
            .clone()
    }

    pub fn received(&self, transport: &'static str, n: u64) {
        self.spans_received
            .get_or_create(&TransportLabels { transport })
            .inc_by(n);
    }

    pub fn rejected(&self, reason: &'static str, n: u64) {
        self.spans_rejected
            .get_or_create(&ReasonLabels { reason })
            .inc_by(n);
    }

    pub fn evicted(&self, reason: &'static str, n: u64) {
        self.traces_evicted
            .get_or_create(&ReasonLabels { reason })
            .inc_by(n);
    }

    /// Linked evaluations dropped; `per_trace_cap`: their target trace already held
    /// `max_linked_per_trace`.
    pub fn linked_dropped(&self, reason: &'static str, n: u64) {
        self.linked_evaluations_dropped
            .get_or_create(&ReasonLabels { reason })
            .inc_by(n);
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: &'static str,
}

/// Registers the memory budget's series: `faultline_memory_budget_bytes`,
/// `faultline_memory_reserved_bytes`, `faultline_memory_used_bytes{component}` (read
/// from the budget at each scrape) and `faultline_memory_refused_total`.
pub fn register_memory(
    registry: &mut Registry,
    budget: std::sync::Arc<crate::memory::MemoryBudget>,
) {
    let limit: Gauge = Gauge::default();
    limit.set(i64::try_from(budget.limit()).unwrap_or(i64::MAX));
    register(registry, &MEMORY_BUDGET_BYTES, limit);
    register(registry, &MEMORY_RESERVED_BYTES, budget.reserved_gauge());
    register(registry, &MEMORY_REFUSED, budget.refused_counter());
    registry.register_collector(Box::new(MemoryUsed(budget)));
}

#[derive(Debug)]
struct MemoryUsed(std::sync::Arc<crate::memory::MemoryBudget>);

impl prometheus_client::collector::Collector for MemoryUsed {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let mut family = encoder.encode_descriptor(
            MEMORY_USED_BYTES.name,
            MEMORY_USED_BYTES.help,
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for component in crate::memory::Component::ALL {
            let labels = ComponentLabels {
                component: component.as_str(),
            };
            let gauge = prometheus_client::metrics::gauge::ConstGauge::new(
                i64::try_from(self.0.used_by(component)).unwrap_or(i64::MAX),
            );
            gauge.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

// Ingest, pipeline, listeners and the memory budget (`SelfMetrics`, `register_memory`).

pub const SPANS_RECEIVED: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_spans_received",
    "Spans and log records accepted into the pipeline, by transport",
);
pub const SPANS_REJECTED: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_spans_rejected",
    "Spans and log records refused, by reason",
);
pub const TRACES_EVICTED: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_traces_evicted",
    "Traces released before they were known to be complete, by reason",
);
pub const LATE_SPANS: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_late_spans",
    "Spans that arrived after their trace's grace period (counted, not merged)",
);
pub const LATE_SPANS_MERGED: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_late_spans_merged",
    "Spans that arrived after release, within the grace period, and were merged",
);
pub const DUPLICATE_SPANS: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_duplicate_spans",
    "Exact duplicates of buffered spans (client retries), dropped",
);
pub const LINKED_EVALUATIONS_DROPPED: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_linked_evaluations_dropped",
    "Post-hoc evaluations of a trace (evaluator spans of other traces) dropped, by reason \
     (per_trace_cap: the trace already held max_linked_per_trace)",
);
pub const BUFFERED_SPANS: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_buffered_spans",
    "Spans held in open traces and grace periods",
);
pub const OPEN_TRACES: MetricDef<kind::Gauge> =
    MetricDef::new("faultline_open_traces", "Traces being assembled");
pub const TRAJECTORIES_ANALYSED: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_trajectories_analysed",
    "Trajectories released and analysed, revisions included",
);
pub const ANNOTATION_TRACES: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_annotation_traces",
    "Traces that only carry post-hoc evaluations of another trace, merged there",
);
pub const TRAJECTORY_ANOMALIES: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_trajectory_anomalies",
    "Malformed telemetry in finalized trajectories (orphans, extra roots, conflicting \
             duplicates, negative durations, cycles, depth truncations), by kind",
);
pub const CONNECTIONS: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_connections",
    "Open connections, by listener (otlp_grpc, otlp_http, api)",
);
pub const CONNECTIONS_TIMED_OUT: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_connections_timed_out",
    "Connections closed for sending no request (or no HTTP/2 preface) within the \
             header read timeout, by listener",
);
pub const CONNECTIONS_AT_CAP: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_connections_at_cap",
    "Times a listener stopped accepting because it held max_connections, by listener",
);
pub const AUTH_REFUSED: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_auth_refused",
    "Requests refused by a listener's token or Host check, by listener (otlp_grpc, \
             otlp_http, api) and reason (missing, malformed, unknown token; host not allowed)",
);
pub const BUILD_INFO: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_build_info",
    "Build information; the value is always 1",
);
pub const MEMORY_BUDGET_BYTES: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_memory_budget_bytes",
    "The memory budget ([limits] memory_bytes): past 80% of it receivers refuse new \
         requests with a retryable status; at it the shards release their oldest open \
         traces early",
);
pub const MEMORY_RESERVED_BYTES: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_memory_reserved_bytes",
    "The part of the memory budget set aside at startup for the process's own footprint \
         (resident memory before serving, plus the store writer's page cache); the marks \
         are parts of the rest",
);
pub const MEMORY_REFUSED: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_memory_refused",
    "Requests refused (retryably) because the memory budget was past its soft mark",
);
/// Encoded by the memory budget's collector (`MemoryUsed`), not registered.
pub const MEMORY_USED_BYTES: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_memory_used_bytes",
    "Bytes charged to the memory budget, by component (requests: decoded requests \
     in flight; pipeline: records queued for and buffered by the shards; wal: the \
     write-ahead log's table of traces not yet stored; store: analyses waiting for \
     the store writer; recent: the recent list's analyses; an analysis both hold is \
     counted once, to the first holder still holding it)",
);

// Aggregation families (`aggregate::prom`); labels: `outcome`, `step`, `kind` and the cohort dimensions, bounded by the cardinality budget.

pub const TRAJECTORIES: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_trajectories",
    "Finalized trajectories by outcome and cohort (labels beyond the top values are `other`)",
);
pub const STEP_RUNS: MetricDef<kind::Counter> =
    MetricDef::new("faultline_step_runs", "Step runs by step and cohort");
pub const STEP_FAILURES: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_step_failures",
    "Original (not propagated) failure findings by step, kind and cohort",
);
pub const ROOT_CAUSES: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_root_causes",
    "Failed trajectories by the step and kind blamed, and the blamed step's cohort",
);
pub const STEP_DURATION_SECONDS: MetricDef<kind::Histogram> = MetricDef::new(
    "faultline_step_duration_seconds",
    "Duration of step runs (the outermost span of each run) by step",
);

// The write-ahead log (`wal::WalMetrics`).

pub const WAL_APPENDED_RECORDS: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_wal_appended_records",
    "Accepted requests appended to the write-ahead log",
);
pub const WAL_APPENDED_BYTES: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_wal_appended_bytes",
    "Bytes appended to write-ahead log segments (compressed)",
);
pub const WAL_FSYNCS: MetricDef<kind::Counter> =
    MetricDef::new("faultline_wal_fsyncs", "fsync calls of the write-ahead log");
pub const WAL_REPLAYED_RECORDS: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_wal_replayed_records",
    "Write-ahead log records replayed into the pipeline at startup",
);
pub const WAL_REPLAYED_ITEMS: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_wal_replayed_items",
    "Spans and log records replayed from the write-ahead log at startup",
);
pub const WAL_CORRUPT_SEGMENTS: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_wal_corrupt_segments",
    "Write-ahead log segments read only up to a torn or corrupt record at startup",
);
pub const WAL_EXPIRED_TRACES: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_wal_expired_traces",
    "Traces in the write-ahead log never finalized by the pipeline (late data, logs of unknown traces), released by age",
);
pub const WAL_ERRORS: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_wal_errors",
    "Write-ahead log write or fsync failures",
);
pub const WAL_REFUSED_FULL: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_wal_refused_full",
    "Requests refused (retryably) because the write-ahead log would pass [wal] max_bytes",
);
pub const WAL_DISK_BYTES: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_wal_disk_bytes",
    "Bytes of the write-ahead log's segment files on disk",
);
pub const WAL_SEGMENTS: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_wal_segments",
    "Write-ahead log segment files on disk",
);
pub const WAL_TRACKED_TRACES: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_wal_tracked_traces",
    "Traces with data in the write-ahead log not yet stored and counted",
);

// The OTLP metrics push (`push::PushMetrics`).

pub const METRICS_PUSH_FAILURES: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_metrics_push_failures",
    "OTLP metrics pushes that failed (no connection, timeout, or an error answer)",
);

// The store writer (`store::writer`); labels `op`, `reason`.

pub const STORE_WRITES: MetricDef<kind::Counter> =
    MetricDef::new("faultline_store_writes", "Store writes committed, by op");
pub const STORE_DROPPED: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_store_dropped",
    "Store writes not made: successes shed while the store is behind (shed), writes \
             given up at shutdown after failing (write_error), unencodable (encode_error); \
             queue_full is no longer used",
);
pub const STORE_ERRORS: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_store_errors",
    "Store transactions that failed (retries included)",
);
pub const STORE_QUEUE: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_store_queue",
    "Writes waiting for the store writer",
);
pub const STORE_BYTES: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_store_bytes",
    "Bytes used by the store's live pages",
);
pub const STORE_DEGRADED: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_store_degraded",
    "1 while the store is degraded for the reason: behind, failing, corrupted",
);
pub const STORE_RETAINED: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_store_retained",
    "Trajectories deleted by retention, by reason",
);

// The alert engine (`alerts::metrics`); labels `signal`, `step`, `kind`, `reason`.

pub const ALERT_FIRING: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_alert_firing",
    "Firing built-in alerts (series) by signal, step and kind (spike or sustained)",
);
pub const ALERTS_SUPPRESSED: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_alerts_suppressed",
    "Alerts, series, incidents or delivery batches not created or sent because a bound was reached, by bound",
);
pub const ALERT_SERIES: MetricDef<kind::Gauge> = MetricDef::new(
    "faultline_alert_series",
    "Series (step, or step and one cohort value) the alert engine tracks",
);
pub const ALERT_EVALUATIONS: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_alert_evaluations",
    "Event minutes evaluated by the alert engine",
);

// Alert delivery (`alerts::metrics::DeliveryMetrics`); labels `destination`, `result`.

pub const ALERT_NOTIFICATIONS: MetricDef<kind::Counter> = MetricDef::new(
    "faultline_alert_notifications",
    "Alert notification requests by destination (alertmanager, webhook) and result (ok, error)",
);
