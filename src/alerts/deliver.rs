//! Delivery of incidents to Alertmanager (`POST {url}/api/v2/alerts`) and to a generic
//! JSON webhook, on the async runtime, off the hot path.
//!
//! The engine hands batches of changed incidents to a bounded channel with `try_send`
//! (never blocking; a full channel is counted and the engine re-sends everything next
//! time). The delivery task keeps the latest state of each incident it has to send, so a
//! burst of changes coalesces into one request; sends are rate-limited by a token
//! bucket per destination (`max_notifications_per_minute`), failed sends are retried
//! with exponential backoff (1 s doubling to 60 s), and firing incidents are re-sent
//! every `resend_interval` with `endsAt` a few intervals ahead, as Prometheus does, so
//! that Alertmanager resolves them by itself if faultline goes away.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use super::metrics::DeliveryMetrics;

/// Incidents waiting to be sent, per destination, at most; the oldest resolved ones go
/// first beyond it.
const MAX_PENDING: usize = 1024;
/// Alerts in one request at most; the rest wait for the next token.
const MAX_PER_REQUEST: usize = 200;
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One incident as sent: labels and annotations are final strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub incident: u64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Event time the incident started.
    pub starts_unix_nano: u64,
    /// Event time it resolved; `None` while firing.
    pub resolved_unix_nano: Option<u64>,
    pub generator_url: String,
}

fn rfc3339(unix_nano: u64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(unix_nano);
    humantime::format_rfc3339_millis(t).to_string()
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

/// The Alertmanager v2 body for `notes`, at wall time `now` (unix ns). Firing alerts end
/// `valid_for` after `now` unless re-sent; resolved ones end at their resolution (never
/// after `now`, never before their start). Event times after `now` (skewed clocks) are
/// clamped to `now`.
pub fn alertmanager_body(notes: &[Notification], now: u64, valid_for: Duration) -> Value {
    let alerts: Vec<Value> = notes
        .iter()
        .map(|n| {
            let starts = n.starts_unix_nano.min(now.saturating_sub(1_000_000_000));
            let ends = match n.resolved_unix_nano {
                None => now.saturating_add(valid_for.as_nanos() as u64),
                Some(r) => r.min(now).max(starts + 1_000_000),
            };
            json!({
                "labels": n.labels,
                "annotations": n.annotations,
                "startsAt": rfc3339(starts),
                "endsAt": rfc3339(ends),
                "generatorURL": n.generator_url,
            })
        })
        .collect();
    Value::Array(alerts)
}

/// The generic webhook body: `{"source": "faultline", "alerts": [...]}` with event times.
pub fn webhook_body(notes: &[Notification]) -> Value {
    let alerts: Vec<Value> = notes
        .iter()
        .map(|n| {
            json!({
                "incident": n.incident,
                "status": if n.resolved_unix_nano.is_some() { "resolved" } else { "firing" },
                "labels": n.labels,
                "annotations": n.annotations,
                "started_unix_nano": n.starts_unix_nano,
                "resolved_unix_nano": n.resolved_unix_nano,
                "link": n.generator_url,
            })
        })
        .collect();
    json!({ "source": "faultline", "version": 1, "alerts": alerts })
}

/// Where and how to deliver.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub alertmanager_url: Option<String>,
    pub webhook_url: Option<String>,
    pub alertmanager_headers: crate::security::SecretHeaders,
    pub webhook_headers: crate::security::SecretHeaders,
    /// Extra CA certificates for https URLs.
    pub ca_file: Option<std::path::PathBuf>,
    pub max_per_minute: u32,
    pub resend_interval: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dest {
    Alertmanager,
    Webhook,
}

impl Dest {
    fn as_str(self) -> &'static str {
        match self {
            Dest::Alertmanager => "alertmanager",
            Dest::Webhook => "webhook",
        }
    }
}

/// One destination's queue, token bucket and backoff.
struct Outbox {
    dest: Dest,
    url: String,
    headers: reqwest::header::HeaderMap,
    pending: BTreeMap<u64, Notification>,
    firing: BTreeMap<u64, Notification>,
    tokens: f64,
    refilled: Instant,
    not_before: Instant,
    backoff: Duration,
}

impl Outbox {
    fn new(dest: Dest, url: String, burst: f64, headers: reqwest::header::HeaderMap) -> Outbox {
        let now = Instant::now();
        Outbox {
            dest,
            url,
            headers,
            pending: BTreeMap::new(),
            firing: BTreeMap::new(),
            tokens: burst,
            refilled: now,
            not_before: now,
            backoff: Duration::ZERO,
        }
    }

