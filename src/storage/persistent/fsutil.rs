//! Small file-system helpers: errors with context, atomic replace, directory fsync, the
//! lock file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::errors::{StorageError, StorageErrorKind};

/// An I/O error naming the operation and the path.
pub(super) fn io_err(op: &str, path: &Path, err: io::Error) -> StorageError {
    StorageError::io(format!("{op} {}", path.display()), err)
}

/// fsyncs a directory, making the creation, removal and renaming of its entries durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = File::open(dir).map_err(|e| io_err("open directory", dir, e))?;
    d.sync_all().map_err(|e| io_err("fsync directory", dir, e))
}

/// fdatasyncs the file at `path`.
pub(super) fn sync_path(path: &Path) -> Result<(), StorageError> {
    let f = File::open(path).map_err(|e| io_err("open", path, e))?;
    f.sync_data().map_err(|e| io_err("fsync", path, e))
}

/// Replaces `dir/name` with `bytes` atomically: writes `dir/name.tmp`, (fsyncs it,) renames
/// it over `dir/name` (and fsyncs `dir`). A crash leaves either the old or the new file.
pub(super) fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
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
    if sync {
        f.sync_data().map_err(|e| io_err("fsync", &tmp, e))?;
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

/// Takes an exclusive `flock` on `dir/LOCK` (created if missing) and writes our pid into
/// it. The returned file holds the lock until it is dropped; the kernel releases it when
/// the process dies.
pub(super) fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join("LOCK");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_err("open lock file", &path, e))?;
    // SAFETY: flock on a valid, owned file descriptor; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::from("another process or another open storage")
            } else {
                format!("process {holder} (or another open storage in it)")
            };
            return Err(StorageError::new(
                StorageErrorKind::Locked,
                format!(
                    "{} is locked by {who}: only one node may use a storage directory at a time",
                    dir.display()
                ),
            ));
        }
        return Err(io_err("lock", &path, err));
    }
    // Record the holder for the error message above; failing to do so is harmless.
    let pid = std::process::id().to_string();
    let _ = f
        .set_len(0)
        .and_then(|_| f.rewind())
        .and_then(|_| f.write_all(pid.as_bytes()));
    Ok(f)
}
