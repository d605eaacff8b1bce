"""Helpers shared by the tests."""

from __future__ import annotations

import json
import pathlib

import wire

FREE = {"http_addr": "127.0.0.1:0", "raft_addr": "127.0.0.1:0"}
# Short Raft timers keep elections and joins quick on a loaded 2-core machine.
FAST = {"heartbeat_ms": 50, "election_timeout_min_ms": 300, "election_timeout_max_ms": 600}


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
