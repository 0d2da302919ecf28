//! Persistent storage: the log in a [`commitlog`] directory, the acceptor state in a small
//! double-buffered, checksummed state file.
//!
//! # Layout
//!
//! ```text
//! <path>/LOCK    the pid of the process holding the lock (the lock itself is a flock on
//!                the directory, see DirLock)
//! <path>/identity  the node (pid, configuration) the directory belongs to (identity.rs)
//! <path>/state   the commit record: two checksummed slots, written in turn, in place
//! <path>/redo    present only while a batch that overwrites committed entries is applied
//! <path>/log/    the commitlog segments {base:020}.log and indexes {base:020}.index
//! ```
//!
//! **A commitlog message holds a run of consecutive entries** (up to about 64 KiB of them,
//! see `frame.rs`; a message per entry cost more than a 16-byte entry itself), and says
//! which: its payload starts with the index of its first entry and the entry count. A
//! segment file is named by the index of its first entry, and commitlog numbers the
//! messages within it from there (see `segments.rs`). Finding an entry is a binary search
//! over the index of the segment that holds it, reading the message headers it points at.
//! The log is only ever cut between messages: a batch that overwrites entries from inside a
//! message first moves its start back to that message's start and rewrites the entries in
//! between (`align_keep`). Trimming deletes whole segment files and never renumbers.
//!
//! Format version 2 (the state and redo files carry it): a directory written by version 1
//! (a message per entry) is refused with a `Corruption` error naming the version.
//!
//! # Atomic batches
//!
//! The **state file is the commit record**. It holds the promise, the accepted round, the
//! decided and compacted indexes, the StopSign, a sequence number, and the log length `L`
//! when it was written. It has two fixed-size slots, each a record protected by a magic, a
//! version and a crc32c; a commit writes the new record over the slot that does *not* hold
//! the newest one, in place, and fdatasyncs it, and opening takes the valid slot with the
//! highest sequence number (see `record.rs`). After a crash it is therefore either the old
//! or the new record, never a torn one.
//!
//! **The log is not all in the record.** A batch that only appends entries writes no record:
//! its commit is the fdatasync of the segment data. Opening therefore takes the log to be
//! the record's `L` entries *plus every whole, intact message after them* (`segments::
//! valid_end`: offsets and entries in sequence, crc32c valid, read forward through the
//! segments until the first torn or damaged message). This is the durability contract of
//! the `Storage` trait: after a crash, a prefix of the entries a batch appended may be
//! present although its `commit()` never returned (appended in order, so a prefix; each
//! message whole and checksummed), while every other write of the batch (promise, accepted round, decided
//! index, StopSign, trim, truncation) is all-or-nothing and never durable without all the
//! batch's appends (the log is synced before the record). It holds because **the log past
//! `L` only ever grows between two records**: every physical cut of entries that a commit
//! made durable belongs to an overwriting batch (below), which writes a redo file first and
//! a new record last, and the cut (a commitlog truncate or the removal of whole segments) is
//! made durable, by the fdatasync of the segment, which commits its new size, or the
//! fsyncs of `segments::repair`, before that record is written. Entries a failed commit
//! attempt left after the durable log are cut, and the cut synced, before a retry writes
//! anything. So no entry cut by a truncation or an overwrite can be found intact after `L`.
//! (The safety argument for Paxos: an entry that survives without its batch's commit is one
//! the node accepted but never acknowledged.)
//!
//! Between two commits, writes stay in memory: the setters change an in-memory state,
//! `append_entries` collects entries in a pending buffer, and `truncate` either shortens the
//! pending buffer or lowers `keep`, the number of committed entries the batch keeps. Reads
//! see all of it. `commit()` then applies the batch:
//!
//! Below, `L` is the durable log length (the record's, plus appends since).
//!
//! - **Appending batch** (`keep == L`): the pending entries are framed into messages and
//!   appended to the commitlog (one `write` per chunk of up to 4 MiB, never one per entry;
//!   a chunk also holds no more messages than commitlog's index can take in one append, see
//!   `index_room`), the
//!   segment files written are fdatasynced (plus, for a segment that was closed during the
//!   batch, its index, and the directory when a segment file was created), and only then,
//!   when the batch changed anything besides appending, is the new commit record written.
//!   A crash before that record's fdatasync completes leaves the old record (the slot being
//!   written may be torn, and is then ignored) and whatever prefix of the appended entries
//!   reached the disk; a crash after it leaves the whole batch.
//! - **Overwriting batch** (`keep < L`, a leader replacing a follower's suffix): committed
//!   entries are about to be destroyed, so first (after `align_keep`) the whole batch (the
//!   new state with
//!   sequence number `seq + 1`, `keep`, and the new entries) is written to a checksummed
//!   redo file (atomically, fsynced). Then the commitlog is truncated to `keep`, the entries
//!   appended and synced, the commit record written, and the redo file removed. Opening
//!   replays a redo file whose sequence number is above the record's (the commitlog below
//!   `keep` is untouched by the batch, everything from `keep` on is cut, whether intact or
//!   not, and rewritten: the length comes from the redo file, never from the tail), and
//!   deletes one whose number is not (its batch completed). Append-only commits do not
//!   take sequence numbers, so a redo file is always ahead of every record but the one
//!   that completes its batch. A torn record slot is no different
//!   from a record never written: the older slot's number is below the redo file's, so the
//!   batch is replayed. Sequence numbers are never reused, even after a failed record write
//!   (which may have reached the disk). A damaged redo file is reported as `Corruption`: it
//!   cannot be told apart from a batch half applied.
//!
//! A commit where nothing changed costs nothing; one where only the state changed writes
//! only the commit record. A commit that fails may be retried: the commitlog is brought
//! back to `keep` (repairing it if an append failed half way) before the entries are
//! written again.
//!
//! # Opening and repair
//!
//! commitlog 0.2 trusts its files: it panics on a segment without an index or an index of
//! torn length, opens an index whose last entry is non-zero read-only (and then panics on
//! the next append), and never reconciles a segment with its index after a crash. Before it
//! sees the directory, the log length is found (the redo file's `keep`, or the record's `L`
//! extended by `segments::valid_end`) and `segments::repair` brings the directory to exactly
//! that length: it removes indexes without a segment and segments wholly after the length
//! or wholly trimmed; checks every closed segment against its index (each index entry's offset
//! and position, the first and last message's entries, and the last message ending at the
//! end of the file), rebuilding the index from the segment when they disagree; reads the
//! last segment message by message (offset, crc32c and entries of each) up to the length,
//! cuts off whatever follows (a torn tail), and
//! rewrites its index when it differs. An entry below the record's (or redo file's) length
//! that is missing or fails its checksum makes opening fail with `Corruption`.
//! `CommitLog::new` runs under `catch_unwind` as a last line of defence.
//!
//! Reads check each message's checksum (commitlog does, on every read), its offset (the
//! header offset is not covered by the checksum), that it carries no metadata (whose size
//! is not covered either) and that it holds the entries expected, so damaged files give a
//! `Corruption` error, never wrong bytes.
//!
//! # Trimming
//!
//! `trim` moves the compacted index; after the record holding it is durable, `commit`
//! deletes every segment whose entries are all below it (with the commitlog closed, as it
//! keeps every segment open) and reopens the log. The active segment is never deleted, so
//! disk use stays within the live entries plus about two segments.
//!
//! # Segments and a full disk
//!
//! Segments are rolled here, not by commitlog (whose limits are set out of reach): when the
//! next entry does not fit, the commitlog is closed, the full segment's index is cut to its
//! size, a new segment and index are created and the log reopened. commitlog writes its
//! index through a memory map, and reads it through the map when it opens it; touching a
//! page the file system has not allocated raises SIGBUS when the disk is full (on tmpfs
//! even a read does). So no index file is ever sparse: every one is allocated
//! (`posix_fallocate`, or zeros written where the file system cannot preallocate) when it
//! is created or extended, every index is allocated again before commitlog opens the
//! directory (a no-op unless an older version left it sparse), and the active index is
//! preallocated past its end (`fallocate(FALLOC_FL_KEEP_SIZE)`, growing geometrically)
//! before entries are appended. A new segment's files are created before the old segment
//! is closed, so a roll that fails leaves everything as it was. A full disk therefore
//! surfaces as an `Io` error from `commit`, on any file system, and a cheap one: a failed
//! append cuts the segment back to where commitlog believes it ends (no repair, the log
//! stays open, reads go on), and the retry appends only the entries still missing
//! (`tail_matches`: no cut, no fsync) until space is freed. The active segment's
//! blocks are reserved the same way when it is opened (`segment_bytes`, best effort), which
//! spares the file system a block reservation per page written; the file's length stays
//! the end of its data, so a segment takes its full size on disk from the start.
//!
//! # Memory
//!
//! The log lives on disk (nothing per entry or per message is kept in memory to find
//! entries); in memory are the batch being committed, a reused framing buffer
//! (at most `CHUNK_BYTES`, 4 MiB), and the most recently committed entries (`RecentEntries`:
//! 4 to 8 MiB of entries in 2 MiB blocks, two freed blocks kept for reuse), from which reads
//! of just-decided entries are served as views instead of read back from the commitlog.
//! About 16 MiB per node at most, whatever the log's length.
//!
//! # Durability
//!
//! Under [`SyncPolicy::Always`] every commit fdatasyncs what it wrote before it returns
//! (commitlog's own `flush` does not: it calls `File::flush`, a no-op). Under
//! [`SyncPolicy::Never`] nothing is fsynced; the ordering above still protects against a
//! crash of the process, not against a power loss.
//!
//! What a commit costs under `SyncPolicy::Always`, in fsync-like calls
//! (`PersistentStorage::debug_sync_calls` counts them; a test checks the first three):
//!
//! - **entries appended, nothing else changed**: 1, the fdatasync of the active segment
//!   (which grew, so it also commits the file size). The active segment's index is not
//!   fsynced: commitlog writes it through a memory map, and opening rebuilds it from the
//!   segment (the segments after the record's length are read message by message and the
//!   last one's index rewritten when it differs), so an index that lost writes in a power
//!   loss costs a rewrite, not data.
//! - **entries appended and the decided index moved**: 1, as above: the decided index is
//!   lazy (see [`crate::storage`]); it goes to disk with the next commit record, or with
//!   [`Storage::sync_decided`] (which the node calls once per resend period when it lags).
//! - **only the decided index moved**: 0 (1 with `sync_decided`).
//! - **entries appended and other state changed**: 2, the segment, then the commit record
//!   (one block overwritten in place: data only).
//! - **only the state changed** (promise, accepted round, trim, StopSign): 1, the commit
//!   record.
//! - **a batch that fills a segment**: 3 more, once per segment: the closed segment and its
//!   index (closed segments get a lighter check at opening than the last one, so their
//!   index is made durable when they close), and the log directory for the new segment.
//! - **an overwriting batch**: 2 more for the redo file (fdatasync, and the directory fsync
//!   after its rename); its removal is not synced (a stale redo file is recognised by its
//!   sequence number).
//! - **a record that outgrows its slot** (a StopSign with kilobytes of nodes or metadata):
//!   the state file is rewritten with larger slots, once: fdatasync, rename, directory
//!   fsync.
//! - **nothing changed**: 0.

