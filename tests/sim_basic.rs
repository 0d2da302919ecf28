//! Leader election, replication, leader and follower crashes, in simulated time.

mod common;

use common::{Cluster, ELECTION};

/// Appends `count` entries at the leader in rounds of `per_tick`, and runs until all are
/// decided; returns the ticks taken.
fn replicate(c: &mut Cluster, count: u64, per_tick: u64, max_ticks: u64) -> u64 {
    let target = c.max_decided() + count;
    let mut proposed = 0;
    let start = c.now;
    while c.max_decided() < target {
        assert!(
            c.now - start < max_ticks,
            "only {} of {count} decided",
            c.max_decided()
        );
        if proposed < count {
            let leader = c.accepting_leader().expect("a leader");
            for _ in 0..per_tick.min(count - proposed) {
                c.propose(leader).expect("append at the leader");
                proposed += 1;
            }
        }
        c.step();
    }
    c.now - start
}

fn all_nodes_decided(c: &mut Cluster, idx: u64, max: u64) {
    let ok = c.run_until(max, |c| {
        c.alive()
            .into_iter()
            .all(|p| c.node(p).decided_idx().unwrap() >= idx)
    });
    assert!(ok.is_some(), "not every node decided {idx}");
}

#[test]
fn leader_within_three_election_timeouts_and_10k_entries_on_3_5_7_nodes() {
    for n in [3u64, 5, 7] {
        let mut c = Cluster::new(n, n, |_| 0);
        let t = c
            .elect(3 * ELECTION)
            .unwrap_or_else(|| panic!("no leader on {n} nodes"));
        println!(
            "{n} nodes: leader after {t} ticks ({:.1} election timeouts)",
            t as f64 / ELECTION as f64
        );
        let ticks = replicate(&mut c, 10_000, 100, 2_000);
        println!("{n} nodes: 10,000 entries decided in {ticks} ticks");
        all_nodes_decided(&mut c, 10_000, 50);
        assert_eq!(c.chosen.len(), 10_000);
    }
}

#[test]
fn leader_priority_decides_the_first_leader() {
    let mut c = Cluster::new(5, 1, |p| if p == 2 { 10 } else { 0 });
    c.elect(3 * ELECTION).expect("leader");
    assert_eq!(c.agreed_leader().unwrap().pid, 2);
}

#[test]
fn leader_crash_new_leader_no_decided_entry_lost() {
    for n in [3u64, 5] {
        let mut c = Cluster::new(n, 42 + n, |_| 0);
        c.elect(3 * ELECTION).expect("leader");
        replicate(&mut c, 500, 50, 500);
        let old = c.accepting_leader().unwrap();
        let decided_before = c.max_decided();
        c.crash(old);
        let t = c
            .run_until(6 * ELECTION, |c| {
                c.agreed_leader().is_some_and(|b| b.pid != old)
                    && c.accepting_leader().is_some_and(|p| p != old)
            })
            .expect("a new leader");
        println!("{n} nodes: new leader {t} ticks after the leader crashed");
        assert!(t <= 3 * ELECTION, "new leader took {t} ticks");
        assert!(c.max_decided() >= decided_before);
        replicate(&mut c, 500, 50, 500);
        // The old leader comes back and catches up.
        c.restart(old);
        let target = c.max_decided();
        all_nodes_decided(&mut c, target, 10 * ELECTION);
    }
}

#[test]
fn follower_crash_and_fail_recovery_catches_up() {
    let mut c = Cluster::new(3, 5, |_| 0);
    c.elect(3 * ELECTION).expect("leader");
    replicate(&mut c, 300, 30, 300);
    let leader = c.accepting_leader().unwrap();
    let follower = (1..=3).find(|&p| p != leader).unwrap();
    c.crash(follower);
    replicate(&mut c, 1000, 100, 500);
    c.restart(follower);
    let target = c.max_decided();
    all_nodes_decided(&mut c, target, 10 * ELECTION);
    // And it keeps up with new entries.
    replicate(&mut c, 200, 50, 300);
    let target = c.max_decided();
    all_nodes_decided(&mut c, target, 5 * ELECTION);
}

#[test]
fn whole_cluster_crash_and_recovery_keeps_the_decided_log() {
    let mut c = Cluster::new(3, 9, |_| 0);
    c.elect(3 * ELECTION).expect("leader");
    replicate(&mut c, 400, 40, 400);
    let decided = c.max_decided();
    for p in 1..=3 {
        c.crash(p);
    }
    for p in 1..=3 {
        c.restart(p);
    }
    c.elect(6 * ELECTION).expect("leader after a full restart");
    replicate(&mut c, 100, 10, 300);
    assert!(c.max_decided() >= decided + 100);
}

#[test]
fn proposals_at_followers_are_forwarded_and_decided() {
    let mut c = Cluster::new(3, 11, |_| 0);
    c.elect(3 * ELECTION).expect("leader");
    let leader = c.accepting_leader().unwrap();
    for p in (1..=3).filter(|&p| p != leader) {
        for _ in 0..100 {
            c.propose(p).unwrap();
        }
    }
    c.run_until(5 * ELECTION, |c| c.max_decided() >= 200)
        .expect("forwarded proposals decided");
    assert_eq!(
        c.decided_payloads().len(),
        200,
        "each forwarded proposal decided once"
    );
}

