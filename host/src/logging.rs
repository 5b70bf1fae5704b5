//! Diagnostics on stderr. The kubelet shows a provider's stderr only when it
//! fails, so the default level is `warn` and a failure is reported as one
//! line. `WCP_LOG` (a level such as `debug`) raises verbosity.

use tracing_subscriber::filter::LevelFilter;

/// Environment variable holding the log filter.
pub const LOG_ENV: &str = "WCP_LOG";

/// Installs a compact, uncoloured stderr logger. The filter is a plain
/// level (`error`, `warn`, `info`, `debug`, `trace`, `off`): a per-target
/// filter would link a regex engine into every kubelet exec.
pub fn init() {
    let filter = std::env::var(LOG_ENV)
        .ok()
        .and_then(|level| level.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::WARN);
    tracing_subscriber::fmt()
        .with_max_level(filter)
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
