//! The OS trust roots, parsed once per change of the OS store instead of
//! on every exec that makes an HTTPS request.
//!
//! Reading the store means base64-decoding and X.509-parsing ~150
//! certificates, twice on Debian (the bundle file and the hashed
//! directory): 3-5 ms of a cold ECR exec. The parsed trust anchors
//! (subject, public key, name constraints) are kept in
//! `trust-roots.snapshot` in the cache directory and reused while the store
//! is unchanged.
//!
//! What "unchanged" means, so that a root the operator removes is
//! distrusted by the very next exec: the snapshot records a fingerprint of
//! every path the loader reads (the bundle file, each directory and every
//! entry in it, symlinks followed): device, inode, size, mtime and ctime.
//! Removing, adding or rewriting any of them changes it (ctime cannot be
//! set back by a file's writer). A snapshot is also never used past
//! `MAX_AGE`.
//!
//! Trust: the snapshot decides which servers the plugins' HTTPS trusts, so
//! it gets the artifacts' protection: it sits in the cache directory (0700,
//! the host's user), is 0600 and ours, is opened without following
//! symlinks, and carries an HMAC under the host key (`artifact::host_key`),
//! so a file planted there by anyone who cannot read that key is refused
//! and rebuilt. Any problem means "parse the OS store as before".

use crate::stamp::Identity;
use anyhow::{Context, Result, ensure};
use cap_std::fs::{Dir, MetadataExt, OpenOptions, OpenOptionsExt};
use hmac::{Hmac, Mac};
use rustls_pki_types::{Der, TrustAnchor};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FILE: &str = "trust-roots.snapshot";
const MAGIC: &[u8; 16] = b"wcp-roots-v1\0\0\0\0";
/// A snapshot older than this is rebuilt even if the store looks unchanged.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// A real store is ~150 KB of anchors; anything larger is not ours.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Where the OS roots came from on this exec (for the debug log and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Parsed,
    Snapshot,
}

/// The cache directory the snapshot lives in (already checked to be ours).
pub struct CacheStore {
    dir: Dir,
    uid: u32,
    /// `None` if the host key cannot be read: no snapshot is used.
    key: Option<[u8; 32]>,
}

impl CacheStore {
    pub fn of(cache: &crate::cache::CacheStore) -> Option<Self> {
        Some(Self {
            dir: cache.dir().try_clone().ok()?,
            uid: cache.uid(),
            key: cache.host_key().ok(),
        })
    }

    fn dir(&self) -> &Dir {
        &self.dir
    }

    fn uid(&self) -> u32 {
        self.uid
    }
}

/// The OS trust anchors, from the snapshot in `cache` when it is valid for
/// the store as it is now, else parsed (and the snapshot rewritten).
pub fn os_roots(cache: Option<&CacheStore>) -> (Vec<TrustAnchor<'static>>, Source) {
    let started = std::time::Instant::now();
    let paths = paths();
    let probed = started.elapsed();
    let (fingerprint, settled) = fingerprint(&paths);
    let fingerprinted = started.elapsed();
    let key = cache.and_then(|c| c.key);
    if let (Some(cache), Some(key)) = (cache, key.as_ref()) {
        match read(cache, key, &fingerprint) {
            Ok(Some(anchors)) => {
                tracing::debug!(
                    probe_us = probed.as_micros() as u64,
                    fingerprint_us = (fingerprinted - probed).as_micros() as u64,
                    read_us = (started.elapsed() - fingerprinted).as_micros() as u64,
                    "trust-roots snapshot phases"
                );
                return (anchors, Source::Snapshot);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "trust-roots snapshot refused"),
        }
    }
    let anchors = parse();
    // A store changed within the kernel's timestamp tick could change again
    // without changing its fingerprint: snapshot it only once settled
    // (`stamp::SETTLED`, the same rule as the module stamps).
    if settled
        && let (Some(cache), Some(key)) = (cache, key.as_ref())
        && let Err(e) = write(cache, key, &fingerprint, &anchors)
    {
        tracing::debug!(error = %format!("{e:#}"), "cannot write the trust-roots snapshot");
    }
    (anchors, Source::Parsed)
}

