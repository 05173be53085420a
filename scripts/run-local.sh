#!/usr/bin/env bash
# The whole mesh on this machine, in one command. Builds meshid (Release) if needed, then starts
# on loopback, with ports the OS picks:
#   meshid server   the CA and policy server (SQLite in the state directory, no Kubernetes)
#   meshid agent    one node agent: workload certificates and policy over its Unix socket
#   hello-a, hello-b  two demo apps (meshid hello), each behind a meshid proxy (STRICT mTLS)
#   tls-app         a workload without a proxy or a token: `openssl s_server` on the certificate
#                   `meshid svid watch` keeps current from the agent's SPIFFE Workload API, the
#                   identity given by attestation (an entry selecting this user's uid)
# applies the sample policy (examples/demo) with `meshid apply`, and shows one allowed call
# (200), one denied call (403), one plaintext call refused under STRICT, and tls-app's SPIFFE
# ID as `openssl s_client` sees it. Everything keeps running until Ctrl-C, which stops every
# process it started (so does any error).
#
#   scripts/run-local.sh            # build, run, keep the mesh up until Ctrl-C
#   scripts/run-local.sh --once     # stop right after the demonstration; exit 0 only if all four
#                                   # outcomes were as expected (CI)
#   --meshid PATH                   # use this binary, skip installing and building
#   --dir DIR                       # state and logs (default ./var/demo; emptied first)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

once=0
meshid=""
dir="$root/var/demo"
while [ $# -gt 0 ]; do
  case "$1" in
    --once) once=1 ;;
    --meshid) meshid="$2"; shift ;;
    --dir) dir="$2"; shift ;;
    *) echo "usage: $0 [--once] [--meshid PATH] [--dir DIR]" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "$meshid" ]; then
  "$root/scripts/install-deps.sh"
  cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  ninja -C "$root/build" meshid
  meshid="$root/build/meshid"
fi

rm -rf "$dir"
mkdir -p "$dir"
data="$dir/server"
# Unix socket paths are limited to 107 bytes: keep the agent's socket short, under /tmp.
sock_dir=$(mktemp -d /tmp/meshid-demo.XXXXXX)
sock="$sock_dir/agent.sock"
api_sock="$sock_dir/api.sock"  # the SPIFFE Workload API

# Every process we start, stopped (TERM, then KILL after 10 s) whenever this script exits.
pids=()
stop_all() {
  local status=$?
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 100); do
      local alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ $alive = 0 ] && break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  # tls-app's openssl s_server, started by svid watch's --exec (so not our child).
  if [ -f "$dir/tls-app-server.pid" ]; then kill -TERM "$(cat "$dir/tls-app-server.pid")" 2>/dev/null || true; fi
  rm -rf "$sock_dir"
  exit $status
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME ARGS...: runs `meshid ARGS...` in the background, output in $dir/NAME.log.
start() {
  local name=$1
  shift
  "$meshid" "$@" >"$dir/$name.log" 2>&1 &
  pids+=($!)
}

