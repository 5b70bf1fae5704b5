//! One configurable service-account token exchange: the pod's token goes to
//! the operator's token endpoint, a registry credential comes back. Serves
//! JFrog Artifactory, Cloudsmith, Quay robot federation, Yandex Cloud and
//! any RFC 8693 server with a preset, and other vendors with `custom`.
//!
//! Config (the host checks the shapes and refuses unknown keys at load):
//!
//! - `preset`: `jfrog`, `cloudsmith`, `quay`, `yandex`, `rfc8693`, `custom`;
//! - `endpoint`: the token endpoint's full URL. Only the operator sets it:
//!   nothing in the image, the request or an annotation can redirect the
//!   token (see the README);
//! - preset values: `providerName`, `projectKey`, `audience` (JFrog);
//!   `serviceSlug` (Cloudsmith); `authUsername` (Quay's robot, e.g.
//!   `$annotation:quay.io/federated-robot-account`); `audience` (Yandex,
//!   RFC 8693), `scope` (RFC 8693);
//! - overrides: `method`, `encoding` (`form`, `json`, `none`), `fields`
//!   (JSON object of body fields: `$token`, `$registry`,
//!   `$annotation:<key>` or a literal), `auth` (`none`, `basic`: Basic
//!   `authUsername:<token>`, `bearer`), `passwordPointer`,
//!   `usernamePointer` or `username`, `expiry` (`expiresIn` at
//!   `expiresInPointer`, `jwt`, `none`), `cacheKeyType`.
//!
//! The pure parts are in [`spec`] and [`answer`]:
//! `cargo test --manifest-path plugins/Cargo.toml -p wcp-plugin-token-exchange --lib`.

mod answer;
mod spec;

use spec::{Auth, Encoding, Expiry, Spec, Username};
use wcp_guest_sdk::{
    CacheKeyType, Credentials, Provider, ProviderError, Request, basic_auth, config, http, image,
    jwt, log, upstream_text as text,
};

const MAX_BODY: usize = 64 * 1024;
const ATTEMPTS: u32 = 3;
const BASE_BACKOFF_MS: u64 = 200;

struct TokenExchange;

impl Provider for TokenExchange {
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

wcp_guest_sdk::export_provider!(TokenExchange);
wcp_guest_sdk::declare_capabilities!("capabilities.json");

fn setting(key: &str) -> Option<String> {
    config::get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn credentials(request: &Request, secrets: &mut Vec<String>) -> Result<Credentials, ProviderError> {
    let spec = Spec::from_config(&setting).map_err(ProviderError::Config)?;
    let token = request.require_service_account_token()?;
    let registry = image::registry_of(&request.image);
    let annotations = &request.service_account_annotations;
    let resolve = |source: &spec::Source| {
        source
            .resolve(token, registry, annotations)
            .map_err(ProviderError::Config)
    };
    let what = format!("{} token exchange at {}", spec.preset.name(), spec.origin());
    let subject = jwt::claims(token)
        .ok()
        .and_then(|c| c.sub)
        .map(|s| text::one_line(&s))
        .unwrap_or_else(|| "(none)".into());
    log::info!("{what}: exchanging the token of {subject} for {registry}");

    let mut fields = Vec::with_capacity(spec.fields.len());
    for (name, source) in &spec.fields {
        fields.push((name.clone(), resolve(source)?));
    }
    let mut auth_user = None;
    let authorization = match &spec.auth {
        Auth::None => None,
        Auth::Bearer => Some(format!("Bearer {token}")),
        Auth::Basic(user) => {
            let user = resolve(user)?;
            let header = format!("Basic {}", basic_auth::encode(&user, token));
            auth_user = Some(user);
            Some(header)
        }
    };
    let response = with_retries(&what, || {
        let mut call = if spec.post {
            http::Request::post(&spec.endpoint)
        } else {
            http::Request::get(&spec.endpoint)
        };
        call = match spec.encoding {
            Encoding::Form => call.form(&fields),
            Encoding::Json => {
                let body: serde_json::Map<String, serde_json::Value> = fields
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                call.json(&body)
            }
            Encoding::None => call,
        };
        if let Some(value) = &authorization {
            call = call.header("authorization", value);
        }
        call.header("accept", "application/json")
            .max_body_bytes(MAX_BODY)
            .send()
            .map_err(ProviderError::from)
    })?;
    if !response.is_success() {
        // Before any parsing: a refusal that quotes the token would
        // otherwise be cut mid-token by the one-line bound, and a cut token
        // no longer matches any redaction.
        let body = text::redact(&String::from_utf8_lossy(&response.body), &[token]);
        return Err(answer::refusal(&what, response.status, body.as_bytes()));
    }
    let username_pointer = match &spec.username {
        Username::Pointer(p) => Some(p.as_str()),
        _ => None,
    };
    let expires_pointer = match &spec.expiry {
        Expiry::ExpiresIn(p) => Some(p.as_str()),
        _ => None,
    };
    let issued = answer::issued(
        &response.body,
        &spec.password_pointer,
        username_pointer,
        expires_pointer,
    )
    .map_err(|m| ProviderError::Upstream(format!("{what}: {m}")))?;
    secrets.push(issued.password.clone());
    let username = match &spec.username {
        Username::Pointer(_) => issued.username.clone().unwrap_or_default(),
        Username::Literal(name) => name.clone(),
        Username::AuthUser => auth_user.unwrap_or_default(),
    };
    let kind = if spec.per_image {
        CacheKeyType::Image
    } else {
        CacheKeyType::Registry
    };
    let key = if spec.per_image {
        request.image.as_str()
    } else {
        registry
    };
    let answer = Credentials::registry(key, username, &issued.password).with_cache_key_type(kind);
    Ok(match spec.expiry {
        Expiry::ExpiresIn(_) => match issued.expires_in {
            Some(seconds) => answer.expiring_in(seconds),
            None => answer,
        },
        Expiry::Jwt => match answer::jwt_expiry(&issued.password) {
            Some(exp) => answer.expiring_at(exp),
            None => {
                log::info!(
                    "{what}: the issued token is not a JWT with exp; the host's defaultDuration applies"
                );
                answer
            }
        },
        Expiry::None => answer,
    })
}

/// Sends up to [`ATTEMPTS`] times while the server answers 429 or 5xx
/// (Cloudsmith and Yandex throttle), with a jittered, doubling backoff.
fn with_retries(
    what: &str,
    mut send: impl FnMut() -> Result<http::Response, ProviderError>,
) -> Result<http::Response, ProviderError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let response = send()?;
        let retry = matches!(response.status, 429 | 500 | 502 | 503 | 504);
        if !retry || attempt >= ATTEMPTS {
            return Ok(response);
        }
        let base = BASE_BACKOFF_MS << (attempt - 1);
        let jitter =
            wcp_guest_sdk::bindings::wasi::random::random::get_random_u64() % (base / 2 + 1);
        let delay = base / 2 + jitter;
        log::info!("{what}: HTTP {}; retrying in {delay} ms", response.status);
        wcp_guest_sdk::bindings::wasi::clocks::monotonic_clock::subscribe_duration(
            delay * 1_000_000,
        )
        .block();
    }
}
