//! The EC2 instance metadata service (IMDSv2): the instance role's
//! credentials document.

use crate::sigv4::AwsCredentials;
use crate::time::parse_rfc3339;
use serde::Deserialize;
use wcp_guest_sdk::ProviderError;

/// The TTL asked for the session token, in seconds (the SDKs' value).
pub const TOKEN_TTL_SECONDS: &str = "21600";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Document {
    code: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    token: Option<String>,
    expiration: Option<String>,
}

/// The first role name of `GET /latest/meta-data/iam/security-credentials/`.
pub fn role_name(listing: &str) -> Option<&str> {
    listing.lines().map(str::trim).find(|l| !l.is_empty())
}

/// Parses `GET /latest/meta-data/iam/security-credentials/<role>`.
pub fn credentials(body: &[u8]) -> Result<(AwsCredentials, Option<u64>), ProviderError> {
    let bad = |why: &str| {
        ProviderError::Upstream(format!(
            "the instance metadata service's credentials document is unusable: {why}"
        ))
    };
    let document: Document = serde_json::from_slice(body).map_err(|_| bad("not JSON"))?;
    if let Some(code) = document.code.as_deref().filter(|c| *c != "Success") {
        return Err(bad(&format!("Code is {code:?}")));
    }
    let non_empty = |v: Option<String>, name: &str| {
        v.filter(|v| !v.is_empty())
            .ok_or_else(|| bad(&format!("no {name}")))
    };
    let credentials = AwsCredentials {
        access_key_id: non_empty(document.access_key_id, "AccessKeyId")?,
        secret_access_key: non_empty(document.secret_access_key, "SecretAccessKey")?,
        session_token: document.token.filter(|t| !t.is_empty()),
    };
    let expiration = document.expiration.as_deref().and_then(parse_rfc3339);
    Ok((credentials, expiration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_credentials_document() {
        let body = br#"{"Code":"Success","LastUpdated":"2026-01-01T00:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIANODE","SecretAccessKey":"node-secret","Token":"node-token","Expiration":"2026-01-01T06:00:00Z"}"#;
        let (credentials, expiration) = credentials(body).unwrap();
        assert_eq!(credentials.access_key_id, "ASIANODE");
        assert_eq!(credentials.secret_access_key, "node-secret");
        assert_eq!(credentials.session_token.as_deref(), Some("node-token"));
        assert_eq!(expiration, Some(1_767_247_200));
    }

    #[test]
    fn rejects_failures() {
        for (body, want) in [
            (
                &br#"{"Code":"AssumeRoleUnauthorizedAccess"}"#[..],
                "AssumeRoleUnauthorizedAccess",
            ),
            (
                br#"{"Code":"Success","SecretAccessKey":"s"}"#,
                "no AccessKeyId",
            ),
            (b"<html>", "not JSON"),
        ] {
            let Err(ProviderError::Upstream(m)) = credentials(body) else {
                panic!("{want}: not an upstream error");
            };
            assert!(m.contains(want), "{m}");
        }
    }

    #[test]
    fn first_role_name() {
        assert_eq!(role_name("node-role\n"), Some("node-role"));
        assert_eq!(role_name("\n  a\nb"), Some("a"));
        assert_eq!(role_name(" \n"), None);
    }
}
