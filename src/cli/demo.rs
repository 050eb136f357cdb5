//! `faultline demo`: a server fed with simulated agent traffic, for a first look.
//!
//! It starts the server with a temporary data directory (removed on exit), on the
//! default ports where they are free and on free ports otherwise, and prints the
//! addresses. Then it sends simulator traffic over OTLP/HTTP on loopback:
//! 1. a backfill: the last `--backfill` (1h) of event time at `--backfill-rate` runs
//!    per second of event time, sent as fast as the server takes it, so that the page
//!    is populated within seconds;
//! 2. a live trickle at `--rate` runs per second, in real time, until Ctrl-C (or
//!    `--duration`).
//!
//! A run is sent once its last span has ended by the wall clock (runs of the backfill's
//! last minute and live runs are held until then), so no timestamp is in the future,
//! and the backfill sends exactly the number of runs it announces.
//!
//! Planted in the traffic, for the page to show: a bad cohort (`model=gpt-4o-mini ∧
//! prompt_version=v7`, every fault kind ×5), a past spike (empty retrievals ×15
//! between 40% and 25% of the backfill ago) and a live spike (rate limiting ×12 from
//! 2 to 5 minutes after the start).
//!
//! The demo server completes traces after 2 s idle and ends their late grace after
//! 5 s, so that counts appear quickly (the defaults are 5 s and 60 s).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::config::{FileConfig, Overrides, Settings};
use crate::simulate::{
    CohortMatch, CohortMultiplier, FaultKind, Scenario, SimConfig, SimulateError, Simulator,
    TimeWindow,
};

