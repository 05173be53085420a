#!/usr/bin/env bash
# The format.check test: every tracked .cc and .h file outside api/ (generated and vendored
# protos) is as clang-format with the repository's .clang-format writes it. Fix with
#   git ls-files -z -- '*.cc' '*.h' ':!:api/*' | xargs -0 clang-format -i
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "format.check: $root is not a git work tree, so there are no tracked files to check" >&2
  exit 1
fi
mapfile -d '' files < <(git ls-files -z -- '*.cc' '*.h' ':!:api/*')
echo "format.check: $(clang-format --version | head -1), ${#files[@]} files"
printf '%s\0' "${files[@]}" | xargs -0 -n 50 clang-format --dry-run -Werror
echo "format.check: ok"
