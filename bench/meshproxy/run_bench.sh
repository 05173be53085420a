#!/usr/bin/env bash
# Benchmarks the meshid sidecar against HAProxy on loopback, all in one run, with wrk:
#   direct   wrk → app
#   meshid   wrk → meshid proxy (outbound) ─mTLS→ meshid proxy (inbound, STRICT + RBAC) → app
#   haproxy  wrk → haproxy (outbound) ─mTLS→ haproxy (inbound, verify required + ACL) → app
# The app is HAProxy answering "HELLO v1" itself (fast enough not to be the bottleneck). Both
# pairs use ECDSA P-256 certificates from the same meshid CA; every proxy gets one worker
# thread. Each configuration is measured `--rounds` times, interleaved, and the median is
# reported:
#   latency:    1 connection (no queueing): p50/p99, and the p50 added per proxy hop
#   throughput: `--connections` connections: requests/s, p50/p99
#
# With --baseline-build DIR a second meshid pair runs from that build's binary (same agent, same
# certificates and policy) and is measured in the same rounds as "meshid-baseline": an A/B of two
# versions of the sidecar on the same machine at the same time.
#
# Usage: bench/meshproxy/run_bench.sh [--build DIR] [--baseline-build DIR] [--duration 10s]
#                                     [--connections 32] [--rounds 3] [--workers 1]
# Needs: wrk, haproxy, openssl, curl (Debian packages).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build"
baseline_build=""
duration=10s
connections=32
rounds=3
workers=1
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --baseline-build) baseline_build=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
meshid="$build/meshid"
for tool in wrk haproxy openssl curl python3; do
  command -v "$tool" >/dev/null || { echo "run_bench: $tool is missing (apt-get install wrk haproxy)" >&2; exit 1; }
done
[ -x "$meshid" ] || { echo "run_bench: $meshid not built (ninja -C $build meshid)" >&2; exit 1; }
baseline_meshid=""
if [ -n "$baseline_build" ]; then
  baseline_meshid="$baseline_build/meshid"
  [ -x "$baseline_meshid" ] || { echo "run_bench: $baseline_meshid not built" >&2; exit 1; }
fi

work=$(mktemp -d /tmp/meshproxy-bench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$work"/*.hapid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_log() {  # file regex → first capture group
  for _ in $(seq 1 500); do
    if v=$(grep -oP "$2" "$1" 2>/dev/null | head -1) && [ -n "$v" ]; then echo "$v"; return 0; fi
    sleep 0.02
  done
  echo "run_bench: timed out waiting for /$2/ in $1:" >&2; cat "$1" >&2; exit 1
}
wait_ready() {  # admin port
  for _ in $(seq 1 500); do
    [ "$(curl -s "http://127.0.0.1:$1/ready")" = "LIVE" ] && return 0
    sleep 0.02
  done
  echo "run_bench: proxy on admin port $1 never became ready" >&2; exit 1
}

# ---- the mesh: CA, agent, tokens ----
"$meshid" server --data-dir "$work/ca" --listen 127.0.0.1:0 --monitoring-addr 127.0.0.1:0 >"$work/server.log" 2>&1 &
pids+=($!)
ca_port=$(wait_log "$work/server.log" 'listening on 127\.0\.0\.1:\K\d+')
"$meshid" token create --data-dir "$work/ca" -n istio-system -s agent >"$work/agent.token"
"$meshid" token create --data-dir "$work/ca" -n default -s productpage >"$work/productpage.token"
"$meshid" token create --data-dir "$work/ca" -n default -s reviews >"$work/reviews.token"
"$meshid" agent --ca-addr "127.0.0.1:$ca_port" --ca-root "$work/ca/root-cert.pem" --token-file "$work/agent.token" \
  --sds-socket "$work/uds/socket" --monitoring-addr 127.0.0.1:0 --crl-file "$work/agent-crl.pem" \
  --trust-bundle-file "$work/agent-trust-bundle.pem" >"$work/agent.log" 2>&1 &
pids+=($!)
wait_log "$work/agent.log" 'sds listening on \Kunix' >/dev/null

# ---- the app ----
app_port=$(free_port)
cat >"$work/app.cfg" <<EOF
global
  maxconn 4000
  nbthread 1
defaults
  mode http
  timeout client 60s
  timeout server 60s
  timeout connect 5s
frontend app
  bind 127.0.0.1:$app_port
  http-request return status 200 content-type text/plain string "HELLO v1"
EOF
haproxy -f "$work/app.cfg" -D -p "$work/app.hapid" 2>/dev/null

# ---- the meshid pair ----
cat >"$work/policy.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: $app_port}]
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/productpage"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/reviews/*"]}}]
EOF
start_pair() {  # binary label → sets pair_out, the outbound port of its productpage sidecar
  local bin=$1 label=$2 in
  "$bin" proxy --sds-socket "$work/uds/socket" --token-file "$work/reviews.token" --service reviews \
    --inbound 127.0.0.1:0 --app "127.0.0.1:$app_port" --config "$work/policy.yaml" --admin-addr 127.0.0.1:0 \
    --workers "$workers" >"$work/$label-reviews.log" 2>&1 &
  pids+=($!)
  in=$(wait_log "$work/$label-reviews.log" 'inbound listening on 127\.0\.0\.1:\K\d+')
  wait_ready "$(wait_log "$work/$label-reviews.log" 'admin on port \K\d+')"
  "$bin" proxy --sds-socket "$work/uds/socket" --token-file "$work/productpage.token" --service productpage \
    --outbound 127.0.0.1:0 --upstream "reviews=127.0.0.1:$in" --admin-addr 127.0.0.1:0 \
    --workers "$workers" >"$work/$label-productpage.log" 2>&1 &
  pids+=($!)
  pair_out=$(wait_log "$work/$label-productpage.log" 'outbound listening on 127\.0\.0\.1:\K\d+')
  wait_ready "$(wait_log "$work/$label-productpage.log" 'admin on port \K\d+')"
}
start_pair "$meshid" meshid
meshid_out=$pair_out
configs="direct meshid haproxy"
if [ -n "$baseline_meshid" ]; then
  start_pair "$baseline_meshid" meshid-baseline
  baseline_out=$pair_out
  configs="direct meshid meshid-baseline haproxy"
