//! The central credential cache on disk, shared by every exec of the host.
//!
//! One file per entry (`<id>.entry`, see `wcp_core::cache_entry`), in a
//! directory owned by the host's user with mode 0700, files 0600, opened
//! through cap-std so that no entry name can reach outside it. Writes are
//! atomic (temp file, rename); anything unreadable, corrupted,
//! foreign or owned by someone else is ignored and replaced, never failing
//! a request. Writes are not fsynced: an entry is only worth one plugin
//! call, and one torn or lost by a crash (at worst an empty file, which
//! does not decode) is ignored like any other. An fsync would sit on the
//! kubelet's exec path, behind the journal commits of whatever the node is
//! writing (image layers, during pulls). Concurrent execs needing the same registry take a per-flight
//! lock file so that one calls the provider and the others read its answer.

use anyhow::{Context, Result, bail};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt, OpenOptions, OpenOptionsExt};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};
use wcp_core::cache_entry::Entry;
use wcp_core::cache_key::entry_id;
use wcp_core::shared_failure::SharedFailure;

const ENTRY_SUFFIX: &str = ".entry";
const LOCK_SUFFIX: &str = ".lock";
const TMP_SUFFIX: &str = ".tmp";
const FAILURE_SUFFIX: &str = ".failure";
/// Largest failure record read (`wcp_core::shared_failure` caps its line).
const MAX_FAILURE_BYTES: u64 = 16 * 1024;
/// Largest entry file read; real ones are a few KiB.
const MAX_ENTRY_BYTES: u64 = 1024 * 1024;
/// Temp files older than this are leftovers of a killed writer.
const STALE_TMP: Duration = Duration::from_secs(600);

/// An open cache directory.
pub struct CacheStore {
    dir: Dir,
    uid: u32,
    max_entries: usize,
    /// The host key (`crate::artifact::host_key`), read once per process:
    /// stamps, artifacts and the trust-roots snapshot all use it.
    host_key: std::sync::OnceLock<[u8; 32]>,
}

/// Held while this process fetches an answer others may be waiting for.
pub struct FlightLock {
    _file: std::fs::File,
}

