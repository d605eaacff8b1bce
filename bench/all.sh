#!/usr/bin/env bash
# Every benchmark in one run (`make bench`): kv (Wire vs etcd), pipeline (Wire vs the ideal
# Rust loop vs Bytewax), Python (Wire vs Bytewax vs a plain loop), connectors (Wire vs a raw
# consumer, clocks at visibility), failover (Wire vs etcd leader kills), pipeline failover,
# keyed pipelines on 1 vs 3 nodes, and stateful operators. Each runs its contenders side by side in alternating
# rounds and checks their output; this script writes what each printed, with the machine,
# the date and the versions, to bench/RESULTS.md. A benchmark that fails is recorded as
# failed and the run goes on; the exit status says whether all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
out=bench/RESULTS.md
logs=$(mktemp -d /tmp/wire-bench-all.XXXXXX)
trap 'rm -rf "$logs"' EXIT

version() { "$@" 2>/dev/null | head -1 || echo "not installed"; }
status=0
run() { # name command...
  local name=$1; shift
  echo "== $name: $*" >&2
  local started=$SECONDS
  if "$@" >"$logs/$name.txt" 2>"$logs/$name.err"; then
    echo "ok" >"$logs/$name.status"
  else
    echo "FAILED (exit $?)" >"$logs/$name.status"
    status=1
  fi
  echo "$((SECONDS - started)) s" >"$logs/$name.time"
}

run kv bash bench/kv/run.sh
run pipeline bash bench/pipeline/run.sh
run python bash bench/python/run.sh
run connectors bash bench/connectors/run.sh
run failover bash bench/failover/run.sh
run pipeline-failover bash -c 'cargo build -q --release -p wire-core --bin wire && python3 bench/failover/pipelines.py'
run keyed bash -c 'cargo build -q --release -p wire-core --bin wire && python3 bench/keyed/cluster.py'
run stateful make -s bench-stateful
for s in tests/services/*.sh; do [ "$s" = tests/services/lib.sh ] || bash "$s" stop >/dev/null 2>&1; done

{
  echo "# Benchmark results"
  echo
  echo "Written by \`make bench\` (bench/all.sh); the README quotes these figures."
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date | $(date -u '+%Y-%m-%d %H:%M UTC') |"
  echo "| machine | $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r) |"
  echo "| wire | $(git rev-parse --short HEAD) ($(version rustc --version)) |"
  echo "| etcd | $(version etcd --version) |"
  echo "| bytewax | $("$HOME/.cache/wire-bench/bytewax-venv/bin/pip" show bytewax 2>/dev/null | sed -n 's/^Version: //p') (PyPI, bench virtualenvs) |"
  echo "| servers | Kafka and OpenSearch of tests/services (see their scripts for versions) |"
  echo "| python | $(version python3 --version) |"
  for name in kv pipeline python connectors failover pipeline-failover keyed stateful; do
    echo
    echo "## $name — $(cat "$logs/$name.status"), $(cat "$logs/$name.time")"
    echo
    echo '```'
    # The summary each benchmark prints at its end (its per-round lines go to stderr).
    tail -n 40 "$logs/$name.txt"
    if [ "$(cat "$logs/$name.status")" != ok ]; then
      echo "--- stderr (last 20 lines) ---"
      tail -n 20 "$logs/$name.err"
    fi
    echo '```'
  done
} >"$out"
echo "wrote $out" >&2
exit "$status"
