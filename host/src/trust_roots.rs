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
//! every file the loader reads (the bundle file, each directory, every
//! entry in it and, for a symlink out of the directory, the file it
//! reaches): device, inode, size, mtime and ctime. Removing, adding or
//! rewriting any of them changes it (ctime cannot be set back by a file's
//! writer). A symlink is covered by its own `lstat` identity and its
//! directory's, and its target is recorded in the snapshot (`links`), so
//! the check stats files rather than resolving ~290 links. Anything that
//! keeps the check from knowing a link's target (an unreadable link, a
//! file mounted over one) means no snapshot is made. A snapshot is
//! also never used past `MAX_AGE`.
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
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FILE: &str = "trust-roots.snapshot";
const MAGIC: &[u8; 16] = b"wcp-roots-v2\0\0\0\0";
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
    let key = cache.and_then(|c| c.key);
    if let (Some(cache), Some(key)) = (cache, key.as_ref()) {
        match read(cache, key) {
            Ok(Some(snapshot)) => {
                let read = started.elapsed();
                let fresh = fingerprint(&paths, &snapshot.links, SystemTime::now()).0
                    == snapshot.fingerprint;
                tracing::debug!(
                    probe_us = probed.as_micros() as u64,
                    read_us = (read - probed).as_micros() as u64,
                    fingerprint_us = (started.elapsed() - read).as_micros() as u64,
                    links = snapshot.links.len(),
                    fresh,
                    "trust-roots snapshot phases"
                );
                if fresh {
                    return (snapshot.anchors, Source::Snapshot);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "trust-roots snapshot refused"),
        }
    }
    // Taken before the parse, so that a change during it shows next time.
    let settled_at = SystemTime::now();
    let (links, complete) = links(&paths);
    let (fingerprint, settled) = fingerprint(&paths, &links, settled_at);
    let settled = settled && complete;
    let anchors = parse();
    // A store changed within the kernel's timestamp tick could change again
    // without changing its fingerprint: snapshot it only once settled
    // (`stamp::SETTLED`, the same rule as the module stamps).
    if settled
        && let (Some(cache), Some(key)) = (cache, key.as_ref())
        && let Err(e) = write(cache, key, &fingerprint, &links, &anchors)
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

/// A symlink in a certificate directory whose target lies outside it, as
/// recorded in the snapshot: the check stats the target (the file the
/// loader reads through the link) instead of resolving the link.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Link {
    /// Index of the directory in the store's `dirs`.
    dir: u32,
    /// The link's text, resolved as the kernel resolves it: relative to
    /// the directory the link is in.
    target: OsString,
}

/// The links that point out of their directory, read once when the
/// snapshot is made (a `readlink` each) and kept in it, and whether every
/// link could be read (if not, no snapshot is made: a link the check
/// would not know the target of must not be vouched for).
///
/// Why the check need not read them again: a symlink's text cannot be
/// changed in place; replacing or removing a link changes its inode
/// (which the check takes with `lstat`) and its directory's mtime and
/// ctime, all in the fingerprint (and a snapshot is never made of a store
/// changed within `stamp::SETTLED`, the one tick in which that could go
/// unseen). A link to another entry of the same directory needs no
/// record: that entry is fingerprinted in its own right.
fn links((_, dirs): &(Option<PathBuf>, Vec<PathBuf>)) -> (Vec<Link>, bool) {
    let mut links = Vec::new();
    let mut complete = true;
    for (index, dir) in dirs.iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries {
            let Ok(entry) = entry else {
                complete = false;
                continue;
            };
            match entry.file_type() {
                Ok(t) if t.is_symlink() => {}
                Ok(_) => continue,
                Err(_) => {
                    complete = false;
                    continue;
                }
            }
            // Fails for a link something is mounted over, among others.
            let Ok(target) = std::fs::read_link(entry.path()) else {
                complete = false;
                continue;
            };
            if leaves_its_directory(target.as_os_str()) {
                links.push(Link {
                    dir: index as u32,
                    target: target.into_os_string(),
                });
            }
        }
    }
    // Sorted, so that links into one directory are next to each other (the
    // check opens each such directory once) and the order is stable.
    links.sort_unstable();
    links.dedup();
    (links, complete)
}

