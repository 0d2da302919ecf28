//! Ballot Leader Election (the Omni-Paxos paper, section 4).
//!
//! Every `election_tick_timeout` ticks a server ends a heartbeat round: it counts the replies
//! it got (itself included) to learn whether it is *quorum-connected*, and looks at the
//! ballots of the quorum-connected repliers. It follows the highest of them. When the
//! leader it follows is missing from the replies, or reports that it is no longer
//! quorum-connected, a server that is itself quorum-connected takes over: it raises its
//! ballot above the old leader's and elects itself at once (the next round tells everyone
//! else). A reply carries only the replier's *own* ballot and flag; the leader's identity is
//! never gossiped, which is what keeps a server that is connected to only part of the
//! cluster from re-electing a leader that a majority cannot reach.
//!
//! Within a round, the request is re-sent to every peer every `resend_tick_timeout` ticks and
//! the latest reply counts: a single lost message does not look like a failed leader, and a
//! leader that loses its quorum mid-round is noticed at the end of that same round, not one
//! round later.

use crate::messages::{Ballot, BleMessage, Body, Message, NodeId};

/// One heartbeat reply of the current round.
#[derive(Clone, Copy, Debug)]
struct Reply {
    from: NodeId,
    ballot: Ballot,
    quorum_connected: bool,
}

/// The leader-election half of a server.
#[derive(Debug)]
pub struct BallotLeaderElection {
    pid: NodeId,
    peers: Vec<NodeId>,
    majority: usize,
    current_ballot: Ballot,
    leader: Option<Ballot>,
    quorum_connected: bool,
    round: u32,
    replies: Vec<Reply>,
    /// Ticks seen so far.
    now: u64,
    /// The tick of the last reply from each peer (indexed like `peers`).
    last_reply: Vec<u64>,
    /// A peer counts as connected while its last reply is at most this many ticks old.
    window: u64,
    /// Whether any message came from each peer during the current round.
    heard_this_round: Vec<bool>,
    outgoing: Vec<Message>,
}

impl BallotLeaderElection {
    /// A server `pid` among `peers` with the given leader priority. A peer counts as
    /// connected while its last heartbeat reply is at most `window` ticks old. The server
    /// starts believing it is quorum-connected, so that a healthy cluster agrees on a leader
    /// after one round.
    pub fn new(pid: NodeId, peers: Vec<NodeId>, priority: u32, window: u64) -> Self {
        let majority = crate::config::majority_of(peers.len() + 1);
        BallotLeaderElection {
            pid,
            majority,
            current_ballot: Ballot::new(0, priority, pid),
            leader: None,
            quorum_connected: true,
            round: 0,
            replies: Vec::with_capacity(peers.len()),
            now: 0,
            last_reply: vec![0; peers.len()],
            window,
            heard_this_round: vec![false; peers.len()],
            outgoing: Vec::new(),
            peers,
        }
    }

    /// This server's own ballot.
    pub fn current_ballot(&self) -> Ballot {
        self.current_ballot
    }

    /// The ballot of the leader this server follows, if any.
    pub fn leader(&self) -> Option<Ballot> {
        self.leader
    }

    /// Whether a majority (this server included) answered in the last completed round.
    pub fn is_quorum_connected(&self) -> bool {
        self.quorum_connected
    }

    /// Advances time by one tick.
    pub fn tick(&mut self) {
        self.now += 1;
    }

    /// Notes that a message (of any kind) arrived from `pid`.
    pub fn heard_from(&mut self, pid: NodeId) {
        if let Some(i) = self.peers.iter().position(|&p| p == pid) {
            self.heard_this_round[i] = true;
        }
    }

    /// Whether a majority (this server included) replied within the last `window` ticks.
    /// Replies carry this live value, so a leader that loses its quorum is noticed within
    /// about one window, whatever the phase of the heartbeat rounds.
    fn quorum_connected_now(&self) -> bool {
        let fresh = self
            .last_reply
            .iter()
            .filter(|&&t| self.now.saturating_sub(t) <= self.window)
            .count();
        fresh + 1 >= self.majority
    }

