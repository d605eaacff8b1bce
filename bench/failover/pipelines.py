#!/usr/bin/env python3
"""Pipeline failover benchmark: how long a killed node's partitions stop.

Three `wire node` processes on 127.0.0.1 with default settings (heartbeat 100 ms, election
750-1500 ms, --failover-after-ms 3000) run a generator -> jq -> file pipeline of
parallelism 6 into one directory. KILLS times: a node that owns partitions and does not
lead is killed with kill -9; the clock runs from the kill until every one of its
partitions is running on a live node and has read records there; the node is started
again and the cluster waits until it has its share back (hand-offs) before the next kill.
Then the generator's end is reached and the output is checked: every record exactly once.

Anchors, not contenders (nothing of theirs runs here): Flink's default heartbeat timeout
is 50 s before a TaskManager counts as lost; a Kafka Streams member is dropped after the
consumer's 45 s session timeout.

    KILLS=5 WIRE=target/release/wire python3 bench/failover/pipelines.py
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from wire_cluster import Node, get, send, start_cluster, stop_cluster, until  # noqa: E402

KILLS = int(os.environ.get("KILLS", "5"))
RATE = 6000


def main() -> int:
    root = tempfile.mkdtemp(prefix="wire-failover-")
    out_dir = os.path.join(root, "out")
    nodes: List[Node] = []
    try:
        nodes = start_cluster(root, 3)
        total = RATE * (20 + 15 * KILLS)
        send("POST", nodes[0].url("/pipelines"), {
            "name": "bench",
            "parallelism": 6,
            "checkpoint_interval": "1s",
            "sources": [{"type": "generator",
                         "config": {"count": total, "rate": RATE, "template": {"id": "{{seq}}"}}}],
            "transforms": [{"type": "jq", "config": {"filter": ".id |= tonumber"}}],
            "sinks": [{"type": "file", "config": {"path": out_dir}}],
        })

        def status(skip: int = 0) -> Optional[Dict[str, Any]]:
            for n in nodes:
                if n.id != skip and n.proc is not None:
                    s = get(n.url("/pipelines/bench"))
                    if s:
                        return s
            return None

        def balanced() -> bool:
            s = status()
            if not s:
                return False
            owners = [p.get("node") for p in s["partitions"]]
            running = all(p["state"] == "running" and p.get("read", 0) > 0 for p in s["partitions"])
            return running and all(owners.count(n.id) == 2 for n in nodes)

        times: List[float] = []
        for k in range(KILLS):
            until("a balanced cluster", 60, balanced)
            st = get(nodes[0].url("/status")) or {}
            leader = (st.get("leader") or {}).get("id")
            victim = next(n for n in nodes[k % 3:] + nodes[: k % 3] if n.id != leader)
            moved = [p["partition"] for p in (status() or {})["partitions"] if p.get("node") == victim.id]
            t0 = time.monotonic()
            victim.kill9()

            def back() -> bool:
                s = status(victim.id)
                if not s:
                    return False
                parts = {p["partition"]: p for p in s["partitions"]}
                return all(parts[p].get("node") not in (None, victim.id)
                           and parts[p]["state"] == "running" and parts[p].get("read", 0) > 0
                           for p in moved)

            until("the partitions running elsewhere", 60, back)
            dt = time.monotonic() - t0
            times.append(dt)
            print(f"kill {k + 1}: node {victim.id} (partitions {moved}) -> processing again after {dt * 1000:.0f} ms", flush=True)
            victim.start()
        until("the pipeline finished", 600, lambda: (status() or {}).get("state") == "finished")
        seen: Dict[int, int] = {}
        for name in os.listdir(out_dir):
            if name.startswith("part-"):
                with open(os.path.join(out_dir, name)) as f:
                    for line in f:
                        i = json.loads(line)["id"]
                        seen[i] = seen.get(i, 0) + 1
        dups = sum(c - 1 for c in seen.values())
        ok = len(seen) == total and dups == 0
        print()
        print(f"| kills | median | max | target | output |")
        print(f"|---|---|---|---|---|")
        print(f"| {len(times)} | {statistics.median(times) * 1000:.0f} ms | {max(times) * 1000:.0f} ms "
              f"| < 5000 ms | {len(seen)}/{total} records, {dups} duplicates: {'exact' if ok else 'WRONG'} |")
        print("Anchors: Flink declares a TaskManager lost after 50 s (heartbeat.timeout); "
              "Kafka Streams after 45 s (session.timeout.ms).")
        return 0 if ok else 1
    finally:
        stop_cluster(nodes)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
