//! "This file was verified while it looked like this": a small record in
//! the cache directory, MAC'd under the host key, that lets an exec skip
//! re-hashing a file whose identity has not changed since a verification.
//!
//! The identity is what the kernel keeps for the file: device, inode,
//! size, mtime and ctime (nanoseconds). Writing the file, replacing it
//! (another inode) or changing its metadata changes it; ctime cannot be
//! set back by anyone short of root changing the system clock, and root
//! can already replace the host binary.
//!
//! Timestamps have the kernel's coarse resolution (a few ms), so a file
//! rewritten within the same tick as the verification could keep its
//! identity. As git does for "racily clean" index entries, a stamp is only
//! written for a file whose ctime is at least `SETTLED` old: every later
//! write then moves the ctime to a new tick. A fresh file is simply
//! hashed again on the next exec.
//!
//! The stamp binds `subject` (what was verified: a path, an artifact's
//! name) to the identity and the verified `value` (a digest); a stamp for
//! another subject, a planted or modified one, or one from another host
//! fails its MAC and means "verify again" — never a failure.

use anyhow::{Context, Result, ensure};
use cap_std::fs::{Dir, MetadataExt, OpenOptions, OpenOptionsExt};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 16] = b"wcp-stamp-v1\0\0\0\0";
/// A file must be at least this old (by ctime) before it is stamped.
pub const SETTLED: Duration = Duration::from_secs(2);
/// The largest value a stamp records.
pub const MAX_VALUE_BYTES: usize = 4096;

/// The kernel's identity of a file; equal identities mean the same,
/// unmodified file (see the module docs for the one race and its rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity([u64; 7]);

impl Identity {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        Self([
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ])
    }

    /// The same identity from a `stat` the caller made itself.
    // The field types differ across targets; on some they are already u64.
    #[allow(clippy::unnecessary_cast)]
    pub fn of_stat(stat: &libc::stat) -> Self {
        Self([
            stat.st_dev as u64,
            stat.st_ino as u64,
            stat.st_size as u64,
            stat.st_mtime as u64,
            stat.st_mtime_nsec as u64,
            stat.st_ctime as u64,
            stat.st_ctime_nsec as u64,
        ])
    }

    pub fn bytes(&self) -> [u8; 56] {
        let mut out = [0u8; 56];
        for (i, n) in self.0.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&n.to_le_bytes());
        }
        out
    }

    /// Whether the file's last change is old enough to stamp.
    pub fn settled(&self, now: SystemTime) -> bool {
        let changed = UNIX_EPOCH + Duration::new(self.0[5], self.0[6] as u32);
        now.duration_since(changed).is_ok_and(|age| age >= SETTLED)
    }
}

/// The stamps of one cache directory.
pub struct Stamps {
    dir: Dir,
    uid: u32,
    key: [u8; 32],
}

impl Stamps {
    /// The stamps beside the artifacts of `dir`, under the key already read.
    pub fn with_key(dir: &Dir, uid: u32, key: [u8; 32]) -> Result<Self> {
        Ok(Self {
            dir: dir
                .try_clone()
                .context("cannot reopen the cache directory")?,
            uid,
            key,
        })
    }

    pub fn open(cache: &crate::cache::CacheStore) -> Result<Self> {
        Ok(Self {
            dir: cache
                .dir()
                .try_clone()
                .context("cannot reopen the cache directory")?,
            uid: cache.uid(),
            key: cache.host_key()?,
        })
    }

    fn file_name(subject: &[u8]) -> String {
        format!("{}.stamp", hex::encode(&Sha256::digest(subject)[..12]))
    }

    fn mac(&self, subject: &[u8], identity: &Identity, value: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length works");
        mac.update(MAGIC);
        for part in [subject, &identity.bytes()[..], value] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac
    }

    /// The value verified for `subject` while it had `identity`, if a valid
    /// stamp says so.
    pub fn get(&self, subject: &[u8], identity: &Identity) -> Option<Vec<u8>> {
        self.read(subject, identity)
            .inspect_err(|e| tracing::debug!(error = %format!("{e:#}"), "stamp refused"))
            .ok()
            .flatten()
    }

