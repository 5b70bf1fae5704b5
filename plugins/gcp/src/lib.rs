//! Google Artifact Registry and Container Registry: an OAuth access token
//! for the image's registry, from the node's service account (the metadata
//! server) or the pod's identity (the service-account token exchanged at
//! Google STS, as auth-provider-gcp does since cloud-provider-gcp #1202),
//! optionally impersonating a Google service account through IAM
//! Credentials `generateAccessToken`.
//!
//! Config keys (all optional):
//!
//! - `identity`: `pod`, `node` or `podThenNode`. Unset: `pod` when the
//!   request carries a service-account token, else `node`. The pod opts in
//!   with the annotation `optInAnnotation` (default
//!   `iam.gke.io/enable-wi-image-pull`) set to `"true"`; an opted-in pod
//!   whose exchange fails is never answered with the node's identity.
//! - `audience` (workload identity federation: the provider's full
//!   `//iam.googleapis.com/...` name), or `projectId` and `identityProvider`
//!   (GKE: `identitynamespace:<project>.svc.id.goog:<identityProvider>`).
//! - `serviceAccountEmail`, or `serviceAccountAnnotation` (an annotation
//!   key, e.g. `iam.gke.io/gcp-service-account`, whose value is the email):
//!   impersonate that Google service account with the federated token.
//! - `nodeServiceAccount`: the metadata server's account, default `default`.
//! - `stsEndpoint` (a full URL, default `https://sts.googleapis.com/v1/token`),
//!   `iamCredentialsEndpoint` (default `https://iamcredentials.googleapis.com`),
//!   `metadataEndpoint` (default `http://metadata.google.internal`).
//!
//! The pure parts are in [`google`], [`policy`] and [`text`], unit-tested natively:
//! `cargo test --manifest-path plugins/Cargo.toml -p wcp-plugin-gcp --lib`.

mod google;
// Shared by the cloud providers, kept in the SDK.
use wcp_guest_sdk::{identity_policy as policy, upstream_text as text};

use google::{Answer, Token};
use policy::Chosen;
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, config, http, image, jwt, log};

const DEFAULT_OPT_IN_ANNOTATION: &str = "iam.gke.io/enable-wi-image-pull";
const DEFAULT_STS_ENDPOINT: &str = "https://sts.googleapis.com/v1/token";
const DEFAULT_IAM_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
const DEFAULT_METADATA_ENDPOINT: &str = "http://metadata.google.internal";
const ATTEMPTS: u32 = 3;
const BASE_BACKOFF_MS: u64 = 200;
const MAX_BODY: usize = 64 * 1024;

struct Gcp;

