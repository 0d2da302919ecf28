//! The Omni-Paxos paper's three partial-connectivity scenarios (section 2 / figure 1):
//! quorum-loss, constrained election and chained. In each, new entries must be decided
//! again within 4 election timeouts of the fault (the paper's bound), and the leader must
//! then stay put (no livelock).

mod common;

use common::{Cluster, ELECTION};
use omnipaxos::NodeId;

const A: NodeId = 1;
const B: NodeId = 2;
const C: NodeId = 3;
const D: NodeId = 4;
const E: NodeId = 5;

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
            .any(|e| c.appended.get(e).is_some_and(|&t| t > fault));
        if decided_after_fault {
            return c.now - fault;
        }
    }
}

/// Runs `rounds` election timeouts more with proposals, asserting that the leader ballot
/// stays the same and entries keep being decided.
fn assert_stable(c: &mut Cluster, proposer: NodeId, rounds: u64) {
    let leader = c.accepting_leader().expect("a leader in the accept phase");
    let ballot = c.node(leader).leader().unwrap().1;
    let before = c.max_decided();
    for _ in 0..rounds * ELECTION {
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
        c.max_decided() >= before + rounds * ELECTION / 2,
        "entries stopped being decided under a stable leader"
    );
}

fn report(name: &str, ticks: u64) {
    println!(
        "{name}: decided again {ticks} ticks after the fault = {:.2} election timeouts (bound 4)",
        ticks as f64 / ELECTION as f64
    );
}

/// Runs `scenario` with the fault injected at every phase of the heartbeat round; asserts the
/// bound on each and prints the worst and median figures.
fn at_every_phase(name: &str, scenario: impl Fn(u64) -> u64) {
    let mut ticks: Vec<u64> = (0..ELECTION).map(&scenario).collect();
    ticks.sort_unstable();
    for &t in &ticks {
        assert!(t <= 4 * ELECTION, "{name}: {t} ticks > 4 election timeouts");
    }
    report(
        &format!("{name} (median over {} fault phases)", ticks.len()),
        ticks[ticks.len() / 2],
    );
    report(&format!("{name} (worst)"), ticks[ticks.len() - 1]);
}

#[test]
fn quorum_loss() {
    at_every_phase("quorum-loss", quorum_loss_at);
}

fn quorum_loss_at(phase: u64) -> u64 {
    // 5 servers, leader C; then C, B, D and E are each connected only to A.
    let mut c = Cluster::new(5, 101 + phase, |p| if p == C { 10 } else { 0 });
    c.elect(3 * ELECTION).expect("initial leader");
    assert_eq!(c.accepting_leader(), Some(C));
    for _ in 0..50 + phase {
        c.propose(A).unwrap();
        c.step();
    }
    let fault = c.now;
    c.only_links(&[(A, B), (A, C), (A, D), (A, E)]);
    let t = time_to_progress(&mut c, A, fault, 4 * ELECTION);
    assert_eq!(
        c.accepting_leader(),
        Some(A),
        "A is the only quorum-connected server"
    );
    assert_stable(&mut c, A, 10);
    t
}

#[test]
fn constrained_election() {
    at_every_phase("constrained election", constrained_election_at);
}

fn constrained_election_at(phase: u64) -> u64 {
    // 5 servers, leader C. B and E get entries that A (and D) miss, so B and E hold a longer
    // log than A. Then C is isolated and only A is quorum-connected (A-B, A-D, A-E).
    let mut c = Cluster::new(5, 202 + phase, |p| if p == C { 10 } else { 0 });
    c.elect(3 * ELECTION).expect("initial leader");
    assert_eq!(c.accepting_leader(), Some(C));
    for _ in 0..20 {
        c.propose(C).unwrap();
        c.step();
    }
    c.cut_paxos.insert((C, A));
    c.cut_paxos.insert((C, D));
    for _ in 0..30 + phase {
        c.propose(C).unwrap();
        c.step();
    }
    let fault = c.now;
    let decided_before = c.max_decided();
    c.cut_paxos.clear();
    c.only_links(&[(A, B), (A, D), (A, E)]);
    // B and E hold entries A lacks.
    assert!(c.node(B).read(40).unwrap().is_some() && c.node(E).read(40).unwrap().is_some());
    assert!(c.node(A).read(40).unwrap().is_none());
    let t = time_to_progress(&mut c, A, fault, 4 * ELECTION);
    assert_eq!(c.accepting_leader(), Some(A));
    assert!(c.max_decided() > decided_before);
    assert_stable(&mut c, A, 10);
    t
}

#[test]
fn chained() {
    at_every_phase("chained (longest stretch without a decision)", chained_at);
}

fn chained_at(phase: u64) -> u64 {
    // 3 servers, leader B; the link between B and C is cut.
    let mut c = Cluster::new(3, 303 + phase, |p| if p == B { 10 } else { 0 });
    c.elect(3 * ELECTION).expect("initial leader");
    assert_eq!(c.accepting_leader(), Some(B));
    for _ in 0..30 + phase {
        c.propose(A).unwrap();
        c.step();
    }
    let fault = c.now;
    c.cut_link(B, C);
    // B and A can still decide at first; then C, which no longer hears B, takes over with
    // A. Measure the longest stretch without a decision over 15 election timeouts.
    let mut last_decision = fault;
    let mut longest_gap = 0;
    let mut decided = c.max_decided();
    for _ in 0..15 * ELECTION {
        let _ = c.propose(A);
        c.step();
        if c.max_decided() > decided {
            decided = c.max_decided();
            last_decision = c.now;
        }
        longest_gap = longest_gap.max(c.now - last_decision);
    }
    assert!(longest_gap <= 4 * ELECTION);
    // C took over with A; B may still believe it leads, but it cannot decide anything.
    let leader = c.agreed_leader().expect("A and C agree on a leader");
    assert_eq!(leader.pid, C);
    assert_stable(&mut c, A, 10);
    // Healing brings B back as a follower of C.
    c.heal();
    let target = c.max_decided();
    c.run_until(6 * ELECTION, |c| c.node(B).decided_idx().unwrap() >= target)
        .expect("B catches up after healing");
    let states: Vec<_> = (1..=3).map(|p| c.node(p).debug_state()).collect();
    assert_eq!(c.node(B).leader().unwrap().0, C, "{}", states.join("\n"));
    longest_gap
}
