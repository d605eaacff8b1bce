#!/usr/bin/env bash
# Failover benchmark: Wire beside etcd under the same nemesis, in one run. Each is a
# 3-member cluster on 127.0.0.1 (one after the other); 10 leader kills (kill -9) and 10
# leader pauses (SIGSTOP), alternating, each on a healthy cluster, while PUTs of new keys
# go to the other members. Prints, per system and fault kind, the time from the fault to
# the first acknowledged PUT sent after it and to a new leader, the ratios etcd/Wire, and
# checks that every acknowledged key reads back with its value. The Go program of
# tests/linearizability (-mode failover) does the work; installs Debian's etcd-server when
# missing.
#
#   KILLS, PAUSES   faults per system (default 10 each)
#   WIRE            the wire binary to use (default: a release build, built first)
#   ARGS            more flags for the program (e.g. "-wire-election 1000ms-2000ms")
# The output is kept in target/bench-failover/ (output.txt; node logs and faults.jsonl
# under run/wire and run/etcd; the data dirs are removed).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v etcd >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
if [ -z "${WIRE:-}" ]; then
  CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build -q --release -p wire-core --bin wire
  WIRE=target/release/wire
fi
out=target/bench-failover
rm -rf "$out" && mkdir -p "$out"
go -C tests/linearizability build -o "$PWD/$out/lincheck" .

set +e
# shellcheck disable=SC2086 # ARGS is a list of flags
"$out/lincheck" -mode failover -wire "$WIRE" -etcd "$(command -v etcd)" \
  -kills "${KILLS:-10}" -pauses "${PAUSES:-10}" -out "$out/run" ${ARGS:-} 2>&1 | tee "$out/output.txt"
status=${PIPESTATUS[0]}
set -e
rm -rf "$out"/run/*/*-data
exit "$status"
