//! The `vesta` binary: parse the command line and hand over to the library.

use clap::Parser;

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
