//! The host config: which WASM plugins exist, which images each serves and
//! what each is given. Read in two steps: the YAML text into the file's
//! shape (`schema`, strict: unknown or duplicate fields are errors that
//! name their line), then validated into a [`HostConfig`] (`validate`),
//! which reports every problem with its field ([`problems`]).
//!
//! Pure: reading the file, `configFromFile` files and `configFromEnv`
//! variables is the host's job; it hands the text and the readers in.

pub mod plugin_values;
pub mod problems;
mod schema;
pub mod snapshot;
mod validate;

pub use problems::{ConfigError, FieldPath, Problem, Problems};

use crate::cache_policy::CachePolicy;
use crate::capabilities::Grant;
use crate::matching::ImagePattern;
use crate::provenance::{OciReference, VerifyPolicy};
use crate::proxy::ProxyResolution;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `apiVersion` this host reads.
pub const API_VERSION: &str = "wasm-credential-provider.io/v1alpha1";
/// The `kind` of the host config.
pub const KIND: &str = "CredentialProviderHostConfig";
/// Largest config file the host reads.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// A validated host config.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Extra PEM CA certificates trusted for outbound TLS, beside the OS store.
    pub ca_bundle: Option<PathBuf>,
    /// JSON-lines audit trail of plugin calls and denials (no secrets).
    pub audit_log: Option<PathBuf>,
    /// Where the host keeps its Prometheus metrics file for node-exporter's
    /// textfile collector; no metrics when unset.
    pub metrics_textfile_directory: Option<PathBuf>,
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
    /// Where the module is installed from, pinned by manifest digest.
    pub source: Option<OciReference>,
    /// Whose signature the module must carry before the host compiles it.
    pub verify: Option<VerifyPolicy>,
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
    /// Parses and validates config text; relative paths are resolved
    /// against `base_dir` (the config file's directory). A YAML error stops
    /// at once; otherwise every problem is reported, in file order.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let raw: schema::RawHostConfig =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let mut problems = Problems::default();
        let config = validate::host_config(raw, base_dir, &mut problems);
        problems.into_result(config)
    }

    /// The first plugin whose `matchImages` selects `image`, in config order,
    /// as the kubelet picks among providers.
    pub fn select(&self, image: &str) -> Option<&PluginConfig> {
        self.plugins
            .iter()
            .find(|p| p.match_images.iter().any(|m| m.matches(image)))
    }
}

