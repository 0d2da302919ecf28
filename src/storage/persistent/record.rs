//! The commit record: the `state` file, two fixed-size slots written in turn.
//!
//! ```text
//! state   slot 0 [S bytes] | slot 1 [S bytes]     S: a power of two, at least 4 KiB
//! ```
//!
//! Each slot starts with a state frame (see [`super::format`]) that carries a sequence
//! number; the rest of the slot is ignored. The valid slot with the highest sequence number
//! holds the commit record. A commit writes the record to the *other* slot, in place
//! (`pwrite` at the slot's offset, then fdatasync), and from then on that slot is the
//! current one. The file never changes size and no directory entry changes, so that
//! fdatasync writes one data block and no metadata (no journal commit, no directory
//! fsync): a commit record costs one fdatasync.
//!
//! A write torn by a power loss can only damage the slot being written, never the one
//! holding the last record that was made durable; opening then finds the older record, which
//! is right: a torn record is one whose fdatasync never returned, so its commit was never
//! acknowledged. After a failed write the current slot stays the same, so a retry writes the
//! same (possibly damaged) slot again and never the last durable record.
//!
//! Opening cannot tell a torn slot from one damaged later (bit rot, a stray write): either
//! way it falls back to the other valid slot, as LMDB does with its two meta pages. For a
//! slot damaged after its commit returned, this rolls the storage back by one commit: its
//! state changes are lost (a promise included; the entries it appended are still found
//! after the older record's log length, as after a crash before the record), and when it
//! had cut or trimmed entries the older record still names, opening fails with
//! `Corruption` instead. Only when neither slot is valid is the file
//! refused with `Corruption`.
//!
//! The file is created whole (both slots, slot 0 holding the record, slot 1 zeros) as
//! `state.tmp`, fdatasynced, renamed into place and the directory fsynced; a crash before
//! the rename leaves no `state` file (a fresh storage, or the previous file). A record too
//! large for a slot (a StopSign with kilobytes of nodes or metadata) is written the same
//! way, into a new file with slots large enough (the next power of two): that commit costs
//! an fdatasync, a rename and a directory fsync, like every commit of the earlier format,
//! and the later ones are back to one fdatasync. Slots never shrink.
//!
//! The length of the file is therefore always twice a valid slot size; any other length
//! (a damaged file, or the single-frame `state` file of the unreleased first format, which
//! is not read) is `Corruption`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{decode_slot, encode_state, frame_len, State, FRAME_HEAD};
use super::fsutil::{fdatasync, io_err, sync_dir};
use crate::errors::{StorageError, StorageErrorKind};

/// Name of the commit-record file in the storage directory.
pub(super) const STATE_FILE: &str = "state";
/// Name of the file a new state file is written to before it is renamed into place.
pub(super) const STATE_TMP: &str = "state.tmp";
/// Smallest slot (one page: the two slots never share a page or a file-system block).
const MIN_SLOT: u64 = 4096;
/// Largest slot accepted when opening.
const MAX_SLOT: u64 = 1 << 34;

fn corrupt(msg: String) -> StorageError {
    StorageError::new(StorageErrorKind::Corruption, msg)
}

/// The open commit-record file.
pub(super) struct RecordFile {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    slot_bytes: u64,
    /// The slot (0 or 1) holding the last record known to be written; the next record goes
    /// to the other one.
    current: u64,
    /// Whether the file was renamed into place without the directory fsync that follows.
    dir_unsynced: bool,
    /// Record writes still to fail on purpose (see [`RecordFile::fail_next_writes`]).
    fail_writes: u32,
}

