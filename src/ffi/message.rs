//! Messages outside a node: reading the header of an encoded message.

use super::boundary::{call, omnipaxos_result, try_out, try_out_opt, try_slice, Failure};
use crate::wire;

/// Reads the header of a message without decoding it or handing it to a node: the
/// configuration it belongs to (`*config_id`, the sender's HOCON `config_id`), its sender
/// (`*from`) and its receiver (`*to`). Use it to route messages when one server runs the
/// nodes of two configurations during a reconfiguration (see `omnipaxos_reconfigure`):
/// give each message to the node whose configuration it names. Only the fixed header (the
/// first 23 bytes: a 2-byte magic number, the wire-format version, `config_id`, `from`,
/// `to`) is read; `omnipaxos_handle_incoming` still checks the whole message.
///
/// `from` and `to` may be NULL when not wanted. Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`
/// (`config_id` NULL, or `msg` NULL with `len > 0`); `OMNIPAXOS_ERR_MALFORMED_MESSAGE`
/// (not starting with the magic number, or shorter than the header);
/// `OMNIPAXOS_ERR_UNSUPPORTED_VERSION` (a header of another wire-format version). On error nothing is written. Thread-safe.
///
/// # Safety
/// `msg` is NULL or points to `len` readable bytes; `config_id`, `from` and `to` are NULL
/// or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_message_header(
    msg: *const u8,
    len: usize,
    config_id: *mut u32,
    from: *mut u64,
    to: *mut u64,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (bytes, config_id, from, to) = unsafe {
            (
                // Only the header is read: a wrong `len` past it is never touched.
                try_slice(
                    msg,
                    len.min(wire::HEADER_LEN),
                    "msg",
                    wire::HEADER_LEN,
                    |_| Failure::invalid("unreachable: the length is capped at the header"),
                )?,
                try_out(config_id, "config_id")?,
                try_out_opt(from),
                try_out_opt(to),
            )
        };
        let h = wire::peek_header(bytes)?;
        config_id.set(h.config_id);
        if let Some(from) = from {
            from.set(h.from);
        }
        if let Some(to) = to {
            to.set(h.to);
        }
        Ok(())
    })
}
