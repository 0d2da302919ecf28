//! The Omni-Paxos paper's three partial-connectivity scenarios (section 2 / figure 1):
//! quorum-loss, constrained election and chained, for `election_tick_timeout` (ET) 5 and 10
//! and resend = ET and ET/2, each over 100 seeds (the fault at every phase of the
//! heartbeat period, servers started at random ticks).
//!
//! Targets: quorum-loss and constrained election decide again within a median of 2 ET and
//! at worst 2.5 ET of the fault, with the one quorum-connected server as the only new
//! leader; chained keeps deciding with no leader change at all. Afterwards the leader stays
//! put for 10 ET (no livelock). Run with `--nocapture` for the figures.

mod common;

use common::Cluster;
use omnipaxos::NodeId;

const A: NodeId = 1;
const B: NodeId = 2;
const C: NodeId = 3;
const D: NodeId = 4;
const E: NodeId = 5;

const SEEDS: u64 = 100;

fn params() -> Vec<(u64, u64)> {
    vec![(5, 5), (5, 2), (10, 10), (10, 5)]
}

/// A cluster of `n` with leader priority 10 for `favourite`, the given timeouts, and
/// servers started at random ticks within the first ET.
fn cluster(n: u64, seed: u64, favourite: NodeId, et: u64, resend: u64) -> Cluster {
    let mut c = Cluster::with_config(
        n,
        seed,
        |p| if p == favourite { 10 } else { 0 },
        |cfg| {
            cfg.election_tick_timeout = et;
            cfg.resend_tick_timeout = resend;
        },
    );
    for pid in 1..=n {
        let at = c.rng.below(et);
        c.starts_at.insert(pid, at);
    }
    c
}

fn elect(c: &mut Cluster, et: u64) {
    c.run_until(20 * et, |c| {
        c.accepting_leader().is_some() && c.max_decided() > 0
    })
    .or_else(|| {
        let _ = c.propose(1);
        c.run_until(20 * et, |c| c.accepting_leader().is_some())
    })
    .expect("initial leader");
}

/// Proposes one entry per tick at `proposer` and runs until an entry proposed after `fault`
/// is decided. Returns the ticks from the fault to that decision.
fn time_to_progress(c: &mut Cluster, proposer: NodeId, fault: u64, max: u64) -> u64 {
    loop {
        assert!(
            c.now - fault <= max,
            "no entry proposed after the fault was decided within {max} ticks"
        );
        let _ = c.propose(proposer);
        c.step();
        let decided_after_fault = c
            .chosen
            .iter()
            .rev()
            .take(64)
            .any(|e| c.appended.get(e).is_some_and(|&t| t > fault));
        if decided_after_fault {
            return c.now - fault;
        }
    }
}

/// Runs `rounds` election timeouts more with proposals, asserting that the leader ballot
/// stays the same and entries keep being decided.
fn assert_stable(c: &mut Cluster, proposer: NodeId, et: u64, rounds: u64) {
    let leader = c.accepting_leader().expect("a leader in the accept phase");
    let ballot = c.node(leader).leader().unwrap().1;
    let before = c.max_decided();
    for _ in 0..rounds * et {
        let _ = c.propose(proposer);
        c.step();
        let now_leader = c.accepting_leader();
        assert_eq!(now_leader, Some(leader), "the leader changed: livelock");
        assert_eq!(
            c.node(leader).leader().unwrap().1,
            ballot,
            "the leader's ballot changed"
        );
    }
    assert!(
        c.max_decided() >= before + rounds * et / 2,
        "entries stopped being decided under a stable leader"
    );
}

/// Runs `scenario(seed, et, resend)` for every parameter set and seed (the seed also sets
/// the fault's phase); asserts the bounds on the ticks it returns and prints the figures.
fn over_matrix(name: &str, median_et: f64, worst_et: f64, scenario: impl Fn(u64, u64, u64) -> u64) {
    for (et, resend) in params() {
        let mut ticks: Vec<u64> = (0..SEEDS).map(|s| scenario(s, et, resend)).collect();
        ticks.sort_unstable();
        let med = ticks[ticks.len() / 2] as f64 / et as f64;
        let worst = ticks[ticks.len() - 1] as f64 / et as f64;
        println!(
            "{name} ET={et} resend={resend}: median {med:.2} ET, worst {worst:.2} ET over {SEEDS} seeds"
        );
        assert!(
            med <= median_et,
            "{name} ET={et} resend={resend}: median {med:.2} ET"
        );
        assert!(
            worst <= worst_et,
            "{name} ET={et} resend={resend}: worst {worst:.2} ET"
        );
    }
}

