//! The command line: `faultline [serve]` and the other subcommands.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 invalid usage or configuration.

pub mod analyze;
pub mod client;
pub mod demo;
pub mod format;
pub mod reasons;
pub mod show;
pub mod simulate;
pub mod top;
pub mod trajectories;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{FileConfig, Overrides, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "faultline",
    version,
    about = "Failure analysis for LLM-agent systems from OpenTelemetry traces",
    long_about = "faultline receives OpenTelemetry traces over OTLP (gRPC and HTTP), rebuilds each \
agent run from its spans, classifies every span into a step (planner, retriever, generator, \
critic, tool, ...), finds failures and blames the step that caused them.\n\n\
Without a subcommand, `faultline` runs `serve`. The options of the commands that read a \
running server (--server, --json, --api-token-file, --ca-file) are accepted before or after \
the subcommand."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub globals: GlobalArgs,
}

/// The client commands' options, accepted before the subcommand too
/// (`faultline --server URL top`). Each client command also defines them (with the same
/// ids), so clap hands a value given before the subcommand down to it; for the other
/// commands [`parse`] refuses them.
#[derive(Debug, Args, Default, Clone)]
pub struct GlobalArgs {
    /// The faultline server a client command (top, trajectories, show, reasons, cohorts)
    /// asks: its API address, such as http://127.0.0.1:8700 [env: FAULTLINE_SERVER].
    #[arg(long, id = "server", global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Client commands and analyze: print JSON instead of a table.
    #[arg(long, id = "json", global = true)]
    pub json: bool,
    /// Client commands: CA certificates (PEM) to trust for an https --server
    /// [env: FAULTLINE_CA_FILE]. (`--api-token-file` before a client command is its token
    /// file; after `serve`, or with no command, the server's.)
    #[arg(long, id = "ca_file", global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// The `serve` option that a client command takes too, with the same meaning seen from
/// the other side: the file of the API token.
const SHARED_WITH_CLIENTS: &str = "api_token_file";

/// Parses the command line, or exits with code 2 and clap's message: as
/// [`Parser::parse`], and also refuses `serve` options before another subcommand
/// (`faultline --idle-timeout 5s top`), and `--server`, `--json` or `--ca-file` given to
/// a command that does not take them. `--api-token-file` before a client command is
/// handed to it.
pub fn parse() -> Cli {
    match parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    }
}

/// [`parse`] of the given arguments; the error is clap's, to print and exit with.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    // `serve`'s flags are both at the top (the default command) and under `serve`.
    let mut command =
        Overrides::show_defaults(Cli::command().mut_subcommand("serve", Overrides::show_defaults));
    let matches = command.clone().try_get_matches_from(args)?;
    let given = |id: &str| {
        matches!(
            matches.try_get_raw(id),
            Ok(Some(_)) if matches.value_source(id) == Some(ValueSource::CommandLine)
        )
    };
    if let Some((name, sub)) = matches.subcommand() {
        let serve_ids: Vec<String> = ServeArgs::augment_args(clap::Command::new("serve"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        let takes_server = !matches!(name, "serve" | "simulate" | "analyze" | "demo");
        if let Some(id) = serve_ids
            .iter()
            .find(|id| given(id) && !(takes_server && id.as_str() == SHARED_WITH_CLIENTS))
        {
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "--{} is an option of `serve`; give it after `serve`, not before `{name}`",
                    id.replace('_', "-")
                ),
            ));
        }
        let sub_given = |id: &str| {
            matches!(sub.try_get_raw(id), Ok(Some(_)))
                && sub.value_source(id) == Some(ValueSource::CommandLine)
        };
        let takes_json = takes_server || name == "analyze";
        for (id, takes) in [
            ("server", takes_server),
            ("json", takes_json),
            ("ca_file", takes_server),
        ] {
            if !takes && (given(id) || sub_given(id)) {
                return Err(command.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("`{name}` does not take --{}", id.replace('_', "-")),
                ));
            }
        }
    } else if given("server") || given("json") || given("ca_file") {
        return Err(command.error(
            clap::error::ErrorKind::ArgumentConflict,
            "--server, --json and --ca-file are options of the client commands (top, trajectories, show, reasons, cohorts); `serve` does not take them",
        ));
    }
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    match (cli.command.as_mut(), matches.subcommand()) {
        (Some(Command::Serve(args)), Some((_, sub))) => args.record_sources(sub),
        _ => cli.serve.record_sources(&matches),
    }
    // `faultline --api-token-file FILE top`: the top-level option is `serve`'s (the
    // default command); before a client command it is that command's, unless the
    // command was given its own.
    if given(SHARED_WITH_CLIENTS) {
        if let Some(args) = cli.command.as_mut().and_then(Command::server_args_mut) {
            if args.api_token_file.is_none() {
                args.api_token_file = cli.serve.overrides.auth.api_token_file.take();
            }
        }
    }
    Ok(cli)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive OTLP traces and logs, analyse them, serve the API (the default command).
    Serve(Box<ServeArgs>),
    /// Generate realistic agent traffic with planted faults and known root causes: send it
    /// to an OTLP endpoint, or write OTLP files and a labels file.
    Simulate(simulate::SimulateArgs),
    /// Per-step failure table of a running server, redrawn like `top` (or --once).
    Top(top::TopArgs),
    /// List a running server's analysed trajectories, newest first, with filters.
    Trajectories(trajectories::TrajectoriesArgs),
    /// One trajectory: its span tree with steps, the blamed step, evidence and findings.
    Show(show::ShowArgs),
    /// Recurring failure reasons of a running server, ranked.
    Reasons(reasons::ReasonsArgs),
    /// Failure cohorts found by a running server, best first.
    Cohorts(reasons::CohortsArgs),
    /// Analyse exported trace files offline (no server) and gate on failure rates (CI).
    Analyze(analyze::AnalyzeArgs),
    /// Start a server fed with simulated traffic (a spike and a bad cohort planted) and
    /// print the address of its web page.
    Demo(demo::DemoArgs),
}

