//! Reconfiguration with a StopSign, in simulated time: it is decided once, at the same index,
//! after every entry appended before it, on every node; nothing is appended after it; leader
//! crashes, partitions and recovery from storage do not change that. The cluster's checkers
//! (tests/common) also check after every step that every node that decided a StopSign
//! decided the same one at the same index, and that no entry is decided after it.

mod common;

use common::{Cluster, NetConfig, ELECTION};
use omnipaxos::{Error, LogEntry, NodeId, StopSign};

fn ss(next_config_id: u32, nodes: &[NodeId], metadata: &[u8]) -> StopSign {
    StopSign {
        next_config_id,
        nodes: nodes.to_vec(),
        metadata: metadata.to_vec(),
    }
}

fn propose_ss(c: &mut Cluster, at: NodeId, s: &StopSign) -> Result<(), Error> {
    c.node(at)
        .reconfigure(s.next_config_id, s.nodes.clone(), s.metadata.clone())
}

/// Runs until every live node has decided a StopSign; returns the ticks taken.
fn until_all_stopped(c: &mut Cluster, max: u64) -> u64 {
    c.run_until(max, |c| {
        c.alive()
            .into_iter()
            .all(|p| c.node(p).is_stopped().unwrap())
    })
    .unwrap_or_else(|| {
        let state: Vec<_> = c
            .alive()
            .into_iter()
            .map(|p| c.node(p).debug_state())
            .collect();
        panic!("not every node decided the StopSign:\n{}", state.join("\n"))
    })
}

/// Every live node: the decided StopSign is `want`, at index `idx`, right after `idx`
/// decided entries, and `read` shows it decided there.
fn assert_stopped_at(c: &mut Cluster, want: &StopSign, idx: u64) {
    for p in c.alive() {
        let node = c.node(p);
        assert_eq!(
            node.decided_stopsign().unwrap().as_ref(),
            Some(want),
            "node {p}"
        );
        assert_eq!(node.decided_idx().unwrap(), idx + 1, "node {p}");
        assert_eq!(
            node.read(idx).unwrap(),
            Some(LogEntry::StopSign(want.clone(), true)),
            "node {p}"
        );
        assert_eq!(
            node.read(idx + 1).unwrap(),
            None,
            "node {p}: nothing after it"
        );
        if idx > 0 {
            assert!(
                matches!(node.read(idx - 1).unwrap(), Some(LogEntry::Decided(_))),
                "node {p}: the entry before the StopSign is decided"
            );
        }
        // Range reads may end at the decided index (the StopSign's slot) and stop before
        // it; one slot further is out of range.
        let c0 = node.compacted_idx();
        let mut e = omnipaxos::Entries::new();
        node.read_entries(c0, idx + 1, &mut e).unwrap();
        assert_eq!(
            e.len() as u64,
            idx - c0,
            "node {p}: read_entries up to the StopSign"
        );
        let mut e = omnipaxos::Entries::new();
        node.read_decided_suffix(c0, &mut e).unwrap();
        assert_eq!(e.len() as u64, idx - c0, "node {p}: read_decided_suffix");
        assert!(matches!(
            node.read_entries(c0, idx + 2, &mut omnipaxos::Entries::new()),
            Err(Error::OutOfRange { .. })
        ));
    }
    assert_eq!(c.decided_stopsign.as_ref(), Some(&(idx, want.clone())));
    assert_eq!(
        c.max_decided(),
        idx,
        "every entry before the StopSign decided"
    );
}

/// Every live node refuses entries and a second StopSign.
fn assert_refuses_more(c: &mut Cluster) {
    for p in c.alive() {
        assert_eq!(c.propose(p), Err(Error::Stopped), "node {p}: append");
        let r = c.node(p).reconfigure(99, vec![1], vec![]);
        assert!(
            matches!(r, Err(Error::Stopped) | Err(Error::NotLeader { .. })),
            "node {p}: a second StopSign: {r:?}"
        );
    }
}

