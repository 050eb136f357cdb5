//! Alerting on step-specific failure spikes and sustained shifts, in event time.
//!
//! Input: per-minute counts of step runs, failed runs and root causes, per step and per
//! step × one cohort value, read from the aggregator's event-time minute buckets (the
//! [`CountSource`] implemented here for [`Aggregator`], through its breakdown query), so
//! the alerts follow the same counts, cohorts and cardinality budget as `/metrics` and
//! the breakdown API. Output: [`Alert`]s for `GET /api/v1/alerts`, the gauge
//! `faultline_alert_firing{signal,step,kind}`, and incidents delivered to Alertmanager
//! and a webhook ([`deliver`]).
//!
//! How it decides (details and defaults in `README.md` beside this file):
//! - a **spike** is a window of 1 to `spike_window_minutes` minutes whose failure count
//!   is significant against the learned baseline (one-sided binomial test, Bonferroni
//!   over the windows), at least `spike_min_ratio` times it, with at least
//!   `min_failures` failures;
//! - a **sustained** shift is a Bernoulli CUSUM tuned to `shift_ratio` × the baseline,
//!   whose per-minute step is capped so that it needs `sustained_min_minutes` of
//!   elevated rate to cross its threshold: a short burst can never be labelled a shift;
//! - lifecycle pending → firing → resolved with hysteresis: a spike fires at once when
//!   overwhelming, else after `confirm_evaluations` hot minutes, and resolves after
//!   `resolve_minutes` calm ones (a lower bar than the one that fired it); a shift
//!   resolves when the last ten minutes are back near the baseline, and becomes the
//!   new baseline after `relearn_after`;
//! - firing alerts are grouped into incidents by (step, kind): ten thousand
//!   cohorts spiking at once in one step are one notification listing the top cohorts.
//!
//! Invariants:
//! - Event time only: the clock is the newest event minute of the source; a minute is
//!   evaluated once `settle_minutes` newer data exists (the open minute is only tested
//!   for overwhelming spikes). A replay alerts as live traffic did.
//! - Bounded: at most `max_series` series, `max_alerts` open alerts, `max_incidents`
//!   incidents, `max_recent` resolved alerts; the delivery channel is bounded and each
//!   destination is rate-limited. Every refusal is counted in
//!   `faultline_alerts_suppressed_total{reason}`.
//! - The engine is synchronous and never blocks a shard: it reads the aggregator under
//!   its lock for one short query at a time, on a blocking thread of its own.

pub mod config;
pub mod deliver;
mod engine;
mod metrics;
mod payload;
mod stats;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::aggregate::{Aggregator, BreakdownQuery, Window};

pub use config::{AlertsConfig, AlertsConfigError, RawAlertsConfig};
pub use engine::{
    Alert, AlertEngine, AlertFilter, AlertKind, AlertState, AlertStats, CohortKey, CountSource,
    ReasonLookup, SeriesCounts, Signal,
};
pub use stats::{bernoulli_llr, binomial_upper_tail};

use engine::NANOS_PER_MINUTE;

/// Delivery batches waiting for the delivery task at most.
const QUEUE: usize = 64;

impl CountSource for Aggregator {
    fn newest_minute(&self) -> Option<u64> {
        if self.stats().recorded == 0 {
            return None;
        }
        let query = BreakdownQuery {
            window: Window::Last { minutes: 1 },
            by: Vec::new(),
        };
        self.breakdown(&query, self.now())
            .ok()
            .map(|b| b.from_unix_nano / NANOS_PER_MINUTE)
    }

    fn minute_fingerprint(&self, minute: u64) -> (u64, u64, u64) {
        let from = minute.saturating_mul(NANOS_PER_MINUTE);
        let query = BreakdownQuery {
            window: Window::Range {
                from,
                to: from.saturating_add(NANOS_PER_MINUTE),
            },
            by: Vec::new(),
        };
        self.breakdown(&query, self.now())
            .map(|b| {
                b.steps.iter().fold((0, 0, 0), |acc, r| {
                    (acc.0 + r.runs, acc.1 + r.failures, acc.2 + r.root_causes)
                })
            })
            .unwrap_or((0, 0, 0))
    }

