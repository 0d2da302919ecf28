//! The commitlog directory: file names, the check-and-repair pass that runs before commitlog
//! ever sees the files, and opening commitlog without letting it panic.
//!
//! commitlog 0.2 stores segment `B` as `{B:020}.log` (2 magic bytes `ff ff`, then messages
//! `offset u64 | size u32 | crc32c u32 | 2 unused bytes | metadata size u16 | payload`,
//! all little-endian, the crc covering metadata and payload) and its index as
//! `{B:020}.index` (8-byte entries `offset - B` u32, file position u32; the active index is
//! preallocated and its unused tail is zero).
//!
//! A message holds a run of consecutive log entries (see `frame.rs`). **A segment's base is
//! the global index of its first entry**, and its messages have the offsets `base`,
//! `base + 1`, ... (commitlog numbers them in sequence within a segment; the offsets of two
//! segments need not meet, as each message holds at least one entry the next base is always
//! past the last offset of the segment before). So the file names say which entries a
//! segment holds, and the messages say which entries they hold. Below, "entries" are log
//! entries and "messages" commitlog messages.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use commitlog::{CommitLog, LogOptions};

use super::frame::{peek, MsgEntries, MSG_PREFIX};
use super::fsutil::{
    allocate, io_err, read_optional, remove_optional, sync_dir, sync_path, write_atomic_padded,
};
use crate::errors::{StorageError, StorageErrorKind};

/// The first bytes of every segment file.
pub(super) const SEGMENT_MAGIC: [u8; 2] = [0xff, 0xff];
/// Bytes of a message header in a segment.
pub(super) const MSG_HEADER: u64 = 20;
/// Bytes of an index entry.
pub(super) const INDEX_ENTRY: u64 = 8;
/// Zero entries kept at the end of the active index, so that commitlog opens it writable.
const INDEX_SLACK_ENTRIES: u64 = 1024;
/// Length in entries of a fresh index file (commitlog grows it when it fills up).
const INITIAL_INDEX_ENTRIES: u64 = 1024;

/// The segment file of base offset `base`.
pub(super) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// The index file of base offset `base`.
pub(super) fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

/// The commitlog options for our directory. Segments are rolled by us (commitlog would
/// create the next index sparse, see `PersistentStorage::roll`), so its own limits are set
/// out of reach.
fn log_options(dir: &Path) -> LogOptions {
    let mut o = LogOptions::new(dir);
    o.segment_max_bytes(u32::MAX as usize);
    // commitlog compares this with the size of a whole appended batch, not one message.
    o.message_max_bytes(u32::MAX as usize);
    o.index_max_items(INITIAL_INDEX_ENTRIES as usize);
    o
}

fn corrupt(msg: String) -> StorageError {
    StorageError::new(StorageErrorKind::Corruption, msg)
}

/// Text of a caught panic.
pub(super) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("unknown panic")
    }
}

/// Opens commitlog on a directory that [`repair`] has checked. A panic inside commitlog
/// (its last line of defence against files it cannot read) becomes a `Corruption` error.
pub(super) fn open_log(dir: &Path) -> Result<CommitLog, StorageError> {
    let opts = log_options(dir);
    match crate::quiet::catch(|| CommitLog::new(opts)) {
        Ok(Ok(log)) => Ok(log),
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => Err(corrupt(format!(
            "commit log in {} cannot be opened: {e}",
            dir.display()
        ))),
        Ok(Err(e)) => Err(io_err("open commit log in", dir, e)),
        Err(p) => Err(corrupt(format!(
            "commit log in {} cannot be opened (commitlog panicked: {})",
            dir.display(),
            panic_text(p.as_ref())
        ))),
    }
}

/// What the directory holds after [`repair`].
pub(super) struct Layout {
    /// Base offsets of the segments, oldest first; the last one is the active segment.
    pub bases: Vec<u64>,
    /// Size in bytes of the active segment file.
    pub write_pos: u64,
    /// Messages in the active segment.
    pub active_msgs: u64,
    /// Entries in the active segment.
    pub active_entries: u64,
}

/// The segment and index files of a directory.
struct Listing {
    segments: BTreeSet<u64>,
    indexes: BTreeSet<u64>,
}

