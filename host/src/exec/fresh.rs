//! A fresh answer from the plugin: checked, stored, and turned into the
//! kubelet's response.

use super::Exec;
use anyhow::{Context, Result};
use wcp_core::answer::{Answer, response};
use wcp_core::cache_entry::Entry;
use wcp_core::protocol::Response;

impl Exec<'_> {
    /// A fresh answer: refused if it echoes the token or names images
    /// outside the plugin's, stored unless its duration is zero, and
    /// answered with the `cacheKeyType` the kubelet may be told.
    pub(super) fn fresh(&self, answer: Answer) -> Result<Response> {
        let Self {
            plugin, request, ..
        } = *self;
        plugin
            .cache
            .check_token_echo(&answer, request.service_account_token.as_deref())
            .with_context(|| format!("plugin {:?}", plugin.name))?;
        let now = self.deps.clock.now();
        let duration = plugin.cache.duration_secs(answer.expires_at, now);
        let requested = answer.cache_key_type;
        let auth = answer
            .into_auth()
            .with_context(|| format!("plugin {:?} returned an unusable answer", plugin.name))?;
        if self.scope.check_keys(auth.keys()).is_err() {
            // Again, for an error line that quotes the key (plugin output)
            // with the token and secret config values hidden (read from
            // their files or variables only on this error path).
            let secrets = crate::serve::secrets(plugin, request);
            self.scope.hiding(&secrets).check_keys(auth.keys())?;
        }
        let kind = self.told(
            requested,
            self.scope.cache_key_type(requested, &request.image),
        );
        if let Some(partition) = &self.partition
            && duration > 0
        {
            let entry = Entry::new(
                &plugin.name,
                partition,
                kind,
                &request.image,
                auth.clone(),
                now,
                duration,
            )?;
            if let Err(e) = self.deps.cache.put(&entry, now) {
                tracing::info!(plugin = %plugin.name, "could not cache the answer: {e:#}");
            }
        }
        Ok(response(request.api_version, kind, duration, auth))
    }
}
