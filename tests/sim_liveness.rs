//! Liveness of the leader election under the faults users hit, in simulated time: a matrix
//! of 3 and 5 servers, `election_tick_timeout` (ET) 5 and 10, resend = ET and ET/2, each case
//! over 100 seeds. A seed sets the fault's phase (`seed % ET`, so every phase of the
//! heartbeat period is covered ten times), each server's start tick (unsynchronised
//! heartbeats), leader priorities for a third of the seeds, and the fault's length.
//!
//! Per case it measures the time from the fault until an entry proposed after it is
//! decided, and the leaders elected (ballots that reached the accept phase), and asserts
//! the targets; after the last heal, a stable leader for 50 ET. The figures are printed
//! (`cargo test --release --test sim_liveness -- --nocapture`) and quoted in the README.

mod common;

use common::Cluster;
use omnipaxos::NodeId;

#[derive(Clone, Copy, Debug)]
struct Params {
    n: u64,
    et: u64,
    resend: u64,
}

fn matrix() -> Vec<Params> {
    let mut v = Vec::new();
    for n in [3, 5] {
        for et in [5, 10] {
            for resend in [et, et / 2] {
                v.push(Params { n, et, resend });
            }
        }
    }
    v
}

const SEEDS: u64 = 100;

/// A cluster under test with a proposal every tick at the running servers in turn, and
/// the bookkeeping of when entries proposed after a point were decided.
struct Run {
    c: Cluster,
    p: Params,
    turn: u64,
}

impl Run {
    fn new(p: Params, seed: u64) -> Run {
        let prio_seed = seed;
        let mut c = Cluster::with_config(
            p.n,
            seed,
            move |pid| {
                if prio_seed % 3 == 0 {
                    ((pid * 7 + prio_seed) % 4) as u32
                } else {
                    0
                }
            },
            |cfg| {
                cfg.election_tick_timeout = p.et;
                cfg.resend_tick_timeout = p.resend;
            },
        );
        for pid in 1..=p.n {
            let at = c.rng.below(p.et);
            c.starts_at.insert(pid, at);
        }
        Run { c, p, turn: 0 }
    }

    fn et(&self) -> u64 {
        self.p.et
    }

    /// One tick with one proposal at the next running server.
    fn tick(&mut self) {
        let running = self.c.running();
        if !running.is_empty() {
            let pid = running[(self.turn % running.len() as u64) as usize];
            self.turn += 1;
            let _ = self.c.propose(pid);
        }
        self.c.step();
    }

    fn ticks(&mut self, k: u64) {
        for _ in 0..k {
            self.tick();
        }
    }

    /// Runs until a leader is elected and deciding; returns its pid.
    fn boot(&mut self) -> NodeId {
        for _ in 0..20 * self.et() {
            self.tick();
            if let Some(l) = self.c.accepting_leader() {
                if self.c.max_decided() > 0 {
                    self.ticks(2 * self.et());
                    return self.c.accepting_leader().unwrap_or(l);
                }
            }
        }
        panic!("{:?}: no leader within 20 ET", self.p);
    }

    /// Whether an entry proposed after tick `t` has been decided.
    fn decided_after(&self, t: u64) -> bool {
        self.c
            .chosen
            .iter()
            .rev()
            .take(64)
            .any(|e| self.c.appended.get(e).is_some_and(|&at| at > t))
    }

    /// Ticks from `t` until an entry proposed after `t` is decided, running at most `max`
    /// ticks (the ticks already past `t` count).
    fn time_to_decide(&mut self, t: u64, max: u64) -> Option<u64> {
        loop {
            if self.decided_after(t) {
                return Some(self.c.now - t);
            }
            if self.c.now - t >= max {
                return None;
            }
            self.tick();
        }
    }