fn parse_base(stem: &str) -> Option<u64> {
    if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

/// Lists the directory (created if missing). Leftover temporary files are removed; a
/// `.log`/`.index` file with a name commitlog cannot parse is refused (commitlog would panic).
fn list(dir: &Path) -> Result<Listing, StorageError> {
    fs::create_dir_all(dir).map_err(|e| io_err("create log directory", dir, e))?;
    let mut l = Listing {
        segments: BTreeSet::new(),
        indexes: BTreeSet::new(),
    };
    let rd = fs::read_dir(dir).map_err(|e| io_err("list", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| io_err("list", dir, e))?;
        let path = ent.path();
        let ft = ent.file_type().map_err(|e| io_err("stat", &path, e))?;
        if !ft.is_file() {
            continue;
        }
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            remove_optional(&path)?;
            continue;
        }
        let (stem, is_segment) = if let Some(s) = name.strip_suffix(".log") {
            (s, true)
        } else if let Some(s) = name.strip_suffix(".index") {
            (s, false)
        } else {
            continue;
        };
        let Some(base) = parse_base(stem) else {
            return Err(corrupt(format!(
                "unexpected file {} in the log directory (segment and index files are named \
                 by a 20-digit offset); remove it",
                path.display()
            )));
        };
        if is_segment {
            l.segments.insert(base);
        } else {
            l.indexes.insert(base);
        }
    }
    Ok(l)
}

/// Whether `dir` holds any segment file (a missing directory holds none).
pub(super) fn holds_segments(dir: &Path) -> Result<bool, StorageError> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            for ent in rd {
                let ent = ent.map_err(|e| io_err("list", dir, e))?;
                if ent
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.ends_with(".log"))
                {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("list", dir, e)),
    }
}

/// Removes the segment and index files of `base` (segment first: an index without its
/// segment is removed by the next [`repair`]).
pub(super) fn remove_segment(dir: &Path, base: u64) -> Result<(), StorageError> {
    remove_optional(&segment_path(dir, base))?;
    remove_optional(&index_path(dir, base))
}

/// The result of reading a segment from its start.
struct Scan {
    /// Whether the file starts with the segment magic.
    magic_ok: bool,
    /// Index entries of the messages read.
    index: Vec<u8>,
    /// Messages read.
    msgs: u64,
    /// Log entries in the messages read.
    entries: u64,
    /// File position after the last message read.
    end: u64,
    /// Size of the file.
    file_len: u64,
}

/// Reads the messages of segment `base` from its start, checking each one's offset,
/// checksum and entries (the first message holds entry `base`, each next one continues
/// where the one before ended); stops at the first message that is torn or damaged, or that
/// would take the entries read past `limit`.
fn scan_segment(path: &Path, base: u64, limit: u64) -> Result<Scan, StorageError> {
    let f = File::open(path).map_err(|e| io_err("open", path, e))?;
    let file_len = f.metadata().map_err(|e| io_err("stat", path, e))?.len();
    let mut scan = Scan {
        magic_ok: false,
        index: Vec::new(),
        msgs: 0,
        entries: 0,
        end: 0,
        file_len,
    };
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut magic = [0u8; 2];
    if file_len < 2 {
        return Ok(scan);
    }
    r.read_exact(&mut magic)
        .map_err(|e| io_err("read", path, e))?;
    if magic != SEGMENT_MAGIC {
        return Ok(scan);
    }
    scan.magic_ok = true;
    let mut pos = 2u64;
    let mut payload = Vec::new();
    while scan.entries < limit && pos + MSG_HEADER <= file_len && pos <= u64::from(u32::MAX) {
        let mut h = [0u8; MSG_HEADER as usize];
        r.read_exact(&mut h).map_err(|e| io_err("read", path, e))?;
        let mut o = [0u8; 8];
        o.copy_from_slice(&h[0..8]);
        let offset = u64::from_le_bytes(o);
        let size = u64::from(u32::from_le_bytes([h[8], h[9], h[10], h[11]]));
        let hash = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        let meta = u16::from_le_bytes([h[18], h[19]]);
        if offset != base + scan.msgs || meta != 0 || pos + MSG_HEADER + size > file_len {
            break;
        }
        payload.resize(size as usize, 0);
        r.read_exact(&mut payload)
            .map_err(|e| io_err("read", path, e))?;
        if crc32c::crc32c(&payload) != hash {
            break;
        }
        let Some(m) = MsgEntries::parse(&payload) else {
            break;
        };
        if m.first != base + scan.entries || scan.entries + m.count() > limit {
            break;
        }
        scan.index
            .extend_from_slice(&(scan.msgs as u32).to_le_bytes());
        scan.index.extend_from_slice(&(pos as u32).to_le_bytes());
        pos += MSG_HEADER + size;
        scan.msgs += 1;
        scan.entries += m.count();
    }
    scan.end = pos;
    Ok(scan)
}

