//! The alert engine's and the delivery task's self-metrics: their handles and label
//! sets, registered under the names and help of [`crate::metrics`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{
    register, ALERTS_SUPPRESSED, ALERT_EVALUATIONS, ALERT_FIRING, ALERT_NOTIFICATIONS, ALERT_SERIES,
};

/// The labels of `faultline_alert_firing`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FiringLabels {
    pub(super) signal: &'static str,
    pub(super) step: String,
    pub(super) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The bounds whose refusals `faultline_alerts_suppressed_total` counts.
const SUPPRESSED_REASONS: [&str; 4] = ["max_series", "max_alerts", "max_incidents", "queue_full"];

/// The engine's metrics, registered in the server's registry.
pub(super) struct Metrics {
    pub(super) firing: Family<FiringLabels, Gauge>,
    suppressed: Family<ReasonLabel, Counter>,
    pub(super) series: Gauge,
    pub(super) evaluations: Counter,
}

impl Metrics {
    /// Registers the engine's metrics; the series of every suppression reason exist
    /// from this call on.
    pub(super) fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            firing: Family::default(),
            suppressed: Family::default(),
            series: Gauge::default(),
            evaluations: Counter::default(),
        };
        register(registry, &ALERT_FIRING, m.firing.clone());
        register(registry, &ALERTS_SUPPRESSED, m.suppressed.clone());
        register(registry, &ALERT_SERIES, m.series.clone());
        register(registry, &ALERT_EVALUATIONS, m.evaluations.clone());
        for reason in SUPPRESSED_REASONS {
            let _ = m.suppressed.get_or_create(&ReasonLabel { reason });
        }
        m
    }

    /// Counts one refusal because the bound `reason` was reached.
    pub(super) fn suppressed(&self, reason: &'static str) {
        self.suppressed.get_or_create(&ReasonLabel { reason }).inc();
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    destination: &'static str,
    result: &'static str,
}

/// The delivery task's counters.
pub struct DeliveryMetrics {
    sent: Family<DeliveryLabels, Counter>,
}

impl DeliveryMetrics {
    pub fn register(registry: &mut Registry) -> DeliveryMetrics {
        let sent = Family::<DeliveryLabels, Counter>::default();
        register(registry, &ALERT_NOTIFICATIONS, sent.clone());
        for destination in ["alertmanager", "webhook"] {
            for result in ["ok", "error"] {
                let _ = sent.get_or_create(&DeliveryLabels {
                    destination,
                    result,
                });
            }
        }
        DeliveryMetrics { sent }
    }

    /// Counts one request to `destination`.
    pub(super) fn sent(&self, destination: &'static str, ok: bool) {
        self.sent
            .get_or_create(&DeliveryLabels {
                destination,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }
}
