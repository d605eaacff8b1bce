"""Real `wire node` processes on 127.0.0.1 for the benchmarks: start a cluster, poll and
call its HTTP API, kill -9 and restart nodes. Used by bench/failover/pipelines.py and
bench/keyed/cluster.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from typing import Any, Dict, List, Optional

WIRE = os.environ.get("WIRE", "target/release/wire")


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


def start_cluster(root: str, size: int) -> List[Node]:
    """`size` nodes under `root`, node 1 bootstrapped and the others joined to it."""
    os.makedirs(root, exist_ok=True)
    nodes = [Node(root, 1, None)]
    until("node 1", 20, lambda: (get(nodes[0].url("/status")) or {}).get("leader"))
    for i in range(2, size + 1):
        nodes.append(Node(root, i, nodes[0].http))
        until(f"node {i}", 30, lambda: len((get(nodes[0].url("/status")) or {}).get("members", [])) >= i)
    return nodes


def stop_cluster(nodes: List[Node]) -> None:
    for n in nodes:
        if n.proc is not None:
            n.kill9()
