#!/usr/bin/env bash
# Python benchmark: one 1,000,000-line JSON file through the same Python functions
# (bench/python/work.py: add amount_cents, keep amount > 5) in
#   - Wire, per-record Python map + filter (file source -> file sink, one partition);
#   - Wire, the batch form of the same functions;
#   - Bytewax 0.21 from PyPI with its FileSource/FileSink, one worker;
#   - Wire with the same work on columnar batches: pyarrow compute and polars expressions
#     (map_batches / filter_batches);
#   - a plain Python loop (json.loads -> functions -> json.dumps), and the same with orjson.
# Wire is a release build of the wheel installed in the bench virtualenv beside Bytewax.
# Every contender's output is checked against the expected records (bench/check_output.py;
# the run fails if one differs), each starts after a `sync`, and the table says what each
# makes durable. Rounds alternate (ROUNDS, default 2); the best of each is kept. Prints
# records/s, peak RSS and the ratios against the targets.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-2}
LINES=${LINES:-1000000}
work=$(mktemp -d /tmp/wire-bench-python.XXXXXX)
trap 'rm -rf "$work"' EXIT
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

venv="${BENCH_VENV:-$HOME/.cache/wire-bench/python-venv}"
bash bench/wheel.sh

"$venv/bin/python" - "$work/in.jsonl" "$LINES" "$work/expected" <<'PY'
import json, random, sys
path, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
users = [f"user-{i}" for i in range(1000)]
count = total = 0
with open(path, "w") as f:
    for i in range(n):
        amount = round(random.random() * 10, 2)
        f.write(json.dumps({"id": i, "user": random.choice(users), "amount": amount,
                            "tags": ["a", "b"], "note": "x" * 20}) + "\n")
        if amount > 5:
            count += 1
            total += i
with open(sys.argv[3], "w") as f:
    f.write(f"{count} {total}\n")
PY

parse() { sed -nE 's/.*seconds=([0-9.]+) peak_rss_kib=([0-9]+).*/\1 \2/p'; }
run() { # kind -> "seconds rss"
  local out="$work/out-$RANDOM"
  if [ "$1" = bytewax ]; then
    (cd bench/python && BENCH_INPUT="$work/in.jsonl" BENCH_OUT="$out.jsonl" \
      "$venv/bin/python" -m bytewax.run bytewax_flow:flow 2>&1 >/dev/null) | parse
    python3 bench/check_output.py "$work/expected" "$1" "$out.jsonl" >&2
  else
    (cd bench/python && "$venv/bin/python" contenders.py "$1" "$work/in.jsonl" "$out" 2>&1 >/dev/null) | parse
    python3 bench/check_output.py "$work/expected" "$1" "$out" >&2
  fi
  rm -rf "$out" "$out.jsonl"
}

declare -A best_s best_rss last_s
keep() { # name "seconds rss"
  local s=${2% *} r=${2#* }
  last_s[$1]=$s
  if [ -z "$s" ]; then echo "bench: $1 did not report" >&2; exit 1; fi
  if [ -z "${best_s[$1]:-}" ] || (( $(echo "$s < ${best_s[$1]}" | bc -l) )); then
    best_s[$1]=$s; best_rss[$1]=$r
  fi
}
kinds="wire-record wire-batch wire-arrow wire-polars bytewax plain orjson"
for round in $(seq "$ROUNDS"); do
  for k in $kinds; do sync; keep "$k" "$(run "$k")"; done
  echo "round $round: $(for k in $kinds; do printf '%s %ss  ' "$k" "${last_s[$k]}"; done)" >&2
done

declare -A durability=(
  [wire-record]="fsync per checkpoint (5 s) and at the end"
  [wire-batch]="fsync per checkpoint (5 s) and at the end"
  [wire-arrow]="fsync per checkpoint (5 s) and at the end"
  [wire-polars]="fsync per checkpoint (5 s) and at the end"
  [bytewax]="fsync per batch (FileSink)"
  [plain]="none (page cache)"
  [orjson]="none (page cache)"
)
rate() { echo "$LINES / $1" | bc -l; }
echo "every contender's output checked: $(cut -d' ' -f1 "$work/expected") records, ids and amount_cents as expected"
printf '%-12s %12s %14s  %s\n' name records/s peak_rss_MiB durability
for k in $kinds; do
  printf '%-12s %12.0f %14.1f  %s\n' "$k" "$(rate "${best_s[$k]}")" "$(echo "${best_rss[$k]} / 1024" | bc -l)" "${durability[$k]}"
done
ratio() { echo "${best_s[$2]} / ${best_s[$1]}" | bc -l; }
printf 'ratio wire per-record / bytewax = %.2fx (target 5x)\n' "$(ratio wire-record bytewax)"
printf 'ratio wire per-record / plain python = %.2fx (target 2x)\n' "$(ratio wire-record plain)"
printf 'ratio wire batch / wire per-record = %.2fx (target > 1x)\n' "$(ratio wire-batch wire-record)"
printf 'ratio wire arrow batches / bytewax = %.2fx (target 5x)\n' "$(ratio wire-arrow bytewax)"
printf 'ratio wire polars batches / bytewax = %.2fx (target 5x)\n' "$(ratio wire-polars bytewax)"
printf 'ratio wire arrow batches / orjson loop = %.2fx (target 2x)\n' "$(ratio wire-arrow orjson)"
printf 'ratio wire polars batches / orjson loop = %.2fx (target 2x)\n' "$(ratio wire-polars orjson)"
