"""Shared helpers: an in-process cluster whose messages are passed in memory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

import pytest

import omnipaxos

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "python"


class LocalCluster:
    """Nodes in one process; ``deliver`` moves messages until the network is quiet.

    ``down`` holds pids cut off from everyone: messages to or from them are dropped.
    """

    def __init__(
        self,
        pids: Iterable[int] = (1, 2, 3),
        per_node: Optional[Callable[[int], Dict[str, Any]]] = None,
        **config: Any,
    ) -> None:
        self.pids = list(pids)
        self.per_node = per_node
        self.config = {"election_tick_timeout": 5, "resend_tick_timeout": 2, **config}
        self.nodes: Dict[int, omnipaxos.OmniPaxos] = {pid: self.make(pid) for pid in self.pids}
        self.down: Set[int] = set()

    def make(self, pid: int, **extra: Any) -> omnipaxos.OmniPaxos:
        own = self.per_node(pid) if self.per_node else {}
        return omnipaxos.OmniPaxos.from_config(
            {"pid": pid, "nodes": self.pids, **self.config, **own, **extra}
        )

    def __getitem__(self, pid: int) -> omnipaxos.OmniPaxos:
        return self.nodes[pid]

    def collect(self) -> List[Tuple[int, int, bytes]]:
        """Takes every node's outgoing messages: ``(from, to, bytes)``."""
        return [(pid, to, msg) for pid, node in self.nodes.items() for to, msg in node.outgoing()]

    def deliver(self, rounds: int = 1000) -> int:
        moved = 0
        for _ in range(rounds):
            batch = self.collect()
            if not batch:
                return moved
            for frm, to, msg in batch:
                if frm in self.down or to in self.down:
                    continue
                self.nodes[to].handle_incoming(msg)
                moved += 1
        raise AssertionError("the network never became quiet")

    def step(self, ticks: int = 1) -> None:
        for _ in range(ticks):
            for node in self.nodes.values():
                node.tick()
            self.deliver()

    def leader(self) -> Optional[int]:
        """The leader every live node agrees on, if any."""
        live = [p for p in self.pids if p not in self.down]
        leaders = {self.nodes[p].leader for p in live}
        if len(leaders) == 1:
            (leader,) = leaders
            if leader is not None and leader in live:
                return leader
        return None

    def elect(self, max_ticks: int = 500) -> int:
        for _ in range(max_ticks):
            self.step()
            leader = self.leader()
            if leader is not None:
                return leader
        raise AssertionError("no leader elected")

    def run_until(self, cond: Any, max_ticks: int = 500) -> None:
        for _ in range(max_ticks):
            if cond():
                return
            self.step()
        assert cond(), "condition not reached"

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def elected(cluster: LocalCluster) -> LocalCluster:
    cluster.elect()
    return cluster


def node_config(pid: int = 1, nodes: Optional[List[int]] = None, **extra: Any) -> str:
    """A HOCON text for one node."""
    items = [f"pid = {pid}", f"nodes = {nodes or [1, 2, 3]}"]
    items += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(items)


def import_example(name: str) -> Any:
    """Imports a module from examples/python/kv_store."""
    path = str(EXAMPLES / "kv_store")
    if path not in sys.path:
        sys.path.insert(0, path)
    return __import__(name)
