//! The fuzzer as the network and the clock of a 3-node cluster: each input byte is one
//! step (tick a node, append at a node, deliver, drop, duplicate or reorder a message in
//! flight, cut or restore one directed link, pause or resume a node, or propose a
//! reconfiguration). A paused node neither ticks nor receives: what is delivered to it is
//! held and handed over at once when it resumes.
//!
//! Safety, after every step: the decided logs are prefixes of one another (agreement), a
//! node's decided index never goes down, and a decided StopSign is the same on every node
//! that decided one, at the same index, with no entry decided after it.
//!
//! Liveness, after the input: every link is restored, every node resumed, and the cluster
//! runs in lock step with one-tick delivery. Within 5 election timeouts an entry proposed
//! after the heal (or the StopSign, when one is in a log) must be decided, and then the
//! leader must stay the same for 20 election timeouts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipaxos::{wire, Ballot, Config, Entries, MemoryStorage, OmniPaxos, StopSign};

const ET: u64 = 3;

/// What one node has decided so far.
#[derive(Default)]
struct Seen {
    idx: u64,
    entries: Vec<Vec<u8>>,
    stopsign: Option<StopSign>,
}

struct Sim {
    nodes: Vec<OmniPaxos>,
    in_flight: Vec<(usize, Vec<u8>)>,
    /// Directed links (from, to) that drop everything, as indexes 0..3.
    cut: [[bool; 3]; 3],
    paused: [bool; 3],
    held: [Vec<Vec<u8>>; 3],
    decided: Vec<Seen>,
    proposals: u32,
    msgs: Vec<omnipaxos::Message>,
}

impl Sim {
    fn deliver(&mut self, to: usize, bytes: Vec<u8>) {
        if self.paused[to] {
            self.held[to].push(bytes);
        } else {
            let _ = self.nodes[to].handle_incoming_bytes(&bytes);
        }
    }

    fn collect(&mut self) {
        for from in 0..3 {
            if self.paused[from] {
                continue;
            }
            self.msgs.clear();
            self.nodes[from].take_outgoing(&mut self.msgs).unwrap();
            for m in self.msgs.drain(..) {
                let to = m.to as usize - 1;
                if self.cut[from][to] {
                    continue;
                }
                let mut bytes = Vec::new();
                wire::encode(1, &m, &mut bytes);
                self.in_flight.push((to, bytes));
            }
        }
    }

    fn propose(&mut self, n: usize) {
        self.proposals += 1;
        let p = self.proposals;
        let _ = self.nodes[n].append(&p.to_le_bytes());
    }
}

fuzz_target!(|data: &[u8]| {
    let nodes: Vec<OmniPaxos> = (1..=3u64)
        .map(|pid| {
            let config = Config {
                pid,
                peers: (1..=3).filter(|&p| p != pid).collect(),
                election_tick_timeout: ET,
                resend_tick_timeout: 2,
                buffer_size: 64,
                batch_size: 4,
                ..Config::default()
            };
            OmniPaxos::with_session(config, Box::new(MemoryStorage::new()), pid).unwrap()
        })
        .collect();
    let mut s = Sim {
        nodes,
        in_flight: Vec::new(),
        cut: [[false; 3]; 3],
        paused: [false; 3],
        held: Default::default(),
        decided: (0..3).map(|_| Seen::default()).collect(),
        proposals: 0,
        msgs: Vec::new(),
    };
    for &b in data {
        let n = (b % 3) as usize;
        match b >> 2 {
            0..=9 if !s.paused[n] => s.nodes[n].tick().unwrap(),
            10..=14 if !s.paused[n] => s.propose(n),
            15..=42 if !s.in_flight.is_empty() => {
                // deliver the message at a position picked by the byte (reordering)
                let (to, bytes) = s.in_flight.remove(b as usize % s.in_flight.len());
                s.deliver(to, bytes);
            }
            43..=46 if !s.in_flight.is_empty() => {
                let k = b as usize % s.in_flight.len();
                s.in_flight.remove(k);
            }
            47..=49 if !s.in_flight.is_empty() => {
                let k = b as usize % s.in_flight.len();
                let dup = s.in_flight[k].clone();
                s.in_flight.push(dup);
            }
            50..=55 => {
                // toggle one directed link: from n to one of the other two
                let to = (n + 1 + usize::from(b & 0x80 != 0)) % 3;
                s.cut[n][to] = !s.cut[n][to];
            }
            56..=58 => {
                s.paused[n] = !s.paused[n];
                if !s.paused[n] {
                    for bytes in std::mem::take(&mut s.held[n]) {
                        let _ = s.nodes[n].handle_incoming_bytes(&bytes);
                    }
                }
            }
            59 if !s.paused[n] => {
                // (refused at a follower, or once a StopSign is in the log)
                let next = 2 + u32::from(b & 3);
                let _ = s.nodes[n].reconfigure(next, vec![2, 3, u64::from(next) + 2], vec![b]);
            }
            _ => {}
        }
        s.collect();
        check(&mut s.nodes, &mut s.decided, &s.paused);
        if s.in_flight.len() > 4096 {
            s.in_flight.drain(..2048);
        }
    }
    heal_and_check_liveness(&mut s);
});

