//! A fixed-capacity byte buffer that several owners can share while its owner keeps
//! appending to it: the one allocation behind a batch of entries and behind a chunk of the
//! in-memory log, so that a batch can become part of the log, and a read of the log can
//! become a list handed to the user, without copying the bytes.
//!
//! A [`Block`] never reallocates. Large blocks are their own `mmap` with `MAP_POPULATE`: the
//! kernel provides all their pages in one call instead of one page fault per 4 KiB (they
//! are about to be filled); small ones come from the heap.
//!
//! The block itself does not know which of its bytes are written: its users keep that
//! invariant. Shared blocks (`Arc<Block>`) are read through *views* (a range of written
//! bytes) and written only by the one owner that appends past every view; see
//! [`Block::write`] and [`Block::bytes`].

use std::mem::ManuallyDrop;
use std::ptr::NonNull;

/// Blocks of at least this many bytes are mapped (and populated) instead of taken from the
/// heap.
pub(crate) const MAP_MIN: usize = 256 << 10;

const PAGE: usize = 4096;

/// A fixed-capacity byte buffer (see the module documentation).
pub(crate) struct Block {
    ptr: NonNull<u8>,
    cap: usize,
    mapped: bool,
}

// SAFETY: a `Block` owns its allocation exclusively, like a `Box<[u8]>`, so it may move to
// another thread. Shared (`&Block`, `Arc<Block>`) it only gives out `&[u8]` through the
// unsafe `bytes`, and is written through the unsafe `write`, whose contracts forbid a write
// to bytes that anyone reads, on any thread: no data race is possible through it.
unsafe impl Send for Block {}
// SAFETY: see `Send`.
unsafe impl Sync for Block {}

impl Block {
    /// A block of at least `cap` bytes (none written yet).
    pub(crate) fn new(cap: usize) -> Block {
        if cap >= MAP_MIN {
            if let Some(b) = Self::map(cap) {
                return b;
            }
        }
        Self::from_vec(Vec::with_capacity(cap))
    }

    /// A block holding the bytes of `v` (its first `v.len()` bytes are written), without
    /// copying them.
    pub(crate) fn from_vec(v: Vec<u8>) -> Block {
        let mut v = ManuallyDrop::new(v);
        Block {
            // A `Vec`'s pointer is never null (dangling when nothing is allocated).
            ptr: NonNull::new(v.as_mut_ptr()).unwrap_or(NonNull::dangling()),
            cap: v.capacity(),
            mapped: false,
        }
    }

    /// A mapped block of `cap` bytes rounded up to whole pages, or `None` when the mapping
    /// fails (the caller then uses the heap).
    fn map(cap: usize) -> Option<Block> {
        let cap = cap.checked_next_multiple_of(PAGE)?;
        // MAP_POPULATE: the kernel allocates and zeroes all the pages in this one call. If
        // it cannot, the mapping still succeeds and the pages fault in on demand.
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing;
        // it aliases nothing.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        Some(Block {
            ptr: NonNull::new(raw.cast())?,
            cap,
            mapped: true,
        })
    }

    /// The capacity in bytes.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Copies `src` to offset `at`.
    ///
    /// # Safety
    /// `at + src.len() <= cap`; no slice from [`Block::bytes`] that overlaps
    /// `at..at + src.len()` is alive, and no other thread reads or writes those bytes during
    /// the call (the caller is their only writer and hands out no view of them).
    pub(crate) unsafe fn write(&self, at: usize, src: &[u8]) {
        debug_assert!(at <= self.cap && src.len() <= self.cap - at);
        // SAFETY: the destination is inside the allocation (contract); `src` cannot overlap
        // it, since nobody holds a slice of those bytes (contract).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(at), src.len());
        }
    }

    /// Moves bytes `from..from + len` to offset `to` (the ranges may overlap).
    ///
    /// # Safety
    /// Both ranges are inside the capacity, the source range is written, and the caller
    /// owns the block exclusively (it holds no slice of it and nobody else holds it).
    pub(crate) unsafe fn copy_within(&self, from: usize, len: usize, to: usize) {
        debug_assert!(from + len <= self.cap && to + len <= self.cap);
        // SAFETY: in bounds and exclusively owned (contract); `copy` allows overlap.
        unsafe {
            std::ptr::copy(self.ptr.as_ptr().add(from), self.ptr.as_ptr().add(to), len);
        }
    }

    /// The bytes `from..to`.
    ///
    /// # Safety
    /// `from <= to <= cap`; every byte of the range was written (by [`Block::write`] or as
    /// part of the `Vec` given to [`Block::from_vec`]) and is not written again while the
    /// slice is alive.
    pub(crate) unsafe fn bytes(&self, from: usize, to: usize) -> &[u8] {
        debug_assert!(from <= to && to <= self.cap);
        // SAFETY: inside the allocation, initialised and not mutated while borrowed
        // (contract); the allocation lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(from), to - from) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if self.mapped {
            // SAFETY: unmaps exactly the mapping made in `map`; no slice outlives `self`
            // (every slice borrows it).
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.cap);
            }
        } else {
            // SAFETY: `ptr` and `cap` are those of a `Vec<u8>` taken apart in `from_vec`
            // (global allocator, capacity `cap`); length 0 needs nothing initialised. No
            // slice outlives `self`.
            drop(unsafe { Vec::from_raw_parts(self.ptr.as_ptr(), 0, self.cap) });
        }
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block({} bytes, mapped: {})", self.cap, self.mapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_mapped_and_adopted_blocks() {
        for cap in [0, 1, 100, MAP_MIN, MAP_MIN + 1] {
            let b = Block::new(cap);
            assert!(b.cap() >= cap);
            let data: Vec<u8> = (0..cap).map(|i| i as u8).collect();
            // SAFETY: in bounds; nothing borrowed; this thread only.
            unsafe { b.write(0, &data) };
            // SAFETY: written just above.
            assert_eq!(unsafe { b.bytes(0, cap) }, &data[..]);
        }
        let b = Block::from_vec(vec![1, 2, 3]);
        // SAFETY: the Vec's three bytes.
        assert_eq!(unsafe { b.bytes(1, 3) }, &[2, 3]);
        // SAFETY: exclusively owned, in bounds, source written.
        unsafe { b.copy_within(1, 2, 0) };
        // SAFETY: written.
        assert_eq!(unsafe { b.bytes(0, 2) }, &[2, 3]);
    }
}
