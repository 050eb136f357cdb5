//! The `faultline` binary: parses the command line, runs a command, maps errors to exit
//! codes (0 success, 1 failure, 2 invalid usage or configuration).

use std::process::ExitCode;

/// mimalloc: the pipeline allocates many small, short-lived records (spans, attribute
/// values, analyses) on several threads; glibc's malloc spent a third of the ingest
/// benchmark's time in its own bookkeeping.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use faultline::cli::{shutdown_signal, Command, ServeArgs};

fn main() -> ExitCode {
    init_tracing();
    spawn_allocator_housekeeping();
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

/// How often freed memory whose purge delay has passed is handed back to the OS.
const ALLOCATOR_COLLECT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// mimalloc hands freed memory back to the OS after a short delay, but only when some
/// thread allocates again: a server that goes quiet after a burst (a decode thread of
/// the blocking pool parked, the shards idle) would keep the burst's peak resident for
/// good. A thread of our own asks every [`ALLOCATOR_COLLECT_EVERY`] for the purges that
/// are due (process wide; the thread's own heap is empty), which is a few microseconds
/// of work; the ingest path keeps mimalloc's delayed purging, which is cheaper than
/// purging every free at once.
fn spawn_allocator_housekeeping() {
    let spawned = std::thread::Builder::new()
        .name("faultline-alloc".into())
        .spawn(|| loop {
            std::thread::sleep(ALLOCATOR_COLLECT_EVERY);
            // SAFETY: `mi_collect` takes no pointer and may be called from any thread at
            // any time; `false` asks for the purges that are due, not a forced one.
            unsafe { libmimalloc_sys::mi_collect(false) };
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "Cannot start the allocator's housekeeping thread; freed memory is returned to the OS only as the server allocates.");
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
