#!/usr/bin/env bash
# Runs the benchmarks of two builds of meshid on this machine in one run, interleaved, so that a
# change can be checked for slowness against the code before it (the machine's speed drifts over
# minutes, so numbers taken hours apart do not compare):
#
#   instructions  the same in-process paths counted in instructions under valgrind's callgrind
#             (deterministic: the answer to "is it slower?" when timings drift by ±25%)
#   ca        bench/ca: meshid_ca_bench (CSR validation, signing, the whole CA per certificate)
#   policy    bench/policy: meshid_policy_bench (decisions with 10 … 10,000 policies)
#   agent     bench/sds: meshid_agent_scale_bench (1,000 identities, 10,000 SDS streams)
#   ca-wire   bench/ca/run_bench.sh (meshid server over TLS, ledger off and on SQLite)
#   proxy     bench/meshproxy/run_bench.sh --baseline-build (the sidecar against HAProxy)
#
# The in-process benchmarks alternate baseline, candidate, baseline, ... for --rounds rounds and
# report the median of each; the two scripts interleave on their own.
#
#   bench/compare.sh --baseline DIR --candidate DIR [--rounds N] [--only "instructions ca policy agent ca-wire proxy"]
#
# Both DIRs are Release build directories with the benchmarks built
# (`ninja -C DIR meshid meshid_ca_bench meshid_ca_loadgen meshid_policy_bench meshid_agent_scale_bench`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
baseline=""
candidate=""
rounds=5
only="instructions ca policy agent ca-wire proxy"
while (($#)); do
  case "$1" in
    --baseline) baseline=$2; shift 2 ;;
    --candidate) candidate=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "usage: $0 --baseline DIR --candidate DIR [--rounds N] [--only LIST]" >&2; exit 2 ;;
  esac
done
[ -n "$baseline" ] && [ -n "$candidate" ] || { echo "compare: --baseline and --candidate are required" >&2; exit 2; }
for dir in "$baseline" "$candidate"; do
  for bin in meshid bench/ca/meshid_ca_bench bench/ca/meshid_ca_loadgen bench/policy/meshid_policy_bench \
             bench/sds/meshid_agent_scale_bench; do
    [ -x "$dir/$bin" ] || { echo "compare: $dir/$bin is missing" >&2; exit 1; }
  done
done
work=$(mktemp -d /tmp/meshid-compare.XXXXXX)
trap 'rm -rf "$work"' EXIT
wants() { [[ " $only " == *" $1 "* ]]; }

echo "# meshid benchmarks: baseline $baseline against candidate $candidate"
echo
echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start," \
  "$rounds interleaved rounds per in-process benchmark"

# Google Benchmark binaries: median CPU time per benchmark over the rounds, both builds.
google_benchmark() {  # name binary-relative-path filter
  local name=$1 bin=$2 filter=$3 r
  for r in $(seq 1 "$rounds"); do
    for side in baseline candidate; do
      local dir=$baseline
      [ $side = candidate ] && dir=$candidate
      "$dir/$bin" --benchmark_filter="$filter" --benchmark_format=json >"$work/$name-$side-$r.json" 2>/dev/null
    done
  done
  /usr/bin/python3 - "$work" "$name" "$rounds" <<'EOF'
import json, statistics, sys
work, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = {}
for side in ("baseline", "candidate"):
    for r in range(1, rounds + 1):
        for b in json.load(open(f"{work}/{name}-{side}-{r}.json"))["benchmarks"]:
            if b.get("run_type", "iteration") != "iteration":
                continue
            unit = {"ns": 1e-3, "us": 1.0, "ms": 1e3}[b["time_unit"]]
            times.setdefault(b["name"], {}).setdefault(side, []).append(b["cpu_time"] * unit)
print(f"\n## {name}: CPU per call, µs (median of {rounds})\n")
print("| benchmark | baseline | candidate | candidate / baseline |")
print("|---|---:|---:|---:|")
for bench, sides in times.items():
    if "baseline" not in sides or "candidate" not in sides:
        continue
    b, c = statistics.median(sides["baseline"]), statistics.median(sides["candidate"])
    print(f"| `{bench}` | {b:.3f} | {c:.3f} | {c / b:.3f} |")
EOF
}

