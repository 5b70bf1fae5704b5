//! The on-disk form of one cached answer.
//!
//! A file is `<sha256 hex of the body>\n<body>`, the body one JSON object
//! (format `wcp-cache/v1`). The checksum catches truncated or torn files;
//! the body repeats the plugin name and the full key so that a file renamed
//! or copied under another entry's name is never served for that entry.

use crate::answer_scope::{AnswerScope, Narrowed};
use crate::cache_key::{Partition, entry_id};
use crate::image::registry_of;
use crate::protocol::{AuthConfig, CacheKeyType};
use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Version tag of the format; another value is treated as foreign.
pub const FORMAT: &str = "wcp-cache/v1";

/// One cached answer.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Entry {
    pub format: String,
    pub plugin: String,
    /// The plugin's name and settings fingerprint (see
    /// `PluginConfig::cache_scope`): changing a plugin's module, config or
    /// grants orphans its old entries instead of serving them.
    pub scope: String,
    /// The kubelet-encoded cache key, hex.
    pub key: String,
    pub key_kind: CacheKeyType,
    /// Registry host[:port] of the image that produced it (for listings).
    pub registry: String,
    /// `namespace/name` of the service account, in SA mode (for listings).
    #[serde(default)]
    pub service_account: Option<String>,
    pub created_at: u64,
    pub expires_at: u64,
    pub auth: BTreeMap<String, AuthConfig>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("plugin", &self.plugin)
            .field("key_kind", &self.key_kind)
            .field("registry", &self.registry)
            .field("service_account", &self.service_account)
            .field("expires_at", &self.expires_at)
            .field("auth_keys", &self.auth.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Entry {
    /// The entry for an answer to `image` given at `now` (Unix seconds),
    /// stored under `kind`'s key in `partition` for `duration` seconds.
    pub fn new(
        plugin: &str,
        partition: &Partition,
        kind: CacheKeyType,
        image: &str,
        auth: BTreeMap<String, AuthConfig>,
        now: u64,
        duration: u64,
    ) -> Result<Self> {
        Ok(Self {
            format: FORMAT.into(),
            plugin: plugin.into(),
            scope: partition.scope.clone(),
            key: hex::encode(partition.key(kind, image)?),
            key_kind: kind,
            registry: registry_of(image).into(),
            service_account: partition.service_account.clone(),
            created_at: now,
            expires_at: now.saturating_add(duration),
            auth,
        })
    }

    /// The file id this entry must live under.
    pub fn id(&self) -> Result<String> {
        Ok(entry_id(
            &self.scope,
            &hex::decode(&self.key).context("key is not hex")?,
        ))
    }

    /// Serializes with the checksum line.
    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).expect("entry serialization cannot fail");
        let mut out = hex::encode(Sha256::digest(&body)).into_bytes();
        out.push(b'\n');
        out.extend_from_slice(&body);
        out
    }

    /// Parses and verifies a file's bytes (checksum and format only).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let newline = bytes
            .iter()
            .position(|b| *b == b'\n')
            .context("no checksum line (truncated?)")?;
        let (sum, body) = (&bytes[..newline], &bytes[newline + 1..]);
        ensure!(
            sum == hex::encode(Sha256::digest(body)).as_bytes(),
            "checksum mismatch (truncated or corrupted)"
        );
        let entry: Entry = serde_json::from_slice(body).context("body is not a cache entry")?;
        if entry.format != FORMAT {
            bail!("foreign format {:?}", entry.format);
        }
        Ok(entry)
    }

    /// Decodes a file expected for `scope` and `key`; anything else (a
    /// moved file, another plugin's entry) is rejected.
    pub fn decode_for(bytes: &[u8], scope: &str, key: &[u8]) -> Result<Self> {
        let entry = Self::decode(bytes)?;
        ensure!(
            entry.scope == scope && entry.key == hex::encode(key),
            "entry belongs to another plugin or key"
        );
        Ok(entry)
    }

    /// The `cacheKeyType` to serve this entry with for `image` (narrowed as
    /// a fresh answer's would be), or why it may not be served at all: an
    /// auth key outside the plugin's images. The host config may have
    /// changed since the entry was stored, and `scope` (the plugin's
    /// settings fingerprint) does not cover the other plugins' patterns, so
    /// every hit is checked again.
    pub fn served_kind(&self, plugin: &AnswerScope, image: &str) -> Result<Narrowed> {
        plugin.check_keys(self.auth.keys())?;
        Ok(plugin.cache_key_type(self.key_kind, image))
    }

    /// Whole seconds of life left at `now`, if any.
    pub fn remaining(&self, now: u64) -> Option<u64> {
        (self.expires_at > now).then(|| self.expires_at - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_key::encode_key;

    fn sample() -> Entry {
        let mut auth = BTreeMap::new();
        auth.insert(
            "r.io".to_string(),
            AuthConfig {
                username: "u".into(),
                password: "secret-pw".into(),
            },
        );
        Entry {
            format: FORMAT.into(),
            plugin: "p".into(),
            scope: "p".into(),
            key: hex::encode(encode_key("r.io", &[]).unwrap()),
            key_kind: CacheKeyType::Registry,
            registry: "r.io".into(),
            service_account: None,
            created_at: 100,
            expires_at: 400,
            auth,
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let e = sample();
        let key = encode_key("r.io", &[]).unwrap();
        let bytes = e.encode();
        assert_eq!(Entry::decode_for(&bytes, "p", &key).unwrap(), e);
        assert!(Entry::decode_for(&bytes, "q", &key).is_err());
        assert!(Entry::decode_for(&bytes, "p", &encode_key("x.io", &[]).unwrap()).is_err());
        for cut in [0, 10, 64, 65, bytes.len() - 1] {
            assert!(Entry::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 1;
        assert!(Entry::decode(&flipped).is_err());
        let mut foreign = e.clone();
        foreign.format = "wcp-cache/v0".into();
        assert!(Entry::decode(&foreign.encode()).is_err());
        assert_eq!(e.remaining(399), Some(1));
        assert_eq!(e.remaining(400), None);
        assert!(!format!("{e:?}").contains("secret-pw"));
        assert_eq!(e.id().unwrap(), entry_id(&e.scope, &key));
        let mut other_scope = e.clone();
        other_scope.scope = "p#other".into();
        assert_ne!(other_scope.id().unwrap(), e.id().unwrap());
        assert!(Entry::decode_for(&other_scope.encode(), "p", &key).is_err());
    }

    #[test]
    fn new_entries_live_under_their_partition_key() {
        let partition = Partition {
            scope: "p".into(),
            sa_key: Vec::new(),
            service_account: None,
        };
        let e = Entry::new(
            "p",
            &partition,
            CacheKeyType::Registry,
            "r.io/x",
            sample().auth,
            100,
            300,
        )
        .unwrap();
        assert_eq!(e, sample());
        let key = encode_key("r.io", &[]).unwrap();
        assert_eq!(Entry::decode_for(&e.encode(), "p", &key).unwrap(), e);
    }

    #[test]
    fn hits_are_checked_against_the_current_config() {
        let config = |plugins: &str| {
            crate::config::HostConfig::parse(
                &format!("apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\nplugins:\n{plugins}"),
                std::path::Path::new("/"),
            )
            .unwrap()
        };
        let alone = config("  - {name: p, module: m.wasm, matchImages: [\"*.io\"]}\n");
        let shared = config(
            "  - {name: first, module: m.wasm, matchImages: [\"a.io\"]}\n  - {name: p, module: m.wasm, matchImages: [\"*.io\"]}\n",
        );
        let mut global = sample();
        global.key_kind = CacheKeyType::Global;
        let alone_p = AnswerScope::new(&alone, "p").unwrap();
        let shared_p = AnswerScope::new(&shared, "p").unwrap();
        assert_eq!(
            global.served_kind(&alone_p, "r.io/x").unwrap().kind,
            CacheKeyType::Global
        );
        // Stored while p was alone; now another plugin shares the host.
        let narrowed = global.served_kind(&shared_p, "r.io/x").unwrap();
        assert_eq!(narrowed.kind, CacheKeyType::Registry);
        assert!(narrowed.reason.unwrap().contains("2 plugins"));
        // An auth key that now belongs to the earlier plugin.
        let mut foreign = sample();
        foreign.auth.insert(
            "a.io".into(),
            AuthConfig {
                username: "u".into(),
                password: "p".into(),
            },
        );
        assert!(foreign.served_kind(&alone_p, "r.io/x").is_ok());
        let err = foreign.served_kind(&shared_p, "r.io/x").unwrap_err();
        assert!(format!("{err:#}").contains("plugin \"first\""), "{err:#}");
    }
}
