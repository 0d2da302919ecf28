//! A deterministic simulated cluster: N nodes, a network that can drop, delay, duplicate and
//! reorder messages and cut any directed link, crash/restart of nodes with storage that
//! loses uncommitted writes, and invariant checkers run after every step.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use omnipaxos::messages::{Ballot, StopSign};
use omnipaxos::{Config, Entries, MemoryStorage, NodeId, OmniPaxos, Storage, StorageError};

/// A small deterministic PRNG (xorshift64*).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

/// One pending write of [`SimStorage`].
#[derive(Clone, Debug)]
enum Op {
    Append(Entries),
    Truncate(u64),
    Promise(Ballot),
    AcceptedRound(Ballot),
    Decided(u64),
    StopSign(Option<StopSign>),
    Trim(u64),
}

#[derive(Default, Debug)]
struct SimInner {
    current: MemoryStorage,
    durable: MemoryStorage,
    journal: Vec<Op>,
    /// A decided index committed lazily (not in `durable` yet; lost in a crash).
    lazy_decided: Option<u64>,
    commits: u64,
    crashes: u64,
}

/// Storage that survives a simulated crash with exactly what was committed: writes since
/// the last commit are lost, and so is a decided index that a commit left lazy (the
/// weakest the `Storage` contract allows: a commit whose batch only appended and moved the
/// decided index leaves the decided index behind). Its commit "waits for the disk", so the
/// leader's early release of AcceptDecide is exercised. Cloning shares the same state.
#[derive(Clone, Default, Debug)]
pub struct SimStorage(Arc<Mutex<SimInner>>);

impl SimStorage {
    /// Simulates a crash at the weakest point the `Storage` contract allows: of the writes
    /// since the last commit, a prefix of the appended entries may survive (when the batch
    /// cut no entries), nothing else does.
    pub fn crash(&self) {
        let mut g = self.0.lock().unwrap();
        let journal = std::mem::take(&mut g.journal);
        let mut len = g.durable.log_len();
        let mut overwrites = false;
        let mut appended = Entries::new();
        for op in &journal {
            match op {
                Op::Append(e) => {
                    appended.extend_from(e);
                    len += e.len() as u64;
                }
                Op::Truncate(l) if *l < len => overwrites = true,
                Op::Trim(_) => overwrites = true,
                _ => {}
            }
        }
        g.crashes += 1;
        g.lazy_decided = None;
        if !overwrites && !appended.is_empty() {
            // A deterministic "random" prefix: none, all, or something in between.
            let k = (g.crashes * 7919 + g.commits) as usize % (appended.len() + 1);
            let prefix = appended.slice(0, k);
            let _ = g.durable.append_entries(&prefix);
        }
        g.current = g.durable.clone();
    }
    pub fn commits(&self) -> u64 {
        self.0.lock().unwrap().commits
    }
}

fn apply(s: &mut MemoryStorage, op: &Op) -> Result<(), StorageError> {
    match op {
        Op::Append(e) => s.append_entries(e),
        Op::Truncate(l) => s.truncate(*l),
        Op::Promise(b) => s.set_promise(*b),
        Op::AcceptedRound(b) => s.set_accepted_round(*b),
        Op::Decided(i) => s.set_decided_idx(*i),
        Op::StopSign(ss) => s.set_stopsign(ss.clone()),
        Op::Trim(i) => s.trim(*i),
    }
}

impl SimStorage {
    fn commit_inner(&self, with_decided: bool) -> Result<(), StorageError> {
        let mut g = self.0.lock().unwrap();
        let journal = std::mem::take(&mut g.journal);
        let lazy = !with_decided
            && journal
                .iter()
                .all(|op| matches!(op, Op::Append(_) | Op::Decided(_)));
        if !lazy {
            // A record write: it carries the decided index left lazy before.
            if let Some(i) = g.lazy_decided.take() {
                g.durable.set_decided_idx(i)?;
            }
        }
        for op in &journal {
            match op {
                Op::Decided(i) if lazy => g.lazy_decided = Some(*i),
                _ => apply(&mut g.durable, op)?,
            }
        }
        g.commits += 1;
        Ok(())
    }

