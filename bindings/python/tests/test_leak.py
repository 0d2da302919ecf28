"""The binding and the C API free what they allocate: memory stays flat over long runs."""

from __future__ import annotations

import gc
import os

from omnipaxos import OmniPaxos

from conftest import LocalCluster, node_config

PAGE = os.sysconf("SC_PAGE_SIZE")
MARGIN = 4 << 20  # a leak of even ~40 bytes per cycle over 100,000 cycles exceeds this


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cycles(c: LocalCluster, leader: int, n: int, start: int) -> int:
    """``n`` append+read cycles at the leader, delivered and trimmed in batches."""
    node = c[leader]
    batch = 500
    idx = start
    for _ in range(n // batch):
        for i in range(batch):
            node.append(b"payload-%08d" % (idx + i))
        c.deliver()
        c.step()
        for i in range(batch):
            assert node.read(idx + i) == b"payload-%08d" % (idx + i)
        got = node.read_decided(idx)
        assert len(got) == batch
        node.outgoing()
        idx += batch
        c.step(2)
        node.trim()  # keep the log small: memory measures the binding, not the log
        c.step(2)
    return idx


def test_no_leak_over_100000_append_read_cycles() -> None:
    c = LocalCluster()
    try:
        leader = c.elect()
        idx = cycles(c, leader, 20_000, 0)  # warm-up: allocator pools, caches
        before = rss()
        idx = cycles(c, leader, 100_000, idx)
        after = rss()
        assert c[leader].decided_idx == idx == 120_000
        assert after - before < MARGIN, f"RSS grew by {(after - before) >> 10} KiB"
    finally:
        c.close()


def test_no_leak_creating_and_freeing_nodes() -> None:
    def churn(n: int) -> None:
        for i in range(n):
            node = OmniPaxos.from_hocon_str(node_config(pid=1 + i % 3))
            node.append(b"x" * 100)
            node.election_timeout()
            node.outgoing()
            if i % 2:
                node.close()
            else:
                del node  # freed by __del__

    churn(2_000)
    before = rss()
    churn(20_000)
    after = rss()
    assert after - before < MARGIN, f"RSS grew by {(after - before) >> 10} KiB"


def test_no_leak_in_error_paths() -> None:
    def errors(n: int) -> None:
        for _ in range(n):
            try:
                OmniPaxos.from_hocon_str("pid = 1, nodes = [1, 2, 3], unknown_key = 1")
            except Exception:
                pass

    errors(2_000)
    before = rss()
    errors(50_000)
    after = rss()
    assert after - before < MARGIN, f"RSS grew by {(after - before) >> 10} KiB"
