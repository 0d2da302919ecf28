"""The examples, run as a user would run them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from conftest import EXAMPLES


def run(args: list, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )


def test_in_memory_cluster_example() -> None:
    out = run([str(EXAMPLES / "cluster.py")], timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "leader: node" in out.stdout
    assert "all nodes decided the same log" in out.stdout
    assert out.stdout.count("decided_idx=5") == 3


def test_reconfigure_example() -> None:
    out = run([str(EXAMPLES / "reconfigure.py")], timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    for line in (
        "reconfigure at a follower -> NotLeaderError",
        "configuration 1 is stopped on every node",
        "append at node 1 -> StoppedError",
        "decided StopSign: StopSign(next_config_id=2, nodes=(2, 3, 4)",
        "-> WrongConfigurationError",
        "configuration 2: leader is node",
        "reconfiguration complete: every check passed",
    ):
        assert line in out.stdout, f"missing {line!r} in:\n{out.stdout}{out.stderr}"
    assert out.stdout.count("(configuration 2) applied 2 entries on its seed: "
                            "{'x': '5', 'z': '3', 'w': '4'}") == 3


def test_kv_store_demo_end_to_end() -> None:
    start = time.monotonic()
    out = run([str(EXAMPLES / "kv_store" / "demo.py")], timeout=90)
    elapsed = time.monotonic() - start
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    for line in (
        "leader elected: node",
        "killing the leader",
        "new leader: node",
        "restarting node",
        "is back, storage",
        "caught up",
        "identical",
        "ALL CHECKS PASSED",
    ):
        assert line in out.stdout, f"missing {line!r} in:\n{text}"
    assert "follower, forwarded to the leader" in out.stdout
    assert elapsed < 60, f"the demo took {elapsed:.0f} s"
    # The temporary directory is removed.
    m = re.search(r"working directory \(node logs and storage\): (\S+)", out.stdout)
    assert m is not None and not os.path.exists(m.group(1))


def test_kv_store_demo_fails_cleanly_when_a_node_cannot_start() -> None:
    # A broken library path: the nodes die at start, the demo reports it and exits non-zero.
    env = {**os.environ, "OMNIPAXOS_LIB": "/nonexistent/libomnipaxos.so"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "kv_store" / "demo.py")],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAILED" in out.stdout
    assert "LibraryNotFoundError" in out.stdout