mod format;
mod frame;
mod fsutil;
mod identity;
mod record;
mod segments;

use std::fs::{self, File};
use std::io;
use std::mem;
use std::path::{Path, PathBuf};

use commitlog::message::MessageSet;
use commitlog::{CommitLog, ReadError, ReadLimit};

use self::format::{decode_redo, encode_redo, State};
use self::frame::{Framed, MsgEntries};
use self::fsutil::{
    io_err, lock_dir, read_optional, remove_optional, sync_dir, write_atomic, DirLock,
};
use self::record::{RecordFile, STATE_FILE, STATE_TMP};
use self::segments::{index_path, segment_path, INDEX_ENTRY};
use crate::config::SyncPolicy;
use crate::entries::Entries;
use crate::errors::{StorageError, StorageErrorKind};
use crate::messages::{Ballot, StopSign};
use crate::storage::memory::log::ChunkedLog;
use crate::storage::Storage;

const REDO_FILE: &str = "redo";
const LOG_DIR: &str = "log";
/// Smallest segment size accepted.
const MIN_SEGMENT_BYTES: usize = 64;
/// Largest segment size: commitlog keeps file positions in `u32`.
const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;
/// Largest chunk of entries handed to commitlog in one append (one `write`).
const CHUNK_BYTES: u64 = 4 << 20;
/// Bytes of recently committed entries kept in memory for reads (see `RecentEntries`).
const RECENT_BYTES: usize = 4 << 20;

/// The most recently committed entries, kept in memory so that reading what was just
/// decided (what applications do) does not go back to the commitlog and re-check every
/// message's checksum. They are kept like the in-memory storage's log (large shared blocks,
/// so a read within one is a view, not a copy); when they pass `2 * RECENT_BYTES`, the
/// oldest are dropped down to `RECENT_BYTES`.
#[derive(Default)]
struct RecentEntries {
    /// Global index of the first entry kept.
    start: u64,
    log: ChunkedLog,
}

impl RecentEntries {
    fn start(&self) -> u64 {
        self.start
    }

    fn end(&self) -> u64 {
        self.start + self.log.len() as u64
    }

    /// Forgets everything; the next entries remembered start at `at`.
    fn reset(&mut self, at: u64) {
        self.log = ChunkedLog::default();
        self.start = at;
    }

    /// Remembers `entries`, committed at `at..`.
    fn remember(&mut self, at: u64, entries: &Entries) {
        if entries.is_empty() {
            return;
        }
        if at != self.end() {
            self.reset(at);
        }
        self.log.append(entries);
        if self.log.byte_len() > 2 * RECENT_BYTES as u64 {
            let before = self.log.len();
            self.log.keep_last_bytes(RECENT_BYTES as u64);
            self.start += (before - self.log.len()) as u64;
        }
    }

