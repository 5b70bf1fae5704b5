//! Loading a plugin's `.wasm` from disk and checking it before any compiler
//! sees it: bounded size, pinned digest, and that it is a component.

use crate::stamp::{Identity, Stamps};
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wcp_core::capabilities::Declaration;
use wcp_core::config::PluginConfig;

/// Largest module the host will read; real providers are well under 5 MiB.
pub const MAX_MODULE_BYTES: u64 = 64 * 1024 * 1024;

/// A module verified against the operator's pin: its digest and its
/// capability section, and its bytes once something needs them.
///
/// An exec that loads a precompiled artifact needs only the digest (to
/// find and check the artifact) and the section (the declaration): when a
/// stamp (`crate::stamp`) vouches for both, the file is opened and
/// `fstat`ed but not read (a 100-300 KB read, copy and hash per exec).
/// [`Self::bytes`] reads it then, and checks it against the digest.
pub struct VerifiedModule {
    pub sha256: String,
    /// The `wcp-capabilities` section as found in the verified bytes, or
    /// why it could not be extracted (reported by [`Self::declaration`],
    /// so that a caller can tell "unreadable" from "refused").
    section: Result<Option<Vec<u8>>>,
    // Read only by builds that compile in process (`compiler`).
    #[cfg_attr(not(feature = "compiler"), allow(dead_code))]
    path: PathBuf,
    #[cfg_attr(not(feature = "compiler"), allow(dead_code))]
    bytes: OnceLock<Vec<u8>>,
}

impl VerifiedModule {
    /// The component's capability declaration (none declares nothing).
    pub fn declaration(&self) -> Result<Declaration> {
        match &self.section {
            Ok(section) => crate::declaration_section::parse(section.as_deref()),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        }
    }

    /// Whether the component carries a capability section.
    pub fn has_section(&self) -> bool {
        matches!(self.section, Ok(Some(_)))
    }

    /// The module's bytes: those verified, or, when a stamp spared reading
    /// them, the file read now and refused unless it has the verified
    /// digest. (The exec path never needs them after a stamp: a stamp
    /// needs the cache directory, and with one a module is compiled by the
    /// compile child, which reads it itself. This keeps a later caller
    /// from running unverified bytes.)
    #[cfg_attr(not(feature = "compiler"), allow(dead_code))]
    pub fn bytes(&self) -> Result<&[u8]> {
        if let Some(bytes) = self.bytes.get() {
            return Ok(bytes);
        }
        let bytes = std::fs::File::open(&self.path)
            .map_err(anyhow::Error::from)
            .and_then(|mut file| read_whole(&mut file))
            .with_context(|| format!("cannot read module {}", self.path.display()))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if sha256 != self.sha256 {
            bail!(
                "module {} changed since this exec verified it (sha256 {} then, {sha256} now)",
                self.path.display(),
                self.sha256
            );
        }
        Ok(self.bytes.get_or_init(|| bytes))
    }
}

/// What a module's stamp records, bound by the stamp's MAC to the file's
/// identity: the digest, and the capability section when it fits in a
/// stamp (`sha256 hex ‖ "-"` for none, `‖ "+" ‖ section` for one; the
/// digest alone when the section is too large, and the file is read again
/// for it).
struct Stamped {
    sha256: String,
    section: Option<Option<Vec<u8>>>,
}

impl Stamped {
    /// Stamps of this format are kept under their own subject, so a stamp
    /// written by an earlier version (the digest alone, under the path) is
    /// never read as one of these; the host's version is part of it, so
    /// that a host whose checks of a module change (the component check,
    /// where the section is found) verifies each module again once rather
    /// than trusting what an older host recorded.
    fn subject(path: &Path) -> Vec<u8> {
        let mut subject = format!("module-v2\0{}\0", env!("CARGO_PKG_VERSION")).into_bytes();
        subject.extend_from_slice(path.as_os_str().as_encoded_bytes());
        subject
    }

    fn encode(&self) -> Vec<u8> {
        let mut value = self.sha256.as_bytes().to_vec();
        match &self.section {
            Some(None) => value.push(b'-'),
            Some(Some(section)) if section.len() + 65 <= crate::stamp::MAX_VALUE_BYTES => {
                value.push(b'+');
                value.extend_from_slice(section);
            }
            _ => {}
        }
        value
    }