    /// Whether a heartbeat round has been started.
    pub fn started(&self) -> bool {
        self.round > 0
    }

    /// Forgets the leader (after a crash): the next round elects afresh.
    pub fn reset_leader(&mut self) {
        self.leader = None;
    }

    /// Follows `b` (a ballot the replication layer has promised) until the next round shows
    /// whether its owner is alive and quorum-connected.
    pub fn follow(&mut self, b: Ballot) {
        if self.leader.map_or(true, |l| b > l) {
            self.leader = Some(b);
        }
    }

    /// Raises this server's ballot above `floor` and elects itself. Used when the
    /// replication layer cannot lead with the current ballot because it has already promised
    /// `floor` to someone else. Returns the new ballot.
    pub fn take_over_above(&mut self, floor: Ballot) -> Ballot {
        self.current_ballot.n = self.current_ballot.n.max(floor.n.saturating_add(1));
        self.leader = Some(self.current_ballot);
        self.current_ballot
    }

    /// Ends the current heartbeat round and starts the next one. Returns the leader this
    /// server follows after the round (`None` before the first round has completed, or when
    /// no leader is known); the caller acts on it every round, which also repairs any
    /// disagreement between the election and the replication layer.
    ///
    /// `promised` is the highest ballot the replication layer has promised. A server that
    /// promised a ballot higher than the leader it follows treats that ballot as its leader:
    /// if its owner does not show up with it among the quorum-connected servers (it crashed
    /// and came back with a lower ballot, say), a quorum-connected server takes over above
    /// it. Without this, servers that promised a vanished higher ballot would ignore the
    /// leader everyone elects, and nothing would be decided.
    pub fn hb_timeout(&mut self, promised: Ballot) -> Option<Ballot> {
        let completed = self.round > 0;
        if completed {
            if promised.pid != 0 {
                self.follow(promised);
            }
            self.check_leader();
        }
        self.start_round();
        if completed {
            self.leader
        } else {
            None
        }
    }

    /// Re-sends this round's request to every peer (a later reply replaces an earlier one).
    pub fn resend(&mut self) {
        if self.round == 0 {
            return;
        }
        for i in 0..self.peers.len() {
            let p = self.peers[i];
            self.send(p, BleMessage::HeartbeatRequest { round: self.round });
        }
    }

    /// Handles a leader-election message from `from`.
    pub fn handle(&mut self, from: NodeId, msg: BleMessage) {
        match msg {
            BleMessage::HeartbeatRequest { round } => {
                let reply = BleMessage::HeartbeatReply {
                    round,
                    ballot: self.current_ballot,
                    quorum_connected: self.quorum_connected && self.quorum_connected_now(),
                };
                self.send(from, reply);
            }
            BleMessage::HeartbeatReply {
                round,
                ballot,
                quorum_connected,
            } => {
                if let Some(i) = self.peers.iter().position(|&p| p == from) {
                    self.last_reply[i] = self.now;
                }
                if round != self.round {
                    return;
                }
                let reply = Reply {
                    from,
                    ballot,
                    quorum_connected,
                };
                match self.replies.iter_mut().find(|r| r.from == from) {
                    Some(r) => *r = reply,
                    None => self.replies.push(reply),
                }
            }
        }
    }

    /// Moves the outgoing messages into `out`.
    pub fn take_outgoing(&mut self, out: &mut Vec<Message>) {
        out.append(&mut self.outgoing);
    }

    fn start_round(&mut self) {
        self.round = self.round.wrapping_add(1).max(1);
        self.replies.clear();
        self.heard_this_round.iter_mut().for_each(|h| *h = false);
        for i in 0..self.peers.len() {
            let p = self.peers[i];
            self.send(p, BleMessage::HeartbeatRequest { round: self.round });
        }
    }

