"""A three-node cluster in one process deciding 1000 entries."""

from __future__ import annotations

from conftest import LocalCluster


def test_three_nodes_decide_1000_entries_with_equal_logs(elected: LocalCluster) -> None:
    leader = elected.leader()
    assert leader is not None
    proposed = []
    for i in range(1000):
        at = elected.pids[i % 3]  # at the leader and at both followers
        data = b"entry-%04d-from-%d" % (i, at)
        elected[at].append(data)
        proposed.append(data)
        if i % 50 == 49:
            elected.step()
    elected.run_until(lambda: all(n.decided_idx >= 1000 for n in elected.nodes.values()))
    logs = {pid: node.read_decided() for pid, node in elected.nodes.items()}
    first = logs[elected.pids[0]]
    assert len(first) == 1000
    assert all(log == first for log in logs.values())
    assert sorted(first) == sorted(proposed)  # each proposal exactly once
    # Entries appended at the leader keep their order.
    at_leader = [d for d in first if d.endswith(b"-from-%d" % leader)]
    assert at_leader == [d for d in proposed if d.endswith(b"-from-%d" % leader)]
    for node in elected.nodes.values():
        assert node.decided_idx == 1000 and node.leader == leader
