//! A contiguous store of opaque byte entries: one buffer for the bytes and one for the end
//! offsets, so a batch of N entries costs two allocations, not N.

use std::sync::Arc;

use crate::block::Block;

use serde::{Deserialize, Serialize};

/// A sequence of opaque entries stored back to back.
///
/// Entry `i` is `data[ends[i-1]..ends[i]]` (with `ends[-1] = 0`). On the wire (serde) it is
/// the bytes as one byte string and the entry *lengths* (small varints), validated when
/// decoded: the lengths must add up to the byte count.
///
/// [`Entries::share`] makes the bytes shared: clones then share them instead of copying
/// (the leader sends one batch to every follower), and the first change to a shared batch
/// copies it.
#[derive(Clone, Default, Deserialize)]
#[serde(try_from = "EntriesRaw")]
pub struct Entries {
    data: Bytes,
    ends: Vec<u64>,
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        self.ends == other.ends && self.data() == other.data()
    }
}

impl Eq for Entries {}

/// The bytes of a batch: bytes `start..start + len` of a [`Block`], owned (mutable), or
/// shared read-only between clones and with the in-memory log.
///
/// Invariant: the bytes of the range are written. An owned block is written only through
/// `&mut Bytes`; a shared block may still be appended to by the log that made it, but
/// only past every range it handed out (see [`crate::block`]).
enum Bytes {
    Owned {
        block: Block,
        start: usize,
        len: usize,
    },
    Shared {
        block: Arc<Block>,
        start: usize,
        len: usize,
    },
}

impl Default for Bytes {
    fn default() -> Self {
        Bytes::from_vec(Vec::new())
    }
}

impl Clone for Bytes {
    fn clone(&self) -> Self {
        match self {
            Bytes::Owned { .. } => Bytes::from_vec(self.as_slice().to_vec()),
            Bytes::Shared { block, start, len } => Bytes::Shared {
                block: Arc::clone(block),
                start: *start,
                len: *len,
            },
        }
    }
}

impl Bytes {
    fn from_vec(v: Vec<u8>) -> Bytes {
        let len = v.len();
        Bytes::Owned {
            block: Block::from_vec(v),
            start: 0,
            len,
        }
    }

    /// A new shared block holding a copy of `b`.
    fn shared_copy(b: &[u8]) -> Bytes {
        let block = Block::new(b.len());
        // SAFETY: the block is new (nobody else sees it) and holds at least `b.len()` bytes.
        unsafe { block.write(0, b) };
        Bytes::Shared {
            block: Arc::new(block),
            start: 0,
            len: b.len(),
        }
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        let (block, start, len): (&Block, _, _) = match self {
            Bytes::Owned { block, start, len } => (block, *start, *len),
            Bytes::Shared { block, start, len } => (block, *start, *len),
        };
        // SAFETY: the range is written (the type's invariant) and not written again while
        // `self` is borrowed: an owned block is only written through `&mut self`, and a
        // shared block's appender writes past every range it handed out.
        unsafe { block.bytes(start, start + len) }
    }

    #[inline]
    fn len(&self) -> usize {
        match self {
            Bytes::Owned { len, .. } | Bytes::Shared { len, .. } => *len,
        }
    }

