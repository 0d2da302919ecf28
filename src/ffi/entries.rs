//! Lists of log entries returned by the read functions.

use super::boundary::{
    call, free_box, guard, omnipaxos_result, try_out, try_out_opt, try_ref, Boxed, Castable,
    Failure,
};
use crate::entries::Entries;

/// What a log entry is.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum omnipaxos_entry_kind {
    /// A decided entry: it is in the log of a majority and never changes.
    OMNIPAXOS_ENTRY_DECIDED = 0,
    /// An entry accepted by this node but not decided yet: it may still be replaced.
    OMNIPAXOS_ENTRY_UNDECIDED = 1,
    /// The StopSign that ends this configuration (its data is empty).
    OMNIPAXOS_ENTRY_STOPSIGN = 2,
    /// The entry was trimmed (compacted away); its data is empty.
    OMNIPAXOS_ENTRY_TRIMMED = 3,
}

use omnipaxos_entry_kind::*;

/// A list of consecutive log entries (opaque).
///
/// Made by `omnipaxos_read`, `omnipaxos_read_entries` and `omnipaxos_read_decided_suffix`;
/// owned by the caller, who releases it with `omnipaxos_entries_free`. The list does not
/// change when the node does, and stays valid after the node is freed or trims its log: it
/// holds its entries in one buffer (no allocation per entry), usually a share of the node's
/// own in-memory log bytes (kept alive until the list is freed) rather than a copy. A list
/// is immutable, so it may be read from several threads at once.
pub struct omnipaxos_entries {
    _private: [u8; 0],
}

/// How the kinds of the entries in a list are known without storing one per entry.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kinds {
    /// Every entry has this kind.
    All(omnipaxos_entry_kind),
    /// Entries with a log index below this one are decided; the others are not.
    DecidedBelow(u64),
}

/// The Rust value behind an `omnipaxos_entries` pointer.
pub(crate) struct EntryList {
    pub(crate) entries: Entries,
    pub(crate) first_idx: u64,
    pub(crate) kinds: Kinds,
}

impl Castable for omnipaxos_entries {
    type Ownership = Boxed;
    type RustType = EntryList;
}

impl EntryList {
    fn kind(&self, i: usize) -> omnipaxos_entry_kind {
        match self.kinds {
            Kinds::All(kind) => kind,
            Kinds::DecidedBelow(decided) => {
                if self.first_idx.saturating_add(i as u64) < decided {
                    OMNIPAXOS_ENTRY_DECIDED
                } else {
                    OMNIPAXOS_ENTRY_UNDECIDED
                }
            }
        }
    }
}

/// The number of entries in the list; 0 for NULL. Never fails.
///
/// # Safety
/// `entries` is NULL or a live list from a read function.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_entries_count(entries: *const omnipaxos_entries) -> usize {
    // SAFETY: forwarded contract.
    guard(|| unsafe { try_ref(entries, "entries") }.map_or(0, |e| e.entries.len()))
}

/// The log index of the list's first element (element `i` has index `first_idx + i`);
/// 0 for NULL. For an empty list it is the index the read started at. Never fails.
///
/// # Safety
/// `entries` is NULL or a live list from a read function.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_entries_first_idx(entries: *const omnipaxos_entries) -> u64 {
    // SAFETY: forwarded contract.
    guard(|| unsafe { try_ref(entries, "entries") }.map_or(0, |e| e.first_idx))
}

/// Element `i` of the list: `*data` and `*len` receive its bytes, `*kind` (when `kind` is
/// not NULL) its kind.
///
/// The bytes belong to the list and stay valid until `omnipaxos_entries_free(entries)`; do
/// not free or modify them. `*data` is never NULL (for an empty entry it is a valid pointer
/// to zero bytes).
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER` when `entries`, `data` or `len` is NULL;
/// `OMNIPAXOS_ERR_OUT_OF_RANGE` when `i >= omnipaxos_entries_count(entries)`. On error no
/// out-parameter is written. Thread-safe (the list is immutable).
///
/// # Safety
/// `entries` is NULL or a live list; `data`, `len` and `kind` are NULL or valid for a
/// write of their type.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_entries_get(
    entries: *const omnipaxos_entries,
    i: usize,
    data: *mut *const u8,
    len: *mut usize,
    kind: *mut omnipaxos_entry_kind,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (list, data, len, kind) = unsafe {
            (
                try_ref(entries, "entries")?,
                try_out(data, "data")?,
                try_out(len, "len")?,
                try_out_opt(kind),
            )
        };
        let bytes = list.entries.get(i).ok_or_else(|| {
            Failure::new(
                omnipaxos_result::OMNIPAXOS_ERR_OUT_OF_RANGE,
                format!(
                    "element {i} is past the end of the list ({} entries)",
                    list.entries.len()
                ),
            )
        })?;
        data.set(bytes.as_ptr());
        len.set(bytes.len());
        if let Some(kind) = kind {
            kind.set(list.kind(i));
        }
        Ok(())
    })
}

/// The whole list at once: `*data` receives the bytes of all its entries back to back
/// (`*data_len` bytes in all) and `*ends` an array of `omnipaxos_entries_count(entries)`
/// end offsets: element `i` is the bytes `data[ends[i-1] .. ends[i]]` (with `ends[-1] = 0`).
/// One call instead of one `omnipaxos_entries_get` per entry, for bindings and bulk readers.
/// StopSign and trimmed elements have no bytes. The kinds are as `omnipaxos_entries_get`
/// reports them (for `omnipaxos_read_decided_suffix`, all decided).
///
/// The pointers belong to the list and stay valid until `omnipaxos_entries_free(entries)`.
/// For an empty list `*data_len` is 0 and the pointers are valid but must not be read.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER` when any parameter is NULL; nothing is written on
/// error. Thread-safe (the list is immutable).
///
/// # Safety
/// `entries` is NULL or a live list; `data`, `data_len` and `ends` are NULL or valid for a
/// write of their type.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_entries_contiguous(
    entries: *const omnipaxos_entries,
    data: *mut *const u8,
    data_len: *mut usize,
    ends: *mut *const u64,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (list, data, data_len, ends) = unsafe {
            (
                try_ref(entries, "entries")?,
                try_out(data, "data")?,
                try_out(data_len, "data_len")?,
                try_out(ends, "ends")?,
            )
        };
        data.set(list.entries.data().as_ptr());
        data_len.set(list.entries.byte_len());
        ends.set(list.entries.ends().as_ptr());
        Ok(())
    })
}

/// Frees a list and the bytes of its entries. NULL is allowed (does nothing). The list and
/// every pointer `omnipaxos_entries_get` returned for it must not be used afterwards.
///
/// # Safety
/// `entries` is NULL or a live list, not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_entries_free(entries: *mut omnipaxos_entries) {
    // SAFETY: forwarded contract.
    guard(|| unsafe { free_box(entries) })
}
