//! What the host records: the security events raised while a plugin runs
//! (denied destinations, prohibited addresses, oversized responses, TLS
//! failures) and every line of the audit log ([`Record`]), in one file, so
//! that the names operators alert on and the fields they read are declared
//! in one place. Events go to the audit log and explain a failure in the
//! one stderr line the kubelet shows. Both writers redact registered
//! secrets (a plugin can put the token in a host name it is denied).

use serde::Serialize;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use wcp_core::escape::escape_controls;
use wcp_core::protocol::CacheKeyType;

/// One line of the audit log: its `event` name and fields (camelCase), as
/// security teams read them. The writer ([`crate::audit::AuditLog`]) adds
/// `time`, puts `time` and `event` first and scrubs every string. No
/// variant may hold a token, password or config value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "event",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Record<'a> {
    /// An answer served from the credential cache (no plugin ran).
    CacheHit {
        plugin: &'a str,
        /// The lookup key that hit (`Image`, `Registry`, `Global`).
        key_kind: CacheKeyType,
        registry: &'a str,
        remaining_seconds: u64,
        /// The answer came from a concurrent exec's flight this one waited
        /// for (written only when true).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        after_flight: bool,
    },
    /// An exec that failed with a concurrent exec's failure instead of
    /// calling the plugin (see `wcp_core::shared_failure`).
    SharedFailure { plugin: &'a str, registry: &'a str },
    /// One plugin call on a cache miss, whatever its outcome.
    PluginCall {
        plugin: &'a str,
        sha256: &'a str,
        registry: &'a str,
        /// Whether the kubelet sent a token (never the token).
        service_account_token: bool,
        duration_ms: f64,
        outcome: CallOutcome,
        /// How the component was obtained, if it got that far.
        #[serde(skip_serializing_if = "Option::is_none")]
        component: Option<&'a str>,
        /// Where the module came from and who signed it, when the config
        /// names a `source` or `verify` (from the artifact's record).
        #[serde(skip_serializing_if = "Option::is_none")]
        provenance: Option<&'a wcp_core::provenance::Provenance>,
    },
    /// One precompile (`compile`, or an exec's background compile); only
    /// the build with the compiler compiles.
    #[cfg(feature = "compiler")]
    Compile {
        plugin: &'a str,
        sha256: &'a str,
        background: bool,
        outcome: CompileOutcome,
        duration_ms: f64,
        /// Where the module came from and who signed it, once verified.
        #[serde(skip_serializing_if = "Option::is_none")]
        provenance: Option<&'a wcp_core::provenance::Provenance>,
    },
    /// A security event; its `event` is the [`EventKind`]'s name.
    #[serde(untagged)]
    Security(SecurityRecord<'a>),
}

/// The audit line of one [`Event`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecurityRecord<'a> {
    pub event: EventKind,
    pub plugin: &'a str,
    pub destination: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<&'a str>,
    pub detail: &'a str,
}

impl<'a> Record<'a> {
    /// The audit line of `event`, raised while `plugin` ran.
    pub fn security(plugin: &'a str, event: &'a Event) -> Self {
        Record::Security(SecurityRecord {
            event: event.kind,
            plugin,
            destination: &event.destination,
            address: event.address.as_deref(),
            detail: &event.detail,
        })
    }
}

/// How a plugin call ended, in its audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    Credentials,
    NoCredentials,
    Error,
}

/// How a compile ended, in its audit line.
#[cfg(feature = "compiler")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompileOutcome {
    Compiled,
    Failed,
    /// A background compile ended by its time limit.
    TimeLimit,
    /// The module failed its `source`/`verify` checks; nothing was compiled.
    Refused,
}

/// What kind of denial or cut-off an [`Event`] is: its `error.type` in the
/// logs and its `event` in the audit log. These names are an interface
/// (operators alert on them); a new one is a new variant here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Not both declared by the plugin and granted by the operator.
    DestinationNotAllowed,
    /// The destination resolves to (or is) a special address not granted.
    DestinationIpProhibited,
    /// A response body, announced or streamed, passed the plugin's limit.
    ResponseTooLarge,
    /// The TLS handshake with the destination failed.
    TlsError,
    /// The destination's name could not be resolved in time.
    DnsError,
    /// The call passed its bound on concurrent or total outbound requests.
    OutboundLimit,
}

impl EventKind {
    /// The stable name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::DestinationNotAllowed => "destination_not_allowed",
            EventKind::DestinationIpProhibited => "destination_ip_prohibited",
            EventKind::ResponseTooLarge => "response_too_large",
            EventKind::TlsError => "tls_error",
            EventKind::DnsError => "dns_error",
            EventKind::OutboundLimit => "outbound_limit",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One denial or cut-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// `scheme://host:port` the plugin asked for.
    pub destination: String,
    /// The resolved address, for address-level denials.
    pub address: Option<String>,
    /// Why, and what config line would allow it (never a secret).
    pub detail: String,
}

/// Events one call keeps (and writes to the audit log); a plugin looping
/// over denied requests must not grow host memory or the audit file
/// without bound. The request bound makes this a backstop.
pub const MAX_EVENTS: usize = 64;