    fn decode(value: &[u8]) -> Option<Self> {
        let (sha256, rest) = value.split_at_checked(64)?;
        if !sha256
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let section = match rest.split_first() {
            None => None,
            Some((b'-', [])) => Some(None),
            Some((b'+', section)) => Some(Some(section.to_vec())),
            Some(_) => return None,
        };
        Some(Self {
            sha256: String::from_utf8(sha256.to_vec()).ok()?,
            section,
        })
    }
}

/// Reads and verifies the module of `plugin`; with `stamps`, the digest
/// and the section of a file unchanged since an earlier exec verified it
/// are taken from its stamp instead of reading and hashing it again
/// (`crate::stamp`).
pub fn load_stamped(plugin: &PluginConfig, stamps: Option<&Stamps>) -> Result<VerifiedModule> {
    let cannot_read = || {
        format!(
            "plugin {:?}: cannot read module {}",
            plugin.name,
            plugin.module.display()
        )
    };
    let mut file = std::fs::File::open(&plugin.module).with_context(cannot_read)?;
    let metadata = file.metadata().with_context(cannot_read)?;
    let opened = Identity::of(&metadata);
    let subject = Stamped::subject(&plugin.module);
    let stamped = stamps
        .and_then(|stamps| stamps.get(&subject, &opened))
        .and_then(|value| Stamped::decode(&value));
    Ok(match stamped {
        Some(Stamped {
            sha256,
            section: Some(section),
        }) => {
            tracing::debug!(plugin = %plugin.name, digest = "stamp", read = false, "module read");
            check_pin(plugin, &sha256)?;
            VerifiedModule {
                sha256,
                section: Ok(section),
                path: plugin.module.clone(),
                bytes: OnceLock::new(),
            }
        }
        stamped => {
            let (bytes, unchanged) = read_open(&mut file, &metadata).with_context(cannot_read)?;
            // A stamp that holds the digest alone (the section was too
            // large for one) is not written again on every exec.
            let restamp = stamped.is_none();
            let stamped = stamped.filter(|_| unchanged).map(|s| s.sha256);
            let from_stamp = stamped.is_some();
            let sha256 = stamped.unwrap_or_else(|| hex::encode(Sha256::digest(&bytes)));
            tracing::debug!(
                plugin = %plugin.name,
                digest = if from_stamp { "stamp" } else { "hashed" },
                read = true,
                "module read"
            );
            check_pin(plugin, &sha256)?;
            check_component(plugin, &bytes)?;
            let section = crate::declaration_section::section(&bytes);
            if let (Some(stamps), true, true, Ok(section)) = (stamps, unchanged, restamp, &section)
            {
                let value = Stamped {
                    sha256: sha256.clone(),
                    section: Some(section.clone()),
                };
                stamps.put(&subject, &opened, &value.encode());
            }
            VerifiedModule {
                sha256,
                section,
                path: plugin.module.clone(),
                bytes: OnceLock::from(bytes),
            }
        }
    })
}

/// Refuses a module whose digest is not the one the config pins.
fn check_pin(plugin: &PluginConfig, sha256: &str) -> Result<()> {
    if let Some(pinned) = &plugin.sha256
        && pinned != sha256
    {
        bail!(
            "plugin {:?}: module {} has sha256 {sha256} but the config pins {pinned}; refusing to run it",
            plugin.name,
            plugin.module.display(),
        );
    }
    Ok(())
}

/// Refuses anything but a component.
fn check_component(plugin: &PluginConfig, bytes: &[u8]) -> Result<()> {
    if wasmparser::Parser::is_component(bytes) {
        return Ok(());
    }
    let what = if wasmparser::Parser::is_core_wasm(bytes) {
        "a core WebAssembly module, not a component (build it for wasm32-wasip2)"
    } else {
        "not a WebAssembly component"
    };
    bail!(
        "plugin {:?}: module {} is {what}",
        plugin.name,
        plugin.module.display()
    )
}

