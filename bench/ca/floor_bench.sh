#!/usr/bin/env bash
# The CA over the wire against the crypto floor, as a user would measure it first:
# `meshid server` pinned to the first N cores (taskset), meshid_ca_loadgen pinned to the cores
# after them, TLS, a bearer token on every request (ES256, as istio-agent sends one), the
# issuance ledger on and durable before each reply (SQLite: WAL, synchronous=FULL; PostgreSQL:
# fsync on, synchronous_commit on, pinned beside the load generator). Per (store, server cores,
# concurrency): a warm-up run, then several timed runs; the median of certificates/s and of the
# server's CPU per certificate (from /proc/<pid>/stat, user + system).
#
# The floor is the work the CA cannot avoid for one certificate: verify the CSR's signature,
# sign the certificate, verify the token's signature, i.e. one ECDSA P-256 sign and two
# verifies, from `openssl speed ecdsap256` on the server's first core in the same run. The
# ratio is the server's CPU per certificate over that floor.
#
# The load generator is one caller, so the per-caller signing limit is off
# (--signing-rate-per-caller 0); every other server flag is its default.
#
# --keys "file softhsm" runs each setup twice: the CA key in <data-dir>/ca-key.pem, and the CA
# key (ECDSA P-256, made in the token) in a SoftHSM2 token (`--ca-key pkcs11:...`; SoftHSM is a
# library in the server's process, so its work counts as the server's CPU).
#
# On a machine with no core left over for the load generator (or PostgreSQL), they share the
# server's cores and the output says so: such a line is a friendlier or harsher setup than the
# one above, never the same one.
#
#   ninja -C build-rel meshid meshid_ca_loadgen &&
#   bench/ca/floor_bench.sh [--build DIR] [--cores "1 2"] [--concurrency "8 64"]
#       [--stores "sqlite postgresql"] [--keys "file softhsm"] [--runs N] [--count N] [--server-args ARGS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=bench/ca/lib.sh
source "$root/bench/ca/lib.sh"
build="$root/build-rel"
core_counts="1"
concurrencies="8 64"
stores="sqlite"
keys="file"
runs=5
count=10000
server_args=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift ;;
    --cores) core_counts="$2"; shift ;;
    --concurrency) concurrencies="$2"; shift ;;
    --stores) stores="$2"; shift ;;
    --keys) keys="$2"; shift ;;
    --runs) runs="$2"; shift ;;
    --count) count="$2"; shift ;;
    --server-args) server_args="$2"; shift ;;
    *) echo "usage: $0 [--build DIR] [--cores LIST] [--concurrency LIST] [--stores LIST] [--keys LIST] [--runs N] [--count N] [--server-args ARGS]" >&2; exit 2 ;;
  esac
  shift
done
meshid="$build/meshid"
loadgen="$build/bench/ca/meshid_ca_loadgen"
bench_require_build floor_bench "$build" || exit 1
for tool in taskset openssl; do command -v "$tool" >/dev/null || { echo "floor_bench: $tool is missing" >&2; exit 1; }; done
ncores=$(nproc)
for n in $core_counts; do
  [ "$n" -ge 1 ] && [ "$n" -le "$ncores" ] || { echo "floor_bench: --cores $n: this machine has $ncores cores" >&2; exit 2; }
done

work=$(mktemp -d /tmp/meshid-floor-bench.XXXXXX)
chmod 0711 "$work"  # PostgreSQL runs as the postgres user, under $work/pg
server_pid=""
pg_started=0
cleanup() {
  [ -n "$server_pid" ] && { kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; }
  [ $pg_started = 1 ] && "$root/scripts/pg-test-server.sh" stop "$work/pg" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

# Cores 0..n-1 for the server; the rest for the load generator and PostgreSQL, or, when there is
# no rest, the server's own (reported as shared).
server_cpus() { seq -s, 0 $(($1 - 1)); }
other_cpus() { if [ "$1" -lt "$ncores" ]; then seq -s, "$1" $((ncores - 1)); else server_cpus "$1"; fi; }

for key in $keys; do
  case "$key" in
    file) ;;
    softhsm)
      for tool in softhsm2-util pkcs11-tool; do
        command -v "$tool" >/dev/null || { echo "floor_bench: $tool is missing (apt-get install softhsm2 opensc)" >&2; exit 1; }
      done ;;
    *) echo "floor_bench: --keys $key: want file or softhsm" >&2; exit 2 ;;
  esac
done
softhsm_module=/usr/lib/softhsm/libsofthsm2.so
if [[ " $keys " == *" softhsm "* ]]; then
  # One token with one P-256 key made inside it; every softhsm server uses it.
  mkdir -p "$work/hsm/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/hsm/tokens" >"$work/hsm/softhsm2.conf"
  export SOFTHSM2_CONF="$work/hsm/softhsm2.conf"
  echo 24680 >"$work/hsm/pin"
  softhsm2-util --init-token --free --label meshid-bench --pin 24680 --so-pin 13579 >/dev/null
  pkcs11-tool --module "$softhsm_module" --token-label meshid-bench --login --pin 24680 --keypairgen \
    --key-type EC:prime256v1 --label ca --id 01 >/dev/null 2>&1 || { echo "floor_bench: pkcs11-tool --keypairgen failed" >&2; exit 1; }
