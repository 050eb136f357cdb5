//! Running the simulator: write simulated traffic to files or send it to an OTLP
//! endpoint (`faultline simulate`).

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::error::SimulateError;
use super::output::{to_otlp_json, write_length_prefixed};
use super::send::{parse_target, Protocol, Sender};
use super::{Convention, Scenario, SimBatch, SimConfig, Simulator, Template};
use faultline_core::model::Outcome;

const MAX_RUNS: u64 = 10_000_000;
const MAX_RATE: f64 = 100_000.0;
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_DURATION: Duration = Duration::from_secs(60);

/// What `faultline simulate` was asked to do (its command-line options, parsed by the
/// service's command line; the defaults are written there, once).
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// RNG seed: the same seed (and start time) gives the same output.
    pub seed: u64,
    /// Number of runs (trajectories). With --target, sending stops at --runs or
    /// --duration, whichever comes first. Default 1000 with --out.
    pub runs: Option<u64>,
    /// Write traces.otlp.pb, traces.otlp.jsonl, logs.otlp.pb, logs.otlp.jsonl and
    /// labels.jsonl into this directory.
    pub out: Option<PathBuf>,
    /// Send to this OTLP endpoint, e.g. http://127.0.0.1:4317 (gRPC) or
    /// http://127.0.0.1:4318 (HTTP).
    pub target: Option<String>,
    /// Transport for --target; by default 4317 is gRPC and 4318 is HTTP.
    pub protocol: Option<Protocol>,
    /// Runs per second sent to --target (also the event-time spacing of runs).
    pub rate: f64,
    /// How long to send to --target (e.g. 30s, 5m). Default 60s.
    pub duration: Option<Duration>,
    /// Target spans per request.
    pub batch_spans: usize,
    /// Allow a --target that is not a loopback address.
    pub allow_remote: bool,
    /// Event time of the first run (unix nanoseconds); default now.
    pub start_unix_nano: Option<u64>,
    /// Probability per run of each fault kind a template supports.
    pub fault_rate: f64,
    /// Probability per run of a recovered step failure.
    pub recovered_rate: f64,
    /// Conventions to use (comma separated): openinference, traceai, openllmetry,
    /// genai, explicit. Default all.
    pub conventions: Vec<String>,
}

/// What `faultline simulate` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimulateReport {
    pub runs: u64,
    pub failed_runs: u64,
    pub recovered_runs: u64,
    pub spans: u64,
    pub trace_requests: u64,
    pub log_requests: u64,
    /// Protobuf bytes of all trace requests (late ones included).
    pub trace_bytes: u64,
    pub send_errors: u64,
    pub elapsed: Duration,
    pub out: Option<PathBuf>,
}

impl fmt::Display for SimulateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_span = if self.spans > 0 {
            self.trace_bytes as f64 / self.spans as f64
        } else {
            0.0
        };
        write!(
            f,
            "{} runs ({} failed, {} recovered), {} spans in {} trace requests ({:.0} bytes/span), {} log requests, {} send errors, {:.1}s",
            self.runs,
            self.failed_runs,
            self.recovered_runs,
            self.spans,
            self.trace_requests,
            per_span,
            self.log_requests,
            self.send_errors,
            self.elapsed.as_secs_f64()
        )?;
        if let Some(out) = &self.out {
            write!(f, ", written to {}", out.display())?;
        }
        Ok(())
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn config(args: &SimulateOptions, rate: f64) -> Result<SimConfig, SimulateError> {
    if !(0.0..=1.0).contains(&args.fault_rate) || !(0.0..=1.0).contains(&args.recovered_rate) {
        return Err(SimulateError::InvalidArgs(
            "--fault-rate and --recovered-rate must be within [0, 1]".to_string(),
        ));
    }
    let mut conventions = Vec::new();
    for name in &args.conventions {
        let conv = Convention::from_name(name.trim())
            .ok_or_else(|| SimulateError::InvalidArgs(format!("unknown convention {name:?}")))?;
        conventions.push(conv);
    }
    let mut cfg = SimConfig::new(
        args.seed,
        args.start_unix_nano.unwrap_or_else(now_unix_nano),
    );
    cfg.runs_per_second = rate;
    cfg.scenario = Scenario::uniform(args.fault_rate, args.recovered_rate);
    cfg.conventions = conventions;
    cfg.templates = Template::ALL.to_vec();
    Ok(cfg)
}

