//! The node handle and the protocol calls.

use std::ffi::c_char;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use super::boundary::{
    call, free_box, guard, omnipaxos_result, to_boxed_ptr, try_array, try_out, try_out_buf,
    try_out_opt, try_ref, try_slice, try_str, Boxed, Castable, Failure,
};
use super::entries::{omnipaxos_entries, omnipaxos_entry_kind, EntryList, Kinds};
use crate::config::{hocon, Config};
use crate::entries::Entries;
use crate::errors::{ConfigError, DecodeError, Error};
use crate::messages::NodeId;
use crate::omni_paxos::{LogEntry, OmniPaxos};
use crate::{storage, wire};

/// One Omni-Paxos server (opaque).
///
/// Made by `omnipaxos_node_from_hocon_file` or `omnipaxos_node_from_hocon_str`, owned by the
/// caller, released with `omnipaxos_node_free`.
///
/// The node does no I/O of its own (except its storage and its optional log file): the
/// caller drives it. Call `omnipaxos_tick` at a fixed period (e.g. every 10 ms), hand every
/// message received from another node to `omnipaxos_handle_incoming`, and after each of
/// these calls send the messages `omnipaxos_take_outgoing` returns to their receivers.
///
/// Thread safety: a node serialises its calls with an internal mutex, so any function may
/// be called on the same node from any thread at any time (except `omnipaxos_node_free`,
/// which must be the last call, made when no other thread uses the node). Calls from
/// several threads simply wait for each other.
pub struct omnipaxos_node {
    _private: [u8; 0],
}

/// The Rust value behind an `omnipaxos_node` pointer.
pub(crate) struct Node {
    /// Immutable facts of the configuration, readable without the lock.
    pid: NodeId,
    config_id: u32,
    peers: Vec<NodeId>,
    max_message_bytes: usize,
    state: Mutex<State>,
}

impl Drop for Node {
    fn drop(&mut self) {
        // A call panicked half way through: what it changed is not written at the close
        // (as in a crash; what was committed before stays).
        if self.state.is_poisoned() {
            let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
            state.paxos.abandon();
        }
    }
}

impl Castable for omnipaxos_node {
    type Ownership = Boxed;
    type RustType = Node;
}

/// Everything a call may change, behind the node's mutex.
struct State {
    paxos: OmniPaxos,
    /// Reused by `take_outgoing`: every outgoing message encoded, back to back.
    bytes: Vec<u8>,
    /// Reused by `take_outgoing`: the array handed to C, pointing into `bytes`.
    outgoing: OutgoingArray,
    log: LogSink,
}

/// The array `omnipaxos_take_outgoing` hands out.
struct OutgoingArray(Vec<omnipaxos_outgoing>);

// SAFETY: the raw pointers in the array point into `State::bytes` of the same node and
// are only dereferenced by the C caller; the array moves between threads together with the
// buffer it points into, under the node's mutex.
unsafe impl Send for OutgoingArray {}

/// One encoded message to send: give the `len` bytes at `data` to node `receiver`, which
/// passes them to its `omnipaxos_handle_incoming`.
///
/// Filled in by `omnipaxos_take_outgoing`. The bytes belong to the node and stay valid
/// until the next `omnipaxos_take_outgoing` on the same node or `omnipaxos_node_free`:
/// copy or send them before then. Messages may be sent in any order, lost or duplicated;
/// the protocol copes (it re-sends after `resend_tick_timeout` ticks).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct omnipaxos_outgoing {
    /// The pid of the node to send the message to.
    pub receiver: u64,
    /// The message bytes (never NULL).
    pub data: *const u8,
    /// The number of bytes at `data`.
    pub len: usize,
}

/// A ballot: the round `n`, the leader priority `priority` and the pid `pid` of the node
/// that owns it. Ballots are ordered by `n`, then `priority`, then `pid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct omnipaxos_ballot {
    /// The round number.
    pub n: u32,
    /// The leader priority of the owner.
    pub priority: u32,
    /// The pid of the owner.
    pub pid: u64,
}

/// Where the node's log lines go: the `log_file_path` file, or nowhere.
struct LogSink {
    file: Option<File>,
    lines: String,
}

impl LogSink {
    fn open(path: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match path {
            None => None,
            Some(path) if path.as_os_str().is_empty() => {
                return Err(ConfigError::new(
                    "log_file_path",
                    "must not be empty (leave the key out to write no log)",
                ));
            }
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        ConfigError::new(
                            "log_file_path",
                            format!("cannot create directory {}: {e}", dir.display()),
                        )
                    })?;
                }
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        ConfigError::new(
                            "log_file_path",
                            format!("cannot open {} for appending: {e}", path.display()),
                        )
                    })?;
                Some(file)
            }
        };
        Ok(LogSink {
            file,
            lines: String::new(),
        })
    }

    /// Moves the node's pending log lines to the file, one line each. The lines are always
    /// drained (so they never pile up); a write error is ignored: logging never fails a
    /// protocol call.
    fn drain(&mut self, paxos: &mut OmniPaxos) {
        let LogSink { file, lines } = self;
        lines.clear();
        paxos.drain_log(|line| {
            if file.is_some() {
                let line = line.trim_end_matches(['\r', '\n']);
                if line.contains('\n') {
                    lines.push_str(&line.replace('\n', " "));
                } else {
                    lines.push_str(line);
                }
                lines.push('\n');
            }
        });
        if let Some(file) = file {
            if !lines.is_empty() {
                let _ = file.write_all(lines.as_bytes());
            }
        }
    }
}

