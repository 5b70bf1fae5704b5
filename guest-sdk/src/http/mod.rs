//! A small blocking HTTP client over `wasi:http/outgoing-handler`, enough
//! for the token exchanges credential providers make.
//!
//! The host checks every request against the destinations the plugin
//! declared and the operator granted; a refused destination fails with
//! [`HttpError::Denied`]. TLS, proxies and connection reuse are the host's.
//! Response bodies are read into memory, up to
//! [`DEFAULT_MAX_BODY_BYTES`] unless [`Request::max_body_bytes`] says
//! otherwise, so that a misbehaving upstream cannot exhaust the plugin's
//! memory.
//!
//! ```no_run
//! use wcp_guest_sdk::{http, ProviderError};
//!
//! #[derive(serde::Deserialize)]
//! struct TokenResponse {
//!     access_token: String,
//!     expires_in: u64,
//! }
//!
//! fn token(client_id: &str) -> Result<TokenResponse, ProviderError> {
//!     Ok(http::Request::post("https://login.example.com/oauth2/token")
//!         .form(&[("grant_type", "client_credentials"), ("client_id", client_id)])
//!         .send()?
//!         .error_for_status()?
//!         .json()?)
//! }
//! ```

// With the `testing` feature, native builds send through the harness.
#[cfg_attr(
    all(feature = "testing", not(target_arch = "wasm32")),
    allow(dead_code)
)]
mod body;
pub(crate) mod form;
pub mod oauth;
pub(crate) mod url;
#[cfg_attr(
    all(feature = "testing", not(target_arch = "wasm32")),
    allow(dead_code)
)]
mod wasi;

pub use form::form_urlencode;

use crate::ProviderError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;

/// The response-body cap when a request sets none: ample for token
/// responses, small next to a plugin's memory limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The HTTP methods a provider needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// The method as it goes on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// An outgoing request, built up and then [sent](Request::send).
#[derive(Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    /// A body that failed to serialize is reported by `send`, so that the
    /// builder stays chainable.
    body: Result<Vec<u8>, String>,
    max_body_bytes: usize,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Ok(Vec::new()),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// A `GET` of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A `POST` to `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// Adds a header; repeating a name sends it more than once.
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body to `value` as JSON, with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let body =
            serde_json::to_vec(value).map_err(|e| format!("cannot serialize JSON body: {e}"));
        self.with_body("application/json", body)
    }

    /// Sets the body to `pairs` form-encoded, with
    /// `content-type: application/x-www-form-urlencoded`.
    pub fn form<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        let body = form_urlencode(pairs).into_bytes();
        self.with_body("application/x-www-form-urlencoded", Ok(body))
    }

    /// Sets the body as is; set `content-type` with [`Request::header`].
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Ok(bytes.into());
        self
    }

    /// Caps the response body at `limit` bytes instead of
    /// [`DEFAULT_MAX_BODY_BYTES`]; a longer body fails the request with
    /// [`HttpError::BodyTooLarge`].
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Sends the request and reads the whole response, blocking until done.
    /// Any status is a success here; see [`Response::error_for_status`].
    pub fn send(self) -> Result<Response, HttpError> {
        let body = self.body.map_err(HttpError::InvalidRequest)?;
        let headers = request_headers(self.method, self.headers, body.len())?;
        #[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
        return crate::testing::send(self.method, &self.url, headers, &body, self.max_body_bytes);
        #[cfg(not(all(feature = "testing", not(target_arch = "wasm32"))))]
        wasi::send(self.method, &self.url, headers, &body, self.max_body_bytes)
    }

    fn with_body(mut self, content_type: &str, body: Result<Vec<u8>, String>) -> Self {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("content-type".to_string(), content_type.as_bytes().to_vec()));
        self.body = body;
        self
    }
}

/// Header values may be credentials, and a query may carry a token, so
/// `Debug` shows neither.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &url::redacted(&self.url))
            .field("headers", &HeaderNames(&self.headers))
            .field("body_len", &self.body.as_ref().map(Vec::len).ok())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// Validates the caller's headers, so that an error names the bad one, and