    fn write(&self, op: Op) -> Result<(), StorageError> {
        let mut g = self.0.lock().unwrap();
        apply(&mut g.current, &op)?;
        g.journal.push(op);
        Ok(())
    }
}

impl Storage for SimStorage {
    fn append_entries(&mut self, entries: &Entries) -> Result<(), StorageError> {
        self.write(Op::Append(entries.clone()))
    }
    fn truncate(&mut self, len: u64) -> Result<(), StorageError> {
        self.write(Op::Truncate(len))
    }
    fn read_entries(&self, from: u64, to: u64, out: &mut Entries) -> Result<(), StorageError> {
        self.0.lock().unwrap().current.read_entries(from, to, out)
    }
    fn log_len(&self) -> u64 {
        self.0.lock().unwrap().current.log_len()
    }
    fn set_promise(&mut self, b: Ballot) -> Result<(), StorageError> {
        self.write(Op::Promise(b))
    }
    fn promise(&self) -> Ballot {
        self.0.lock().unwrap().current.promise()
    }
    fn set_accepted_round(&mut self, b: Ballot) -> Result<(), StorageError> {
        self.write(Op::AcceptedRound(b))
    }
    fn accepted_round(&self) -> Ballot {
        self.0.lock().unwrap().current.accepted_round()
    }
    fn set_decided_idx(&mut self, idx: u64) -> Result<(), StorageError> {
        self.write(Op::Decided(idx))
    }
    fn decided_idx(&self) -> u64 {
        self.0.lock().unwrap().current.decided_idx()
    }
    fn set_stopsign(&mut self, ss: Option<StopSign>) -> Result<(), StorageError> {
        self.write(Op::StopSign(ss))
    }
    fn stopsign(&self) -> Option<StopSign> {
        self.0.lock().unwrap().current.stopsign()
    }
    fn trim(&mut self, idx: u64) -> Result<(), StorageError> {
        self.write(Op::Trim(idx))
    }
    fn compacted_idx(&self) -> u64 {
        self.0.lock().unwrap().current.compacted_idx()
    }
    fn commit(&mut self) -> Result<(), StorageError> {
        self.commit_inner(false)
    }
    fn durable_decided_idx(&self) -> u64 {
        self.0.lock().unwrap().durable.decided_idx()
    }
    fn sync_decided(&mut self) -> Result<(), StorageError> {
        self.commit_inner(true)
    }
    fn commit_waits_for_disk(&self) -> bool {
        true
    }
}

/// Network behaviour.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub drop: f64,
    pub duplicate: f64,
    /// Delivery delay in ticks: uniform in `min_delay..=max_delay` (a range reorders).
    pub min_delay: u64,
    pub max_delay: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            drop: 0.0,
            duplicate: 0.0,
            min_delay: 1,
            max_delay: 1,
        }
    }
}