fi

# ---- the HAProxy pair, with certificates from the same CA ----
mint() {  # name spiffe-id
  openssl ecparam -name prime256v1 -genkey -noout -out "$work/$1.key" 2>/dev/null
  openssl req -new -key "$work/$1.key" -subj "/" -out "$work/$1.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=critical,URI:%s\n' "$2" >"$work/$1.ext"
  openssl x509 -req -in "$work/$1.csr" -CA "$work/ca/root-cert.pem" -CAkey "$work/ca/ca-key.pem" -CAcreateserial \
    -days 1 -extfile "$work/$1.ext" -out "$work/$1.crt" 2>/dev/null
  cat "$work/$1.crt" "$work/$1.key" >"$work/$1.pem"
}
mint hp-productpage spiffe://cluster.local/ns/default/sa/productpage
mint hp-reviews spiffe://cluster.local/ns/default/sa/reviews
hp_in=$(free_port)
hp_out=$(free_port)
hp_common() {  # the global and defaults sections both HAProxy configs share
  cat <<EOF
global
  maxconn 4000
  nbthread $workers
defaults
  mode http
  timeout client 60s
  timeout server 60s
  timeout connect 5s
  option http-keep-alive
EOF
}
{ hp_common; cat <<EOF
frontend inbound
  bind 127.0.0.1:$hp_in ssl crt $work/hp-reviews.pem ca-file $work/ca/root-cert.pem verify required
  # The RBAC rule's request half (HAProxy 2.6 cannot match a URI SAN of the client certificate).
  http-request deny deny_status 403 unless { method GET } { path_beg /reviews/ }
  http-request set-header x-forwarded-client-cert "By=spiffe://cluster.local/ns/default/sa/reviews;Hash=%[ssl_c_sha1,hex]"
  default_backend app
backend app
  server app 127.0.0.1:$app_port
EOF
} >"$work/hp-in.cfg"
{ hp_common; cat <<EOF
frontend outbound
  bind 127.0.0.1:$hp_out
  default_backend reviews
backend reviews
  # verify required checks the chain; HAProxy's verifyhost cannot check a SPIFFE URI SAN.
  server reviews 127.0.0.1:$hp_in ssl crt $work/hp-productpage.pem ca-file $work/ca/root-cert.pem verify required
EOF
} >"$work/hp-out.cfg"
haproxy -f "$work/hp-in.cfg" -D -p "$work/hp-in.hapid" 2>/dev/null
haproxy -f "$work/hp-out.cfg" -D -p "$work/hp-out.hapid" 2>/dev/null

