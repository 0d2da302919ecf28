//! The byte formats of the commit record (the slots of the state file) and the redo file.
//!
//! Both use the same frame:
//!
//! ```text
//! magic [8] | version u32 | body length u64 | body | crc32c u32 (of everything before it)
//! ```
//!
//! A redo file is exactly one frame. A slot of the state file (see [`super::record`]) starts
//! with one frame; the bytes after it, up to the end of the slot, are ignored (zeros, or the
//! tail of an older, longer record).
//!
//! All integers are little-endian. The state body is
//!
//! ```text
//! seq u64 | promise (n u32, priority u32, pid u64) | accepted round (same)
//! | decided_idx u64 | compacted_idx u64 | log_len u64
//! | stopsign flag u8 [ next_config_id u32 | node count u32 | nodes u64... | metadata len u32 | metadata ]
//! ```
//!
//! and the redo body is a state body followed by
//!
//! ```text
//! keep u64 | entry count u64 | entry end offsets u64... | data length u64 | data
//! ```

use crate::entries::Entries;
use crate::errors::{StorageError, StorageErrorKind};
use crate::messages::{Ballot, StopSign};

/// Magic of the state file.
pub(super) const STATE_MAGIC: [u8; 8] = *b"OPXSTATE";
/// Magic of the redo file.
pub(super) const REDO_MAGIC: [u8; 8] = *b"OPXREDO\0";
/// Format version of both files.
pub(super) const VERSION: u32 = 2;

/// Bytes of a frame header (magic, version, body length).
pub(super) const FRAME_HEAD: usize = 8 + 4 + 8;
const FRAME_TAIL: usize = 4;

/// Everything the state file records besides its sequence number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct State {
    pub promise: Ballot,
    pub accepted_round: Ballot,
    pub decided_idx: u64,
    pub compacted_idx: u64,
    /// The log length. In a record on disk: the length when it was written (entries
    /// appended by later append-only commits follow it); in memory: the current length.
    pub log_len: u64,
    pub stopsign: Option<StopSign>,
}

