"""The benchmark driver behind benches/run.sh (run.sh builds everything, then runs this).

Runs every measurement several times, interleaving libomnipaxos with its peer so that both
see the same machine noise, and reports medians and ratios of medians measured in this
run. Writes results/latest.jsonl (every single run), results/summary.md (the tables, also
printed) and results/scaling.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20
#: Increments kept outstanding in the Python throughput runs: pysyncobj's batched mode only
#: reaches its plateau with tens of thousands in flight (5,000: ~25k/s, 50,000: ~60k/s here).
PY_WINDOW = 50_000

RAW: List[dict] = []  # every run, written to latest.jsonl


def log(msg: str) -> None:
    print(msg, flush=True)


def run_json(cmd: Sequence[str], timeout: float = 300, env: Optional[dict] = None) -> dict:
    """Runs a benchmark program; its last stdout line is JSON. Errors become {"error": ...}."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in p.stdout.splitlines() if line.strip()]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["exit code %d" % p.returncode])[-1]
        return {"error": err[:300]}
    return json.loads(lines[-1])


def record(kind: str, r: dict, **tags: object) -> dict:
    r = dict(r, kind=kind, **tags)
    RAW.append(r)
    return r


def med(rs: List[dict], key: str) -> Optional[float]:
    xs = [r[key] for r in rs if "error" not in r and key in r]
    return statistics.median(xs) if xs else None


def first_error(rs: List[dict]) -> str:
    for r in rs:
        if "error" in r:
            return r["error"]
    return "no runs"


