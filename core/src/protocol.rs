//! The kubelet's exec credential provider wire protocol
//! (`credentialprovider.kubelet.k8s.io/{v1,v1beta1,v1alpha1}`).
//!
//! The kubelet trusts stdout completely and decodes it strictly, so the
//! response type here can only ever produce the fields the kubelet knows.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API group of requests and responses.
pub const GROUP: &str = "credentialprovider.kubelet.k8s.io";
/// Largest request the host reads from stdin. A real request is an image
/// name plus at most a service-account token (a few KiB) and annotations.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The protocol versions the kubelet may speak to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    V1Beta1,
    V1Alpha1,
}

impl ApiVersion {
    /// Parses the full `group/version` string; anything else is an error
    /// that names the supported values.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "credentialprovider.kubelet.k8s.io/v1" => Ok(Self::V1),
            "credentialprovider.kubelet.k8s.io/v1beta1" => Ok(Self::V1Beta1),
            "credentialprovider.kubelet.k8s.io/v1alpha1" => Ok(Self::V1Alpha1),
            other => bail!(
                "unsupported apiVersion {other:?}: supported values are \
                 \"credentialprovider.kubelet.k8s.io/v1\", \"credentialprovider.kubelet.k8s.io/v1beta1\", \
                 \"credentialprovider.kubelet.k8s.io/v1alpha1\""
            ),
        }
    }

    /// The exact string the response must echo.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "credentialprovider.kubelet.k8s.io/v1",
            Self::V1Beta1 => "credentialprovider.kubelet.k8s.io/v1beta1",
            Self::V1Alpha1 => "credentialprovider.kubelet.k8s.io/v1alpha1",
        }
    }
}

/// A decoded `CredentialProviderRequest`.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub api_version: ApiVersion,
    pub image: String,
    pub service_account_token: Option<String>,
    /// Sorted by key (the kubelet sends a JSON object).
    pub service_account_annotations: BTreeMap<String, String>,
}

// Never print the token, even in debug output.
impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("api_version", &self.api_version)
            .field("image", &self.image)
            .field(
                "service_account_token",
                &self.service_account_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "service_account_annotations",
                &self.service_account_annotations,
            )
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    kind: Option<String>,
    api_version: Option<String>,
    image: Option<String>,
    service_account_token: Option<String>,
    service_account_annotations: Option<BTreeMap<String, String>>,
}

impl Request {
    /// Decodes the bytes the kubelet wrote to stdin. Errors never quote the
    /// input, which may hold a service-account token.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_REQUEST_BYTES {
            bail!("request on stdin is larger than {MAX_REQUEST_BYTES} bytes");
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            bail!("empty request on stdin: expected a CredentialProviderRequest JSON object");
        }
        if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
            bail!("request on stdin starts with a UTF-8 byte order mark; expected plain JSON");
        }
        let wire: WireRequest = serde_json::from_slice(bytes).map_err(|e| {
            anyhow::anyhow!(
                "malformed CredentialProviderRequest JSON on stdin: {} at line {} column {}",
                describe_json_error(&e),
                e.line(),
                e.column()
            )
        })?;
        let api_version = wire
            .api_version
            .as_deref()
            .context("request has no apiVersion")
            .and_then(ApiVersion::parse)?;
        match wire.kind.as_deref() {
            Some("CredentialProviderRequest") => {}
            Some(other) => {
                bail!("request kind is {other:?}, expected \"CredentialProviderRequest\"")
            }
            None => bail!("request has no kind, expected \"CredentialProviderRequest\""),
        }
        let image = match wire.image {
            Some(image) if !image.is_empty() => image,
            _ => bail!("request has no image"),
        };
        if api_version != ApiVersion::V1
            && (wire.service_account_token.is_some() || wire.service_account_annotations.is_some())
        {
            bail!(
                "service-account fields are only defined for {}, not {}",
                ApiVersion::V1.as_str(),
                api_version.as_str()
            );
        }
        Ok(Self {
            api_version,
            image,
            service_account_token: wire.service_account_token.filter(|t| !t.is_empty()),
            service_account_annotations: wire.service_account_annotations.unwrap_or_default(),
        })
    }
}

/// Describes a JSON error without echoing input content.
fn describe_json_error(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io => "read error",
        Category::Syntax => "syntax error",
        Category::Data => "wrong field type or duplicate field",
        Category::Eof => "unexpected end of input",
    }
}

/// `cacheKeyType` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheKeyType {
    Image,
    Registry,
    Global,
}

/// One credential in a response.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A `CredentialProviderResponse`: exactly the fields the kubelet's strict
/// decoder accepts, in the order a Go provider emits them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    kind: &'static str,
    api_version: &'static str,
    pub cache_key_type: CacheKeyType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_duration: Option<String>,
    pub auth: BTreeMap<String, AuthConfig>,
}