/// The bytes of the open `file`, whose metadata before the read is
/// `before`, and whether its identity stayed the same while it was read.
fn read_open(file: &mut std::fs::File, before: &std::fs::Metadata) -> Result<(Vec<u8>, bool)> {
    let len = before.len();
    if len > MAX_MODULE_BYTES {
        bail!("file is {len} bytes, more than the limit of {MAX_MODULE_BYTES}");
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_MODULE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        bail!("file grew past the limit of {MAX_MODULE_BYTES} bytes while being read");
    }
    Ok((
        bytes,
        Identity::of(before) == Identity::of(&file.metadata()?),
    ))
}

/// The bytes of the open `file`, bounded as a module's are.
fn read_whole(file: &mut std::fs::File) -> Result<Vec<u8>> {
    let before = file.metadata()?;
    Ok(read_open(file, &before)?.0)
}

/// A file's bytes, bounded as a module's are (for `push`).
#[cfg(feature = "oci")]
pub fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    read_whole(&mut std::fs::File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn a_stamp_records_the_digest_and_the_section_or_says_it_did_not() {
        let sha256 = sha(b"module");
        for section in [None, Some(Vec::new()), Some(b"{\"outbound\":[]}".to_vec())] {
            let value = Stamped {
                sha256: sha256.clone(),
                section: Some(section.clone()),
            }
            .encode();
            let decoded = Stamped::decode(&value).unwrap();
            assert_eq!(decoded.sha256, sha256);
            assert_eq!(decoded.section, Some(section));
        }
        // A section too large for a stamp: the digest alone, and the
        // module is read again for the section.
        let large = Stamped {
            sha256: sha256.clone(),
            section: Some(Some(vec![b'x'; crate::stamp::MAX_VALUE_BYTES])),
        }
        .encode();
        assert_eq!(large, sha256.as_bytes());
        assert_eq!(Stamped::decode(&large).unwrap().section, None);
        let fits = vec![b'x'; crate::stamp::MAX_VALUE_BYTES - 65];
        let value = Stamped {
            sha256: sha256.clone(),
            section: Some(Some(fits.clone())),
        }
        .encode();
        assert_eq!(value.len(), crate::stamp::MAX_VALUE_BYTES);
        assert_eq!(Stamped::decode(&value).unwrap().section, Some(Some(fits)));
    }

    #[test]
    fn values_that_are_not_this_format_are_no_stamp() {
        let sha256 = sha(b"module");
        for junk in [
            b"".to_vec(),
            sha256.as_bytes()[..63].to_vec(),
            sha256.to_uppercase().into_bytes(),
            format!("{sha256}?").into_bytes(),
            format!("{sha256}-x").into_bytes(),
        ] {
            assert!(Stamped::decode(&junk).is_none(), "{junk:?}");
        }
        // An earlier version's stamp (the digest alone, under the path)
        // is kept under another subject.
        let path = Path::new("/plugins/p.wasm");
        assert_ne!(Stamped::subject(path), path.as_os_str().as_encoded_bytes());
    }

    #[test]
    fn bytes_read_after_a_stamp_must_have_the_verified_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("p.wasm");
        std::fs::write(&path, b"\0asm\x0d\0\x01\0").unwrap();
        let module = VerifiedModule {
            sha256: sha(b"\0asm\x0d\0\x01\0"),
            section: Ok(None),
            path: path.clone(),
            bytes: OnceLock::new(),
        };
        assert_eq!(module.bytes().unwrap(), b"\0asm\x0d\0\x01\0");
        // Read once: later calls do not read the file again.
        std::fs::write(&path, b"changed").unwrap();
        assert_eq!(module.bytes().unwrap(), b"\0asm\x0d\0\x01\0");

        let unread = VerifiedModule {
            sha256: sha(b"\0asm\x0d\0\x01\0"),
            section: Ok(None),
            path,
            bytes: OnceLock::new(),
        };
        let err = unread.bytes().unwrap_err().to_string();
        assert!(err.contains("changed since this exec verified it"), "{err}");
    }

    #[test]
    fn a_section_that_cannot_be_read_is_reported_by_the_declaration() {
        let module = VerifiedModule {
            sha256: sha(b""),
            section: Err(anyhow::anyhow!("two different sections")),
            path: PathBuf::from("/p.wasm"),
            bytes: OnceLock::new(),
        };
        assert!(!module.has_section());
        let err = module.declaration().unwrap_err().to_string();
        assert!(err.contains("two different sections"), "{err}");
    }
}
