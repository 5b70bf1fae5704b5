//! A provider of the test-only world `wcp:credential-provider@0.99.0`
//! (`wit/provider.wit` beside this crate). It answers with what only that
//! version's request carries (the registry) and a config value, so a host
//! test can see the request and the answer crossed that version's
//! conversions.

wit_bindgen::generate!({
    world: "plugin",
    path: "wit",
});

use exports::wcp::credential_provider::provider::Guest;
use wcp::credential_provider::config;
use wcp::credential_provider::types::{
    AuthEntry, CacheKeyType, Credentials, ProviderError, Request,
};

struct NextApi;

impl Guest for NextApi {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let Some(username) = config::get("username") else {
            return Err(ProviderError::Config("username is not set".into()));
        };
        Ok(Credentials {
            auth: vec![AuthEntry {
                match_key: request.registry,
                username,
                password: format!("next-api-for-{}", request.image),
            }],
            cache_key_type: CacheKeyType::Registry,
            expires_at: None,
        })
    }
}

export!(NextApi);

/// The capability declaration the guest SDK's `declare_capabilities!`
/// would embed: this crate uses no SDK (the SDK speaks 0.1).
#[used]
#[unsafe(link_section = "wcp-capabilities")]
static WCP_CAPABILITIES: [u8; 23] = *br#"{"config":["username"]}"#;