/// Writes an index file: `entries` followed by `zeros` zero bytes (via a temporary file and
/// a rename; not synced here: opening rebuilds an index that disagrees with its segment).
fn write_index(dir: &Path, base: u64, entries: &[u8], zeros: u64) -> Result<(), StorageError> {
    write_atomic_padded(dir, &format!("{base:020}.index"), entries, zeros, false)
}

/// Sets the length of a file.
fn set_file_len(path: &Path, len: u64) -> Result<(), StorageError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_err("open", path, e))?;
    f.set_len(len).map_err(|e| io_err("truncate", path, e))
}

/// Reads an index file; `None` when it does not exist.
fn read_index(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    read_optional(path)
}

/// Checks a closed segment of `n` committed entries and its index; rebuilds the index from the
/// segment when it is missing or inconsistent, drops trailing bytes after the last message.
fn check_closed(dir: &Path, base: u64, n: u64) -> Result<(), StorageError> {
    let seg = segment_path(dir, base);
    let f = File::open(&seg).map_err(|e| io_err("open", &seg, e))?;
    let seg_len = f.metadata().map_err(|e| io_err("stat", &seg, e))?.len();
    let idx = index_path(dir, base);
    if let Some(bytes) = read_index(&idx)? {
        if let Some(msgs) = index_consistent(&f, &bytes, base, n, seg_len) {
            if bytes.len() as u64 > msgs * INDEX_ENTRY {
                set_file_len(&idx, msgs * INDEX_ENTRY)?;
            }
            return Ok(());
        }
    }
    let scan = scan_segment(&seg, base, n)?;
    if !scan.magic_ok || scan.entries < n {
        return Err(corrupt(format!(
            "segment {} is damaged: only {} of its {n} committed entries ({base}..{}) are intact",
            seg.display(),
            scan.entries,
            base + n
        )));
    }
    if scan.end < scan.file_len {
        set_file_len(&seg, scan.end)?;
    }
    write_index(dir, base, &scan.index, 0)
}

/// Reads the message header and payload prefix at `pos`: `(offset, payload size, first
/// entry, entry count)`, unchecked (no checksum).
pub(super) fn peek_message(f: &File, pos: u64) -> Option<(u64, u64, u64, u64)> {
    let mut h = [0u8; (MSG_HEADER + MSG_PREFIX) as usize];
    f.read_exact_at(&mut h, pos).ok()?;
    let offset = u64::from_le_bytes(h[0..8].try_into().ok()?);
    let size = u64::from(u32::from_le_bytes(h[8..12].try_into().ok()?));
    let meta = u16::from_le_bytes([h[18], h[19]]);
    let (first, count) = peek(&h[MSG_HEADER as usize..])?;
    (meta == 0 && size >= MSG_PREFIX).then_some((offset, size, first, u64::from(count)))
}

/// Whether an index describes the messages of a segment of `n` entries: its leading
/// entries number the messages in sequence at increasing positions, the first message
/// holds entry `base`, the last one holds entry `base + n - 1` as its last and ends exactly
/// at the end of the file. Returns the number of messages (the index may be longer; the
/// messages' checksums are not read: reads check them).
fn index_consistent(seg: &File, idx: &[u8], base: u64, n: u64, seg_len: u64) -> Option<u64> {
    if n == 0 {
        return None;
    }
    let mut prev = 1u64;
    let mut msgs = 0u64;
    for (i, e) in idx.chunks_exact(8).enumerate() {
        let rel = u64::from(u32::from_le_bytes([e[0], e[1], e[2], e[3]]));
        let pos = u64::from(u32::from_le_bytes([e[4], e[5], e[6], e[7]]));
        if rel != i as u64 || pos <= prev {
            break;
        }
        if pos + MSG_HEADER > seg_len || (i == 0 && pos != 2) {
            return None;
        }
        prev = pos;
        msgs += 1;
    }
    if msgs == 0 {
        return None;
    }
    let (off0, _, first0, _) = peek_message(seg, 2)?;
    let (off, size, first, count) = peek_message(seg, prev)?;
    let ok = off0 == base
        && first0 == base
        && off == base + msgs - 1
        && first.checked_add(count) == Some(base + n)
        && prev + MSG_HEADER + size == seg_len;
    ok.then_some(msgs)
}