/// Runs `faultline simulate`.
pub async fn run(args: &SimulateOptions) -> Result<SimulateReport, SimulateError> {
    if args.batch_spans == 0 || args.batch_spans > 100_000 {
        return Err(SimulateError::InvalidArgs(
            "--batch-spans must be within 1..=100000".to_string(),
        ));
    }
    if let Some(runs) = args.runs {
        if runs == 0 || runs > MAX_RUNS {
            return Err(SimulateError::InvalidArgs(format!(
                "--runs must be within 1..={MAX_RUNS}"
            )));
        }
    }
    if !(args.rate > 0.0 && args.rate <= MAX_RATE) {
        return Err(SimulateError::InvalidArgs(format!(
            "--rate must be within (0, {MAX_RATE}]"
        )));
    }
    match (&args.out, &args.target) {
        (Some(dir), None) => {
            let cfg = config(args, args.rate)?;
            let runs = args.runs.unwrap_or(1000);
            let dir = dir.clone();
            let batch_spans = args.batch_spans;
            tokio::task::spawn_blocking(move || write_files(cfg, runs, batch_spans, &dir))
                .await
                .map_err(|e| SimulateError::InvalidArgs(format!("writer task failed: {e}")))?
        }
        (None, Some(url)) => {
            let duration = args.duration.unwrap_or(DEFAULT_DURATION);
            if duration.is_zero() || duration > MAX_DURATION {
                return Err(SimulateError::InvalidArgs(
                    "--duration must be within (0, 24h]".to_string(),
                ));
            }
            let target = parse_target(url, args.protocol, args.allow_remote)?;
            let cfg = config(args, args.rate)?;
            send(cfg, args, &target, duration).await
        }
        _ => Err(SimulateError::InvalidArgs(
            "pass exactly one of --out DIR or --target URL".to_string(),
        )),
    }
}

fn count(report: &mut SimulateReport, batch: &SimBatch) {
    report.runs += batch.labels.len() as u64;
    report.spans += batch.span_count as u64;
    for label in &batch.labels {
        match label.outcome {
            Outcome::Failed => report.failed_runs += 1,
            Outcome::Recovered => report.recovered_runs += 1,
            Outcome::Success => {}
        }
    }
}

