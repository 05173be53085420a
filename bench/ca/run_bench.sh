#!/usr/bin/env bash
# Over-the-wire CA benchmark: `meshid server` on loopback with the issuance ledger off
# (`--datastore none`), on SQLite (the default: WAL, synchronous=FULL) and on PostgreSQL
# (fsync on, synchronous_commit on), driven by meshid_ca_loadgen (TLS, ECDSA P-256 CSRs, bearer
# token) at several concurrencies. Prints one markdown row per (store, concurrency): median of
# the rounds for throughput, p50/p99 latency and the server's CPU per certificate, and the
# median of the per-round throughput ratios to the ledger-off server.
#
# All servers run at once, idle but for the one under load, and every round loads each of them
# in turn: on a shared VM whose speed drifts over minutes, a ratio taken from neighbouring runs
# is far steadier than one taken from runs minutes apart.
#
#   ninja -C build meshid meshid_ca_loadgen && bench/ca/run_bench.sh [--build DIR] [--count N]
#       [--rounds N] [--concurrency "32 128 512"] [--stores "none sqlite postgresql"]
#       [--server-args "--ledger-commit-interval 0"]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=bench/ca/lib.sh
source "$root/bench/ca/lib.sh"
build="$root/build"
count=20000
rounds=5
concurrencies="32 128 512"
stores="none sqlite postgresql"
server_args=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift ;;
    --count) count="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    --concurrency) concurrencies="$2"; shift ;;
    --stores) stores="$2"; shift ;;
    --server-args) server_args="$2"; shift ;;
    *) echo "usage: $0 [--build DIR] [--count N] [--rounds N] [--concurrency LIST] [--stores LIST] [--server-args ARGS]" >&2; exit 2 ;;
  esac
  shift
done
meshid="$build/meshid"
loadgen="$build/bench/ca/meshid_ca_loadgen"
bench_require_build run_bench "$build" || exit 1

work=$(mktemp -d /tmp/meshid-ca-bench.XXXXXX)
chmod 0711 "$work"  # PostgreSQL runs as the postgres user, under $work/pg
declare -A server_pid port
pg_started=0
cleanup() {
  for pid in "${server_pid[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  [ $pg_started = 1 ] && "$root/scripts/pg-test-server.sh" stop "$work/pg" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

if [[ " $stores " == *" postgresql "* ]]; then
  bench_start_postgres "$root" "$work/pg"
  pg_started=1
fi

start_server() {  # STORE
  local data="$work/data-$1" url p
  url=$(bench_store_url "$1" "$data") || exit 2
  p=$(bench_free_port)
  # shellcheck disable=SC2086  # --server-args is a list of words
  "$meshid" server --data-dir "$data" --datastore "$url" --listen "127.0.0.1:$p" --monitoring-addr 127.0.0.1:0 \
    --log-level warn --signing-rate-per-caller 0 $server_args >"$work/server-$1.log" 2>&1 &
  server_pid[$1]=$!
  port[$1]=$p
  bench_wait_server "${server_pid[$1]}" "$data" "$p" "$work/server-$1.log" || exit 1
  "$meshid" token create --data-dir "$data" --namespace bench --service-account loadgen >"$work/token-$1"
}


for store in $stores; do start_server "$store"; done
echo "meshid CA over the wire: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg) at start," \
  "$count ECDSA P-256 certificates per round, median of $rounds rounds${server_args:+, server flags: $server_args}"
echo
echo "| ledger | concurrency | certificates/s | of ledger off | p50 ms | p99 ms | server CPU ms/cert |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for c in $concurrencies; do
  for store in $stores; do : >"$work/rounds-$store"; done
  for round in $(seq "$rounds"); do
    for store in $stores; do
      out=$("$loadgen" --addr "127.0.0.1:${port[$store]}" --ca-root "$work/data-$store/root-cert.pem" \
        --token-file "$work/token-$store" --concurrency "$c" --count "$count" --server-pid "${server_pid[$store]}" \
        --time-limit 120) || { echo "run_bench: loadgen failed ($store, c=$c):" >&2; echo "$out" >&2; exit 1; }
      tput=$(awk '/^throughput/ {print $2}' <<<"$out")
      p50=$(awk '/^latency/ {print $3}' <<<"$out")
      p99=$(awk '/^latency/ {print $6}' <<<"$out")
      cpu=$(awk '/^server CPU/ {print $3}' <<<"$out")
      echo "$round $tput $p50 $p99 $cpu" >>"$work/rounds-$store"
    done
  done
  for store in $stores; do
    col() { awk -v c="$1" '{print $c}' "$work/rounds-$store" | bench_median; }
    ratio="-"
    if [ -s "$work/rounds-none" ] && [ "$store" != none ]; then
      # The ratio of each round's throughput to the ledger-off run next to it; their median.
      ratio=$(paste -d" " "$work/rounds-$store" "$work/rounds-none" | awk '{print 100 * $2 / $7}' | bench_median)
      ratio=$(printf "%.0f%%" "$ratio")
    fi
    label=$store
    [ "$store" = none ] && label="off (--datastore none)"
    printf "| %s | %s | %.0f | %s | %.2f | %.2f | %.3f |\n" "$label" "$c" "$(col 2)" "$ratio" "$(col 3)" "$(col 4)" "$(col 5)"
  done
done
