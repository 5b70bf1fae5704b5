//! Azure Container Registry: an ACR refresh token for the image's
//! registry, from an Entra ID (AAD) token of either the pod's identity (the
//! service-account token as a federated client assertion) or the node's
//! managed identity (IMDS), exchanged at the login server's
//! `/oauth2/exchange` after discovering it from the `/v2/` challenge.
//!
//! Config keys (all optional):
//!
//! - `identity`: `pod`, `node` or `podThenNode`. Unset: `pod` when the
//!   request carries a service-account token, else `node`. `pod` needs the
//!   client id (annotation or `clientId`); `podThenNode` uses the node's
//!   identity for pods that did not opt in, never after a pod identity was
//!   refused.
//! - `clientIdAnnotation`, `tenantIdAnnotation`: default
//!   `kubernetes.azure.com/acr-client-id`, `kubernetes.azure.com/acr-tenant-id`.
//! - `clientId`, `tenantId`: used when the annotation is absent; `tenantId`
//!   is also the exchange's tenant in node mode (else the token's `tid`).
//! - `cloud`: `AzurePublicCloud`, `AzureChinaCloud`, `AzureUSGovernmentCloud`
//!   for registries whose suffix does not say (custom domains, mirrors).
//! - `authorityEndpoint`: the Entra ID authority instead of the cloud's.
//! - `imdsEndpoint`: the instance metadata service, e.g.
//!   `http://169.254.169.254` (an IP cannot be declared: node mode needs it
//!   set *and* granted). `nodeIdentityId`: a user-assigned identity (client
//!   id, or ARM resource id).
//! - `loginServerEndpoint`: the login server URL for every image (a
//!   private endpoint, a custom domain's login server).
//! - `registryMirrors`: `source=<name>.azurecr.io,...`: images of the source
//!   are answered with the ACR registry's token, keyed by the source.
//! - `customDomains`: registry hosts (custom domains) answered by this
//!   plugin; their login server is `loginServerEndpoint`.
//! - `exchangeGrantType`: `access_token` (default) or the older
//!   `access_token_refresh_token`.
//!
//! The pure parts are in [`azure`], [`policy`] and [`text`], unit-tested natively:
//! `cargo test --manifest-path plugins/Cargo.toml -p wcp-plugin-acr --lib`.

mod azure;
// Shared by the cloud providers, kept in the SDK.
use wcp_guest_sdk::{identity_policy as policy, upstream_text as text};

use azure::{Answer, Cloud};
use policy::Chosen;
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, config, http, image, jwt, log};

const DEFAULT_CLIENT_ID_ANNOTATION: &str = "kubernetes.azure.com/acr-client-id";
const DEFAULT_TENANT_ID_ANNOTATION: &str = "kubernetes.azure.com/acr-tenant-id";
/// Attempts of a call that fails transiently, and the first backoff.
const ATTEMPTS: u32 = 3;
const BASE_BACKOFF_MS: u64 = 200;
/// Response bodies of these endpoints are small; anything bigger is hostile.
const MAX_BODY: usize = 64 * 1024;

struct Acr;

