//! What the exec path depends on besides the config and the request, as
//! small traits: the plugin call, the credential cache, the clock and the
//! audit log. The real ones (wasmtime, the cache directory, the system
//! clock, the audit file) are wired in `crate::serve`; the unit tests of
//! `crate::exec` give fakes, so the kubelet's cache semantics are tested
//! without wasm, disk or time passing (as kubelet tests its
//! `pkg/credentialprovider/plugin` behind a `Plugin` interface and an
//! injected clock).

use crate::events::Record;
use crate::runtime::Outcome;
use anyhow::Result;
use std::time::Instant;
use wcp_core::cache_entry::Entry;
use wcp_core::config::PluginConfig;
use wcp_core::protocol::Request;
use wcp_core::shared_failure::SharedFailure;

/// Runs the plugin for a request the cache could not answer.
pub trait PluginCall {
    /// The plugin's answer; an error is the exec's one failure line.
    fn call(&self, plugin: &PluginConfig, request: &Request) -> Result<Outcome>;
}

/// Held while this exec fetches an answer others may be waiting for;
/// dropping it lets them go.
pub type Flight = Box<dyn std::any::Any>;

/// The credential cache shared by every exec of the host. An unusable
/// cache behaves as an empty one that keeps nothing: the cache must never
/// fail a request.
pub trait CredentialCache {
    /// The unexpired, intact entry for (`scope`, `key`), if any.
    fn get(&self, scope: &str, key: &[u8], now: u64) -> Option<Entry>;
    /// Stores `entry`; a failure is logged by the caller, never fatal.
    fn put(&self, entry: &Entry, now: u64) -> Result<()>;
    /// Waits until `deadline` for the flight lock `flight`; `None` if the
    /// deadline passed or there is no lock to take (the caller goes ahead).
    fn lock(&self, flight: &str, deadline: Instant) -> Option<Flight>;
    /// The failure the last holder of `flight` recorded, fresh or not.
    fn failure(&self, flight: &str) -> Option<SharedFailure>;
    /// Records the holder's failure of `flight`; best effort.
    fn put_failure(&self, flight: &str, failure: &SharedFailure);
}

/// Wall-clock time in Unix seconds (cache lifetimes are wall clock, shared
/// across processes).
pub trait Clock {
    fn now(&self) -> u64;
    /// Unix milliseconds, for windows of a few seconds.
    fn now_ms(&self) -> u64 {
        self.now().saturating_mul(1000)
    }
}

/// Where audit records go.
pub trait Audit {
    fn record(&self, record: &Record<'_>);
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        self.now_ms() / 1000
    }

    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// Everything [`super::respond`] uses besides the config and the request.
pub struct Deps<'a> {
    pub plugin: &'a dyn PluginCall,
    pub cache: &'a dyn CredentialCache,
    pub clock: &'a dyn Clock,
    pub audit: &'a dyn Audit,
}
