#!/usr/bin/env python3
"""One node of the crash test (test_crash_recovery.py) and of the liveness test over TCP
(test_tcp_liveness.py): its own OS process, talking TCP.

The node runs on persistent storage with ``sync = always`` and appends a continuous stream
of small unique entries while it runs, so that a SIGKILL sent by the test lands in the
middle of storage writes. It writes what it knows to files in ``--dir`` (``N`` is the pid,
``G`` the generation, i.e. how many times the node was started before):

* ``nN.gG.recovered``: written once at start, right after the node was created from its
  storage (and ``fail_recovery()`` was called), before any message is exchanged: the whole
  log as ``idx<TAB>hex`` lines, then ``END<TAB><decided_idx><TAB><log length>``. This is
  what the node holds on disk. (The decided index is durable lazily, so it may be below
  what the node reported before a kill; the entries must all be there.)
* ``nN.gG.report``: the entries the node saw decided after that, as ``idx<TAB>hex`` lines,
  appended and fsynced after every loop iteration, strictly *after* the library reported
  them decided. After a SIGKILL it is therefore a lower bound of what the library reported
  decided before the kill (a torn last line, without its newline, is ignored by the test).
* ``nN.status``: a small JSON object replaced atomically every ~50 ms (leader,
  decided_idx, ...), read by the test to pick a victim and to watch progress.
* ``nN.gG.final``: on SIGTERM, the whole log like ``.recovered``; then the process
  exits 0.
* ``nN.leaders``: one line ``<unix time><TAB><gen><TAB><leader><TAB><n><TAB><priority>
  <TAB><pid>`` appended (not fsynced) whenever, at a tick, the leader or its ballot
  ``(n, priority, pid)`` differs from the last one this process logged (0s when no leader
  is known), the first before the first status; read by test_tcp_liveness.py.

SIGUSR1 stops the appends (the test then waits for the nodes to agree on one log).
SIGUSR2 re-reads ``nN.cut``: the pids (whitespace separated) this node drops every message
to, while its connections stay up (one-way cuts; a missing file is no cut). A pid that
leaves the set gets ``reconnected()``, as after a network partition heals.

Entries are ``<pid>:<gen>:<counter>|<filler>``, 16 to 64 bytes, appended in batches of 50
to 200 at up to ``--rate`` entries per second. Flow control: at most ``--window`` entries
of this process may be in flight (appended, not seen decided); a window that makes no
progress for a second is forgotten (its entries were lost with a leader).

Framing on TCP: a 4-byte big-endian length, then the payload. Every connection starts with
a hello frame holding the sender's pid as ASCII; each later frame is one message from
``OmniPaxos.outgoing()``. A node only writes on the connections it opened and only reads on
the ones it accepted.

Standard library plus the binding only; self-contained (the test does not depend on the
examples' code).

Usage: crash_node.py --pid 1 --ports 1=P1,2=P2,3=P3 --dir DIR --gen 0 [--recover]
(any number of nodes: one pid=port per node in --ports)
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time
from typing import Dict, List, Optional, Set

import omnipaxos

HOST = "127.0.0.1"
HEADER = struct.Struct(">I")
MAX_FRAME = (64 << 20) + 4096
TICK = 0.005
STATUS_EVERY = 0.05
BACKOFF_MIN = 0.02
BACKOFF_MAX = 0.2
LINK_BUFFER_LIMIT = 32 << 20
FILLER = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_" * 2


def entry(pid: int, gen: int, counter: int) -> bytes:
    head = b"%d:%d:%d|" % (pid, gen, counter)
    size = 16 + (counter * 7919) % 49  # 16 .. 64 bytes
    return head + FILLER[: max(0, size - len(head))]


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def dump_log(node: omnipaxos.OmniPaxos, path: str) -> int:
    """Writes the whole log to ``path`` (fsynced), decided entries first, then
    ``END<TAB>decided_idx<TAB>log_len``; returns the decided index."""
    decided = node.decided_idx
    entries = node.read_decided(0)[:decided]
    while True:  # the undecided tail (the decided index is lazily durable)
        e = node.read_entry(len(entries))
        if e is None or e.kind != omnipaxos.EntryKind.UNDECIDED:
            break
        entries.append(e.data)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        chunk: List[str] = []
        for i, data in enumerate(entries):
            chunk.append(f"{i}\t{data.hex()}\n")
            if len(chunk) >= 4096:
                write_all(fd, "".join(chunk).encode())
                chunk.clear()
        chunk.append(f"END\t{decided}\t{len(entries)}\n")
        write_all(fd, "".join(chunk).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    return decided


class Link:
    """Our outbound connection to one peer (write only)."""

    def __init__(self, pid: int, port: int) -> None:
        self.pid = pid
        self.port = port
        self.sock: Optional[socket.socket] = None
        self.state = "down"  # down | connecting | up
        self.wbuf = bytearray()
        self.events = 0
        self.next_attempt = 0.0
        self.backoff = BACKOFF_MIN
        self.lost = False


class Inbound:
    """A connection a peer opened to us (read only)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.peer = 0  # 0 until the hello frame arrived


