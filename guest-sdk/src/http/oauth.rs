//! OAuth 2.0 token endpoints: the error body of RFC 6749 §5.2 (also used by
//! RFC 8693 token exchange), the token response, and an RFC 8693 token
//! exchange helper.
//!
//! A token endpoint refuses a bad or expired credential with `400` (or
//! `401`) and a JSON body such as
//! `{"error":"invalid_grant","error_description":"token expired"}`.
//! [`send_token_request`] turns that into [`HttpError::OAuth`], which
//! converts to [`ProviderError::Unauthorized`](crate::ProviderError) with
//! the description, not into "the upstream failed, retry".
//!
//! ```no_run
//! use wcp_guest_sdk::{http::oauth, image, Credentials, ProviderError, Request};
//!
//! fn exchange(request: &Request) -> Result<Credentials, ProviderError> {
//!     let subject = request.require_service_account_token()?;
//!     let token = oauth::TokenExchange::new("https://sts.example.com/token", subject)
//!         .audience("registry.example.com")
//!         .send()?;
//!     Ok(token.into_credentials(image::registry_of(&request.image), "oauth2"))
//! }
//! ```

use super::{HttpError, Request, Response};
use crate::Credentials;
use serde::Deserialize;
use std::fmt;

/// `urn:ietf:params:oauth:token-type:jwt`, the type of a Kubernetes
/// service-account token.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `urn:ietf:params:oauth:token-type:access_token`.
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693).
pub const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Token responses are small; a larger body is not one.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// Error bodies past this size are not parsed.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;
/// Longest `error` code kept.
const MAX_ERROR_CODE: usize = 64;
/// Longest `error_description` kept, in characters.
const MAX_DESCRIPTION: usize = 200;

/// An RFC 6749 §5.2 error response, cleaned for an error message: `error`
/// holds only the characters the RFC allows (at most 64), `description` is
/// one line of at most 200 characters without control or bidi characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    pub error: String,
    pub description: Option<String>,
}

impl OAuthError {
    /// Parses an error body (JSON, or form-encoded as some servers answer);
    /// `None` when it is not one. Bodies over 16 KiB are not parsed.
    pub fn parse(body: &[u8]) -> Option<Self> {
        if body.len() > MAX_ERROR_BODY_BYTES {
            return None;
        }
        #[derive(Deserialize)]
        struct Raw {
            error: String,
            #[serde(default)]
            error_description: Option<String>,
        }
        let raw = serde_json::from_slice::<Raw>(body).ok().or_else(|| {
            let text = std::str::from_utf8(body).ok()?;
            let mut error = None;
            let mut description = None;
            for pair in text.trim().split('&') {
                let (name, value) = pair.split_once('=')?;
                let value = super::form::decode_component(value)?;
                match name {
                    "error" => error = Some(value),
                    "error_description" => description = Some(value),
                    _ => {}
                }
            }
            Some(Raw {
                error: error?,
                error_description: description,
            })
        })?;
        let error = clean_code(&raw.error)?;
        let description = raw
            .error_description
            .as_deref()
            .map(clean_line)
            .filter(|d| !d.is_empty());
        Some(Self { error, description })
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.description {
            Some(description) => write!(f, "{}: {description}", self.error),
            None => f.write_str(&self.error),
        }
    }
}

/// RFC 6749 `error` is `%x20-21 / %x23-5B / %x5D-7E`; anything else means
/// the body is not an OAuth error.
fn clean_code(code: &str) -> Option<String> {
    let ok = !code.is_empty()
        && code.len() <= MAX_ERROR_CODE
        && code
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\');
    ok.then(|| code.to_string())
}

/// One line, bounded, without control, bidi or line-separator characters.
pub(crate) fn clean_line(text: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{2028}' | '\u{2029}'
            )
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    let mut out = String::new();
    let mut count = 0;
    let mut space = false;
    for c in text.chars() {
        let c = if hidden(c) || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            if count + 1 >= MAX_DESCRIPTION {
                out.push('…');
                return out;
            }
            out.push(' ');
            count += 1;
        }
        space = false;
        if count >= MAX_DESCRIPTION {
            out.push('…');
            return out;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// Seconds from now; `None` if the server did not say.
    #[serde(default, deserialize_with = "seconds")]
    pub expires_in: Option<u64>,
    /// RFC 8693: the type of `access_token`.
    #[serde(default)]
    pub issued_token_type: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
}

impl TokenResponse {
    /// One credential for `match_key` with the token as password, expiring
    /// when the token does (if the server said).
    pub fn into_credentials(self, match_key: impl Into<String>, username: &str) -> Credentials {
        let credentials = Credentials::registry(match_key, username, self.access_token);
        match self.expires_in {
            Some(secs) => credentials.expiring_in(secs),
            None => credentials,
        }
    }
}

/// The token is a secret.
impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("issued_token_type", &self.issued_token_type)
            .field("token_type", &self.token_type)
            .finish()
    }
}