    /// Makes the bytes owned with room for `extra` more after them: a shared block is
    /// copied first (unless this is its only user); a full one is replaced by one twice
    /// as large (or moved down within its block when half of it is a drained prefix).
    fn reserve(&mut self, extra: usize) {
        if let Bytes::Shared { .. } = self {
            let Bytes::Shared { block, start, len } = std::mem::take(self) else {
                unreachable!("matched just above");
            };
            *self = match Arc::try_unwrap(block) {
                Ok(block) => Bytes::Owned { block, start, len },
                Err(block) => {
                    let fresh = Block::new(len.saturating_add(extra));
                    // SAFETY: a new block only we hold, large enough; the source range is
                    // written and not written while we read it (the type's invariant).
                    unsafe { fresh.write(0, block.bytes(start, start + len)) };
                    Bytes::Owned {
                        block: fresh,
                        start: 0,
                        len,
                    }
                }
            };
        }
        let Bytes::Owned { block, start, len } = self else {
            unreachable!("made owned just above");
        };
        let need = len.checked_add(extra).expect("capacity overflow");
        if *start + need <= block.cap() {
            return;
        }
        if *start > 0 && need <= block.cap() / 2 {
            // SAFETY: the block is ours alone (`&mut self`, owned); both ranges are in it and
            // the source is written.
            unsafe { block.copy_within(*start, *len, 0) };
            *start = 0;
            return;
        }
        let cap = need.max(block.cap().saturating_mul(2)).max(64);
        let fresh = Block::new(cap);
        // SAFETY: a new block only we hold; the source range is written.
        unsafe { fresh.write(0, block.bytes(*start, *start + *len)) };
        *block = fresh;
        *start = 0;
    }

    /// Appends `b`.
    fn extend(&mut self, b: &[u8]) {
        self.reserve(b.len());
        let Bytes::Owned { block, start, len } = self else {
            unreachable!("reserve makes the bytes owned");
        };
        // SAFETY: `reserve` left room for `b` after the range; the block is ours alone and
        // nothing borrows it (`&mut self`).
        unsafe { block.write(*start + *len, b) };
        *len += b.len();
    }

    /// Keeps the first `n` bytes (a shared range just gets shorter).
    fn truncate(&mut self, n: usize) {
        match self {
            Bytes::Owned { len, .. } | Bytes::Shared { len, .. } => *len = (*len).min(n),
        }
    }

    /// Drops the first `n <= len` bytes (the range starts later; nothing moves).
    fn drain_front(&mut self, n: usize) {
        match self {
            Bytes::Owned { start, len, .. } | Bytes::Shared { start, len, .. } => {
                let n = n.min(*len);
                *start += n;
                *len -= n;
            }
        }
    }
}

impl Serialize for Entries {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct ByteStr<'a>(&'a [u8]);
        impl Serialize for ByteStr<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        struct Lens<'a>(&'a [u64]);
        impl Serialize for Lens<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                let mut prev = 0;
                for &e in self.0 {
                    seq.serialize_element(&(e - prev))?;
                    prev = e;
                }
                seq.end()
            }
        }
        let mut st = s.serialize_struct("Entries", 2)?;
        st.serialize_field("data", &ByteStr(self.data()))?;
        st.serialize_field("lens", &Lens(&self.ends))?;
        st.end()
    }
}

/// The unchecked shape of [`Entries`] on the wire; converted with validation.
#[derive(Deserialize)]
struct EntriesRaw {
    #[serde(with = "bytes_field")]
    data: Bytes,
    lens: Vec<u64>,
}

impl TryFrom<EntriesRaw> for Entries {
    type Error = &'static str;
    fn try_from(r: EntriesRaw) -> Result<Self, Self::Error> {
        const BAD: &str = "entry lengths do not add up to the entry bytes";
        let mut ends = r.lens;
        let mut total = 0u64;
        for e in &mut ends {
            total = total.checked_add(*e).ok_or(BAD)?;
            *e = total;
        }
        Entries::from_bytes(r.data, ends).ok_or(BAD)
    }
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Entries({} entries, {} bytes)",
            self.len(),
            self.data.len()
        )
    }
}

impl Entries {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `entries` entries of `bytes` bytes in total.
    pub fn with_capacity(entries: usize, bytes: usize) -> Self {
        Entries {
            data: Bytes::Owned {
                block: Block::new(bytes),
                start: 0,
                len: 0,
            },
            ends: Vec::with_capacity(entries),
        }
    }

    /// Builds a batch from raw parts. Returns `None` unless `ends` is non-decreasing and its
    /// last value equals `data.len()` (an empty `ends` requires empty `data`).
    pub fn from_parts(data: Vec<u8>, ends: Vec<u64>) -> Option<Self> {
        Self::from_bytes(Bytes::from_vec(data), ends)
    }