class Flags:
    """Set by the signal handlers (installed before anything else)."""

    running = True
    quiesced = False
    reread_cut = True


class CrashNode:
    def __init__(self, args: argparse.Namespace, flags: Flags) -> None:
        self.pid: int = args.pid
        self.gen: int = args.gen
        self.dir: str = args.dir
        self.window: int = args.window
        self.rate: float = args.rate
        self.next_batch = 0.0
        self.ports: Dict[int, int] = {}
        for part in args.ports.split(","):
            p, _, port = part.partition("=")
            self.ports[int(p)] = int(port)
        self.parent = os.getppid()
        self.rng = random.Random(args.seed)
        self.flags = flags

        config = {
            "pid": self.pid,
            "nodes": sorted(self.ports),
            "election_tick_timeout": args.election_ticks,
            "resend_tick_timeout": 4,
            "buffer_size": 20000,
            "batch_size": 1000,
            "storage": {
                "type": "persistent",
                "path": os.path.join(self.dir, f"node{self.pid}"),
                "sync": "always",
                "segment_bytes": args.segment_bytes,
            },
        }
        self.node = omnipaxos.OmniPaxos.from_config(config)
        if args.recover:
            self.node.fail_recovery()
        # What the node holds on disk, before any message: the test checks it against
        # everything this node (and the others) reported decided before.
        self.reported = dump_log(self.node, self.path("recovered"))
        self.report_fd = os.open(
            self.path("report"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
        )

        self.counter = 0
        self.acked = 0  # highest own counter seen decided (+1)
        self.window_base = 0
        self.window_since = time.monotonic()
        self.errors: Dict[str, int] = {}

        self.sel = selectors.DefaultSelector()
        self.listener = self.bind()
        self.sel.register(self.listener, selectors.EVENT_READ, ("listen", None))
        self.links = {p: Link(p, port) for p, port in self.ports.items() if p != self.pid}
        self.own_prefix = b"%d:%d:" % (self.pid, self.gen)
        self.cut: Set[int] = set()  # peers every message to is dropped
        self.last_leader: Optional[tuple] = None
        self.leaders_fd = os.open(
            os.path.join(self.dir, f"n{self.pid}.leaders"),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o644,
        )

    def path(self, kind: str) -> str:
        return os.path.join(self.dir, f"n{self.pid}.g{self.gen}.{kind}")

    def bind(self) -> socket.socket:
        # The port was free when the test chose it, and is outside the ephemeral range; the
        # previous incarnation's socket may still be closing: retry for a while.
        deadline = time.monotonic() + 10
        while True:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, self.ports[self.pid]))
            except OSError as e:
                s.close()
                if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            s.listen(16)
            s.setblocking(False)
            return s

    # -- network ---------------------------------------------------------------------

    def set_events(self, link: Link, events: int) -> None:
        if link.events == events:
            return
        if link.events == 0:
            self.sel.register(link.sock, events, ("link", link))
        elif events == 0:
            self.sel.unregister(link.sock)
        else:
            self.sel.modify(link.sock, events, ("link", link))
        link.events = events

    def connect(self, link: Link) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex((HOST, link.port))
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            self.link_failed(link)
            return
        link.sock = sock
        link.state = "connecting"
        link.events = 0
        self.set_events(link, selectors.EVENT_WRITE)

    def link_failed(self, link: Link) -> None:
        if link.sock is not None:
            self.set_events(link, 0)
            link.sock.close()
        link.sock = None
        link.state = "down"
        link.wbuf.clear()
        link.lost = True
        link.next_attempt = time.monotonic() + link.backoff
        link.backoff = min(link.backoff * 2, BACKOFF_MAX)

    def flush(self, link: Link) -> None:
        if link.wbuf:
            try:
                n = link.sock.send(link.wbuf)
                del link.wbuf[:n]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.link_failed(link)
                return
        self.set_events(link, selectors.EVENT_READ | (selectors.EVENT_WRITE if link.wbuf else 0))

    def on_link(self, link: Link, mask: int) -> None:
        if link.state == "connecting":
            if link.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.link_failed(link)
                return
            link.state = "up"
            link.backoff = BACKOFF_MIN
            link.wbuf = bytearray(HEADER.pack(len(str(self.pid))) + str(self.pid).encode())
            if link.lost:
                link.lost = False
                self.node.reconnected(link.pid)
            self.flush(link)
            return
        if mask & selectors.EVENT_READ:
            try:
                data = link.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                data = b"x"
            except OSError:
                data = b""
            if not data:  # the peer never writes here: readable means closed
                self.link_failed(link)
                return
        if mask & selectors.EVENT_WRITE:
            self.flush(link)

    def send(self, to: int, data: bytes) -> None:
        link = self.links.get(to)
        if link is None or to in self.cut:
            return
        if link.state != "up":
            link.lost = True  # dropped: the protocol re-sends, reconnected() re-syncs
            return
        link.wbuf += HEADER.pack(len(data))
        link.wbuf += data
        if len(link.wbuf) > LINK_BUFFER_LIMIT:
            self.link_failed(link)

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            self.sel.register(sock, selectors.EVENT_READ, ("in", Inbound(sock)))

    def on_inbound(self, conn: Inbound) -> None:
        try:
            data = conn.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(conn.sock)
            conn.sock.close()
            return
        conn.buf += data
        buf = conn.buf
        pos = 0
        while len(buf) - pos >= HEADER.size:
            (n,) = HEADER.unpack_from(buf, pos)
            if n > MAX_FRAME:
                raise RuntimeError(f"frame of {n} bytes from node {conn.peer}")
            if len(buf) - pos - HEADER.size < n:
                break
            frame = bytes(buf[pos + HEADER.size : pos + HEADER.size + n])
            pos += HEADER.size + n
            if not conn.peer:
                conn.peer = int(frame)
                continue
            try:
                self.node.handle_incoming(frame)
            except omnipaxos.OmniPaxosError as e:
                name = type(e).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
        del buf[:pos]

    # -- load and reporting ----------------------------------------------------------

    def append_batch(self, now: float) -> None:
        if self.flags.quiesced or now < self.next_batch:
            return
        if self.acked > self.window_base:
            self.window_base = self.acked
            self.window_since = now
        elif now - self.window_since > 1.0:
            # No own entry decided for a second: those in flight were lost (e.g. with a
            # leader that died); forget them.
            self.window_base = self.counter
            self.window_since = now
        room = self.window - (self.counter - self.window_base)
        n = min(room, self.rng.randint(50, 200))
        if n <= 0:
            return
        for _ in range(n):
            try:
                self.node.append(entry(self.pid, self.gen, self.counter))
            except omnipaxos.BufferFullError:
                break
            self.counter += 1
        self.next_batch = now + n / self.rate

    def report(self) -> None:
        if self.node.decided_idx <= self.reported:
            return
        batch = self.node.read_decided(self.reported)
        if not batch:
            return
        lines = []
        for i, data in enumerate(batch, start=self.reported):
            lines.append(f"{i}\t{data.hex()}\n")
            if data.startswith(self.own_prefix):
                c = int(data[len(self.own_prefix) : data.index(b"|")])
                if c + 1 > self.acked:
                    self.acked = c + 1
        # Only now, after the library reported them decided, do they reach the report.
        write_all(self.report_fd, "".join(lines).encode())
        os.fsync(self.report_fd)
        self.reported += len(batch)

    def read_cut(self) -> None:
        self.flags.reread_cut = False
        try:
            with open(os.path.join(self.dir, f"n{self.pid}.cut")) as f:
                cut = {int(p) for p in f.read().split()}
        except FileNotFoundError:
            cut = set()
        for p in sorted(self.cut - cut):
            if p in self.links:
                self.node.reconnected(p)
        self.cut = cut

    def log_leader(self) -> None:
        ballot = self.node.ballot
        now = (self.node.leader or 0,)
        now += (ballot.n, ballot.priority, ballot.pid) if ballot else (0, 0, 0)
        if now != self.last_leader:
            self.last_leader = now
            line = "\t".join(map(str, now))
            write_all(self.leaders_fd, f"{time.time():.4f}\t{self.gen}\t{line}\n".encode())

    def write_status(self) -> None:
        status = {
            "pid": self.pid,
            "gen": self.gen,
            "os_pid": os.getpid(),
            "leader": self.node.leader,
            "decided_idx": self.node.decided_idx,
            "reported": self.reported,
            "appended": self.counter,
            "quiesced": self.flags.quiesced,
            "errors": self.errors,
            "time": time.time(),
        }
        path = os.path.join(self.dir, f"n{self.pid}.status")
        with open(path + ".tmp", "w") as f:
            json.dump(status, f)
        os.replace(path + ".tmp", path)

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        """Loops until SIGTERM (or until the test process is gone). Any error of the
        library (a StorageError from a commit, say) ends the process with a traceback."""
        self.next_tick = time.monotonic()
        self.next_status = 0.0
        while self.flags.running and self.step():
            pass

    def step(self) -> bool:
        now = time.monotonic()
        wake = self.next_tick
        for link in self.links.values():
            if link.state == "down":
                wake = min(wake, link.next_attempt)
        for key, mask in self.sel.select(max(0.0, wake - now)):
            kind, obj = key.data
            if kind == "listen":
                self.accept()
            elif kind == "link":
                if obj.sock is key.fileobj:
                    self.on_link(obj, mask)
            else:
                self.on_inbound(obj)
        now = time.monotonic()
        if self.flags.reread_cut:
            self.read_cut()
        if now >= self.next_tick:
            self.node.tick()
            self.log_leader()
            self.next_tick += TICK
            if now >= self.next_tick:  # behind (a slow iteration): do not burst
                self.next_tick = now + TICK
        for link in self.links.values():
            if link.state == "down" and now >= link.next_attempt:
                self.connect(link)
        self.append_batch(now)
        while True:  # until empty: a leader's AcceptDecide leaves before its own fsync
            msgs = self.node.outgoing()
            for to, data in msgs:
                self.send(to, data)
            for link in self.links.values():
                if link.state == "up" and link.wbuf:
                    self.flush(link)
            if not msgs:
                break
        self.report()
        if now >= self.next_status:
            self.next_status = now + STATUS_EVERY
            self.write_status()
            if os.getppid() != self.parent:
                return False  # the test is gone
        return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--ports", required=True, help="pid=port,... for every node (127.0.0.1)")
    p.add_argument("--dir", required=True, help="storage in DIR/node<pid>, reports in DIR")
    p.add_argument("--gen", type=int, default=0, help="how many times this node was started before")
    p.add_argument("--recover", action="store_true", help="call fail_recovery() after creation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window", type=int, default=1000, help="own entries in flight at most")
    p.add_argument("--rate", type=float, default=1500.0, help="entries appended per second at most")
    p.add_argument("--election-ticks", type=int, default=20, help="election timeout in 5 ms ticks")
    p.add_argument("--segment-bytes", type=int, default=256 << 10)
    args = p.parse_args()
    flags = Flags()

    def stop(signum: int, frame: object) -> None:
        flags.running = False

    def quiesce(signum: int, frame: object) -> None:
        flags.quiesced = True

    def reread_cut(signum: int, frame: object) -> None:
        flags.reread_cut = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, quiesce)
    signal.signal(signal.SIGUSR2, reread_cut)
    node = CrashNode(args, flags)
    node.log_leader()  # before the first status, which may already name a leader
    node.write_status()
    node.run()
    if not flags.running:  # SIGTERM: a clean stop
        node.report()
        dump_log(node.node, node.path("final"))
    node.node.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
