"""The kv_store example's TCP framing (pure Python)."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from conftest import import_example

framing = import_example("framing")


def test_round_trip_byte_by_byte() -> None:
    payloads = [b"", b"x", b"hello world", bytes(range(256)) * 100]
    stream = b"".join(framing.encode_frame(p) for p in payloads)
    dec = framing.FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += dec.feed(stream[i : i + 1])
    assert got == payloads and dec.pending == 0


def test_many_frames_in_one_chunk_and_a_partial_tail() -> None:
    stream = framing.encode_frame(b"a") + framing.encode_frame(b"bb") + framing.encode_frame(b"ccc")
    dec = framing.FrameDecoder()
    assert dec.feed(stream[:-1]) == [b"a", b"bb"]
    assert dec.pending == 4 + 2
    assert dec.feed(stream[-1:]) == [b"ccc"]


def test_oversized_frames_are_refused() -> None:
    dec = framing.FrameDecoder(max_frame=10)
    with pytest.raises(framing.FrameError):
        dec.feed((11).to_bytes(4, "big"))
    with pytest.raises(framing.FrameError):
        framing.encode_frame(b"x" * 11, max_frame=10)
    assert framing.FrameDecoder(max_frame=10).feed(framing.encode_frame(b"x" * 10)) == [b"x" * 10]


def test_hello() -> None:
    assert framing.parse_hello(framing.HELLO_CLIENT) is None
    assert framing.parse_hello(framing.peer_hello(7)) == 7
    for bad in (b"", b"PEER ", b"PEER x", b"PEER 0", b"HELLO", b"PEER -1"):
        with pytest.raises(framing.FrameError):
            framing.parse_hello(bad)


def test_blocking_helpers_over_a_socket() -> None:
    a, b = socket.socketpair()
    with a, b:
        big = b"z" * (3 << 20)
        t = threading.Thread(target=lambda: (framing.send_frame(a, b"one"), framing.send_frame(a, big)))
        t.start()
        assert framing.recv_frame(b) == b"one"
        assert framing.recv_frame(b) == big
        t.join()
        a.sendall(b"\x00\x00\x00\x05ab")
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(ConnectionError):
            framing.recv_frame(b)


def test_request_against_a_tiny_server() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            assert framing.recv_frame(conn) == framing.HELLO_CLIENT
            req = json.loads(framing.recv_frame(conn))
            framing.send_frame(conn, json.dumps({"ok": True, "echo": req}).encode())

    t = threading.Thread(target=serve)
    t.start()
    try:
        assert framing.request("127.0.0.1", port, {"op": "status"}) == {"ok": True, "echo": {"op": "status"}}
    finally:
        t.join()
        srv.close()
