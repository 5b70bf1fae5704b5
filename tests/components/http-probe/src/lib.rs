//! Requests the URL in config `target` and, if config `followRedirect` is
//! `true`, follows one redirect itself (the host never follows redirects,
//! so the second hop is checked like any request). Success means the
//! sandbox let it through: it returns what it read as the password.
//!
//! For cache tests it also answers with the `cacheKeyType` named in config
//! (`Image`, `Registry`, `Global`; default `Registry`), an expiry
//! `expiresIn` seconds from now if set, and with `echoToken: true` the
//! service-account token itself as the password. Config `userAgent` sets
//! the first request's `User-Agent` itself.
use wcp_guest_sdk::{
    CacheKeyType, Credentials, Provider, ProviderError, Request, config, http, image,
};

struct Probe;

impl Provider for Probe {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let target = config::require("target")?;
        let follow = config::get("followRedirect").as_deref() == Some("true");
        let mut first = http::Request::get(&target).max_body_bytes(256 << 20);
        if let Some(agent) = config::get("userAgent") {
            first = first.header("user-agent", agent);
        }
        let mut response = first
            .send()
            .map_err(|e| ProviderError::Upstream(format!("request to target failed: {e}")))?;
        if follow && (300..400).contains(&response.status) {
            let location = response
                .header("location")
                .ok_or_else(|| ProviderError::Upstream("redirect without location".into()))?
                .to_string();
            response = http::Request::get(&location)
                .max_body_bytes(256 << 20)
                .send()
                .map_err(|e| ProviderError::Upstream(format!("redirected request failed: {e}")))?;
        }
        let mut password = String::from_utf8_lossy(&response.body).into_owned();
        if config::get("echoToken").as_deref() == Some("true") {
            password = request.service_account_token.clone().unwrap_or_default();
        }
        let kind = match config::get("cacheKeyType").as_deref() {
            Some("Image") => CacheKeyType::Image,
            Some("Global") => CacheKeyType::Global,
            _ => CacheKeyType::Registry,
        };
        let mut credentials =
            Credentials::registry(image::registry_of(&request.image), "probe", password)
                .with_cache_key_type(kind);
        if let Some(secs) = config::get("expiresIn").and_then(|v| v.parse::<u64>().ok()) {
            credentials = credentials.expiring_in(secs);
        }
        Ok(credentials)
    }
}

wcp_guest_sdk::export_provider!(Probe);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