    /// Heals everything; asserts decisions within `bound` ticks of the heal and then no
    /// new leader for 50 ET with entries decided throughout. Returns the time to decide.
    fn heal_and_settle(&mut self, bound: u64, what: &str) -> u64 {
        self.c.heal();
        for pid in self.c.paused.clone() {
            self.c.resume(pid);
        }
        let healed = self.c.now;
        let t = self.time_to_decide(healed, bound).unwrap_or_else(|| {
            panic!(
                "{what} {:?}: nothing decided within {} ET of the heal\n{}",
                self.p,
                bound as f64 / self.et() as f64,
                self.states()
            )
        });
        // Settled: the election may still finish what the heal started within 5 ET.
        self.ticks(5 * self.et());
        let from = self.c.now;
        let decided = self.c.max_decided();
        self.ticks(50 * self.et());
        assert_eq!(
            self.c.elections_since(from),
            0,
            "{what} {:?}: leader changes in the 50 ET after the heal: {:?}\n{}",
            self.p,
            &self.c.elections[self.c.elections.len().saturating_sub(5)..],
            self.states()
        );
        assert!(
            self.c.max_decided() >= decided + 40 * self.et(),
            "{what} {:?}: decisions stalled after the heal\n{}",
            self.p,
            self.states()
        );
        t
    }

    fn states(&self) -> String {
        let mut out = String::new();
        for node in self.c.nodes.values().flatten() {
            out.push_str(&node.debug_state());
            out.push('\n');
        }
        out
    }

    /// A follower of `leader`, chosen by the seed.
    fn follower(&mut self, leader: NodeId) -> NodeId {
        let others: Vec<NodeId> = (1..=self.p.n).filter(|&q| q != leader).collect();
        others[self.c.rng.below(others.len() as u64) as usize]
    }
}

/// Results of one case over the matrix.
#[derive(Default)]
struct Tally {
    /// Ticks to decide again, over ET, per run.
    ttd: Vec<f64>,
    elections: Vec<usize>,
}

impl Tally {
    fn print(&mut self, name: &str, p: Params) {
        self.ttd.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let med = self.ttd.get(self.ttd.len() / 2).copied().unwrap_or(0.0);
        let worst = self.ttd.last().copied().unwrap_or(0.0);
        let max_el = self.elections.iter().max().copied().unwrap_or(0);
        let total: usize = self.elections.iter().sum();
        println!(
            "{name:<28} n={} ET={:<2} resend={:<2}: decided again median {med:.2} ET, worst {worst:.2} ET; leader changes max {max_el}, total {total} over {} seeds",
            p.n,
            p.et,
            p.resend,
            self.elections.len()
        );
    }
}

/// Runs `case(run, seed)` for every parameter set and seed; `case` returns the time to
/// decide again (ticks) and the leader changes it counted.
fn each(name: &str, case: impl Fn(&mut Run, u64) -> (u64, usize) + Sync) {
    let cases = matrix();
    std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|&p| {
                let case = &case;
                s.spawn(move || {
                    let mut tally = Tally::default();
                    for seed in 0..SEEDS {
                        let mut run = Run::new(p, 1000 * p.n + 100 * p.et + p.resend + seed * 7919);
                        let (t, el) = case(&mut run, seed);
                        tally.ttd.push(t as f64 / p.et as f64);
                        tally.elections.push(el);
                    }
                    (p, tally)
                })
            })
            .collect();
        for h in handles {
            let (p, mut tally) = h.join().expect("a case panicked");
            tally.print(name, p);
        }
    });
}

#[test]
fn no_fault_one_leader_forever() {
    each("no fault", |r, seed| {
        r.boot();
        // 100 ET for every seed; 1,000 ET for one seed in ten.
        let len = if seed % 10 == 0 { 1000 } else { 100 };
        let decided = r.c.max_decided();
        r.ticks(len * r.et());
        assert_eq!(
            r.c.elections.len(),
            1,
            "{:?} seed {seed}: leaders {:?}",
            r.p,
            r.c.elections
        );
        assert!(r.c.max_decided() >= decided + len * r.et() * 9 / 10);
        (0, 0)
    });
}

