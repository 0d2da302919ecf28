//! The in-memory log's entry bytes, kept in chunks that are never moved or copied.
//!
//! A `Vec` that doubles copies the whole log at every reallocation and touches its fresh
//! pages one page fault (4 KiB) at a time. Here the bytes go into chunks: small heap chunks
//! while the log is small (so a node with a short log stays small), then fixed chunks of
//! [`CHUNK`] bytes, each its own `mmap` with `MAP_POPULATE`, so the kernel provides a
//! chunk's 512 pages in one call instead of 512 page faults. Trimming frees whole chunks;
//! nothing is ever moved.
//!
//! Transparent huge pages (`MADV_HUGEPAGE` on 2 MiB-aligned chunks) were measured too: on
//! the benchmark VM they made the 1 KiB-entry case bimodal (0.4x to 1.8x of this), because
//! free 2 MiB blocks there are the ones the guest has handed back to the hypervisor, and
//! first touching them is slow.
//!
//! An entry may span chunks: the log is one byte sequence cut into pieces, and the entries
//! are the end offsets into it.

use std::collections::VecDeque;
use std::ptr::NonNull;

use crate::entries::Entries;

/// The size of a mapped chunk (at most this much memory per log is populated ahead of use).
pub(super) const CHUNK: usize = 2 << 20;

/// The first heap chunk's capacity; each next heap chunk doubles, up to [`CHUNK`].
const MIN_CHUNK: usize = 64 << 10;

/// The entry bytes of a log and their end offsets.
///
/// Offsets are *global*: byte 0 is the first byte ever appended, and trimming does not
/// renumber anything. `ends[i]` is the end of the `i`-th entry kept; the first kept entry
/// starts at `start`. The chunks hold the bytes from `chunks[0].base` (at most `start`) to
/// the end of the last entry, back to back.
#[derive(Default)]
pub(super) struct ChunkedLog {
    chunks: VecDeque<Placed>,
    /// Global offset where the first kept entry starts.
    start: u64,
    ends: Vec<u64>,
}

/// A chunk and the global offset of its first byte.
struct Placed {
    base: u64,
    chunk: Chunk,
}

impl Placed {
    fn end(&self) -> u64 {
        self.base + self.chunk.len() as u64
    }
}

impl ChunkedLog {
    /// Number of entries kept.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Global offset one past the last byte.
    fn end(&self) -> u64 {
        self.ends.last().copied().unwrap_or(self.start)
    }

    /// Appends every entry of `entries`.
    pub(super) fn append(&mut self, entries: &Entries) {
        let base = self.end();
        self.write(entries.data());
        self.ends.extend(entries.ends().iter().map(|e| base + e));
    }

