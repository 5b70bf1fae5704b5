//! Reads the claims of a JWT, such as the kubelet's service-account token,
//! *without verifying its signature*.
//!
//! A provider forwards the token to a service that verifies it (a cloud
//! STS, an OIDC token exchange); it reads the claims only to choose what to
//! ask for (which role the pod's namespace maps to) and for how long the
//! answer is good (`exp`). Never grant anything based on unverified claims.

use crate::ProviderError;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use std::fmt;

/// The registered claims providers commonly need and the Kubernetes
/// service-account claims. For other claims, use [`payload`] with a type of
/// your own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct JwtClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    /// The audiences; a single-string `aud` becomes a one-element list.
    #[serde(deserialize_with = "audiences")]
    pub aud: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    #[serde(deserialize_with = "numeric_date")]
    pub exp: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(deserialize_with = "numeric_date")]
    pub iat: Option<u64>,
    /// Not before, seconds since the Unix epoch.
    #[serde(deserialize_with = "numeric_date")]
    pub nbf: Option<u64>,
    /// The `kubernetes.io` claims of a service-account token.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Option<KubernetesClaims>,
}

/// The `kubernetes.io` claim of a projected service-account token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct KubernetesClaims {
    pub namespace: Option<String>,
    pub serviceaccount: Option<ObjectRef>,
    /// The pod the token is bound to, if it is bound to one.
    pub pod: Option<ObjectRef>,
}

/// A Kubernetes object named in a token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// Why a token's claims could not be read. The message never contains the
/// token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtError(String);

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed JWT: {}", self.0)
    }
}

impl std::error::Error for JwtError {}

/// A token that cannot be read is a bad identity, as an upstream would
/// judge it.
impl From<JwtError> for ProviderError {
    fn from(error: JwtError) -> Self {
        ProviderError::Unauthorized(error.to_string())
    }
}

/// The registered and Kubernetes claims of `token`, unverified.
pub fn claims(token: &str) -> Result<JwtClaims, JwtError> {
    payload(token)
}

/// The payload of `token` deserialized as `T`, unverified: for claims that
/// [`JwtClaims`] does not name.
pub fn payload<T: DeserializeOwned>(token: &str) -> Result<T, JwtError> {
    let mut parts = token.trim().split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError(format!(
            "expected 3 dot-separated parts, found {}",
            token.trim().split('.').count()
        )));
    };
    let bytes = BASE64URL
        .decode(payload)
        .map_err(|e| JwtError(format!("payload is not base64url: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| JwtError(format!("payload is not a JSON claims object: {e}")))
}

/// base64url as JWTs use it (no padding), but tolerating padding, since
/// some issuers add it.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `aud` is either one string or a list of strings (RFC 7519 §4.1.3).
fn audiences<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Aud>::deserialize(de)? {
        None => Vec::new(),
        Some(Aud::One(aud)) => vec![aud],
        Some(Aud::Many(auds)) => auds,
    })
}