/// A decoded redo file: the batch that truncates the committed log to `keep` and appends
/// `entries`, and the state (with sequence number `seq`) that commits it.
pub(super) struct Redo {
    pub seq: u64,
    pub state: State,
    pub keep: u64,
    pub entries: Entries,
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StorageError {
    StorageError::new(StorageErrorKind::Corruption, format!("{what}: {detail}"))
}

fn put_ballot(out: &mut Vec<u8>, b: &Ballot) {
    out.extend_from_slice(&b.n.to_le_bytes());
    out.extend_from_slice(&b.priority.to_le_bytes());
    out.extend_from_slice(&b.pid.to_le_bytes());
}

fn put_state_body(out: &mut Vec<u8>, seq: u64, s: &State) {
    out.extend_from_slice(&seq.to_le_bytes());
    put_ballot(out, &s.promise);
    put_ballot(out, &s.accepted_round);
    out.extend_from_slice(&s.decided_idx.to_le_bytes());
    out.extend_from_slice(&s.compacted_idx.to_le_bytes());
    out.extend_from_slice(&s.log_len.to_le_bytes());
    match &s.stopsign {
        None => out.push(0),
        Some(ss) => {
            out.push(1);
            out.extend_from_slice(&ss.next_config_id.to_le_bytes());
            out.extend_from_slice(&(ss.nodes.len() as u32).to_le_bytes());
            for n in &ss.nodes {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&(ss.metadata.len() as u32).to_le_bytes());
            out.extend_from_slice(&ss.metadata);
        }
    }
}

/// Writes a frame around the body produced by `body`.
fn frame(magic: [u8; 8], body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    body(&mut out);
    let body_len = (out.len() - FRAME_HEAD) as u64;
    out[12..20].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks a frame and returns its body.
fn unframe<'a>(bytes: &'a [u8], magic: [u8; 8], what: &str) -> Result<&'a [u8], StorageError> {
    if bytes.len() < FRAME_HEAD + FRAME_TAIL {
        return Err(corrupt(what, format!("only {} bytes long", bytes.len())));
    }
    if bytes[..8] != magic {
        return Err(corrupt(what, "wrong magic (not a file of this library)"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return Err(corrupt(
            what,
            format!("format version {version}, this build reads version {VERSION}"),
        ));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[12..20]);
    let body_len = u64::from_le_bytes(len8);
    let expected = (FRAME_HEAD + FRAME_TAIL) as u64;
    if body_len.checked_add(expected) != Some(bytes.len() as u64) {
        return Err(corrupt(
            what,
            format!(
                "{} bytes long but its header announces {body_len} body bytes (torn or damaged)",
                bytes.len()
            ),
        ));
    }
    let split = bytes.len() - FRAME_TAIL;
    let stored = u32::from_le_bytes([
        bytes[split],
        bytes[split + 1],
        bytes[split + 2],
        bytes[split + 3],
    ]);
    if crc32c::crc32c(&bytes[..split]) != stored {
        return Err(corrupt(what, "checksum mismatch"));
    }
    Ok(&bytes[FRAME_HEAD..split])
}

/// A bounds-checked reader over a body.
struct Cursor<'a> {
    bytes: &'a [u8],
    what: &'a str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        if self.bytes.len() < n {
            return Err(corrupt(self.what, "body ends early"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, StorageError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, StorageError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, StorageError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn ballot(&mut self) -> Result<Ballot, StorageError> {
        Ok(Ballot {
            n: self.u32()?,
            priority: self.u32()?,
            pid: self.u64()?,
        })
    }
    /// A count of items of `item_bytes` each, checked against what is left.
    fn count(&mut self, raw: u64, item_bytes: usize) -> Result<usize, StorageError> {
        match usize::try_from(raw) {
            Ok(n)
                if n.checked_mul(item_bytes)
                    .is_some_and(|b| b <= self.bytes.len()) =>
            {
                Ok(n)
            }
            _ => Err(corrupt(self.what, format!("count {raw} exceeds the body"))),
        }
    }
}

fn get_state_body(c: &mut Cursor<'_>) -> Result<(u64, State), StorageError> {
    let seq = c.u64()?;
    let promise = c.ballot()?;
    let accepted_round = c.ballot()?;
    let decided_idx = c.u64()?;
    let compacted_idx = c.u64()?;
    let log_len = c.u64()?;
    let stopsign = match c.u8()? {
        0 => None,
        1 => {
            let next_config_id = c.u32()?;
            let raw = c.u32()?;
            let n = c.count(u64::from(raw), 8)?;
            let mut nodes = Vec::with_capacity(n);
            for _ in 0..n {
                nodes.push(c.u64()?);
            }
            let raw = c.u32()?;
            let m = c.count(u64::from(raw), 1)?;
            let metadata = c.take(m)?.to_vec();
            Some(StopSign {
                next_config_id,
                nodes,
                metadata,
            })
        }
        f => return Err(corrupt(c.what, format!("bad stopsign flag {f}"))),
    };
    let state = State {
        promise,
        accepted_round,
        decided_idx,
        compacted_idx,
        log_len,
        stopsign,
    };
    if state.compacted_idx > state.log_len {
        return Err(corrupt(
            c.what,
            format!(
                "compacted index {} is beyond the log length {}",
                state.compacted_idx, state.log_len
            ),
        ));
    }
    Ok((seq, state))
}

/// The bytes of a state file.
pub(super) fn encode_state(seq: u64, s: &State) -> Vec<u8> {
    frame(STATE_MAGIC, |out| put_state_body(out, seq, s))
}

/// Decodes a state file into its sequence number and state.
pub(super) fn decode_state(bytes: &[u8], what: &str) -> Result<(u64, State), StorageError> {
    let body = unframe(bytes, STATE_MAGIC, what)?;
    let mut c = Cursor { bytes: body, what };
    let r = get_state_body(&mut c)?;
    if !c.bytes.is_empty() {
        return Err(corrupt(what, "trailing bytes after the state"));
    }
    Ok(r)
}

/// Bytes of a frame whose header (the first [`FRAME_HEAD`] bytes) is `head`, as the header
/// announces it; `None` when `head` is too short or the length overflows.
pub(super) fn frame_len(head: &[u8]) -> Option<u64> {
    let l = head.get(12..FRAME_HEAD)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(l);
    u64::from_le_bytes(a).checked_add((FRAME_HEAD + FRAME_TAIL) as u64)
}

/// Decodes the commit record at the start of a state-file slot; the bytes after its frame
/// are ignored.
pub(super) fn decode_slot(slot: &[u8], what: &str) -> Result<(u64, State), StorageError> {
    match frame_len(slot).filter(|&n| n <= slot.len() as u64) {
        Some(n) => decode_state(&slot[..n as usize], what),
        // (reports the wrong magic, or the announced length that does not fit)
        None => decode_state(slot, what),
    }
}

/// The bytes of a redo file.
pub(super) fn encode_redo(seq: u64, s: &State, keep: u64, entries: &Entries) -> Vec<u8> {
    frame(REDO_MAGIC, |out| {
        out.reserve(entries.byte_len() + entries.len() * 8 + 64);
        put_state_body(out, seq, s);
        out.extend_from_slice(&keep.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for e in entries.ends() {
            out.extend_from_slice(&e.to_le_bytes());
        }
        out.extend_from_slice(&(entries.byte_len() as u64).to_le_bytes());
        out.extend_from_slice(entries.data());
    })
}

/// Decodes a redo file.
pub(super) fn decode_redo(bytes: &[u8], what: &str) -> Result<Redo, StorageError> {
    let body = unframe(bytes, REDO_MAGIC, what)?;
    let mut c = Cursor { bytes: body, what };
    let (seq, state) = get_state_body(&mut c)?;
    let keep = c.u64()?;
    let raw = c.u64()?;
    let n = c.count(raw, 8)?;
    let mut ends = Vec::with_capacity(n);
    for _ in 0..n {
        ends.push(c.u64()?);
    }
    let raw = c.u64()?;
    let m = c.count(raw, 1)?;
    let data = c.take(m)?.to_vec();
    if !c.bytes.is_empty() {
        return Err(corrupt(what, "trailing bytes after the entries"));
    }
    let entries = Entries::from_parts(data, ends)
        .ok_or_else(|| corrupt(what, "entry offsets do not match the entry bytes"))?;
    if keep.checked_add(entries.len() as u64) != Some(state.log_len) {
        return Err(corrupt(
            what,
            format!(
                "keeps {keep} entries and adds {}, but its state says the log holds {}",
                entries.len(),
                state.log_len
            ),
        ));
    }
    Ok(Redo {
        seq,
        state,
        keep,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            promise: Ballot::new(3, 1, 2),
            accepted_round: Ballot::new(2, 0, 1),
            decided_idx: 5,
            compacted_idx: 2,
            log_len: 9,
            stopsign: Some(StopSign {
                next_config_id: 2,
                nodes: vec![1, 2, 3],
                metadata: b"meta".to_vec(),
            }),
        }
    }

    #[test]
    fn state_roundtrip_and_every_flip_is_caught() {
        let s = sample();
        let bytes = encode_state(7, &s);
        assert_eq!(decode_state(&bytes, "state").unwrap(), (7, s));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(decode_state(&b, "state").is_err(), "flip at {i} undetected");
        }
        for cut in 0..bytes.len() {
            assert!(decode_state(&bytes[..cut], "state").is_err());
        }
    }

    #[test]
    fn slot_ignores_what_follows_the_frame_and_catches_every_flip() {
        let s = sample();
        let frame = encode_state(9, &s);
        let mut slot = frame.clone();
        slot.extend_from_slice(&[0xee; 100]);
        assert_eq!(decode_slot(&slot, "slot").unwrap(), (9, s));
        for i in 0..frame.len() {
            let mut b = slot.clone();
            b[i] ^= 0x10;
            assert!(decode_slot(&b, "slot").is_err(), "flip at {i} undetected");
        }
        assert!(decode_slot(&frame[..frame.len() - 1], "slot").is_err());
        let err = decode_slot(&[0u8; 4096], "slot").unwrap_err();
        assert!(err.message.contains("magic"), "{err}");
    }

    #[test]
    fn redo_roundtrip() {
        let mut e = Entries::new();
        e.push(b"x");
        e.push(b"");
        e.push(b"yz");
        let mut s = sample();
        s.log_len = 7;
        let bytes = encode_redo(4, &s, 4, &e);
        let r = decode_redo(&bytes, "redo").unwrap();
        assert_eq!((r.seq, r.keep, r.entries, r.state), (4, 4, e, s));
        assert!(decode_redo(&bytes[..bytes.len() - 1], "redo").is_err());
    }
}
