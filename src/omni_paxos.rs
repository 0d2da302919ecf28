//! The node facade: one Omni-Paxos server. No I/O, no clocks, no threads: time is
//! [`OmniPaxos::tick`], messages come in through [`OmniPaxos::handle_incoming`] and go out
//! through [`OmniPaxos::take_outgoing`]; the caller owns the network.

use crate::ballot_leader_election::BallotLeaderElection;
use crate::config::Config;
use crate::entries::Entries;
use crate::errors::{Error, Result};
use crate::messages::{Ballot, Body, Message, NodeId, StopSign};
use crate::sequence_paxos::{Limits, Phase, Role, SequencePaxos};
use crate::storage::Storage;
use crate::wire;

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
///
/// Not thread-safe by itself (`&mut self` everywhere); the C API wraps it in a mutex.
pub struct OmniPaxos {
    config: Config,
    ble: BallotLeaderElection,
    sp: SequencePaxos,
    ticks: u64,
    /// Reused between calls of `take_outgoing_encoded`.
    msgs_scratch: Vec<Message>,
    /// Dropped as in a crash: nothing more is written (see `debug_crash`).
    crashed: bool,
}

impl OmniPaxos {
    /// Builds a node from a configuration (validated here) on `storage`. When the storage
    /// holds state from an earlier run, call [`OmniPaxos::fail_recovery`] next.
    ///
    /// `session` identifies this incarnation of the node (any value that differs between
    /// restarts; [`OmniPaxos::new`] picks a random one). It lets a leader drop duplicate
    /// forwarded proposals.
    pub fn with_session(
        config: Config,
        mut storage: Box<dyn Storage>,
        session: u64,
    ) -> Result<Self> {
        config.validate()?;
        storage.check_identity(&crate::storage::StorageIdentity::of(&config))?;
        let limits = Limits {
            buffer_size: config.buffer_size,
            batch_size: config.batch_size,
            max_resend_entries: config.batch_size.max(1024),
            max_message_bytes: config.max_message_bytes,
        };
        let ble = BallotLeaderElection::new(
            config.pid,
            config.peers.clone(),
            config.leader_priority,
            config.election_tick_timeout,
            session,
        );
        let sp = SequencePaxos::new(config.pid, config.peers.clone(), limits, storage, session);
        Ok(OmniPaxos {
            config,
            ble,
            sp,
            ticks: 0,
            msgs_scratch: Vec::new(),
            crashed: false,
        })
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
        &self.config
    }

    /// Appends an entry (the bytes are copied). At the leader it goes into the next batch;
    /// at a follower it is forwarded to the leader and re-sent until the leader takes it;
    /// while no leader is known it waits in a buffer of `buffer_size` entries. Fails with
    /// `BufferFull` when that buffer is full (at the leader: when `buffer_size` entries wait
    /// to be decided), `Stopped` once a StopSign is in the log (see
    /// [`OmniPaxos::reconfigure`]), and `InvalidArgument` when the entry cannot fit in a
    /// message of `max_message_bytes` (longer than [`crate::wire::max_entry_len`]).
    pub fn append(&mut self, entry: &[u8]) -> Result<()> {
        self.sp.append(entry)
    }

