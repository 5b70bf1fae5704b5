//! Reading a file into the page cache in one sequential pass when it is
//! not there, before it is exec'd or mapped.
//!
//! Why: after a long idle the page cache no longer holds the runtime
//! binary (9 MB). `execve` then faults it in piece by piece: each fault
//! reads around the faulting page, and the kernel ends up reading the
//! whole file in small synchronous steps. Measured on the bench machine
//! (virtio disk), a cold runtime exec took 13-15 ms that way, 7-8 ms when
//! the file was first read sequentially (`sendfile` to `/dev/null`, which
//! fills the page cache without copying to user space). A warm exec pays
//! only the probe: one `preadv2(RWF_NOWAIT)` of its first byte, which
//! fails with `EAGAIN` instead of waiting for the disk when that page is
//! not cached.

use std::fs::File;
use std::os::fd::AsRawFd;

/// The page probed: the file's first, which every use of the files this
/// is for reads (the ELF header, of the binary by `execve`, of an
/// artifact by wasmtime). Pages are evicted least recently used first, so
/// the pages an exec touches go together: a file whose first page is
/// cached is treated as cached.
const PROBED_OFFSET: u64 = 0;

/// What [`fill_if_evicted`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The probed page was cached: nothing read.
    Cached,
    /// The probed page was not cached: the whole file was read (this many
    /// bytes).
    Read(u64),
    /// The file system cannot tell (no `RWF_NOWAIT`), or the file is not a
    /// regular file that can be read: nothing read.
    Unknown,
}

/// Reads all of `file` into the page cache if its probed page is not
/// cached. Best effort: an error stops the read and is not reported (the
/// exec or the mapping that follows faults the rest in, as without this).
pub fn fill_if_evicted(file: &File) -> Fill {
    // The probe first: a warm exec pays that one call.
    match probe(file, PROBED_OFFSET) {
        Probe::Cached => Fill::Cached,
        Probe::Unknown => Fill::Unknown,
        Probe::Evicted => match file.metadata() {
            Ok(meta) if meta.is_file() => Fill::Read(read_through(file, meta.len())),
            _ => Fill::Unknown,
        },
    }
}

enum Probe {
    Cached,
    Evicted,
    Unknown,
}

/// Whether the page holding `offset` is in the page cache, asked without
/// waiting for the disk.
fn probe(file: &File, offset: u64) -> Probe {
    let mut byte = [0u8; 1];
    let iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let Ok(offset) = libc::off_t::try_from(offset) else {
        return Probe::Unknown;
    };
    // SAFETY: one iovec of one byte, valid for the call; a plain read.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
    if n >= 0 {
        return Probe::Cached;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => Probe::Evicted,
        _ => Probe::Unknown,
    }
}

/// Reads `size` bytes of `file` into the page cache through `/dev/null`;
/// returns how many were read.
fn read_through(file: &File, size: u64) -> u64 {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return 0;
    };
    let mut offset: libc::off_t = 0;
    let mut done: u64 = 0;
    while done < size {
        let want = usize::try_from(size - done)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        // SAFETY: both descriptors are open for the call; `offset` is ours
        // and advanced by the kernel (the file's own offset is untouched).
        let n = unsafe { libc::sendfile(null.as_raw_fd(), file.as_raw_fd(), &mut offset, want) };
        if n <= 0 {
            break;
        }
        done += n as u64;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A file written and synced, then dropped from the page cache (if the
    /// file system lets it be: tmpfs never does).
    fn evicted_file(dir: &std::path::Path, len: usize) -> (File, bool) {
        let path = dir.join("evicted");
        let mut file = File::create(&path).unwrap();
        file.write_all(&vec![7u8; len]).unwrap();
        file.sync_all().unwrap();
        drop(file);
        let file = File::open(&path).unwrap();
        // SAFETY: plain advice on an open descriptor.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let evicted = matches!(probe(&file, 0), Probe::Evicted);
        (file, evicted)
    }

    #[test]
    fn an_evicted_file_is_read_once_and_then_found_cached() {
        let dir = tempfile::tempdir().unwrap();
        let len = 3 * 1024 * 1024 + 17;
        let (file, evicted) = evicted_file(dir.path(), len);
        match fill_if_evicted(&file) {
            Fill::Read(n) => {
                assert!(evicted);
                assert_eq!(n, len as u64);
                // The file's own offset is where it was: a reader after
                // the fill starts at the beginning.
                use std::io::Seek;
                assert_eq!((&file).stream_position().unwrap(), 0);
            }
            // A file system that keeps everything (tmpfs) or cannot say.
            other => assert!(!evicted, "{other:?}"),
        }
        assert!(matches!(
            fill_if_evicted(&file),
            Fill::Cached | Fill::Unknown
        ));
    }

    #[test]
    fn a_cached_file_is_not_read_and_odd_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warm");
        std::fs::write(&path, b"warm bytes").unwrap();
        let file = File::open(&path).unwrap();
        assert!(matches!(
            fill_if_evicted(&file),
            Fill::Cached | Fill::Unknown
        ));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        for odd in [
            empty.as_path(),
            dir.path(),
            std::path::Path::new("/dev/null"),
        ] {
            let fill = fill_if_evicted(&File::open(odd).unwrap());
            assert!(
                !matches!(fill, Fill::Read(_)),
                "{}: {fill:?}",
                odd.display()
            );
        }
        assert_eq!(
            fill_if_evicted(&File::open(dir.path()).unwrap()),
            Fill::Unknown
        );
    }
}