/// Restores every link and resumes every node, then runs the cluster in lock step.
fn heal_and_check_liveness(s: &mut Sim) {
    s.cut = [[false; 3]; 3];
    for n in 0..3 {
        s.paused[n] = false;
        for bytes in std::mem::take(&mut s.held[n]) {
            let _ = s.nodes[n].handle_incoming_bytes(&bytes);
        }
    }
    for n in 0..3 {
        for p in 1..=3u64 {
            if p != n as u64 + 1 {
                let _ = s.nodes[n].reconnected(p);
            }
        }
    }
    let healed_at = s.proposals;
    let mut step = |s: &mut Sim, t: u64| {
        for n in 0..3 {
            s.nodes[n].tick().unwrap();
        }
        s.propose((t % 3) as usize);
        s.collect();
        for (to, bytes) in std::mem::take(&mut s.in_flight) {
            s.deliver(to, bytes);
        }
        s.collect();
        check(&mut s.nodes, &mut s.decided, &s.paused);
    };
    // Messages from before the heal are delivered in the first steps.
    let bound = 5 * ET;
    let mut progressed = None;
    for t in 0..bound {
        step(s, t);
        let new_entry = s.decided.iter().any(|d| {
            d.entries
                .iter()
                .any(|e| u32::from_le_bytes(e[..4].try_into().unwrap()) > healed_at)
        });
        if new_entry || s.decided.iter().any(|d| d.stopsign.is_some()) {
            progressed = Some(t);
            break;
        }
    }
    assert!(
        progressed.is_some(),
        "nothing decided within {bound} ticks of the heal: {:?}",
        states(s)
    );
    // Then a stable leader: let the election settle for 2 ET, then no change for 20 ET.
    for t in 0..2 * ET {
        step(s, t);
    }
    let leader = leader_ballot(s);
    for t in 0..20 * ET {
        step(s, t);
        let now = leader_ballot(s);
        assert_eq!(now, leader, "the leader changed after the heal: {:?}", states(s));
    }
}

/// The ballot of the node that leads in the accept phase, if any.
fn leader_ballot(s: &Sim) -> Option<Ballot> {
    s.nodes
        .iter()
        .find(|n| n.is_accepting_leader())
        .and_then(|n| n.leader())
        .map(|l| l.1)
}

fn states(s: &Sim) -> Vec<String> {
    s.nodes.iter().map(|n| n.debug_state()).collect()
}

fn check(nodes: &mut [OmniPaxos], decided: &mut [Seen], paused: &[bool; 3]) {
    for (i, node) in nodes.iter_mut().enumerate() {
        if paused[i] {
            continue;
        }
        let seen = &mut decided[i];
        let d = node.decided_idx().unwrap();
        assert!(d >= seen.idx, "node {}: decided index went down", i + 1);
        if d > seen.idx {
            let mut e = Entries::new();
            let from = seen.entries.len() as u64;
            if from < d {
                node.read_decided_suffix(from, &mut e).unwrap();
            }
            seen.entries.extend(e.iter().map(|x| x.to_vec()));
            seen.idx = d;
        }
        match node.decided_stopsign().unwrap() {
            Some(ss) => {
                // The StopSign is the last decided slot, right after every decided entry.
                assert_eq!(seen.entries.len() as u64 + 1, d, "node {}", i + 1);
                if let Some(old) = &seen.stopsign {
                    assert_eq!(old, &ss, "node {}: the decided StopSign changed", i + 1);
                }
                seen.stopsign = Some(ss);
            }
            None => {
                assert!(
                    seen.stopsign.is_none(),
                    "node {}: StopSign undecided",
                    i + 1
                );
                assert_eq!(seen.entries.len() as u64, d, "node {}", i + 1);
            }
        }
    }
    for a in 0..3 {
        for b in 0..3 {
            let (x, y) = (&decided[a], &decided[b]);
            let n = x.entries.len().min(y.entries.len());
            assert_eq!(
                x.entries[..n],
                y.entries[..n],
                "nodes {} and {} disagree",
                a + 1,
                b + 1
            );
            if let Some(ss) = &x.stopsign {
                // Nobody decides an entry after the StopSign, nor another StopSign.
                assert!(y.entries.len() <= x.entries.len(), "entry after a StopSign");
                if let Some(other) = &y.stopsign {
                    assert_eq!(
                        ss,
                        other,
                        "nodes {} and {} decided different StopSigns",
                        a + 1,
                        b + 1
                    );
                    assert_eq!(x.idx, y.idx);
                }
            }
        }
    }
}
