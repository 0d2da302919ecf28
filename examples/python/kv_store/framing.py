"""Length-prefixed frames over a byte stream (TCP), shared by the node, the client and the demo.

A frame is a 4-byte big-endian length followed by that many bytes of payload. Every
connection starts with one *hello* frame saying who is talking:

* ``PEER <pid>``: a node's outbound link; every later frame is one Omni-Paxos message,
  exactly the bytes ``OmniPaxos.outgoing()`` produced (they go to ``handle_incoming``).
* ``CLIENT``: a client; every later frame is a JSON request, answered by one JSON frame.

Standard library only.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Dict, List, Optional

HEADER = struct.Struct(">I")
#: The largest frame accepted: a little above the library's default max_message_bytes (64 MiB).
MAX_FRAME = (64 << 20) + 4096

HELLO_CLIENT = b"CLIENT"
HELLO_PEER_PREFIX = b"PEER "


class FrameError(Exception):
    """The stream is not a sequence of valid frames (e.g. a length above the maximum)."""


def encode_frame(payload: bytes, max_frame: int = MAX_FRAME) -> bytes:
    """``payload`` as one frame."""
    if len(payload) > max_frame:
        raise FrameError(f"frame of {len(payload)} bytes exceeds the maximum of {max_frame}")
    return HEADER.pack(len(payload)) + payload


def peer_hello(pid: int) -> bytes:
    """The hello payload of node ``pid``'s outbound link."""
    return HELLO_PEER_PREFIX + str(pid).encode()


def parse_hello(payload: bytes) -> Optional[int]:
    """``None`` for a client hello, the pid for a peer hello; FrameError for anything else."""
    if payload == HELLO_CLIENT:
        return None
    if payload.startswith(HELLO_PEER_PREFIX):
        rest = payload[len(HELLO_PEER_PREFIX) :]
        if rest.isdigit() and int(rest) > 0:
            return int(rest)
    raise FrameError(f"bad hello frame {payload[:40]!r}")


class FrameDecoder:
    """Incremental decoder: :meth:`feed` it bytes as they arrive, get whole frames back."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> List[bytes]:
        """Adds ``data``; returns the frames completed by it (possibly none).

        Raises FrameError when a header announces a frame longer than the maximum; the
        connection should then be dropped.
        """
        self._buf += data
        frames: List[bytes] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= HEADER.size:
            (n,) = HEADER.unpack_from(buf, pos)
            if n > self._max:
                raise FrameError(f"frame of {n} bytes exceeds the maximum of {self._max}")
            if len(buf) - pos - HEADER.size < n:
                break
            start = pos + HEADER.size
            frames.append(bytes(buf[start : start + n]))
            pos = start + n
        if pos:
            del buf[:pos]
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not form a whole frame yet."""
        return len(self._buf)


# -- blocking helpers (client side) -----------------------------------------------------


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed in the middle of a frame")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def send_frame(sock: socket.socket, payload: bytes) -> None:
    """Sends one frame on a blocking socket."""
    sock.sendall(encode_frame(payload))


def recv_frame(sock: socket.socket, max_frame: int = MAX_FRAME) -> bytes:
    """Receives one frame from a blocking socket."""
    (n,) = HEADER.unpack(_recv_exactly(sock, HEADER.size))
    if n > max_frame:
        raise FrameError(f"frame of {n} bytes exceeds the maximum of {max_frame}")
    return _recv_exactly(sock, n)


def request(
    host: str, port: int, req: Dict[str, Any], timeout: float = 5.0
) -> Dict[str, Any]:
    """Sends one client request to the node at ``host:port`` and returns its JSON answer."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        send_frame(sock, HELLO_CLIENT)
        send_frame(sock, json.dumps(req).encode())
        answer = json.loads(recv_frame(sock).decode())
    if not isinstance(answer, dict):
        raise FrameError(f"answer is not a JSON object: {answer!r}")
    return answer
