//! The heap of the node's static musl binaries (the front and the
//! runtime): dlmalloc, over segments that the kernel maps already
//! populated when they are small.
//!
//! Why: a short process touches each fresh heap page once, and each first
//! touch is a page fault. A precompiled miss took ~54 heap faults, ~1.8 µs
//! each on the bench machine (a VM, where a fault's trap costs more than
//! the zeroing): about 0.1 ms of a 2 ms exec. `MAP_POPULATE` has the
//! kernel allocate and map a whole segment in the `mmap` call, without a
//! trap per page. dlmalloc asks the system for its heap 64 KiB at a time
//! (its granularity), so a segment is populated whole at a cost of a few
//! pages the process may never touch.
//!
//! Only segments up to [`POPULATE_MAX_BYTES`] are populated: a large one
//! is a single big allocation (a module read into memory, say), which
//! may be mostly unused capacity, and is faulted in as it is used.
//!
//! dlmalloc itself is unchanged; host/Cargo.toml says why it, not musl's
//! allocator. This module only supplies its system allocator and the
//! global lock.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr;
use std::sync::{Mutex, PoisonError};

/// The largest system request that is mapped populated.
pub const POPULATE_MAX_BYTES: usize = 256 * 1024;

/// dlmalloc's system allocator: anonymous private mappings, populated up
/// to [`POPULATE_MAX_BYTES`].
pub struct PopulatedSegments;

/// Whether a system request of `size` bytes is mapped populated.
fn populate(size: usize) -> bool {
    size <= POPULATE_MAX_BYTES
}

// SAFETY: every method is the plain mmap/mremap/munmap contract dlmalloc's
// own unix allocator implements; only the `MAP_POPULATE` flag differs,
// which changes when pages are faulted in, not what the mapping is.
unsafe impl dlmalloc::Allocator for PopulatedSegments {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        let mut flags = libc::MAP_ANONYMOUS | libc::MAP_PRIVATE;
        if populate(size) {
            flags |= libc::MAP_POPULATE;
        }
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            (ptr::null_mut(), 0, 0)
        } else {
            (addr.cast(), size, 0)
        }
    }

    fn remap(&self, ptr: *mut u8, oldsize: usize, newsize: usize, can_move: bool) -> *mut u8 {
        let flags = if can_move { libc::MREMAP_MAYMOVE } else { 0 };
        // SAFETY: `ptr`/`oldsize` is a mapping this allocator made
        // (dlmalloc's contract).
        let ptr = unsafe { libc::mremap(ptr.cast(), oldsize, newsize, flags) };
        if ptr == libc::MAP_FAILED {
            ptr::null_mut()
        } else {
            ptr.cast()
        }
    }

    fn free_part(&self, ptr: *mut u8, oldsize: usize, newsize: usize) -> bool {
        // SAFETY: as in `remap`; shrinking in place never moves.
        unsafe {
            if libc::mremap(ptr.cast(), oldsize, newsize, 0) != libc::MAP_FAILED {
                return true;
            }
            libc::munmap(ptr.wrapping_add(newsize).cast(), oldsize - newsize) == 0
        }
    }

    fn free(&self, ptr: *mut u8, size: usize) -> bool {
        // SAFETY: `ptr`/`size` is a whole mapping this allocator made.
        unsafe { libc::munmap(ptr.cast(), size) == 0 }
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        true
    }

    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        4096
    }
}

/// The global allocator: one dlmalloc behind one lock, as dlmalloc's own
/// `GlobalDlmalloc` is.
pub struct Heap(Mutex<dlmalloc::Dlmalloc<PopulatedSegments>>);

impl Heap {
    pub const fn new() -> Self {
        Self(Mutex::new(dlmalloc::Dlmalloc::new_with_allocator(
            PopulatedSegments,
        )))
    }

    fn with<R>(&self, f: impl FnOnce(&mut dlmalloc::Dlmalloc<PopulatedSegments>) -> R) -> R {
        // A panic never happens with the lock held (dlmalloc does not
        // panic, and nothing else runs under it): a poisoned lock is
        // still a consistent heap.
        let mut heap = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut heap)
    }
}

impl Default for Heap {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: each call is dlmalloc's, under the one lock, with the layout the
// caller gives (GlobalAlloc's contract is passed through unchanged).
//
// Not inlined: with LTO, an inlined lock (its poison check) at each of the
// binary's thousands of allocation sites added 440 KB of code to the
// runtime, which a cold exec reads from disk.
unsafe impl GlobalAlloc for Heap {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        self.with(|heap| unsafe { heap.malloc(layout.size(), layout.align()) })
    }

    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: see the impl.
        self.with(|heap| unsafe { heap.free(ptr, layout.size(), layout.align()) })
    }

    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        self.with(|heap| unsafe { heap.calloc(layout.size(), layout.align()) })
    }

    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl.
        self.with(|heap| unsafe { heap.realloc(ptr, layout.size(), layout.align(), new_size) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_segments_are_populated_and_large_ones_are_not() {
        assert!(populate(64 * 1024));
        assert!(populate(POPULATE_MAX_BYTES));
        assert!(!populate(POPULATE_MAX_BYTES + 1));
    }

    /// A private heap (not the global one) allocates, grows, zeroes and
    /// frees through the populated segments, small and large.
    #[test]
    fn a_heap_over_populated_segments_allocates_reallocates_and_frees() {
        let heap = Heap::new();
        unsafe {
            let small = Layout::from_size_align(100, 8).unwrap();
            let a = heap.alloc(small);
            assert!(!a.is_null());
            ptr::write_bytes(a, 0xab, 100);
            let a = heap.realloc(a, small, 300 * 1024);
            assert!(!a.is_null());
            assert!((0..100).all(|i| *a.add(i) == 0xab));
            heap.dealloc(a, Layout::from_size_align(300 * 1024, 8).unwrap());

            let big = Layout::from_size_align(4 << 20, 4096).unwrap();
            let b = heap.alloc_zeroed(big);
            assert!(!b.is_null());
            assert_eq!(b as usize % 4096, 0);
            assert!((0..(4 << 20)).step_by(4096).all(|i| *b.add(i) == 0));
            heap.dealloc(b, big);
        }
    }
}
