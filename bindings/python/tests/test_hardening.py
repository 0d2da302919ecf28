"""Issue 12 (hardening) through the binding: a clean close keeps the decided index, reads
never fsync-fail, storage identity, configuration files that must be regular."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import omnipaxos
from conftest import LocalCluster


def persistent(tmp_path: Path) -> LocalCluster:
    return LocalCluster(
        per_node=lambda pid: {
            "storage": {"type": "persistent", "path": str(tmp_path / f"n{pid}"), "sync": "never"}
        }
    )


def test_close_keeps_the_decided_index(tmp_path: Path) -> None:
    c = persistent(tmp_path)
    try:
        leader = c.elect()
        for i in range(10):
            c[leader].append(f"e{i}".encode())
        c.run_until(lambda: all(c[p].decided_idx >= 10 for p in c.pids))
    finally:
        c.close()
    for recover in (False, True):
        c = persistent(tmp_path)
        try:
            for p in c.pids:
                if recover:
                    c[p].fail_recovery()
                assert c[p].decided_idx >= 10, (p, recover)
                assert c[p].read_decided()[:10] == [f"e{i}".encode() for i in range(10)]
        finally:
            c.close()


def test_storage_of_another_node_is_refused(tmp_path: Path) -> None:
    store = {"type": "persistent", "path": str(tmp_path / "s"), "sync": "never"}
    omnipaxos.OmniPaxos.from_config({"pid": 1, "nodes": [1, 2, 3], "storage": store}).close()
    with pytest.raises(omnipaxos.StorageMismatchError) as info:
        omnipaxos.OmniPaxos.from_config({"pid": 2, "nodes": [1, 2, 3], "storage": store})
    assert "pid 1 of configuration 1" in info.value.message
    assert info.value.code == omnipaxos.ResultCode.STORAGE_MISMATCH
    assert isinstance(info.value, omnipaxos.StorageError)


def test_a_fifo_is_not_a_configuration(tmp_path: Path) -> None:
    fifo = tmp_path / "node.conf"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(omnipaxos.ConfigError, match="FIFO"):
        omnipaxos.OmniPaxos.from_hocon(str(fifo))
    assert time.monotonic() - start < 1
    with pytest.raises(omnipaxos.ConfigError, match="include"):
        omnipaxos.OmniPaxos.from_hocon_str('pid = 1\nnodes = [1, 2]\ninclude "/dev/zero"\n')
