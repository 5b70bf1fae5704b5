//! Cache keys with the kubelet's exact semantics (`plugin.go`): the base
//! key from `cacheKeyType` (Image: the image; Registry: its host[:port];
//! Global: `<global>`), and in service-account mode the SA coordinates and
//! annotations, plus the token's hash when `cacheType: Token`. Encoded as
//! kubelet encodes them (cryptobyte: 2-byte length-prefixed strings), so the
//! host's cache splits entries exactly where the kubelet's does.

use crate::image::registry_of;
use crate::protocol::CacheKeyType;
use crate::sa_token;
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The base key of a `Global` answer, as in kubelet.
pub const GLOBAL_KEY: &str = "<global>";

/// kubelet's `tokenAttributes.cacheType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenCacheType {
    /// Share credentials among all pods of a service account.
    #[default]
    ServiceAccount,
    /// Per token (effectively per pod); required when the password is the token.
    Token,
}

/// The service-account part of a request, when the kubelet sent a token.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccountKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub annotations: BTreeMap<String, String>,
    /// `sha256:<hex>` of the token; part of the key only for `Token`.
    pub token_hash: String,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({})", self.namespace, self.name, self.uid)
    }
}

impl ServiceAccountKey {
    /// Builds the SA key from coordinates and the token.
    pub fn new(
        namespace: &str,
        name: &str,
        uid: &str,
        annotations: &BTreeMap<String, String>,
        token: &str,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            annotations: annotations.clone(),
            token_hash: format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes()))),
        }
    }

    /// kubelet's saKey bytes.
    pub fn encode(&self, cache_type: TokenCacheType) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        put_string(&mut out, &self.namespace)?;
        put_string(&mut out, &self.name)?;
        put_string(&mut out, &self.uid)?;
        out.extend_from_slice(&(self.annotations.len() as u32).to_be_bytes());
        for (k, v) in &self.annotations {
            put_string(&mut out, k)?;
            put_string(&mut out, v)?;
        }
        if cache_type == TokenCacheType::Token {
            put_string(&mut out, "token")?;
            put_string(&mut out, &self.token_hash)?;
        }
        Ok(out)
    }
}

/// kubelet's `cacheKey(baseKey, saKey)`.
pub fn encode_key(base: &str, sa_key: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    put_string(&mut out, base)?;
    put_bytes(&mut out, sa_key)?;
    Ok(out)
}

/// The base key of `image` for `kind`.
pub fn base_key(kind: CacheKeyType, image: &str) -> &str {
    match kind {
        CacheKeyType::Image => image,
        CacheKeyType::Registry => registry_of(image),
        CacheKeyType::Global => GLOBAL_KEY,
    }
}

/// The keys to look up for `image`, in kubelet's order: image, registry,
/// global.
pub fn lookup_keys(image: &str, sa_key: &[u8]) -> Result<Vec<(CacheKeyType, Vec<u8>)>> {
    [
        CacheKeyType::Image,
        CacheKeyType::Registry,
        CacheKeyType::Global,
    ]
    .into_iter()
    .map(|kind| Ok((kind, encode_key(base_key(kind, image), sa_key)?)))
    .collect()
}

/// The file name of an entry: it binds the plugin name and the full key, so
/// that entries of different plugins or SA identities can never collide.
pub fn entry_id(plugin: &str, key: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update((plugin.len() as u64).to_be_bytes());
    hasher.update(plugin.as_bytes());
    hasher.update(key);
    hex::encode(hasher.finalize())
}

/// Where one request's answers live in the cache, worked out once per
/// request: the plugin's scope (a SHA-256 over its settings, see
/// `PluginConfig::cache_scope`) and the service-account part of every key,
/// from the token parsed once. Lookup, flight lock and the stored entry all
/// derive from it, so they cannot disagree about the identity.
#[derive(Clone, PartialEq, Eq)]
pub struct Partition {
    /// The plugin's cache scope.
    pub scope: String,
    /// kubelet's saKey bytes; empty outside service-account mode.
    pub sa_key: Vec<u8>,
    /// `namespace/name` of the token's service account, for listings.
    pub service_account: Option<String>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("scope", &self.scope)
            .field("service_account", &self.service_account)
            .finish_non_exhaustive()
    }
}

