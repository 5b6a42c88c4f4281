//! The `vesta` binary: parse the command line and hand over to the library.

use clap::Parser;

/// mimalloc instead of the system allocator: the server and the importer
/// make many short-lived allocations on several threads (JSON values, index
/// rows, bound parameters), where glibc's malloc spent a quarter of an
/// import's CPU time (perf, bench/ingest.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = vesta::cli::Cli::parse();
    match vesta::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vesta: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
