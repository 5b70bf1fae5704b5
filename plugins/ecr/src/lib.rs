//! AWS ECR: an ECR authorization token for the image's registry, obtained
//! with the pod's service-account token (STS `AssumeRoleWithWebIdentity`)
//! or the node's credentials (static keys from the environment, or the
//! instance role through IMDSv2), signed with SigV4.
//!
//! Config keys (all optional):
//!
//! - `roleArnAnnotation`: the service-account annotation holding the role
//!   ARN (default `eks.amazonaws.com/ecr-role-arn`; the kubelet forwards it
//!   when it is listed in `tokenAttributes.optionalServiceAccountAnnotationKeys`).
//! - `roleArn`: the role to assume when the annotation is absent.
//! - `roleSessionName`: default `ecr-credential-provider`.
//! - `region`: the region of the default STS endpoint (default: the
//!   registry's region).
//! - `stsEndpoint`, `ecrEndpoint`: endpoint URLs instead of the regional
//!   defaults (FIPS, VPC endpoints); grant them too.
//! - `imdsEndpoint`: the instance metadata service, default
//!   `http://169.254.169.254`. An IP cannot be declared, so node mode via
//!   IMDS needs the operator to set it *and* grant it.
//!
//! Service-account mode applies when the kubelet sends a token and a role
//! ARN is found; otherwise node credentials are used: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) when granted, else the
//! instance role. An image outside ECR gets no credentials.
//!
//! The pure parts (registry parsing, SigV4, the STS, ECR and IMDS answers,
//! timestamps) are plain modules with native unit tests:
//! `cargo test --manifest-path plugins/Cargo.toml -p wcp-plugin-ecr --lib`.

mod ecr_api;
mod imds;
mod registry;
mod sigv4;
mod sts;
mod time;

use registry::Registry;
use sigv4::AwsCredentials;
use wcp_guest_sdk::{
    Credentials, Provider, ProviderError, Request, basic_auth, config, http, image, log,
};

const DEFAULT_ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";
const DEFAULT_ROLE_SESSION_NAME: &str = "ecr-credential-provider";
const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
const ECR_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Attempts of a call that fails transiently, and the first backoff.
const ATTEMPTS: u32 = 3;
const BASE_BACKOFF_MS: u64 = 200;

struct Ecr;

impl Provider for Ecr {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let host = image::registry_of(&request.image);
        let Some(registry) = registry::parse(host) else {
            return Err(ProviderError::NoCredentials(format!(
                "{host} is not an Amazon ECR registry"
            )));
        };
        let token = request.service_account_token.as_deref();
        let result = aws_credentials(&request, &registry).and_then(|credentials| {
            let (encoded, expires_at) = authorization_token(&registry, &credentials)?;
            let (username, password) = basic_auth::split(&encoded)?;
            let answer = Credentials::registry(host, username, password);
            Ok(match expires_at {
                Some(t) => answer.expiring_at(t),
                None => answer,
            })
        });
        // No upstream should echo the token, but never pass it on if one does.
        result.map_err(|error| match token {
            Some(token) if token.len() >= 4 => redact(error, token),
            _ => error,
        })
    }
}

wcp_guest_sdk::export_provider!(Ecr);
wcp_guest_sdk::declare_capabilities!("capabilities.json");

/// The credentials to sign the ECR call with.
fn aws_credentials(
    request: &Request,
    registry: &Registry,
) -> Result<AwsCredentials, ProviderError> {
    if let Some(token) = &request.service_account_token {
        let annotation = config::get("roleArnAnnotation")
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| DEFAULT_ROLE_ARN_ANNOTATION.to_string());
        let role_arn = request
            .service_account_annotations
            .get(&annotation)
            .cloned()
            .or_else(|| config::get("roleArn"))
            .filter(|r| !r.trim().is_empty());
        match role_arn {
            Some(role_arn) => return assume_role(registry, role_arn.trim(), token),
            None => log::debug!(
                "service-account token without a role ARN (annotation {annotation:?} or config roleArn): using the node's credentials"
            ),
        }
    }
    node_credentials()
}

