//! Precompiled components (`.cwasm`) in the cache directory, so that an
//! exec loads native code instead of compiling the plugin every time.
//!
//! Loading a `.cwasm` is `unsafe`: its bytes become native code running as
//! root. The host therefore loads only artifacts it produced itself:
//!
//! * a random 32-byte host key (`host.key`, mode 0600, created once) lives
//!   in the cache directory, which is 0700 and owned by the host's user;
//! * an artifact file is `code ‖ record ‖ record length (u32 LE) ‖
//!   HMAC-SHA256(key, MAGIC ‖ wasm sha256 ‖ engine compatibility hash ‖
//!   record length ‖ record ‖ code) ‖ MAGIC`, so a modified, truncated,
//!   swapped (another module's), foreign-version or foreign-host artifact
//!   fails the check; the record is the module's
//!   [`wcp_core::provenance::Provenance`] (digest, OCI origin, verified
//!   signer), made by `trust::verify` before the compile, so the exec path
//!   learns who signed the module without checking a signature, and an
//!   artifact can only come from a verified module;
//! * the code comes first so that wasmtime can map the file itself
//!   (`Component::deserialize_file`, page-aligned sections from offset 0)
//!   instead of copying it twice (into a buffer, then into executable
//!   memory): the trailer is after the ELF image, which ignores it;
//! * once an artifact passed the check, a stamp (`crate::stamp`, MAC'd
//!   under the same key) records its identity (device, inode, size, mtime,
//!   ctime) and tag, and later execs that find the file unchanged skip
//!   hashing it again: rewriting or replacing the file changes its
//!   identity, so the check runs again and a tampered artifact is refused
//!   as before;
//! * the file that is checked is the file that is mapped: it is opened
//!   once, checked through that descriptor, handed to wasmtime as
//!   `/proc/self/fd/N` (the same inode, whatever the name points to by
//!   then), and its identity is compared again once it is mapped.
//!
//! Trust model of the mapping. The cache directory is 0700 and owned by the
//! host's user (root on a node), artifacts are 0600 and owner-checked: only
//! that user can write them, and it can already replace the host binary,
//! its config and the key. What the mapping changes: a private mapping
//! still shows writes made to the file after it was mapped (pages not yet
//! read), and a truncation of it faults the process (SIGBUS). So a writer
//! with the host's own user, writing in place during the ~1 ms between the
//! last identity check and the last page read, could change code this exec
//! runs; before the mapping, the same writer had the same window between
//! the check and the read. Any write is visible to the next exec (mtime and
//! ctime change), which checks the whole file again.
//!
//! Any failure means "recompile from the verified `.wasm`": the artifact
//! cache never fails a kubelet request.

use crate::stamp::{Identity, Stamps};
use anyhow::{Context, Result, bail, ensure};
use cap_std::fs::{Dir, MetadataExt, OpenOptions, OpenOptionsExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::FileExt;
use wasmtime::Engine;
use wasmtime::component::Component;
use wcp_core::provenance::{Provenance as ModuleProvenance, Requirement};

/// Format tag at the end of every artifact file.
const MAGIC: &[u8; 16] = b"wcp-cwasm-v3\0\0\0\0";
/// Record length, tag and format tag: the fixed end of an artifact file.
const TRAILER: usize = 4 + 32 + MAGIC.len();
/// Largest provenance record an artifact carries.
const MAX_RECORD_BYTES: usize = 16 * 1024;
const KEY_FILE: &str = "host.key";
const MAX_ARTIFACT_BYTES: u64 = 512 * 1024 * 1024;

/// How the component was obtained, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Loaded from a verified artifact.
    Loaded,
    /// Compiled now (by this exec's compile child) and stored.
    Compiled,
    /// Loaded from the artifact a concurrent exec's compile child stored
    /// while this exec waited for it.
    Waited,
    /// An artifact existed but was refused (the reason); compiled now.
    Recompiled(String),
    /// Compiled now; the artifact cache is unusable (the reason).
    Uncached(String),
}