impl Response {
    /// A response for `api_version`; `cache_duration` is a Go duration
    /// string or `None` for the provider's `defaultCacheDuration`.
    pub fn new(
        api_version: ApiVersion,
        cache_key_type: CacheKeyType,
        cache_duration: Option<String>,
        auth: BTreeMap<String, AuthConfig>,
    ) -> Self {
        Self {
            kind: "CredentialProviderResponse",
            api_version: api_version.as_str(),
            cache_key_type,
            cache_duration,
            auth,
        }
    }

    /// "No credentials from this provider, don't cache": what the host says
    /// when no plugin matches or a plugin has nothing for the image.
    pub fn empty(api_version: ApiVersion) -> Self {
        Self::new(
            api_version,
            CacheKeyType::Image,
            Some("0s".to_string()),
            BTreeMap::new(),
        )
    }

    /// The bytes to write to stdout: one compact JSON object and a newline.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("response serialization cannot fail");
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"test.registry.io/foobar"}
"#;

    #[test]
    fn decodes_kubelet_bytes_for_every_version() {
        for (version, want) in [
            ("v1", ApiVersion::V1),
            ("v1beta1", ApiVersion::V1Beta1),
            ("v1alpha1", ApiVersion::V1Alpha1),
        ] {
            let text = V1.replace("/v1\"", &format!("/{version}\""));
            let req = Request::decode(text.as_bytes()).unwrap();
            assert_eq!(req.api_version, want);
            assert_eq!(req.image, "test.registry.io/foobar");
            assert!(req.service_account_token.is_none());
        }
    }

    #[test]
    fn decodes_service_account_fields() {
        let text = r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"test.registry.io/foobar","serviceAccountToken":"service-account-token","serviceAccountAnnotations":{"domain.io/annotation1":"value1"}}
"#;
        let req = Request::decode(text.as_bytes()).unwrap();
        assert_eq!(
            req.service_account_token.as_deref(),
            Some("service-account-token")
        );
        assert_eq!(
            req.service_account_annotations["domain.io/annotation1"],
            "value1"
        );
        assert!(!format!("{req:?}").contains("service-account-token"));
    }

    #[test]
    fn rejects_bad_requests_with_clear_messages() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty request"),
            (b"  \n", "empty request"),
            (b"{not json", "malformed"),
            (b"\xEF\xBB\xBF{}", "byte order mark"),
            (br#"{"kind":"CredentialProviderRequest","image":"a/b"}"#, "no apiVersion"),
            (
                br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v2","image":"a/b"}"#,
                "unsupported apiVersion",
            ),
            (
                br#"{"kind":"Foo","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a/b"}"#,
                "kind is \"Foo\"",
            ),
            (
                br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}"#,
                "no image",
            ),
            (
                br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a/b"} {}"#,
                "malformed",
            ),
            (
                br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a/b","image":"c/d"}"#,
                "duplicate",
            ),
            (
                br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","image":"a/b","serviceAccountToken":"t"}"#,
                "only defined for",
            ),
        ];
        for (input, want) in cases {
            let err = Request::decode(input).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(input)
            );
        }
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(
            Request::decode(&big)
                .unwrap_err()
                .to_string()
                .contains("larger than")
        );
    }

    #[test]
    fn token_never_in_errors() {
        let text = br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a/b","serviceAccountToken":"SECRET-TOKEN",}"#;
        let err = Request::decode(text).unwrap_err().to_string();
        assert!(!err.contains("SECRET-TOKEN"), "{err}");
    }

    #[test]
    fn encodes_exactly_what_kubelet_expects() {
        let mut auth = BTreeMap::new();
        auth.insert(
            "*.registry.io".to_string(),
            AuthConfig {
                username: "user".into(),
                password: "password".into(),
            },
        );
        let resp = Response::new(
            ApiVersion::V1,
            CacheKeyType::Registry,
            Some("1m0s".into()),
            auth,
        );
        assert_eq!(
            String::from_utf8(resp.encode()).unwrap(),
            "{\"kind\":\"CredentialProviderResponse\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"cacheKeyType\":\"Registry\",\"cacheDuration\":\"1m0s\",\"auth\":{\"*.registry.io\":{\"username\":\"user\",\"password\":\"password\"}}}\n"
        );
        let empty = Response::empty(ApiVersion::V1Alpha1);
        assert_eq!(
            String::from_utf8(empty.encode()).unwrap(),
            "{\"kind\":\"CredentialProviderResponse\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1alpha1\",\"cacheKeyType\":\"Image\",\"cacheDuration\":\"0s\",\"auth\":{}}\n"
        );
        let no_duration = Response::new(
            ApiVersion::V1Beta1,
            CacheKeyType::Global,
            None,
            BTreeMap::new(),
        );
        assert!(
            !String::from_utf8(no_duration.encode())
                .unwrap()
                .contains("cacheDuration")
        );
    }
}
