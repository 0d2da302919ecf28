//! Framing entries as commitlog messages, done here rather than by `commitlog::MessageBuf`:
//! the offsets are known up front, and the checksum of a small entry is computed inline
//! (commitlog computes two crc32c calls per message, one of them over empty metadata, and
//! for 16-byte entries the calls cost more than the rest of the append).
//!
//! The layout is commitlog 0.2's (see `segments.rs`): `offset u64 | size u32 | crc32c u32
//! | 2 unused bytes | metadata size u16 | payload`, little-endian, no metadata, so the crc
//! is the crc32c of the payload.

use commitlog::message::MessageSet;

use super::segments::MSG_HEADER;

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

/// A chunk of entries framed as commitlog messages, with their offsets set.
#[derive(Default)]
pub(super) struct Framed {
    bytes: Vec<u8>,
    count: usize,
}

impl Framed {
    /// Appends `payload` as the message of log offset `offset`.
    pub(super) fn push(&mut self, offset: u64, payload: &[u8]) {
        let size =
            u32::try_from(payload.len()).expect("entries are checked against the segment size");
        let mut head = [0u8; MSG_HEADER as usize]; // bytes 16..20: unused u16, metadata size u16
        head[0..8].copy_from_slice(&offset.to_le_bytes());
        head[8..12].copy_from_slice(&size.to_le_bytes());
        head[12..16].copy_from_slice(&crc32c(payload).to_le_bytes());
        self.bytes.reserve(head.len() + payload.len());
        self.bytes.extend_from_slice(&head);
        self.bytes.extend_from_slice(payload);
        self.count += 1;
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
    fn framing_is_byte_for_byte_commitlogs() {
        let mut ours = Framed::default();
        let mut theirs = MessageBuf::default();
        for (i, p) in [&b""[..], b"a", b"hello world, 16b", &[0xffu8; 300][..]]
            .iter()
            .enumerate()
        {
            ours.push(40 + i as u64, p);
            theirs.push(p).unwrap();
        }
        commitlog::message::set_offsets(&mut theirs, 40);
        assert_eq!(ours.bytes(), theirs.bytes());
        assert_eq!(ours.len(), theirs.len());
        assert!(ours.verify_hashes().is_ok());
    }
}