/// Brings the last segment to exactly `n` entries: checks them all (offsets, checksums,
/// entries), drops whatever follows (an uncommitted or torn tail), and makes its index
/// match, with zero slack at the end so commitlog opens it for writing. Returns the size of
/// the segment file and its number of messages.
fn fix_last(dir: &Path, base: u64, n: u64) -> Result<(u64, u64), StorageError> {
    let seg = segment_path(dir, base);
    let scan = scan_segment(&seg, base, n)?;
    if !scan.magic_ok {
        if n > 0 {
            return Err(corrupt(format!(
                "segment {} lacks the segment magic but should hold entries {base}..{}",
                seg.display(),
                base + n
            )));
        }
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&seg)
            .map_err(|e| io_err("open", &seg, e))?;
        f.write_all(&SEGMENT_MAGIC)
            .map_err(|e| io_err("write", &seg, e))?;
    } else if scan.entries < n {
        return Err(corrupt(format!(
            "segment {} holds only {} of its {n} committed entries ({base}..{}): committed data \
             is damaged",
            seg.display(),
            scan.entries,
            base + n
        )));
    } else if scan.end < scan.file_len {
        set_file_len(&seg, scan.end)?;
    }
    let write_pos = if scan.magic_ok { scan.end } else { 2 };
    let idx = index_path(dir, base);
    let msgs = scan.msgs;
    let want_len = (msgs + INDEX_SLACK_ENTRIES).max(INITIAL_INDEX_ENTRIES) * INDEX_ENTRY;
    let ok = match read_index(&idx)? {
        Some(bytes) => {
            bytes.len() as u64 % INDEX_ENTRY == 0
                && bytes.len() as u64 >= (msgs + 1) * INDEX_ENTRY
                && bytes[..scan.index.len()] == scan.index[..]
                && bytes[scan.index.len()..].iter().all(|&b| b == 0)
        }
        None => false,
    };
    if !ok {
        write_index(dir, base, &scan.index, want_len - scan.index.len() as u64)?;
    }
    Ok((write_pos, msgs))
}

/// Creates an empty segment (magic only) and its zeroed, allocated index at `base`. On
/// failure (a full disk) nothing is left behind, as far as removing files allows.
pub(super) fn create_segment(dir: &Path, base: u64) -> Result<(), StorageError> {
    let seg = segment_path(dir, base);
    let r = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&seg)
            .map_err(|e| io_err("create", &seg, e))?;
        f.write_all(&SEGMENT_MAGIC)
            .map_err(|e| io_err("write", &seg, e))?;
        write_index(dir, base, &[], INITIAL_INDEX_ENTRIES * INDEX_ENTRY)
    })();
    if r.is_err() {
        let _ = remove_optional(&index_path(dir, base));
        let _ = remove_optional(&seg);
    }
    r
}

/// Allocates every block of the index files of `bases` (see [`allocate`]): commitlog
/// memory-maps them and reads them through the map when it opens them, which on a full
/// tmpfs raises SIGBUS on a hole (an index written sparse by an older version).
pub(super) fn allocate_indexes(dir: &Path, bases: &[u64]) -> Result<(), StorageError> {
    for &b in bases {
        let p = index_path(dir, b);
        let f = OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(|e| io_err("open", &p, e))?;
        let len = f.metadata().map_err(|e| io_err("stat", &p, e))?.len();
        allocate(&f, &p, len)?;
    }
    Ok(())
}

/// Cuts the index of a segment that is being closed to its `msgs` messages (releasing the
/// preallocated rest).
pub(super) fn shrink_index(dir: &Path, base: u64, msgs: u64) -> Result<(), StorageError> {
    set_file_len(&index_path(dir, base), msgs * INDEX_ENTRY)
}

/// Preallocates (without changing the file size) the first `bytes` bytes of an index file, so
/// that commitlog's writes through its memory map never hit an unallocated page: on a full
/// disk that would be a SIGBUS instead of an error. Returns `false` when the file system
/// cannot preallocate.
pub(super) fn preallocate(f: &File, path: &Path, bytes: u64) -> Result<bool, StorageError> {
    let len = libc::off_t::try_from(bytes).unwrap_or(libc::off_t::MAX);
    loop {
        // SAFETY: fallocate on a valid, owned file descriptor; no memory is involved.
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => return Ok(false),
            _ => return Err(io_err("preallocate", path, err)),
        }
    }
}

