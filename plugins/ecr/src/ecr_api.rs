//! ECR `GetAuthorizationToken` (JSON 1.1 protocol): the answer, success or
//! error, for private ECR and ECR Public.

use crate::sts::one_line;
use serde_json::Value;
use wcp_guest_sdk::ProviderError;

/// What an ECR answer means for the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// `base64("AWS:<password>")` and the expiry in Unix seconds, if given.
    Token(String, Option<u64>),
    /// Throttling or a server error: worth another attempt.
    Retry(String),
    /// A final failure.
    Fail(ProviderError),
}

/// Error types that mean "these credentials are refused".
const REFUSED: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidClientTokenId",
];

/// Interprets one `GetAuthorizationToken` response.
pub fn answer(status: u16, body: &[u8]) -> Answer {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        return match json.as_ref().and_then(token) {
            Some((token, expires_at)) => Answer::Token(token, expires_at),
            None => Answer::Fail(ProviderError::Upstream(format!(
                "ECR GetAuthorizationToken answered HTTP {status} without authorizationData[0].authorizationToken"
            ))),
        };
    }
    let error_type = json.as_ref().and_then(|j| {
        let raw = j.get("__type")?.as_str()?;
        // `com.amazonaws.ecr#ThrottlingException` or
        // `ThrottlingException:http://internal.amazon.com/...`.
        let short = raw.rsplit('#').next().unwrap_or(raw);
        Some(short.split(':').next().unwrap_or(short).to_string())
    });
    let message = json
        .as_ref()
        .and_then(|j| j.get("message").or_else(|| j.get("Message")))
        .and_then(Value::as_str)
        .map(one_line);
    let what = match (&error_type, &message) {
        (Some(t), Some(m)) => format!("ECR GetAuthorizationToken failed: HTTP {status}: {t}: {m}"),
        (Some(t), None) => format!("ECR GetAuthorizationToken failed: HTTP {status}: {t}"),
        _ => format!(
            "ECR GetAuthorizationToken failed: HTTP {status}: {}",
            one_line(&String::from_utf8_lossy(body))
        ),
    };
    let error_type = error_type.unwrap_or_default();
    if error_type.ends_with("ThrottlingException")
        || error_type == "Throttling"
        || status == 429
        || status >= 500
    {
        Answer::Retry(what)
    } else if REFUSED.contains(&error_type.as_str()) || matches!(status, 401 | 403) {
        Answer::Fail(ProviderError::Unauthorized(what))
    } else {
        Answer::Fail(ProviderError::Upstream(what))
    }
}

/// `authorizationData` is a list for private ECR and one object for ECR
/// Public.
fn token(json: &Value) -> Option<(String, Option<u64>)> {
    let data = json.get("authorizationData")?;
    let data = match data {
        Value::Array(items) => items.first()?,
        other => other,
    };
    let token = data.get("authorizationToken")?.as_str()?.to_string();
    let expires_at = data
        .get("expiresAt")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(|t| t as u64);
    Some((token, expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_public_answers() {
        let private = br#"{"authorizationData":[{"authorizationToken":"QVdTOnB3","expiresAt":1767268800.123,"proxyEndpoint":"https://123456789012.dkr.ecr.us-east-1.amazonaws.com"}]}"#;
        assert_eq!(
            answer(200, private),
            Answer::Token("QVdTOnB3".into(), Some(1_767_268_800))
        );
        let public =
            br#"{"authorizationData":{"authorizationToken":"QVdTOnB3","expiresAt":1767268800}}"#;
        assert_eq!(
            answer(200, public),
            Answer::Token("QVdTOnB3".into(), Some(1_767_268_800))
        );
        let no_expiry = br#"{"authorizationData":[{"authorizationToken":"QVdTOnB3"}]}"#;
        assert_eq!(
            answer(200, no_expiry),
            Answer::Token("QVdTOnB3".into(), None)
        );
        for bad in [&b"{}"[..], br#"{"authorizationData":[]}"#, b"<html>"] {
            assert!(
                matches!(answer(200, bad), Answer::Fail(ProviderError::Upstream(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retried() {
        for (status, body) in [
            (
                400,
                &br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#[..],
            ),
            (
                400,
                br#"{"__type":"com.amazonaws.ecr#ThrottlingException","message":"Rate exceeded"}"#,
            ),
            (500, br#"{"__type":"ServerException","message":"oops"}"#),
            (503, b"Service Unavailable"),
            (429, b""),
        ] {
            assert!(
                matches!(answer(status, body), Answer::Retry(_)),
                "{status} {body:?}"
            );
        }
        let Answer::Retry(m) = answer(
            400,
            br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        ) else {
            unreachable!()
        };
        assert_eq!(
            m,
            "ECR GetAuthorizationToken failed: HTTP 400: ThrottlingException: Rate exceeded"
        );
    }

    #[test]
    fn refusals_and_other_errors() {
        let Answer::Fail(ProviderError::Unauthorized(m)) = answer(
            400,
            br#"{"__type":"UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/","message":"The security token included in the request is invalid."}"#,
        ) else {
            panic!("not unauthorized");
        };
        assert!(
            m.contains("HTTP 400: UnrecognizedClientException: The security token"),
            "{m}"
        );
        assert!(matches!(
            answer(403, br#"{"__type":"InvalidSignatureException","Message":"bad sig"}"#),
            Answer::Fail(ProviderError::Unauthorized(m)) if m.contains("bad sig")
        ));
        assert!(matches!(
            answer(400, br#"{"__type":"InvalidParameterException","message":"x"}"#),
            Answer::Fail(ProviderError::Upstream(m)) if m.contains("InvalidParameterException: x")
        ));
    }
}