def fmt(x: Optional[float], digits: int = 0, unit: str = "") -> str:
    if x is None:
        return "n/a"
    if digits == 0:
        return f"{x:,.0f}{unit}"
    return f"{x:,.{digits}f}{unit}"


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def verdict(ok: Optional[bool]) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def table(headers: List[str], rows: List[List[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def size_label(size: int) -> str:
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.runs = a.runs
        self.ours = os.path.join(a.bin_dir, "throughput")
        self.fsync = os.path.join(a.bin_dir, "fsync")
        self.durable = os.path.join(a.bin_dir, "durable")
        self.peer = a.peer
        self.md: List[str] = []

    # -- in-process: one (nodes, size, entries, round) case, ours and the peer ---------

    def inproc(self, cases: List[Tuple[int, int, int, int]], runs: int, tag: str) -> Dict:
        """Runs every case `runs` times for both implementations, alternating which goes first."""
        res: Dict[Tuple[int, int, int, int], Dict[str, List[dict]]] = {
            c: {"ours": [], "peer": []} for c in cases
        }
        for i in range(runs):
            for c in cases:
                n, size, entries, rnd = c
                order = ["ours", "peer"] if i % 2 == 0 else ["peer", "ours"]
                for who in order:
                    if who == "ours":
                        cmd = [self.ours, "--nodes", str(n), "--size", str(size),
                               "--entries", str(entries), "--round", str(rnd)]
                    else:
                        cmd = [self.peer, str(n), str(size), str(entries), str(rnd)]
                    r = record("inproc", run_json(cmd), who=who, tag=tag, run=i)
                    res[c][who].append(r)
                o, p = res[c]["ours"][-1], res[c]["peer"][-1]
                log(f"  {tag} run {i + 1}/{runs} n={n} {size_label(size):>7} x {entries:>9,}: "
                    f"ours {fmt(o.get('eps'))}/s {fmt(o.get('maxrss_kib', 0) / 1024, 1)} MiB | "
                    f"peer {fmt(p.get('eps'))}/s {fmt(p.get('maxrss_kib', 0) / 1024, 1)} MiB"
                    + (f" [ours: {o['error']}]" if "error" in o else "")
                    + (f" [peer: {p['error']}]" if "error" in p else ""))
        return res

    def inproc_rows(self, res: Dict, check_targets: bool) -> Tuple[List[List[str]], List[dict]]:
        rows, summary = [], []
        for (n, size, entries, rnd), rr in res.items():
            o_eps, p_eps = med(rr["ours"], "eps"), med(rr["peer"], "eps")
            o_rss, p_rss = med(rr["ours"], "maxrss_kib"), med(rr["peer"], "maxrss_kib")
            tr, mr = ratio(o_eps, p_eps), ratio(o_rss, p_rss)
            cr = ratio(med(rr["ours"], "cpu_eps"), med(rr["peer"], "cpu_eps"))
            row = [
                f"{n} nodes x {size_label(size)} x {entries:,}",
                fmt(o_eps) if o_eps else "failed: " + first_error(rr["ours"]),
                fmt(p_eps) if p_eps else "failed: " + first_error(rr["peer"]),
                fmt(tr, 2, "x"), fmt(cr, 2, "x"),
                fmt(o_rss and o_rss / 1024, 1), fmt(p_rss and p_rss / 1024, 1), fmt(mr, 2),
            ]
            if check_targets:
                row += [verdict(None if tr is None else tr >= 2),
                        verdict(None if mr is None else mr <= 0.5)]
            rows.append(row)
            summary.append(dict(nodes=n, size=size, entries=entries, ours_eps=o_eps, cpu_ratio=cr,
                                peer_eps=p_eps, ours_rss=o_rss, peer_rss=p_rss,
                                ours=rr["ours"], peer=rr["peer"]))
        return rows, summary

    # -- sections ---------------------------------------------------------------------

    def section_inproc(self) -> None:
        log("== In-process throughput through the C ABI vs omnipaxos 0.2.4 ==")
        q = self.a.quick
        self.main_cases = [
            (3, 16, 200_000 if q else 1_000_000, 1000),
            (3, 1024, 50_000 if q else 200_000, 1000),
            (5, 16, 200_000 if q else 1_000_000, 1000),
        ]
        res = self.inproc(self.main_cases, self.runs, "main")
        rows, self.main_summary = self.inproc_rows(res, True)
        self.md += [
            "## In-process throughput through the C ABI (vs the omnipaxos crate 0.2.4)", "",
            f"Median of {self.runs} runs each; rounds of 1,000 appends at the leader, messages "
            "passed as bytes until quiet, every node reads its newly decided entries. Each run "
            "is its own process (peak RSS = getrusage ru_maxrss of that process).", "",
            table(["case", "libomnipaxos entries/s", "omnipaxos 0.2.4 entries/s",
                   "throughput ratio", "ratio by CPU time", "ours peak RSS MiB",
                   "peer peak RSS MiB", "RSS ratio", "target >= 2x", "target RSS <= 0.5"],
                  rows), "",
            "Entries/s is wall-clock time of the timed part; \"ratio by CPU time\" divides the "
            "two programs' entries per CPU second (user + system) instead, which other load on "
            "this shared machine disturbs less.", "",
        ]
        # The same cases through the bulk C calls (one append_batch per round, contiguous reads).
        bulk: Dict[Tuple[int, int, int, int], List[dict]] = {c: [] for c in self.main_cases}
        for i in range(self.runs):
            for c in self.main_cases:
                n, size, entries, rnd = c
                cmd = [self.ours, "--nodes", str(n), "--size", str(size), "--entries",
                       str(entries), "--round", str(rnd), "--bulk", "1"]
                bulk[c].append(record("inproc-bulk", run_json(cmd), who="ours-bulk", run=i))
        rows = []
        for s, c in zip(self.main_summary, self.main_cases):
            b_eps = med(bulk[c], "eps")
            rows.append([
                f"{c[0]} nodes x {size_label(c[1])} x {c[2]:,}",
                fmt(b_eps) if b_eps else "failed: " + first_error(bulk[c]),
                fmt(ratio(b_eps, s["ours_eps"]), 2, "x"), fmt(ratio(b_eps, s["peer_eps"]), 2, "x"),
                fmt(ratio(med(bulk[c], "cpu_eps"), med(s["peer"], "cpu_eps")), 2, "x"),
            ])
        log("  bulk calls: " + "; ".join(f"{r[0]}: {r[1]}/s" for r in rows))
        self.md += [
            "### The same cases through the bulk C calls", "",
            "`omnipaxos_append_batch` for each round of 1,000 and `omnipaxos_entries_contiguous` "
            f"to read (median of {self.runs}); the peer has no bulk calls, its figures are the "
            "ones above.", "",
            table(["case", "libomnipaxos entries/s (bulk)", "vs one call per entry",
                   "vs omnipaxos 0.2.4", "vs omnipaxos 0.2.4 by CPU time"], rows), "",
        ]
        # Per-round cost against log length, from the largest 3-node 16 B case.
        s = self.main_summary[0]
        rows = []
        for who, key in (("libomnipaxos", "ours"), ("omnipaxos 0.2.4", "peer")):
            f, l = med(s[key], "first10_eps"), med(s[key], "last10_eps")
            rows.append([who, fmt(f), fmt(l), fmt(ratio(l, f), 2)])
        self.md += [
            "### Per-round cost against log length", "",
            f"Throughput over the first and the last 10% of the rounds of the "
            f"3 nodes x 16 B x {s['entries']:,} run (median of {self.runs}); a ratio near 1 means the "
            "cost of a round does not grow with the log.", "",
            table(["implementation", "first 10% entries/s", "last 10% entries/s",
                   "last / first"], rows), "",
        ]

    def section_python(self) -> None:
        log("== Python across processes: libomnipaxos binding vs pysyncobj 0.3.17 ==")
        binding = os.path.join(self.a.repo, "bindings", "python", "omnipaxos")
        if not os.path.isdir(binding):
            log("  skipped: bindings/python is not in this checkout yet")
            self.md += ["## Python across processes", "",
                        "Not run: bindings/python is not in this checkout.", ""]
            return
        out = os.path.join(self.a.out_dir, "python-runs.jsonl")
        if os.path.exists(out):
            os.remove(out)
        runs = 1 if self.a.quick else self.runs
        secs = "1.5" if self.a.quick else "3"
        env = dict(os.environ, OMNIPAXOS_LIB=os.path.join(self.a.lib_dir, "libomnipaxos.so"))
        cmd = [sys.executable, os.path.join(HERE, "python", "bench_python.py"),
               "--repo", self.a.repo, "--runs", str(runs), "--secs", secs,
               "--lat-ops", "300", "--lat-secs", "1.5", "--window", str(PY_WINDOW), "--out", out]
        rc = subprocess.run(cmd, env=env, timeout=900).returncode
        rs: List[dict] = []
        if os.path.exists(out):
            with open(out) as f:
                rs = [json.loads(line) for line in f if line.strip()]
            os.remove(out)
        for r in rs:
            record("python", r)
        by = {s: [r for r in rs if r.get("system") == s]
              for s in ("libomnipaxos", "pysyncobj-batch", "pysyncobj-nobatch")}
        o_tp, b_tp, n_tp = (med(by[s], "ops_per_s") for s in by)
        o_lat, b_lat, n_lat = (med(by[s], "lat_p50_us") for s in by)
        best_tp = max([x for x in (b_tp, n_tp) if x is not None], default=None)
        best_lat = min([x for x in (b_lat, n_lat) if x is not None], default=None)
        tr = ratio(o_tp, best_tp)
        rows = [
            [f"committed increments/s ({PY_WINDOW:,} outstanding)", fmt(o_tp), fmt(b_tp), fmt(n_tp),
             fmt(tr, 2, "x"), ">= 10x", verdict(None if tr is None else tr >= 10)],
            ["median latency of one increment, us", fmt(o_lat), fmt(b_lat), fmt(n_lat),
             fmt(ratio(o_lat, best_lat), 3, "x"), "lower",
             verdict(None if o_lat is None or best_lat is None else o_lat < best_lat)],
        ]
        micro = []
        for i in range(runs):
            micro.append(record("binding-micro", run_json(
                [sys.executable, os.path.join(HERE, "python", "micro_binding.py")], env=dict(
                    env, PYTHONPATH=os.path.join(self.a.repo, "bindings", "python"))), run=i))
        mrow = [fmt(med(micro, k), 2) for k in
                ("append_us", "append_many_us", "lean_append_us", "read_us_per_entry",
                 "lean_read_us_per_entry", "slice_us_per_entry")]
        self.md += [
            "## Python across processes (3 processes on 127.0.0.1, replicated counter)", "",
            f"Median of {runs} runs each{'' if rc == 0 else ' (some runs failed)'}. "
            "libomnipaxos: the ctypes binding with a small TCP mesh (benches/python/transport.py); "
            "pysyncobj 0.3.17: `SyncObj` with a `@replicated` increment, its own transport. "
            "The leader's process runs the load (each refill of the window is one `append_many` "
            "call); an increment counts once it is applied there. "
            "pysyncobj runs in both of its modes (batched = its default, and "
            "appendEntriesUseBatch=False), and the ratio is taken against its better figure.", "",
            table(["measurement", "libomnipaxos", "pysyncobj batched", "pysyncobj unbatched",
                   "ratio vs pysyncobj's best", "target", "verdict"], rows), "",
            "Where a libomnipaxos increment's time goes in Python (benches/python/micro_binding.py, "
            f"one process, three nodes, median of {runs}; microseconds per entry): the binding's "
            "`append`, `append_many` (1,000 entries per call) and `read_decided`; `append` and a "
            "per-entry `omnipaxos_entries_get` loop called straight from ctypes with reused "
            "out-parameters; slicing one contiguous buffer (the floor of a bulk read).",
            "",
            table(["append (binding)", "append_many (binding)", "append (bare ctypes)",
                   "read_decided per entry (binding)", "entries_get loop per entry (bare ctypes)",
                   "slice of one buffer per entry"], [mrow]), "",
        ]

    def section_durable(self) -> None:
        log("== Durable: persistent storage, sync = always ==")
        work = os.path.join(self.a.bin_dir, "durable-work")
        q = self.a.quick
        entries, lat_ops, secs = (200_000, 300, "3") if q else (1_000_000, 1000, "6")
        fs, dtp, mtp, ntp, lat, slat, stp, mlat = [], [], [], [], [], [], [], []

        def fresh() -> None:
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work)

        for i in range(self.runs):
            fresh()
            fs.append(record("fsync", run_json([self.fsync, work, "300" if q else "1000"]), run=i))
            # Threads (a node per thread): durable and in-memory, same program, order alternating.
            tp_args = ["--nodes", "3", "--size", "16", "--entries", str(entries),
                       "--round", "1000", "--window", "20000", "--max-secs", "60"]
            pair = [(dtp, ["--storage", "persistent", "--dir", work, "--sync", "always"]),
                    (mtp, ["--storage", "memory"]),
                    (ntp, ["--storage", "persistent", "--dir", work, "--sync", "never"])]
            for rs, extra in (pair if i % 2 == 0 else pair[::-1]):
                fresh()
                rs.append(record("durable-threads", run_json([self.durable, *tp_args, *extra],
                                                             timeout=600), run=i))
            fresh()
            lat.append(record("durable-latency", run_json(
                [self.durable, "--nodes", "3", "--size", "16", "--storage", "persistent",
                 "--dir", work, "--sync", "always", "--latency", str(lat_ops),
                 "--max-secs", secs], timeout=600), run=i))
            # One thread, nodes visited in turn (every fsync waits for the previous one).
            fresh()
            slat.append(record("durable-latency-1thread", run_json(
                [self.ours, "--nodes", "3", "--size", "16", "--storage", "persistent",
                 "--dir", work, "--sync", "always", "--latency", str(lat_ops // 3),
                 "--max-secs", secs], timeout=600), run=i))
            fresh()
            stp.append(record("durable-1thread", run_json(
                [self.ours, "--nodes", "3", "--size", "16", "--storage", "persistent",
                 "--dir", work, "--sync", "always", "--entries", str(entries // 5),
                 "--max-secs", secs], timeout=600), run=i))
            mlat.append(record("memlat", run_json(
                [self.ours, "--nodes", "3", "--size", "16", "--latency", str(lat_ops * 10)]), run=i))
            log(f"  run {i + 1}/{self.runs}: fdatasync p50 {fmt(fs[-1].get('p50_us'), 1)} us; "
                f"threads: durable {fmt(dtp[-1].get('eps'))} vs in-memory "
                f"{fmt(mtp[-1].get('eps'))} entries/s, latency p50 "
                f"{fmt(lat[-1].get('p50_us'), 1)} us (paired fdatasync "
                f"{fmt(lat[-1].get('probe_p50_us'), 1)} us)"
                + "".join(f" [{n}: {r[-1]['error']}]" for n, r in
                          (("durable", dtp), ("memory", mtp), ("latency", lat))
                          if "error" in r[-1]))
        shutil.rmtree(work, ignore_errors=True)
        f50, frate = med(fs, "p50_us"), med(fs, "syncs_per_s")
        d_eps, m_eps, n_eps = med(dtp, "eps"), med(mtp, "eps"), med(ntp, "eps")
        tr = ratio(d_eps, m_eps)
        single_m_eps = self.main_summary[0]["ours_eps"]
        d_lat, p_lat = med(lat, "p50_us"), med(lat, "probe_p50_us")
        in_syncs = ratio(d_lat, p_lat)
        s_lat, s_probe = med(slat, "p50_us"), med(slat, "probe_p50_us")
        s_eps = med(stp, "eps")
        rows = [
            ["raw fdatasync (write 16 B + fdatasync)", f"{fmt(frate)} syncs/s",
             f"p50 {fmt(f50, 1)} us", "", ""],
            [f"durable throughput, 3 nodes x 16 B x {entries:,}, a thread per node",
             fmt(d_eps) + " entries/s" if d_eps else "failed: " + first_error(dtp),
             f"{fmt(tr, 3)} of in-memory in the same program ({fmt(m_eps)}/s); "
             f"{fmt(ratio(d_eps, single_m_eps), 3)} of the one-thread in-memory figure above "
             f"({fmt(single_m_eps)}/s)", ">= 0.5",
             verdict(None if tr is None else tr >= 0.5)],
            ["durable append-to-decided latency (one entry at a time), a thread per node",
             f"p50 {fmt(d_lat, 1)} us, p90 {fmt(med(lat, 'p90_us'), 1)} us"
             if d_lat else "failed: " + first_error(lat),
             f"{fmt(in_syncs, 2)} fdatasyncs (paired probe p50 {fmt(p_lat, 1)} us)",
             "<= 2", verdict(None if in_syncs is None else in_syncs <= 2)],
            ["(reference) the same storage with `sync = never` (no fsync: the CPU cost of "
             "the log), a thread per node",
             fmt(n_eps) + " entries/s" if n_eps else "failed: " + first_error(ntp),
             f"{fmt(ratio(n_eps, m_eps), 3)} of in-memory in the same program", "", ""],
            ["(reference) durable throughput, one thread visiting the nodes in turn",
             fmt(s_eps) + " entries/s" if s_eps else "failed: " + first_error(stp),
             f"{fmt(ratio(s_eps, single_m_eps), 3)} of the one-thread in-memory figure", "", ""],
            ["(reference) durable latency, one thread visiting the nodes in turn",
             f"p50 {fmt(s_lat, 1)} us" if s_lat else "failed: " + first_error(slat),
             f"{fmt(ratio(s_lat, s_probe), 2)} fdatasyncs (leader's and follower's in a row)",
             "", ""],
            ["(reference) in-memory append-to-decided latency, one thread",
             f"p50 {fmt(med(mlat, 'p50_us'), 1)} us", "", "", ""],
        ]
        self.md += [
            "## Durable (3 nodes in one process, `storage { type = persistent, sync = always }`)", "",
            f"Median of {self.runs} runs. `benches/c/durable.c` runs each node in its own thread, "
            "as three servers would (a node's fsync does not stop the others): a closed-loop "
            "client keeps 20,000 entries outstanding in rounds of 1,000 appends at the leader, "
            "every node takes its outgoing messages until there are none (so the leader's "
            "AcceptDecide leaves before its own fsync) and reads its decided entries; the "
            "in-memory figure it is compared with comes from the same program in the same run "
            "(order alternating). Latency: one append at a time, timed until the leader reports "
            "it decided; before each one the program times one raw write + fdatasync in the same "
            "directory, and the latency is given in those (paired) fdatasyncs. The reference "
            "rows use `throughput.c` (one thread, nodes visited in turn, so every fsync waits "
            "for the one before). The fdatasync probe runs in the same directory in the same "
            "run.", "",
            table(["measurement", "result", "relative", "target", "verdict"], rows), "",
        ]

    def section_scaling(self) -> None:
        log("== Scaling: nodes and entry sizes ==")
        q = self.a.quick
        total_bytes = (32 if q else 128) * MiB
        cases = [(7, 16, 200_000 if q else 1_000_000, 1000)]
        for size in (256, 4096, 65536):
            rnd = max(1, min(1000, (4 * MiB) // size))
            entries = min(1_000_000, total_bytes // size) // rnd * rnd
            cases.append((3, size, entries, rnd))
        res = self.inproc(cases, self.runs, "scaling")
        _, extra = self.inproc_rows(res, False)
        allrows = []
        summary = self.main_summary + extra
        summary.sort(key=lambda s: (s["nodes"], s["size"]))
        for s in summary:
            allrows.append([
                f"{s['nodes']} nodes x {size_label(s['size'])} x {s['entries']:,}",
                fmt(s["ours_eps"]), fmt(s["ours_eps"] and s["ours_eps"] * s["size"] / MiB, 1),
                fmt(s["peer_eps"]), fmt(ratio(s["ours_eps"], s["peer_eps"]), 2, "x"),
                fmt(s["cpu_ratio"], 2, "x"),
                fmt(s["ours_rss"] and s["ours_rss"] / 1024, 1),
                fmt(s["peer_rss"] and s["peer_rss"] / 1024, 1),
                fmt(ratio(s["ours_rss"], s["peer_rss"]), 2),
            ])
        self.md += [
            "## Scaling with cluster size and entry size", "",
            f"Median of {self.runs} runs each (the 3- and 5-node 16 B and the 1 KiB rows are the "
            f"runs above). Large entries: at most {total_bytes // MiB} MiB of payload per run "
            "and rounds of at most 4 MiB. Chart: results/scaling.png.", "",
            table(["case", "libomnipaxos entries/s", "libomnipaxos payload MiB/s",
                   "omnipaxos 0.2.4 entries/s", "ratio", "ratio by CPU time", "ours peak RSS MiB",
                   "peer peak RSS MiB", "RSS ratio"], allrows), "",
        ]
        self.plot(summary)

    def plot(self, summary: List[dict]) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as e:
            log(f"  no chart: {e}")
            return
        fig, ax = plt.subplots(2, 2, figsize=(11, 8))
        by_nodes = sorted((s for s in summary if s["size"] == 16), key=lambda s: s["nodes"])
        by_size = sorted((s for s in summary if s["nodes"] == 3), key=lambda s: s["size"])
        styles = (("ours", "libomnipaxos (C ABI)", "o-"), ("peer", "omnipaxos 0.2.4", "s--"))
        for key, label, st in styles:
            xs = [s["nodes"] for s in by_nodes]
            ax[0][0].plot(xs, [(s[key + "_eps"] or 0) / 1e6 for s in by_nodes], st, label=label)
            ax[0][1].plot(xs, [(s[key + "_rss"] or 0) / 1024 for s in by_nodes], st, label=label)
            xs = [s["size"] for s in by_size]
            ax[1][0].plot(xs, [(s[key + "_eps"] or 0) * s["size"] / MiB for s in by_size], st,
                          label=label)
            ax[1][1].plot(xs, [(s[key + "_rss"] or 0) / 1024 / max(1, s["entries"] * s["size"] / MiB)
                               for s in by_size], st, label=label)
        for a in (ax[0][0], ax[0][1]):
            a.set_xticks([s["nodes"] for s in by_nodes])
        ax[0][0].set(title="16 B entries: throughput", xlabel="nodes",
                     ylabel="million decided entries/s")
        ax[0][1].set(title="16 B entries: peak RSS", xlabel="nodes", ylabel="MiB")
        ax[1][0].set(title="3 nodes: payload throughput", xlabel="entry size (bytes)",
                     ylabel="MiB/s of entries", xscale="log")
        ax[1][1].set(title="3 nodes: peak RSS per MiB of payload", xlabel="entry size (bytes)",
                     ylabel="MiB RSS / MiB payload", xscale="log")
        for a in ax.flat:
            a.grid(True, alpha=0.3)
            a.legend()
            a.set_ylim(bottom=0)
        fig.suptitle(f"libomnipaxos vs omnipaxos 0.2.4, in-process, median of {self.runs} runs")
        fig.tight_layout()
        path = os.path.join(self.a.out_dir, "scaling.png")
        fig.savefig(path, dpi=90)
        log(f"  chart: {path}")


def machine() -> List[str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return [f"nproc {os.cpu_count()}", f"CPU {cpu}", f"memory {mem}",
            f"kernel {platform.release()}", f"Python {platform.python_version()}"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--lib-dir", required=True)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--sections", default="inproc,python,durable,scaling")
    a = ap.parse_args()
    if a.runs is None:
        a.runs = 3 if a.quick else 5
    os.makedirs(a.out_dir, exist_ok=True)
    t0 = time.monotonic()
    b = Bench(a)
    sections = a.sections.split(",")
    b.section_inproc()  # the others refer to its figures
    if "python" in sections:
        b.section_python()
    if "durable" in sections:
        b.section_durable()
    if "scaling" in sections:
        b.section_scaling()
    rev = subprocess.run(["git", "-C", a.repo, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "unknown"
    head = [
        "# Benchmark results",
        "",
        f"`bash benches/run.sh{' --quick' if a.quick else ''}` at {rev}, "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, "
        f"{time.monotonic() - t0:.0f} s. Machine: " + "; ".join(machine()) + ".",
        "",
    ]
    text = "\n".join(head + b.md)
    with open(os.path.join(a.out_dir, "summary.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(a.out_dir, "latest.jsonl"), "w") as f:
        for r in RAW:
            f.write(json.dumps(r) + "\n")
    print()
    print(text)


if __name__ == "__main__":
    main()