#[test]
fn quorum_loss() {
    over_matrix(
        "quorum-loss (time to decide again)",
        2.0,
        2.5,
        quorum_loss_at,
    );
}

fn quorum_loss_at(seed: u64, et: u64, resend: u64) -> u64 {
    // 5 servers, leader C; then C, B, D and E are each connected only to A.
    let mut c = cluster(5, 101 + seed, C, et, resend);
    elect(&mut c, et);
    assert_eq!(c.accepting_leader(), Some(C));
    for _ in 0..5 * et + seed % et {
        c.propose(A).unwrap();
        c.step();
    }
    let fault = c.now;
    let before = c.elections.len();
    c.only_links(&[(A, B), (A, C), (A, D), (A, E)]);
    let t = time_to_progress(&mut c, A, fault, 4 * et);
    assert_eq!(
        c.accepting_leader(),
        Some(A),
        "A is the only quorum-connected server"
    );
    assert_stable(&mut c, A, et, 10);
    assert_eq!(c.elections.len() - before, 1, "one leader change: to A");
    t
}

#[test]
fn constrained_election() {
    over_matrix(
        "constrained election (time to decide again)",
        2.0,
        2.5,
        constrained_election_at,
    );
}

fn constrained_election_at(seed: u64, et: u64, resend: u64) -> u64 {
    // 5 servers, leader C. B and E get entries that A (and D) miss, so B and E hold a longer
    // log than A. Then C is isolated and only A is quorum-connected (A-B, A-D, A-E).
    let mut c = cluster(5, 202 + seed, C, et, resend);
    elect(&mut c, et);
    assert_eq!(c.accepting_leader(), Some(C));
    for _ in 0..20 {
        c.propose(C).unwrap();
        c.step();
    }
    c.cut_paxos.insert((C, A));
    c.cut_paxos.insert((C, D));
    for _ in 0..3 * et + seed % et {
        c.propose(C).unwrap();
        c.step();
    }
    let fault = c.now;
    let before = c.elections.len();
    let decided_before = c.max_decided();
    c.cut_paxos.clear();
    c.only_links(&[(A, B), (A, D), (A, E)]);
    // B and E hold entries A lacks.
    let a_len = c.node(A).decided_idx().unwrap();
    assert!(
        c.node(B).read(a_len + 5).unwrap().is_some()
            && c.node(E).read(a_len + 5).unwrap().is_some()
    );
    let t = time_to_progress(&mut c, A, fault, 4 * et);
    assert_eq!(c.accepting_leader(), Some(A));
    assert!(c.max_decided() > decided_before);
    assert_stable(&mut c, A, et, 10);
    assert_eq!(c.elections.len() - before, 1, "one leader change: to A");
    t
}

#[test]
fn chained() {
    over_matrix(
        "chained (longest stretch without a decision)",
        0.5,
        0.5,
        chained_at,
    );
}

fn chained_at(seed: u64, et: u64, resend: u64) -> u64 {
    // 3 servers, leader B; the link between B and C is cut.
    let mut c = cluster(3, 303 + seed, B, et, resend);
    elect(&mut c, et);
    assert_eq!(c.accepting_leader(), Some(B));
    for _ in 0..3 * et + seed % et {
        c.propose(A).unwrap();
        c.step();
    }
    let fault = c.now;
    let before = c.elections.len();
    c.cut_link(B, C);
    // A still hears B and is content: C, which no longer hears B, waits instead of taking
    // over. B and A keep deciding. Measure the longest stretch without a decision over 15
    // election timeouts.
    let mut last_decision = fault;
    let mut longest_gap = 0;
    let mut decided = c.max_decided();
    for _ in 0..15 * et {
        let _ = c.propose(A);
        c.step();
        if c.max_decided() > decided {
            decided = c.max_decided();
            last_decision = c.now;
        }
        longest_gap = longest_gap.max(c.now - last_decision);
    }
    assert_eq!(
        c.elections.len(),
        before,
        "no leader change in the chained scenario"
    );
    assert_eq!(c.accepting_leader(), Some(B));
    assert_stable(&mut c, A, et, 10);
    // Healing brings C up to date, still following B.
    c.heal();
    let target = c.max_decided();
    c.run_until(6 * et, |c| c.node(C).decided_idx().unwrap() >= target)
        .expect("C catches up after healing");
    let states: Vec<_> = (1..=3).map(|p| c.node(p).debug_state()).collect();
    assert_eq!(c.node(C).leader().unwrap().0, B, "{}", states.join("\n"));
    assert_eq!(c.elections.len(), before, "no leader change after healing");
    longest_gap
}
