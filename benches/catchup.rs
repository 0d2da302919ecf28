//! Catch-up of a follower that missed a long stretch of the log (issue 13).
//!
//! Three nodes in one process and one thread, memory storage, messages passed as bytes
//! (`take_outgoing_encoded` -> `handle_incoming_bytes`). Server 3 is cut off while the
//! leader (server 1) and server 2 decide COUNT entries of SIZE bytes; then the links come
//! back (`reconnected` on both sides) and the clock starts: messages are delivered in
//! rounds (every message sent in one round is delivered in the next, like a link with a
//! fixed latency) until server 3 has decided every entry. No ticks: the catch-up is driven
//! by server 3's acknowledgements alone.
//!
//! To measure each side's memory on its own, the process forks at that point: the parent
//! keeps servers 1 and 2, the child keeps server 3 (each drops the others), and the
//! messages between them travel over a Unix socket pair in lockstep rounds. Each side
//! resets its peak RSS (`/proc/self/clear_refs`) once it has dropped the other nodes, and
//! reports its VmHWM minus its VmRSS at that moment: the memory the catch-up cost it (for
//! the follower, that includes the log it receives; the payload size is printed next to it).
//!
//! Printed per case (one JSON line): catch-up time, the payload rate, messages and bytes to
//! and from server 3, rounds (round trips), the largest message, and each side's peak RSS
//! growth.
//!
//! Usage: cargo bench --bench catchup -- [--count N --size B] [--max-message-bytes M]
//! (without --count: the two cases of the issue, 1,000,000 x 16 B and 200,000 x 1 KiB,
//! each in its own process).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use omnipaxos::{Config, MemoryStorage, NodeId, OmniPaxos};

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak RSS to the current RSS and returns the current RSS in KiB.
fn reset_peak_rss() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS:")
}

// ----- the cluster -----------------------------------------------------------------------

struct Net {
    nodes: Vec<OmniPaxos>,
    /// Messages of the current round: (to, bytes).
    in_flight: Vec<(NodeId, Vec<u8>)>,
    buf: Vec<u8>,
    /// Server 3 is cut off (its messages, both ways, are dropped).
    cut3: bool,
}

impl Net {
    fn new(max_message_bytes: usize) -> Net {
        let nodes = (1..=3u64)
            .map(|pid| {
                let config = Config {
                    config_id: 1,
                    pid,
                    peers: (1..=3).filter(|&p| p != pid).collect(),
                    leader_priority: if pid == 1 { 10 } else { 1 },
                    buffer_size: 10_000_000,
                    max_message_bytes,
                    ..Config::default()
                };
                OmniPaxos::with_session(config, Box::new(MemoryStorage::new()), pid).expect("node")
            })
            .collect();
        Net {
            nodes,
            in_flight: Vec::new(),
            buf: Vec::new(),
            cut3: false,
        }
    }

    /// One round: deliver what is in flight, then collect what every node sends.
    fn round(&mut self) -> usize {
        for (to, bytes) in std::mem::take(&mut self.in_flight) {
            let node = &mut self.nodes[to as usize - 1];
            node.handle_incoming_bytes(&bytes).expect("valid message");
        }
        let mut sent = 0;
        for pid in 1..=3u64 {
            let mut ranges = Vec::new();
            let node = &mut self.nodes[pid as usize - 1];
            let buf = &mut self.buf;
            node.take_outgoing_encoded(buf, |to, r| ranges.push((to, r)))
                .expect("take_outgoing");
            for (to, r) in ranges {
                if self.cut3 && (to == 3 || pid == 3) {
                    continue;
                }
                self.in_flight.push((to, self.buf[r].to_vec()));
                sent += 1;
            }
        }
        sent
    }

    fn quiet(&mut self) {
        while self.round() > 0 {}
    }

    fn decided(&mut self, pid: NodeId) -> u64 {
        let node = &mut self.nodes[pid as usize - 1];
        node.decided_idx().expect("decided_idx")
    }
}

