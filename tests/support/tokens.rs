//! Service-account tokens shaped like the kubelet's projected ones: a JWT
//! whose `kubernetes.io` claims carry the SA coordinates the host keys its
//! cache by. The signature is not real; nothing in the host verifies it.

use base64::Engine;

/// A token for `namespace/name` (SA UID `uid`); `nonce` makes tokens of the
/// same SA differ, as different pods' tokens do.
pub fn sa_token(audience: &str, namespace: &str, name: &str, uid: &str, nonce: &str) -> String {
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let claims = serde_json::json!({
        "aud": [audience], "exp": 4_000_000_000u64, "jti": nonce,
        "kubernetes.io": {"namespace": namespace, "pod": {"name": "p", "uid": nonce},
                           "serviceaccount": {"name": name, "uid": uid}},
        "sub": format!("system:serviceaccount:{namespace}:{name}")
    });
    format!(
        "{}.{}.c2lnbmF0dXJl-{nonce}",
        b64(r#"{"alg":"RS256","kid":"k"}"#),
        b64(&claims.to_string())
    )
}
