//! The boundary between C and Rust: the one place that deals with panics, raw pointers and
//! error reporting, so the API functions in the sibling modules only check arguments and
//! call the library.
//!
//! - `guard` runs a function body under `catch_unwind`; the `PanicValue` trait picks what
//!   a panicking call returns for its return type (`OMNIPAXOS_ERR_PANIC`, NULL, 0, false).
//!   `call` is the same for the functions that return an `omnipaxos_result`: the body
//!   returns `Result<(), Failure>` and an error becomes a code plus the thread's last-error
//!   message.
//! - `Castable` ties each opaque C type to the Rust type behind it and to its ownership,
//!   so that `try_ref`, `to_boxed_ptr` and `free_box` cannot cast to the wrong type.
//!   `try_out`, `try_out_opt`, `try_slice` and `try_str` check the other pointer
//!   parameters; every NULL becomes `OMNIPAXOS_ERR_NULL_PARAMETER` naming the parameter.
//! - The thread-local last-error slot (`set_last_error`, `copy_last_error`).
//! - The mapping from `Error` to `omnipaxos_result` (`From<Error> for Failure`).

use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::fmt::Display;
use std::marker::PhantomData;

use std::ptr::NonNull;

use crate::errors::{ConfigError, DecodeError, Error, StorageError, StorageErrorKind};

/// The result of every fallible function of the C API.
///
/// `OMNIPAXOS_OK` (0) is success; every other value is an error, and the calling thread's
/// last-error message (`omnipaxos_last_error`) then holds the detail. `omnipaxos_strerror`
/// gives a static description of each code. Codes are never renumbered; new codes are only
/// ever added at the end, so treat unknown values as generic errors.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum omnipaxos_result {
    /// Success.
    OMNIPAXOS_OK = 0,
    /// A required pointer parameter was NULL (or a data pointer was NULL with a non-zero
    /// length).
    OMNIPAXOS_ERR_NULL_PARAMETER = 1,
    /// An argument is invalid: text that is not UTF-8, a length that is too large, a
    /// reversed range (`from > to`), a pid that is not a peer, a trim beyond what can be
    /// trimmed.
    OMNIPAXOS_ERR_INVALID_ARGUMENT = 2,
    /// The configuration is invalid: a missing, unknown or ill-typed key, a value out of
    /// range, an unreadable configuration file, or an unopenable `log_file_path`. The
    /// last-error message names the key or the file.
    OMNIPAXOS_ERR_CONFIG = 3,
    /// An incoming message is not a message of this library: it does not start with the
    /// wire format's magic number (garbage, another protocol, or a peer older than wire
    /// version 2), or it is truncated, has trailing bytes or an invalid body. The node is
    /// unchanged.
    OMNIPAXOS_ERR_MALFORMED_MESSAGE = 4,
    /// An incoming message is larger than the node's `max_message_bytes`. The node is
    /// unchanged.
    OMNIPAXOS_ERR_MESSAGE_TOO_LARGE = 5,
    /// An incoming message starts like a message of this library (its magic number) but has
    /// a wire-format version this build does not understand (see
    /// `omnipaxos_wire_version`): a peer runs another version. The node is unchanged.
    OMNIPAXOS_ERR_UNSUPPORTED_VERSION = 6,
    /// An incoming message belongs to another configuration (`config_id`). The node is
    /// unchanged.
    OMNIPAXOS_ERR_WRONG_CONFIGURATION = 7,
    /// An incoming message comes from a pid that is not a peer of this node, or is not
    /// addressed to this node. The node is unchanged.
    OMNIPAXOS_ERR_UNKNOWN_SENDER = 8,
    /// The proposal buffer is full (`buffer_size` entries wait for a leader, or for the
    /// leader to take them). The entry was not appended: tick, exchange messages, retry.
    OMNIPAXOS_ERR_BUFFER_FULL = 9,
    /// The configuration is stopped: a StopSign is in the log (proposed with
    /// `omnipaxos_reconfigure`, possibly not decided yet). No more entries, and no other
    /// StopSign, are accepted.
    OMNIPAXOS_ERR_STOPPED = 10,
    /// The index is not in the log (past its end, or trimmed away).
    OMNIPAXOS_ERR_OUT_OF_RANGE = 11,
    /// A storage I/O error (including a full disk or an unwritable path).
    OMNIPAXOS_ERR_STORAGE_IO = 12,
    /// The storage files are damaged beyond what can be repaired without losing
    /// acknowledged data.
    OMNIPAXOS_ERR_STORAGE_CORRUPTION = 13,
    /// The storage directory is held by another live node.
    OMNIPAXOS_ERR_STORAGE_LOCKED = 14,
    /// An internal error (a bug in libomnipaxos) was caught at the boundary. The process is
    /// fine, but a node on which this happened refuses every later call with this code:
    /// free it (and, with persistent storage, re-create it and call
    /// `omnipaxos_fail_recovery`).
    OMNIPAXOS_ERR_PANIC = 15,
    /// The call must be made at the leader (`omnipaxos_reconfigure`) and this node is not
    /// it; `omnipaxos_leader` tells which node is. The last-error message names the leader
    /// when one is known.
    OMNIPAXOS_ERR_NOT_LEADER = 16,
    /// The persistent storage directory belongs to another node or configuration: its
    /// identity (pid, `config_id`, the set of nodes, recorded when the directory was
    /// created) differs from the node's configuration. The last-error message names both.
    /// Nothing was changed. Each configuration's node needs a directory of its own (see the
    /// README, "Storage identity").
    OMNIPAXOS_ERR_STORAGE_MISMATCH = 17,
}