/// `expires_in` as a number or, as some servers send it, a numeric string.
fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Float(f64),
        Text(String),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => None,
        Some(Raw::Number(n)) => Some(n),
        Some(Raw::Float(f)) if f.is_finite() && f >= 0.0 => Some(f as u64),
        Some(Raw::Float(_)) => None,
        Some(Raw::Text(t)) => t.trim().parse().ok(),
    })
}

/// Sends a request to a token endpoint and reads its answer: a 2xx JSON
/// [`TokenResponse`], else [`HttpError::OAuth`] when the body is an RFC
/// 6749 error, else [`HttpError::Status`]. The response is capped at
/// [`MAX_TOKEN_RESPONSE_BYTES`] unless the request set its own cap.
pub fn send_token_request(request: Request) -> Result<TokenResponse, HttpError> {
    let request = if request.max_body_bytes == super::DEFAULT_MAX_BODY_BYTES {
        request.max_body_bytes(MAX_TOKEN_RESPONSE_BYTES)
    } else {
        request
    };
    token_response(request.send()?)
}

/// The token-endpoint reading of `response` (see [`send_token_request`]).
pub fn token_response(response: Response) -> Result<TokenResponse, HttpError> {
    if !response.is_success() {
        if let Some(error) = OAuthError::parse(&response.body) {
            return Err(HttpError::OAuth {
                status: response.status,
                error,
            });
        }
        return Err(response.error_for_status().unwrap_err());
    }
    let token: TokenResponse = response.json().map_err(|_| {
        // serde's message may quote the body, and the body holds a token.
        HttpError::Decode(format!(
            "HTTP {} token response is not a JSON object with a string access_token",
            response.status
        ))
    })?;
    if token.access_token.is_empty() {
        return Err(HttpError::Decode(format!(
            "HTTP {} token response has an empty access_token",
            response.status
        )));
    }
    Ok(token)
}

/// An RFC 8693 token exchange: trades a subject token (by default a JWT
/// such as the pod's service-account token) for an access token.
#[derive(Clone)]
pub struct TokenExchange {
    endpoint: String,
    params: Vec<(String, String)>,
    json: bool,
    headers: Vec<(String, Vec<u8>)>,
}

impl TokenExchange {
    /// A form-encoded exchange of `subject_token` (of type
    /// [`TOKEN_TYPE_JWT`]) at `endpoint`.
    pub fn new(endpoint: impl Into<String>, subject_token: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            params: vec![
                ("grant_type".into(), GRANT_TYPE_TOKEN_EXCHANGE.into()),
                ("subject_token".into(), subject_token.into()),
                ("subject_token_type".into(), TOKEN_TYPE_JWT.into()),
            ],
            json: false,
            headers: Vec::new(),
        }
    }

    /// Sets (replaces) one parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.params.retain(|(n, _)| *n != name);
        self.params.push((name, value.into()));
        self
    }

    /// `subject_token_type`, if not a JWT.
    pub fn subject_token_type(self, value: impl Into<String>) -> Self {
        self.param("subject_token_type", value)
    }

    /// `audience`: the service the token is for.
    pub fn audience(self, value: impl Into<String>) -> Self {
        self.param("audience", value)
    }

    /// `resource`: the URI of the service the token is for.
    pub fn resource(self, value: impl Into<String>) -> Self {
        self.param("resource", value)
    }

    /// `scope`, space-separated.
    pub fn scope(self, value: impl Into<String>) -> Self {
        self.param("scope", value)
    }

    /// `requested_token_type`.
    pub fn requested_token_type(self, value: impl Into<String>) -> Self {
        self.param("requested_token_type", value)
    }

    /// Sends the parameters as a JSON object instead of a form (some
    /// registries' endpoints want JSON).
    pub fn json_body(mut self) -> Self {
        self.json = true;
        self
    }

    /// Adds a header, e.g. `authorization` for client authentication.
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// The request [`TokenExchange::send`] sends.
    pub fn request(&self) -> Request {
        let mut request = Request::post(&self.endpoint).header("accept", "application/json");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if self.json {
            let object: serde_json::Map<String, serde_json::Value> = self
                .params
                .iter()
                .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
                .collect();
            request.json(&object)
        } else {
            request.form(&self.params)
        }
    }

    /// Sends the exchange and reads the token (see [`send_token_request`]).
    /// A refusal that quotes the subject token has it replaced before the
    /// body is parsed: the error text is bounded, and a token cut by that
    /// bound would no longer match any redaction downstream.
    pub fn send(self) -> Result<TokenResponse, HttpError> {
        let request = self.request();
        let request = if request.max_body_bytes == super::DEFAULT_MAX_BODY_BYTES {
            request.max_body_bytes(MAX_TOKEN_RESPONSE_BYTES)
        } else {
            request
        };
        let mut response = request.send()?;
        if !response.is_success()
            && let Some((_, subject)) = self.params.iter().find(|(n, _)| n == "subject_token")
            && !subject.is_empty()
        {
            let text =
                String::from_utf8_lossy(&response.body).replace(subject.as_str(), "<redacted>");
            response.body = text.into_bytes();
        }
        token_response(response)
    }
}

