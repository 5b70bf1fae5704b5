//! The host config file as written: the YAML shape and nothing more. Strict:
//! an unknown or duplicate field is an error that names its line, because a
//! typo in a security setting must not be silently ignored. What the values
//! mean is checked afterwards, in [`super::validate`].

use crate::capabilities::RawGrant;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawHostConfig {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    #[serde(default)]
    pub cache: RawHostCache,
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub metrics: RawMetrics,
    pub plugins: Vec<RawPlugin>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawMetrics {
    /// node-exporter's `--collector.textfile.directory`.
    #[serde(default)]
    pub textfile_directory: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawProxy {
    #[serde(default)]
    pub name_resolution: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawTls {
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawHostCache {
    #[serde(default)]
    pub directory: Option<PathBuf>,
    #[serde(default)]
    pub max_entries: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawPluginCache {
    #[serde(default)]
    pub token_cache_type: Option<String>,
    #[serde(default)]
    pub default_duration: Option<String>,
    #[serde(default)]
    pub max_duration: Option<String>,
    #[serde(default)]
    pub share_failures_for: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawLimits {
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default, rename = "memoryMiB")]
    pub memory_mib: Option<u32>,
    #[serde(default)]
    pub max_http_response_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawPlugin {
    pub name: String,
    pub module: PathBuf,
    #[serde(default)]
    pub sha256: Option<String>,
    pub match_images: Vec<String>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub config: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub config_from_file: BTreeMap<String, PathBuf>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub config_from_env: BTreeMap<String, String>,
    #[serde(default)]
    pub grants: RawGrant,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub cache: RawPluginCache,
    /// `oci://...@sha256:...` the module is installed from (issue 15).
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub verify: Option<RawVerify>,
}

/// A plugin's `verify:`: a public key and where its signature is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawVerify {
    pub public_key: PathBuf,
    #[serde(default)]
    pub signature: Option<PathBuf>,
    #[serde(default)]
    pub registry_signature: bool,
}

/// A map that refuses duplicate keys: YAML parsers keep the last value,
/// which would let a second `password:` silently override the first.
fn unique_keys<'de, D, V>(de: D) -> std::result::Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Visitor<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, V>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    de.deserialize_map(Visitor(std::marker::PhantomData))
}
