//! Framing entries as commitlog messages, done here rather than by `commitlog::MessageBuf`:
//! the offsets are known up front, and the checksum of a small message is computed inline.
//!
//! The message layout is commitlog 0.2's (see `segments.rs`): `offset u64 | size u32 |
//! crc32c u32 | 2 unused bytes | metadata size u16 | payload`, little-endian, no metadata,
//! so the crc is the crc32c of the payload.
//!
//! **One message holds a run of consecutive log entries** (format version 2), not one
//! entry: per 16-byte entry, a message of its own cost a 20-byte header, a checksum and an
//! 8-byte index entry written through commitlog's memory map, which made a durable append
//! twice as expensive as the entry itself. The payload is
//!
//! ```text
//! first entry index u64 | entry count u32 (at least 1) | entry lengths u32 x count | entry bytes
//! ```
//!
//! so a message says which entries it holds, and the checksum covers that too. A message
//! holds at most about [`MSG_TARGET`] bytes of entries (one larger entry gets a message of
//! its own), which bounds what reading one old entry costs.

use commitlog::message::MessageSet;

use super::segments::MSG_HEADER;
use crate::entries::Entries;

/// Inputs at least this long go to the `crc32c` crate (three-way parallel, faster on long
/// inputs); shorter ones are checksummed inline.
const INLINE_CRC_MAX: usize = 256;

/// crc32c (Castagnoli) of `data`, as `crc32c::crc32c` computes it.
pub(super) fn crc32c(data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if data.len() < INLINE_CRC_MAX && std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2 (checked just above; std caches the answer).
            return unsafe { crc32c_sse42(data) };
        }
    }
    crc32c::crc32c(data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut crc = u64::from(!0u32);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        crc = _mm_crc32_u64(crc, v);
    }
    let mut c = crc as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

/// Bytes of a message payload before the entry lengths (first index, count).
pub(super) const MSG_PREFIX: u64 = 12;
/// Bytes of one entry's length in a message payload.
pub(super) const LEN_BYTES: u64 = 4;
/// Bytes of entries and their lengths after which a message is closed (a message holds
/// entries up to about this many bytes; an entry larger than this gets a message of its
/// own).
pub(super) const MSG_TARGET: u64 = 64 << 10;

/// The entries of one message payload, checked for consistency (not for the checksum, which
/// commitlog or the scan checks).
pub(super) struct MsgEntries<'a> {
    /// Global index of the first entry.
    pub first: u64,
    lens: &'a [u8],
    data: &'a [u8],
}

impl<'a> MsgEntries<'a> {
    /// Parses a payload; `None` when its parts do not add up.
    pub(super) fn parse(payload: &'a [u8]) -> Option<MsgEntries<'a>> {
        let (first, count) = peek(payload)?;
        let lens_end = (count as usize)
            .checked_mul(LEN_BYTES as usize)?
            .checked_add(MSG_PREFIX as usize)?;
        if count == 0 || lens_end > payload.len() {
            return None;
        }
        let lens = &payload[MSG_PREFIX as usize..lens_end];
        let data = &payload[lens_end..];
        let total: u64 = lens
            .chunks_exact(4)
            .map(|l| u64::from(u32::from_le_bytes([l[0], l[1], l[2], l[3]])))
            .sum();
        (total == data.len() as u64).then_some(MsgEntries { first, lens, data })
    }

    /// Number of entries.
    pub(super) fn count(&self) -> u64 {
        (self.lens.len() / LEN_BYTES as usize) as u64
    }

    /// Global index after the last entry.
    pub(super) fn end(&self) -> u64 {
        self.first + self.count()
    }

    /// Appends the entries of global indexes `from..to` (clamped to this message) to `out`.
    pub(super) fn read_into(&self, from: u64, to: u64, out: &mut crate::entries::Entries) {
        let (from, to) = (from.max(self.first), to.min(self.end()));
        let mut pos = 0usize;
        for (i, l) in self.lens.chunks_exact(4).enumerate() {
            let idx = self.first + i as u64;
            if idx >= to {
                break;
            }
            let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
            if idx >= from {
                out.push(&self.data[pos..pos + len]);
            }
            pos += len;
        }
    }
}

/// The first entry index and the entry count a payload announces (its first
/// [`MSG_PREFIX`] bytes), unchecked; `None` when it is shorter than that.
pub(super) fn peek(payload: &[u8]) -> Option<(u64, u32)> {
    if payload.len() < MSG_PREFIX as usize {
        return None;
    }
    let first = u64::from_le_bytes(payload[0..8].try_into().ok()?);
    let count = u32::from_le_bytes(payload[8..12].try_into().ok()?);
    Some((first, count))
}

/// Bytes on disk of a message holding `entries` entries of `data` bytes in all.
pub(super) fn message_bytes(entries: u64, data: u64) -> u64 {
    MSG_HEADER + MSG_PREFIX + LEN_BYTES * entries + data
}

/// A chunk of messages framed for commitlog, with their offsets set.
#[derive(Default)]
pub(super) struct Framed {
    bytes: Vec<u8>,
    count: usize,
}

impl Framed {
    /// Appends the message of commitlog offset `offset` holding entries `from..to` of
    /// `entries` (at least one), the first of which is global log entry `first`. Returns
    /// the bytes it takes on disk.
    pub(super) fn push_message(
        &mut self,
        offset: u64,
        first: u64,
        entries: &Entries,
        from: usize,
        to: usize,
    ) -> u64 {
        debug_assert!(from < to && to <= entries.len());
        let ends = entries.ends();
        let start = if from == 0 { 0 } else { ends[from - 1] };
        let data = &entries.data()[start as usize..ends[to - 1] as usize];
        let count = (to - from) as u64;
        let total = message_bytes(count, data.len() as u64);
        let at = self.bytes.len();
        self.bytes.reserve(total as usize);
        self.bytes.extend_from_slice(&[0u8; MSG_HEADER as usize]);
        self.bytes.extend_from_slice(&first.to_le_bytes());
        self.bytes.extend_from_slice(&(count as u32).to_le_bytes());
        let mut prev = start;
        for &e in &ends[from..to] {
            self.bytes
                .extend_from_slice(&((e - prev) as u32).to_le_bytes());
            prev = e;
        }
        self.bytes.extend_from_slice(data);
        let payload = &self.bytes[at + MSG_HEADER as usize..];
        let size =
            u32::try_from(payload.len()).expect("messages are checked against the segment size");
        let crc = crc32c(payload);
        // Header bytes 16..20 (unused u16, metadata size u16) stay zero.
        let head = &mut self.bytes[at..at + MSG_HEADER as usize];
        head[0..8].copy_from_slice(&offset.to_le_bytes());
        head[8..12].copy_from_slice(&size.to_le_bytes());
        head[12..16].copy_from_slice(&crc.to_le_bytes());
        self.count += 1;
        total
    }

