//! Self-metrics: every metric name faultline exports about itself, in one place.
//!
//! Labels come only from closed sets (transport, reject reason, eviction reason), never
//! from telemetry content, so this registry cannot grow with hostile input.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
        registry.register(
            "faultline_spans_received",
            "Spans and log records accepted into the pipeline, by transport",
            m.spans_received.clone(),
        );
        registry.register(
            "faultline_spans_rejected",
            "Spans and log records refused, by reason",
            m.spans_rejected.clone(),
        );
        registry.register(
            "faultline_traces_evicted",
            "Traces released before they were known to be complete, by reason",
            m.traces_evicted.clone(),
        );
        registry.register(
            "faultline_late_spans",
            "Spans that arrived after their trace's grace period (counted, not merged)",
            m.late_spans.clone(),
        );
        registry.register(
            "faultline_late_spans_merged",
            "Spans that arrived after release, within the grace period, and were merged",
            m.late_spans_merged.clone(),
        );
        registry.register(
            "faultline_duplicate_spans",
            "Exact duplicates of buffered spans (client retries), dropped",
            m.duplicate_spans.clone(),
        );
        registry.register(
            "faultline_buffered_spans",
            "Spans held in open traces and grace periods",
            m.buffered_spans.clone(),
        );
        registry.register(
            "faultline_open_traces",
            "Traces being assembled",
            m.open_traces.clone(),
        );
        registry.register(
            "faultline_trajectories_analysed",
            "Trajectories released and analysed, revisions included",
            m.trajectories_analysed.clone(),
        );
        registry.register(
            "faultline_annotation_traces",
            "Traces that only carry post-hoc evaluations of another trace, merged there",
            m.annotation_traces.clone(),
        );
        registry.register(
            "faultline_trajectory_anomalies",
            "Malformed telemetry in finalized trajectories (orphans, extra roots, conflicting \
             duplicates, negative durations, cycles, depth truncations), by kind",
            m.trajectory_anomalies.clone(),
        );
        registry.register(
            "faultline_connections",
            "Open connections, by listener (otlp_grpc, otlp_http, api)",
            m.connections.clone(),
        );
        registry.register(
            "faultline_connections_timed_out",
            "Connections closed for sending no request (or no HTTP/2 preface) within the \
             header read timeout, by listener",
            m.connections_timed_out.clone(),
        );
        registry.register(
            "faultline_connections_at_cap",
            "Times a listener stopped accepting because it held max_connections, by listener",
            m.connections_at_cap.clone(),
        );
        registry.register(
            "faultline_auth_refused",
            "Requests refused by a listener's token or Host check, by listener (otlp_grpc, \
             otlp_http, api) and reason (missing, malformed, unknown token; host not allowed)",
            m.auth_refused.clone(),
        );
        registry.register(
            "faultline_build_info",
            "Build information; the value is always 1",
            m.build_info.clone(),
        );
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
/// `faultline_memory_used_bytes{component}` (read from the budget at each scrape) and
/// `faultline_memory_refused_total`.
pub fn register_memory(
    registry: &mut Registry,
    budget: std::sync::Arc<crate::memory::MemoryBudget>,
) {
    let limit: Gauge = Gauge::default();
    limit.set(i64::try_from(budget.limit()).unwrap_or(i64::MAX));
    registry.register(
        "faultline_memory_budget_bytes",
        "The memory budget ([limits] memory_bytes): past 80% of it receivers refuse new \
         requests with a retryable status; at it the shards release their oldest open \
         traces early",
        limit,
    );
    registry.register(
        "faultline_memory_refused",
        "Requests refused (retryably) because the memory budget was past its soft mark",
        budget.refused_counter(),
    );
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
            "faultline_memory_used_bytes",
            "Bytes charged to the memory budget, by component (requests: decoded requests \
             in flight; pipeline: records queued for and buffered by the shards; store: \
             analyses waiting for the store writer)",
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
