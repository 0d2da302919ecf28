//! Sequence Paxos (the Omni-Paxos paper, section 5): the replicated log.
//!
//! A leader elected by [`crate::ballot_leader_election`] runs a *prepare* phase (collect
//! promises from a majority, adopt the most recent log among them, bring every promiser up
//! to date with an AcceptSync) and then an *accept* phase (batches of new entries in
//! AcceptDecide messages; an entry is decided once a majority has durably accepted it).
//! Leader logic is in [`leader`](self), follower logic in [`follower`](self); this module
//! holds the state both share, proposal forwarding and buffering, and storage helpers.
//!
//! Durability: every write goes to [`Storage`] at once, but no Promise or Accepted leaves
//! the node before [`SequencePaxos::commit`] has made the writes durable (the facade
//! commits when outgoing messages are taken), and the user sees an entry decided only once
//! it is durable in this node's log (and, by the protocol, in a majority's). The decided
//! index itself is lazily durable (see [`crate::storage`]): it is synced with the next
//! commit that writes anything else, or at the next resend tick, and what a follower
//! reports of it in Accepted (used to bound trimming) is only ever the durable one. The
//! leader sends its AcceptDecide and Decide messages before its own commit when that
//! commit waits for the disk (see [`SequencePaxos::take_before_commit`]), so its fsync and
//! the followers' overlap; it counts its own log only once it is durable.
//!
//! Reconfiguration: a [`StopSign`] is the last entry of a configuration. It occupies one
//! log slot, at index `log_len` (right after the last entry; it is kept in
//! [`Storage::set_stopsign`], not among the entries), so the *accepted length* of a log
//! that ends with a StopSign is `log_len + 1`: that is what a follower reports in
//! Accepted, and the StopSign is decided when the decided index reaches `log_len + 1`.
//! The leader proposes it after flushing its batch (AcceptStopSign, and AcceptSync to
//! followers synchronised later); from then on the node takes no more entries
//! ([`Error::Stopped`]). A new leader that finds a StopSign among the promises adopts it
//! with the log and finishes deciding it.
//!
//! ## Every message fits in `max_message_bytes`
//!
//! No message this module produces is larger than `max_message_bytes`, whatever the load
//! or the gap: entries are counted in encoded bytes ([`wire::entry_cost`] each, plus
//! [`wire::MESSAGE_OVERHEAD`] per message and [`wire::stopsign_cost`] for a StopSign), and
//! `append` refuses an entry that could not fit alone ([`wire::max_entry_len`]).
//!
//! - *New entries*: a batch is flushed when it would outgrow a message (as well as at
//!   `batch_size` entries), and a batch that does (entries buffered while preparing) goes
//!   out as several AcceptDecide messages.
//! - *Catching a follower up*: its AcceptSync carries only the first chunk of the log
//!   from `sync_idx` (at most [`CATCHUP_CHUNK_BYTES`]); its `sync_idx` still says where the
//!   follower's log is cut, and the follower's log is then a prefix of the leader's log in
//!   this round, which is all an Accepted claims. The rest follows in AcceptDecide chunks
//!   from what was sent, a window of chunks unacknowledged at a time (64 chunks, at most
//!   [`CATCHUP_WINDOW_BYTES`], at least two chunks): each Accepted of the
//!   follower releases the next one, so a lagging follower is caught up at the pace of
//!   its link and disk while the other followers keep receiving their batches (new
//!   batches go only to followers that have everything before them). A resend tick that
//!   finds no progress sends again from the follower's accepted index, so a lost,
//!   duplicated or reordered chunk only costs time. The StopSign goes out only after the
//!   last entry (in the AcceptSync when that reaches the end of the log, else in an
//!   AcceptStopSign), so a follower accepts it only right after the leader's last entry.
//! - *Forwarded proposals* are cut to fit, the rest goes with the next flush.
//! - *A Promise* carries the promiser's metadata (its round `n_accepted`, its log length
//!   `accepted_idx`, its StopSign) and as much of the suffix the leader lacks as fits.
//!   When the most recent log among the promises is not complete at the leader, the leader
//!   pulls the rest from that promiser (a PullSuffix asks for a window of bytes, answered
//!   by that many PromiseSuffix chunks; the next is asked once they are in), and adopts it
//!   only when it holds all of it.
//!
//! Why pulling the promised suffix in parts is safe: the leader adopts exactly the log the
//! unchunked protocol would adopt, the whole log of the promise with the highest
//! `(n_accepted, accepted_idx)`, and it neither writes it nor enters the accept phase
//! before it holds every entry of it (nothing is adopted from a prefix: entries past it
//! may already be chosen). The promiser answers a PullSuffix only while it still has
//! promised this very ballot and its round and log length are those of its Promise;
//! having promised the ballot it accepts nothing from a lower one, and accepting from
//! this or a higher one would change its round, so the entries it sends are the ones it
//! promised with. The leader appends only the part that extends what it holds
//! contiguously, so a lost, duplicated or reordered answer is harmless, and answers about
//! another promise or another ballot are ignored. If the promiser stops answering (it
//! crashed, or promised a higher ballot), the leader drops the partial suffix and collects
//! promises again; a better promise that arrives meanwhile replaces it the same way
//! (adopting the most recent log among any set of promises that includes a majority is
//! what Paxos requires). The partial suffix is held in memory until it is adopted.

mod follower;
mod leader;

use std::collections::{HashMap, VecDeque};