# wait_log NAME REGEX: prints the first capture of REGEX in NAME's log once it appears; fails
# (showing the log) if the process exits or a minute passes.
wait_log() {
  local name=$1 re=$2 pid=${pids[${#pids[@]}-1]}
  for _ in $(seq 600); do
    local m
    m=$(grep -oP "$re" "$dir/$name.log" | head -1 || true)
    if [ -n "$m" ]; then echo "$m"; return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "$name did not start; its log ($dir/$name.log):" >&2
  cat "$dir/$name.log" >&2
  return 1
}

echo "== meshid server (CA + policy server, SQLite in $data)"
start server server --data-dir "$data" --listen 127.0.0.1:0 --monitoring-addr 127.0.0.1:0 --policy-poll-interval 500ms
ca_port=$(wait_log server 'listening on 127\.0\.0\.1:\K\d+')
echo "listening on 127.0.0.1:$ca_port"

"$meshid" token create --data-dir "$data" --namespace istio-system --service-account meshid-agent >"$dir/agent.token"
"$meshid" token create --data-dir "$data" --namespace demo --service-account hello-a >"$dir/hello-a.token"
"$meshid" token create --data-dir "$data" --namespace demo --service-account hello-b >"$dir/hello-b.token"

echo "== meshid agent (SDS and policy on unix:$sock, the SPIFFE Workload API on unix:$api_sock)"
start agent agent --ca-addr "127.0.0.1:$ca_port" --ca-root "$data/root-cert.pem" --token-file "$dir/agent.token" \
  --sds-socket "$sock" --monitoring-addr 127.0.0.1:0 --agent-id demo-node --crl-file "$dir/agent-crl.pem" \
  --trust-bundle-file "$dir/agent-trust-bundle.pem" \
  --mode node --workload-api-socket "$api_sock"
wait_log agent 'sds listening on \K\S+' >/dev/null

# The agent's SPIFFE ID is its token's identity. The entry lets it mint tls-app's identity for
# the processes of this node that run as this user, attested from the kernel.
agent_id="spiffe://cluster.local/ns/istio-system/sa/meshid-agent"
tls_app_id="spiffe://cluster.local/ns/demo/sa/tls-app"
echo "== meshid entry create: $tls_app_id for uid $(id -u) on this node"
"$meshid" entry create --data-dir "$data" --spiffe-id "$tls_app_id" --parent "$agent_id" --selector "unix:uid:$(id -u)"

echo "== meshid apply -f examples/demo"
"$meshid" apply -f "$root/examples/demo" --data-dir "$data"

echo "== two apps (meshid hello), each behind a meshid proxy"
start hello-a hello --listen 127.0.0.1:0 --version v1
app_a=$(wait_log hello-a 'listening on \K\S+')
start hello-b hello --listen 127.0.0.1:0 --version v2
app_b=$(wait_log hello-b 'listening on \K\S+')
start proxy-b proxy --sds-socket "$sock" --token-file "$dir/hello-b.token" --service hello-b --namespace demo \
  --label app=hello-b --inbound 127.0.0.1:0 --app "$app_b" --admin-addr 127.0.0.1:0 --policy-from-agent
in_b=$(wait_log proxy-b 'inbound listening on \K\S+')
admin_b=$(wait_log proxy-b 'admin on port \K\d+')
start proxy-a proxy --sds-socket "$sock" --token-file "$dir/hello-a.token" --service hello-a --namespace demo \
  --label app=hello-a --inbound 127.0.0.1:0 --app "$app_a" --outbound 127.0.0.1:0 --upstream "hello-b=$in_b" \
  --admin-addr 127.0.0.1:0 --policy-from-agent
out_a=$(wait_log proxy-a 'outbound listening on \K\S+')
admin_a=$(wait_log proxy-a 'admin on port \K\d+')
echo "hello-a (v1) on $app_a behind proxy-a: outbound $out_a; hello-b (v2) on $app_b behind proxy-b: inbound $in_b"

# Both proxies ready: certificate, trust bundle and policy version 1 from the agent.
for admin in "$admin_a" "$admin_b"; do
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$admin/ready" >/dev/null && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$admin/ready" >/dev/null || { echo "a proxy never became ready; see $dir/*.log" >&2; exit 1; }
done

ok=1
# check WHAT EXPECTED_CODE ACTUAL_CODE BODY
check() {
  if [ "$3" = "$2" ]; then
    echo "   -> $3 ${4:+($4)} as expected"
  else
    echo "   -> got ${3:-nothing} ${4:+($4)}, expected $2" >&2
    ok=0
  fi
}

echo
echo "== 1. allowed: hello-a calls hello-b over mTLS (the policy lets hello-a GET /hello)"
echo "   curl -H 'Host: hello-b' http://$out_a/hello"
body=$(curl -s -o - -w '\n%{http_code}' -H 'Host: hello-b' "http://$out_a/hello" || true)
check "allowed" 200 "$(tail -n1 <<<"$body")" "$(head -n1 <<<"$body")"

echo "== 2. denied: hello-a asks hello-b for /admin, which no rule allows"
echo "   curl -H 'Host: hello-b' http://$out_a/admin"
body=$(curl -s -o - -w '\n%{http_code}' -H 'Host: hello-b' "http://$out_a/admin" || true)
check "denied" 403 "$(tail -n1 <<<"$body")" "$(head -n1 <<<"$body")"

echo "== 3. plaintext: a caller without a certificate goes straight to hello-b's proxy (STRICT)"
echo "   curl http://$in_b/hello"
set +e
curl -s -o /dev/null -m 10 "http://$in_b/hello"
rc=$?
set -e
if [ $rc -eq 52 ] || [ $rc -eq 56 ]; then
  echo "   -> connection closed without an answer (curl exit $rc) as expected"
else
  echo "   -> curl exit $rc: the plaintext call was not refused" >&2
  ok=0
fi

echo "== 4. attestation: tls-app, with no proxy and no token, gets its identity from the Workload API"
# svid watch writes cert-chain.pem, key.pem and root-cert.pem into $dir/tls-app at every
# rotation, then runs this script, which (re)starts openssl s_server on the new files: the first
# time on a port the OS picks, then on the same one.
cat >"$dir/tls-app-restart.sh" <<'EOF'
#!/bin/sh
# Run by `meshid svid watch --exec` after every rotation; $DEMO_DIR comes from its environment.
if [ -f "$DEMO_DIR/tls-app-server.pid" ]; then
  old=$(cat "$DEMO_DIR/tls-app-server.pid")
  kill "$old" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
fi
port=$(cat "$DEMO_DIR/tls-app-server.port" 2>/dev/null || echo 0)
openssl s_server -accept "127.0.0.1:$port" -cert "$DEMO_DIR/tls-app/cert-chain.pem" \
  -key "$DEMO_DIR/tls-app/key.pem" -www </dev/null >"$DEMO_DIR/tls-app-server.log" 2>&1 &
echo $! >"$DEMO_DIR/tls-app-server.pid"
EOF
chmod +x "$dir/tls-app-restart.sh"
echo "   meshid svid watch --socket $api_sock --out-dir $dir/tls-app --exec $dir/tls-app-restart.sh"
export DEMO_DIR="$dir"  # for tls-app-restart.sh
start svid-watch svid watch --socket "$api_sock" --out-dir "$dir/tls-app" --exec "$dir/tls-app-restart.sh"
tls_port=""
for _ in $(seq 300); do
  tls_port=$(grep -oP 'ACCEPT 127\.0\.0\.1:\K\d+' "$dir/tls-app-server.log" 2>/dev/null | head -1 || true)
  [ -n "$tls_port" ] && break
  sleep 0.1
done
if [ -z "$tls_port" ]; then
  echo "   -> openssl s_server did not start within 30 s; svid watch's log ($dir/svid-watch.log):" >&2
  cat "$dir/svid-watch.log" >&2
  ok=0
else
  echo "$tls_port" >"$dir/tls-app-server.port"
  echo "   openssl s_client -connect 127.0.0.1:$tls_port -CAfile $data/root-cert.pem"
  s_client=$(openssl s_client -connect "127.0.0.1:$tls_port" -CAfile "$data/root-cert.pem" -verify_return_error \
    </dev/null 2>/dev/null || true)
  san=$(openssl x509 -noout -ext subjectAltName <<<"$s_client" 2>/dev/null | tail -n +2 | tr -d ' ' || true)
  verify=$(grep -m1 -o 'Verify return code: .*' <<<"$s_client" || echo 'no handshake')
  if [ "$verify" = "Verify return code: 0 (ok)" ] && [ "$san" = "URI:$tls_app_id" ]; then
    echo "   -> $san, verified against the CA's root, as expected"
  else
    echo "   -> got ${san:-no certificate} ($verify), expected URI:$tls_app_id" >&2
    ok=0
  fi
fi

echo
echo "== meshid status"
for _ in $(seq 50); do
  "$meshid" status --data-dir "$data" | grep -c SYNCED | grep -qx 3 && break
  sleep 0.2
done
"$meshid" status --data-dir "$data"

echo
echo "== the certificates the CA issued, from its ledger (meshid certs list)"
"$meshid" certs list --data-dir "$data" --limit 10

if [ $ok = 1 ]; then echo; echo "all four outcomes as expected"; else echo; echo "UNEXPECTED OUTCOME (logs in $dir)" >&2; fi
if [ $once = 1 ]; then
  [ $ok = 1 ]
  exit $?
fi
cat <<EOF

The mesh keeps running (logs in $dir). Try:
  curl -H 'Host: hello-b' http://$out_a/hello          # allowed
  curl -H 'Host: hello-b' http://$out_a/admin          # denied
  openssl s_client -connect 127.0.0.1:$tls_port -CAfile $data/root-cert.pem </dev/null   # tls-app
  $meshid svid fetch --socket $api_sock -o json        # this user's identity, by attestation
  $meshid apply -f examples/demo --data-dir $data      # edit examples/demo first: a new version
  $meshid status --data-dir $data
  $meshid certs list --data-dir $data --json
Ctrl-C stops everything.
EOF
wait
