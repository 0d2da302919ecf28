"""The binding's surface, against the real library."""

from __future__ import annotations

import gc
import re
import threading
from pathlib import Path

import pytest

import omnipaxos
from omnipaxos import Ballot, EntryKind, OmniPaxos

from conftest import REPO, LocalCluster, node_config


def test_versions() -> None:
    v = omnipaxos.version()
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", v)
    cargo = (REPO / "Cargo.toml").read_text()
    m = re.search(r'^version\s*=\s*"([^"]+)"', cargo, re.M)
    assert m is not None and m.group(1) == v
    assert omnipaxos.wire_version() == 2
    assert omnipaxos.__version__ == v


def test_strerror() -> None:
    for code in omnipaxos.ResultCode:
        assert omnipaxos.strerror(code)
    assert omnipaxos.strerror(12345) == "unknown error code"


def test_package_is_typed() -> None:
    assert (Path(omnipaxos.__file__).parent / "py.typed").is_file()


def test_from_hocon_str_and_properties() -> None:
    with OmniPaxos.from_hocon_str(node_config(pid=2)) as node:
        assert node.pid == 2
        assert node.leader is None and node.ballot is None and not node.is_leader
        assert node.decided_idx == 0
        assert isinstance(node.is_quorum_connected, bool)
        assert node.read(0) is None and node.read_entry(0) is None
        assert node.read_decided() == [] and node.read_decided(5) == []
        assert node.read_entries(0, 0) == []
        assert repr(node) == "<OmniPaxos pid=2>"


def test_from_hocon_file(tmp_path: Path) -> None:
    conf = tmp_path / "node3.conf"
    conf.write_text("{\n  config_id: 1\n  pid: 3\n  peers: [1, 2]\n  election_tick_timeout: 7\n}\n")
    for path in (conf, str(conf), bytes(conf)):
        with OmniPaxos.from_hocon(path) as node:
            assert node.pid == 3


def test_from_config_mapping(tmp_path: Path) -> None:
    with OmniPaxos.from_config({"pid": 1, "peers": [2, 3], "log_file_path": tmp_path / "log.txt"}) as node:
        assert node.pid == 1


def test_elect_append_read(elected: LocalCluster) -> None:
    leader = elected.leader()
    assert leader is not None
    for node in elected.nodes.values():
        assert node.leader == leader
        assert node.is_quorum_connected
        b = node.ballot
        assert isinstance(b, Ballot) and b.pid == leader
    assert elected[leader].is_leader
    follower = next(p for p in elected.pids if p != leader)
    elected[leader].append(b"bytes")
    elected[follower].append(bytearray(b"bytearray"))
    elected[leader].append(memoryview(b"xmemoryviewx")[1:-1])
    elected[leader].append(b"")
    elected.run_until(lambda: all(n.decided_idx == 4 for n in elected.nodes.values()))
    for node in elected.nodes.values():
        log = node.read_decided()
        assert sorted(log) == sorted([b"bytes", b"bytearray", b"memoryview", b""])
        assert node.read_decided(2) == log[2:]
        assert node.read_entries(1, 3) == log[1:3]
        assert [node.read(i) for i in range(4)] == log
        assert node.read(4) is None and node.read(10**9) is None
        entries = node.read_decided_entries(1)
        assert [e.idx for e in entries] == [1, 2, 3]
        assert all(e.kind == EntryKind.DECIDED and e.decided for e in entries)
        assert [e.data for e in node.read_log(0, 4)] == log
        e0 = node.read_entry(0)
        assert e0 is not None and e0.idx == 0 and e0.data == log[0] and e0.decided


def test_undecided_entry_at_the_leader(elected: LocalCluster) -> None:
    leader = elected.leader()
    assert leader is not None
    node = elected[leader]
    node.append(b"pending")
    node.outgoing()  # sent into the void: the followers never answer
    entry = node.read_entry(0)
    assert entry is not None and entry.data == b"pending"
    assert entry.kind == EntryKind.UNDECIDED and not entry.decided
    assert node.decided_idx == 0 and node.read_decided() == []
    assert node.read(0) == b"pending"