#[test]
fn stopsign_decided_on_every_node_after_every_earlier_entry() {
    for n in [3u64, 5] {
        let mut c = Cluster::new(n, 100 + n, |_| 0);
        c.elect(3 * ELECTION).expect("leader");
        let leader = c.accepting_leader().unwrap();
        for _ in 0..60 {
            c.propose(leader).unwrap();
        }
        c.step();
        // These stay in the leader's batch: the StopSign must follow them.
        for _ in 0..40 {
            c.propose(leader).unwrap();
        }
        let s = ss(8, &[4, 5, 6], b"new cluster");
        propose_ss(&mut c, leader, &s).unwrap();
        assert_eq!(c.propose(leader), Err(Error::Stopped), "append right after");
        assert_eq!(propose_ss(&mut c, leader, &s), Err(Error::Stopped), "twice");
        let t = until_all_stopped(&mut c, 5 * ELECTION);
        println!("{n} nodes: StopSign decided everywhere {t} ticks after it was proposed");
        assert_stopped_at(&mut c, &s, 100);
        // The 100 entries in the order they were appended at the leader.
        let mut by_seq: Vec<Vec<u8>> = c.appended.keys().cloned().collect();
        by_seq.sort_by_key(|p| u64::from_le_bytes(p[8..16].try_into().unwrap()));
        assert_eq!(c.chosen, by_seq);
        assert_refuses_more(&mut c);
        // It stays decided, and nothing moves.
        c.run(5 * ELECTION);
        assert_stopped_at(&mut c, &s, 100);
    }
}

#[test]
fn reconfigure_validates_its_arguments() {
    let mut c = Cluster::new(3, 5, |p| if p == 1 { 10 } else { 0 });
    // Nobody knows a leader yet.
    assert_eq!(
        c.node(2).reconfigure(8, vec![1, 2], vec![]),
        Err(Error::NotLeader { leader: None })
    );
    c.elect(3 * ELECTION).expect("leader");
    assert_eq!(c.accepting_leader(), Some(1));
    let invalid = |r: Result<(), Error>, what: &str| match r {
        Err(Error::InvalidArgument(m)) => {
            assert!(m.contains(what), "{m:?} should mention {what:?}")
        }
        other => panic!("expected InvalidArgument about {what}, got {other:?}"),
    };
    invalid(
        c.node(1).reconfigure(8, vec![], vec![]),
        "at least one node",
    );
    invalid(c.node(1).reconfigure(8, vec![4, 5, 4], vec![]), "node 4");
    invalid(c.node(1).reconfigure(8, vec![0, 5], vec![]), "pid 0");
    invalid(c.node(1).reconfigure(7, vec![4, 5], vec![]), "differ");
    invalid(
        c.node(1).reconfigure(8, vec![4], vec![0; 64 << 20]),
        "max_message_bytes",
    );
    // A follower refuses and names the leader; nothing was proposed anywhere.
    assert_eq!(
        c.node(2).reconfigure(8, vec![4], vec![]),
        Err(Error::NotLeader { leader: Some(1) })
    );
    c.propose(1).unwrap();
    c.propose(2).unwrap();
    c.run_until(3 * ELECTION, |c| c.max_decided() == 2)
        .expect("entries still decided");
    assert!(c.decided_stopsign.is_none());
    // Metadata may be empty, and the next configuration may share nodes with this one.
    let s = ss(8, &[3, 1], b"");
    propose_ss(&mut c, 1, &s).unwrap();
    until_all_stopped(&mut c, 5 * ELECTION);
    assert_stopped_at(&mut c, &s, 2);
}

#[test]
fn forwarded_entries_before_the_stopsign_are_decided_and_later_ones_refused() {
    let mut c = Cluster::new(3, 9, |p| if p == 1 { 10 } else { 0 });
    c.elect(3 * ELECTION).expect("leader");
    for _ in 0..30 {
        c.propose(2).unwrap();
        c.propose(3).unwrap();
    }
    c.run_until(3 * ELECTION, |c| c.max_decided() == 60)
        .expect("forwarded entries decided");
    // Forwards still in flight when the StopSign is proposed are refused by the leader
    // (never placed after the StopSign); appends at a follower fail once it has the
    // StopSign.
    for _ in 0..10 {
        c.propose(2).unwrap();
    }
    let s = ss(2, &[1, 2, 3, 4], b"add 4");
    propose_ss(&mut c, 1, &s).unwrap();
    until_all_stopped(&mut c, 5 * ELECTION);
    assert_stopped_at(&mut c, &s, 60);
    assert_refuses_more(&mut c);
    c.run(5 * ELECTION);
    assert_eq!(c.max_decided(), 60);
}