    /// Drops every entry from `len` on.
    fn cut(&mut self, len: u64) {
        if len <= self.start {
            self.reset(len);
        } else {
            self.log.truncate((len - self.start) as usize);
        }
    }

    /// Appends entries `from..to` to `out` (a view when `out` is empty and they lie in one
    /// block); the range must lie in `start()..end()`.
    fn read(&self, from: u64, to: u64, out: &mut Entries) {
        let ok = self.log.read(
            (from - self.start) as usize,
            (to - self.start) as usize,
            out,
        );
        debug_assert!(
            ok,
            "a recent range {from}..{to} outside {}..{}",
            self.start,
            self.end()
        );
    }
}

fn corrupt(msg: String) -> StorageError {
    StorageError::new(StorageErrorKind::Corruption, msg)
}

/// Storage on disk under a directory; see the [module documentation](self) for the format
/// and the crash guarantees.
///
/// Dropping it without a final [`Storage::commit`] discards the writes made since the last
/// commit (they are held in memory until then; a crash *during* a commit may leave a prefix
/// of the batch's appended entries, see the module documentation). While it is open no other storage (in this or another
/// process) can open the same directory.
pub struct PersistentStorage {
    root: PathBuf,
    log_dir: PathBuf,
    sync: SyncPolicy,
    segment_bytes: usize,
    /// The commitlog; `None` after a failure left it in an unknown state (the next commit
    /// repairs it).
    log: Option<CommitLog>,
    /// Base offsets of the segment files, oldest first; the last is the active segment.
    bases: Vec<u64>,
    /// Size of the active segment file.
    write_pos: u64,
    /// The active segment file, for fdatasync and fstat.
    active: Option<File>,
    /// The active index file, for preallocation.
    active_index: Option<File>,
    /// Entries of the active index known to be preallocated.
    index_alloc: u64,
    /// Bytes of commitlog's memory map of the active index: the file's length when
    /// commitlog opened it, grown as commitlog grows it (see `index_room`).
    index_map: u64,
    /// Whether the file system supports preallocation.
    can_preallocate: bool,
    /// Repairs of the log directory attempted (`rebuild_log`): a failing commit repairs
    /// at most once per call.
    rebuilds: u64,
    /// After a failed append-only attempt: the entries it left after the durable log
    /// (`keep..disk_len`) are the first entries of the pending batch, so a retry appends
    /// only the rest, without cutting them and syncing the cut (a full disk then costs no
    /// fsync per failing call). Cleared by anything that could make them differ.
    tail_matches: bool,
    /// Entries in the commitlog.
    disk_len: u64,
    /// Messages in the active segment (commitlog's next offset is its base plus these).
    active_msgs: u64,
    /// Where the last read from the commitlog ended: `(entry, message offset)`, the entry
    /// first in that message. A hint only: a read that starts there checks it.
    read_hint: std::cell::Cell<(u64, u64)>,
    /// Whether the commitlog was written since the last fsync.
    log_unsynced: bool,
    /// Segments closed since the last fsync (their data and index need one).
    closed_unsynced: Vec<u64>,
    /// Whether a segment file was created since the last directory fsync.
    created_unsynced: bool,
    /// The commit record (the state file).
    record: RecordFile,
    /// Sequence number of the last commit record written (or attempted: never reused).
    seq: u64,
    /// The state on disk.
    committed: State,
    /// The state as written so far (`log_len == keep + pending.len()`).
    state: State,
    /// Committed entries this batch keeps.
    keep: u64,
    /// Entries appended in this batch, at `keep..`.
    pending: Entries,
    /// Recently committed entries (below `keep`), for reads.
    recent: RecentEntries,
    /// Whether the redo file on disk describes the current batch.
    redo_on_disk: bool,
    /// Reused append buffer.
    msgbuf: Framed,
    /// Bytes on disk and entries seen, to size reads.
    stat_bytes: u64,
    stat_entries: u64,
    /// The lock on the directory, held for the storage's lifetime (last: released after
    /// every file is closed).
    _lock: DirLock,
}

/// Opens (or creates) persistent storage at `path`; see [`PersistentStorage::open`].
pub fn open(
    path: &Path,
    sync: SyncPolicy,
    segment_bytes: usize,
) -> Result<Box<dyn Storage>, StorageError> {
    Ok(Box::new(PersistentStorage::open(
        path,
        sync,
        segment_bytes,
    )?))
}

impl PersistentStorage {
    /// Opens the storage in directory `path`, creating it when missing, and recovers from
    /// whatever a crash left: a torn tail of appended entries is cut (the intact entries
    /// before it are kept), a half-applied overwriting batch is completed. Fails with `Locked` when another open storage (in this or another process)
    /// holds the directory, with `Corruption` when committed data is damaged, with `Io` when
    /// the directory cannot be created, read or written. `segment_bytes` (at least 64, less
    /// than 4 GiB) is the size of one log segment file; an entry must fit in one.
    pub fn open(
        path: &Path,
        sync: SyncPolicy,
        segment_bytes: usize,
    ) -> Result<PersistentStorage, StorageError> {
        if segment_bytes < MIN_SEGMENT_BYTES || segment_bytes as u64 > MAX_SEGMENT_BYTES {
            return Err(StorageError::new(
                StorageErrorKind::Io,
                format!(
                    "segment_bytes {segment_bytes} for {} is outside \
                     {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                    path.display()
                ),
            ));
        }
        let always = sync == SyncPolicy::Always;
        fs::create_dir_all(path).map_err(|e| io_err("create storage directory", path, e))?;
        let lock = lock_dir(path)?;
        let root = path.to_path_buf();
        let log_dir = root.join(LOG_DIR);
        let state_path = root.join(STATE_FILE);
        let redo_path = root.join(REDO_FILE);
        remove_optional(&root.join(STATE_TMP))?;
        remove_optional(&root.join(format!("{REDO_FILE}.tmp")))?;

        let (record, seq, mut committed) = match RecordFile::open(&root)? {
            Some(found) => found,
            None => {
                if segments::holds_segments(&log_dir)? {
                    return Err(corrupt(format!(
                        "the state file {} is missing but {} holds log segments; refusing to \
                         start from an empty state",
                        state_path.display(),
                        log_dir.display()
                    )));
                }
                fs::create_dir_all(&log_dir)
                    .map_err(|e| io_err("create log directory", &log_dir, e))?;
                let st = State::default();
                let record = RecordFile::create(&root, 0, &st, always)?;
                if always {
                    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                        sync_dir(parent)?;
                    }
                }
                (record, 0, st)
            }
        };

