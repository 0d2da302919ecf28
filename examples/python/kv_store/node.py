#!/usr/bin/env python3
"""One server of the replicated key-value store: its own OS process, talking TCP.

The log is an Omni-Paxos log (libomnipaxos through the Python binding); the key-value map
is the result of applying the decided entries in order. The process runs one event loop:

* accept connections; frames from peers go to ``handle_incoming``, frames from clients are
  requests (see ``framing.py`` for the framing and the hello frame);
* tick the node every 10 ms (a leader silent for ``election_tick_timeout`` ticks is replaced);
* send the node's outgoing messages on one outbound TCP link per peer; a link that is down
  is re-connected with exponential backoff, messages for it are dropped meanwhile (the
  protocol re-sends), and ``reconnected(pid)`` is called when it comes back;
* apply newly decided entries (``read_decided`` from the applied index) to a dict, once per
  request id (a forwarded proposal can be decided twice across a leader change), and
  answer the clients whose PUT was just applied.

Client requests (JSON objects, one per frame): ``{"op": "put", "key": k, "value": v}``
(answered once the entry is applied here: a PUT at a follower is appended locally and the
library forwards it to the leader), ``{"op": "get", "key": k}`` (a local read),
``{"op": "status"}`` (pid, leader, decided_idx, ...), ``{"op": "dump"}`` (the whole map).

Usage: node.py --pid 1 --cluster 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
               --data-dir /tmp/kv [--recover] [--memory]
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import selectors
import signal
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# Use the binding of this checkout (works without `pip install`).
_BINDING = HERE.parents[2] / "bindings" / "python"
if (_BINDING / "omnipaxos" / "__init__.py").is_file():
    sys.path.insert(0, str(_BINDING))

import omnipaxos  # noqa: E402
from framing import (  # noqa: E402
    FrameDecoder,
    FrameError,
    encode_frame,
    parse_hello,
    peer_hello,
)

TICK_SECONDS = 0.010
BACKOFF_MIN = 0.05
BACKOFF_MAX = 0.5
LINK_BUFFER_LIMIT = 32 << 20
PUT_TIMEOUT = 10.0

Addr = Tuple[str, int]


def parse_cluster(text: str) -> Dict[int, Addr]:
    """``"1=127.0.0.1:7001,2=127.0.0.1:7002"`` -> ``{1: ("127.0.0.1", 7001), ...}``."""
    cluster: Dict[int, Addr] = {}
    for part in text.split(","):
        pid, _, addr = part.strip().partition("=")
        host, _, port = addr.rpartition(":")
        if not pid.isdigit() or not host or not port.isdigit():
            raise ValueError(f"bad cluster member {part!r} (want pid=host:port)")
        cluster[int(pid)] = (host, int(port))
    return cluster


class PeerLink:
    """The outbound TCP link to one peer: we only ever write on it."""

    def __init__(self, pid: int, addr: Addr) -> None:
        self.pid = pid
        self.addr = addr
        self.sock: Optional[socket.socket] = None
        self.state = "down"  # down | connecting | up
        self.wbuf = bytearray()
        self.events = 0
        self.next_attempt = 0.0
        self.backoff = BACKOFF_MIN
        self.lost = False  # messages were lost since the link was last up


class Conn:
    """An accepted connection: a peer's outbound link or a client."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = FrameDecoder()
        self.kind = "new"  # new | peer | client
        self.peer = 0
        self.wbuf = bytearray()
        self.events = 0
        self.open = True


