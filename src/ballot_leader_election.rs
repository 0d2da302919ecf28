//! Ballot Leader Election (the Omni-Paxos paper, section 4), with the rules that keep it
//! from churning or stalling under one-way links, pauses and restarts.
//!
//! # What a heartbeat carries
//!
//! Every `probe_period` ticks (a quarter of the election timeout, at least one tick) a
//! server sends a `HeartbeatRequest` to every peer, stamped with its own clock; the peer
//! answers with a `HeartbeatReply` that echoes the stamp. Both carry the sender's
//! [`BleStatus`]: its *own* ballot `(n, priority, pid)`, whether it is quorum-connected
//! (`Unknown` until it has been up for one election timeout), whether it is *content*
//! (it sees a live leader, or it leads and is quorum-connected) and whether it *leads*.
//! A status never names the sender's leader: the leader's identity is never gossiped, so a
//! server connected to part of the cluster cannot keep a leader that a majority has lost.
//! Statuses are ordered by the sender's incarnation and clock, so a late or reordered
//! message never overrides a newer one.
//!
//! # Connectivity
//!
//! A peer is *connected* while it has answered a request that this server sent within the
//! last `election_tick_timeout` ticks (the echoed stamp proves a round trip that started
//! then). A server is *quorum-connected* while a majority, itself included, is connected.
//! A fresh or restarted server is not, until a majority has answered it.
//!
//! # The rules, checked on every tick
//!
//! 1. *Follow the highest quorum-connected ballot.* Among the connected peers whose status
//!    says quorum-connected (and this server, if it is), the highest ballot is the
//!    candidate; a server follows it as soon as it is higher than the leader it follows.
//!    A ballot this server's replication layer has promised is followed as well (its owner
//!    may be unknown to the election yet).
//! 2. *When a leader is gone.* The leader a server follows is alive while it is connected
//!    and its latest status shows a ballot at least the followed one, quorum-connected and
//!    leading. A leader learned less than one election timeout ago is given that long to
//!    show it (its earlier replies may predate its takeover). A leader that is this
//!    server is alive while the server is quorum-connected.
//! 3. *Who takes over.* A server whose leader is gone takes over with a ballot above every
//!    ballot it knows only when it is quorum-connected, no connected peer is content (a
//!    content peer sees a working leader this server merely cannot reach: taking over
//!    would depose it for nothing), and no connected, quorum-connected peer of higher
//!    rank `(priority, pid)` is also without a leader (that one goes first; after one
//!    election timeout without a new leader, this server goes anyway). A server that
//!    becomes discontent or takes over tells its peers at once (an extra request).
//!
//! # Why the faults the tests build cannot fool it
//!
//! - *A stale reply* (sent by a new leader before it took over) shows an old ballot; the
//!   grace period of rule 2 covers it, and the status order drops it once a newer status
//!   has arrived.
//! - *A deaf leader* (it sends but hears nothing) answers no request: it is not
//!   connected, so its followers find it gone within one election timeout, whatever else
//!   they hear from it.
//! - *A mute leader* sends nothing that arrives: the same.
//! - *A paused server* does not tick, so its own view does not age while it is stopped;
//!   what it missed arrives as newer statuses, and a stale ballot it still advertises is
//!   lower than the one the others moved to.
//! - *A returning or restarted server* starts with its round number at zero (or at the
//!   ballot it led with before, from its promise), is not quorum-connected until a
//!   majority answers it, and so can neither be followed nor take over before it has
//!   learned the current leader's higher ballot.
//! - *A one-way or single broken link* to a working leader leaves other servers content:
//!   the server that lost the leader waits instead of deposing it.

use crate::messages::{Ballot, BleMessage, BleStatus, Body, Message, NodeId, QuorumState};

/// What this server knows of one peer.
#[derive(Clone, Copy, Debug, Default)]
struct PeerView {
    /// The send time (this server's clock) of the latest request the peer answered.
    answered: Option<u64>,
    /// The peer's latest status, if any arrived.
    status: Option<BleStatus>,
}

