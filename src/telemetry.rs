//! Logging: structured `tracing` output (JSON or human), never resource content.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber (writing to standard output). `RUST_LOG`
/// overrides the default `info,sqlx=warn`.
/// Safe to call more than once (later calls are ignored).
pub fn init(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}
