//! Optional OTLP metrics push: every `interval`, the series of `/metrics` are sent to a
//! collector, over gRPC or HTTP/protobuf.
//!
//! One source of truth: each push renders the same registry `/metrics` renders and
//! translates that text ([`exposition`], [`otlp`]), so the push carries the same names,
//! label sets and values as a scrape at that moment, histograms included, and a family
//! added later is pushed without code here.
//!
//! Why not the OpenTelemetry SDK with `opentelemetry-otlp`: the SDK 0.33 can only export
//! what its own instruments aggregated. Observable counters and gauges could mirror the
//! counters, but there is no observable histogram, no `MetricProducer` hook, and the
//! export types (`ResourceMetrics`, `HistogramDataPoint`) cannot be built outside the
//! SDK, so a pre-aggregated histogram cannot go through it; the SDK would also apply its
//! own cardinality limit (2000 per instrument, folding into `otel.metric.overflow`). The
//! push therefore builds the OTLP request itself (`opentelemetry-proto`) and sends it
//! with tonic's generated `MetricsServiceClient` or one HTTP POST.
//!
//! The push runs on its own task: rendering takes the same brief locks as a scrape and
//! runs on a blocking thread; a slow or unreachable collector only delays the next push
//! (each is bounded by `timeout`). A failure is logged with the endpoint and counted in
//! `faultline_metrics_push_failures_total`. At shutdown, after the pipeline has released
//! and counted every trace, one last push sends the final values.

pub mod config;
pub(crate) mod exposition;
pub(crate) mod otlp;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use config::Protocol;
pub use config::{Headers, PushConfig, RawPushConfig};

/// The push's own counters, registered with the other metrics (and pushed with them).
#[derive(Clone)]
pub struct PushMetrics {
    pub failures: Counter,
}

impl PushMetrics {
    pub fn register(registry: &mut Registry) -> PushMetrics {
        let failures = Counter::default();
        // prometheus-client appends `_total` to counters.
        crate::metrics::register(
            registry,
            &crate::metrics::METRICS_PUSH_FAILURES,
            failures.clone(),
        );
        PushMetrics { failures }
    }
}

/// The running push task.
pub struct Pusher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    timeout: Duration,
}

impl Pusher {
    /// Starts pushing `registry` every `config.interval` (the first push one interval
    /// from now). Must run inside a Tokio runtime.
    pub fn start(config: PushConfig, registry: Arc<Registry>, metrics: PushMetrics) -> Pusher {
        let (stop, stop_rx) = watch::channel(false);
        let timeout = config.timeout;
        let task = tokio::spawn(run(config, registry, metrics, stop_rx));
        Pusher {
            stop,
            task,
            timeout,
        }
    }

    /// Abandons a push in flight, makes the final push, and waits for it (bounded by the
    /// timeout).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let bound = self.timeout + Duration::from_secs(2);
        if tokio::time::timeout(bound, self.task).await.is_err() {
            tracing::warn!("The final OTLP metrics push did not finish in time.");
        }
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

async fn run(
    config: PushConfig,
    registry: Arc<Registry>,
    metrics: PushMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut state = State {
        client: match Client::new(&config) {
            Ok(c) => c,
            Err(error) => {
                tracing::error!(endpoint = %config.endpoint, %error, "Cannot set up the OTLP metrics push; metrics will not be pushed.");
                return;
            }
        },
        starts: otlp::StartTimes::new(unix_nanos(SystemTime::now())),
        identity: otlp::Identity::faultline(instance_id()),
        registry,
        metrics,
        failing_since: None,
        last_warning: None,
        config,
    };
    tracing::info!(
        endpoint = %state.config.endpoint,
        protocol = state.config.protocol.as_str(),
        interval = %humantime::format_duration(state.config.interval),
        "Pushing metrics over OTLP."
    );
    let interval = state.config.interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            biased;
            // A push in flight when shutdown begins is abandoned: the final one follows.
            _ = stop.wait_for(|s| *s) => break,
            () = state.push() => {}
        }
    }
    state.push().await;
}

/// A random `service.instance.id`: 16 bytes in hex.
fn instance_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

struct State {
    config: PushConfig,
    client: Client,
    starts: otlp::StartTimes,
    identity: otlp::Identity,
    registry: Arc<Registry>,
    metrics: PushMetrics,
    failing_since: Option<Instant>,
    last_warning: Option<Instant>,
}

/// While pushes keep failing, a warning at most this often (each failure is counted).
const WARN_EVERY: Duration = Duration::from_secs(300);

