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


def test_append_many_and_bulk_reads(elected: LocalCluster) -> None:
    leader = elected.leader()
    assert leader is not None
    follower = next(p for p in elected.pids if p != leader)
    batch = [b"batch-%04d" % i for i in range(500)] + [b""]
    assert elected[follower].append_many(batch) == len(batch)  # forwarded as one burst
    assert elected[leader].append_many([]) == 0
    elected.run_until(lambda: all(n.decided_idx >= len(batch) for n in elected.nodes.values()))
    for node in elected.nodes.values():
        assert node.read_decided() == batch
        assert node.read_decided(490) == batch[490:]
        assert node.read_entries(3, 7) == batch[3:7]
        assert [e.data for e in node.read_decided_entries()] == batch


def test_append_many_reports_a_full_buffer() -> None:
    import omnipaxos
    from conftest import node_config

    with omnipaxos.OmniPaxos.from_hocon_str(node_config(1, buffer_size=3)) as node:
        assert node.append_many([b"a", b"b", b"c", b"d", b"e"]) == 3
        assert node.append_many([b"x"]) == 0
        try:
            node.append_many(["text"])  # type: ignore[list-item]
        except TypeError:
            pass
        else:
            raise AssertionError("str entries must be refused")
