"""Orders, enriched and keyed in Python, on a node this script hosts.

    pip install .            # from the repository root (builds the native module)
    python examples/python/orders.py

It writes a few orders to a JSON-lines file, runs them through a Python map, filter and
key_by, prints the committed output, the pipeline's counters, and the one bad line that
went to the dead-letter sink with the reason. While it runs, the node's HTTP API answers
on 127.0.0.1:8081 (try `curl 127.0.0.1:8081/pipelines/orders`).
"""

import json
import pathlib
import tempfile

import wire

root = pathlib.Path(tempfile.mkdtemp(prefix="wire-orders-"))
events = root / "events.jsonl"
orders = [
    {"user": "ann", "amount": 7.5},
    {"user": "bob", "amount": 2.0},
    {"user": "cy", "amount": 12.25},
    {"user": "ann", "amount": 6.0},
]
events.write_text("".join(json.dumps(o) + "\n" for o in orders) + "{this line is not JSON\n")


def enrich(event: dict) -> dict:
    event["amount_cents"] = int(event["amount"] * 100)
    return event


flow = (
    wire.Pipeline("orders", parallelism=2)
    .source(wire.sources.file(events))
    .map(enrich)
    .filter(lambda e: e["amount"] > 5)
    .key_by(lambda e: e["user"])
    .sink(wire.sinks.file(root / "out"))
    .dead_letter(wire.sinks.file(root / "dead"))
)

with wire.Node(node_id=1, http_addr="127.0.0.1:8081", raft_addr="127.0.0.1:9081",
               data_dir=root / "node", bootstrap=True) as node:
    node.kv.put("greeting", b"hello")
    print("kv:", node.kv.get("greeting"))
    node.pipelines.deploy(flow)
    status = node.pipelines.wait("orders", timeout=60)
    print("state:", status["state"])
    for step, counters in status["steps"].items():
        print(f"  {step:12} in={counters['records_in']:<3} out={counters['records_out']:<3} "
              f"dead={counters['dead_lettered']}")

for part in sorted((root / "out").glob("part-*")):
    print(part.name, part.read_text().strip().replace("\n", "\n" + " " * (len(part.name) + 1)))
for part in sorted((root / "dead").glob("part-*")):
    for line in part.read_text().splitlines():
        dead = json.loads(line)
        print("dead letter:", dead["raw"], "->", dead["error"])
