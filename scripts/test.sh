#!/usr/bin/env bash
# Builds meshid with AddressSanitizer + UndefinedBehaviorSanitizer and runs every test
# (unit, integration, interop, fuzz-corpus replay) with ctest. Starts the services tests need
# (PostgreSQL on loopback) and stops them afterwards. The last lines are ctest's summary.
#
# The suite cannot shrink silently: every test must run (MESHID_REQUIRE_ALL_TESTS=1 turns a
# missing dependency into a failure, and a test ctest reports as skipped fails the run), and
# before running it the number of tests is checked against tests/minimum_test_count. Extra
# arguments go to ctest (for example -R sql); a filtered run skips the count check.
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

# A test whose dependency is missing fails instead of skipping (tests/support/dependencies.h).
export MESHID_REQUIRE_ALL_TESTS=1

# The count: what ctest would run, against the minimum committed in the repository.
count=$(ctest --test-dir "$build" -N "$@" | sed -n 's/^Total Tests: *\([0-9][0-9]*\)$/\1/p')
minimum=$(grep -v '^#' "$root/tests/minimum_test_count" | tr -d '[:space:]')
if [ -z "$count" ] || [ -z "$minimum" ]; then
  echo "test.sh: cannot read the number of tests (ctest -N) or tests/minimum_test_count" >&2
  exit 1
fi
if (($#)); then
  echo "test.sh: running $count tests (a filtered run: tests/minimum_test_count, $minimum, is not checked)"
elif ((count < minimum)); then
  echo "test.sh: only $count tests are registered, fewer than the $minimum of tests/minimum_test_count:" \
    "tests were lost (the file changes only with a change that removes tests on purpose)" >&2
  exit 1
else
  echo "test.sh: running $count tests (tests/minimum_test_count: at least $minimum);" \
    "a test that does not run fails this run"
fi

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
ctest_log=$(mktemp)
ctest --test-dir "$build" --output-on-failure --timeout 600 -j2 "$@" | tee "$ctest_log"
status=${PIPESTATUS[0]}
# A skipped or disabled test is listed under "did not run" in ctest's summary (above); it fails
# the run here, after the summary, so that the output still ends with it.
if grep -q '^The following tests did not run:' "$ctest_log" && ((status == 0)); then
  status=1
fi
rm -f "$ctest_log"
cleanup
trap - EXIT
exit $status
