#!/usr/bin/env python3
"""Reconfiguration end to end, in one process: a key-value store replicated by
configuration 1 (nodes 1, 2, 3) moves to configuration 2 (nodes 2, 3, 4).

1. Configuration 1 elects a leader and decides a few ``set k=v`` / ``del k`` commands;
   every replica applies them to its own key-value dict.
2. The leader ends the configuration with ``reconfigure`` (a StopSign naming
   configuration 2). Once it is decided, every old node ``is_stopped``: appends raise
   ``StoppedError``, and ``decided_stopsign()`` gives the next configuration.
3. The application starts configuration 2 (new nodes, ``config_id = 2``), seeds each new
   replica with the key-value state of configuration 1, and goes on appending there. A
   message of configuration 1 handed to a node of configuration 2 is rejected.

The library decides the StopSign; starting the new nodes and moving the application state
over is the application's job (this file shows one way). Exits 0 when every check passed.

Run from a checkout:  cargo build --release && python3 examples/python/reconfigure.py
(the C version of the same story: examples/c/reconfigure.c)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Dict, List, Type

# Use the binding of this checkout (works without `pip install`).
_BINDING = Path(__file__).resolve().parents[2] / "bindings" / "python"
if (_BINDING / "omnipaxos" / "__init__.py").is_file():
    sys.path.insert(0, str(_BINDING))

import omnipaxos  # noqa: E402


class CheckFailed(Exception):
    """A check of this example failed."""


def check(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


# ---- the application: a key-value dict changed by "set k=v" and "del k" -----------------


def apply(kv: Dict[str, str], command: bytes) -> None:
    op, _, arg = command.decode().partition(" ")
    if op == "set":
        key, _, value = arg.partition("=")
        kv[key] = value
    elif op == "del":
        kv.pop(arg, None)
    else:
        raise CheckFailed(f"unknown command {command!r}")


class Replica:
    """The application on one node: its state and how much of the decided log it applied."""

    def __init__(self, node: omnipaxos.OmniPaxos, kv: Dict[str, str]) -> None:
        self.node = node
        self.kv = kv
        self.applied = 0  # the next log index to read

    def apply_decided(self) -> None:
        # After a StopSign this stops before it: the StopSign is not an entry to apply.
        for command in self.node.read_decided(self.applied):
            apply(self.kv, command)
            self.applied += 1


# ---- one configuration: its nodes, messages passed in memory -----------------------------


class Configuration:
    def __init__(self, config_id: int, pids: List[int]) -> None:
        self.id = config_id
        # `nodes` lists every member (`peers` would list the others).
        self.nodes = {
            pid: omnipaxos.OmniPaxos.from_config({
                "config_id": config_id,
                "pid": pid,
                "nodes": pids,
                "election_tick_timeout": 5,
                "storage": {"type": "memory"},
            })
            for pid in pids
        }  # fmt: skip
        self.apps: Dict[int, Replica] = {}

    def deliver(self) -> None:
        """The "network": moves every outgoing message to its receiver until all are quiet."""
        while True:
            batch = [(to, msg) for node in self.nodes.values() for to, msg in node.outgoing()]
            if not batch:
                return
            for to, msg in batch:
                self.nodes[to].handle_incoming(msg)

    def step(self) -> None:
        for node in self.nodes.values():
            node.tick()
        self.deliver()

    def run_until(self, cond: Callable[[], bool], what: str, max_ticks: int = 1000) -> None:
        for _ in range(max_ticks):
            if cond():
                return
            self.step()
        check(cond(), f"configuration {self.id}: {what}")

    def elect(self) -> int:
        def agreed() -> bool:
            leaders = {node.leader for node in self.nodes.values()}
            return len(leaders) == 1 and None not in leaders

        self.run_until(agreed, "no leader elected")
        leader = next(iter(self.nodes.values())).leader
        assert leader is not None
        print(f"configuration {self.id}: leader is node {leader}")
        return leader

    def wait_decided(self, n: int) -> None:
        """Ticks until every node decided ``n`` entries; every replica then applies them."""
        self.run_until(lambda: all(node.decided_idx >= n for node in self.nodes.values()),
                       f"{n} entries not decided")
        for app in self.apps.values():
            app.apply_decided()

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()


def expect(error: Type[omnipaxos.OmniPaxosError], label: str, call: Callable[[], None]) -> None:
    """Runs ``call``, which must raise ``error``; prints the library's message."""
    try:
        call()
    except error as e:
        print(f"  {label} -> {error.__name__} ({e.message})")
        return
    raise CheckFailed(f"{label}: {error.__name__} was not raised")


# ---- the story ----------------------------------------------------------------------------


