//! Small file-system helpers: errors with context, atomic replace, fsyncs (counted), the
//! directory lock.

use std::cell::Cell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Mutex;

use crate::errors::{StorageError, StorageErrorKind};

/// An I/O error naming the operation and the path.
pub(super) fn io_err(op: &str, path: &Path, err: io::Error) -> StorageError {
    StorageError::io(format!("{op} {}", path.display()), err)
}

thread_local! {
    /// fsync-like calls (fsync, fdatasync) made by this thread; see [`sync_calls`].
    static SYNC_CALLS: Cell<u64> = const { Cell::new(0) };
}

/// The number of fsync-like system calls this thread has made through these helpers (every
/// fsync of the persistent storage goes through them): lets tests count the cost of a
/// commit.
pub(super) fn sync_calls() -> u64 {
    SYNC_CALLS.with(Cell::get)
}

fn count_sync() {
    SYNC_CALLS.with(|c| c.set(c.get() + 1));
}

/// fdatasyncs an open file (`path` names it in errors).
pub(super) fn fdatasync(f: &File, path: &Path) -> Result<(), StorageError> {
    count_sync();
    f.sync_data().map_err(|e| io_err("fsync", path, e))
}

/// fsyncs a directory, making the creation, removal and renaming of its entries durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = File::open(dir).map_err(|e| io_err("open directory", dir, e))?;
    count_sync();
    d.sync_all().map_err(|e| io_err("fsync directory", dir, e))
}

/// fdatasyncs the file at `path`.
pub(super) fn sync_path(path: &Path) -> Result<(), StorageError> {
    let f = File::open(path).map_err(|e| io_err("open", path, e))?;
    fdatasync(&f, path)
}

/// Replaces `dir/name` with `bytes` atomically: writes `dir/name.tmp`, (fsyncs it,) renames
/// it over `dir/name` (and fsyncs `dir`). A crash leaves either the old or the new file.
pub(super) fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    sync: bool,
) -> Result<(), StorageError> {
    write_atomic_padded(dir, name, bytes, 0, sync)
}

/// [`write_atomic`], with the file extended by `zeros` zero bytes after `bytes` (sparse).
pub(super) fn write_atomic_padded(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    zeros: u64,
    sync: bool,
) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_err("create", &tmp, e))?;
    f.write_all(bytes).map_err(|e| io_err("write", &tmp, e))?;
    if zeros > 0 {
        f.set_len(bytes.len() as u64 + zeros)
            .map_err(|e| io_err("resize", &tmp, e))?;
    }
    if sync {
        fdatasync(&f, &tmp)?;
    }
    drop(f);
    fs::rename(&tmp, &dst).map_err(|e| io_err("rename into place", &dst, e))?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a whole file; `Ok(None)` when it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path, e)),
    }
}

/// Removes a file; a missing file is not an error.
pub(super) fn remove_optional(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path, e)),
    }
}

/// The lock on a storage directory: a POSIX write lock (`fcntl(F_SETLK)`) on `dir/LOCK`
/// against other processes, and a process-wide registry against a second open in this
/// process. Released on drop; the kernel releases the POSIX lock when the process dies.
///
/// Why not `flock`: a `flock` belongs to the open file description, which every child
/// process forked by any thread inherits until it execs (or forever, for a fork without
/// exec such as Python's `multiprocessing`), so a storage closed and reopened while the
/// program spawns processes could find its own directory "locked". POSIX locks are not
/// inherited. Their one trap, that closing *any* descriptor of the file drops the process's
/// lock, is avoided by never opening `LOCK` while this process holds it (the registry is
/// checked first, by device and inode).
pub(super) struct DirLock {
    file: Option<File>,
    key: (u64, u64),
}

/// (device, inode) of the `LOCK` files this process holds.
static HELD: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<(u64, u64)>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Close first: once the key is gone another thread may open and lock the file, and
        // our later close would drop the process's lock under its feet.
        drop(self.file.take());
        let key = self.key;
        held().retain(|k| *k != key);
    }
}

fn locked(dir: &Path, who: String) -> StorageError {
    StorageError::new(
        StorageErrorKind::Locked,
        format!(
            "{} is in use by {who}: only one node may use a storage directory at a time",
            dir.display()
        ),
    )
}

/// Locks `dir` (see [`DirLock`]); fails with `Locked` when another open storage, in this or
/// another process, holds it.
pub(super) fn lock_dir(dir: &Path) -> Result<DirLock, StorageError> {
    let path = dir.join("LOCK");
    let mut reg = held();
    if let Ok(md) = fs::metadata(&path) {
        if reg.contains(&(md.dev(), md.ino())) {
            return Err(locked(
                dir,
                String::from("another open storage in this process"),
            ));
        }
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_err("open lock file", &path, e))?;
    let md = file.metadata().map_err(|e| io_err("stat", &path, e))?;
    let key = (md.dev(), md.ino());
    if reg.contains(&key) {
        // Only possible if LOCK was replaced between the two stats; closing this descriptor
        // would drop our own lock, so keep it alive with the registry's.
        std::mem::forget(file);
        return Err(locked(
            dir,
            String::from("another open storage in this process"),
        ));
    }
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    // SAFETY: fcntl on a valid, owned descriptor with a pointer to a live `flock`.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) {
            // SAFETY: as above; F_GETLK fills `fl` with the conflicting lock.
            let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) };
            let who = if rc == 0 && fl.l_type != libc::F_UNLCK as _ {
                format!("process {}", fl.l_pid)
            } else {
                String::from("another process")
            };
            return Err(locked(dir, who));
        }
        return Err(io_err("lock", &path, err));
    }
    reg.push(key);
    Ok(DirLock {
        file: Some(file),
        key,
    })
}
