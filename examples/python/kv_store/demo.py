#!/usr/bin/env python3
"""Demo: a replicated key-value store on libomnipaxos, one OS process per server.

Starts three node processes (node.py) on free TCP ports of 127.0.0.1, waits for a leader,
writes keys through the client protocol (at the leader and at followers), kills the leader
with SIGKILL, shows a new leader taking over and writes continuing, restarts the killed
node (--recover: from its storage, with fail_recovery) and shows it catching up, then
checks that every node holds the same data. Exits 0 when every check passed, 1 otherwise.
Cleans up its processes and temporary files in every case (Ctrl-C included).

Run from a checkout:  cargo build --release && python3 examples/python/kv_store/demo.py
Standard library only (plus the binding, used by the node processes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from framing import request  # noqa: E402

PIDS = (1, 2, 3)
Status = Optional[Dict[str, Any]]


class DemoFailure(Exception):
    """A check of the demo failed."""


def free_ports(n: int) -> List[int]:
    """``n`` distinct ports that were free a moment ago (bound to port 0 together)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LiveView:
    """A one-line live view of the cluster while waiting: redrawn in place on a terminal,
    printed when it changes otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last = ""
        self.drawn = False

    def show(self, statuses: Dict[int, Status]) -> None:
        parts = []
        for pid, st in statuses.items():
            if st is None:
                parts.append(f"node{pid}: down")
            else:
                lead = st["leader"] if st["leader"] is not None else "-"
                parts.append(f"node{pid}: leader {lead} decided {st['decided_idx']}")
        line = "    live | " + " | ".join(parts)
        if line == self.last:
            return
        self.last = line
        if self.tty:
            sys.stdout.write("\r\033[K" + line)
            sys.stdout.flush()
            self.drawn = True
        else:
            print(line, flush=True)

    def end(self) -> None:
        if self.drawn:
            sys.stdout.write("\n")
            sys.stdout.flush()
        self.drawn = False
        self.last = ""


class Cluster:
    """The node processes of the demo."""

    def __init__(self, workdir: Path, memory: bool) -> None:
        self.workdir = workdir
        self.memory = memory
        self.ports = dict(zip(PIDS, free_ports(len(PIDS))))
        self.spec = ",".join(f"{pid}=127.0.0.1:{port}" for pid, port in self.ports.items())
        self.procs: Dict[int, "subprocess.Popen[bytes]"] = {}
        self.view = LiveView()

    def log_path(self, pid: int) -> Path:
        return self.workdir / f"node{pid}.log"

    def start(self, pid: int, recover: bool = False) -> None:
        cmd = [
            sys.executable,
            "-u",
            str(HERE / "node.py"),
            "--pid",
            str(pid),
            "--cluster",
            self.spec,
            "--data-dir",
            str(self.workdir),
            "--parent-pid",
            str(os.getpid()),
        ]
        if recover:
            cmd.append("--recover")
        if self.memory:
            cmd.append("--memory")
        with open(self.log_path(pid), "ab") as log:
            self.procs[pid] = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def kill(self, pid: int) -> None:
        proc = self.procs.pop(pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 3
        for proc in self.procs.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def check_alive(self) -> None:
        for pid, proc in self.procs.items():
            if proc.poll() is not None:
                raise DemoFailure(f"node {pid} exited unexpectedly with code {proc.returncode}")

    def call(self, pid: int, req: Dict[str, Any], timeout: float = 10.0) -> Dict[str, Any]:
        return request("127.0.0.1", self.ports[pid], req, timeout=timeout)

    def status(self, pid: int) -> Status:
        if pid not in self.procs:
            return None
        try:
            return self.call(pid, {"op": "status"}, timeout=1.0)
        except (OSError, ValueError):
            return None

    def statuses(self) -> Dict[int, Status]:
        return {pid: self.status(pid) for pid in PIDS}

    def wait_for(
        self, what: str, done: Callable[[Dict[int, Status]], bool], timeout: float = 15.0
    ) -> Dict[int, Status]:
        """Polls STATUS of every node, showing the live view, until ``done`` holds."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.check_alive()
                statuses = self.statuses()
                self.view.show(statuses)
                if done(statuses):
                    return statuses
                if time.monotonic() > deadline:
                    raise DemoFailure(f"timed out after {timeout:.0f} s waiting for {what}")
                time.sleep(0.1)
        finally:
            self.view.end()

    def put(self, key: str, value: str, via: List[int]) -> int:
        """PUT through the first node of ``via`` (trying the next ones on failure);
        returns the log index the entry was decided at."""
        errors = []
        for pid in via:
            try:
                answer = self.call(pid, {"op": "put", "key": key, "value": value})
            except (OSError, ValueError) as e:
                errors.append(f"node {pid}: {e}")
                continue
            if answer.get("ok"):
                role = "leader" if pid == answer.get("leader") else "follower, forwarded to the leader"
                print(f"    PUT {key} = {value} via node {pid} ({role}) -> decided at index {answer['idx']}")
                return int(answer["idx"])
            errors.append(f"node {pid}: {answer.get('error')}")
        raise DemoFailure(f"PUT {key} failed: " + "; ".join(errors))


