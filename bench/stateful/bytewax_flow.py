"""The stateful benchmark's work in Bytewax 0.21, one worker (`python -m bytewax.run
bytewax_flow:flow`): BENCH_MODE=sum keeps a running sum per user with `stateful_map` (one
output per event); BENCH_MODE=window counts events per user and tumbling minute of event
time with `count_window` (an EventClock on the event's `ts`, no wait, the watermark moved
by event time only). FileSink fsyncs its
output at each batch; prints "seconds=S peak_rss_kib=K" on stderr at exit."""

import atexit
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax.connectors.files import FileSink, FileSource
from bytewax.dataflow import Dataflow

started = time.monotonic()
ORIGIN = datetime(1970, 1, 1, tzinfo=timezone.utc)


def report() -> None:
    with open("/proc/self/status") as f:
        hwm = next(l.split()[1] for l in f if l.startswith("VmHWM:"))
    print(f"seconds={time.monotonic() - started:.3f} peak_rss_kib={hwm}", file=sys.stderr)


atexit.register(report)

flow = Dataflow("stateful")
events = op.map("parse", op.input("in", flow, FileSource(Path(os.environ["BENCH_INPUT"]))), json.loads)
if os.environ.get("BENCH_MODE") == "sum":

    def add(total, e):
        total = (total or 0) + e["amount"]
        return total, json.dumps({"user": e["user"], "total": total})

    keyed = op.key_on("user", events, lambda e: e["user"])
    out = op.stateful_map("sum", keyed, add)
else:
    # The watermark is the newest event time, as Wire's with max_delay 0: a constant
    # "system" clock keeps processing stalls from advancing it (which made on-time events
    # late and dropped them).
    clock = win.EventClock(
        lambda e: ORIGIN + timedelta(milliseconds=e["ts"]),
        wait_for_system_duration=timedelta(seconds=0),
        now_getter=lambda: ORIGIN,
    )
    windower = win.TumblingWindower(length=timedelta(minutes=1), align_to=ORIGIN)
    counted = win.count_window("count", events, clock, windower, lambda e: e["user"])

    def line(item):
        user, (window_id, n) = item
        start = window_id * 60_000
        return user, json.dumps({"key": user, "window_start": start, "window_end": start + 60_000, "n": n})

    out = op.map("ser", counted.down, line)
op.output("out", out, FileSink(Path(os.environ["BENCH_OUT"])))
