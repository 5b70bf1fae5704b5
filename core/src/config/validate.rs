//! From the file's shape ([`super::schema`]) to a [`HostConfig`]: checks
//! every value, fills in defaults and resolves relative paths against the
//! config file's directory. Pure: nothing here reads a file or the
//! environment. Every problem is recorded with its field, and validation
//! goes on, so that one run reports them all.

use super::problems::{FieldPath, Problems};
use super::schema::{RawHostConfig, RawLimits, RawPlugin, RawPluginCache, RawVerify};
use super::{
    API_VERSION, ConfigSource, DEFAULT_CACHE_DIRECTORY, DEFAULT_CACHE_MAX_ENTRIES, HostConfig,
    KIND, Limits, MAX_TIMEOUT, PluginConfig,
};
use crate::cache_key::TokenCacheType;
use crate::cache_policy::CachePolicy;
use crate::capabilities::Grant;
use crate::duration::parse_go_duration;
use crate::matching::ImagePattern;
use crate::names::{check_config_key, check_env_name};
use crate::provenance::{OciReference, SignatureSource, VerifyPolicy};
use crate::proxy::ProxyResolution;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `path` if absolute, else relative to the config file's directory.
fn resolved(base_dir: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        base_dir.join(path)
    }
}

/// Validates the whole file, in the order of its fields.
pub(super) fn host_config(
    raw: RawHostConfig,
    base_dir: &Path,
    problems: &mut Problems,
) -> HostConfig {
    let root = FieldPath::root();
    if raw.api_version != API_VERSION {
        problems.push_sentence(
            &root.at("apiVersion"),
            format!(
                "apiVersion is {:?}, expected {API_VERSION:?}",
                raw.api_version
            ),
        );
    }
    if raw.kind != KIND {
        problems.push_sentence(
            &root.at("kind"),
            format!("kind is {:?}, expected {KIND:?}", raw.kind),
        );
    }
    if raw.plugins.is_empty() {
        problems.push(&root.at("plugins"), "at least one plugin is required");
    }
    let mut names = BTreeSet::new();
    let mut plugins = Vec::with_capacity(raw.plugins.len());
    for (index, plugin) in raw.plugins.into_iter().enumerate() {
        let at = root.at(format!("plugins[{index}]"));
        let name = plugin.name.clone();
        if let Some(plugin) = self::plugin(plugin, base_dir, &at, problems) {
            plugins.push(plugin);
        }
        if !names.insert(name.clone()) {
            problems.push(
                &root.at(format!("plugins[{index}].name")),
                format!("duplicate plugin name {name:?}"),
            );
        }
    }
    let cache_max_entries = raw.cache.max_entries.unwrap_or(DEFAULT_CACHE_MAX_ENTRIES);
    if cache_max_entries == 0 {
        problems.push(&root.at("cache.maxEntries"), "must be at least 1");
    }
    let proxy_resolution = match raw.proxy.name_resolution.as_deref() {
        None => Some(ProxyResolution::default()),
        Some(value) => problems.check(
            &root.at("proxy.nameResolution"),
            ProxyResolution::parse(value),
        ),
    };
    HostConfig {
        ca_bundle: raw.tls.ca_bundle.map(|p| resolved(base_dir, p)),
        audit_log: raw.audit_log.map(|p| resolved(base_dir, p)),
        metrics_textfile_directory: raw
            .metrics
            .textfile_directory
            .map(|p| resolved(base_dir, p)),
        cache_directory: raw.cache.directory.map_or_else(
            || PathBuf::from(DEFAULT_CACHE_DIRECTORY),
            |p| resolved(base_dir, p),
        ),
        cache_max_entries,
        proxy_resolution: proxy_resolution.unwrap_or_default(),
        plugins,
    }
}

/// One plugin; `None` if any of its fields has a problem.
fn plugin(
    plugin: RawPlugin,
    base_dir: &Path,
    at: &FieldPath,
    problems: &mut Problems,
) -> Option<PluginConfig> {
    let before = problems.len();
    let name = plugin.name;
    if name.is_empty() {
        problems.push(&at.at("name"), "must not be empty");
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name == "."
        || name == ".."
    {
        problems.push(
            &at.at("name"),
            format!("{name:?} may contain only letters, digits, '-', '_' and '.'"),
        );
    }
    if plugin.module.as_os_str().is_empty() {
        problems.push(&at.at("module"), "must name the plugin's .wasm file");
    }
    let module = resolved(base_dir, plugin.module);
    let sha256 = plugin.sha256.map(|hex| hex.to_ascii_lowercase());
    if let Some(hex) = &sha256
        && (hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()))
    {
        problems.push(
            &at.at("sha256"),
            "must be 64 hex digits (the output of `sha256sum <module>`)",
        );
    }
    if plugin.match_images.is_empty() {
        problems.push(&at.at("matchImages"), "at least one pattern is required");
    }
    let match_images = plugin
        .match_images
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            ImagePattern::parse(p)
                .map_err(|e| {
                    problems.push(
                        &at.at(format!("matchImages[{i}]")),
                        format!("invalid pattern {p:?}: {e:#}"),
                    )
                })
                .ok()
        })
        .collect();
    let config = config_sources(
        plugin.config,
        plugin.config_from_file,
        plugin.config_from_env,
        base_dir,
        at,
        problems,
    );
    let grant = Grant::validate(
        plugin.grants,
        config.keys().cloned().collect(),
        &at.at("grants"),
        problems,
    );
    let limits = limits(plugin.limits, &at.at("limits"), problems);
    let cache = cache(plugin.cache, &at.at("cache"), problems);
    let (source, verify) = provenance(plugin.source, plugin.verify, base_dir, at, problems);
    (problems.len() == before).then_some(PluginConfig {
        name,
        module,
        sha256,
        match_images,
        config,
        grant,
        limits,
        cache,
        source,
        verify,
    })
}

