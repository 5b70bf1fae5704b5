//! A failed flight, kept briefly for the execs that wanted the same answer.
//!
//! Concurrent execs for one (plugin, registry, identity) wait on one flight
//! lock while its holder calls the plugin. When the holder succeeds they
//! find its answer in the cache; when it fails, without this each of them
//! would call the plugin in turn and multiply the load on an upstream that
//! is already failing (20 execs against an STS answering 503 made 60 calls
//! and the slowest waited 14 s). The holder therefore records its failure
//! line under the flight; execs that find a fresh record fail with that
//! line, marked as shared, instead of calling upstream. A record is fresh
//! for the plugin's `cache.shareFailuresFor` (default 5 s, at most 10 s:
//! never past the kubelet's own retry spacing, so recovery is seen on the
//! next attempt). The flight includes the identity, so a failure is never
//! shared across identities.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Default time a failure is shared.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5);
/// Longest time an operator may share a failure: the kubelet retries a
/// failed pull about this often.
pub const MAX_WINDOW: Duration = Duration::from_secs(10);
/// Longest failure line kept; the host's lines are far shorter.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// One failed flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SharedFailure {
    /// When the holder failed, Unix milliseconds.
    pub failed_at_ms: u64,
    /// The holder's failure line (already redacted and escaped).
    pub message: String,
    /// A digest of the host config the holder ran with: an operator who
    /// changes the config to fix the failure gets a fresh call at once.
    pub settings: String,
}

impl SharedFailure {
    /// A record of `message`, cut to [`MAX_MESSAGE_BYTES`] on a character
    /// boundary.
    pub fn new(message: &str, failed_at_ms: u64, settings: &str) -> Self {
        let mut end = message.len().min(MAX_MESSAGE_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            failed_at_ms,
            message: message[..end].to_string(),
            settings: settings.to_string(),
        }
    }

    /// Whether the record still stands at `now_ms` for an exec running
    /// with `settings`. A record from the future (a clock step back) stands
    /// no longer than the window either.
    pub fn is_fresh(&self, now_ms: u64, window: Duration, settings: &str) -> bool {
        let window = window.as_millis() as u64;
        self.settings == settings && now_ms.abs_diff(self.failed_at_ms) < window
    }

    /// The line an exec that shares this failure ends with.
    pub fn shared_line(&self, now_ms: u64) -> String {
        format!(
            "{} (shared: the same request by a concurrent exec failed {:.1}s ago; not retried until the failure expires)",
            self.message,
            now_ms.saturating_sub(self.failed_at_ms) as f64 / 1000.0
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` for anything that is not a record of this shape.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_shared_only_within_its_window() {
        let f = SharedFailure::new("plugin \"ecr\": upstream failure: 503", 10_000, "s1");
        let window = Duration::from_secs(5);
        assert!(f.is_fresh(10_000, window, "s1"));
        assert!(f.is_fresh(14_999, window, "s1"));
        assert!(!f.is_fresh(15_000, window, "s1"));
        assert!(!f.is_fresh(10_000, Duration::ZERO, "s1"));
        // A changed host config is a fresh start.
        assert!(!f.is_fresh(10_000, window, "s2"));
        // A clock stepped back does not extend it.
        assert!(f.is_fresh(6_000, window, "s1"));
        assert!(!f.is_fresh(4_000, window, "s1"));
        assert_eq!(
            f.shared_line(12_500),
            "plugin \"ecr\": upstream failure: 503 (shared: the same request by a concurrent exec failed 2.5s ago; not retried until the failure expires)"
        );
    }

    #[test]
    fn records_are_bounded_and_round_trip() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let f = SharedFailure::new(&long, 1, "s");
        assert!(f.message.len() <= MAX_MESSAGE_BYTES);
        assert_eq!(SharedFailure::decode(&f.encode()), Some(f));
        assert_eq!(SharedFailure::decode(b"{\"failedAtMs\":1}"), None);
        assert_eq!(SharedFailure::decode(b"garbage"), None);
    }
}