use crate::entries::Entries;
use crate::errors::{Error, Result, StorageError};
use crate::messages::{Ballot, Body, Message, NodeId, PaxosMessage, StopSign};
use crate::storage::Storage;
use crate::wire;

/// The role of a server in Sequence Paxos.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader.
    Follower,
    /// Leads with `leader_state.n_leader`.
    Leader,
}

/// The phase within a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Collecting promises (leader) / promised, waiting for AcceptSync (follower).
    Prepare,
    /// Replicating entries.
    Accept,
    /// Restarted or without a leader: waiting to be brought up to date.
    Recover,
}

/// What a leader knows about one follower in its current round.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerState {
    /// The follower's promise, if it has promised in this round.
    pub promise: Option<PromiseMeta>,
    /// The follower's accepted index in this round (`None` until its first Accepted after
    /// its AcceptSync).
    pub accepted_idx: Option<u64>,
    /// `accepted_idx` at the previous resend tick: no progress since means "re-send".
    pub accepted_at_last_resend: Option<u64>,
    /// The follower's durable decided index, as its last Accepted reported it.
    pub decided_idx: u64,
    /// Everything below this accepted length was sent to the follower in this round (a
    /// StopSign counts as one more slot). The next catch-up chunk starts here; a new batch
    /// goes to the follower only when this is the log's end.
    pub sent_idx: u64,
    /// The catch-up chunks sent and not yet acknowledged: (end, encoded bytes of its
    /// entries), in order; the next goes out when an Accepted frees room in the window
    /// (see [`CATCHUP_WINDOW_BYTES`]).
    pub chunks_in_flight: VecDeque<(u64, usize)>,
    /// The bytes of `chunks_in_flight`.
    pub bytes_in_flight: usize,
    /// An AcceptSync went out since the last resend tick (its answer may still come).
    pub sync_fresh: bool,
}

/// Catch-up bytes unacknowledged at a time per lagging follower, at most (see
/// [`SequencePaxos::catchup_window`]): enough to keep a link busy while the follower
/// writes, little enough that the other followers keep being served and a transfer's
/// memory stays small.
pub(crate) const CATCHUP_WINDOW_BYTES: usize = 2 << 20;

/// The most bytes of entries in one catch-up chunk (AcceptSync, the AcceptDecide messages
/// that complete it, a Promise, a PromiseSuffix), when `max_message_bytes` allows that
/// much: large enough that the per-message costs (one storage append and one Accepted
/// per chunk) do not matter, small enough to keep the memory of a transfer low.
pub(crate) const CATCHUP_CHUNK_BYTES: usize = 1 << 20;

/// The part of a Promise the leader keeps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PromiseMeta {
    pub n_accepted: Ballot,
    pub accepted_idx: u64,
    pub decided_idx: u64,
}

/// Per-round leader state.
#[derive(Debug, Default)]
pub(crate) struct LeaderState {
    pub n_leader: Ballot,
    /// Indexed like `SequencePaxos::peers`.
    pub peers: Vec<PeerState>,
    /// The best log seen among the promises so far: (round, length, suffix start, suffix, stopsign).
    pub max_promise: Option<MaxPromise>,
    pub max_decided: u64,
    /// The round and length of the log adopted at the end of the prepare phase.
    pub adopted_round: Ballot,
    pub adopted_len: u64,
    /// The decided index changed since the last Decide went out.
    pub decide_pending: bool,
}

/// The most recent log among the promises, as much of its suffix as the leader holds so
/// far (the rest is pulled from `from` with PullSuffix).
#[derive(Debug)]
pub(crate) struct MaxPromise {
    /// The promiser.
    pub from: NodeId,
    pub n_accepted: Ballot,
    pub accepted_idx: u64,
    pub suffix_idx: u64,
    pub suffix: Entries,
    pub stopsign: Option<StopSign>,
    /// The `from_idx` of the PullSuffix outstanding (`None`: none is).
    pub requested: Option<u64>,
    /// Bytes received for the outstanding PullSuffix (the next one goes out once the
    /// whole answer, `catchup_window` bytes, is in).
    pub pull_received: usize,
    /// Answer chunks that arrived ahead of a gap (reordered, or one before them lost), by
    /// start index, used once the gap is filled; at most `pull_received` bytes.
    pub ahead: std::collections::BTreeMap<u64, Entries>,
    /// `end()` at the previous resend tick, and resend ticks in a row without progress.
    pub end_at_last_resend: u64,
    pub stalled_ticks: u32,
}

impl MaxPromise {
    /// One past the last entry of the suffix the leader holds.
    pub fn end(&self) -> u64 {
        self.suffix_idx.saturating_add(self.suffix.len() as u64)
    }

    /// Whether the leader holds the whole promised log.
    pub fn complete(&self) -> bool {
        self.end() >= self.accepted_idx
    }
}

/// Proposals appended at this node that wait for the leader to take them.
#[derive(Debug, Default)]
struct Forwarding {
    session: u64,
    /// Sequence number of `queue`'s first entry.
    first_seq: u64,
    /// Entries with sequence numbers below this were sent to the current leader at least once.
    sent_upto: u64,
    /// `first_seq` at the previous resend tick.
    first_seq_at_last_resend: u64,
    queue: Entries,
}

/// Which forwarded proposals a leader has taken, per forwarder: (session, next sequence).
type ForwardDedup = HashMap<NodeId, (u64, u64)>;

