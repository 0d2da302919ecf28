//! The protocol messages of Ballot Leader Election and Sequence Paxos.
//!
//! These are plain data; [`crate::wire`] is the only place that turns them into bytes.

use serde::{Deserialize, Serialize};

use crate::entries::Entries;

/// A server id. `0` is never a valid pid.
pub type NodeId = u64;

/// A ballot `(n, priority, pid)`, ordered lexicographically in that order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    /// The round number.
    pub n: u32,
    /// The leader priority of the server that owns the ballot (higher wins ties on `n`).
    pub priority: u32,
    /// The server that owns the ballot.
    pub pid: NodeId,
}

impl Ballot {
    /// A ballot.
    pub fn new(n: u32, priority: u32, pid: NodeId) -> Self {
        Ballot { n, priority, pid }
    }
}

/// The last entry of a configuration: once decided, the configuration accepts no more
/// entries and the servers move to `next_config_id` with `nodes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopSign {
    /// The id of the next configuration.
    pub next_config_id: u32,
    /// The servers of the next configuration.
    pub nodes: Vec<NodeId>,
    /// Opaque user metadata.
    pub metadata: Vec<u8>,
}

/// A message between two servers of one configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// What it says.
    pub body: Body,
}

/// The payload of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Ballot Leader Election.
    Ble(BleMessage),
    /// Sequence Paxos.
    Paxos(PaxosMessage),
}

/// Whether a server is quorum-connected, as its heartbeats report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuorumState {
    /// The server has run for less than one election timeout and has not heard from a
    /// majority yet: it cannot tell.
    #[default]
    Unknown,
    /// A majority (the server included) answered its heartbeats within the last election
    /// timeout.
    Connected,
    /// It has run for an election timeout and a majority did not answer.
    Disconnected,
}

/// What every heartbeat says about its sender. It never names the sender's leader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BleStatus {
    /// The sender's own ballot.
    pub ballot: Ballot,
    /// Whether the sender is quorum-connected.
    pub quorum: QuorumState,
    /// The sender sees a live leader (or leads with a quorum).
    pub content: bool,
    /// The sender considers itself the leader.
    pub leads: bool,
    /// The priority the sender's next ballot will carry (it ranks servers that would take
    /// over at the same time; it may differ from `ballot.priority` after a change at run
    /// time).
    pub priority: u32,
    /// Identifies the sender's current run (it differs after a restart).
    pub incarnation: u64,
    /// The sender's clock in ticks: orders the statuses of one incarnation.
    pub clock: u64,
}

/// Ballot Leader Election messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BleMessage {
    /// "Are you there?", stamped with the sender's clock, and the sender's status.
    HeartbeatRequest {
        /// The sender's clock when it sent the request; echoed by the reply.
        round: u64,
        /// The sender's status.
        status: BleStatus,
    },
    /// The answer: the echoed stamp and the replier's status.
    HeartbeatReply {
        /// The stamp of the request being answered.
        round: u64,
        /// The replier's status.
        status: BleStatus,
    },
    /// Leadership transfer: the leader of `floor` asks the receiver to take over with a
    /// ballot above `floor`. Taken only from the leader the receiver follows, with that
    /// leader's current ballot, by a quorum-connected receiver.
    TakeOver {
        /// The sender's (the current leader's) ballot.
        floor: Ballot,
    },
}