def agreed_leader(statuses: Dict[int, Status], among: List[int]) -> Optional[int]:
    """The leader every node of ``among`` is up and agrees on, when it is one of ``among``."""
    leaders = set()
    for pid in among:
        st = statuses.get(pid)
        if st is None or st["leader"] is None:
            return None
        leaders.add(st["leader"])
    if len(leaders) != 1:
        return None
    leader = leaders.pop()
    return leader if leader in among else None


class StableLeader:
    """A predicate for ``Cluster.wait_for``: the nodes of ``among`` agree on a leader among
    them, are quorum-connected, and have kept agreeing for ``hold`` seconds."""

    def __init__(self, among: List[int], hold: float = 0.5) -> None:
        self.among = among
        self.hold = hold
        self.candidate: Optional[int] = None
        self.since = 0.0
        self.leader: Optional[int] = None

    def __call__(self, statuses: Dict[int, Status]) -> bool:
        leader = agreed_leader(statuses, self.among)
        connected = all(statuses[p] is not None and statuses[p]["quorum_connected"] for p in self.among)  # type: ignore[index]
        now = time.monotonic()
        if leader is None or not connected:
            self.candidate = None
            return False
        if leader != self.candidate:
            self.candidate, self.since = leader, now
        if now - self.since >= self.hold:
            self.leader = leader
            return True
        return False


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(cluster: Cluster) -> None:
    expected: Dict[str, str] = {}
    print(f"working directory (node logs and storage): {cluster.workdir}")

    step(f"starting 3 node processes on 127.0.0.1 ports {', '.join(map(str, cluster.ports.values()))}")
    for pid in PIDS:
        cluster.start(pid)

    step("waiting for the nodes to elect a leader")
    stable = StableLeader(list(PIDS))
    statuses = cluster.wait_for("a leader", stable)
    leader = stable.leader
    assert leader is not None
    print(f"leader elected: node {leader}, ballot {statuses[leader]['ballot']}")  # type: ignore[index]
    for pid in PIDS:
        print(f"    node {pid}: storage {statuses[pid]['storage']}")  # type: ignore[index]
    persistent = all(str(st["storage"]).startswith("persistent") for st in statuses.values())  # type: ignore[index]

    step("writing keys through the client, at the leader and at the followers")
    for i in range(6):
        via = PIDS[i % 3]
        key, value = f"key{i}", f"value{i}"
        cluster.put(key, value, [via, *[p for p in PIDS if p != via]])
        expected[key] = value

    stable = StableLeader(list(PIDS), hold=0.0)  # who leads right now
    statuses = cluster.wait_for("the current leader", stable)
    leader = stable.leader
    assert leader is not None
    step(f"killing the leader, node {leader}, with SIGKILL")
    cluster.kill(leader)
    killed = leader
    survivors = [p for p in PIDS if p != killed]
    print(f"node {killed} killed; nodes {survivors[0]} and {survivors[1]} remain")

    step("waiting for a new leader among the survivors")
    stable = StableLeader(survivors)
    statuses = cluster.wait_for("a new leader", stable)
    leader = stable.leader
    assert leader is not None
    if leader == killed:
        raise DemoFailure("the killed node is still the leader")
    print(f"new leader: node {leader}, ballot {statuses[leader]['ballot']}")  # type: ignore[index]

    step(f"writes continue with node {killed} down")
    for i in range(6, 12):
        via = survivors[i % 2]
        key, value = f"key{i}", f"value{i}"
        cluster.put(key, value, [via, *[p for p in survivors if p != via]])
        expected[key] = value
    cluster.put("key0", "value0-updated", [survivors[0], survivors[1]])
    expected["key0"] = "value0-updated"

    how = "from its storage directory" if persistent else "on empty memory storage: all from its peers"
    step(f"restarting node {killed} with --recover ({how}, then fail_recovery)")
    cluster.start(killed, recover=True)
    statuses = cluster.wait_for(f"node {killed} to answer", lambda s: s[killed] is not None)
    st = statuses[killed]
    assert st is not None
    print(f"node {killed} is back, storage {st['storage']}: it starts at decided_idx {st['decided_idx']}")

    def caught_up(s: Dict[int, Status]) -> bool:
        if any(st is None for st in s.values()):
            return False
        target = max(st["decided_idx"] for st in s.values())  # type: ignore[index]
        return all(st["applied"] == target for st in s.values()) and s[killed]["leader"] is not None  # type: ignore[index]

    statuses = cluster.wait_for(f"node {killed} to catch up", caught_up)
    st = statuses[killed]
    assert st is not None
    print(
        f"node {killed} caught up: applied {st['applied']} entries, "
        f"follows leader {st['leader']}, storage {st['storage']}"
    )

    step(f"writing through the restarted node {killed}")
    for key, value in (("after-restart", "yes"), ("key1", "value1-updated")):
        cluster.put(key, value, [killed, *survivors])
        expected[key] = value

    step("checking that every node holds the same data")
    statuses = cluster.wait_for("every node to apply every entry", caught_up)
    dumps = {pid: cluster.call(pid, {"op": "dump"}) for pid in PIDS}
    for pid, dump in dumps.items():
        data = dump["data"]
        if data != expected:
            missing = sorted(set(expected) - set(data))
            wrong = sorted(k for k in expected if k in data and data[k] != expected[k])
            extra = sorted(set(data) - set(expected))
            raise DemoFailure(f"node {pid} differs: missing {missing}, wrong {wrong}, unexpected {extra}")
        got = cluster.call(pid, {"op": "get", "key": "key0"})
        if got.get("value") != expected["key0"]:
            raise DemoFailure(f"GET key0 at node {pid} returned {got}")
        print(
            f"    node {pid}: {len(data)} keys, {dump['applied']} entries applied, "
            f"GET key0 = {got['value']!r}: identical"
        )
    applied = {dumps[p]["applied"] for p in PIDS}
    if len(applied) != 1:
        raise DemoFailure(f"nodes applied different numbers of entries: {applied}")
    print("\nALL CHECKS PASSED: every node holds the same", len(expected), "keys")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--memory", action="store_true", help="run the nodes on memory storage")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (node logs, storage)")
    args = p.parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    workdir = Path(tempfile.mkdtemp(prefix="omnipaxos-kv-demo-"))
    cluster = Cluster(workdir, args.memory)
    started = time.monotonic()
    code = 1
    try:
        run(cluster)
        code = 0
    except DemoFailure as e:
        print(f"\nFAILED: {e}", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
        code = 130
    except Exception:  # an unexpected error: report it like a failed check
        traceback.print_exc()
        print("\nFAILED: unexpected error", flush=True)
    finally:
        cluster.view.end()
        cluster.stop_all()
        if code != 0:
            for pid in PIDS:
                path = cluster.log_path(pid)
                if path.exists():
                    lines = path.read_text(errors="replace").splitlines()[-15:]
                    print(f"--- last lines of node {pid}'s log ---")
                    print("\n".join(lines))
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"demo finished in {time.monotonic() - started:.1f} s, exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