impl PluginConfig {
    /// The cache partition of this plugin: its name plus a fingerprint of
    /// every setting that can change its answers (module, pin, config
    /// sources, grants, limits, cache policy). Secrets only enter it hashed.
    pub fn cache_scope(&self) -> String {
        use sha2::{Digest, Sha256};
        let settings = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.module,
            self.sha256,
            self.config,
            self.grant,
            self.limits,
            self.cache,
            self.source,
            self.verify
        );
        let digest = hex::encode(Sha256::digest(settings.as_bytes()));
        format!("{}#{}", self.name, &digest[..16])
    }

    /// The values among `values` that are secrets: every one not written
    /// literally in the host config (`configFromFile`, `configFromEnv`).
    /// The one place that rule lives; redaction everywhere asks here.
    pub fn secret_values<'a>(
        &'a self,
        values: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.config
            .iter()
            .filter(|(_, source)| !matches!(source, ConfigSource::Literal(_)))
            .filter_map(|(key, _)| values.get(key).map(String::as_str))
    }

    /// Resolves every config value now, so that a missing secret file or
    /// variable is reported before the plugin runs. The host passes the
    /// readers: `read_file` reads a `configFromFile` file, `env` looks up
    /// a `configFromEnv` variable. Values from files lose one trailing
    /// newline, as secret files usually end with one.
    pub fn resolve_values(
        &self,
        read_file: impl Fn(&Path) -> std::io::Result<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, String>> {
        self.config
            .iter()
            .map(|(key, source)| {
                let value = match source {
                    ConfigSource::Literal(v) => v.clone(),
                    ConfigSource::File(path) => {
                        let mut v = read_file(path).with_context(|| {
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
        assert_eq!(p.grant.outbound.destinations.len(), 1);
        assert!(p.grant.service_account_token);
        assert_eq!(p.limits.timeout, Duration::from_secs(2));
        assert_eq!(p.limits.memory_bytes, 16 << 20);
        assert_eq!(cfg.plugins[0].limits, Limits::default());
        assert!(cfg.plugins[0].grant.outbound.destinations.is_empty());
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
        let text = GOOD.replace(
            "    matchImages: [\"*.registry.io\"]\n",
            "    matchImages: [\"*.registry.io\"]\n    configFromEnv:\n      token: TOKEN_VAR\n",
        );
        let cfg = HostConfig::parse(&text, Path::new("/etc/wcp")).unwrap();
        let read_file = |path: &Path| {
            if path == Path::new("/etc/wcp/secret/password") {
                Ok("s3cret\n".to_string())
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        };
        let values = cfg.plugins[0].resolve_values(read_file, |_| None).unwrap();
        assert_eq!(values["password"], "s3cret");
        assert_eq!(values["username"], "robot");
        // Only what is not written in the config file itself is a secret.
        let secrets: Vec<&str> = cfg.plugins[0].secret_values(&values).collect();
        assert_eq!(secrets, ["s3cret"]);
        let env = |name: &str| (name == "TOKEN_VAR").then(|| "tok".to_string());
        assert_eq!(
            cfg.plugins[1].resolve_values(read_file, env).unwrap()["token"],
            "tok"
        );
        let err = cfg.plugins[1]
            .resolve_values(read_file, |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("TOKEN_VAR is not set"), "{err}");
        let err = format!(
            "{:#}",
            cfg.plugins[0]
                .resolve_values(
                    |_: &Path| Err(std::io::ErrorKind::PermissionDenied.into()),
                    |_| None
                )
                .unwrap_err()
        );
        assert!(
            err.contains("configFromFile.password: cannot read /etc/wcp/secret/password"),
            "{err}"
        );
    }

    const HEADER: &str =
        "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\n";

    #[test]
    fn failures_are_shared_at_most_for_the_kubelet_retry_spacing() {
        let with = |value: &str| {
            GOOD.replace(
                "    matchImages: [\"*.registry.io\"]\n",
                &format!("    matchImages: [\"*.registry.io\"]\n    cache: {{shareFailuresFor: {value}}}\n"),
            )
        };
        let cfg = HostConfig::parse(&with("3s"), Path::new("/")).unwrap();
        assert_eq!(cfg.plugins[1].cache.share_failures_for.as_secs(), 3);
        assert_eq!(
            cfg.plugins[0].cache.share_failures_for,
            crate::shared_failure::DEFAULT_WINDOW
        );
        let err = HostConfig::parse(&with("30s"), Path::new("/")).unwrap_err();
        assert!(
            format!("{err:#}").contains("shareFailuresFor: 30s is longer than 10s"),
            "{err:#}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = format!(
            "{HEADER}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['x']\n    limits: {{timeout: 90s}}\n  - name: b\n    module: b.wasm\n    matchImages: ['x', 'y', '%zz']\n"
        );
        let err = HostConfig::parse(&text, Path::new("/")).unwrap_err();
        let paths: Vec<String> = err
            .problems()
            .iter()
            .map(|p| p.path().to_string())
            .collect();
        assert_eq!(
            paths,
            ["plugins[0].limits.timeout", "plugins[1].matchImages[2]"]
        );
        let line = err.to_string();
        assert!(
            line.starts_with("plugins[0]: limits: timeout: 90s must be more than 0s"),
            "{line}"
        );
        assert!(
            line.contains("; plugins[1]: matchImages[2]: invalid pattern \"%zz\""),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn problems_come_in_file_order() {
        let text = "apiVersion: v1\nkind: Foo\ncache: {maxEntries: 0}\nproxy: {nameResolution: nope}\nplugins:\n  - name: ''\n    module: ''\n    sha256: abc\n    matchImages: []\n    config: {k: v}\n    configFromEnv: {k: \"A B\"}\n    grants: {outbound: [\"x.io\"], allowPrivateNetworks: [\"10.0.0.0/99\"], env: [\"1A\"]}\n    limits: {memoryMiB: 0, maxHttpResponseBytes: 0}\n    cache: {tokenCacheType: Pod, defaultDuration: x, maxDuration: y}\n  - name: a\n    module: a.wasm\n    matchImages: ['x']\n  - name: a\n    module: a.wasm\n    matchImages: ['x']\n";
        let err = HostConfig::parse(text, Path::new("/")).unwrap_err();
        let paths: Vec<String> = err
            .problems()
            .iter()
            .map(|p| p.path().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "apiVersion",
                "kind",
                "plugins[0].name",
                "plugins[0].module",
                "plugins[0].sha256",
                "plugins[0].matchImages",
                "plugins[0].configFromEnv.k",
                "plugins[0].configFromEnv.k",
                "plugins[0].grants.outbound[0]",
                "plugins[0].grants.allowPrivateNetworks[0]",
                "plugins[0].grants.env[0]",
                "plugins[0].limits.memoryMiB",
                "plugins[0].limits.maxHttpResponseBytes",
                "plugins[0].cache.tokenCacheType",
                "plugins[0].cache.defaultDuration",
                "plugins[0].cache.maxDuration",
                "plugins[2].name",
                "cache.maxEntries",
                "proxy.nameResolution",
            ]
        );
        let line = err.to_string();
        assert!(line.starts_with("apiVersion is \"v1\""), "{line}");
        assert!(
            line.contains("; plugins[2].name: duplicate plugin name \"a\""),
            "{line}"
        );
    }

    #[test]
    fn validating_needs_no_files_or_environment() {
        // Every path names a file that does not exist and every variable is
        // unset: validation only looks at the text.
        let text = format!(
            "{HEADER}tls: {{caBundle: /nonexistent/ca.pem}}\nauditLog: /nonexistent/audit.log\ncache: {{directory: /nonexistent/cache}}\nplugins:\n  - name: a\n    module: /nonexistent/a.wasm\n    matchImages: ['x']\n    configFromFile: {{password: /nonexistent/password}}\n    configFromEnv: {{token: WCP_TEST_UNSET_VARIABLE}}\n"
        );
        let cfg = HostConfig::parse(&text, Path::new("/nonexistent")).unwrap();
        assert_eq!(cfg.cache_directory, Path::new("/nonexistent/cache"));
        assert_eq!(
            cfg.plugins[0].config["token"],
            ConfigSource::Env("WCP_TEST_UNSET_VARIABLE".into())
        );
        assert!(cfg.plugins[0].grant.config.contains("password"));
    }

    #[test]
    fn a_syntax_error_stops_at_once() {
        let text = format!(
            "{HEADER}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['%zz']\n    limitz: {{}}\n"
        );
        let err = HostConfig::parse(&text, Path::new("/")).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax(_)), "{err:?}");
        assert!(err.to_string().contains("unknown field `limitz`"), "{err}");
        assert!(err.problems().is_empty());
    }

    #[test]
    fn source_and_verify() {
        use crate::provenance::SignatureSource;
        let d = "sha256:".to_string() + &"ab".repeat(32);
        let plugin = |extra: &str| {
            format!(
                "{HEADER}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['x']\n{extra}"
            )
        };
        let good = plugin(&format!(
            "    source: oci://reg.io/v/a@{d}\n    verify: {{publicKey: k.pub, registrySignature: true}}\n"
        ));
        let cfg = HostConfig::parse(&good, Path::new("/etc/wcp")).unwrap();
        let p = &cfg.plugins[0];
        assert_eq!(
            p.source.as_ref().unwrap().digest.as_ref().unwrap().as_str(),
            d
        );
        let v = p.verify.as_ref().unwrap();
        assert_eq!(v.public_key, Path::new("/etc/wcp/k.pub"));
        assert_eq!(v.signature, SignatureSource::Registry);
        let blob = plugin("    verify: {publicKey: k.pub, signature: a.sig}\n");
        let cfg = HostConfig::parse(&blob, Path::new("/etc/wcp")).unwrap();
        assert_eq!(
            cfg.plugins[0].verify.as_ref().unwrap().signature,
            SignatureSource::Blob("/etc/wcp/a.sig".into())
        );
        for (extra, needle) in [
            (
                "    source: oci://reg.io/v/a:v1\n",
                "must pin the manifest digest",
            ),
            ("    source: reg.io/v/a:v1\n", "not an oci://"),
            (
                "    verify: {publicKey: k.pub}\n",
                "set exactly one of signature",
            ),
            (
                "    verify: {publicKey: k.pub, signature: s, registrySignature: true}\n",
                "set exactly one",
            ),
            (
                "    verify: {publicKey: k.pub, registrySignature: true}\n",
                "needs the plugin's source",
            ),
            (
                "    verify: {publicKey: k.pub, signatur: s}\n",
                "unknown field",
            ),
        ] {
            let err = HostConfig::parse(&plugin(extra), Path::new("/")).unwrap_err();
            assert!(err.to_string().contains(needle), "{extra}: {err}");
        }
    }
}
