//! The fuzzer as the network and the clock of a 3-node cluster: each input byte is one
//! step (tick a node, append at a node, deliver, drop, duplicate or reorder a message in
//! flight, or propose a reconfiguration). After every step the decided logs must be
//! prefixes of one another (agreement), a node's decided index must never go down, and a
//! decided StopSign must be the same on every node that decided one, at the same index,
//! with no entry decided after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipaxos::{wire, Config, Entries, MemoryStorage, OmniPaxos, StopSign};

/// What one node has decided so far.
#[derive(Default)]
struct Seen {
    idx: u64,
    entries: Vec<Vec<u8>>,
    stopsign: Option<StopSign>,
}

fuzz_target!(|data: &[u8]| {
    let mut nodes: Vec<OmniPaxos> = (1..=3u64)
        .map(|pid| {
            let config = Config {
                pid,
                peers: (1..=3).filter(|&p| p != pid).collect(),
                election_tick_timeout: 3,
                resend_tick_timeout: 2,
                buffer_size: 64,
                batch_size: 4,
                ..Config::default()
            };
            OmniPaxos::with_session(config, Box::new(MemoryStorage::new()), pid).unwrap()
        })
        .collect();
    let mut in_flight: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut decided: Vec<Seen> = (0..3).map(|_| Seen::default()).collect();
    let mut proposals = 0u32;
    let mut msgs = Vec::new();
    for &b in data {
        let n = (b % 3) as usize;
        match b >> 2 {
            0..=9 => nodes[n].tick().unwrap(),
            10..=14 => {
                proposals += 1;
                let _ = nodes[n].append(&proposals.to_le_bytes());
            }
            15..=44 if !in_flight.is_empty() => {
                // deliver the message at a position picked by the byte (reordering)
                let (to, bytes) = in_flight.remove(b as usize % in_flight.len());
                let _ = nodes[to].handle_incoming_bytes(&bytes);
            }
            45..=49 if !in_flight.is_empty() => {
                let k = b as usize % in_flight.len();
                in_flight.remove(k);
            }
            50..=52 if !in_flight.is_empty() => {
                let k = b as usize % in_flight.len();
                let dup = in_flight[k].clone();
                in_flight.push(dup);
            }
            53 => {
                // (refused at a follower, or once a StopSign is in the log)
                let next = 2 + u32::from(b & 3);
                let _ = nodes[n].reconfigure(next, vec![2, 3, u64::from(next) + 2], vec![b]);
            }
            _ => {}
        }
        for node in nodes.iter_mut() {
            msgs.clear();
            node.take_outgoing(&mut msgs).unwrap();
            for m in msgs.drain(..) {
                let mut bytes = Vec::new();
                wire::encode(1, &m, &mut bytes);
                in_flight.push((m.to as usize - 1, bytes));
            }
        }
        check(&mut nodes, &mut decided);
        if in_flight.len() > 4096 {
            in_flight.drain(..2048);
        }
    }
});

fn check(nodes: &mut [OmniPaxos], decided: &mut [Seen]) {
    for (i, node) in nodes.iter_mut().enumerate() {
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