use super::format;

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Seed of the simulated traffic.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Event time to backfill before the live traffic: a duration such as 30m or 1h (at
    /// most 24h).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub backfill: Duration,
    /// Runs per second of event time in the backfill (a number, e.g. 2 or 0.5).
    #[arg(long, default_value_t = 2.0, value_name = "RATE")]
    pub backfill_rate: f64,
    /// Runs per second of the live traffic (a number, e.g. 2 or 0.5).
    #[arg(long, default_value_t = 2.0, value_name = "RATE")]
    pub rate: f64,
    /// Stop after this long, a duration such as 90s or 10m (default: run until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// API and web page address [default: 127.0.0.1:8700, or a free port if taken].
    #[arg(long, value_name = "ADDR")]
    pub api_address: Option<String>,
    /// OTLP/gRPC address [default: 127.0.0.1:4317, or a free port if taken].
    #[arg(long, value_name = "ADDR")]
    pub otlp_grpc_address: Option<String>,
    /// OTLP/HTTP address [default: 127.0.0.1:4318, or a free port if taken].
    #[arg(long, value_name = "ADDR")]
    pub otlp_http_address: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot create the data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    #[error("sending traffic failed: {0}")]
    Send(#[from] SimulateError),
}

impl DemoError {
    pub fn exit_code(&self) -> u8 {
        match self {
            DemoError::InvalidArgs(_) | DemoError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// `println!` that ignores a closed stdout.
macro_rules! say {
    ($($arg:tt)*) => {
        format::emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// The model and prompt version of the planted bad cohort.
pub const BAD_COHORT: (&str, &str) = ("gpt-4o-mini", "v7");

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<TempDir, DemoError> {
        let path = std::env::temp_dir().join(format!(
            "faultline-demo-{}-{}",
            std::process::id(),
            unix_nanos() % 1_000_000_000
        ));
        std::fs::create_dir_all(&path).map_err(|source| DemoError::DataDir {
            path: path.clone(),
            source,
        })?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(%error, dir = %self.0.display(), "Cannot remove the demo data directory.");
        }
    }
}

/// `given`, else `default` when that port is free, else a free port.
fn address(given: &Option<String>, default: &str) -> String {
    if let Some(a) = given {
        return a.clone();
    }
    match std::net::TcpListener::bind(default) {
        Ok(l) => {
            drop(l);
            default.to_owned()
        }
        Err(_) => "127.0.0.1:0".to_owned(),
    }
}

/// The scenario of the demo: a bad cohort, a past spike, a live spike; and what was
/// planted, in words.
pub fn scenario(now: u64, backfill: Duration) -> (Scenario, Vec<String>) {
    let (model, prompt) = BAD_COHORT;
    let mut scenario = Scenario::uniform(0.012, 0.05).with_cohort_multiplier(CohortMultiplier {
        when: vec![
            CohortMatch::Model(model.into()),
            CohortMatch::PromptVersion(prompt.into()),
        ],
        kinds: Vec::new(),
        factor: 5.0,
    });
    let mut planted = vec![format!(
        "a bad cohort: model={model} ∧ prompt_version={prompt} fails about 5× as often"
    )];
    let b = backfill.as_nanos().min(u64::MAX as u128) as u64;
    if b >= 10 * 60 * 1_000_000_000 {
        let start = now - b / 5 * 2;
        let end = now - b / 4;
        scenario = scenario.with_window(TimeWindow {
            start_unix_nano: start,
            end_unix_nano: end,
            kinds: vec![FaultKind::EmptyRetrieval],
            factor: 15.0,
        });
        planted.push(format!(
            "a spike: empty retrievals ×15 from {} to {} ago",
            humantime::format_duration(Duration::from_secs((now - start) / 1_000_000_000)),
            humantime::format_duration(Duration::from_secs((now - end) / 1_000_000_000)),
        ));
    }
    scenario = scenario.with_window(TimeWindow {
        start_unix_nano: now + 120 * 1_000_000_000,
        end_unix_nano: now + 300 * 1_000_000_000,
        kinds: vec![FaultKind::RateLimited],
        factor: 12.0,
    });
    planted.push("a live spike: rate limiting ×12 from 2 to 5 minutes from now".into());
    (scenario, planted)
}

/// Runs `faultline demo` until Ctrl-C or `--duration`.
pub async fn run(args: &DemoArgs) -> Result<(), DemoError> {
    for (name, rate) in [
        ("--rate", args.rate),
        ("--backfill-rate", args.backfill_rate),
    ] {
        if !(rate > 0.0 && rate <= 1000.0) {
            return Err(DemoError::InvalidArgs(format!(
                "{name} must be within (0, 1000]"
            )));
        }
    }
    if args.backfill > Duration::from_secs(24 * 3600) {
        return Err(DemoError::InvalidArgs(
            "--backfill must be at most 24h (the breakdown's horizon)".into(),
        ));
    }
    let data = TempDir::create()?;
    let settings = Settings::resolve(
        FileConfig::default(),
        None,
        Overrides {
            top: crate::config::RawTopLevel {
                otlp_grpc_address: Some(address(
                    &args.otlp_grpc_address,
                    crate::config::DEFAULT_OTLP_GRPC_ADDRESS,
                )),
                otlp_http_address: Some(address(
                    &args.otlp_http_address,
                    crate::config::DEFAULT_OTLP_HTTP_ADDRESS,
                )),
                api_address: Some(address(
                    &args.api_address,
                    crate::config::DEFAULT_API_ADDRESS,
                )),
                data_dir: Some(data.path().to_owned()),
                idle_timeout: Some("2s".into()),
                late_grace: Some("5s".into()),
                ..Default::default()
            },
            ..Overrides::default()
        },
    )?;
    let running = crate::server::start(&settings).await?;
    let now = unix_nanos();
    let (scenario, planted) = scenario(now, args.backfill);
    let backfill_runs = (args.backfill.as_secs_f64() * args.backfill_rate).round() as u64;

    say!("faultline demo: a server fed with simulated agent traffic\n");
    say!("  web page   http://{}/", running.api_address);
    say!(
        "  API        http://{}/api/v1/breakdown",
        running.api_address
    );
    say!("  OTLP/gRPC  {}", running.otlp_grpc_address);
    say!("  OTLP/HTTP  {}", running.otlp_http_address);
    say!("  data dir   {} (removed on exit)\n", data.path().display());
    say!("Planted in the traffic:");
    for p in &planted {
        say!("  - {p}");
    }
    say!(
        "\nBackfilling the last {} of event time ({} runs)…",
        humantime::format_duration(args.backfill),
        format::count(backfill_runs)
    );

    let traffic = Traffic {
        otlp_http: running.otlp_http_address,
        seed: args.seed,
        scenario,
        now,
        backfill: args.backfill,
        backfill_rate: args.backfill_rate,
        backfill_runs,
        rate: args.rate,
        page: format!("http://{}/", running.api_address),
    };
    let mut task = tokio::spawn(traffic.run());
    let stop = super::shutdown_signal();
    let limit = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = stop => Ok(()),
        _ = limit => Ok(()),
        r = &mut task => match r {
            Ok(r) => r,
            Err(e) => Err(DemoError::InvalidArgs(format!("the traffic task failed: {e}"))),
        },
    };
    task.abort();
    say!("Stopping.");
    running.shutdown().await;
    drop(data);
    outcome
}

/// The traffic generator.
struct Traffic {
    otlp_http: SocketAddr,
    seed: u64,
    scenario: Scenario,
    now: u64,
    backfill: Duration,
    backfill_rate: f64,
    backfill_runs: u64,
    rate: f64,
    page: String,
}

/// Sends with a few retries: the server answers 503 while its queues are full.
async fn send_traces(
    sender: &mut crate::simulate::Sender,
    req: &ExportTraceServiceRequest,
) -> Result<(), SimulateError> {
    let mut wait = Duration::from_millis(100);
    for attempt in 0.. {
        match sender.send_traces(req.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt < 8 => {
                tracing::debug!(error = %e, "Retrying a demo trace request.");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn send_logs(
    sender: &mut crate::simulate::Sender,
    req: &ExportLogsServiceRequest,
) -> Result<(), SimulateError> {
    let mut wait = Duration::from_millis(100);
    for attempt in 0.. {
        match sender.send_logs(req.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt < 8 => {
                tracing::debug!(error = %e, "Retrying a demo log request.");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Requests held until their last span has ended (wall clock), so that nothing sent has
/// a timestamp in the future: runs still "running" and late evaluator traces. Keyed by
/// (send time, sequence).
#[derive(Default)]
struct Held {
    next: u64,
    items: std::collections::BTreeMap<
        (u64, u64),
        (ExportTraceServiceRequest, Option<ExportLogsServiceRequest>),
    >,
}

impl Held {
    fn push(
        &mut self,
        at: u64,
        traces: ExportTraceServiceRequest,
        logs: Option<ExportLogsServiceRequest>,
    ) {
        self.next += 1;
        self.items.insert((at, self.next), (traces, logs));
    }

    /// The first request due at or before `at`.
    fn pop_due(
        &mut self,
        at: u64,
    ) -> Option<(ExportTraceServiceRequest, Option<ExportLogsServiceRequest>)> {
        let (&key, _) = self.items.iter().next().filter(|((t, _), _)| *t <= at)?;
        self.items.remove(&key)
    }

    fn first_due(&self) -> Option<u64> {
        self.items.keys().next().map(|(t, _)| *t)
    }
}

impl Traffic {
    /// Sends every held request due by `at`.
    async fn send_due(
        sender: &mut crate::simulate::Sender,
        held: &mut Held,
        at: u64,
    ) -> Result<(), DemoError> {
        while let Some((traces, logs)) = held.pop_due(at) {
            send_traces(sender, &traces).await?;
            if let Some(logs) = &logs {
                send_logs(sender, logs).await?;
            }
        }
        Ok(())
    }

    async fn run(self) -> Result<(), DemoError> {
        let target = crate::simulate::parse_target(
            &format!("http://{}", self.otlp_http),
            Some(crate::simulate::Protocol::Http),
            false,
        )?;
        let mut sender = crate::simulate::Sender::connect(&target).await?;
        let mut held = Held::default();
        let last_end = crate::simulate::last_end_time;

        // 1. Backfill: exactly `backfill_runs` runs starting in the `backfill` before
        // `now`, merged into requests of about 350 spans, sent as fast as the server
        // takes them. A run still going on (it ends after the wall clock) is held
        // until it ends; evaluator traces wait until the backfill's event time passes
        // their start, as they would live.
        let started = Instant::now();
        let backfill_ns = self.backfill.as_nanos().min(u64::MAX as u128) as u64;
        let mut sim = Simulator::new(SimConfig {
            runs_per_second: self.backfill_rate,
            scenario: self.scenario.clone(),
            ..SimConfig::new(self.seed, self.now.saturating_sub(backfill_ns))
        });
        let mut generated = 0u64;
        while generated < self.backfill_runs {
            let mut batch = crate::simulate::SimBatch::default();
            while generated < self.backfill_runs && batch.span_count < 350 {
                let run = sim.next_run();
                generated += 1;
                let end = last_end(&run.traces);
                if end > unix_nanos() {
                    if let Some(late) = run.late_traces {
                        held.push(last_end(&late), late, None);
                    }
                    held.push(end, run.traces, run.logs);
                } else {
                    batch.push(run);
                }
            }
            let event_now = batch.labels.last().map(|l| l.start_unix_nano).unwrap_or(0);
            if !batch.labels.is_empty() {
                send_traces(&mut sender, &batch.traces).await?;
            }
            if let Some(logs) = &batch.logs {
                send_logs(&mut sender, logs).await?;
            }
            for (release, late) in batch.late_traces {
                held.push(release.max(last_end(&late)), late, None);
            }
            Self::send_due(&mut sender, &mut held, event_now.min(unix_nanos())).await?;
        }
        say!(
            "Backfilled {} runs in {:.1}s. Live traffic: {} runs/s. Open {} — Ctrl-C stops.",
            format::count(generated),
            started.elapsed().as_secs_f64(),
            self.rate,
            self.page
        );

        // 2. Live, in real time, continuing the backfill's event time: a run is
        // generated when it starts and sent when it has ended.
        let mut sim = Simulator::new(SimConfig {
            runs_per_second: self.rate,
            scenario: self.scenario,
            ..SimConfig::new(self.seed.wrapping_add(1), self.now)
        });
        let spacing = Duration::from_secs_f64(1.0 / self.rate);
        let mut next = sim.next_run();
        loop {
            let wall = unix_nanos();
            while next.label.start_unix_nano <= wall {
                let run = std::mem::replace(&mut next, sim.next_run());
                if let Some(late) = run.late_traces {
                    held.push(last_end(&late), late, None);
                }
                held.push(last_end(&run.traces), run.traces, run.logs);
            }
            Self::send_due(&mut sender, &mut held, wall).await?;
            let wake = held
                .first_due()
                .unwrap_or(u64::MAX)
                .min(next.label.start_unix_nano);
            let wait = Duration::from_nanos(wake.saturating_sub(unix_nanos()));
            tokio::time::sleep(wait.clamp(
                Duration::from_millis(10),
                spacing.max(Duration::from_millis(100)),
            ))
            .await;
        }
    }
}