fn case(count: u64, size: usize, max_message_bytes: usize) {
    let mut net = Net::new(max_message_bytes);
    // Elect server 1 with everyone connected.
    for _ in 0..200 {
        for pid in 1..=3u64 {
            let node = &mut net.nodes[pid as usize - 1];
            node.tick().expect("tick");
        }
        net.round();
        if net.nodes[0].is_accepting_leader() {
            break;
        }
    }
    assert!(
        net.nodes[0].is_accepting_leader(),
        "server 1 was not elected"
    );
    net.quiet();
    // Server 3 misses `count` entries.
    net.cut3 = true;
    let mut entry = vec![0u8; size];
    let mut appended = 0u64;
    while appended < count {
        let n = (count - appended).min(1000);
        for _ in 0..n {
            entry[..8.min(size)].copy_from_slice(&appended.to_le_bytes()[..8.min(size)]);
            let node = &mut net.nodes[0];
            node.append(&entry).expect("append");
            appended += 1;
        }
        net.quiet();
    }
    assert_eq!(net.decided(1), count);
    assert_eq!(net.decided(3), 0);
    // Fork: the parent keeps servers 1 and 2, the child server 3.
    let (a, b) = UnixStream::pair().expect("socket pair");
    let n3 = net.nodes.pop().expect("server 3");
    // SAFETY: single-threaded process; the child only runs this function's code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(net);
        drop(a);
        follower(n3, b, count);
        // SAFETY: leaves the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(n3);
    drop(b);
    let base_kib = reset_peak_rss();
    let mut rd = std::io::BufReader::with_capacity(1 << 20, a.try_clone().expect("clone"));
    let mut wr = std::io::BufWriter::with_capacity(1 << 20, a);
    let t = Instant::now();
    net.nodes[0].reconnected(3).expect("reconnected");
    let (mut msgs_to3, mut bytes_to3, mut msgs_from3, mut largest, mut rounds) =
        (0u64, 0u64, 0u64, 0usize, 0u64);
    let mut local: Vec<(NodeId, Vec<u8>)> = Vec::new();
    let mut buf = Vec::new();
    loop {
        for pid in 1..=2u64 {
            let mut ranges = Vec::new();
            net.nodes[pid as usize - 1]
                .take_outgoing_encoded(&mut buf, |to, r| ranges.push((to, r)))
                .expect("take_outgoing");
            for (to, r) in ranges {
                largest = largest.max(r.len());
                if to == 3 {
                    msgs_to3 += 1;
                    bytes_to3 += r.len() as u64;
                    write_frame(&mut wr, &buf[r]);
                } else {
                    local.push((to, buf[r].to_vec()));
                }
            }
        }
        write_marker(&mut wr, 0);
        wr.flush().expect("flush");
        rounds += 1;
        let mut from3 = Vec::new();
        let decided3 = read_until_marker(&mut rd, &mut from3);
        if decided3 >= count {
            break;
        }
        for m in &from3 {
            largest = largest.max(m.len());
            msgs_from3 += 1;
        }
        for bytes in from3 {
            let to = omnipaxos::wire::peek_header(&bytes).expect("header").to;
            local.push((to, bytes));
        }
        for (to, bytes) in local.drain(..) {
            net.nodes[to as usize - 1]
                .handle_incoming_bytes(&bytes)
                .expect("valid message");
        }
        assert!(rounds < 10_000_000, "no catch-up");
    }
    let secs = t.elapsed().as_secs_f64();
    let leader_extra_kib = status_kib("VmHWM:").saturating_sub(base_kib);
    write_marker(&mut wr, u64::MAX);
    wr.flush().expect("flush");
    let mut kib = [0u8; 8];
    rd.read_exact(&mut kib).expect("the follower's figures");
    let follower_extra_kib = u64::from_le_bytes(kib);
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let payload = count as f64 * size as f64;
    println!(
        "{{\"case\": \"{count} x {size} B\", \"max_message_bytes\": {max_message_bytes}, \"secs\": {secs:.3}, \"payload_mb_per_s\": {:.1}, \"entries_per_s\": {:.0}, \"rounds\": {rounds}, \"msgs_to_3\": {msgs_to3}, \"bytes_to_3\": {bytes_to3}, \"msgs_from_3\": {msgs_from3}, \"largest_msg\": {largest}, \"leader_side_peak_rss_growth_mb\": {:.1}, \"follower_peak_rss_growth_mb\": {:.1}, \"payload_mb\": {:.1}}}",
        payload / secs / 1e6,
        count as f64 / secs,
        leader_extra_kib as f64 / 1024.0,
        follower_extra_kib as f64 / 1024.0,
        payload / 1e6,
    );
}

