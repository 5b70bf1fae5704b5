//! The service-account coordinates inside a projected token. The kubelet
//! keys its cache by the pod's SA namespace, name and UID; the exec'd host
//! only has the token, whose `kubernetes.io` claims carry exactly those.
//! The token is not verified here (the provider's upstream verifies it);
//! it only partitions the cache, and a forged token only partitions it
//! differently.

use anyhow::{Context, Result};
use base64::Engine;
use serde::Deserialize;

/// `namespace`, `name`, `uid` of the token's service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinates {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(rename = "kubernetes.io")]
    kubernetes: Kubernetes,
}

#[derive(Deserialize)]
struct Kubernetes {
    namespace: String,
    serviceaccount: ServiceAccount,
}

#[derive(Deserialize)]
struct ServiceAccount {
    name: String,
    uid: String,
}

/// Reads the coordinates from a JWT's payload.
pub fn coordinates(token: &str) -> Result<Coordinates> {
    let payload = token.split('.').nth(1).context("token is not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .context("token payload is not base64url")?;
    let claims: Claims = serde_json::from_slice(&bytes)
        .context("token has no kubernetes.io service-account claims")?;
    Ok(Coordinates {
        namespace: claims.kubernetes.namespace,
        name: claims.kubernetes.serviceaccount.name,
        uid: claims.kubernetes.serviceaccount.uid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token shaped like a projected SA token, for tests.
    pub fn token(namespace: &str, name: &str, uid: &str) -> String {
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let claims = serde_json::json!({
            "aud": ["sts.amazonaws.com"], "exp": 4_000_000_000u64, "iss": "https://kubernetes.default.svc",
            "kubernetes.io": {"namespace": namespace, "pod": {"name": "p", "uid": "pod-uid"},
                               "serviceaccount": {"name": name, "uid": uid}},
            "sub": format!("system:serviceaccount:{namespace}:{name}")
        });
        format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(&claims.to_string())
        )
    }

    #[test]
    fn reads_coordinates() {
        let c = coordinates(&token("team-a", "puller", "uid-1")).unwrap();
        assert_eq!(
            (c.namespace.as_str(), c.name.as_str(), c.uid.as_str()),
            ("team-a", "puller", "uid-1")
        );
        assert!(coordinates("not-a-jwt").is_err());
        assert!(coordinates("a.!!!.c").is_err());
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#);
        assert!(coordinates(&format!("a.{b64}.c")).is_err());
    }
}