/// Tunables taken from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Proposals that may wait (for a leader, or in the leader's prepare phase).
    pub buffer_size: usize,
    /// Entries per AcceptDecide batch.
    pub batch_size: usize,
    /// Entries re-sent at most in one resend message.
    pub max_resend_entries: usize,
    /// The largest message this node may send (and receives): every message it produces
    /// is cut to fit (see [`crate::wire::MESSAGE_OVERHEAD`]).
    pub max_message_bytes: usize,
}

/// The replication half of a server.
pub struct SequencePaxos {
    pid: NodeId,
    peers: Vec<NodeId>,
    majority: usize,
    limits: Limits,
    /// [`wire::max_entry_len`] of `limits.max_message_bytes`.
    max_entry_len: usize,
    storage: Box<dyn Storage>,
    role: Role,
    phase: Phase,
    /// The ballot of the leader this server follows or is (`pid == 0`: none).
    leader: Ballot,
    // Mirrors of the storage state, kept in memory for speed.
    promise: Ballot,
    accepted_round: Ballot,
    decided_idx: u64,
    log_len: u64,
    compacted_idx: u64,
    stopsign: Option<StopSign>,
    /// Leader in the prepare phase: a StopSign proposed before the accept phase, proposed
    /// once it starts (after the buffered entries), unless the adopted log has one.
    pending_stopsign: Option<StopSign>,
    /// The decided index as of the last successful commit (what users see).
    visible_decided: u64,
    /// The log length as of the last successful commit.
    durable_log_len: u64,
    /// The accepted length (log length, plus one for a StopSign) as of the last
    /// successful commit.
    durable_accepted_len: u64,
    /// The next commit also makes the decided index durable (set on resend ticks).
    decided_sync_due: bool,
    /// The durable decided index the last Accepted sent reported.
    reported_decided: u64,
    /// Messages were released before the pending commit (at most once in a row).
    released_early: bool,
    ls: LeaderState,
    /// Leader: entries appended since the last flush (not yet in storage).
    batch: Entries,
    /// Leader in the prepare phase: proposals waiting for the accept phase.
    buffer: Entries,
    forwarding: Forwarding,
    forward_dedup: ForwardDedup,
    /// Follower: an Accepted is owed to the leader.
    accepted_pending: bool,
    /// Follower: chunks of round `reorder.0` that arrived ahead of a gap (reordered, or an
    /// earlier one lost), by start index, applied once the gap is filled; at most a
    /// catch-up window of bytes (`reorder.2`).
    reorder: (Ballot, std::collections::BTreeMap<u64, Entries>, usize),
    /// Per forwarder: (session, next_seq) to acknowledge.
    acks_pending: Vec<(NodeId, u64, u64)>,
    /// Follower: the election finds the owner of our promise gone, so a lower Prepare is
    /// answered with PrepareRefused (see [`SequencePaxos::set_promise_owner_gone`]).
    promise_owner_gone: bool,
    /// Leader: the highest ballot a follower refused our Prepare for.
    refused: Option<Ballot>,
    /// Follower: a PrepareRefused went out since the last resend tick.
    refusal_sent: bool,
    outgoing: Vec<Message>,
    log_lines: Vec<String>,
}

impl SequencePaxos {
    /// A server on `storage` (its state is loaded as it is; see [`SequencePaxos::fail_recovery`]).
    pub fn new(
        pid: NodeId,
        peers: Vec<NodeId>,
        limits: Limits,
        storage: Box<dyn Storage>,
        session: u64,
    ) -> Self {
        let majority = crate::config::majority_of(peers.len() + 1);
        let mut sp = SequencePaxos {
            pid,
            majority,
            max_entry_len: wire::max_entry_len(limits.max_message_bytes),
            limits,
            storage,
            role: Role::Follower,
            phase: Phase::Recover,
            leader: Ballot::default(),
            promise: Ballot::default(),
            accepted_round: Ballot::default(),
            decided_idx: 0,
            log_len: 0,
            compacted_idx: 0,
            stopsign: None,
            pending_stopsign: None,
            visible_decided: 0,
            durable_log_len: 0,
            durable_accepted_len: 0,
            decided_sync_due: false,
            reported_decided: 0,
            released_early: false,
            ls: LeaderState::default(),
            batch: Entries::new(),
            buffer: Entries::new(),
            forwarding: Forwarding {
                session,
                ..Forwarding::default()
            },
            forward_dedup: HashMap::new(),
            accepted_pending: false,
            reorder: Default::default(),
            acks_pending: Vec::new(),
            promise_owner_gone: false,
            refused: None,
            refusal_sent: false,
            outgoing: Vec::new(),
            log_lines: Vec::new(),
            peers,
        };
        sp.load_from_storage();
        sp
    }

    fn load_from_storage(&mut self) {
        self.promise = self.storage.promise();
        self.accepted_round = self.storage.accepted_round();
        self.log_len = self.storage.log_len();
        self.compacted_idx = self.storage.compacted_idx();
        self.stopsign = self.storage.stopsign();
        self.decided_idx = self.storage.decided_idx().min(self.accepted_len());
        self.visible_decided = self.decided_idx;
        self.durable_log_len = self.log_len;
        self.durable_accepted_len = self.accepted_len();
    }

    /// Re-initialises the volatile state from storage after a crash: follower in the
    /// recover phase, no leader, nothing in flight.
    pub fn fail_recovery(&mut self) {
        self.load_from_storage();
        self.role = Role::Follower;
        self.phase = Phase::Recover;
        self.leader = Ballot::default();
        self.ls = LeaderState::default();
        self.batch.clear();
        self.pending_stopsign = None;
        self.accepted_pending = false;
        self.reorder = Default::default();
        self.acks_pending.clear();
        self.decided_sync_due = false;
        self.released_early = false;
        self.reported_decided = 0;
        self.forwarding.sent_upto = self.forwarding.first_seq;
        self.log("recovered from storage; waiting for a leader to bring this node up to date");
    }