/// The leader-election half of a server.
#[derive(Debug)]
pub struct BallotLeaderElection {
    pid: NodeId,
    peers: Vec<NodeId>,
    majority: usize,
    /// Identifies this incarnation of the server in its statuses.
    incarnation: u64,
    ballot: Ballot,
    /// The priority of the next ballot this server takes (see `set_priority`).
    priority: u32,
    leader: Option<Ballot>,
    /// When `leader` was set.
    leader_since: u64,
    /// The leader has shown, since it was set, that it is alive.
    verified: bool,
    /// When this server found its leader gone (or had none while quorum-connected).
    gone_since: Option<u64>,
    content: bool,
    /// Ticks seen so far.
    now: u64,
    /// The election timeout: the connectivity window and the grace period.
    window: u64,
    probe_period: u64,
    next_probe: u64,
    views: Vec<PeerView>,
    outgoing: Vec<Message>,
}

/// A change of the leader this server follows, reported by [`BallotLeaderElection::tick`].
pub type LeaderChange = Option<Ballot>;

impl BallotLeaderElection {
    /// A server `pid` among `peers` with the given leader priority. `election_timeout` (in
    /// ticks) is the connectivity window; `incarnation` identifies this run of the server
    /// (any value that differs between restarts).
    pub fn new(
        pid: NodeId,
        peers: Vec<NodeId>,
        priority: u32,
        election_timeout: u64,
        incarnation: u64,
    ) -> Self {
        let majority = crate::config::majority_of(peers.len() + 1);
        let window = election_timeout.max(1);
        BallotLeaderElection {
            pid,
            majority,
            incarnation,
            ballot: Ballot::new(0, priority, pid),
            priority,
            leader: None,
            leader_since: 0,
            verified: false,
            gone_since: None,
            content: false,
            now: 0,
            window,
            probe_period: window.div_ceil(4),
            next_probe: 1,
            views: vec![PeerView::default(); peers.len()],
            outgoing: Vec::new(),
            peers,
        }
    }

    /// This server's own ballot.
    pub fn current_ballot(&self) -> Ballot {
        self.ballot
    }

    /// The ballot of the leader this server follows, if any.
    pub fn leader(&self) -> Option<Ballot> {
        self.leader
    }

    /// Whether a majority, this server included, answered a heartbeat request sent within
    /// the last election timeout. False on a fresh or restarted server until they have.
    pub fn is_quorum_connected(&self) -> bool {
        self.connected_count() + 1 >= self.majority
    }

    /// Forgets the leader (after a crash): it is learned again from the heartbeats.
    pub fn reset_leader(&mut self) {
        self.leader = None;
        self.verified = false;
        self.gone_since = None;
        self.content = false;
    }

    /// Raises this server's ballot above `floor` and elects itself. Used when the
    /// replication layer cannot lead with the current ballot because it has already
    /// promised `floor`. Returns the new ballot.
    pub fn take_over_above(&mut self, floor: Ballot) -> Ballot {
        self.ballot.n = self.ballot.n.max(floor.n.saturating_add(1));
        self.ballot.priority = self.priority;
        self.set_leader(self.ballot);
        self.probe();
        self.ballot
    }

    /// Advances time by one tick and applies the rules of the module documentation.
    /// `promised` is the highest ballot the replication layer has promised. Returns the
    /// new leader when the leader this server follows changed during the tick.
    pub fn tick(&mut self, promised: Ballot) -> LeaderChange {
        self.now += 1;
        self.absorb_promise(promised);
        if self.now >= self.next_probe {
            self.probe();
        }
        let before = self.leader;
        self.evaluate(promised);
        (self.leader != before).then_some(self.leader).flatten()
    }

    /// Sends a heartbeat request to every peer now and applies the rules again without
    /// advancing time (what [`crate::OmniPaxos::election_timeout`] does).
    pub fn probe_now(&mut self, promised: Ballot) -> LeaderChange {
        self.probe();
        let before = self.leader;
        self.evaluate(promised);
        (self.leader != before).then_some(self.leader).flatten()
    }

    /// Follows `b` (a ballot the replication layer has promised) if it is higher than the
    /// leader followed now; the rules then tell whether its owner is alive.
    pub fn follow(&mut self, b: Ballot) {
        if self.leader.map_or(true, |l| b > l) {
            self.set_leader(b);
        }
    }

    /// Sets the leader priority of the ballots this server takes from now on (a ballot
    /// already taken keeps its priority, so a change never deposes a leader by itself; use
    /// [`BallotLeaderElection::transfer_to`] to move the leadership).
    pub fn set_priority(&mut self, priority: u32) {
        self.priority = priority;
    }

