//! The wire format: the only place where a [`Message`] becomes bytes and bytes become a
//! [`Message`].
//!
//! One message is a fixed 23-byte header followed by the body:
//!
//! | offset | size | field                                        |
//! |--------|------|----------------------------------------------|
//! | 0      | 2    | magic number [`MAGIC`], `0xCE 0xA9` (Ω in UTF-8) |
//! | 2      | 1    | wire-format version, [`WIRE_VERSION`]         |
//! | 3      | 4    | `config_id`, little endian                    |
//! | 7      | 8    | sender pid (`from`), little endian            |
//! | 15     | 8    | receiver pid (`to`), little endian            |
//! | 23     | ...  | the [`Body`], bincode 2 with the standard configuration (variable-length integers) |
//!
//! The header is fixed so that a router can read the sender, receiver and configuration
//! without decoding the body. The magic number tells a message of this library from
//! anything else: bytes that do not start with it are malformed (garbage, another
//! protocol, or a peer running a libomnipaxos older than wire version 2, which sent no
//! magic), and only a message that starts with it and names another version is an
//! unsupported version. Entry payloads travel as one length-prefixed byte string
//! per batch (see [`Entries`](crate::entries::Entries)), so encoding and decoding a batch
//! costs a copy of its bytes plus one varint per entry, and never one allocation per entry.
//!
//! [`decode`] never panics and never allocates much more than the message it is given
//! (a length prefix that claims more bytes than the message holds is rejected before
//! anything is allocated for it); a message must be consumed exactly, trailing bytes are an
//! error.

use bincode::config::{Configuration, LittleEndian, NoLimit, Varint};

use crate::errors::DecodeError;
use crate::messages::{BleMessage, Body, Message, PaxosMessage};

/// The version of the wire format written by [`encode`] and accepted by [`decode`]. It is
/// bumped whenever the encoding of any message changes.
/// Version 2 added the magic number in front of the version byte.
pub const WIRE_VERSION: u8 = 2;

/// The first two bytes of every message (`Ω` in UTF-8).
pub const MAGIC: [u8; 2] = [0xCE, 0xA9];

/// Length of the fixed header: magic (2) + version (1) + `config_id` (4) + `from` (8) +
/// `to` (8).
pub const HEADER_LEN: usize = 23;

type BincodeConfig = Configuration<LittleEndian, Varint, NoLimit>;

/// The bincode configuration of the body. Changing it changes the wire format.
const fn bincode_config() -> BincodeConfig {
    bincode::config::standard()
}

/// A bincode writer that appends straight to the caller's buffer (no intermediate `Vec`).
struct AppendWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for AppendWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends the encoding of `msg`, tagged with `config_id`, to `out`.
///
/// `out` may already hold other messages; it is only appended to. Encoding cannot fail:
/// every message type has a fixed shape.
pub fn encode(config_id: u32, msg: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    out.reserve(HEADER_LEN + body_size_hint(&msg.body));
    out.extend_from_slice(&MAGIC);
    out.push(WIRE_VERSION);
    out.extend_from_slice(&config_id.to_le_bytes());
    out.extend_from_slice(&msg.from.to_le_bytes());
    out.extend_from_slice(&msg.to.to_le_bytes());
    let res = bincode::serde::encode_into_writer(&msg.body, AppendWriter(out), bincode_config());
    if let Err(e) = res {
        // Unreachable: the writer never fails and every message serializes sequences with a
        // known length. Never leave half a message behind in release builds.
        out.truncate(start);
        if cfg!(debug_assertions) {
            unreachable!("encoding a message failed: {e}");
        }
    }
}

/// Decodes one message of at most `max_len` bytes; returns its `config_id` and the message.
///
/// Rejects, in this order: a message longer than `max_len` ([`DecodeError::TooLarge`],
/// before anything else is looked at), a message that does not start with [`MAGIC`] or is
/// shorter than the header ([`DecodeError::Malformed`]), a version byte other than
/// [`WIRE_VERSION`] ([`DecodeError::UnsupportedVersion`]), and
/// anything that is not exactly one header and one well-formed body
/// ([`DecodeError::Malformed`]: truncated, garbage, invalid entry offsets, trailing bytes).
pub fn decode(bytes: &[u8], max_len: usize) -> Result<(u32, Message), DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    let header = peek_header(bytes)?;
    let body_bytes = &bytes[HEADER_LEN..];
    let (body, used): (Body, usize) =
        bincode::serde::decode_from_slice(body_bytes, bincode_config())
            .map_err(|e| DecodeError::Malformed(body_error_text(&e)))?;
    if used != body_bytes.len() {
        return Err(DecodeError::Malformed(format!(
            "{} trailing bytes after the message body",
            body_bytes.len() - used
        )));
    }
    Ok((
        header.config_id,
        Message {
            from: header.from,
            to: header.to,
            body,
        },
    ))
}