/// A NumericDate may be fractional (RFC 7519 §2); whole seconds are enough
/// here, so the fraction is dropped. Negative dates are rejected.
fn numeric_date<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    let Some(value) = Option::<serde_json::Number>::deserialize(de)? else {
        return Ok(None);
    };
    if let Some(secs) = value.as_u64() {
        return Ok(Some(secs));
    }
    match value.as_f64() {
        Some(secs) if secs >= 0.0 && secs < u64::MAX as f64 => Ok(Some(secs as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "invalid NumericDate {value}: must be non-negative seconds"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn token(payload: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(b"not a real signature")
        )
    }

    /// Shaped like the token the kubelet projects for a pod in
    /// service-account mode.
    const SA_PAYLOAD: &str = r#"{
        "aud": ["sts.amazonaws.com"],
        "exp": 1735693200,
        "iat": 1735689600,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "jti": "5d2b6f0e-1c1f-4a39-9f3a-0f5c1e0c2d11",
        "kubernetes.io": {
            "namespace": "payments",
            "node": {"name": "node-1", "uid": "0b7e2a54-8c9b-4a7e-9e9d-3b1a6f4c5d2e"},
            "pod": {"name": "api-7d9f8b6c5-x2x4z", "uid": "c7e0b3f4-2a1d-4f5e-8b6c-9d0e1f2a3b4c"},
            "serviceaccount": {"name": "api", "uid": "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"}
        },
        "nbf": 1735689600,
        "sub": "system:serviceaccount:payments:api"
    }"#;

    #[test]
    fn reads_a_kubernetes_service_account_token() {
        let claims = claims(&token(SA_PAYLOAD)).unwrap();
        assert_eq!(
            claims.iss.as_deref(),
            Some("https://kubernetes.default.svc.cluster.local")
        );
        assert_eq!(
            claims.sub.as_deref(),
            Some("system:serviceaccount:payments:api")
        );
        assert_eq!(claims.aud, ["sts.amazonaws.com"]);
        assert_eq!(claims.exp, Some(1_735_693_200));
        assert_eq!(claims.iat, Some(1_735_689_600));
        assert_eq!(claims.nbf, Some(1_735_689_600));
        let k8s = claims.kubernetes.unwrap();
        assert_eq!(k8s.namespace.as_deref(), Some("payments"));
        let sa = k8s.serviceaccount.unwrap();
        assert_eq!(
            (sa.name.as_str(), sa.uid.as_str()),
            ("api", "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b")
        );
        let pod = k8s.pod.unwrap();
        assert_eq!(pod.name, "api-7d9f8b6c5-x2x4z");
        assert_eq!(pod.uid, "c7e0b3f4-2a1d-4f5e-8b6c-9d0e1f2a3b4c");
    }

    #[test]
    fn optional_and_alternative_claim_shapes() {
        let claims = claims(&token(r#"{"aud":"api://one","exp":1700000000.75}"#)).unwrap();
        assert_eq!(claims.aud, ["api://one"]);
        assert_eq!(claims.exp, Some(1_700_000_000));
        assert_eq!(claims.iat, None);
        assert_eq!(claims.kubernetes, None);

        let empty = super::claims(&token("{}")).unwrap();
        assert_eq!(empty, JwtClaims::default());
        let nulls = super::claims(&token(r#"{"aud":null,"exp":null}"#)).unwrap();
        assert_eq!(nulls, JwtClaims::default());
    }

    #[test]
    fn tolerates_padding_and_surrounding_whitespace() {
        let padded_payload = base64::engine::general_purpose::URL_SAFE.encode(r#"{"sub":"a"}"#);
        assert!(padded_payload.ends_with('='), "test needs a padded payload");
        let claims = claims(&format!(" h.{padded_payload}.s\n")).unwrap();
        assert_eq!(claims.sub.as_deref(), Some("a"));
    }

    #[test]
    fn custom_payload_types() {
        #[derive(Deserialize)]
        struct Custom {
            azp: String,
        }
        let custom: Custom = payload(&token(r#"{"azp":"client-1","sub":"x"}"#)).unwrap();
        assert_eq!(custom.azp, "client-1");
    }

    #[test]
    fn rejects_malformed_tokens_without_echoing_them() {
        let secretish = URL_SAFE_NO_PAD.encode(r#"{"sub":"s3cr3t"}"#);
        let cases = [
            (String::new(), "found 1"),
            (format!("onlyone{secretish}"), "found 1"),
            (format!("a.{secretish}"), "found 2"),
            (format!("a.{secretish}.c.d"), "found 4"),
            ("a.!!!.c".to_string(), "not base64url"),
            (
                format!("a.{}.c", URL_SAFE_NO_PAD.encode("not json")),
                "not a JSON claims object",
            ),
            (
                format!("a.{}.c", URL_SAFE_NO_PAD.encode("[1,2]")),
                "not a JSON claims object",
            ),
            (token(r#"{"exp":-5}"#), "NumericDate"),
            (token(r#"{"exp":"tomorrow"}"#), "not a JSON claims object"),
            (token(r#"{"aud":7}"#), "not a JSON claims object"),
        ];
        for (token, want) in cases {
            let err = claims(&token).unwrap_err().to_string();
            assert!(err.contains(want), "{token:?} => {err}");
            assert!(
                !err.contains(&secretish) && !err.contains("s3cr3t"),
                "{err}"
            );
        }
        let provider_error = ProviderError::from(claims("x").unwrap_err());
        assert!(
            matches!(provider_error, ProviderError::Unauthorized(m) if m.starts_with("malformed JWT"))
        );
    }
}
