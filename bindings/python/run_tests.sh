#!/usr/bin/env bash
# Tests of the Python binding and the Python examples, against the real library.
# Creates a virtualenv (.venv at the repository root, gitignored; override with VENV=...),
# installs pytest and the binding into it, builds the library in release mode and runs
# pytest with OMNIPAXOS_LIB pointing at target/release/libomnipaxos.so.
# Usage: bash bindings/python/run_tests.sh [pytest arguments...]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
venv=${VENV:-$root/.venv}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet pytest
# setuptools builds in the source tree: start from a clean one so no stale file is installed.
rm -rf "$root/bindings/python/build" "$root/bindings/python/omnipaxos.egg-info"
"$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "$root/bindings/python"
rm -rf "$root/bindings/python/build" "$root/bindings/python/omnipaxos.egg-info"

cargo build --release --quiet
lib="$root/target/release/libomnipaxos.so"
[ -f "$lib" ] || { echo "run_tests.sh: $lib was not built" >&2; exit 1; }

# Run from outside the source tree so the installed package (not bindings/python) is tested.
cd "$root/bindings/python/tests"
OMNIPAXOS_LIB="$lib" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" .
