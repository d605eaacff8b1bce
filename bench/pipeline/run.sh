#!/usr/bin/env bash
# Pipeline benchmark: the same 1,000,000 JSON lines (one file: the file source reads a big
# file as byte-range splits, so two partitions share it) through "keep amount > 5, add
# amount_cents":
#   - Wire file -> jq -> file, parallelism 1 and 2 (a release `wire node`, timed from the
#     pipeline's creation to its `finished` state, peak RSS from /proc);
#   - plain Rust (the native limit, written as the ideal: one reused line buffer, a typed
#     record borrowing from it), on one thread and as a reader thread + a worker;
#   - Bytewax 0.21 from PyPI, one worker, with a Python map and filter, with its FileSink
#     (fsync per batch) and with a sink that does not fsync.
# Every contender's output is checked against the expected records (count, sum of ids,
# amount_cents of each): the run fails if one differs. Rounds alternate (ROUNDS, default 2)
# and the best of each contender is kept. Prints records/s, peak RSS, durability and ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-2}
LINES=${LINES:-1000000}
work=$(mktemp -d /tmp/wire-bench-pipeline.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
cargo build --release -q -p wire-core --bin wire
cargo bench -q -p wire-core --bench pipeline_loop --no-run
loop_bin=$(ls -t target/release/deps/pipeline_loop-* | grep -v '\.d$' | head -1)

venv="${BENCH_VENV:-$HOME/.cache/wire-bench/bytewax-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'bytewax==0.21.*'
fi

python3 - "$work" "$LINES" <<'PY'
import json, random, sys
work, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
users = [f"user-{i}" for i in range(1000)]
count = total = 0
with open(f"{work}/in.jsonl", "w") as f:
    for i in range(n):
        amount = round(random.random() * 10, 2)
        f.write(json.dumps({"id": i, "user": random.choice(users), "amount": amount,
                            "tags": ["a", "b"], "note": "x" * 20}) + "\n")
        if amount > 5:
            count += 1
            total += i
with open(f"{work}/expected", "w") as f:
    f.write(f"{count} {total}\n")
PY

# Checks a contender's output against the expected records; fails the run when it differs.
check() { python3 bench/check_output.py "$work/expected" "$@"; }
inputs="$work/in.jsonl"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Runs the Wire pipeline at parallelism $1; prints "seconds peak_rss_kib".
run_wire() {
  local p=$1 dir="$work/wire-$1-$RANDOM" http raft pid
  http="127.0.0.1:$(port)"; raft="127.0.0.1:$(port)"
  target/release/wire node --node-id 1 --http-addr "$http" --raft-addr "$raft" \
    --data-dir "$dir/node" --bootstrap --log-level warn 2>"$dir.log" &
  pid=$!
  until curl -sf "http://$http/ready" >/dev/null; do sleep 0.05; done
  local spec
  spec=$(printf '{"name":"bench","parallelism":%d,"checkpoint_interval":"5s",
    "sources":[{"type":"file","config":{"path":"%s/in.jsonl"}}],
    "transforms":[{"type":"jq","config":{"filter":"select(.amount > 5) | .amount_cents = (.amount * 100 | floor)"}}],
    "sinks":[{"type":"file","config":{"path":"%s/out"}}]}' "$p" "$work" "$dir")
  # One keep-alive client creates the pipeline and polls it every 10 ms: a curl and a grep
  # per poll took a tenth of the machine's two cores away from the node.
  local secs
  secs=$(python3 - "$http" "$spec" <<'POLL'
import http.client, json, sys, time
conn = http.client.HTTPConnection(sys.argv[1])
t0 = time.monotonic()
conn.request("POST", "/pipelines", sys.argv[2], {"content-type": "application/json"})
r = conn.getresponse(); r.read()
assert r.status < 300, r.status
while True:
    conn.request("GET", "/pipelines/bench")
    body = conn.getresponse().read()
    if json.loads(body).get("state") == "finished":
        break
    time.sleep(0.01)
print(f"{time.monotonic() - t0:.3f}")
POLL
)
  local hwm
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  check "wire p$p" "$dir/out" >&2
  echo "$secs $hwm"
  rm -rf "$dir"
}

run_loop() { # threads
  "$loop_bin" --threads "$1" "$work/loop-out.jsonl" "$work/in.jsonl" \
    | sed -E 's/.*seconds=([0-9.]+).*peak_rss_kib=([0-9]+).*/\1 \2/'
  check "loop $1" "$work/loop-out.jsonl" >&2
  rm -f "$work/loop-out.jsonl"
}

run_bytewax() { # fsync: 1 (FileSink) or 0
  rm -f "$work/bw-out.jsonl"
  (cd bench/pipeline && BENCH_INPUTS="$inputs" BENCH_OUT="$work/bw-out.jsonl" BENCH_FSYNC="$1" \
    "$venv/bin/python" -m bytewax.run bytewax_flow:flow 2>&1 >/dev/null) \
    | sed -nE 's/^bytewax seconds=([0-9.]+) peak_rss_kib=([0-9]+)/\1 \2/p'
  check "bytewax fsync=$1" "$work/bw-out.jsonl" >&2
}

declare -A best_s best_rss last_s
keep() { # name "seconds rss"
  local s=${2% *} r=${2#* }
  last_s[$1]=$s
  if [ -z "${best_s[$1]:-}" ] || (( $(echo "$s < ${best_s[$1]}" | bc -l) )); then
    best_s[$1]=$s; best_rss[$1]=$r
  fi
}
# Each contender starts with nothing dirty in the page cache (`sync` first): another's
# unsynced output would otherwise be written out inside the next one's fsync.
for round in $(seq "$ROUNDS"); do
  sync; keep wire_p1 "$(run_wire 1)"
  sync; keep wire_p2 "$(run_wire 2)"
  sync; keep loop_1t "$(run_loop 1)"
  sync; keep loop_2t "$(run_loop 2)"
  sync; keep bytewax "$(run_bytewax 1)"
  sync; keep bytewax_nofsync "$(run_bytewax 0)"
  echo "round $round: wire p1 ${last_s[wire_p1]}s  p2 ${last_s[wire_p2]}s  loop ${last_s[loop_1t]}s/${last_s[loop_2t]}s  bytewax ${last_s[bytewax]}s/${last_s[bytewax_nofsync]}s" >&2
done

declare -A durability=(
  [wire_p1]="fsync per checkpoint (5 s) and at the end"
  [wire_p2]="fsync per checkpoint (5 s) and at the end"
  [loop_1t]="none (page cache)"
  [loop_2t]="none (page cache)"
  [bytewax]="fsync per batch (FileSink)"
  [bytewax_nofsync]="none (page cache)"
)
rate() { echo "$LINES / $1" | bc -l; }
echo "every contender's output checked: $(cut -d' ' -f1 "$work/expected") records, ids and amount_cents as expected"
printf '%-16s %12s %14s  %s\n' name records/s peak_rss_MiB durability
for k in wire_p1 wire_p2 loop_1t loop_2t bytewax bytewax_nofsync; do
  printf '%-16s %12.0f %14.1f  %s\n' "$k" "$(rate "${best_s[$k]}")" "$(echo "${best_rss[$k]} / 1024" | bc -l)" "${durability[$k]}"
done
ratio() { echo "${best_s[$2]} / ${best_s[$1]}" | bc -l; }
printf 'ratio wire p1 / bytewax = %.2fx, / bytewax without fsync = %.2fx (target 10x)\n' "$(ratio wire_p1 bytewax)" "$(ratio wire_p1 bytewax_nofsync)"
printf 'ratio wire p1 / rust loop 1 thread = %.2fx, / 2 threads = %.2fx (target 0.75x)\n' "$(ratio wire_p1 loop_1t)" "$(ratio wire_p1 loop_2t)"
printf 'ratio wire p2 / wire p1 = %.2fx (target 1.7x)\n' "$(ratio wire_p2 wire_p1)"
