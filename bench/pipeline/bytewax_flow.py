"""The pipeline benchmark's work in Bytewax 0.21: read JSON lines, keep amount > 5, add
amount_cents, write JSON lines (its FileSource, Python map and filter). The sink is its
FileSink, which fsyncs every batch, or with BENCH_FSYNC=0 a plain file sink that does not
(its output sits in the page cache, as the Rust loop's does)."""

import atexit
import json
import os
import sys
import time
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import FileSink, FileSource
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

inputs = os.environ["BENCH_INPUTS"].split(",")
out = Path(os.environ["BENCH_OUT"])
started = time.monotonic()


def report() -> None:
    with open("/proc/self/status") as f:
        hwm = next(l.split()[1] for l in f if l.startswith("VmHWM:"))
    print(f"bytewax seconds={time.monotonic() - started:.3f} peak_rss_kib={hwm}", file=sys.stderr)


atexit.register(report)


def cents(e: dict) -> dict:
    e["amount_cents"] = int(e["amount"] * 100)
    return e


flow = Dataflow("bench")
streams = [op.input(f"in{i}", flow, FileSource(Path(p))) for i, p in enumerate(inputs)]
lines = op.merge("merge", *streams) if len(streams) > 1 else streams[0]
parsed = op.map("parse", lines, json.loads)
big = op.filter("big", parsed, lambda e: e["amount"] > 5)
enriched = op.map("cents", big, cents)


class _Lines(StatelessSinkPartition):
    def __init__(self, path: Path) -> None:
        self._f = open(path, "a")

    def write_batch(self, items: list) -> None:
        for item in items:
            self._f.write(item)
            self._f.write("\n")

    def close(self) -> None:
        self._f.close()


class LinesNoFsync(DynamicSink):
    """JSON lines appended to one file, never fsynced."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Lines:
        return _Lines(self._path)


if os.environ.get("BENCH_FSYNC", "1") == "0":
    op.output("out", op.map("ser", enriched, json.dumps), LinesNoFsync(out))
else:
    keyed = op.map("ser", enriched, lambda e: ("all", json.dumps(e)))
    op.output("out", keyed, FileSink(out))
