"""The key-value store's node processes: client protocol, CLI client, hostile input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from conftest import EXAMPLES, import_example

demo = import_example("demo")
framing = import_example("framing")


@pytest.fixture(scope="module")
def kv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    cluster = demo.Cluster(tmp_path_factory.mktemp("kv"), memory=True)
    try:
        for pid in demo.PIDS:
            cluster.start(pid)
        stable = demo.StableLeader(list(demo.PIDS), hold=0.2)
        cluster.wait_for("a leader", stable)
        cluster.leader = stable.leader
        yield cluster
    finally:
        cluster.stop_all()


def cli(port: int, *args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "kv_store" / "client.py"), "--port", str(port), *args],
        capture_output=True, text=True, timeout=30,
    )


def test_cli_put_get_delete_status_dump(kv: Any) -> None:
    follower = next(p for p in demo.PIDS if p != kv.leader)
    out = cli(kv.ports[follower], "put", "color", "blue")
    assert out.returncode == 0, out.stdout + out.stderr
    answer = json.loads(out.stdout)
    assert answer["ok"] and answer["leader"] == kv.leader and answer["pid"] == follower
    # Applied at the node that took the PUT; the others follow shortly.
    kv.wait_for("every node to apply", lambda s: all(st and st["applied"] > answer["idx"] for st in s.values()))
    for pid in demo.PIDS:
        got = json.loads(cli(kv.ports[pid], "get", "color").stdout)
        assert got["found"] and got["value"] == "blue"
    status = json.loads(cli(kv.ports[kv.leader], "status").stdout)
    assert status["pid"] == kv.leader and status["leader"] == kv.leader
    assert status["decided_idx"] >= 1 and status["storage"] == "memory"
    assert cli(kv.ports[kv.leader], "delete", "color").returncode == 0
    dump = json.loads(cli(kv.ports[kv.leader], "dump").stdout)
    assert "color" not in dump["data"]
    missing = json.loads(cli(kv.ports[kv.leader], "get", "color").stdout)
    assert missing["ok"] and not missing["found"] and missing["value"] is None


def test_cli_usage_errors(kv: Any) -> None:
    assert cli(kv.ports[1], "put", "only-a-key").returncode == 2
    assert cli(kv.ports[1], "frobnicate").returncode == 2


def raw(port: int, frames: List[bytes]) -> Dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for f in frames:
            framing.send_frame(s, f)
        answer = json.loads(framing.recv_frame(s))
    assert isinstance(answer, dict)
    return answer


def test_bad_requests_are_answered(kv: Any) -> None:
    port = kv.ports[1]
    assert not raw(port, [framing.HELLO_CLIENT, b"not json"])["ok"]
    assert not raw(port, [framing.HELLO_CLIENT, b'{"no_op": 1}'])["ok"]
    assert "unknown op" in raw(port, [framing.HELLO_CLIENT, b'{"op": "explode"}'])["error"]


def test_hostile_peers_and_bad_hellos_do_not_hurt(kv: Any) -> None:
    port = kv.ports[2]
    # A "peer" sending garbage: rejected by the library, logged, the node keeps working.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        framing.send_frame(s, framing.peer_hello(1))
        for junk in (b"", b"\x01garbage", b"\xce\xa9\x63" + bytes(40), bytes(range(256))):
            framing.send_frame(s, junk)
    # A bad hello and an oversized frame header: the connection is dropped.
    for first in (framing.encode_frame(b"HELLO?"), (2**31).to_bytes(4, "big")):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(first)
            try:
                assert s.recv(10) == b""
            except ConnectionResetError:
                pass  # closed with a reset: dropped all the same
    assert raw(port, [framing.HELLO_CLIENT, b'{"op": "status"}'])["ok"]
    assert kv.procs[2].poll() is None
    log = Path(kv.log_path(2)).read_text()
    assert "rejected a message from node 1: MalformedMessageError" in log
    assert "UnsupportedVersionError" in log
    # Writes still work through the node that saw all that.
    out = cli(port, "put", "after-junk", "ok")
    assert out.returncode == 0, out.stdout + out.stderr
