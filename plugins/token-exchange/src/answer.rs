//! The token endpoint's answer: a success mapped to a credential by JSON
//! pointers, or a refusal in any of the shapes vendors use turned into one
//! line. Pure, unit-tested natively.

use wcp_guest_sdk::http::oauth::OAuthError;
use wcp_guest_sdk::{ProviderError, jwt, upstream_text as text};

/// What a successful exchange yields.
#[derive(Debug, PartialEq, Eq)]
pub struct Issued {
    pub password: String,
    /// From the answer's username pointer, if the spec has one.
    pub username: Option<String>,
    /// Seconds from now, from an `expires_in`-style pointer.
    pub expires_in: Option<u64>,
}

/// Reads the credential out of a 2xx body.
pub fn issued(
    body: &[u8],
    password: &str,
    username: Option<&str>,
    expires_in: Option<&str>,
) -> Result<Issued, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the answer is not JSON".to_string())?;
    let password = match value.pointer(password) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(format!("the answer's {password} is not a non-empty string")),
        None => return Err(format!("the answer has no {password}")),
    };
    let username = match username {
        None => None,
        Some(pointer) => match value.pointer(pointer) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                Some(text::one_line(s.trim()))
            }
            _ => return Err(format!("the answer has no string {pointer} (the username)")),
        },
    };
    let expires_in =
        match expires_in {
            None => None,
            Some(pointer) => match value.pointer(pointer) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
                    format!("the answer's {pointer} is not a whole number of seconds")
                })?),
                Some(serde_json::Value::String(s)) => Some(s.trim().parse().map_err(|_| {
                    format!("the answer's {pointer} is not a whole number of seconds")
                })?),
                Some(_) => return Err(format!("the answer's {pointer} is not a number")),
            },
        };
    Ok(Issued {
        password,
        username,
        expires_in,
    })
}

/// The `exp` of a JWT credential, if it is one.
pub fn jwt_expiry(token: &str) -> Option<u64> {
    jwt::claims(token).ok()?.exp
}

/// A refusal as one line: the RFC 6749 `error: description`, JFrog's and
/// Vault's `{"errors":[{"message"}]}` or `{"errors":["..."]}`, Cloudsmith's
/// `{"detail"}`, Quay's `{"message"}` or `{"error"}`, else the start of the
/// text. Bodies are untrusted: cleaned and bounded.
pub fn refusal_detail(body: &[u8]) -> String {
    if let Some(oauth) = OAuthError::parse(body) {
        return oauth.to_string();
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(errors) = value.get("errors").and_then(|e| e.as_array()) {
            let messages: Vec<String> = errors
                .iter()
                .filter_map(|e| match e {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Object(o) => o
                        .get("message")
                        .or_else(|| o.get("detail"))
                        .and_then(|m| m.as_str())
                        .map(str::to_string),
                    _ => None,
                })
                .take(4)
                .collect();
            if !messages.is_empty() {
                return text::one_line(&messages.join("; "));
            }
        }
        for key in ["detail", "message", "error", "error_description"] {
            if let Some(s) = value.get(key).and_then(|m| m.as_str())
                && !s.trim().is_empty()
            {
                return text::one_line(s);
            }
        }
    }
    let start = &body[..body.len().min(2048)];
    let line = text::one_line(&String::from_utf8_lossy(start));
    if line.is_empty() {
        "(empty body)".into()
    } else {
        line
    }
}

/// The provider error for a non-2xx answer: the identity was refused
/// (400, 401, 403, 422: a bad, expired or unaccepted token, or a
/// registry-side setup that does not trust it), or the server failed.
pub fn refusal(what: &str, status: u16, body: &[u8]) -> ProviderError {
    let detail = refusal_detail(body);
    match status {
        400 | 401 | 403 | 422 => ProviderError::Unauthorized(format!(
            "{what} refused the token (HTTP {status}): {detail}"
        )),
        _ => ProviderError::Upstream(format!("{what} failed (HTTP {status}): {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_map_the_answer() {
        let body = br#"{"access_token":"at","username":"ci-bot","expires_in":3600,"nested":{"t":"x","n":"60"}}"#;
        let got = issued(
            body,
            "/access_token",
            Some("/username"),
            Some("/expires_in"),
        )
        .unwrap();
        assert_eq!(
            got,
            Issued {
                password: "at".into(),
                username: Some("ci-bot".into()),
                expires_in: Some(3600)
            }
        );
        let got = issued(body, "/nested/t", None, Some("/nested/n")).unwrap();
        assert_eq!(got.expires_in, Some(60));
        assert_eq!(
            issued(body, "/none", None, None).unwrap_err(),
            "the answer has no /none"
        );
        assert!(
            issued(body, "/expires_in", None, None)
                .unwrap_err()
                .contains("not a non-empty string")
        );
        assert!(
            issued(body, "/access_token", Some("/missing"), None)
                .unwrap_err()
                .contains("username")
        );
        assert!(issued(b"<html>", "/a", None, None).is_err());
        assert_eq!(
            issued(body, "/access_token", None, Some("/absent"))
                .unwrap()
                .expires_in,
            None
        );
    }

    #[test]
    fn every_error_shape_is_one_line() {
        let cases: [(&[u8], &str); 7] = [
            (
                br#"{"error":"invalid_grant","error_description":"token\nexpired"}"#,
                "invalid_grant: token expired",
            ),
            (
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"Token validation failed"}]}"#,
                "Token validation failed",
            ),
            (br#"{"errors":["permission denied"]}"#, "permission denied"),
            (
                br#"{"detail":"Token not accepted."}"#,
                "Token not accepted.",
            ),
            (
                br#"{"message":"Failed to validate subject"}"#,
                "Failed to validate subject",
            ),
            (b"Bad Gateway\r\n\x1b[31mboom", "Bad Gateway [31mboom"),
            (b"", "(empty body)"),
        ];
        for (body, want) in cases {
            assert_eq!(refusal_detail(body), want);
        }
        let long = "x ".repeat(5000);
        assert!(refusal_detail(long.as_bytes()).len() < 400);
        assert!(
            matches!(refusal("jfrog token exchange at https://a.io", 401, b"no"), ProviderError::Unauthorized(m) if m == "jfrog token exchange at https://a.io refused the token (HTTP 401): no")
        );
        assert!(matches!(
            refusal("x", 503, b"down"),
            ProviderError::Upstream(_)
        ));
    }
}
