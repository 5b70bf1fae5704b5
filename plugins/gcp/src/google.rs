//! The pure parts of the Google protocols: which registries are Google's,
//! the STS token-exchange request (JSON) and its OAuth answers, the
//! metadata server's token answer, and IAM Credentials'
//! `generateAccessToken` request and answer.

use crate::text::one_line;
use serde::Deserialize;
use serde_json::json;
use wcp_guest_sdk::ProviderError;

pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The username the registries accept with an OAuth access token
/// (`oauth2accesstoken` works too); auth-provider-gcp answers `_token`.
pub const USERNAME: &str = "_token";

/// `gcr.io`, `*.gcr.io`, `*.pkg.dev`, `container.cloud.google.com`
/// (lowercase DNS labels, no port).
pub fn is_google_registry(host: &str) -> bool {
    let labels_ok = |name: &str| {
        !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
    };
    host == "gcr.io"
        || host == "container.cloud.google.com"
        || host.strip_suffix(".gcr.io").is_some_and(labels_ok)
        || host.strip_suffix(".pkg.dev").is_some_and(labels_ok)
}

/// The STS audience: config `audience` as is (workload identity federation:
/// `//iam.googleapis.com/projects/<n>/locations/global/workloadIdentityPools/<pool>/providers/<p>`),
/// else GKE's `identitynamespace:<project>.svc.id.goog:<identity provider>`.
pub fn audience(
    audience: Option<&str>,
    project: Option<&str>,
    identity_provider: Option<&str>,
) -> Result<String, String> {
    let clean = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    if let Some(a) = clean(audience) {
        if a.chars().any(|c| c.is_control() || c == ' ') {
            return Err("config audience contains spaces or control characters".into());
        }
        return Ok(a);
    }
    match (clean(project), clean(identity_provider)) {
        (Some(p), Some(idp)) => {
            let project_ok = p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b':' || b == b'.');
            if !project_ok {
                return Err("config projectId is not a Google Cloud project id".into());
            }
            if !idp.starts_with("https://") || idp.chars().any(|c| c.is_control() || c == ' ') {
                return Err("config identityProvider must be the cluster's https:// URL (https://container.googleapis.com/v1/projects/<p>/locations/<l>/clusters/<c>)".into());
            }
            Ok(format!("identitynamespace:{p}.svc.id.goog:{idp}"))
        }
        _ => Err(
            "pod identity needs an STS audience: set config audience (workload identity federation), or projectId and identityProvider (GKE)".into(),
        ),
    }
}

/// The JSON body of `POST https://sts.googleapis.com/v1/token`, the
/// field names auth-provider-gcp sends.
pub fn sts_body(audience: &str, subject_token: &str) -> serde_json::Value {
    json!({
        "audience": audience,
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "scope": SCOPE,
        "subject_token": subject_token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    })
}

/// The JSON body of `generateAccessToken`.
pub fn iam_body() -> serde_json::Value {
    json!({ "scope": [SCOPE] })
}

/// A Google service account email, as it may go into a URL path.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        && domain.contains('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
}

/// The metadata server's account path segment: `default` or an email.
pub fn valid_metadata_account(account: &str) -> bool {
    account == "default" || valid_email(account)
}

/// What one upstream answer means.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<T> {
    Done(T),
    /// Throttled or a server error: worth another attempt.
    Retry(String),
    Fail(ProviderError),
}

/// A Google OAuth access token and when it expires.
#[derive(Debug, PartialEq, Eq)]
pub struct Token {
    pub access_token: String,
    /// Seconds from now (`expires_in`).
    pub expires_in: Option<u64>,
    /// Unix seconds (`expireTime`).
    pub expires_at: Option<u64>,
}