/// `source` (an OCI reference pinned by manifest digest) and `verify`.
fn provenance(
    source: Option<String>,
    verify: Option<RawVerify>,
    base_dir: &Path,
    at: &FieldPath,
    problems: &mut Problems,
) -> (Option<OciReference>, Option<VerifyPolicy>) {
    let source = source.and_then(|text| {
        let parsed = problems.check(&at.at("source"), OciReference::parse(&text))?;
        if parsed.digest.is_none() {
            problems.push(
                &at.at("source"),
                "must pin the manifest digest (oci://<registry>/<repository>@sha256:<digest>); a tag can be moved",
            );
            return None;
        }
        Some(parsed)
    });
    let verify = verify.and_then(|v| {
        let signature = match (v.signature, v.registry_signature) {
            (Some(path), false) => SignatureSource::Blob(resolved(base_dir, path)),
            (None, true) if source.is_some() => SignatureSource::Registry,
            (None, true) => {
                problems.push(
                    &at.at("verify.registrySignature"),
                    "needs the plugin's source: the signature is the one attached in that registry",
                );
                return None;
            }
            _ => {
                problems.push(
                    &at.at("verify"),
                    "set exactly one of signature (a cosign sign-blob file) and registrySignature: true",
                );
                return None;
            }
        };
        Some(VerifyPolicy {
            public_key: resolved(base_dir, v.public_key),
            signature,
        })
    });
    (source, verify)
}

/// `config`, `configFromFile` and `configFromEnv` as one map: each key is
/// set in one of them only.
fn config_sources(
    literal: BTreeMap<String, String>,
    from_file: BTreeMap<String, PathBuf>,
    from_env: BTreeMap<String, String>,
    base_dir: &Path,
    at: &FieldPath,
    problems: &mut Problems,
) -> BTreeMap<String, ConfigSource> {
    let sources = literal
        .into_iter()
        .map(|(k, v)| (k, ConfigSource::Literal(v), "config"))
        .chain(from_file.into_iter().map(|(k, p)| {
            let p = resolved(base_dir, p);
            (k, ConfigSource::File(p), "configFromFile")
        }))
        .chain(
            from_env
                .into_iter()
                .map(|(k, v)| (k, ConfigSource::Env(v), "configFromEnv")),
        );
    let mut config = BTreeMap::new();
    for (key, source, field) in sources {
        problems.check(&at.at(field), check_config_key(&key));
        if let ConfigSource::Env(var) = &source {
            problems.check(&at.at(format!("{field}.{key}")), check_env_name(var));
        }
        if config.insert(key.clone(), source).is_some() {
            problems.push(
                &at.at(format!("{field}.{key}")),
                "key is set in more than one of config, configFromFile, configFromEnv",
            );
        }
    }
    config
}

fn cache(cache: RawPluginCache, at: &FieldPath, problems: &mut Problems) -> CachePolicy {
    let mut out = CachePolicy::default();
    match cache.token_cache_type.as_deref() {
        None | Some("ServiceAccount") => out.token_cache_type = TokenCacheType::ServiceAccount,
        Some("Token") => out.token_cache_type = TokenCacheType::Token,
        Some(other) => problems.push(
            &at.at("tokenCacheType"),
            format!(
                "{other:?} is not supported: use \"ServiceAccount\" or \"Token\" (as kubelet's tokenAttributes.cacheType)"
            ),
        ),
    }
    if let Some(text) = cache.default_duration
        && let Some(d) = problems.check(&at.at("defaultDuration"), parse_go_duration(&text))
    {
        out.default_duration = d;
    }
    if let Some(text) = cache.max_duration
        && let Some(d) = problems.check(&at.at("maxDuration"), parse_go_duration(&text))
    {
        out.max_duration = d;
    }
    if let Some(text) = cache.share_failures_for
        && let Some(d) = problems.check(&at.at("shareFailuresFor"), parse_go_duration(&text))
    {
        if d > crate::shared_failure::MAX_WINDOW {
            problems.push(
                &at.at("shareFailuresFor"),
                format!(
                    "{text} is longer than {}s: a failure must not outlive the kubelet's own retry spacing (0s disables sharing)",
                    crate::shared_failure::MAX_WINDOW.as_secs()
                ),
            );
        } else {
            out.share_failures_for = d;
        }
    }
    out
}

fn limits(limits: RawLimits, at: &FieldPath, problems: &mut Problems) -> Limits {
    let mut out = Limits::default();
    if let Some(text) = limits.timeout
        && let Some(timeout) = problems.check(&at.at("timeout"), parse_go_duration(&text))
    {
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            problems.push(
                &at.at("timeout"),
                format!(
                    "{text} must be more than 0s and at most {}s (the kubelet kills the exec at 60s)",
                    MAX_TIMEOUT.as_secs()
                ),
            );
        } else {
            out.timeout = timeout;
        }
    }
    if let Some(mib) = limits.memory_mib {
        if (1..=4096).contains(&mib) {
            out.memory_bytes = mib as usize * 1024 * 1024;
        } else {
            problems.push(&at.at("memoryMiB"), format!("{mib} must be from 1 to 4096"));
        }
    }
    if let Some(bytes) = limits.max_http_response_bytes {
        if bytes == 0 {
            problems.push(&at.at("maxHttpResponseBytes"), "must be more than 0");
        } else {
            out.max_http_response_bytes = bytes;
        }
    }
    out
}