    /// Copies bytes to the end, filling the last chunk and then adding new ones.
    fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = self.chunks.back().map_or(0, |p| p.chunk.room());
            if room == 0 {
                let base = self.chunks.back().map_or(self.start, Placed::end);
                // Grow with the log: double the bytes held, between MIN_CHUNK and CHUNK.
                let held = self.chunks.front().map_or(0, |p| base - p.base) as usize;
                let cap = held
                    .max(bytes.len())
                    .clamp(MIN_CHUNK, CHUNK)
                    .next_power_of_two();
                let chunk = Chunk::new(cap);
                self.chunks.push_back(Placed { base, chunk });
                continue;
            }
            let n = room.min(bytes.len());
            let last = self.chunks.back_mut().expect("a chunk with room exists");
            last.chunk.extend(&bytes[..n]);
            bytes = &bytes[n..];
        }
    }

    /// Appends entries `from..to` (indexes among the kept entries) to `out`; `false` (and
    /// nothing appended) unless `from <= to <= len`.
    pub(super) fn read(&self, from: usize, to: usize, out: &mut Entries) -> bool {
        if from >= to || to > self.ends.len() {
            return from == to && to <= self.ends.len();
        }
        let lo = if from == 0 {
            self.start
        } else {
            self.ends[from - 1]
        };
        let hi = self.ends[to - 1];
        let len = (hi - lo) as usize;
        out.extend_from_pieces(self.pieces(lo, hi), len, &self.ends[from..to], lo)
    }

    /// The bytes of global range `lo..hi` (within the log), as consecutive slices of the
    /// chunks.
    fn pieces(&self, lo: u64, hi: u64) -> impl Iterator<Item = &[u8]> + '_ {
        // The first chunk that ends past `lo` (bases increase along the chunks).
        let first = self.chunks.partition_point(|p| p.end() <= lo);
        self.chunks
            .range(first..)
            .take_while(move |p| p.base < hi)
            .map(move |p| {
                let from = lo.saturating_sub(p.base) as usize;
                let to = ((hi - p.base) as usize).min(p.chunk.len());
                &p.chunk.bytes()[from..to]
            })
    }

    /// Keeps the first `len` entries.
    pub(super) fn truncate(&mut self, len: usize) {
        if len >= self.ends.len() {
            return;
        }
        self.ends.truncate(len);
        let end = self.end();
        // Drop the chunks that start at or past the new end, then shorten the last one.
        let keep = self.chunks.partition_point(|p| p.base < end);
        self.chunks.truncate(keep);
        if let Some(last) = self.chunks.back_mut() {
            last.chunk.truncate((end - last.base) as usize);
        }
    }

    /// Drops the first `n` entries (`n <= len`) and frees every chunk that holds none of
    /// the rest, except the last one while it has room.
    pub(super) fn drain_front(&mut self, n: usize) {
        let n = n.min(self.ends.len());
        if n == 0 {
            return;
        }
        self.start = self.ends[n - 1];
        self.ends.drain(..n);
        while let Some(p) = self.chunks.front() {
            if p.end() > self.start || self.chunks.len() == 1 && p.chunk.room() > 0 {
                break;
            }
            self.chunks.pop_front();
        }
    }
}

impl std::fmt::Debug for ChunkedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChunkedLog({} entries, {} bytes in {} chunks)",
            self.len(),
            self.end() - self.start,
            self.chunks.len()
        )
    }
}

impl Clone for ChunkedLog {
    fn clone(&self) -> Self {
        let mut out = ChunkedLog {
            start: self.start,
            ..ChunkedLog::default()
        };
        for p in self.pieces(self.start, self.end()) {
            out.write(p);
        }
        out.ends.extend_from_slice(&self.ends);
        out
    }
}

/// One chunk of the log's bytes: initialised up to its length, never reallocated.
enum Chunk {
    /// A small chunk from the heap (`capacity` fixed at creation).
    Heap(Vec<u8>),
    /// A [`CHUNK`]-byte chunk of its own mapping.
    Mapped(MappedChunk),
}

impl Chunk {
    fn new(cap: usize) -> Chunk {
        if cap >= CHUNK {
            if let Some(m) = MappedChunk::new() {
                return Chunk::Mapped(m);
            }
        }
        Chunk::Heap(Vec::with_capacity(cap))
    }

    fn len(&self) -> usize {
        match self {
            Chunk::Heap(v) => v.len(),
            Chunk::Mapped(m) => m.len,
        }
    }

    fn room(&self) -> usize {
        match self {
            Chunk::Heap(v) => v.capacity() - v.len(),
            Chunk::Mapped(m) => CHUNK - m.len,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Heap(v) => v,
            Chunk::Mapped(m) => m.bytes(),
        }
    }

    /// Appends `b`, which must fit in [`Chunk::room`].
    fn extend(&mut self, b: &[u8]) {
        match self {
            Chunk::Heap(v) => {
                debug_assert!(b.len() <= v.capacity() - v.len());
                v.extend_from_slice(b);
            }
            Chunk::Mapped(m) => m.extend(b),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Chunk::Heap(v) => v.truncate(len),
            Chunk::Mapped(m) => m.len = m.len.min(len),
        }
    }
}

