#!/usr/bin/env bash
# Builds meshid with AddressSanitizer + UndefinedBehaviorSanitizer and runs every test
# (unit, integration, interop, fuzz-corpus replay) with ctest. Starts the services tests need
# (PostgreSQL on loopback) and stops them afterwards. The last lines are ctest's summary.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/install-deps.sh"

build="$root/build-asan"
# -O1 -g1 is what sanitizers want (readable stacks, fast enough) and compiles ~2.5x faster than
# -O2 -g on the heavy gRPC translation units; assertions stay on.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" -DMESHID_SANITIZE=ON -DMESHID_BENCH=OFF >/dev/null
ninja -C "$build"

# gRPC and OpenSSL keep process-lifetime caches that LeakSanitizer would report at exit.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

cleanup() { :; }
trap 'cleanup' EXIT
# PostgreSQL for the store suite and the fault tests, on loopback, stopped at exit.
if [ -x "$root/scripts/pg-test-server.sh" ]; then
  pg_env=$("$root/scripts/pg-test-server.sh" start)  # set -e: a PostgreSQL that cannot start fails the run
  eval "$pg_env"
  cleanup() { "$root/scripts/pg-test-server.sh" stop >/dev/null 2>&1 || true; }
fi

set +e
ctest --test-dir "$build" --output-on-failure --timeout 600 -j2 "$@"
status=$?
cleanup
trap - EXIT
exit $status
