//! The in-memory log's entry bytes, kept in chunks that are never moved or copied.
//!
//! A `Vec` that doubles copies the whole log at every reallocation and touches its fresh
//! pages one page fault (4 KiB) at a time. Here the bytes go into chunks: small heap chunks
//! while the log is small (so a node with a short log stays small), then chunks of up to
//! [`CHUNK`] bytes, each its own `mmap` with `MAP_POPULATE` (see [`Block`]), so the kernel
//! provides a chunk's pages in one call instead of one page fault each. Trimming frees whole
//! chunks; nothing is ever moved.
//!
//! Chunks are shared ([`Arc<Block>`]), so that bytes need not be copied on their way in or
//! out:
//! - a large batch that is already shared (the leader's batch, also in the messages to the
//!   followers; a batch a follower decoded) becomes a chunk of its own as it is, unless that
//!   would keep much more memory than its bytes ([`ADOPT_MIN`], [`ADOPT_SLACK`]);
//! - a read that falls within one chunk returns a read-only view of it (the reader keeps the
//!   chunk alive, even after a trim or the log's end). Small batches are copied into the last
//!   chunk; one that does not fit in the little room left starts a new chunk, so that a batch
//!   (the usual read) rarely straddles two chunks.
//!
//! The log only appends to chunks it made, past every view it handed out; a truncation
//! that shortens a chunk somebody else still holds seals it (nothing more is written to it).
//!
//! Transparent huge pages (`MADV_HUGEPAGE` on 2 MiB-aligned chunks) were measured too: on
//! the benchmark VM they made the 1 KiB-entry case bimodal (0.4x to 1.8x of this), because
//! free 2 MiB blocks there are the ones the guest has handed back to the hypervisor, and
//! first touching them is slow.
//!
//! An entry may span chunks: the log is one byte sequence cut into pieces, and the entries
//! are the end offsets into it.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::block::Block;
use crate::entries::Entries;

/// The largest chunk the log makes itself.
pub(super) const CHUNK: usize = 2 << 20;

/// The first heap chunk's capacity; each next chunk doubles, up to [`CHUNK`].
const MIN_CHUNK: usize = 64 << 10;

/// A shared batch of at least this many bytes is kept as a chunk of its own instead of
/// copied (below it, per-chunk overhead and many small allocations would cost more than the
/// copy).
const ADOPT_MIN: usize = 64 << 10;

/// A shared batch is kept as it is only when its block holds at most this fraction
/// (1 / `ADOPT_SLACK`) more than the batch's bytes.
const ADOPT_SLACK: usize = 4;

/// The entry bytes of a log and their end offsets.
///
/// Offsets are *global*: byte 0 is the first byte ever appended, and trimming does not
/// renumber anything. `ends[i]` is the end of the `i`-th entry kept; the first kept entry
/// starts at `start`. The chunks hold the bytes from `chunks[0].base` (at most `start`) to
/// the end of the last entry, back to back.
#[derive(Default)]
pub(in crate::storage) struct ChunkedLog {
    chunks: VecDeque<Placed>,
    /// Global offset where the first kept entry starts.
    start: u64,
    ends: Vec<u64>,
    /// Full-size blocks freed from the front that nobody else held, for the next chunks: a
    /// log trimmed as it grows (or a bounded cache of recent entries) then reuses its
    /// memory instead of mapping and populating fresh pages.
    spare: Vec<Block>,
}

/// Freed full-size blocks kept for reuse at most.
const SPARE_BLOCKS: usize = 2;

/// A chunk: bytes `off..off + len` of a block, at global offset `base`.
///
/// Invariant: those bytes are written; when `writable`, this log made the block and is
/// its only writer, and has handed out views of no bytes past `off + len`.
struct Placed {
    base: u64,
    block: Arc<Block>,
    off: usize,
    len: usize,
    writable: bool,
}

impl Placed {
    fn end(&self) -> u64 {
        self.base + self.len as u64
    }

    /// Bytes that may still be appended.
    fn room(&self) -> usize {
        if self.writable {
            self.block.cap() - self.off - self.len
        } else {
            0
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the range is written (invariant) and never written again: the log only
        // appends past it, and a truncation below it seals the chunk if it is shared.
        unsafe { self.block.bytes(self.off, self.off + self.len) }
    }
}

impl ChunkedLog {
    /// Number of entries kept.
    pub(in crate::storage) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Global offset one past the last byte.
    fn end(&self) -> u64 {
        self.ends.last().copied().unwrap_or(self.start)
    }

    /// Bytes of the entries kept.
    pub(in crate::storage) fn byte_len(&self) -> u64 {
        self.end() - self.start
    }