/// Sequence Paxos messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaxosMessage {
    /// A follower asks the leader of `n` for a Prepare (after recovery or a leader change).
    PrepareReq {
        /// The ballot the follower believes leads.
        n: Ballot,
    },
    /// Phase 1a: the leader's ballot and what it already has.
    Prepare {
        /// The leader's ballot.
        n: Ballot,
        /// The leader's decided index.
        decided_idx: u64,
        /// The round in which the leader last accepted.
        n_accepted: Ballot,
        /// The leader's log length.
        accepted_idx: u64,
    },
    /// Phase 1b: the follower's promise, with the part of its log the leader lacks (the
    /// first part, as much as fits in one message, when `suffix_idx + suffix.len() <
    /// accepted_idx`: the leader pulls the rest with [`PaxosMessage::PullSuffix`]).
    Promise {
        /// The ballot promised.
        n: Ballot,
        /// The round in which the follower last accepted.
        n_accepted: Ballot,
        /// The follower's decided index.
        decided_idx: u64,
        /// The follower's log length.
        accepted_idx: u64,
        /// Index of the first entry of `suffix`.
        suffix_idx: u64,
        /// Entries the leader lacks (from `suffix_idx`).
        suffix: Entries,
        /// The follower's StopSign, if it has accepted one.
        stopsign: Option<StopSign>,
    },
    /// Phase 2a after a Prepare: replace the follower's log from `sync_idx` with `suffix`
    /// (the first part of the leader's log from `sync_idx`, as much as fits in one message;
    /// the rest follows in AcceptDecide messages, and the StopSign comes only with the
    /// part that ends the log).
    AcceptSync {
        /// The leader's ballot.
        n: Ballot,
        /// Where the follower's log is cut and `suffix` starts.
        sync_idx: u64,
        /// The entries from `sync_idx`.
        suffix: Entries,
        /// The leader's decided index.
        decided_idx: u64,
        /// The StopSign at the end of the leader's log, if any and if `suffix` reaches the
        /// end of the log (otherwise it follows in an AcceptStopSign).
        stopsign: Option<StopSign>,
    },
    /// Phase 2a in the accept phase: new entries, and the decided index.
    AcceptDecide {
        /// The leader's ballot.
        n: Ballot,
        /// Index of the first entry of `entries`.
        start_idx: u64,
        /// New entries.
        entries: Entries,
        /// The leader's decided index.
        decided_idx: u64,
    },
    /// Phase 2a for a StopSign at index `idx` (after all entries).
    AcceptStopSign {
        /// The leader's ballot.
        n: Ballot,
        /// The log index the StopSign occupies.
        idx: u64,
        /// The StopSign.
        stopsign: StopSign,
    },
    /// Phase 2b: the follower has durably accepted everything below `accepted_idx` in round `n`.
    Accepted {
        /// The ballot accepted.
        n: Ballot,
        /// The follower's log length (a StopSign counts as one entry).
        accepted_idx: u64,
        /// The follower's (durable) decided index: the leader trims only below every
        /// server's decided index, so that any of them can still be brought up to date.
        decided_idx: u64,
    },
    /// Everything below `decided_idx` is decided.
    Decide {
        /// The leader's ballot.
        n: Ballot,
        /// The decided index.
        decided_idx: u64,
    },
    /// Proposals appended at a follower, forwarded to the leader. `session` and the sequence
    /// numbers let the leader drop duplicates when the follower re-sends, and notice a gap.
    ProposalForward {
        /// Identifies one incarnation of the forwarding node.
        session: u64,
        /// The lowest sequence number the forwarder has not seen acknowledged: a leader that
        /// knows nothing of this session starts taking proposals from here.
        oldest_unacked: u64,
        /// Sequence number of the first entry.
        first_seq: u64,
        /// The proposals.
        entries: Entries,
    },
    /// The leader has taken every forwarded proposal with a sequence number below `next_seq`.
    ForwardAck {
        /// Echo of the forwarder's session.
        session: u64,
        /// One past the last sequence number taken.
        next_seq: u64,
    },
    /// Trim (compact) the log up to `trimmed_idx`.
    Trim {
        /// The leader's ballot.
        n: Ballot,
        /// Entries below this index are removed.
        trimmed_idx: u64,
    },
    /// A follower refuses the messages of leader `n`: it has promised the higher ballot
    /// `promised`, and the election tells it that the owner of `promised` is gone. The
    /// leader of `n` raises its ballot above `promised` (nobody is followed because of this
    /// message).
    PrepareRefused {
        /// The refused ballot.
        n: Ballot,
        /// The higher ballot the follower promised.
        promised: Ballot,
    },
    /// A leader collecting promises asks the promiser with the most recent log for more of
    /// the suffix its Promise announced (`accepted_idx`) but could not carry in one message.
    /// The promiser answers only while its log is still the one it promised with.
    PullSuffix {
        /// The leader's ballot (the one promised).
        n: Ballot,
        /// The promiser's `n_accepted`, as its Promise said.
        n_accepted: Ballot,
        /// The promiser's log length, as its Promise said.
        accepted_idx: u64,
        /// The first entry wanted.
        from_idx: u64,
        /// How many bytes of entries the leader wants in answer (in several
        /// PromiseSuffix messages, each of which fits in a message).
        max_bytes: u64,
    },
    /// The answer to [`PaxosMessage::PullSuffix`]: entries of the promised log from
    /// `start_idx` (as many as fit in one message).
    PromiseSuffix {
        /// The leader's ballot (the one promised).
        n: Ballot,
        /// The promiser's `n_accepted` (unchanged since its Promise).
        n_accepted: Ballot,
        /// The promiser's log length (unchanged since its Promise).
        accepted_idx: u64,
        /// Index of the first entry of `entries`.
        start_idx: u64,
        /// The entries.
        entries: Entries,
    },
}
