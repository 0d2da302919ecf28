"""Crash recovery with real processes: nodes on persistent storage killed with SIGKILL.

A 3-node cluster, every node its own OS process (crash_node.py) on persistent storage with
``sync = always``, talking TCP on 127.0.0.1 and appending a continuous stream of small
entries. The test kills a random node (often the leader) with SIGKILL at random moments,
many times, sometimes again while it is recovering, and restarts it from its storage
directory with ``fail_recovery()``. Never more than one node is down at a time.

Each node reports the entries it saw decided, fsynced after the library reported them
decided, and on every start dumps the decided log it recovered from disk before talking to
anyone (see crash_node.py). The test checks:

* agreement: every entry any node reported decided, in any incarnation, has the same bytes
  at the same index as every other report (all decided logs are prefixes of one another);
* durability: after a restart the node's log holds every entry it reported decided before
  the kill, with the same bytes at the same index (the decided index itself is durable
  lazily, like Raft's commit index, so it may restart lower; the node then learns it again
  from the leader, which the progress check below covers);
* progress: after a restart the node catches up and the cluster's log grows past where it
  was at the kill, within a bounded time;
* at the end, after the appends stop, the three nodes hold one identical decided log.

The nodes use 256 KiB segments, so kills also land in segment rollovers. A SIGKILL leaves
the page cache intact: this tests the ordering of the writes and the recovery, not the
fsyncs (which only a power loss would). About 30 s for the default 25 rounds; the log grows
by a few thousand entries a second and every restart re-reads it all, so many more rounds
take disproportionately longer.

Set OMNIPAXOS_CRASH_SEED to replay a run (the seed is printed on failure),
OMNIPAXOS_CRASH_ROUNDS to change the number of kills and OMNIPAXOS_CRASH_KEEP=1 to keep
the working directory (storage, reports, node output).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

import omnipaxos

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "crash_node.py"
PIDS = (1, 2, 3)
ROUNDS = int(os.environ.get("OMNIPAXOS_CRASH_ROUNDS", "25"))
KEEP = os.environ.get("OMNIPAXOS_CRASH_KEEP") == "1"
ENTRY = re.compile(rb"^([123]):(\d+):(\d+)\|[0-9A-Za-z_-]*$")

START_TIMEOUT = 30.0  # a process up and its recovered log dumped (a big log, 2 busy cores)
PROGRESS_TIMEOUT = 15.0  # a restarted node caught up and the log grew past the kill point
FINAL_TIMEOUT = 30.0


pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SIGKILL and fcntl locks: Linux only"
)


class Violation(AssertionError):
    pass


def child_env() -> Dict[str, str]:
    """The children import the very binding this test imported."""
    env = dict(os.environ)
    pkg_root = str(Path(omnipaxos.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMNIPAXOS_LIB", omnipaxos.library_path())
    return env


def free_ports(n: int, rng: random.Random) -> List[int]:
    """``n`` ports free now, below the kernel's ephemeral range: a node re-binds its port
    on every restart, and an ephemeral port could meanwhile be taken as the local end of
    one of the other nodes' outgoing connections."""
    low = 32768
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    lo, hi = max(1024, low - 12000), max(2048, low - 1)
    ports: List[int] = []
    while len(ports) < n:
        port = rng.randrange(lo, hi)
        if port in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def complete_lines(path: Path, offset: int) -> "tuple[List[str], int]":
    """The whole lines of ``path`` from byte ``offset`` (a torn last line is left for later
    or, after a kill, ignored), and the offset after them."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    return data[:end].decode().splitlines(), offset + end


class Truth:
    """The decided log as reported so far by anyone: index -> hex bytes."""

    def __init__(self) -> None:
        self.log: List[Optional[str]] = []
        self.source: List[str] = []
        self.checked = 0

    def __len__(self) -> int:
        return len(self.log)

    def check(self, who: str, idx: int, hexdata: str) -> None:
        if idx < len(self.log) and self.log[idx] is not None:
            self.checked += 1
            if self.log[idx] != hexdata:
                raise Violation(
                    f"{who} has decided entry {idx} = {bytes.fromhex(hexdata)!r}, but "
                    f"{self.source[idx]} reported {bytes.fromhex(self.log[idx])!r} decided "
                    "at that index"
                )
            return
        data = bytes.fromhex(hexdata)
        if not ENTRY.match(data):
            raise Violation(f"{who} has decided entry {idx} = {data!r}: no node appended that")
        if idx >= len(self.log):
            self.log.extend([None] * (idx + 1 - len(self.log)))
            self.source.extend([""] * (idx + 1 - len(self.source)))
        self.log[idx] = hexdata
        self.source[idx] = who
        self.checked += 1


class Node:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.gen = -1
        self.proc: Optional[subprocess.Popen] = None
        self.out = None
        self.floor = 0  # entries this node reported decided, over all its incarnations
        self.floor_who = "nothing reported yet"
        self.recovered: Optional[int] = None  # decided_idx recovered by the current gen
        self.next = 0  # next index expected in the current gen's report
        self.offset = 0


class CrashCluster:
    def __init__(self, workdir: Path, seed: int) -> None:
        self.dir = workdir
        self.rng = random.Random(seed)
        self.seed = seed
        self.ports = free_ports(len(PIDS), self.rng)
        self.nodes = {pid: Node(pid) for pid in PIDS}
        self.truth = Truth()
        self.env = child_env()
        self.kills = 0
        self.leader_kills = 0
        self.recovery_kills = 0
        self.restarts = 0
        self.recovered_checks = 0
        self.lazy_regressions = 0  # restarts whose decided index came back below the floor
        self.events: List[str] = []

    # -- processes -----------------------------------------------------------------

    def note(self, text: str) -> None:
        self.events.append(text)

    def start(self, pid: int) -> None:
        n = self.nodes[pid]
        assert n.proc is None
        n.gen += 1
        n.recovered = None
        n.next = 0
        n.offset = 0
        ports = ",".join(f"{p}={port}" for p, port in zip(PIDS, self.ports))
        args = [
            sys.executable, str(NODE_SCRIPT), "--pid", str(pid), "--ports", ports,
            "--dir", str(self.dir), "--gen", str(n.gen), "--seed", str(self.rng.randrange(1 << 30)),
        ]
        if n.gen > 0:
            args.append("--recover")
            self.restarts += 1
        n.out = open(self.dir / f"n{pid}.g{n.gen}.out", "wb")
        n.proc = subprocess.Popen(args, stdout=n.out, stderr=subprocess.STDOUT, env=self.env)
        self.note(f"started node {pid} gen {n.gen} (os pid {n.proc.pid})")

    def output(self, pid: int, gen: int) -> str:
        try:
            text = (self.dir / f"n{pid}.g{gen}.out").read_text(errors="replace")
        except OSError:
            return ""
        return text[-3000:]

    def kill(self, pid: int) -> None:
        n = self.nodes[pid]
        assert n.proc is not None
        self.check_alive()
        n.proc.send_signal(signal.SIGKILL)
        n.proc.wait()
        n.out.close()
        n.proc = None
        self.kills += 1
        # Everything it reported before it died counts.
        self.ingest(pid)
        self.note(f"killed node {pid} gen {n.gen}: it had reported {n.floor} entries decided")

    def check_alive(self) -> None:
        for pid, n in self.nodes.items():
            if n.proc is not None and n.proc.poll() is not None:
                raise Violation(
                    f"node {pid} gen {n.gen} exited by itself with status {n.proc.returncode}:\n"
                    + self.output(pid, n.gen)
                )

    def stop_all(self) -> None:
        """Kills whatever still runs (the finally path)."""
        for n in self.nodes.values():
            if n.proc is not None:
                if n.proc.poll() is None:
                    n.proc.kill()
                n.proc.wait()
                n.proc = None
            if n.out is not None:
                n.out.close()

    # -- reports -------------------------------------------------------------------

    def status(self, pid: int) -> Optional[dict]:
        try:
            st = json.loads((self.dir / f"n{pid}.status").read_text())
        except (OSError, ValueError):
            return None
        return st if st.get("gen") == self.nodes[pid].gen else None

    def ingest(self, pid: int) -> None:
        n = self.nodes[pid]
        who = f"node {pid} gen {n.gen}"
        if n.recovered is None:
            path = self.dir / f"n{pid}.g{n.gen}.recovered"
            if not path.exists():  # renamed into place when complete
                return
            lines, _ = complete_lines(path, 0)
            if not lines or not lines[-1].startswith("END\t"):
                raise Violation(f"{path} is incomplete")
            _, count_text, len_text = lines[-1].split("\t")
            count, log_len = int(count_text), int(len_text)
            if log_len < n.floor:
                raise Violation(
                    f"node {pid} lost decided entries in a crash: before the kill it had "
                    f"reported {n.floor} entries decided ({n.floor_who}), but after the "
                    f"restart (gen {n.gen}) its log holds {log_len} entries"
                )
            if len(lines) != log_len + 1 or count > log_len:
                raise Violation(f"{path}: {len(lines) - 1} entries for {log_len}, decided {count}")
            # Every entry reported decided before the kill is still in the log, in place
            # (the decided index itself is lazily durable and may restart lower).
            for i, line in enumerate(lines[:-1]):
                idx, _, hexdata = line.partition("\t")
                if int(idx) != i:
                    raise Violation(f"{path}: line {i} holds index {idx}")
                if i < max(count, n.floor):
                    self.truth.check(f"{who} (recovered from disk)", i, hexdata)
            self.lazy_regressions += count < n.floor
            n.recovered = count
            n.next = count
            if count > n.floor:
                n.floor, n.floor_who = count, f"recovered by gen {n.gen}"
            self.recovered_checks += 1
        lines, n.offset = complete_lines(self.dir / f"n{pid}.g{n.gen}.report", n.offset)
        for line in lines:
            idx_text, _, hexdata = line.partition("\t")
            idx = int(idx_text)
            if idx != n.next:
                raise Violation(f"{who} reported index {idx} decided after index {n.next - 1}")
            self.truth.check(who, idx, hexdata)
            n.next += 1
        if n.next > n.floor:
            n.floor, n.floor_who = n.next, f"reported by gen {n.gen}"

    def ingest_all(self) -> None:
        for pid in PIDS:
            if self.nodes[pid].proc is not None:
                self.ingest(pid)

    def wait(self, what: str, cond: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            self.ingest_all()
            if cond():
                return
            if time.monotonic() > deadline:
                states = {p: self.status(p) for p in PIDS}
                for st in states.values():
                    if st:
                        st["age_s"] = round(time.time() - st.pop("time", 0), 2)
                raise Violation(
                    f"timed out after {timeout:.0f} s waiting for {what}; node status: "
                    f"{json.dumps(states)}; reported: "
                    f"{ {p: n.next for p, n in self.nodes.items()} }"
                )
            time.sleep(0.02)

    def leader(self) -> Optional[int]:
        """The leader most nodes follow, as of their last status (~50 ms old)."""
        votes: Dict[int, int] = {}
        for pid in PIDS:
            st = self.status(pid)
            if st and st.get("leader") in PIDS:
                votes[st["leader"]] = votes.get(st["leader"], 0) + 1
        return max(votes, key=lambda p: votes[p]) if votes else None

    def reported_max(self) -> int:
        return max(n.next for n in self.nodes.values())

    # -- the scenario --------------------------------------------------------------

    def restart(self, pid: int) -> None:
        self.start(pid)
        n = self.nodes[pid]
        self.wait(f"node {pid} gen {n.gen} to recover", lambda: n.recovered is not None, START_TIMEOUT)

    def round(self, r: int) -> None:
        rng = self.rng
        time.sleep(rng.uniform(0.05, 0.5))
        leader = self.leader()
        if leader is not None and rng.random() < 0.4:
            victim = leader
        else:
            victim = rng.choice(PIDS)
        if victim == leader:
            self.leader_kills += 1
        self.ingest_all()
        before = self.reported_max()
        self.kill(victim)
        time.sleep(rng.uniform(0.0, 0.3))
        self.start(victim)
        if rng.random() < 0.2:
            # Again, while it recovers or catches up.
            time.sleep(rng.uniform(0.01, 0.4))
            self.kill(victim)
            self.recovery_kills += 1
            self.start(victim)
        n = self.nodes[victim]
        self.wait(f"node {victim} gen {n.gen} to recover", lambda: n.recovered is not None, START_TIMEOUT)
        if rng.random() < 0.75:
            # Caught up, and the cluster's log grew past where it was at the kill.
            self.wait(
                f"node {victim} gen {n.gen} to catch up past index {before} (round {r})",
                lambda: n.next > before,
                PROGRESS_TIMEOUT,
            )
        # else: straight to the next kill while this node may still be catching up.

    def finish(self) -> List[str]:
        """Stops the appends, waits for one log everywhere, stops the nodes cleanly and
        returns the final decided log (hex)."""
        for pid in PIDS:
            self.nodes[pid].proc.send_signal(signal.SIGUSR1)

        def agreed() -> bool:
            st = [self.status(p) for p in PIDS]
            if not all(s and s["quiesced"] for s in st):
                return False
            ids = {s["decided_idx"] for s in st}
            return len(ids) == 1 and ids == {n.next for n in self.nodes.values()}

        stable_since: List[float] = []

        def stable() -> bool:
            if not agreed():
                stable_since.clear()
                return False
            if not stable_since:
                stable_since.append(time.monotonic())
            return time.monotonic() - stable_since[0] > 0.5

        self.wait("the nodes to agree on one decided log after the appends stopped", stable, FINAL_TIMEOUT)
        for pid in PIDS:
            self.nodes[pid].proc.send_signal(signal.SIGTERM)
        finals: Dict[int, List[str]] = {}
        for pid in PIDS:
            n = self.nodes[pid]
            try:
                code = n.proc.wait(timeout=FINAL_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise Violation(f"node {pid} did not stop on SIGTERM") from None
            if code != 0:
                raise Violation(f"node {pid} gen {n.gen} exited {code}:\n" + self.output(pid, n.gen))
            n.proc = None
            n.out.close()
            self.ingest(pid)
            lines, _ = complete_lines(self.dir / f"n{pid}.g{n.gen}.final", 0)
            if not lines or not lines[-1].startswith("END\t"):
                raise Violation(f"node {pid} wrote no final log")
            decided = int(lines[-1].split("\t")[1])
            log = [line.partition("\t")[2] for line in lines[:decided]]
            if len(log) < n.floor:
                raise Violation(
                    f"node {pid}'s final decided log has {len(log)} entries, fewer than the "
                    f"{n.floor} it reported decided ({n.floor_who})"
                )
            for i, hexdata in enumerate(log):
                self.truth.check(f"node {pid} (final log)", i, hexdata)
            finals[pid] = log
        lengths = {pid: len(log) for pid, log in finals.items()}
        if len(set(lengths.values())) != 1:
            raise Violation(f"the final decided logs differ in length: {lengths}")
        if len(self.truth) != lengths[1] or None in self.truth.log:
            raise Violation(
                f"entries were reported decided beyond the final logs ({len(self.truth)} "
                f"known, {lengths[1]} in the final logs)"
            )
        return finals[1]


def test_sigkill_loop_preserves_decided_entries() -> None:
    seed = int(os.environ.get("OMNIPAXOS_CRASH_SEED", str(random.randrange(1 << 31))))
    workdir = Path(tempfile.mkdtemp(prefix="omnipaxos-crash-"))
    cluster = CrashCluster(workdir, seed)
    started = time.monotonic()
    try:
        for pid in PIDS:
            cluster.start(pid)
        cluster.wait(
            "the cluster to start and decide entries",
            lambda: all(n.recovered is not None for n in cluster.nodes.values())
            and cluster.leader() is not None
            and cluster.reported_max() >= 500,
            START_TIMEOUT,
        )
        for r in range(ROUNDS):
            cluster.round(r)
        log = cluster.finish()
    except Violation as e:
        tail = "\n".join(cluster.events[-12:])
        keep = f"kept {workdir}" if KEEP else "OMNIPAXOS_CRASH_KEEP=1 keeps the working directory"
        raise Violation(
            f"{e}\n[seed {seed}: replay with OMNIPAXOS_CRASH_SEED={seed}; {keep}]\n"
            f"last events:\n{tail}"
        ) from None
    finally:
        cluster.stop_all()
        if not KEEP:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    writers = {m.group(1) + b":" + m.group(2) for m in (ENTRY.match(bytes.fromhex(h)) for h in log) if m}
    print(
        f"\ncrash test: seed {seed}, {elapsed:.1f} s, {cluster.kills} SIGKILLs "
        f"({cluster.leader_kills} of the leader, {cluster.recovery_kills} during recovery), "
        f"{cluster.restarts} restarts, {cluster.recovered_checks} recovered logs checked "
        f"({cluster.lazy_regressions} with a decided index below the floor), "
        f"{cluster.truth.checked} (index, bytes) checks, final log {len(log)} entries "
        f"from {len(writers)} writer incarnations"
    )
    assert cluster.kills >= ROUNDS
    assert len(log) > 1000


# ---------------------------------------------------------------------------------------
# The storage lock across processes
# ---------------------------------------------------------------------------------------

OPENER = r"""
import json, os, sys, time
import omnipaxos
path, mode = sys.argv[1], sys.argv[2]
config = {"pid": 1, "nodes": [1, 2, 3],
          "storage": {"type": "persistent", "path": path, "sync": "always"}}