/// A simulated cluster.
pub struct Cluster {
    pub n: u64,
    pub nodes: BTreeMap<NodeId, Option<OmniPaxos>>,
    pub storages: HashMap<NodeId, SimStorage>,
    pub configs: HashMap<NodeId, Config>,
    pub net: NetConfig,
    pub rng: Rng,
    pub now: u64,
    /// (deliver_at, seq, to, bytes)
    in_flight: Vec<(u64, u64, NodeId, Vec<u8>)>,
    seq: u64,
    /// Directed links that drop everything.
    pub cut: HashSet<(NodeId, NodeId)>,
    /// Directed links that drop only Sequence Paxos messages (BLE still passes).
    pub cut_paxos: HashSet<(NodeId, NodeId)>,
    // ----- checkers -----
    /// The one decided log every node must agree with.
    pub chosen: Vec<Vec<u8>>,
    /// Per node: how much of its decided log was checked, and its last decided index.
    checked: HashMap<NodeId, u64>,
    last_decided: HashMap<NodeId, u64>,
    /// Every payload ever appended, with the tick it was appended at.
    pub appended: HashMap<Vec<u8>, u64>,
    /// The tick at which each chosen index was first seen decided.
    pub decided_at: Vec<u64>,
    /// The decided StopSign and its index, once some node has decided it.
    pub decided_stopsign: Option<(u64, StopSign)>,
    next_payload: u64,
    sessions: u64,
    buf: Vec<u8>,
    ranges: Vec<(NodeId, std::ops::Range<usize>)>,
    pub delivered: u64,
    /// Crash this node in the middle of the next step: after it handled its messages and
    /// before it committed them (so uncommitted writes are lost, or partly kept, as the
    /// `Storage` contract allows).
    pub crash_mid_step: Option<NodeId>,
    /// Paused nodes: they do not tick or send, and the messages that reach them are held
    /// until they resume (what TCP does to a stopped process).
    pub paused: HashSet<NodeId>,
    held: HashMap<NodeId, Vec<Vec<u8>>>,
    /// Nodes that start ticking only at the given tick (unsynchronised heartbeat phases).
    pub starts_at: HashMap<NodeId, u64>,
    /// Every leader ballot that reached the accept phase, with the tick it was first seen.
    pub elections: Vec<(u64, Ballot)>,
    seen_leaders: HashSet<Ballot>,
}

pub const ELECTION: u64 = 10;
pub const RESEND: u64 = 3;

impl Cluster {
    /// `n` nodes with pids 1..=n; `priority(pid)` sets leader priorities.
    pub fn new(n: u64, seed: u64, priority: impl Fn(NodeId) -> u32) -> Self {
        Self::with_config(n, seed, priority, |_| {})
    }

    /// Like [`Cluster::new`], with `tweak` applied to every node's configuration.
    pub fn with_config(
        n: u64,
        seed: u64,
        priority: impl Fn(NodeId) -> u32,
        tweak: impl Fn(&mut Config),
    ) -> Self {
        let mut c = Cluster {
            n,
            nodes: BTreeMap::new(),
            storages: HashMap::new(),
            configs: HashMap::new(),
            net: NetConfig::default(),
            rng: Rng::new(seed),
            now: 0,
            in_flight: Vec::new(),
            seq: 0,
            cut: HashSet::new(),
            cut_paxos: HashSet::new(),
            chosen: Vec::new(),
            checked: HashMap::new(),
            last_decided: HashMap::new(),
            appended: HashMap::new(),
            decided_at: Vec::new(),
            decided_stopsign: None,
            next_payload: 0,
            sessions: 0,
            buf: Vec::new(),
            ranges: Vec::new(),
            delivered: 0,
            crash_mid_step: None,
            paused: HashSet::new(),
            held: HashMap::new(),
            starts_at: HashMap::new(),
            elections: Vec::new(),
            seen_leaders: HashSet::new(),
        };
        for pid in 1..=n {
            let config = Config {
                config_id: 7,
                pid,
                peers: (1..=n).filter(|&p| p != pid).collect(),
                leader_priority: priority(pid),
                election_tick_timeout: ELECTION,
                resend_tick_timeout: RESEND,
                buffer_size: 100_000,
                batch_size: 1000,
                ..Config::default()
            };
            let mut config = config;
            tweak(&mut config);
            c.configs.insert(pid, config);
            c.storages.insert(pid, SimStorage::default());
            c.start(pid, false);
        }
        c
    }

    fn start(&mut self, pid: NodeId, recover: bool) {
        self.sessions += 1;
        let storage = self.storages[&pid].clone();
        let mut node = OmniPaxos::with_session(
            self.configs[&pid].clone(),
            Box::new(storage),
            self.sessions * 1000 + pid,
        )
        .expect("valid config");
        if recover {
            node.fail_recovery().expect("recovery");
        }
        self.nodes.insert(pid, Some(node));
    }