impl State {
    async fn push(&mut self) {
        let registry = self.registry.clone();
        let snapshot = tokio::task::spawn_blocking(move || {
            let text = crate::metrics::render(&registry);
            (SystemTime::now(), exposition::parse(&text))
        })
        .await;
        let Ok((taken, (families, skipped))) = snapshot else {
            tracing::error!("Rendering the metrics for the OTLP push panicked.");
            return;
        };
        if skipped > 0 {
            tracing::debug!(lines = skipped, "Lines of /metrics not translated to OTLP.");
        }
        let request = otlp::request(
            &families,
            unix_nanos(taken),
            &mut self.starts,
            &self.identity,
        );
        let result = match tokio::time::timeout(
            self.config.timeout,
            self.client.export(request, self.config.timeout),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(self.config.timeout)
            )),
        };
        let now = Instant::now();
        match result {
            Ok(rejected) => {
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(
                        endpoint = %self.config.endpoint,
                        after = %humantime::format_duration(Duration::from_secs(since.elapsed().as_secs())),
                        "OTLP metrics push works again."
                    );
                    self.last_warning = None;
                }
                if let Some(message) = rejected {
                    tracing::warn!(endpoint = %self.config.endpoint, %message, "The collector rejected part of the pushed metrics.");
                }
            }
            Err(error) => {
                self.metrics.failures.inc();
                self.failing_since.get_or_insert(now);
                if self
                    .last_warning
                    .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
                {
                    self.last_warning = Some(now);
                    tracing::warn!(endpoint = %self.config.endpoint, %error, "OTLP metrics push failed.");
                } else {
                    tracing::debug!(endpoint = %self.config.endpoint, %error, "OTLP metrics push failed.");
                }
            }
        }
    }
}

enum Client {
    Grpc {
        client: MetricsServiceClient<tonic::transport::Channel>,
        metadata: tonic::metadata::MetadataMap,
    },
    Http {
        client: reqwest::Client,
        url: String,
        headers: http::HeaderMap,
    },
}

impl Client {
    fn new(config: &PushConfig) -> Result<Client, String> {
        match config.protocol {
            Protocol::Grpc => {
                let mut endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())
                    .map_err(|e| e.to_string())?
                    .connect_timeout(config.timeout)
                    .timeout(config.timeout);
                if config.endpoint.starts_with("https:") {
                    let tls = crate::security::tls::tonic_client_tls(config.ca_file.as_deref())
                        .map_err(|e| e.to_string())?;
                    endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
                }
                let channel = endpoint.connect_lazy();
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (name, value) in &config.headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
                        .map_err(|e| format!("header `{name}`: {e}"))?;
                    let value = value.parse().map_err(|e| format!("header `{name}`: {e}"))?;
                    metadata.insert(key, value);
                }
                Ok(Client::Grpc {
                    client: MetricsServiceClient::new(channel),
                    metadata,
                })
            }
            Protocol::HttpProtobuf => {
                let builder = reqwest::Client::builder()
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout);
                let client =
                    crate::security::tls::reqwest_with_ca(builder, config.ca_file.as_deref())
                        .map_err(|e| e.to_string())?
                        .build()
                        .map_err(|e| e.to_string())?;
                let mut headers = http::HeaderMap::new();
                for (name, value) in &config.headers {
                    let name = http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| format!("header `{name}`: {e}"))?;
                    let value = http::HeaderValue::from_str(value)
                        .map_err(|e| format!("header `{name}`: {e}"))?;
                    headers.insert(name, value);
                }
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-protobuf"),
                );
                Ok(Client::Http {
                    client,
                    url: config.endpoint.clone(),
                    headers,
                })
            }
        }
    }

    /// Sends one request. `Ok(Some(message))`: accepted, but the collector rejected some
    /// data points.
    async fn export(
        &self,
        request: ExportMetricsServiceRequest,
        timeout: Duration,
    ) -> Result<Option<String>, String> {
        let response = match self {
            Client::Grpc { client, metadata } => {
                let mut req = tonic::Request::new(request);
                *req.metadata_mut() = metadata.clone();
                req.set_timeout(timeout);
                client
                    .clone()
                    .export(req)
                    .await
                    .map_err(|s| format!("gRPC status {:?}: {}", s.code(), error_chain(&s)))?
                    .into_inner()
            }
            Client::Http {
                client,
                url,
                headers,
            } => {
                let resp = client
                    .post(url)
                    .headers(headers.clone())
                    .body(request.encode_to_vec())
                    .send()
                    .await
                    .map_err(|e| error_chain(&e))?;
                let status = resp.status();
                let body = resp.bytes().await.unwrap_or_default();
                if !status.is_success() {
                    let text = String::from_utf8_lossy(&body);
                    let text: String = text.chars().take(200).collect();
                    return Err(format!("HTTP {status}: {}", text.trim()));
                }
                // An empty or non-protobuf answer to a 2xx is still a success.
                ExportMetricsServiceResponse::decode(body).unwrap_or_default()
            }
        };
        Ok(response.partial_success.and_then(|p| {
            (p.rejected_data_points > 0 || !p.error_message.is_empty()).then(|| {
                format!(
                    "{} data points rejected: {}",
                    p.rejected_data_points, p.error_message
                )
            })
        }))
    }
}

/// An error's message and its sources' (the top-level message alone says little), each
/// once: tonic and hyper repeat theirs at several levels.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(e) = next {
        let text = match e.downcast_ref::<tonic::Status>() {
            Some(status) => status.message().to_owned(),
            None => e.to_string(),
        };
        if !text.is_empty() && !parts.contains(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests;
