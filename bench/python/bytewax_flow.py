"""The Python benchmark's work in Bytewax 0.21: FileSource -> json.loads -> enrich -> keep
-> json.dumps -> FileSink, one worker (`python -m bytewax.run bytewax_flow:flow`)."""

import atexit
import json
import os
import sys
import time
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import FileSink, FileSource
from bytewax.dataflow import Dataflow

from work import enrich, keep

started = time.monotonic()


def report() -> None:
    with open("/proc/self/status") as f:
        hwm = next(l.split()[1] for l in f if l.startswith("VmHWM:"))
    print(f"seconds={time.monotonic() - started:.3f} peak_rss_kib={hwm}", file=sys.stderr)


atexit.register(report)

flow = Dataflow("bench")
lines = op.input("in", flow, FileSource(Path(os.environ["BENCH_INPUT"])))
parsed = op.map("parse", lines, json.loads)
enriched = op.map("enrich", parsed, enrich)
kept = op.filter("keep", enriched, keep)
keyed = op.map("ser", kept, lambda e: ("all", json.dumps(e)))
op.output("out", keyed, FileSink(Path(os.environ["BENCH_OUT"])))
