//! Issue 13: a server that fell far behind catches up, and no message ever exceeds
//! `max_message_bytes` (the simulated network asserts it for every message sent). Small
//! limits (4 KiB) so that every protocol path must cut its messages: catch-up after a long
//! partition, a leader change in the middle of it, a recovering leader that must pull a
//! large suffix out of the promises, crashes during catch-up, a lossy network, and a
//! healthy cluster whose batches outgrow one message.

mod common;

use std::path::{Path, PathBuf};

use common::{Cluster, NetConfig, ELECTION};
use omnipaxos::{Config, Entries, NodeId, OmniPaxos, StorageConfig, SyncPolicy};

const SMALL: usize = 4096;

/// Appends a unique payload of `size` bytes (at least 16) at `pid`; records it for the
/// checkers.
fn propose_sized(c: &mut Cluster, pid: NodeId, size: usize, k: &mut u64) -> bool {
    let mut p = Vec::with_capacity(size.max(16));
    p.extend_from_slice(&pid.to_le_bytes());
    p.extend_from_slice(&(*k | 1 << 63).to_le_bytes());
    *k += 1;
    p.resize(size.max(16), (*k % 251) as u8);
    let now = c.now;
    let ok = c.node(pid).append(&p).is_ok();
    if ok {
        c.appended.insert(p, now);
    }
    ok
}

/// A size in 16..=`max` that varies from entry to entry.
fn size_of(k: u64, max: usize) -> usize {
    16 + ((k * 7919) % (max as u64 - 15)) as usize
}

fn small_cluster(n: u64, seed: u64, priority: impl Fn(NodeId) -> u32) -> Cluster {
    Cluster::with_config(n, seed, priority, |c| c.max_message_bytes = SMALL)
}

/// Proposes `count` entries of varying sizes (up to `max_size`) at the leader `leader`,
/// stepping so that the followers in reach keep up, until all are decided by `quorum`.
fn load(c: &mut Cluster, leader: NodeId, count: u64, max_size: usize, k: &mut u64) {
    let target = c.max_decided() + count;
    let mut sent = 0;
    while sent < count {
        for _ in 0..50 {
            if sent < count && propose_sized(c, leader, size_of(*k, max_size), k) {
                sent += 1;
            }
        }
        c.step();
    }
    if c.run_until(100 * ELECTION, |c| c.max_decided() >= target)
        .is_none()
    {
        for p in c.alive() {
            println!("{}", c.node(p).debug_state());
            c.node(p).drain_log(|l| println!("  {p}: {l}"));
        }
        panic!("only {} of {target} decided", c.max_decided());
    }
}

fn decided(c: &mut Cluster, pid: NodeId) -> u64 {
    c.node(pid).decided_idx().unwrap()
}

#[test]
fn catch_up_after_a_long_partition() {
    let mut c = small_cluster(3, 1, |p| if p == 1 { 10 } else { 1 });
    c.elect(20 * ELECTION).expect("elected");
    assert_eq!(c.accepting_leader(), Some(1));
    c.cut_link(3, 1);
    c.cut_link(3, 2);
    let mut k = 0;
    // Entries of 16 B to 2 KiB: about 5 MB in all, far more than one 4 KiB message.
    load(&mut c, 1, 5000, 2048, &mut k);
    let target = decided(&mut c, 1);
    assert_eq!(decided(&mut c, 3), 0);
    let sent_before = c.delivered;
    c.heal();
    let t = c
        .run_until(2000, |c| decided(c, 3) >= target)
        .unwrap_or_else(|| panic!("server 3 only reached {} of {target}", decided(&mut c, 3)));
    println!(
        "server 3 caught up {target} entries in {t} ticks, {} messages delivered",
        c.delivered - sent_before
    );
    // And it keeps up with new entries afterwards.
    load(&mut c, 1, 500, 2048, &mut k);
    let target = decided(&mut c, 1);
    c.run_until(200, |c| decided(c, 3) >= target)
        .expect("server 3 follows new entries");
}