/// adds `content-length` whenever a body is or may be expected: some token
/// endpoints refuse chunked uploads.
fn request_headers(
    method: Method,
    mut headers: Vec<(String, Vec<u8>)>,
    body_len: usize,
) -> Result<Vec<(String, Vec<u8>)>, HttpError> {
    for (name, value) in &headers {
        let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token_char) {
            return Err(HttpError::InvalidRequest(format!(
                "invalid header name {name:?}"
            )));
        }
        if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(HttpError::InvalidRequest(format!(
                "header {name:?}: value contains CR, LF or NUL"
            )));
        }
    }
    let has_length = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    if !has_length && (body_len > 0 || matches!(method, Method::Post | Method::Put | Method::Patch))
    {
        headers.push((
            "content-length".to_string(),
            body_len.to_string().into_bytes(),
        ));
    }
    Ok(headers)
}

/// A complete response.
#[derive(Clone)]
pub struct Response {
    pub status: u16,
    /// In the order received; names are lowercase as `wasi:http` gives them.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `self` if the status is 2xx, else [`HttpError::Status`] carrying the
    /// status and the start of the body, which usually says what went wrong.
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if self.is_success() {
            return Ok(self);
        }
        Err(HttpError::Status {
            status: self.status,
            body: body_excerpt(&self.body),
        })
    }

    /// The body parsed as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            HttpError::Decode(format!(
                "HTTP {} response body is not the expected JSON: {e}",
                self.status
            ))
        })
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, HttpError> {
        std::str::from_utf8(&self.body).map_err(|e| {
            HttpError::Decode(format!(
                "HTTP {} response body is not UTF-8: {e}",
                self.status
            ))
        })
    }

    /// The first value of header `name` (any case), if present and UTF-8;
    /// the raw values are in [`Response::headers`].
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }
}

/// The body may hold a token, so `Debug` shows only its length.
impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &HeaderNames(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// How much of an error response's body [`HttpError::Status`] keeps.
const ERROR_BODY_EXCERPT: usize = 512;

/// The start of `body` as one line of text, for an error message.
fn body_excerpt(body: &[u8]) -> String {
    let end = body.len().min(ERROR_BODY_EXCERPT);
    let mut text: String = String::from_utf8_lossy(&body[..end])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > end {
        text.push('…');
    }
    text
}

/// Shows header names only.
struct HeaderNames<'a>(&'a [(String, Vec<u8>)]);

impl fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The request could not be built: a bad URL, header or body.
    InvalidRequest(String),
    /// The host refused the destination: the operator has not granted it to
    /// this plugin.
    Denied(String),
    /// The connection or the exchange failed; carries the destination and
    /// the `wasi:http` error-code as text (e.g. `ConnectionRefused`,
    /// `DnsError(..)`).
    Transport(String),
    /// The response body was longer than the request's limit.
    BodyTooLarge { limit: usize },
    /// [`Response::error_for_status`] met a non-2xx status.
    Status { status: u16, body: String },
    /// The response body was not what the caller expected.
    Decode(String),
    /// A token endpoint answered with an RFC 6749 §5.2 error body
    /// (see [`oauth::send_token_request`]). A 400, 401 or 403 converts to
    /// [`ProviderError::Unauthorized`], any other status to `Upstream`.
    OAuth {
        status: u16,
        error: oauth::OAuthError,
    },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(m) => write!(f, "invalid HTTP request: {m}"),
            Self::Denied(m) => write!(f, "HTTP request denied by the host: {m}"),
            Self::Transport(m) => write!(f, "HTTP request failed: {m}"),
            Self::BodyTooLarge { limit } => {
                write!(f, "HTTP response body is larger than {limit} bytes")
            }
            Self::Status { status, body } if body.is_empty() => write!(f, "HTTP status {status}"),
            Self::Status { status, body } => write!(f, "HTTP status {status}: {body}"),
            Self::Decode(m) => f.write_str(m),
            Self::OAuth { status, error } if (400..500).contains(status) => write!(
                f,
                "the token endpoint refused the request (HTTP {status}): {error}"
            ),
            Self::OAuth { status, error } => {
                write!(f, "the token endpoint failed (HTTP {status}): {error}")
            }
        }
    }
}