#[test]
fn leader_crash_after_followers_accepted_new_leader_finishes_the_stopsign() {
    for n in [3u64, 5] {
        let mut c = Cluster::new(n, 31 + n, |p| if p == 1 { 10 } else { 0 });
        c.elect(3 * ELECTION).expect("leader");
        assert_eq!(c.accepting_leader(), Some(1));
        for _ in 0..20 {
            c.propose(1).unwrap();
        }
        let s = ss(3, &[1, 2], b"shrink");
        propose_ss(&mut c, 1, &s).unwrap();
        // Step 1 sends AcceptDecide + AcceptStopSign; in step 2 the followers accept both
        // and answer. The leader crashes before it hears them: nothing is decided yet.
        c.run(2);
        assert_eq!(c.max_decided(), 0);
        assert!(c.decided_stopsign.is_none());
        c.crash(1);
        let t = until_all_stopped(&mut c, 10 * ELECTION);
        println!("{n} nodes: the new leader decided the StopSign {t} ticks after the crash");
        assert_stopped_at(&mut c, &s, 20);
        assert_refuses_more(&mut c);
        // The old leader comes back from its storage and learns that it is decided.
        c.restart(1);
        assert_eq!(
            c.propose(1),
            Err(Error::Stopped),
            "its log ends with the StopSign"
        );
        until_all_stopped(&mut c, 10 * ELECTION);
        assert_stopped_at(&mut c, &s, 20);
    }
}

#[test]
fn a_new_leader_without_the_stopsign_adopts_it_from_a_promise() {
    // Server 3 has every entry but not the StopSign (its Sequence Paxos link from the
    // leader is cut when it is proposed); server 2 has both. The StopSign is decided by
    // 1 and 2. Then 1 crashes and 3 takes over: the promise of 2 (same round, same number
    // of entries, plus the StopSign) is the more recent log, which 3 must adopt, or it
    // would decide an entry where the StopSign was decided.
    let mut c = Cluster::new(3, 3, |p| [0, 10, 0, 5][p as usize]);
    c.elect(3 * ELECTION).expect("leader");
    assert_eq!(c.accepting_leader(), Some(1));
    for _ in 0..10 {
        c.propose(1).unwrap();
    }
    c.run_until(3 * ELECTION, |c| {
        (1..=3).all(|p| c.node(p).decided_idx().unwrap() == 10)
    })
    .expect("decided everywhere");
    c.cut_paxos.insert((1, 3));
    let s = ss(6, &[2, 3], b"");
    propose_ss(&mut c, 1, &s).unwrap();
    c.run_until(2 * ELECTION, |c| {
        c.node(1).is_stopped().unwrap() && c.node(2).read(10).unwrap().is_some()
    })
    .expect("decided at the leader");
    assert_eq!(c.node(3).read(10).unwrap(), None, "3 lacks the StopSign");
    c.crash(1);
    c.cut_paxos.clear();
    c.run_until(10 * ELECTION, |c| c.accepting_leader().is_some())
        .expect("a new leader");
    assert_eq!(c.accepting_leader(), Some(3), "the case this test is about");
    assert_eq!(c.propose(3), Err(Error::Stopped));
    until_all_stopped(&mut c, 10 * ELECTION);
    assert_stopped_at(&mut c, &s, 10);
}