#[derive(Deserialize)]
struct OAuthToken {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OAuthError {
    error: Option<String>,
    error_description: Option<String>,
}

fn oauth_token(status: u16, body: &[u8], what: &str) -> Answer<Token> {
    match serde_json::from_slice::<OAuthToken>(body) {
        Ok(OAuthToken {
            access_token: Some(t),
            expires_in,
        }) if !t.is_empty() => Answer::Done(Token {
            access_token: t,
            expires_in,
            expires_at: None,
        }),
        _ => Answer::Fail(ProviderError::Upstream(format!(
            "{what} answered HTTP {status} without an access_token"
        ))),
    }
}

/// Interprets Google STS's answer to the token exchange.
pub fn sts_answer(status: u16, body: &[u8], audience: &str) -> Answer<Token> {
    let what = "Google STS token exchange";
    if (200..300).contains(&status) {
        return oauth_token(status, body, what);
    }
    let error: OAuthError = serde_json::from_slice(body).unwrap_or_default();
    let code = error.error.as_deref().map(one_line);
    let detail = match (&code, &error.error_description) {
        (Some(c), Some(d)) => format!("{c}: {}", one_line(d)),
        (Some(c), None) => c.clone(),
        _ => one_line(&String::from_utf8_lossy(body)),
    };
    let message = format!("{what} failed: HTTP {status}: {detail}");
    if status == 429 || status >= 500 {
        return Answer::Retry(message);
    }
    Answer::Fail(match code.as_deref() {
        Some("invalid_grant") => ProviderError::Unauthorized(format!(
            "{message} (the workload identity pool provider of audience {audience} refused the service-account token: it must trust this cluster's issuer, accept the token's audience (tokenAttributes.serviceAccountTokenAudience) and its attribute condition must admit the subject)"
        )),
        Some("invalid_target") => ProviderError::Unauthorized(format!(
            "{message} (audience {audience} names no enabled workload identity pool provider: check config audience, or projectId and identityProvider)"
        )),
        Some("invalid_request" | "unsupported_grant_type") => ProviderError::Config(message),
        _ if status == 401 || status == 403 => ProviderError::Unauthorized(message),
        _ => ProviderError::Upstream(message),
    })
}

/// Interprets the metadata server's `.../service-accounts/<a>/token`.
pub fn metadata_answer(status: u16, body: &[u8], account: &str) -> Answer<Token> {
    let what = "the GCE metadata server";
    if (200..300).contains(&status) {
        return oauth_token(status, body, what);
    }
    let message = format!(
        "{what} failed: HTTP {status}: {}",
        one_line(&String::from_utf8_lossy(&body[..body.len().min(512)]))
    );
    match status {
        429 | 500.. => Answer::Retry(message),
        404 => Answer::Fail(ProviderError::Config(format!(
            "{message} (the instance has no service account {account}: check config nodeServiceAccount)"
        ))),
        _ => Answer::Fail(ProviderError::Upstream(message)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IamToken {
    access_token: Option<String>,
    expire_time: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GoogleErrorBody {
    error: GoogleError,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GoogleError {
    message: String,
    status: String,
}

/// Interprets `generateAccessToken`'s answer; `subject` is the
/// service-account token's subject, for the missing binding's message.
pub fn iam_answer(status: u16, body: &[u8], email: &str, subject: &str) -> Answer<Token> {
    let what = format!("IAM Credentials generateAccessToken for {email}");
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<IamToken>(body) {
            Ok(IamToken {
                access_token: Some(t),
                expire_time,
            }) if !t.is_empty() => {
                let expires_at = match expire_time.as_deref() {
                    None => None,
                    Some(text) => match parse_rfc3339(text) {
                        Some(t) => Some(t),
                        None => {
                            return Answer::Fail(ProviderError::Upstream(format!(
                                "{what} answered an expireTime that is not a timestamp"
                            )));
                        }
                    },
                };
                Answer::Done(Token {
                    access_token: t,
                    expires_in: None,
                    expires_at,
                })
            }
            _ => Answer::Fail(ProviderError::Upstream(format!(
                "{what} answered HTTP {status} without an accessToken"
            ))),
        };
    }
    let error = serde_json::from_slice::<GoogleErrorBody>(body)
        .unwrap_or_default()
        .error;
    let detail = if error.status.is_empty() && error.message.is_empty() {
        one_line(&String::from_utf8_lossy(body))
    } else {
        format!("{}: {}", one_line(&error.status), one_line(&error.message))
    };
    let message = format!("{what} failed: HTTP {status}: {detail}");
    Answer::Fail(match status {
        429 | 500.. => return Answer::Retry(message),
        401 | 403 => ProviderError::Unauthorized(format!(
            "{message} (grant roles/iam.workloadIdentityUser on {email} to the federated principal of subject {subject}, and give {email} read access to the repository)"
        )),
        404 => ProviderError::Config(format!(
            "{message} (the service account {email} does not exist)"
        )),
        _ => ProviderError::Upstream(message),
    })
}

/// An RFC 3339 UTC timestamp (optional fraction, dropped) as Unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let time = humantime::parse_rfc3339(text.trim()).ok()?;
    time.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_registries() {
        for ok in [
            "gcr.io",
            "us.gcr.io",
            "eu.gcr.io",
            "marketplace.gcr.io",
            "us-docker.pkg.dev",
            "europe-west4-docker.pkg.dev",
            "container.cloud.google.com",
        ] {
            assert!(is_google_registry(ok), "{ok}");
        }
        for bad in [
            "pkg.dev",
            "gcr.io:443",
            "evil.com",
            "gcr.io.evil.com",
            "US.gcr.io",
            ".gcr.io",
            "a..pkg.dev",
            "x.container.cloud.google.com",
        ] {
            assert!(!is_google_registry(bad), "{bad}");
        }
    }

    #[test]
    fn audiences() {
        assert_eq!(
            audience(None, Some("my-proj"), Some("https://container.googleapis.com/v1/projects/my-proj/locations/us-central1/clusters/c1")).unwrap(),
            "identitynamespace:my-proj.svc.id.goog:https://container.googleapis.com/v1/projects/my-proj/locations/us-central1/clusters/c1"
        );
        let wif = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/k8s";
        assert_eq!(audience(Some(wif), Some("ignored"), None).unwrap(), wif);
        assert!(
            audience(None, Some("p"), None)
                .unwrap_err()
                .contains("set config audience")
        );
        assert!(
            audience(None, Some("P/x"), Some("https://x"))
                .unwrap_err()
                .contains("projectId")
        );
        assert!(
            audience(None, Some("p"), Some("http://x"))
                .unwrap_err()
                .contains("identityProvider")
        );
        assert!(audience(Some("a\nb"), None, None).is_err());
    }

    #[test]
    fn sts_json_body() {
        let body = sts_body("identitynamespace:p.svc.id.goog:https://idp", "eyJ.sa.tok");
        assert_eq!(
            body,
            serde_json::json!({
                "audience": "identitynamespace:p.svc.id.goog:https://idp",
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "scope": "https://www.googleapis.com/auth/cloud-platform",
                "subject_token": "eyJ.sa.tok",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"
            })
        );
        assert_eq!(
            iam_body(),
            serde_json::json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"]})
        );
    }

    #[test]
    fn sts_answers() {
        let ok = br#"{"access_token":"ya29.fed","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}"#;
        assert_eq!(
            sts_answer(200, ok, "a"),
            Answer::Done(Token {
                access_token: "ya29.fed".into(),
                expires_in: Some(3600),
                expires_at: None
            })
        );
        assert!(matches!(
            sts_answer(200, b"{}", "a"),
            Answer::Fail(ProviderError::Upstream(_))
        ));
        let grant = br#"{"error":"invalid_grant","error_description":"The audience in ID Token [sts.amazonaws.com] does not match the expected audience.\n"}"#;
        let Answer::Fail(ProviderError::Unauthorized(m)) = sts_answer(400, grant, "AUD") else {
            panic!("not unauthorized");
        };
        assert!(
            m.contains("HTTP 400: invalid_grant: The audience in ID Token")
                && m.contains("audience AUD"),
            "{m}"
        );
        assert!(!m.contains('\n'), "{m}");
        assert!(matches!(
            sts_answer(400, br#"{"error":"invalid_target","error_description":"The target service indicated by the \"audience\" parameters is invalid."}"#, "AUD"),
            Answer::Fail(ProviderError::Unauthorized(m)) if m.contains("names no enabled workload identity pool provider")
        ));
        assert!(matches!(
            sts_answer(400, br#"{"error":"invalid_request","error_description":"Invalid value for \"subject_token_type\""}"#, "a"),
            Answer::Fail(ProviderError::Config(_))
        ));
        assert!(
            matches!(sts_answer(429, br#"{"error":"rate_limit_exceeded"}"#, "a"), Answer::Retry(m) if m.contains("HTTP 429"))
        );
        assert!(
            matches!(sts_answer(503, b"unavailable", "a"), Answer::Retry(m) if m.contains("unavailable"))
        );
    }

    #[test]
    fn metadata_answers() {
        let ok = br#"{"access_token":"ya29.node","expires_in":3599,"token_type":"Bearer"}"#;
        assert_eq!(
            metadata_answer(200, ok, "default"),
            Answer::Done(Token {
                access_token: "ya29.node".into(),
                expires_in: Some(3599),
                expires_at: None
            })
        );
        assert!(matches!(
            metadata_answer(404, b"Not Found\n", "x@p.iam.gserviceaccount.com"),
            Answer::Fail(ProviderError::Config(m)) if m.contains("nodeServiceAccount")
        ));
        assert!(matches!(
            metadata_answer(403, b"<!DOCTYPE html>\n<html>Missing Metadata-Flavor:Google header.</html>", "default"),
            Answer::Fail(ProviderError::Upstream(m)) if m.contains("HTTP 403") && !m.contains('\n')
        ));
        assert!(matches!(
            metadata_answer(503, b"", "default"),
            Answer::Retry(_)
        ));
    }

    #[test]
    fn iam_answers() {
        let ok = br#"{"accessToken":"ya29.gsa","expireTime":"2026-01-01T01:00:00Z"}"#;
        assert_eq!(
            iam_answer(200, ok, "e", "s"),
            Answer::Done(Token {
                access_token: "ya29.gsa".into(),
                expires_in: None,
                expires_at: Some(1_767_229_200)
            })
        );
        assert!(matches!(
            iam_answer(200, br#"{"accessToken":"x","expireTime":"soon"}"#, "e", "s"),
            Answer::Fail(ProviderError::Upstream(_))
        ));
        let denied = br#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED"}]}}"#;
        let Answer::Fail(ProviderError::Unauthorized(m)) = iam_answer(
            403,
            denied,
            "puller@p.iam.gserviceaccount.com",
            "system:serviceaccount:team:puller",
        ) else {
            panic!("not unauthorized");
        };
        assert!(
            m.contains("PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken' denied"),
            "{m}"
        );
        assert!(
            m.contains("roles/iam.workloadIdentityUser on puller@p.iam.gserviceaccount.com")
                && m.contains("subject system:serviceaccount:team:puller"),
            "{m}"
        );
        assert!(matches!(
            iam_answer(
                404,
                br#"{"error":{"code":404,"message":"nope","status":"NOT_FOUND"}}"#,
                "e",
                "s"
            ),
            Answer::Fail(ProviderError::Config(_))
        ));
        assert!(matches!(iam_answer(500, b"", "e", "s"), Answer::Retry(_)));
    }

    #[test]
    fn emails_and_accounts() {
        assert!(valid_email("puller@my-proj.iam.gserviceaccount.com"));
        assert!(valid_email("123-compute@developer.gserviceaccount.com"));
        for bad in [
            "",
            "x",
            "a@b",
            "a/b@c.com",
            "a@c.com/../x",
            "a@c.com?x",
            "a b@c.com",
            "a@C.com",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
        assert!(valid_metadata_account("default"));
        assert!(!valid_metadata_account("../token"));
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("2026-01-01T01:00:00Z"), Some(1_767_229_200));
        assert_eq!(
            parse_rfc3339("2026-01-01T01:00:00.123456Z"),
            Some(1_767_229_200)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