impl RecordFile {
    /// Opens the state file of `dir` and reads its newest valid record: `Ok(None)` when the
    /// file does not exist, `Corruption` when it has no valid slot.
    pub(super) fn open(dir: &Path) -> Result<Option<(RecordFile, u64, State)>, StorageError> {
        let path = dir.join(STATE_FILE);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", &path, e)),
        };
        let len = file.metadata().map_err(|e| io_err("stat", &path, e))?.len();
        let slot_bytes = len / 2;
        if len % 2 != 0
            || !(MIN_SLOT..=MAX_SLOT).contains(&slot_bytes)
            || !slot_bytes.is_power_of_two()
        {
            return Err(corrupt(format!(
                "state file {} is {len} bytes long, not two commit-record slots of a power of \
                 two of at least {MIN_SLOT} bytes (damaged, or written by an earlier format)",
                path.display()
            )));
        }
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for k in 0..2u64 {
            let bytes = read_slot(&file, &path, k * slot_bytes, slot_bytes)?;
            let what = format!("slot {k} of state file {}", path.display());
            match decode_slot(&bytes, &what) {
                Ok((seq, state)) => found.push((k, seq, state)),
                Err(e) => errors.push(e.message),
            }
        }
        // The newest valid slot; on a tie (never written by this code) the first.
        let Some((current, seq, state)) = found
            .into_iter()
            .reduce(|a, b| if b.1 > a.1 { b } else { a })
        else {
            return Err(corrupt(format!(
                "no valid commit record: {}",
                errors.join("; ")
            )));
        };
        let r = RecordFile {
            dir: dir.to_path_buf(),
            path,
            file,
            slot_bytes,
            current,
            dir_unsynced: false,
            fail_writes: 0,
        };
        Ok(Some((r, seq, state)))
    }

    /// Creates the state file of `dir` holding record `seq`/`state` (replacing a leftover
    /// `state.tmp`); with `sync`, durably (the file and `dir` are fsynced).
    pub(super) fn create(
        dir: &Path,
        seq: u64,
        state: &State,
        sync: bool,
    ) -> Result<RecordFile, StorageError> {
        let path = dir.join(STATE_FILE);
        let (file, slot_bytes) = write_new(dir, &path, &encode_state(seq, state), sync)?;
        if sync {
            sync_dir(dir)?;
        }
        Ok(RecordFile {
            dir: dir.to_path_buf(),
            path,
            file,
            slot_bytes,
            current: 0,
            dir_unsynced: false,
            fail_writes: 0,
        })
    }

    /// Writes record `seq`/`state` to the slot that does not hold the current record and,
    /// with `sync`, fdatasyncs it. On success it becomes the current record; on failure the
    /// current slot is unchanged and the other one may hold anything.
    pub(super) fn write(
        &mut self,
        seq: u64,
        state: &State,
        sync: bool,
    ) -> Result<(), StorageError> {
        if self.dir_unsynced {
            if sync {
                sync_dir(&self.dir)?;
            }
            self.dir_unsynced = false;
        }
        let bytes = encode_state(seq, state);
        if bytes.len() as u64 > self.slot_bytes {
            return self.grow(&bytes, sync);
        }
        let target = 1 - self.current;
        let offset = target * self.slot_bytes;
        if self.fail_writes > 0 {
            // A torn write: the first half of the record, then an error.
            self.fail_writes -= 1;
            let _ = self.file.write_all_at(&bytes[..bytes.len() / 2], offset);
            return Err(StorageError::new(
                StorageErrorKind::Io,
                format!(
                    "write slot {target} of {}: injected failure",
                    self.path.display()
                ),
            ));
        }
        self.file
            .write_all_at(&bytes, offset)
            .map_err(|e| io_err("write", &self.path, e))?;
        if sync {
            fdatasync(&self.file, &self.path)?;
        }
        self.current = target;
        Ok(())
    }

    /// Replaces the file with one whose slots hold `bytes` (see the module documentation).
    fn grow(&mut self, bytes: &[u8], sync: bool) -> Result<(), StorageError> {
        let (file, slot_bytes) = write_new(&self.dir, &self.path, bytes, sync)?;
        // Renamed into place: from now on records go to the new file, and the rename is
        // made durable before any of them counts (here, or at the start of the next write).
        self.file = file;
        self.slot_bytes = slot_bytes;
        self.current = 0;
        self.dir_unsynced = true;
        if sync {
            sync_dir(&self.dir)?;
        }
        self.dir_unsynced = false;
        Ok(())
    }

    /// Makes the next `n` record writes fail as if torn by a crash (a test hook).
    pub(super) fn fail_next_writes(&mut self, n: u32) {
        self.fail_writes = n;
    }
}

/// Reads the frame at the start of the slot at `offset` (at most `slot_bytes` bytes).
fn read_slot(f: &File, path: &Path, offset: u64, slot_bytes: u64) -> Result<Vec<u8>, StorageError> {
    let mut head = [0u8; FRAME_HEAD];
    f.read_exact_at(&mut head, offset)
        .map_err(|e| io_err("read", path, e))?;
    let n = frame_len(&head).map_or(slot_bytes, |n| n.min(slot_bytes));
    let n = usize::try_from(n).map_err(|_| {
        corrupt(format!(
            "state file {}: slot too large to read",
            path.display()
        ))
    })?;
    let mut bytes = vec![0u8; n];
    f.read_exact_at(&mut bytes, offset)
        .map_err(|e| io_err("read", path, e))?;
    Ok(bytes)
}

/// Writes a new state file with `record` in slot 0 (slots sized to fit it) as `state.tmp`,
/// fdatasyncs it (with `sync`) and renames it over `path`. The directory is not fsynced.
fn write_new(
    dir: &Path,
    path: &Path,
    record: &[u8],
    sync: bool,
) -> Result<(File, u64), StorageError> {
    let slot_bytes = (record.len() as u64).max(MIN_SLOT).next_power_of_two();
    let tmp = dir.join(STATE_TMP);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_err("create", &tmp, e))?;
    let len = usize::try_from(2 * slot_bytes)
        .map_err(|_| StorageError::new(StorageErrorKind::Io, "commit record too large"))?;
    // Real zeros, not a hole: an in-place write must never need a block allocated.
    let mut buf = vec![0u8; len];
    buf[..record.len()].copy_from_slice(record);
    file.write_all_at(&buf, 0)
        .map_err(|e| io_err("write", &tmp, e))?;
    if sync {
        fdatasync(&file, &tmp)?;
    }
    fs::rename(&tmp, path).map_err(|e| io_err("rename into place", path, e))?;
    Ok((file, slot_bytes))
}
