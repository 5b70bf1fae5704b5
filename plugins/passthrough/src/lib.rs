//! Service-account pass-through: the pod's service-account token *is* the
//! registry password, for registries that verify Kubernetes tokens
//! themselves (Harbor workload identity federation, Zot, kubernetes#140065).
//! No network at all: the component declares no outbound destination.
//!
//! Config: `username` (default `jwt`), `cacheKeyType` (`Registry`, the
//! default, or `Image`). The credential expires with the token's `exp`.
//!
//! Because the token is the credential, the answer must be cached per
//! token: the host refuses it unless the plugin has
//! `cache: {tokenCacheType: Token}` and says so, and the kubelet's provider
//! entry needs `tokenAttributes.cacheType: Token`.

use wcp_guest_sdk::{
    CacheKeyType, Credentials, Provider, ProviderError, Request, config, image, jwt,
};

struct Passthrough;

impl Provider for Passthrough {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let token = request.require_service_account_token()?;
        let username = config::get("username")
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "jwt".into());
        let per_image = config::get("cacheKeyType").as_deref() == Some("Image");
        let registry = image::registry_of(&request.image);
        let (key, kind) = if per_image {
            (request.image.as_str(), CacheKeyType::Image)
        } else {
            (registry, CacheKeyType::Registry)
        };
        let exp = jwt::claims(token).ok().and_then(|c| c.exp).ok_or_else(|| {
            ProviderError::Config(
                "the service-account token is not a JWT with an exp claim, so it cannot be a registry password".into(),
            )
        })?;
        Ok(Credentials::registry(key, username, token)
            .with_cache_key_type(kind)
            .expiring_at(exp))
    }
}

wcp_guest_sdk::export_provider!(Passthrough);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
