//! Reading a file, or the part of an executable an exec touches, into the
//! page cache in sequential passes when it is not there, before it is
//! exec'd or mapped.
//!
//! Why: after a long idle the page cache no longer holds the runtime
//! binary (7.5 MB). `execve` then faults it in piece by piece: each fault
//! reads around the faulting page, and the kernel ends up reading the
//! whole file in small synchronous steps. Measured on the bench machine
//! (virtio disk), a cold runtime exec took 13-15 ms that way, 7-8 ms when
//! the file was first read sequentially (`sendfile` to `/dev/null`, which
//! fills the page cache without copying to user space).
//!
//! An executable need not be read whole: [`fill_startup_extent`] reads the
//! part an exec of it touches. The node binaries are linked with the code
//! their execs run gathered in one `.text.hot` section at the end of their
//! text, next to the read-only data (`host/hot-text.ld`,
//! `scripts/order-hot-code`); what an exec never touches (the rest of the
//! code, the unwind tables) stays on disk. Measured on the bench machine,
//! with the page cache cold, a precompiled miss's runtime touched 335 of
//! its 1837 pages, and reading 3.3 MB took 3.1-3.6 ms where the whole file
//! took 5.3-7.4 ms in the same minutes.
//!
//! This is only ever a hint: whatever it leaves out is faulted in by the
//! exec as without it, and nothing it reads changes what runs.
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
const PAGE: u64 = 4096;

/// The largest file filled: the node's runtime is 7.5 MB and an artifact
/// a few, a debug build of the runtime (the tests') about 450 MB;
/// something far larger at those paths is not what this is for, and is
/// left to the exec (which fails or faults in what it uses).
pub const MAX_FILL: u64 = 1 << 30;

/// What [`fill_if_evicted`] and [`fill_startup_extent`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The probed page was cached: nothing read.
    Cached,
    /// The probed page was not cached: the file, or the part of it an exec
    /// touches, was read (this many bytes).
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
    fill_with(file, |_, len| whole(len))
}

/// Reads into the page cache the part of the executable `file` that an
/// exec of it touches, if its probed page is not cached: its first page
/// and every allocated section other than the cold code and the unwind
/// tables, when the file has a `.text.hot` section (see the module doc);
/// all of it otherwise, or when its headers do not parse. Best effort, as
/// [`fill_if_evicted`].
pub fn fill_startup_extent(file: &File) -> Fill {
    fill_with(file, |file, len| {
        startup_extent(file, len).unwrap_or_else(|| whole(len))
    })
}

/// All of a file of `len` bytes, as ranges.
fn whole(len: u64) -> Vec<Range<u64>> {
    std::iter::once(0..len).collect()
}

fn fill_with(file: &File, ranges: impl FnOnce(&File, u64) -> Vec<Range<u64>>) -> Fill {
    // The probe first: a warm exec pays that one call.
    match probe(file, PROBED_OFFSET) {
        Probe::Cached => Fill::Cached,
        Probe::Unknown => Fill::Unknown,
        Probe::Evicted => match file.metadata() {
            // Nothing to read (`cachestat` counts no page of an empty file).
            Ok(meta) if meta.is_file() && meta.len() == 0 => Fill::Cached,
            Ok(meta) if meta.is_file() && meta.len() <= MAX_FILL => {
                let len = meta.len();
                let mut read = 0;
                for range in ranges(file, len) {
                    read += read_through(file, range);
                }
                Fill::Read(read)
            }
            _ => Fill::Unknown,
        },
    }
}

/// The most section headers [`startup_extent`] reads (the node binaries
/// have about 20): a larger table is not a binary this is for, and is not
/// read into memory.
const MAX_SECTIONS: usize = 256;

/// How much of the end of a file [`startup_extent`] asks the kernel to
/// start reading before it reads the header.
const TAIL_HINT: u64 = 64 * 1024;

/// The sections an exec does not touch unless something unwinds (a
/// panic): read only then.
const UNWIND_SECTIONS: [&[u8]; 3] = [b".eh_frame", b".eh_frame_hdr", b".gcc_except_table"];