#[test]
fn a_stopsign_no_follower_got_is_replaced_after_a_leader_change() {
    let mut c = Cluster::new(3, 77, |p| if p == 1 { 10 } else { 0 });
    c.elect(3 * ELECTION).expect("leader");
    for _ in 0..10 {
        c.propose(1).unwrap();
    }
    c.run_until(2 * ELECTION, |c| c.max_decided() == 10)
        .expect("decided");
    // The leader proposes (and stores durably) a StopSign that never reaches anyone.
    c.cut_link(1, 2);
    c.cut_link(1, 3);
    let lost = ss(50, &[9], b"lost");
    propose_ss(&mut c, 1, &lost).unwrap();
    c.step();
    c.crash(1);
    c.heal();
    c.run_until(10 * ELECTION, |c| c.accepting_leader().is_some())
        .expect("a new leader");
    let leader = c.accepting_leader().unwrap();
    assert_ne!(leader, 1);
    // The new leader takes entries: the configuration was never stopped.
    for _ in 0..5 {
        c.propose(leader).unwrap();
    }
    // The old leader rejoins with its stale StopSign, which the new leader's log replaces.
    c.restart(1);
    let target = 15;
    c.run_until(10 * ELECTION, |c| {
        c.alive()
            .into_iter()
            .all(|p| c.node(p).decided_idx().unwrap() >= target)
    })
    .expect("every node decided the new entries");
    assert_eq!(c.max_decided(), 15);
    let leader = c.accepting_leader().expect("leader");
    let s = ss(51, &[1, 2, 3], b"kept");
    propose_ss(&mut c, leader, &s).unwrap();
    until_all_stopped(&mut c, 10 * ELECTION);
    assert_stopped_at(&mut c, &s, 15);
}

#[test]
fn a_stopsign_proposed_while_the_leader_prepares_follows_its_buffered_entries() {
    let mut c = Cluster::new(3, 4, |p| 10 - p as u32);
    c.elect(3 * ELECTION).expect("leader");
    assert_eq!(c.accepting_leader(), Some(1));
    c.propose(1).unwrap();
    c.run_until(2 * ELECTION, |c| c.max_decided() == 1)
        .expect("decided");
    c.crash(1);
    // Catch server 2 elected but still collecting promises.
    c.run_until(10 * ELECTION, |c| {
        c.node(2).leader().is_some_and(|(p, _)| p == 2) && !c.node(2).is_accepting_leader()
    })
    .expect("server 2 in its prepare phase");
    for _ in 0..3 {
        c.propose(2).unwrap(); // buffered until the accept phase
    }
    let s = ss(2, &[2, 3], b"");
    propose_ss(&mut c, 2, &s).unwrap();
    assert_eq!(c.propose(2), Err(Error::Stopped));
    until_all_stopped(&mut c, 10 * ELECTION);
    assert_stopped_at(&mut c, &s, 4);
}

/// How the isolated follower rejoins.
#[derive(Clone, Copy, Debug)]
enum Rejoin {
    /// The links just work again: the leader's re-sends (AcceptDecide, then AcceptStopSign).
    Silently,
    /// Both sides are told (`reconnected`): a new Prepare, Promise and AcceptSync.
    Reconnected,
    /// The follower also crashed meanwhile: it recovers from storage, so it takes nothing
    /// but an AcceptSync after a Prepare.
    AfterRestart,
}

#[test]
fn a_partitioned_follower_learns_the_stopsign_when_it_catches_up() {
    for rejoin in [Rejoin::Silently, Rejoin::Reconnected, Rejoin::AfterRestart] {
        let mut c = Cluster::new(5, 12, |p| if p == 1 { 10 } else { 0 });
        c.elect(3 * ELECTION).expect("leader");
        for p in 1..=4 {
            c.cut_link(5, p);
        }
        for _ in 0..30 {
            c.propose(1).unwrap();
        }
        let s = ss(9, &[1, 2, 3], b"without 4 and 5");
        propose_ss(&mut c, 1, &s).unwrap();
        c.run_until(5 * ELECTION, |c| {
            (1..=4).all(|p| c.node(p).is_stopped().unwrap())
        })
        .expect("the connected majority decides the StopSign");
        assert!(!c.node(5).is_stopped().unwrap());
        assert_eq!(c.node(5).decided_idx().unwrap(), 0);
        assert_eq!(
            c.node(5).read(0).unwrap(),
            None,
            "{rejoin:?}: node 5 has nothing"
        );
        match rejoin {
            Rejoin::Silently => c.cut.clear(),
            Rejoin::Reconnected => c.heal(),
            Rejoin::AfterRestart => {
                c.crash(5);
                c.restart(5);
                c.heal();
            }
        }
        until_all_stopped(&mut c, 10 * ELECTION);
        assert_stopped_at(&mut c, &s, 30);
        assert_eq!(c.propose(5), Err(Error::Stopped), "{rejoin:?}");
    }
}

