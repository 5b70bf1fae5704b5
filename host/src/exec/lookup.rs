//! Answering from the cache, in the kubelet's lookup order.

use super::Exec;
use crate::events::Record;
use anyhow::Result;
use wcp_core::answer::response;
use wcp_core::image::registry_of;
use wcp_core::protocol::Response;

impl Exec<'_> {
    /// The first usable entry for the request's image under the image,
    /// registry, then global key (kubelet's order). An entry is served only
    /// if its auth keys are still within the plugin's images (the config
    /// may have changed since it was stored), with its `cacheKeyType`
    /// narrowed as a fresh answer's would be. `after_flight`: this exec
    /// waited for another's flight (the hit is that flight's answer).
    pub(super) fn cached(&self, after_flight: bool) -> Result<Option<Response>> {
        let Some(partition) = &self.partition else {
            return Ok(None);
        };
        let Self {
            plugin,
            request,
            deps,
            ..
        } = *self;
        let now = deps.clock.now();
        for (kind, key) in partition.lookup_keys(&request.image)? {
            let Some(entry) = deps.cache.get(&partition.scope, &key, now) else {
                continue;
            };
            let served = match entry.served_kind(&self.scope, &request.image) {
                Ok(narrowed) => self.told(entry.key_kind, narrowed),
                Err(_) => {
                    tracing::info!(
                        plugin = %plugin.name,
                        "ignoring a cached answer with an auth key outside the plugin's images (the host config changed since it was stored)"
                    );
                    continue;
                }
            };
            let remaining = entry.remaining(now).unwrap_or(0);
            deps.audit.record(&Record::CacheHit {
                plugin: &plugin.name,
                key_kind: kind,
                registry: registry_of(&request.image),
                remaining_seconds: remaining,
                after_flight,
            });
            return Ok(Some(response(
                request.api_version,
                served,
                remaining,
                entry.auth,
            )));
        }
        Ok(None)
    }
}
