//! Logging: structured `tracing` output (JSON or human), never resource content.

use tracing_subscriber::{fmt, EnvFilter};

/// The MCP SDK logs whole requests and results at debug level (PHI), and
/// at `warn` a handler's error with its message (`response error`, which
/// can quote a resource id) and parts of rejected requests (a Host or
/// Origin value): it is capped at `error` (transport failures, no content)
/// whatever `RUST_LOG` says. Refusals are in the audit trail instead.
pub const RMCP_CAP: &str = "rmcp=error";

fn with_caps(filter: EnvFilter) -> EnvFilter {
    match RMCP_CAP.parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    }
}

/// Installs a human-readable subscriber writing to standard error, for
/// `vesta mcp`, whose standard output carries the MCP protocol.
pub fn init_stderr() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,sqlx=warn"));
    let _ = fmt()
        .with_env_filter(with_caps(filter))
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Installs the global subscriber. `RUST_LOG` overrides the default `info` level.
/// Safe to call more than once (later calls are ignored).
pub fn init(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = fmt()
        .with_env_filter(with_caps(filter))
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