# ---- sanity: both pairs answer 200 for the allowed request and 403 otherwise ----
check() {  # url expected-status
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: reviews' "$1")
  [ "$got" = "$2" ] || { echo "run_bench: $1 answered $got, expected $2" >&2; exit 1; }
}
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$hp_out/reviews/1" >/dev/null && break; sleep 0.05; done
check "http://127.0.0.1:$app_port/reviews/1" 200
check "http://127.0.0.1:$meshid_out/reviews/1" 200
check "http://127.0.0.1:$meshid_out/admin" 403
if [ -n "$baseline_meshid" ]; then
  check "http://127.0.0.1:$baseline_out/reviews/1" 200
  check "http://127.0.0.1:$baseline_out/admin" 403
fi
check "http://127.0.0.1:$hp_out/reviews/1" 200
check "http://127.0.0.1:$hp_out/admin" 403

# ---- measure ----
to_us() {  # "57.00us" | "1.14ms" | "1.02s" → microseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'
}
declare -A results
run() {  # name url connections → "rps p50 p99"
  local out
  out=$(wrk -t1 -c"$3" -d"$duration" --latency -H 'Host: reviews' "$2")
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
  p50=$(to_us "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
  p99=$(to_us "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then echo "run_bench: errors in $1:" >&2; echo "$out" >&2; exit 1; fi
  echo "$rps $p50 $p99"
}
declare -A urls=([direct]="http://127.0.0.1:$app_port/reviews/1" [meshid]="http://127.0.0.1:$meshid_out/reviews/1"
                 [haproxy]="http://127.0.0.1:$hp_out/reviews/1")
[ -n "$baseline_meshid" ] && urls[meshid-baseline]="http://127.0.0.1:$baseline_out/reviews/1"
for r in $(seq 1 "$rounds"); do
  for name in $configs; do
    results[$name,lat,$r]=$(run "$name" "${urls[$name]}" 1)
    results[$name,thr,$r]=$(run "$name" "${urls[$name]}" "$connections")
  done
  echo "round $r of $rounds done" >&2
done
median() {  # name mode field(1=rps 2=p50 3=p99)
  for r in $(seq 1 "$rounds"); do echo "${results[$1,$2,$r]}" | awk -v f="$3" '{ print $f }'; done | sort -g |
    awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
cores=$(nproc)
load=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "meshid proxy benchmark: $(date -u +%Y-%m-%dT%H:%MZ), $cores cores, load average $load (shared machine), wrk -t1 -d$duration, median of $rounds rounds, $workers worker thread(s) per proxy"
echo
printf '| %-34s | %12s | %10s | %10s | %18s |\n' "path" "requests/s" "p50 (µs)" "p99 (µs)" "added p50 per hop"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------------" "--------------:" "-----------:" "-----------:" "-------------------:"
for mode in lat thr; do
  conns=$([ "$mode" = lat ] && echo 1 || echo "$connections")
  d50=$(median direct "$mode" 2)
  for name in $configs; do
    rps=$(median "$name" "$mode" 1)
    p50=$(median "$name" "$mode" 2)
    p99=$(median "$name" "$mode" 3)
    if [ "$name" = direct ]; then added="—"; else added=$(awk -v a="$p50" -v b="$d50" 'BEGIN { printf "%.0f µs", (a - b) / 2 }'); fi
    printf '| %-34s | %12.0f | %10.0f | %10.0f | %18s |\n' "$name, $conns connection(s)" "$rps" "$p50" "$p99" "$added"
  done
done
echo
for mode in lat thr; do
  m=$(median meshid "$mode" 1); h=$(median haproxy "$mode" 1); d=$(median direct "$mode" 1)
  awk -v m="$m" -v h="$h" -v d="$d" -v mode="$mode" 'BEGIN {
    printf "%s: meshid/haproxy throughput %.2f, meshid/direct %.2f, haproxy/direct %.2f\n",
      (mode == "lat" ? "1 connection" : "loaded"), m / h, m / d, h / d }'
  if [ -n "$baseline_meshid" ]; then
    b=$(median meshid-baseline "$mode" 1)
    awk -v m="$m" -v b="$b" -v mode="$mode" 'BEGIN {
      printf "%s: meshid/meshid-baseline throughput %.3f\n", (mode == "lat" ? "1 connection" : "loaded"), m / b }'
  fi
done
