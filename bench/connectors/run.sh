#!/usr/bin/env bash
# Connector benchmark: 1,000,000 JSON records in a 2-partition Kafka topic (the real broker
# of tests/services/kafka.sh), read
#   - by a raw rdkafka consumer into nothing (the native limit of reading the topic);
#   - by Wire, Kafka -> jq -> Kafka (parallelism 2);
#   - by Wire, Kafka -> jq -> Elasticsearch (OpenSearch 2.19 of tests/services/opensearch.sh);
#   - and beside it the search server's own rate: the same documents bulk-indexed straight
#     into it by two clients (bench/connectors/bulk_direct.py);
# each timed until every record is visible to an independent reader (Wire: from the
# pipeline's creation, a release `wire node`, until the output topic's high watermarks sum
# to N / OpenSearch's `_count` after a refresh is N); the count is asserted (exactly N: no
# fault, so no replay). Prints records/s and the ratios to the raw consumer.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000000}
work=$(mktemp -d /tmp/wire-bench-connectors.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

kafka=$(bash tests/services/kafka.sh start)
search=$(bash tests/services/opensearch.sh start)
cargo build --release -q -p wire-core --bin wire
cargo bench -q -p wire-core --bench kafka_tool --no-run
tool=$(ls -t target/release/deps/kafka_tool-* | grep -v '\.d$' | head -1)

topic="bench-$(date +%s%N)"
echo "producing $N records to $topic" >&2
"$tool" produce "$kafka" "$topic" 2 "$N"

raw=$("$tool" consume "$kafka" "$topic" "$N" | sed -nE 's/seconds=([0-9.]+).*/\1/p')

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# How many records are visible: in the output topic, or in the index.
kafka_visible() { "$tool" count "$kafka" "$topic-out"; }
es_visible() {
  curl -sf -X POST "$search/$index/_refresh" >/dev/null 2>&1 || true
  curl -sf "$search/$index/_count" 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])' 2>/dev/null || echo 0
}

# Runs one Wire pipeline whose sink is $1 (JSON); prints seconds until `$2` (a visibility
# function) shows N records, and fails the run if it shows another count.
run_wire() {
  local sink=$1 visible=$2 dir="$work/wire-$RANDOM" http raft pid
  http="127.0.0.1:$(port)"; raft="127.0.0.1:$(port)"
  target/release/wire node --node-id 1 --http-addr "$http" --raft-addr "$raft" \
    --data-dir "$dir/node" --bootstrap --log-level warn 2>"$dir.log" &
  pid=$!
  until curl -sf "http://$http/ready" >/dev/null; do sleep 0.05; done
  local spec t0 t1
  spec=$(printf '{"name":"bench","parallelism":2,"checkpoint_interval":"2s",
    "sources":[{"type":"kafka","config":{"bootstrap_servers":"%s","topics":["%s"]}}],
    "transforms":[{"type":"jq","config":{"filter":".amount_cents = (.amount * 100 | floor)"}}],
    "sinks":[%s]}' "$kafka" "$topic" "$sink")
  t0=$(date +%s.%N)
  curl -sf -X POST "http://$http/pipelines" -H 'content-type: application/json' -d "$spec" >/dev/null
  until [ "$("$visible")" -ge "$N" ]; do
    sleep 0.1
  done
  t1=$(date +%s.%N)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local seen
  seen=$("$visible")
  if [ "$seen" -ne "$N" ]; then
    echo "bench: $seen records visible through $visible, expected $N" >&2
    exit 1
  fi
  echo "$t1 - $t0" | bc -l
}

"$tool" create "$kafka" "$topic-out" 2
k2k=$(run_wire "{\"type\":\"kafka\",\"config\":{\"bootstrap_servers\":\"$kafka\",\"topic\":\"$topic-out\"}}" kafka_visible)
index="$topic"
k2es=$(run_wire "{\"type\":\"elasticsearch\",\"config\":{\"url\":\"$search\",\"index\":\"$index\",\"max_docs\":5000}}" es_visible)
indexed=$(es_visible)
direct=$(python3 bench/connectors/bulk_direct.py "$search" "$index-direct" "$N")

rate() { echo "$N / $1" | bc -l; }
printf '%-26s %12s\n' name records/s
printf '%-26s %12.0f\n' "raw rdkafka consumer" "$(rate "$raw")"
printf '%-26s %12.0f\n' "wire kafka -> jq -> kafka" "$(rate "$k2k")"
printf '%-26s %12.0f   (%s documents indexed)\n' "wire kafka -> jq -> es" "$(rate "$k2es")" "$indexed"
printf '%-26s %12.0f   (the server alone: 2 clients bulk-indexing the same documents)\n' "opensearch bulk, direct" "$(rate "$direct")"
printf 'ratio wire kafka->kafka / raw consumer = %.2fx\n' "$(echo "$raw / $k2k" | bc -l)"
printf 'ratio wire kafka->es / raw consumer = %.2fx\n' "$(echo "$raw / $k2es" | bc -l)"
printf 'ratio wire kafka->es / the server alone = %.2fx\n' "$(echo "$direct / $k2es" | bc -l)"
