//! The host config: which WASM plugins exist, which images each serves and
//! what each is given. YAML, strict: an unknown or duplicate field is an
//! error that names its line, because a typo in a security setting must not
//! be silently ignored.

use crate::cache_key::TokenCacheType;
use crate::cache_policy::CachePolicy;
use crate::capabilities::{Grant, parse_grant};
use crate::duration::parse_go_duration;
use crate::matching::ImagePattern;
use crate::names::{check_config_key, check_env_name};
use crate::proxy::ProxyResolution;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `apiVersion` this host reads.
pub const API_VERSION: &str = "wasm-credential-provider.io/v1alpha1";
/// The `kind` of the host config.
pub const KIND: &str = "CredentialProviderHostConfig";
/// Largest config file the host reads.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileConfig {
    api_version: String,
    kind: String,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    audit_log: Option<PathBuf>,
    #[serde(default)]
    cache: FileHostCache,
    #[serde(default)]
    proxy: FileProxy,
    plugins: Vec<FilePlugin>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileProxy {
    #[serde(default)]
    name_resolution: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileTls {
    #[serde(default)]
    ca_bundle: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileHostCache {
    #[serde(default)]
    directory: Option<PathBuf>,
    #[serde(default)]
    max_entries: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilePluginCache {
    #[serde(default)]
    token_cache_type: Option<String>,
    #[serde(default)]
    default_duration: Option<String>,
    #[serde(default)]
    max_duration: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileGrants {
    #[serde(default)]
    outbound: Vec<String>,
    #[serde(default)]
    allow_private_networks: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    service_account_token: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileLimits {
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default, rename = "memoryMiB")]
    memory_mib: Option<u32>,
    #[serde(default)]
    max_http_response_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilePlugin {
    name: String,
    module: PathBuf,
    #[serde(default)]
    sha256: Option<String>,
    match_images: Vec<String>,
    #[serde(default, deserialize_with = "unique_keys")]
    config: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "unique_keys")]
    config_from_file: BTreeMap<String, PathBuf>,
    #[serde(default, deserialize_with = "unique_keys")]
    config_from_env: BTreeMap<String, String>,
    #[serde(default)]
    grants: FileGrants,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    cache: FilePluginCache,
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

/// A validated host config.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Extra PEM CA certificates trusted for outbound TLS, beside the OS store.
    pub ca_bundle: Option<PathBuf>,
    /// JSON-lines audit trail of plugin calls and denials (no secrets).
    pub audit_log: Option<PathBuf>,
    /// Where answers are cached across processes.
    pub cache_directory: PathBuf,
    /// Most entries the cache keeps.
    pub cache_max_entries: usize,
    /// Who resolves names behind `HTTPS_PROXY`/`HTTP_PROXY`.
    pub proxy_resolution: ProxyResolution,
    pub plugins: Vec<PluginConfig>,
}

/// Where one plugin config value comes from. Secrets belong in a file or an
/// environment variable, not in the config file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Literal(String),
    File(PathBuf),
    Env(String),
}

/// One plugin as the operator configured it.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    pub name: String,
    /// Absolute, or relative to the config file's directory.
    pub module: PathBuf,
    /// Lowercase hex SHA-256 the module must have, if pinned.
    pub sha256: Option<String>,
    pub match_images: Vec<ImagePattern>,
    pub config: BTreeMap<String, ConfigSource>,
    /// What the operator grants; see [`crate::capabilities`].
    pub grant: Grant,
    pub limits: Limits,
    pub cache: CachePolicy,
}

/// Default cache directory: beside the kubelet's state, root-only.
pub const DEFAULT_CACHE_DIRECTORY: &str = "/var/lib/kubelet/wasm-credential-provider/cache";
/// Default bound on cache entries.
pub const DEFAULT_CACHE_MAX_ENTRIES: usize = 1000;

/// Resource bounds of one plugin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget for one call, host I/O included.
    pub timeout: Duration,
    /// Linear memory the instance may use.
    pub memory_bytes: usize,
    /// Largest HTTP response body the host hands to the plugin.
    pub max_http_response_bytes: u64,
}

