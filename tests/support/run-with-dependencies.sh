#!/usr/bin/env bash
# Runs a test command that needs something from outside the build (Node and its modules, a
# Python module), after checking that it is there: the ctest-script side of
# tests/support/dependencies.h, with the same rule and the same message. A missing dependency
# skips the test (exit 77, which ctest reports as skipped: SKIP_RETURN_CODE) or, with
# MESHID_REQUIRE_ALL_TESTS=1 (scripts/test.sh, and so CI), fails it.
#
#   run-with-dependencies.sh [--program NAME] [--node-module DIR MODULE]
#                            [--python-module PYTHON MODULE] ... -- COMMAND [ARG...]
set -euo pipefail

missing=()
while (($#)); do
  case "$1" in
    --program)
      command -v "$2" >/dev/null 2>&1 || missing+=("$2 (not on PATH; scripts/install-deps.sh installs it)")
      shift 2
      ;;
    --node-module)
      [ -f "$2/node_modules/$3/package.json" ] ||
        missing+=("Node module $3 in $2/node_modules (scripts/install-deps.sh runs npm ci there)")
      shift 3
      ;;
    --python-module)
      "$2" -c "import $3" >/dev/null 2>&1 ||
        missing+=("Python module $3 for $2 (scripts/install-deps.sh installs Debian's package)")
      shift 3
      ;;
    --)
      shift
      break
      ;;
    *)
      echo "run-with-dependencies: unknown option $1" >&2
      exit 2
      ;;
  esac
done
(($#)) || { echo "run-with-dependencies: no command after --" >&2; exit 2; }

if ((${#missing[@]})); then
  for what in "${missing[@]}"; do
    if [ "${MESHID_REQUIRE_ALL_TESTS:-}" = 1 ]; then
      echo "missing dependency: $what; MESHID_REQUIRE_ALL_TESTS=1, so this test fails instead of skipping"
    else
      echo "missing dependency: $what; test skipped (MESHID_REQUIRE_ALL_TESTS=1 would fail it)"
    fi
  done
  [ "${MESHID_REQUIRE_ALL_TESTS:-}" = 1 ] && exit 1
  exit 77
fi
exec "$@"
