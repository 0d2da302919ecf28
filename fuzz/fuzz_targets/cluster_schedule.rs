//! The fuzzer as the network and the clock of a 3-node cluster: each input byte is one
//! step (tick a node, append at a node, deliver, drop, duplicate or reorder a message in
//! flight). After every step the decided logs must be prefixes of one another (agreement)
//! and a node's decided index must never go down.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipaxos::{wire, Config, Entries, MemoryStorage, OmniPaxos};

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
    let mut decided: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
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

fn check(nodes: &mut [OmniPaxos], decided: &mut [Vec<Vec<u8>>]) {
    for (i, node) in nodes.iter_mut().enumerate() {
        let d = node.decided_idx().unwrap() as usize;
        assert!(
            d >= decided[i].len(),
            "node {}: decided index went down",
            i + 1
        );
        if d > decided[i].len() {
            let mut e = Entries::new();
            node.read_decided_suffix(decided[i].len() as u64, &mut e)
                .unwrap();
            decided[i].extend(e.iter().map(|x| x.to_vec()));
        }
    }
    for a in 0..3 {
        for b in 0..3 {
            let n = decided[a].len().min(decided[b].len());
            assert_eq!(
                decided[a][..n],
                decided[b][..n],
                "nodes {} and {} disagree",
                a + 1,
                b + 1
            );
        }
    }
}
