//! The files `install` lays down: each compared with what is there, then
//! written atomically (a temporary file in the same directory, fsynced,
//! renamed over the target) with its mode. A symbolic link is never
//! written through, and a file changed since the installer last wrote it
//! is never overwritten without `--force`: the installer remembers the
//! digest of everything it wrote in a manifest beside the host config.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One file to lay down.
pub struct Planned {
    /// The path as the node sees it (shown, and the manifest's key).
    pub node_path: PathBuf,
    /// The path as this process reaches it (below `--root`).
    pub target: PathBuf,
    pub content: Content,
    pub mode: u32,
    pub action: Action,
    /// What the manifest records for it: key and digest (the node path and
    /// the content's digest, but for the kubelet config the provider entry).
    pub record: (String, String),
}

/// What a file is to hold: bytes made here (configs), or a file copied as
/// it is (binaries, hundreds of MB in a debug build: streamed, never held).
pub enum Content {
    Bytes(Vec<u8>),
    Copy {
        from: PathBuf,
        len: u64,
        sha256: String,
    },
}

impl Content {
    /// `from`, digested now; it is copied when applied.
    pub fn copy_of(from: &Path) -> Result<Self> {
        let mut file =
            std::fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
        let len = file.metadata()?.len();
        let sha256 =
            digest_reader(&mut file).with_context(|| format!("cannot read {}", from.display()))?;
        Ok(Self::Copy {
            from: from.to_path_buf(),
            len,
            sha256,
        })
    }

    pub fn size(&self) -> u64 {
        match self {
            Content::Bytes(bytes) => bytes.len() as u64,
            Content::Copy { len, .. } => *len,
        }
    }

    pub fn digest(&self) -> String {
        match self {
            Content::Bytes(bytes) => digest(bytes),
            Content::Copy { sha256, .. } => sha256.clone(),
        }
    }

    fn write_to(&self, file: &mut std::fs::File) -> Result<()> {
        match self {
            Content::Bytes(bytes) => file.write_all(bytes)?,
            Content::Copy { from, sha256, .. } => {
                let mut source = std::fs::File::open(from)
                    .with_context(|| format!("cannot read {}", from.display()))?;
                let mut hashing = HashingWriter {
                    inner: file,
                    hasher: Sha256::new(),
                };
                std::io::copy(&mut source, &mut hashing)?;
                // The source must not change between plan and copy.
                if hex::encode(hashing.hasher.finalize()) != *sha256 {
                    bail!("{} changed while it was being installed", from.display());
                }
            }
        }
        Ok(())
    }
}

struct HashingWriter<'a> {
    inner: &'a mut std::fs::File,
    hasher: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn digest_reader(reader: &mut impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(reader, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// What installing a [`Planned`] file does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    /// Replaces a file the installer wrote and nobody changed since (or,
    /// with `--force`, any file).
    Update,
    /// Only its mode differs.
    Chmod,
    Unchanged,
    /// Refused; the reason.
    Refuse(String),
}

impl Action {
    pub fn word(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Chmod => "chmod",
            Action::Unchanged => "unchanged",
            Action::Refuse(_) => "REFUSED",
        }
    }
}

pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What the installer wrote last time: node path to content digest.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self> {
        refuse_symlink(path)?;
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("install manifest {} is damaged", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a map of strings serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// Fails if `path` is a symbolic link.
pub fn refuse_symlink(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!(
            "{} is a symbolic link; refusing to write through it",
            path.display()
        );
    }
    Ok(())
}

/// Decides what to do with `content` at `target`.
pub fn plan(
    node_path: PathBuf,
    target: PathBuf,
    content: Content,
    mode: u32,
    manifest: &Manifest,
    force: bool,
) -> Planned {
    let action = match action(&node_path, &target, &content, mode, manifest, force) {
        Ok(action) => action,
        Err(e) => Action::Refuse(format!("{e:#}")),
    };
    let record = (node_path.display().to_string(), content.digest());
    Planned {
        node_path,
        target,
        content,
        mode,
        action,
        record,
    }
}

fn action(
    node_path: &Path,
    target: &Path,
    content: &Content,
    mode: u32,
    manifest: &Manifest,
    force: bool,
) -> Result<Action> {
    refuse_symlink(target)?;
    let meta = match std::fs::metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Action::Create),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", target.display())),
    };
    if !meta.is_file() {
        bail!("{} exists and is not a regular file", target.display());
    }
    let current = std::fs::File::open(target)
        .and_then(|mut f| digest_reader(&mut f))
        .with_context(|| format!("cannot read {}", target.display()))?;
    if current == content.digest() {
        return Ok(if meta.permissions().mode() & 0o7777 == mode {
            Action::Unchanged
        } else {
            Action::Chmod
        });
    }
    let ours = manifest.files.get(&node_path.display().to_string()) == Some(&current);
    if ours || force {
        Ok(Action::Update)
    } else if manifest
        .files
        .contains_key(&node_path.display().to_string())
    {
        bail!("changed since it was installed; rerun with --force to overwrite it")
    } else {
        bail!("exists and was not written by this installer; rerun with --force to overwrite it")
    }
}

