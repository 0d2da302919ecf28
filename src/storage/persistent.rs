//! Persistent storage on commitlog (placeholder until the persistence issue lands).

use std::path::Path;

use crate::config::SyncPolicy;
use crate::errors::{StorageError, StorageErrorKind};
use crate::storage::Storage;

/// Opens (or creates) persistent storage at `path`. Not supported yet: always fails.
pub fn open(
    path: &Path,
    _sync: SyncPolicy,
    _segment_bytes: usize,
) -> Result<Box<dyn Storage>, StorageError> {
    Err(StorageError::new(
        StorageErrorKind::Io,
        format!(
            "persistent storage at {} is not supported yet",
            path.display()
        ),
    ))
}