def test_outgoing_messages_are_copies(cluster: LocalCluster) -> None:
    node = cluster[1]
    node.election_timeout()
    first = node.outgoing()
    assert first and all(isinstance(m, bytes) and to in (2, 3) for to, m in first)
    # A 2-byte magic number, then the wire-format version.
    assert all(m[:2] == b"\xce\xa9" and m[2] == omnipaxos.wire_version() for _, m in first)
    saved = [(to, bytes(m)) for to, m in first]
    for _ in range(5):
        node.election_timeout()
        node.outgoing()  # the library reuses its buffer; our copies must not change
    assert first == saved
    assert node.outgoing() == []


def test_election_timeout_speeds_up_election() -> None:
    c = LocalCluster(election_tick_timeout=100000)
    try:
        for _ in range(20):
            for node in c.nodes.values():
                node.election_timeout()
            c.deliver()
            if c.leader() is not None:
                break
        assert c.leader() is not None
    finally:
        c.close()


def test_buffer_full_without_leader() -> None:
    with OmniPaxos.from_hocon_str(node_config(buffer_size=10)) as node:
        for i in range(10):
            node.append(b"%d" % i)
        with pytest.raises(omnipaxos.BufferFullError) as info:
            node.append(b"one too many")
        assert info.value.code == omnipaxos.ResultCode.BUFFER_FULL
        assert info.value.message


def test_trim(elected: LocalCluster) -> None:
    leader = elected.leader()
    assert leader is not None
    for i in range(20):
        elected[leader].append(b"e%d" % i)
    elected.run_until(lambda: all(n.decided_idx == 20 for n in elected.nodes.values()))
    elected.step(3)  # every node learns what the others decided
    elected[leader].trim(10)
    elected.step(3)
    for node in elected.nodes.values():
        assert node.read(0) is None and node.read(9) is None
        assert node.read(10) == b"e10" and node.read(19) == b"e19"
        e = node.read_entry(5)
        assert e is not None and e.kind == EntryKind.TRIMMED and e.data == b""
        assert node.decided_idx == 20
    follower = next(p for p in elected.pids if p != leader)
    with pytest.raises(omnipaxos.NotLeaderError) as info:
        elected[follower].trim()  # only the leader trims
    assert f"server {leader}" in info.value.message
    elected[leader].trim()  # everything decided everywhere
    elected.step(3)
    for node in elected.nodes.values():
        assert node.read(19) is None
        assert node.decided_idx == 20
    with pytest.raises(omnipaxos.InvalidArgumentError):
        elected[leader].trim(10**6)


def test_reconnected_resyncs_a_cut_off_node(elected: LocalCluster) -> None:
    leader = elected.leader()
    assert leader is not None
    lagging = next(p for p in elected.pids if p != leader)
    elected.down.add(lagging)
    for i in range(10):
        elected[leader].append(b"while-away-%d" % i)
    alive = [p for p in elected.pids if p != lagging]
    elected.run_until(lambda: all(elected[p].decided_idx == 10 for p in alive))
    assert elected[lagging].decided_idx == 0
    elected.down.clear()
    elected[lagging].reconnected(leader)
    elected[leader].reconnected(lagging)
    elected.run_until(lambda: elected[lagging].decided_idx == 10)
    assert elected[lagging].read_decided() == elected[leader].read_decided()