impl Partition {
    /// The partition of a request with `token` (if the kubelet sent one)
    /// and `annotations`. An error means the token's identity cannot be
    /// read (or does not fit a key): such a request must not be cached, as
    /// its answer could not be told apart from another identity's.
    pub fn new(
        scope: String,
        token: Option<&str>,
        annotations: &BTreeMap<String, String>,
        cache_type: TokenCacheType,
    ) -> Result<Self> {
        let Some(token) = token else {
            return Ok(Self {
                scope,
                sa_key: Vec::new(),
                service_account: None,
            });
        };
        let who = sa_token::coordinates(token).context("service-account identity unreadable")?;
        let sa_key =
            ServiceAccountKey::new(&who.namespace, &who.name, &who.uid, annotations, token)
                .encode(cache_type)
                .context("service-account identity does not fit a cache key")?;
        Ok(Self {
            scope,
            sa_key,
            service_account: Some(format!("{}/{}", who.namespace, who.name)),
        })
    }

    /// The full key of `image` under `kind`.
    pub fn key(&self, kind: CacheKeyType, image: &str) -> Result<Vec<u8>> {
        encode_key(base_key(kind, image), &self.sa_key)
    }

    /// The keys to look up for `image`, in kubelet's order.
    pub fn lookup_keys(&self, image: &str) -> Result<Vec<(CacheKeyType, Vec<u8>)>> {
        lookup_keys(image, &self.sa_key)
    }