impl Provenance {
    pub fn as_str(&self) -> String {
        match self {
            Provenance::Loaded => "loaded".into(),
            Provenance::Compiled => "compiled".into(),
            Provenance::Waited => "loaded after a concurrent compile".into(),
            Provenance::Recompiled(why) => format!("recompiled: {why}"),
            Provenance::Uncached(why) => format!("compiled, not cached: {why}"),
        }
    }
}

/// Artifacts of one cache directory for one engine.
pub struct ArtifactStore<'a> {
    dir: &'a Dir,
    uid: u32,
    key: [u8; 32],
    compat: String,
}

impl<'a> ArtifactStore<'a> {
    /// Opens the store in the cache directory (already checked to be ours),
    /// creating the host key on first use.
    pub fn open(cache: &'a crate::cache::CacheStore) -> Result<Self> {
        let key = cache.host_key()?;
        Ok(Self {
            dir: cache.dir(),
            uid: cache.uid(),
            key,
            compat: engine_tag(),
        })
    }

    fn stem(&self, wasm_sha256: &str) -> String {
        format!("{wasm_sha256}-{}", self.compat)
    }

    fn file_name(&self, wasm_sha256: &str) -> String {
        format!("{}.cwasm", self.stem(wasm_sha256))
    }

    /// The lock file of the artifact's compile (created 0600, not locked
    /// yet). Whoever holds its `flock` is compiling that artifact; the lock
    /// ends with the last process holding the open file, so a compile that
    /// crashes or is killed never leaves it held.
    pub fn compile_lock(&self, wasm_sha256: &str) -> Result<std::fs::File> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).mode(0o600);
        let file = self
            .dir
            .open_with(format!("{}.compile.lock", self.stem(wasm_sha256)), &options)
            .context("cannot open the compile lock")?;
        Ok(file.into_std())
    }

    /// A fresh log for a background compile's stderr (0600, truncated).
    /// It stays only if that compile fails: see [`Self::last_compile_failure`].
    pub fn compile_log(&self, wasm_sha256: &str) -> Result<std::fs::File> {
        let name = self.compile_log_name(wasm_sha256);
        let _ = self.dir.remove_file(&name);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let file = self
            .dir
            .open_with(&name, &options)
            .context("cannot create the compile log")?;
        Ok(file.into_std())
    }

    fn compile_log_name(&self, wasm_sha256: &str) -> String {
        format!("{}.compile.log", self.stem(wasm_sha256))
    }

    /// Removes the compile log: the last compile of this artifact succeeded.
    pub fn clear_compile_log(&self, wasm_sha256: &str) {
        let _ = self.dir.remove_file(self.compile_log_name(wasm_sha256));
    }

    /// When the last compile of this artifact ended without storing it, and
    /// the last line it wrote (the reason, empty if it was killed). Only
    /// meaningful while no one holds [`Self::compile_lock`] and the artifact
    /// is missing.
    pub fn last_compile_failure(
        &self,
        wasm_sha256: &str,
    ) -> Option<(std::time::SystemTime, String)> {
        const TAIL: u64 = 4096;
        let name = self.compile_log_name(wasm_sha256);
        let meta = self.dir.symlink_metadata(&name).ok()?;
        if !meta.is_file() || meta.uid() != self.uid {
            return None;
        }
        let when = meta.modified().ok()?.into_std();
        let mut file = self.dir.open(&name).ok()?;
        let skip = meta.len().saturating_sub(TAIL);
        file.seek(std::io::SeekFrom::Start(skip)).ok()?;
        let mut tail = Vec::new();
        file.take(TAIL).read_to_end(&mut tail).ok()?;
        let text = String::from_utf8_lossy(&tail);
        let line = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .trim_start_matches("wasm-credential-provider: error: ");
        Some((when, escape_controls(line)))
    }

    /// The MAC of an artifact up to its code, which the caller adds.
    fn mac(&self, wasm_sha256: &str, record: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length works");
        mac.update(MAGIC);
        mac.update(wasm_sha256.as_bytes());
        mac.update(self.compat.as_bytes());
        mac.update(&(record.len() as u32).to_le_bytes());
        mac.update(record);
        mac
    }

    /// The verified artifact for the module with digest `wasm_sha256`, and
    /// the provenance it records: `Ok(None)` if there is none, `Err` with
    /// the reason if one exists but may not be used (including a record that
    /// does not meet `required`: a changed key or pin means verify again).
    pub fn load(
        &self,
        engine: &Engine,
        wasm_sha256: &str,
        required: &Requirement,
    ) -> Result<Option<(Component, ModuleProvenance)>> {
        let Some(artifact) = self.open_verified(wasm_sha256)? else {
            return Ok(None);
        };
        required
            .check(&artifact.provenance)
            .context("artifact does not meet the plugin's verify/source settings")?;
        let component = artifact.deserialize(engine)?;
        Ok(Some((component, artifact.provenance)))
    }

    /// The provenance the artifact of `wasm_sha256` records, integrity
    /// checked, without loading its code (for `inspect`).
    pub fn record(&self, wasm_sha256: &str) -> Result<Option<ModuleProvenance>> {
        Ok(self.open_verified(wasm_sha256)?.map(|a| a.provenance))
    }

    /// The artifact file, open, after every check but the engine's.
    fn open_verified(&self, wasm_sha256: &str) -> Result<Option<Verified>> {
        let name = self.file_name(wasm_sha256);
        match self.dir.symlink_metadata(&name) {
            Ok(meta) => ensure!(meta.is_file(), "artifact is not a regular file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let file = self.dir.open(&name)?.into_std();
        // After a long idle: one sequential read, not a fault per piece
        // when wasmtime maps it (nor a read per block for its MAC). Before
        // the identity is taken, so that the file's checks and its load
        // stay as close together as they were.
        if let crate::page_cache::Fill::Read(bytes) = crate::page_cache::fill_if_evicted(&file) {
            tracing::debug!(
                bytes,
                "artifact was not in the page cache; read it in one pass"
            );
        }
        // Every check below is of this open file, not of the name.
        let meta = file.metadata()?;
        ensure!(meta.is_file(), "artifact is not a regular file");
        {
            use std::os::unix::fs::MetadataExt as _;
            ensure!(
                meta.uid() == self.uid && meta.mode() & 0o077 == 0,
                "artifact has the wrong owner or mode {:o}",
                meta.mode() & 0o7777
            );
        }
        ensure!(meta.len() <= MAX_ARTIFACT_BYTES, "artifact is too large");
        let identity = Identity::of(&meta);
        let integrity = || {
            anyhow::anyhow!(
                "artifact failed its integrity check (modified, swapped, truncated or from another host)"
            )
        };
        let len = meta.len() as usize;
        ensure!(len > TRAILER, "artifact is truncated");
        let mut trailer = [0u8; TRAILER];
        file.read_exact_at(&mut trailer, (len - TRAILER) as u64)?;
        let (record_len, rest) = trailer.split_at(4);
        let (tag, magic) = rest.split_at(32);
        ensure!(
            magic == MAGIC,
            "artifact does not end in its format tag (a foreign format, truncated or appended to)"
        );
        let record_len = u32::from_le_bytes(record_len.try_into().expect("4 bytes")) as usize;
        ensure!(
            record_len <= MAX_RECORD_BYTES && record_len <= len - TRAILER,
            integrity()
        );
        let code_len = len - TRAILER - record_len;
        let mut record = vec![0u8; record_len];
        file.read_exact_at(&mut record, code_len as u64)?;
        self.check_mac(&name, identity, tag, || {
            let mut mac = self.mac(wasm_sha256, &record);
            hash_prefix(&file, code_len, &mut mac)?;
            mac.verify_slice(tag).map_err(|_| integrity())?;
            // What was hashed must be what is mapped: a file that changed
            // while it was read is refused (and checked again next time).
            ensure!(
                Identity::of(&file.metadata()?) == identity,
                "artifact changed while it was checked"
            );
            Ok(())
        })?;
        let provenance: ModuleProvenance = serde_json::from_slice(&record)
            .context("artifact has an unreadable provenance record")?;
        ensure!(
            provenance.module_digest.hex() == wasm_sha256,
            "artifact records module {} instead",
            provenance.module_digest
        );
        Ok(Some(Verified {
            file,
            identity,
            code_len,
            provenance,
        }))
    }

    /// Runs `verify` (the MAC over the whole artifact, which fails if the
    /// file did not stay `identity` while it was read) unless a stamp says
    /// this very file was verified already with this `tag`; stamps the file after
    /// a success. The stamp is MAC'd under the same host key
    /// (`crate::stamp`), so skipping the check trusts nothing the check
    /// itself would not.
    fn check_mac(
        &self,
        name: &str,
        identity: Identity,
        tag: &[u8],
        verify: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let stamps = Stamps::with_key(self.dir, self.uid, self.key).ok();
        if let Some(stamps) = &stamps
            && stamps.get(name.as_bytes(), &identity).as_deref() == Some(tag)
        {
            tracing::debug!(artifact = name, mac = "stamp", "artifact integrity");
            return Ok(());
        }
        verify()?;
        tracing::debug!(artifact = name, mac = "checked", "artifact integrity");
        if let Some(stamps) = &stamps {
            stamps.put(name.as_bytes(), &identity, tag);
        }
        Ok(())
    }

    /// Writes the artifact for `wasm_sha256` atomically with mode 0600.
    #[cfg_attr(
        not(feature = "compiler"),
        allow(dead_code, reason = "only builds with a compiler write artifacts")
    )]
    pub fn store(&self, provenance: &ModuleProvenance, code: &[u8]) -> Result<()> {
        let wasm_sha256 = provenance.module_digest.hex();
        let record =
            serde_json::to_vec(provenance).context("cannot encode the provenance record")?;
        ensure!(
            record.len() <= MAX_RECORD_BYTES,
            "the provenance record is too large"
        );
        let name = self.file_name(wasm_sha256);
        let tmp = format!(".{name}.{}.tmp", std::process::id());
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true).mode(0o600);
        let mut file = self.dir.open_with(&tmp, &options)?;
        let mut mac = self.mac(wasm_sha256, &record);
        mac.update(code);
        let tag = mac.finalize().into_bytes();
        let written = file
            .write_all(code)
            .and_then(|()| file.write_all(&record))
            .and_then(|()| file.write_all(&(record.len() as u32).to_le_bytes()))
            .and_then(|()| file.write_all(&tag))
            .and_then(|()| file.write_all(MAGIC))
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = self.dir.remove_file(&tmp);
            return Err(e).context("cannot write the artifact");
        }
        self.dir.rename(&tmp, self.dir, &name)?;
        Ok(())
    }
}