fi

if [[ " $stores " == *" postgresql "* ]]; then
  bench_start_postgres "$root" "$work/pg"
  pg_started=1
  # PostgreSQL's postmaster and its backends (forked later) on the cores after the server's one.
  pg_pid=$(head -1 "$work/pg/data/postmaster.pid" 2>/dev/null || true)
  [ -n "$pg_pid" ] && taskset -a -p -c "$(other_cpus 1)" "$pg_pid" >/dev/null
fi

# The floor, on the server's first core: ms for one sign and two verifies.
floor_ms() {
  local line
  line=$(taskset -c 0 openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/nistp256\)/ {print $(NF-1), $NF}' | tail -1)
  [ -n "$line" ] || { echo "floor_bench: could not read openssl speed ecdsap256" >&2; exit 1; }
  awk -v s="${line% *}" -v v="${line#* }" 'BEGIN {printf "%.4f %.0f %.0f\n", 1000 / s + 2000 / v, s, v}'
}

start_server() {  # STORE CORES KEY
  local data="$work/data-$1-$2-$3" url p key_args=()
  url=$(bench_store_url "$1" "$data") || exit 2
  p=$(bench_free_port)
  [ "$3" = softhsm ] && key_args=(--ca-key "pkcs11:token=meshid-bench;object=ca" --pkcs11-module "$softhsm_module"
    --pkcs11-pin-file "$work/hsm/pin")
  # shellcheck disable=SC2086  # --server-args is a list of words
  taskset -c "$(server_cpus "$2")" "$meshid" server --data-dir "$data" --datastore "$url" --listen "127.0.0.1:$p" \
    --monitoring-addr 127.0.0.1:0 --log-level warn --signing-rate-per-caller 0 "${key_args[@]}" $server_args \
    >"$work/server.log" 2>&1 &
  server_pid=$!
  port=$p
  server_data=$data
  bench_wait_server "$server_pid" "$data" "$p" "$work/server.log" || exit 1
  "$meshid" token create --data-dir "$data" --namespace bench --service-account loadgen >"$work/token"
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""; }


read -r floor sign_s verify_s < <(floor_ms)
echo "meshid CA against the crypto floor: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
  "$ncores cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), load average $(cut -d' ' -f1 /proc/loadavg) at start"
echo "floor on core 0 (openssl speed ecdsap256): $sign_s signs/s, $verify_s verifies/s → 1 sign + 2 verifies = $floor ms per certificate"
echo "$count certificates per run, a warm-up run then the median of $runs${server_args:+, server flags: $server_args}"
echo
echo "| ledger | CA key | server cores | load generator cores | concurrency | certificates/s | p99 ms | server CPU ms/cert | × floor |"
echo "|---|---|---:|---|---:|---:|---:|---:|---:|"
for cores in $core_counts; do
  gen_cpus=$(other_cpus "$cores")
  placement="$gen_cpus"
  [ "$cores" -ge "$ncores" ] && placement="$gen_cpus (shared with the server)"
  for store in $stores; do
    for key in $keys; do
      start_server "$store" "$cores" "$key"
      for c in $concurrencies; do
        : >"$work/runs"
        for run in $(seq 0 "$runs"); do
          out=$(taskset -c "$gen_cpus" "$loadgen" --addr "127.0.0.1:$port" --ca-root "$server_data/root-cert.pem" \
            --token-file "$work/token" --concurrency "$c" --count "$count" --server-pid "$server_pid" --time-limit 120) ||
            { echo "floor_bench: loadgen failed ($store, $cores cores, c=$c):" >&2; echo "$out" >&2; exit 1; }
          if grep -q '^error' <<<"$out"; then echo "floor_bench: failed requests ($store, c=$c):" >&2; echo "$out" >&2; exit 1; fi
          [ "$run" = 0 ] && continue  # warm-up
          echo "$(awk '/^throughput/ {print $2}' <<<"$out") $(awk '/^latency/ {print $6}' <<<"$out") $(awk '/^server CPU/ {print $3}' <<<"$out")" >>"$work/runs"
        done
        col() { awk -v c="$1" '{print $c}' "$work/runs" | bench_median; }
        cpu=$(col 3)
        printf "| %s | %s | %s | %s | %s | %.0f | %.2f | %.3f | %.2f |\n" "$store" "$key" "$cores" "$placement" "$c" "$(col 1)" \
          "$(col 2)" "$cpu" "$(awk -v a="$cpu" -v b="$floor" 'BEGIN {print a / b}')"
      done
      stop_server
    done
  done
done
