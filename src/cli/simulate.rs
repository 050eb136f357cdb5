//! `faultline simulate`: the command-line options of the simulator (`faultline-sim`).

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};

use crate::simulate::{Protocol, SimulateOptions};

/// Arguments of `faultline simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// RNG seed: the same seed (and start time) gives the same output.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of runs (trajectories). With --target, sending stops at --runs or
    /// --duration, whichever comes first. Default 1000 with --out.
    #[arg(long)]
    pub runs: Option<u64>,
    /// Write traces.otlp.pb, traces.otlp.jsonl, logs.otlp.pb, logs.otlp.jsonl and
    /// labels.jsonl into this directory.
    #[arg(long, conflicts_with = "target")]
    pub out: Option<PathBuf>,
    /// Send to this OTLP endpoint, e.g. http://127.0.0.1:4317 (gRPC) or
    /// http://127.0.0.1:4318 (HTTP).
    #[arg(long)]
    pub target: Option<String>,
    /// Transport for --target; by default 4317 is gRPC and 4318 is HTTP.
    #[arg(long, value_parser = protocol_parser())]
    pub protocol: Option<Protocol>,
    /// Runs per second sent to --target (also the event-time spacing of runs).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// How long to send to --target (e.g. 30s, 5m). Default 60s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Target spans per request.
    #[arg(long, default_value_t = 350)]
    pub batch_spans: usize,
    /// Allow a --target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Event time of the first run (unix nanoseconds); default now.
    #[arg(long)]
    pub start_unix_nano: Option<u64>,
    /// Probability per run of each fault kind a template supports.
    #[arg(long, default_value_t = 0.02)]
    pub fault_rate: f64,
    /// Probability per run of a recovered step failure.
    #[arg(long, default_value_t = 0.05)]
    pub recovered_rate: f64,
    /// Conventions to use (comma separated): openinference, traceai, openllmetry,
    /// genai, explicit. Default all.
    #[arg(long, value_delimiter = ',')]
    pub conventions: Vec<String>,
}

fn protocol_parser() -> impl TypedValueParser<Value = Protocol> {
    PossibleValuesParser::new(["grpc", "http"]).map(|name| match name.as_str() {
        "grpc" => Protocol::Grpc,
        _ => Protocol::Http,
    })
}

impl From<&SimulateArgs> for SimulateOptions {
    fn from(args: &SimulateArgs) -> SimulateOptions {
        SimulateOptions {
            seed: args.seed,
            runs: args.runs,
            out: args.out.clone(),
            target: args.target.clone(),
            protocol: args.protocol,
            rate: args.rate,
            duration: args.duration,
            batch_spans: args.batch_spans,
            allow_remote: args.allow_remote,
            start_unix_nano: args.start_unix_nano,
            fault_rate: args.fault_rate,
            recovered_rate: args.recovered_rate,
            conventions: args.conventions.clone(),
        }
    }
}

/// Runs `faultline simulate`; returns the process exit code.
pub async fn run(args: &SimulateArgs) -> u8 {
    match crate::simulate::run(&SimulateOptions::from(args)).await {
        Ok(report) => {
            eprintln!("{report}");
            0
        }
        Err(error) => {
            eprintln!("faultline simulate: {error}");
            error.exit_code()
        }
    }
}