#[test]
fn leader_change_in_the_middle_of_a_catch_up() {
    for seed in 1..=4u64 {
        // Server 3 has the second priority: when server 1 goes, it may be the one elected
        // while it is still behind (it must then pull the log out of server 2's promise).
        let prio = move |p: NodeId| match (seed % 2, p) {
            (_, 1) => 10,
            (0, 3) => 5,
            _ => 1,
        };
        let mut c = small_cluster(3, seed, prio);
        c.elect(20 * ELECTION).expect("elected");
        c.cut_link(3, 1);
        c.cut_link(3, 2);
        let mut k = 0;
        load(&mut c, 1, 4000, 3000, &mut k);
        let target = decided(&mut c, 1);
        c.heal();
        c.run_until(2000, |c| decided(c, 3) >= target / 5)
            .expect("catch-up started");
        let mid = decided(&mut c, 3);
        assert!(
            mid < target,
            "seed {seed}: caught up before the leader change"
        );
        c.crash(1);
        let t = c
            .run_until(3000, |c| {
                decided(c, 3) >= target && decided(c, 2) >= target && c.accepting_leader().is_some()
            })
            .unwrap_or_else(|| {
                panic!(
                    "seed {seed}: after the leader change server 3 reached {} of {target}",
                    decided(&mut c, 3)
                )
            });
        let leader = c.accepting_leader().unwrap();
        println!("seed {seed}: server 3 at {mid}/{target} when leader 1 crashed; new leader {leader}; caught up {t} ticks later");
        // The old leader comes back and is caught up too; the cluster takes new entries.
        c.restart(1);
        load(&mut c, leader, 300, 1500, &mut k);
        let target = c.max_decided();
        c.run_until(3000, |c| (1..=3).all(|p| decided(c, p) >= target))
            .unwrap_or_else(|| panic!("seed {seed}: not every server reached {target}"));
    }
}

/// Three servers with priorities 1 > 3 > 2, server 1 leading; server 3 is cut off while
/// `entries` entries of up to 1.5 KB are loaded at server 1. Returns the cluster (still
/// partitioned) and the proposal counter.
fn server_3_left_behind(seed: u64, entries: u64) -> (Cluster, u64) {
    let mut c = small_cluster(3, seed, |p| match p {
        1 => 10,
        3 => 5,
        _ => 1,
    });
    c.elect(20 * ELECTION).expect("elected");
    c.cut_link(3, 1);
    c.cut_link(3, 2);
    let mut k = 0;
    load(&mut c, 1, entries, 1500, &mut k);
    (c, k)
}

#[test]
fn a_recovering_leader_collects_a_large_suffix() {
    // Server 3 is cut off while servers 1 and 2 accept ~1.5 MB; then server 1 dies and
    // server 3 (next priority) becomes leader with an empty log: the most recent log
    // among the promises is server 2's, whose suffix takes hundreds of 4 KiB messages.
    // Seeds 4-9 pull it over a lossy, duplicating, reordering network.
    for seed in 1..=9u64 {
        let (mut c, mut k) = server_3_left_behind(seed, 2000);
        // Entries accepted by server 2 but maybe not decided yet: server 1 crashes with
        // its last batch in flight.
        for _ in 0..40 {
            propose_sized(&mut c, 1, size_of(k, 1500), &mut k);
        }
        c.step();
        c.crash(1);
        let chosen = c.max_decided();
        if seed > 3 {
            c.net = NetConfig {
                drop: 0.05,
                duplicate: 0.1,
                min_delay: 1,
                max_delay: 3,
            };
        }
        c.heal();
        let t = c
            .run_until(5000, |c| {
                // Over a lossy network the election may pick server 2 (it then catches
                // server 3 up instead).
                let leader = c.accepting_leader();
                (leader == Some(3) || (seed > 3 && leader.is_some())) && decided(c, 3) >= chosen
            })
            .unwrap_or_else(|| {
                for p in c.alive() {
                    println!("{}", c.node(p).debug_state());
                    c.node(p).drain_log(|l| println!("  {p}: {l}"));
                }
                panic!(
                    "seed {seed}: server 3 leads? {:?}, decided {} of {chosen}",
                    c.accepting_leader(),
                    decided(&mut c, 3)
                )
            });
        let leader = c.accepting_leader().unwrap();
        println!(
            "seed {seed}: server {leader} leads, server 3 has the whole log ({} entries) after {t} ticks",
            c.node(3).decided_idx().unwrap()
        );
        // It replicates new entries from there, and server 1 comes back and catches up.
        load(&mut c, leader, 200, 1500, &mut k);
        c.restart(1);
        let target = c.max_decided();
        c.run_until(3000, |c| (1..=3).all(|p| decided(c, p) >= target))
            .unwrap_or_else(|| panic!("seed {seed}: not every server reached {target}"));
    }
}