    /// Proposes to end this configuration with a StopSign naming the next one:
    /// `next_config_id`, its servers `nodes` and opaque `metadata` for the application.
    ///
    /// Call it at the leader. The StopSign goes into the log after every entry appended
    /// before this call; from this call on, [`OmniPaxos::append`] fails with
    /// [`Error::Stopped`] here (and at every server that has the StopSign). `Ok` means
    /// proposed, not decided: watch [`OmniPaxos::decided_stopsign`] on any server. Like an
    /// entry, a StopSign the leader proposed can be lost if the leader is deposed before
    /// a majority accepted it (the new leader then takes entries again): call this again
    /// at the new leader. Once it is decided, it is the last entry of this configuration
    /// on every server; starting the servers of the next configuration (and copying the
    /// log over) is the application's job.
    ///
    /// At a leader still collecting promises (just elected), the StopSign is proposed as
    /// soon as its accept phase starts, unless the log it adopts already ends with one.
    ///
    /// Errors: [`Error::NotLeader`] at a follower (it names the leader when known; the
    /// StopSign is not forwarded); [`Error::Stopped`] when a StopSign is already in the
    /// log or proposed; [`Error::InvalidArgument`] when `nodes` is empty, holds pid 0 or a
    /// pid twice, `next_config_id` is this configuration's id, or the StopSign would not
    /// fit in a message of `max_message_bytes`.
    pub fn reconfigure(
        &mut self,
        next_config_id: u32,
        nodes: Vec<NodeId>,
        metadata: Vec<u8>,
    ) -> Result<()> {
        if nodes.is_empty() {
            return Err(Error::InvalidArgument(
                "the next configuration needs at least one node".to_string(),
            ));
        }
        if nodes.contains(&0) {
            return Err(Error::InvalidArgument(
                "pid 0 is not a valid node of the next configuration".to_string(),
            ));
        }
        let mut sorted = nodes.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::InvalidArgument(format!(
                "node {} is listed twice in the next configuration",
                w[0]
            )));
        }
        if next_config_id == self.config.config_id {
            return Err(Error::InvalidArgument(format!(
                "the next configuration id must differ from this one ({next_config_id})"
            )));
        }
        // The StopSign travels in one message (AcceptStopSign, AcceptSync): leave room for
        // the header and the rest of the message.
        let size = (nodes.len() as u64)
            .saturating_mul(9)
            .saturating_add(metadata.len() as u64)
            .saturating_add(1024);
        if size > self.config.max_message_bytes as u64 || metadata.len() > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "a StopSign with {} nodes and {} bytes of metadata does not fit in a message of max_message_bytes = {}",
                nodes.len(),
                metadata.len(),
                self.config.max_message_bytes
            )));
        }
        self.sp.propose_stopsign(StopSign {
            next_config_id,
            nodes,
            metadata,
        })
    }

    /// Hands the leadership to server `pid`: at the leader, asks `pid` to take over with a
    /// higher ballot at once. `Ok` means asked, not done: the target leads within a few
    /// message delays (watch [`OmniPaxos::leader`]); if the request is lost, nothing
    /// changes and the call can be repeated. No decided entry is ever lost; entries this
    /// leader took but had not decided are carried over by the new leader when a majority
    /// or the target holds them (the target must hold every decided entry, see below).
    /// Calling it at the leader with its own pid does nothing.
    ///
    /// Errors, with nothing changed: [`Error::NotLeader`] at a follower (naming the leader
    /// when known); [`Error::InvalidArgument`] when `pid` is not a peer, this leader is
    /// still being elected, the target has not answered a heartbeat within the last
    /// election timeout, is not quorum-connected, or has not yet accepted every decided
    /// entry (it is catching up: transfer once it has).
    pub fn transfer_leadership(&mut self, pid: NodeId) -> Result<()> {
        if !self.config.peers.contains(&pid) && pid != self.config.pid {
            return Err(Error::InvalidArgument(format!(
                "server {pid} is not in this configuration"
            )));
        }
        if self.sp.role() != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.sp.leader().map(|b| b.pid),
            });
        }
        if pid == self.config.pid {
            return Ok(());
        }
        if self.sp.phase() != Phase::Accept {
            return Err(Error::InvalidArgument(
                "this leader is still being elected (collecting promises); transfer once it \
                 accepts entries"
                    .to_string(),
            ));
        }
        self.ble
            .check_transfer(pid)
            .map_err(Error::InvalidArgument)?;
        let decided = self.sp.visible_decided_idx().min(self.sp.log_len());
        match self.sp.follower_accepted_idx(pid) {
            Some(a) if a >= decided => {}
            Some(a) => {
                return Err(Error::InvalidArgument(format!(
                    "server {pid} has accepted {a} of the {decided} decided entries: it is \
                     catching up; transfer once it has them all"
                )))
            }
            None => {
                return Err(Error::InvalidArgument(format!(
                    "server {pid} is not synchronised with this leader yet"
                )))
            }
        }
        self.ble.transfer_to(pid).map_err(Error::InvalidArgument)
    }

    /// Sets this server's leader priority for the ballots it takes from now on (a ballot
    /// it already holds keeps its priority, so the change alone never deposes a leader;
    /// see [`OmniPaxos::transfer_leadership`] to move the leadership now).
    pub fn set_leader_priority(&mut self, priority: u32) {
        self.config.leader_priority = priority;
        self.ble.set_priority(priority);
    }

    /// The StopSign that ended this configuration, once it is decided (`None` before).
    /// Like [`OmniPaxos::decided_idx`] it reports what the last commit made durable here
    /// (and writes nothing). It sits at index `decided_idx() - 1`, after every decided
    /// entry. After a crash and [`OmniPaxos::fail_recovery`] it may read `None` again until
    /// the leader tells this node again that it is decided (the decided index is written
    /// lazily; a clean [`OmniPaxos::close`] writes it); [`OmniPaxos::read`] shows it as an
    /// undecided StopSign meanwhile.
    pub fn decided_stopsign(&self) -> Result<Option<StopSign>> {
        Ok(self.sp.decided_stopsign().cloned())
    }

    /// Whether this configuration is stopped: a StopSign is decided (see
    /// [`OmniPaxos::decided_stopsign`]).
    pub fn is_stopped(&self) -> Result<bool> {
        Ok(self.decided_stopsign()?.is_some())
    }

    /// Handles one decoded incoming message. Messages not addressed to this node or from a
    /// pid outside the configuration are rejected with `UnknownSender` and change nothing.
    pub fn handle_incoming(&mut self, msg: Message) -> Result<()> {
        if msg.to != self.config.pid {
            return Err(Error::UnknownSender(msg.to));
        }
        if !self.config.peers.contains(&msg.from) {
            return Err(Error::UnknownSender(msg.from));
        }
        match msg.body {
            Body::Ble(b) => {
                if let Some(l) = self.ble.handle(msg.from, b, self.sp.promise()) {
                    self.on_leader(l);
                }
                Ok(())
            }
            Body::Paxos(p) => self.sp.handle(msg.from, p),
        }
    }

    /// Decodes `bytes` (see [`crate::wire`]) and handles the message. Garbage, oversized
    /// messages and messages of another configuration are rejected and change nothing.
    pub fn handle_incoming_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let (config_id, msg) = wire::decode(bytes, self.config.max_message_bytes)?;
        if config_id != self.config.config_id {
            return Err(Error::WrongConfiguration {
                got: config_id,
                expected: self.config.config_id,
            });
        }
        self.handle_incoming(msg)
    }

    /// Commits pending storage writes (one fsync for everything handled since the last
    /// call) and moves the outgoing messages into `out` (appended; `out` is not cleared, so
    /// its allocation can be reused). On a storage error no Paxos message is released; the
    /// call can be retried.
    ///
    /// One exception lets a leader's disk write overlap its followers': when the storage's
    /// commit waits for the disk and the leader has new entries whose messages promise
    /// nothing about its own disk (AcceptDecide, Decide), the call returns those *first*,
    /// without committing, and the next call commits. So call it until it returns nothing
    /// (at least once more after sending what it returned).
    pub fn take_outgoing(&mut self, out: &mut Vec<Message>) -> Result<()> {
        self.sp.flush()?;
        if self.sp.take_before_commit(out) {
            self.ble.take_outgoing(out);
            return Ok(());
        }
        self.sp.commit()?;
        self.ble.take_outgoing(out);
        self.sp.take_outgoing(out);
        Ok(())
    }

    /// Encodes the outgoing messages (see [`OmniPaxos::take_outgoing`]) into `buf`, calling
    /// `f(receiver, byte_range)` for each; `buf` is cleared first and its allocation reused.
    pub fn take_outgoing_encoded(
        &mut self,
        buf: &mut Vec<u8>,
        mut f: impl FnMut(NodeId, std::ops::Range<usize>),
    ) -> Result<()> {
        let mut msgs = std::mem::take(&mut self.msgs_scratch);
        msgs.clear();
        let r = self.take_outgoing(&mut msgs);
        buf.clear();
        for m in msgs.drain(..) {
            let start = buf.len();
            wire::encode(self.config.config_id, &m, buf);
            f(m.to, start..buf.len());
        }
        self.msgs_scratch = msgs;
        r
    }

    /// Advances time by one tick: heartbeat requests every quarter of
    /// `election_tick_timeout`, the election's rules on every tick (see
    /// [`crate::ballot_leader_election`]), re-sending of unanswered messages every
    /// `resend_tick_timeout` ticks.
    pub fn tick(&mut self) -> Result<()> {
        self.ticks += 1;
        if let Some(b) = self.ble.tick(self.sp.promise()) {
            self.on_leader(b);
        } else if self.ticks % self.config.election_tick_timeout == 0 {
            // Once per election timeout, the replication layer is told the leader again:
            // this repairs any disagreement between the two (a lost Prepare, say).
            self.repair_leader();
        }
        self.sp.set_promise_owner_gone(self.ble.leader_gone());
        self.raise_ballot_if_refused();
        if self.ticks % self.config.resend_tick_timeout == 0 {
            self.sp.resend()?;
            self.sp.sync_decided_soon();
        }
        Ok(())
    }

    /// Sends a heartbeat request to every peer now and applies the election's rules again,
    /// without advancing time (the seed's `election_timeout`; for callers that keep time
    /// themselves).
    pub fn election_timeout(&mut self) -> Result<()> {
        if let Some(b) = self.ble.probe_now(self.sp.promise()) {
            self.on_leader(b);
        } else {
            self.repair_leader();
        }
        Ok(())
    }

    fn repair_leader(&mut self) {
        if let Some(b) = self.ble.leader() {
            self.on_leader(b);
        }
    }

    /// A leader whose Prepare a follower refused (it promised a higher ballot, whose owner
    /// may be gone) raises its ballot above it, so that every server can follow it again.
    fn raise_ballot_if_refused(&mut self) {
        let Some(refused) = self.sp.take_refusal() else {
            return;
        };
        if self.ble.leader() == Some(self.ble.current_ballot()) && self.ble.is_quorum_connected() {
            let nb = self.ble.take_over_above(refused);
            self.on_leader(nb);
        }
    }

    fn on_leader(&mut self, b: Ballot) {
        match self.sp.handle_leader(b) {
            Ok(()) => {}
            Err(promised) if promised.pid == self.config.pid => {
                // Our own ballot from before a restart: never lead twice with one ballot.
                let nb = self.ble.take_over_above(promised);
                let _ = self.sp.handle_leader(nb);
            }
            Err(promised) => {
                // Elected, but a higher ballot was promised to another server: follow that
                // one for now. If the next round shows it gone, this server takes over.
                self.ble.follow(promised);
                let _ = self.sp.handle_leader(promised);
            }
        }
    }

    /// The decided index: entries `0..decided_idx()` are decided. It is the decided index
    /// as of the last commit ([`OmniPaxos::take_outgoing`] commits), so the entries
    /// reported are durable in this node's log; reading it writes nothing (no fsync). The
    /// index itself is durable lazily: after a crash and [`OmniPaxos::fail_recovery`] it
    /// may be lower than it was until the leader tells the node again (the entries never
    /// change); a clean [`OmniPaxos::close`] (or drop) writes it. Once a StopSign is
    /// decided it is the last decided index: `decided_idx() - 1` holds the StopSign, which
    /// [`OmniPaxos::read`] returns and the range reads stop before.
    pub fn decided_idx(&self) -> Result<u64> {
        Ok(self.sp.visible_decided_idx())
    }

    /// The entry at `idx`; `None` past the end of the log. Writes nothing.
    pub fn read(&self, idx: u64) -> Result<Option<LogEntry>> {
        let decided = self.decided_idx()?;
        if idx < self.sp.compacted_idx() {
            return Ok(Some(LogEntry::Trimmed));
        }
        if idx >= self.sp.log_len() {
            if idx == self.sp.log_len() {
                if let Some(ss) = self.sp.stopsign() {
                    return Ok(Some(LogEntry::StopSign(ss.clone(), decided > idx)));
                }
            }
            return Ok(None);
        }
        let mut e = Entries::new();
        self.sp.read_entries(idx, idx + 1, &mut e)?;
        let bytes = e.get(0).unwrap_or_default().to_vec();
        Ok(Some(if idx < decided {
            LogEntry::Decided(bytes)
        } else {
            LogEntry::Undecided(bytes)
        }))
    }

    /// Appends entries `from..to` of the log (decided or not) to `out`. Fails with
    /// `OutOfRange` when part of the range is trimmed or past the end of the log. With a
    /// StopSign in the log, the range may include its slot (the one after the last entry,
    /// e.g. up to the decided index once it is decided): the entries before it are read.
    /// Writes nothing.
    pub fn read_entries(&self, from: u64, to: u64, out: &mut Entries) -> Result<()> {
        if from > to {
            return Err(Error::InvalidArgument(format!(
                "range start {from} is after its end {to}"
            )));
        }
        let (lo, len) = (self.sp.compacted_idx(), self.sp.log_len());
        // A StopSign takes the slot after the last entry: a range may end after it (e.g.
        // at the decided index), and the read stops before it.
        let hi = len + u64::from(self.sp.stopsign().is_some());
        if from < lo || to > hi {
            return Err(Error::OutOfRange {
                idx: if from < lo { from } else { to },
                detail: format!("the log holds entries {lo}..{len}"),
            });
        }
        self.sp.read_entries(from.min(len), to.min(len), out)
    }

    /// Appends the decided entries from `from` to the decided index to `out` and returns
    /// the decided index. Nothing is appended when `from >= decided_idx`. Fails with
    /// `OutOfRange` when `from` is trimmed. Writes nothing.
    pub fn read_decided_suffix(&self, from: u64, out: &mut Entries) -> Result<u64> {
        let decided = self.decided_idx()?;
        if from >= decided {
            return Ok(decided);
        }
        let lo = self.sp.compacted_idx();
        if from < lo {
            return Err(Error::OutOfRange {
                idx: from,
                detail: format!("entries below {lo} are trimmed"),
            });
        }
        self.sp
            .read_entries(from, decided.min(self.sp.log_len()), out)?;
        Ok(decided)
    }

    /// Entries below this index are trimmed (compacted away).
    pub fn compacted_idx(&self) -> u64 {
        self.sp.compacted_idx()
    }

    /// The leader this node currently follows (or is): pid and ballot.
    pub fn leader(&self) -> Option<(NodeId, Ballot)> {
        self.sp.leader().map(|b| (b.pid, b))
    }

    /// Whether this node is the leader in the accept phase (ready to replicate).
    pub fn is_accepting_leader(&self) -> bool {
        self.sp.role() == Role::Leader && self.sp.phase() == Phase::Accept
    }

    /// Whether a majority (this node included) answered a heartbeat this node sent within
    /// the last election timeout; false on a new or restarted node until one has.
    pub fn is_quorum_connected(&self) -> bool {
        self.ble.is_quorum_connected()
    }

    /// Re-initialises the volatile state from storage after a crash: the node rejoins as a
    /// follower and asks the leader to bring it up to date.
    pub fn fail_recovery(&mut self) -> Result<()> {
        self.sp.fail_recovery();
        self.ble.reset_leader();
        let _ = self.sp.take_refusal();
        Ok(())
    }

    /// Tells the node that the link to `pid` was re-established (messages may have been
    /// lost): it re-synchronises with that peer.
    pub fn reconnected(&mut self, pid: NodeId) -> Result<()> {
        if !self.config.peers.contains(&pid) {
            return Err(Error::UnknownSender(pid));
        }
        self.sp.reconnected(pid)
    }

    /// Trims the log up to `idx` (if `None`, as far as possible) on every server. Only the
    /// leader can trim ([`Error::NotLeader`] elsewhere), and only entries that are decided
    /// and accepted by every server, with the decided index on disk there (it is written
    /// lazily, within one resend period); beyond that, [`Error::InvalidArgument`].
    pub fn trim(&mut self, idx: Option<u64>) -> Result<()> {
        self.sp.commit()?;
        self.sp.trim(idx)
    }

    /// A one-line summary of the node's protocol state, for debugging.
    pub fn debug_state(&self) -> String {
        format!(
            "pid {} ble[own {:?} leader {:?} qc {}] sp[{:?}/{:?} leader {:?} promise {:?} log {} decided {} stopsign {}]",
            self.config.pid,
            self.ble.current_ballot(),
            self.ble.leader(),
            self.ble.is_quorum_connected(),
            self.sp.role(),
            self.sp.phase(),
            self.sp.leader(),
            self.sp.promise(),
            self.sp.log_len(),
            self.sp.visible_decided_idx(),
            self.sp
                .stopsign()
                .map_or("-".to_string(), |ss| format!("to {}", ss.next_config_id)),
        )
    }

    /// Moves the log lines produced since the last call (leader changes, recovery, ...) to
    /// `f`. The caller decides where they go (see `log_file_path`).
    pub fn drain_log(&mut self, f: impl FnMut(&str)) {
        self.sp.drain_log(f)
    }

    /// Writes what the node owes its storage before it stops: the writes not yet committed
    /// and the (lazily written) decided index, so that a node reopened on the same storage
    /// reports what was decided. Dropping the node does the same and ignores a failure;
    /// call this to see the error (a full disk, say). The node stays usable.
    pub fn close(&mut self) -> Result<()> {
        self.sp.close()?;
        Ok(())
    }

    /// Drops the node as a crash would: without [`OmniPaxos::close`], so that what was not
    /// committed is lost. For tests of crash recovery.
    #[doc(hidden)]
    pub fn debug_crash(mut self) {
        self.abandon();
    }

    /// Makes dropping the node write nothing (see `debug_crash`): for a node whose state
    /// a panic may have left half changed.
    #[doc(hidden)]
    pub fn abandon(&mut self) {
        self.crashed = true;
    }
}

impl Drop for OmniPaxos {
    /// Closes the node (see [`OmniPaxos::close`]); a failure is ignored (what was
    /// committed before stays on disk).
    fn drop(&mut self) {
        if !self.crashed {
            let _ = self.sp.close();
        }
    }
}
