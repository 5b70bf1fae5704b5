//! Reading a file, or the parts of an executable an exec touches, into the
//! page cache when it is not there, before it is exec'd or mapped.
//!
//! Why: after a long idle the page cache no longer holds the runtime
//! binary (7.5 MB). `execve` then faults it in piece by piece: each fault
//! reads around the faulting page, and the kernel ends up reading the
//! whole file in small synchronous steps. Measured on the bench machine
//! (virtio disk), a cold runtime exec took 13-15 ms that way, 7-8 ms when
//! the file was first read sequentially (`sendfile` to `/dev/null`, which
//! fills the page cache without copying to user space).
//!
//! For the runtime the front reads less: only what an exec of it touches
//! (`crate::startup_extent`: the first page of code, the hot text, the
//! read-only data and the data, 3.0 of 7.5 MB), found from the file's
//! first page alone. Measured on the bench machine, a cold runtime exec
//! took 3.7-3.9 ms that way against 6.0 ms after reading all of it. A
//! first try that found the extent from the section table (at the end of
//! the file, one more read waiting on the first) measured slower than the
//! whole file (6.63 against 5.80 ms), and so would any exec that touched a
//! page outside the extent: with 8 MB read-ahead, that one fault reads
//! megabytes around it. The record and the program headers need no read
//! but the first page; the cold rounds of `scripts/order-hot-code` keep
//! the exec inside the extent.
//!
//! A warm exec pays only the probe, which asks whether the file's first
//! page is cached without reading it: `cachestat(2)` (Linux 6.5). Where
//! that is missing or refused, and to confirm a page it counts as not
//! cached (overlayfs answers it with zero counts for cached files), a
//! one-byte `preadv2(RWF_NOWAIT)`, which fails with `EAGAIN` instead of
//! waiting for the disk (and on overlayfs fails outright: unknown, so
//! nothing is read).

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;

/// The page probed: the file's first, which every use of the files this
/// is for reads (the ELF header, of the binary by `execve`, of an
/// artifact by wasmtime). Pages are evicted least recently used first, so
/// the pages an exec touches go together: a file whose first page is
/// cached is treated as cached.
const PROBED_OFFSET: u64 = 0;

/// The page size ranges are rounded to (the smallest the kernel caches).
pub(crate) const PAGE: u64 = 4096;

/// The largest file filled: the node's runtime is 7.5 MB and an artifact
/// a few, a debug build of the runtime (the tests') 240-450 MB;
/// something far larger at those paths is not what this is for, and is
/// left to the exec (which fails or faults in what it uses).
pub const MAX_FILL: u64 = 1 << 30;

/// What [`fill_if_evicted`] or [`fill_startup_extent_if_evicted`] found
/// and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The probed page was cached: nothing read.
    Cached,
    /// The probed page was not cached: the file, or the parts of it named,
    /// were read (this many bytes).
    Read(u64),
    /// The file system cannot tell (no `cachestat` or `RWF_NOWAIT`), the
    /// file is not a regular file that can be read, or it is larger than
    /// [`MAX_FILL`]: nothing read. (A file of another type whose probed
    /// page is cached, a block device's say, is `Cached`.)
    Unknown,
}

/// Reads all of `file` into the page cache if its probed page is not
/// cached. Best effort: an error stops the read and is not reported (the
/// exec or the mapping that follows faults the rest in, as without this).
pub fn fill_if_evicted(file: &File) -> Fill {
    fill_with(file, |len| (0, whole(len)))
}

/// Like [`fill_if_evicted`], for an executable: reads its first page and,
/// where that carries the start-up extent record
/// (`crate::startup_extent`), only the parts of the file an exec of it
/// touches; all of it otherwise. `Read` counts the bytes read, the first
/// page included.
pub fn fill_startup_extent_if_evicted(file: &File) -> Fill {
    fill_with(file, |len| {
        let mut head = vec![0u8; crate::startup_extent::HEAD];
        let got = read_head(file, &mut head);
        head.truncate(got);
        match crate::startup_extent::ranges(&head, len) {
            Some(ranges) => (got as u64, ranges),
            None => (0, whole(len)),
        }
    })
}

