# Shared by the CA benchmark scripts (sourced, not run): ports, medians, a benchmark server's
# store, and waiting for a server to serve.

# bench_require_build SCRIPT BUILD_DIR: the meshid binary and the load generator are built.
bench_require_build() {
  local f
  for f in "$2/meshid" "$2/bench/ca/meshid_ca_loadgen"; do
    [ -x "$f" ] || { echo "$1: $f is missing (ninja -C $2 meshid meshid_ca_loadgen)" >&2; return 1; }
  done
}

bench_free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The median of the numbers on stdin, one per line.
bench_median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# bench_store_url STORE DATA_DIR: the --datastore of a server on STORE (none, sqlite, postgresql).
# PostgreSQL: a fresh database meshid_bench on $MESHID_TEST_POSTGRES_URL (bench_start_postgres).
bench_store_url() {
  case "$1" in
    none) echo none ;;
    sqlite) echo "sqlite://$2/meshid.db" ;;
    postgresql)
      PGOPTIONS="-c client_min_messages=warning" /usr/bin/psql "$MESHID_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS meshid_bench" -c "CREATE DATABASE meshid_bench" >/dev/null
      echo "${MESHID_TEST_POSTGRES_URL%/postgres}/meshid_bench?pool_size=8" ;;
    *) echo "unknown store $1 (none, sqlite, postgresql)" >&2; return 2 ;;
  esac
}

# bench_start_postgres ROOT DIR: PostgreSQL with fsync on under DIR (scripts/pg-test-server.sh),
# its URL exported as MESHID_TEST_POSTGRES_URL. DIR's parent must be enterable by postgres.
bench_start_postgres() {
  local env
  env=$(MESHID_TEST_POSTGRES_FSYNC=on "$1/scripts/pg-test-server.sh" start "$2") || return 1
  eval "$env"
}

# bench_wait_server PID DATA_DIR PORT LOG: waits until the server wrote its trust bundle and
# accepts connections; if it exits first, prints its log and fails.
bench_wait_server() {
  for _ in $(seq 300); do
    [ -f "$2/root-cert.pem" ] && (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || { echo "the server exited:" >&2; cat "$4" >&2; return 1; }
    sleep 0.1
  done
  echo "the server did not start within 30 s:" >&2; cat "$4" >&2; return 1
}
