//! Where `install` takes a plugin's component from. Only local files today;
//! an OCI reference (`oci://...`) is the next kind, and slots in here as one
//! more variant without the rest of the installer changing.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The `module` of a plugin in the host config given to `install`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A `.wasm` file (relative paths are relative to that host config).
    File(PathBuf),
}

impl PluginSource {
    /// Reads a `module` value; `base` is the given host config's directory.
    pub fn parse(module: &str, base: &Path) -> Result<Self> {
        if let Some((scheme, _)) = module.split_once("://") {
            bail!(
                "module {module:?}: {scheme}:// plugin references are not supported by install yet; give a local .wasm file"
            );
        }
        let path = Path::new(module);
        Ok(Self::File(if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        }))
    }

    /// The component's bytes, bounded like every module the host reads.
    pub fn fetch(&self) -> Result<Vec<u8>> {
        match self {
            Self::File(path) => {
                let meta = std::fs::metadata(path)
                    .with_context(|| format!("cannot read plugin {}", path.display()))?;
                if meta.len() > crate::module::MAX_MODULE_BYTES {
                    bail!(
                        "plugin {} is larger than {} bytes",
                        path.display(),
                        crate::module::MAX_MODULE_BYTES
                    );
                }
                std::fs::read(path)
                    .with_context(|| format!("cannot read plugin {}", path.display()))
            }
        }
    }
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_files_and_the_slot_for_oci() {
        assert_eq!(
            PluginSource::parse("p/a.wasm", Path::new("/cfg")).unwrap(),
            PluginSource::File("/cfg/p/a.wasm".into())
        );
        assert_eq!(
            PluginSource::parse("/abs/a.wasm", Path::new("/cfg")).unwrap(),
            PluginSource::File("/abs/a.wasm".into())
        );
        let err = PluginSource::parse("oci://ghcr.io/x/y:1", Path::new("/")).unwrap_err();
        assert!(
            err.to_string()
                .contains("oci:// plugin references are not supported"),
            "{err}"
        );
    }
}