    /// Makes room for `bytes` more bytes.
    pub(super) fn reserve(&mut self, bytes: usize) {
        self.bytes.reserve(bytes);
    }

    /// Empties the chunk (keeping its allocation).
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }
}

impl MessageSet for Framed {
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Counted, not found by walking the messages as the trait's default does.
    fn len(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commitlog::message::MessageBuf;

    #[test]
    fn inline_crc_matches_the_crate_at_every_length() {
        let data: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for len in 0..600 {
            for start in [0, 1, 3, 7] {
                let d = &data[start..start + len];
                assert_eq!(crc32c(d), crc32c::crc32c(d), "len {len} start {start}");
            }
        }
    }

    #[test]
    fn framing_is_byte_for_byte_commitlogs_and_parses_back() {
        let items: [&[u8]; 5] = [b"", b"a", b"hello world, 16b", &[0xffu8; 300], b"z"];
        let mut entries = Entries::new();
        for it in items {
            entries.push(it);
        }
        let mut ours = Framed::default();
        let mut theirs = MessageBuf::default();
        // Two messages: entries 0..2 (global 70, 71) and 2..5 (global 72..75).
        for (from, to) in [(0usize, 2usize), (2, 5)] {
            let first = 70 + from as u64;
            let n = ours.push_message(40 + from.min(1) as u64, first, &entries, from, to);
            let mut payload = Vec::new();
            payload.extend_from_slice(&first.to_le_bytes());
            payload.extend_from_slice(&((to - from) as u32).to_le_bytes());
            for it in &items[from..to] {
                payload.extend_from_slice(&(it.len() as u32).to_le_bytes());
            }
            for it in &items[from..to] {
                payload.extend_from_slice(it);
            }
            assert_eq!(n, MSG_HEADER + payload.len() as u64);
            theirs.push(&payload).unwrap();
        }
        commitlog::message::set_offsets(&mut theirs, 40);
        assert_eq!(ours.bytes(), theirs.bytes());
        assert_eq!(ours.len(), 2);
        assert!(ours.verify_hashes().is_ok());

        let mut out = Entries::new();
        let msgs: Vec<_> = theirs.iter().collect();
        let m = MsgEntries::parse(msgs[1].payload()).unwrap();
        assert_eq!((m.first, m.count(), m.end()), (72, 3, 75));
        m.read_into(73, 100, &mut out);
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![&[0xffu8; 300][..], b"z"]
        );
    }

    #[test]
    fn payloads_that_do_not_add_up_are_refused() {
        let mut e = Entries::new();
        e.push(b"abc");
        e.push(b"de");
        let mut f = Framed::default();
        f.push_message(0, 9, &e, 0, 2);
        let payload = f.bytes()[MSG_HEADER as usize..].to_vec();
        assert!(MsgEntries::parse(&payload).is_some());
        for cut in 0..payload.len() {
            assert!(MsgEntries::parse(&payload[..cut]).is_none(), "cut {cut}");
        }
        let mut zero = payload.clone();
        zero[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert!(MsgEntries::parse(&zero).is_none());
        let mut huge = payload.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(MsgEntries::parse(&huge).is_none());
        let mut longer = payload;
        longer[12..16].copy_from_slice(&4u32.to_le_bytes());
        assert!(MsgEntries::parse(&longer).is_none());
    }
}