impl Command {
    /// The options of a client command (one that reads a running server).
    pub fn server_args_mut(&mut self) -> Option<&mut client::ServerArgs> {
        match self {
            Command::Top(a) => Some(&mut a.server),
            Command::Trajectories(a) => Some(&mut a.server),
            Command::Show(a) => Some(&mut a.server),
            Command::Reasons(a) => Some(&mut a.server),
            Command::Cohorts(a) => Some(&mut a.server),
            Command::Serve(_) | Command::Simulate(_) | Command::Analyze(_) | Command::Demo(_) => {
                None
            }
        }
    }
}

/// Runs a command other than `serve`; returns the process exit code.
pub async fn run_command(command: Command) -> u8 {
    let client = |name: &str, r: Result<(), client::ClientError>| match r {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("faultline {name}: {error}");
            error.exit_code()
        }
    };
    match command {
        Command::Top(args) => client("top", top::run(&args).await),
        Command::Trajectories(args) => client("trajectories", trajectories::run(&args).await),
        Command::Show(args) => client("show", show::run(&args).await),
        Command::Reasons(args) => client("reasons", reasons::run_reasons(&args).await),
        Command::Cohorts(args) => client("cohorts", reasons::run_cohorts(&args).await),
        Command::Analyze(args) => tokio::task::block_in_place(|| analyze::run(&args)),
        Command::Demo(args) => match demo::run(&args).await {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("faultline demo: {error}");
                error.exit_code()
            }
        },
        Command::Simulate(args) => simulate::run(&args).await,
        Command::Serve(_) => {
            eprintln!("faultline: this command is run by main");
            2
        }
    }
}

/// Options of `serve`: the config file, and every setting of the sections that are flags
/// too (declared once, in `config.rs`: each is also an environment variable
/// `FAULTLINE_<NAME>` and a key of the config file; flags win over the environment,
/// which wins over the file).
#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// TOML config file. Invalid content exits with code 2, naming the file and key.
    #[arg(long, env = "FAULTLINE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
}

impl ServeArgs {
    /// Reads the config file (if any) and validates everything into settings.
    pub fn settings(&self) -> Result<Settings, crate::config::ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Settings::resolve(file, self.config.as_deref(), self.overrides.clone())
    }

    /// Records which of the values came from a flag and which from a variable, so
    /// that errors name the one given.
    fn record_sources(&mut self, matches: &clap::ArgMatches) {
        use clap::parser::ValueSource;
        for arg in Overrides::augment_args(clap::Command::new("serve")).get_arguments() {
            let id = arg.get_id().as_str();
            let given = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => crate::config::Given::Flag,
                Some(ValueSource::EnvVariable) => crate::config::Given::Env,
                _ => continue,
            };
            self.overrides.given.insert(id.to_owned(), given);
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
