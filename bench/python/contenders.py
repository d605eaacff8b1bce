"""One contender per run (a fresh process each, so peak RSS is its own):

    python contenders.py wire-record|wire-batch|wire-arrow|wire-polars|plain|orjson INPUT OUTDIR

prints "seconds=S peak_rss_kib=K records_out=N" on stderr. Bytewax runs through
bytewax_flow.py (its own runner)."""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from work import (enrich, enrich_arrow, enrich_batch, enrich_polars, keep, keep_arrow, keep_batch,
                  keep_polars)


def peak_rss_kib() -> int:
    with open("/proc/self/status") as f:
        return int(next(l.split()[1] for l in f if l.startswith("VmHWM:")))


def count_lines(out: Path) -> int:
    n = 0
    for f in out.glob("part-*") if out.is_dir() else [out]:
        with open(f, "rb") as fh:
            n += sum(1 for _ in fh)
    return n


def run_wire(path: str, out: Path, batch: bool, columnar: str = "") -> float:
    import wire

    flow = wire.Pipeline("bench", checkpoint_interval="5s").source(wire.sources.file(path))
    # GATHER=N: columnar steps gather N rows per call (max_wait 50 ms) instead of taking the
    # batches as the source reads them (1024).
    gather = int(os.environ.get("GATHER", "0"))
    opts = {"batch_size": gather, "max_wait": "50ms"} if gather else {}
    if columnar == "arrow":
        flow = flow.map_batches(enrich_arrow, **opts).filter_batches(keep_arrow, **opts)
    elif columnar == "polars":
        flow = flow.map_batches(enrich_polars, format="polars", **opts).filter_batches(
            keep_polars, format="polars", **opts)
    elif batch:
        flow = flow.map(enrich_batch, batch=True).filter(keep_batch, batch=True)
    else:
        flow = flow.map(enrich).filter(keep)
    flow = flow.sink(wire.sinks.file(out))
    with wire.Node(data_dir=tempfile.mkdtemp(dir=out.parent), bootstrap=True,
                   http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0") as node:
        node.wait_ready()
        started = time.monotonic()
        node.pipelines.deploy(flow)
        node.pipelines.wait("bench", poll=0.02)
        return time.monotonic() - started


def run_plain(path: str, out: Path) -> float:
    started = time.monotonic()
    with open(path) as src, open(out, "w") as dst:
        for line in src:
            e = enrich(json.loads(line))
            if keep(e):
                dst.write(json.dumps(e) + "\n")
    return time.monotonic() - started


def run_orjson(path: str, out: Path) -> float:
    import orjson

    started = time.monotonic()
    with open(path, "rb") as src, open(out, "wb") as dst:
        for line in src:
            e = enrich(orjson.loads(line))
            if keep(e):
                dst.write(orjson.dumps(e) + b"\n")
    return time.monotonic() - started


def main() -> None:
    kind, path, outdir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    outdir.mkdir(parents=True, exist_ok=True)
    if kind == "plain":
        out = outdir / "plain.jsonl"
        seconds = run_plain(path, out)
    elif kind == "orjson":
        out = outdir / "orjson.jsonl"
        seconds = run_orjson(path, out)
    else:
        out = outdir / kind
        columnar = kind[len("wire-"):] if kind in ("wire-arrow", "wire-polars") else ""
        seconds = run_wire(path, out, batch=(kind == "wire-batch"), columnar=columnar)
    print(f"seconds={seconds:.3f} peak_rss_kib={peak_rss_kib()} records_out={count_lines(out)}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