    /// Drops the oldest entries until at most `bytes` bytes of entries are kept.
    pub(in crate::storage) fn keep_last_bytes(&mut self, bytes: u64) {
        let end = self.end();
        let n = self.ends.partition_point(|&e| e + bytes < end);
        self.drain_front(n);
    }

    /// Appends every entry of `entries`: keeps its bytes as a chunk when they are shared and
    /// large, copies them otherwise.
    pub(in crate::storage) fn append(&mut self, entries: &Entries) {
        let base = self.end();
        match entries.shared_bytes() {
            Some((block, off, len))
                if len >= ADOPT_MIN && block.cap() - len <= len / ADOPT_SLACK =>
            {
                if let Some(last) = self.chunks.back_mut() {
                    last.writable = false;
                }
                self.chunks.push_back(Placed {
                    base,
                    block: Arc::clone(block),
                    off,
                    len,
                    writable: false,
                });
            }
            _ => self.write(entries.data()),
        }
        self.ends.extend(entries.ends().iter().map(|e| base + e));
    }

    /// Copies bytes to the end, filling the last chunk and then adding new ones.
    fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = self.chunks.back().map_or(0, Placed::room);
            let base = self.chunks.back().map_or(self.start, Placed::end);
            // Grow with the log: double the bytes held, between MIN_CHUNK and CHUNK.
            let held = self.chunks.front().map_or(0, |p| base - p.base) as usize;
            let cap = held
                .max(bytes.len())
                .clamp(MIN_CHUNK, CHUNK)
                .next_power_of_two();
            // Start a new chunk rather than split these bytes over two, when that wastes
            // at most an eighth of a chunk.
            let split = room < bytes.len() && bytes.len() <= cap && room <= cap / 8;
            if room == 0 || split {
                if let Some(last) = self.chunks.back_mut() {
                    last.writable = false;
                }
                let block = match self.spare.pop() {
                    Some(b) if cap == CHUNK => b,
                    other => {
                        self.spare.extend(other);
                        Block::new(cap)
                    }
                };
                self.chunks.push_back(Placed {
                    base,
                    block: Arc::new(block),
                    off: 0,
                    len: 0,
                    writable: true,
                });
                continue;
            }
            let n = room.min(bytes.len());
            let last = self.chunks.back_mut().expect("a chunk with room exists");
            // SAFETY: `n <= room`, so the bytes fit in the block; the chunk is writable, so
            // this log is the block's only writer and no view covers bytes past `off + len`
            // (the invariant of `Placed`); `bytes` is not part of the block (`&mut self`).
            unsafe { last.block.write(last.off + last.len, &bytes[..n]) };
            last.len += n;
            bytes = &bytes[n..];
        }
    }

    /// Appends entries `from..to` (indexes among the kept entries) to `out`; `false` (and
    /// nothing appended) unless `from <= to <= len`. When `out` is empty and the entries lie
    /// in one chunk, `out` becomes a read-only view of it (no bytes are copied).
    pub(in crate::storage) fn read(&self, from: usize, to: usize, out: &mut Entries) -> bool {
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
        if out.is_empty() && len > 0 {
            let i = self.chunks.partition_point(|p| p.end() <= lo);
            if let Some(p) = self.chunks.get(i).filter(|p| p.base <= lo && hi <= p.end()) {
                let ends = self.ends[from..to].iter().map(|e| e - lo).collect();
                let at = p.off + (lo - p.base) as usize;
                // SAFETY: bytes `at..at + len` are inside the chunk's range, which is written
                // and never written again (the invariant of `Placed`); `ends` are the kept
                // entries' ends, non-decreasing, rebased to `lo`, the last one at `len`.
                *out = unsafe { Entries::from_shared(Arc::clone(&p.block), at, len, ends) };
                return true;
            }
        }
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
                let to = ((hi - p.base) as usize).min(p.len);
                &p.bytes()[from..to]
            })
    }

    /// Keeps the first `len` entries.
    pub(in crate::storage) fn truncate(&mut self, len: usize) {
        if len >= self.ends.len() {
            return;
        }
        self.ends.truncate(len);
        let end = self.end();
        // Drop the chunks that start at or past the new end, then shorten the last one.
        let keep = self.chunks.partition_point(|p| p.base < end);
        self.chunks.truncate(keep);
        if let Some(last) = self.chunks.back_mut() {
            let new_len = (end - last.base) as usize;
            if new_len < last.len {
                last.len = new_len;
                // Somebody may read the cut bytes through a view: never overwrite them.
                if Arc::get_mut(&mut last.block).is_none() {
                    last.writable = false;
                }
            }
        }
    }

    /// Drops the first `n` entries (`n <= len`) and frees every chunk that holds none of
    /// the rest, except the last one while it has room.
    pub(in crate::storage) fn drain_front(&mut self, n: usize) {
        let n = n.min(self.ends.len());
        if n == 0 {
            return;
        }
        self.start = self.ends[n - 1];
        self.ends.drain(..n);
        while let Some(p) = self.chunks.front() {
            if p.end() > self.start || self.chunks.len() == 1 && p.room() > 0 {
                break;
            }
            let p = self.chunks.pop_front().expect("a front chunk");
            if self.spare.len() < SPARE_BLOCKS && p.block.cap() == CHUNK {
                // Only a block nobody else holds (no view of it is alive) can be reused.
                if let Ok(block) = Arc::try_unwrap(p.block) {
                    self.spare.push(block);
                }
            }
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
    /// A copy of the bytes into chunks of the copy's own (two logs never write to one
    /// block).
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

    /// Reads within a chunk are views that stay valid and unchanged whatever the log does
    /// next (appends, truncation and rewriting, trimming, being dropped); large shared
    /// batches are kept as they are.
    /// A bounded log (trimmed as it grows) reuses freed full-size blocks, but never one a
    /// view still holds.
    #[test]
    fn freed_blocks_are_reused_unless_viewed() {
        let mut log = ChunkedLog::default();
        let mut next = 0u64;
        let mut held = Vec::new();
        let mut reused = 0;
        for round in 0..400u64 {
            let e = entries(next, 64, 1024);
            next += 64;
            let spares = log.spare.len();
            log.append(&e);
            reused += usize::from(log.spare.len() < spares);
            if round % 7 == 0 && round < 100 {
                // a view of the last batch, kept alive while the log moves on (the blocks
                // of the first rounds can never be reused; the later ones can)
                let mut v = Entries::new();
                assert!(log.read(log.len() - 64, log.len(), &mut v));
                held.push((v.clone(), e));
            }
            if log.byte_len() > 3 * CHUNK as u64 {
                log.keep_last_bytes(CHUNK as u64);
            }
            assert!(log.spare.len() <= SPARE_BLOCKS);
        }
        assert!(
            next * 1024 > 8 * CHUNK as u64,
            "the log went through several blocks"
        );
        assert!(reused > 0, "no freed block was reused");
        for (view, original) in &held {
            assert!(view == original, "a view changed after its block was freed");
        }
        let tail = entries(next - 64, 64, 1024);
        let mut v = Entries::new();
        assert!(log.read(log.len() - 64, log.len(), &mut v));
        assert!(v == tail);
    }

    #[test]
    fn views_outlive_changes_to_the_log() {
        let mut log = ChunkedLog::default();
        let mut model = Entries::new();
        let mut views = Vec::new();
        let mut next = 0u64;
        for round in 0..30u64 {
            let size = [16usize, 1000, 100_000][round as usize % 3];
            let mut batch = entries(next, 1 + round % 7, size);
            next += 1 + round % 7;
            if round % 2 == 0 {
                batch.share();
            }
            let before = model.len();
            log.append(&batch);
            model.extend_from(&batch);
            if let Some((block, off, len)) = batch.shared_bytes() {
                if len >= ADOPT_MIN && block.cap() - len <= len / ADOPT_SLACK {
                    let p = log.chunks.back().unwrap();
                    assert!(Arc::ptr_eq(&p.block, block) && p.off == off && !p.writable);
                }
            }
            let mut v = Entries::new();
            assert!(log.read(before, model.len(), &mut v));
            assert_eq!(v, model.slice(before, model.len()));
            let mut copy = Entries::new();
            copy.extend_from(&v);
            views.push((copy, v));
            if round % 4 == 3 {
                // Cut into what was just read, then write other bytes over it.
                let keep = model.len() - 1;
                log.truncate(keep);
                model.truncate(keep);
                let other = entries(1_000_000 + round, 2, size);
                log.append(&other);
                model.extend_from(&other);
            }
            if round % 5 == 4 {
                let drop = model.len() / 2;
                log.drain_front(drop);
                model.drain_front(drop);
            }
            assert_eq!(read_all(&log), model);
            for (copy, view) in &views {
                assert_eq!(copy, view);
            }
        }
        // At least one read was a view (it shares a block with the log).
        assert!(views.iter().any(|(_, v)| v.shared_bytes().is_some()));
        drop(log);
        for (copy, view) in &views {
            assert_eq!(copy, view);
            assert_eq!(copy.iter().count(), view.len());
        }
    }
}
