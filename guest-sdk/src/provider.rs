//! The provider's side of the contract as plain Rust types, so that vendor
//! code never handles the generated bindings and never leaks a secret
//! through `Debug`.

use crate::bindings::wcp::credential_provider::types as raw;
use std::collections::BTreeMap;
use std::fmt;

/// What a credential provider implements: one kubelet request in, the
/// credentials for its image out. The host creates a fresh instance per
/// request, so there is no state to keep between calls.
pub trait Provider {
    /// Answers one request. Return [`ProviderError::NoCredentials`] when this
    /// provider has nothing for the image: the host then answers the kubelet
    /// with no credentials instead of failing.
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError>;
}

/// One credential request, as the kubelet sent it.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// The image without tag or digest, e.g. `registry.io:5000/team/app`.
    pub image: String,
    /// The pod's service-account token: present only in service-account mode
    /// and only for providers that declare they read it.
    pub service_account_token: Option<String>,
    /// The service-account annotations the kubelet forwarded.
    pub service_account_annotations: BTreeMap<String, String>,
}

impl Request {
    /// A request for `image` without a service-account token (for tests).
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            service_account_token: None,
            service_account_annotations: BTreeMap::new(),
        }
    }

    /// Adds the pod's service-account token (for tests).
    pub fn with_service_account_token(mut self, token: impl Into<String>) -> Self {
        self.service_account_token = Some(token.into());
        self
    }

    /// Adds one service-account annotation (for tests).
    pub fn with_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.service_account_annotations
            .insert(key.into(), value.into());
        self
    }

    /// The pod's service-account token, or a [`ProviderError::Config`] that
    /// names every setting it takes: `serviceAccountToken: true` in the
    /// plugin's capabilities.json, the kubelet's `tokenAttributes` on the
    /// provider entry, and the host's `grants.serviceAccountToken`.
    pub fn require_service_account_token(&self) -> Result<&str, ProviderError> {
        if let Some(token) = self
            .service_account_token
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            return Ok(token);
        }
        let declared = crate::capabilities::declared().map(|d| d.service_account_token);
        Err(ProviderError::Config(missing_token_message(declared)))
    }
}

/// Why there is no token; `declared` is the plugin's own declaration, if known.
fn missing_token_message(declared: Option<bool>) -> String {
    const BOTH: &str = "the kubelet sends one only when its CredentialProviderConfig entry sets tokenAttributes (serviceAccountTokenAudience), and the host passes it on only when the operator sets grants.serviceAccountToken: true for this plugin";
    match declared {
        Some(false) => format!(
            "this plugin needs the pod's service-account token but does not declare \"serviceAccountToken\": true in its capabilities.json, so the host withholds it; also, {BOTH}"
        ),
        _ => format!("this plugin needs the pod's service-account token and got none: {BOTH}"),
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("image", &self.image)
            .field(
                "service_account_token",
                &self.service_account_token.as_ref().map(|_| Redacted),
            )
            .field(
                "service_account_annotations",
                &self.service_account_annotations,
            )
            .finish()
    }
}

impl From<raw::Request> for Request {
    fn from(request: raw::Request) -> Self {
        Self {
            image: request.image,
            service_account_token: request.service_account_token,
            service_account_annotations: request.service_account_annotations.into_iter().collect(),
        }
    }
}

/// Which requests a credential may be reused for; the host caches, the
/// provider only says how widely its answer applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKeyType {
    /// Only for the exact image.
    Image,
    /// For every image of the image's registry `host[:port]`.
    Registry,
    /// For every image the plugin's `matchImages` selects.
    Global,
}

impl From<CacheKeyType> for raw::CacheKeyType {
    fn from(kind: CacheKeyType) -> Self {
        match kind {
            CacheKeyType::Image => Self::Image,
            CacheKeyType::Registry => Self::Registry,
            CacheKeyType::Global => Self::Global,
        }
    }
}

/// One username/password pair and the kubelet auth-key pattern it applies
/// to (host with optional `*` globs per label, optional port and path).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthEntry {
    pub match_key: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthEntry")
            .field("match_key", &self.match_key)
            .field("username", &self.username)
            .field("password", &Redacted)
            .finish()
    }
}

