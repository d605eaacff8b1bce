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
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Dict, List, Optional

WIRE = os.environ.get("WIRE", "target/release/wire")
KILLS = int(os.environ.get("KILLS", "5"))
RATE = 6000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> Optional[Any]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.load(r)
    except Exception:
        return None


def send(method: str, url: str, body: Optional[Dict[str, Any]] = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def until(what: str, timeout: float, check: Any) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


class Node:
    def __init__(self, root: str, id: int, join: Optional[str]) -> None:
        self.id = id
        self.http = f"127.0.0.1:{free_port()}"
        self.raft = f"127.0.0.1:{free_port()}"
        self.dir = os.path.join(root, f"node{id}")
        self.log = open(os.path.join(root, f"node{id}.log"), "ab")
        self.join = join
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.start(first=True)

    def start(self, first: bool = False) -> None:
        args = [WIRE, "node", "--node-id", str(self.id), "--http-addr", self.http,
                "--raft-addr", self.raft, "--data-dir", self.dir]
        if first and self.join is None:
            args.append("--bootstrap")
        if first and self.join is not None:
            args += ["--join", self.join]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def url(self, path: str) -> str:
        return f"http://{self.http}{path}"


def main() -> int:
    root = tempfile.mkdtemp(prefix="wire-failover-")
    out_dir = os.path.join(root, "out")
    nodes: List[Node] = []
    try:
        nodes.append(Node(root, 1, None))
        until("node 1", 20, lambda: (get(nodes[0].url("/status")) or {}).get("leader"))
        for i in (2, 3):
            nodes.append(Node(root, i, nodes[0].http))
            until(f"node {i}", 30, lambda: len((get(nodes[0].url("/status")) or {}).get("members", [])) >= i)
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
        for n in nodes:
            if n.proc is not None:
                n.kill9()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
