//! STS `AssumeRoleWithWebIdentity`: the form it takes and the XML it
//! answers, success or error.

use crate::sigv4::AwsCredentials;
use crate::time::parse_rfc3339;
use wcp_guest_sdk::ProviderError;

/// The form fields of the (unsigned) request, in the order the AWS SDKs
/// send them.
pub fn form<'a>(
    role_arn: &'a str,
    session_name: &'a str,
    web_identity_token: &'a str,
) -> [(&'static str, &'a str); 5] {
    [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("WebIdentityToken", web_identity_token),
    ]
}

/// What an STS answer means for the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Temporary credentials, with their expiry in Unix seconds when given.
    Credentials(AwsCredentials, Option<u64>),
    /// A transient failure (throttling, 5xx): worth another attempt.
    Retry(String),
    /// A final failure.
    Fail(ProviderError),
}

/// Error codes that mean "this identity is refused"
/// (`AssumeRoleWithWebIdentity` API reference, Errors).
const REFUSED: &[&str] = &[
    "InvalidIdentityToken",
    "AccessDenied",
    "ExpiredTokenException",
    "ExpiredToken",
    "IDPRejectedClaim",
    "MalformedPolicyDocument",
];

/// Interprets one STS response.
pub fn answer(status: u16, body: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(body);
    let document = roxmltree::Document::parse(&text);
    if (200..300).contains(&status) {
        return match document
            .map_err(|e| e.to_string())
            .and_then(|d| credentials(&d))
        {
            Ok((credentials, expiration)) => Answer::Credentials(credentials, expiration),
            Err(why) => Answer::Fail(ProviderError::Upstream(format!(
                "STS AssumeRoleWithWebIdentity answered HTTP {status} without usable credentials: {why}"
            ))),
        };
    }
    let error = document.ok().and_then(|d| {
        let code = child_text(d.root(), &["ErrorResponse", "Error", "Code"])?;
        let message = child_text(d.root(), &["ErrorResponse", "Error", "Message"]).unwrap_or("");
        Some((code.to_string(), one_line(message)))
    });
    let Some((code, message)) = error else {
        let what = format!(
            "STS AssumeRoleWithWebIdentity failed: HTTP {status}: {}",
            one_line(&text)
        );
        return if status >= 500 || status == 429 {
            Answer::Retry(what)
        } else {
            Answer::Fail(ProviderError::Upstream(what))
        };
    };
    let what = format!("STS AssumeRoleWithWebIdentity failed: HTTP {status}: {code}: {message}");
    if REFUSED.contains(&code.as_str()) {
        let hint = match code.as_str() {
            "ExpiredTokenException" | "ExpiredToken" => "the service-account token has expired",
            "InvalidIdentityToken" | "IDPRejectedClaim" => {
                "check the token's audience (sts.amazonaws.com) and the cluster's OIDC provider in IAM"
            }
            _ => "check the role's trust policy for this service account",
        };
        Answer::Fail(ProviderError::Unauthorized(format!("{what} ({hint})")))
    } else if status >= 500 || code.contains("Throttling") || code == "IDPCommunicationError" {
        Answer::Retry(what)
    } else {
        Answer::Fail(ProviderError::Upstream(what))
    }
}

fn credentials(
    document: &roxmltree::Document<'_>,
) -> Result<(AwsCredentials, Option<u64>), String> {
    let path = [
        "AssumeRoleWithWebIdentityResponse",
        "AssumeRoleWithWebIdentityResult",
        "Credentials",
    ];
    let field = |name: &str| {
        let mut full = path.to_vec();
        full.push(name);
        child_text(document.root(), &full)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("no {name} in the response"))
    };
    let credentials = AwsCredentials {
        access_key_id: field("AccessKeyId")?.to_string(),
        secret_access_key: field("SecretAccessKey")?.to_string(),
        session_token: Some(field("SessionToken")?.to_string()),
    };
    let expiration = match field("Expiration") {
        Ok(text) => Some(
            parse_rfc3339(text).ok_or_else(|| format!("Expiration {text:?} is not a timestamp"))?,
        ),
        Err(_) => None,
    };
    Ok((credentials, expiration))
}

/// The text of the element at `path` (local names, any namespace) below
/// `node`.
fn child_text<'a>(node: roxmltree::Node<'a, 'a>, path: &[&str]) -> Option<&'a str> {
    let mut node = node;
    for name in path {
        node = node
            .children()
            .find(|c| c.is_element() && c.tag_name().name() == *name)?;
    }
    Some(node.text().unwrap_or(""))
}

/// `text` on one line and bounded, for an error message.
pub fn one_line(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SUCCESS: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:team:puller</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/ecr-pull/ecr-credential-provider</Arn>
      <AssumedRoleId>AROAEXAMPLE:ecr-credential-provider</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>secret/+key</SecretAccessKey>
      <SessionToken>session-token</SessionToken>
      <Expiration>2026-01-01T01:00:00Z</Expiration>
    </Credentials>
    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/X</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;

    fn error(code: &str) -> String {
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>Token is bad\n  really</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
        )
    }

    #[test]
    fn form_has_every_field() {
        let pairs = form("arn:aws:iam::123456789012:role/ecr-pull", "s", "tok");
        assert_eq!(
            wcp_guest_sdk::http::form_urlencode(&pairs),
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fecr-pull&RoleSessionName=s&WebIdentityToken=tok"
        );
    }

    #[test]
    fn parses_credentials() {
        let Answer::Credentials(credentials, expiration) = answer(200, SUCCESS.as_bytes()) else {
            panic!("not credentials");
        };
        assert_eq!(credentials.access_key_id, "ASIAEXAMPLE");
        assert_eq!(credentials.secret_access_key, "secret/+key");
        assert_eq!(credentials.session_token.as_deref(), Some("session-token"));
        assert_eq!(expiration, Some(1_767_229_200));
    }

    #[test]
    fn incomplete_success_is_an_upstream_error() {
        let body = SUCCESS.replace("<SessionToken>session-token</SessionToken>", "");
        let Answer::Fail(ProviderError::Upstream(m)) = answer(200, body.as_bytes()) else {
            panic!("not an upstream error");
        };
        assert!(m.contains("no SessionToken"), "{m}");
        let Answer::Fail(ProviderError::Upstream(m)) = answer(200, b"not xml") else {
            panic!("not an upstream error");
        };
        assert!(m.contains("HTTP 200"), "{m}");
    }

    #[test]
    fn maps_error_codes() {
        for code in [
            "InvalidIdentityToken",
            "AccessDenied",
            "ExpiredTokenException",
        ] {
            let Answer::Fail(ProviderError::Unauthorized(m)) = answer(400, error(code).as_bytes())
            else {
                panic!("{code}: not unauthorized");
            };
            assert!(
                m.contains(&format!("HTTP 400: {code}: Token is bad really")),
                "{m}"
            );
        }
        assert!(matches!(
            answer(400, error("ValidationError").as_bytes()),
            Answer::Fail(ProviderError::Upstream(m)) if m.contains("ValidationError")
        ));
        assert!(matches!(
            answer(400, error("Throttling").as_bytes()),
            Answer::Retry(m) if m.contains("Throttling")
        ));
        assert!(matches!(
            answer(503, b"<html>Service Unavailable</html>"),
            Answer::Retry(m) if m.contains("HTTP 503")
        ));
        assert!(matches!(
            answer(404, b"nope"),
            Answer::Fail(ProviderError::Upstream(m)) if m.contains("HTTP 404: nope")
        ));
    }
}
