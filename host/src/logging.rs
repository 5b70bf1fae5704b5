//! Diagnostics on stderr. The kubelet shows a provider's stderr only when it
//! fails, so the default level is `warn` and a failure is reported as one
//! line. `WCP_LOG` (a level such as `debug`) raises verbosity.
//!
//! Everything this process writes to stderr (tracing events, the final
//! failure line, a panic) goes through [`write_line`], which scrubs it with
//! [`crate::secrets::scrub`]: registered secrets redacted in every known
//! form and control characters escaped, so each record is exactly one line
//! and no call site can leak by forgetting to redact.

use std::io::Write;
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
        .with_writer(ScrubbedStderr::default)
        .with_ansi(false)
        .with_target(false)
        .compact()
        .init();
    std::panic::set_hook(Box::new(|info| {
        write_line(&format!(
            "wasm-credential-provider: error: internal error: {info}"
        ));
    }));
}

/// Prints the final error, with its causes, as a single line.
pub fn report_failure(err: &anyhow::Error) {
    write_line(&format!("wasm-credential-provider: error: {err:#}"));
}

/// Writes `text` to stderr as one scrubbed line (one `write` call, so that
/// concurrent writers do not interleave within it).
pub fn write_line(text: &str) {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut line = crate::secrets::scrub(text).into_owned();
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The writer of one tracing event: buffers what the formatter writes and
/// emits it, scrubbed, when the event is complete.
#[derive(Default)]
struct ScrubbedStderr {
    buffer: Vec<u8>,
}

impl Write for ScrubbedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedStderr {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            write_line(&String::from_utf8_lossy(&self.buffer));
        }
    }
}
