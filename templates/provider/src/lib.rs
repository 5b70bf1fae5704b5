//! Exchanges the pod's service-account token for a registry token at an
//! RFC 8693 token endpoint (config `tokenEndpoint`), for the image's
//! registry. Optional config: `audience` (default: the registry), `scope`,
//! `username` (default `oauth2`).
use wcp_guest_sdk::http::oauth::TokenExchange;
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, config, image};

pub struct MyProvider;

impl Provider for MyProvider {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let endpoint = config::require("tokenEndpoint")?;
        let subject = request.require_service_account_token()?;
        let registry = image::registry_of(&request.image);
        let audience = config::get("audience").unwrap_or_else(|| registry.to_string());
        let mut exchange = TokenExchange::new(endpoint, subject).audience(audience);
        if let Some(scope) = config::get("scope") {
            exchange = exchange.scope(scope);
        }
        let username = config::get("username").unwrap_or_else(|| "oauth2".into());
        Ok(exchange.send()?.into_credentials(registry, &username))
    }
}

wcp_guest_sdk::export_provider!(MyProvider);
// What the provider needs; the host grants nothing that is not declared.
wcp_guest_sdk::declare_capabilities!("capabilities.json");

// Native only: `cargo test` runs the provider through the SDK's harness.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
