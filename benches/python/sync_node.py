"""One pysyncobj node of the cross-process counter benchmark: the peer of op_node.py.

Three of these run as separate processes on 127.0.0.1 (pysyncobj's own TCP transport). The
counter is a ``SyncObj`` with a ``@replicated`` increment. Once a leader is elected, the
process that leads runs the same workload as op_node.py and prints one JSON line:

* latency: ``--lat-ops`` times ``incr(1, sync=True)`` (returns once applied locally);
* throughput: for ``--secs`` seconds keep ``--window`` increments outstanding
  (``incr(1, callback=...)``; the callback fires when the increment is applied locally).

Every process exits by itself after ``--deadline`` seconds.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from pysyncobj import SyncObj, SyncObjConf, replicated


class Counter(SyncObj):
    def __init__(self, self_addr: str, partners: list, conf: SyncObjConf) -> None:
        super().__init__(self_addr, partners, conf)
        self.__value = 0

    @replicated
    def incr(self, delta: int) -> int:
        self.__value += delta
        return self.__value

    def value(self) -> int:
        return self.__value


def run_workload(c: Counter, lat_ops: int, lat_secs: float, secs: float, window: int) -> dict:
    c.incr(1, sync=True, timeout=10)
    lats = []
    t_end = time.monotonic() + lat_secs
    for _ in range(lat_ops):
        t0 = time.perf_counter()
        c.incr(1, sync=True, timeout=10)
        lats.append(time.perf_counter() - t0)
        if time.monotonic() > t_end:
            break
    lats.sort()

    slots = threading.Semaphore(window)
    done = [0]
    failed = [0]

    def cb(result, err):  # runs on pysyncobj's tick thread
        if err:
            failed[0] += 1
        else:
            done[0] += 1
        slots.release()

    warm_until = time.monotonic() + min(0.5, secs / 4)
    start = end = None
    d0 = 0
    while True:
        now = time.monotonic()
        if start is None and now >= warm_until:
            start, d0 = now, done[0]
            end = start + secs
        if end is not None and now >= end:
            break
        if slots.acquire(timeout=0.05):
            c.incr(1, callback=cb)
    elapsed = time.monotonic() - start
    ops = done[0] - d0
    return {
        "system": "pysyncobj",
        "ops_per_s": ops / elapsed,
        "ops": ops,
        "failed": failed[0],
        "secs": elapsed,
        "window": window,
        "lat_ops": len(lats),
        "lat_p50_us": lats[len(lats) // 2] * 1e6,
        "lat_p90_us": lats[len(lats) * 9 // 10] * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--ports", required=True, help="comma-separated ports of pids 1..n")
    ap.add_argument("--lat-ops", type=int, default=500)
    ap.add_argument("--lat-secs", type=float, default=2.0)
    ap.add_argument("--secs", type=float, default=3.0)
    ap.add_argument("--window", type=int, default=5000)
    ap.add_argument("--deadline", type=float, default=60.0)
    ap.add_argument("--batch", type=int, default=1, help="appendEntriesUseBatch (0/1)")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    addrs = [f"127.0.0.1:{p}" for p in a.ports.split(",")]
    me = addrs[a.pid - 1]
    conf = SyncObjConf(
        appendEntriesUseBatch=bool(a.batch),
        commandsQueueSize=max(100000, 2 * a.window),
        dynamicMembershipChange=False,
    )
    c = Counter(me, [x for x in addrs if x != me], conf)
    deadline = time.monotonic() + a.deadline
    while time.monotonic() < deadline:
        if c._isReady() and c._getLeader() is not None:
            break
        time.sleep(0.01)
    else:
        raise SystemExit("no leader")
    if c._isLeader():
        print(json.dumps(run_workload(c, a.lat_ops, a.lat_secs, a.secs, a.window)), flush=True)
    while time.monotonic() < deadline:
        time.sleep(0.1)


if __name__ == "__main__":
    main()