/// A successful answer. `auth` may be empty: "nothing to add" is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub auth: Vec<AuthEntry>,
    pub cache_key_type: CacheKeyType,
    /// When the credential stops working, in seconds since the Unix epoch.
    /// The host derives the kubelet's cache duration from it with its own
    /// safety margin; `None` leaves the duration to the host.
    pub expires_at: Option<u64>,
}

impl Credentials {
    /// No credentials, cacheable as `cache_key_type`.
    pub fn empty(cache_key_type: CacheKeyType) -> Self {
        Self {
            auth: Vec::new(),
            cache_key_type,
            expires_at: None,
        }
    }

    /// The common answer: one credential for a whole registry, cached per
    /// registry. `match_key` is usually [`crate::image::registry_of`] of the
    /// request's image.
    pub fn registry(
        match_key: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self::empty(CacheKeyType::Registry).with_auth(match_key, username, password)
    }

    /// Adds one more credential.
    pub fn with_auth(
        mut self,
        match_key: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.auth.push(AuthEntry {
            match_key: match_key.into(),
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// Replaces the cache key type.
    pub fn with_cache_key_type(mut self, cache_key_type: CacheKeyType) -> Self {
        self.cache_key_type = cache_key_type;
        self
    }

    /// Sets when the credential expires, in seconds since the Unix epoch.
    pub fn expiring_at(mut self, unix_seconds: u64) -> Self {
        self.expires_at = Some(unix_seconds);
        self
    }

    /// Sets the credential to expire `seconds` from now (e.g. a token
    /// response's `expires_in`), so that no provider reads the clock itself.
    pub fn expiring_in(self, seconds: u64) -> Self {
        self.expiring_at(unix_now().saturating_add(seconds))
    }
}

impl From<Credentials> for raw::Credentials {
    fn from(credentials: Credentials) -> Self {
        Self {
            auth: credentials
                .auth
                .into_iter()
                .map(|entry| raw::AuthEntry {
                    match_key: entry.match_key,
                    username: entry.username,
                    password: entry.password,
                })
                .collect(),
            cache_key_type: credentials.cache_key_type.into(),
            expires_at: credentials.expires_at,
        }
    }
}

/// Why a provider could not produce credentials. The host reports and
/// counts the kinds separately, so pick the one that tells the operator
/// what to do. Messages end up in the host's log: never put a secret in one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderError {
    /// The operator's configuration is missing or wrong; retrying won't help.
    Config(String),
    /// The upstream service refused the identity presented.
    Unauthorized(String),
    /// The upstream service failed or answered something unexpected; a retry
    /// may succeed.
    Upstream(String),
    /// This provider has no credentials for this image.
    NoCredentials(String),
}

/// The same words as the host's failure line (`plugin "x": upstream failure: ...`).
impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, message) = match self {
            Self::Config(m) => ("configuration error", m),
            Self::Unauthorized(m) => ("unauthorized", m),
            Self::Upstream(m) => ("upstream failure", m),
            Self::NoCredentials(m) => ("no credentials", m),
        };
        write!(f, "{kind}: {message}")
    }
}

impl std::error::Error for ProviderError {}

impl From<ProviderError> for raw::ProviderError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::Config(m) => Self::Config(m),
            ProviderError::Unauthorized(m) => Self::Unauthorized(m),
            ProviderError::Upstream(m) => Self::Upstream(m),
            ProviderError::NoCredentials(m) => Self::NoCredentials(m),
        }
    }
}