#[test]
fn leader_isolated_then_healed() {
    each("leader isolated", |r, seed| {
        let leader = r.boot();
        r.ticks(seed % r.et());
        let fault = r.c.now;
        let before = r.c.elections.len();
        r.c.isolate(leader);
        let t = r.time_to_decide(fault, 10 * r.et()).expect("decided again");
        assert!(t <= 2 * r.et(), "{:?} seed {seed}: {t} ticks", r.p);
        let end = fault + 10 * r.et();
        while r.c.now < end {
            r.tick();
        }
        let healed = r.c.now;
        r.heal_and_settle(5 * r.et(), "leader isolated");
        let el = r.c.elections.len() - before;
        assert!(el <= 1, "{:?} seed {seed}: {el} leader changes", r.p);
        assert_eq!(
            r.c.elections_since(healed),
            0,
            "the old leader returning deposed the new one"
        );
        (t, el)
    });
}

#[test]
fn follower_isolated_then_healed() {
    each("follower isolated", |r, seed| {
        let leader = r.boot();
        let f = r.follower(leader);
        r.ticks(seed % r.et());
        let fault = r.c.now;
        let before = r.c.elections.len();
        r.c.isolate(f);
        let t = r.time_to_decide(fault, 10 * r.et()).expect("decided again");
        r.ticks(10 * r.et());
        r.heal_and_settle(5 * r.et(), "follower isolated");
        let el = r.c.elections.len() - before;
        assert_eq!(
            el, 0,
            "{:?} seed {seed}: a follower's isolation changed the leader",
            r.p
        );
        let target = r.c.max_decided() - 10;
        assert!(
            r.c.node(f).decided_idx().unwrap() >= target,
            "the follower caught up"
        );
        (t, el)
    });
}

/// Cuts the directed links `links` for 10 ET at a phase set by the seed, then heals.
fn one_way(
    r: &mut Run,
    seed: u64,
    links: impl Fn(NodeId, &mut Run) -> Vec<(NodeId, NodeId)>,
    what: &str,
) -> (u64, usize) {
    let leader = r.boot();
    let cut = links(leader, r);
    r.ticks(seed % r.et());
    let fault = r.c.now;
    let before = r.c.elections.len();
    for l in cut {
        r.c.cut.insert(l);
    }
    let t = r.time_to_decide(fault, 10 * r.et()).unwrap_or_else(|| {
        panic!(
            "{what} {:?} seed {seed}: nothing decided within 10 ET\n{}",
            r.p,
            r.states()
        )
    });
    let end = fault + 10 * r.et();
    while r.c.now < end {
        r.tick();
    }
    let healed = r.c.now;
    r.heal_and_settle(5 * r.et(), what);
    assert_eq!(
        r.c.elections_since(healed),
        0,
        "{what}: the heal changed the leader"
    );
    (t, r.c.elections.len() - before)
}

#[test]
fn deaf_leader() {
    each("deaf leader (links in cut)", |r, seed| {
        let (t, el) = one_way(
            r,
            seed,
            |l, r| (1..=r.p.n).filter(|&q| q != l).map(|q| (q, l)).collect(),
            "deaf leader",
        );
        assert!(t <= 2 * r.et(), "{:?} seed {seed}: {t} ticks", r.p);
        assert!(el <= 1, "{:?} seed {seed}: {el} leader changes", r.p);
        (t, el)
    });
}

#[test]
fn mute_leader() {
    each("mute leader (links out cut)", |r, seed| {
        let (t, el) = one_way(
            r,
            seed,
            |l, r| (1..=r.p.n).filter(|&q| q != l).map(|q| (l, q)).collect(),
            "mute leader",
        );
        assert!(t <= 2 * r.et(), "{:?} seed {seed}: {t} ticks", r.p);
        assert!(el <= 1, "{:?} seed {seed}: {el} leader changes", r.p);
        (t, el)
    });
}

#[test]
fn one_directed_link_from_the_leader() {
    each("link leader->follower cut", |r, seed| {
        let (t, el) = one_way(r, seed, |l, r| vec![(l, r.follower(l))], "leader->follower");
        assert_eq!(el, 0, "{:?} seed {seed}: {el} leader changes", r.p);
        (t, el)
    });
}

