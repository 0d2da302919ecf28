//! The node facade: one Omni-Paxos server. No I/O, no clocks, no threads: time is
//! [`OmniPaxos::tick`], messages come in through [`OmniPaxos::handle_incoming`] and go out
//! through [`OmniPaxos::take_outgoing`]; the caller owns the network.

use crate::config::Config;
use crate::entries::Entries;
use crate::errors::Result;
use crate::messages::{Ballot, Message, NodeId, StopSign};
use crate::storage::Storage;

/// What [`OmniPaxos::read`] finds at one index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEntry {
    /// A decided entry.
    Decided(Vec<u8>),
    /// An entry in the log that is not decided yet (it may still be replaced).
    Undecided(Vec<u8>),
    /// The StopSign that ends this configuration, and whether it is decided.
    StopSign(StopSign, bool),
    /// The entry was trimmed (compacted away).
    Trimmed,
}

/// One Omni-Paxos server.
pub struct OmniPaxos {
    _todo: (),
}

impl OmniPaxos {
    /// Builds a node from a validated configuration on `storage`. When the storage holds
    /// state from an earlier run, call [`OmniPaxos::fail_recovery`] next.
    ///
    /// `session` identifies this incarnation of the node (any value that differs between
    /// restarts; [`OmniPaxos::new`] picks a random one). It lets a leader drop duplicate
    /// forwarded proposals.
    pub fn with_session(config: Config, storage: Box<dyn Storage>, session: u64) -> Result<Self> {
        let _ = (config, storage, session);
        todo!()
    }

    /// Builds a node with a random session (see [`OmniPaxos::with_session`]).
    pub fn new(config: Config, storage: Box<dyn Storage>) -> Result<Self> {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(config.pid);
        Self::with_session(config, storage, h.finish())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        todo!()
    }

    /// Appends an entry (the bytes are copied). At the leader it goes into the next batch;
    /// at a follower it is forwarded to the leader and re-sent until the leader takes it;
    /// while no leader is known it waits in a buffer of `buffer_size` entries. Fails with
    /// `BufferFull` when that buffer is full and `Stopped` after a StopSign.
    pub fn append(&mut self, entry: &[u8]) -> Result<()> {
        let _ = entry;
        todo!()
    }

    /// Handles one decoded incoming message. Messages not addressed to this node or from a
    /// pid outside the configuration are rejected with `UnknownSender` and change nothing.
    pub fn handle_incoming(&mut self, msg: Message) -> Result<()> {
        let _ = msg;
        todo!()
    }

    /// Decodes `bytes` (see [`crate::wire`]) and handles the message. Garbage, oversized
    /// messages and messages of another configuration are rejected and change nothing.
    pub fn handle_incoming_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let _ = bytes;
        todo!()
    }

    /// Commits pending storage writes (one fsync for everything handled since the last
    /// call) and moves the outgoing messages into `out` (appended; `out` is not cleared, so
    /// its allocation can be reused). On a storage error no message is released.
    pub fn take_outgoing(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let _ = out;
        todo!()
    }

    /// Advances time by one tick: a heartbeat round every `election_tick_timeout` ticks,
    /// re-sending of unanswered messages every `resend_tick_timeout` ticks.
    pub fn tick(&mut self) -> Result<()> {
        todo!()
    }

    /// Ends the current heartbeat round now (the seed's `election_timeout`).
    pub fn election_timeout(&mut self) -> Result<()> {
        todo!()
    }

    /// The decided index: entries `0..decided_idx()` are decided. Commits pending writes
    /// first, so the index reported is durable.
    pub fn decided_idx(&mut self) -> Result<u64> {
        todo!()
    }

    /// The entry at `idx`; `None` past the end of the log.
    pub fn read(&mut self, idx: u64) -> Result<Option<LogEntry>> {
        let _ = idx;
        todo!()
    }

    /// Appends entries `from..to` of the log (decided or not) to `out`.
    pub fn read_entries(&mut self, from: u64, to: u64, out: &mut Entries) -> Result<()> {
        let _ = (from, to, out);
        todo!()
    }

    /// Appends the decided entries from `from` to the decided index to `out` and returns
    /// the decided index. Nothing is appended when `from >= decided_idx`.
    pub fn read_decided_suffix(&mut self, from: u64, out: &mut Entries) -> Result<u64> {
        let _ = (from, out);
        todo!()
    }

    /// The leader this node currently follows (or is): pid and ballot.
    pub fn leader(&self) -> Option<(NodeId, Ballot)> {
        todo!()
    }

    /// Whether this node heard from a majority in its last heartbeat round.
    pub fn is_quorum_connected(&self) -> bool {
        todo!()
    }

    /// Re-initialises the volatile state from storage after a crash: the node rejoins as a
    /// follower and asks the leader to bring it up to date.
    pub fn fail_recovery(&mut self) -> Result<()> {
        todo!()
    }

    /// Tells the node that the link to `pid` was re-established (messages may have been
    /// lost): it re-synchronises with that peer.
    pub fn reconnected(&mut self, pid: NodeId) -> Result<()> {
        let _ = pid;
        todo!()
    }

    /// Trims the log up to `idx` (all entries if `None`, up to the decided index) on every
    /// server. Only entries decided at every server can be trimmed; at a follower the
    /// request is forwarded to the leader.
    pub fn trim(&mut self, idx: Option<u64>) -> Result<()> {
        let _ = idx;
        todo!()
    }

    /// Moves the log lines produced since the last call (leader changes, recovery, ...) to
    /// `f`. The caller decides where they go (see `log_file_path`).
    pub fn drain_log(&mut self, f: impl FnMut(&str)) {
        let _ = f;
        todo!()
    }
}
