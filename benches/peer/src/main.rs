//! In-process throughput of the `omnipaxos` crate 0.2.4: the peer of benches/c/throughput.c.
//!
//! N `OmniPaxos` instances on `MemoryStorage` in one thread. Every message is encoded to
//! bytes with bincode 2 (serde) and decoded at the receiver. The work is the same as the C
//! program's: rounds of `round` appends at the leader, then messages delivered until the
//! cluster is quiet, then every node reads its newly decided entries with
//! `read_decided_suffix` from its last read index. Prints one JSON line.
//!
//! Usage: omnipaxos-peer-bench <nodes> <entry_bytes> <entries> [round]

use std::time::Instant;

use omnipaxos::messages::Message;
use omnipaxos::storage::{Entry, NoSnapshot};
use omnipaxos::util::LogEntry;
use omnipaxos::{ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig};
use omnipaxos_storage::memory_storage::MemoryStorage;
use serde::{Deserialize, Serialize};

/// A log entry: opaque bytes (serialised as one byte string, not element by element).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Payload(#[serde(with = "serde_bytes")] Vec<u8>);

impl Entry for Payload {
    type Snapshot = NoSnapshot;
}

type Node = OmniPaxos<Payload, MemoryStorage<Payload>>;

struct Cluster {
    nodes: Vec<Node>,
    msgs: Vec<Message<Payload>>,
    wire: Vec<u8>,
    ranges: Vec<(usize, usize, usize)>,
    cfg: bincode::config::Configuration,
}

impl Cluster {
    fn new(n: usize, batch: usize) -> Result<Self, String> {
        let pids: Vec<u64> = (1..=n as u64).collect();
        let mut nodes = Vec::with_capacity(n);
        for &pid in &pids {
            let config = OmniPaxosConfig {
                cluster_config: ClusterConfig {
                    configuration_id: 1,
                    nodes: pids.clone(),
                    flexible_quorum: None,
                },
                server_config: ServerConfig {
                    pid,
                    batch_size: batch,
                    ..Default::default()
                },
            };
            let node = config
                .build(MemoryStorage::default())
                .map_err(|e| format!("config: {e:?}"))?;
            nodes.push(node);
        }
        Ok(Cluster {
            nodes,
            msgs: Vec::new(),
            wire: Vec::new(),
            ranges: Vec::new(),
            cfg: bincode::config::standard(),
        })
    }

    /// Moves every outgoing message to its receiver (encoded, then decoded) until no node
    /// has anything to send. Returns the number of messages delivered.
    fn deliver_until_quiet(&mut self) -> Result<usize, String> {
        let mut total = 0;
        loop {
            let mut moved = 0;
            for i in 0..self.nodes.len() {
                self.msgs.clear();
                self.nodes[i].take_outgoing_messages(&mut self.msgs);
                self.wire.clear();
                self.ranges.clear();
                for m in self.msgs.drain(..) {
                    let start = self.wire.len();
                    let to = m.get_receiver() as usize;
                    bincode::serde::encode_into_std_write(&m, &mut self.wire, self.cfg)
                        .map_err(|e| format!("encode: {e}"))?;
                    self.ranges.push((to, start, self.wire.len()));
                }
                for &(to, a, b) in &self.ranges {
                    let (m, _): (Message<Payload>, usize) =
                        bincode::serde::decode_from_slice(&self.wire[a..b], self.cfg)
                            .map_err(|e| format!("decode: {e}"))?;
                    self.nodes[to - 1].handle_incoming(m);
                }
                moved += self.ranges.len();
            }
            if moved == 0 {
                return Ok(total);
            }
            total += moved;
        }
    }

    fn tick_all(&mut self) -> Result<(), String> {
        for n in &mut self.nodes {
            n.tick();
        }
        self.deliver_until_quiet().map(|_| ())
    }

    /// The leader every node agrees on (and is in the accept phase with), if any.
    fn leader(&self) -> Option<u64> {
        let mut agreed = None;
        for n in &self.nodes {
            match n.get_current_leader() {
                Some((pid, true)) if agreed.is_none() || agreed == Some(pid) => agreed = Some(pid),
                _ => return None,
            }
        }
        agreed
    }
}