    // ----- accessors -------------------------------------------------------------------

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The leader this server follows or is, if known.
    pub fn leader(&self) -> Option<Ballot> {
        (self.leader.pid != 0).then_some(self.leader)
    }

    /// The highest ballot promised.
    pub fn promise(&self) -> Ballot {
        self.promise
    }

    /// The decided index as of the last commit.
    pub fn visible_decided_idx(&self) -> u64 {
        self.visible_decided
    }

    /// Log length (trimmed entries included).
    pub fn log_len(&self) -> u64 {
        self.log_len
    }

    /// Entries below this index are trimmed.
    pub fn compacted_idx(&self) -> u64 {
        self.compacted_idx
    }

    /// The accepted StopSign, if any (it sits at index [`SequencePaxos::log_len`]).
    pub fn stopsign(&self) -> Option<&StopSign> {
        self.stopsign.as_ref()
    }

    /// The StopSign, if it is decided as of the last commit (what users see).
    pub fn decided_stopsign(&self) -> Option<&StopSign> {
        self.stopsign
            .as_ref()
            .filter(|_| self.visible_decided > self.log_len)
    }

    /// Whether a StopSign was proposed here or accepted (so no entry is taken any more).
    pub fn stopsign_proposed(&self) -> bool {
        self.stopsign.is_some() || self.pending_stopsign.is_some()
    }

    /// The log length counting an accepted StopSign as one more slot.
    fn accepted_len(&self) -> u64 {
        self.log_len + u64::from(self.stopsign.is_some())
    }

    /// Whether the StopSign is decided (in memory; maybe not yet durable).
    fn stopsign_decided(&self) -> bool {
        self.stopsign.is_some() && self.decided_idx > self.log_len
    }

    /// Reads entries `from..to` from storage into `out`.
    pub fn read_entries(&self, from: u64, to: u64, out: &mut Entries) -> Result<()> {
        self.storage.read_entries(from, to, out)?;
        Ok(())
    }

    /// Moves the log lines produced since the last call to `f`.
    pub fn drain_log(&mut self, mut f: impl FnMut(&str)) {
        for l in self.log_lines.drain(..) {
            f(&l);
        }
    }

    fn log(&mut self, line: impl Into<String>) {
        if self.log_lines.len() < 10_000 {
            self.log_lines.push(line.into());
        }
    }

    // ----- proposals -------------------------------------------------------------------

    /// Appends a proposal: into the leader's batch, the prepare-phase buffer, or the
    /// forwarding queue.
    pub fn append(&mut self, entry: &[u8]) -> Result<()> {
        if entry.len() > self.max_entry_len {
            return Err(Error::InvalidArgument(format!(
                "an entry of {} bytes can never be sent: max_message_bytes is {} (entries up to {} bytes fit)",
                entry.len(),
                self.limits.max_message_bytes,
                self.max_entry_len
            )));
        }
        if self.stopsign_proposed() {
            return Err(Error::Stopped);
        }
        match (self.role, self.phase) {
            (Role::Leader, Phase::Accept) => {
                // Flow control: at most `buffer_size` entries wait to be decided. This also
                // bounds what a leader cut off from its followers (one that does not know it
                // was replaced) accepts before it starts refusing.
                let undecided =
                    self.log_len.saturating_sub(self.decided_idx) as usize + self.batch.len();
                if undecided >= self.limits.buffer_size {
                    return Err(Error::BufferFull {
                        capacity: self.limits.buffer_size,
                    });
                }
                // A batch is cut by bytes as well as by count: one that would outgrow a
                // message goes out first (an estimate: 9 bytes at most per entry length).
                let cost = self
                    .batch
                    .byte_len()
                    .saturating_add(9 * self.batch.len())
                    .saturating_add(wire::entry_cost(entry.len()));
                if !self.batch.is_empty() && cost > self.entry_budget() {
                    self.flush_batch()?;
                }
                self.batch.push(entry);
                if self.batch.len() >= self.limits.batch_size {
                    self.flush_batch()?;
                }
                Ok(())
            }
            (Role::Leader, _) => {
                if self.buffer.len() >= self.limits.buffer_size {
                    return Err(Error::BufferFull {
                        capacity: self.limits.buffer_size,
                    });
                }
                self.buffer.push(entry);
                Ok(())
            }
            (Role::Follower, _) => {
                if self.forwarding.queue.len() >= self.limits.buffer_size {
                    return Err(Error::BufferFull {
                        capacity: self.limits.buffer_size,
                    });
                }
                self.forwarding.queue.push(entry);
                Ok(())
            }
        }
    }

