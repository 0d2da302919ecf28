//! The wire format (interim version; the full module with bounds tests lands separately).

use crate::errors::DecodeError;
use crate::messages::{Body, Message};

/// Version of the wire format.
pub const WIRE_VERSION: u8 = 1;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 21;

/// Appends the encoding of `msg` to `out`.
pub fn encode(config_id: u32, msg: &Message, out: &mut Vec<u8>) {
    out.push(WIRE_VERSION);
    out.extend_from_slice(&config_id.to_le_bytes());
    out.extend_from_slice(&msg.from.to_le_bytes());
    out.extend_from_slice(&msg.to.to_le_bytes());
    let _ = bincode::serde::encode_into_std_write(&msg.body, out, bincode::config::standard());
}

/// Decodes one message.
pub fn decode(bytes: &[u8], max_len: usize) -> Result<(u32, Message), DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Malformed("shorter than the header".into()));
    }
    if bytes[0] != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion(bytes[0]));
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
    let (body, used): (Body, usize) =
        bincode::serde::decode_from_slice(&bytes[HEADER_LEN..], bincode::config::standard())
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if used != bytes.len() - HEADER_LEN {
        return Err(DecodeError::Malformed("trailing bytes".into()));
    }
    Ok((
        u32_at(1),
        Message {
            from: u64_at(5),
            to: u64_at(13),
            body,
        },
    ))
}