/// User + system CPU seconds of this process so far.
fn cpu_now() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) == 0 {
            ru.ru_maxrss
        } else {
            -1
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: omnipaxos-peer-bench <nodes> <entry_bytes> <entries> [round]".into());
    }
    let parse = |s: &str| {
        s.parse::<usize>()
            .map_err(|e| format!("bad number {s}: {e}"))
    };
    let n = parse(&args[1])?;
    let size = parse(&args[2])?.max(8);
    let total = parse(&args[3])?;
    let round = if args.len() > 4 {
        parse(&args[4])?
    } else {
        1000
    };
    if n < 2 || round == 0 || total % round != 0 {
        return Err("need nodes >= 2 and entries a multiple of round".into());
    }

    let mut c = Cluster::new(n, round)?;
    let mut leader = None;
    for _ in 0..1000 {
        c.tick_all()?;
        leader = c.leader();
        if leader.is_some() {
            break;
        }
    }
    let leader = leader.ok_or("no leader elected")? as usize - 1;
    let base: Vec<usize> = c.nodes.iter().map(|x| x.get_decided_idx()).collect();
    let mut read: Vec<usize> = base.clone();

    let rounds = total / round;
    let mut round_end = Vec::with_capacity(rounds);
    let mut entry = vec![0xabu8; size];
    let mut messages = 0usize;
    let c0 = cpu_now();
    let t0 = Instant::now();
    for r in 0..rounds {
        for k in 0..round {
            let seq = (r * round + k) as u64;
            entry[..8].copy_from_slice(&seq.to_le_bytes());
            c.nodes[leader]
                .append(Payload(entry.clone()))
                .map_err(|_| "append failed")?;
        }
        messages += c.deliver_until_quiet()?;
        read_new(&mut c, &base, &mut read)?;
        round_end.push(t0.elapsed().as_secs_f64());
    }
    // Anything not decided yet (e.g. a batch waiting for its flush timeout) gets ticks.
    let mut ticks = 0;
    while read.iter().zip(&base).any(|(r, b)| r - b < total) {
        if ticks == 100_000 {
            return Err("entries never decided everywhere".into());
        }
        c.tick_all()?;
        read_new(&mut c, &base, &mut read)?;
        ticks += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_now() - c0;
    if ticks > 0 {
        if let Some(last) = round_end.last_mut() {
            *last = secs;
        }
    }
    let r = RunResult {
        n,
        size,
        total,
        round,
        secs,
        cpu,
        messages,
    };
    print_result("omnipaxos-0.2.4", &r, &round_end);
    Ok(())
}

/// Every node reads its newly decided entries and checks them (entry i carries i).
fn read_new(c: &mut Cluster, base: &[usize], read: &mut [usize]) -> Result<(), String> {
    for (i, node) in c.nodes.iter().enumerate() {
        if node.get_decided_idx() <= read[i] {
            continue;
        }
        let got = node
            .read_decided_suffix(read[i])
            .ok_or("read_decided_suffix out of range")?;
        for e in &got {
            match e {
                LogEntry::Decided(p) => {
                    let want = (read[i] - base[i]) as u64;
                    let mut seq = [0u8; 8];
                    seq.copy_from_slice(&p.0[..8]);
                    if u64::from_le_bytes(seq) != want {
                        return Err(format!(
                            "node {} entry {} has the wrong data",
                            i + 1,
                            read[i]
                        ));
                    }
                    read[i] += 1;
                }
                other => return Err(format!("unexpected log entry {other:?}")),
            }
        }
    }
    Ok(())
}

struct RunResult {
    n: usize,
    size: usize,
    total: usize,
    round: usize,
    secs: f64,
    cpu: f64,
    messages: usize,
}

fn print_result(name: &str, r: &RunResult, round_end: &[f64]) {
    let RunResult {
        n,
        size,
        total,
        round,
        secs,
        cpu,
        messages,
    } = *r;
    // Throughput over the first and the last 10% of the rounds (per-round cost vs log length).
    let tenth = (round_end.len() / 10).max(1);
    let first = round_end[tenth - 1];
    let last = secs - round_end[round_end.len() - tenth - 1].min(secs);
    let per = (tenth * round) as f64;
    println!(
        "{{\"impl\":\"{name}\",\"nodes\":{n},\"size\":{size},\"entries\":{total},\"round\":{round},\
         \"secs\":{secs:.6},\"eps\":{:.1},\"cpu_secs\":{cpu:.6},\"cpu_eps\":{:.1},\
         \"first10_eps\":{:.1},\"last10_eps\":{:.1},\
         \"messages\":{messages},\"maxrss_kib\":{}}}",
        total as f64 / secs,
        if cpu > 0.0 { total as f64 / cpu } else { 0.0 },
        per / first,
        per / last,
        peak_rss_kib()
    );
}

fn main() {
    if let Err(e) = run() {
        eprintln!("omnipaxos-peer-bench: {e}");
        std::process::exit(1);
    }
}