/// Carries out `planned` (nothing for `Unchanged`).
pub fn apply(planned: &Planned) -> Result<()> {
    match &planned.action {
        Action::Unchanged => Ok(()),
        Action::Refuse(why) => bail!("{}: {why}", planned.node_path.display()),
        Action::Chmod => std::fs::set_permissions(
            &planned.target,
            std::fs::Permissions::from_mode(planned.mode),
        )
        .with_context(|| format!("cannot chmod {}", planned.target.display())),
        Action::Create | Action::Update => {
            write_atomically(&planned.target, &planned.content, planned.mode)
        }
    }
}

/// Writes `content` to `target` by rename, so that a kubelet exec (or a
/// reader of the config) sees the old file or the new one, never a part.
pub fn write_atomically(target: &Path, content: &Content, mode: u32) -> Result<()> {
    let dir = target
        .parent()
        .with_context(|| format!("{} has no directory", target.display()))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    refuse_symlink(target)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.wcp-install-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let result = (|| -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)
            .with_context(|| format!("cannot create {}", temporary.display()))?;
        content.write_to(&mut file)?;
        // The umask may have narrowed the mode at creation.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(&temporary, target)
            .with_context(|| format!("cannot rename into {}", target.display()))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_and_writes() {
        let dir = tempfile_dir();
        let target = dir.join("sub/file");
        let node = PathBuf::from("/sub/file");
        let mut manifest = Manifest::default();
        let p = plan(
            node.clone(),
            target.clone(),
            Content::Bytes(b"one".to_vec()),
            0o644,
            &manifest,
            false,
        );
        assert_eq!(p.action, Action::Create);
        apply(&p).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"one");
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let p = plan(
            node.clone(),
            target.clone(),
            Content::Bytes(b"one".to_vec()),
            0o644,
            &manifest,
            false,
        );
        assert_eq!(p.action, Action::Unchanged);
        assert_eq!(
            plan(
                node.clone(),
                target.clone(),
                Content::Bytes(b"one".to_vec()),
                0o600,
                &manifest,
                false
            )
            .action,
            Action::Chmod
        );
        // Not ours: refused unless forced.
        let p = plan(
            node.clone(),
            target.clone(),
            Content::Bytes(b"two".to_vec()),
            0o644,
            &manifest,
            false,
        );
        assert!(
            matches!(&p.action, Action::Refuse(why) if why.contains("not written by this installer")),
            "{:?}",
            p.action
        );
        assert_eq!(
            plan(
                node.clone(),
                target.clone(),
                Content::Bytes(b"two".to_vec()),
                0o644,
                &manifest,
                true
            )
            .action,
            Action::Update
        );
        // Ours and unchanged since: updated.
        manifest
            .files
            .insert(node.display().to_string(), digest(b"one"));
        assert_eq!(
            plan(
                node.clone(),
                target.clone(),
                Content::Bytes(b"two".to_vec()),
                0o644,
                &manifest,
                false
            )
            .action,
            Action::Update
        );
        // Ours but edited since.
        std::fs::write(&target, b"edited").unwrap();
        let p = plan(
            node.clone(),
            target.clone(),
            Content::Bytes(b"two".to_vec()),
            0o644,
            &manifest,
            false,
        );
        assert!(
            matches!(&p.action, Action::Refuse(why) if why.contains("changed since it was installed")),
            "{:?}",
            p.action
        );
        // A symbolic link is never written through, forced or not.
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let p = plan(
            "/link".into(),
            link.clone(),
            Content::Bytes(b"x".to_vec()),
            0o644,
            &manifest,
            true,
        );
        assert!(
            matches!(&p.action, Action::Refuse(why) if why.contains("symbolic link")),
            "{:?}",
            p.action
        );
        assert!(apply(&p).is_err());
        assert!(write_atomically(&link, &Content::Bytes(b"x".to_vec()), 0o644).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"edited");
        // A copied file is streamed and checked against its digest.
        let from = dir.join("from");
        std::fs::write(&from, b"binary").unwrap();
        let copy = Content::copy_of(&from).unwrap();
        assert_eq!(copy.digest(), digest(b"binary"));
        let to = dir.join("bin/to");
        write_atomically(&to, &copy, 0o755).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"binary");
        std::fs::write(&from, b"swapped").unwrap();
        assert!(write_atomically(&to, &copy, 0o755).is_err());
        assert_eq!(std::fs::read(&to).unwrap(), b"binary");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wcp-install-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
