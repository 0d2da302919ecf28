//! In-memory storage: the log in chunks that are never moved (see `memory/log.rs`), nothing survives
//! the process.

pub(in crate::storage) mod log;

use self::log::ChunkedLog;
use crate::entries::Entries;
use crate::errors::{StorageError, StorageErrorKind};
use crate::messages::{Ballot, StopSign};
use crate::storage::Storage;

/// Storage kept in memory. Committing is free; nothing survives the process, so a node
/// built on it can only be "recovered" while the value itself is kept (as the simulated
/// cluster tests do).
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    log: ChunkedLog,
    compacted_idx: u64,
    promise: Ballot,
    accepted_round: Ballot,
    decided_idx: u64,
    stopsign: Option<StopSign>,
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }
}

fn out_of_range(from: u64, to: u64, compacted: u64, len: u64) -> StorageError {
    StorageError::new(
        StorageErrorKind::OutOfRange,
        format!("entries {from}..{to} requested, the log holds {compacted}..{len}"),
    )
}

impl Storage for MemoryStorage {
    fn append_entries(&mut self, entries: &Entries) -> Result<(), StorageError> {
        self.log.append(entries);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> Result<(), StorageError> {
        let local = len.saturating_sub(self.compacted_idx) as usize;
        self.log.truncate(local);
        Ok(())
    }

    fn read_entries(&self, from: u64, to: u64, out: &mut Entries) -> Result<(), StorageError> {
        if from > to || from < self.compacted_idx || to > self.log_len() {
            return Err(out_of_range(from, to, self.compacted_idx, self.log_len()));
        }
        let base = self.compacted_idx;
        if self
            .log
            .read((from - base) as usize, (to - base) as usize, out)
        {
            Ok(())
        } else {
            Err(StorageError::new(
                StorageErrorKind::Corruption,
                format!("the in-memory log's offsets are inconsistent reading {from}..{to}"),
            ))
        }
    }

    fn log_len(&self) -> u64 {
        self.compacted_idx + self.log.len() as u64
    }

    fn set_promise(&mut self, b: Ballot) -> Result<(), StorageError> {
        self.promise = b;
        Ok(())
    }

    fn promise(&self) -> Ballot {
        self.promise
    }

    fn set_accepted_round(&mut self, b: Ballot) -> Result<(), StorageError> {
        self.accepted_round = b;
        Ok(())
    }

    fn accepted_round(&self) -> Ballot {
        self.accepted_round
    }

    fn set_decided_idx(&mut self, idx: u64) -> Result<(), StorageError> {
        self.decided_idx = idx;
        Ok(())
    }

    fn decided_idx(&self) -> u64 {
        self.decided_idx
    }

    fn set_stopsign(&mut self, ss: Option<StopSign>) -> Result<(), StorageError> {
        self.stopsign = ss;
        Ok(())
    }

    fn stopsign(&self) -> Option<StopSign> {
        self.stopsign.clone()
    }

    fn trim(&mut self, idx: u64) -> Result<(), StorageError> {
        if idx <= self.compacted_idx {
            return Ok(());
        }
        if idx > self.log_len() {
            return Err(out_of_range(
                self.compacted_idx,
                idx,
                self.compacted_idx,
                self.log_len(),
            ));
        }
        self.log.drain_front((idx - self.compacted_idx) as usize);
        self.compacted_idx = idx;
        Ok(())
    }

    fn compacted_idx(&self) -> u64 {
        self.compacted_idx
    }

    fn commit(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}