def test_fail_recovery_node_catches_up(elected: LocalCluster) -> None:
    leader = elected.leader()
    assert leader is not None
    for i in range(10):
        elected[leader].append(b"before-%d" % i)
    elected.run_until(lambda: all(n.decided_idx == 10 for n in elected.nodes.values()))
    victim = next(p for p in elected.pids if p != leader)
    elected[victim].close()
    # A fresh process on (memory) storage: fail_recovery and let the leader sync it.
    elected.nodes[victim] = elected.make(victim)
    elected[victim].fail_recovery()
    for p in elected.pids:
        if p != victim:
            elected[p].reconnected(victim)
    elected[leader].append(b"after")
    elected.run_until(lambda: all(n.decided_idx == 11 for n in elected.nodes.values()))
    assert elected[victim].read_decided() == elected[leader].read_decided()


def test_close_and_closed_node() -> None:
    node = OmniPaxos.from_hocon_str(node_config())
    assert not node.closed
    node.close()
    node.close()  # idempotent
    assert node.closed
    assert repr(node) == "<OmniPaxos closed>"
    calls = [
        lambda: node.append(b"x"),
        lambda: node.handle_incoming(b"x"),
        node.outgoing,
        node.tick,
        node.election_timeout,
        node.fail_recovery,
        lambda: node.reconnected(2),
        node.trim,
        lambda: node.read(0),
        lambda: node.read_entry(0),
        lambda: node.read_entries(0, 1),
        lambda: node.read_log(0, 1),
        node.read_decided,
        node.read_decided_entries,
        lambda: node.decided_idx,
        lambda: node.leader,
        lambda: node.ballot,
        lambda: node.pid,
        lambda: node.is_quorum_connected,
        lambda: node.is_leader,
        lambda: node.__enter__(),
    ]
    for call in calls:
        with pytest.raises(omnipaxos.ClosedError):
            call()


def test_context_manager_closes() -> None:
    with OmniPaxos.from_hocon_str(node_config()) as node:
        assert node.pid == 1
    assert node.closed
    with pytest.raises(omnipaxos.ClosedError):
        node.tick()


def test_del_frees_an_open_node() -> None:
    for _ in range(100):
        node = OmniPaxos.from_hocon_str(node_config())
        node.tick()
        del node
    gc.collect()


def test_cannot_construct_or_pickle_directly() -> None:
    import pickle

    with pytest.raises(TypeError):
        OmniPaxos()
    with OmniPaxos.from_hocon_str(node_config()) as node, pytest.raises(TypeError):
        pickle.dumps(node)


def test_threads_share_a_node_and_close_races_safely() -> None:
    c = LocalCluster()
    try:
        leader = c.elect()
        node = c[leader]
        stop = threading.Event()
        failures: list = []

        def worker(k: int) -> None:
            i = 0
            while not stop.is_set():
                try:
                    node.append(b"t%d-%d" % (k, i))
                    node.tick()
                    node.outgoing()
                    node.read_decided()
                    node.read(0)
                    _ = node.decided_idx, node.leader, node.ballot
                except omnipaxos.ClosedError:
                    return
                except omnipaxos.BufferFullError:
                    pass
                except Exception as e:  # pragma: no cover - reported below
                    failures.append(e)
                    return
                i += 1

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        stop.wait(0.5)
        node.close()  # while the workers are calling: they must get ClosedError, no crash
        stop.set()
        for t in threads:
            t.join(10)
        assert not failures, failures
        assert not any(t.is_alive() for t in threads)
    finally:
        c.close()


def test_last_error_is_per_thread() -> None:
    # A failure in one thread does not leak its message into another thread's error.
    errors: dict = {}

    def bad_config() -> None:
        try:
            OmniPaxos.from_hocon_str("pid = 1, nodes = [1, 2, 3], bogus_key_in_thread = 1")
        except omnipaxos.ConfigError as e:
            errors["thread"] = e.message

    t = threading.Thread(target=bad_config)
    t.start()
    t.join()
    with pytest.raises(omnipaxos.ConfigError) as info:
        OmniPaxos.from_hocon_str("nodes = [1, 2, 3]")
    assert "bogus_key_in_thread" in errors["thread"]
    assert "bogus_key_in_thread" not in info.value.message
