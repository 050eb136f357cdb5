//! The `faultline` binary: parses the command line, runs a command, maps errors to exit
//! codes (0 success, 1 failure, 2 invalid usage or configuration).

use std::process::ExitCode;

/// mimalloc: the pipeline allocates many small, short-lived records (spans, attribute
/// values, analyses) on several threads; glibc's malloc spent a third of the ingest
/// benchmark's time in its own bookkeeping. Tuned by `faultline::allocator::tune`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use faultline::cli::{shutdown_signal, Command, ServeArgs};

fn main() -> ExitCode {
    init_tracing();
    faultline::allocator::tune();
    let cli = faultline::cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("faultline-io")
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("faultline: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        None => runtime.block_on(serve(&cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve(&args)),
        Some(command) => ExitCode::from(runtime.block_on(faultline::cli::run_command(command))),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs sent to a file or a collector stay plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn serve(args: &ServeArgs) -> ExitCode {
    let settings = match args.settings() {
        Ok(s) => s,
        Err(error) => {
            eprintln!("faultline: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    match faultline::server::serve(&settings, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.exit_code() == 2 => {
            eprintln!("faultline: invalid configuration: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("faultline: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
