#!/usr/bin/python3
"""Instructions per call of named functions in a callgrind profile.

    ir_per_call.py CALLGRIND_OUT REGEX...

For every function whose name matches a REGEX: its inclusive instruction count divided by the
number of calls made to it, from `callgrind_annotate --tree=caller`. Instruction counts do not
drift with the machine's speed, so two builds compare within a fraction of a percent where
timings on a shared 2-core VM move by ±25%. Prints `regex<TAB>instructions per call`, one line per
matching function (a name can match twice: a clone or a thunk; the caller keeps the largest).
"""
import re
import subprocess
import sys

STAR = re.compile(r"\s*([\d,]+) \([ \d.]+%\)\s+\*\s+(.*)")
CALLER = re.compile(r"\s*[\d,]+ \([ \d.]+%\)\s+<.*\(([\d,]+)x\) \[")


def main(out, patterns):
    text = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=yes", "--tree=caller", out],
                          capture_output=True, text=True, check=True).stdout
    for block in text.split("\n\n"):
        lines = block.strip("\n").splitlines()
        stars = [m for m in map(STAR.match, lines) if m]
        if len(stars) != 1:
            continue
        inclusive, name = int(stars[0].group(1).replace(",", "")), stars[0].group(2)
        calls = sum(int(m.group(1).replace(",", "")) for m in map(CALLER.match, lines) if m)
        for pattern in patterns:
            if calls and re.search(pattern, name):
                print(f"{pattern}\t{inclusive / calls:.0f}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