impl Node {
    fn new(config: Config) -> Result<Node, Failure> {
        config.validate()?;
        let log = LogSink::open(config.log_file_path.as_deref())?;
        let storage = storage::open(&config.storage)?;
        let (pid, config_id, peers, max_message_bytes) = (
            config.pid,
            config.config_id,
            config.peers.clone(),
            config.max_message_bytes,
        );
        let paxos = OmniPaxos::new(config, storage)?;
        let mut state = State {
            paxos,
            bytes: Vec::new(),
            outgoing: OutgoingArray(Vec::new()),
            log,
        };
        let State { paxos, log, .. } = &mut state;
        log.drain(paxos);
        Ok(Node {
            pid,
            config_id,
            peers,
            max_message_bytes,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, Failure> {
        self.state.lock().map_err(|_| {
            Failure::new(
                omnipaxos_result::OMNIPAXOS_ERR_PANIC,
                "this node is unusable: an earlier call on it hit an internal error (a bug in \
                 libomnipaxos); free it (with persistent storage: re-create it and call \
                 omnipaxos_fail_recovery)",
            )
        })
    }

    /// Runs `f` under the node's mutex, then moves the log lines it produced to the log
    /// file (also when `f` failed).
    fn with<R>(&self, f: impl FnOnce(&mut State) -> Result<R, Error>) -> Result<R, Failure> {
        let mut guard = self.lock()?;
        let state = &mut *guard;
        let result = f(state);
        state.log.drain(&mut state.paxos);
        result.map_err(Failure::from)
    }

    fn check_peer(&self, pid: u64) -> Result<(), Failure> {
        if self.peers.contains(&pid) {
            Ok(())
        } else {
            Err(Failure::invalid(format!(
                "pid {pid} is not a peer of node {} (peers: {:?})",
                self.pid, self.peers
            )))
        }
    }
}

fn new_node(config: Result<Config, ConfigError>) -> Result<*mut omnipaxos_node, Failure> {
    Ok(to_boxed_ptr(Node::new(config?)?))
}

fn entry_list(list: EntryList) -> *mut omnipaxos_entries {
    to_boxed_ptr(list)
}

/// Creates a node from a HOCON configuration file (see the README for the keys: `pid` and
/// `peers` or `nodes` are required).
///
/// On success `*out` receives the node, which the caller owns and releases with
/// `omnipaxos_node_free`. With persistent storage that holds state from an earlier run,
/// call `omnipaxos_fail_recovery` next. When `log_file_path` is set, its parent
/// directories are created and the file is opened for appending.
///
/// The file must be a regular file of at most 64 KiB (a FIFO, a device or a directory is
/// refused without being read); `include` is not supported.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER` (`path` or `out` NULL);
/// `OMNIPAXOS_ERR_INVALID_ARGUMENT` (`path` not UTF-8); `OMNIPAXOS_ERR_CONFIG` (unreadable
/// or non-regular file, bad HOCON, missing/ill-typed/invalid key, unopenable
/// `log_file_path`; the last error names the file or key); `OMNIPAXOS_ERR_STORAGE_*` (the
/// storage cannot be opened); `OMNIPAXOS_ERR_STORAGE_MISMATCH` (the persistent directory
/// belongs to another pid or configuration).
/// On error `*out` is not written.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_node_from_hocon_file(
    path: *const c_char,
    out: *mut *mut omnipaxos_node,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (path, out) = unsafe { (try_str(path, "path")?, try_out(out, "out")?) };
        out.set(new_node(hocon::from_file(Path::new(path)))?);
        Ok(())
    })
}

/// Creates a node from HOCON text: the `len` bytes at `text` (no NUL terminator needed;
/// the text must be UTF-8). Otherwise the same as `omnipaxos_node_from_hocon_file`.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER` (`out` NULL, or `text` NULL with `len > 0`);
/// `OMNIPAXOS_ERR_INVALID_ARGUMENT` (not UTF-8); `OMNIPAXOS_ERR_CONFIG`;
/// `OMNIPAXOS_ERR_STORAGE_*`. On error `*out` is not written.
///
/// # Safety
/// `text` is NULL or points to `len` readable bytes; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_node_from_hocon_str(
    text: *const c_char,
    len: usize,
    out: *mut *mut omnipaxos_node,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (bytes, out) = unsafe {
            (
                try_slice(text.cast(), len, "text", usize::MAX, |n| {
                    Failure::invalid(format!("`len` {n} is too large"))
                })?,
                try_out(out, "out")?,
            )
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            Failure::invalid(format!(
                "the HOCON text is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ))
        })?;
        out.set(new_node(hocon::from_str(text))?);
        Ok(())
    })
}

/// Closes and frees a node: on persistent storage it first writes what the node owes its
/// storage (writes not yet committed, and the lazily written decided index: a node
/// reopened on the directory reports what was decided; a failure, such as a full disk, is
/// ignored and loses nothing committed), then frees its memory, its outgoing buffers, its
/// storage handles (releasing the directory lock) and its log file.
/// NULL is allowed (does nothing). Pointers from `omnipaxos_take_outgoing` on this node
/// become invalid; entry lists read from it stay valid. No other thread may use the node
/// during or after this call.
///
/// # Safety
/// `node` is NULL or a live node not used by any other thread.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_node_free(node: *mut omnipaxos_node) {
    // SAFETY: forwarded contract.
    guard(|| unsafe { free_box(node) })
}

/// Proposes an entry: `len` bytes at `data` (copied; `data` may be NULL only when `len` is
/// 0). At the leader it goes into the next batch; at a follower it is forwarded to the
/// leader (and re-sent until the leader takes it); while no leader is known it waits in a
/// buffer of `buffer_size` entries. Success means the entry was accepted for proposal, not
/// that it is decided: watch `omnipaxos_decided_idx`.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_INVALID_ARGUMENT` (`len` larger
/// than `max_message_bytes` less 128 bytes and the entry's length prefix, the room a
/// message needs besides the entry: such an entry could never be sent);
/// `OMNIPAXOS_ERR_BUFFER_FULL`
/// (retry later); `OMNIPAXOS_ERR_STOPPED` (a StopSign is in the log, see
/// `omnipaxos_reconfigure`); `OMNIPAXOS_ERR_STORAGE_*`. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `data` is NULL or points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_append(
    node: *mut omnipaxos_node,
    data: *const u8,
    len: usize,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let node = unsafe { try_ref(node, "node") }?;
        let max = node.max_message_bytes;
        // SAFETY: forwarded contract.
        let entry = unsafe {
            // (`append` refuses an entry a little shorter than this that still cannot fit:
            // see `wire::max_entry_len`; here only what can never be read as one entry.)
            try_slice(data, len, "data", max, |n| {
                Failure::invalid(format!(
                    "an entry of {n} bytes can never be sent: max_message_bytes is {max}"
                ))
            })
        }?;
        node.with(|s| s.paxos.append(entry))
    })
}