#[test]
fn one_directed_link_to_the_leader() {
    each("link follower->leader cut", |r, seed| {
        let (t, el) = one_way(r, seed, |l, r| vec![(r.follower(l), l)], "follower->leader");
        assert_eq!(el, 0, "{:?} seed {seed}: {el} leader changes", r.p);
        (t, el)
    });
}

#[test]
fn flapping_link_between_leader_and_follower() {
    each("flapping leader-follower link", |r, seed| {
        let leader = r.boot();
        let f = r.follower(leader);
        r.ticks(seed % r.et());
        let before = r.c.elections.len();
        let start = r.c.now;
        let half = (r.et() / 2).max(1);
        let mut worst_gap = 0;
        let mut last = r.c.max_decided();
        let mut last_at = r.c.now;
        for k in 0..(20 * r.et() / half) {
            if k % 2 == 0 {
                r.c.cut_link(leader, f);
            } else {
                r.c.heal();
            }
            for _ in 0..half {
                r.tick();
                if r.c.max_decided() > last {
                    last = r.c.max_decided();
                    last_at = r.c.now;
                }
                worst_gap = worst_gap.max(r.c.now - last_at);
            }
        }
        assert!(r.c.now > start);
        r.heal_and_settle(5 * r.et(), "flapping");
        let el = r.c.elections.len() - before;
        assert_eq!(el, 0, "{:?} seed {seed}: {el} leader changes", r.p);
        (worst_gap, el)
    });
}

/// Boots, then applies `fault` to the leader (or to a follower) at a phase set by the seed;
/// `fault` returns once the server is back. Returns the time from then until an entry
/// proposed after it is decided, and the leader changes (with the heal after it).
fn fault_and_return(
    r: &mut Run,
    seed: u64,
    leader_too: bool,
    what: &str,
    fault: impl FnOnce(&mut Run, NodeId),
) -> (u64, usize) {
    let leader = r.boot();
    let who = if leader_too {
        leader
    } else {
        r.follower(leader)
    };
    r.ticks(seed % r.et());
    let before = r.c.elections.len();
    fault(r, who);
    let back = r.c.now;
    let t = r.time_to_decide(back, 10 * r.et()).unwrap_or_else(|| {
        panic!(
            "{what} {:?} seed {seed}: nothing decided after it is back\n{}",
            r.p,
            r.states()
        )
    });
    r.heal_and_settle(5 * r.et(), what);
    (t, r.c.elections.len() - before)
}

/// Pauses the server for 0.5 to 20 ET (set by the seed).
fn pause(r: &mut Run, seed: u64, leader_too: bool) -> (u64, usize) {
    fault_and_return(r, seed, leader_too, "pause", |r, who| {
        let len = r.et() / 2 + r.c.rng.below(20 * r.et() - r.et() / 2);
        r.c.pause(who);
        r.ticks(len);
        r.c.resume(who);
    })
}

#[test]
fn pause_of_the_leader() {
    each("leader paused 0.5-20 ET", |r, seed| {
        let (t, el) = pause(r, seed, true);
        assert!(
            t <= 2 * r.et(),
            "{:?} seed {seed}: {t} ticks after the resume",
            r.p
        );
        assert!(el <= 1, "{:?} seed {seed}: {el} leader changes", r.p);
        (t, el)
    });
}

#[test]
fn pause_of_a_follower() {
    each("follower paused 0.5-20 ET", |r, seed| {
        let (t, el) = pause(r, seed, false);
        assert!(
            t <= 2 * r.et(),
            "{:?} seed {seed}: {t} ticks after the resume",
            r.p
        );
        assert_eq!(el, 0, "{:?} seed {seed}: {el} leader changes", r.p);
        (t, el)
    });
}

/// Crashes the server and restarts it with `fail_recovery` after 0.5 to 10 ET; for odd
/// seeds its links come back only up to 5 ET after it restarted (it ticks alone meanwhile).
fn restart(r: &mut Run, seed: u64, leader_too: bool) -> (u64, usize) {
    fault_and_return(r, seed, leader_too, "restart", |r, who| {
        let down = r.et() / 2 + r.c.rng.below(10 * r.et() - r.et() / 2);
        r.c.crash(who);
        r.ticks(down);
        r.c.restart(who);
        if seed % 2 == 1 {
            r.c.isolate(who);
            let alone = 1 + r.c.rng.below(5 * r.et());
            r.ticks(alone);
            r.c.heal();
        }
    })
}

