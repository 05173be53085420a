#!/usr/bin/env python3
"""Checks that every folder includes only the folders it may use.

The allowed arrows are the table between the "<!-- layering -->" markers of
docs/architecture.md (the same table cmake/meshid.cmake checks the links against). Every
`#include "x/..."` in a source folder's .h and .cc files must name that folder itself, a
folder its row allows, or a header outside the project (Abseil, gRPC, ...). Generated protos
("envoy/...", "istio/...", "google/...", "meshid/...") belong to api/.

Usage: check-layering.py [--root DIR]   (exit 0: clean; 1: violations, each printed)
"""
import argparse
import os
import re
import sys

PROTO_PREFIXES = {"envoy", "istio", "google", "meshid"}  # api/'s generated headers
NOT_SOURCE = {"tests", "bench", "examples", "scripts", "docs", "cmake", "build"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"/]+)/[^"]*"')
ROW = re.compile(r"^\| `([a-z0-9_]+)/` \|([^|]*)\|")


def read_table(path):
    table, inside = {}, False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if "<!-- layering -->" in line:
                inside = True
            elif "<!-- /layering -->" in line:
                inside = False
            elif inside:
                m = ROW.match(line)
                if m:
                    table[m.group(1)] = set(re.findall(r"`([a-z0-9_]+)/`", m.group(2)))
    return table


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    table_file = os.path.join(root, "docs", "architecture.md")
    table = read_table(table_file)
    if not table:
        print(f"{table_file}: no layering table between <!-- layering --> markers")
        return 1
    problems = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.startswith(".") or name.startswith("build") or name in NOT_SOURCE or not os.path.isdir(path):
            continue
        if not os.path.exists(os.path.join(path, "CMakeLists.txt")):
            continue
        if name not in table:
            problems.append(f"{name}/: a source folder missing from the layering table in docs/architecture.md")
            continue
        allowed = table[name] | {name}
        for dirpath, _, files in os.walk(path):
            for file in sorted(files):
                if not file.endswith((".h", ".cc")):
                    continue
                full = os.path.join(dirpath, file)
                rel = os.path.relpath(full, root)
                with open(full, encoding="utf-8", errors="replace") as f:
                    for number, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target = "api" if m.group(1) in PROTO_PREFIXES else m.group(1)
                        if target in table and target not in allowed:
                            uses = ", ".join(f"{u}/" for u in sorted(table[name])) or "nothing"
                            problems.append(f"{rel}:{number}: includes {line.strip()[len('#include '):]}, "
                                            f"but {name}/ may use only: {uses}")
    for problem in problems:
        print(problem)
    if problems:
        print(f"layering: {len(problems)} problem(s); the allowed arrows are in docs/architecture.md")
        return 1
    print(f"layering: ok ({len(table)} folders)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