/// Appends `count` entries in one call: entry `i` is the next `lens[i]` bytes of `data`
/// (the entries lie back to back, `data` holds `lens[0] + ... + lens[count-1]` bytes). The
/// bytes are copied. The same as calling `omnipaxos_append` for each entry in order, for the
/// cost of one call (one lock, one boundary crossing): use it for bursts of small entries.
///
/// `*appended` (when `appended` is not NULL) receives how many entries were taken: `count`
/// on success, fewer when the proposal buffer filled up part-way (then the call returns
/// `OMNIPAXOS_ERR_BUFFER_FULL` and the entries from `*appended` on were not taken; retry
/// them later). On any other error nothing was taken and `*appended` is not written.
///
/// Errors: as `omnipaxos_append`; `OMNIPAXOS_ERR_NULL_PARAMETER` when `node` is NULL, or
/// `data`/`lens` is NULL with a non-zero size; `OMNIPAXOS_ERR_INVALID_ARGUMENT` when an
/// entry is too long to fit in a message (as for `omnipaxos_append`) or the lengths
/// overflow. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `data` is NULL or points to the sum of `lens` readable
/// bytes; `lens` is NULL or points to `count` readable `size_t`; `appended` is NULL or
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_append_batch(
    node: *mut omnipaxos_node,
    data: *const u8,
    lens: *const usize,
    count: usize,
    appended: *mut usize,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (node, lens, appended) = unsafe {
            (
                try_ref(node, "node")?,
                try_array(lens, count, "lens")?,
                try_out_opt(appended),
            )
        };
        let max = node.max_message_bytes;
        // Checked before anything is taken (all or nothing for this error).
        let max_len = crate::wire::max_entry_len(max);
        let mut total = 0usize;
        for (i, &len) in lens.iter().enumerate() {
            if len > max_len {
                return Err(Failure::invalid(format!(
                    "entry {i} of {len} bytes can never be sent: max_message_bytes is {max}"
                )));
            }
            total = total
                .checked_add(len)
                .ok_or_else(|| Failure::invalid("the entry lengths overflow"))?;
        }
        // SAFETY: forwarded contract (`data` holds `total` bytes).
        let bytes = unsafe { try_slice(data, total, "data", usize::MAX, |_| unreachable_len()) }?;
        let mut taken = 0usize;
        let result = node.with(|s| {
            let mut at = 0usize;
            for &len in lens {
                s.paxos.append(&bytes[at..at + len])?;
                at += len;
                taken += 1;
            }
            Ok(())
        });
        match (&result, appended) {
            (Ok(()), Some(out)) => out.set(taken),
            (Err(f), Some(out)) if f.code == omnipaxos_result::OMNIPAXOS_ERR_BUFFER_FULL => {
                out.set(taken)
            }
            _ => {}
        }
        result
    })
}

/// `try_slice`'s length callback for a length that was already checked.
fn unreachable_len() -> Failure {
    Failure::invalid("the entries are too large")
}

/// Hands the node one message received from another node: the `len` bytes at `msg`, exactly
/// as the sender's `omnipaxos_take_outgoing` produced them. Afterwards, call
/// `omnipaxos_take_outgoing` and send what it returns.
///
/// A rejected message changes nothing in the node. Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`
/// (`node` NULL, or `msg` NULL with `len > 0`); `OMNIPAXOS_ERR_MESSAGE_TOO_LARGE` (`len`
/// above `max_message_bytes`; the bytes are not read); `OMNIPAXOS_ERR_MALFORMED_MESSAGE`;
/// `OMNIPAXOS_ERR_UNSUPPORTED_VERSION`; `OMNIPAXOS_ERR_WRONG_CONFIGURATION`;
/// `OMNIPAXOS_ERR_UNKNOWN_SENDER` (the sender is not a peer or the receiver is not this
/// node); `OMNIPAXOS_ERR_STORAGE_*`. The bytes are decoded before the node's mutex is
/// taken, so decoding does not block other calls. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `msg` is NULL or points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_handle_incoming(
    node: *mut omnipaxos_node,
    msg: *const u8,
    len: usize,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let node = unsafe { try_ref(node, "node") }?;
        let max = node.max_message_bytes;
        // SAFETY: forwarded contract.
        let bytes = unsafe {
            try_slice(msg, len, "msg", max, |len| {
                DecodeError::TooLarge { len, max }.into()
            })
        }?;
        let (config_id, message) = wire::decode(bytes, max)?;
        if config_id != node.config_id {
            return Err(Error::WrongConfiguration {
                got: config_id,
                expected: node.config_id,
            }
            .into());
        }
        if message.to != node.pid {
            return Err(Failure::new(
                omnipaxos_result::OMNIPAXOS_ERR_UNKNOWN_SENDER,
                format!(
                    "message addressed to pid {}, but this node is pid {}",
                    message.to, node.pid
                ),
            ));
        }
        if !node.peers.contains(&message.from) {
            return Err(Error::UnknownSender(message.from).into());
        }
        node.with(|s| s.paxos.handle_incoming(message))
    })
}

/// Takes the messages the node wants to send: `*msgs` receives an array of `*count`
/// messages (each a receiver pid and the bytes to give to that node's
/// `omnipaxos_handle_incoming`). `*count` may be 0.
///
/// The array and the bytes it points to are owned by the node and stay valid until the next
/// `omnipaxos_take_outgoing` on the same node (successful or not) or `omnipaxos_node_free`;
/// do not free them. The node reuses one buffer for the bytes and one for the array, so
/// once warmed up a call allocates nothing. With persistent storage this call first makes
/// the node's pending writes durable (one fsync for all), so messages are released only
/// after what they promise is on disk.
///
/// **Call it until `*count` is 0.** A leader on storage that fsyncs returns its new
/// entries' messages to the followers *before* it fsyncs its own copy (they promise nothing
/// about its disk), and the next call fsyncs: sending in between lets the followers' disk
/// writes overlap the leader's, so an entry is decided after about one fsync instead of
/// two. A caller that takes messages once per event is still correct; the leader's fsync
/// then waits for that next call.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_STORAGE_*` (no message is
/// released; retry later). On error `*msgs` and `*count` are not written. Thread-safe, but
/// when two threads take messages from one node each invalidates the other's array: let
/// one thread do it.
///
/// # Safety
/// `node` is NULL or a live node; `msgs` and `count` are NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_take_outgoing(
    node: *mut omnipaxos_node,
    msgs: *mut *const omnipaxos_outgoing,
    count: *mut usize,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (node, msgs, count) = unsafe {
            (
                try_ref(node, "node")?,
                try_out(msgs, "msgs")?,
                try_out(count, "count")?,
            )
        };
        let (ptr, n) = node.with(|s| {
            let State {
                paxos,
                bytes,
                outgoing,
                ..
            } = s;
            outgoing.0.clear();
            paxos.take_outgoing_encoded(bytes, |receiver, range| {
                outgoing.0.push(omnipaxos_outgoing {
                    receiver,
                    data: std::ptr::null(),
                    len: range.len(),
                })
            })?;
            // Point into `bytes` only now: it may have moved while it grew.
            let mut offset = 0;
            for o in &mut outgoing.0 {
                o.data = bytes[offset..].as_ptr();
                offset += o.len;
            }
            Ok((outgoing.0.as_ptr(), outgoing.0.len()))
        })?;
        msgs.set(ptr);
        count.set(n);
        Ok(())
    })
}