    /// The flight of `image`: one plugin call at a time per (plugin,
    /// registry, identity), whatever `cacheKeyType` the answer will have.
    pub fn flight(&self, image: &str) -> Result<String> {
        Ok(entry_id(
            &self.scope,
            &self.key(CacheKeyType::Registry, image)?,
        ))
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) -> Result<()> {
    put_bytes(out, s.as_bytes())
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<()> {
    if b.len() > u16::MAX as usize {
        bail!("cache key component is longer than 65535 bytes");
    }
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(annotations: &[(&str, &str)]) -> ServiceAccountKey {
        let mut key = ServiceAccountKey::new(
            "namespace",
            "service-account",
            "service-account-uid",
            &annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            "token",
        );
        key.token_hash =
            "sha256:f7a41acb9633520e657fe58dedcd9e6a784e2d97e4c646492b45c61e28595c70".into();
        key
    }

    // Test vectors of kubelet's plugin_test.go, from the contract reference §3.4.
    #[test]
    fn kubelet_vectors() {
        assert_eq!(
            hex::encode(encode_key("image1", &[]).unwrap()),
            "0006696d616765310000"
        );
        assert_eq!(
            encode_key("registry.io/image", &[]).unwrap(),
            b"\x00\x11registry.io/image\x00\x00"
        );
        assert_eq!(
            sa(&[]).encode(TokenCacheType::ServiceAccount).unwrap(),
            b"\x00\tnamespace\x00\x0fservice-account\x00\x13service-account-uid\x00\x00\x00\x00"
        );
        assert_eq!(
            sa(&[("domain.io/annotation-1", "value1")]).encode(TokenCacheType::ServiceAccount).unwrap(),
            b"\x00\tnamespace\x00\x0fservice-account\x00\x13service-account-uid\x00\x00\x00\x01\x00\x16domain.io/annotation-1\x00\x06value1"
        );
        let two = sa(&[
            ("domain.io/annotation-2", "value2"),
            ("domain.io/annotation-1", "value1"),
        ]);
        let two_bytes = b"\x00\tnamespace\x00\x0fservice-account\x00\x13service-account-uid\x00\x00\x00\x02\x00\x16domain.io/annotation-1\x00\x06value1\x00\x16domain.io/annotation-2\x00\x06value2";
        assert_eq!(
            two.encode(TokenCacheType::ServiceAccount).unwrap(),
            two_bytes
        );
        let mut with_token = two_bytes.to_vec();
        with_token.extend_from_slice(b"\x00\x05token\x00Gsha256:f7a41acb9633520e657fe58dedcd9e6a784e2d97e4c646492b45c61e28595c70");
        assert_eq!(two.encode(TokenCacheType::Token).unwrap(), with_token);
        let mut full = b"\x00\x11registry.io/image\x00u".to_vec();
        full.extend_from_slice(two_bytes);
        assert_eq!(encode_key("registry.io/image", two_bytes).unwrap(), full);
        // The hash kubelet's Test_CacheKeyGeneration uses for token "token".
        let real = ServiceAccountKey::new("a", "b", "c", &BTreeMap::new(), "token");
        assert_eq!(
            real.token_hash,
            "sha256:3c469e9d6c5875d37a43f353d4f88e61fcf812c66eee3457465a40b0da4153e0"
        );
    }

    #[test]
    fn base_keys_and_order() {
        let keys = lookup_keys("test.registry.io/foo/bar", &[]).unwrap();
        assert_eq!(
            keys[0].1,
            encode_key("test.registry.io/foo/bar", &[]).unwrap()
        );
        assert_eq!(keys[1].1, encode_key("test.registry.io", &[]).unwrap());
        assert_eq!(keys[2].1, encode_key("<global>", &[]).unwrap());
        assert_eq!(base_key(CacheKeyType::Registry, "r.io:8080/x"), "r.io:8080");
    }

    /// Property: over many random (plugin, SA identity, annotations, token)
    /// tuples, two requests share a cache entry only if plugin, namespace,
    /// name, UID and annotations are all equal (and, for `Token`, the
    /// token too), so no credential is served to another identity or plugin.
    #[test]
    fn no_entry_is_shared_across_identities_or_plugins() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let pick = |i: u64, prefix: &str| format!("{prefix}{i}");
        let mut samples = Vec::new();
        for _ in 0..400 {
            let plugin = pick(next(3), "plugin-");
            let ns = pick(next(3), "ns-");
            let name = pick(next(3), "sa-");
            let uid = pick(next(2), "uid-");
            let mut ann = BTreeMap::new();
            if next(2) == 0 {
                ann.insert("role".to_string(), pick(next(2), "r"));
            }
            let token = pick(next(4), "token-");
            samples.push((plugin, ns, name, uid, ann, token));
        }
        for cache_type in [TokenCacheType::ServiceAccount, TokenCacheType::Token] {
            let keys: Vec<String> = samples
                .iter()
                .map(|s| {
                    let sa = ServiceAccountKey::new(&s.1, &s.2, &s.3, &s.4, &s.5)
                        .encode(cache_type)
                        .unwrap();
                    entry_id(&s.0, &encode_key("registry.io", &sa).unwrap())
                })
                .collect();
            for (a, ka) in samples.iter().zip(&keys) {
                for (b, kb) in samples.iter().zip(&keys) {
                    let same_identity = a.0 == b.0
                        && a.1 == b.1
                        && a.2 == b.2
                        && a.3 == b.3
                        && a.4 == b.4
                        && (cache_type == TokenCacheType::ServiceAccount || a.5 == b.5);
                    assert_eq!(ka == kb, same_identity, "{a:?} vs {b:?} ({cache_type:?})");
                }
            }
        }
    }

    #[test]
    fn a_partition_reads_the_token_once_for_every_key() {
        use base64::Engine;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let claims =
            r#"{"kubernetes.io":{"namespace":"ns","serviceaccount":{"name":"sa","uid":"u1"}}}"#;
        let token = format!("{}.{}.sig", b64("{}"), b64(claims));
        let annotations = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let p = Partition::new(
            "p#1".into(),
            Some(&token),
            &annotations,
            TokenCacheType::ServiceAccount,
        )
        .unwrap();
        let sa = ServiceAccountKey::new("ns", "sa", "u1", &annotations, &token)
            .encode(TokenCacheType::ServiceAccount)
            .unwrap();
        assert_eq!(p.sa_key, sa);
        assert_eq!(p.service_account.as_deref(), Some("ns/sa"));
        assert_eq!(
            p.lookup_keys("r.io/x").unwrap(),
            lookup_keys("r.io/x", &sa).unwrap()
        );
        assert_eq!(
            p.flight("r.io/x").unwrap(),
            entry_id("p#1", &encode_key("r.io", &sa).unwrap())
        );
        let plain =
            Partition::new("p#1".into(), None, &annotations, TokenCacheType::Token).unwrap();
        assert!(plain.sa_key.is_empty() && plain.service_account.is_none());
        let err = Partition::new(
            "p#1".into(),
            Some("opaque"),
            &annotations,
            TokenCacheType::Token,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("identity unreadable"),
            "{err:#}"
        );
        assert!(!format!("{p:?}").contains("u1"));
    }

    #[test]
    fn ids_separate_plugins_and_identities() {
        let k = encode_key("r.io", &[]).unwrap();
        assert_ne!(entry_id("a", &k), entry_id("b", &k));
        // No ambiguity from concatenation: ("ab", "c...") vs ("a", "bc...").
        assert_ne!(entry_id("ab", b"c"), entry_id("a", b"bc"));
        assert!(put_string(&mut Vec::new(), &"x".repeat(70_000)).is_err());
    }
}