fn assume_role(
    registry: &Registry,
    role_arn: &str,
    token: &str,
) -> Result<AwsCredentials, ProviderError> {
    let endpoint = config::get("stsEndpoint").unwrap_or_else(|| {
        let region = config::get("region").unwrap_or_else(|| registry.region.clone());
        registry.sts_endpoint(&region)
    });
    let session_name =
        config::get("roleSessionName").unwrap_or_else(|| DEFAULT_ROLE_SESSION_NAME.to_string());
    log::debug!("assuming {role_arn} with the service-account token at {endpoint}");
    let form = sts::form(role_arn, &session_name, token);
    with_retries("STS AssumeRoleWithWebIdentity", || {
        let response = http::Request::post(&endpoint).form(&form).send()?;
        Ok(match sts::answer(response.status, &response.body) {
            sts::Answer::Credentials(credentials, _) => Attempt::Done(credentials),
            sts::Answer::Retry(why) => Attempt::Retry(why),
            sts::Answer::Fail(error) => return Err(error),
        })
    })
}

/// Static keys from the granted environment, else the instance role.
fn node_credentials() -> Result<AwsCredentials, ProviderError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let (Some(access_key_id), Some(secret_access_key)) =
        (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
    {
        log::debug!("using AWS_ACCESS_KEY_ID {access_key_id} from the environment");
        return Ok(AwsCredentials {
            access_key_id,
            secret_access_key,
            session_token: env("AWS_SESSION_TOKEN"),
        });
    }
    instance_role_credentials()
}

/// IMDSv2: a session token, the role name, then the role's credentials.
fn instance_role_credentials() -> Result<AwsCredentials, ProviderError> {
    let endpoint = config::get("imdsEndpoint")
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| DEFAULT_IMDS_ENDPOINT.to_string());
    let base = endpoint.trim_end_matches('/');
    let hint = |error: http::HttpError| -> ProviderError {
        let denied = matches!(error, http::HttpError::Denied(_));
        let error = ProviderError::from(error);
        match error {
            ProviderError::Config(m) if denied => ProviderError::Config(format!(
                "{m}; no service-account token with a role ARN and no granted AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
                 so the instance role is used: set config imdsEndpoint (e.g. http://169.254.169.254) and grant it in grants.outbound"
            )),
            other => other,
        }
    };
    let session = http::Request::new(http::Method::Put, format!("{base}/latest/api/token"))
        .header(
            "x-aws-ec2-metadata-token-ttl-seconds",
            imds::TOKEN_TTL_SECONDS,
        )
        .max_body_bytes(4096)
        .send()
        .and_then(http::Response::error_for_status)
        .map_err(hint)?;
    let session = session.text()?.trim().to_string();
    let get = |path: &str| {
        http::Request::get(format!(
            "{base}/latest/meta-data/iam/security-credentials/{path}"
        ))
        .header("x-aws-ec2-metadata-token", &session)
        .max_body_bytes(64 * 1024)
        .send()
        .and_then(http::Response::error_for_status)
        .map_err(|e| {
            ProviderError::Upstream(format!(
                "the instance metadata service has no instance role credentials: {e}"
            ))
        })
    };
    let listing = get("")?;
    let role = imds::role_name(listing.text()?)
        .ok_or_else(|| {
            ProviderError::Upstream(
                "the instance has no IAM role (empty security-credentials listing)".into(),
            )
        })?
        .to_string();
    if !role
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
    {
        return Err(ProviderError::Upstream(format!(
            "the instance metadata service named an invalid role {role:?}"
        )));
    }
    log::debug!("using the instance role {role}");
    let (credentials, _) = imds::credentials(&get(&role)?.body)?;
    Ok(credentials)
}