/// Advances the node's logical clock by one tick. Call it at a fixed period on every node
/// (e.g. every 10 ms); `election_tick_timeout` and `resend_tick_timeout` count ticks.
/// Afterwards call `omnipaxos_take_outgoing`.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_STORAGE_*`. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_tick(node: *mut omnipaxos_node) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let node = unsafe { try_ref(node, "node") }?;
        node.with(|s| s.paxos.tick())
    })
}

/// Sends a heartbeat to every peer now and applies the leader election's rules again,
/// without advancing time (heartbeats otherwise go out every quarter of
/// `election_tick_timeout`). For callers that want to probe their peers at once, e.g.
/// after a link came back.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_STORAGE_*`. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_election_timeout(node: *mut omnipaxos_node) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let node = unsafe { try_ref(node, "node") }?;
        node.with(|s| s.paxos.election_timeout())
    })
}

/// The decided index: entries `0 .. *out - 1` are decided (`*out` entries in all, trimmed
/// ones included). It never decreases while the node runs. It is the decided index as of
/// the last commit (`omnipaxos_take_outgoing` commits), so every entry reported decided is
/// on this node's disk (and a majority's) and survives a crash; reading it writes nothing
/// (no fsync). The index itself is written lazily (at the latest one resend period later,
/// like Raft's commit index, and by `omnipaxos_node_free`): after a crash and
/// `omnipaxos_fail_recovery` it may start lower and rises again as the leader brings the
/// node up to date; a decided entry never changes. Once a StopSign is decided (see
/// `omnipaxos_reconfigure`), it is the last of these: index `*out - 1` holds the StopSign
/// (`omnipaxos_read` gives it as `OMNIPAXOS_ENTRY_STOPSIGN`; the functions that read
/// entry ranges stop before it).
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_STORAGE_*`. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_decided_idx(
    node: *mut omnipaxos_node,
    out: *mut u64,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (node, out) = unsafe { (try_ref(node, "node")?, try_out(out, "out")?) };
        out.set(node.with(|s| s.paxos.decided_idx())?);
        Ok(())
    })
}

/// Reads the entry at log index `idx` into a new one-element list (`*out`; free it with
/// `omnipaxos_entries_free`). Its kind says whether it is decided, undecided, the StopSign,
/// or trimmed (a trimmed entry has empty data).
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_OUT_OF_RANGE` (`idx` past the end
/// of the log); `OMNIPAXOS_ERR_STORAGE_*`. On error `*out` is not written. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_read(
    node: *mut omnipaxos_node,
    idx: u64,
    out: *mut *mut omnipaxos_entries,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (node, out) = unsafe { (try_ref(node, "node")?, try_out(out, "out")?) };
        let entry = node.with(|s| s.paxos.read(idx))?.ok_or_else(|| {
            Failure::from(Error::OutOfRange {
                idx,
                detail: "past the end of the log".to_string(),
            })
        })?;
        let mut entries = Entries::with_capacity(1, 0);
        let kind = match &entry {
            LogEntry::Decided(data) => {
                entries.push(data);
                omnipaxos_entry_kind::OMNIPAXOS_ENTRY_DECIDED
            }
            LogEntry::Undecided(data) => {
                entries.push(data);
                omnipaxos_entry_kind::OMNIPAXOS_ENTRY_UNDECIDED
            }
            LogEntry::StopSign(..) => {
                entries.push(&[]);
                omnipaxos_entry_kind::OMNIPAXOS_ENTRY_STOPSIGN
            }
            LogEntry::Trimmed => {
                entries.push(&[]);
                omnipaxos_entry_kind::OMNIPAXOS_ENTRY_TRIMMED
            }
        };
        out.set(entry_list(EntryList {
            entries,
            first_idx: idx,
            kinds: Kinds::All(kind),
        }));
        Ok(())
    })
}

/// Reads the entries with log indexes `from .. to - 1` (decided or not) into a new list
/// (`*out`; free it with `omnipaxos_entries_free`). Each element's kind says whether it is
/// decided. `from == to` gives an empty list. With a StopSign in the log, the range may
/// end one past the last entry (the StopSign's slot, e.g. at the decided index once the
/// StopSign is decided): the list holds the entries before it (`omnipaxos_read` gives the
/// StopSign itself).
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_INVALID_ARGUMENT` (`from > to`);
/// `OMNIPAXOS_ERR_OUT_OF_RANGE` (part of the range is past the end of the log, or
/// trimmed); `OMNIPAXOS_ERR_STORAGE_*`. On error `*out` is not written. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_read_entries(
    node: *mut omnipaxos_node,
    from: u64,
    to: u64,
    out: *mut *mut omnipaxos_entries,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (node, out) = unsafe { (try_ref(node, "node")?, try_out(out, "out")?) };
        if from > to {
            return Err(Failure::invalid(format!(
                "invalid range: from ({from}) is greater than to ({to})"
            )));
        }
        let mut entries = Entries::new();
        let decided = node.with(|s| {
            if from < to {
                s.paxos.read_entries(from, to, &mut entries)?;
            }
            s.paxos.decided_idx()
        })?;
        out.set(entry_list(EntryList {
            entries,
            first_idx: from,
            kinds: Kinds::DecidedBelow(decided),
        }));
        Ok(())
    })
}

/// Reads the decided entries from log index `from` up to the decided index into a new list
/// (`*out`; free it with `omnipaxos_entries_free`); every element is
/// `OMNIPAXOS_ENTRY_DECIDED`. The list is empty when `from >= decided index`. A typical
/// loop: keep `next`, read the suffix from `next`, apply it, add its count to `next`. Once
/// a StopSign is decided (`omnipaxos_is_stopped`), the last decided index is the
/// StopSign's, not an entry's: `next` then stays one below the decided index.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_OUT_OF_RANGE` (`from` is
/// trimmed); `OMNIPAXOS_ERR_STORAGE_*`. On error `*out` is not written. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_read_decided_suffix(
    node: *mut omnipaxos_node,
    from: u64,
    out: *mut *mut omnipaxos_entries,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (node, out) = unsafe { (try_ref(node, "node")?, try_out(out, "out")?) };
        let mut entries = Entries::new();
        node.with(|s| s.paxos.read_decided_suffix(from, &mut entries))?;
        out.set(entry_list(EntryList {
            entries,
            first_idx: from,
            kinds: Kinds::All(omnipaxos_entry_kind::OMNIPAXOS_ENTRY_DECIDED),
        }));
        Ok(())
    })
}