def story(old: Configuration, configs: List[Configuration]) -> None:
    # 1. Configuration 1: nodes 1, 2, 3.
    for pid, node in old.nodes.items():
        old.apps[pid] = Replica(node, {})
    leader = old.elect()
    follower = next(pid for pid in old.nodes if pid != leader)
    commands = [b"set x=1", b"set y=2", b"set z=3", b"del y"]
    for command in commands:
        old.nodes[leader].append(command)
    old.wait_decided(len(commands))
    for pid, app in old.apps.items():
        print(f"  node {pid} applied {app.applied} entries: {app.kv}")
        check(app.kv == {"x": "1", "z": "3"}, f"node {pid} has the wrong state")

    # 2. End configuration 1 with a StopSign naming configuration 2: nodes 2, 3, 4. The
    #    metadata is opaque to the library; the application puts there what the new nodes
    #    need to know (here: where their state comes from).
    new_pids = [2, 3, 4]
    meta = b"kv state: the decided log of configuration 1"
    print("reconfiguring to configuration 2 with nodes [2, 3, 4]")
    # Only the leader can propose it (a follower does not forward a StopSign).
    expect(omnipaxos.NotLeaderError, "reconfigure at a follower",
           lambda: old.nodes[follower].reconfigure(2, new_pids, meta))
    old.nodes[leader].reconfigure(2, new_pids, meta)
    # Proposed, not decided yet: the leader already refuses new entries.
    expect(omnipaxos.StoppedError, "append at the leader before it is decided",
           lambda: old.nodes[leader].append(b"set w=9"))

    old.run_until(lambda: all(node.is_stopped for node in old.nodes.values()), "not stopped")
    print("configuration 1 is stopped on every node")
    for pid, node in old.nodes.items():
        expect(omnipaxos.StoppedError, f"append at node {pid}", lambda n=node: n.append(b"set w=9"))

    # Every old node reports the same next configuration. The StopSign is the last decided
    # entry: at index decided_idx - 1, after the 4 commands.
    stopsign = old.nodes[1].decided_stopsign()
    print(f"decided StopSign: {stopsign}")
    check(stopsign == omnipaxos.StopSign(2, tuple(new_pids), meta),
          "the StopSign is not what the leader proposed")
    for pid, node in old.nodes.items():
        check(node.decided_stopsign() == stopsign, f"node {pid} reports another StopSign")
        check(node.decided_idx == len(commands) + 1, f"node {pid}: decided_idx {node.decided_idx}")
        last = node.read_entry(node.decided_idx - 1)
        check(last is not None and last.kind == omnipaxos.EntryKind.STOPSIGN,
              f"node {pid}: no StopSign at decided_idx - 1")
    # The application loop reads no further: read_decided stops before the StopSign.
    for pid, app in old.apps.items():
        app.apply_decided()
        check(app.applied == len(commands), f"node {pid} applied {app.applied} entries")

    # 3. Start configuration 2 as the StopSign says: new nodes with config_id = 2. (In a
    #    deployment, nodes 2 and 3 would run these next to their old nodes, and node 4 is a
    #    new server.)
    assert stopsign is not None
    new = Configuration(stopsign.next_config_id, list(stopsign.nodes))
    configs.append(new)

    # Moving the state over is the application's job: the new log starts empty. Here every
    # new replica starts from the key-value dict that configuration 1's decided log built
    # (its commands applied in order), not from the consensus log itself. Nodes 2 and 3
    # could rebuild it from their own old log; node 4 has none, so it gets a copy out of
    # band (in a deployment: a snapshot fetched from an old node over your own connection).
    # Another way: the new leader appends the snapshot as the first entry of the new log,
    # and every replica applies it like any other entry.
    snapshot = old.apps[2].kv  # any old replica: they all agree
    for pid, node in new.nodes.items():
        new.apps[pid] = Replica(node, dict(snapshot))  # the seed; nothing of the new log applied

    # A configuration-1 message is of no use to configuration 2: the node rejects it and is
    # unchanged. Old node 2 sends heartbeats to node 3 as it ticks.
    for _ in range(100):
        old.nodes[2].tick()
        to_3 = [msg for to, msg in old.nodes[2].outgoing() if to == 3]
        if to_3:
            msg = to_3[0]
            expect(omnipaxos.WrongConfigurationError,
                   "a configuration-1 message from node 2 to new node 3",
                   lambda: new.nodes[3].handle_incoming(msg))
            break
    else:
        raise CheckFailed("old node 2 sent no message to node 3")

    new_leader = new.elect()
    new_follower = next(pid for pid in new.nodes if pid != new_leader)
    # Appends work again, at the leader and (forwarded) at a follower.
    new.nodes[new_leader].append(b"set w=4")
    new.wait_decided(1)
    new.nodes[new_follower].append(b"set x=5")
    new.wait_decided(2)
    for pid, app in new.apps.items():
        print(f"  node {pid} (configuration 2) applied {app.applied} entries on its seed: {app.kv}")
        check(app.applied == 2 and app.kv == {"x": "5", "z": "3", "w": "4"},
              f"node {pid} of configuration 2 has the wrong state")
    print("reconfiguration complete: every check passed")


def main() -> int:
    print(f"libomnipaxos {omnipaxos.version()}, loaded from {omnipaxos.library_path()}")
    old = Configuration(1, [1, 2, 3])
    configs = [old]
    try:
        story(old, configs)
        return 0
    except (CheckFailed, omnipaxos.OmniPaxosError) as e:
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        # The old nodes ran until the new ones no longer needed them; now close everything.
        for config in configs:
            config.close()


if __name__ == "__main__":
    sys.exit(main())
