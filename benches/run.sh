#!/usr/bin/env bash
# Benchmarks libomnipaxos against the peers users would pick instead:
#   - in process, through the C ABI, against the omnipaxos crate 0.2.4 (benches/peer);
#   - across three Python processes on 127.0.0.1, against pysyncobj 0.3.17;
#   - durable (persistent storage, sync = always) next to this disk's raw fdatasync rate;
#   - scaling with the number of nodes and the entry size (chart: benches/results/scaling.png).
#
# Usage: bash benches/run.sh [--quick] [--sections inproc,python,durable,scaling]
#
# Builds what it needs (cargo build --release, the peer, the C programs) and installs its
# Python packages into its own venv (benches/.venv). Not part of the test suite. Prints the
# tables and writes benches/results/{summary.md,latest.jsonl,scaling.png} (benches/results/quick/
# for --quick).
# OMNIPAXOS_REPO=/path benchmarks another checkout's library, header and Python binding.
set -euo pipefail

BENCHES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="${OMNIPAXOS_REPO:-$(dirname "$BENCHES")}"
REPO="$(cd "$REPO" && pwd)"
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ARGS+=(--quick) ;;
        --sections) ARGS+=(--sections "$2"); shift ;;
        --runs) ARGS+=(--runs "$2"); shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

LIB_DIR="$REPO/target/release"
BIN_DIR="$REPO/target/bench"
PEER_DIR="$BENCHES/peer"
VENV="$BENCHES/.venv"
mkdir -p "$BIN_DIR" "$BENCHES/results"

echo "== Building (release) =="
(cd "$REPO" && cargo build --release --lib --quiet)
cargo build --release --quiet --manifest-path "$PEER_DIR/Cargo.toml"
[ -f "$REPO/include/omnipaxos.h" ] || { echo "run.sh: $REPO/include/omnipaxos.h missing (C API not in this checkout)" >&2; exit 1; }
CC="${CC:-cc}"
"$CC" -std=c11 -O2 -Wall -Wextra -Wpedantic -Werror -I"$REPO/include" \
    "$BENCHES/c/throughput.c" -L"$LIB_DIR" -lomnipaxos -Wl,-rpath,"$LIB_DIR" -o "$BIN_DIR/throughput"
"$CC" -std=c11 -O2 -Wall -Wextra -Wpedantic -Werror -pthread -I"$REPO/include" \
    "$BENCHES/c/durable.c" -L"$LIB_DIR" -lomnipaxos -Wl,-rpath,"$LIB_DIR" -o "$BIN_DIR/durable"
"$CC" -std=c11 -O2 -Wall -Wextra -Wpedantic -Werror "$BENCHES/c/fsync.c" -o "$BIN_DIR/fsync"

echo "== Python environment ($VENV) =="
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
if ! "$VENV/bin/python" -c 'import pysyncobj, matplotlib, importlib.metadata as m; assert m.version("pysyncobj") == "0.3.17"' 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check pysyncobj==0.3.17 matplotlib
fi

# A --quick run writes to results/quick/ so that it never replaces the full run's results.
OUT="$BENCHES/results"
case " ${ARGS[*]+"${ARGS[*]}"} " in *" --quick "*) OUT="$BENCHES/results/quick" ;; esac
exec "$VENV/bin/python" "$BENCHES/bench.py" --repo "$REPO" --lib-dir "$LIB_DIR" \
    --bin-dir "$BIN_DIR" --peer "$PEER_DIR/target/release/omnipaxos-peer-bench" \
    --out-dir "$OUT" "${ARGS[@]+"${ARGS[@]}"}"