/// `GetAuthorizationToken`, signed: base64 `AWS:<password>` and its expiry.
fn authorization_token(
    registry: &Registry,
    credentials: &AwsCredentials,
) -> Result<(String, Option<u64>), ProviderError> {
    let endpoint = config::get("ecrEndpoint").unwrap_or_else(|| registry.ecr_endpoint.clone());
    let (authority, path) = authority_and_path(&endpoint)?;
    let body = b"{}";
    with_retries("ECR GetAuthorizationToken", || {
        let amz_date = time::amz_date(now()?);
        let mut headers = vec![
            ("content-type", ECR_CONTENT_TYPE),
            ("host", authority),
            ("x-amz-date", amz_date.as_str()),
            ("x-amz-target", registry.target),
        ];
        if let Some(session_token) = &credentials.session_token {
            headers.push(("x-amz-security-token", session_token));
        }
        let authorization = sigv4::authorization(
            &sigv4::Signing {
                method: "POST",
                path,
                headers: &headers,
                payload: body,
                region: &registry.region,
                service: registry.service,
                amz_date: &amz_date,
            },
            credentials,
        );
        // The host sets `host` from the URL's authority, which was signed.
        let request = headers
            .iter()
            .filter(|(name, _)| *name != "host")
            .fold(http::Request::post(&endpoint), |r, (name, value)| {
                r.header(*name, value)
            })
            .header("authorization", authorization)
            .body(body.to_vec());
        let response = request.send()?;
        Ok(match ecr_api::answer(response.status, &response.body) {
            ecr_api::Answer::Token(token, expires_at) => Attempt::Done((token, expires_at)),
            ecr_api::Answer::Retry(why) => Attempt::Retry(why),
            ecr_api::Answer::Fail(error) => return Err(error),
        })
    })
}

/// `host[:port]` and path of an endpoint URL; the path is signed as is, so
/// it must need no percent-encoding.
fn authority_and_path(url: &str) -> Result<(&str, &str), ProviderError> {
    let invalid = |why: &str| ProviderError::Config(format!("ECR endpoint {url:?}: {why}"));
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("expected an https:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid("no host, or user info"));
    }
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"/-._~".contains(&b);
    if !path.bytes().all(plain) {
        return Err(invalid(
            "a query or characters needing encoding in the path",
        ));
    }
    Ok((authority, path))
}

enum Attempt<T> {
    Done(T),
    Retry(String),
}

/// Runs `call` up to [`ATTEMPTS`] times while it asks for a retry, sleeping
/// a jittered, doubling backoff in between (200 ms, then 400 ms, each
/// between half and all of it).
fn with_retries<T>(
    what: &str,
    mut call: impl FnMut() -> Result<Attempt<T>, ProviderError>,
) -> Result<T, ProviderError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call()? {
            Attempt::Done(value) => return Ok(value),
            Attempt::Retry(why) if attempt >= ATTEMPTS => {
                return Err(ProviderError::Upstream(format!(
                    "{why} (gave up after {ATTEMPTS} attempts)"
                )));
            }
            Attempt::Retry(why) => {
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

fn now() -> Result<u64, ProviderError> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| ProviderError::Upstream("the wall clock is before 1970".into()))
}

fn redact(error: ProviderError, token: &str) -> ProviderError {
    let clean = |m: String| m.replace(token, "<redacted>");
    match error {
        ProviderError::Config(m) => ProviderError::Config(clean(m)),
        ProviderError::Unauthorized(m) => ProviderError::Unauthorized(clean(m)),
        ProviderError::Upstream(m) => ProviderError::Upstream(clean(m)),
        ProviderError::NoCredentials(m) => ProviderError::NoCredentials(clean(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_authority_and_path() {
        assert_eq!(
            authority_and_path("https://api.ecr.us-west-2.amazonaws.com/").unwrap(),
            ("api.ecr.us-west-2.amazonaws.com", "/")
        );
        assert_eq!(
            authority_and_path("https://127.0.0.1:8443").unwrap(),
            ("127.0.0.1:8443", "/")
        );
        assert_eq!(
            authority_and_path("https://vpce.example:443/ecr/").unwrap(),
            ("vpce.example:443", "/ecr/")
        );
        for bad in [
            "ftp://x/",
            "https:///",
            "https://u@h/",
            "https://h/?q=1",
            "https://h/a b",
        ] {
            assert!(
                matches!(authority_and_path(bad), Err(ProviderError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn redacts_an_echoed_token() {
        let error = redact(
            ProviderError::Unauthorized("bad token eyJabc".into()),
            "eyJabc",
        );
        assert_eq!(
            error,
            ProviderError::Unauthorized("bad token <redacted>".into())
        );
    }
}
