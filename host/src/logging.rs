//! Diagnostics on stderr. The kubelet shows a provider's stderr only when it
//! fails, so the default level is `warn` and a failure is reported as one
//! line. `WCP_LOG` (a `tracing` filter such as `debug`) raises verbosity.

use tracing_subscriber::EnvFilter;

/// Environment variable holding the log filter.
pub const LOG_ENV: &str = "WCP_LOG";

/// Installs a compact, uncoloured stderr logger.
pub fn init() {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .compact()
        .init();
}

/// Prints the final error, with its causes, as a single line. Error text
/// from plugins has already been redacted where it was produced.
pub fn report_failure(err: &anyhow::Error) {
    let line = format!("{err:#}").replace(['\n', '\r'], " ");
    eprintln!("wasm-credential-provider: error: {line}");
}
