#!/usr/bin/env bash
# Runs every test of the project: Rust (unit, simulated cluster, storage), the C API (C and
# C++ programs under valgrind), and the Python binding (pytest). Installs what it needs.
# Usage: bash tests/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

started=$(date +%s)
step() { printf '\n==== [%4ss] %s ====\n' "$(( $(date +%s) - started ))" "$*"; }
# A working directory of this run's own (logs), removed on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/omnipaxos-tests.XXXXXX")
trap 'rm -rf "$work"' EXIT

step "rustfmt"
cargo fmt --all -- --check

step "clippy (the first build: compiles every dependency, a few minutes on 2 cores)"
cargo clippy --all-targets -- -D warnings 2>&1 | grep -v '^ *Checking ' || true
cargo clippy --all-targets --quiet -- -D warnings

step "building the Rust tests (release)"
cargo test --release --no-run 2>&1 | grep -E '^ *(Compiling libomnipaxos|Finished|error)' || true

step "Rust tests (release build: the simulated-cluster tests run thousands of ticks)"
cargo test --release --quiet 2>&1 | tee "$work/rust-tests.log"
grep -q "test result: ok" "$work/rust-tests.log"

for part in tests/c/run.sh bindings/python/run_tests.sh; do
  if [ -f "$part" ]; then
    step "$part"
    bash "$part"
  fi
done

step "all test suites passed"