use omnipaxos_result::*;

impl omnipaxos_result {
    /// Every code, in numeric order.
    const ALL: [omnipaxos_result; 18] = [
        OMNIPAXOS_OK,
        OMNIPAXOS_ERR_NULL_PARAMETER,
        OMNIPAXOS_ERR_INVALID_ARGUMENT,
        OMNIPAXOS_ERR_CONFIG,
        OMNIPAXOS_ERR_MALFORMED_MESSAGE,
        OMNIPAXOS_ERR_MESSAGE_TOO_LARGE,
        OMNIPAXOS_ERR_UNSUPPORTED_VERSION,
        OMNIPAXOS_ERR_WRONG_CONFIGURATION,
        OMNIPAXOS_ERR_UNKNOWN_SENDER,
        OMNIPAXOS_ERR_BUFFER_FULL,
        OMNIPAXOS_ERR_STOPPED,
        OMNIPAXOS_ERR_OUT_OF_RANGE,
        OMNIPAXOS_ERR_STORAGE_IO,
        OMNIPAXOS_ERR_STORAGE_CORRUPTION,
        OMNIPAXOS_ERR_STORAGE_LOCKED,
        OMNIPAXOS_ERR_PANIC,
        OMNIPAXOS_ERR_NOT_LEADER,
        OMNIPAXOS_ERR_STORAGE_MISMATCH,
    ];

    /// The code with number `code`, if there is one.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// The static description `omnipaxos_strerror` returns (NUL-terminated).
    pub(crate) fn description(self) -> &'static [u8] {
        match self {
            OMNIPAXOS_OK => b"success\0",
            OMNIPAXOS_ERR_NULL_PARAMETER => b"a required pointer parameter is NULL\0",
            OMNIPAXOS_ERR_INVALID_ARGUMENT => b"invalid argument\0",
            OMNIPAXOS_ERR_CONFIG => b"invalid configuration\0",
            OMNIPAXOS_ERR_MALFORMED_MESSAGE => b"malformed message\0",
            OMNIPAXOS_ERR_MESSAGE_TOO_LARGE => b"message larger than max_message_bytes\0",
            OMNIPAXOS_ERR_UNSUPPORTED_VERSION => b"unsupported wire-format version\0",
            OMNIPAXOS_ERR_WRONG_CONFIGURATION => b"message of another configuration\0",
            OMNIPAXOS_ERR_UNKNOWN_SENDER => b"message from an unknown sender\0",
            OMNIPAXOS_ERR_BUFFER_FULL => b"proposal buffer full; retry later\0",
            OMNIPAXOS_ERR_STOPPED => b"configuration stopped by a StopSign\0",
            OMNIPAXOS_ERR_NOT_LEADER => b"not the leader: call it at the leader\0",
            OMNIPAXOS_ERR_OUT_OF_RANGE => b"index out of range\0",
            OMNIPAXOS_ERR_STORAGE_IO => b"storage I/O error\0",
            OMNIPAXOS_ERR_STORAGE_CORRUPTION => b"storage corruption\0",
            OMNIPAXOS_ERR_STORAGE_LOCKED => b"storage locked by another node\0",
            OMNIPAXOS_ERR_PANIC => b"internal error (a bug in libomnipaxos)\0",
            OMNIPAXOS_ERR_STORAGE_MISMATCH => {
                b"storage directory of another node or configuration\0"
            }
        }
    }
}