    fn check_leader(&mut self) {
        self.quorum_connected =
            self.replies.len() + 1 >= self.majority && self.quorum_connected_now();
        let mut top: Option<Ballot> = None;
        let mut leader_alive = false;
        let own = if self.quorum_connected {
            Some(self.current_ballot)
        } else {
            None
        };
        let candidates = self
            .replies
            .iter()
            .filter(|r| r.quorum_connected)
            .map(|r| r.ballot)
            .chain(own);
        for b in candidates {
            if Some(b) == self.leader {
                leader_alive = true;
            }
            if top.map_or(true, |t| b > t) {
                top = Some(b);
            }
        }
        if let Some(l) = self.leader {
            // A leader that sent no reply this round but was heard from otherwise (a
            // Prepare or AcceptDecide, say) is not presumed gone: its heartbeats may just be
            // late, e.g. right after a link came back.
            let replied = self.replies.iter().any(|r| r.from == l.pid);
            if !replied && l.pid != self.pid {
                if let Some(i) = self.peers.iter().position(|&p| p == l.pid) {
                    leader_alive |= self.heard_this_round[i];
                }
            }
        }
        match (self.leader, top) {
            (None, Some(t)) => self.leader = Some(t),
            (Some(l), Some(t)) if t > l => self.leader = Some(t),
            (Some(l), _) if !leader_alive && self.quorum_connected => {
                // The leader is gone or lost its quorum: take over with a higher ballot.
                self.take_over_above(l);
            }
            _ => {}
        }
    }

    fn send(&mut self, to: NodeId, msg: BleMessage) {
        self.outgoing.push(Message {
            from: self.pid,
            to,
            body: Body::Ble(msg),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(nodes: &mut [BallotLeaderElection], cut: &[(NodeId, NodeId)]) {
        loop {
            let mut msgs = Vec::new();
            for n in nodes.iter_mut() {
                n.take_outgoing(&mut msgs);
            }
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                if cut.contains(&(m.from, m.to)) || cut.contains(&(m.to, m.from)) {
                    continue;
                }
                if let Body::Ble(b) = m.body {
                    nodes[(m.to - 1) as usize].handle(m.from, b);
                }
            }
        }
    }

    fn cluster(n: u64) -> Vec<BallotLeaderElection> {
        (1..=n)
            .map(|p| BallotLeaderElection::new(p, (1..=n).filter(|&q| q != p).collect(), 0, 1))
            .collect()
    }

    fn round(nodes: &mut [BallotLeaderElection], cut: &[(NodeId, NodeId)]) {
        for n in nodes.iter_mut() {
            n.hb_timeout(Ballot::default());
        }
        deliver(nodes, cut);
    }

    #[test]
    fn all_agree_after_one_round() {
        let mut nodes = cluster(3);
        round(&mut nodes, &[]);
        round(&mut nodes, &[]);
        for n in &nodes {
            assert_eq!(n.leader().map(|b| b.pid), Some(3));
        }
    }

    #[test]
    fn quorum_loss_elects_the_only_quorum_connected_server() {
        // 5 servers; leader 3 (C) and 2, 4, 5 are connected only to 1 (A).
        let mut nodes = cluster(5);
        for _ in 0..3 {
            round(&mut nodes, &[]);
        }
        assert_eq!(nodes[0].leader().unwrap().pid, 5);
        let mut cut = Vec::new();
        for a in 2..=5u64 {
            for b in 2..=5u64 {
                if a < b {
                    cut.push((a, b));
                }
            }
        }
        for _ in 0..4 {
            round(&mut nodes, &cut);
        }
        for n in &nodes {
            assert_eq!(n.leader().unwrap().pid, 1, "node {}", n.pid);
        }
        let before: Vec<_> = nodes.iter().map(|n| n.leader()).collect();
        for _ in 0..10 {
            round(&mut nodes, &cut);
        }
        let after: Vec<_> = nodes.iter().map(|n| n.leader()).collect();
        assert_eq!(before, after, "the leader must stay put");
    }
}
