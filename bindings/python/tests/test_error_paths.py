"""Every error path: bad configurations, bad messages, bad arguments, storage."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Type

import pytest

import omnipaxos
from omnipaxos import OmniPaxos, ResultCode, _ffi
from omnipaxos.node import _error

from conftest import LocalCluster, node_config


def config_error(text: str) -> omnipaxos.ConfigError:
    with pytest.raises(omnipaxos.ConfigError) as info:
        OmniPaxos.from_hocon_str(text)
    err = info.value
    assert err.code == ResultCode.CONFIG
    assert err.message and str(err) == err.message
    return err


# -- configuration ------------------------------------------------------------------------


def test_missing_key() -> None:
    assert "pid" in config_error("nodes = [1, 2, 3]").message


def test_missing_peers() -> None:
    assert "peers" in config_error("pid = 1").message


def test_ill_typed_key() -> None:
    assert "pid" in config_error('pid = "one", nodes = [1, 2, 3]').message
    assert "election_tick_timeout" in config_error(node_config(election_tick_timeout="[1]")).message
    assert "peers" in config_error("pid = 1, peers = 2").message


def test_unknown_key() -> None:
    assert "no_such_key" in config_error(node_config(no_such_key=5)).message


def test_invalid_values() -> None:
    assert "pid" in config_error("pid = 0, peers = [2, 3]").message
    assert "peers" in config_error("pid = 1, peers = [1, 2]").message
    assert "election_tick_timeout" in config_error(node_config(election_tick_timeout=0)).message
    assert "storage" in config_error(node_config(storage="{ type = floppy }")).message
    assert "storage" in config_error(node_config(storage="{ type = persistent }")).message


def test_garbage_hocon() -> None:
    config_error("{{{ this is : not [ hocon")
    config_error("pid = 1, nodes = [1, 2, 3")


def test_bad_unicode_escape() -> None:
    config_error(node_config(log_file_path='"/tmp/\\uZZZZ"'))


def test_non_utf8_text() -> None:
    with pytest.raises(omnipaxos.InvalidArgumentError) as info:
        OmniPaxos.from_hocon_str(b"pid = 1, nodes = [1, 2, 3], log_file_path = \"\xff\xfe\"")
    assert info.value.code == ResultCode.INVALID_ARGUMENT and info.value.message


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such.conf"
    with pytest.raises(omnipaxos.ConfigError) as info:
        OmniPaxos.from_hocon(missing)
    assert "no-such.conf" in info.value.message


def test_garbage_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_bytes(b"pid = [[[\n")
    with pytest.raises(omnipaxos.ConfigError):
        OmniPaxos.from_hocon(bad)


def test_path_with_nul() -> None:
    with pytest.raises(omnipaxos.InvalidArgumentError):
        OmniPaxos.from_hocon("a\0b.conf")


# -- argument types -----------------------------------------------------------------------


def test_wrong_argument_types() -> None:
    with pytest.raises(TypeError):
        OmniPaxos.from_hocon(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        OmniPaxos.from_hocon_str(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        OmniPaxos.from_config([("pid", 1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        OmniPaxos.from_config({"pid": 1, "peers": [2], "x": object()})
    with OmniPaxos.from_hocon_str(node_config()) as node:
        for bad in ("text", 12, None, [1, 2], 1.5):
            with pytest.raises(TypeError):
                node.append(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                node.handle_incoming(bad)  # type: ignore[arg-type]
        for bad_idx in ("1", 1.0, None, b"1", True):
            with pytest.raises(TypeError):
                node.read(bad_idx)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                node.reconnected(bad_idx)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                node.read_entries(0, bad_idx)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            node.trim("all")  # type: ignore[arg-type]
        for out_of_range in (-1, 2**64):
            with pytest.raises(omnipaxos.InvalidArgumentError):
                node.read(out_of_range)
            with pytest.raises(ValueError):
                node.read_decided(out_of_range)
            with pytest.raises(ValueError):
                node.trim(out_of_range)
        # The node is still usable after all that.
        node.tick()
        assert node.pid == 1


def test_bad_read_ranges(elected: LocalCluster) -> None:
    leader = elected.leader()
    assert leader is not None
    for i in range(3):
        elected[leader].append(b"%d" % i)
    elected.run_until(lambda: elected[leader].decided_idx == 3)
    node = elected[leader]
    with pytest.raises(omnipaxos.InvalidArgumentError):
        node.read_entries(2, 1)
    with pytest.raises(omnipaxos.OutOfRangeError) as info:
        node.read_entries(0, 100)
    assert info.value.code == ResultCode.OUT_OF_RANGE and info.value.message
    assert isinstance(info.value, IndexError)


def test_unknown_peer_for_reconnected() -> None:
    with OmniPaxos.from_hocon_str(node_config()) as node:
        with pytest.raises(omnipaxos.InvalidArgumentError) as info:
            node.reconnected(99)
        assert "99" in info.value.message


# -- incoming messages --------------------------------------------------------------------


def a_message(cluster: LocalCluster, frm: int = 1, to: int = 2) -> bytes:
    cluster[frm].election_timeout()
    for receiver, msg in cluster[frm].outgoing():
        if receiver == to:
            return msg
    raise AssertionError("no message produced")


def rejected(node: OmniPaxos, msg: bytes, cls: Type[omnipaxos.OmniPaxosError]) -> omnipaxos.OmniPaxosError:
    before = (node.decided_idx, node.leader)
    with pytest.raises(cls) as info:
        node.handle_incoming(msg)
    assert type(info.value) is cls and info.value.message
    assert (node.decided_idx, node.leader) == before
    return info.value


def test_garbage_messages(cluster: LocalCluster) -> None:
    node = cluster[2]
    v = b"\xce\xa9" + bytes([omnipaxos.wire_version()])
    rejected(node, b"", omnipaxos.MalformedMessageError)
    rejected(node, v, omnipaxos.MalformedMessageError)
    rejected(node, v + b"\xff" * 40, omnipaxos.MalformedMessageError)
    good = a_message(cluster)
    rejected(node, good + b"\x00trailing", omnipaxos.MalformedMessageError)
    node.handle_incoming(good)  # the real one is fine


def test_truncated_messages(cluster: LocalCluster) -> None:
    good = a_message(cluster)
    for cut in (1, 5, 20, len(good) - 1):
        rejected(cluster[2], good[:cut], omnipaxos.MalformedMessageError)


def test_unsupported_version(cluster: LocalCluster) -> None:
    good = a_message(cluster)
    err = rejected(cluster[2], good[:2] + bytes([99]) + good[3:], omnipaxos.UnsupportedVersionError)
    assert "99" in err.message


def test_garbage_is_malformed_not_a_version(cluster: LocalCluster) -> None:
    good = a_message(cluster)
    for junk in (b"hello, this is not a message at all", bytes([99]) + good[1:], good[1:]):
        err = rejected(cluster[2], junk, omnipaxos.MalformedMessageError)
        assert "magic number" in err.message


def test_message_of_another_configuration(cluster: LocalCluster) -> None:
    other = LocalCluster(config_id=2)
    try:
        msg = a_message(other)
        rejected(cluster[2], msg, omnipaxos.WrongConfigurationError)
    finally:
        other.close()


def test_unknown_sender(cluster: LocalCluster) -> None:
    bigger = LocalCluster(pids=(1, 2, 3, 4))
    try:
        msg = a_message(bigger, frm=4, to=2)
        rejected(cluster[2], msg, omnipaxos.UnknownSenderError)
    finally:
        bigger.close()
    to_three = a_message(cluster, frm=1, to=3)
    rejected(cluster[2], to_three, omnipaxos.UnknownSenderError)


def test_message_too_large(elected: LocalCluster) -> None:
    leader = elected.leader()
    assert leader is not None
    follower = next(p for p in elected.pids if p != leader)
    small = elected.make(follower, max_message_bytes=1024)
    try:
        elected[leader].append(b"x" * 4000)
        msgs = [m for to, m in elected[leader].outgoing() if to == follower]
        big = [m for m in msgs if len(m) > 1024]
        assert big, "the leader sent no message carrying the entry"
        rejected(small, big[0], omnipaxos.MessageTooLargeError)
    finally:
        small.close()


# -- storage ------------------------------------------------------------------------------


def persistent_config(path: Path, pid: int = 1) -> str:
    return node_config(pid=pid, storage=f'{{ type = persistent, path = "{path}" }}')


def open_persistent(path: Path) -> OmniPaxos:
    return OmniPaxos.from_hocon_str(persistent_config(path))


def test_unwritable_storage_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(omnipaxos.StorageError) as info:
        OmniPaxos.from_hocon_str(persistent_config(blocker / "sub"))
    assert info.value.code == ResultCode.STORAGE_IO and info.value.message


def test_storage_locked(tmp_path: Path) -> None:
    first = open_persistent(tmp_path / "store")
    try:
        with pytest.raises(omnipaxos.StorageLockedError) as info:
            OmniPaxos.from_hocon_str(persistent_config(tmp_path / "store"))
        assert info.value.code == ResultCode.STORAGE_LOCKED
        assert isinstance(info.value, omnipaxos.StorageError)
    finally:
        first.close()
    # Closing releases the lock.
    OmniPaxos.from_hocon_str(persistent_config(tmp_path / "store")).close()


def test_persistent_node_recovers_its_log(tmp_path: Path) -> None:
    open_persistent(tmp_path / "probe").close()
    c = LocalCluster(
        per_node=lambda pid: {"storage": {"type": "persistent", "path": str(tmp_path / f"node{pid}")}}
    )
    try:
        leader = c.elect()
        for i in range(10):
            c[leader].append(b"durable-%d" % i)
        c.run_until(lambda: all(n.decided_idx == 10 for n in c.nodes.values()))
        before = c[leader].read_decided()
        victim = next(p for p in (1, 2, 3) if p != leader)
        c[victim].close()
        c.nodes[victim] = c.make(victim)
        c[victim].fail_recovery()
        assert c[victim].read_entries(0, 10) == before  # from disk, before any message
        c.run_until(lambda: c[victim].decided_idx == 10)
        assert c[victim].read_decided() == before
    finally:
        c.close()


# -- the raw C boundary -------------------------------------------------------------------


def test_null_parameter_is_reported() -> None:
    lib = _ffi.lib()
    out = ctypes.c_uint64()
    code = lib.omnipaxos_pid(None, ctypes.byref(out))
    assert code == ResultCode.NULL_PARAMETER
    err = _error(lib, code)
    assert isinstance(err, omnipaxos.NullParameterError) and err.message


def test_last_error_length_query() -> None:
    with pytest.raises(omnipaxos.ConfigError) as info:
        OmniPaxos.from_hocon_str("nodes = [1, 2, 3]")
    lib = _ffi.lib()
    n = lib.omnipaxos_last_error(None, 0)
    assert n == len(info.value.message.encode())
    small = ctypes.create_string_buffer(4)
    assert lib.omnipaxos_last_error(small, 4) == n
    assert small.value == info.value.message.encode()[:3]
