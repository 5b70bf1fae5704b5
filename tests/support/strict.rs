//! The kubelet's decoding of a provider's stdout, restated (kubelet contract
//! §2.5): exactly one JSON value, no BOM, apiVersion equal to the one sent,
//! then a strict decode (case-sensitive names, no unknown or duplicate
//! fields, `cacheDuration` a Go duration string, `cacheKeyType` an enum).

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Wire {
    kind: String,
    api_version: String,
    cache_key_type: Option<String>,
    #[serde(default)]
    cache_duration: Option<String>,
    #[serde(default, deserialize_with = "unique_auth")]
    auth: Option<BTreeMap<String, Auth>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub username: String,
    pub password: String,
}

/// A response the kubelet would accept.
#[derive(Debug, PartialEq)]
pub struct Accepted {
    pub cache_key_type: String,
    pub cache_duration: Option<String>,
    pub auth: BTreeMap<String, Auth>,
}

fn unique_auth<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<BTreeMap<String, Auth>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<BTreeMap<String, Auth>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("auth map or null")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = m.next_entry::<String, Auth>()? {
                if out.insert(k.clone(), v).is_some() {
                    return Err(serde::de::Error::custom(format!("duplicate auth key {k}")));
                }
            }
            Ok(Some(out))
        }
    }
    de.deserialize_option(V)
}

/// Decodes `stdout` as the kubelet would for a provider configured with
/// `expected_api_version`; `Err` carries the reason kubelet would reject it.
pub fn decode(stdout: &[u8], expected_api_version: &str) -> Result<Accepted, String> {
    if stdout.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err("BOM".into());
    }
    let wire: Wire = serde_json::from_slice(stdout).map_err(|e| format!("decode: {e}"))?;
    if wire.api_version != expected_api_version {
        return Err(format!(
            "apiVersion {} != {expected_api_version}",
            wire.api_version
        ));
    }
    if wire.kind != "CredentialProviderResponse" {
        return Err(format!("kind {}", wire.kind));
    }
    let cache_key_type = wire.cache_key_type.unwrap_or_default();
    if !["Image", "Registry", "Global"].contains(&cache_key_type.as_str()) {
        return Err(format!("cacheKeyType {cache_key_type:?}"));
    }
    if let Some(d) = &wire.cache_duration {
        wcp_core::duration::parse_go_duration(d).map_err(|e| format!("cacheDuration: {e}"))?;
    }
    Ok(Accepted {
        cache_key_type,
        cache_duration: wire.cache_duration,
        auth: wire.auth.unwrap_or_default(),
    })
}

#[test]
fn rejects_what_kubelet_rejects() {
    let ok = br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"1m","auth":{"*.registry.io":{"username":"user","password":"password"}}}"#;
    assert!(decode(ok, "credentialprovider.kubelet.k8s.io/v1").is_ok());
    let v1 = "credentialprovider.kubelet.k8s.io/v1";
    for bad in [
        &br#"{"kind":"WrongKind","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Image"}"#[..],
        br#"{"kind":"CredentialProviderResponse","apiVersion":"foobar.kubelet.k8s.io/v1beta1","cacheKeyType":"Image"}"#,
        br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Image","extra":1}"#,
        br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Image","cacheDuration":60}"#,
        br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"image"}"#,
        br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}"#,
        br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Image"} {}"#,
        br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Image","cacheKeyType":"Image"}"#,
        br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Image","auth":{"a":{"username":"u","password":"p"},"a":{"username":"u","password":"p"}}}"#,
        b"\xEF\xBB\xBF{}",
        b"",
    ] {
        assert!(decode(bad, v1).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}