impl Provider for Acr {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let mut secrets: Vec<String> = request.service_account_token.iter().cloned().collect();
        let result = credentials(&request, &mut secrets);
        // No upstream should echo a token, but never pass one on if it does.
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

wcp_guest_sdk::export_provider!(Acr);
wcp_guest_sdk::declare_capabilities!("capabilities.json");

/// Where the exchange for one image happens.
struct Target {
    /// The auth key: the image's registry host.
    registry: String,
    /// `https://<login server>` or `loginServerEndpoint`'s origin.
    base: String,
    cloud: Cloud,
}

fn target(registry: &str) -> Result<Target, ProviderError> {
    let config_error = ProviderError::Config;
    let mirrors = azure::parse_mirrors(&config::get("registryMirrors").unwrap_or_default())
        .map_err(config_error)?;
    let custom = azure::parse_hosts(&config::get("customDomains").unwrap_or_default())
        .map_err(config_error)?;
    let endpoint = config::get("loginServerEndpoint").filter(|e| !e.trim().is_empty());
    let login_server = if let Some((_, target)) = mirrors.iter().find(|(s, _)| s == registry) {
        target.clone()
    } else if azure::acr_cloud(registry).is_some() {
        registry.to_string()
    } else if custom.iter().any(|h| h == registry) {
        if endpoint.is_none() {
            return Err(ProviderError::Config(format!(
                "{registry} is listed in customDomains, so config loginServerEndpoint (its login server URL) must be set and granted"
            )));
        }
        registry.to_string()
    } else {
        return Err(ProviderError::NoCredentials(format!(
            "{registry} is not an Azure Container Registry (nor in registryMirrors or customDomains)"
        )));
    };
    let cloud = match config::get("cloud").filter(|c| !c.trim().is_empty()) {
        Some(name) => Cloud::parse(&name).ok_or_else(|| {
            ProviderError::Config(
                "config cloud must be AzurePublicCloud, AzureChinaCloud or AzureUSGovernmentCloud"
                    .into(),
            )
        })?,
        None => azure::acr_cloud(&login_server).unwrap_or(Cloud::Public),
    };
    let base = match endpoint {
        Some(url) => azure::origin(url.trim()).ok_or_else(|| {
            ProviderError::Config("config loginServerEndpoint is not an http(s) URL".into())
        })?,
        None => format!("https://{login_server}"),
    };
    Ok(Target {
        registry: registry.to_string(),
        base,
        cloud,
    })
}

fn credentials(request: &Request, secrets: &mut Vec<String>) -> Result<Credentials, ProviderError> {
    let registry = image::registry_of(&request.image);
    let target = target(registry)?;
    let grant = azure::Grant::parse(config::get("exchangeGrantType").as_deref())
        .map_err(ProviderError::Config)?;
    let policy =
        policy::parse(config::get("identity").as_deref()).map_err(ProviderError::Config)?;

    let annotation = |key: &str, default: &str| {
        let name = config::get(key)
            .filter(|k| !k.trim().is_empty())
            .unwrap_or_else(|| default.to_string());
        let value = request
            .service_account_annotations
            .get(&name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        (name, value)
    };
    let (client_annotation, client_id) =
        annotation("clientIdAnnotation", DEFAULT_CLIENT_ID_ANNOTATION);
    let (tenant_annotation, tenant_id) =
        annotation("tenantIdAnnotation", DEFAULT_TENANT_ID_ANNOTATION);
    let config_tenant = config::get("tenantId")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let client_id = client_id.or_else(|| {
        config::get("clientId")
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
    });
    let token = request
        .service_account_token
        .as_deref()
        .filter(|t| !t.is_empty());

    let chosen = policy::decide(
        policy,
        token.is_some(),
        client_id.is_some(),
        &format!("the service account has no {client_annotation} annotation (forward it with tokenAttributes.optionalServiceAccountAnnotationKeys) and config clientId is not set"),
    )
    .map_err(ProviderError::Unauthorized)?;

    let (aad, tenant) = match chosen {
        Chosen::Pod => {
            let (token, client_id) = (token.unwrap_or_default(), client_id.unwrap_or_default());
            let tenant = tenant_id.or(config_tenant).ok_or_else(|| {
                ProviderError::Config(format!(
                    "pod identity needs a tenant: the service account has no {tenant_annotation} annotation and config tenantId is not set"
                ))
            })?;
            if !azure::valid_client_id(&client_id) {
                return Err(ProviderError::Config(format!(
                    "the client id (annotation {client_annotation} or config clientId) is not a GUID"
                )));
            }
            if !azure::valid_tenant(&tenant) {
                return Err(ProviderError::Config(format!(
                    "the tenant (annotation {tenant_annotation} or config tenantId) is not a GUID or domain name"
                )));
            }
            log::info!(
                "identity used: pod (service account {}, Entra ID application {client_id}, tenant {tenant}) for {registry}",
                subject(token).unwrap_or_else(|| "(unnamed)".into())
            );
            (
                pod_token(&target, token, &client_id, &tenant)?,
                Some(tenant),
            )
        }
        Chosen::Node => {
            log::info!(
                "identity used: node (managed identity{}) for {registry}",
                config::get("nodeIdentityId")
                    .map(|i| format!(" {}", i.trim()))
                    .unwrap_or_default()
            );
            let aad = node_token()?;
            let tenant = config_tenant.or_else(|| azure::tenant_of(&aad));
            (aad, tenant)
        }
    };
    secrets.push(aad.clone());

    let refresh = exchange(&target, grant, tenant.as_deref(), &aad)?;
    secrets.push(refresh.clone());
    let answer = Credentials::registry(&target.registry, azure::USERNAME, &refresh);
    Ok(match azure::refresh_token_expiry(&refresh) {
        Some(exp) => answer.expiring_at(exp),
        None => {
            log::debug!(
                "the ACR refresh token carries no exp: the host's default duration applies"
            );
            answer
        }
    })
}

/// The subject of the service-account token, for messages (unverified).
fn subject(token: &str) -> Option<String> {
    jwt::claims(token).ok()?.sub.map(|s| text::one_line(&s))
}

/// Entra ID: the service-account token as a client assertion.
fn pod_token(
    target: &Target,
    token: &str,
    client_id: &str,
    tenant: &str,
) -> Result<String, ProviderError> {
    let authority = match config::get("authorityEndpoint").filter(|a| !a.trim().is_empty()) {
        Some(a) => a.trim().trim_end_matches('/').to_string(),
        None => target.cloud.authority().to_string(),
    };
    let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
    let claims = jwt::claims(token).unwrap_or_default();
    let ctx = azure::AssertionContext {
        client_id: client_id.to_string(),
        tenant: tenant.to_string(),
        issuer: claims.iss.map(|s| text::one_line(&s)),
        subject: claims.sub.map(|s| text::one_line(&s)),
    };
    let form = azure::aad_form(client_id, token);
    log::debug!("requesting an Entra ID token for application {client_id} at {authority}");
    let aad = with_retries("Entra ID token request", || {
        let response = http::Request::post(&url)
            .form(&form)
            .max_body_bytes(MAX_BODY)
            .send()?;
        Ok(azure::aad_answer(response.status, &response.body, &ctx))
    })?;
    Ok(aad.access_token)
}

/// IMDS: the node's managed identity.
fn node_token() -> Result<String, ProviderError> {
    let Some(endpoint) = config::get("imdsEndpoint").filter(|e| !e.trim().is_empty()) else {
        return Err(ProviderError::Config(
            "node identity uses the Azure instance metadata service: set config imdsEndpoint (http://169.254.169.254) and grant it in grants.outbound".into(),
        ));
    };
    let identity = config::get("nodeIdentityId")
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty());
    let url = format!(
        "{}/metadata/identity/oauth2/token?{}",
        endpoint.trim().trim_end_matches('/'),
        azure::imds_query(identity.as_deref())
    );
    let aad = with_retries("IMDS managed identity token", || {
        let response = http::Request::get(&url)
            .header("Metadata", "true")
            .max_body_bytes(MAX_BODY)
            .send()?;
        Ok(azure::imds_answer(response.status, &response.body))
    })?;
    Ok(aad.access_token)
}

/// `GET /v2/` for the challenge, then `POST <realm origin>/oauth2/exchange`.
fn exchange(
    target: &Target,
    grant: azure::Grant,
    tenant: Option<&str>,
    aad: &str,
) -> Result<String, ProviderError> {
    let challenge = with_retries("ACR /v2/ challenge", || {
        let response = http::Request::get(format!("{}/v2/", target.base))
            .max_body_bytes(MAX_BODY)
            .send()?;
        let status = response.status;
        if status == 429 || status >= 500 {
            return Ok(Answer::Retry(format!(
                "the login server {} answered /v2/ with HTTP {status}",
                target.base
            )));
        }
        let challenge = response
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .find_map(azure::parse_challenge);
        Ok(match challenge {
            Some(c) if status == 401 => Answer::Done(c),
            _ => Answer::Fail(ProviderError::Upstream(format!(
                "the login server {} answered /v2/ with HTTP {status} and no Bearer challenge (realm and service): is it an Azure Container Registry?",
                target.base
            ))),
        })
    })?;
    let realm = azure::origin(&challenge.realm);
    if realm.as_deref() != Some(target.base.as_str()) {
        return Err(ProviderError::Upstream(format!(
            "the login server {} challenged with a realm on another origin; refusing to send it a token",
            target.base
        )));
    }
    if !azure::valid_service(&challenge.service) {
        return Err(ProviderError::Upstream(format!(
            "the login server {} challenged with an invalid service name",
            target.base
        )));
    }
    let url = format!("{}/oauth2/exchange", target.base);
    let form = azure::exchange_form(grant, &challenge.service, tenant, aad);
    log::debug!(
        "exchanging the Entra ID token at {url} for service {}",
        challenge.service
    );
    with_retries("ACR token exchange", || {
        let response = http::Request::post(&url)
            .form(&form)
            .max_body_bytes(MAX_BODY)
            .send()?;
        Ok(azure::exchange_answer(
            response.status,
            &response.body,
            &target.base,
        ))
    })
}

/// Runs `call` up to [`ATTEMPTS`] times while it asks for a retry, sleeping
/// a jittered, doubling backoff in between (200 ms, then 400 ms, each
/// between half and all of it).
fn with_retries<T>(
    what: &str,
    mut call: impl FnMut() -> Result<Answer<T>, ProviderError>,
) -> Result<T, ProviderError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call()? {
            Answer::Done(value) => return Ok(value),
            Answer::Fail(error) => return Err(error),
            Answer::Retry(why) if attempt >= ATTEMPTS => {
                return Err(ProviderError::Upstream(format!(
                    "{why} (gave up after {ATTEMPTS} attempts)"
                )));
            }
            Answer::Retry(why) => {
                let base = BASE_BACKOFF_MS << (attempt - 1);
                let jitter = wcp_guest_sdk::bindings::wasi::random::random::get_random_u64()
                    % (base / 2 + 1);
                let delay = base / 2 + jitter;
                log::info!("{what}: {why}; retrying in {delay} ms");
                wcp_guest_sdk::bindings::wasi::clocks::monotonic_clock::subscribe_duration(
                    delay * 1_000_000,
                )
                .block();
            }
        }
    }
}