/// The paths the OS store is read from, chosen as `rustls-native-certs`
/// chooses them: `SSL_CERT_FILE`/`SSL_CERT_DIR` if either is set, else
/// what `openssl-probe` finds.
fn paths() -> (Option<PathBuf>, Vec<PathBuf>) {
    let file = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
        .map(|d| {
            std::env::split_paths(&d)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if file.is_some() || !dirs.is_empty() {
        return (file, dirs);
    }
    let probe = openssl_probe::probe();
    (probe.cert_file, probe.cert_dir)
}

/// SHA-256 over the identity of everything the loader would read, and
/// whether all of it last changed at least `stamp::SETTLED` ago.
fn fingerprint((file, dirs): &(Option<PathBuf>, Vec<PathBuf>)) -> ([u8; 32], bool) {
    let mut hasher = Sha256::new();
    let settled_at = SystemTime::now();
    let mut settled = true;
    let mut stat = |path: &Path, identity: Option<Identity>| {
        use std::os::unix::ffi::OsStrExt;
        hasher.update((path.as_os_str().len() as u64).to_le_bytes());
        hasher.update(path.as_os_str().as_bytes());
        match identity {
            Some(identity) => {
                settled &= identity.settled(settled_at);
                hasher.update(identity.bytes());
            }
            None => hasher.update([0xff; 8]),
        }
    };
    let identity = |path: &Path| std::fs::metadata(path).ok().map(|m| Identity::of(&m));
    if let Some(file) = file {
        stat(file, identity(file));
    }
    for dir in dirs {
        stat(dir, identity(dir));
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        // Sorted by name as bytes: the order of their paths (one directory,
        // one component each), without comparing ~290 paths component by
        // component (a sixth of the fingerprint's time).
        let mut names: Vec<std::ffi::OsString> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort_unstable_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        // Each entry is stat'ed relative to the directory, symlinks
        // followed: the same identity as by its full path, without
        // resolving the directory's path ~290 times (about a third of
        // the fingerprint's time on Debian's store).
        let opened = std::fs::File::open(dir).ok();
        let mut path = dir.clone();
        for name in names {
            path.push(&name);
            let entry = match &opened {
                Some(dir) => identity_at(dir, &name),
                None => identity(&path),
            };
            stat(&path, entry);
            path.pop();
        }
    }
    (hasher.finalize().into(), settled)
}

/// The identity of `name` in the open directory `dir`, symlinks followed.
fn identity_at(dir: &std::fs::File, name: &std::ffi::OsStr) -> Option<Identity> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(name.as_bytes()).ok()?;
    // SAFETY: `stat` is plain data, filled by the call; the descriptor and
    // the NUL-terminated name are valid for the call.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        (libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut stat, 0) == 0)
            .then(|| Identity::of_stat(&stat))
    }
}

/// Parses the OS store as `rustls-native-certs` loads it; a certificate
/// that is not a usable trust anchor is skipped, as before.
fn parse() -> Vec<TrustAnchor<'static>> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots.roots
}

fn mac(key: &[u8; 32], body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length works");
    mac.update(MAGIC);
    mac.update(body);
    mac
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The anchors of a valid snapshot for `fingerprint`; `None` if there is
/// none or it describes another state of the store or is too old.
fn read(
    cache: &CacheStore,
    key: &[u8; 32],
    fingerprint: &[u8; 32],
) -> Result<Option<Vec<TrustAnchor<'static>>>> {
    let dir: &Dir = cache.dir();
    let meta = match dir.symlink_metadata(FILE) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    ensure!(
        meta.is_file() && meta.uid() == cache.uid() && meta.mode() & 0o077 == 0,
        "{FILE} has the wrong type, owner or mode"
    );
    ensure!(meta.len() <= MAX_BYTES, "{FILE} is too large");
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(libc::O_NOFOLLOW);
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    dir.open_with(FILE, &options)?
        .take(MAX_BYTES)
        .read_to_end(&mut bytes)?;
    ensure!(bytes.len() >= MAGIC.len() + 32, "{FILE} is truncated");
    let (magic, rest) = bytes.split_at(MAGIC.len());
    ensure!(magic == MAGIC, "{FILE} has a foreign format");
    let (tag, body) = rest.split_at(32);
    mac(key, body)
        .verify_slice(tag)
        .map_err(|_| anyhow::anyhow!("{FILE} failed its integrity check"))?;
    let mut body = Reader(body);
    if body.take(32)? != fingerprint {
        return Ok(None);
    }
    let made = u64::from_le_bytes(body.take(8)?.try_into().expect("8 bytes"));
    let now = now_secs();
    if made > now || now - made > MAX_AGE.as_secs() {
        return Ok(None);
    }
    let count = u32::from_le_bytes(body.take(4)?.try_into().expect("4 bytes"));
    let mut anchors = Vec::with_capacity(count.min(4096) as usize);
    for _ in 0..count {
        let subject = body.field()?;
        let spki = body.field()?;
        let constraints = body.field()?;
        anchors.push(TrustAnchor {
            subject: Der::from(subject.to_vec()),
            subject_public_key_info: Der::from(spki.to_vec()),
            name_constraints: (!constraints.is_empty()).then(|| Der::from(constraints.to_vec())),
        });
    }
    ensure!(body.0.is_empty(), "{FILE} has trailing bytes");
    Ok(Some(anchors))
}