/// The child: server 3 alone, answering each round of messages with its own.
fn follower(mut node: OmniPaxos, sock: UnixStream, count: u64) {
    let base_kib = reset_peak_rss();
    let mut rd = std::io::BufReader::with_capacity(1 << 20, sock.try_clone().expect("clone"));
    let mut wr = std::io::BufWriter::with_capacity(1 << 20, sock);
    node.reconnected(1).expect("reconnected");
    let mut buf = Vec::new();
    loop {
        let mut msgs = Vec::new();
        if read_until_marker(&mut rd, &mut msgs) == u64::MAX {
            break;
        }
        for m in msgs {
            node.handle_incoming_bytes(&m).expect("valid message");
        }
        let mut ranges = Vec::new();
        node.take_outgoing_encoded(&mut buf, |to, r| ranges.push((to, r)))
            .expect("take_outgoing");
        for (_, r) in ranges {
            write_frame(&mut wr, &buf[r]);
        }
        let d = node.decided_idx().expect("decided_idx");
        write_marker(&mut wr, d.min(count));
        wr.flush().expect("flush");
    }
    let extra = status_kib("VmHWM:").saturating_sub(base_kib);
    wr.write_all(&extra.to_le_bytes()).expect("write");
    wr.flush().expect("flush");
}

fn write_frame(w: &mut impl Write, bytes: &[u8]) {
    w.write_all(&(bytes.len() as u32).to_le_bytes())
        .expect("write");
    w.write_all(bytes).expect("write");
}

fn write_marker(w: &mut impl Write, v: u64) {
    w.write_all(&u32::MAX.to_le_bytes()).expect("write");
    w.write_all(&v.to_le_bytes()).expect("write");
}

/// Reads frames into `out` until a marker; returns the marker's value.
fn read_until_marker(r: &mut impl Read, out: &mut Vec<Vec<u8>>) -> u64 {
    loop {
        let mut len = [0u8; 4];
        r.read_exact(&mut len).expect("read");
        let len = u32::from_le_bytes(len);
        if len == u32::MAX {
            let mut v = [0u8; 8];
            r.read_exact(&mut v).expect("read");
            return u64::from_le_bytes(v);
        }
        let mut m = vec![0u8; len as usize];
        r.read_exact(&mut m).expect("read");
        out.push(m);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let max = arg("--max-message-bytes").map_or(64 << 20, |v| v as usize);
    match (arg("--count"), arg("--size")) {
        (Some(c), Some(s)) => case(c, s as usize, max),
        _ => {
            // Each case in its own process, so that one's memory does not weigh on the next.
            let me = std::env::current_exe().expect("current_exe");
            for (c, s) in [(1_000_000u64, 16u64), (200_000, 1024)] {
                let st = std::process::Command::new(&me)
                    .args(["--count", &c.to_string(), "--size", &s.to_string()])
                    .args(["--max-message-bytes", &max.to_string()])
                    .status()
                    .expect("run a case");
                assert!(st.success(), "case {c} x {s} failed");
            }
        }
    }
}
