//! The host config as the front (`crate::front`) reads it on a cache hit,
//! and the runtime on a miss (`crate::config_file::load_for_exec`, which
//! spares each miss the YAML parse): a snapshot of the config file's
//! content as JSON (`wcp_core::config::snapshot`), bound to the identity
//! of the file it was read from, in a directory of this user's.
//!
//! Where: `$WCP_RUNTIME_DIR`, else `/run/wasm-credential-provider` for
//! root (a tmpfs: nothing outlives a reboot), else
//! `$XDG_RUNTIME_DIR/wasm-credential-provider`, else nowhere (every exec
//! then goes to the runtime, which is slower, never different). One file
//! per config path, named by a digest of its absolute path.
//!
//! Trust: the directory must be this user's and closed to others (0700)
//! and the file this user's, 0600, not a symlink; otherwise it is not
//! read. Whoever can write there is this user (root, on a node) and can
//! already replace the host binary or edit the config file itself, so a
//! MAC would add nothing, though the snapshot decides everything the file
//! does (which module runs, with which grants and values); the
//! identity check is what keeps a snapshot from outliving an edit: a
//! snapshot is used only while the config file has the device, inode,
//! size, mtime and ctime it had when the runtime parsed it, and is only
//! written for a file changed at least `stamp::SETTLED` ago (the racy
//! same-tick edit, as for stamps). A snapshot in any doubt is ignored and
//! rewritten, never an error.

use crate::stamp::Identity;
use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use wcp_core::config::{HostConfig, MAX_CONFIG_BYTES};

/// Overrides where snapshots are kept.
pub const RUNTIME_DIR_ENV: &str = "WCP_RUNTIME_DIR";
const ROOT_RUNTIME_DIR: &str = "/run/wasm-credential-provider";
const MAGIC: &str = "wcp-config-snapshot-v1";
/// JSON of a config is a little larger than its YAML; plus the header.
const MAX_SNAPSHOT_BYTES: u64 = 2 * MAX_CONFIG_BYTES + 4096;

/// The directory snapshots are kept in, if there is one for this user.
fn directory() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(RUNTIME_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    if current_uid() == 0 {
        return Some(PathBuf::from(ROOT_RUNTIME_DIR));
    }
    std::env::var_os("XDG_RUNTIME_DIR").map(|dir| Path::new(&dir).join("wasm-credential-provider"))
}

/// A config path made absolute once (without touching the filesystem):
/// it names the snapshot file and is bound into its header.
struct ConfigPath {
    absolute: PathBuf,
}

impl ConfigPath {
    fn new(config_path: &Path) -> Result<Self> {
        let absolute =
            std::path::absolute(config_path).context("cannot make the config path absolute")?;
        Ok(Self { absolute })
    }

    fn bytes(&self) -> &[u8] {
        use std::os::unix::ffi::OsStrExt;
        self.absolute.as_os_str().as_bytes()
    }

    /// The snapshot file of this config in `dir`.
    fn file_in(&self, dir: &Path) -> PathBuf {
        let digest = Sha256::digest(self.bytes());
        dir.join(format!("config-{}.json", hex::encode(&digest[..16])))
    }

    /// The header line binding a snapshot to this file with `identity`.
    fn header(&self, identity: &Identity) -> String {
        format!(
            "{MAGIC} {} {}\n",
            hex::encode(identity.bytes()),
            hex::encode(self.bytes())
        )
    }
}

/// Fails unless `dir` is a directory (not a symlink) of this user's,
/// closed to others.
fn check_private_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("no snapshot directory {}", dir.display()))?;
    ensure!(
        meta.is_dir() && meta.uid() == current_uid() && meta.mode() & 0o077 == 0,
        "snapshot directory {} is not a directory of this user's closed to others",
        dir.display()
    );
    Ok(())
}

/// The config at `config_path`, from its snapshot, if a usable one
/// exists; why not otherwise (for the debug log).
pub fn load(config_path: &Path) -> Result<HostConfig> {
    load_with_text(config_path).map(|snapshot| snapshot.config)
}

/// A usable snapshot: the config it validates to and its JSON text (for
/// checks that walk the text, `crate::config_file::check_plugin_config`).
pub struct Snapshot {
    pub config: HostConfig,
    pub json: Vec<u8>,
}

/// [`load`], keeping the snapshot's text.
pub fn load_with_text(config_path: &Path) -> Result<Snapshot> {
    let dir = directory().context("no runtime directory for this user")?;
    check_private_dir(&dir)?;
    let named = ConfigPath::new(config_path)?;
    let path = named.file_in(&dir);
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .with_context(|| format!("no snapshot {}", path.display()))?;
    let meta = file.metadata()?;
    ensure!(
        meta.is_file() && meta.uid() == current_uid() && meta.mode() & 0o077 == 0,
        "snapshot {} is not a file of this user's closed to others",
        path.display()
    );
    ensure!(meta.len() <= MAX_SNAPSHOT_BYTES, "snapshot is too large");
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(MAX_SNAPSHOT_BYTES)
        .read_to_end(&mut bytes)?;
    let config_meta = std::fs::metadata(config_path)
        .with_context(|| format!("cannot read host config {}", config_path.display()))?;
    let expected = named.header(&Identity::of(&config_meta));
    let Some(json) = bytes.strip_prefix(expected.as_bytes()) else {
        bail!("snapshot is of another version of the config file");
    };
    let config =
        wcp_core::config::snapshot::decode(json, crate::config_file::base_dir(config_path))
            .map_err(|e| anyhow::anyhow!("snapshot does not validate: {e}"))?;
    bytes.drain(..expected.len());
    Ok(Snapshot {
        config,
        json: bytes,
    })
}

/// Writes the snapshot of the config this process loaded from
/// `config_path` (`crate::config_file::load`), if it can be written
/// safely; best effort, logged at debug.
pub fn save(config_path: &Path) {
    if let Err(e) = try_save(config_path) {
        tracing::debug!(error = %format!("{e:#}"), "config snapshot not written");
    }
}

fn try_save(config_path: &Path) -> Result<()> {
    let (text, identity) = crate::config_file::loaded_text().context("no config text loaded")?;
    ensure!(
        identity.settled(SystemTime::now()),
        "the config file changed too recently to be snapshotted"
    );
    let json = wcp_core::config::snapshot::encode(text, crate::config_file::base_dir(config_path))
        .context("the config has no JSON form that means the same")?;
    let dir = directory().context("no runtime directory for this user")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    check_private_dir(&dir)?;
    let named = ConfigPath::new(config_path)?;
    let path = named.file_in(&dir);
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let written = file
        .write_all(named.header(identity).as_bytes())
        .and_then(|()| file.write_all(&json));
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    tracing::debug!(snapshot = %path.display(), "config snapshot written");
    Ok(())
}

fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
