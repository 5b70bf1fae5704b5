//! The smallest real provider: a fixed username and password from the
//! plugin's config, for the registry of the requested image. For registries
//! with long-lived robot accounts, where there is no token to exchange.
//!
//! Config keys:
//!
//! - `username` (required)
//! - `password` (required). Keep it out of the host config file: set it with
//!   the host's `configFromFile` (a root-only file) or `configFromEnv` (a
//!   variable from the kubelet provider's `env`) instead of `config`.
//! - `matchKey` (optional): the auth key the credential is returned under,
//!   e.g. `*.registry.example.com` or `registry.example.com/team-a`, instead
//!   of the image's registry `host[:port]`. The host refuses a key that
//!   reaches beyond the plugin's `matchImages`, so a plugin selected by a
//!   path (`registry.example.com/team-a`) needs it.
//!
//! The answer is cached per registry and has no expiry, so the kubelet's
//! `defaultCacheDuration` applies.

use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, config, image};

struct Static;

impl Provider for Static {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let username = config::require("username")?;
        let password = config::require("password")?;
        let match_key = match config::get("matchKey") {
            Some(key) if key.is_empty() => {
                return Err(ProviderError::Config(
                    "config key \"matchKey\" is empty; remove it to use the image's registry"
                        .into(),
                ));
            }
            Some(key) => key,
            None => image::registry_of(&request.image).to_string(),
        };
        Ok(Credentials::registry(match_key, username, password))
    }
}

wcp_guest_sdk::export_provider!(Static);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