        let what = format!("redo file {}", redo_path.display());
        let redo = match read_optional(&redo_path)? {
            None => None,
            Some(bytes) => {
                let r = decode_redo(&bytes, &what).map_err(|e| {
                    corrupt(format!(
                        "{}; it records a batch that overwrites committed entries and may have \
                         been half applied",
                        e.message
                    ))
                })?;
                if r.seq <= seq {
                    remove_optional(&redo_path)?;
                    None
                } else if r.keep >= committed.compacted_idx {
                    // (`repair` checks that the log holds the `keep` entries)
                    Some(r)
                } else {
                    return Err(corrupt(format!(
                        "{what} (sequence {}, keeps {} entries) does not follow the state file \
                         (sequence {seq}, entries from {})",
                        r.seq, r.keep, committed.compacted_idx
                    )));
                }
            }
        };

        // With an overwrite in flight the log is exactly the `keep` entries the redo file
        // names (whatever follows is replaced); otherwise the record's length, extended by
        // the intact entries appended since (append-only commits write no record).
        let target = match &redo {
            Some(r) => r.keep,
            None => segments::valid_end(&log_dir, committed.log_len)?,
        };
        committed.log_len = target;
        let layout = segments::repair(&log_dir, target, committed.compacted_idx, always)?;
        // No index that commitlog maps may have a hole (SIGBUS on a full tmpfs).
        segments::allocate_indexes(&log_dir, &layout.bases)?;
        let mut s = PersistentStorage {
            root,
            log_dir,
            sync,
            segment_bytes,
            _lock: lock,
            log: None,
            stat_bytes: layout.write_pos.saturating_sub(2),
            stat_entries: layout.active_entries,
            active_msgs: layout.active_msgs,
            read_hint: std::cell::Cell::new((u64::MAX, 0)),
            bases: layout.bases,
            write_pos: layout.write_pos,
            active: None,
            active_index: None,
            index_alloc: 0,
            index_map: 0,
            can_preallocate: true,
            rebuilds: 0,
            tail_matches: false,
            disk_len: target,
            log_unsynced: false,
            closed_unsynced: Vec::new(),
            created_unsynced: false,
            record,
            seq,
            state: committed.clone(),
            keep: committed.log_len,
            committed,
            pending: Entries::new(),
            recent: RecentEntries::default(),
            redo_on_disk: false,
            msgbuf: Framed::default(),
        };
        s.open_log()?;
        if let Some(r) = redo {
            s.keep = r.keep;
            s.pending = r.entries;
            s.state = r.state;
            s.redo_on_disk = true;
            // The replayed batch gets the sequence number its redo file announced.
            s.seq = s.seq.max(r.seq - 1);
            s.commit()?;
        } else {
            s.reclaim()?;
        }
        Ok(s)
    }

    /// The number of fsync-like system calls (fdatasync, fsync of a file or a directory) that
    /// persistent storage has made on the calling thread: for tests and benchmarks of what a
    /// commit costs.
    #[doc(hidden)]
    pub fn debug_sync_calls() -> u64 {
        fsutil::sync_calls()
    }

    /// Makes the next `n` commit-record writes fail, leaving the slot written torn as a
    /// power loss would: for tests of the failure and recovery paths.
    #[doc(hidden)]
    pub fn debug_fail_record_writes(&mut self, n: u32) {
        self.record.fail_next_writes(n);
    }

    fn always(&self) -> bool {
        self.sync == SyncPolicy::Always
    }

    /// The largest entry a segment can hold (in a message of its own).
    fn max_entry(&self) -> u64 {
        self.segment_bytes as u64 - 2 - frame::message_bytes(1, 0)
    }

    /// The base of the active segment (the index of its first entry).
    fn active_base(&self) -> u64 {
        self.bases.last().copied().unwrap_or(0)
    }

    /// Closes commitlog and the active files.
    fn close_log(&mut self) {
        self.log = None;
        self.active = None;
        self.active_index = None;
        self.index_alloc = 0;
        self.index_map = 0;
    }

    /// Opens commitlog on the (checked) directory and the active segment file.
    fn open_log(&mut self) -> Result<(), StorageError> {
        self.close_log();
        self.read_hint.set((u64::MAX, 0));
        let log = segments::open_log(&self.log_dir)?;
        let want = self.active_base() + self.active_msgs;
        if log.next_offset() != want {
            return Err(corrupt(format!(
                "the commit log in {} ends at message offset {} but {want} was expected",
                self.log_dir.display(),
                log.next_offset(),
            )));
        }
        let last = self.active_base();
        let p = segment_path(&self.log_dir, last);
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .map_err(|e| io_err("open", &p, e))?;
        if self.can_preallocate {
            // The segment's blocks are reserved up front (as etcd does for its WAL files):
            // appends then skip the file system's per-page block reservation, about 15% of
            // a 16-byte entry's cost here. Best effort: on a full disk the appends will say so.
            let _ = segments::preallocate(&f, &p, self.segment_bytes as u64);
        }
        self.active = Some(f);
        let p = index_path(&self.log_dir, last);
        let idx = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .map_err(|e| io_err("open", &p, e))?;
        // (commitlog mapped the whole file just now)
        self.index_map = idx.metadata().map_err(|e| io_err("stat", &p, e))?.len();
        self.active_index = Some(idx);
        self.log = Some(log);
        Ok(())
    }

    /// Closes the full active segment (cutting its preallocated index to size) and starts a
    /// new one at `disk_len`. commitlog could roll by itself, but it would create the new
    /// index sparse and write it through a memory map: on a full disk, a SIGBUS. The new
    /// files are created (allocated) first, while the log stays open: when that fails (a
    /// full disk), nothing changed and reads go on.
    fn roll(&mut self) -> Result<(), StorageError> {
        let old = self.active_base();
        let base = self.disk_len;
        if base <= old {
            return Err(StorageError::new(
                StorageErrorKind::Io,
                format!("cannot start a segment at {base} after one at {old}"),
            ));
        }
        segments::create_segment(&self.log_dir, base)?;
        self.close_log();
        segments::shrink_index(&self.log_dir, old, self.active_msgs)?;
        self.closed_unsynced.push(old);
        self.bases.push(base);
        self.created_unsynced = true;
        self.write_pos = 2;
        self.active_msgs = 0;
        self.open_log()
    }

    /// Preallocates the active index for `msgs` messages (growing geometrically).
    fn reserve_index(&mut self, msgs: u64) -> Result<(), StorageError> {
        if msgs < self.index_alloc {
            return Ok(());
        }
        let cap = (self.segment_bytes as u64 - 2) / frame::message_bytes(1, 0) + 1;
        let want = msgs.max(self.index_alloc * 2).max(1024).min(cap.max(msgs)) + 1;
        let last = self.active_base();
        let idx = self.active_index.as_ref().ok_or_else(|| {
            StorageError::new(StorageErrorKind::Io, "the active index is not open")
        })?;
        let p = index_path(&self.log_dir, last);
        if !segments::preallocate(idx, &p, want * INDEX_ENTRY)? {
            self.can_preallocate = false;
            // No preallocation beyond the end of the file here: write the zeros (commitlog
            // growing its map then finds them allocated; see `append_chunk`).
            fsutil::allocate(idx, &p, want * INDEX_ENTRY)?;
        }
        self.index_alloc = want;
        Ok(())
    }

    /// Closes commitlog, repairs the directory to hold exactly `target` entries and reopens.
    fn rebuild_log(&mut self, target: u64) -> Result<(), StorageError> {
        self.close_log();
        self.rebuilds += 1;
        let layout = segments::repair(
            &self.log_dir,
            target,
            self.committed.compacted_idx,
            self.always(),
        )?;
        self.bases = layout.bases;
        self.write_pos = layout.write_pos;
        self.active_msgs = layout.active_msgs;
        self.disk_len = target;
        self.closed_unsynced.clear();
        self.created_unsynced = false;
        self.log_unsynced = false;
        self.open_log()
    }

    /// Brings the commitlog to `target` entries (`target <= disk_len`).
    fn cut_log(&mut self, target: u64) -> Result<(), StorageError> {
        if self.log.is_some() && target == self.disk_len {
            return Ok(());
        }
        if self.active_base() < target && target < self.disk_len && self.truncate_active(target) {
            return Ok(());
        }
        self.rebuild_log(target)
    }

    /// Cuts the log to `target` entries with commitlog's truncation, inside the active
    /// segment; `false` when that cannot be done (the caller rebuilds the directory).
    /// commitlog truncates safely only inside the active segment and when it keeps at least
    /// one message of it: truncating into a closed segment makes that segment's read-only
    /// index active (the next append panics). `target` is always where a message starts
    /// (an overwrite is first aligned, see `align_keep`).
    fn truncate_active(&mut self, target: u64) -> bool {
        let Ok((off, first)) = self.locate(target) else {
            return false;
        };
        let keep_msgs = off - self.active_base();
        if first != target || keep_msgs == 0 {
            return false;
        }
        let (Some(log), Some(active)) = (self.log.as_mut(), self.active.as_ref()) else {
            return false;
        };
        let r = crate::quiet::catch(|| log.truncate(off - 1));
        if !matches!(r, Ok(Ok(()))) || log.next_offset() != off {
            return false;
        }
        let Ok(m) = active.metadata() else {
            return false;
        };
        self.write_pos = m.len();
        self.disk_len = target;
        self.active_msgs = keep_msgs;
        self.log_unsynced = true;
        self.read_hint.set((u64::MAX, 0));
        true
    }

    /// How many entries one append can add to the active index. commitlog 0.2 writes the
    /// index through a memory map that it grows, when an append does not fit, once and by
    /// half (`Index::resize`), and then panics on an append that still does not fit: a
    /// chunk may not hold more entries than that.
    fn index_room(&self) -> u64 {
        (grown_index_map(self.index_map) / INDEX_ENTRY).saturating_sub(self.active_msgs)
    }

    /// Appends the pending entries to the commitlog in chunks.
    fn append_pending(&mut self) -> Result<(), StorageError> {
        let pending = mem::take(&mut self.pending);
        let mut buf = mem::take(&mut self.msgbuf);
        // After a failed attempt whose appended entries are still the batch's first ones
        // (see `tail_matches`), only the rest is appended.
        let done = (self.disk_len - self.keep) as usize;
        let r = if done == 0 {
            self.append_chunks(&pending, &mut buf)
        } else {
            self.append_chunks(&pending.slice(done, pending.len()), &mut buf)
        };
        buf.clear();
        self.msgbuf = buf;
        self.pending = pending;
        // (a failure that left the commitlog in doubt closed it: the next commit repairs
        // it; a clean one, such as a full disk, left it open for reads and the retry)
        r
    }

    /// Frames the pending entries into messages of up to about `MSG_TARGET` bytes and
    /// appends them in chunks of up to `CHUNK_BYTES` (one `write` each), rolling the
    /// segment when the next message does not fit.
    fn append_chunks(&mut self, pending: &Entries, buf: &mut Framed) -> Result<(), StorageError> {
        let max = self.segment_bytes as u64;
        let ends = pending.ends();
        let n = pending.len();
        buf.clear();
        buf.reserve(
            (pending.byte_len() + n * frame::LEN_BYTES as usize).min(CHUNK_BYTES as usize) + 1024,
        );
        // Chunk being built: bytes, messages, entries.
        let (mut bytes, mut msgs, mut entries) = (0u64, 0u64, 0u64);
        // Room left in the active segment and its index (they change only when a chunk is
        // appended or the segment rolls).
        let mut space = max.saturating_sub(self.write_pos);
        let mut room = self.index_room();
        let mut i = 0usize;
        while i < n {
            // The next message: entries i..j, as many as fit in MSG_TARGET (at least one)
            // and in the segment.
            let start = if i == 0 { 0 } else { ends[i - 1] };
            let fits = |j: usize, limit: u64| {
                frame::message_bytes((j - i) as u64, ends[j - 1] - start) <= limit
            };
            let mut j = i + 1;
            if !fits(j, space.saturating_sub(bytes)) {
                if msgs > 0 {
                    self.append_chunk(buf, bytes, msgs, entries)?;
                    (bytes, msgs, entries) = (0, 0, 0);
                }
                self.roll()?;
                space = max.saturating_sub(self.write_pos);
                room = self.index_room();
                continue;
            }
            let limit = space.saturating_sub(bytes);
            // Grow while the entries and their lengths stay within MSG_TARGET and the
            // message fits.
            let within = |j: usize| {
                ends[j] - start + frame::LEN_BYTES * (j + 1 - i) as u64 <= frame::MSG_TARGET
            };
            while j < n && within(j) && fits(j + 1, limit) {
                j += 1;
            }
            let m = buf.push_message(
                self.active_base() + self.active_msgs + msgs,
                self.disk_len + entries,
                pending,
                i,
                j,
            );
            bytes += m;
            msgs += 1;
            entries += (j - i) as u64;
            i = j;
            if bytes >= CHUNK_BYTES || msgs >= room {
                self.append_chunk(buf, bytes, msgs, entries)?;
                (bytes, msgs, entries) = (0, 0, 0);
                space = max.saturating_sub(self.write_pos);
                room = self.index_room();
            }
        }
        if msgs > 0 {
            self.append_chunk(buf, bytes, msgs, entries)?;
        }
        Ok(())
    }

    fn append_chunk(
        &mut self,
        buf: &mut Framed,
        bytes: u64,
        msgs: u64,
        entries: u64,
    ) -> Result<(), StorageError> {
        let first = self.active_base() + self.active_msgs;
        self.reserve_index(self.active_msgs + msgs)?;
        let log = self
            .log
            .as_mut()
            .ok_or_else(|| StorageError::new(StorageErrorKind::Io, "the commit log is not open"))?;
        self.log_unsynced = true;
        match crate::quiet::catch(|| log.append_with_offsets(&*buf)) {
            Ok(Ok(range)) if range.first() == first && range.len() as u64 == msgs => {}
            Ok(Ok(range)) => {
                self.close_log();
                return Err(corrupt(format!(
                    "commitlog appended {} messages at {} instead of {msgs} at {first}",
                    range.len(),
                    range.first()
                )));
            }
            Ok(Err(e)) => {
                // commitlog wrote part of the chunk at most (a full disk), to the segment
                // only, and kept its own position: cut the segment back to it, and the log
                // is as before the chunk. Otherwise it is in doubt: close it.
                let clean = matches!(e, commitlog::AppendError::Io(_))
                    && self
                        .active
                        .as_ref()
                        .is_some_and(|f| f.set_len(self.write_pos).is_ok());
                if !clean {
                    self.close_log();
                }
                return Err(StorageError::new(
                    StorageErrorKind::Io,
                    format!(
                        "append {entries} entries at {} to the commit log in {}: {}",
                        self.disk_len,
                        self.log_dir.display(),
                        append_error_text(&e)
                    ),
                ));
            }
            Err(p) => {
                self.close_log();
                return Err(StorageError::new(
                    StorageErrorKind::Io,
                    format!(
                        "append to the commit log in {} failed (commitlog panicked: {})",
                        self.log_dir.display(),
                        segments::panic_text(p.as_ref())
                    ),
                ));
            }
        }
        let used = (self.active_msgs + msgs) * INDEX_ENTRY;
        if used > self.index_map {
            self.index_map = grown_index_map(self.index_map);
            // commitlog set the file's length to its new map: zeros written past that by
            // `reserve_index` (no preallocation) are gone.
            self.index_alloc = self.index_alloc.min(self.index_map / INDEX_ENTRY);
        }
        self.active_msgs += msgs;
        self.disk_len += entries;
        self.stat_bytes += bytes;
        self.stat_entries += entries;
        buf.clear();
        self.write_pos += bytes;
        Ok(())
    }

    /// fdatasyncs what the batch wrote to the commitlog (under `SyncPolicy::Always`).
    fn sync_log(&mut self) -> Result<(), StorageError> {
        if !self.always() {
            self.closed_unsynced.clear();
            self.created_unsynced = false;
            self.log_unsynced = false;
            return Ok(());
        }
        if !self.log_unsynced && self.closed_unsynced.is_empty() && !self.created_unsynced {
            return Ok(());
        }
        let r = self.sync_log_files();
        if r.is_err() {
            // After a failed fsync the page cache may have dropped the data: reread it.
            self.close_log();
        }
        r
    }

    fn sync_log_files(&mut self) -> Result<(), StorageError> {
        for &b in &self.closed_unsynced {
            fsutil::sync_path(&segment_path(&self.log_dir, b))?;
            fsutil::sync_path(&index_path(&self.log_dir, b))?;
        }
        if self.log_unsynced {
            let active = self.active.as_ref().ok_or_else(|| {
                StorageError::new(StorageErrorKind::Io, "the active segment is not open")
            })?;
            let last = self.active_base();
            fsutil::fdatasync(active, &segment_path(&self.log_dir, last))?;
        }
        if self.created_unsynced {
            sync_dir(&self.log_dir)?;
        }
        self.closed_unsynced.clear();
        self.created_unsynced = false;
        self.log_unsynced = false;
        Ok(())
    }

    /// Whether whole segments lie below the committed compacted index.
    fn needs_reclaim(&self) -> bool {
        self.bases.len() > 1 && self.bases[1] <= self.committed.compacted_idx
    }

    /// Deletes the segments whose entries are all trimmed (the commitlog is closed meanwhile).
    fn reclaim(&mut self) -> Result<(), StorageError> {
        if !self.needs_reclaim() {
            return Ok(());
        }
        let c = self.committed.compacted_idx;
        let mut k = 0;
        while k + 1 < self.bases.len() && self.bases[k + 1] <= c {
            k += 1;
        }
        self.close_log();
        for &b in &self.bases[..k] {
            segments::remove_segment(&self.log_dir, b)?;
        }
        self.bases.drain(..k);
        let first = self.bases[0];
        self.closed_unsynced.retain(|&b| b >= first);
        let last = self.bases[self.bases.len() - 1];
        segments::ensure_index_slack(&self.log_dir, last)?;
        self.open_log()
    }

    /// One commit attempt (see the module documentation). `with_decided`: write the commit
    /// record when only the decided index changed (otherwise that change stays lazy).
    fn commit_batch(&mut self, with_decided: bool) -> Result<(), StorageError> {
        let always = self.always();
        // (`redo_on_disk` here: a batch replayed at opening)
        let overwrites = self.keep < self.committed.log_len || self.redo_on_disk;
        let next_seq = self.seq + 1;
        if overwrites && !self.redo_on_disk {
            self.align_keep()?;
            let bytes = encode_redo(next_seq, &self.state, self.keep, &self.pending);
            write_atomic(&self.root, REDO_FILE, &bytes, always)?;
            self.redo_on_disk = true;
        }
        let resume = !overwrites
            && self.tail_matches
            && self.log.is_some()
            && self.disk_len > self.keep
            && self.disk_len - self.keep <= self.pending.len() as u64;
        self.tail_matches = false;
        if !resume && (self.log.is_none() || self.disk_len != self.keep) {
            self.cut_log(self.keep)?;
            if !overwrites {
                // Entries a failed attempt left after the durable log may differ from the
                // ones about to be written: they must be durably gone before those are
                // written, or a crash could leave a mix that no batch ever held.
                self.sync_log()?;
            }
        }
        if !self.pending.is_empty() {
            let r = self.append_pending();
            if r.is_err() && !overwrites && self.log.is_some() {
                self.tail_matches = true;
            }
            r?;
        }
        self.sync_log()?;
        let decided_moved = self.state.decided_idx != self.committed.decided_idx;
        let write_record = overwrites
            || !same_but_length_and_decided(&self.state, &self.committed)
            || (with_decided && decided_moved);
        if write_record {
            // The new record may reach the disk even when this call fails (e.g. in the
            // fdatasync after the write): never reuse its sequence number.
            self.seq = next_seq;
            self.record.write(next_seq, &self.state, always)?;
        }
        if self.redo_on_disk {
            // A redo file left behind is recognised as stale by its sequence number.
            let _ = remove_optional(&self.root.join(REDO_FILE));
            self.redo_on_disk = false;
        }
        let durable_decided = if write_record {
            self.state.decided_idx
        } else {
            self.committed.decided_idx
        };
        self.committed = self.state.clone();
        // A decided index not written stays lazy: `committed` keeps the one on disk.
        self.committed.decided_idx = durable_decided;
        let at = self.keep;
        self.keep = self.state.log_len;
        self.recent.remember(at, &self.pending);
        self.pending.clear();
        Ok(())
    }

    /// `Storage::commit` (`with_decided`: `Storage::sync_decided`).
    fn commit_inner(&mut self, with_decided: bool) -> Result<(), StorageError> {
        let log_changed = self.keep != self.committed.log_len || !self.pending.is_empty();
        let decided_due = with_decided && self.state.decided_idx != self.committed.decided_idx;
        if !log_changed
            && !decided_due
            && same_but_length_and_decided(&self.state, &self.committed)
            && self.log.is_some()
            && !self.needs_reclaim()
            && !self.redo_on_disk
        {
            return Ok(());
        }
        let rebuilds = self.rebuilds;
        match self.commit_batch(with_decided) {
            Ok(()) => self.reclaim(),
            Err(e) => {
                // Best effort: put the commitlog back in a usable state for reads and for
                // the retry (only entries the batch does not keep are dropped), unless this
                // call already tried (a full disk, say, can make the repair fail too: each
                // failing call then costs one repair attempt, not two). A clean failure,
                // such as a full disk during an append, leaves the log open: no repair.
                let safe = self.keep == self.committed.log_len || self.redo_on_disk;
                if self.log.is_none() && safe && self.rebuilds == rebuilds {
                    let _ = self.rebuild_log(self.keep);
                }
                Err(e)
            }
        }
    }

    /// Marks the batch as changed since the redo file was written.
    fn touch(&mut self) {
        self.redo_on_disk = false;
    }

    /// The message holding committed entry `entry` (below `disk_len`): its commitlog offset
    /// and the index of its first entry. A binary search over the segment's index and the
    /// headers of the messages it points at, read without their checksums (the read that
    /// follows checks the message).
    fn locate(&self, entry: u64) -> Result<(u64, u64), StorageError> {
        let s = match self.bases.binary_search(&entry) {
            Ok(k) => k,
            Err(0) => return Err(corrupt(format!("no segment holds entry {entry}"))),
            Err(k) => k - 1,
        };
        let base = self.bases[s];
        let (seg_path, idx_path) = (
            segment_path(&self.log_dir, base),
            index_path(&self.log_dir, base),
        );
        let opened;
        let (seg, idx, msgs) = if s + 1 == self.bases.len() {
            match (self.active.as_ref(), self.active_index.as_ref()) {
                (Some(seg), Some(idx)) => (seg, idx, self.active_msgs),
                _ => {
                    return Err(StorageError::new(
                        StorageErrorKind::Io,
                        "the active segment is not open",
                    ))
                }
            }
        } else {
            let seg = File::open(&seg_path).map_err(|e| io_err("open", &seg_path, e))?;
            let idx = File::open(&idx_path).map_err(|e| io_err("open", &idx_path, e))?;
            let len = idx
                .metadata()
                .map_err(|e| io_err("stat", &idx_path, e))?
                .len();
            opened = (seg, idx);
            (&opened.0, &opened.1, len / INDEX_ENTRY)
        };
        let damaged = |k: u64| {
            corrupt(format!(
                "{}: index entry {k} does not point at message {} of {} (damaged index or \
                 segment)",
                idx_path.display(),
                base + k,
                seg_path.display()
            ))
        };
        let probe = |k: u64| -> Result<u64, StorageError> {
            let mut e = [0u8; INDEX_ENTRY as usize];
            std::os::unix::fs::FileExt::read_exact_at(idx, &mut e, k * INDEX_ENTRY)
                .map_err(|_| damaged(k))?;
            let pos = u64::from(u32::from_le_bytes([e[4], e[5], e[6], e[7]]));
            match segments::peek_message(seg, pos) {
                Some((off, _, first, _)) if off == base + k => Ok(first),
                _ => Err(damaged(k)),
            }
        };
        // The last message whose first entry is at most `entry`.
        let (mut lo, mut hi) = (0u64, msgs);
        let mut found = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let first = probe(mid)?;
            if first <= entry {
                found = Some((mid, first));
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        match found {
            Some((k, first)) => Ok((base + k, first)),
            None => Err(corrupt(format!(
                "segment {} holds no message with entry {entry}",
                seg_path.display()
            ))),
        }
    }

    /// Reads committed entries `from..to` from the commitlog.
    fn read_log(&self, from: u64, to: u64, out: &mut Entries) -> Result<(), StorageError> {
        let log = self.log.as_ref().ok_or_else(|| {
            StorageError::new(
                StorageErrorKind::Io,
                format!(
                    "the commit log in {} is closed after an earlier failure; commit again to \
                     repair it",
                    self.log_dir.display()
                ),
            )
        })?;
        // (offset of the next message to read, index of its first entry)
        let (mut off, mut next) = match self.read_hint.get() {
            (e, off) if e == from => (off, e),
            _ => {
                let (off, first) = self.locate(from)?;
                (off, first)
            }
        };
        let per_entry = (self.stat_bytes / self.stat_entries.max(1)).max(1);
        let mut boost = 1u64;
        while next < to {
            let want = (to - next).saturating_mul(per_entry);
            let limit = want
                .saturating_add(want / 8)
                .saturating_add(4096)
                .saturating_mul(boost)
                .min(u64::from(u32::MAX));
            let r = crate::quiet::catch(|| log.read(off, ReadLimit::max_bytes(limit as usize)));
            let buf = match r {
                Ok(Ok(buf)) => buf,
                // commitlog's "a message exceeds the limit": read more at once.
                Ok(Err(ReadError::Io(e)))
                    if e.kind() == io::ErrorKind::InvalidInput && limit < u64::from(u32::MAX) =>
                {
                    boost = boost.saturating_mul(4);
                    continue;
                }
                Ok(Err(ReadError::Io(e))) => {
                    return Err(io_err("read entries from", &self.log_dir, e));
                }
                Ok(Err(ReadError::CorruptLog)) => {
                    return Err(corrupt(format!(
                        "the message holding entry {next} or one after it in {} fails its \
                         checksum",
                        self.log_dir.display()
                    )));
                }
                Ok(Err(ReadError::NoSuchSegment)) => {
                    return Err(corrupt(format!(
                        "no segment in {} holds entry {next}",
                        self.log_dir.display()
                    )));
                }
                Err(p) => {
                    return Err(corrupt(format!(
                        "reading entry {next} from {} failed (commitlog panicked: {})",
                        self.log_dir.display(),
                        segments::panic_text(p.as_ref())
                    )));
                }
            };
            if buf.is_empty() {
                return Err(corrupt(format!(
                    "entry {next} is missing from {}",
                    self.log_dir.display()
                )));
            }
            for m in buf.iter() {
                if next >= to {
                    break;
                }
                let entries = MsgEntries::parse(m.payload())
                    .filter(|e| m.offset() == off && m.metadata_size() == 0 && e.first == next)
                    .ok_or_else(|| {
                        corrupt(format!(
                            "{}: message {off} should hold entries from {next} but holds \
                             something else (damaged index or segment)",
                            self.log_dir.display(),
                        ))
                    })?;
                entries.read_into(from, to, out);
                next = entries.end();
                off = if self.bases.binary_search(&next).is_ok() {
                    next
                } else {
                    off + 1
                };
            }
        }
        // A hint only to a message that exists: its offset then stays until a truncation
        // or a reopening, which forget the hint. (At the end of the log the next message
        // may go to a new segment, with another offset.)
        if next < self.disk_len {
            self.read_hint.set((next, off));
        }
        Ok(())
    }

    /// Before a batch overwrites committed entries from `keep` on: when `keep` falls inside
    /// a message, moves it back to that message's start and puts the entries in between at
    /// the front of the batch (they are rewritten), so that the log is only ever cut
    /// between messages.
    fn align_keep(&mut self) -> Result<(), StorageError> {
        if self.keep >= self.committed.log_len {
            return Ok(());
        }
        if self.log.is_none() || self.disk_len != self.committed.log_len {
            self.rebuild_log(self.committed.log_len)?;
        }
        let (_, first) = self.locate(self.keep)?;
        if first < self.keep {
            let mut batch = Entries::with_capacity(
                (self.keep - first) as usize + self.pending.len(),
                self.pending.byte_len(),
            );
            self.read_log(first, self.keep, &mut batch)?;
            batch.extend_from(&self.pending);
            self.pending = batch;
            self.recent.cut(first);
            self.keep = first;
        }
        Ok(())
    }
}

