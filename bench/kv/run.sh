#!/usr/bin/env bash
# Wire vs etcd, concurrent PUTs on two 3-node clusters on 127.0.0.1, both fsyncing a write on
# a majority before acknowledging it:
#   1. wire-core/benches/kv_put.rs: Wire's HTTP API vs Debian's etcd 3.4 through its JSON
#      gateway (installs etcd-server when missing), same minimal HTTP load generator;
#   2. bench/kv/grpc: Wire's HTTP API vs etcd 3.6.16 (built from the Go module proxy) through
#      its native gRPC client (clientv3), same Go load generator, with the servers' CPU per
#      write.
# Rounds alternate between the systems in each.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v etcd >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
cargo bench -p wire-core --bench kv_put

out="$PWD/target/bench-kv"
mkdir -p "$out"
cargo build --release -q -p wire-core --bin wire
(cd bench/kv/grpc && go build -o "$out/etcd-3.6" go.etcd.io/etcd/server/v3 && go build -o "$out/kvgrpc" .)
echo
"$out/kvgrpc" -wire target/release/wire -etcd "$out/etcd-3.6" -rounds "${ROUNDS:-2}"
