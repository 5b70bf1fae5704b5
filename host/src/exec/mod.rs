//! The kubelet exec path once the request is read: pick the plugin, answer
//! from the cache in the kubelet's order, otherwise call the plugin once
//! per flight, check its answer and store it. Everything with effects (the
//! plugin call, the cache, the clock, the audit log) is behind
//! [`seams`], so these rules are unit-tested without wasm
//! (`exec/tests.rs`); `crate::serve` wires the real ones.

mod fresh;
mod lookup;
mod seams;
#[cfg(test)]
mod tests;

pub use seams::{Audit, Clock, CredentialCache, Deps, Flight, PluginCall, SystemClock};

use crate::events::Record;
use crate::runtime::Outcome;
use anyhow::Result;
use std::time::{Duration, Instant};
use wcp_core::answer_scope::{AnswerScope, Narrowed};
use wcp_core::cache_key::Partition;
use wcp_core::config::{HostConfig, PluginConfig};
use wcp_core::protocol::{CacheKeyType, Request, Response};
use wcp_core::shared_failure::SharedFailure;

/// Answers `request`. A request no plugin matches, or one the plugin has
/// nothing for, gets an empty answer; every other failure is the exec's
/// one error line.
pub fn respond(config: &HostConfig, request: &Request, deps: &Deps<'_>) -> Result<Response> {
    let exec = match Exec::start(config, request, deps)? {
        Started::Answered(response) => return Ok(response),
        Started::Miss(exec) => exec,
    };
    let (plugin, request) = (exec.plugin, exec.request);
    // Miss: one process per (plugin, registry, identity) calls the plugin;
    // the others wait for its answer, then find it in the cache.
    let held = match &exec.partition {
        Some(partition) => {
            let flight = partition.flight(&request.image)?;
            // Never past the exec budget: the call that follows is cut to
            // what remains (`budget::call_deadline`).
            let wait_until = (Instant::now() + plugin.limits.timeout + Duration::from_secs(2))
                .min(crate::budget::started() + crate::budget::EXEC_BUDGET);
            exec.shared_failure(&flight)?;
            let lock = deps.cache.lock(&flight, wait_until);
            if let Some(hit) = exec.cached(true)? {
                return Ok(hit);
            }
            // The holder we waited for failed: its line, not another call.
            exec.shared_failure(&flight)?;
            lock.map(|lock| (lock, flight))
        }
        None => None,
    };
    let outcome = deps.plugin.call(plugin, request);
    if let (Err(err), Some((_lock, flight))) = (&outcome, &held)
        && !plugin.cache.share_failures_for.is_zero()
        && err.downcast_ref::<PluginFailed>().is_some()
    {
        // Recorded while the lock is held, so every waiter sees it.
        let line = crate::secrets::scrub(&format!("{err:#}")).into_owned();
        let failure = SharedFailure::new(&line, deps.clock.now_ms(), exec.settings());
        deps.cache.put_failure(flight, &failure);
    }
    match outcome? {
        Outcome::Answer(answer) => exec.fresh(answer),
        Outcome::NoCredentials(why) => {
            tracing::warn!(plugin = %plugin.name, image = %request.image, "plugin has no credentials for the image: {why}");
            Ok(Response::empty(request.api_version))
        }
    }
}

/// The answer [`respond`] gives without calling a plugin, if there is one:
/// a cache hit, or the empty answer for an image no plugin matches.
/// `Ok(None)` when the plugin would be called. The front (`crate::front`)
/// serves these without a WebAssembly engine and hands the rest over.
pub fn respond_without_plugin(
    config: &HostConfig,
    request: &Request,
    deps: &Deps<'_>,
) -> Result<Option<Response>> {
    Ok(match Exec::start(config, request, deps)? {
        Started::Answered(response) => Some(response),
        Started::Miss(_) => None,
    })
}

/// How far an exec gets before a plugin is needed.
enum Started<'a> {
    Answered(Response),
    /// No cached answer: the plugin must be asked (or its flight awaited).
    Miss(Exec<'a>),
}