    fn from_bytes(data: Bytes, ends: Vec<u64>) -> Option<Self> {
        let mut prev = 0u64;
        for &e in &ends {
            if e < prev {
                return None;
            }
            prev = e;
        }
        if prev != data.len() as u64 {
            return None;
        }
        Some(Entries { data, ends })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total payload bytes.
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// Appends one entry (copies the bytes).
    pub fn push(&mut self, entry: &[u8]) {
        self.data.extend(entry);
        self.ends.push(self.data.len() as u64);
    }

    /// Appends all entries of `other`.
    pub fn extend_from(&mut self, other: &Entries) {
        let base = self.data.len() as u64;
        self.data.extend(other.data());
        self.ends.extend(other.ends.iter().map(|e| e + base));
    }

    /// Appends entries `from..to` of `other` (indexes into `other`).
    pub fn extend_from_range(&mut self, other: &Entries, from: usize, to: usize) {
        let to = to.min(other.len());
        if from >= to {
            return;
        }
        let start = other.start_of(from) as u64;
        let end = other.ends[to - 1] as usize;
        let base = self.data.len() as u64;
        self.data.extend(&other.data()[start as usize..end]);
        self.ends
            .extend(other.ends[from..to].iter().map(|e| e - start + base));
    }

    /// Appends entries given as raw parts: their bytes are `pieces` concatenated
    /// (`byte_len` bytes in all), and entry `i` ends at `ends[i] - origin` within those
    /// bytes. `ends` must be non-decreasing (checked in debug builds). Returns `false` and
    /// leaves `self` unchanged when the parts do not add up (the first end before `origin`,
    /// the last one not at `byte_len`, or pieces of another total length).
    pub(crate) fn extend_from_pieces<'a>(
        &mut self,
        pieces: impl IntoIterator<Item = &'a [u8]>,
        byte_len: usize,
        ends: &[u64],
        origin: u64,
    ) -> bool {
        debug_assert!(ends.windows(2).all(|w| w[0] <= w[1]));
        let fits = match (ends.first(), ends.last()) {
            (Some(&first), Some(&last)) => {
                first >= origin && last.checked_sub(origin) == Some(byte_len as u64)
            }
            _ => byte_len == 0,
        };
        if !fits {
            return false;
        }
        let old = self.data.len();
        self.data.reserve(byte_len);
        for p in pieces {
            self.data.extend(p);
        }
        if self.data.len() - old != byte_len {
            self.data.truncate(old);
            return false;
        }
        let shift = old as u64;
        self.ends.extend(
            ends.iter()
                .map(|e| e.wrapping_sub(origin).wrapping_add(shift)),
        );
        true
    }

    /// A copy of entries `from..to`.
    pub fn slice(&self, from: usize, to: usize) -> Entries {
        let mut out = Entries::new();
        out.extend_from_range(self, from, to);
        out
    }