/// Whether a link with this text reaches anything but another entry of its
/// own directory (`.` and `..` are directories, but stat them anyway).
fn leaves_its_directory(target: &OsStr) -> bool {
    let bytes = target.as_bytes();
    bytes.contains(&b'/') || bytes == b"." || bytes == b".." || bytes.is_empty()
}

/// What one record of the fingerprint is, so that no two states of the
/// store hash the same bytes (a bundle file and a directory at one path,
/// say).
#[derive(Clone, Copy)]
#[repr(u8)]
enum Record {
    File = b'F',
    Dir = b'D',
    Entry = b'E',
    Link = b'L',
    Leftover = b'X',
}

/// SHA-256 over the identity of everything the loader would read, and
/// whether all of it last changed at least `stamp::SETTLED` before
/// `settled_at` (taken before the links were read, so that a change after
/// that is never snapshotted).
///
/// Per directory: its own identity, then every entry's name, type and
/// identity: a symlink's own (`lstat`, in the directory opened once),
/// anything else's with symlinks followed; then for each recorded `Link`
/// the identity of the file it reaches. On Debian's store that is ~290
/// `lstat`s and ~150 stats in one directory opened once, rather than ~290
/// path walks through two symlinks each: it is on the first HTTPS
/// request's path. An entry typed as a symlink whose `lstat` finds
/// something else (a file mounted over the link) is hashed with its
/// target's identity, as the loader reads it.
fn fingerprint(
    (file, dirs): &(Option<PathBuf>, Vec<PathBuf>),
    links: &[Link],
    settled_at: SystemTime,
) -> ([u8; 32], bool) {
    let mut hasher = Sha256::new();
    let mut settled = true;
    let mut raced = false;
    hasher.update([file.is_some() as u8]);
    hasher.update((dirs.len() as u64).to_le_bytes());
    let mut stat = |record: Record, path: &[u8], identity: Option<Identity>| {
        hasher.update([record as u8]);
        hasher.update((path.len() as u64).to_le_bytes());
        hasher.update(path);
        match identity {
            Some(identity) => {
                settled &= identity.settled(settled_at);
                hasher.update([1]);
                hasher.update(identity.bytes());
            }
            None => hasher.update([0]),
        }
    };
    let identity = |path: &Path| std::fs::metadata(path).ok().map(|m| Identity::of(&m));
    if let Some(file) = file {
        stat(Record::File, file.as_os_str().as_bytes(), identity(file));
    }
    let mut links = links.iter().peekable();
    for (index, dir) in dirs.iter().enumerate() {
        stat(Record::Dir, dir.as_os_str().as_bytes(), identity(dir));
        let opened = open_dir(None, dir.as_os_str());
        let entries = std::fs::read_dir(dir).ok();
        // A listing without the directory opened (a race): correct but
        // not worth a snapshot.
        raced |= opened.is_none() && entries.is_some();
        // Sorted by name as bytes: the order of their paths (one directory,
        // one component each), without comparing paths component by
        // component.
        let mut listed: Vec<(OsString, u8)> = entries
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                let kind = match e.file_type() {
                    Ok(t) if t.is_symlink() => b'l',
                    Ok(t) if t.is_dir() => b'd',
                    Ok(_) => b'f',
                    Err(_) => b'?',
                };
                Some((e.file_name(), kind))
            })
            .collect();
        listed.sort_unstable_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
        let mut path = dir.as_os_str().as_bytes().to_vec();
        for (name, kind) in &listed {
            path.truncate(dir.as_os_str().len());
            path.push(b'/');
            path.extend_from_slice(name.as_bytes());
            path.push(*kind);
            let entry = match (&opened, *kind) {
                // The link itself; what it reaches is covered by its
                // `Link` or by the entry it names.
                (Some(fd), b'l') => match stat_at(fd, name, false) {
                    Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                        Some(Identity::of_stat(&st))
                    }
                    Some(_) => identity_at(fd, name),
                    None => None,
                },
                (Some(fd), _) => identity_at(fd, name),
                (None, _) => identity(&dir.join(name)),
            };
            stat(Record::Entry, &path, entry);
        }
        // The recorded links of this directory, their targets stat'ed
        // relative to the directory each lies in, opened once per run of
        // links into it.
        let mut parent: Option<(Vec<u8>, Option<OwnedFd>)> = None;
        while let Some(link) = links.next_if(|l| l.dir as usize <= index) {
            let target = link.target.as_bytes();
            let reached = match split_parent(target) {
                Some((up, name)) => {
                    if parent.as_ref().is_none_or(|(p, _)| p != up) {
                        let fd = opened
                            .as_ref()
                            .and_then(|d| open_dir(Some(d), OsStr::from_bytes(up)));
                        parent = Some((up.to_vec(), fd));
                    }
                    parent
                        .as_ref()
                        .and_then(|(_, fd)| fd.as_ref())
                        .and_then(|fd| identity_at(fd, OsStr::from_bytes(name)))
                }
                None => opened.as_ref().and_then(|fd| identity_at(fd, &link.target)),
            };
            let mut recorded = link.dir.to_le_bytes().to_vec();
            recorded.extend_from_slice(target);
            stat(Record::Link, &recorded, reached);
        }
    }
    // Links recorded for directories the store no longer has.
    for link in links {
        stat(Record::Leftover, link.target.as_bytes(), None);
    }
    (hasher.finalize().into(), settled && !raced)
}