/// An artifact file that passed every check of [`ArtifactStore`], open.
struct Verified {
    file: std::fs::File,
    /// What the file was when it was checked.
    identity: Identity,
    /// Its code, the ELF image wasmtime wrote: bytes `0..code_len`.
    code_len: usize,
    provenance: ModuleProvenance,
}

impl Verified {
    /// The component, from this open file: mapped by wasmtime through
    /// `/proc/self/fd`, or, where there is no `/proc`, read (once more,
    /// checked against the same identity) and copied.
    fn deserialize(&self, engine: &Engine) -> Result<Component> {
        use std::os::fd::AsRawFd;
        let path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        let component = if std::path::Path::new(&path).exists() {
            // SAFETY: the file holds code produced by
            // `Engine::precompile_component` of this host for this engine
            // configuration: the MAC under the host's private key (or its
            // stamp) proved it for this inode in this state, compared again
            // below now that it is mapped; the module doc says what a
            // writer with the host's own user could still do.
            unsafe { Component::deserialize_file(engine, &path) }
        } else {
            let mut code = vec![0u8; self.code_len];
            self.file.read_exact_at(&mut code, 0)?;
            self.ensure_unchanged()?;
            // SAFETY: as above, for these bytes read from the checked file.
            unsafe { Component::deserialize(engine, &code) }
        }
        .map_err(anyhow::Error::from)
        .context("artifact was refused by the engine")?;
        self.ensure_unchanged()?;
        Ok(component)
    }