    fn read(&self, subject: &[u8], identity: &Identity) -> Result<Option<Vec<u8>>> {
        let name = Self::file_name(subject);
        let meta = match self.dir.symlink_metadata(&name) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        ensure!(
            meta.is_file() && meta.uid() == self.uid && meta.mode() & 0o077 == 0,
            "stamp {name} has the wrong type, owner or mode"
        );
        let limit = (MAGIC.len() + 4 + MAX_VALUE_BYTES + 32) as u64;
        ensure!(meta.len() <= limit, "stamp {name} is too large");
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(libc::O_NOFOLLOW);
        let mut bytes = Vec::new();
        self.dir
            .open_with(&name, &options)?
            .take(limit)
            .read_to_end(&mut bytes)?;
        let malformed = || anyhow::anyhow!("stamp {name} is malformed");
        let rest = bytes.strip_prefix(&MAGIC[..]).ok_or_else(malformed)?;
        let (len, rest) = rest.split_at_checked(4).ok_or_else(malformed)?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        ensure!(
            len <= MAX_VALUE_BYTES && rest.len() == len + 32,
            malformed()
        );
        let (value, tag) = rest.split_at(len);
        if self
            .mac(subject, identity, value)
            .verify_slice(tag)
            .is_err()
        {
            // Another identity (the file changed), another host, or forged.
            return Ok(None);
        }
        Ok(Some(value.to_vec()))
    }

    /// Records that `subject`, with `identity`, verified to `value`; does
    /// nothing for a file changed too recently to be stamped safely.
    pub fn put(&self, subject: &[u8], identity: &Identity, value: &[u8]) {
        if !identity.settled(SystemTime::now()) || value.len() > MAX_VALUE_BYTES {
            return;
        }
        if let Err(e) = self.write(subject, identity, value) {
            tracing::debug!(error = %format!("{e:#}"), "cannot write a stamp");
        }
    }

    fn write(&self, subject: &[u8], identity: &Identity, value: &[u8]) -> Result<()> {
        let name = Self::file_name(subject);
        let tag = self.mac(subject, identity, value).finalize().into_bytes();
        let tmp = format!(".{name}.{}.tmp", std::process::id());
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true).mode(0o600);
        let mut file = self.dir.open_with(&tmp, &options)?;
        let written = file
            .write_all(MAGIC)
            .and_then(|()| file.write_all(&(value.len() as u32).to_le_bytes()))
            .and_then(|()| file.write_all(value))
            .and_then(|()| file.write_all(&tag));
        if let Err(e) = written {
            let _ = self.dir.remove_file(&tmp);
            return Err(e.into());
        }
        self.dir.rename(&tmp, &self.dir, &name)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(ctime: u64) -> Identity {
        Identity([1, 2, 3, 4, 5, ctime, 0])
    }

    fn stamps() -> (tempfile::TempDir, Stamps) {
        let tmp = tempfile::tempdir().unwrap();
        let cache = crate::cache::CacheStore::open(&tmp.path().join("cache"), 100).unwrap();
        let stamps = Stamps::open(&cache).unwrap();
        (tmp, stamps)
    }

    #[test]
    fn a_stamp_answers_only_for_its_subject_and_identity() {
        let (_tmp, stamps) = stamps();
        let old = identity(1_000_000);
        stamps.put(b"/m.wasm", &old, b"digest");
        assert_eq!(
            stamps.get(b"/m.wasm", &old).as_deref(),
            Some(&b"digest"[..])
        );
        let mut changed = old;
        changed.0[2] += 1;
        assert_eq!(stamps.get(b"/m.wasm", &changed), None, "another size");
        assert_eq!(stamps.get(b"/other.wasm", &old), None, "another subject");
    }

    #[test]
    fn a_file_changed_just_now_is_not_stamped() {
        let (_tmp, stamps) = stamps();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let fresh = identity(now);
        stamps.put(b"/m.wasm", &fresh, b"digest");
        assert_eq!(stamps.get(b"/m.wasm", &fresh), None);
    }

    #[test]
    fn a_modified_stamp_is_ignored() {
        let (tmp, stamps) = stamps();
        let old = identity(1_000_000);
        stamps.put(b"/m.wasm", &old, b"digest");
        let path = tmp.path().join("cache").join(Stamps::file_name(b"/m.wasm"));
        let mut bytes = std::fs::read(&path).unwrap();
        // Claim another digest without the key.
        let at = MAGIC.len() + 4;
        bytes[at] = b'D';
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(stamps.get(b"/m.wasm", &old), None);
    }
}