/// A failed call: the code returned to C and the detail stored as the last error.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: omnipaxos_result,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: omnipaxos_result, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn null(name: &str) -> Self {
        Failure::new(
            OMNIPAXOS_ERR_NULL_PARAMETER,
            format!("parameter `{name}` is NULL"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure::new(OMNIPAXOS_ERR_INVALID_ARGUMENT, message)
    }
}

/// The mapping from library errors to C result codes.
impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Config(_) => OMNIPAXOS_ERR_CONFIG,
            Error::Storage(s) => match s.kind {
                StorageErrorKind::Io => OMNIPAXOS_ERR_STORAGE_IO,
                StorageErrorKind::Corruption => OMNIPAXOS_ERR_STORAGE_CORRUPTION,
                StorageErrorKind::Locked => OMNIPAXOS_ERR_STORAGE_LOCKED,
                StorageErrorKind::OutOfRange => OMNIPAXOS_ERR_OUT_OF_RANGE,
                StorageErrorKind::Mismatch => OMNIPAXOS_ERR_STORAGE_MISMATCH,
            },
            Error::Decode(DecodeError::Malformed(_)) => OMNIPAXOS_ERR_MALFORMED_MESSAGE,
            Error::Decode(DecodeError::TooLarge { .. }) => OMNIPAXOS_ERR_MESSAGE_TOO_LARGE,
            Error::Decode(DecodeError::UnsupportedVersion(_)) => OMNIPAXOS_ERR_UNSUPPORTED_VERSION,
            Error::WrongConfiguration { .. } => OMNIPAXOS_ERR_WRONG_CONFIGURATION,
            Error::UnknownSender(_) => OMNIPAXOS_ERR_UNKNOWN_SENDER,
            Error::BufferFull { .. } => OMNIPAXOS_ERR_BUFFER_FULL,
            Error::Stopped => OMNIPAXOS_ERR_STOPPED,
            Error::OutOfRange { .. } => OMNIPAXOS_ERR_OUT_OF_RANGE,
            Error::InvalidArgument(_) => OMNIPAXOS_ERR_INVALID_ARGUMENT,
            Error::NotLeader { .. } => OMNIPAXOS_ERR_NOT_LEADER,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Error::from(e).into()
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Error::from(e).into()
    }
}

impl From<DecodeError> for Failure {
    fn from(e: DecodeError) -> Self {
        Error::from(e).into()
    }
}

// ---------------------------------------------------------------------------------------
// Panic guard
// ---------------------------------------------------------------------------------------

/// What an `extern "C"` function returns when its body panicked.
pub(crate) trait PanicValue {
    fn on_panic() -> Self;
}

impl PanicValue for omnipaxos_result {
    fn on_panic() -> Self {
        OMNIPAXOS_ERR_PANIC
    }
}

impl PanicValue for () {
    fn on_panic() -> Self {}
}

impl PanicValue for bool {
    fn on_panic() -> Self {
        false
    }
}

impl PanicValue for u32 {
    fn on_panic() -> Self {
        0
    }
}

impl PanicValue for u64 {
    fn on_panic() -> Self {
        0
    }
}

impl PanicValue for usize {
    fn on_panic() -> Self {
        0
    }
}

impl<T> PanicValue for *const T {
    fn on_panic() -> Self {
        std::ptr::null()
    }
}

impl<T> PanicValue for *mut T {
    fn on_panic() -> Self {
        std::ptr::null_mut()
    }
}

/// Runs the body of an `extern "C"` function: a panic is caught here (it must never unwind
/// into C), recorded as the last error, and turned into `R::on_panic()`.
#[inline]
pub(crate) fn guard<R: PanicValue>(body: impl FnOnce() -> R) -> R {
    // (`quiet::catch`: the panic message goes to the last error, never to stderr)
    match crate::quiet::catch(body) {
        Ok(value) => value,
        Err(payload) => {
            let detail = crate::quiet::take_last_panic()
                .unwrap_or_else(|| crate::quiet::payload_text(payload.as_ref()));
            // Dropping the payload runs foreign code (its Drop); keep that inside a guard too.
            let _ = crate::quiet::catch(move || drop(payload));
            set_last_error(format_args!(
                "internal error (a bug in libomnipaxos, please report it): {detail}"
            ));
            R::on_panic()
        }
    }
}