    fn minute_counts(&self, minute: u64, out: &mut Vec<SeriesCounts>) {
        let from = minute.saturating_mul(NANOS_PER_MINUTE);
        let window = Window::Range {
            from,
            to: from.saturating_add(NANOS_PER_MINUTE),
        };
        let now = self.now();
        let dims = self.config().dimensions.len();
        for by in std::iter::once(None).chain((0..dims).map(Some)) {
            let query = BreakdownQuery {
                window,
                by: by.into_iter().collect(),
            };
            // Outside the horizon: nothing to count.
            let Ok(b) = self.breakdown(&query, now) else {
                return;
            };
            for row in b.steps {
                let cohort = match by {
                    None => None,
                    Some(d) => {
                        // Absent values and the folded `other` are no cohort of their own.
                        let Some(Some(value)) = row.cohort.first() else {
                            continue;
                        };
                        if &**value == "other" {
                            continue;
                        }
                        Some((self.config().dimensions[d].name.clone(), value.clone()))
                    }
                };
                out.push(SeriesCounts {
                    step: row.step.clone(),
                    cohort,
                    runs: row.runs,
                    failures: row.failures,
                    root_causes: row.root_causes,
                });
            }
        }
    }
}

/// The running alert tasks: the evaluation loop and, when a destination is set, the
/// delivery task. Both stop when `stop` turns true.
pub struct AlertTasks {
    pub engine: Arc<AlertEngine>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Creates the engine (registering its metrics) and spawns its tasks on the current
/// runtime: every `eval_interval` the engine evaluates the event minutes closed in
/// `source`. `external_url` is the default base of links to the web page.
pub fn start(
    config: AlertsConfig,
    registry: &mut Registry,
    source: Arc<dyn CountSource>,
    reasons: Option<ReasonLookup>,
    external_url: &str,
    stop: watch::Receiver<bool>,
) -> AlertTasks {
    let mut tasks = Vec::new();
    let delivery = config.alertmanager_url.is_some() || config.webhook_url.is_some();
    let notify = if delivery {
        let (tx, rx) = mpsc::channel(QUEUE);
        let metrics = deliver::DeliveryMetrics::register(registry);
        let dconf = deliver::DeliveryConfig {
            alertmanager_url: config.alertmanager_url.clone(),
            webhook_url: config.webhook_url.clone(),
            alertmanager_headers: config.alertmanager_headers.clone(),
            webhook_headers: config.webhook_headers.clone(),
            ca_file: config.ca_file.clone(),
            max_per_minute: config.max_notifications_per_minute,
            resend_interval: config.resend_interval,
        };
        tasks.push(tokio::spawn(deliver::run(dconf, rx, metrics, stop.clone())));
        Some(tx)
    } else {
        None
    };
    let mut engine = AlertEngine::new(config, registry, notify, external_url);
    if let Some(lookup) = reasons {
        engine = engine.with_reasons(lookup);
    }
    let engine = Arc::new(engine);
    if engine.config().enabled {
        let engine = engine.clone();
        let mut stop = stop;
        let every = engine.config().eval_interval;
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let engine = engine.clone();
                let source = source.clone();
                let done = tokio::task::spawn_blocking(move || engine.tick(&*source)).await;
                if let Err(error) = done {
                    tracing::error!(%error, "Alert evaluation failed.");
                }
            }
        }));
    }
    AlertTasks { engine, tasks }
}

/// The top reason pattern of a step over the last minutes, from the reason index.
pub fn reason_lookup(
    clusterer: Arc<crate::reasons::SharedClusterer>,
    stats: Arc<std::sync::Mutex<crate::reasons::ReasonStats>>,
) -> ReasonLookup {
    Arc::new(move |step: &str, minutes: u64| {
        let top = stats.lock().unwrap_or_else(|e| e.into_inner()).top(
            std::time::Duration::from_secs(minutes.max(1) * 60),
            Some(step),
            1,
            |id| clusterer.resolve(id),
        );
        top.first()
            .and_then(|s| clusterer.pattern(s.pattern))
            .map(|p| p.template)
    })
}