    /// At the leader: asks `target` to take over now. Fails, changing nothing, when this
    /// server does not lead, or `target` is not a peer, has not answered a heartbeat within
    /// the last election timeout, or does not report itself quorum-connected.
    pub fn transfer_to(&mut self, target: NodeId) -> Result<(), String> {
        self.check_transfer(target)?;
        let floor = self.ballot;
        self.send(target, BleMessage::TakeOver { floor });
        Ok(())
    }

    /// Whether [`BallotLeaderElection::transfer_to`] would ask `target` (the reason if not).
    pub fn check_transfer(&self, target: NodeId) -> Result<(), String> {
        if self.leader != Some(self.ballot) {
            return Err("this server is not the leader".to_string());
        }
        let i = self
            .peers
            .iter()
            .position(|&p| p == target)
            .ok_or_else(|| format!("server {target} is not a peer of this configuration"))?;
        let s = self.live_status(i).ok_or_else(|| {
            format!("server {target} has not answered a heartbeat within the last election timeout")
        })?;
        if s.quorum != QuorumState::Connected {
            return Err(format!(
                "server {target} is not quorum-connected: it could not lead"
            ));
        }
        Ok(())
    }

    /// Whether this server found the leader it follows gone (past its grace period).
    pub fn leader_gone(&self) -> bool {
        self.gone_since.is_some()
    }

    /// Handles a leader-election message from `from` and applies the rules again (what it
    /// says may settle an election at once). Returns the new leader when the leader this
    /// server follows changed.
    pub fn handle(&mut self, from: NodeId, msg: BleMessage, promised: Ballot) -> LeaderChange {
        let i = self.peers.iter().position(|&p| p == from)?;
        match msg {
            BleMessage::HeartbeatRequest { round, status } => {
                self.note_status(i, status);
                let reply = BleMessage::HeartbeatReply {
                    round,
                    status: self.status(),
                };
                self.send(from, reply);
            }
            BleMessage::TakeOver { floor } => {
                // Only from the leader we follow, for its current ballot (never a stale or
                // replayed request), and only if we could lead.
                if self.leader == Some(floor) && floor.pid == from && self.is_quorum_connected() {
                    let before = self.leader;
                    self.take_over_above(floor);
                    self.verified = true;
                    return (self.leader != before).then_some(self.leader).flatten();
                }
                return None;
            }
            BleMessage::HeartbeatReply { round, status } => {
                self.note_status(i, status);
                // A stamp from the future (a reply to an earlier incarnation's request, or
                // a forged one) proves nothing.
                if round <= self.now {
                    let v = &mut self.views[i];
                    v.answered = Some(v.answered.map_or(round, |a| a.max(round)));
                }
            }
        }
        if self.now == 0 {
            return None; // not started: the first tick applies the rules
        }
        let before = self.leader;
        self.evaluate(promised);
        (self.leader != before).then_some(self.leader).flatten()
    }

    /// Moves the outgoing messages into `out`.
    pub fn take_outgoing(&mut self, out: &mut Vec<Message>) {
        out.append(&mut self.outgoing);
    }

    // ----- internals ------------------------------------------------------------------

    /// This server's status as its heartbeats carry it.
    fn status(&self) -> BleStatus {
        let quorum = if self.is_quorum_connected() {
            QuorumState::Connected
        } else if self.now < self.window {
            QuorumState::Unknown
        } else {
            QuorumState::Disconnected
        };
        BleStatus {
            ballot: self.ballot,
            quorum,
            content: self.content,
            leads: self.leader == Some(self.ballot),
            priority: self.priority,
            incarnation: self.incarnation,
            clock: self.now,
        }
    }

    fn note_status(&mut self, i: usize, s: BleStatus) {
        let v = &mut self.views[i];
        let newer = v.status.map_or(true, |old| {
            old.incarnation != s.incarnation || s.clock >= old.clock
        });
        if newer {
            v.status = Some(s);
        }
    }

    fn connected(&self, i: usize) -> bool {
        self.views[i]
            .answered
            .is_some_and(|t| self.now.saturating_sub(t) < self.window)
    }

    fn connected_count(&self) -> usize {
        (0..self.peers.len()).filter(|&i| self.connected(i)).count()
    }

