#!/usr/bin/env bash
# Builds every fuzz target with clang + libFuzzer (ASan+UBSan) and runs each for SECONDS
# (default 60) on its corpus. Crashes are written to build-fuzz/crashes/<target>/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
"$root/scripts/install-deps.sh"
build="$root/build-fuzz"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DMESHID_FUZZ=ON -DMESHID_SANITIZE=ON -DMESHID_TESTS=OFF -DMESHID_BENCH=OFF >/dev/null
targets=$(ninja -C "$build" -t targets all | grep -o '^fuzz_[a-z0-9_]*' | sort -u)
ninja -C "$build" $targets
export ASAN_OPTIONS="detect_leaks=0"
status=0
for t in $targets; do
  bin=$(find "$build/tests/fuzz" -maxdepth 1 -name "$t" -type f | head -1)
  seed="$root/tests/fuzz/corpus/${t#fuzz_}"
  work="$build/corpus/$t"
  mkdir -p "$work" "$build/crashes/$t"
  echo "== $t for ${seconds}s"
  if ! "$bin" -max_total_time="$seconds" -artifact_prefix="$build/crashes/$t/" -print_final_stats=1 \
      "$work" $( [ -d "$seed" ] && echo "$seed" ) 2>"$build/$t.log"; then
    echo "FAIL $t: see $build/$t.log and $build/crashes/$t/"
    status=1
  fi
  grep -E "stat::number_of_executed_units|Done" "$build/$t.log" | tail -1 || true
done
exit $status