impl Provider for Gcp {
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

wcp_guest_sdk::export_provider!(Gcp);
wcp_guest_sdk::declare_capabilities!("capabilities.json");

fn setting(key: &str) -> Option<String> {
    config::get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn credentials(request: &Request, secrets: &mut Vec<String>) -> Result<Credentials, ProviderError> {
    let registry = image::registry_of(&request.image);
    if !google::is_google_registry(registry) {
        return Err(ProviderError::NoCredentials(format!(
            "{registry} is not a Google registry (gcr.io, *.gcr.io, *.pkg.dev, container.cloud.google.com)"
        )));
    }
    let policy =
        policy::parse(config::get("identity").as_deref()).map_err(ProviderError::Config)?;
    let opt_in =
        setting("optInAnnotation").unwrap_or_else(|| DEFAULT_OPT_IN_ANNOTATION.to_string());
    let opted_in = request
        .service_account_annotations
        .get(&opt_in)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let token = request
        .service_account_token
        .as_deref()
        .filter(|t| !t.is_empty());
    let chosen = policy::decide(
        policy,
        token.is_some(),
        opted_in,
        &format!(
            "the service account is not opted in: annotate it {opt_in}: \"true\" (and forward that annotation with tokenAttributes.optionalServiceAccountAnnotationKeys)"
        ),
    )
    .map_err(ProviderError::Unauthorized)?;

    let issued = match chosen {
        Chosen::Pod => pod_token(request, token.unwrap_or_default(), registry, secrets)?,
        Chosen::Node => {
            let account = setting("nodeServiceAccount").unwrap_or_else(|| "default".to_string());
            log::info!(
                "identity used: node (metadata server service account {account}) for {registry}"
            );
            node_token(&account)?
        }
    };
    secrets.push(issued.access_token.clone());
    let answer = Credentials::registry(registry, google::USERNAME, &issued.access_token);
    let expires_at = issued
        .expires_at
        .or_else(|| Some(now()? + issued.expires_in?));
    Ok(match expires_at {
        Some(t) => answer.expiring_at(t),
        None => answer,
    })
}

fn pod_token(
    request: &Request,
    token: &str,
    registry: &str,
    secrets: &mut Vec<String>,
) -> Result<Token, ProviderError> {
    let audience = google::audience(
        config::get("audience").as_deref(),
        config::get("projectId").as_deref(),
        config::get("identityProvider").as_deref(),
    )
    .map_err(ProviderError::Config)?;
    let email = match setting("serviceAccountAnnotation") {
        Some(key) => request
            .service_account_annotations
            .get(&key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty()),
        None => None,
    }
    .or_else(|| setting("serviceAccountEmail"));
    if let Some(email) = &email
        && !google::valid_email(email)
    {
        return Err(ProviderError::Config(
            "the Google service account to impersonate (serviceAccountAnnotation or serviceAccountEmail) is not a service account email".into(),
        ));
    }
    let subject = jwt::claims(token)
        .ok()
        .and_then(|c| c.sub)
        .map(|s| text::one_line(&s))
        .unwrap_or_else(|| "(none)".into());
    log::info!(
        "identity used: pod (service account {subject}, STS audience {audience}{}) for {registry}",
        email
            .as_deref()
            .map(|e| format!(", impersonating {e}"))
            .unwrap_or_default()
    );
    let sts = setting("stsEndpoint").unwrap_or_else(|| DEFAULT_STS_ENDPOINT.to_string());
    let body = google::sts_body(&audience, token);
    let federated = with_retries("Google STS token exchange", || {
        let response = http::Request::post(&sts)
            .json(&body)
            .max_body_bytes(MAX_BODY)
            .send()?;
        Ok(google::sts_answer(
            response.status,
            &response.body,
            &audience,
        ))
    })?;
    let Some(email) = email else {
        return Ok(federated);
    };
    secrets.push(federated.access_token.clone());
    let base =
        setting("iamCredentialsEndpoint").unwrap_or_else(|| DEFAULT_IAM_ENDPOINT.to_string());
    let url = format!(
        "{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
        base.trim_end_matches('/')
    );
    let body = google::iam_body();
    let bearer = format!("Bearer {}", federated.access_token);
    with_retries("IAM Credentials generateAccessToken", || {
        let response = http::Request::post(&url)
            .header("authorization", &bearer)
            .json(&body)
            .max_body_bytes(MAX_BODY)
            .send()?;
        Ok(google::iam_answer(
            response.status,
            &response.body,
            &email,
            &subject,
        ))
    })
}

fn node_token(account: &str) -> Result<Token, ProviderError> {
    if !google::valid_metadata_account(account) {
        return Err(ProviderError::Config(
            "config nodeServiceAccount must be default or a service account email".into(),
        ));
    }
    let endpoint =
        setting("metadataEndpoint").unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.to_string());
    let url = format!(
        "{}/computeMetadata/v1/instance/service-accounts/{account}/token",
        endpoint.trim_end_matches('/')
    );
    with_retries("metadata server token", || {
        let response = http::Request::get(&url)
            .header("Metadata-Flavor", "Google")
            .max_body_bytes(MAX_BODY)
            .send()
            .map_err(|e| {
                let denied = matches!(e, http::HttpError::Denied(_));
                match ProviderError::from(e) {
                    ProviderError::Config(m) if denied => ProviderError::Config(format!(
                        "{m}; node identity uses the metadata server: grant http://metadata.google.internal in grants.outbound and allowPrivateNetworks [\"169.254.169.254/32\"]"
                    )),
                    other => other,
                }
            })?;
        Ok(google::metadata_answer(
            response.status,
            &response.body,
            account,
        ))
    })
}

fn now() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
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