/// Default wall-clock budget of a plugin call: well under the kubelet's 60 s kill.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest budget an operator may set: the kubelet kills the exec at 60 s.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(55);
/// Default memory cap.
pub const DEFAULT_MEMORY_MIB: u32 = 64;
/// Default cap on one HTTP response body.
pub const DEFAULT_MAX_HTTP_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_MIB as usize * 1024 * 1024,
            max_http_response_bytes: DEFAULT_MAX_HTTP_RESPONSE_BYTES,
        }
    }
}

impl HostConfig {
    /// Reads and validates the config at `path`; module paths are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read host config {}", path.display()))?;
        if meta.len() > MAX_CONFIG_BYTES {
            bail!(
                "host config {} is larger than {MAX_CONFIG_BYTES} bytes",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read host config {}", path.display()))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, base).with_context(|| format!("invalid host config {}", path.display()))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self> {
        let file: FileConfig = serde_yaml_ng::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        if file.api_version != API_VERSION {
            bail!(
                "apiVersion is {:?}, expected {API_VERSION:?}",
                file.api_version
            );
        }
        if file.kind != KIND {
            bail!("kind is {:?}, expected {KIND:?}", file.kind);
        }
        if file.plugins.is_empty() {
            bail!("plugins: at least one plugin is required");
        }
        let ca_bundle = file
            .tls
            .ca_bundle
            .map(|p| if p.is_absolute() { p } else { base_dir.join(p) });
        let mut names = BTreeSet::new();
        let mut plugins = Vec::with_capacity(file.plugins.len());
        for (index, plugin) in file.plugins.into_iter().enumerate() {
            let at = format!("plugins[{index}]");
            let plugin = validate_plugin(plugin, base_dir).with_context(|| at.clone())?;
            if !names.insert(plugin.name.clone()) {
                bail!("{at}.name: duplicate plugin name {:?}", plugin.name);
            }
            plugins.push(plugin);
        }
        let audit_log = file
            .audit_log
            .map(|p| if p.is_absolute() { p } else { base_dir.join(p) });
        let cache_directory = match file.cache.directory {
            Some(p) if p.is_absolute() => p,
            Some(p) => base_dir.join(p),
            None => PathBuf::from(DEFAULT_CACHE_DIRECTORY),
        };
        let cache_max_entries = file.cache.max_entries.unwrap_or(DEFAULT_CACHE_MAX_ENTRIES);
        if cache_max_entries == 0 {
            bail!("cache.maxEntries: must be at least 1");
        }
        let proxy_resolution = match file.proxy.name_resolution.as_deref() {
            None => ProxyResolution::default(),
            Some(value) => ProxyResolution::parse(value).context("proxy.nameResolution")?,
        };
        Ok(Self {
            ca_bundle,
            audit_log,
            cache_directory,
            cache_max_entries,
            proxy_resolution,
            plugins,
        })
    }

    /// The first plugin whose `matchImages` selects `image`, in config order,
    /// as the kubelet picks among providers.
    pub fn select(&self, image: &str) -> Option<&PluginConfig> {
        self.plugins
            .iter()
            .find(|p| p.match_images.iter().any(|m| m.matches(image)))
    }
}

fn validate_plugin(plugin: FilePlugin, base_dir: &Path) -> Result<PluginConfig> {
    let name = plugin.name;
    if name.is_empty() {
        bail!("name: must not be empty");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name == "."
        || name == ".."
    {
        bail!("name: {name:?} may contain only letters, digits, '-', '_' and '.'");
    }
    if plugin.module.as_os_str().is_empty() {
        bail!("module: must name the plugin's .wasm file");
    }
    let module = if plugin.module.is_absolute() {
        plugin.module
    } else {
        base_dir.join(plugin.module)
    };
    let sha256 = match plugin.sha256 {
        Some(hex) => {
            let hex = hex.to_ascii_lowercase();
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("sha256: must be 64 hex digits (the output of `sha256sum <module>`)");
            }
            Some(hex)
        }
        None => None,
    };
    if plugin.match_images.is_empty() {
        bail!("matchImages: at least one pattern is required");
    }
    let match_images = plugin
        .match_images
        .iter()
        .enumerate()
        .map(|(i, p)| {
            ImagePattern::parse(p)
                .with_context(|| format!("matchImages[{i}]: invalid pattern {p:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut config = BTreeMap::new();
    let sources = plugin
        .config
        .into_iter()
        .map(|(k, v)| (k, ConfigSource::Literal(v), "config"))
        .chain(plugin.config_from_file.into_iter().map(|(k, p)| {
            let p = if p.is_absolute() { p } else { base_dir.join(p) };
            (k, ConfigSource::File(p), "configFromFile")
        }))
        .chain(
            plugin
                .config_from_env
                .into_iter()
                .map(|(k, v)| (k, ConfigSource::Env(v), "configFromEnv")),
        );
    for (key, source, field) in sources {
        check_config_key(&key).context(field)?;
        if let ConfigSource::Env(var) = &source {
            check_env_name(var).with_context(|| format!("{field}.{key}"))?;
        }
        if config.insert(key.clone(), source).is_some() {
            bail!(
                "{field}.{key}: key is set in more than one of config, configFromFile, configFromEnv"
            );
        }
    }
    let grants = plugin.grants;
    let grant = parse_grant(
        &grants.outbound,
        &grants.allow_private_networks,
        &grants.env,
        grants.service_account_token,
    )
    .context("grants")?;
    Ok(PluginConfig {
        name,
        module,
        sha256,
        match_images,
        config,
        grant,
        limits: validate_limits(plugin.limits).context("limits")?,
        cache: validate_cache(plugin.cache).context("cache")?,
    })
}

fn validate_cache(cache: FilePluginCache) -> Result<CachePolicy> {
    let token_cache_type = match cache.token_cache_type.as_deref() {
        None | Some("ServiceAccount") => TokenCacheType::ServiceAccount,
        Some("Token") => TokenCacheType::Token,
        Some(other) => bail!(
            "tokenCacheType: {other:?} is not supported: use \"ServiceAccount\" or \"Token\" (as kubelet's tokenAttributes.cacheType)"
        ),
    };
    let mut out = CachePolicy {
        token_cache_type,
        ..CachePolicy::default()
    };
    if let Some(text) = cache.default_duration {
        out.default_duration = parse_go_duration(&text).context("defaultDuration")?;
    }
    if let Some(text) = cache.max_duration {
        out.max_duration = parse_go_duration(&text).context("maxDuration")?;
    }
    Ok(out)
}

fn validate_limits(limits: FileLimits) -> Result<Limits> {
    let mut out = Limits::default();
    if let Some(text) = limits.timeout {
        let timeout = parse_go_duration(&text).context("timeout")?;
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            bail!(
                "timeout: {text} must be more than 0s and at most {}s (the kubelet kills the exec at 60s)",
                MAX_TIMEOUT.as_secs()
            );
        }
        out.timeout = timeout;
    }
    if let Some(mib) = limits.memory_mib {
        if !(1..=4096).contains(&mib) {
            bail!("memoryMiB: {mib} must be from 1 to 4096");
        }
        out.memory_bytes = mib as usize * 1024 * 1024;
    }
    if let Some(bytes) = limits.max_http_response_bytes {
        if bytes == 0 {
            bail!("maxHttpResponseBytes: must be more than 0");
        }
        out.max_http_response_bytes = bytes;
    }
    Ok(out)
}

impl PluginConfig {
    /// The cache partition of this plugin: its name plus a fingerprint of
    /// every setting that can change its answers (module, pin, config
    /// sources, grants, limits, cache policy). Secrets only enter it hashed.
    pub fn cache_scope(&self) -> String {
        use sha2::{Digest, Sha256};
        let settings = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.module, self.sha256, self.config, self.grant, self.limits, self.cache
        );
        let digest = hex::encode(Sha256::digest(settings.as_bytes()));
        format!("{}#{}", self.name, &digest[..16])
    }

    /// Resolves every config value now, so that a missing secret file or
    /// variable is reported before the plugin runs. `env` looks up the
    /// host's environment (injected for tests). Values from files lose one
    /// trailing newline, as secret files usually end with one.
    pub fn resolve_values(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, String>> {
        self.config
            .iter()
            .map(|(key, source)| {
                let value = match source {
                    ConfigSource::Literal(v) => v.clone(),
                    ConfigSource::File(path) => {
                        let mut v = std::fs::read_to_string(path).with_context(|| {
                            format!(
                                "plugin {:?}: configFromFile.{key}: cannot read {}",
                                self.name,
                                path.display()
                            )
                        })?;
                        if v.ends_with('\n') {
                            v.pop();
                            if v.ends_with('\r') {
                                v.pop();
                            }
                        }
                        v
                    }
                    ConfigSource::Env(var) => env(var).with_context(|| {
                        format!(
                            "plugin {:?}: configFromEnv.{key}: environment variable {var} is not set",
                            self.name
                        )
                    })?,
                };
                Ok((key.clone(), value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: wasm-credential-provider.io/v1alpha1
kind: CredentialProviderHostConfig
plugins:
  - name: static
    module: plugins/static.wasm
    sha256: "AB00000000000000000000000000000000000000000000000000000000000000"
    matchImages: ["*.registry.io", "registry.io:5000/team"]
    config:
      username: robot
    configFromFile:
      password: secret/password
  - name: other
    module: /abs/other.wasm
    matchImages: ["*.registry.io"]
"#;

    #[test]
    fn parses_and_resolves_paths() {
        let cfg = HostConfig::parse(GOOD, Path::new("/etc/wcp")).unwrap();
        let p = &cfg.plugins[0];
        assert_eq!(p.module, Path::new("/etc/wcp/plugins/static.wasm"));
        assert_eq!(p.sha256.as_deref().unwrap()[..2], *"ab");
        assert_eq!(
            p.config["password"],
            ConfigSource::File("/etc/wcp/secret/password".into())
        );
        assert_eq!(cfg.plugins[1].module, Path::new("/abs/other.wasm"));
    }

    #[test]
    fn grants_and_limits() {
        let text = GOOD.replace(
            "    matchImages: [\"*.registry.io\"]\n",
            "    matchImages: [\"*.registry.io\"]\n    grants:\n      outbound: [\"https://sts.amazonaws.com\"]\n      allowPrivateNetworks: [\"10.0.0.0/8\"]\n      env: [AWS_REGION]\n      serviceAccountToken: true\n    limits:\n      timeout: 2s\n      memoryMiB: 16\n",
        );
        let cfg = HostConfig::parse(&text, Path::new("/")).unwrap();
        let p = &cfg.plugins[1];
        assert_eq!(p.grant.outbound.len(), 1);
        assert!(p.grant.service_account_token);
        assert_eq!(p.limits.timeout, Duration::from_secs(2));
        assert_eq!(p.limits.memory_bytes, 16 << 20);
        assert_eq!(cfg.plugins[0].limits, Limits::default());
        assert!(cfg.plugins[0].grant.outbound.is_empty());
        for (bad, want) in [
            (
                "    grants:\n      outbound: [\"sts.amazonaws.com\"]\n",
                "write \"https://sts.amazonaws.com\"",
            ),
            ("    limits:\n      timeout: 90s\n", "at most 55s"),
            ("    limits:\n      timeout: 0s\n", "more than 0s"),
            ("    limits:\n      memoryMiB: 0\n", "memoryMiB"),
            (
                "    grants:\n      allowPrivateNetworks: [\"10.0.0.0/99\"]\n",
                "prefix length",
            ),
        ] {
            let text = GOOD.replace(
                "    matchImages: [\"*.registry.io\"]\n",
                &format!("    matchImages: [\"*.registry.io\"]\n{bad}"),
            );
            let err = format!(
                "{:#}",
                HostConfig::parse(&text, Path::new("/")).unwrap_err()
            );
            assert!(err.contains(want), "{bad} => {err}");
            assert!(err.contains("plugins[1]"), "{err}");
        }
    }

    #[test]
    fn first_match_wins() {
        let cfg = HostConfig::parse(GOOD, Path::new("/")).unwrap();
        assert_eq!(cfg.select("a.registry.io/x").unwrap().name, "static");
        assert_eq!(
            cfg.select("registry.io:5000/team/app").unwrap().name,
            "static"
        );
        assert!(cfg.select("registry.io/team/app").is_none());
        assert!(cfg.select("docker.io/library/nginx").is_none());
    }

    #[test]
    fn unknown_field_names_the_line() {
        let text = GOOD.replace(
            "    matchImages: [\"*.registry.io\"]\n",
            "    matchImages: [\"*.registry.io\"]\n    timeoutz: 3s\n",
        );
        let err = format!(
            "{:#}",
            HostConfig::parse(&text, Path::new("/")).unwrap_err()
        );
        assert!(err.contains("unknown field `timeoutz`"), "{err}");
        assert!(err.contains("line 16"), "{err}");
    }

    #[test]
    fn rejects_invalid_configs() {
        let header = "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\n";
        let cases = [
            (
                "apiVersion: v1\nkind: CredentialProviderHostConfig\nplugins: []\n".to_string(),
                "apiVersion is",
            ),
            (
                "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: Foo\nplugins: []\n"
                    .to_string(),
                "kind is",
            ),
            (format!("{header}plugins: []\n"), "at least one plugin"),
            (
                format!("{header}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: []\n"),
                "matchImages",
            ),
            (
                format!(
                    "{header}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['%zz']\n"
                ),
                "invalid URL escape",
            ),
            (
                format!(
                    "{header}plugins:\n  - name: a/b\n    module: a.wasm\n    matchImages: ['x']\n"
                ),
                "may contain only",
            ),
            (
                format!(
                    "{header}plugins:\n  - name: a\n    module: a.wasm\n    sha256: abc\n    matchImages: ['x']\n"
                ),
                "64 hex",
            ),
            (
                format!(
                    "{header}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['x']\n  - name: a\n    module: b.wasm\n    matchImages: ['y']\n"
                ),
                "duplicate plugin name",
            ),
            (
                format!(
                    "{header}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['x']\n    config: {{k: v}}\n    configFromEnv: {{k: V}}\n"
                ),
                "more than one",
            ),
            (
                format!(
                    "{header}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['x']\n    config: {{k: v, k: w}}\n"
                ),
                "duplicate",
            ),
            (
                format!("{header}plugins:\n  - name: a\n    matchImages: ['x']\n"),
                "missing field `module`",
            ),
            (
                format!(
                    "{header}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['x']\n    config: {{\"a\\u001bb\": v}}\n"
                ),
                "config: config key \"a\\u{1b}b\" is not a valid name",
            ),
            (
                format!(
                    "{header}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['x']\n    configFromEnv: {{k: \"A B\"}}\n"
                ),
                "configFromEnv.k: environment variable name",
            ),
            ("{{{".to_string(), ""),
        ];
        for (text, want) in cases {
            let err = format!(
                "{:#}",
                HostConfig::parse(&text, Path::new("/")).unwrap_err()
            );
            assert!(err.contains(want), "{text}\n=> {err}");
        }
    }

    #[test]
    fn resolves_values_from_every_source() {
        let dir = std::env::temp_dir().join(format!("wcp-core-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("secret")).unwrap();
        std::fs::write(dir.join("secret/password"), "s3cret\n").unwrap();
        let text = GOOD.replace(
            "    matchImages: [\"*.registry.io\"]\n",
            "    matchImages: [\"*.registry.io\"]\n    configFromEnv:\n      token: TOKEN_VAR\n",
        );
        let cfg = HostConfig::parse(&text, &dir).unwrap();
        let values = cfg.plugins[0].resolve_values(|_| None).unwrap();
        assert_eq!(values["password"], "s3cret");
        assert_eq!(values["username"], "robot");
        let env = |name: &str| (name == "TOKEN_VAR").then(|| "tok".to_string());
        assert_eq!(cfg.plugins[1].resolve_values(env).unwrap()["token"], "tok");
        let err = cfg.plugins[1]
            .resolve_values(|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("TOKEN_VAR is not set"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