    /// Proposes `ss` as the last entry of this configuration. At a leader in the accept
    /// phase the batch is flushed first and the StopSign follows it at once; at a leader
    /// still collecting promises it waits for the accept phase (after the entries buffered
    /// until then). A follower refuses with [`Error::NotLeader`]: a reconfiguration is
    /// proposed at the leader, like a trim. [`Error::Stopped`] once a StopSign was proposed
    /// here or accepted from a leader.
    pub fn propose_stopsign(&mut self, ss: StopSign) -> Result<()> {
        if self.stopsign_proposed() {
            return Err(Error::Stopped);
        }
        match (self.role, self.phase) {
            (Role::Leader, Phase::Accept) => {
                self.flush_batch()?;
                self.start_stopsign(ss)
            }
            (Role::Leader, _) => {
                self.log(format!(
                    "StopSign to configuration {} will be proposed once this leader is in the accept phase",
                    ss.next_config_id
                ));
                self.pending_stopsign = Some(ss);
                Ok(())
            }
            (Role::Follower, _) => Err(Error::NotLeader {
                leader: (self.leader.pid != 0).then_some(self.leader.pid),
            }),
        }
    }

    /// Sends the forwarded proposals not yet sent to the current leader.
    fn flush_forwards(&mut self) {
        let f = &self.forwarding;
        let next_seq = f.first_seq + f.queue.len() as u64;
        // With a StopSign in the log the leader takes no proposals: hold them (they go out
        // again if a new leader drops an undecided StopSign).
        if self.role != Role::Follower
            || self.leader.pid == 0
            || f.sent_upto >= next_seq
            || self.stopsign.is_some()
        {
            return;
        }
        let from = (f.sent_upto - f.first_seq) as usize;
        let max_to = f.queue.len().min(from + self.limits.max_resend_entries);
        // As many as fit in one message (the rest goes with the next flush).
        let budget = self.entry_budget();
        let mut cost = 0usize;
        let mut to = from;
        for e in f.queue.iter().skip(from).take(max_to - from) {
            cost = cost.saturating_add(wire::entry_cost(e.len()));
            if cost > budget {
                break;
            }
            to += 1;
        }
        if to == from {
            // Unreachable: `append` refuses an entry that does not fit in a message.
            return;
        }
        let entries = f.queue.slice(from, to);
        let msg = PaxosMessage::ProposalForward {
            session: f.session,
            oldest_unacked: f.first_seq,
            first_seq: f.sent_upto,
            entries,
        };
        self.forwarding.sent_upto = f.first_seq + to as u64;
        let leader = self.leader.pid;
        self.send(leader, msg);
    }

    /// Moves proposals this node holds as leader (unflushed batch, prepare buffer) into the
    /// forwarding queue, after losing the leadership, so they are not lost.
    fn requeue_own_proposals(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        let buffer = std::mem::take(&mut self.buffer);
        self.forwarding.queue.extend_from(&buffer);
        self.forwarding.queue.extend_from(&batch);
        if let Some(ss) = self.pending_stopsign.take() {
            // It cannot be forwarded (a StopSign is proposed at the leader): the caller
            // sees it never decided and proposes it again at the new leader.
            self.log(format!(
                "StopSign to configuration {} dropped before it was proposed: this node is no longer the leader",
                ss.next_config_id
            ));
        }
    }

    /// Leader: takes forwarded proposals, dropping ones already taken.
    fn handle_forward(
        &mut self,
        from: NodeId,
        session: u64,
        oldest_unacked: u64,
        first_seq: u64,
        entries: Entries,
    ) -> Result<()> {
        if self.role != Role::Leader {
            return Ok(()); // the forwarder re-sends to its new leader
        }
        let next = match self.forward_dedup.get(&from) {
            Some(&(s, next)) if s == session => next.max(oldest_unacked),
            _ => oldest_unacked,
        };
        let mut taken_upto = next;
        if first_seq <= next {
            let skip = (next - first_seq) as usize;
            for e in entries.iter().skip(skip) {
                if self.append(e).is_err() {
                    break;
                }
                taken_upto += 1;
            }
        }
        self.forward_dedup.insert(from, (session, taken_upto));
        match self.acks_pending.iter_mut().find(|a| a.0 == from) {
            Some(a) => *a = (from, session, taken_upto),
            None => self.acks_pending.push((from, session, taken_upto)),
        }
        Ok(())
    }

    /// Follower: the leader took everything below `next_seq`.
    fn handle_forward_ack(&mut self, session: u64, next_seq: u64) {
        let f = &mut self.forwarding;
        if session != f.session {
            return;
        }
        let end = f.first_seq + f.queue.len() as u64;
        if next_seq > f.first_seq {
            let n = (next_seq.min(end) - f.first_seq) as usize;
            f.queue.drain_front(n);
            f.first_seq += n as u64;
        }
        if f.sent_upto < f.first_seq {
            f.sent_upto = f.first_seq;
        } else if next_seq < f.sent_upto && next_seq >= f.first_seq {
            // The leader saw a gap: send again from what it has.
            f.sent_upto = next_seq;
        }
    }

    // ----- message dispatch --------------------------------------------------------------