fn late_spans(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

struct Files {
    traces_pb: BufWriter<File>,
    traces_json: BufWriter<File>,
    logs_pb: BufWriter<File>,
    logs_json: BufWriter<File>,
    labels: BufWriter<File>,
}

fn create(dir: &Path, name: &str) -> Result<BufWriter<File>, SimulateError> {
    let path = dir.join(name);
    File::create(&path)
        .map(BufWriter::new)
        .map_err(|source| SimulateError::Io { path, source })
}

fn io_err(dir: &Path, name: &str) -> impl FnOnce(std::io::Error) -> SimulateError {
    let path = dir.join(name);
    move |source| SimulateError::Io { path, source }
}

/// Writes the simulated runs as the collector's file exporter would.
pub(crate) fn write_files(
    cfg: SimConfig,
    runs: u64,
    batch_spans: usize,
    dir: &Path,
) -> Result<SimulateReport, SimulateError> {
    let started = Instant::now();
    std::fs::create_dir_all(dir).map_err(|source| SimulateError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Files {
        traces_pb: create(dir, "traces.otlp.pb")?,
        traces_json: create(dir, "traces.otlp.jsonl")?,
        logs_pb: create(dir, "logs.otlp.pb")?,
        logs_json: create(dir, "logs.otlp.jsonl")?,
        labels: create(dir, "labels.jsonl")?,
    };
    let mut sim = Simulator::new(cfg);
    let mut report = SimulateReport {
        out: Some(dir.to_path_buf()),
        ..SimulateReport::default()
    };
    let mut late: VecDeque<(u64, ExportTraceServiceRequest)> = VecDeque::new();
    while report.runs < runs {
        let mut batch = take_batch(&mut sim, batch_spans, runs - report.runs);
        count(&mut report, &batch);
        let now = batch.labels.last().map(|l| l.start_unix_nano).unwrap_or(0);
        write_traces(&mut files, dir, &batch.traces, &mut report)?;
        late.extend(batch.late_traces.drain(..));
        while let Some((release, _)) = late.front() {
            if *release > now {
                break;
            }
            if let Some((_, req)) = late.pop_front() {
                report.spans += late_spans(&req);
                write_traces(&mut files, dir, &req, &mut report)?;
            }
        }
        if let Some(logs) = &batch.logs {
            write_length_prefixed(&mut files.logs_pb, logs).map_err(io_err(dir, "logs.otlp.pb"))?;
            writeln!(files.logs_json, "{}", to_otlp_json(logs)?)
                .map_err(io_err(dir, "logs.otlp.jsonl"))?;
            report.log_requests += 1;
        }
        for label in &batch.labels {
            writeln!(files.labels, "{}", label.to_json()).map_err(io_err(dir, "labels.jsonl"))?;
        }
    }
    for (_, req) in late.drain(..) {
        report.spans += late_spans(&req);
        write_traces(&mut files, dir, &req, &mut report)?;
    }
    for (w, name) in [
        (&mut files.traces_pb, "traces.otlp.pb"),
        (&mut files.traces_json, "traces.otlp.jsonl"),
        (&mut files.logs_pb, "logs.otlp.pb"),
        (&mut files.logs_json, "logs.otlp.jsonl"),
        (&mut files.labels, "labels.jsonl"),
    ] {
        w.flush().map_err(io_err(dir, name))?;
    }
    report.elapsed = started.elapsed();
    tracing::info!(
        runs = report.runs,
        spans = report.spans,
        "Simulation written."
    );
    Ok(report)
}

/// The next batch of about `batch_spans` spans, with at most `left` runs.
fn take_batch(sim: &mut Simulator, batch_spans: usize, left: u64) -> SimBatch {
    const AVG_SPANS_PER_RUN: u64 = 20;
    let target = (batch_spans as u64)
        .min(left.saturating_mul(AVG_SPANS_PER_RUN))
        .max(1);
    let mut batch = sim.next_batch(target as usize);
    while batch.labels.len() as u64 > left && batch.labels.len() > 1 {
        trim_last_run(&mut batch);
    }
    batch
}

/// Drops the last run of a batch (its spans, late traces and logs).
fn trim_last_run(batch: &mut SimBatch) {
    let Some(label) = batch.labels.pop() else {
        return;
    };
    batch.span_count = batch.span_count.saturating_sub(label.span_count);
    batch.traces.resource_spans.pop();
    let trace_id = hex::decode(&label.trace_id).unwrap_or_default();
    batch.late_traces.retain(|(_, req)| {
        !req.resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .any(|s| s.links.iter().any(|l| l.trace_id == trace_id))
    });
    if let Some(logs) = &mut batch.logs {
        for rl in &mut logs.resource_logs {
            for sl in &mut rl.scope_logs {
                sl.log_records.retain(|r| r.trace_id != trace_id);
            }
        }
        logs.resource_logs
            .retain(|rl| rl.scope_logs.iter().any(|sl| !sl.log_records.is_empty()));
        if logs.resource_logs.is_empty() {
            batch.logs = None;
        }
    }
}

fn write_traces(
    files: &mut Files,
    dir: &Path,
    req: &ExportTraceServiceRequest,
    report: &mut SimulateReport,
) -> Result<(), SimulateError> {
    let n =
        write_length_prefixed(&mut files.traces_pb, req).map_err(io_err(dir, "traces.otlp.pb"))?;
    writeln!(files.traces_json, "{}", to_otlp_json(req)?)
        .map_err(io_err(dir, "traces.otlp.jsonl"))?;
    report.trace_requests += 1;
    report.trace_bytes += n.saturating_sub(4) as u64;
    Ok(())
}

/// Sends pre-generated batches at `--rate` runs per second until `--runs` or
/// `--duration`. A generator thread stays a few batches ahead of the sender.
async fn send(
    cfg: SimConfig,
    args: &SimulateOptions,
    target: &super::send::Target,
    duration: Duration,
) -> Result<SimulateReport, SimulateError> {
    let mut sender = Sender::connect(target).await?;
    let max_runs = args.runs.unwrap_or(MAX_RUNS);
    let batch_spans = args.batch_spans;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<SimBatch>(8);
    let producer = tokio::task::spawn_blocking(move || {
        let mut sim = Simulator::new(cfg);
        let mut made = 0u64;
        while made < max_runs {
            let batch = take_batch(&mut sim, batch_spans, max_runs - made);
            made += batch.labels.len() as u64;
            if tx.blocking_send(batch).is_err() {
                break;
            }
        }
    });

    let started = Instant::now();
    let mut report = SimulateReport::default();
    let mut late: VecDeque<(u64, ExportTraceServiceRequest)> = VecDeque::new();
    while let Some(mut batch) = rx.recv().await {
        if started.elapsed() >= duration || report.runs >= max_runs {
            break;
        }
        count(&mut report, &batch);
        let now = batch.labels.last().map(|l| l.start_unix_nano).unwrap_or(0);
        match sender.send_traces(std::mem::take(&mut batch.traces)).await {
            Ok(n) => {
                report.trace_requests += 1;
                report.trace_bytes += n as u64;
            }
            Err(error) => {
                report.send_errors += 1;
                tracing::warn!(%error, "Sending traces failed.");
            }
        }
        if let Some(logs) = batch.logs.take() {
            match sender.send_logs(logs).await {
                Ok(_) => report.log_requests += 1,
                Err(error) => {
                    report.send_errors += 1;
                    tracing::warn!(%error, "Sending logs failed.");
                }
            }
        }
        late.extend(batch.late_traces.drain(..));
        while late.front().is_some_and(|(release, _)| *release <= now) {
            if let Some((_, req)) = late.pop_front() {
                report.spans += late_spans(&req);
                match sender.send_traces(req).await {
                    Ok(n) => {
                        report.trace_requests += 1;
                        report.trace_bytes += n as u64;
                    }
                    Err(error) => {
                        report.send_errors += 1;
                        tracing::warn!(%error, "Sending late traces failed.");
                    }
                }
            }
        }
        // Pace: the n-th run is due at n / rate seconds.
        let due = Duration::from_secs_f64(report.runs as f64 / args.rate);
        let elapsed = started.elapsed();
        if due > elapsed {
            tokio::time::sleep((due - elapsed).min(duration.saturating_sub(elapsed))).await;
        }
    }
    drop(rx);
    for (_, req) in late.drain(..) {
        report.spans += late_spans(&req);
        match sender.send_traces(req).await {
            Ok(n) => {
                report.trace_requests += 1;
                report.trace_bytes += n as u64;
            }
            Err(error) => {
                report.send_errors += 1;
                tracing::warn!(%error, "Sending late traces failed.");
            }
        }
    }
    let _ = producer.await;
    report.elapsed = started.elapsed();
    tracing::info!(
        runs = report.runs,
        errors = report.send_errors,
        "Simulation sent."
    );
    Ok(report)
}