/// Makes sure the active index ends with zero entries: commitlog opens an index whose last
/// entry is non-zero read-only, and then panics on the next append.
pub(super) fn ensure_index_slack(dir: &Path, base: u64) -> Result<(), StorageError> {
    let path = index_path(dir, base);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_err("open", &path, e))?;
    let len = f.metadata().map_err(|e| io_err("stat", &path, e))?.len();
    let whole = len - len % INDEX_ENTRY;
    let mut last = [0u8; 8];
    let needs = whole < INDEX_ENTRY || whole != len || {
        f.read_exact_at(&mut last, whole - INDEX_ENTRY)
            .map_err(|e| io_err("read", &path, e))?;
        last != [0u8; 8]
    };
    if needs {
        f.set_len(whole).map_err(|e| io_err("resize", &path, e))?;
        allocate(&f, &path, whole + INDEX_SLACK_ENTRIES * INDEX_ENTRY)?;
    }
    Ok(())
}

/// The end of the log that opening keeps when no overwrite is in flight: at least `min_len`
/// (the length in the commit record), extended by the entries appended since that record
/// that are whole and intact. Reads forward from the segment holding entry `min_len`: a
/// segment followed by another counts only when it holds all its entries (up to the next
/// base); the first torn or damaged message, or a missing or short segment, ends the log.
/// Only reads; [`repair`] then cuts the directory to the length returned (which is
/// `min_len` when fewer entries than that are intact: `repair` reports it).
pub(super) fn valid_end(dir: &Path, min_len: u64) -> Result<u64, StorageError> {
    let listing = list(dir)?;
    let Some(&start) = listing.segments.range(..=min_len).next_back() else {
        return Ok(min_len);
    };
    let mut base = start;
    loop {
        let next = listing
            .segments
            .range(base.saturating_add(1)..)
            .next()
            .copied();
        let limit = next.map_or(u64::MAX, |n| n - base);
        let scan = scan_segment(&segment_path(dir, base), base, limit)?;
        let end = if scan.magic_ok {
            base + scan.entries
        } else {
            base
        };
        match next {
            Some(n) if scan.magic_ok && end == n => base = n,
            _ => return Ok(end.max(min_len)),
        }
    }
}

/// Checks and repairs the log directory so that it holds exactly the entries
/// `compacted..target` (and possibly some trimmed ones before), everything after `target` being
/// dropped. Fails with `Corruption` when an entry below `target` that is not trimmed is
/// missing or damaged. With `sync`, every kept file and the directory are fsynced.
pub(super) fn repair(
    dir: &Path,
    target: u64,
    compacted: u64,
    sync: bool,
) -> Result<Layout, StorageError> {
    let listing = list(dir)?;
    for b in listing.indexes.difference(&listing.segments) {
        remove_optional(&index_path(dir, *b))?;
    }
    for b in listing.segments.range(target.saturating_add(1)..) {
        remove_segment(dir, *b)?;
    }
    let mut bases: Vec<u64> = listing.segments.range(..=target).copied().collect();
    if bases.is_empty() {
        if compacted < target {
            return Err(corrupt(format!(
                "no log segment in {} holds the committed entries {compacted}..{target}",
                dir.display()
            )));
        }
        create_segment(dir, target)?;
        bases.push(target);
    }
    let mut first = 0;
    while first + 1 < bases.len() && bases[first + 1] <= compacted {
        remove_segment(dir, bases[first])?;
        first += 1;
    }
    bases.drain(..first);
    if compacted < target && bases[0] > compacted {
        return Err(corrupt(format!(
            "the committed entries {compacted}..{} are missing from {} (the oldest segment \
             starts at {})",
            bases[0],
            dir.display(),
            bases[0]
        )));
    }
    for w in bases.windows(2) {
        check_closed(dir, w[0], w[1] - w[0])?;
    }
    let last = bases[bases.len() - 1];
    let (write_pos, active_msgs) = fix_last(dir, last, target - last)?;
    let active_entries = target - last;
    if sync {
        for b in &bases {
            sync_path(&segment_path(dir, *b))?;
            sync_path(&index_path(dir, *b))?;
        }
        sync_dir(dir)?;
    }
    Ok(Layout {
        bases,
        write_pos,
        active_msgs,
        active_entries,
    })
}