class KVNode:
    def __init__(self, args: argparse.Namespace) -> None:
        self.pid: int = args.pid
        self.cluster = parse_cluster(args.cluster)
        if self.pid not in self.cluster:
            raise SystemExit(f"--pid {self.pid} is not in --cluster")
        self.parent_pid: int = args.parent_pid
        self.node, self.storage = self.create_node(args)
        if args.recover:
            self.node.fail_recovery()
            self.log("recovering: fail_recovery() called, catching up from the peers")
        self.store: Dict[str, str] = {}
        self.applied = 0
        self.applied_ids: Set[str] = set()  # request ids applied: exactly-once application
        self.pending: Dict[str, Tuple[Conn, float]] = {}
        self.leader: Optional[int] = None
        self.running = True
        self.errors: Dict[str, int] = {}

        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(self.cluster[self.pid])
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, ("listen", None))
        self.links = {
            pid: PeerLink(pid, addr) for pid, addr in self.cluster.items() if pid != self.pid
        }
        host, port = self.cluster[self.pid]
        self.log(f"listening on {host}:{port}, storage: {self.storage}")

    def log(self, text: str) -> None:
        print(f"[node {self.pid}] {text}", flush=True)

    def create_node(self, args: argparse.Namespace) -> Tuple[omnipaxos.OmniPaxos, str]:
        config: Dict[str, Any] = {
            "pid": self.pid,
            "nodes": sorted(self.cluster),
            "election_tick_timeout": args.election_ticks,
        }
        if args.memory:
            return omnipaxos.OmniPaxos.from_config(config), "memory"
        path = Path(args.data_dir) / f"node{self.pid}"
        persistent = {**config, "storage": {"type": "persistent", "path": str(path)}}
        return omnipaxos.OmniPaxos.from_config(persistent), f"persistent at {path}"

    # -- selector plumbing --------------------------------------------------------------

    def set_events(self, obj: Any, events: int, data: Any) -> None:
        if obj.events == events:
            return
        if obj.events == 0:
            self.sel.register(obj.sock, events, data)
        elif events == 0:
            self.sel.unregister(obj.sock)
        else:
            self.sel.modify(obj.sock, events, data)
        obj.events = events

    def flush(self, obj: Any, data: Any) -> bool:
        """Writes what the socket takes now; False when the connection failed."""
        if obj.wbuf:
            try:
                n = obj.sock.send(obj.wbuf)
                del obj.wbuf[:n]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return False
        self.set_events(obj, selectors.EVENT_READ | (selectors.EVENT_WRITE if obj.wbuf else 0), data)
        return True

    # -- outbound links -----------------------------------------------------------------

    def connect(self, link: PeerLink, now: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(link.addr)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            self.link_failed(link, now)
            return
        link.sock = sock
        link.state = "connecting"
        link.events = 0
        self.set_events(link, selectors.EVENT_WRITE, ("link", link))

    def link_up(self, link: PeerLink) -> None:
        assert link.sock is not None
        link.state = "up"
        link.backoff = BACKOFF_MIN
        link.wbuf = bytearray(encode_frame(peer_hello(self.pid)))
        if link.lost:
            self.node.reconnected(link.pid)
            self.log(f"link to node {link.pid} is up after a failure: reconnected({link.pid})")
            link.lost = False
        else:
            self.log(f"link to node {link.pid} is up")
        if not self.flush(link, ("link", link)):
            self.link_failed(link, time.monotonic())

    def link_failed(self, link: PeerLink, now: float) -> None:
        if link.state == "up":
            self.log(f"link to node {link.pid} is down; reconnecting with backoff")
        if link.sock is not None:
            self.set_events(link, 0, None)
            link.sock.close()
        link.sock = None
        link.state = "down"
        link.wbuf.clear()
        link.lost = True
        link.next_attempt = now + link.backoff
        link.backoff = min(link.backoff * 2, BACKOFF_MAX)

    def on_link_event(self, link: PeerLink, mask: int) -> None:
        assert link.sock is not None
        now = time.monotonic()
        if link.state == "connecting":
            err = link.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.link_failed(link, now)
            else:
                self.link_up(link)
            return
        if mask & selectors.EVENT_READ:
            # Peers never write on our outbound link: readable means closed (or reset).
            try:
                data = link.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                data = b"x"
            except OSError:
                data = b""
            if not data:
                self.link_failed(link, now)
                return
        if mask & selectors.EVENT_WRITE and not self.flush(link, ("link", link)):
            self.link_failed(link, now)

    def send(self, to: int, data: bytes) -> None:
        link = self.links.get(to)
        if link is None:
            return
        if link.state != "up":
            link.lost = True  # dropped: the protocol re-sends, reconnected() re-syncs
            return
        link.wbuf += encode_frame(data)
        if len(link.wbuf) > LINK_BUFFER_LIMIT:
            self.log(f"link to node {to} is not draining; dropping it")
            self.link_failed(link, time.monotonic())

    # -- inbound connections ------------------------------------------------------------

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(sock)
            self.set_events(conn, selectors.EVENT_READ, ("conn", conn))

    def close_conn(self, conn: Conn) -> None:
        if conn.open:
            conn.open = False
            self.set_events(conn, 0, None)
            conn.sock.close()

    def on_conn_event(self, conn: Conn, mask: int) -> None:
        if mask & selectors.EVENT_WRITE and not self.flush(conn, ("conn", conn)):
            self.close_conn(conn)
            return
        if not mask & selectors.EVENT_READ:
            return
        try:
            data = conn.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close_conn(conn)
            return
        try:
            frames = conn.decoder.feed(data)
            for frame in frames:
                if not conn.open:
                    break
                if conn.kind == "new":
                    pid = parse_hello(frame)
                    conn.kind, conn.peer = ("client", 0) if pid is None else ("peer", pid)
                elif conn.kind == "peer":
                    self.deliver(conn.peer, frame)
                else:
                    self.on_request(conn, frame)
        except FrameError as e:
            self.log(f"dropping a connection: {e}")
            self.close_conn(conn)

    def deliver(self, sender: int, frame: bytes) -> None:
        try:
            self.node.handle_incoming(frame)
        except omnipaxos.OmniPaxosError as e:
            name = type(e).__name__
            self.errors[name] = self.errors.get(name, 0) + 1
            if self.errors[name] <= 3:
                self.log(f"rejected a message from node {sender}: {name}: {e}")

    # -- clients ------------------------------------------------------------------------

    def reply(self, conn: Conn, answer: Dict[str, Any]) -> None:
        if not conn.open:
            return
        conn.wbuf += encode_frame(json.dumps(answer).encode())
        if not self.flush(conn, ("conn", conn)):
            self.close_conn(conn)

    def status(self) -> Dict[str, Any]:
        ballot = self.node.ballot
        return {
            "ok": True,
            "pid": self.pid,
            "leader": self.node.leader,
            "ballot": None if ballot is None else [ballot.n, ballot.priority, ballot.pid],
            "decided_idx": self.node.decided_idx,
            "applied": self.applied,
            "quorum_connected": self.node.is_quorum_connected,
            "storage": self.storage,
            "keys": len(self.store),
        }

    def on_request(self, conn: Conn, frame: bytes) -> None:
        try:
            req = json.loads(frame.decode())
            op = req["op"]
        except (ValueError, KeyError, TypeError):
            self.reply(conn, {"ok": False, "error": "bad request: want a JSON object with 'op'"})
            return
        if op == "status":
            self.reply(conn, self.status())
        elif op == "get":
            key = str(req.get("key"))
            self.reply(
                conn,
                {
                    "ok": True,
                    "key": key,
                    "found": key in self.store,
                    "value": self.store.get(key),
                    "applied": self.applied,
                },
            )
        elif op == "dump":
            self.reply(conn, {"ok": True, "pid": self.pid, "applied": self.applied, "data": self.store})
        elif op in ("put", "delete"):
            rid = uuid.uuid4().hex
            entry = {"id": rid, "op": op, "key": str(req.get("key"))}
            if op == "put":
                entry["value"] = str(req.get("value"))
            try:
                self.node.append(json.dumps(entry).encode())
            except omnipaxos.OmniPaxosError as e:
                self.reply(conn, {"ok": False, "error": f"{type(e).__name__}: {e}"})
                return
            self.pending[rid] = (conn, time.monotonic() + PUT_TIMEOUT)
        else:
            self.reply(conn, {"ok": False, "error": f"unknown op {op!r}"})

    def apply_decided(self) -> None:
        decided = self.node.decided_idx
        while self.applied < decided:
            batch = self.node.read_decided(self.applied)
            if not batch:
                return
            for data in batch:
                idx = self.applied
                self.applied += 1
                try:
                    entry = json.loads(data.decode())
                    op, key, rid = entry["op"], entry["key"], entry["id"]
                except (ValueError, KeyError, TypeError):
                    continue  # not one of ours (e.g. a StopSign): skip
                if rid in self.applied_ids:
                    continue  # a forwarded proposal decided twice (leader change): apply once
                self.applied_ids.add(rid)
                if op == "put":
                    self.store[key] = entry.get("value", "")
                elif op == "delete":
                    self.store.pop(key, None)
                waiting = self.pending.pop(rid, None)
                if waiting is not None:
                    answer = {"ok": True, "idx": idx, "pid": self.pid, "leader": self.node.leader}
                    self.reply(waiting[0], answer)

    def expire_pending(self, now: float) -> None:
        for rid, (conn, deadline) in list(self.pending.items()):
            if not conn.open:
                del self.pending[rid]
            elif now > deadline:
                del self.pending[rid]
                self.reply(conn, {"ok": False, "error": "timed out waiting for the entry to be decided"})

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        next_tick = time.monotonic()
        next_parent_check = 0.0
        while self.running:
            now = time.monotonic()
            wake = next_tick
            for link in self.links.values():
                if link.state == "down":
                    wake = min(wake, link.next_attempt)
            for key, mask in self.sel.select(max(0.0, wake - now)):
                kind, obj = key.data
                if kind == "listen":
                    self.accept()
                elif kind == "link":
                    if obj.sock is key.fileobj:
                        self.on_link_event(obj, mask)
                elif obj.open:
                    self.on_conn_event(obj, mask)
            now = time.monotonic()
            for _ in range(10):
                if now < next_tick:
                    break
                self.node.tick()
                next_tick += TICK_SECONDS
            if now >= next_tick:  # fell far behind (e.g. stopped): do not burst
                next_tick = now + TICK_SECONDS
            for link in self.links.values():
                if link.state == "down" and now >= link.next_attempt:
                    self.connect(link, now)
            # Until there is nothing more: a leader returns its new entries' messages
            # before it fsyncs them itself (the next call does), so they are on the wire
            # while its disk works.
            while True:
                msgs = self.node.outgoing()
                for to, data in msgs:
                    self.send(to, data)
                for link in self.links.values():
                    if link.state == "up" and link.wbuf and not self.flush(link, ("link", link)):
                        self.link_failed(link, now)
                if not msgs:
                    break
            self.apply_decided()
            self.expire_pending(now)
            leader = self.node.leader
            if leader != self.leader:
                self.leader = leader
                self.log(f"leader is now {leader} (ballot {self.node.ballot})")
            if self.parent_pid and now >= next_parent_check:
                next_parent_check = now + 0.5
                if os.getppid() != self.parent_pid:
                    self.log("parent process is gone; exiting")
                    return

    def close(self) -> None:
        for link in self.links.values():
            if link.sock is not None:
                link.sock.close()
        self.listener.close()
        self.node.close()
        self.log(f"stopped (applied {self.applied} entries, {len(self.store)} keys)")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pid", type=int, required=True, help="this node's pid")
    p.add_argument("--cluster", required=True, help="every node: pid=host:port,...")
    p.add_argument("--data-dir", default=".", help="persistent storage goes to DATA_DIR/node<pid>")
    p.add_argument("--recover", action="store_true", help="call fail_recovery() after creation")
    p.add_argument("--memory", action="store_true", help="use memory storage")
    p.add_argument("--election-ticks", type=int, default=10, help="election timeout in ticks (10 ms)")
    p.add_argument("--parent-pid", type=int, default=0, help="exit when this process is no longer our parent")
    args = p.parse_args(argv)

    kv = KVNode(args)

    def stop(signum: int, frame: Any) -> None:
        kv.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        kv.run()
    finally:
        kv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
