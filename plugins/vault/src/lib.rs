//! HashiCorp Vault: log in with the pod's service-account token (Kubernetes
//! auth, `POST <address>/v1/auth/<authMount>/login` `{"role","jwt"}`), then
//! read the registry credential from KV v2 (`GET
//! <address>/v1/<kvMount>/data/<path>` with `X-Vault-Token`).
//!
//! Config (the host checks the shapes and refuses unknown keys at load):
//!
//! - `address`: Vault's URL (grant its origin in `grants.outbound`);
//! - `role`, or `roleAnnotation` (a service-account annotation key whose
//!   value is the role; `role` is then the fallback);
//! - `path`: the secret path under the KV mount, a template of
//!   `{namespace}`, `{serviceAccount}` (from the token) and `{registry}`
//!   (the image's `host[:port]`), e.g. `registry/{namespace}/{registry}`;
//! - `authMount` (default `kubernetes`), `kvMount` (default `secret`),
//!   `usernameField`/`passwordField` (default `username`/`password`),
//!   `vaultNamespace` (sent as `X-Vault-Namespace`), `maxDuration` (a Go
//!   duration bounding the credential's life beside the login lease).
//!
//! The client token is used for the one read and dropped: never cached,
//! never logged (the plugin redacts it from every message it builds).
//!
//! Pure parts in [`vault`]:
//! `cargo test --manifest-path plugins/Cargo.toml -p wcp-plugin-vault --lib`.

mod vault;

use vault::PathInputs;
use wcp_guest_sdk::{
    Credentials, Provider, ProviderError, Request, config, http, image, jwt, log,
    upstream_text as text,
};

const MAX_BODY: usize = 64 * 1024;

struct Vault;

impl Provider for Vault {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let mut secrets: Vec<String> = request.service_account_token.iter().cloned().collect();
        let result = credentials(&request, &mut secrets);
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        result.map_err(|error| match error {
            ProviderError::Config(m) => ProviderError::Config(text::redact(&m, &refs)),
            ProviderError::Unauthorized(m) => ProviderError::Unauthorized(text::redact(&m, &refs)),
            ProviderError::Upstream(m) => ProviderError::Upstream(text::redact(&m, &refs)),
            ProviderError::NoCredentials(m) => {
                ProviderError::NoCredentials(text::redact(&m, &refs))
            }
        })
    }
}

wcp_guest_sdk::export_provider!(Vault);
wcp_guest_sdk::declare_capabilities!("capabilities.json");

fn setting(key: &str) -> Option<String> {
    config::get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn credentials(request: &Request, secrets: &mut Vec<String>) -> Result<Credentials, ProviderError> {
    let config_error = ProviderError::Config;
    let address = setting("address").ok_or_else(|| {
        config_error(
            "config address is not set: Vault's URL, e.g. https://vault.example.com:8200".into(),
        )
    })?;
    let address = address.trim_end_matches('/');
    let template = setting("path").ok_or_else(|| {
        config_error(
            "config path is not set: the KV v2 secret path, e.g. registry/{namespace}/{registry}"
                .into(),
        )
    })?;
    let auth_mount = setting("authMount").unwrap_or_else(|| "kubernetes".into());
    let kv_mount = setting("kvMount").unwrap_or_else(|| "secret".into());
    vault::check_mount("authMount", &auth_mount).map_err(config_error)?;
    vault::check_mount("kvMount", &kv_mount).map_err(config_error)?;
    let max = match setting("maxDuration") {
        Some(d) => Some(
            humantime::parse_duration(&d)
                .map_err(|_| {
                    config_error("config maxDuration must be a duration such as 1h".into())
                })?
                .as_secs(),
        ),
        None => None,
    };
    let token = request.require_service_account_token()?;
    let role = match setting("roleAnnotation") {
        Some(key) => request
            .service_account_annotations
            .get(&key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .or_else(|| setting("role")),
        None => setting("role"),
    }
    .ok_or_else(|| {
        config_error("no Vault role: set config role, or roleAnnotation and annotate the service account (forwarded by the kubelet's tokenAttributes)".into())
    })?;
    vault::check_role(&role).map_err(config_error)?;

    let claims = jwt::claims(token).ok();
    let kubernetes = claims.as_ref().and_then(|c| c.kubernetes.as_ref());
    let registry = image::registry_of(&request.image);
    let path = vault::render_path(
        &template,
        &PathInputs {
            namespace: kubernetes.and_then(|k| k.namespace.as_deref()),
            service_account: kubernetes
                .and_then(|k| k.serviceaccount.as_ref())
                .map(|s| s.name.as_str()),
            registry,
        },
    )
    .map_err(config_error)?;
    let namespace = setting("vaultNamespace");
    let with_namespace = |call: http::Request| match &namespace {
        Some(ns) => call.header("x-vault-namespace", ns),
        None => call,
    };

    let login_what = format!("Vault login at {address} (auth/{auth_mount}, role {role})");
    log::info!("{login_what} for {registry}");
    let body = serde_json::json!({ "role": role, "jwt": token });
    let response = with_namespace(http::Request::post(format!(
        "{address}/v1/auth/{auth_mount}/login"
    )))
    .json(&body)
    .max_body_bytes(MAX_BODY)
    .send()?;
    if !response.is_success() {
        // Redacted before the one-line bound can cut a quoted token.
        let body = text::redact(&String::from_utf8_lossy(&response.body), &[token]);
        return Err(vault::failure(
            &login_what,
            response.status,
            body.as_bytes(),
        ));
    }
    let (client_token, lease) = vault::login_answer(&response.body)
        .map_err(|m| ProviderError::Upstream(format!("{login_what}: {m}")))?;
    secrets.push(client_token.clone());

    let read_what = format!("Vault KV read of {kv_mount}/data/{path}");
    let response = with_namespace(http::Request::get(format!(
        "{address}/v1/{kv_mount}/data/{path}"
    )))
    .header("x-vault-token", &client_token)
    .max_body_bytes(MAX_BODY)
    .send()?;
    if !response.is_success() {
        let body = text::redact(
            &String::from_utf8_lossy(&response.body),
            &[token, &client_token],
        );
        return Err(vault::failure(&read_what, response.status, body.as_bytes()));
    }
    let username_field = setting("usernameField").unwrap_or_else(|| "username".into());
    let password_field = setting("passwordField").unwrap_or_else(|| "password".into());
    let (username, password) = vault::kv_answer(&response.body, &username_field, &password_field)
        .map_err(|m| ProviderError::Upstream(format!("{read_what}: {m}")))?;
    secrets.push(password.clone());
    let life = [Some(lease).filter(|l| *l > 0), max]
        .into_iter()
        .flatten()
        .min();
    let answer = Credentials::registry(registry, text::one_line(&username), password);
    Ok(match life {
        Some(seconds) => answer.expiring_in(seconds),
        None => answer,
    })
}