/// A private anonymous mapping of [`CHUNK`] bytes; its first `len` bytes were written by
/// us (the rest are zeroes from the kernel).
struct MappedChunk {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `MappedChunk` owns its mapping exclusively (no other pointer to it exists), like
// a `Box<[u8]>`; moving it to another thread or sharing `&MappedChunk` (which only reads) is
// as safe as for a `Box`.
unsafe impl Send for MappedChunk {}
// SAFETY: see `Send`; `&MappedChunk` only gives out `&[u8]`.
unsafe impl Sync for MappedChunk {}

impl MappedChunk {
    /// Maps a new chunk, or `None` when the mapping fails (the caller then uses the heap).
    fn new() -> Option<MappedChunk> {
        // MAP_POPULATE: the kernel allocates and zeroes all the chunk's pages in this one
        // call, instead of in one page fault per 4 KiB page when the bytes are first
        // written (the chunk is about to be filled anyway). If it cannot, the mapping still
        // succeeds and the pages fault in on demand.
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing;
        // it aliases nothing.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                CHUNK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        Some(MappedChunk {
            ptr: NonNull::new(raw.cast())?,
            len: 0,
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `CHUNK` bytes, readable, owned by `self` and alive while
        // `self` is; the first `len <= CHUNK` bytes were written by `extend`; the borrow of
        // `self` keeps `extend` (which takes `&mut self`) from writing meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn extend(&mut self, b: &[u8]) {
        assert!(b.len() <= CHUNK - self.len, "chunk overflow");
        // SAFETY: `len + b.len() <= CHUNK`, so the destination is inside our writable
        // mapping; `b` is a live slice that cannot overlap it (the mapping is only reachable
        // through `self`, borrowed mutably here).
        unsafe {
            std::ptr::copy_nonoverlapping(b.as_ptr(), self.ptr.as_ptr().add(self.len), b.len());
        }
        self.len += b.len();
    }
}

impl Drop for MappedChunk {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, which no slice outlives (every
        // slice borrows `self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), CHUNK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(first: u64, n: u64, size: usize) -> Entries {
        let mut e = Entries::new();
        for i in first..first + n {
            let mut v = vec![(i % 251) as u8; size];
            v[..8.min(size)].copy_from_slice(&i.to_le_bytes()[..8.min(size)]);
            e.push(&v);
        }
        e
    }

    fn read_all(log: &ChunkedLog) -> Entries {
        let mut out = Entries::new();
        assert!(log.read(0, log.len(), &mut out));
        out
    }

    /// Appends, reads, truncates and trims across many chunks (sizes that straddle chunk
    /// boundaries, entries larger than a chunk), against a plain `Entries` as the model.
    #[test]
    fn behaves_like_entries() {
        let mut log = ChunkedLog::default();
        let mut model = Entries::new();
        let mut next = 0u64;
        let sizes = [8usize, 1000, 0, 70_000, 3 * CHUNK + 5, 4097, 12];
        for round in 0..40 {
            let size = sizes[round % sizes.len()];
            let n = if size > CHUNK {
                1
            } else {
                1 + (round as u64 * 37) % 300
            };
            let batch = entries(next, n, size);
            next += n;
            log.append(&batch);
            model.extend_from(&batch);
            if round % 7 == 3 {
                let keep = model.len() - model.len() / 5;
                log.truncate(keep);
                model.truncate(keep);
            }
            if round % 5 == 4 {
                let drop = model.len() / 3;
                log.drain_front(drop);
                model.drain_front(drop);
            }
            assert_eq!(log.len(), model.len());
            assert_eq!(read_all(&log), model);
            let (a, b) = (model.len() / 4, model.len() / 2);
            let mut part = Entries::new();
            assert!(log.read(a, b, &mut part));
            assert_eq!(part, model.slice(a, b));
            assert_eq!(read_all(&log.clone()), model);
        }
        // Trimming everything frees all but the last chunk.
        log.drain_front(log.len());
        assert!(log.chunks.len() <= 1);
        assert_eq!(read_all(&log), Entries::new());
        log.append(&entries(0, 3, 5));
        assert_eq!(read_all(&log), entries(0, 3, 5));
    }
}
