//! Security events raised while a plugin runs (denied destinations,
//! prohibited addresses, oversized responses, TLS failures). They go to the
//! audit log, and they explain a failure in the one stderr line the kubelet
//! shows. Both writers redact registered secrets (a plugin can put the
//! token in a host name it is denied).

use serde::Serialize;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use wcp_core::escape::escape_controls;

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

/// The events as one clause for the failure line: `host denied: ...`.
pub fn summary(events: &[Event]) -> Option<String> {
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
    use super::EventKind;

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
