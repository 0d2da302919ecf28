"""A small TCP mesh for the benchmark's libomnipaxos nodes (standard library only).

Every node listens on its own 127.0.0.1 port and opens one outbound connection to every
peer; it sends on its outbound connections and reads from the connections it accepted. A
frame is a 4-byte little-endian length followed by the payload (one Omni-Paxos message,
exactly the bytes ``OmniPaxos.outgoing()`` produced; the message header names its sender,
so the receiving side needs no hello). Sockets are non-blocking and driven by one
``selectors`` loop, so a node never blocks on a slow peer.
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import time
from typing import Dict, List, Optional, Tuple

_LEN = struct.Struct("<I")
MAX_FRAME = 256 << 20


class _Out:
    """Our outbound connection to one peer, with the bytes not yet sent."""

    def __init__(self, addr: Tuple[str, int]) -> None:
        self.addr = addr
        self.sock: Optional[socket.socket] = None
        self.connected = False
        self.buf = bytearray()
        self.retry_at = 0.0


class Mesh:
    """The node's links to its peers. Call :meth:`poll` in the event loop."""

    def __init__(self, pid: int, addrs: Dict[int, Tuple[str, int]]) -> None:
        self.pid = pid
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(addrs[pid])
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, ("listen", None))
        self.outs: Dict[int, _Out] = {p: _Out(a) for p, a in addrs.items() if p != pid}
        self.inbufs: Dict[socket.socket, bytearray] = {}

    # -- sending -------------------------------------------------------------------------

    def send(self, peer: int, payload: bytes) -> None:
        """Queues one frame for ``peer`` (sent by :meth:`flush` / :meth:`poll`)."""
        out = self.outs.get(peer)
        if out is None:
            return
        out.buf += _LEN.pack(len(payload))
        out.buf += payload

    def _connect(self, out: _Out, now: float) -> None:
        if out.sock is not None or now < out.retry_at:
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        rc = s.connect_ex(out.addr)
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            out.retry_at = now + 0.05
            return
        out.sock = s
        out.connected = False
        self.sel.register(s, selectors.EVENT_WRITE, ("out", out))

    def _drop(self, out: _Out) -> None:
        if out.sock is not None:
            self.sel.unregister(out.sock)
            out.sock.close()
        out.sock = None
        out.connected = False
        out.buf.clear()  # Omni-Paxos re-sends what a lost link swallowed
        out.retry_at = time.monotonic() + 0.05

    def flush(self) -> None:
        """Sends as much queued data as the sockets take now."""
        now = time.monotonic()
        for out in self.outs.values():
            if out.sock is None:
                self._connect(out, now)
            if out.connected and out.buf:
                self._write(out)

    def _write(self, out: _Out) -> None:
        assert out.sock is not None
        try:
            n = out.sock.send(out.buf)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self._drop(out)
            return
        del out.buf[:n]
        want = selectors.EVENT_WRITE if out.buf else selectors.EVENT_READ
        self.sel.modify(out.sock, want, ("out", out))

    # -- receiving -----------------------------------------------------------------------

    def poll(self, timeout: float) -> List[bytes]:
        """Waits up to ``timeout`` seconds for network events; returns the frames received."""
        self.flush()
        frames: List[bytes] = []
        for key, mask in self.sel.select(timeout):
            kind, out = key.data
            if kind == "listen":
                try:
                    conn, _ = self.listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.inbufs[conn] = bytearray()
                self.sel.register(conn, selectors.EVENT_READ, ("in", None))
            elif kind == "in":
                self._read(key.fileobj, frames)  # type: ignore[arg-type]
            elif kind == "out":
                if not out.connected:
                    err = out.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self._drop(out)
                        continue
                    out.connected = True
                if mask & selectors.EVENT_READ:
                    # The peer never writes on our outbound link: readable means closed.
                    try:
                        if not out.sock.recv(1 << 16):
                            self._drop(out)
                            continue
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        self._drop(out)
                        continue
                self._write(out)
        return frames

    def _read(self, conn: socket.socket, frames: List[bytes]) -> None:
        buf = self.inbufs[conn]
        try:
            data = conn.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(conn)
            conn.close()
            del self.inbufs[conn]
            return
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if n > MAX_FRAME:
                raise ValueError(f"frame of {n} bytes")
            if len(buf) - pos - 4 < n:
                break
            frames.append(bytes(buf[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        del buf[:pos]

    def close(self) -> None:
        for out in self.outs.values():
            if out.sock is not None:
                out.sock.close()
        for conn in self.inbufs:
            conn.close()
        self.listener.close()
        self.sel.close()