#[test]
fn a_promiser_crashing_while_its_suffix_is_pulled() {
    // Like above, but server 2 (the only holder of the most recent log besides the dead
    // server 1) crashes while server 3 pulls its suffix, and restarts later: server 3
    // collects promises again and finishes.
    let mut interrupted = 0;
    for seed in 1..=3u64 {
        let (mut c, _) = server_3_left_behind(seed, 3000);
        c.crash(1);
        let chosen = c.max_decided();
        c.heal();
        // Let server 3 be elected and start pulling, then crash server 2 for a while.
        c.run_until(3000, |c| c.node(3).leader().map(|l| l.0) == Some(3))
            .expect("server 3 elected");
        c.run(seed);
        c.crash(2);
        c.run(6 * ELECTION);
        let mut restarted = false;
        c.node(3)
            .drain_log(|l| restarted |= l.contains("collecting promises again"));
        println!("seed {seed}: pull interrupted and prepare restarted: {restarted}");
        interrupted += u32::from(restarted);
        c.restart(2);
        c.run_until(5000, |c| {
            c.accepting_leader().is_some() && decided(c, 3) >= chosen && decided(c, 2) >= chosen
        })
        .unwrap_or_else(|| {
            panic!(
                "seed {seed}: server 3 decided {} of {chosen}",
                decided(&mut c, 3)
            )
        });
    }
    assert!(
        interrupted > 0,
        "no seed crashed the promiser in the middle of a pull"
    );
}

#[test]
fn crashes_during_catch_up_lose_uncommitted_writes() {
    for seed in 1..=4u64 {
        let mut c = small_cluster(3, seed, |p| if p == 1 { 10 } else { 1 });
        c.elect(20 * ELECTION).expect("elected");
        c.cut_link(3, 1);
        c.cut_link(3, 2);
        let mut k = 0;
        load(&mut c, 1, 4000, 3000, &mut k);
        let target = decided(&mut c, 1);
        c.heal();
        // Crash server 3 in the middle of a step (its uncommitted chunk is lost or partly
        // kept) each time it has caught up another sixth; once, crash the leader as well.
        for round in 0..5u64 {
            let mark = target * (round + 1) / 7;
            c.run_until(3000, |c| decided(c, 3) >= mark)
                .unwrap_or_else(|| panic!("seed {seed} round {round}: stuck below {mark}"));
            let wait = c.rng.below(3);
            c.run(wait);
            assert!(
                decided(&mut c, 3) < target,
                "seed {seed}: caught up too early"
            );
            c.crash_mid_step = Some(3);
            c.step();
            if round == 2 {
                c.crash(1);
            }
            c.run(ELECTION);
            c.restart(3);
            if round == 3 {
                c.restart(1);
            }
        }
        let t = c
            .run_until(5000, |c| {
                (1..=3).all(|p| c.is_alive(p)) && (1..=3).all(|p| decided(c, p) >= target)
            })
            .unwrap_or_else(|| {
                panic!(
                    "seed {seed}: server 3 reached {} of {target}",
                    decided(&mut c, 3)
                )
            });
        println!("seed {seed}: every server caught up {t} ticks after the last crash");
    }
}

