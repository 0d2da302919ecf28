"""Reconfiguration: a StopSign proposed at the leader ends the configuration on every node."""

from __future__ import annotations

from pathlib import Path

import pytest

import omnipaxos
from conftest import LocalCluster
from omnipaxos import EntryKind, StopSign

NEXT = StopSign(next_config_id=2, nodes=(4, 5, 6), metadata=b"\x00new config\xff")


def stopped_everywhere(c: LocalCluster) -> bool:
    return all(n.is_stopped for n in c.nodes.values())


def test_nothing_is_stopped_at_first(cluster: LocalCluster) -> None:
    node = cluster[1]
    assert node.is_stopped is False
    assert node.decided_stopsign() is None
    # No leader is known yet: nobody can reconfigure.
    with pytest.raises(omnipaxos.NotLeaderError) as info:
        node.reconfigure(2, [4])
    assert info.value.code == omnipaxos.ResultCode.NOT_LEADER
    assert "no leader is known" in info.value.message


def test_reconfigure_validates_its_arguments(elected: LocalCluster) -> None:
    leader = elected.leader()
    assert leader is not None
    follower = next(p for p in elected.pids if p != leader)
    with pytest.raises(omnipaxos.NotLeaderError) as info:
        elected[follower].reconfigure(2, [4, 5])
    assert f"server {leader}" in info.value.message
    node = elected[leader]
    for args, text in [
        ((2, []), "at least one node"),
        ((2, [4, 5, 4]), "node 4 is listed twice"),
        ((2, [0, 5]), "pid 0"),
        ((1, [4, 5]), "must differ"),  # 1 is this configuration's id
        ((2**32, [4]), "next_config_id"),
    ]:
        with pytest.raises(omnipaxos.InvalidArgumentError) as err:
            node.reconfigure(*args)
        assert text in err.value.message, err.value.message
    with pytest.raises(TypeError):
        node.reconfigure(2, [4], "text metadata")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        node.reconfigure(2, ["4"])  # type: ignore[list-item]
    # Nothing was proposed: entries are still taken and decided.
    node.append(b"still open")
    elected.run_until(lambda: all(n.decided_idx == 1 for n in elected.nodes.values()))
    assert not any(n.is_stopped for n in elected.nodes.values())


def test_stopsign_is_decided_everywhere_after_the_earlier_entries(elected: LocalCluster) -> None:
    leader = elected.leader()
    assert leader is not None
    node = elected[leader]
    entries = [b"before-%d" % i for i in range(5)]
    for e in entries:
        node.append(e)
    node.reconfigure(NEXT.next_config_id, list(NEXT.nodes), NEXT.metadata)
    with pytest.raises(omnipaxos.StoppedError):
        node.append(b"after")
    with pytest.raises(omnipaxos.StoppedError):
        node.reconfigure(3, [7])
    elected.run_until(lambda: stopped_everywhere(elected))
    for pid, n in elected.nodes.items():
        assert n.decided_stopsign() == NEXT, pid
        assert n.decided_idx == len(entries) + 1
        assert n.read_decided() == entries
        stop = n.read_entry(len(entries))
        assert stop is not None and stop.kind == EntryKind.STOPSIGN
        assert n.read_entry(len(entries) + 1) is None
        with pytest.raises(omnipaxos.StoppedError):
            n.append(b"after")
    # It stays that way.
    elected.step(20)
    assert all(n.decided_stopsign() == NEXT for n in elected.nodes.values())


def test_stopsign_survives_a_restart_on_persistent_storage(tmp_path: Path) -> None:
    def storage(pid: int) -> dict:
        path = str(tmp_path / f"node{pid}")
        return {"storage": {"type": "persistent", "path": path, "sync": "never"}}

    c = LocalCluster(per_node=storage)
    try:
        leader = c.elect()
        for i in range(3):
            c[leader].append(b"e%d" % i)
        c[leader].reconfigure(7, [1, 2], b"")
        c.run_until(lambda: stopped_everywhere(c))
        want = StopSign(7, (1, 2), b"")
        victim = next(p for p in c.pids if p != leader)
        c[victim].close()
        c.nodes[victim] = c.make(victim)
        c[victim].fail_recovery()
        # Its log ends with the StopSign at once; that it is decided, the leader tells it.
        with pytest.raises(omnipaxos.StoppedError):
            c[victim].append(b"after")
        for p in c.pids:
            if p != victim:
                c[p].reconnected(victim)
        c.run_until(lambda: stopped_everywhere(c))
        assert c[victim].decided_stopsign() == want
        assert c[victim].read_decided() == [b"e0", b"e1", b"e2"]
    finally:
        c.close()


def test_stopsign_is_a_frozen_value() -> None:
    s = StopSign(2, (1,), b"m")
    with pytest.raises(AttributeError):
        s.next_config_id = 3  # type: ignore[misc]
    assert s == StopSign(2, (1,), b"m") and hash(s) == hash(StopSign(2, (1,), b"m"))


def test_message_header_names_the_configuration(cluster: LocalCluster) -> None:
    node = cluster[1]
    for _ in range(50):
        node.tick()
        out = node.outgoing()
        if out:
            break
    assert out, "node 1 sent nothing"
    receiver, data = out[0]
    h = omnipaxos.message_header(data)
    assert h == omnipaxos.MessageHeader(config_id=1, sender=1, receiver=receiver)
    assert omnipaxos.message_header(bytearray(data[:23])).config_id == 1  # header only
    with pytest.raises(omnipaxos.MalformedMessageError):
        omnipaxos.message_header(data[:20])
    with pytest.raises(omnipaxos.UnsupportedVersionError):
        omnipaxos.message_header(data[:2] + b"\xee" + data[3:])
    with pytest.raises(TypeError):
        omnipaxos.message_header("text")  # type: ignore[arg-type]