    /// Entry `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)? as usize;
        Some(&self.data()[self.start_of(i)..end])
    }

    /// Iterates over the entries.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(move |i| {
            let end = self.ends[i] as usize;
            &self.data()[self.start_of(i)..end]
        })
    }

    /// Drops all entries from index `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        let end = if len == 0 {
            0
        } else {
            self.ends[len - 1] as usize
        };
        self.data.truncate(end);
        self.ends.truncate(len);
    }

    /// Drops the first `n` entries (moves the rest down).
    pub fn drain_front(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if n >= self.len() {
            self.clear();
            return;
        }
        let cut = self.ends[n - 1];
        self.data.drain_front(cut as usize);
        self.ends.drain(..n);
        for e in &mut self.ends {
            *e -= cut;
        }
    }

    /// Removes every entry, keeping the allocations (a shared buffer is let go instead).
    pub fn clear(&mut self) {
        match &mut self.data {
            Bytes::Owned { start, len, .. } => (*start, *len) = (0, 0),
            Bytes::Shared { .. } => self.data = Bytes::default(),
        }
        self.ends.clear();
    }

    /// The raw payload bytes of all entries, back to back.
    pub fn data(&self) -> &[u8] {
        self.data.as_slice()
    }

    /// Makes the bytes shared, so that clones of this batch share them instead of copying
    /// them (without copying anything now). The first change to a shared batch copies it.
    pub fn share(&mut self) {
        if let Bytes::Owned { .. } = self.data {
            let Bytes::Owned { block, start, len } = std::mem::take(&mut self.data) else {
                unreachable!("matched just above");
            };
            self.data = Bytes::Shared {
                block: Arc::new(block),
                start,
                len,
            };
        }
    }

    /// The block behind shared bytes and the range of it they are: `(block, start, len)`;
    /// `None` for owned bytes.
    pub(crate) fn shared_bytes(&self) -> Option<(&Arc<Block>, usize, usize)> {
        match &self.data {
            Bytes::Shared { block, start, len } => Some((block, *start, *len)),
            Bytes::Owned { .. } => None,
        }
    }

    /// A batch that is a read-only view of bytes `start..start + len` of `block`, with entry
    /// `i` ending at `ends[i]` within them.
    ///
    /// # Safety
    /// Those bytes are written and nobody writes them again while the block lives. `ends`
    /// is non-decreasing and its last value is `len` (an empty `ends` requires `len == 0`);
    /// this is checked in debug builds only.
    pub(crate) unsafe fn from_shared(
        block: Arc<Block>,
        start: usize,
        len: usize,
        ends: Vec<u64>,
    ) -> Entries {
        debug_assert!(ends.windows(2).all(|w| w[0] <= w[1]));
        debug_assert_eq!(ends.last().copied().unwrap_or(0), len as u64);
        Entries {
            data: Bytes::Shared { block, start, len },
            ends,
        }
    }

    /// The end offset of every entry in [`Entries::data`].
    pub fn ends(&self) -> &[u64] {
        &self.ends
    }

    fn start_of(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize
        }
    }
}

/// Reads the bytes written as one byte string into a new shared block (a length and a
/// memcpy), which the in-memory log can then keep as it is.
mod bytes_field {
    use serde::Deserializer;

    use super::Bytes;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes::shared_copy(v))
            }
        }
        // `deserialize_bytes`, not `deserialize_byte_buf`: a borrowing decoder (bincode from a
        // slice) then checks the claimed length against the bytes actually present before
        // copying, so a forged length prefix cannot make it allocate.
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_truncate_drain() {
        let mut e = Entries::new();
        e.push(b"a");
        e.push(b"");
        e.push(b"ccc");
        assert_eq!(e.len(), 3);
        assert_eq!(e.get(2), Some(&b"ccc"[..]));
        assert_eq!(e.get(1), Some(&b""[..]));
        let s = e.slice(1, 3);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![&b""[..], &b"ccc"[..]]);
        e.drain_front(1);
        assert_eq!(e.iter().collect::<Vec<_>>(), vec![&b""[..], &b"ccc"[..]]);
        e.truncate(1);
        assert_eq!(e.len(), 1);
        assert_eq!(e.byte_len(), 0);
        assert!(Entries::from_parts(vec![1, 2], vec![3]).is_none());
        assert!(Entries::from_parts(vec![1, 2], vec![2, 1]).is_none());
        assert!(Entries::from_parts(vec![1, 2], vec![1, 2]).is_some());
    }

    #[test]
    fn shared_batches_copy_on_write() {
        let mut a = Entries::new();
        a.push(b"one");
        a.push(b"two");
        let owned = a.clone();
        a.share();
        let mut b = a.clone();
        assert_eq!(a, owned);
        assert_eq!(b.data().as_ptr(), a.data().as_ptr());
        b.push(b"three");
        assert_eq!(a, owned);
        assert_eq!(b.len(), 3);
        assert_eq!(b.get(2), Some(&b"three"[..]));
        let mut c = a.clone();
        c.truncate(1);
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![&b"one"[..]]);
        c.clear();
        assert!(c.is_empty() && c.byte_len() == 0);
        a.drain_front(1);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![&b"two"[..]]);
        assert_eq!(owned.len(), 2);
    }
}