#[test]
fn catch_up_over_a_lossy_duplicating_reordering_network() {
    for seed in 1..=12u64 {
        let mut c = small_cluster(3, seed, |_| 0);
        c.elect(40 * ELECTION).expect("elected");
        let leader = c.accepting_leader().expect("leader");
        let behind = if leader == 3 { 2 } else { 3 };
        for p in 1..=3 {
            if p != behind {
                c.cut_link(behind, p);
            }
        }
        let mut k = 0;
        load(&mut c, leader, 1500, 1000, &mut k);
        c.net = NetConfig {
            drop: 0.05,
            duplicate: 0.1,
            min_delay: 1,
            max_delay: 4,
        };
        c.heal();
        let target = c.max_decided();
        let t = c
            .run_until(8000, |c| c.is_alive(behind) && decided(c, behind) >= target)
            .unwrap_or_else(|| {
                panic!(
                    "seed {seed}: server {behind} reached {} of {target}",
                    decided(&mut c, behind)
                )
            });
        println!("seed {seed}: server {behind} caught up {target} entries in {t} ticks over a lossy network");
    }
}

#[test]
fn five_servers_with_1kib_entries_and_a_64kib_limit_all_decide() {
    // The second scenario: batch_size 1000 of 1 KiB entries is 1 MB per batch,
    // 16 times the limit. Batches are cut by bytes, every server decides everything.
    let mut c = Cluster::with_config(
        5,
        3,
        |p| if p == 1 { 10 } else { 1 },
        |c| {
            c.max_message_bytes = 64 << 10;
        },
    );
    c.elect(20 * ELECTION).expect("elected");
    let mut k = 0;
    for _ in 0..10 {
        for _ in 0..1000 {
            assert!(propose_sized(&mut c, 1, 1024, &mut k));
        }
        c.step();
    }
    let target = 10_000;
    let t = c
        .run_until(1000, |c| (1..=5).all(|p| decided(c, p) >= target))
        .expect("every server decides every entry");
    println!("5 servers decided 10,000 1 KiB entries within {t} ticks");
}

#[test]
fn an_entry_that_cannot_fit_in_a_message_is_refused() {
    let mut c = small_cluster(3, 1, |p| if p == 1 { 10 } else { 1 });
    c.elect(20 * ELECTION).expect("elected");
    let max = omnipaxos::wire::max_entry_len(SMALL);
    assert!(max > SMALL - 200 && max < SMALL - 128);
    for pid in 1..=3 {
        let err = c.node(pid).append(&vec![1u8; max + 1]).unwrap_err();
        assert!(
            matches!(err, omnipaxos::Error::InvalidArgument(_)),
            "{err:?}"
        );
    }
    // The largest that fits goes through, alone in its messages, at the leader and
    // forwarded from a follower.
    let mut k = 0;
    assert!(propose_sized(&mut c, 1, max, &mut k));
    assert!(propose_sized(&mut c, 2, max, &mut k));
    assert!(propose_sized(&mut c, 3, max, &mut k));
    c.run_until(100, |c| (1..=3).all(|p| decided(c, p) >= 3))
        .expect("the largest entries are decided");
}

// ---------------------------------------------------------------------------------------
// On real persistent storage: a catch-up interrupted by crashes (the process's state is
// dropped, the files stay).

