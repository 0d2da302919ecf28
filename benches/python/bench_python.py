"""Runs the cross-process counter benchmark: libomnipaxos (op_node.py) against pysyncobj
(sync_node.py), three OS processes each on 127.0.0.1, ``--runs`` times each, interleaved.

Each run starts three fresh processes on free loopback ports, waits for the one JSON line
the measuring (leading) node prints, then stops all three. Every child is killed when this
script exits, however it exits; every child also stops by itself after its deadline.
Appends one JSON line per run to ``--out``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
CHILDREN: List[subprocess.Popen] = []


def kill_children() -> None:
    for p in CHILDREN:
        if p.poll() is None:
            p.kill()
    for p in CHILDREN:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    CHILDREN.clear()


atexit.register(kill_children)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def free_ports(n: int) -> List[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


#: The systems compared. pysyncobj runs in two configurations because its batching trades
#: latency for throughput: with appendEntriesUseBatch (its default) commands wait for the
#: next append-entries period (0.1 s); without it each command is sent at once. The report
#: compares libomnipaxos with pysyncobj's better figure for each measurement.
SYSTEMS = {
    "libomnipaxos": ("op_node.py", []),
    "pysyncobj-batch": ("sync_node.py", ["--batch=1"]),
    "pysyncobj-nobatch": ("sync_node.py", ["--batch=0"]),
}


def one_run(system: str, args: argparse.Namespace) -> Optional[dict]:
    ports = ",".join(str(p) for p in free_ports(3))
    script, extra = SYSTEMS[system]
    common = [
        f"--ports={ports}",
        f"--lat-ops={args.lat_ops}",
        f"--lat-secs={args.lat_secs}",
        f"--secs={args.secs}",
        f"--window={args.window}",
        f"--deadline={args.deadline}",
        *extra,
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [HERE, os.path.join(args.repo, "bindings", "python"), env.get("PYTHONPATH", "")]
    )
    procs = []
    for pid in (1, 2, 3):
        cmd = [sys.executable, os.path.join(HERE, script), f"--pid={pid}", *common]
        if system == "libomnipaxos" and pid == 1:
            cmd.append("--leader")
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        CHILDREN.append(p)
        procs.append(p)
    sel = selectors.DefaultSelector()
    for p in procs:
        sel.register(p.stdout, selectors.EVENT_READ, p)
    result = None
    stop_at = time.monotonic() + args.deadline
    try:
        while result is None and time.monotonic() < stop_at:
            for key, _ in sel.select(0.2):
                line = key.fileobj.readline()
                if line.strip():
                    result = json.loads(line)
                    break
            if result is None and all(p.poll() is not None for p in procs):
                break
    finally:
        sel.close()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        errs = [p.stderr.read().decode(errors="replace").strip() for p in procs]
        for p in procs:
            CHILDREN.remove(p)
            p.stdout.close()
            p.stderr.close()
    if result is None:
        print(f"{system}: run produced no result; stderr: {errs}", file=sys.stderr)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lat-ops", type=int, default=500)
    ap.add_argument("--secs", type=float, default=3.0)
    ap.add_argument("--window", type=int, default=5000)
    ap.add_argument("--deadline", type=float, default=60.0)
    ap.add_argument("--lat-secs", type=float, default=2.0)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(args.out, "a") as out:
        for i in range(args.runs):
            for system in args.systems.split(","):
                r = one_run(system, args)
                if r is None:
                    sys.exit(1)
                r["run"] = i
                r["system"] = system
                out.write(json.dumps(r) + "\n")
                out.flush()
                print(
                    f"  python {system:17s} run {i + 1}/{args.runs}: "
                    f"{r['ops_per_s']:10.0f} ops/s, p50 latency {r['lat_p50_us']:8.0f} us",
                    flush=True,
                )


if __name__ == "__main__":
    main()
