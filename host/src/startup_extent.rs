//! Which parts of the runtime binary an exec of it touches, read from the
//! binary's first page: the ranges the front reads into the page cache
//! before it execs a runtime the page cache no longer holds
//! (`crate::page_cache::fill_startup_extent_if_evicted`).
//!
//! The node build links the runtime with `host/hot-text.ld`, which gathers
//! the code a precompiled miss, a hit and an ECR miss run into `.text.hot`
//! after the rest of the text, next to the read-only data; and with
//! `host/startup-extent.ld`, which records the address of `.text.hot` in
//! an ELF note in the first page (`WCP`, type [`NOTE_TYPE`]). With the
//! program headers, also in the first page, that names the extent without
//! reading anything else of the file:
//!
//! - the first page of the executable segment (musl's `_init`, which its
//!   start code calls before `main`);
//! - from the hot text to the unwind tables (`PT_GNU_EH_FRAME`): the hot
//!   code, `.fini` and the read-only data;
//! - the writable segments (TLS image, init arrays, GOT, `.data`).
//!
//! Measured on the bench machine (virtio disk, 8 MB read-ahead): 3.0 of
//! the runtime's 7.5 MB; a cold runtime exec after reading the extent took
//! 4.5-4.6 ms, against 6.4 ms after reading the whole file (a C driver
//! filling then exec'ing the runtime, 25-30 interleaved runs, issue 16).
//!
//! Pure: bytes in, ranges out, every value from the file checked. The
//! binary is the node's own (root's, beside the front), so a wrong record
//! is a build mistake, not an attack; still, whatever the bytes say, the
//! answer is in-bounds ranges of the file or `None` (read all of it), and
//! a wrong range only makes the exec fault in what it needs, as without
//! this.

use std::ops::Range;

use crate::page_cache::PAGE;

/// The note's type: "WCP1", the first version of the record.
pub const NOTE_TYPE: u32 = 0x5743_5031;

/// The note's name, NUL-terminated as ELF notes are.
const NOTE_NAME: &[u8; 4] = b"WCP\0";

/// What is read of the file to find the record: its first page.
pub const HEAD: usize = PAGE as usize;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
/// The size of an ELF64 program header.
const PHDR_SIZE: usize = 56;

/// One program header, the fields used.
#[derive(Debug, Clone, Copy)]
struct Segment {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    align: u64,
}

impl Segment {
    /// The file range the segment's bytes occupy, if it is one.
    fn file_range(&self) -> Option<Range<u64>> {
        Some(self.offset..self.offset.checked_add(self.filesz)?)
    }

    /// The file offset of `vaddr`, if the segment's file bytes hold it.
    fn offset_of(&self, vaddr: u64) -> Option<u64> {
        let within = vaddr.checked_sub(self.vaddr)?;
        if within < self.filesz {
            self.offset.checked_add(within)
        } else {
            None
        }
    }
}

/// The ranges of a file of `file_len` bytes whose first bytes are `head`
/// (at most [`HEAD`] of them) to read before an exec of it, page-aligned,
/// sorted, disjoint, within the file and after `head`; `None` when `head`
/// is not an ELF64 little-endian executable carrying the record, or the
/// record does not fit its program headers.
pub fn ranges(head: &[u8], file_len: u64) -> Option<Vec<Range<u64>>> {
    // A short read of a longer file: the record may be cut off, and the
    // ranges would not start on a page.
    if head.len() < HEAD && (head.len() as u64) < file_len {
        return None;
    }
    let segments = program_headers(head)?;
    let hot = hot_text_address(head, &segments)?;
    let (code, hot_offset) = segments.iter().find_map(|s| {
        let offset = s.offset_of(hot)?;
        (s.kind == PT_LOAD && s.flags & PF_X != 0).then_some((s, offset))
    })?;
    let unwind = segments.iter().find(|s| s.kind == PT_GNU_EH_FRAME)?;
    if unwind.offset <= hot_offset {
        return None;
    }
    let mut wanted = vec![
        code.offset..code.offset.checked_add(code.filesz.min(PAGE))?,
        hot_offset..unwind.offset,
    ];
    for segment in &segments {
        if segment.kind == PT_LOAD && segment.flags & PF_W != 0 && segment.filesz > 0 {
            wanted.push(segment.file_range()?);
        }
    }
    Some(normalize(wanted, head.len() as u64, file_len))
}