fn disk_node(pid: NodeId, dir: &Path, session: u64, recover: bool) -> OmniPaxos {
    let config = Config {
        config_id: 4,
        pid,
        peers: (1..=3).filter(|&p| p != pid).collect(),
        leader_priority: if pid == 1 { 10 } else { 1 },
        election_tick_timeout: 10,
        resend_tick_timeout: 3,
        max_message_bytes: SMALL,
        storage: StorageConfig::Persistent {
            path: dir.to_path_buf(),
            sync: SyncPolicy::Never,
            segment_bytes: 1 << 16,
        },
        ..Config::default()
    };
    let storage = omnipaxos::storage::open(&config.storage).expect("open storage");
    let mut node = OmniPaxos::with_session(config, storage, session).expect("node");
    if recover {
        node.fail_recovery().expect("fail_recovery");
    }
    node
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn catch_up_with_crashes_on_persistent_storage() {
    let root = Dir(std::env::temp_dir().join(format!("opx-catchup-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&root.0);
    let dirs: Vec<PathBuf> = (1..=3).map(|p| root.0.join(format!("n{p}"))).collect();
    let mut nodes: Vec<Option<OmniPaxos>> = (1..=3u64)
        .map(|p| Some(disk_node(p, &dirs[p as usize - 1], p, false)))
        .collect();
    let mut session = 10;
    let mut in_flight: Vec<(NodeId, Vec<u8>)> = Vec::new();
    let mut buf = Vec::new();
    let mut proposed = 0u64;
    let total = 3000u64;
    let mut crashes = 0;
    let mut caught_up_at = None;
    for tick in 0..20_000u64 {
        // Server 3 is down (its state dropped, its files kept) for the first 600 ticks,
        // then brought back and crashed a few times during its catch-up.
        if tick == 600 {
            session += 1;
            nodes[2] = Some(disk_node(3, &dirs[2], session, true));
        }
        // A crash each time it has caught up another 600 entries (about 450 KB).
        let d3 = nodes[2].as_mut().map_or(0, |n| n.decided_idx().unwrap());
        if tick > 600 && crashes < 4 && d3 >= 600 * (crashes + 1) && d3 < total {
            // A crash, not a clean close (dropping a node would write what it owes).
            if let Some(n) = nodes[2].take() {
                n.debug_crash();
            }
            crashes += 1;
            session += 1;
            nodes[2] = Some(disk_node(3, &dirs[2], session, true));
        }
        if tick == 1 {
            if let Some(n) = nodes[2].take() {
                n.debug_crash();
            }
        }
        for (to, bytes) in std::mem::take(&mut in_flight) {
            if let Some(n) = nodes[to as usize - 1].as_mut() {
                n.handle_incoming_bytes(&bytes).expect("valid message");
            }
        }
        for (i, slot) in nodes.iter_mut().enumerate() {
            let Some(n) = slot.as_mut() else { continue };
            n.tick().expect("tick");
            if i == 0 && proposed < total && n.is_accepting_leader() {
                for _ in 0..20 {
                    let size = 16 + (proposed * 131 % 1500) as usize;
                    let mut p = proposed.to_le_bytes().to_vec();
                    p.resize(size, 7);
                    if n.append(&p).is_ok() {
                        proposed += 1;
                    }
                }
            }
            let mut ranges = Vec::new();
            n.take_outgoing_encoded(&mut buf, |to, r| ranges.push((to, r)))
                .expect("take_outgoing");
            for (to, r) in ranges {
                assert!(r.len() <= SMALL, "a message of {} bytes", r.len());
                in_flight.push((to, buf[r].to_vec()));
            }
        }
        if proposed == total && caught_up_at.is_none() && tick > 600 {
            let d: Vec<u64> = nodes
                .iter_mut()
                .map(|n| n.as_mut().map_or(0, |n| n.decided_idx().unwrap()))
                .collect();
            if d.iter().all(|&x| x >= total) {
                caught_up_at = Some(tick);
                break;
            }
        }
    }
    let at = caught_up_at.expect("server 3 caught up");
    assert!(crashes >= 1, "no crash happened during the catch-up");
    // Every server holds the same decided log.
    let mut logs = Vec::new();
    for n in nodes.iter_mut() {
        let mut e = Entries::new();
        n.as_mut().unwrap().read_decided_suffix(0, &mut e).unwrap();
        logs.push(e);
    }
    assert!(logs.windows(2).all(|w| w[0] == w[1]));
    println!("server 3 caught up at tick {at} after {crashes} crashes during its catch-up");
}
