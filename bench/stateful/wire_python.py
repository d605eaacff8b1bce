"""The stateful benchmark's running sum in Wire with a plain Python function (run by the
bench virtualenv's Python, with the release wheel installed): ``key_by("user")`` then
``stateful_map`` with the same function Bytewax runs (bytewax_flow.py), at parallelism 1,
checkpoints every 5 s (the state in them), file sink fsynced at each checkpoint.

    python wire_python.py INPUT OUTDIR

prints "seconds=S peak_rss_kib=K" on stderr."""

import sys
import tempfile
import time
from pathlib import Path

import wire


def add(total, e):
    total = (total or 0) + e["amount"]
    return total, {"user": e["user"], "total": total}


def main() -> None:
    path, out = sys.argv[1], Path(sys.argv[2])
    flow = (
        wire.Pipeline("bench", checkpoint_interval="5s")
        .source(wire.sources.file(path))
        .key_by("user")
        .stateful_map(add)
        .sink(wire.sinks.file(out))
    )
    with wire.Node(data_dir=tempfile.mkdtemp(dir=out.parent), bootstrap=True,
                   http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0") as node:
        node.wait_ready()
        started = time.monotonic()
        node.pipelines.deploy(flow)
        node.pipelines.wait("bench", poll=0.02)
        secs = time.monotonic() - started
    with open("/proc/self/status") as f:
        hwm = next(l.split()[1] for l in f if l.startswith("VmHWM:"))
    print(f"seconds={secs:.3f} peak_rss_kib={hwm}", file=sys.stderr)


if __name__ == "__main__":
    main()
