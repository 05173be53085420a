#!/usr/bin/env bash
# Installs everything meshid needs to build, run and test on Debian 12. Idempotent: when every
# package is already present it does not touch apt at all.
set -euo pipefail

packages=(
  # toolchain (clang-format: the format.check test)
  g++ cmake ninja-build pkg-config git clang libclang-rt-14-dev clang-format
  # libraries
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev libssl-dev libbotan-2-dev
  libpqxx-dev libsqlite3-dev libspdlog-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libboost-dev libgtest-dev libgmock-dev libbenchmark-dev libp11-kit-dev
  # runtime peers used by tests and demos
  postgresql python3-grpcio openssl curl procps util-linux
  # benchmarks (bench/meshproxy): load generator and the reference proxy
  wrk haproxy
  # the Workload API demo and test (svid watch keeping nginx's certificate current)
  nginx
  # CA keys in a PKCS#11 token: SoftHSM2 as the token, OpenSC's pkcs11-tool to put keys in it
  softhsm2 opensc
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node interop clients (@grpc/grpc-js with Envoy's own protos from @grpc/grpc-js-xds).
root=$(cd "$(dirname "$0")/.." && pwd)
node_dir="$root/tests/interop/node"
if [ -f "$node_dir/package-lock.json" ] && [ ! -d "$node_dir/node_modules/@grpc/grpc-js-xds" ]; then
  echo "install-deps: npm ci in tests/interop/node"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
echo "install-deps: ok"
