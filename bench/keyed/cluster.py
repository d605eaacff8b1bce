#!/usr/bin/env python3
"""Keyed pipeline benchmark: one node against three nodes of one machine.

A pipeline of parallelism 3 reads RECORDS generated records, parses the id (jq), keys each
record by `id % 1000` (key_by), computes a field after the key (jq, run where the key
lands), and writes part files (checkpoints every second: the same durability everywhere).
It runs on a 1-node cluster (every partition on one node: records cross partitions
through in-process channels) and on a 3-node cluster (one partition per node: two thirds
of the records cross to another node over the exchange), each beside the same pipeline
without the key_by (nothing crosses), in alternating rounds. The clock runs from the create
request to the pipeline's `finished` state; each output is checked (every id once, each key
in one partition). Prints records/s, the keyed/unkeyed ratio on each cluster (the share of
the cost the exchange takes there) and 3-node/1-node.

On a 2-core machine three nodes share the same two cores, so three nodes cannot be faster
than one: the figure to read is what the exchange costs, not a scale-out.

    ROUNDS=2 RECORDS=600000 WIRE=target/release/wire python3 bench/keyed/cluster.py
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from wire_cluster import Node, get, send, start_cluster, stop_cluster, until  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "2"))
RECORDS = int(os.environ.get("RECORDS", "600000"))
KEYS = 1000
PARALLELISM = 3


def spec(name: str, out: str, keyed: bool) -> dict:
    transforms = [{"type": "jq", "config": {"filter": ".id |= tonumber"}}]
    if keyed:
        transforms.append({"type": "key_by", "config": {"key": f".id % {KEYS}"}})
    transforms.append({"type": "jq", "config": {"filter": f".k = (.id % {KEYS})"}})
    return {
        "name": name,
        "parallelism": PARALLELISM,
        "checkpoint_interval": "1s",
        "sources": [{"type": "generator",
                     "config": {"count": RECORDS, "template": {"id": "{{seq}}"}}}],
        "transforms": transforms,
        "sinks": [{"type": "file", "config": {"path": out}}],
    }


def check(out: str, keyed: bool) -> str:
    """Every id once; with the key_by, each key's records in one partition's files."""
    seen = set()
    homes: Dict[int, set] = {}
    for name in os.listdir(out):
        if not name.startswith("part-"):
            continue
        partition = name.split("-")[1]
        with open(os.path.join(out, name)) as f:
            for line in f:
                v = json.loads(line)
                if v["id"] in seen:
                    raise SystemExit(f"id {v['id']} twice in {out}")
                seen.add(v["id"])
                homes.setdefault(v["k"], set()).add(partition)
    if len(seen) != RECORDS:
        raise SystemExit(f"{len(seen)} of {RECORDS} records in {out}")
    if keyed and any(len(h) > 1 for h in homes.values()):
        raise SystemExit(f"a key in several partitions in {out}")
    return "exact" + (", keys on one partition" if keyed else "")


def run(nodes: List[Node], root: str, label: str, keyed: bool, round_: int) -> Tuple[float, str]:
    name = f"{label}-{'keyed' if keyed else 'plain'}-{round_}"
    out = os.path.join(root, "out", name)
    url = nodes[0].url(f"/pipelines/{name}")
    t0 = time.monotonic()
    send("POST", nodes[0].url("/pipelines"), spec(name, out, keyed))
    until(f"{name} finished", 600, lambda: (get(url) or {}).get("state") == "finished")
    dt = time.monotonic() - t0
    verdict = check(out, keyed)
    send("DELETE", url)
    shutil.rmtree(out, ignore_errors=True)
    print(f"round {round_}: {label} {'keyed' if keyed else 'plain'}: {RECORDS / dt:,.0f} records/s ({verdict})",
          file=sys.stderr, flush=True)
    return dt, verdict


def main() -> int:
    root = tempfile.mkdtemp(prefix="wire-keyed-")
    clusters: Dict[str, List[Node]] = {}
    try:
        clusters["1 node"] = start_cluster(os.path.join(root, "one"), 1)
        clusters["3 nodes"] = start_cluster(os.path.join(root, "three"), 3)
        best: Dict[Tuple[str, bool], float] = {}
        verdicts: Dict[Tuple[str, bool], str] = {}
        for r in range(1, ROUNDS + 1):
            for label, nodes in clusters.items():
                for keyed in (True, False):
                    dt, verdict = run(nodes, root, label.replace(" ", ""), keyed, r)
                    key = (label, keyed)
                    best[key] = min(best.get(key, dt), dt)
                    verdicts[key] = verdict
        rate = {k: RECORDS / v for k, v in best.items()}
        print(f"{RECORDS:,} records, parallelism {PARALLELISM}, {KEYS} keys, best of {ROUNDS} "
              f"alternating rounds, file sink with a checkpoint every 1 s for all")
        print()
        print("| cluster | keyed (key_by) | plain (no key_by) | keyed / plain (what key_by and the exchange cost) | output |")
        print("|---|---|---|---|---|")
        for label in clusters:
            k, p = rate[(label, True)], rate[(label, False)]
            print(f"| {label} | {k:,.0f} records/s | {p:,.0f} records/s | {k / p:.2f}x "
                  f"({max(0.0, 1 - k / p) * 100:.0f}% of the time) | {verdicts[(label, True)]} |")
        ratio = rate[("3 nodes", True)] / rate[("1 node", True)]
        print()
        print(f"keyed, 3 nodes / 1 node: {ratio:.2f}x (three nodes on {os.cpu_count()} cores)")
        return 0
    finally:
        for nodes in clusters.values():
            stop_cluster(nodes)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