/// The leader this node currently follows (or is): `*pid` receives its pid, 0 when no
/// leader is known; `*ballot` (when `ballot` is not NULL) its ballot, all zero when no
/// leader is known.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER` (`node` or `pid` NULL). Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `pid` and `ballot` are NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_leader(
    node: *mut omnipaxos_node,
    pid: *mut u64,
    ballot: *mut omnipaxos_ballot,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (node, pid, ballot) = unsafe {
            (
                try_ref(node, "node")?,
                try_out(pid, "pid")?,
                try_out_opt(ballot),
            )
        };
        let leader = node.with(|s| Ok(s.paxos.leader()))?;
        let (leader_pid, b) = match leader {
            Some((p, b)) => (
                p,
                omnipaxos_ballot {
                    n: b.n,
                    priority: b.priority,
                    pid: b.pid,
                },
            ),
            None => (0, omnipaxos_ballot::default()),
        };
        pid.set(leader_pid);
        if let Some(ballot) = ballot {
            ballot.set(b);
        }
        Ok(())
    })
}

/// This node's pid (`*out`). Does not take the node's mutex.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_pid(
    node: *mut omnipaxos_node,
    out: *mut u64,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (node, out) = unsafe { (try_ref(node, "node")?, try_out(out, "out")?) };
        out.set(node.pid);
        Ok(())
    })
}

/// Whether a majority of the configuration (this node included) answered a heartbeat this
/// node sent within the last `election_tick_timeout` ticks (`*out`). False on a new or
/// restarted node until a majority has answered it. A node that is not quorum-connected
/// cannot become leader.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_is_quorum_connected(
    node: *mut omnipaxos_node,
    out: *mut bool,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (node, out) = unsafe { (try_ref(node, "node")?, try_out(out, "out")?) };
        out.set(node.with(|s| Ok(s.paxos.is_quorum_connected()))?);
        Ok(())
    })
}

/// Re-initialises the node's volatile state from its storage after a crash: call it once,
/// right after creating a node on persistent storage that holds state from an earlier run.
/// The node rejoins as a follower and asks the leader to bring it up to date.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_STORAGE_*`. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_fail_recovery(node: *mut omnipaxos_node) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let node = unsafe { try_ref(node, "node") }?;
        node.with(|s| s.paxos.fail_recovery())
    })
}

/// Tells the node that the link to peer `pid` was re-established after messages may have
/// been lost (e.g. a TCP connection was re-opened): it re-synchronises with that peer.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_INVALID_ARGUMENT` (`pid` is not a
/// peer); `OMNIPAXOS_ERR_STORAGE_*`. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_reconnected(
    node: *mut omnipaxos_node,
    pid: u64,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let node = unsafe { try_ref(node, "node") }?;
        node.check_peer(pid)?;
        node.with(|s| s.paxos.reconnected(pid))
    })
}

/// Trims (compacts) the log of every node up to index `idx` (entries below `idx` are
/// removed; reads of them give `OMNIPAXOS_ENTRY_TRIMMED`). `UINT64_MAX` trims everything
/// every node has decided. Call it at the leader; only entries whose decision every node
/// has on disk can be trimmed (a node writes its decided index lazily, within one resend
/// period, so entries decided just now become trimmable a little later).
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_NOT_LEADER` (call it at the
/// leader: the last-error message names it when known); `OMNIPAXOS_ERR_INVALID_ARGUMENT`
/// (beyond what can be trimmed yet, or a leader still being elected);
/// `OMNIPAXOS_ERR_STORAGE_*`. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_trim(node: *mut omnipaxos_node, idx: u64) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let node = unsafe { try_ref(node, "node") }?;
        let idx = (idx != u64::MAX).then_some(idx);
        node.with(|s| s.paxos.trim(idx))
    })
}

/// Hands the leadership to server `pid`. Call it at the leader: it asks `pid` to take
/// over with a higher ballot at once. Success means asked, not done: the target leads
/// within a few message delays (poll `omnipaxos_leader`); if the request is lost nothing
/// changes and you can call it again. No decided entry is lost. At the leader with its own
/// pid it does nothing.
///
/// Errors (nothing changed): `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_NOT_LEADER` (at
/// a follower; the last-error message names the leader when known);
/// `OMNIPAXOS_ERR_INVALID_ARGUMENT` (`pid` is not in the configuration, this leader is
/// still being elected, or the target is unreachable (no heartbeat answered within the
/// last election timeout), not quorum-connected, or still catching up on the decided
/// entries; the message says which). Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_transfer_leadership(
    node: *mut omnipaxos_node,
    pid: u64,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let node = unsafe { try_ref(node, "node") }?;
        node.with(|s| s.paxos.transfer_leadership(pid))
    })
}

/// Sets this node's leader priority (`leader_priority` in the configuration) for the
/// ballots it takes from now on: among servers that take over at the same time, the
/// higher priority leads. A ballot the node already holds keeps its priority, so the
/// change alone never deposes a leader; `omnipaxos_transfer_leadership` moves the
/// leadership now.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_set_leader_priority(
    node: *mut omnipaxos_node,
    priority: u32,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let node = unsafe { try_ref(node, "node") }?;
        node.with(|s| {
            s.paxos.set_leader_priority(priority);
            Ok(())
        })
    })
}

/// Proposes to end this configuration with a StopSign naming the next one: its id
/// `next_config_id`, its `n_nodes` servers (`nodes`, an array of pids) and `metadata_len`
/// bytes of opaque application data (`metadata`; may be NULL when `metadata_len` is 0).
/// Everything is copied.
///
/// Call it at the leader (`omnipaxos_leader` tells which node leads). The StopSign goes
/// into the log after every entry appended before this call, and from this call on
/// `omnipaxos_append` fails with `OMNIPAXOS_ERR_STOPPED` here and at every node that has
/// the StopSign. Success means proposed, not decided: poll `omnipaxos_is_stopped` (on any
/// node) and read the outcome with `omnipaxos_decided_stopsign`. Like an entry, a StopSign
/// can be lost when the leader is deposed before a majority accepted it; appends then
/// succeed again at the new leader, and you call this again there. A leader elected a
/// moment ago (still collecting promises) proposes it as soon as it can.
///
/// Once the StopSign is decided, this configuration takes no more entries. Starting the
/// nodes of the next configuration (HOCON `config_id` = `next_config_id`) and moving the
/// log or the application state over is the application's job; keep ticking the nodes of
/// this configuration until the new ones no longer need them.
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER` (`node` NULL, `nodes` NULL with `n_nodes > 0`,
/// `metadata` NULL with `metadata_len > 0`); `OMNIPAXOS_ERR_INVALID_ARGUMENT` (no node,
/// pid 0, a pid listed twice, `next_config_id` equal to this configuration's id, or a
/// StopSign too large for `max_message_bytes`); `OMNIPAXOS_ERR_NOT_LEADER` (this node is
/// not the leader; the StopSign is not forwarded: the last-error message names the leader
/// when one is known); `OMNIPAXOS_ERR_STOPPED` (a StopSign is already in the log or
/// proposed); `OMNIPAXOS_ERR_STORAGE_*`. On error nothing was proposed. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `nodes` is NULL or points to `n_nodes` readable
/// `uint64_t`; `metadata` is NULL or points to `metadata_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_reconfigure(
    node: *mut omnipaxos_node,
    next_config_id: u32,
    nodes: *const u64,
    n_nodes: usize,
    metadata: *const u8,
    metadata_len: usize,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let node = unsafe { try_ref(node, "node") }?;
        let max = node.max_message_bytes;
        // SAFETY: forwarded contract.
        let (nodes, metadata) = unsafe {
            (
                try_array(nodes, n_nodes, "nodes")?,
                try_slice(metadata, metadata_len, "metadata", max, |n| {
                    Failure::invalid(format!(
                        "{n} bytes of metadata can never be sent: max_message_bytes is {max}"
                    ))
                })?,
            )
        };
        node.with(|s| {
            s.paxos
                .reconfigure(next_config_id, nodes.to_vec(), metadata.to_vec())
        })
    })
}