#[test]
fn proposals_without_a_leader_are_buffered_then_refused() {
    let mut c = Cluster::new(3, 12, |_| 0);
    // No ticks yet: nobody knows a leader.
    let mut config = c.configs[&1].clone();
    config.buffer_size = 5;
    let mut node =
        omnipaxos::OmniPaxos::new(config, Box::new(omnipaxos::MemoryStorage::new())).unwrap();
    for i in 0..5u8 {
        node.append(&[i]).unwrap();
    }
    match node.append(&[9]) {
        Err(omnipaxos::Error::BufferFull { capacity: 5 }) => {}
        other => panic!("expected BufferFull, got {other:?}"),
    }
    // In the cluster, proposals made before the election are decided after it.
    for _ in 0..10 {
        c.propose(1).unwrap();
    }
    c.elect(3 * ELECTION).expect("leader");
    c.run_until(5 * ELECTION, |c| c.max_decided() >= 10)
        .expect("buffered proposals decided");
}

#[test]
fn a_leader_cut_off_from_its_followers_refuses_proposals_after_buffer_size() {
    let mut c = Cluster::with_config(
        3,
        13,
        |p| if p == 1 { 10 } else { 0 },
        |cfg| cfg.buffer_size = 50,
    );
    c.elect(3 * ELECTION).expect("leader");
    assert_eq!(c.accepting_leader(), Some(1));
    c.cut_link(1, 2);
    c.cut_link(1, 3);
    let mut accepted = 0;
    let refused = loop {
        match c.propose(1) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        if accepted % 10 == 0 {
            c.step();
        }
        assert!(
            accepted <= 50,
            "the cut-off leader kept accepting proposals"
        );
    };
    assert!(matches!(
        refused,
        omnipaxos::Error::BufferFull { capacity: 50 }
    ));
    // The others elect a new leader and carry on.
    c.run_until(6 * ELECTION, |c| {
        c.agreed_leader()
            .is_some_and(|b| b.pid != 1 && c.node(b.pid).is_accepting_leader())
    })
    .expect("a new leader among 2 and 3");
}

#[test]
fn trim_compacts_every_log_and_replication_goes_on() {
    let mut c = Cluster::new(3, 21, |p| if p == 1 { 10 } else { 0 });
    c.elect(3 * ELECTION).expect("leader");
    replicate(&mut c, 300, 30, 300);
    all_nodes_decided(&mut c, 300, 5 * ELECTION);
    c.run(ELECTION); // let every follower's Accepted reach the leader
                     // Only the leader trims, and not past what every server has.
    assert!(matches!(
        c.node(2).trim(None),
        Err(omnipaxos::Error::NotLeader { leader: Some(1) })
    ));
    assert!(matches!(
        c.node(1).trim(Some(10_000)),
        Err(omnipaxos::Error::InvalidArgument(_))
    ));
    c.node(1).trim(Some(200)).expect("trim at the leader");
    c.run(2);
    for p in 1..=3 {
        let node = c.node(p);
        assert_eq!(node.compacted_idx(), 200, "node {p}");
        assert_eq!(node.read(5).unwrap(), Some(omnipaxos::LogEntry::Trimmed));
        assert!(matches!(
            node.read(250).unwrap(),
            Some(omnipaxos::LogEntry::Decided(_))
        ));
        assert!(node
            .read_entries(100, 250, &mut omnipaxos::Entries::new())
            .is_err());
    }
    // Replication continues, and a follower that crashes and recovers catches up.
    c.crash(3);
    replicate(&mut c, 200, 20, 300);
    c.restart(3);
    let target = c.max_decided();
    all_nodes_decided(&mut c, target, 10 * ELECTION);
    c.run(ELECTION);
    c.node(1)
        .trim(None)
        .expect("trim everything decided everywhere");
    c.run(2);
    for p in 1..=3 {
        assert!(c.node(p).compacted_idx() >= 500, "node {p}");
    }
}

#[test]
fn leader_sends_accepts_before_its_own_commit_and_decides_after_it() {
    use omnipaxos::messages::{Body, PaxosMessage};
    let mut c = Cluster::new(3, 5, |_| 0);
    c.elect(3 * ELECTION).expect("a leader");
    let leader = c.accepting_leader().expect("an accepting leader");
    c.run(5);
    let storage = c.storages[&leader].clone();
    let decided = c.node(leader).decided_idx().unwrap();
    let before = storage.commits();
    c.propose(leader).unwrap();
    let node = c.node(leader);
    let mut out = Vec::new();
    node.take_outgoing(&mut out).unwrap();
    let accepts = out
        .iter()
        .filter(|m| matches!(m.body, Body::Paxos(PaxosMessage::AcceptDecide { .. })))
        .count();
    assert_eq!(accepts, 2, "one AcceptDecide per follower: {out:?}");
    assert_eq!(
        storage.commits(),
        before,
        "sent before the leader's own commit"
    );
    out.clear();
    node.take_outgoing(&mut out).unwrap();
    assert_eq!(storage.commits(), before + 1, "the next call commits");
    assert!(out.is_empty(), "nothing else to send yet: {out:?}");
    // The followers' Accepted (re-sent by the cluster's own delivery) decide the entry.
    all_nodes_decided(&mut c, decided + 1, 50);
}
