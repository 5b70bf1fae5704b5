//! The audit trail for security teams: one JSON object per line for every
//! plugin call and every denial, appended to the file named by the host
//! config's `auditLog`. It never contains tokens, passwords or config
//! values: only plugin names, digests, registries, destinations and
//! outcomes. Some of those (a denied destination, a detail line) carry text
//! a plugin chose, so every string is scrubbed like stderr
//! ([`crate::secrets::scrub`]: registered secrets redacted, control and bidi
//! characters escaped) before it is encoded.

use serde_json::{Map, Value, json};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// An append-only JSON-lines writer; a no-op when no file is configured.
#[derive(Default)]
pub struct AuditLog {
    file: Option<Mutex<File>>,
}

impl AuditLog {
    /// Opens (creating with mode 0600) the audit file. Failing to open it is
    /// logged, not fatal: the audit trail must not fail a kubelet request.
    pub fn open(path: Option<&Path>) -> Self {
        let Some(path) = path else {
            return Self::default();
        };
        match OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
        {
            Ok(file) => Self {
                file: Some(Mutex::new(file)),
            },
            Err(e) => {
                // Info, not warn: a failing request keeps its one stderr line.
                tracing::info!("cannot open audit log {}: {e}", path.display());
                Self::default()
            }
        }
    }

    /// Appends one event. `fields` should hold no secrets; any registered
    /// secret that slips in is redacted anyway.
    pub fn record(&self, event: &str, fields: Map<String, Value>) {
        let Some(file) = &self.file else { return };
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut line = json!({ "time": time, "event": event });
        if let Value::Object(map) = &mut line {
            map.extend(fields);
        }
        scrub_strings(&mut line);
        let mut text = line.to_string();
        if crate::secrets::holds_secret(&text) {
            // Only JSON's own escaping can produce a secret's form here
            // (the strings were scrubbed); keep the event, not the fields.
            text = json!({ "time": time, "event": event, "withheld": "fields matched a secret" })
                .to_string();
        }
        text.push('\n');
        // One write call per line: O_APPEND keeps concurrent writers' lines whole.
        if let Ok(mut file) = file.lock() {
            let _ = file.write_all(text.as_bytes());
        }
    }
}

/// Scrubs every string (keys included) of `value` in place.
fn scrub_strings(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let std::borrow::Cow::Owned(clean) = crate::secrets::scrub(text) {
                *text = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub_strings),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                scrub_strings(&mut item);
                map.insert(crate::secrets::scrub(&key).into_owned(), item);
            }
        }
        _ => {}
    }
}
