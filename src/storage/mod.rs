//! The storage a node keeps its acceptor state and log in.
//!
//! The protocol writes through [`Storage`]'s setters and then calls [`Storage::commit`]: the
//! writes since the previous commit form **one batch**. When `commit` returns `Ok` the batch
//! is as durable as its sync policy promises. After a crash before that, re-opening sees:
//! - of the batch's appended entries, any prefix (possibly none, possibly all; whole entries
//!   in order) — an implementation may make appends durable before the rest, so that a batch
//!   of appends alone costs one sync;
//! - of every other write (promise, accepted round, decided index, StopSign, trim, truncate),
//!   all or nothing, and never any of it without all of the batch's appends;
//! - except that the **decided index is lazy**: a commit may leave a new decided index
//!   undurable when it is the batch's only change besides appends (so that deciding costs no
//!   sync of its own). It becomes durable with the next commit that writes anything else, or
//!   with [`Storage::sync_decided`]; [`Storage::durable_decided_idx`] tells how far it is.
//!   After a crash the decided index re-opens somewhere between the two: a lower bound of
//!   what was decided, which the node learns again from the leader. This is Raft's
//!   `commitIndex`, kept volatile for the same reason: an entry is decided (chosen) once a
//!   majority has durably accepted it, whatever any one node remembers of that fact.
//!
//! A surviving prefix is safe for Paxos: those are entries the node accepted but never
//! acknowledged. If the batch also moved the accepted round (an AcceptSync that only extends
//! the log), they come back under the older round; reporting a lower round for entries of a
//! valid log is safe, since anything chosen in the newer round was acknowledged by a majority
//! that did record it. The simulated-cluster tests crash nodes under exactly this model. The node
//! commits before it sends any Promise or Accepted and before it reports entries decided (they
//! are then on its disk, and on a majority's), so one fsync serves all the messages handled
//! since the previous commit (group commit).
//!
//! Reads see every write made so far, committed or not.

pub mod memory;
pub mod persistent;

pub use memory::MemoryStorage;

use crate::entries::Entries;
use crate::errors::StorageError;
use crate::messages::{Ballot, NodeId, StopSign};

/// Durable state of a Sequence Paxos acceptor and its log.
///
/// Log indexes are global: the first entry ever appended has index 0, and trimming does not
/// renumber. `compacted_idx() <= decided_idx() <= log_len()` always holds.
pub trait Storage: Send {
    /// Appends entries at the end of the log.
    fn append_entries(&mut self, entries: &Entries) -> Result<(), StorageError>;

    /// Removes every entry with index `>= len` (no-op when the log is not longer).
    /// `len` is never below `compacted_idx()`.
    fn truncate(&mut self, len: u64) -> Result<(), StorageError>;

    /// Appends entries `from..to` (global indexes) to `out`. Fails with `OutOfRange` when the
    /// range is trimmed or goes past the end of the log.
    fn read_entries(&self, from: u64, to: u64, out: &mut Entries) -> Result<(), StorageError>;

    /// One past the index of the last entry (the number of entries ever appended and not
    /// truncated, trimmed ones included).
    fn log_len(&self) -> u64;

    /// Records the highest ballot promised.
    fn set_promise(&mut self, b: Ballot) -> Result<(), StorageError>;
    /// The highest ballot promised.
    fn promise(&self) -> Ballot;

    /// Records the round in which the log was last accepted.
    fn set_accepted_round(&mut self, b: Ballot) -> Result<(), StorageError>;
    /// The round in which the log was last accepted.
    fn accepted_round(&self) -> Ballot;