# One benchmark per callgrind run (a run of several mixes their calls into one average), then the
# inclusive instructions per call of the library functions it drives, both builds.
if wants instructions; then
  command -v valgrind >/dev/null || { echo "compare: instructions needs valgrind (apt-get install valgrind)" >&2; exit 1; }
  echo
  echo "## instructions per call (callgrind, inclusive; the same on every run)"
  echo
  echo "| benchmark | function | baseline | candidate | candidate / baseline |"
  echo "|---|---|---:|---:|---:|"
  while read -r bin filter functions; do
    for side in baseline candidate; do
      dir=$baseline
      [ $side = candidate ] && dir=$candidate
      valgrind --tool=callgrind --callgrind-out-file="$work/cg-$side.out" "$dir/$bin" \
        --benchmark_filter="$filter" --benchmark_min_time=0.05 >/dev/null 2>&1
      # shellcheck disable=SC2086 # the functions are separate regexes
      "$root/bench/ir_per_call.py" "$work/cg-$side.out" $functions | sort -t$'\t' -k1,1 -k2,2nr | sort -u -t$'\t' -k1,1 \
        >"$work/ir-$side.tsv"
    done
    join -t$'\t' "$work/ir-baseline.tsv" "$work/ir-candidate.tsv" |
      awk -F'\t' -v b="$filter" '{ printf "| `%s` | `%s` | %d | %d | %.3f |\n", b, $1, $2, $3, $3 / $2 }'
  done <<'EOF'
bench/ca/meshid_ca_bench BM_ValidateCsr$ meshid::ValidateCsr\(
bench/ca/meshid_ca_bench BM_IssueSvid$ CertIssuer::IssueSvid\(
bench/ca/meshid_ca_bench BM_CertificateAuthoritySign/0/0$ CertificateAuthority::Sign\(
bench/ca/meshid_ca_bench BM_CertificateAuthoritySign/0/1$ CertificateAuthority::Sign\(
bench/ca/meshid_ca_bench BM_CertificateAuthoritySign/1/0$ CertificateAuthority::Sign\(
bench/policy/meshid_policy_bench BM_DecisionV1beta1/1000$ PolicyEngine::Check\(
bench/policy/meshid_policy_bench BM_DecisionV1alpha1/1000$ PolicyEngine::Check\(
bench/policy/meshid_policy_bench BM_RbacEvaluateOnly/1000$ RbacEngine::Evaluate\(
bench/policy/meshid_policy_bench BM_LoadAndCompile/100$ ParsePolicySet\( PolicyEngine::Create\(
EOF
fi

wants ca && google_benchmark ca bench/ca/meshid_ca_bench \
  'BM_ValidateCsr|BM_IssueSvid|BM_CertificateAuthoritySign|BM_OpensslEcdsaP256'
wants policy && google_benchmark policy bench/policy/meshid_policy_bench '.'

if wants agent; then
  for r in $(seq 1 "$rounds"); do
    for side in baseline candidate; do
      dir=$baseline
      [ $side = candidate ] && dir=$candidate
      "$dir/bench/sds/meshid_agent_scale_bench" >"$work/agent-$side-$r.txt" 2>/dev/null
    done
  done
  /usr/bin/python3 - "$work" "$rounds" <<'EOF'
import re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
rows = {}
for side in ("baseline", "candidate"):
    for r in range(1, rounds + 1):
        for line in open(f"{work}/agent-{side}-{r}.txt"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 2 or not cells[1]:
                continue
            numbers = re.findall(r"[0-9]+(?:\.[0-9]+)?", cells[1])
            if numbers:
                rows.setdefault(cells[0], {}).setdefault(side, []).append([float(n) for n in numbers])
print(f"\n## agent: meshid_agent_scale_bench (median of {rounds})\n")
print("| measure | baseline | candidate |")
print("|---|---:|---:|")
for measure, sides in rows.items():
    if "baseline" not in sides or "candidate" not in sides:
        continue
    def med(runs):
        return " / ".join(f"{statistics.median(col):g}" for col in zip(*runs))
    print(f"| {measure} | {med(sides['baseline'])} | {med(sides['candidate'])} |")
EOF
fi

if wants ca-wire; then
  for r in 1 2; do
    for side in baseline candidate; do
      dir=$baseline
      [ $side = candidate ] && dir=$candidate
      echo
      echo "## ca-wire, $side build, run $r"
      "$root/bench/ca/run_bench.sh" --build "$dir" --stores "none sqlite" --concurrency "32 128" --rounds 3 \
        --count 10000 | grep '^|'
    done
  done
fi

if wants proxy; then
  echo
  echo "## proxy (meshid = candidate, meshid-baseline = baseline)"
  "$root/bench/meshproxy/run_bench.sh" --build "$candidate" --baseline-build "$baseline" --rounds 3 2>/dev/null
fi