/// The byte ranges of `file` (of `len` bytes) an exec touches, page
/// aligned, sorted and disjoint: its first page, and every allocated
/// section with file contents except the unwind tables and, the point of
/// it, `.text` (the cold code), when the code an exec runs is gathered in
/// `.text.hot`. `None` when the file is not a 64-bit ELF file of this
/// machine's byte order with such a section, or any header or section
/// lies outside it: the caller then reads the whole file.
fn startup_extent(file: &File, len: u64) -> Option<Vec<Range<u64>>> {
    use object::elf::{FileHeader64, SHF_ALLOC, SHT_NOBITS};
    use object::read::elf::{FileHeader, SectionHeader};
    // The section table is at the end of the file, beside the data an exec
    // maps last: asked for now, its pages are on their way while the
    // header is read, and are not read twice (a hint, as all of this).
    if let Ok(tail) = libc::off64_t::try_from(len.saturating_sub(TAIL_HINT)) {
        // SAFETY: a plain advisory call on an open descriptor.
        unsafe { libc::readahead(file.as_raw_fd(), tail, TAIL_HINT as usize) };
    }
    let data = object::ReadCache::new(PositionalReader { file, len, pos: 0 });
    let header = FileHeader64::<object::Endianness>::parse(&data).ok()?;
    let endian = header.endian().ok()?;
    if endian != object::Endianness::default() {
        return None;
    }
    // Bounded before anything is read into memory: the section table's
    // size comes from the file.
    let count = header.shnum(endian, &data).ok()?;
    let table_end = header
        .e_shoff
        .get(endian)
        .checked_add(u64::try_from(count).ok()?.checked_mul(64)?)?;
    if count == 0 || count > MAX_SECTIONS || table_end > len {
        return None;
    }
    let sections = header.sections(endian, &data).ok()?;
    let mut hot = false;
    // The header page: `execve` reads it first.
    let mut ranges = whole(PAGE.min(len));
    for section in sections.iter() {
        let name = sections.section_name(endian, section).ok()?;
        let flags = section.sh_flags(endian);
        if flags & u64::from(SHF_ALLOC) == 0 || section.sh_type(endian) == SHT_NOBITS {
            continue;
        }
        let start = section.sh_offset(endian);
        let end = start.checked_add(section.sh_size(endian))?;
        if end > len {
            return None;
        }
        hot |= name == b".text.hot" && end > start;
        if name == b".text" || UNWIND_SECTIONS.contains(&name) || end == start {
            continue;
        }
        ranges.push(start / PAGE * PAGE..end.div_ceil(PAGE).saturating_mul(PAGE).min(len));
    }
    hot.then(|| merged(ranges))
}

/// `ranges` sorted, with overlapping and touching ranges joined.
fn merged(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.sort_by_key(|range| range.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => out.push(range),
        }
    }
    out
}

/// Reads for [`object::ReadCache`] with `pread`: the file's own offset
/// (shared with whoever else holds it) is left alone.
struct PositionalReader<'a> {
    file: &'a File,
    len: u64,
    /// Where the next `read` starts.
    pos: u64,
}