    /// The status of peer `i` if it is connected.
    fn live_status(&self, i: usize) -> Option<BleStatus> {
        if self.connected(i) {
            self.views[i].status
        } else {
            None
        }
    }

    /// Sends a request with this server's status to every peer now.
    fn probe(&mut self) {
        self.next_probe = self.now + self.probe_period;
        let status = self.status();
        for i in 0..self.peers.len() {
            let p = self.peers[i];
            self.send(
                p,
                BleMessage::HeartbeatRequest {
                    round: self.now,
                    status,
                },
            );
        }
    }

    fn set_leader(&mut self, b: Ballot) {
        if self.leader != Some(b) {
            self.leader = Some(b);
            self.leader_since = self.now;
            self.verified = false;
            self.gone_since = None;
        }
    }

    /// Our own ballot from before a restart is restored (never advertise less); another
    /// server's promised ballot is followed when it is higher than the leader.
    fn absorb_promise(&mut self, promised: Ballot) {
        if promised.pid == self.pid {
            self.ballot.n = self.ballot.n.max(promised.n);
        } else if promised.pid != 0 && self.leader.map_or(true, |l| promised > l) {
            self.set_leader(promised);
        }
    }

    fn evaluate(&mut self, promised: Ballot) {
        self.absorb_promise(promised);
        let qc = self.is_quorum_connected();
        // Rule 1: the highest quorum-connected ballot.
        let mut top = qc.then_some(self.ballot);
        for i in 0..self.peers.len() {
            if let Some(s) = self.live_status(i) {
                if s.quorum == QuorumState::Connected && top.map_or(true, |t| s.ballot > t) {
                    top = Some(s.ballot);
                }
            }
        }
        match (self.leader, top) {
            (None, Some(t)) => {
                // No leader yet (boot, restart): wait while a connected peer with a higher
                // ballot has not settled whether it is quorum-connected, and, for up to
                // two election timeouts, for peers not heard from at all (they may have
                // started later and hold a higher ballot).
                let starting = self.now < 2 * self.window;
                let unsettled_higher = (0..self.peers.len()).any(|i| {
                    self.views[i].status.is_some_and(|s| {
                        let unknown = s.quorum == QuorumState::Unknown;
                        s.ballot > t
                            && if starting {
                                unknown || !self.connected(i)
                            } else {
                                unknown && self.connected(i)
                            }
                    })
                });
                let unheard = self.views.iter().any(|v| v.status.is_none());
                if !(unsettled_higher || unheard && starting) {
                    self.set_leader(t);
                }
            }
            (Some(l), Some(t)) if t > l => self.set_leader(t),
            _ => {}
        }
        let was_content = self.content;
        self.content = false;
        let Some(l) = self.leader else {
            return;
        };
        // Rule 2: is the leader alive? A leader that restarted within the window (its
        // status says it cannot tell yet whether it is quorum-connected) is given the
        // rest of its first election timeout, like a new leader.
        let mut unsettled = false;
        let alive = if l.pid == self.pid {
            l == self.ballot && qc
        } else {
            match self
                .peers
                .iter()
                .position(|&p| p == l.pid)
                .and_then(|i| self.live_status(i))
            {
                Some(s) if s.quorum == QuorumState::Unknown => {
                    unsettled = true;
                    false
                }
                Some(s) => s.ballot >= l && s.quorum == QuorumState::Connected && s.leads,
                None => false,
            }
        };
        if alive {
            self.verified = true;
            self.gone_since = None;
            self.content = true;
            return;
        }
        if unsettled {
            return;
        }
        if !self.verified && self.now.saturating_sub(self.leader_since) < self.window {
            return; // grace: a new leader has one election timeout to show itself
        }
        if was_content {
            // Tell the peers at once that this server lost its leader.
            self.probe();
        }
        let since = *self.gone_since.get_or_insert(self.now);
        if !qc {
            return;
        }
        // Rule 3: take over only when nobody else sees a working leader, and after any
        // higher-ranked server in the same position.
        let mut blocked = false;
        let mut deferred = false;
        let rank = (self.priority, self.pid);
        for i in 0..self.peers.len() {
            if let Some(s) = self.live_status(i) {
                if s.content {
                    blocked = true;
                } else if s.quorum == QuorumState::Connected
                    && !s.leads
                    && (s.priority, s.ballot.pid) > rank
                {
                    deferred = true;
                }
            }
        }
        if blocked || (deferred && self.now - since < self.window) {
            return;
        }
        let mut floor = l.max(promised);
        for v in &self.views {
            if let Some(s) = v.status {
                floor = floor.max(s.ballot);
            }
        }
        self.ballot.n = self.ballot.n.max(floor.n.saturating_add(1));
        self.ballot.priority = self.priority;
        self.set_leader(self.ballot);
        self.verified = true;
        self.content = true;
        self.probe();
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

    /// Runs `ticks` ticks of lock-step servers with one-tick delivery, dropping messages on
    /// the directed links in `cut`.
    fn run(nodes: &mut [BallotLeaderElection], cut: &[(NodeId, NodeId)], ticks: u64) {
        for _ in 0..ticks {
            let mut msgs = Vec::new();
            for n in nodes.iter_mut() {
                n.take_outgoing(&mut msgs);
            }
            for m in msgs {
                if cut.contains(&(m.from, m.to)) {
                    continue;
                }
                if let Body::Ble(b) = m.body {
                    nodes[(m.to - 1) as usize].handle(m.from, b, Ballot::default());
                }
            }
            for n in nodes.iter_mut() {
                let promised = Ballot::default();
                n.tick(promised);
            }
        }
    }

    fn cluster(n: u64) -> Vec<BallotLeaderElection> {
        (1..=n)
            .map(|p| BallotLeaderElection::new(p, (1..=n).filter(|&q| q != p).collect(), 0, 10, p))
            .collect()
    }

    fn both_ways(pairs: &[(NodeId, NodeId)]) -> Vec<(NodeId, NodeId)> {
        pairs.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect()
    }

    #[test]
    fn a_fresh_server_is_not_quorum_connected() {
        let nodes = cluster(3);
        assert!(!nodes[0].is_quorum_connected());
    }

    #[test]
    fn all_agree_and_stay() {
        let mut nodes = cluster(3);
        run(&mut nodes, &[], 30);
        for n in &nodes {
            assert_eq!(n.leader().map(|b| b.pid), Some(3));
        }
        let b = nodes[0].leader();
        run(&mut nodes, &[], 1000);
        for n in &nodes {
            assert_eq!(n.leader(), b);
        }
    }

    #[test]
    fn quorum_loss_elects_the_only_quorum_connected_server() {
        // 5 servers; leader 5; then 2..=5 are connected only to 1.
        let mut nodes = cluster(5);
        run(&mut nodes, &[], 30);
        assert_eq!(nodes[0].leader().unwrap().pid, 5);
        let mut cut = Vec::new();
        for a in 2..=5u64 {
            for b in 2..=5u64 {
                if a != b {
                    cut.push((a, b));
                }
            }
        }
        run(&mut nodes, &cut, 40);
        for n in &nodes {
            assert_eq!(n.leader().unwrap().pid, 1, "node {}", n.pid);
        }
        let before: Vec<_> = nodes.iter().map(|n| n.leader()).collect();
        run(&mut nodes, &cut, 100);
        let after: Vec<_> = nodes.iter().map(|n| n.leader()).collect();
        assert_eq!(before, after, "the leader must stay put");
    }

    #[test]
    fn a_broken_link_to_a_working_leader_deposes_nobody() {
        // Chained: 3 servers, leader 3, link 3-2 cut: 1 still sees 3 and stays content.
        let mut nodes = cluster(3);
        run(&mut nodes, &[], 30);
        let b = nodes[0].leader();
        run(&mut nodes, &both_ways(&[(3, 2)]), 200);
        assert_eq!(nodes[0].leader(), b);
        assert_eq!(nodes[2].leader(), b);
        assert_eq!(nodes[1].leader(), b, "2 waits instead of taking over");
    }

    #[test]
    fn a_deaf_leader_is_replaced() {
        let mut nodes = cluster(3);
        run(&mut nodes, &[], 30);
        let cut = [(1, 3), (2, 3)];
        run(&mut nodes, &cut, 25);
        assert_eq!(nodes[0].leader().unwrap().pid, 2);
        assert_eq!(nodes[1].leader().unwrap().pid, 2);
    }
}
