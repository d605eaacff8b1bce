#!/usr/bin/env bash
# The linearizability and durability checks against real `wire node` processes
# (tests/linearizability, a Go program with the porcupine checker).
#
#   run.sh short   # part of `make verify`: the checker's self-test (a planted stale read must
#                  # be caught), a one-minute run under every nemesis, a durability run, and,
#                  # where network namespaces can be made (root on Linux), a 30 s run with
#                  # leader partitions (-netns)
#   run.sh long    # `make lincheck-long`: ten minutes under every nemesis, 5 nodes too
#
# WIRE (default target/debug/wire) is the binary under test; OUT (default
# target/lincheck) keeps each run's logs, history and, on failure, the visualization.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
wire="${WIRE:-$root/target/debug/wire}"
out="${OUT:-$root/target/lincheck}"
mode="${1:-short}"
rm -rf "$out" && mkdir -p "$out"
go -C "$root/tests/linearizability" build -o "$out/lincheck" .
go -C "$root/tests/linearizability" test ./...
check() { "$out/lincheck" -wire "$wire" "$@"; }

# netns_available: whether this user can make network namespaces (a throwaway one is made
# and deleted again).
netns_available() {
  local probe="wlcprobe$$"
  command -v ip > /dev/null 2>&1 || return 1
  ip netns add "$probe" > /dev/null 2>&1 || return 1
  ip netns del "$probe" > /dev/null 2>&1 || true
  return 0
}

case "$mode" in
short)
  # The checker must be able to fail: reads at consistency=local are not linearizable.
  set +e
  check -planted local -duration 10s -nemesis none -out "$out/planted" > "$out/planted.txt" 2>&1
  status=$?
  set -e
  if [ "$status" -ne 1 ]; then
    cat "$out/planted.txt"
    echo "lincheck: the planted stale reads were not reported (exit $status)" >&2
    exit 1
  fi
  echo "lincheck: planted stale reads caught"
  check -duration 60s -out "$out/lin"
  check -mode durability -duration 30s -out "$out/durability"
  if netns_available; then
    check -netns -nemesis partition,kill -duration 30s -out "$out/partition"
  else
    echo "lincheck: network namespaces unavailable, partitions skipped"
  fi
  ;;
long)
  check -duration 600s -out "$out/lin-long"
  check -duration 180s -nodes 5 -out "$out/lin-5"
  check -mode durability -duration 120s -out "$out/durability-long"
  ;;
*)
  echo "usage: run.sh short|long" >&2
  exit 2
  ;;
esac