/// Panics with `message` inside the C boundary's guard and returns the result code and the
/// last-error message: for tests that check that a caught panic prints nothing.
#[doc(hidden)]
pub fn debug_guarded_panic(message: &str) -> (omnipaxos_result, String) {
    let code = call(|| panic!("{message}"));
    let mut buf = vec![0 as c_char; 4096];
    // SAFETY: `buf` holds `buf.len()` bytes.
    let n = unsafe { copy_last_error(buf.as_mut_ptr(), buf.len()) }.min(buf.len() - 1);
    let text: Vec<u8> = buf[..n].iter().map(|&c| c as u8).collect();
    (code, String::from_utf8_lossy(&text).into_owned())
}

/// Runs the body of an `extern "C"` function that returns an [`omnipaxos_result`]: an
/// `Err` becomes its code and the thread's last-error message; a panic becomes
/// `OMNIPAXOS_ERR_PANIC`.
pub(crate) fn call(body: impl FnOnce() -> Result<(), Failure>) -> omnipaxos_result {
    guard(|| match body() {
        Ok(()) => OMNIPAXOS_OK,
        Err(failure) => {
            set_last_error(&failure.message);
            failure.code
        }
    })
}

// ---------------------------------------------------------------------------------------
// Typed pointer helpers
// ---------------------------------------------------------------------------------------

/// Ownership marker: the C pointer was made by `Box::into_raw` and is released by the
/// type's `_free` function.
pub(crate) enum Boxed {}

/// Ties an opaque C type to the Rust type behind it and to how it is owned.
pub(crate) trait Castable {
    /// How the pointer is owned (only [`Boxed`] so far).
    type Ownership;
    /// The Rust value the C pointer points to.
    type RustType;
}

/// Moves `value` to the heap and returns it as the opaque C pointer; release it with
/// [`free_box`].
pub(crate) fn to_boxed_ptr<C: Castable<Ownership = Boxed>>(value: C::RustType) -> *mut C {
    Box::into_raw(Box::new(value)).cast()
}

/// Borrows the Rust value behind a C pointer; NULL is an error naming `name`.
///
/// # Safety
/// `ptr` is NULL or was returned by [`to_boxed_ptr`] for the same `C` and not freed yet,
/// and stays valid for `'a`.
pub(crate) unsafe fn try_ref<'a, C: Castable>(
    ptr: *const C,
    name: &str,
) -> Result<&'a C::RustType, Failure> {
    // SAFETY: the caller guarantees that a non-NULL `ptr` points to a live `C::RustType`.
    unsafe { ptr.cast::<C::RustType>().as_ref() }.ok_or_else(|| Failure::null(name))
}

/// Frees what [`to_boxed_ptr`] made. NULL is a no-op.
///
/// # Safety
/// `ptr` is NULL or was returned by [`to_boxed_ptr`] for the same `C` and not freed yet;
/// nothing uses it afterwards.
pub(crate) unsafe fn free_box<C: Castable<Ownership = Boxed>>(ptr: *mut C) {
    if !ptr.is_null() {
        // SAFETY: see the function's contract.
        drop(unsafe { Box::from_raw(ptr.cast::<C::RustType>()) });
    }
}

/// A checked, non-NULL out-parameter. Writing it is the last thing a successful call does,
/// so a failed call leaves every out-parameter untouched.
pub(crate) struct Out<'a, T> {
    ptr: NonNull<T>,
    _life: PhantomData<&'a mut T>,
}

impl<T> Out<'_, T> {
    /// Stores `value` (the old value is not read or dropped: it may be uninitialised).
    pub(crate) fn set(self, value: T) {
        // SAFETY: `try_out` checked non-NULL; its caller guarantees the pointer is writable.
        unsafe { self.ptr.as_ptr().write(value) }
    }
}

