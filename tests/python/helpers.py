"""Helpers shared by the tests."""

from __future__ import annotations

import json
import pathlib
import signal
import socket
import subprocess
import time
import urllib.request
import contextlib
from typing import Any, Callable, Iterator, List, Sequence

import wire

ROOT = pathlib.Path(__file__).resolve().parents[2]
FREE = {"http_addr": "127.0.0.1:0", "raft_addr": "127.0.0.1:0"}
# Short Raft timers keep elections and joins quick on a loaded 2-core machine.
FAST = {"heartbeat_ms": 50, "election_timeout_min_ms": 300, "election_timeout_max_ms": 600}
# Long ones for a cluster whose test never stops a node: a stall of the machine (a slow
# fsync, a busy neighbour) then does not move the leader under the test's requests.
CALM = {"heartbeat_ms": 100, "election_timeout_min_ms": 2000, "election_timeout_max_ms": 4000,
        "failover_after_ms": 4000}


def start_node(data_dir: pathlib.Path, node_id: int = 1, **kw: object) -> wire.Node:
    options = {**FREE, **FAST, **kw}
    return wire.Node(node_id=node_id, data_dir=data_dir, **options)  # type: ignore[arg-type]


def write_lines(path: pathlib.Path, records: list) -> pathlib.Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_output(directory: pathlib.Path) -> list:
    """Every record in the committed part files under ``directory``."""
    out = []
    for f in sorted(directory.glob("part-*")):
        out.extend(json.loads(line) for line in f.read_text().splitlines() if line)
    return out


def until(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
        except Exception:  # the page is redrawing
            got = None
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


WIRE = ROOT / "target" / "debug" / "wire"


class Proc:
    """A `wire node` process of the test cluster."""

    def __init__(self, node_id: int, data: pathlib.Path, join: "str | None", extra: Sequence[str] = (),
                 token: "str | None" = None, timers: "dict[str, int]" = FAST) -> None:
        self.id = node_id
        http, raft = _free_port(), _free_port()
        self.http_addr = f"127.0.0.1:{http}"
        self.url = f"http://{self.http_addr}"
        args = [str(WIRE), "node", "--node-id", str(node_id), "--http-addr", f"127.0.0.1:{http}",
                "--raft-addr", f"127.0.0.1:{raft}", "--data-dir", str(data), "--log-level", "warn"]
        for name, value in timers.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        args += ["--join", join] if join else ["--bootstrap"]
        args += list(extra)
        self.log = open(data.parent / f"node{node_id}.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        self.client = wire.Client(self.url, token=token)
        until(f"node {node_id} ready", self._ready, timeout=30)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process_cluster(root: pathlib.Path, extra: Sequence[str] = (), token: "str | None" = None,
                    timers: "dict[str, int]" = FAST) -> Iterator[List[Proc]]:
    """Three `wire node` processes under `root` (the first bootstraps, the others join it),
    killed on exit."""
    import pytest

    if not WIRE.exists():
        pytest.skip(f"{WIRE} is missing: cargo build -p wire-core --bin wire")
    out: List[Proc] = []
    try:
        for i in (1, 2, 3):
            (root / f"n{i}").mkdir()
            out.append(Proc(i, root / f"n{i}", out[0].http_addr if out else None, extra=extra, token=token,
                            timers=timers))
        until("three voters", lambda: len(out[0].client.members()) == 3)
        yield out
    finally:
        for p in out:
            p.proc.kill()
            p.proc.wait(timeout=10)