/// Whether this configuration is stopped (`*out`): a StopSign is decided and is the last
/// entry of the log. Like `omnipaxos_decided_idx`, it writes nothing.
/// After a crash and `omnipaxos_fail_recovery` it may read false again until the leader
/// tells the node again that the StopSign is decided (appends fail with
/// `OMNIPAXOS_ERR_STOPPED` meanwhile).
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER`; `OMNIPAXOS_ERR_STORAGE_*`. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn omnipaxos_is_stopped(
    node: *mut omnipaxos_node,
    out: *mut bool,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (node, out) = unsafe { (try_ref(node, "node")?, try_out(out, "out")?) };
        out.set(node.with(|s| s.paxos.is_stopped())?);
        Ok(())
    })
}

/// The decided StopSign, if there is one: the next configuration.
///
/// `*found` receives whether a StopSign is decided (as `omnipaxos_is_stopped`). If it is,
/// `*next_config_id` receives the next configuration's id, the first
/// `min(nodes_cap, count)` pids of its nodes are copied into `nodes`, and `*n_nodes`
/// receives the full count; likewise the metadata into `metadata` (room for
/// `metadata_cap` bytes) and its full length into `*metadata_len`. A count above the
/// capacity means the copy was cut short: call again with a larger buffer (the decided
/// StopSign never changes). Pass `nodes` = NULL with `nodes_cap` = 0 (and the same for
/// `metadata`) to ask for the sizes only. If no StopSign is decided, `*found` is false,
/// `*next_config_id`, `*n_nodes` and `*metadata_len` are 0, and the buffers are not
/// touched. The StopSign sits at log index `decided index - 1`
/// (`omnipaxos_read` there gives an `OMNIPAXOS_ENTRY_STOPSIGN` element).
///
/// Errors: `OMNIPAXOS_ERR_NULL_PARAMETER` (`node`, `found`, `next_config_id`, `n_nodes`
/// or `metadata_len` NULL, or a buffer NULL with a non-zero capacity);
/// `OMNIPAXOS_ERR_INVALID_ARGUMENT` (`nodes` not aligned for `uint64_t`);
/// `OMNIPAXOS_ERR_STORAGE_*`. On error nothing is written. Thread-safe.
///
/// # Safety
/// `node` is NULL or a live node; `found`, `next_config_id`, `n_nodes` and `metadata_len`
/// are NULL or valid for a write; `nodes` is NULL or valid for writes of `nodes_cap`
/// `uint64_t`; `metadata` is NULL or valid for writes of `metadata_cap` bytes.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn omnipaxos_decided_stopsign(
    node: *mut omnipaxos_node,
    found: *mut bool,
    next_config_id: *mut u32,
    nodes: *mut u64,
    nodes_cap: usize,
    n_nodes: *mut usize,
    metadata: *mut u8,
    metadata_cap: usize,
    metadata_len: *mut usize,
) -> omnipaxos_result {
    call(|| {
        // SAFETY: forwarded contract.
        let (node, found, next_config_id, nodes, n_nodes, metadata, metadata_len) = unsafe {
            (
                try_ref(node, "node")?,
                try_out(found, "found")?,
                try_out(next_config_id, "next_config_id")?,
                try_out_buf(nodes, nodes_cap, "nodes")?,
                try_out(n_nodes, "n_nodes")?,
                try_out_buf(metadata, metadata_cap, "metadata")?,
                try_out(metadata_len, "metadata_len")?,
            )
        };
        match node.with(|s| s.paxos.decided_stopsign())? {
            Some(ss) => {
                nodes.fill(&ss.nodes);
                metadata.fill(&ss.metadata);
                found.set(true);
                next_config_id.set(ss.next_config_id);
                n_nodes.set(ss.nodes.len());
                metadata_len.set(ss.metadata.len());
            }
            None => {
                found.set(false);
                next_config_id.set(0);
                n_nodes.set(0);
                metadata_len.set(0);
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::entries::{
        omnipaxos_entries_count, omnipaxos_entries_free, omnipaxos_entries_get,
    };
    use omnipaxos_result::*;

    #[test]
    fn node_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Node>();
    }

    fn node(pid: u64) -> *mut omnipaxos_node {
        let text = format!("pid = {pid}\nnodes = [1, 2, 3]\nelection_tick_timeout = 3\n");
        let mut out = std::ptr::null_mut();
        let rc =
            unsafe { omnipaxos_node_from_hocon_str(text.as_ptr().cast(), text.len(), &mut out) };
        assert_eq!(rc, OMNIPAXOS_OK);
        out
    }

    /// Moves all messages between the nodes until quiet; returns how many moved.
    fn deliver(nodes: &[*mut omnipaxos_node]) -> usize {
        let mut total = 0;
        loop {
            let mut moved = 0;
            for &n in nodes {
                let (mut msgs, mut count) = (std::ptr::null(), 0);
                assert_eq!(
                    unsafe { omnipaxos_take_outgoing(n, &mut msgs, &mut count) },
                    OMNIPAXOS_OK
                );
                for k in 0..count {
                    let m = unsafe { &*msgs.add(k) };
                    let to = nodes[m.receiver as usize - 1];
                    assert_eq!(
                        unsafe { omnipaxos_handle_incoming(to, m.data, m.len) },
                        OMNIPAXOS_OK
                    );
                    moved += 1;
                }
            }
            total += moved;
            if moved == 0 {
                return total;
            }
        }
    }

    fn decided(n: *mut omnipaxos_node) -> u64 {
        let mut d = 0;
        assert_eq!(unsafe { omnipaxos_decided_idx(n, &mut d) }, OMNIPAXOS_OK);
        d
    }

    #[test]
    fn cluster_through_the_c_abi() {
        let nodes: Vec<_> = (1..=3).map(node).collect();
        let mut leader = 0;
        for _ in 0..200 {
            for &n in &nodes {
                assert_eq!(unsafe { omnipaxos_tick(n) }, OMNIPAXOS_OK);
            }
            deliver(&nodes);
            let mut pids = [0u64; 3];
            for (i, &n) in nodes.iter().enumerate() {
                assert_eq!(
                    unsafe { omnipaxos_leader(n, &mut pids[i], std::ptr::null_mut()) },
                    OMNIPAXOS_OK
                );
            }
            if pids[0] != 0 && pids.iter().all(|&p| p == pids[0]) {
                leader = pids[0];
                break;
            }
        }
        assert_ne!(leader, 0, "no leader elected");
        for i in 0..20u8 {
            let at = nodes[usize::from(i) % 3];
            assert_eq!(
                unsafe { omnipaxos_append(at, [i].as_ptr(), 1) },
                OMNIPAXOS_OK
            );
        }
        for _ in 0..100 {
            if nodes.iter().all(|&n| decided(n) >= 20) {
                break;
            }
            for &n in &nodes {
                assert_eq!(unsafe { omnipaxos_tick(n) }, OMNIPAXOS_OK);
            }
            deliver(&nodes);
        }
        let mut logs = Vec::new();
        for &n in &nodes {
            let mut e = std::ptr::null_mut();
            assert_eq!(
                unsafe { omnipaxos_read_decided_suffix(n, 0, &mut e) },
                OMNIPAXOS_OK
            );
            let mut log = Vec::new();
            for i in 0..unsafe { omnipaxos_entries_count(e) } {
                let (mut data, mut len) = (std::ptr::null(), 0);
                let rc = unsafe {
                    omnipaxos_entries_get(e, i, &mut data, &mut len, std::ptr::null_mut())
                };
                assert_eq!(rc, OMNIPAXOS_OK);
                log.push(unsafe { std::slice::from_raw_parts(data, len) }.to_vec());
            }
            unsafe { omnipaxos_entries_free(e) };
            logs.push(log);
        }
        assert_eq!(logs[0].len(), 20);
        assert!(logs.iter().all(|l| *l == logs[0]));
        for n in nodes {
            unsafe { omnipaxos_node_free(n) };
        }
    }

    #[test]
    fn take_outgoing_reuses_its_buffers() {
        let n = node(1);
        let mut arrays = Vec::new();
        for _ in 0..20 {
            // Every election_timeout sends one heartbeat request to each peer.
            assert_eq!(unsafe { omnipaxos_election_timeout(n) }, OMNIPAXOS_OK);
            let (mut msgs, mut count) = (std::ptr::null(), 0);
            assert_eq!(
                unsafe { omnipaxos_take_outgoing(n, &mut msgs, &mut count) },
                OMNIPAXOS_OK
            );
            assert_eq!(count, 2);
            let first = unsafe { &*msgs };
            arrays.push((msgs, first.data));
        }
        // Once warmed up, the same array and the same byte buffer are handed out again.
        assert!(
            arrays[2..].iter().all(|a| *a == arrays[2]),
            "buffers were reallocated"
        );
        unsafe { omnipaxos_node_free(n) };
    }

    #[test]
    fn rejected_calls_leave_out_parameters_alone() {
        let n = node(1);
        let mut out = 77u64;
        assert_eq!(
            unsafe { omnipaxos_decided_idx(std::ptr::null_mut(), &mut out) },
            OMNIPAXOS_ERR_NULL_PARAMETER
        );
        let mut e = 0x10 as *mut omnipaxos_entries;
        assert_eq!(
            unsafe { omnipaxos_read(n, 5, &mut e) },
            OMNIPAXOS_ERR_OUT_OF_RANGE
        );
        assert_eq!(
            unsafe { omnipaxos_read_entries(n, 5, 4, &mut e) },
            OMNIPAXOS_ERR_INVALID_ARGUMENT
        );
        assert_eq!((out, e as usize), (77, 0x10));
        let garbage = [1u8, 2, 3];
        assert_eq!(
            unsafe { omnipaxos_handle_incoming(n, garbage.as_ptr(), 3) },
            OMNIPAXOS_ERR_MALFORMED_MESSAGE
        );
        assert_eq!(
            unsafe { omnipaxos_handle_incoming(n, std::ptr::null(), 3) },
            OMNIPAXOS_ERR_NULL_PARAMETER
        );
        unsafe { omnipaxos_node_free(n) };
    }

    #[test]
    fn reconfigure_through_the_c_abi() {
        let nodes: Vec<_> = (1..=3).map(node).collect();
        let mut leader = 0u64;
        for _ in 0..200 {
            for &n in &nodes {
                assert_eq!(unsafe { omnipaxos_tick(n) }, OMNIPAXOS_OK);
            }
            deliver(&nodes);
            let mut pids = [0u64; 3];
            for (i, &n) in nodes.iter().enumerate() {
                assert_eq!(
                    unsafe { omnipaxos_leader(n, &mut pids[i], std::ptr::null_mut()) },
                    OMNIPAXOS_OK
                );
            }
            if pids[0] != 0 && pids.iter().all(|&p| p == pids[0]) {
                leader = pids[0];
                break;
            }
        }
        assert_ne!(leader, 0, "no leader elected");
        let at_leader = nodes[leader as usize - 1];
        let follower = nodes[leader as usize % 3];
        for i in 0..5u8 {
            assert_eq!(
                unsafe { omnipaxos_append(at_leader, [i].as_ptr(), 1) },
                OMNIPAXOS_OK
            );
        }
        let next = [4u64, 5, 6];
        let meta = b"metadata";
        let reconf = |n, id, pids: &[u64]| unsafe {
            omnipaxos_reconfigure(n, id, pids.as_ptr(), pids.len(), meta.as_ptr(), meta.len())
        };
        assert_eq!(reconf(follower, 2, &next), OMNIPAXOS_ERR_NOT_LEADER);
        assert_eq!(reconf(at_leader, 2, &[]), OMNIPAXOS_ERR_INVALID_ARGUMENT);
        assert_eq!(
            reconf(at_leader, 2, &[4, 4]),
            OMNIPAXOS_ERR_INVALID_ARGUMENT
        );
        assert_eq!(reconf(at_leader, 1, &next), OMNIPAXOS_ERR_INVALID_ARGUMENT);
        assert_eq!(
            unsafe { omnipaxos_reconfigure(at_leader, 2, std::ptr::null(), 2, meta.as_ptr(), 0) },
            OMNIPAXOS_ERR_NULL_PARAMETER
        );
        assert_eq!(reconf(at_leader, 2, &next), OMNIPAXOS_OK);
        assert_eq!(reconf(at_leader, 3, &next), OMNIPAXOS_ERR_STOPPED);
        assert_eq!(
            unsafe { omnipaxos_append(at_leader, [9].as_ptr(), 1) },
            OMNIPAXOS_ERR_STOPPED
        );
        let stopped = |n| {
            let mut b = false;
            assert_eq!(unsafe { omnipaxos_is_stopped(n, &mut b) }, OMNIPAXOS_OK);
            b
        };
        for _ in 0..50 {
            if nodes.iter().all(|&n| stopped(n)) {
                break;
            }
            for &n in &nodes {
                assert_eq!(unsafe { omnipaxos_tick(n) }, OMNIPAXOS_OK);
            }
            deliver(&nodes);
        }
        for &n in &nodes {
            assert!(stopped(n));
            assert_eq!(decided(n), 6, "5 entries and the StopSign");
            // Sizes only.
            let (mut found, mut id, mut count, mut len) = (false, 0u32, 0usize, 0usize);
            let rc = unsafe {
                omnipaxos_decided_stopsign(
                    n,
                    &mut found,
                    &mut id,
                    std::ptr::null_mut(),
                    0,
                    &mut count,
                    std::ptr::null_mut(),
                    0,
                    &mut len,
                )
            };
            assert_eq!(rc, OMNIPAXOS_OK);
            assert_eq!((found, id, count, len), (true, 2, 3, meta.len()));
            // A short buffer gets a prefix; the counts stay the full ones.
            let (mut pids, mut bytes) = ([0u64; 2], [0u8; 4]);
            let rc = unsafe {
                omnipaxos_decided_stopsign(
                    n,
                    &mut found,
                    &mut id,
                    pids.as_mut_ptr(),
                    pids.len(),
                    &mut count,
                    bytes.as_mut_ptr(),
                    bytes.len(),
                    &mut len,
                )
            };
            assert_eq!(rc, OMNIPAXOS_OK);
            assert_eq!((pids, &bytes, count, len), ([4, 5], b"meta", 3, 8));
            let (mut pids, mut bytes) = ([0u64; 8], [0u8; 16]);
            let rc = unsafe {
                omnipaxos_decided_stopsign(
                    n,
                    &mut found,
                    &mut id,
                    pids.as_mut_ptr(),
                    pids.len(),
                    &mut count,
                    bytes.as_mut_ptr(),
                    bytes.len(),
                    &mut len,
                )
            };
            assert_eq!(rc, OMNIPAXOS_OK);
            assert_eq!((&pids[..count], &bytes[..len]), (&next[..], &meta[..]));
            // The log: a StopSign element at index 5.
            let mut e = std::ptr::null_mut();
            assert_eq!(unsafe { omnipaxos_read(n, 5, &mut e) }, OMNIPAXOS_OK);
            let (mut data, mut dlen) = (std::ptr::null(), 0);
            let mut kind = omnipaxos_entry_kind::OMNIPAXOS_ENTRY_DECIDED;
            assert_eq!(
                unsafe { omnipaxos_entries_get(e, 0, &mut data, &mut dlen, &mut kind) },
                OMNIPAXOS_OK
            );
            assert_eq!(kind, omnipaxos_entry_kind::OMNIPAXOS_ENTRY_STOPSIGN);
            unsafe { omnipaxos_entries_free(e) };
            assert_eq!(
                unsafe { omnipaxos_append(n, [9].as_ptr(), 1) },
                OMNIPAXOS_ERR_STOPPED
            );
        }
        for n in nodes {
            unsafe { omnipaxos_node_free(n) };
        }
    }

    #[test]
    fn decided_stopsign_checks_its_parameters_and_reports_none() {
        let n = node(1);
        let (mut found, mut id, mut count, mut len) = (true, 9u32, 9usize, 9usize);
        let mut pids = [0u64; 2];
        let call = |found: *mut bool,
                    pids: *mut u64,
                    cap: usize,
                    id: &mut u32,
                    count: &mut usize,
                    len: &mut usize| unsafe {
            omnipaxos_decided_stopsign(n, found, id, pids, cap, count, std::ptr::null_mut(), 0, len)
        };
        assert_eq!(
            call(
                std::ptr::null_mut(),
                pids.as_mut_ptr(),
                2,
                &mut id,
                &mut count,
                &mut len
            ),
            OMNIPAXOS_ERR_NULL_PARAMETER
        );
        assert_eq!(
            call(
                &mut found,
                std::ptr::null_mut(),
                2,
                &mut id,
                &mut count,
                &mut len
            ),
            OMNIPAXOS_ERR_NULL_PARAMETER
        );
        assert_eq!(
            (found, id, count, len),
            (true, 9, 9, 9),
            "nothing written on error"
        );
        assert_eq!(
            call(
                &mut found,
                pids.as_mut_ptr(),
                2,
                &mut id,
                &mut count,
                &mut len
            ),
            OMNIPAXOS_OK
        );
        assert_eq!((found, id, count, len), (false, 0, 0, 0));
        let mut stopped = true;
        assert_eq!(
            unsafe { omnipaxos_is_stopped(n, &mut stopped) },
            OMNIPAXOS_OK
        );
        assert!(!stopped);
        assert_eq!(
            unsafe { omnipaxos_is_stopped(std::ptr::null_mut(), &mut stopped) },
            OMNIPAXOS_ERR_NULL_PARAMETER
        );
        // No leader is known: NOT_LEADER, and the message says so.
        let rc = unsafe { omnipaxos_reconfigure(n, 2, [4u64].as_ptr(), 1, std::ptr::null(), 0) };
        assert_eq!(rc, OMNIPAXOS_ERR_NOT_LEADER);
        unsafe { omnipaxos_node_free(n) };
    }
}