/// Checks an out-parameter; NULL is an error naming `name`.
///
/// # Safety
/// A non-NULL `ptr` must be valid for a write of `T` (aligned) for `'a`.
pub(crate) unsafe fn try_out<'a, T>(ptr: *mut T, name: &str) -> Result<Out<'a, T>, Failure> {
    match NonNull::new(ptr) {
        Some(ptr) => Ok(Out {
            ptr,
            _life: PhantomData,
        }),
        None => Err(Failure::null(name)),
    }
}

/// An optional out-parameter: NULL means the caller does not want the value.
///
/// # Safety
/// As [`try_out`].
pub(crate) unsafe fn try_out_opt<'a, T>(ptr: *mut T) -> Option<Out<'a, T>> {
    NonNull::new(ptr).map(|ptr| Out {
        ptr,
        _life: PhantomData,
    })
}

/// Borrows `(data, len)` as a byte slice. `data` may be NULL only when `len == 0`. A `len`
/// above `max_len` fails with `too_long(len)` before the memory is touched.
///
/// # Safety
/// A non-NULL `data` must point to `len` readable bytes that stay unchanged for `'a`.
pub(crate) unsafe fn try_slice<'a>(
    data: *const u8,
    len: usize,
    name: &str,
    max_len: usize,
    too_long: impl FnOnce(usize) -> Failure,
) -> Result<&'a [u8], Failure> {
    if data.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(Failure::new(
                OMNIPAXOS_ERR_NULL_PARAMETER,
                format!("parameter `{name}` is NULL but its length is {len}"),
            ))
        };
    }
    if len > max_len.min(isize::MAX as usize) {
        return Err(too_long(len));
    }
    // SAFETY: non-NULL, `len <= isize::MAX`, and the caller guarantees `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Borrows `(ptr, count)` as a slice of `T`. `ptr` may be NULL only when `count == 0`.
///
/// # Safety
/// A non-NULL `ptr` must point to `count` readable, initialised, aligned values of `T` that
/// stay unchanged for `'a`.
pub(crate) unsafe fn try_array<'a, T>(
    ptr: *const T,
    count: usize,
    name: &str,
) -> Result<&'a [T], Failure> {
    if ptr.is_null() {
        return if count == 0 {
            Ok(&[])
        } else {
            Err(Failure::new(
                OMNIPAXOS_ERR_NULL_PARAMETER,
                format!("parameter `{name}` is NULL but its count is {count}"),
            ))
        };
    }
    if count.saturating_mul(std::mem::size_of::<T>()) > isize::MAX as usize {
        return Err(Failure::invalid(format!(
            "parameter `{name}`: a count of {count} cannot be valid"
        )));
    }
    if (ptr as usize) % std::mem::align_of::<T>() != 0 {
        return Err(Failure::invalid(format!(
            "parameter `{name}` is not aligned for its type"
        )));
    }
    // SAFETY: non-NULL, aligned, size checked, and the caller guarantees `count` values.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// A caller's output buffer: room for `cap` values of `T` at `ptr`, filled by
/// [`OutBuf::fill`]. The memory is only ever written (it may be uninitialised), never read
/// or borrowed as a Rust slice.
pub(crate) struct OutBuf<'a, T> {
    ptr: *mut T,
    cap: usize,
    _life: PhantomData<&'a mut [T]>,
}

impl<T: Copy> OutBuf<'_, T> {
    /// Copies the first `min(cap, src.len())` values of `src` into the buffer; returns how
    /// many it copied.
    pub(crate) fn fill(self, src: &[T]) -> usize {
        let n = src.len().min(self.cap);
        if n > 0 {
            // SAFETY: `try_out_buf` checked that `ptr` is non-NULL and aligned when
            // `cap > 0`, and its caller guarantees room for `cap >= n` values; `src` is
            // our own memory, so the two do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr, n) }
        }
        n
    }
}

