#!/usr/bin/env python3
"""The layering check fails on a planted bad include and on a folder missing from the table.

Copies the source folders and docs/architecture.md of --root into a temporary tree, checks
that scripts/check-layering.py passes there, then plants violations one at a time and checks
that each is reported with its file and line and a non-zero exit.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile


def run_check(script, root):
    result = subprocess.run([sys.executable, script, "--root", root], capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    args = parser.parse_args()
    script = os.path.join(args.root, "scripts", "check-layering.py")
    failures = []
    with tempfile.TemporaryDirectory(prefix="meshid-layering-") as tmp:
        for name in os.listdir(args.root):
            src = os.path.join(args.root, name)
            if os.path.isdir(src) and os.path.exists(os.path.join(src, "CMakeLists.txt")) and name not in (
                    "tests", "bench") and not name.startswith("build"):
                shutil.copytree(src, os.path.join(tmp, name), symlinks=True,
                                ignore=shutil.ignore_patterns("node_modules"))
        os.makedirs(os.path.join(tmp, "docs"))
        shutil.copy(os.path.join(args.root, "docs", "architecture.md"), os.path.join(tmp, "docs"))

        code, out = run_check(script, tmp)
        if code != 0:
            failures.append(f"the unchanged tree should pass, got {code}:\n{out}")

        plants = [
            # (file, include, what the report must name)
            ("meshproxy/proxy.cc", '#include "sql/store.h"', "meshproxy/proxy.cc:1: includes \"sql/store.h\""),
            ("authz/policy_engine.h", '#include "policy/server.h"', "authz/policy_engine.h:1: includes"),
            ("common/files.cc", '#include "ca/authority.h"', "common/files.cc:1: includes"),
            ("xds/resource.h", '#include "sds/resource.h"', "xds/resource.h:1: includes"),
            ("policy/relay.cc", '#include "nodeagent/token_source.h"', "policy/relay.cc:1: includes"),
        ]
        for path, include, expected in plants:
            full = os.path.join(tmp, path)
            original = open(full).read()
            with open(full, "w") as f:
                f.write(include + "\n" + original)
            code, out = run_check(script, tmp)
            if code == 0 or expected not in out:
                failures.append(f"planting {include} in {path}: want a failure naming '{expected}', got {code}:\n{out}")
            with open(full, "w") as f:
                f.write(original)

        os.makedirs(os.path.join(tmp, "newfolder"))
        open(os.path.join(tmp, "newfolder", "CMakeLists.txt"), "w").close()
        code, out = run_check(script, tmp)
        if code == 0 or "newfolder/: a source folder missing from the layering table" not in out:
            failures.append(f"a folder missing from the table should fail, got {code}:\n{out}")

    for failure in failures:
        print("FAIL:", failure)
    if failures:
        return 1
    print("layering check: clean tree passes; 5 planted includes and an unlisted folder fail as they should")
    return 0


if __name__ == "__main__":
    sys.exit(main())