#[test]
fn the_stopsign_survives_crashes_and_recovery_from_storage() {
    let mut c = Cluster::new(3, 21, |_| 0);
    c.elect(3 * ELECTION).expect("leader");
    let leader = c.accepting_leader().unwrap();
    for _ in 0..25 {
        c.propose(leader).unwrap();
    }
    let s = ss(4, &[7, 8, 9], &[0, 1, 2, 255]);
    propose_ss(&mut c, leader, &s).unwrap();
    until_all_stopped(&mut c, 5 * ELECTION);
    assert_stopped_at(&mut c, &s, 25);
    // One follower, then every node at once: each comes back with the StopSign in its log
    // (appends refused at once) and learns again that it is decided.
    let follower = (1..=3).find(|&p| p != leader).unwrap();
    c.crash(follower);
    c.run(ELECTION);
    c.restart(follower);
    assert_eq!(c.propose(follower), Err(Error::Stopped));
    until_all_stopped(&mut c, 10 * ELECTION);
    assert_stopped_at(&mut c, &s, 25);
    for p in 1..=3 {
        c.crash(p);
    }
    for p in 1..=3 {
        c.restart(p);
        assert_eq!(c.propose(p), Err(Error::Stopped), "node {p} after recovery");
        assert_eq!(
            c.node(p)
                .read(25)
                .unwrap()
                .map(|e| matches!(e, LogEntry::StopSign(x, _) if x == s)),
            Some(true),
            "node {p}: the StopSign is in its log after recovery"
        );
    }
    until_all_stopped(&mut c, 10 * ELECTION);
    assert_stopped_at(&mut c, &s, 25);
}

#[test]
fn lossy_network_and_crashes_still_decide_one_stopsign() {
    for seed in 1..=30u64 {
        let mut c = Cluster::new(5, seed, |_| 0);
        c.net = NetConfig {
            drop: 0.05,
            duplicate: 0.1,
            min_delay: 1,
            max_delay: 4,
        };
        let s = ss(2, &[1, 2, 3], &seed.to_le_bytes());
        let mut proposed_at = None;
        for round in 0..80u64 {
            for p in c.alive() {
                let _ = c.propose(p);
            }
            c.run(2);
            if round == 10 + seed % 20 {
                let v = 1 + c.rng.below(5);
                c.crash_mid_step = Some(v);
                c.step();
                c.run(ELECTION);
                c.restart(v);
            }
            // From round 20 on, keep proposing the StopSign at whoever leads until it is
            // in a leader's log (a proposal can be lost with its leader).
            if round >= 20 {
                if let Some(l) = c.accepting_leader() {
                    match propose_ss(&mut c, l, &s) {
                        Ok(()) if proposed_at.is_none() => {
                            proposed_at = Some(round);
                            if seed % 2 == 0 {
                                // The leader crashes in the middle of the reconfiguration.
                                c.run(seed % 4);
                                c.crash_mid_step = Some(l);
                                c.step();
                                c.run(ELECTION);
                                c.restart(l);
                            }
                        }
                        Ok(()) => {}
                        Err(Error::Stopped) => {}
                        Err(e) => panic!("seed {seed}: {e}"),
                    }
                }
            }
        }
        assert!(proposed_at.is_some(), "seed {seed}: never proposed");
        c.net = NetConfig::default();
        for p in 1..=5 {
            if !c.is_alive(p) {
                c.restart(p);
            }
        }
        let mut done = false;
        for _ in 0..20 {
            if c.run_until(10 * ELECTION, |c| {
                (1..=5).all(|p| c.node(p).is_stopped().unwrap())
            })
            .is_some()
            {
                done = true;
                break;
            }
            // The StopSign was lost with a deposed leader: propose it again.
            if let Some(l) = c.accepting_leader() {
                let _ = propose_ss(&mut c, l, &s);
            }
        }
        assert!(done, "seed {seed}: the StopSign was not decided everywhere");
        let (idx, got) = c.decided_stopsign.clone().unwrap();
        assert_eq!(got, s);
        assert_stopped_at(&mut c, &s, idx);
        println!("seed {seed}: StopSign decided at {idx}");
    }
}
