#!/usr/bin/env bash
# Builds meshid (Release) if needed, starts the CA on 127.0.0.1:15012 with its data in
# ./var/lib/meshid (SQLite, no Kubernetes), mints a service-account token, issues a first
# workload certificate with it, and shows it. The CA keeps running until Ctrl-C (or pass
# --once to stop after the first certificate).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$root/build" meshid

meshid="$root/build/meshid"
data="$root/var/lib/meshid"
work="$root/var/run/demo"
mkdir -p "$data" "$work"

"$meshid" server --data-dir "$data" --listen 127.0.0.1:15012 --monitoring-addr 127.0.0.1:15014 \
  >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$work/server.log" && break
  kill -0 $server 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.1
done
cat "$work/server.log"

echo
echo "== a token for service account default/sleep (meshid token create)"
"$meshid" token create --data-dir "$data" --namespace default --service-account sleep >"$work/token"
cut -c1-72 "$work/token" | sed 's/$/.../'

echo
echo "== CreateCertificate over TLS (meshid certs request)"
"$meshid" certs request --ca-addr 127.0.0.1:15012 --ca-root "$data/root-cert.pem" \
  --token-file "$work/token" --out-dir "$work/sleep"

echo
echo "== the SVID, checked by openssl"
openssl verify -CAfile "$data/root-cert.pem" "$work/sleep/cert-chain.pem"
openssl x509 -in "$work/sleep/cert-chain.pem" -noout -serial -dates \
  -ext subjectAltName,keyUsage,extendedKeyUsage,basicConstraints

echo
echo "== metrics (http://127.0.0.1:15014/metrics)"
curl -s http://127.0.0.1:15014/metrics | grep -E '^citadel_server_(csr_count|success_cert_issuance_count|root_cert_expiry_seconds) '

if [ "${1:-}" = "--once" ]; then exit 0; fi
echo
echo "The CA keeps serving on 127.0.0.1:15012 (log: $work/server.log). Ctrl-C stops it."
wait $server