/// Writes the snapshot atomically, mode 0600.
fn write(
    cache: &CacheStore,
    key: &[u8; 32],
    fingerprint: &[u8; 32],
    anchors: &[TrustAnchor<'_>],
) -> Result<()> {
    let mut body = Vec::with_capacity(64 + anchors.len() * 600);
    body.extend_from_slice(fingerprint);
    body.extend_from_slice(&now_secs().to_le_bytes());
    body.extend_from_slice(&(anchors.len() as u32).to_le_bytes());
    for anchor in anchors {
        let constraints = anchor
            .name_constraints
            .as_ref()
            .map_or(&[][..], |c| c.as_ref());
        for part in [
            anchor.subject.as_ref(),
            anchor.subject_public_key_info.as_ref(),
            constraints,
        ] {
            body.extend_from_slice(&(part.len() as u32).to_le_bytes());
            body.extend_from_slice(part);
        }
    }
    let tag = mac(key, &body).finalize().into_bytes();
    let dir = cache.dir();
    let tmp = format!(".{FILE}.{}.tmp", std::process::id());
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(0o600);
    let mut file = dir.open_with(&tmp, &options)?;
    let written = file
        .write_all(MAGIC)
        .and_then(|()| file.write_all(&tag))
        .and_then(|()| file.write_all(&body));
    if let Err(e) = written {
        let _ = dir.remove_file(&tmp);
        return Err(e).context("cannot write the snapshot");
    }
    dir.rename(&tmp, dir, FILE)
        .context("cannot rename the snapshot into place")?;
    Ok(())
}

/// Length-checked reads over the snapshot body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(self.0.len() >= n, "{FILE} is truncated");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
        self.take(len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_changes_when_an_entry_goes_or_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.pem"), "a").unwrap();
        std::fs::write(dir.join("b.pem"), "b").unwrap();
        let paths = (None, vec![dir.clone()]);
        let first = fingerprint(&paths).0;
        assert_eq!(first, fingerprint(&paths).0, "stable while nothing changes");
        std::fs::write(dir.join("b.pem"), "B").unwrap();
        let rewritten = fingerprint(&paths).0;
        assert_ne!(first, rewritten, "a rewritten entry");
        std::fs::remove_file(dir.join("a.pem")).unwrap();
        assert_ne!(rewritten, fingerprint(&paths).0, "a removed entry");
        assert!(!fingerprint(&paths).1, "just changed: not settled");
    }

    #[test]
    fn an_entry_stated_in_its_directory_has_the_identity_of_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("root.crt");
        std::fs::write(&target, "x").unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("1234abcd.0")).unwrap();
        let dir = std::fs::File::open(tmp.path()).unwrap();
        for name in ["root.crt", "1234abcd.0"] {
            let by_path = Identity::of(&std::fs::metadata(tmp.path().join(name)).unwrap());
            let at = identity_at(&dir, std::ffi::OsStr::new(name)).unwrap();
            assert_eq!(at, by_path, "{name}");
        }
        assert!(identity_at(&dir, std::ffi::OsStr::new("missing")).is_none());
    }

    #[test]
    fn a_dangling_symlink_changes_the_fingerprint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        std::fs::create_dir(&dir).unwrap();
        let target = tmp.path().join("root.crt");
        std::fs::write(&target, "x").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("1234abcd.0")).unwrap();
        let paths = (None, vec![dir.clone()]);
        let before = fingerprint(&paths).0;
        // The target goes; the directory itself is untouched.
        std::fs::remove_file(&target).unwrap();
        assert_ne!(before, fingerprint(&paths).0);
    }
}