impl object::read::ReadCacheOps for PositionalReader<'_> {
    fn len(&mut self) -> Result<u64, ()> {
        Ok(self.len)
    }

    fn seek(&mut self, pos: u64) -> Result<u64, ()> {
        self.pos = pos;
        Ok(pos)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ()> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.pos).map_err(|_| ())?;
        self.pos += n as u64;
        Ok(n)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buf, self.pos).map_err(|_| ())?;
        self.pos += buf.len() as u64;
        Ok(())
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
            for fill in [fill_if_evicted, fill_startup_extent] {
                let fill = fill(&File::open(odd).unwrap());
                assert!(
                    !matches!(fill, Fill::Read(_)),
                    "{}: {fill:?}",
                    odd.display()
                );
            }
        }
        assert_eq!(
            fill_if_evicted(&File::open(dir.path()).unwrap()),
            Fill::Unknown
        );
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

    /// The page size the sections below are aligned to and sized in, so
    /// that each starts and ends on a page of its own.
    const P: usize = PAGE as usize;

    /// An ELF file laid out as the node binaries are: cold code, then the
    /// hot code, read-only data, unwind tables and data (with `hot`
    /// false, no `.text.hot`).
    fn executable(hot: bool) -> Vec<u8> {
        use object::write::Object;
        use object::{Architecture, BinaryFormat, Endianness, SectionKind};
        let mut elf = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let mut section = |name: &str, kind: SectionKind, pages: usize| {
            let id = elf.add_section(Vec::new(), name.as_bytes().to_vec(), kind);
            elf.append_section_data(id, &vec![0xcc; pages * P], PAGE);
        };
        section(".text", SectionKind::Text, 256);
        if hot {
            section(".text.hot", SectionKind::Text, 16);
        }
        section(".rodata", SectionKind::ReadOnlyData, 8);
        section(".eh_frame", SectionKind::ReadOnlyData, 64);
        section(".data", SectionKind::Data, 2);
        let bss = elf.add_section(Vec::new(), b".bss".to_vec(), SectionKind::UninitializedData);
        elf.append_section_bss(bss, 64 * P as u64, PAGE);
        elf.write().unwrap()
    }

    /// Each named section's file range in `bytes`.
    fn section_ranges(bytes: &[u8]) -> std::collections::HashMap<String, Range<u64>> {
        use object::{Object, ObjectSection};
        let file = object::File::parse(bytes).unwrap();
        file.sections()
            .filter_map(|s| {
                let (start, size) = s.file_range()?;
                Some((s.name().unwrap().to_string(), start..start + size))
            })
            .collect()
    }

    fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> File {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        File::open(&path).unwrap()
    }

    #[test]
    fn an_executable_with_hot_code_is_read_without_its_cold_code_and_unwind_tables() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = executable(true);
        let at = section_ranges(&bytes);
        let file = write(dir.path(), "exe", &bytes);
        let len = bytes.len() as u64;
        let extent = startup_extent(&file, len).expect("an extent");
        // The header page, then hot code and read-only data (adjacent: one
        // range), then the data; not the cold code, not .eh_frame.
        assert_eq!(
            extent,
            vec![
                0..PAGE,
                at[".text.hot"].start..at[".rodata"].end,
                at[".data"].clone(),
            ]
        );
        for skipped in [".text", ".eh_frame"] {
            let skipped = &at[skipped];
            assert!(
                extent
                    .iter()
                    .all(|r| r.end <= skipped.start + PAGE || r.start >= skipped.end),
                "{extent:?} reads {skipped:?}"
            );
        }

        // Filled from a cold page cache: exactly those bytes are read, and
        // the cold code stays on disk.
        if !evict(&file) {
            return; // tmpfs keeps everything.
        }
        let expected: u64 = extent.iter().map(|r| r.end - r.start).sum();
        assert_eq!(fill_startup_extent(&file), Fill::Read(expected));
        let middle_of_cold_code = (at[".text"].start + at[".text"].end) / 2;
        assert_eq!(cached(&file, middle_of_cold_code), Some(false));
        assert_eq!(cached(&file, at[".rodata"].start), Some(true));
        assert_eq!(fill_startup_extent(&file), Fill::Cached);
    }

    #[test]
    fn a_file_without_hot_code_or_that_is_not_elf_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let plain = executable(false);
        let file = write(dir.path(), "plain", &plain);
        assert_eq!(startup_extent(&file, plain.len() as u64), None);
        if evict(&file) {
            assert_eq!(fill_startup_extent(&file), Fill::Read(plain.len() as u64));
        }
        for (name, bytes) in [
            ("text", b"#!/bin/sh\necho not a binary\n".to_vec()),
            ("truncated", executable(true)[..40].to_vec()),
        ] {
            let file = write(dir.path(), name, &bytes);
            assert_eq!(startup_extent(&file, bytes.len() as u64), None, "{name}");
        }
    }

    #[test]
    fn hostile_headers_are_refused_before_anything_large_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let good = executable(true);
        let at = section_ranges(&good);
        let shoff = u64::from_le_bytes(good[0x28..0x30].try_into().unwrap()) as usize;
        let patched = |name: &str, patch: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = good.clone();
            patch(&mut bytes);
            let file = write(dir.path(), name, &bytes);
            (startup_extent(&file, bytes.len() as u64), name.to_string())
        };
        // The index of .rodata's header, to corrupt it.
        let rodata_header = {
            use object::read::elf::{FileHeader, SectionHeader};
            let header = object::elf::FileHeader64::<object::Endianness>::parse(&good[..]).unwrap();
            let endian = header.endian().unwrap();
            let sections = header.sections(endian, &good[..]).unwrap();
            let index = sections
                .iter()
                .position(|s| sections.section_name(endian, s).unwrap() == b".rodata")
                .unwrap();
            assert_eq!(
                sections
                    .section(object::SectionIndex(index))
                    .unwrap()
                    .sh_offset(endian),
                at[".rodata"].start
            );
            shoff + index * 64
        };
        for (extent, name) in [
            // A section table claimed to be huge: 65535 entries, and an
            // "extended" count of 4 billion in section 0's size.
            patched("many", &|b| {
                b[0x3c..0x3e].copy_from_slice(&u16::MAX.to_le_bytes())
            }),
            patched("extended", &|b| {
                b[0x3c..0x3e].copy_from_slice(&0u16.to_le_bytes());
                b[shoff + 32..shoff + 40].copy_from_slice(&u64::from(u32::MAX).to_le_bytes());
            }),
            // The table, or a section, beyond the end of the file.
            patched("table past the end", &|b| {
                let far = (b.len() as u64).to_le_bytes();
                b[0x28..0x30].copy_from_slice(&far);
            }),
            patched("section past the end", &|b| {
                let field = rodata_header + 24; // sh_offset
                b[field..field + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            }),
            patched("section size overflows", &|b| {
                let field = rodata_header + 32; // sh_size
                b[field..field + 8].copy_from_slice(&(u64::MAX - 10).to_le_bytes());
            }),
            // Big-endian, or 32-bit: not a binary of this machine.
            patched("big-endian", &|b| b[5] = 2),
            patched("32-bit", &|b| b[4] = 1),
        ] {
            assert_eq!(extent, None, "{name}");
        }

        // A section table that fits in its (sparse, 1 GiB) file but is
        // longer than any binary this is for is refused by its count,
        // before it is read; below the bound the same file parses (the
        // headers after the real ones are zeros: null sections).
        let with_sections = |count: u16| {
            let mut bytes = good.clone();
            bytes[0x3c..0x3e].copy_from_slice(&count.to_le_bytes());
            let path = dir.path().join(format!("sections-{count}"));
            std::fs::write(&path, &bytes).unwrap();
            let len = 1 << 30;
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(len)
                .unwrap();
            startup_extent(&File::open(&path).unwrap(), len)
        };
        assert!(with_sections(MAX_SECTIONS as u16 - 10).is_some());
        assert_eq!(with_sections(MAX_SECTIONS as u16 + 1), None);
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
        for fill in [fill_if_evicted, fill_startup_extent] {
            // Evicted before each: the probe's confirming read starts
            // reading the first page.
            if evict(&file) {
                assert_eq!(fill(&file), Fill::Unknown);
            }
        }
    }

    #[test]
    fn ranges_are_sorted_and_joined() {
        assert_eq!(
            merged(vec![
                8192..12288,
                0..4096,
                4096..8192,
                20480..24576,
                10000..16384
            ]),
            vec![0..16384, 20480..24576]
        );
        assert_eq!(merged(Vec::new()), Vec::<Range<u64>>::new());
    }
}