/// Reads the start of `file` into `head` (a short file, or an error, reads
/// less); how many bytes were read.
fn read_head(file: &File, head: &mut [u8]) -> usize {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

/// All of a file of `len` bytes, as ranges (`vec![0..len]` reads as a
/// vector of `len` numbers, which clippy refuses).
fn whole(len: u64) -> Vec<Range<u64>> {
    std::iter::once(0..len).collect()
}

/// The probe, then the read of what `ranges` names for a file of the
/// length given: bytes it read itself, and the ranges to read.
fn fill_with(file: &File, ranges: impl FnOnce(u64) -> (u64, Vec<Range<u64>>)) -> Fill {
    // The probe first: a warm exec pays that one call.
    match probe(file, PROBED_OFFSET) {
        Probe::Cached => Fill::Cached,
        Probe::Unknown => Fill::Unknown,
        Probe::Evicted => match file.metadata() {
            // Nothing to read (`cachestat` counts no page of an empty file).
            Ok(meta) if meta.is_file() && meta.len() == 0 => Fill::Cached,
            Ok(meta) if meta.is_file() && meta.len() <= MAX_FILL => {
                let len = meta.len();
                let (mut read, ranges) = ranges(len);
                for range in ranges {
                    read += read_through(file, range);
                }
                Fill::Read(read)
            }
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
///
/// `cachestat` decides only when it finds the page cached: a page it
/// counts as missing is asked about again by reading, because overlayfs
/// answers `cachestat` with zero counts for a file whose pages are cached
/// (in its lower layer). That costs a system call on the cold path only,
/// which reads next anyway.
fn probe(file: &File, offset: u64) -> Probe {
    match cachestat(file, offset) {
        Some(true) => Probe::Cached,
        Some(false) | None => probe_by_reading(file, offset),
    }
}

/// `cachestat(2)`'s syscall number where the kernel has one number for
/// every architecture (it is newer than the split; libc does not name it
/// for these yet).
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
const SYS_CACHESTAT: libc::c_long = 451;

/// Whether the page at `offset` is cached, by `cachestat(2)`, which only
/// counts: it neither reads the page nor starts reading it. `None` when
/// the kernel has no such call (before 6.5), refuses it (a seccomp
/// filter, or a file this process may not ask about), or the file is not
/// one it answers for.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
fn cachestat(file: &File, offset: u64) -> Option<bool> {
    /// `struct cachestat_range` (include/uapi/linux/mman.h).
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    /// `struct cachestat`: the page counts over the range.
    #[repr(C)]
    #[derive(Default)]
    struct Counts {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    let range = Range {
        off: offset / PAGE * PAGE,
        len: PAGE,
    };
    let mut counts = Counts::default();
    // SAFETY: both structs are the kernel's layout and live for the call;
    // the call only writes `counts`.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut counts as *mut Counts,
            0u32,
        )
    };
    (rc == 0).then_some(counts.nr_cache > 0)
}

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
fn cachestat(_: &File, _: u64) -> Option<bool> {
    None
}

/// The probe where `cachestat` is missing: a one-byte read that fails
/// instead of waiting for the disk.
fn probe_by_reading(file: &File, offset: u64) -> Probe {
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

/// Reads `range` of `file` into the page cache through `/dev/null`;
/// returns how many bytes were read. `sendfile` rather than `read`: no
/// copy to user space, and the kernel's sequential read-ahead (reading
/// with read-ahead off, `POSIX_FADV_RANDOM`, was three times slower here:
/// it reads in small synchronous steps).
fn read_through(file: &File, range: Range<u64>) -> u64 {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return 0;
    };
    let Ok(mut offset) = libc::off_t::try_from(range.start) else {
        return 0;
    };
    let mut done: u64 = 0;
    let size = range.end.saturating_sub(range.start);
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

    /// Drops `file`'s pages from the page cache (if the file system lets
    /// it: tmpfs never does) and says whether its first page is gone,
    /// asked with `cachestat`, which does not disturb it (a reading probe
    /// would start reading the page, and a later probe could find it
    /// cached). False where `cachestat` cannot answer: the tests that need
    /// an evicted file then check only what holds either way.
    fn evict(file: &File) -> bool {
        evicted(file) == Some(true)
    }

    /// [`evict`], saying `None` where `cachestat` cannot answer.
    fn evicted(file: &File) -> Option<bool> {
        file.sync_all().unwrap();
        // SAFETY: plain advice on an open descriptor.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        cached(file, 0).map(|cached| !cached)
    }

    /// Whether the page at `offset` is cached, without disturbing it.
    fn cached(file: &File, offset: u64) -> Option<bool> {
        cachestat(file, offset)
    }

    /// A file written and synced, then dropped from the page cache, and
    /// whether it is known to be gone (`None`: cannot tell).
    fn evicted_file(dir: &std::path::Path, len: usize) -> (File, Option<bool>) {
        let path = dir.join("evicted");
        let mut file = File::create(&path).unwrap();
        file.write_all(&vec![7u8; len]).unwrap();
        drop(file);
        let file = File::open(&path).unwrap();
        let evicted = evicted(&file);
        (file, evicted)
    }

    #[test]
    fn an_evicted_file_is_read_once_and_then_found_cached() {
        let dir = tempfile::tempdir().unwrap();
        let len = 3 * 1024 * 1024 + 17;
        let (file, evicted) = evicted_file(dir.path(), len);
        match fill_if_evicted(&file) {
            Fill::Read(n) => {
                assert_ne!(evicted, Some(false));
                assert_eq!(n, len as u64);
                // The file's own offset is where it was: a reader after
                // the fill starts at the beginning.
                use std::io::Seek;
                assert_eq!((&file).stream_position().unwrap(), 0);
            }
            // A file system that keeps everything (tmpfs) or cannot say.
            other => assert_ne!(evicted, Some(true), "{other:?}"),
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
            for fill in [fill_if_evicted, fill_startup_extent_if_evicted] {
                let fill = fill(&File::open(odd).unwrap());
                assert!(
                    !matches!(fill, Fill::Read(_)),
                    "{}: {fill:?}",
                    odd.display()
                );
            }
        }
        for fill in [fill_if_evicted, fill_startup_extent_if_evicted] {
            assert_eq!(fill(&File::open(dir.path()).unwrap()), Fill::Unknown);
        }
    }

    #[test]
    fn cachestat_counts_without_reading_and_the_probe_confirms_by_reading() {
        let dir = tempfile::tempdir().unwrap();
        let (file, evicted) = evicted_file(dir.path(), 64 * 1024);
        if evicted != Some(true) {
            return; // tmpfs or overlayfs, or no cachestat: see above.
        }
        // Asking again and again leaves the page where it is.
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(1));
            assert_eq!(cached(&file, 0), Some(false));
        }
        // The probe's own answer, confirmed by a read that does not wait.
        assert!(matches!(probe(&file, 0), Probe::Evicted));
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut [0u8; 1], 0).unwrap();
        assert_eq!(cached(&file, 0), Some(true));
        assert!(matches!(probe(&file, 0), Probe::Cached));
    }

    #[test]
    fn a_file_larger_than_the_bound_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge");
        std::fs::write(&path, b"x").unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(MAX_FILL + 1)
            .unwrap();
        let file = File::open(&path).unwrap();
        for fill in [fill_if_evicted, fill_startup_extent_if_evicted] {
            // Evicted before each. The probe's confirming read starts
            // reading the first page, and that read can land after the
            // next eviction (the second probe then finds it cached):
            // what must hold is that nothing is read.
            if evict(&file) {
                let got = fill(&file);
                assert!(matches!(got, Fill::Unknown | Fill::Cached), "{got:?}");
            }
        }
    }

    #[test]
    fn an_evicted_executable_with_the_record_is_read_in_part_one_without_it_whole() {
        use crate::startup_extent::tests::{LEN, node_runtime};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime");
        let mut bytes = node_runtime().bytes();
        bytes.resize(LEN as usize, 0x90);
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let expected =
            crate::startup_extent::ranges(&bytes[..crate::startup_extent::HEAD], LEN).unwrap();
        let extent: u64 = 4096 + expected.iter().map(|r| r.end - r.start).sum::<u64>();
        if evict(&file) {
            assert_eq!(fill_startup_extent_if_evicted(&file), Fill::Read(extent));
            // What the extent names is cached; the cold text between its
            // first page of code and the hot text, far from both, is not
            // (read-ahead may take a little past each range).
            assert_eq!(cached(&file, 0x3cd000), Some(true));
            assert_eq!(cached(&file, 0x6a9000), Some(true));
            assert_eq!(cached(&file, 0x200000), Some(false));
            assert!(matches!(
                fill_startup_extent_if_evicted(&file),
                Fill::Cached
            ));
        }
        // The same bytes without the record's magic: read whole.
        let mut plain = bytes;
        plain[0] = 0;
        std::fs::write(&path, &plain).unwrap();
        let file = File::open(&path).unwrap();
        if evict(&file) {
            assert_eq!(fill_startup_extent_if_evicted(&file), Fill::Read(LEN));
        }
        // A file shorter than the first page, evicted: read whole.
        let (short, evicted) = evicted_file(dir.path(), 100);
        if evicted == Some(true) {
            assert_eq!(fill_startup_extent_if_evicted(&short), Fill::Read(100));
        }
    }
}
