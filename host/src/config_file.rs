//! Where the host config and its values come from: the config file, the
//! `configFromFile` files and the `configFromEnv` variables. The core only
//! parses and validates (it does no I/O); this module does the reading.

use crate::stamp::Identity;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wcp_core::capabilities::Declaration;
use wcp_core::config::{ConfigSource, HostConfig, MAX_CONFIG_BYTES, PluginConfig, plugin_values};

/// The config this process loaded, kept for [`check_plugin_config`] and
/// the front's snapshot (a process loads one config).
static LOADED: OnceLock<Loaded> = OnceLock::new();

struct Loaded {
    path: PathBuf,
    text: Text,
}

enum Text {
    /// The file's YAML, as read, and the identity of the file it was read
    /// from (for the snapshot made of it).
    Yaml(String, Identity),
    /// The JSON of its snapshot (`crate::config_snapshot`).
    Snapshot(Vec<u8>),
}

/// Where an exec's config came from (for its debug log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    File,
    Snapshot,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Snapshot => "snapshot",
        }
    }
}

/// Reads and validates the host config at `path`; relative paths in it
/// are resolved against the file's directory. A file larger than
/// [`MAX_CONFIG_BYTES`] is refused before it is read.
pub fn load(path: &Path) -> Result<HostConfig> {
    let cannot_read = || format!("cannot read host config {}", path.display());
    // One open: the identity recorded is that of the bytes parsed.
    let mut file = std::fs::File::open(path).with_context(cannot_read)?;
    let meta = file.metadata().with_context(cannot_read)?;
    if meta.len() > MAX_CONFIG_BYTES {
        bail!(
            "host config {} is larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        );
    }
    let text = read_text(&mut file).with_context(cannot_read)?;
    let config = HostConfig::parse(&text, base_dir(path))
        .with_context(|| format!("invalid host config {}", path.display()))?;
    let _ = LOADED.set(Loaded {
        path: path.to_path_buf(),
        text: Text::Yaml(text, Identity::of(&meta)),
    });
    Ok(config)
}

/// The text of an open config file, at most [`MAX_CONFIG_BYTES`] (and one
/// more, for the parse to refuse).
fn read_text(file: &mut std::fs::File) -> std::io::Result<String> {
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)?;
    Ok(text)
}

/// The host config for a kubelet exec: from the config's snapshot when a
/// usable one exists (the one the front reads: bound to this file's
/// identity, in this user's private directory), which spares the YAML
/// parse of every miss; from the file otherwise, exactly as [`load`].
/// A snapshot validates with the same code as the file and exists only
/// for a text whose JSON form validates to the same config, so either
/// load gives the same config.
pub fn load_for_exec(path: &Path) -> Result<(HostConfig, Source)> {
    match crate::config_snapshot::load_with_text(path) {
        Ok(snapshot) => {
            let _ = LOADED.set(Loaded {
                path: path.to_path_buf(),
                text: Text::Snapshot(snapshot.json),
            });
            Ok((snapshot.config, Source::Snapshot))
        }
        Err(e) => {
            tracing::debug!(error = %format!("{e:#}"), "no usable config snapshot; parsing the config file");
            load(path).map(|config| (config, Source::File))
        }
    }
}

/// The directory relative paths in the config at `path` are resolved
/// against.
pub fn base_dir(path: &Path) -> &Path {
    path.parent().unwrap_or_else(|| Path::new("."))
}

/// The YAML text [`load`] parsed and the identity of its file, if this
/// process parsed one (not when its config came from a snapshot).
pub fn loaded_text() -> Option<(&'static str, &'static Identity)> {
    match &LOADED.get()?.text {
        Text::Yaml(text, identity) => Some((text, identity)),
        Text::Snapshot(_) => None,
    }
}

/// Checks `plugin`'s config against its module's typed declaration, when
/// the module is loaded: an unknown key or a malformed value names its line
/// of the host config; a value from a file or the environment names its key.
pub fn check_plugin_config(
    config: &HostConfig,
    plugin: &PluginConfig,
    declaration: &Declaration,
    values: &BTreeMap<String, String>,
) -> Result<()> {
    let invalid = || format!("invalid config for plugin {:?}", plugin.name);
    if let (Some(loaded), Some(index)) = (
        LOADED.get(),
        config.plugins.iter().position(|p| p.name == plugin.name),
    ) {
        match &loaded.text {
            Text::Yaml(text, _) => plugin_values::check_plugin_config(text, index, declaration),
            Text::Snapshot(json) => {
                plugin_values::check_plugin_config_json(json, index, declaration)
                    .map_err(|e| text_error(&loaded.path, index, declaration).unwrap_or(e))
            }
        }
        .map_err(anyhow::Error::msg)
        .with_context(invalid)?;
    }
    plugin_values::check_resolved(declaration, values, |key| {
        matches!(plugin.config.get(key), Some(ConfigSource::Literal(_)))
    })
    .map_err(anyhow::Error::msg)
    .with_context(invalid)
}

/// The error of the YAML check of `plugins[index]` in the config file at
/// `path`, read again: a snapshot's check failed, and the user is owed
/// the line of the bad key, which only the text has. `None` if the file
/// cannot be read or (edited since) now passes: the snapshot's error
/// stands then.
fn text_error(path: &Path, index: usize, declaration: &Declaration) -> Option<String> {
    let text = read_text(&mut std::fs::File::open(path).ok()?).ok()?;
    plugin_values::check_plugin_config(&text, index, declaration).err()
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
