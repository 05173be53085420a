#!/usr/bin/env bash
# A throw-away PostgreSQL server for tests: initdb in a temporary directory, listening on
# 127.0.0.1 only, on a free port, running as an unprivileged user (the `postgres` system user
# when called as root, since PostgreSQL refuses to run as root).
#
#   eval "$(scripts/pg-test-server.sh start [DIR])"   # prints export lines, nothing else
#   scripts/pg-test-server.sh pause  [DIR]            # stop the server, keep the data
#   scripts/pg-test-server.sh resume [DIR]            # start it again on the same port
#   scripts/pg-test-server.sh stop   [DIR]            # stop it and remove DIR
#
# DIR defaults to $MESHID_TEST_POSTGRES_DIR (set by the exports of `start`), so `stop` in the
# shell that evaluated `start` needs no argument; `start` without DIR and without that variable
# creates a fresh directory under ${TMPDIR:-/tmp}. Every command is idempotent: starting a
# running server prints its exports again, stopping a stopped one succeeds.
#
# The exports: MESHID_TEST_POSTGRES_URL (superuser `postgres` with a generated password,
# database `postgres`; tests create their own databases through it) and
# MESHID_TEST_POSTGRES_DIR. Host connections need the password (scram-sha-256), so tests can
# check that a wrong one is refused. fsync is off (test data is throw-away; it makes CREATE
# DATABASE per test cheap); set MESHID_TEST_POSTGRES_FSYNC=on for measurements.
set -euo pipefail

bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
cmd=${1:-}
dir=${2:-${MESHID_TEST_POSTGRES_DIR:-}}

die() { echo "pg-test-server: $*" >&2; exit 1; }

# Runs a command as the unprivileged owner of the cluster.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running() { [ -f "$dir/data/postmaster.pid" ] && as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; }

start_server() {
  local port
  port=$(cat "$dir/port")
  as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir" start >/dev/null ||
    die "could not start PostgreSQL in $dir (see $dir/server.log)"
}

print_exports() {
  printf 'export MESHID_TEST_POSTGRES_URL=%q\n' "postgresql://postgres:$(cat "$dir/password")@127.0.0.1:$(cat "$dir/port")/postgres"
  printf 'export MESHID_TEST_POSTGRES_DIR=%q\n' "$dir"
}

case "$cmd" in
  start)
    if [ -z "$dir" ]; then
      dir=$(mktemp -d "${TMPDIR:-/tmp}/meshid-pg.XXXXXX")
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1 && die "running as root needs the 'postgres' system user"
      [ -x "$bindir/initdb" ] || die "no initdb in $bindir (install the postgresql package)"
      /usr/bin/python3 -c 'import secrets; print(secrets.token_hex(16))' >"$dir/password"
      free_port >"$dir/port"
      [ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
      chmod 0700 "$dir"
      as_owner "$bindir/initdb" -D "$dir/data" -U postgres --pwfile="$dir/password" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        die "initdb failed (see $dir/initdb.log)"
      {
        echo "fsync = ${MESHID_TEST_POSTGRES_FSYNC:-off}"
        echo "max_connections = 300"
        echo "shared_buffers = 32MB"
      } | as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
    fi
    running || start_server
    print_exports
    ;;
  pause)
    [ -n "$dir" ] || die "pause: which directory? (pass DIR or set MESHID_TEST_POSTGRES_DIR)"
    if running; then
      as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
  resume)
    [ -n "$dir" ] || die "resume: which directory? (pass DIR or set MESHID_TEST_POSTGRES_DIR)"
    [ -f "$dir/data/PG_VERSION" ] || die "resume: no server in $dir"
    running || start_server
    ;;
  stop)
    [ -n "$dir" ] || die "stop: which directory? (pass DIR or set MESHID_TEST_POSTGRES_DIR)"
    if [ -d "$dir" ]; then
      if running; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
      fi
      rm -rf "$dir"
    fi
    ;;
  *)
    die "usage: $0 start|stop|pause|resume [DIR]"
    ;;
esac