    fn merge(&mut self, note: &Notification) {
        if note.resolved_unix_nano.is_some() {
            self.firing.remove(&note.incident);
        } else {
            self.firing.insert(note.incident, note.clone());
        }
        self.pending.insert(note.incident, note.clone());
        while self.pending.len() > MAX_PENDING {
            // Drop the oldest incident (lowest id) first: Alertmanager expires it anyway.
            let Some((&oldest, _)) = self.pending.iter().next() else {
                break;
            };
            self.pending.remove(&oldest);
        }
    }
}

/// The validated headers (see `push::config::check_headers`) as a header map.
fn header_map(headers: &crate::security::SecretHeaders) -> reqwest::header::HeaderMap {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in &headers.0 {
        if let (Ok(n), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(value),
        ) {
            map.insert(n, v);
        }
    }
    map
}

/// Runs until `stop` turns true (then makes one last attempt at what is pending) or the
/// channel closes.
pub async fn run(
    config: DeliveryConfig,
    mut rx: mpsc::Receiver<Vec<Notification>>,
    metrics: DeliveryMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let builder = crate::security::tls::reqwest_with_ca(
        reqwest::Client::builder().timeout(REQUEST_TIMEOUT),
        config.ca_file.as_deref(),
    );
    let client = match builder
        .map_err(|e| e.to_string())
        .and_then(|b| b.build().map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "Cannot build the HTTP client; alerts will not be delivered.");
            return;
        }
    };
    let per_minute = config.max_per_minute.max(1) as f64;
    let burst = per_minute.clamp(1.0, 5.0);
    let mut boxes: Vec<Outbox> = Vec::new();
    if let Some(url) = &config.alertmanager_url {
        boxes.push(Outbox::new(
            Dest::Alertmanager,
            format!("{}/api/v2/alerts", url.trim_end_matches('/')),
            burst,
            header_map(&config.alertmanager_headers),
        ));
    }
    if let Some(url) = &config.webhook_url {
        boxes.push(Outbox::new(
            Dest::Webhook,
            url.clone(),
            burst,
            header_map(&config.webhook_headers),
        ));
    }
    let resend = config.resend_interval.max(Duration::from_secs(1));
    let valid_for = (resend * 4).max(Duration::from_secs(300));
    let mut next_resend = Instant::now() + resend;
    let mut stopping = false;
    loop {
        let now = Instant::now();
        if now >= next_resend {
            for b in &mut boxes {
                let firing: Vec<Notification> = b.firing.values().cloned().collect();
                for n in firing {
                    b.pending.entry(n.incident).or_insert(n);
                }
            }
            next_resend = now + resend;
        }
        for b in &mut boxes {
            let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
            b.tokens = (b.tokens + elapsed * per_minute / 60.0).min(burst);
            b.refilled = now;
            if b.pending.is_empty() || now < b.not_before || (b.tokens < 1.0 && !stopping) {
                continue;
            }
            b.tokens -= 1.0;
            let batch: Vec<Notification> =
                b.pending.values().take(MAX_PER_REQUEST).cloned().collect();
            let body = match b.dest {
                Dest::Alertmanager => {
                    alertmanager_body(&batch, unix_nanos(SystemTime::now()), valid_for)
                }
                Dest::Webhook => webhook_body(&batch),
            };
            let result = client
                .post(&b.url)
                .headers(b.headers.clone())
                .json(&body)
                .send()
                .await;
            let ok = match result {
                Ok(resp) if resp.status().is_success() => true,
                Ok(resp) => {
                    tracing::warn!(destination = b.dest.as_str(), status = %resp.status(), "Alert delivery refused.");
                    false
                }
                Err(error) => {
                    tracing::warn!(destination = b.dest.as_str(), %error, "Alert delivery failed.");
                    false
                }
            };
            metrics.sent(b.dest.as_str(), ok);
            if ok {
                for n in &batch {
                    // Keep a newer state that arrived meanwhile.
                    if b.pending.get(&n.incident) == Some(n) {
                        b.pending.remove(&n.incident);
                    }
                }
                b.backoff = Duration::ZERO;
            } else {
                b.backoff = if b.backoff.is_zero() {
                    Duration::from_secs(1)
                } else {
                    (b.backoff * 2).min(MAX_BACKOFF)
                };
                b.not_before = Instant::now() + b.backoff;
            }
        }
        if stopping {
            return;
        }
        // Sleep until something can happen.
        let mut wake = next_resend;
        for b in &boxes {
            if !b.pending.is_empty() {
                let token_at = if b.tokens >= 1.0 {
                    Instant::now()
                } else {
                    Instant::now() + Duration::from_secs_f64((1.0 - b.tokens) * 60.0 / per_minute)
                };
                wake = wake.min(token_at.max(b.not_before));
            }
        }
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(batch) => {
                    for b in &mut boxes {
                        for n in &batch {
                            b.merge(n);
                        }
                    }
                }
                None => stopping = true,
            },
            _ = tokio::time::sleep_until(wake) => {}
            _ = stop.wait_for(|s| *s) => stopping = true,
        }
    }
}