    /// Handles a Sequence Paxos message from `from`.
    pub fn handle(&mut self, from: NodeId, msg: PaxosMessage) -> Result<()> {
        self.refuse_if_stale(from, &msg);
        match msg {
            PaxosMessage::PrepareReq { .. } => self.handle_prepare_req(from),
            PaxosMessage::Prepare {
                n,
                decided_idx,
                n_accepted,
                accepted_idx,
            } => self.handle_prepare(from, n, decided_idx, n_accepted, accepted_idx),
            PaxosMessage::Promise {
                n,
                n_accepted,
                decided_idx,
                accepted_idx,
                suffix_idx,
                suffix,
                stopsign,
            } => {
                let meta = PromiseMeta {
                    n_accepted,
                    accepted_idx,
                    decided_idx,
                };
                self.handle_promise(from, n, meta, suffix_idx, suffix, stopsign)
            }
            PaxosMessage::AcceptSync {
                n,
                sync_idx,
                suffix,
                decided_idx,
                stopsign,
            } => self.handle_accept_sync(from, n, sync_idx, suffix, decided_idx, stopsign),
            PaxosMessage::AcceptDecide {
                n,
                start_idx,
                entries,
                decided_idx,
            } => self.handle_accept_decide(n, start_idx, entries, decided_idx),
            PaxosMessage::AcceptStopSign { n, idx, stopsign } => {
                self.handle_accept_stopsign(n, idx, stopsign)
            }
            PaxosMessage::Accepted {
                n,
                accepted_idx,
                decided_idx,
            } => self.handle_accepted(from, n, accepted_idx, decided_idx),
            PaxosMessage::Decide { n, decided_idx } => self.handle_decide(n, decided_idx),
            PaxosMessage::ProposalForward {
                session,
                oldest_unacked,
                first_seq,
                entries,
            } => self.handle_forward(from, session, oldest_unacked, first_seq, entries),
            PaxosMessage::ForwardAck { session, next_seq } => {
                self.handle_forward_ack(session, next_seq);
                Ok(())
            }
            PaxosMessage::Trim { n, trimmed_idx } => self.handle_trim(n, trimmed_idx),
            PaxosMessage::PrepareRefused { n, promised } => {
                if self.role == Role::Leader && n == self.ls.n_leader && promised > n {
                    self.refused = self.refused.max(Some(promised));
                }
                Ok(())
            }
            PaxosMessage::PullSuffix {
                n,
                n_accepted,
                accepted_idx,
                from_idx,
                max_bytes,
            } => self.handle_pull_suffix(from, n, n_accepted, accepted_idx, from_idx, max_bytes),
            PaxosMessage::PromiseSuffix {
                n,
                n_accepted,
                accepted_idx,
                start_idx,
                entries,
            } => self.handle_promise_suffix(from, n, n_accepted, accepted_idx, start_idx, entries),
        }
    }

    /// A leader's message below our promise, while the election finds the owner of our
    /// promise gone: tell that leader (once per resend period) so that it raises its ballot
    /// above the promise and this follower can follow it again. Without this, a follower
    /// that promised a leader which vanished right after its Prepare would ignore the
    /// leader everyone else follows for good.
    fn refuse_if_stale(&mut self, from: NodeId, msg: &PaxosMessage) {
        let n = match msg {
            PaxosMessage::Prepare { n, .. }
            | PaxosMessage::AcceptSync { n, .. }
            | PaxosMessage::AcceptDecide { n, .. }
            | PaxosMessage::AcceptStopSign { n, .. }
            | PaxosMessage::Decide { n, .. }
            | PaxosMessage::Trim { n, .. } => *n,
            _ => return,
        };
        if n < self.promise
            && n.pid == from
            && self.promise_owner_gone
            && self.role == Role::Follower
            && !self.refusal_sent
        {
            self.refusal_sent = true;
            let promised = self.promise;
            self.send(from, PaxosMessage::PrepareRefused { n, promised });
        }
    }

    /// A new leader was elected by the leader election. Returns `Err(promise)` when this
    /// server was elected but has already promised a ballot at least as high: the election
    /// must raise the ballot above it.
    pub fn handle_leader(&mut self, b: Ballot) -> std::result::Result<(), Ballot> {
        if b.pid == self.pid {
            if self.role == Role::Leader && self.ls.n_leader == b {
                return Ok(());
            }
            if b <= self.promise {
                return Err(self.promise);
            }
            if let Err(e) = self.become_leader(b) {
                self.log(format!("could not become leader with {b:?}: {e}"));
            }
            return Ok(());
        }
        if b < self.promise && self.role == Role::Follower && self.phase == Phase::Accept {
            // We already follow a higher ballot than the election knows about.
            return Ok(());
        }
        if self.role == Role::Leader {
            if b <= self.ls.n_leader {
                return Ok(());
            }
            self.log(format!("stepping down: server {} leads with {b:?}", b.pid));
            self.role = Role::Follower;
            self.phase = Phase::Recover;
            self.requeue_own_proposals();
        }
        if b != self.leader {
            self.set_leader(b);
        }
        if self.promise != b || self.phase == Phase::Recover {
            // We have not promised this leader yet, or lost our volatile state: ask it for a
            // Prepare (it may have sent one we missed, e.g. while we were down).
            self.send(b.pid, PaxosMessage::PrepareReq { n: b });
        }
        Ok(())
    }

    fn set_leader(&mut self, b: Ballot) {
        if b != self.leader {
            self.leader = b;
            // Re-send every waiting proposal to the new leader.
            self.forwarding.sent_upto = self.forwarding.first_seq;
            self.log(format!("leader is now server {} (ballot {b:?})", b.pid));
        }
    }

    /// Tells the follower whether the election finds the leader it follows gone. While it
    /// does, a Prepare below our promise is answered with PrepareRefused, so that a leader
    /// the others follow can raise its ballot above a promise whose owner vanished.
    pub fn set_promise_owner_gone(&mut self, gone: bool) {
        self.promise_owner_gone = gone;
    }

    /// At a leader in the accept phase: how much of the log follower `pid` has accepted
    /// in this round (`None` if it has not been synchronised in this round, or `pid` is not
    /// a peer).
    pub fn follower_accepted_idx(&self, pid: NodeId) -> Option<u64> {
        if self.role != Role::Leader || self.phase != Phase::Accept {
            return None;
        }
        self.peer_index(pid)
            .and_then(|i| self.ls.peers.get(i))
            .and_then(|p| p.accepted_idx)
    }