def opened(node):
    print(json.dumps({"event": "opened", "t": time.monotonic(), "os_pid": os.getpid()}), flush=True)
if mode == "hold":      # open, say so, keep it open until killed
    node = omnipaxos.OmniPaxos.from_config(config)
    opened(node)
    sys.stdin.read()
elif mode == "once":    # one attempt
    try:
        node = omnipaxos.OmniPaxos.from_config(config)
    except omnipaxos.StorageLockedError as e:
        print(json.dumps({"event": "locked", "message": str(e), "code": int(e.code)}), flush=True)
        sys.exit(3)
    opened(node)
    node.close()
elif mode == "retry":   # retry until it opens
    failures = 0
    print(json.dumps({"event": "started"}), flush=True)
    while True:
        try:
            node = omnipaxos.OmniPaxos.from_config(config)
            break
        except omnipaxos.StorageLockedError:
            failures += 1
            time.sleep(0.005)
    print(json.dumps({"event": "opened", "t": time.monotonic(), "failures": failures}), flush=True)
    node.close()
"""


def opener(path: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", OPENER, str(path), mode],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(),
    )


def event(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise AssertionError(f"the opener exited {proc.returncode}: {proc.stderr.read().decode()}")
    return json.loads(line)


def test_storage_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "node1"
    procs: List[subprocess.Popen] = []
    try:
        holder = opener(path, "hold")
        procs.append(holder)
        assert event(holder)["event"] == "opened"

        # A second live process on the same path is refused.
        second = opener(path, "once")
        procs.append(second)
        out, err = second.communicate(timeout=30)
        assert second.returncode == 3, out.decode() + err.decode()
        refused = json.loads(out)
        assert refused["event"] == "locked"
        assert refused["code"] == omnipaxos.ResultCode.STORAGE_LOCKED
        assert str(path) in refused["message"] and str(holder.pid) in refused["message"], refused

        # One that keeps trying gets it only once the holder is dead, and then at once.
        waiter = opener(path, "retry")
        procs.append(waiter)
        assert event(waiter)["event"] == "started"
        time.sleep(0.3)
        assert waiter.poll() is None, "the storage was opened while another process held it"
        killed_at = time.monotonic()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        got = event(waiter)
        assert got["event"] == "opened"
        assert got["t"] > killed_at, "opened before the holder was killed"
        assert got["failures"] > 0
        assert got["t"] - killed_at < 5.0, "the lock was not released promptly"
        assert waiter.wait(timeout=10) == 0

        # Immediately after the kill, a plain open succeeds.
        holder2 = opener(path, "hold")
        procs.append(holder2)
        assert event(holder2)["event"] == "opened"
        holder2.send_signal(signal.SIGKILL)
        holder2.wait(timeout=10)
        third = opener(path, "once")
        procs.append(third)
        out, err = third.communicate(timeout=30)
        assert third.returncode == 0, out.decode() + err.decode()
        assert json.loads(out)["event"] == "opened"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    f.close()
