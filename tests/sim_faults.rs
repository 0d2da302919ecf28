//! Lossy, duplicating and reordering networks, and random crashes: safety always (the
//! checkers run after every step), liveness where the network allows it.

mod common;

use common::{Cluster, NetConfig, ELECTION};

#[test]
fn twenty_percent_message_loss_stays_live() {
    for seed in 1..=3u64 {
        let mut c = Cluster::new(5, seed, |_| 0);
        c.net = NetConfig {
            drop: 0.2,
            ..NetConfig::default()
        };
        c.run(5 * ELECTION);
        // Proposals at every node (followers forward), 1000 in all.
        for i in 0..1000u64 {
            let p = 1 + i % 5;
            let _ = c.propose(p);
            if i % 5 == 4 {
                c.step();
            }
        }
        let t = c
            .run_until(200 * ELECTION, |c| c.max_decided() >= 990)
            .unwrap_or_else(|| panic!("seed {seed}: only {} of 1000 decided", c.max_decided()));
        println!("20% loss, seed {seed}: 990+ proposals decided {t} ticks after the last was made");
        c.run(20 * ELECTION);
        // Liveness is the claim here. Proposals can be lost when a leader is deposed before
        // deciding them (at-most-once across leader changes, as in every Paxos/Raft); they
        // must be few.
        let proposed: std::collections::HashSet<_> = c.appended.keys().cloned().collect();
        let decided = c.decided_payloads();
        let lost = proposed.difference(&decided).count();
        println!("20% loss, seed {seed}: {lost} of 1000 proposals lost to leader changes");
        assert!(lost <= 10, "{lost} proposals lost");
    }
}

#[test]
fn duplication_and_reordering_stay_safe() {
    for seed in 10..=59u64 {
        let mut c = Cluster::new(5, seed, |_| 0);
        c.net = NetConfig {
            drop: 0.05,
            duplicate: 0.2,
            min_delay: 1,
            max_delay: 6,
        };
        for round in 0..60u64 {
            for p in 1..=5 {
                let _ = c.propose(p);
            }
            c.run(3);
            // Now and then, crash a random node and bring it back later.
            if round % 15 == 7 {
                let victim = 1 + c.rng.below(5);
                c.crash_mid_step = Some(victim);
                c.step();
                c.run(2 * ELECTION);
                c.restart(victim);
            }
        }
        c.net = NetConfig::default();
        c.run(20 * ELECTION);
        assert!(c.max_decided() > 0, "seed {seed}: nothing decided");
        println!(
            "dup+reorder seed {seed}: {} entries decided, checkers held",
            c.max_decided()
        );
    }
}

#[test]
fn random_partitions_and_crashes_keep_logs_consistent() {
    for seed in 20..=99u64 {
        let mut c = Cluster::new(5, seed, |_| 0);
        c.net.max_delay = 3;
        for round in 0..40u64 {
            for p in c.alive() {
                let _ = c.propose(p);
            }
            c.run(5);
            match c.rng.below(6) {
                0 => {
                    let (a, b) = (1 + c.rng.below(5), 1 + c.rng.below(5));
                    if a != b {
                        c.cut_link(a, b);
                    }
                }
                1 => c.heal(),
                2 if round % 3 == 0 => {
                    let v = 1 + c.rng.below(5);
                    if c.is_alive(v) {
                        c.crash_mid_step = Some(v);
                        c.step();
                    } else {
                        c.restart(v);
                    }
                }
                _ => {}
            }
        }
        c.heal();
        for p in 1..=5 {
            if !c.is_alive(p) {
                c.restart(p);
            }
        }
        // After healing everything, the cluster makes progress and everyone catches up.
        let before = c.max_decided();
        c.elect(10 * ELECTION).expect("a leader after healing");
        // Let the election settle (servers whose ballots were raised during the partitions
        // may still take over once), then propose at the leader everyone agrees on.
        c.run(3 * ELECTION);
        c.elect(10 * ELECTION).expect("a leader after healing");
        let leader = c.agreed_leader().unwrap().pid;
        for _ in 0..50 {
            c.propose(leader).unwrap();
        }
        c.run_until(10 * ELECTION, |c| c.max_decided() >= before + 50)
            .unwrap_or_else(|| {
                let state: Vec<_> = (1..=5).map(|p| c.node(p).debug_state()).collect();
                panic!(
                    "seed {seed}: no progress after healing:\n{}",
                    state.join("\n")
                )
            });
        let target = c.max_decided();
        c.run_until(10 * ELECTION, |c| {
            (1..=5).all(|p| c.node(p).decided_idx().unwrap() >= target)
        })
        .unwrap_or_else(|| {
            let state: Vec<_> = (1..=5).map(|p| c.node(p).debug_state()).collect();
            panic!(
                "seed {seed}: not every node reached {target}:\n{}",
                state.join("\n")
            )
        });
    }
}

#[test]
fn dropped_forwards_are_resent_not_lost() {
    let mut c = Cluster::new(3, 77, |p| if p == 1 { 10 } else { 0 });
    c.elect(3 * ELECTION).expect("leader");
    assert_eq!(c.accepting_leader(), Some(1));
    // Drop every Sequence Paxos message from 2 to the leader for a while: its forwards vanish.
    c.cut_paxos.insert((2, 1));
    for _ in 0..20 {
        c.propose(2).unwrap();
    }
    c.run(ELECTION / 2);
    assert_eq!(c.max_decided(), 0);
    c.cut_paxos.clear();
    c.run_until(5 * ELECTION, |c| c.max_decided() >= 20)
        .expect("the forwarded proposals are re-sent and decided");
    assert_eq!(c.decided_payloads().len(), 20);
    assert_eq!(c.max_decided(), 20, "each proposal is decided exactly once");
}
