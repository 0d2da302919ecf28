"""Per-call costs of the Python binding on the counter benchmark's hot path (one process,
three nodes, messages passed in memory). Explains where the cross-process figure goes:

* ``append``: one ``OmniPaxos.append(b"\\x01")`` at the leader; ``append_many``: the same
  entries 1,000 per call;
* ``read``: ``read_decided(from)`` per entry returned (the follower and leader apply path);
* ``lean_append`` / ``lean_read``: the same through the existing C functions called straight
  from ctypes (``omnipaxos._ffi``) with reused out-parameters and no per-entry objects: what
  the binding's hot path could cost without new C API;
* ``slice``: the cost per entry of cutting one contiguous bytes object into entries, i.e.
  the floor of a bulk read that hands Python one buffer plus offsets.

Prints one JSON line (microseconds per entry).
"""

from __future__ import annotations

import ctypes
import json
import time

from omnipaxos import OmniPaxos, _ffi

N = 100_000
ROUND = 1000


def main() -> None:
    nodes = [
        OmniPaxos.from_config({"pid": p, "nodes": [1, 2, 3], "buffer_size": 1_000_000})
        for p in (1, 2, 3)
    ]

    def exchange() -> None:
        busy = True
        while busy:
            busy = False
            for n in nodes:
                for to, data in n.outgoing():
                    nodes[to - 1].handle_incoming(data)
                    busy = True

    for _ in range(200):
        for n in nodes:
            n.tick()
        exchange()
        if all(n.leader for n in nodes) and len({n.leader for n in nodes}) == 1:
            break
    leader = nodes[nodes[0].leader - 1]
    base = [n.decided_idx for n in nodes]

    t_append = t_read = 0.0
    read_entries = 0
    nxt = list(base)
    for _ in range(N // ROUND):
        t0 = time.perf_counter()
        for _ in range(ROUND):
            leader.append(b"\x01")
        t_append += time.perf_counter() - t0
        exchange()
        t0 = time.perf_counter()
        for i, n in enumerate(nodes):
            got = n.read_decided(nxt[i])
            nxt[i] += len(got)
            read_entries += len(got)
        t_read += time.perf_counter() - t0

    # The same work through the C functions directly.
    lib = _ffi.lib()
    ptr = leader._ptr
    append = lib.omnipaxos_append
    t_lean_append = 0.0
    for _ in range(N // ROUND):
        t0 = time.perf_counter()
        for _ in range(ROUND):
            append(ptr, b"\x01", 1)
        t_lean_append += time.perf_counter() - t0
        exchange()
    handle = _ffi.EntriesPtr()
    data, size = ctypes.c_void_p(), ctypes.c_size_t()
    get, string_at = lib.omnipaxos_entries_get, ctypes.string_at
    rdata, rsize = ctypes.byref(data), ctypes.byref(size)
    t0 = time.perf_counter()
    lean_entries = 0
    for i, n in enumerate(nodes):
        lib.omnipaxos_read_decided_suffix(n._ptr, nxt[i], ctypes.byref(handle))
        count = lib.omnipaxos_entries_count(handle)
        out = []
        for k in range(count):
            get(handle, k, rdata, rsize, None)
            out.append(string_at(data.value, size.value))
        lib.omnipaxos_entries_free(handle)
        lean_entries += len(out)
    t_lean_read = time.perf_counter() - t0

    # append_many: one call per round of ROUND entries (bindings that have it).
    t_many = None
    if hasattr(leader, "append_many"):
        t_many = 0.0
        burst = [b"\x01"] * ROUND
        for _ in range(N // ROUND):
            t0 = time.perf_counter()
            leader.append_many(burst)
            t_many += time.perf_counter() - t0
            exchange()

    blob = b"\x01" * N
    t0 = time.perf_counter()
    parts = [blob[i : i + 1] for i in range(N)]
    t_slice = time.perf_counter() - t0
    assert len(parts) == N
    print(
        json.dumps(
            {
                "append_us": t_append / N * 1e6,
                "append_many_us": None if t_many is None else t_many / N * 1e6,
                "read_us_per_entry": t_read / max(1, read_entries) * 1e6,
                "lean_append_us": t_lean_append / N * 1e6,
                "lean_read_us_per_entry": t_lean_read / max(1, lean_entries) * 1e6,
                "slice_us_per_entry": t_slice / N * 1e6,
                "entries": N,
            }
        )
    )


if __name__ == "__main__":
    main()