impl CacheStore {
    /// Opens (creating if needed, mode 0700) the cache directory and checks
    /// that it belongs to this process's user.
    pub fn open(path: &Path, max_entries: usize) -> Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create cache directory {}", path.display()))?;
        let dir = Dir::open_ambient_dir(path, ambient_authority())
            .with_context(|| format!("cannot open cache directory {}", path.display()))?;
        let meta = dir.dir_metadata()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        if meta.uid() != uid {
            bail!(
                "cache directory {} is owned by uid {}, not by this process (uid {uid}); refusing to use it",
                path.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).with_context(
                || format!("cannot restrict cache directory {} to 0700", path.display()),
            )?;
        }
        Ok(Self {
            dir,
            uid,
            max_entries,
            host_key: std::sync::OnceLock::new(),
        })
    }

    /// The host key of this directory, created on first use.
    pub fn host_key(&self) -> Result<[u8; 32]> {
        if let Some(key) = self.host_key.get() {
            return Ok(*key);
        }
        let key = crate::artifact::host_key(&self.dir, self.uid)?;
        // Two threads may both read it; the file holds one key.
        Ok(*self.host_key.get_or_init(|| key))
    }

    /// The opened directory, for other files the host keeps there.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The user owning the directory (this process's effective user).
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The entry for (`scope`, `key`) if it is intact, ours and unexpired.
    /// A bad or expired file is removed.
    pub fn get(&self, scope: &str, key: &[u8], now: u64) -> Option<Entry> {
        let name = format!("{}{ENTRY_SUFFIX}", entry_id(scope, key));
        let bytes = match self.read_ours(&name) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(e) => {
                tracing::info!(entry = %name, "ignoring unusable cache entry: {e:#}");
                let _ = self.dir.remove_file(&name);
                return None;
            }
        };
        match Entry::decode_for(&bytes, scope, key) {
            Ok(entry) if entry.remaining(now).is_some() => Some(entry),
            Ok(_) => {
                let _ = self.dir.remove_file(&name);
                None
            }
            Err(e) => {
                tracing::info!(entry = %name, "ignoring corrupted cache entry: {e:#}");
                let _ = self.dir.remove_file(&name);
                None
            }
        }
    }

    fn read_ours(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let meta = match self.dir.symlink_metadata(name) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if !meta.is_file() {
            bail!("not a regular file");
        }
        if meta.uid() != self.uid || meta.mode() & 0o077 != 0 {
            bail!("wrong owner or mode {:o}", meta.mode() & 0o7777);
        }
        if meta.len() > MAX_ENTRY_BYTES {
            bail!("{} bytes, larger than any real entry", meta.len());
        }
        let mut bytes = Vec::new();
        self.dir
            .open(name)?
            .take(MAX_ENTRY_BYTES)
            .read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }

    /// Stores `entry` atomically; then evicts if the cache is over its bound.
    pub fn put(&self, entry: &Entry, now: u64) -> Result<()> {
        let id = entry.id()?;
        self.write_atomic(&format!("{id}{ENTRY_SUFFIX}"), &entry.encode(), now)?;
        self.evict(now);
        Ok(())
    }

    /// The failure recorded for `flight`, if any (see
    /// `wcp_core::shared_failure`); anything unreadable counts as none.
    pub fn failure(&self, flight: &str) -> Option<SharedFailure> {
        let name = format!("{flight}{FAILURE_SUFFIX}");
        let bytes = self.read_ours(&name).ok().flatten()?;
        if bytes.len() as u64 > MAX_FAILURE_BYTES {
            return None;
        }
        SharedFailure::decode(&bytes)
    }

    /// Records the failure of `flight`, replacing an older one.
    pub fn put_failure(&self, flight: &str, failure: &SharedFailure, now: u64) -> Result<()> {
        self.write_atomic(&format!("{flight}{FAILURE_SUFFIX}"), &failure.encode(), now)
    }

    /// Writes `name` whole or not at all: temp file (0600), rename; not
    /// durable (the module doc says why).
    fn write_atomic(&self, name: &str, bytes: &[u8], now: u64) -> Result<()> {
        let tmp = format!(".{name}.{}.{}{TMP_SUFFIX}", std::process::id(), now);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let mut file = self
            .dir
            .open_with(&tmp, &options)
            .context("cannot create cache temp file")?;
        if let Err(e) = file.write_all(bytes) {
            let _ = self.dir.remove_file(&tmp);
            return Err(e).context("cannot write cache entry");
        }
        drop(file);
        self.dir
            .rename(&tmp, &self.dir, name)
            .context("cannot publish cache entry")?;
        Ok(())
    }

    /// Waits (until `deadline`) for the flight lock `flight`; `None` if the
    /// deadline passed, in which case the caller goes ahead on its own.
    pub fn lock(&self, flight: &str, deadline: Instant) -> Option<FlightLock> {
        let name = format!("{flight}{LOCK_SUFFIX}");
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).mode(0o600);
        let file = self.dir.open_with(&name, &options).ok()?.into_std();
        loop {
            match file.try_lock() {
                Ok(()) => return Some(FlightLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return None,
            }
        }
    }

    /// Every intact entry, expired or not (for `cache list`).
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for item in self.dir.entries()? {
            let name = item?.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.ends_with(ENTRY_SUFFIX) {
                continue;
            }
            if let Ok(Some(bytes)) = self.read_ours(name)
                && let Ok(entry) = Entry::decode(&bytes)
            {
                out.push(entry);
            }
        }
        out.sort_by(|a, b| {
            (&a.plugin, &a.registry, a.expires_at).cmp(&(&b.plugin, &b.registry, b.expires_at))
        });
        Ok(out)
    }

    /// Removes the entries of `plugin` (all entries if `None`); returns how many.
    pub fn purge(&self, plugin: Option<&str>) -> Result<usize> {
        let mut removed = 0;
        for item in self.dir.entries()? {
            let name = item?.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(FAILURE_SUFFIX) {
                // After a purge (a rotated password), the next exec calls.
                let _ = self.dir.remove_file(name);
                continue;
            }
            if !name.ends_with(ENTRY_SUFFIX) && !name.ends_with(TMP_SUFFIX) {
                continue;
            }
            let matches = match plugin {
                None => true,
                Some(p) => self
                    .read_ours(name)
                    .ok()
                    .flatten()
                    .and_then(|b| Entry::decode(&b).ok())
                    .is_none_or(|e| e.plugin == p),
            };
            if matches && self.dir.remove_file(name).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Drops expired entries and stale temp files, then the soonest-expiring
    /// entries while more than `max_entries` remain.
    fn evict(&self, now: u64) {
        let Ok(items) = self.dir.entries() else {
            return;
        };
        let mut live: Vec<(u64, String)> = Vec::new();
        for item in items.flatten() {
            let name = item.file_name();
            let Some(name) = name.to_str().map(str::to_string) else {
                continue;
            };
            // Failures are shared for seconds, so a minute-old one is done;
            // temp files that old belong to a killed writer.
            let max_age = if name.ends_with(FAILURE_SUFFIX) {
                Some(Duration::from_secs(60))
            } else if name.ends_with(TMP_SUFFIX) {
                Some(STALE_TMP)
            } else {
                None
            };
            if let Some(max_age) = max_age {
                let old = item
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.into_std().elapsed().ok())
                    .is_some_and(|age| age > max_age);
                if old {
                    let _ = self.dir.remove_file(&name);
                }
                continue;
            }
            if !name.ends_with(ENTRY_SUFFIX) {
                continue;
            }
            match self
                .read_ours(&name)
                .ok()
                .flatten()
                .and_then(|b| Entry::decode(&b).ok())
            {
                Some(entry) if entry.remaining(now).is_some() => {
                    live.push((entry.expires_at, name))
                }
                _ => {
                    let _ = self.dir.remove_file(&name);
                }
            }
        }
        if live.len() > self.max_entries {
            live.sort();
            for (_, name) in &live[..live.len() - self.max_entries] {
                let _ = self.dir.remove_file(name);
            }
        }
    }
}
