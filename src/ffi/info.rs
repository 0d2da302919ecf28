//! Version numbers and error descriptions.

use std::ffi::{c_char, c_uint};

use super::boundary::{copy_last_error, guard, omnipaxos_result};

/// The numeric value of an `omnipaxos_result` as C passes it.
///
/// The C header declares `omnipaxos_strerror`'s parameter as `omnipaxos_result`; Rust takes
/// the raw integer so that a value outside the enum (an unknown code) is not undefined
/// behaviour. This alias is not part of the header (see cbindgen.toml).
pub type omnipaxos_result_code = c_uint;

/// The library version, e.g. `"0.1.0"` (the same text as the `OMNIPAXOS_VERSION` macro of
/// the header the program was compiled with, unless it runs against another build).
///
/// Returns a static NUL-terminated string: never NULL, never freed. Thread-safe.
#[no_mangle]
pub extern "C" fn omnipaxos_version() -> *const c_char {
    guard(|| concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast())
}

/// The wire-format version this build writes and accepts (the third byte of every
/// message, after the 2-byte magic number 0xCE 0xA9; 2 since the magic number was added).
/// Nodes exchanging messages must use the same wire version. Thread-safe.
#[no_mangle]
pub extern "C" fn omnipaxos_wire_version() -> u32 {
    guard(|| u32::from(crate::wire::WIRE_VERSION))
}

/// A static description of a result code, e.g. `"malformed message"`.
///
/// Returns a static NUL-terminated string: never NULL, never freed. A value that is not an
/// `omnipaxos_result` gives `"unknown error code"`. For the detail of a failed call use
/// `omnipaxos_last_error`. Thread-safe.
#[no_mangle]
pub extern "C" fn omnipaxos_strerror(code: omnipaxos_result_code) -> *const c_char {
    guard(|| {
        let text: &'static [u8] = match omnipaxos_result::from_code(code) {
            Some(code) => code.description(),
            None => b"unknown error code\0",
        };
        text.as_ptr().cast()
    })
}

/// The detail of the last failed call on the calling thread, e.g. ``invalid configuration
/// key `pid`: missing``.
///
/// Copies up to `cap - 1` bytes of the message into `buf` and terminates it with a NUL
/// byte (when `cap > 0`), and returns the full length of the message in bytes, without the
/// NUL. A return value `>= cap` means the copy was truncated: call again with a buffer of
/// at least `return value + 1` bytes. `buf` may be NULL when `cap` is 0, to query the
/// length. Returns 0 (and writes an empty string) when no call on this thread has failed.
///
/// The message is per thread: a failing call on one thread never changes what another
/// thread reads. A successful call does not clear it (like `errno`), so read it right
/// after a call returned an error code.
///
/// # Safety
/// A non-NULL `buf` must be valid for writes of `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_last_error(buf: *mut c_char, cap: usize) -> usize {
    // SAFETY: forwarded contract.
    guard(|| unsafe { copy_last_error(buf, cap) })
}
