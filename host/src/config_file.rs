//! Where the host config and its values come from: the config file, the
//! `configFromFile` files and the `configFromEnv` variables. The core only
//! parses and validates (it does no I/O); this module does the reading.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::Path;
use wcp_core::config::{HostConfig, MAX_CONFIG_BYTES, PluginConfig};

/// Reads and validates the host config at `path`; relative paths in it
/// are resolved against the file's directory. A file larger than
/// [`MAX_CONFIG_BYTES`] is refused before it is read.
pub fn load(path: &Path) -> Result<HostConfig> {
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
    HostConfig::parse(&text, base)
        .with_context(|| format!("invalid host config {}", path.display()))
}

/// Every config value of `plugin`, read from its files and this process's
/// environment now (see [`PluginConfig::resolve_values`]).
pub fn resolve_values(plugin: &PluginConfig) -> Result<BTreeMap<String, String>> {
    plugin.resolve_values(
        |path| std::fs::read_to_string(path),
        |name| std::env::var(name).ok(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "apiVersion: wasm-credential-provider.io/v1alpha1\nkind: CredentialProviderHostConfig\n";

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wcp-config-file-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_values_from_files_relative_to_the_config() {
        let dir = temp_dir("values");
        std::fs::create_dir_all(dir.join("secret")).unwrap();
        std::fs::write(dir.join("secret/password"), "s3cret\r\n").unwrap();
        let path = dir.join("host.yaml");
        std::fs::write(
            &path,
            format!("{HEADER}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: ['x']\n    configFromFile: {{password: secret/password}}\n"),
        )
        .unwrap();
        let config = load(&path).unwrap();
        assert_eq!(config.plugins[0].module, dir.join("a.wasm"));
        let values = resolve_values(&config.plugins[0]).unwrap();
        assert_eq!(values["password"], "s3cret");
        std::fs::remove_file(dir.join("secret/password")).unwrap();
        let err = format!("{:#}", resolve_values(&config.plugins[0]).unwrap_err());
        assert!(
            err.contains("plugin \"a\": configFromFile.password: cannot read"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = temp_dir("errors");
        let missing = dir.join("missing.yaml");
        let err = format!("{:#}", load(&missing).unwrap_err());
        assert!(
            err.starts_with(&format!("cannot read host config {}", missing.display())),
            "{err}"
        );
        let invalid = dir.join("invalid.yaml");
        std::fs::write(
            &invalid,
            format!("{HEADER}plugins:\n  - name: a\n    module: a.wasm\n    matchImages: []\n    limits: {{timeout: 0s}}\n"),
        )
        .unwrap();
        let err = format!("{:#}", load(&invalid).unwrap_err());
        assert_eq!(
            err,
            format!(
                "invalid host config {}: plugins[0]: matchImages: at least one pattern is required; plugins[0]: limits: timeout: 0s must be more than 0s and at most 55s (the kubelet kills the exec at 60s)",
                invalid.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