impl std::error::Error for HttpError {}

/// Maps each failure to the kind that tells the operator what to do: a 401
/// or 403 is a refused identity, a denied destination or an unbuildable
/// request is configuration, everything else is the upstream's.
impl From<HttpError> for ProviderError {
    fn from(error: HttpError) -> Self {
        let message = error.to_string();
        match error {
            HttpError::Status {
                status: 401 | 403, ..
            }
            | HttpError::OAuth {
                status: 400 | 401 | 403,
                ..
            } => ProviderError::Unauthorized(message),
            HttpError::Denied(_) | HttpError::InvalidRequest(_) => ProviderError::Config(message),
            HttpError::Transport(_)
            | HttpError::BodyTooLarge { .. }
            | HttpError::Status { .. }
            | HttpError::Decode(_)
            | HttpError::OAuth { .. } => ProviderError::Upstream(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(request: &Request) -> Vec<(&str, &str)> {
        request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), std::str::from_utf8(v).unwrap()))
            .collect()
    }

    #[test]
    fn builder_sets_body_and_content_type() {
        let request = Request::post("https://h.io/token")
            .header("Content-Type", "text/plain")
            .header("accept", "application/json")
            .form(&[("grant_type", "client_credentials"), ("scope", "a b")]);
        assert_eq!(request.method, Method::Post);
        assert_eq!(
            headers(&request),
            [
                ("accept", "application/json"),
                ("content-type", "application/x-www-form-urlencoded")
            ]
        );
        assert_eq!(
            request.body.as_deref().unwrap(),
            b"grant_type=client_credentials&scope=a+b"
        );

        let request = Request::get("https://h.io/").json(&serde_json::json!({"a": [1, "x"]}));
        assert_eq!(headers(&request), [("content-type", "application/json")]);
        assert_eq!(request.body.as_deref().unwrap(), br#"{"a":[1,"x"]}"#);

        let request = Request::new(Method::Put, "https://h.io/")
            .body(vec![1, 2, 3])
            .max_body_bytes(10);
        assert_eq!(request.body.as_deref().unwrap(), [1, 2, 3]);
        assert_eq!(request.max_body_bytes, 10);
        assert_eq!(
            Request::get("https://h.io/").max_body_bytes,
            DEFAULT_MAX_BODY_BYTES
        );
    }

    #[test]
    fn unserializable_json_fails_at_send() {
        let map: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let err = Request::post("https://h.io/")
            .json(&map)
            .send()
            .unwrap_err();
        assert!(
            matches!(&err, HttpError::InvalidRequest(m) if m.contains("cannot serialize JSON")),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_headers_fail_at_send_naming_the_header() {
        for (name, value, want) in [
            ("bad name", "v", "invalid header name \"bad name\""),
            ("", "v", "invalid header name \"\""),
            ("x-token", "a\r\nInjected: 1", "header \"x-token\""),
        ] {
            let err = Request::get("https://h.io/")
                .header(name, value)
                .send()
                .unwrap_err();
            assert!(
                matches!(&err, HttpError::InvalidRequest(m) if m.contains(want)),
                "{err:?}"
            );
            assert!(!err.to_string().contains("Injected"), "{err}");
        }
    }

    #[test]
    fn content_length_is_added_when_a_body_is_expected() {
        let length = |method, existing: &[(&str, &str)], body_len| {
            let existing = existing
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect();
            request_headers(method, existing, body_len)
                .unwrap()
                .into_iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| String::from_utf8(v).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(length(Method::Get, &[], 0), Vec::<String>::new());
        assert_eq!(length(Method::Delete, &[], 0), Vec::<String>::new());
        assert_eq!(length(Method::Post, &[], 0), ["0"]);
        assert_eq!(length(Method::Put, &[], 17), ["17"]);
        assert_eq!(length(Method::Get, &[], 3), ["3"]);
        assert_eq!(length(Method::Post, &[("Content-Length", "5")], 5), ["5"]);
    }

    #[test]
    fn debug_hides_header_values_bodies_and_queries() {
        let request = Request::get("https://h.io/p?token=s3cr3t")
            .header("authorization", "Bearer s3cr3t")
            .body("s3cr3t");
        let debug = format!("{request:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(
            debug.contains("authorization") && debug.contains("https://h.io/p"),
            "{debug}"
        );

        let response = Response {
            status: 200,
            headers: vec![("set-cookie".into(), b"s3cr3t".to_vec())],
            body: b"{\"token\":\"s3cr3t\"}".to_vec(),
        };
        let debug = format!("{response:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(
            debug.contains("set-cookie") && debug.contains("body_len: 18"),
            "{debug}"
        );
    }

    #[test]
    fn response_accessors() {
        let response = Response {
            status: 200,
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("x-bin".into(), vec![0xff]),
                ("x-bin".into(), b"second".to_vec()),
            ],
            body: br#"{"token":"t","expires_in":3600}"#.to_vec(),
        };
        #[derive(serde::Deserialize)]
        struct Token {
            token: String,
            expires_in: u64,
        }
        let token: Token = response.json().unwrap();
        assert_eq!((token.token.as_str(), token.expires_in), ("t", 3600));
        assert_eq!(
            response.text().unwrap(),
            r#"{"token":"t","expires_in":3600}"#
        );
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        assert_eq!(response.header("x-bin"), None);
        assert_eq!(response.header("missing"), None);
        assert!(response.clone().error_for_status().is_ok());

        let err = response.json::<Vec<u8>>().unwrap_err();
        assert!(
            matches!(&err, HttpError::Decode(m) if m.contains("HTTP 200")),
            "{err:?}"
        );
        let binary = Response {
            body: vec![0xff],
            ..response
        };
        assert!(matches!(binary.text(), Err(HttpError::Decode(_))));
    }

    #[test]
    fn error_for_status_keeps_an_excerpt() {
        let response = |status, body: Vec<u8>| Response {
            status,
            headers: Vec::new(),
            body,
        };
        let err = response(403, b"{\"error\":\"access denied\"}\n".to_vec())
            .error_for_status()
            .unwrap_err();
        assert_eq!(
            err,
            HttpError::Status {
                status: 403,
                body: "{\"error\":\"access denied\"} ".into()
            }
        );
        let long = response(500, vec![b'x'; 2000])
            .error_for_status()
            .unwrap_err();
        let HttpError::Status { body, .. } = &long else {
            panic!("{long:?}");
        };
        assert_eq!(body.chars().count(), ERROR_BODY_EXCERPT + 1);
        assert!(body.ends_with('…'));
        assert_eq!(
            response(404, Vec::new())
                .error_for_status()
                .unwrap_err()
                .to_string(),
            "HTTP status 404"
        );
        assert!(response(299, Vec::new()).error_for_status().is_ok());
        assert!(response(302, Vec::new()).error_for_status().is_err());
    }

    #[test]
    fn errors_map_to_provider_error_kinds() {
        let status = |status| HttpError::Status {
            status,
            body: String::new(),
        };
        let cases = [
            (status(401), "unauthorized"),
            (status(403), "unauthorized"),
            (status(404), "upstream"),
            (status(503), "upstream"),
            (HttpError::Denied("h.io".into()), "config"),
            (HttpError::InvalidRequest("bad".into()), "config"),
            (
                HttpError::Transport("connection-refused".into()),
                "upstream",
            ),
            (HttpError::BodyTooLarge { limit: 1 }, "upstream"),
            (HttpError::Decode("x".into()), "upstream"),
        ];
        for (error, want) in cases {
            let message = error.to_string();
            let (kind, got) = match ProviderError::from(error) {
                ProviderError::Config(m) => ("config", m),
                ProviderError::Unauthorized(m) => ("unauthorized", m),
                ProviderError::Upstream(m) => ("upstream", m),
                ProviderError::NoCredentials(m) => ("no-credentials", m),
            };
            assert_eq!((kind, got), (want, message));
        }
    }
}