/// Shared between the outbound hooks and the runtime.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    /// Records `event`. Its text is built from what the plugin asked for
    /// (a host name, a port), so control characters are escaped here;
    /// secrets are redacted where it is written.
    pub fn push(&self, mut event: Event) {
        if self.0.lock().is_ok_and(|events| events.len() >= MAX_EVENTS) {
            return;
        }
        for text in [&mut event.destination, &mut event.detail]
            .into_iter()
            .chain(event.address.as_mut())
        {
            if let Cow::Owned(clean) = escape_controls(text) {
                *text = clean;
            }
        }
        tracing::info!(
            error.type = event.kind.as_str(),
            destination = %event.destination,
            address = event.address.as_deref().unwrap_or(""),
            "{}",
            event.detail
        );
        if let Ok(mut events) = self.0.lock() {
            events.push(event);
        }
    }

    pub fn take(&self) -> Vec<Event> {
        self.0
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }
}

/// The failure line of a call that raised `events`: the call's error with
/// the events appended as one clause, `... [host: destination_not_allowed
/// ...]`, since a denial is usually why a plugin failed, then why the
/// plugin ran without the service-account token it declared, if it did.
/// The only place these join an error.
pub fn explain(err: anyhow::Error, events: &[Event], token_note: Option<&str>) -> anyhow::Error {
    let mut line = match summary(events) {
        Some(summary) => format!("{err:#} {summary}"),
        None if token_note.is_none() => return err,
        None => format!("{err:#}"),
    };
    if let Some(note) = token_note {
        line.push_str(&format!(" ({note})"));
    }
    anyhow::anyhow!(line)
}

/// The events as one clause for the failure line: `[host: ...]`.
fn summary(events: &[Event]) -> Option<String> {
    if events.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    for e in events {
        let part = match &e.address {
            Some(addr) => format!("{} {} ({addr}): {}", e.kind, e.destination, e.detail),
            None => format!("{} {}: {}", e.kind, e.destination, e.detail),
        };
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    let more = parts.len().saturating_sub(3);
    parts.truncate(3);
    let mut text = format!("[host: {}", parts.join("; "));
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    text.push(']');
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The audit interface: every record's `event` and field names, as
    /// operators and tests/*.rs read them.
    #[test]
    fn records_keep_their_names_and_fields() {
        let hit = Record::CacheHit {
            plugin: "p",
            key_kind: CacheKeyType::Registry,
            registry: "r.io",
            remaining_seconds: 42,
            after_flight: false,
        };
        assert_eq!(
            serde_json::to_value(&hit).unwrap(),
            json!({"event": "cache_hit", "plugin": "p", "keyKind": "Registry",
                   "registry": "r.io", "remainingSeconds": 42})
        );
        let call = Record::PluginCall {
            plugin: "p",
            sha256: "ab",
            registry: "r.io",
            service_account_token: true,
            duration_ms: 2.5,
            outcome: CallOutcome::Error,
            component: None,
            provenance: None,
        };
        assert_eq!(
            serde_json::to_value(&call).unwrap(),
            json!({"event": "plugin_call", "plugin": "p", "sha256": "ab", "registry": "r.io",
                   "serviceAccountToken": true, "durationMs": 2.5, "outcome": "error"})
        );
        #[cfg(feature = "compiler")]
        assert_eq!(
            serde_json::to_value(Record::Compile {
                plugin: "p",
                sha256: "ab",
                background: true,
                outcome: CompileOutcome::TimeLimit,
                duration_ms: 300000.0,
                provenance: None,
            })
            .unwrap(),
            json!({"event": "compile", "plugin": "p", "sha256": "ab", "background": true,
                   "outcome": "time_limit", "durationMs": 300000.0})
        );
        let denied = Event {
            kind: EventKind::ResponseTooLarge,
            destination: "https://r.io:443".into(),
            address: None,
            detail: "over 4 MiB".into(),
        };
        assert_eq!(
            serde_json::to_value(Record::security("p", &denied)).unwrap(),
            json!({"event": "response_too_large", "plugin": "p",
                   "destination": "https://r.io:443", "detail": "over 4 MiB"})
        );
    }

    #[test]
    fn a_failure_line_ends_with_the_events_once() {
        let denied = Event {
            kind: EventKind::DestinationNotAllowed,
            destination: "https://x.io:443".into(),
            address: None,
            detail: "not granted".into(),
        };
        let err = anyhow::anyhow!("upstream failure").context("plugin \"p\"");
        assert_eq!(
            explain(err, &[denied.clone(), denied], None).to_string(),
            "plugin \"p\": upstream failure [host: destination_not_allowed https://x.io:443: not granted]"
        );
        let plain = explain(anyhow::anyhow!("failed"), &[], None);
        assert_eq!(format!("{plain:#}"), "failed");
        let noted = explain(anyhow::anyhow!("failed"), &[], Some("no token sent"));
        assert_eq!(noted.to_string(), "failed (no token sent)");
    }

    #[test]
    fn kinds_serialise_as_their_stable_names() {
        for kind in [
            EventKind::DestinationNotAllowed,
            EventKind::DestinationIpProhibited,
            EventKind::ResponseTooLarge,
            EventKind::TlsError,
            EventKind::DnsError,
            EventKind::OutboundLimit,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
    }
}