#[test]
fn crash_and_restart_of_the_leader() {
    each("leader crash+restart", |r, seed| {
        let (t, el) = restart(r, seed, true);
        assert!(
            t <= 2 * r.et(),
            "{:?} seed {seed}: {t} ticks after it is back",
            r.p
        );
        let pid_changes = r.c.leader_pid_changes_since(0).saturating_sub(1);
        assert!(
            pid_changes <= 1,
            "{:?} seed {seed}: {pid_changes} leader changes: {:?}",
            r.p,
            r.c.elections
        );
        (t, el)
    });
}

#[test]
fn crash_and_restart_of_a_follower() {
    each("follower crash+restart", |r, seed| {
        let (t, el) = restart(r, seed, false);
        assert!(
            t <= 2 * r.et(),
            "{:?} seed {seed}: {t} ticks after it is back",
            r.p
        );
        assert_eq!(el, 0, "{:?} seed {seed}: {el} leader changes", r.p);
        (t, el)
    });
}

/// Random schedules: faults of every kind above, one at a time or overlapping, on random
/// servers, then a full heal. Never stuck: decisions within 5 ET of the heal, then a
/// stable leader for 50 ET.
#[test]
fn random_fault_schedules_then_heal() {
    each("random schedules", |r, seed| {
        r.boot();
        let n = r.p.n;
        let overlapping = seed % 2 == 1;
        let mut down: Vec<NodeId> = Vec::new();
        for _ in 0..6 {
            if !overlapping {
                r.c.heal();
                for pid in r.c.paused.clone() {
                    r.c.resume(pid);
                }
                for pid in std::mem::take(&mut down) {
                    r.c.restart(pid);
                }
            }
            let a = 1 + r.c.rng.below(n);
            let b = 1 + (a + r.c.rng.below(n - 1)) % n;
            match r.c.rng.below(7) {
                0 => r.c.isolate(a),
                1 => {
                    r.c.cut.insert((a, b));
                }
                2 => r.c.cut_link(a, b),
                3 => {
                    for q in (1..=n).filter(|&q| q != a) {
                        r.c.cut.insert((q, a));
                    }
                }
                4 if r.c.paused.len() + down.len() + 1 < n as usize / 2 + 1 => {
                    if r.c.is_alive(a) {
                        r.c.pause(a);
                    }
                }
                5 if r.c.paused.len() + down.len() + 1 < n as usize / 2 + 1 => {
                    if r.c.is_alive(a) && !r.c.paused.contains(&a) {
                        r.c.crash(a);
                        down.push(a);
                    }
                }
                _ => {
                    for q in (1..=n).filter(|&q| q != a) {
                        r.c.cut.insert((a, q));
                    }
                }
            }
            let len = 1 + r.c.rng.below(8 * r.et());
            r.ticks(len);
        }
        for pid in down {
            r.c.restart(pid);
        }
        let during = r.c.elections.len();
        let t = r.heal_and_settle(5 * r.et(), "random schedule");
        (t, during - 1)
    });
}

/// The first report: 5 servers, ET 100 with resend 50 and 100, the leader isolated
/// for 10 ET and restored, over 100 ET: one leader change, none when it returns.
#[test]
fn large_timeouts_leader_isolated_then_restored() {
    for resend in [50, 100] {
        for seed in 0..10u64 {
            let p = Params {
                n: 5,
                et: 100,
                resend,
            };
            let mut r = Run::new(p, 77 + seed);
            let leader = r.boot();
            r.ticks(seed * 10);
            let before = r.c.elections.len();
            let fault = r.c.now;
            r.c.isolate(leader);
            let t = r.time_to_decide(fault, 10 * r.et()).expect("decided again");
            assert!(t <= 2 * r.et(), "{t} ticks");
            while r.c.now < fault + 10 * r.et() {
                r.tick();
            }
            let healed = r.c.now;
            r.c.heal();
            r.ticks(100 * r.et());
            assert_eq!(
                r.c.elections.len() - before,
                1,
                "resend {resend} seed {seed}"
            );
            assert_eq!(r.c.elections_since(healed), 0);
        }
    }
}

