"""The pipeline benchmark's work in Bytewax 0.21: read JSON lines, keep amount > 5, add
amount_cents, write JSON lines (its FileSource and FileSink, Python map and filter)."""

import atexit
import json
import os
import sys
import time
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import FileSink, FileSource
from bytewax.dataflow import Dataflow

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
keyed = op.map("ser", enriched, lambda e: ("all", json.dumps(e)))
op.output("out", keyed, FileSink(out))