/// Rounds each range out to pages, clips it to `[skip, file_len)`, drops
/// the empty ones and merges those that touch.
fn normalize(wanted: Vec<Range<u64>>, skip: u64, file_len: u64) -> Vec<Range<u64>> {
    let mut clipped: Vec<Range<u64>> = wanted
        .into_iter()
        .map(|r| {
            let start = (r.start / PAGE * PAGE).max(skip);
            let end = r.end.div_ceil(PAGE).saturating_mul(PAGE).min(file_len);
            start..end
        })
        .filter(|r| r.start < r.end)
        .collect();
    clipped.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(clipped.len());
    for r in clipped {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The program headers, if `head` is an ELF64 little-endian file whose
/// program header table lies within it.
fn program_headers(head: &[u8]) -> Option<Vec<Segment>> {
    if head.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let table = usize::try_from(u64_at(head, 32)?).ok()?;
    if usize::from(u16_at(head, 54)?) != PHDR_SIZE {
        return None;
    }
    let count = usize::from(u16_at(head, 56)?);
    // The table must be in `head`: that bounds `count` too.
    head.get(table..table.checked_add(count.checked_mul(PHDR_SIZE)?)?)?;
    (0..count)
        .map(|i| {
            let at = table + i * PHDR_SIZE;
            Some(Segment {
                kind: u32_at(head, at)?,
                flags: u32_at(head, at + 4)?,
                offset: u64_at(head, at + 8)?,
                vaddr: u64_at(head, at + 16)?,
                filesz: u64_at(head, at + 32)?,
                align: u64_at(head, at + 48)?,
            })
        })
        .collect()
}

/// The hot text's address, from the first `WCP` note of [`NOTE_TYPE`]
/// with an 8-byte descriptor in a `PT_NOTE` segment within `head`.
fn hot_text_address(head: &[u8], segments: &[Segment]) -> Option<u64> {
    segments.iter().filter(|s| s.kind == PT_NOTE).find_map(|s| {
        let range = s.file_range()?;
        let notes =
            head.get(usize::try_from(range.start).ok()?..usize::try_from(range.end).ok()?)?;
        find_note(notes, if s.align == 8 { 8 } else { 4 })
    })
}

/// Walks the notes in `notes`: each a 12-byte header, the name, the
/// descriptor, the descriptor and the next note starting at a multiple of
/// `align` (4, or 8 in a segment aligned to 8, as readelf reads them).
fn find_note(notes: &[u8], align: usize) -> Option<u64> {
    let pad = |n: usize| n.checked_next_multiple_of(align);
    let mut at = 0usize;
    while at < notes.len() {
        let name_size = usize::try_from(u32_at(notes, at)?).ok()?;
        let desc_size = usize::try_from(u32_at(notes, at + 4)?).ok()?;
        let kind = u32_at(notes, at + 8)?;
        let name_at = at.checked_add(12)?;
        let name_end = name_at.checked_add(name_size)?;
        let desc_at = pad(name_end)?;
        let next = pad(desc_at.checked_add(desc_size)?)?;
        let name = notes.get(name_at..name_end)?;
        if name == NOTE_NAME && kind == NOTE_TYPE && desc_size == 8 {
            return u64_at(notes, desc_at);
        }
        at = next;
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ELF64 header, program headers and the record, laid out as the
    /// node's runtime is (offsets from `readelf -l` of one): a 7.5 MB
    /// file, code from 0x1000, the hot text at 0x3cd100, read-only data
    /// and unwind tables from 0x5a6000, data at 0x7266f8.
    pub(crate) struct Image {
        segments: Vec<[u64; 6]>, // kind, flags, offset, vaddr, filesz, align
        /// The build-id note, at 0x270 (its own 4-aligned PT_NOTE).
        build_id: Vec<u8>,
        /// The record's note, at [`NOTE_AT`] (its own 8-aligned PT_NOTE).
        note: Vec<u8>,
    }

    const NOTE_AT: usize = 0x298;

    pub(crate) const LEN: u64 = 7_520_976;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend((name.len() as u32).to_le_bytes());
        n.extend((desc.len() as u32).to_le_bytes());
        n.extend(kind.to_le_bytes());
        n.extend(name);
        while n.len() % 4 != 0 {
            n.push(0);
        }
        n.extend(desc);
        while n.len() % 4 != 0 {
            n.push(0);
        }
        n
    }

    pub(crate) fn node_runtime() -> Image {
        let build_id = note(b"GNU\0", 3, &[0xab; 20]);
        let notes = note(NOTE_NAME, NOTE_TYPE, &0x7cd100u64.to_le_bytes());
        Image {
            segments: vec![
                [PT_LOAD as u64, 4, 0, 0x400000, 0x2b0, 0x1000],
                [PT_LOAD as u64, 5, 0x1000, 0x401000, 0x5a4ac5, 0x1000],
                [PT_LOAD as u64, 4, 0x5a6000, 0x9a6000, 0x18057c, 0x1000],
                [PT_LOAD as u64, 6, 0x7266f8, 0xb276f8, 0x5568, 0x1000],
                [PT_NOTE as u64, 4, 0x270, 0x400270, build_id.len() as u64, 4],
                [
                    PT_NOTE as u64,
                    4,
                    NOTE_AT as u64,
                    0x400298,
                    notes.len() as u64,
                    8,
                ],
                [PT_GNU_EH_FRAME as u64, 4, 0x6aaa8c, 0xaaaa8c, 0x10674, 4],
                [0x6474e551, 6, 0, 0, 0, 16],
            ],
            build_id,
            note: notes,
        }
    }

    impl Image {
        pub(crate) fn bytes(&self) -> Vec<u8> {
            let mut b = vec![0u8; HEAD];
            b[..6].copy_from_slice(b"\x7fELF\x02\x01");
            b[32..40].copy_from_slice(&64u64.to_le_bytes());
            b[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
            b[56..58].copy_from_slice(&(self.segments.len() as u16).to_le_bytes());
            for (i, s) in self.segments.iter().enumerate() {
                let at = 64 + i * PHDR_SIZE;
                b[at..at + 4].copy_from_slice(&(s[0] as u32).to_le_bytes());
                b[at + 4..at + 8].copy_from_slice(&(s[1] as u32).to_le_bytes());
                for (field, value) in [
                    (8, s[2]),
                    (16, s[3]),
                    (24, s[3]),
                    (32, s[4]),
                    (40, s[4]),
                    (48, s[5]),
                ] {
                    b[at + field..at + field + 8].copy_from_slice(&value.to_le_bytes());
                }
            }
            b[0x270..0x270 + self.build_id.len()].copy_from_slice(&self.build_id);
            b[NOTE_AT..NOTE_AT + self.note.len()].copy_from_slice(&self.note);
            b
        }
    }

    #[test]
    fn the_node_runtime_layout_gives_its_start_up_extent() {
        let got = ranges(&node_runtime().bytes(), LEN).unwrap();
        assert_eq!(
            got,
            vec![
                0x1000..0x2000,     // the first page of code: _init
                0x3cd000..0x6ab000, // hot text to the unwind tables (their first page holds the end of .rodata)
                0x726000..0x72c000, // data (the last page clipped: 0x72bc60 is in it)
            ]
        );
        let total: u64 = got.iter().map(|r| r.end - r.start).sum();
        assert!(total < LEN / 2, "{total}");
    }

    #[test]
    fn without_the_record_or_its_landmarks_the_answer_is_read_everything() {
        // No note.
        let mut image = node_runtime();
        image.note = note(b"GNU\0", 3, &[0xab; 20]);
        image.segments[5][4] = image.note.len() as u64;
        assert_eq!(ranges(&image.bytes(), LEN), None);
        // Another owner's note of the same type, or the wrong size.
        for bad in [
            note(b"WCQ\0", NOTE_TYPE, &0x7cd100u64.to_le_bytes()),
            note(NOTE_NAME, NOTE_TYPE + 1, &0x7cd100u64.to_le_bytes()),
            note(NOTE_NAME, NOTE_TYPE, &0x7cd100u32.to_le_bytes()),
        ] {
            let mut image = node_runtime();
            image.segments[5][4] = bad.len() as u64;
            image.note = bad;
            assert_eq!(ranges(&image.bytes(), LEN), None);
        }
        // No unwind-table header to end the hot extent at.
        let mut image = node_runtime();
        image.segments[6][0] = 0x6474e553;
        assert_eq!(ranges(&image.bytes(), LEN), None);
        // The hot text outside every executable segment.
        let mut image = node_runtime();
        image.segments[1][1] = 4;
        assert_eq!(ranges(&image.bytes(), LEN), None);
        // The unwind tables before the hot text.
        let mut image = node_runtime();
        image.segments[6][2] = 0x2000;
        assert_eq!(ranges(&image.bytes(), LEN), None);
        // Not ELF, 32-bit, big-endian, a short read.
        let good = node_runtime().bytes();
        for (at, byte) in [(0, b'X'), (4, 1), (5, 2)] {
            let mut b = good.clone();
            b[at] = byte;
            assert_eq!(ranges(&b, LEN), None);
        }
        assert_eq!(ranges(&good[..63], LEN), None);
        assert_eq!(ranges(&good[..0x270], LEN), None, "the note cut off");
    }

    #[test]
    fn ranges_stay_inside_the_file_and_after_the_first_page() {
        // A file shorter than the record claims: clipped, never beyond.
        let got = ranges(&node_runtime().bytes(), 0x500000).unwrap();
        assert_eq!(got, vec![0x1000..0x2000, 0x3cd000..0x500000]);
        // Segments that claim the first page or overlap merge, and page 0
        // (already read) is not read again.
        let mut image = node_runtime();
        image.segments[3][2] = 0;
        image.segments[3][4] = 0x3000;
        assert_eq!(
            ranges(&image.bytes(), LEN).unwrap(),
            vec![0x1000..0x3000, 0x3cd000..0x6ab000]
        );
    }

    #[test]
    fn hostile_bytes_never_panic_and_never_name_bytes_outside_the_file() {
        // Every header and note byte flipped to a few extreme values, and
        // a deterministic spray over the whole head.
        let good = node_runtime().bytes();
        let check = |b: &[u8], len: u64| {
            if let Some(rs) = ranges(b, len) {
                let mut last = 0;
                for r in rs {
                    assert!(r.start >= last && r.start < r.end && r.end <= len, "{r:?}");
                    assert!(r.start >= b.len() as u64 && r.start % PAGE == 0);
                    last = r.end;
                }
            }
        };
        let fields = 0..(64 + 8 * PHDR_SIZE);
        let notes = 0x270..NOTE_AT + node_runtime().note.len();
        for at in fields.chain(notes) {
            for value in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut b = good.clone();
                b[at] = value;
                check(&b, LEN);
                check(&b, 0);
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..8 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % 0x300) as usize;
                b[at] = (state >> 32) as u8;
            }
            check(&b, LEN);
        }
        // Offsets and sizes at the limits of u64.
        for value in [u64::MAX, u64::MAX - 0xfff, 1 << 63] {
            for (seg, field) in [
                (1, 2),
                (1, 3),
                (1, 4),
                (3, 2),
                (3, 4),
                (6, 2),
                (5, 2),
                (5, 4),
            ] {
                let mut image = node_runtime();
                image.segments[seg][field] = value;
                check(&image.bytes(), LEN);
            }
            let mut b = good.clone();
            b[32..40].copy_from_slice(&value.to_le_bytes());
            check(&b, LEN);
        }
    }

    #[test]
    fn notes_in_an_8_aligned_segment_are_walked_with_8_byte_padding() {
        // A note whose 1-byte descriptor pads to 8 before the record: read
        // with 4-byte padding the record would be looked for 4 bytes early.
        let mut first = Vec::new();
        first.extend(4u32.to_le_bytes());
        first.extend(1u32.to_le_bytes());
        first.extend(7u32.to_le_bytes());
        first.extend(b"ABC\0");
        first.extend([1, 0, 0, 0, 0, 0, 0, 0]);
        let mut image = node_runtime();
        let record = image.note.clone();
        image.note = [first.clone(), record].concat();
        image.segments[5][4] = image.note.len() as u64;
        assert_eq!(
            ranges(&image.bytes(), LEN),
            ranges(&node_runtime().bytes(), LEN)
        );
        // The same bytes in a 4-aligned segment do not parse as the record.
        image.segments[5][5] = 4;
        assert_eq!(ranges(&image.bytes(), LEN), None);
        // A head cut short of a longer file: not trusted.
        let good = node_runtime().bytes();
        assert_eq!(ranges(&good[..HEAD - 1], LEN), None);
        // A file no longer than what was read: whatever of the extent it
        // holds past its first page (here nothing).
        assert_eq!(ranges(&good[..0x300], 0x300), Some(vec![]));
    }

    #[test]
    fn a_binary_linked_without_the_record_reads_whole() {
        // This test binary: an ELF executable without the note.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(ranges(&exe[..HEAD.min(exe.len())], exe.len() as u64), None);
    }
}
