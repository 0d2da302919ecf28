"""One libomnipaxos node of the cross-process counter benchmark (see bench_python.py).

Three of these run as separate processes on 127.0.0.1, linked by transport.Mesh. Each
applies the decided log to a counter (an entry is one increment). The node with
``--leader`` (given the highest leader_priority, so it is elected) runs the workload once
the cluster is up and prints one JSON line:

* latency: ``--lat-ops`` times, append one increment and wait until it is applied locally;
* throughput: for ``--secs`` seconds keep ``--window`` increments outstanding (appended,
  not yet applied locally) and count the increments applied. Each refill of the window is
  one ``append_many`` call (one entry per increment) where the binding has it.

Every process exits by itself after ``--deadline`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Dict, List, Tuple

from omnipaxos import OmniPaxos, OmniPaxosError
from transport import Mesh

TICK = 0.01  # seconds per node tick
DEBUG = bool(os.environ.get("OP_NODE_DEBUG"))
INCR = b"\x01"


class CounterNode:
    def __init__(self, pid: int, addrs: Dict[int, Tuple[str, int]], leader: bool) -> None:
        self.node = OmniPaxos.from_config(
            {
                "pid": pid,
                "nodes": sorted(addrs),
                # 0.5 s heartbeat rounds, like pysyncobj's 0.4 s minimum election timeout:
                # on this shared 2-core machine a busy leader can miss a 0.1 s round.
                "election_tick_timeout": 50,
                "resend_tick_timeout": 5,
                "leader_priority": 10 if leader else 0,
                "buffer_size": 1_000_000,
                "storage": {"type": "memory"},
            }
        )
        self.mesh = Mesh(pid, addrs)
        self.applied = 0  # log entries applied
        self.counter = 0
        self.next_tick = time.monotonic() + TICK

    def step(self, max_wait: float) -> None:
        """One turn of the event loop: network in, clock, network out, apply decided."""
        now = time.monotonic()
        wait = min(max_wait, max(0.0, self.next_tick - now))
        node = self.node
        for frame in self.mesh.poll(wait):
            try:
                node.handle_incoming(frame)
            except OmniPaxosError:
                pass  # a stray or stale message: dropped, as the protocol allows
        now = time.monotonic()
        if now >= self.next_tick:
            node.tick()
            self.next_tick = max(self.next_tick + TICK, now)
        self.send_outgoing()
        if node.decided_idx > self.applied:
            entries: List[bytes] = node.read_decided(self.applied)
            self.applied += len(entries)
            for e in entries:
                self.counter += e[0] if e else 0

    def send_outgoing(self) -> None:
        for to, data in self.node.outgoing():
            self.mesh.send(to, data)
        self.mesh.flush()

    def append(self, data: bytes) -> None:
        self.node.append(data)
        self.send_outgoing()


def run_workload(
    n: CounterNode, lat_ops: int, lat_secs: float, secs: float, window: int, deadline: float
) -> dict:
    # Wait until this node leads and a first entry is applied.
    while not n.node.is_leader:
        if time.monotonic() > deadline:
            raise SystemExit("no leader")
        n.step(0.05)
    n.append(INCR)
    while n.counter < 1:
        if time.monotonic() > deadline:
            raise SystemExit("first increment never applied")
        n.step(0.05)

    lats = []
    t_end = time.monotonic() + lat_secs
    for _ in range(lat_ops):
        want = n.counter + 1
        t0 = t_sent = time.perf_counter()
        n.append(INCR)
        while n.counter < want:
            n.step(0.05)
            if time.perf_counter() - t_sent > 1.0:  # lost with a leader change: re-issue
                t_sent = time.perf_counter()
                n.append(INCR)
        lats.append(time.perf_counter() - t0)
        if time.monotonic() > t_end:
            break
    lats.sort()

    issued = n.counter
    warm_until = time.monotonic() + min(0.5, secs / 4)
    start = end = None
    c0 = 0
    next_dbg = 0.0
    last_counter, last_progress, lost = n.counter, time.monotonic(), 0
    append_many = getattr(n.node, "append_many", None)  # bindings since the bulk C calls
    while True:
        now = time.monotonic()
        if start is None and now >= warm_until:
            start, c0 = now, n.counter
            end = start + secs
        if end is not None and now >= end:
            break
        if n.counter != last_counter:
            last_counter, last_progress = n.counter, now
        elif issued > n.counter and now - last_progress > 1.0:
            # Nothing applied for a second: the outstanding increments were lost with a
            # leader change (appended, never decided). A client re-issues them.
            lost += issued - n.counter
            issued = n.counter
            last_progress = now
        room = window - (issued - n.counter)
        if room > 0:
            if append_many is not None:
                issued += append_many([INCR] * room)  # one call into the library per burst
            else:
                for _ in range(room):
                    n.node.append(INCR)
                issued += room
            n.send_outgoing()
        n.step(0.05)
        if DEBUG and now >= next_dbg:
            next_dbg = now + 0.5
            print(f"dbg t={now - warm_until:.1f} issued={issued} counter={n.counter} "
                  f"decided={n.node.decided_idx} leader={n.node.leader} "
                  f"bufs={[len(o.buf) for o in n.mesh.outs.values()]}", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - start
    ops = n.counter - c0
    return {
        "system": "libomnipaxos",
        "ops_per_s": ops / elapsed,
        "ops": ops,
        "secs": elapsed,
        "window": window,
        "reissued": lost,
        "leader_at_end": n.node.leader,
        "lat_ops": len(lats),
        "lat_p50_us": lats[len(lats) // 2] * 1e6,
        "lat_p90_us": lats[len(lats) * 9 // 10] * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--ports", required=True, help="comma-separated ports of pids 1..n")
    ap.add_argument("--leader", action="store_true")
    ap.add_argument("--lat-ops", type=int, default=500)
    ap.add_argument("--lat-secs", type=float, default=2.0)
    ap.add_argument("--secs", type=float, default=3.0)
    ap.add_argument("--window", type=int, default=5000)
    ap.add_argument("--deadline", type=float, default=60.0)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ports = [int(p) for p in a.ports.split(",")]
    addrs = {i + 1: ("127.0.0.1", p) for i, p in enumerate(ports)}
    deadline = time.monotonic() + a.deadline
    n = CounterNode(a.pid, addrs, a.leader)
    if a.leader:
        res = run_workload(n, a.lat_ops, a.lat_secs, a.secs, a.window, deadline)
        print(json.dumps(res), flush=True)
        # Keep serving until the driver stops us, so the followers see no lost leader.
    while time.monotonic() < deadline:
        n.step(0.05)


if __name__ == "__main__":
    main()
