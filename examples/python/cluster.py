#!/usr/bin/env python3
"""Three Omni-Paxos nodes in one process, messages passed in memory.

Elects a leader, appends entries at the leader and at a follower, and prints the decided
log of every node. Exits 0 when all nodes decided the same log.

Run from a checkout:  cargo build --release && python3 examples/python/cluster.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List

# Use the binding of this checkout (works without `pip install`).
_BINDING = Path(__file__).resolve().parents[2] / "bindings" / "python"
if (_BINDING / "omnipaxos" / "__init__.py").is_file():
    sys.path.insert(0, str(_BINDING))

import omnipaxos  # noqa: E402

PIDS = [1, 2, 3]


def deliver(nodes: Dict[int, omnipaxos.OmniPaxos]) -> int:
    """Moves every outgoing message to its receiver until the network is quiet."""
    moved = 0
    while True:
        batch = [(to, msg) for node in nodes.values() for to, msg in node.outgoing()]
        if not batch:
            return moved
        for to, msg in batch:
            nodes[to].handle_incoming(msg)
        moved += len(batch)


def step(nodes: Dict[int, omnipaxos.OmniPaxos], ticks: int = 1) -> None:
    """Advances time by ``ticks`` on every node, delivering messages after each tick."""
    for _ in range(ticks):
        for node in nodes.values():
            node.tick()
        deliver(nodes)


def main() -> int:
    print(f"libomnipaxos {omnipaxos.version()} (wire format {omnipaxos.wire_version()}), "
          f"loaded from {omnipaxos.library_path()}")
    nodes = {
        pid: omnipaxos.OmniPaxos.from_hocon_str(f"pid = {pid}, nodes = {PIDS}, election_tick_timeout = 5")
        for pid in PIDS
    }
    try:
        # A leader is elected within a couple of election timeouts.
        for _ in range(100):
            step(nodes)
            leaders = {node.leader for node in nodes.values()}
            if len(leaders) == 1 and None not in leaders:
                break
        leader = nodes[PIDS[0]].leader
        if leader is None:
            print("no leader elected", file=sys.stderr)
            return 1
        print(f"leader: node {leader}, ballot {nodes[leader].ballot}")

        follower = next(pid for pid in PIDS if pid != leader)
        words = ["alpha", "beta", "gamma", "delta", "epsilon"]
        for i, word in enumerate(words):
            at = leader if i % 2 == 0 else follower  # a follower forwards to the leader
            nodes[at].append(word.encode())
        for _ in range(50):
            step(nodes)
            if all(node.decided_idx >= len(words) for node in nodes.values()):
                break

        logs: List[List[bytes]] = []
        for pid, node in nodes.items():
            log = node.read_decided()
            logs.append(log)
            print(f"node {pid}: decided_idx={node.decided_idx} log={[e.decode() for e in log]}")
        if not logs[0] or any(log != logs[0] for log in logs) or sorted(logs[0]) != sorted(w.encode() for w in words):
            print("the nodes did not decide the same log", file=sys.stderr)
            return 1
        print("all nodes decided the same log")
        return 0
    finally:
        for node in nodes.values():
            node.close()


if __name__ == "__main__":
    sys.exit(main())
