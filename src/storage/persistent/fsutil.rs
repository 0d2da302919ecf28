//! Small file-system helpers: errors with context, atomic replace, fsyncs (counted), the
//! directory lock.

use std::cell::Cell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering as AtomicOrdering};
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

/// Makes the first `len` bytes of `f` really allocated on disk (extending the file to
/// `len` when it is shorter): `posix_fallocate`, or writing zeros over what lies past the
/// end of the file where the file system cannot preallocate. A file that is read or
/// written through a memory map must have no hole: touching an unallocated page of a
/// full file system raises SIGBUS (tmpfs allocates even on a read). On a full disk this
/// fails with an `Io` error instead.
pub(super) fn allocate(f: &File, path: &Path, len: u64) -> Result<(), StorageError> {
    use std::os::unix::fs::FileExt;
    let Ok(off_len) = libc::off_t::try_from(len) else {
        return Err(io_err(
            "allocate",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "length out of range"),
        ));
    };
    if off_len == 0 {
        return Ok(());
    }
    loop {
        // SAFETY: posix_fallocate on a valid, owned descriptor; no memory is involved. It
        // returns the error number instead of setting errno.
        let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, off_len) };
        match rc {
            0 => return Ok(()),
            libc::EINTR => continue,
            libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL => break,
            e => return Err(io_err("allocate", path, io::Error::from_raw_os_error(e))),
        }
    }
    // No preallocation here: write zeros past the end of the file.
    let mut at = f.metadata().map_err(|e| io_err("stat", path, e))?.len();
    let zeros = [0u8; 64 << 10];
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], at)
            .map_err(|e| io_err("allocate (write zeros to)", path, e))?;
        at += n as u64;
    }
    Ok(())
}

/// [`write_atomic`], with the file extended by `zeros` zero bytes after `bytes`, allocated
/// (see [`allocate`]: the index files it writes are memory-mapped).
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
        if let Err(e) = allocate(&f, &tmp, bytes.len() as u64 + zeros) {
            drop(f);
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
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

/// The lock on a storage directory: `flock(LOCK_EX)` on the directory itself, which no
/// removal of files can undo (a lock on a `LOCK` file was defeated by deleting the file:
/// the next process created a new one and locked that), plus a process-wide registry that
/// names the culprit when a second open comes from this process. Released on drop, and by
/// the kernel when the process dies. The holder's pid is written to `dir/LOCK` for the
/// error message of whoever finds the directory locked; that file plays no part in the
/// locking.
///
/// A `flock` belongs to the open file description, which a child process inherits: the
/// descriptor is close-on-exec, and a child forked without exec (Python's
/// `multiprocessing`, say) gets its copy replaced by `/dev/null` at once (a
/// `pthread_atfork` handler), so a directory closed by the parent is never kept locked by
/// a child. A process being spawned holds its copy until its exec (`posix_spawn` runs no
/// fork handler), so a busy lock is retried for up to 200 ms before it is reported.
pub(super) struct DirLock {
    file: Option<File>,
    key: (u64, u64),
}

/// (device, inode) of the directories this process holds.
static HELD: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// The descriptors of the locked directories (-1: a free slot), for the fork handler:
/// lock-free, because a fork may happen while another thread is in the middle of an update.
/// A process holding more locks than slots leaves the rest to the child (as without the
/// handler).
static LOCK_FDS: [AtomicI32; 256] = [FREE_SLOT; 256];
// (a const only to initialise the array above: each element is its own atomic)
#[allow(clippy::declare_interior_mutable_const)]
const FREE_SLOT: AtomicI32 = AtomicI32::new(-1);

fn held() -> std::sync::MutexGuard<'static, Vec<(u64, u64)>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// In a child just forked: points every lock descriptor at `/dev/null`, so that the child
/// holds no directory lock (closing them would leave numbers the child's copies of the
/// storages would close again later). Only async-signal-safe calls.
extern "C" fn release_locks_in_child() {
    let mut null = -1;
    for slot in LOCK_FDS.iter() {
        let fd = slot.load(AtomicOrdering::SeqCst);
        if fd < 0 {
            continue;
        }
        // SAFETY: open/dup2/fcntl are async-signal-safe; the path is a NUL-terminated
        // literal; `fd` is a descriptor of this (child) process.
        unsafe {
            if null < 0 {
                null = libc::open(
                    b"/dev/null\0".as_ptr().cast(),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                );
                if null < 0 {
                    return;
                }
            }
            libc::dup2(null, fd);
            // dup2 clears FD_CLOEXEC on the new descriptor: set it again.
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    if null >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(null) };
    }
}

fn install_fork_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler that only makes async-signal-safe calls.
        unsafe {
            libc::pthread_atfork(None, None, Some(release_locks_in_child));
        }
    });
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            let fd = f.as_raw_fd();
            // Out of the fork handler's list first, so that it never touches a number that
            // a close made free for another file.
            for slot in LOCK_FDS.iter() {
                if slot
                    .compare_exchange(fd, -1, AtomicOrdering::SeqCst, AtomicOrdering::SeqCst)
                    .is_ok()
                {
                    break;
                }
            }
            drop(f);
        }
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
    install_fork_handler();
    let mut reg = held();
    let file = File::open(dir).map_err(|e| io_err("open storage directory", dir, e))?;
    let md = file.metadata().map_err(|e| io_err("stat", dir, e))?;
    if !md.is_dir() {
        return Err(io_err("lock", dir, io::Error::other("not a directory")));
    }
    let key = (md.dev(), md.ino());
    if reg.contains(&key) {
        return Err(locked(
            dir,
            String::from("another open storage in this process"),
        ));
    }
    let info = dir.join("LOCK");
    // A process being spawned (fork, then exec) holds a copy of every descriptor until
    // its exec closes them: a lock dropped a moment ago may still be held through such a
    // copy for a few milliseconds. So "locked" is only believed after 200 ms of retries.
    let mut tries = 0;
    let rc = loop {
        // SAFETY: flock on a valid, owned descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        let busy = rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK);
        if !busy || tries >= 40 {
            break rc;
        }
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let who = fs::read_to_string(&info)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .map_or_else(
                    || String::from("another process"),
                    |pid| format!("process {pid}"),
                );
            return Err(locked(dir, who));
        }
        return Err(io_err("lock", dir, err));
    }
    // Best effort, for the message above; not part of the lock.
    let _ = fs::write(&info, format!("{}\n", std::process::id()));
    reg.push(key);
    let fd = file.as_raw_fd();
    for slot in LOCK_FDS.iter() {
        if slot
            .compare_exchange(-1, fd, AtomicOrdering::SeqCst, AtomicOrdering::SeqCst)
            .is_ok()
        {
            break;
        }
    }
    Ok(DirLock {
        file: Some(file),
        key,
    })
}
