"""Leadership transfer and a leader priority set at run time, through the Python binding."""

from __future__ import annotations

import pytest

from omnipaxos import InvalidArgumentError, NotLeaderError


def test_transfer_moves_the_leader(cluster):
    c = cluster
    leader = c.elect()
    target = next(p for p in c.pids if p != leader)
    c[leader].append(b"before")
    c.run_until(lambda: all(c[p].decided_idx >= 1 for p in c.pids))
    c.step(20)
    with pytest.raises(NotLeaderError):
        c[target].transfer_leadership(leader)
    with pytest.raises(InvalidArgumentError, match="not in this configuration"):
        c[leader].transfer_leadership(99)
    c[leader].transfer_leadership(leader)  # nothing to do
    with pytest.raises(ValueError):
        c[target].set_leader_priority(-1)
    c[target].set_leader_priority(5)
    c.step(20)
    assert c.leader() == leader  # a priority change deposes nobody
    c[leader].transfer_leadership(target)
    c.run_until(lambda: c.leader() == target, max_ticks=20)
    c[leader].append(b"after")
    c.run_until(lambda: all(c[p].decided_idx >= 2 for p in c.pids))