/// The third report: default timeouts (ET 10, resend 5), 5 servers, four crashes
/// with restarts and one pause, one server at a time, then a healed cluster: a stable
/// leader and decisions.
#[test]
fn crashes_and_a_pause_one_at_a_time_then_quiet() {
    for seed in 0..20u64 {
        let p = Params {
            n: 5,
            et: 10,
            resend: 5,
        };
        let mut r = Run::new(p, 500 + seed);
        r.boot();
        for k in 0..5u64 {
            let who = 1 + (seed + k) % 5;
            let len = 5 + r.c.rng.below(15 * r.et());
            if k == 2 {
                r.c.pause(who);
                r.ticks(len);
                r.c.resume(who);
            } else {
                r.c.crash(who);
                r.ticks(len);
                r.c.restart(who);
            }
            let gap = r.c.rng.below(5 * r.et());
            r.ticks(gap);
        }
        let during = r.c.elections.len();
        r.heal_and_settle(5 * r.et(), "crashes and a pause");
        assert!(during <= 6, "seed {seed}: {during} leaders for five faults");
    }
}

/// A jittery, lossy network (delays of 1 to 3 ticks, 1% loss) with ET 10: no churn in a
/// healthy cluster, and the leader isolated and restored costs one change.
#[test]
fn jittery_lossy_network() {
    for seed in 0..20u64 {
        let p = Params {
            n: 5,
            et: 10,
            resend: 5,
        };
        let mut r = Run::new(p, 900 + seed);
        r.c.net.max_delay = 3;
        r.c.net.drop = 0.01;
        let leader = r.boot();
        let before = r.c.elections.len();
        r.ticks(200 * r.et());
        assert_eq!(
            r.c.elections.len(),
            before,
            "seed {seed}: churn without faults"
        );
        r.c.isolate(leader);
        r.ticks(10 * r.et());
        r.c.heal();
        r.ticks(50 * r.et());
        assert_eq!(
            r.c.elections.len() - before,
            1,
            "seed {seed}: {:?}",
            r.c.elections
        );
    }
}

/// A follower that promised a ballot whose owner vanished right after its Prepare (the
/// Prepare reached only this follower) ignores the leader everyone else follows. The
/// follower's PrepareRefused makes that leader raise its ballot above the promise: the
/// follower rejoins, the leader stays the same server.
#[test]
fn a_follower_holding_a_vanished_leaders_promise_rejoins() {
    use omnipaxos::messages::{Body, PaxosMessage};
    use omnipaxos::{Ballot, Message};
    for seed in 0..20u64 {
        let p = Params {
            n: 5,
            et: 10,
            resend: 5,
        };
        let mut r = Run::new(p, 4242 + seed);
        let leader = r.boot();
        let lb = r.c.node(leader).leader().unwrap().1;
        let ghost = 1 + (leader % 5);
        let f = 1 + (ghost % 5);
        assert!(f != leader && ghost != leader && f != ghost);
        r.c.crash(ghost);
        let prepare = PaxosMessage::Prepare {
            n: Ballot::new(lb.n + 5, 0, ghost),
            decided_idx: 0,
            n_accepted: Ballot::default(),
            accepted_idx: 0,
        };
        r.c.node(f)
            .handle_incoming(Message {
                from: ghost,
                to: f,
                body: Body::Paxos(prepare),
            })
            .unwrap();
        r.ticks(10 * r.et());
        let target = r.c.max_decided();
        let caught_up = (0..10 * r.et()).any(|_| {
            r.tick();
            r.c.node(f).decided_idx().unwrap() >= target
        });
        assert!(
            caught_up,
            "seed {seed}: the follower never rejoined\n{}",
            r.states()
        );
        assert_eq!(
            r.c.accepting_leader(),
            Some(leader),
            "seed {seed}: the leader changed"
        );
        assert_eq!(r.c.leader_pid_changes_since(0), 1, "seed {seed}");
    }
}