    /// Records the decided index. A commit may leave this write alone undurable (see the
    /// module documentation: the decided index is lazy).
    fn set_decided_idx(&mut self, idx: u64) -> Result<(), StorageError>;
    /// The decided index.
    fn decided_idx(&self) -> u64;
    /// The decided index as of the last commit that made it durable (a crash cannot take
    /// the decided index below it). The default: every commit makes it durable.
    fn durable_decided_idx(&self) -> u64 {
        self.decided_idx()
    }
    /// Like [`Storage::commit`], and makes the decided index durable too. The default:
    /// `commit` already does.
    fn sync_decided(&mut self) -> Result<(), StorageError> {
        self.commit()
    }
    /// Called once when the node stops cleanly: commits what is pending and makes the
    /// decided index durable (a crash would lose it, see [`Storage::sync_decided`]). The
    /// default does nothing: storage that does not survive the process owes nothing, and a
    /// test storage that simulates crashes keeps its crash semantics.
    fn close(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
    /// Checks that this storage belongs to the node `id` (called once, when a node is
    /// created on it): persistent storage records the identity of the first node created
    /// on a directory and refuses any other with a `Mismatch` error naming both. The
    /// default accepts every node.
    fn check_identity(&mut self, id: &StorageIdentity) -> Result<(), StorageError> {
        let _ = id;
        Ok(())
    }
    /// Whether `commit` waits for the disk (an fsync). The node then sends the leader's
    /// replication messages before its own commit, so that its disk write and the
    /// followers' overlap. The default: no (a commit is cheap).
    fn commit_waits_for_disk(&self) -> bool {
        false
    }

    /// Records (or clears) the accepted StopSign.
    fn set_stopsign(&mut self, ss: Option<StopSign>) -> Result<(), StorageError>;
    /// The accepted StopSign, if any.
    fn stopsign(&self) -> Option<StopSign>;

    /// Drops every entry with index `< idx` and reclaims its space. `idx` is never above
    /// `decided_idx()`.
    fn trim(&mut self, idx: u64) -> Result<(), StorageError>;
    /// Entries below this index are trimmed.
    fn compacted_idx(&self) -> u64;

    /// Makes every write since the previous commit durable, atomically (see the module
    /// documentation). A failed commit may be retried.
    fn commit(&mut self) -> Result<(), StorageError>;
}

impl<S: Storage + ?Sized> Storage for Box<S> {
    fn append_entries(&mut self, entries: &Entries) -> Result<(), StorageError> {
        (**self).append_entries(entries)
    }
    fn truncate(&mut self, len: u64) -> Result<(), StorageError> {
        (**self).truncate(len)
    }
    fn read_entries(&self, from: u64, to: u64, out: &mut Entries) -> Result<(), StorageError> {
        (**self).read_entries(from, to, out)
    }
    fn log_len(&self) -> u64 {
        (**self).log_len()
    }
    fn set_promise(&mut self, b: Ballot) -> Result<(), StorageError> {
        (**self).set_promise(b)
    }
    fn promise(&self) -> Ballot {
        (**self).promise()
    }
    fn set_accepted_round(&mut self, b: Ballot) -> Result<(), StorageError> {
        (**self).set_accepted_round(b)
    }
    fn accepted_round(&self) -> Ballot {
        (**self).accepted_round()
    }
    fn set_decided_idx(&mut self, idx: u64) -> Result<(), StorageError> {
        (**self).set_decided_idx(idx)
    }
    fn decided_idx(&self) -> u64 {
        (**self).decided_idx()
    }
    fn durable_decided_idx(&self) -> u64 {
        (**self).durable_decided_idx()
    }
    fn sync_decided(&mut self) -> Result<(), StorageError> {
        (**self).sync_decided()
    }
    fn commit_waits_for_disk(&self) -> bool {
        (**self).commit_waits_for_disk()
    }
    fn close(&mut self) -> Result<(), StorageError> {
        (**self).close()
    }
    fn check_identity(&mut self, id: &StorageIdentity) -> Result<(), StorageError> {
        (**self).check_identity(id)
    }
    fn set_stopsign(&mut self, ss: Option<StopSign>) -> Result<(), StorageError> {
        (**self).set_stopsign(ss)
    }
    fn stopsign(&self) -> Option<StopSign> {
        (**self).stopsign()
    }
    fn trim(&mut self, idx: u64) -> Result<(), StorageError> {
        (**self).trim(idx)
    }
    fn compacted_idx(&self) -> u64 {
        (**self).compacted_idx()
    }
    fn commit(&mut self) -> Result<(), StorageError> {
        (**self).commit()
    }
}

use crate::config::StorageConfig;

/// The node a storage belongs to (see [`Storage::check_identity`]): its pid and its
/// configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageIdentity {
    /// The node's pid.
    pub pid: NodeId,
    /// The configuration's id.
    pub config_id: u32,
    /// Every server of the configuration (the pid included), sorted.
    pub nodes: Vec<NodeId>,
}

impl StorageIdentity {
    /// The identity of the node `config` describes.
    pub fn of(config: &crate::config::Config) -> Self {
        let mut nodes = config.peers.clone();
        nodes.push(config.pid);
        nodes.sort_unstable();
        nodes.dedup();
        StorageIdentity {
            pid: config.pid,
            config_id: config.config_id,
            nodes,
        }
    }
}

impl std::fmt::Display for StorageIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} of configuration {} (nodes {:?})",
            self.pid, self.config_id, self.nodes
        )
    }
}

/// Opens the storage a configuration asks for.
pub fn open(config: &StorageConfig) -> Result<Box<dyn Storage>, StorageError> {
    match config {
        StorageConfig::Memory => Ok(Box::new(MemoryStorage::new())),
        StorageConfig::Persistent {
            path,
            sync,
            segment_bytes,
        } => persistent::open(path, *sync, *segment_bytes),
    }
}
