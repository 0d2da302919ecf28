#!/usr/bin/env bash
# Tests the C API from C and C++: builds the library (release), compiles tests/c/test_api.c
# with -std=c11 -Wall -Wextra -Wpedantic -Werror against the shared and the static library,
# runs both under valgrind (memcheck: errors and definite/indirect leaks fail the run) and
# once more with AddressSanitizer/UBSan, then builds the C and C++ examples (cluster,
# cluster_cpp, reconfigure) with -Werror, runs them under valgrind, and builds one through
# pkg-config. Exits non-zero on any failure.
#
# Usage: bash tests/c/run.sh      (needs cargo, cc, c++; installs valgrind and pkg-config
#                                  with apt-get when they are missing)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
lib="$root/target/release"
build="$root/tests/c/build"
mkdir -p "$build"

step() { printf '\n---- %s ----\n' "$*"; }

apt_install() {
  local runner=()
  if [ "$(id -u)" != 0 ]; then runner=(sudo); fi
  "${runner[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${runner[@]}" apt-get install -y -qq "$@"
}

step "cargo build --release"
cargo build --release --quiet
test -f "$lib/libomnipaxos.so" && test -f "$lib/libomnipaxos.a"

if ! command -v valgrind >/dev/null; then
  step "installing valgrind"
  apt_install valgrind
fi
if ! command -v pkg-config >/dev/null; then
  step "installing pkg-config"
  apt_install pkg-config
fi
CC=${CC:-cc}
CXX=${CXX:-c++}

CFLAGS=(-std=c11 -Wall -Wextra -Wpedantic -Werror -O1 -g -I"$root/include")
SHARED=(-L"$lib" -lomnipaxos -Wl,-rpath,"$lib" -lpthread)
STATIC=("$lib/libomnipaxos.a" -lpthread -ldl -lm)

step "compiling tests/c/test_api.c (shared, static, sanitizers)"
"$CC" "${CFLAGS[@]}" tests/c/test_api.c "${SHARED[@]}" -o "$build/test_api_shared"
"$CC" "${CFLAGS[@]}" tests/c/test_api.c "${STATIC[@]}" -o "$build/test_api_static"
"$CC" "${CFLAGS[@]}" -fsanitize=address,undefined -fno-omit-frame-pointer \
  tests/c/test_api.c "${SHARED[@]}" -o "$build/test_api_asan"

VALGRIND=(valgrind -q --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect
  --errors-for-leak-kinds=definite,indirect)

step "test_api (shared library) under valgrind"
"${VALGRIND[@]}" "$build/test_api_shared"
step "test_api (static library) under valgrind"
"${VALGRIND[@]}" "$build/test_api_static"
step "test_api (shared library) with ASan/UBSan"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$build/test_api_asan"

step "examples: make -C examples all static (C with -std=c11 -Wpedantic -Werror, C++17 -Werror)"
make -s -C examples all static LIBDIR="$lib" CC="$CC" CXX="$CXX"
ex="$root/target/examples"
for prog in cluster cluster_cpp reconfigure cluster_static cluster_cpp_static reconfigure_static; do
  step "examples: $prog under valgrind"
  "${VALGRIND[@]}" "$ex/$prog"
done

step "examples: build through pkg-config (PKG_CONFIG_PATH=target/release)"
# shellcheck disable=SC2046
"$CC" -Wall -Wextra -Werror examples/c/cluster.c \
  $(PKG_CONFIG_PATH="$lib" pkg-config --cflags --libs omnipaxos) -o "$build/cluster_pkgconfig"
"$build/cluster_pkgconfig" >/dev/null

step "C API tests passed"