/// Leadership transfer: the target leads within one election timeout, with one leader
/// change and no decided entry lost (the checkers run after every step), and the leader
/// then stays put.
#[test]
fn leadership_transfer_moves_the_leader_once() {
    for n in [3, 5] {
        for seed in 0..50u64 {
            let p = Params {
                n,
                et: 10,
                resend: 5,
            };
            let mut r = Run::new(p, 6000 + n * 100 + seed);
            let leader = r.boot();
            let target = r.follower(leader);
            r.ticks(seed % r.et());
            let before = r.c.elections.len();
            let decided = r.c.max_decided();
            let asked = r.c.now;
            r.c.node(leader).transfer_leadership(target).unwrap();
            let t = (0..r.et()).find(|_| {
                r.tick();
                r.c.accepting_leader() == Some(target)
            });
            assert!(
                t.is_some(),
                "n={n} seed {seed}: the target did not lead within 1 ET"
            );
            r.ticks(20 * r.et());
            assert_eq!(r.c.elections.len() - before, 1, "n={n} seed {seed}");
            assert_eq!(r.c.accepting_leader(), Some(target));
            assert!(
                r.c.max_decided() > decided + 10 * r.et(),
                "decisions went on"
            );
            assert!(r.c.elections.last().unwrap().0 > asked);
        }
    }
}

#[test]
fn leadership_transfer_refuses_what_it_cannot_do() {
    use omnipaxos::Error;
    let p = Params {
        n: 3,
        et: 10,
        resend: 5,
    };
    let mut r = Run::new(p, 31);
    let leader = r.boot();
    let f = r.follower(leader);
    let other = (1..=3).find(|&q| q != leader && q != f).unwrap();
    // At a follower: NotLeader, naming the leader.
    match r.c.node(f).transfer_leadership(other) {
        Err(Error::NotLeader { leader: Some(l) }) => assert_eq!(l, leader),
        e => panic!("{e:?}"),
    }
    // Not in the configuration.
    assert!(matches!(
        r.c.node(leader).transfer_leadership(9),
        Err(Error::InvalidArgument(_))
    ));
    // To itself: nothing to do.
    r.c.node(leader).transfer_leadership(leader).unwrap();
    // A lagging target: its heartbeats pass but the leader's entries do not reach it.
    r.c.cut_paxos.insert((leader, f));
    r.ticks(3 * r.et());
    match r.c.node(leader).transfer_leadership(f) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("catching up"), "{m}"),
        e => panic!("{e:?}"),
    }
    // An unreachable target.
    r.c.cut_paxos.clear();
    r.c.isolate(f);
    r.ticks(2 * r.et());
    match r.c.node(leader).transfer_leadership(f) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("heartbeat"), "{m}"),
        e => panic!("{e:?}"),
    }
    r.c.heal();
    r.ticks(5 * r.et());
    // Nothing changed: the same leader throughout.
    assert_eq!(r.c.elections.len(), 1);
    assert_eq!(r.c.accepting_leader(), Some(leader));
}

/// A priority set at run time applies to the next ballot: the follower given the highest
/// priority is the one that takes over when the leader fails, and setting it deposes
/// nobody.
#[test]
fn leader_priority_set_at_run_time_picks_the_next_leader() {
    for seed in 0..20u64 {
        let p = Params {
            n: 5,
            et: 10,
            resend: 5,
        };
        let mut r = Run::new(p, 7000 + seed);
        let leader = r.boot();
        let favourite = r.follower(leader);
        r.c.node(favourite).set_leader_priority(1000);
        r.ticks(5 * r.et());
        assert_eq!(
            r.c.elections.len(),
            1,
            "a priority change deposed the leader"
        );
        r.c.isolate(leader);
        r.ticks(5 * r.et());
        // (The isolated old leader still believes it leads: look at the newest election.)
        let newest = r.c.elections.last().unwrap().1;
        assert_eq!(newest.pid, favourite, "seed {seed}: {:?}", r.c.elections);
        assert_eq!(r.c.elections.len(), 2, "seed {seed}");
    }
}
