//! Loading a plugin's `.wasm` from disk and checking it before any compiler
//! sees it: bounded size, pinned digest, and that it is a component.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use wcp_core::config::PluginConfig;

/// Largest module the host will read; real providers are well under 5 MiB.
pub const MAX_MODULE_BYTES: u64 = 64 * 1024 * 1024;

/// A module's bytes with their digest, verified against the operator's pin.
pub struct VerifiedModule {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

/// Reads and verifies the module of `plugin`.
pub fn load(plugin: &PluginConfig) -> Result<VerifiedModule> {
    let bytes = read_bounded(&plugin.module).with_context(|| {
        format!(
            "plugin {:?}: cannot read module {}",
            plugin.name,
            plugin.module.display()
        )
    })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(pinned) = &plugin.sha256
        && *pinned != sha256
    {
        bail!(
            "plugin {:?}: module {} has sha256 {sha256} but the config pins {pinned}; refusing to run it",
            plugin.name,
            plugin.module.display()
        );
    }
    if !wasmparser::Parser::is_component(&bytes) {
        let what = if wasmparser::Parser::is_core_wasm(&bytes) {
            "a core WebAssembly module, not a component (build it for wasm32-wasip2)"
        } else {
            "not a WebAssembly component"
        };
        bail!(
            "plugin {:?}: module {} is {what}",
            plugin.name,
            plugin.module.display()
        );
    }
    Ok(VerifiedModule { bytes, sha256 })
}

pub fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_MODULE_BYTES {
        bail!("file is {len} bytes, more than the limit of {MAX_MODULE_BYTES}");
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_MODULE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        bail!("file grew past the limit of {MAX_MODULE_BYTES} bytes while being read");
    }
    Ok(bytes)
}
