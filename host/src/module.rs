//! Loading a plugin's `.wasm` from disk and checking it before any compiler
//! sees it: bounded size, pinned digest, and that it is a component.

use crate::stamp::{Identity, Stamps};
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

/// Reads and verifies the module of `plugin`; with `stamps`, the digest of
/// a file unchanged since an earlier exec hashed it is taken from its
/// stamp instead of hashing it again (`crate::stamp`).
pub fn load_stamped(plugin: &PluginConfig, stamps: Option<&Stamps>) -> Result<VerifiedModule> {
    let (bytes, identity) = read_bounded_identified(&plugin.module).with_context(|| {
        format!(
            "plugin {:?}: cannot read module {}",
            plugin.name,
            plugin.module.display()
        )
    })?;
    let subject = plugin.module.as_os_str().as_encoded_bytes();
    let stamped = match (stamps, identity) {
        (Some(stamps), Some(identity)) => stamps
            .get(subject, &identity)
            .and_then(|v| String::from_utf8(v).ok()),
        _ => None,
    };
    let from_stamp = stamped.is_some();
    let sha256 = match stamped {
        Some(sha256) => sha256,
        None => {
            let sha256 = hex::encode(Sha256::digest(&bytes));
            if let (Some(stamps), Some(identity)) = (stamps, identity) {
                stamps.put(subject, &identity, sha256.as_bytes());
            }
            sha256
        }
    };
    tracing::debug!(
        plugin = %plugin.name,
        digest = if from_stamp { "stamp" } else { "hashed" },
        "module read"
    );
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

/// The file's bytes and, if it did not change while being read, its
/// identity (the same before and after the read).
fn read_bounded_identified(path: &Path) -> Result<(Vec<u8>, Option<Identity>)> {
    let mut file = std::fs::File::open(path)?;
    let before = file.metadata()?;
    let len = before.len();
    if len > MAX_MODULE_BYTES {
        bail!("file is {len} bytes, more than the limit of {MAX_MODULE_BYTES}");
    }
    let mut bytes = Vec::with_capacity(len as usize);
    (&mut file)
        .take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        bail!("file grew past the limit of {MAX_MODULE_BYTES} bytes while being read");
    }
    let (before, after) = (Identity::of(&before), Identity::of(&file.metadata()?));
    Ok((bytes, (before == after).then_some(before)))
}

/// A file's bytes, bounded as a module's are (for `push`).
#[cfg(feature = "oci")]
pub fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    Ok(read_bounded_identified(path)?.0)
}
