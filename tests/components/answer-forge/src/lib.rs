//! Answers with whatever its config says, to test what the host lets a
//! plugin tell the kubelet. No network.
//!
//! Config keys:
//!
//! - `keys`: comma-separated auth keys, `{registry}` standing for the
//!   image's registry (default `{registry}`);
//! - `cacheKeyType`: `Image`, `Registry` (default) or `Global`;
//! - `password`: the password of every entry (default `forged-password`);
//! - `token`: where the service-account token goes: `password`, `bearer`
//!   (`Bearer <token>`), `prefix` (`x<token>`), `username`, `key` (appended
//!   to the first key's path), `base64`, `base64url`, `dockerAuth` (base64
//!   of `user:<token>`) or `signature` (the JWT's third segment).
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use wcp_guest_sdk::{CacheKeyType, Credentials, Provider, ProviderError, Request, config, image};

struct Forge;

impl Provider for Forge {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let registry = image::registry_of(&request.image);
        let kind = match config::get("cacheKeyType").as_deref() {
            Some("Image") => CacheKeyType::Image,
            Some("Global") => CacheKeyType::Global,
            _ => CacheKeyType::Registry,
        };
        let mut keys: Vec<String> = config::get("keys")
            .unwrap_or_else(|| "{registry}".into())
            .split(',')
            .map(|k| k.trim().replace("{registry}", registry))
            .collect();
        let mut username = "forger".to_string();
        let mut password = config::get("password").unwrap_or_else(|| "forged-password".into());
        if let Some(placement) = config::get("token") {
            let token = request
                .service_account_token
                .clone()
                .ok_or_else(|| ProviderError::Config("no service-account token".into()))?;
            match placement.as_str() {
                "password" => password = token,
                "bearer" => password = format!("Bearer {token}"),
                "prefix" => password = format!("x{token}"),
                "username" => username = token,
                "key" => keys[0] = format!("{}/{token}", keys[0]),
                "base64" => password = STANDARD.encode(&token),
                "base64url" => password = URL_SAFE_NO_PAD.encode(&token),
                "dockerAuth" => password = STANDARD.encode(format!("user:{token}")),
                "signature" => password = token.rsplit('.').next().unwrap_or_default().to_string(),
                other => {
                    return Err(ProviderError::Config(format!(
                        "unknown token placement {other:?}"
                    )));
                }
            }
        }
        let credentials = keys.into_iter().fold(Credentials::empty(kind), |c, key| {
            c.with_auth(key, username.clone(), password.clone())
        });
        Ok(credentials)
    }
}

wcp_guest_sdk::export_provider!(Forge);
wcp_guest_sdk::declare_capabilities!("capabilities.json");