/// Whether two states differ at most in the log length (a batch that only appends needs no
/// commit record: opening finds the appended entries after the record's length).
/// Whether two states differ at most in the log length and the decided index (the changes
/// an append-only commit makes durable without a commit record).
fn same_but_length_and_decided(a: &State, b: &State) -> bool {
    a.promise == b.promise
        && a.accepted_round == b.accepted_round
        && a.compacted_idx == b.compacted_idx
        && a.stopsign == b.stopsign
}

/// The size commitlog 0.2 grows an index memory map of `bytes` bytes to.
fn grown_index_map(bytes: u64) -> u64 {
    let n = bytes + bytes / 2;
    n - n % INDEX_ENTRY
}

fn append_error_text(e: &commitlog::AppendError) -> String {
    match e {
        commitlog::AppendError::Io(e) => e.to_string(),
        other => format!("{other:?}"),
    }
}

fn out_of_range(from: u64, to: u64, compacted: u64, len: u64) -> StorageError {
    StorageError::new(
        StorageErrorKind::OutOfRange,
        format!("entries {from}..{to} requested, the log holds {compacted}..{len}"),
    )
}

impl Storage for PersistentStorage {
    fn append_entries(&mut self, entries: &Entries) -> Result<(), StorageError> {
        let max = self.max_entry();
        if let Some(big) = entries.iter().find(|e| e.len() as u64 > max) {
            return Err(StorageError::new(
                StorageErrorKind::Io,
                format!(
                    "an entry of {} bytes does not fit in a log segment of {} bytes (at most \
                     {max} bytes per entry; raise storage.segment_bytes)",
                    big.len(),
                    self.segment_bytes
                ),
            ));
        }
        self.touch();
        self.pending.extend_from(entries);
        self.state.log_len += entries.len() as u64;
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> Result<(), StorageError> {
        if len >= self.state.log_len {
            return Ok(());
        }
        if len < self.state.compacted_idx {
            return Err(out_of_range(
                len,
                self.state.log_len,
                self.state.compacted_idx,
                self.state.log_len,
            ));
        }
        self.touch();
        if len < self.disk_len {
            // (entries a failed attempt appended past `len` are no longer the batch's)
            self.tail_matches = false;
        }
        if len >= self.keep {
            self.pending.truncate((len - self.keep) as usize);
        } else {
            self.keep = len;
            self.pending.clear();
            self.recent.cut(len);
        }
        self.state.log_len = len;
        Ok(())
    }

    fn read_entries(&self, from: u64, to: u64, out: &mut Entries) -> Result<(), StorageError> {
        let (c, len) = (self.state.compacted_idx, self.state.log_len);
        if from > to || from < c || to > len {
            return Err(out_of_range(from, to, c, len));
        }
        let before = out.len();
        let log_end = to.min(self.keep);
        // The commitlog for what is older than the recent entries, memory for the rest.
        let (r_start, r_end) = (self.recent.start(), self.recent.end());
        let disk_end = if r_start < r_end && r_end >= log_end {
            log_end.min(r_start.max(from))
        } else {
            log_end
        };
        if from < disk_end {
            if let Err(e) = self.read_log(from, disk_end, out) {
                out.truncate(before);
                return Err(e);
            }
        }
        if disk_end.max(from) < log_end {
            self.recent.read(disk_end.max(from), log_end, out);
        }
        let p_from = from.max(self.keep);
        if p_from < to {
            out.extend_from_range(
                &self.pending,
                (p_from - self.keep) as usize,
                (to - self.keep) as usize,
            );
        }
        Ok(())
    }

    fn log_len(&self) -> u64 {
        self.state.log_len
    }

    fn set_promise(&mut self, b: Ballot) -> Result<(), StorageError> {
        self.touch();
        self.state.promise = b;
        Ok(())
    }

    fn promise(&self) -> Ballot {
        self.state.promise
    }

    fn set_accepted_round(&mut self, b: Ballot) -> Result<(), StorageError> {
        self.touch();
        self.state.accepted_round = b;
        Ok(())
    }

    fn accepted_round(&self) -> Ballot {
        self.state.accepted_round
    }

    fn set_decided_idx(&mut self, idx: u64) -> Result<(), StorageError> {
        self.touch();
        self.state.decided_idx = idx;
        Ok(())
    }

    fn decided_idx(&self) -> u64 {
        self.state.decided_idx
    }

    fn set_stopsign(&mut self, ss: Option<StopSign>) -> Result<(), StorageError> {
        self.touch();
        self.state.stopsign = ss;
        Ok(())
    }

    fn stopsign(&self) -> Option<StopSign> {
        self.state.stopsign.clone()
    }

    fn trim(&mut self, idx: u64) -> Result<(), StorageError> {
        if idx <= self.state.compacted_idx {
            return Ok(());
        }
        if idx > self.state.log_len {
            return Err(out_of_range(
                self.state.compacted_idx,
                idx,
                self.state.compacted_idx,
                self.state.log_len,
            ));
        }
        self.touch();
        self.state.compacted_idx = idx;
        Ok(())
    }

    fn compacted_idx(&self) -> u64 {
        self.state.compacted_idx
    }

    fn commit(&mut self) -> Result<(), StorageError> {
        self.commit_inner(false)
    }

    fn durable_decided_idx(&self) -> u64 {
        self.committed.decided_idx
    }

    fn sync_decided(&mut self) -> Result<(), StorageError> {
        self.commit_inner(true)
    }

    fn commit_waits_for_disk(&self) -> bool {
        self.always()
    }

    fn close(&mut self) -> Result<(), StorageError> {
        self.commit_inner(true)
    }

    fn check_identity(&mut self, id: &crate::storage::StorageIdentity) -> Result<(), StorageError> {
        identity::check(&self.root, id, self.always()).map(|_| ())
    }
}