    fn ensure_unchanged(&self) -> Result<()> {
        ensure!(
            Identity::of(&self.file.metadata()?) == self.identity,
            "artifact changed while it was loaded"
        );
        Ok(())
    }
}

/// Feeds bytes `0..len` of `file` to `mac`, a block at a time.
fn hash_prefix(file: &std::fs::File, len: usize, mac: &mut Hmac<Sha256>) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0;
    while at < len {
        let n = buf.len().min(len - at);
        file.read_exact_at(&mut buf[..n], at as u64)?;
        mac.update(&buf[..n]);
        at += n;
    }
    Ok(())
}

/// `text` with control characters escaped, for a line the kubelet logs.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Names the engine an artifact was compiled for. wasmtime's own
/// `precompile_compatibility_hash` exists only in builds with a compiler, and
/// the runtime-only exec build must find the same files, so the tag is
/// derived from what both builds share: this crate's version (which pins
/// wasmtime), the engine settings in `runtime::engine`, and the target.
/// `Component::deserialize` still checks full compatibility itself; a
/// mismatch is refused and recompiled.
fn engine_tag() -> String {
    // SHA-256, not std's `DefaultHasher`, whose output std does not promise
    // to keep across releases: the two builds must agree byte for byte.
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in [
        env!("CARGO_PKG_VERSION"),
        crate::runtime::engine::SETTINGS,
        std::env::consts::ARCH,
        std::env::consts::OS,
    ] {
        // Length-prefixed, so that no two lists of parts hash alike.
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

/// The host's artifact key: created once with 32 random bytes. It also
/// authenticates the trust-roots snapshot (`trust_roots`).
pub(crate) fn host_key(dir: &Dir, uid: u32) -> Result<[u8; 32]> {
    for _ in 0..2 {
        match dir.symlink_metadata(KEY_FILE) {
            Ok(meta) => {
                ensure!(
                    meta.is_file() && meta.uid() == uid && meta.mode() & 0o077 == 0,
                    "{KEY_FILE} has the wrong type, owner or mode"
                );
                let mut key = [0u8; 32];
                dir.open(KEY_FILE)?
                    .read_exact(&mut key)
                    .context("host key is truncated")?;
                return Ok(key);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut key))
                    .context("cannot read /dev/urandom")?;
                // Unique per call, not only per process: the trust-roots
                // warm-up thread (`TlsClient::warm_up`) may get here at the
                // same time as the exec's own thread.
                static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let tmp = format!(".{KEY_FILE}.{}.{call}.tmp", std::process::id());
                let mut options = OpenOptions::new();
                options.write(true).create_new(true).mode(0o600);
                let mut file = dir.open_with(&tmp, &options)?;
                file.write_all(&key)?;
                file.sync_all()?;
                // Another process may have won the race: keep its key.
                if dir.hard_link(&tmp, dir, KEY_FILE).is_ok() {
                    let _ = dir.remove_file(&tmp);
                    return Ok(key);
                }
                let _ = dir.remove_file(&tmp);
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("cannot create or read {KEY_FILE}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn engine_tag_is_16_hex_digits() {
        let tag = super::engine_tag();
        assert_eq!(tag.len(), 16);
        assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