    /// The highest ballot a follower refused this leader's Prepare for, since the last call.
    pub fn take_refusal(&mut self) -> Option<Ballot> {
        self.refused.take()
    }

    /// Re-sends what may have been lost: called every `resend_tick_timeout` ticks.
    pub fn resend(&mut self) -> Result<()> {
        self.refusal_sent = false;
        match self.role {
            Role::Leader => self.leader_resend()?,
            Role::Follower => {
                // A follower that has not promised its leader (or lost its state) asks for a
                // Prepare; one that has promised waits for the leader's own re-sends.
                if self.leader.pid != 0
                    && self.leader.pid != self.pid
                    && (self.promise != self.leader || self.phase == Phase::Recover)
                {
                    let l = self.leader;
                    self.send(l.pid, PaxosMessage::PrepareReq { n: l });
                }
                let f = &mut self.forwarding;
                if !f.queue.is_empty() && f.first_seq == f.first_seq_at_last_resend {
                    f.sent_upto = f.first_seq; // no ack since the last tick: send again
                }
                f.first_seq_at_last_resend = f.first_seq;
            }
        }
        Ok(())
    }

    /// The link to `pid` came back: re-synchronise with it.
    pub fn reconnected(&mut self, pid: NodeId) -> Result<()> {
        if self.role == Role::Leader {
            self.send_prepare_to(pid);
        } else if pid == self.leader.pid {
            let l = self.leader;
            self.send(pid, PaxosMessage::PrepareReq { n: l });
            self.forwarding.sent_upto = self.forwarding.first_seq;
        }
        Ok(())
    }

    // ----- flushing and commit -------------------------------------------------------------

    /// Turns pending work into messages (the leader's batch, owed Accepted, forwards, acks).
    /// Called before [`SequencePaxos::commit`].
    pub fn flush(&mut self) -> Result<()> {
        if self.role == Role::Leader {
            self.flush_batch()?;
        }
        if self.accepted_pending && self.role == Role::Follower && self.phase == Phase::Accept {
            self.accepted_pending = false;
            let n = self.promise;
            // Only the durable decided index: the leader trims below the lowest one.
            let decided_idx = self.storage.durable_decided_idx().min(self.decided_idx);
            self.reported_decided = decided_idx;
            let msg = PaxosMessage::Accepted {
                n,
                accepted_idx: self.accepted_len(),
                // Released only after the commit that makes it durable.
                decided_idx,
            };
            self.send(n.pid, msg);
        }
        self.flush_forwards();
        for (to, session, next_seq) in std::mem::take(&mut self.acks_pending) {
            self.send(to, PaxosMessage::ForwardAck { session, next_seq });
        }
        Ok(())
    }

    /// Makes all writes durable (the decided index lazily, see the module documentation).
    /// After it succeeds, the leader counts its own log as accepted, and decided entries
    /// that are in the durable log become visible.
    pub fn commit(&mut self) -> std::result::Result<(), StorageError> {
        if self.decided_sync_due {
            self.storage.sync_decided()?;
            self.decided_sync_due = false;
        } else {
            self.storage.commit()?;
        }
        self.released_early = false;
        self.durable_log_len = self.log_len;
        self.durable_accepted_len = self.accepted_len();
        if self.role == Role::Leader && self.phase == Phase::Accept {
            self.try_decide();
            self.send_decide_if_pending();
        }
        self.visible_decided = self
            .visible_decided
            .max(self.decided_idx.min(self.durable_accepted_len));
        if self.role == Role::Follower
            && self.phase == Phase::Accept
            && self.storage.durable_decided_idx().min(self.decided_idx) > self.reported_decided
        {
            // Tell the leader how far it may trim.
            self.accepted_pending = true;
        }
        Ok(())
    }

    /// Before the node stops: commits pending writes and makes the decided index durable
    /// (see `Storage::close`).
    pub fn close(&mut self) -> std::result::Result<(), StorageError> {
        self.storage.close()
    }

    /// Asks the next commit to make the decided index durable if it lags (called on
    /// resend ticks, so a lazy decided index is synced within one resend period).
    pub fn sync_decided_soon(&mut self) {
        if self.storage.durable_decided_idx() < self.decided_idx {
            self.decided_sync_due = true;
        }
    }

    /// At a leader whose commit waits for the disk and whose log has entries not yet
    /// durable: moves the outgoing messages into `out` *without* committing, when they are
    /// all AcceptDecide or Decide (which promise nothing about this node's disk), so that
    /// the followers write while this node does. Returns whether it did; the next commit
    /// then follows. At most once between two commits, so the leader's own log is synced
    /// at least every other call.
    pub fn take_before_commit(&mut self, out: &mut Vec<Message>) -> bool {
        let eligible = self.role == Role::Leader
            && self.phase == Phase::Accept
            && !self.released_early
            && self.log_len > self.durable_log_len
            && !self.outgoing.is_empty()
            && self.storage.commit_waits_for_disk()
            && self.outgoing.iter().all(|m| {
                matches!(
                    m.body,
                    Body::Paxos(PaxosMessage::AcceptDecide { .. } | PaxosMessage::Decide { .. })
                )
            });
        if eligible {
            self.released_early = true;
            out.append(&mut self.outgoing);
        }
        eligible
    }

    /// Moves the outgoing messages into `out`.
    pub fn take_outgoing(&mut self, out: &mut Vec<Message>) {
        out.append(&mut self.outgoing);
    }

