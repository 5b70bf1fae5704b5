//! The audit trail for security teams: one JSON object per line for every
//! plugin call and every denial, appended to the file named by the host
//! config's `auditLog`. It never contains tokens, passwords or config
//! values: only plugin names, digests, registries, destinations and
//! outcomes. Some of those (a denied destination, a detail line) carry text
//! a plugin chose, so every string is scrubbed like stderr
//! ([`crate::secrets::scrub`]: registered secrets redacted, control and bidi
//! characters escaped) before it is encoded.

use crate::events::Record;
use serde::Serialize;
use serde_json::{Map, Value};
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

    /// Appends one record. Records hold no secrets by construction; any
    /// registered secret that slips into a string is redacted anyway.
    pub fn record(&self, record: &Record<'_>) {
        // Counted whether or not an audit file is configured.
        crate::metrics::observe(record);
        let Some(file) = &self.file else { return };
        let mut text = line(unix_time(), record);
        text.push('\n');
        // One write call per line: O_APPEND keeps concurrent writers' lines whole.
        if let Ok(mut file) = file.lock() {
            let _ = file.write_all(text.as_bytes());
        }
    }
}

impl crate::exec::Audit for AuditLog {
    fn record(&self, record: &Record<'_>) {
        AuditLog::record(self, record);
    }
}

fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `record` as one JSON object: `time`, `event`, then its fields (sorted),
/// every string scrubbed; only `time` and `event` if a field still matches
/// a secret.
fn line(time: f64, record: &Record<'_>) -> String {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    scrub_strings(&mut value);
    let mut fields = match value {
        Value::Object(fields) => fields,
        // Every record serialises as an object; an audit write must not
        // panic if one ever did not.
        _ => Map::new(),
    };
    let event = fields.remove("event").unwrap_or(Value::Null);
    let whole = Line {
        time,
        event: &event,
        fields,
        withheld: None,
    };
    let text = serde_json::to_string(&whole).unwrap_or_default();
    if !crate::secrets::holds_secret(&text) {
        return text;
    }
    // Only JSON's own escaping can produce a secret's form here (the
    // strings were scrubbed); keep the event, not the fields.
    let withheld = Line {
        time,
        event: &event,
        fields: Map::new(),
        withheld: Some("fields matched a secret"),
    };
    serde_json::to_string(&withheld).unwrap_or_default()
}

/// The order of an audit line's keys: `time` and `event` first.
#[derive(Serialize)]
struct Line<'a> {
    time: f64,
    event: &'a Value,
    #[serde(flatten)]
    fields: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    withheld: Option<&'static str>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{CallOutcome, Event, EventKind};

    #[test]
    fn lines_start_with_time_and_event_and_keep_every_field() {
        let call = Record::PluginCall {
            plugin: "p",
            sha256: "ab",
            registry: "r.io",
            service_account_token: false,
            duration_ms: 1.5,
            outcome: CallOutcome::NoCredentials,
            component: Some("artifact"),
            provenance: None,
        };
        assert_eq!(
            line(7.0, &call),
            r#"{"time":7.0,"event":"plugin_call","component":"artifact","durationMs":1.5,"outcome":"no_credentials","plugin":"p","registry":"r.io","serviceAccountToken":false,"sha256":"ab"}"#
        );
        let denied = Event {
            kind: EventKind::DestinationIpProhibited,
            destination: "https://x.io:443".into(),
            address: Some("10.0.0.1".into()),
            detail: "bad\u{202e}".into(),
        };
        assert_eq!(
            line(7.0, &Record::security("p", &denied)),
            r#"{"time":7.0,"event":"destination_ip_prohibited","address":"10.0.0.1","destination":"https://x.io:443","detail":"bad\\u{202e}","plugin":"p"}"#
        );
    }

    #[test]
    fn a_secret_in_a_field_never_reaches_the_line() {
        crate::secrets::register("audit-test-secret");
        let denied = Event {
            kind: EventKind::DestinationNotAllowed,
            destination: "https://audit-test-secret.io".into(),
            address: None,
            detail: "d".into(),
        };
        let text = line(1.0, &Record::security("p", &denied));
        assert!(!text.contains("audit-test-secret"), "{text}");
        assert!(
            text.starts_with(r#"{"time":1.0,"event":"destination_not_allowed""#),
            "{text}"
        );
    }
}