/// Checks an output buffer `(ptr, cap)`: `ptr` may be NULL only when `cap == 0`.
///
/// # Safety
/// A non-NULL `ptr` must be valid for writes of `cap` values of `T` for `'a`.
pub(crate) unsafe fn try_out_buf<'a, T>(
    ptr: *mut T,
    cap: usize,
    name: &str,
) -> Result<OutBuf<'a, T>, Failure> {
    if ptr.is_null() && cap > 0 {
        return Err(Failure::new(
            OMNIPAXOS_ERR_NULL_PARAMETER,
            format!("parameter `{name}` is NULL but its capacity is {cap}"),
        ));
    }
    if cap.saturating_mul(std::mem::size_of::<T>()) > isize::MAX as usize {
        return Err(Failure::invalid(format!(
            "parameter `{name}`: a capacity of {cap} cannot be valid"
        )));
    }
    if !ptr.is_null() && (ptr as usize) % std::mem::align_of::<T>() != 0 {
        return Err(Failure::invalid(format!(
            "parameter `{name}` is not aligned for its type"
        )));
    }
    Ok(OutBuf {
        ptr,
        cap,
        _life: PhantomData,
    })
}

/// Borrows a NUL-terminated C string as UTF-8 text.
///
/// # Safety
/// A non-NULL `ptr` must point to a NUL-terminated string that stays unchanged for `'a`.
pub(crate) unsafe fn try_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL and NUL-terminated per the contract.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::invalid(format!(
            "parameter `{name}` is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

// ---------------------------------------------------------------------------------------
// Thread-local last error
// ---------------------------------------------------------------------------------------

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records the detail of a failed call for `omnipaxos_last_error` on this thread. NUL bytes
/// (which would cut the C string short) are written as `\0`.
pub(crate) fn set_last_error(message: impl Display) {
    use std::fmt::Write;
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            slot.clear();
            let _ = write!(slot, "{message}");
            if slot.contains('\0') {
                *slot = slot.replace('\0', "\\0");
            }
        }
    });
}

/// Copies the last error of this thread into `buf` (see `omnipaxos_last_error`).
///
/// # Safety
/// A non-NULL `buf` must be valid for writes of `cap` bytes.
pub(crate) unsafe fn copy_last_error(buf: *mut c_char, cap: usize) -> usize {
    LAST_ERROR
        .try_with(|slot| {
            let Ok(slot) = slot.try_borrow() else {
                return 0;
            };
            let bytes = slot.as_bytes();
            if !buf.is_null() && cap > 0 {
                let n = bytes.len().min(cap - 1);
                // SAFETY: `buf` holds `cap > n` bytes per the contract; `slot` does not
                // overlap memory the caller owns.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
                    *buf.add(n) = 0;
                }
            }
            bytes.len()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_described() {
        for (i, code) in omnipaxos_result::ALL.iter().enumerate() {
            assert_eq!(*code as usize, i);
            assert_eq!(omnipaxos_result::from_code(i as u32), Some(*code));
            let d = code.description();
            assert_eq!(d.last(), Some(&0));
            assert!(!d[..d.len() - 1].contains(&0));
        }
        assert_eq!(omnipaxos_result::from_code(18), None);
        assert_eq!(omnipaxos_result::from_code(u32::MAX), None);
    }

    #[test]
    fn panic_becomes_code_and_message() {
        let r = call(|| panic!("boom"));
        assert_eq!(r, OMNIPAXOS_ERR_PANIC);
        let mut buf = [0 as c_char; 256];
        let n = unsafe { copy_last_error(buf.as_mut_ptr(), buf.len()) };
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
        assert_eq!(n, s.len());
        assert!(s.contains("boom"), "{s}");
        let p: *const u8 = guard(|| panic!("x"));
        assert!(p.is_null());
    }

    #[test]
    fn last_error_truncates_and_escapes_nul() {
        set_last_error("ab\0cd");
        let mut buf = [1 as c_char; 4];
        let n = unsafe { copy_last_error(buf.as_mut_ptr(), buf.len()) };
        assert_eq!(n, 6);
        assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_bytes(), b"ab\\");
        assert_eq!(unsafe { copy_last_error(std::ptr::null_mut(), 0) }, 6);
    }

    #[test]
    fn error_mapping() {
        let f = Failure::from(Error::Decode(DecodeError::TooLarge { len: 9, max: 1 }));
        assert_eq!(f.code, OMNIPAXOS_ERR_MESSAGE_TOO_LARGE);
        let f = Failure::from(StorageError::new(StorageErrorKind::Locked, "x"));
        assert_eq!(f.code, OMNIPAXOS_ERR_STORAGE_LOCKED);
        let f = Failure::from(ConfigError::new("pid", "missing"));
        assert_eq!(f.code, OMNIPAXOS_ERR_CONFIG);
        assert!(f.message.contains("pid"));
    }
}