    fn send(&mut self, to: NodeId, msg: PaxosMessage) {
        self.outgoing.push(Message {
            from: self.pid,
            to,
            body: Body::Paxos(msg),
        });
    }

    fn set_decided(&mut self, idx: u64) -> Result<()> {
        if idx > self.decided_idx {
            self.decided_idx = idx;
            self.storage.set_decided_idx(idx)?;
            self.on_stopsign_decided();
        }
        Ok(())
    }

    /// Once the StopSign is decided, proposals still waiting to be forwarded can never be
    /// decided in this configuration: drop them (their `append` succeeded before the
    /// StopSign was known here; every later `append` fails with `Stopped`).
    fn on_stopsign_decided(&mut self) {
        if self.stopsign_decided() && !self.forwarding.queue.is_empty() {
            let n = self.forwarding.queue.len();
            let f = &mut self.forwarding;
            f.first_seq += n as u64;
            f.sent_upto = f.first_seq;
            f.queue.clear();
            self.log(format!(
                "{n} proposals waiting to be forwarded dropped: the configuration is stopped by a decided StopSign"
            ));
        }
    }

    // ----- compaction ----------------------------------------------------------------------

    /// Trims the log up to `idx` everywhere (leader only; every server must have accepted
    /// it in this round and it must be decided).
    pub fn trim(&mut self, idx: Option<u64>) -> Result<()> {
        if self.role != Role::Leader {
            // As for a reconfiguration: the caller is told where to call it.
            return Err(Error::NotLeader {
                leader: (self.leader.pid != 0).then_some(self.leader.pid),
            });
        }
        if self.phase != Phase::Accept {
            return Err(Error::InvalidArgument(
                "this leader is still being elected (collecting promises); trim once it \
                 accepts entries"
                    .to_string(),
            ));
        }
        // A StopSign is not an entry of the log: it is never trimmed.
        let mut min_all = self
            .storage
            .durable_decided_idx()
            .min(self.decided_idx)
            .min(self.log_len);
        for (i, p) in self.ls.peers.iter().enumerate() {
            match p.accepted_idx {
                Some(_) => min_all = min_all.min(p.decided_idx),
                None => {
                    return Err(Error::InvalidArgument(format!(
                        "trim needs every server in the accept phase; server {} is not",
                        self.peers[i]
                    )))
                }
            }
        }
        let target = match idx {
            None => min_all,
            Some(i) if i <= min_all => i,
            Some(i) => {
                return Err(Error::InvalidArgument(format!(
                    "cannot trim to {i}: only entries below {min_all} are decided at every server"
                )))
            }
        };
        if target <= self.compacted_idx {
            return Ok(());
        }
        self.storage.trim(target)?;
        self.compacted_idx = target;
        let n = self.ls.n_leader;
        for i in 0..self.peers.len() {
            let p = self.peers[i];
            self.send(
                p,
                PaxosMessage::Trim {
                    n,
                    trimmed_idx: target,
                },
            );
        }
        Ok(())
    }

    fn handle_trim(&mut self, n: Ballot, idx: u64) -> Result<()> {
        if n != self.promise || self.role != Role::Follower {
            return Ok(());
        }
        let target = idx.min(self.decided_idx).min(self.log_len);
        if target > self.compacted_idx {
            self.storage.trim(target)?;
            self.compacted_idx = target;
        }
        Ok(())
    }

    /// The bytes of entries (see [`wire::entry_cost`]) one message may carry.
    fn entry_budget(&self) -> usize {
        self.limits
            .max_message_bytes
            .saturating_sub(wire::MESSAGE_OVERHEAD)
    }

    /// The bytes of entries one catch-up chunk carries (see [`CATCHUP_CHUNK_BYTES`]).
    fn chunk_budget(&self) -> usize {
        self.entry_budget().min(CATCHUP_CHUNK_BYTES)
    }

    /// The bytes of catch-up chunks in flight to one follower (or asked for at once from a
    /// promiser): 64 chunks, at most [`CATCHUP_WINDOW_BYTES`], at least two chunks.
    fn catchup_window(&self) -> usize {
        let c = self.chunk_budget();
        (64 * c).min(CATCHUP_WINDOW_BYTES).max(2 * c)
    }

    /// Reads entries from `from` (up to `to`), as many as fit in `budget` bytes counted with
    /// [`wire::entry_cost`]; fewer than one when the first does not fit.
    fn read_chunk(&self, from: u64, to: u64, budget: usize) -> Result<Entries> {
        let mut out = Entries::new();
        let mut cost = 0usize;
        let mut at = from;
        // Read a few entries first, then as many as the average size so far says still fit
        // (so a read never goes much past the budget).
        let mut step: u64 = 16;
        while at < to {
            let end = to.min(at.saturating_add(step));
            let before = out.len();
            self.storage.read_entries(at, end, &mut out)?;
            for k in before..out.len() {
                let c = wire::entry_cost(out.get(k).map_or(0, <[u8]>::len));
                if cost.saturating_add(c) > budget {
                    out.truncate(k);
                    return Ok(out);
                }
                cost += c;
            }
            at = end;
            let avg = (cost / out.len().max(1)).max(1);
            step = ((budget - cost) / avg + 1).clamp(1, 1 << 16) as u64;
        }
        Ok(out)
    }

    fn peer_index(&self, pid: NodeId) -> Option<usize> {
        self.peers.iter().position(|&p| p == pid)
    }
}