    pub fn node(&mut self, pid: NodeId) -> &mut OmniPaxos {
        self.nodes
            .get_mut(&pid)
            .and_then(|n| n.as_mut())
            .expect("node is alive")
    }

    pub fn is_alive(&self, pid: NodeId) -> bool {
        matches!(self.nodes.get(&pid), Some(Some(_)))
    }

    pub fn alive(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(&p, _)| p)
            .collect()
    }

    /// Crash: the node stops, its uncommitted writes are lost, messages to it are dropped.
    pub fn crash(&mut self, pid: NodeId) {
        // A crash, not a clean close: dropping a node normally writes what it owes.
        if let Some(Some(node)) = self.nodes.insert(pid, None) {
            node.debug_crash();
        }
        self.paused.remove(&pid);
        self.held.remove(&pid);
        self.storages[&pid].crash();
        // The decided index is lazily durable: after a restart it may be lower (the
        // entries never change, which `check` goes on checking).
        self.last_decided.remove(&pid);
    }

    /// Restart from storage with `fail_recovery`.
    pub fn restart(&mut self, pid: NodeId) {
        self.start(pid, true);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut_link(&mut self, a: NodeId, b: NodeId) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    pub fn heal(&mut self) {
        let cut: Vec<_> = self.cut.drain().collect();
        self.cut_paxos.clear();
        for (a, b) in cut {
            if self.is_alive(a) {
                let _ = self.node(a).reconnected(b);
            }
        }
    }

    /// Leaves only the links in `keep` (undirected pairs).
    pub fn only_links(&mut self, keep: &[(NodeId, NodeId)]) {
        self.cut.clear();
        for a in 1..=self.n {
            for b in 1..=self.n {
                if a != b && !keep.contains(&(a, b)) && !keep.contains(&(b, a)) {
                    self.cut.insert((a, b));
                }
            }
        }
    }

    /// A unique 16-byte payload proposed at `pid` now.
    pub fn propose(&mut self, pid: NodeId) -> Result<(), omnipaxos::Error> {
        let mut p = Vec::with_capacity(16);
        p.extend_from_slice(&pid.to_le_bytes());
        p.extend_from_slice(&self.next_payload.to_le_bytes());
        self.next_payload += 1;
        let now = self.now;
        let r = self.node(pid).append(&p);
        if r.is_ok() {
            self.appended.insert(p, now);
        }
        r
    }

    /// One tick: every live node ticks, due messages are delivered, outgoing messages are
    /// sent, invariants are checked.
    pub fn step(&mut self) {
        self.now += 1;
        for pid in self.running() {
            if self.starts_at.get(&pid).is_some_and(|&t| t > self.now) {
                continue;
            }
            self.node(pid).tick().expect("tick");
        }
        self.deliver_due();
        if let Some(pid) = self.crash_mid_step.take() {
            if self.is_alive(pid) {
                self.crash(pid);
            }
        }
        self.collect_outgoing();
        self.check();
        self.track_leaders();
    }

    /// Live nodes that are not paused.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(p, n)| n.is_some() && !self.paused.contains(p))
            .map(|(&p, _)| p)
            .collect()
    }

    /// Pauses `pid`: it stops ticking and sending; messages to it are held.
    pub fn pause(&mut self, pid: NodeId) {
        self.paused.insert(pid);
    }

    /// Resumes `pid`: every held message is delivered at once, in the order it arrived.
    pub fn resume(&mut self, pid: NodeId) {
        self.paused.remove(&pid);
        for bytes in self.held.remove(&pid).unwrap_or_default() {
            if self.is_alive(pid) {
                self.delivered += 1;
                self.node(pid)
                    .handle_incoming_bytes(&bytes)
                    .expect("a valid message from a peer is accepted");
            }
        }
    }

    /// Cuts every link into and out of `pid`.
    pub fn isolate(&mut self, pid: NodeId) {
        for q in 1..=self.n {
            if q != pid {
                self.cut_link(pid, q);
            }
        }
    }

    fn track_leaders(&mut self) {
        for pid in self.running() {
            let node = self.node(pid);
            if node.is_accepting_leader() {
                let b = node.leader().expect("a leader knows its ballot").1;
                if self.seen_leaders.insert(b) {
                    self.elections.push((self.now, b));
                }
            }
        }
    }

    /// Leaders elected (ballots that reached the accept phase) after tick `t`.
    pub fn elections_since(&self, t: u64) -> usize {
        self.elections.iter().filter(|e| e.0 > t).count()
    }

    /// Changes of the leading server (pid) after tick `t`.
    pub fn leader_pid_changes_since(&self, t: u64) -> usize {
        let mut prev = self
            .elections
            .iter()
            .rev()
            .find(|e| e.0 <= t)
            .map(|e| e.1.pid);
        let mut n = 0;
        for e in self.elections.iter().filter(|e| e.0 > t) {
            if prev != Some(e.1.pid) {
                n += 1;
            }
            prev = Some(e.1.pid);
        }
        n
    }

    pub fn run(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.step();
        }
    }

    /// Runs until `f` holds (checked after each step) or `max` ticks pass; returns the
    /// number of ticks taken.
    pub fn run_until(&mut self, max: u64, mut f: impl FnMut(&mut Cluster) -> bool) -> Option<u64> {
        for t in 1..=max {
            self.step();
            if f(self) {
                return Some(t);
            }
        }
        None
    }

    fn deliver_due(&mut self) {
        let now = self.now;
        let mut due: Vec<(u64, u64, NodeId, Vec<u8>)> = Vec::new();
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight[i].0 <= now {
                due.push(self.in_flight.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|m| (m.0, m.1));
        for (_, _, to, bytes) in due {
            if !self.is_alive(to) {
                continue;
            }
            if self.paused.contains(&to) {
                self.held.entry(to).or_default().push(bytes);
                continue;
            }
            self.delivered += 1;
            self.node(to)
                .handle_incoming_bytes(&bytes)
                .expect("a valid message from a peer is accepted");
        }
    }

    fn collect_outgoing(&mut self) {
        for pid in self.running() {
            let mut buf = std::mem::take(&mut self.buf);
            let mut ranges = std::mem::take(&mut self.ranges);
            ranges.clear();
            self.node(pid)
                .take_outgoing_encoded(&mut buf, |to, r| ranges.push((to, r)))
                .expect("take outgoing");
            for (to, r) in ranges.drain(..) {
                let bytes = buf[r].to_vec();
                self.send(pid, to, bytes);
            }
            self.buf = buf;
            self.ranges = ranges;
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        // Whatever the load or the gap, no message the library produces exceeds the limit.
        let max = self.configs[&from].max_message_bytes;
        assert!(
            bytes.len() <= max,
            "node {from} sent a message of {} bytes to {to}, above its max_message_bytes {max}",
            bytes.len()
        );
        if self.cut.contains(&(from, to)) {
            return;
        }
        // The body's first byte is the bincode variant of `Body`: 0 = Ble, 1 = Paxos.
        if self.cut_paxos.contains(&(from, to))
            && bytes.get(omnipaxos::wire::HEADER_LEN) == Some(&1)
        {
            return;
        }
        if self.rng.chance(self.net.drop) {
            return;
        }
        let copies = if self.rng.chance(self.net.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let span = self.net.max_delay - self.net.min_delay + 1;
            let at = self.now + self.net.min_delay + self.rng.below(span);
            self.seq += 1;
            self.in_flight.push((at, self.seq, to, bytes.clone()));
        }
    }

    /// The invariants: decided logs are prefixes of one another, decided indexes never
    /// decrease while a node runs, every decided entry was appended by someone.
    pub fn check(&mut self) {
        for pid in self.running() {
            let node = self.node(pid);
            let decided = node.decided_idx().expect("decided_idx");
            let last = self.last_decided.get(&pid).copied().unwrap_or(0);
            assert!(
                decided >= last,
                "node {pid}: decided index went from {last} down to {decided}"
            );
            let from = self.checked.get(&pid).copied().unwrap_or(0);
            if decided > from {
                let mut out = Entries::new();
                let node = self.node(pid);
                let start = from.max(node_compacted(node));
                node.read_decided_suffix(start, &mut out)
                    .expect("read decided suffix");
                for (k, e) in out.iter().enumerate() {
                    let idx = (start as usize) + k;
                    if idx < self.chosen.len() {
                        assert_eq!(
                            self.chosen[idx], e,
                            "node {pid}: decided entry {idx} differs from another node's"
                        );
                    } else {
                        assert_eq!(idx, self.chosen.len());
                        assert!(
                            self.appended.contains_key(e),
                            "node {pid}: decided entry {idx} was never appended"
                        );
                        self.chosen.push(e.to_vec());
                        self.decided_at.push(self.now);
                    }
                }
            }
            self.checked.insert(pid, decided);
            self.last_decided.insert(pid, decided);
            // A decided StopSign is the same StopSign at the same index everywhere, right
            // after the last decided entry, and no entry is ever decided after it.
            if let Some(ss) = self.node(pid).decided_stopsign().expect("decided_stopsign") {
                let idx = decided - 1;
                match &self.decided_stopsign {
                    Some((i, s)) => assert!(
                        *i == idx && *s == ss,
                        "node {pid}: decided StopSign {ss:?} at {idx}, another node {s:?} at {i}"
                    ),
                    None => self.decided_stopsign = Some((idx, ss)),
                }
            }
        }
        if let Some((idx, _)) = &self.decided_stopsign {
            assert!(
                self.chosen.len() as u64 <= *idx,
                "an entry was decided at {} after the StopSign at {idx}",
                self.chosen.len() - 1
            );
        }
        // Each payload decided at most once would be exactly-once; forwarding gives
        // at-least-once across leader changes, so duplicates are counted, not forbidden.
    }

    /// The leader as seen by a majority of live nodes, if they agree.
    pub fn agreed_leader(&mut self) -> Option<Ballot> {
        let mut votes: HashMap<Ballot, usize> = HashMap::new();
        for pid in self.alive() {
            if let Some((_, b)) = self.node(pid).leader() {
                *votes.entry(b).or_default() += 1;
            }
        }
        let majority = (self.n / 2 + 1) as usize;
        votes
            .into_iter()
            .find(|&(b, v)| v >= majority && self.is_alive(b.pid))
            .map(|(b, _)| b)
    }

    /// The leader ballot that is in the accept phase, if any node is.
    pub fn accepting_leader(&mut self) -> Option<NodeId> {
        self.alive()
            .into_iter()
            .find(|&p| self.node(p).is_accepting_leader())
    }

    pub fn max_decided(&mut self) -> u64 {
        self.chosen.len() as u64
    }

    /// Ticks until a leader is agreed on by a majority and is in the accept phase.
    pub fn elect(&mut self, max: u64) -> Option<u64> {
        self.run_until(max, |c| {
            c.agreed_leader()
                .map(|b| c.node(b.pid).is_accepting_leader())
                .unwrap_or(false)
        })
    }

    /// Payload sequence numbers decided (for duplicate accounting).
    pub fn decided_payloads(&self) -> HashSet<Vec<u8>> {
        self.chosen.iter().cloned().collect()
    }
}

fn node_compacted(node: &mut OmniPaxos) -> u64 {
    node.compacted_idx()
}
