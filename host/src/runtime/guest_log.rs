//! Everything a plugin says (log calls, stdout, stderr) goes to the host's
//! stderr log, prefixed with the plugin name, redacted and capped. It never
//! reaches the host's stdout, which belongs to the kubelet protocol.

use wcp_core::redact::Redactor;

/// Most log lines one plugin call may emit.
pub const MAX_LINES: usize = 200;
/// Longest log line kept; the rest is cut.
pub const MAX_LINE_BYTES: usize = 2048;

/// A plugin's log sink.
pub struct GuestLog {
    plugin: String,
    redactor: Redactor,
    emitted: usize,
    dropped: usize,
}

impl GuestLog {
    pub fn new(plugin: &str, redactor: Redactor) -> Self {
        Self {
            plugin: plugin.to_string(),
            redactor,
            emitted: 0,
            dropped: 0,
        }
    }

    /// The redactor that also cleans the plugin's error messages.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Logs one line from `source` (`log`, `stdout`, `stderr`).
    pub fn emit(&mut self, level: tracing::Level, source: &str, message: &str) {
        if self.emitted >= MAX_LINES {
            self.dropped += 1;
            return;
        }
        self.emitted += 1;
        let line = cap(&self.redactor.redact(message));
        let plugin = self.plugin.as_str();
        match level {
            tracing::Level::ERROR => tracing::error!(plugin, source, "{line}"),
            tracing::Level::WARN => tracing::warn!(plugin, source, "{line}"),
            tracing::Level::INFO => tracing::info!(plugin, source, "{line}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, source, "{line}"),
            tracing::Level::TRACE => tracing::trace!(plugin, source, "{line}"),
        }
    }

    /// Logs captured stdout/stderr bytes line by line at info level.
    pub fn emit_captured(&mut self, source: &str, bytes: &[u8]) {
        for line in String::from_utf8_lossy(bytes).lines() {
            if !line.trim().is_empty() {
                self.emit(tracing::Level::INFO, source, line);
            }
        }
    }

    /// Reports how many lines were dropped by the cap, if any.
    pub fn finish(&self) {
        if self.dropped > 0 {
            tracing::info!(plugin = %self.plugin, "dropped {} further log lines", self.dropped);
        }
    }
}

/// Cuts `text` to [`MAX_LINE_BYTES`] at a character boundary.
pub fn cap(text: &str) -> String {
    if text.len() <= MAX_LINE_BYTES {
        return text.to_string();
    }
    let mut end = MAX_LINE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}