/// Parameters hold the subject token: `Debug` shows only their names.
impl fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchange")
            .field("endpoint", &super::url::redacted(&self.endpoint))
            .field(
                "params",
                &self.params.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("json", &self.json)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProviderError;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn parses_rfc6749_error_bodies() {
        let e = OAuthError::parse(
            br#"{"error":"invalid_grant","error_description":"The token\nhas expired \u001b[31m"}"#,
        )
        .unwrap();
        assert_eq!(e.error, "invalid_grant");
        assert_eq!(e.description.as_deref(), Some("The token has expired [31m"));
        let e =
            OAuthError::parse(b"error=invalid_target&error_description=no+such+audience").unwrap();
        assert_eq!(e.to_string(), "invalid_target: no such audience");
        assert_eq!(
            OAuthError::parse(br#"{"error":"invalid_client"}"#)
                .unwrap()
                .to_string(),
            "invalid_client"
        );
        assert_eq!(OAuthError::parse(b"<html>502</html>"), None);
        assert_eq!(OAuthError::parse(br#"{"error":"bad\u0000code"}"#), None);
        assert_eq!(OAuthError::parse(br#"{"error":""}"#), None);
        let huge = format!(r#"{{"error":"x","pad":"{}"}}"#, "a".repeat(20_000));
        assert_eq!(OAuthError::parse(huge.as_bytes()), None);
    }

    #[test]
    fn descriptions_are_one_bounded_clean_line() {
        let long = format!(
            r#"{{"error":"invalid_grant","error_description":"{}\u202e\u2028 end"}}"#,
            "word ".repeat(100)
        );
        let e = OAuthError::parse(long.as_bytes()).unwrap();
        let d = e.description.unwrap();
        assert!(d.chars().count() <= MAX_DESCRIPTION + 1, "{d}");
        assert!(d.ends_with('…'), "{d}");
        assert!(!d.chars().any(|c| c.is_control()), "{d}");
        assert_eq!(clean_line("a\u{202e}b\u{2066}\r\n\tc"), "a b c");
    }

    #[test]
    fn token_endpoint_refusals_are_unauthorized_with_the_description() {
        for status in [400, 401] {
            let err = token_response(response(
                status,
                r#"{"error":"invalid_grant","error_description":"subject token expired"}"#,
            ))
            .unwrap_err();
            let ProviderError::Unauthorized(m) = ProviderError::from(err) else {
                panic!("{status} is not unauthorized");
            };
            assert_eq!(
                m,
                format!(
                    "the token endpoint refused the request (HTTP {status}): invalid_grant: subject token expired"
                )
            );
        }
        // A server error with an OAuth body stays retryable.
        let err =
            token_response(response(503, r#"{"error":"temporarily_unavailable"}"#)).unwrap_err();
        assert!(matches!(
            ProviderError::from(err),
            ProviderError::Upstream(m) if m.contains("temporarily_unavailable")
        ));
        // A non-OAuth body keeps the plain status mapping.
        let err = token_response(response(400, "bad request")).unwrap_err();
        assert!(matches!(err, HttpError::Status { status: 400, .. }));
    }

    #[test]
    fn token_responses_parse_and_never_leak() {
        let token = token_response(response(
            200,
            r#"{"access_token":"s3cr3t","expires_in":"3600","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer"}"#,
        ))
        .unwrap();
        assert_eq!(token.expires_in, Some(3600));
        assert_eq!(
            token.issued_token_type.as_deref(),
            Some(TOKEN_TYPE_ACCESS_TOKEN)
        );
        assert!(!format!("{token:?}").contains("s3cr3t"));
        let token =
            token_response(response(200, r#"{"access_token":"t","expires_in":60}"#)).unwrap();
        let credentials = token.into_credentials("registry.io", "oauth2");
        let now = crate::provider::unix_now();
        let at = credentials.expires_at.unwrap();
        assert!((now + 59..=now + 61).contains(&at), "{at} vs {now}");
        let none = token_response(response(200, r#"{"access_token":"t"}"#)).unwrap();
        assert_eq!(none.into_credentials("r", "u").expires_at, None);

        let err = token_response(response(200, r#"{"token":"s3cr3t"}"#)).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        let err = token_response(response(200, r#"{"access_token":""}"#)).unwrap_err();
        assert!(matches!(err, HttpError::Decode(_)));
    }

    #[test]
    fn exchange_request_as_form_or_json() {
        let exchange = TokenExchange::new("https://sts.example.com/token", "eyJsubject")
            .audience("registry.example.com")
            .scope("pull")
            .audience("other");
        let request = exchange.request();
        let body = String::from_utf8(request.body.clone().unwrap()).unwrap();
        assert_eq!(
            body,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=eyJsubject&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&scope=pull&audience=other"
        );
        assert_eq!(request.max_body_bytes, crate::http::DEFAULT_MAX_BODY_BYTES);
        assert!(!format!("{exchange:?}").contains("eyJsubject"));

        let request = exchange.json_body().request();
        let value: serde_json::Value =
            serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(value["subject_token"], "eyJsubject");
        assert_eq!(value["audience"], "other");
        assert!(
            request
                .headers
                .iter()
                .any(|(n, v)| n == "content-type" && v == b"application/json")
        );
    }
}