/// Seconds since the Unix epoch by the host's wall clock (`wasi:clocks`);
/// 0 if the clock is before the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_from_raw_keeps_fields_and_debug_hides_the_token() {
        let request = Request::from(raw::Request {
            image: "registry.io/team/app".into(),
            service_account_token: Some("eyJsecret-token".into()),
            service_account_annotations: vec![("b".into(), "2".into()), ("a".into(), "1".into())],
        });
        assert_eq!(request.image, "registry.io/team/app");
        assert_eq!(
            request.service_account_token.as_deref(),
            Some("eyJsecret-token")
        );
        assert_eq!(
            request
                .service_account_annotations
                .iter()
                .collect::<Vec<_>>(),
            [
                (&"a".to_string(), &"1".to_string()),
                (&"b".to_string(), &"2".to_string())
            ]
        );
        let debug = format!("{request:?}");
        assert!(!debug.contains("secret-token"), "{debug}");
        assert!(debug.contains("Some(<redacted>)"), "{debug}");
        assert!(debug.contains("registry.io/team/app"), "{debug}");
    }

    #[test]
    fn missing_token_names_both_settings() {
        let request = Request::new("registry.io/app");
        let Err(ProviderError::Config(m)) = request.require_service_account_token() else {
            panic!("not a config error");
        };
        assert!(
            m.contains("tokenAttributes") && m.contains("grants.serviceAccountToken"),
            "{m}"
        );
        let m = missing_token_message(Some(false));
        assert!(
            m.contains("capabilities.json") && m.contains("tokenAttributes"),
            "{m}"
        );
        let request = request.with_service_account_token("eyJ.t.s");
        assert_eq!(request.require_service_account_token(), Ok("eyJ.t.s"));
        assert!(
            Request::new("r")
                .with_service_account_token("")
                .require_service_account_token()
                .is_err()
        );
    }

    #[test]
    fn expiring_in_counts_from_now() {
        let now = unix_now();
        let at = Credentials::empty(CacheKeyType::Image)
            .expiring_in(3600)
            .expires_at
            .unwrap();
        assert!((now + 3600..=now + 3602).contains(&at), "{at} vs {now}");
        assert_eq!(
            Credentials::empty(CacheKeyType::Image)
                .expiring_in(u64::MAX)
                .expires_at,
            Some(u64::MAX)
        );
    }

    #[test]
    fn credentials_builder_and_conversion() {
        let credentials = Credentials::registry("registry.io", "robot", "hunter2")
            .with_auth("*.other.io", "u2", "p2")
            .with_cache_key_type(CacheKeyType::Global)
            .expiring_at(1_700_000_000);
        let debug = format!("{credentials:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("p2"),
            "{debug}"
        );
        assert!(debug.contains("robot"), "{debug}");

        let raw = raw::Credentials::from(credentials);
        assert_eq!(raw.cache_key_type, raw::CacheKeyType::Global);
        assert_eq!(raw.expires_at, Some(1_700_000_000));
        let entries: Vec<_> = raw
            .auth
            .iter()
            .map(|e| {
                (
                    e.match_key.as_str(),
                    e.username.as_str(),
                    e.password.as_str(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("registry.io", "robot", "hunter2"),
                ("*.other.io", "u2", "p2")
            ]
        );

        let empty = raw::Credentials::from(Credentials::empty(CacheKeyType::Image));
        assert!(empty.auth.is_empty());
        assert_eq!(empty.cache_key_type, raw::CacheKeyType::Image);
        assert_eq!(empty.expires_at, None);
    }

    #[test]
    fn errors_keep_their_kind_and_message() {
        let cases = [
            (ProviderError::Config("c".into()), "configuration error: c"),
            (ProviderError::Unauthorized("u".into()), "unauthorized: u"),
            (ProviderError::Upstream("x".into()), "upstream failure: x"),
            (
                ProviderError::NoCredentials("n".into()),
                "no credentials: n",
            ),
        ];
        for (error, display) in cases {
            assert_eq!(error.to_string(), display);
            let raw = raw::ProviderError::from(error.clone());
            let back = match raw {
                raw::ProviderError::Config(m) => ProviderError::Config(m),
                raw::ProviderError::Unauthorized(m) => ProviderError::Unauthorized(m),
                raw::ProviderError::Upstream(m) => ProviderError::Upstream(m),
                raw::ProviderError::NoCredentials(m) => ProviderError::NoCredentials(m),
            };
            assert_eq!(back, error);
        }
    }
}