/// `a/b/name` as (`a/b`, `name`), `/name` as (`/`, `name`); `None` where
/// the last component is not a plain name (stat the whole path instead).
fn split_parent(target: &[u8]) -> Option<(&[u8], &[u8])> {
    let slash = target.iter().rposition(|&b| b == b'/')?;
    let name = &target[slash + 1..];
    if name.is_empty() || name == b"." || name == b".." {
        return None;
    }
    let up = if slash == 0 {
        &target[..1]
    } else {
        &target[..slash]
    };
    Some((up, name))
}

/// A directory opened for use as the base of `*at` calls (`O_PATH`: no
/// read permission needed, nothing read), relative to `base` if given.
/// Plain `openat`, not cap-std's `Dir`: the links of an OS store lead out
/// of their directory (absolute paths, `..`), which a `Dir` refuses.
fn open_dir(base: Option<&OwnedFd>, path: &OsStr) -> Option<OwnedFd> {
    let path = std::ffi::CString::new(path.as_bytes()).ok()?;
    let base = base.map_or(libc::AT_FDCWD, |b| b.as_raw_fd());
    // SAFETY: the path is NUL-terminated; the descriptor returned, if any,
    // is owned by nobody else.
    unsafe {
        let fd = libc::openat(
            base,
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
    }
}

/// The identity of `name` in the open directory `dir`, symlinks followed.
fn identity_at(dir: &OwnedFd, name: &OsStr) -> Option<Identity> {
    stat_at(dir, name, true).map(|st| Identity::of_stat(&st))
}

/// `stat` (symlinks followed) or `lstat` of `name` in the open directory
/// `dir`.
fn stat_at(dir: &OwnedFd, name: &OsStr, follow: bool) -> Option<libc::stat> {
    let name = std::ffi::CString::new(name.as_bytes()).ok()?;
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: `stat` is plain data, filled by the call; the descriptor and
    // the NUL-terminated name are valid for the call.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        (libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut stat, flags) == 0).then_some(stat)
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

/// A snapshot that passed its integrity check; the caller compares its
/// fingerprint with the store's.
struct Snapshot {
    fingerprint: [u8; 32],
    links: Vec<Link>,
    anchors: Vec<TrustAnchor<'static>>,
}

/// The snapshot, if there is one, ours and not too old.
fn read(cache: &CacheStore, key: &[u8; 32]) -> Result<Option<Snapshot>> {
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
    let fingerprint: [u8; 32] = body.take(32)?.try_into().expect("32 bytes");
    let made = u64::from_le_bytes(body.take(8)?.try_into().expect("8 bytes"));
    let now = now_secs();
    if made > now || now - made > MAX_AGE.as_secs() {
        return Ok(None);
    }
    let count = u32::from_le_bytes(body.take(4)?.try_into().expect("4 bytes"));
    let mut links = Vec::with_capacity(count.min(4096) as usize);
    for _ in 0..count {
        let dir = u32::from_le_bytes(body.take(4)?.try_into().expect("4 bytes"));
        let target = OsString::from_vec(body.field()?.to_vec());
        links.push(Link { dir, target });
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
    Ok(Some(Snapshot {
        fingerprint,
        links,
        anchors,
    }))
}

/// Writes the snapshot atomically, mode 0600.
fn write(
    cache: &CacheStore,
    key: &[u8; 32],
    fingerprint: &[u8; 32],
    links: &[Link],
    anchors: &[TrustAnchor<'_>],
) -> Result<()> {
    let mut body = Vec::with_capacity(64 + links.len() * 64 + anchors.len() * 600);
    body.extend_from_slice(fingerprint);
    body.extend_from_slice(&now_secs().to_le_bytes());
    body.extend_from_slice(&(links.len() as u32).to_le_bytes());
    for link in links {
        body.extend_from_slice(&link.dir.to_le_bytes());
        let target = link.target.as_bytes();
        body.extend_from_slice(&(target.len() as u32).to_le_bytes());
        body.extend_from_slice(target);
    }
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
    ensure!(
        (MAGIC.len() + 32 + body.len()) as u64 <= MAX_BYTES,
        "the snapshot would be larger than a reader accepts"
    );
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

    fn print(paths: &(Option<PathBuf>, Vec<PathBuf>)) -> ([u8; 32], bool) {
        let (links, complete) = links(paths);
        assert!(complete);
        fingerprint(paths, &links, SystemTime::now())
    }

    fn check(paths: &(Option<PathBuf>, Vec<PathBuf>), recorded: &[Link]) -> [u8; 32] {
        fingerprint(paths, recorded, SystemTime::now()).0
    }

    #[test]
    fn the_fingerprint_changes_when_an_entry_goes_or_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.pem"), "a").unwrap();
        std::fs::write(dir.join("b.pem"), "b").unwrap();
        let paths = (None, vec![dir.clone()]);
        let first = print(&paths).0;
        assert_eq!(first, print(&paths).0, "stable while nothing changes");
        std::fs::write(dir.join("b.pem"), "B").unwrap();
        let rewritten = print(&paths).0;
        assert_ne!(first, rewritten, "a rewritten entry");
        std::fs::remove_file(dir.join("a.pem")).unwrap();
        assert_ne!(rewritten, print(&paths).0, "a removed entry");
        assert!(!print(&paths).1, "just changed: not settled");
    }

    #[test]
    fn an_entry_stated_in_its_directory_has_the_identity_of_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("root.crt");
        std::fs::write(&target, "x").unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("1234abcd.0")).unwrap();
        let dir = open_dir(None, tmp.path().as_os_str()).unwrap();
        for name in ["root.crt", "1234abcd.0"] {
            let by_path = Identity::of(&std::fs::metadata(tmp.path().join(name)).unwrap());
            let at = identity_at(&dir, OsStr::new(name)).unwrap();
            assert_eq!(at, by_path, "{name}");
        }
        let link = stat_at(&dir, OsStr::new("1234abcd.0"), false).unwrap();
        assert_eq!(link.st_mode & libc::S_IFMT, libc::S_IFLNK);
        assert!(stat_at(&dir, OsStr::new("missing"), true).is_none());
    }

    /// Debian's layout: `hash.0 -> Name.pem -> /usr/share/.../Name.crt`.
    fn debian_like() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("etc-certs");
        let shared = tmp.path().join("share").join("mozilla");
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir_all(&shared).unwrap();
        for name in ["One", "Two"] {
            let target = shared.join(format!("{name}.crt"));
            std::fs::write(&target, name).unwrap();
            std::os::unix::fs::symlink(&target, dir.join(format!("{name}.pem"))).unwrap();
            std::os::unix::fs::symlink(format!("{name}.pem"), dir.join(format!("{name}.0")))
                .unwrap();
        }
        (tmp, dir, shared)
    }

    #[test]
    fn only_links_out_of_their_directory_are_recorded() {
        let (_tmp, dir, shared) = debian_like();
        std::os::unix::fs::symlink("../share/mozilla/Two.crt", dir.join("rel.pem")).unwrap();
        let paths = (None, vec![dir.clone()]);
        let targets: Vec<_> = links(&paths).0.into_iter().map(|l| l.target).collect();
        let mut expected: Vec<OsString> = vec![
            shared.join("One.crt").into(),
            shared.join("Two.crt").into(),
            "../share/mozilla/Two.crt".into(),
        ];
        expected.sort();
        assert_eq!(targets, expected);
    }

    #[test]
    fn a_target_rewritten_in_place_changes_the_fingerprint() {
        let (_tmp, dir, shared) = debian_like();
        std::os::unix::fs::symlink("../share/mozilla/Two.crt", dir.join("rel.pem")).unwrap();
        let paths = (None, vec![dir.clone()]);
        // The links as the snapshot recorded them, before the change.
        let recorded = links(&paths).0;
        let before = check(&paths, &recorded);
        assert_eq!(before, check(&paths, &recorded));
        // Nothing in the certificate directory itself changes.
        std::fs::write(shared.join("One.crt"), "another root").unwrap();
        let after = check(&paths, &recorded);
        assert_ne!(before, after, "an absolute link's target");
        std::fs::write(shared.join("Two.crt"), "yet another").unwrap();
        assert_ne!(after, check(&paths, &recorded), "relative");
    }

    #[test]
    fn a_replaced_link_or_a_swapped_directory_changes_the_fingerprint() {
        let (tmp, dir, shared) = debian_like();
        let paths = (None, vec![dir.clone()]);
        let recorded = links(&paths).0;
        let before = check(&paths, &recorded);
        // Retargeted to a file with the same name elsewhere: the recorded
        // links are stale, but the listing (inode) and directory times move.
        let evil = tmp.path().join("evil.crt");
        std::fs::write(&evil, "One").unwrap();
        std::fs::remove_file(dir.join("One.pem")).unwrap();
        std::os::unix::fs::symlink(&evil, dir.join("One.pem")).unwrap();
        let retargeted = check(&paths, &recorded);
        assert_ne!(before, retargeted);
        // The directory the targets are in replaced by a copy.
        let copy = tmp.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        for name in ["One.crt", "Two.crt"] {
            std::fs::copy(shared.join(name), copy.join(name)).unwrap();
        }
        std::fs::rename(&shared, tmp.path().join("old")).unwrap();
        std::fs::rename(&copy, &shared).unwrap();
        assert_ne!(retargeted, check(&paths, &recorded));
    }

    #[test]
    fn a_dangling_symlink_changes_the_fingerprint() {
        let (_tmp, dir, shared) = debian_like();
        let paths = (None, vec![dir.clone()]);
        let before = print(&paths).0;
        // The target goes; the directory itself is untouched.
        std::fs::remove_file(shared.join("Two.crt")).unwrap();
        assert_ne!(before, print(&paths).0);
    }

    /// A change after the links were read, however long before the
    /// fingerprint (a stalled process), is never snapshotted: its ctime
    /// is after `settled_at`.
    #[test]
    fn a_link_replaced_while_the_snapshot_is_made_is_never_settled() {
        let (tmp, dir, _shared) = debian_like();
        let paths = (None, vec![dir.clone()]);
        std::thread::sleep(crate::stamp::SETTLED + Duration::from_millis(100));
        let settled_at = SystemTime::now();
        let (recorded, complete) = links(&paths);
        assert!(complete);
        assert!(
            fingerprint(&paths, &recorded, settled_at).1,
            "settled before"
        );
        std::fs::remove_file(dir.join("One.pem")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("evil.crt"), dir.join("One.pem")).unwrap();
        // The fingerprint runs when the change is already settled by the
        // clock: still not settled, as it is newer than the links.
        std::thread::sleep(crate::stamp::SETTLED + Duration::from_millis(100));
        assert!(!fingerprint(&paths, &recorded, settled_at).1);
        assert!(fingerprint(&paths, &recorded, SystemTime::now()).1);
    }

    #[test]
    fn a_bundle_file_and_a_directory_at_one_path_differ() {
        let tmp = tempfile::tempdir().unwrap();
        let x = tmp.path().join("x");
        std::fs::write(&x, "roots").unwrap();
        let as_file = check(&(Some(x.clone()), vec![]), &[]);
        let as_dir = check(&(None, vec![x]), &[]);
        assert_ne!(as_file, as_dir);
    }

    fn store(tmp: &tempfile::TempDir) -> CacheStore {
        use std::os::unix::fs::MetadataExt as _;
        CacheStore {
            dir: Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap(),
            uid: std::fs::metadata(tmp.path()).unwrap().uid(),
            key: Some([7; 32]),
        }
    }

    fn anchor(bytes: usize) -> TrustAnchor<'static> {
        TrustAnchor {
            subject: Der::from(vec![1; bytes]),
            subject_public_key_info: Der::from(vec![2; 8]),
            name_constraints: None,
        }
    }

    /// The links come back as written; a snapshot a reader would refuse as
    /// too large is never written (a store that big is parsed each time).
    #[test]
    fn a_snapshot_keeps_its_links_and_is_never_written_too_large() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = store(&tmp);
        let key = cache.key.unwrap();
        let links = vec![Link {
            dir: 0,
            target: "/usr/share/ca-certificates/mozilla/One.crt".into(),
        }];
        write(&cache, &key, &[9; 32], &links, &[anchor(100)]).unwrap();
        let back = read(&cache, &key).unwrap().unwrap();
        assert_eq!(back.links, links);
        assert_eq!(back.fingerprint, [9; 32]);
        assert_eq!(back.anchors.len(), 1);

        std::fs::remove_file(tmp.path().join(FILE)).unwrap();
        let huge = vec![anchor(1 << 20); 4];
        let err = write(&cache, &key, &[9; 32], &links, &huge).unwrap_err();
        assert!(format!("{err:#}").contains("larger than a reader accepts"));
        assert!(!tmp.path().join(FILE).exists());
    }

    #[test]
    fn split_parent_keeps_the_kernels_reading_of_a_link() {
        assert_eq!(split_parent(b"/a/b.crt"), Some((&b"/a"[..], &b"b.crt"[..])));
        assert_eq!(split_parent(b"/b.crt"), Some((&b"/"[..], &b"b.crt"[..])));
        assert_eq!(split_parent(b"../x/b"), Some((&b"../x"[..], &b"b"[..])));
        assert_eq!(split_parent(b"a/.."), None);
        assert_eq!(split_parent(b"a/"), None);
        assert_eq!(split_parent(b"name"), None);
        assert!(leaves_its_directory(OsStr::new("..")));
        assert!(!leaves_its_directory(OsStr::new("Name.pem")));
    }
}