/// The host config's fingerprint: its settings as `Debug` writes them
/// (deterministic: maps are ordered), hashed.
fn settings_digest(config: &HostConfig) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(format!("{config:?}").as_bytes())[..8])
}

/// A failure of the plugin's own call, after its component was obtained:
/// the kind worth sharing with concurrent execs, since calling again would
/// ask the same upstream. Failures before it (config values, the module,
/// a first-use compile) have their own reporting and are not shared.
#[derive(Debug)]
pub struct PluginFailed(pub anyhow::Error);

impl std::fmt::Display for PluginFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for PluginFailed {}

/// The request's cache partition, or `None` when its service-account
/// identity cannot be read (then nothing is looked up or stored).
fn partition(plugin: &PluginConfig, request: &Request) -> Option<Partition> {
    Partition::new(
        plugin.cache_scope(),
        request.service_account_token.as_deref(),
        &request.service_account_annotations,
        plugin.cache.token_cache_type,
    )
    .inspect_err(|e| tracing::info!(plugin = %plugin.name, "not caching: {e:#}"))
    .ok()
}

/// One request to one plugin, with what is worked out once for it.
struct Exec<'a> {
    plugin: &'a PluginConfig,
    request: &'a Request,
    /// The images the plugin may answer for.
    scope: AnswerScope<'a>,
    partition: Option<Partition>,
    config: &'a HostConfig,
    /// A digest of the whole host config, for shared failures; worked out
    /// only when one is read or written (formatting and hashing the whole
    /// config was a sixth of a cache hit's instructions).
    settings: std::cell::OnceCell<String>,
    deps: &'a Deps<'a>,
}

impl<'a> Exec<'a> {
    /// Selects the plugin and looks in the cache (the kubelet's order).
    fn start(
        config: &'a HostConfig,
        request: &'a Request,
        deps: &'a Deps<'a>,
    ) -> Result<Started<'a>> {
        let Some(plugin) = config.select(&request.image) else {
            tracing::warn!(
                image = %request.image,
                "no plugin's matchImages matches the image; answering with no credentials"
            );
            return Ok(Started::Answered(Response::empty(request.api_version)));
        };
        let exec = Exec {
            plugin,
            request,
            scope: AnswerScope::new(config, &plugin.name)?,
            partition: partition(plugin, request),
            config,
            settings: std::cell::OnceCell::new(),
            deps,
        };
        Ok(match exec.cached(false)? {
            Some(hit) => Started::Answered(hit),
            None => Started::Miss(exec),
        })
    }
}

impl Exec<'_> {
    fn settings(&self) -> &str {
        self.settings.get_or_init(|| settings_digest(self.config))
    }

    /// Fails with the line of a flight that failed within the plugin's
    /// `cache.shareFailuresFor`, if there is one.
    fn shared_failure(&self, flight: &str) -> Result<()> {
        let window = self.plugin.cache.share_failures_for;
        if window.is_zero() {
            return Ok(());
        }
        let now = self.deps.clock.now_ms();
        match self.deps.cache.failure(flight) {
            Some(failure) if failure.is_fresh(now, window, self.settings()) => {
                self.deps.audit.record(&Record::SharedFailure {
                    plugin: &self.plugin.name,
                    registry: wcp_core::image::registry_of(&self.request.image),
                });
                tracing::info!(plugin = %self.plugin.name, "a concurrent exec's flight failed; sharing its failure instead of calling the plugin again");
                Err(anyhow::anyhow!(failure.shared_line(now)))
            }
            _ => Ok(()),
        }
    }

    /// The `cacheKeyType` the kubelet is told instead of `requested`,
    /// logged when it differs (see `wcp_core::answer_scope`).
    fn told(&self, requested: CacheKeyType, narrowed: Narrowed) -> CacheKeyType {
        if let Some(why) = &narrowed.reason {
            tracing::info!(
                plugin = %self.plugin.name,
                "answering with cacheKeyType {:?} instead of {requested:?}: {why}",
                narrowed.kind
            );
        }
        narrowed.kind
    }
}