/// The fixed header of an encoded message: which configuration it belongs to, its sender
/// and its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The sender's `config_id`.
    pub config_id: u32,
    /// The sender's pid.
    pub from: u64,
    /// The receiver's pid.
    pub to: u64,
}

/// Reads the fixed header of an encoded message without decoding its body: to route
/// messages between the nodes of two configurations during a reconfiguration, or to
/// check a receiver. Fails on bytes that do not start with [`MAGIC`] or are shorter than
/// the header ([`DecodeError::Malformed`]) and on a header of another wire-format version
/// ([`DecodeError::UnsupportedVersion`]); the body is not looked at (`decode` checks it).
pub fn peek_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Malformed("the message is empty".into()));
    }
    let magic_len = bytes.len().min(MAGIC.len());
    if bytes[..magic_len] != MAGIC[..magic_len] {
        let hint = if bytes[0] == 1 {
            " (a libomnipaxos before wire version 2 sent no magic number: are all peers \
             running the same version?)"
        } else {
            ""
        };
        return Err(DecodeError::Malformed(format!(
            "the message does not start with the libomnipaxos magic number 0x{:02X} 0x{:02X}: \
             these bytes are not a message of this library{hint}",
            MAGIC[0], MAGIC[1]
        )));
    }
    if let Some(&version) = bytes.get(MAGIC.len()) {
        if version != WIRE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
    }
    split_header(bytes).map(|(h, _)| h).ok_or_else(|| {
        DecodeError::Malformed(format!(
            "the message is {} bytes long, shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        ))
    })
}

/// Splits off and parses the fixed header (magic and version are checked by the caller).
fn split_header(bytes: &[u8]) -> Option<(Header, &[u8])> {
    let body = bytes.get(HEADER_LEN..)?;
    let config_id = bytes.get(3..7)?.try_into().ok()?;
    let from = bytes.get(7..15)?.try_into().ok()?;
    let to = bytes.get(15..23)?.try_into().ok()?;
    Some((
        Header {
            config_id: u32::from_le_bytes(config_id),
            from: u64::from_le_bytes(from),
            to: u64::from_le_bytes(to),
        },
        body,
    ))
}

/// A bincode decoding error of the body as a sentence (bincode's own `Display` prints its
/// `Debug` form).
fn body_error_text(e: &bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError as E;
    let what = match e {
        E::UnexpectedEnd { additional } => {
            format!("the body ends {additional} or more bytes too early (truncated message)")
        }
        E::LimitExceeded => "the body claims more bytes than the message holds".to_string(),
        E::InvalidIntegerType { .. } | E::OutsideUsizeRange(_) => {
            "the body holds an integer that is out of range".to_string()
        }
        E::UnexpectedVariant {
            type_name, found, ..
        } => format!("the body holds an unknown {type_name} kind {found}"),
        E::InvalidBooleanValue(v) => {
            format!("the body holds {v} where a boolean (0 or 1) belongs")
        }
        E::Utf8 { .. } | E::InvalidCharEncoding(_) => {
            "the body holds text that is not valid UTF-8".to_string()
        }
        E::ArrayLengthMismatch { required, found } => {
            format!("the body holds a list of {found} items where {required} belong")
        }
        E::Other(s) => s.to_string(),
        E::OtherString(s) => s.clone(),
        _ => "the body is not a valid message of this wire-format version".to_string(),
    };
    format!("invalid message body: {what}")
}

/// An upper bound on the bytes of any message that carries entries, besides the entries
/// themselves (see [`entry_cost`]) and a StopSign (see [`stopsign_cost`]): the header, the
/// variant tags, every integer field at its widest (a ballot takes at most 19 bytes as
/// varints, a `u64` 9), and the two length prefixes of [`Entries`](crate::entries::Entries).
/// The widest such message (a Promise) takes 107 bytes of it.
///
/// Every message the library produces that carries entries is cut so that
/// `MESSAGE_OVERHEAD + sum(entry_cost) + stopsign_cost <= max_message_bytes`.
pub const MESSAGE_OVERHEAD: usize = 128;

/// The length of `v` as a bincode variable-length integer.
pub const fn varint_len(v: u64) -> usize {
    if v < 251 {
        1
    } else if v <= u16::MAX as u64 {
        3
    } else if v <= u32::MAX as u64 {
        5
    } else {
        9
    }
}

/// The encoded bytes one entry of `len` bytes adds to a message: its bytes and its length.
pub const fn entry_cost(len: usize) -> usize {
    len.saturating_add(varint_len(len as u64))
}

/// An upper bound on the encoded bytes a StopSign adds to a message (the `Some` tag
/// included).
pub fn stopsign_cost(ss: &crate::messages::StopSign) -> usize {
    // Option tag, next_config_id (<= 5), node count (<= 9), nodes (<= 9 each), metadata
    // length (<= 9) and bytes.
    24usize
        .saturating_add(ss.nodes.len().saturating_mul(9))
        .saturating_add(ss.metadata.len())
}

/// The largest entry that fits in a message of `max_message_bytes` (what `append` takes).
pub const fn max_entry_len(max_message_bytes: usize) -> usize {
    let budget = max_message_bytes.saturating_sub(MESSAGE_OVERHEAD);
    // The largest `len` with `len + varint_len(len) <= budget`: for each varint width, the
    // largest length of that width that fits; the best of them.
    let widths: [(usize, u64); 4] = [
        (1, 250),
        (3, u16::MAX as u64),
        (5, u32::MAX as u64),
        (9, u64::MAX),
    ];
    let mut best = 0;
    let mut i = 0;
    while i < widths.len() {
        let (w, top) = widths[i];
        if budget >= w {
            let len = budget - w;
            let len = if (len as u64) > top {
                top as usize
            } else {
                len
            };
            if len > best {
                best = len;
            }
        }
        i += 1;
    }
    best
}

/// The exact length of `msg`'s encoding (header included), computed without writing it.
pub fn encoded_len(msg: &Message) -> usize {
    let mut c = bincode::enc::write::SizeWriter::default();
    // Cannot fail: the writer only counts, and every message has a fixed shape.
    let _ = bincode::serde::encode_into_writer(&msg.body, &mut c, bincode_config());
    HEADER_LEN + c.bytes_written
}

/// A close upper estimate of the encoded body size, so that `encode` reserves once.
fn body_size_hint(body: &Body) -> usize {
    // Fixed fields of the largest variants take well under 96 bytes as varints; an entry
    // end offset takes at most 9 bytes but 5 or fewer in any realistic batch (< 4 GiB).
    const FIXED: usize = 96;
    let entries = |e: &crate::entries::Entries| e.byte_len() + 5 * e.len();
    let stopsign_size = |s: &crate::messages::StopSign| 16 + 9 * s.nodes.len() + s.metadata.len();
    match body {
        Body::Ble(
            BleMessage::HeartbeatRequest { .. }
            | BleMessage::HeartbeatReply { .. }
            | BleMessage::TakeOver { .. },
        ) => FIXED,
        Body::Paxos(p) => match p {
            PaxosMessage::AcceptDecide { entries: e, .. }
            | PaxosMessage::ProposalForward { entries: e, .. }
            | PaxosMessage::PromiseSuffix { entries: e, .. } => FIXED + entries(e),
            PaxosMessage::Promise {
                suffix, stopsign, ..
            }
            | PaxosMessage::AcceptSync {
                suffix, stopsign, ..
            } => FIXED + entries(suffix) + stopsign.as_ref().map_or(0, stopsign_size),
            PaxosMessage::AcceptStopSign { stopsign: s, .. } => FIXED + stopsign_size(s),
            PaxosMessage::PrepareReq { .. }
            | PaxosMessage::Prepare { .. }
            | PaxosMessage::Accepted { .. }
            | PaxosMessage::Decide { .. }
            | PaxosMessage::ForwardAck { .. }
            | PaxosMessage::Trim { .. }
            | PaxosMessage::PrepareRefused { .. }
            | PaxosMessage::PullSuffix { .. } => FIXED,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entries::Entries;
    use crate::messages::{Ballot, BleStatus, QuorumState, StopSign};

    fn entries(n: usize, size: usize) -> Entries {
        let mut e = Entries::new();
        for i in 0..n {
            e.push(&vec![(i % 251) as u8; size]);
        }
        e
    }

    fn ss() -> StopSign {
        StopSign {
            next_config_id: 7,
            nodes: vec![1, 2, 3, u64::MAX],
            metadata: vec![0, 1, 255],
        }
    }

    /// One message of every body variant, with extreme values where they matter.
    fn all_bodies() -> Vec<Body> {
        let b = Ballot::new(3, 9, 2);
        let big = Ballot::new(u32::MAX, u32::MAX, u64::MAX);
        let mut mixed = Entries::new();
        mixed.push(b"");
        mixed.push(b"hello");
        mixed.push(&[0xff; 300]);
        mixed.push(b"");
        vec![
            Body::Ble(BleMessage::HeartbeatRequest {
                round: 0,
                status: BleStatus::default(),
            }),
            Body::Ble(BleMessage::HeartbeatRequest {
                round: u64::MAX,
                status: BleStatus {
                    ballot: big,
                    quorum: QuorumState::Disconnected,
                    content: true,
                    leads: true,
                    priority: u32::MAX,
                    incarnation: u64::MAX,
                    clock: u64::MAX,
                },
            }),
            Body::Ble(BleMessage::HeartbeatReply {
                round: 17,
                status: BleStatus {
                    ballot: b,
                    quorum: QuorumState::Connected,
                    content: true,
                    leads: false,
                    priority: 5,
                    incarnation: 3,
                    clock: 17,
                },
            }),
            Body::Ble(BleMessage::HeartbeatReply {
                round: 0,
                status: BleStatus::default(),
            }),
            Body::Paxos(PaxosMessage::PrepareReq { n: big }),
            Body::Paxos(PaxosMessage::Prepare {
                n: b,
                decided_idx: 10,
                n_accepted: Ballot::new(2, 0, 1),
                accepted_idx: u64::MAX,
            }),
            Body::Paxos(PaxosMessage::Promise {
                n: b,
                n_accepted: big,
                decided_idx: 1,
                accepted_idx: 5,
                suffix_idx: 2,
                suffix: mixed.clone(),
                stopsign: Some(ss()),
            }),
            Body::Paxos(PaxosMessage::Promise {
                n: b,
                n_accepted: b,
                decided_idx: 0,
                accepted_idx: 0,
                suffix_idx: 0,
                suffix: Entries::new(),
                stopsign: None,
            }),
            Body::Paxos(PaxosMessage::AcceptSync {
                n: b,
                sync_idx: 4,
                suffix: entries(10, 3),
                decided_idx: 3,
                stopsign: None,
            }),
            Body::Paxos(PaxosMessage::AcceptSync {
                n: b,
                sync_idx: 0,
                suffix: Entries::new(),
                decided_idx: 0,
                stopsign: Some(StopSign::default()),
            }),
            Body::Paxos(PaxosMessage::AcceptDecide {
                n: b,
                start_idx: 100,
                entries: mixed.clone(),
                decided_idx: 99,
            }),
            Body::Paxos(PaxosMessage::AcceptStopSign {
                n: b,
                idx: 12,
                stopsign: ss(),
            }),
            Body::Paxos(PaxosMessage::Accepted {
                n: b,
                accepted_idx: 13,
                decided_idx: 12,
            }),
            Body::Paxos(PaxosMessage::Decide {
                n: b,
                decided_idx: 13,
            }),
            Body::Paxos(PaxosMessage::ProposalForward {
                session: u64::MAX,
                oldest_unacked: 1,
                first_seq: 3,
                entries: mixed.clone(),
            }),
            Body::Paxos(PaxosMessage::ForwardAck {
                session: 5,
                next_seq: 6,
            }),
            Body::Paxos(PaxosMessage::Trim {
                n: b,
                trimmed_idx: 8,
            }),
            Body::Paxos(PaxosMessage::PrepareRefused {
                n: b,
                promised: big,
            }),
            Body::Ble(BleMessage::TakeOver { floor: big }),
            Body::Paxos(PaxosMessage::PullSuffix {
                n: big,
                n_accepted: b,
                accepted_idx: u64::MAX,
                from_idx: 5,
                max_bytes: 1 << 20,
            }),
            Body::Paxos(PaxosMessage::PromiseSuffix {
                n: b,
                n_accepted: big,
                accepted_idx: 9,
                start_idx: 4,
                entries: mixed,
            }),
        ]
    }

    /// Every message that carries entries, with every integer field at its widest.
    fn widest_bodies(e: &Entries, ss: Option<StopSign>) -> Vec<Body> {
        let big = Ballot::new(u32::MAX, u32::MAX, u64::MAX);
        let m = u64::MAX;
        vec![
            Body::Paxos(PaxosMessage::Promise {
                n: big,
                n_accepted: big,
                decided_idx: m,
                accepted_idx: m,
                suffix_idx: m,
                suffix: e.clone(),
                stopsign: ss.clone(),
            }),
            Body::Paxos(PaxosMessage::AcceptSync {
                n: big,
                sync_idx: m,
                suffix: e.clone(),
                decided_idx: m,
                stopsign: ss,
            }),
            Body::Paxos(PaxosMessage::AcceptDecide {
                n: big,
                start_idx: m,
                entries: e.clone(),
                decided_idx: m,
            }),
            Body::Paxos(PaxosMessage::ProposalForward {
                session: m,
                oldest_unacked: m,
                first_seq: m,
                entries: e.clone(),
            }),
            Body::Paxos(PaxosMessage::PromiseSuffix {
                n: big,
                n_accepted: big,
                accepted_idx: m,
                start_idx: m,
                entries: e.clone(),
            }),
        ]
    }

    #[test]
    fn encoded_len_is_exact() {
        for body in all_bodies() {
            let m = msg(body);
            assert_eq!(encoded_len(&m), enc(u32::MAX, &m).len(), "{m:?}");
        }
    }

    #[test]
    fn message_overhead_bounds_every_message_with_entries() {
        let sizes: [&[usize]; 5] = [
            &[],
            &[0],
            &[0, 250, 251, 65_535, 65_536],
            &[7; 1000],
            &[1 << 20, 3],
        ];
        let big_ss = StopSign {
            next_config_id: u32::MAX,
            nodes: vec![u64::MAX; 300],
            metadata: vec![1; 70_000],
        };
        for lens in sizes {
            let mut e = Entries::new();
            for &l in lens {
                e.push(&vec![9u8; l]);
            }
            let cost: usize = lens.iter().map(|&l| entry_cost(l)).sum();
            for ss in [None, Some(ss()), Some(big_ss.clone())] {
                let ss_cost = ss.as_ref().map_or(0, stopsign_cost);
                for body in widest_bodies(&e, ss.clone()) {
                    let m = Message {
                        from: u64::MAX,
                        to: u64::MAX,
                        body,
                    };
                    let len = encoded_len(&m);
                    assert!(
                        len <= MESSAGE_OVERHEAD + cost + ss_cost,
                        "{len} > {MESSAGE_OVERHEAD} + {cost} + {ss_cost} for {lens:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn max_entry_len_is_the_largest_that_fits() {
        for max in [
            0,
            100,
            128,
            129,
            1024,
            4096,
            65_536 + 200,
            64 << 20,
            1 << 40,
        ] {
            let l = max_entry_len(max);
            if max > MESSAGE_OVERHEAD {
                assert!(MESSAGE_OVERHEAD + entry_cost(l) <= max, "{max}");
                assert!(MESSAGE_OVERHEAD + entry_cost(l + 1) > max, "{max}");
            } else {
                assert_eq!(l, 0);
            }
        }
    }

    fn msg(body: Body) -> Message {
        Message {
            from: 1,
            to: 2,
            body,
        }
    }

    fn enc(config_id: u32, m: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        encode(config_id, m, &mut out);
        out
    }

    const MAX: usize = 1 << 20;

    #[test]
    fn every_variant_round_trips() {
        for (i, body) in all_bodies().into_iter().enumerate() {
            let m = Message {
                from: i as u64 + 1,
                to: u64::MAX - i as u64,
                body,
            };
            let bytes = enc(i as u32, &m);
            let (cid, back) = decode(&bytes, MAX).unwrap();
            assert_eq!(cid, i as u32);
            assert_eq!(back, m);
            // Exactly as long as its own encoding: decode accepts `max_len == len`.
            assert!(decode(&bytes, bytes.len()).is_ok());
        }
    }

    #[test]
    fn the_header_is_read_without_the_body() {
        let m = Message {
            from: 7,
            to: 9,
            body: Body::Ble(BleMessage::HeartbeatRequest {
                round: 3,
                status: BleStatus::default(),
            }),
        };
        let bytes = enc(42, &m);
        let want = Header {
            config_id: 42,
            from: 7,
            to: 9,
        };
        assert_eq!(peek_header(&bytes), Ok(want));
        // The body is not looked at: a damaged one still has a readable header.
        assert_eq!(peek_header(&bytes[..HEADER_LEN]), Ok(want));
        for cut in 0..HEADER_LEN {
            assert!(matches!(
                peek_header(&bytes[..cut]),
                Err(DecodeError::Malformed(_))
            ));
        }
        let mut other = bytes.clone();
        other[2] = WIRE_VERSION + 1;
        assert_eq!(
            peek_header(&other),
            Err(DecodeError::UnsupportedVersion(WIRE_VERSION + 1))
        );
    }

    #[test]
    fn body_size_hint_is_an_upper_bound() {
        for body in all_bodies() {
            let bytes = enc(1, &msg(body.clone()));
            assert!(
                bytes.len() <= HEADER_LEN + body_size_hint(&body),
                "{body:?}: {} > hint",
                bytes.len()
            );
        }
    }

    #[test]
    fn header_layout() {
        let m = Message {
            from: 0x0102_0304_0506_0708,
            to: 0x1112_1314_1516_1718,
            body: Body::Ble(BleMessage::HeartbeatRequest {
                round: 5,
                status: BleStatus::default(),
            }),
        };
        let bytes = enc(0xA1B2_C3D4, &m);
        assert_eq!(&bytes[0..2], &[0xCE, 0xA9]);
        assert_eq!(bytes[2], WIRE_VERSION);
        assert_eq!(WIRE_VERSION, 2);
        assert_eq!(HEADER_LEN, 23);
        assert_eq!(&bytes[3..7], &0xA1B2_C3D4u32.to_le_bytes());
        assert_eq!(&bytes[7..15], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&bytes[15..23], &0x1112_1314_1516_1718u64.to_le_bytes());
        // Body: variant Ble (0), variant HeartbeatRequest (0), round 5 as a one-byte
        // varint, then the default status: ballot (0, 0, 0), Unknown (0), two false bools,
        // priority 0, incarnation 0 and clock 0.
        assert_eq!(&bytes[23..], &[0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn encode_appends() {
        let a = msg(all_bodies().remove(2));
        let b = msg(all_bodies().remove(10));
        let mut out = vec![0xEE];
        encode(1, &a, &mut out);
        let mid = out.len();
        encode(2, &b, &mut out);
        assert_eq!(out[0], 0xEE);
        assert_eq!(decode(&out[1..mid], MAX).unwrap(), (1, a));
        assert_eq!(decode(&out[mid..], MAX).unwrap(), (2, b));
    }

    #[test]
    fn rejects_too_large_before_anything_else() {
        let bytes = enc(1, &msg(all_bodies().remove(10)));
        assert_eq!(
            decode(&bytes, bytes.len() - 1),
            Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: bytes.len() - 1
            })
        );
        // Even garbage with a wrong version is "too large" first.
        assert!(matches!(
            decode(&[9u8; 100], 99),
            Err(DecodeError::TooLarge { len: 100, max: 99 })
        ));
        assert!(matches!(
            decode(&[1u8], 0),
            Err(DecodeError::TooLarge { len: 1, max: 0 })
        ));
    }

    #[test]
    fn rejects_empty_short_and_wrong_version() {
        assert!(matches!(decode(&[], MAX), Err(DecodeError::Malformed(_))));
        let bytes = enc(1, &msg(all_bodies().remove(0)));
        for v in [0u8, 1, 3, 255] {
            let mut b = bytes.clone();
            b[2] = v;
            assert_eq!(decode(&b, MAX), Err(DecodeError::UnsupportedVersion(v)));
        }
        for len in 1..HEADER_LEN {
            match decode(&bytes[..len], MAX) {
                Err(DecodeError::Malformed(m)) => assert!(m.contains("header"), "{m}"),
                other => panic!("{len}: {other:?}"),
            }
        }
        // A header with no body.
        assert!(matches!(
            decode(&bytes[..HEADER_LEN], MAX),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn bytes_without_the_magic_are_malformed_not_another_version() {
        let bytes = enc(1, &msg(all_bodies().remove(0)));
        let mut texts = Vec::new();
        for garbage in [
            &b"hello, world, this is not a message"[..],
            &[1u8; 40][..],
            &[0xCE, 0x00, 2][..],
            &bytes[1..],
        ] {
            match decode(garbage, MAX) {
                Err(DecodeError::Malformed(m)) => {
                    assert!(m.contains("magic number"), "{m}");
                    texts.push(m);
                }
                other => panic!("{garbage:?}: {other:?}"),
            }
            assert!(matches!(
                peek_header(garbage),
                Err(DecodeError::Malformed(_))
            ));
        }
        // A version-1 message (no magic) gets a hint about peers' versions.
        assert!(texts[1].contains("wire version 2"), "{}", texts[1]);
        // Body errors are sentences, not bincode's Debug output.
        let mut b = bytes.clone();
        b[HEADER_LEN + 1] = 99;
        match decode(&b, MAX) {
            Err(DecodeError::Malformed(m)) => {
                assert!(m.starts_with("invalid message body: "), "{m}");
                assert!(!m.contains("OtherString") && !m.contains('{'), "{m}");
            }
            other => panic!("{other:?}"),
        }
        let e = decode(&bytes[..bytes.len() - 1], MAX).unwrap_err();
        assert!(!format!("{e}").contains("UnexpectedEnd"), "{e}");
    }

    #[test]
    fn rejects_trailing_bytes() {
        for body in all_bodies() {
            let mut bytes = enc(1, &msg(body));
            bytes.push(0);
            match decode(&bytes, MAX) {
                Err(DecodeError::Malformed(m)) => assert!(m.contains("trailing"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn rejects_every_truncation() {
        for body in all_bodies() {
            let bytes = enc(1, &msg(body));
            for len in 0..bytes.len() {
                assert!(
                    matches!(decode(&bytes[..len], MAX), Err(DecodeError::Malformed(_))),
                    "truncated to {len} of {}",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn rejects_unknown_variants() {
        let bytes = enc(1, &msg(all_bodies().remove(0)));
        let mut b = bytes.clone();
        b[HEADER_LEN] = 2; // Body has two variants.
        assert!(matches!(decode(&b, MAX), Err(DecodeError::Malformed(_))));
        let mut b = bytes;
        b[HEADER_LEN + 1] = 3; // BleMessage has three variants.
        assert!(matches!(decode(&b, MAX), Err(DecodeError::Malformed(_))));
        let mut p = enc(1, &msg(all_bodies().remove(4)));
        p[HEADER_LEN + 1] = 14; // PaxosMessage has fourteen variants.
        assert!(matches!(decode(&p, MAX), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn invalid_bool_and_option_tags_are_malformed() {
        let reply = enc(1, &msg(all_bodies().remove(2)));
        // HeartbeatReply { round, status { ballot{n, priority, pid}, quorum, content, leads,
        // priority, incarnation, clock } }: `leads` is the fourth byte from the end (three
        // one-byte varints follow it).
        let mut b = reply.clone();
        let at = b.len() - 4;
        b[at] = 2;
        assert!(matches!(decode(&b, MAX), Err(DecodeError::Malformed(_))));
        // AcceptSync with `stopsign: None`: the last byte is the Option tag 0.
        let sync = enc(1, &msg(all_bodies().remove(8)));
        let mut b = sync.clone();
        *b.last_mut().unwrap() = 7;
        assert!(matches!(decode(&b, MAX), Err(DecodeError::Malformed(_))));
    }

    /// Body of an AcceptDecide up to (not including) its entries, built by hand.
    fn accept_decide_prefix() -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.push(WIRE_VERSION);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        // Body::Paxos = 1, PaxosMessage::AcceptDecide = 4, ballot (1, 0, 1), start_idx 0.
        b.extend_from_slice(&[1, 4, 1, 0, 1, 0]);
        b
    }

    /// bincode's varint for a u64 that needs all 8 bytes.
    fn varint_u64(v: u64) -> Vec<u8> {
        let mut b = vec![253];
        b.extend_from_slice(&v.to_le_bytes());
        b
    }

    #[test]
    fn hand_built_accept_decide_matches_encode() {
        let mut e = Entries::new();
        e.push(b"ab");
        let m = msg(Body::Paxos(PaxosMessage::AcceptDecide {
            n: Ballot::new(1, 0, 1),
            start_idx: 0,
            entries: e,
            decided_idx: 0,
        }));
        let mut b = accept_decide_prefix();
        // data: len 2, "ab"; ends: len 1, [2]; decided_idx 0.
        b.extend_from_slice(&[2, b'a', b'b', 1, 2, 0]);
        assert_eq!(b, enc(1, &m));
        assert_eq!(decode(&b, MAX).unwrap().1, m);
    }

    #[test]
    fn forged_length_prefixes_fail_fast() {
        // Entry bytes claiming 2^60 bytes: rejected before anything that size is allocated
        // (the process would abort otherwise).
        let mut b = accept_decide_prefix();
        b.extend_from_slice(&varint_u64(1 << 60));
        b.extend_from_slice(&[0; 64]);
        assert!(matches!(decode(&b, MAX), Err(DecodeError::Malformed(_))));
        let mut b = accept_decide_prefix();
        b.extend_from_slice(&varint_u64(u64::MAX));
        assert!(matches!(decode(&b, MAX), Err(DecodeError::Malformed(_))));
        // Entry offsets claiming 2^60 elements.
        let mut b = accept_decide_prefix();
        b.push(0); // no entry bytes
        b.extend_from_slice(&varint_u64(1 << 60));
        b.extend_from_slice(&[0; 64]);
        assert!(matches!(decode(&b, MAX), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn entry_offsets_are_validated() {
        let mut b = accept_decide_prefix();
        // data "ab", ends [3]: past the end of the data.
        b.extend_from_slice(&[2, b'a', b'b', 1, 3, 0]);
        assert!(matches!(decode(&b, MAX), Err(DecodeError::Malformed(_))));
        let mut b = accept_decide_prefix();
        // data "ab", ends [2, 1]: decreasing.
        b.extend_from_slice(&[2, b'a', b'b', 2, 2, 1, 0]);
        assert!(matches!(decode(&b, MAX), Err(DecodeError::Malformed(_))));
        let mut b = accept_decide_prefix();
        // data "ab", no ends: bytes that belong to no entry.
        b.extend_from_slice(&[2, b'a', b'b', 0, 0]);
        assert!(matches!(decode(&b, MAX), Err(DecodeError::Malformed(_))));
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut buf = Vec::with_capacity(128);
        let mut ok = 0usize;
        for i in 0..100_000u32 {
            buf.clear();
            let len = (rng.next() % 96) as usize;
            for _ in 0..len {
                buf.push(rng.next() as u8);
            }
            // Mostly valid version bytes and small variant tags, so the body decoder is
            // exercised and not only the header checks.
            if i % 8 != 0 && buf.len() > 2 {
                buf[..2].copy_from_slice(&MAGIC);
                buf[2] = WIRE_VERSION;
            }
            if i % 2 == 0 && buf.len() > HEADER_LEN + 1 {
                buf[HEADER_LEN] = (rng.next() % 2) as u8;
                buf[HEADER_LEN + 1] = (rng.next() % 12) as u8;
            }
            if let Ok((cid, m)) = decode(&buf, MAX) {
                // Whatever decodes must survive a round trip.
                assert_eq!(decode(&enc(cid, &m), MAX), Ok((cid, m)));
                ok += 1;
            }
        }
        assert!(
            ok > 0,
            "no random buffer decoded: the generator does not reach the bodies"
        );
    }

    #[test]
    fn bit_flips_never_panic() {
        for body in all_bodies() {
            let bytes = enc(1, &msg(body));
            for i in HEADER_LEN..bytes.len() {
                for bit in 0..8 {
                    let mut b = bytes.clone();
                    b[i] ^= 1 << bit;
                    let _ = decode(&b, MAX);
                }
            }
        }
    }

    #[test]
    fn batch_encoding_is_compact() {
        let e = entries(1000, 16);
        let m = msg(Body::Paxos(PaxosMessage::AcceptDecide {
            n: Ballot::new(5, 0, 1),
            start_idx: 1_000_000,
            entries: e.clone(),
            decided_idx: 999_000,
        }));
        let bytes = enc(1, &m);
        // 16000 payload bytes + one varint end offset per entry (1 byte below 251, 3 bytes
        // up to 65535) + header and fixed fields.
        assert!(bytes.len() > 16_000);
        assert!(
            bytes.len() < 16_000 + 3 * 1000 + 64,
            "{} bytes",
            bytes.len()
        );
        // The payload travels as one contiguous block.
        assert!(bytes.windows(e.byte_len()).any(|w| w == e.data()));
        assert_eq!(decode(&bytes, MAX).unwrap().1, m);
    }
}
