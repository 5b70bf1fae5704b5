//! Everything a plugin says (log calls, stdout, stderr) goes to the host's
//! stderr log, prefixed with the plugin name, redacted and capped. It never
//! reaches the host's stdout, which belongs to the kubelet protocol.
//!
//! One log call is one line: newlines and every other control or bidi
//! character in plugin text are escaped ([`wcp_core::escape`]), so a plugin
//! cannot forge a line that looks like the host's own.

use wcp_core::escape::escape_controls;
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
        let line = clean(&self.redactor, message);
        let plugin = self.plugin.as_str();
        match level {
            tracing::Level::ERROR => tracing::error!(plugin, source, "{line}"),
            tracing::Level::WARN => tracing::warn!(plugin, source, "{line}"),
            tracing::Level::INFO => tracing::info!(plugin, source, "{line}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, source, "{line}"),
            tracing::Level::TRACE => tracing::trace!(plugin, source, "{line}"),
        }
    }

    /// Logs captured stdout/stderr bytes line by line at info level. The
    /// whole capture is redacted before it is split, so a multi-line secret
    /// is caught as a whole (its lines are also caught one by one).
    pub fn emit_captured(&mut self, source: &str, bytes: &[u8]) {
        let text = self.redactor.redact(&String::from_utf8_lossy(bytes));
        for line in text.lines() {
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

/// Plugin text made fit for one line of the host's stderr: secrets
/// redacted, control and bidi characters escaped, length capped.
pub fn clean(redactor: &Redactor, text: &str) -> String {
    // Redact the whole text (a secret straddling a cut would leak its
    // head), then cut before escaping: escaping can make a string of
    // control characters six times longer, and only MAX_LINE_BYTES of it
    // survive anyway.
    let redacted = redactor.redact(text);
    if redacted.len() <= MAX_LINE_BYTES {
        return cap(&escape_controls(&redacted));
    }
    let escaped = escape_controls(prefix(&redacted, MAX_LINE_BYTES));
    format!(
        "{}… ({} bytes in all, cut)",
        prefix(&escaped, MAX_LINE_BYTES),
        redacted.len()
    )
}

/// The longest prefix of `text` of at most `bytes` bytes.
fn prefix(text: &str, bytes: usize) -> &str {
    let mut end = text.len().min(bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
