"""The package as a user's program meets it: a separate interpreter, signals, type stubs."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
from typing import Callable

import pytest

import wire

ROOT = pathlib.Path(__file__).resolve().parents[2]

PROGRAM = textwrap.dedent(
    """
    import sys, wire
    data, out = sys.argv[1], sys.argv[2]
    with wire.Node(node_id=1, data_dir=data, bootstrap=True,
                   http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0") as node:
        flow = (wire.Pipeline("endless", checkpoint_interval="100ms")
                .source(wire.sources.generator(rate=500))
                .map(lambda e: {"seq": e["seq"], "twice": e["seq"] * 2})
                .sink(wire.sinks.file(out)))
        node.pipelines.deploy(flow)
        node.pipelines.wait("endless", until="running", timeout=30)
        print("running", flush=True)
        node.run_forever()
    print("stopped cleanly", flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_node_cleanly(tmp_path: pathlib.Path, sig: int) -> None:
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    data, out = tmp_path / "data", tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(data), str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "running"
        time.sleep(1.0)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped cleanly" in stdout
    assert "panicked" not in stderr
    # The final checkpoint published everything read, exactly once.
    seqs = [json.loads(l)["seq"] for f in sorted(out.glob("part-*")) for l in f.read_text().splitlines()]
    assert seqs and sorted(seqs) == list(range(len(seqs)))
    # The data dir opens again: the node closed its database.
    with wire.Node(node_id=1, data_dir=data, http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0") as node:
        status = node.pipelines.status("endless")
        assert status is not None and status["partitions"][0]["epoch"] >= 1


def test_the_stubs_match_the_native_module() -> None:
    pytest.importorskip("mypy")
    run = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "wire._native"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_package_type_checks_strictly() -> None:
    pytest.importorskip("mypy")
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "-p", "wire"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "MYPYPATH": str(ROOT / "python")},
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_version_is_the_engine_version() -> None:
    # The workspace's version (Cargo.toml), as the engine and the wheel carry it.
    import re

    cargo = (ROOT / "Cargo.toml").read_text()
    match = re.search(r'^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo, re.M | re.S)
    assert match is not None, "no [workspace.package] version in Cargo.toml"
    assert wire.__version__ == match.group(1)


def kill_when(args: list, ready: "Callable[[], bool]") -> None:
    """Runs the program ``args`` (which prints "running" once its pipeline runs) and kills it
    with SIGKILL as soon as ``ready()`` holds."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "running"
        deadline = time.monotonic() + 60
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, "not ready before the kill"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()


FOLD_PROGRAM = textwrap.dedent(
    """
    import sys, wire
    data, out = sys.argv[1], sys.argv[2]
    with wire.Node(node_id=1, data_dir=data, bootstrap=True,
                   http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0") as node:
        flow = (wire.Pipeline("sums", parallelism=2, checkpoint_interval="100ms")
                .source(wire.sources.generator(count=6000, rate=1500))
                .key_by(lambda e: e["seq"] % 7)
                .fold(lambda: {"n": 0, "sum": 0},
                      lambda s, e: {"key": e["seq"] % 7, "n": s["n"] + 1, "sum": s["sum"] + e["seq"]})
                .sink(wire.sinks.file(out)))
        node.pipelines.deploy(flow)
        node.pipelines.wait("sums", until="running", timeout=30)
        print("running", flush=True)
        node.pipelines.wait("sums", timeout=120)
    print("finished", flush=True)
    """
)


def test_fold_state_survives_kill_9_of_the_hosting_process(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "fold.py"
    script.write_text(FOLD_PROGRAM)
    data, out = tmp_path / "data", tmp_path / "out"
    args = [sys.executable, str(script), str(data), str(out)]
    # Killed once some state was checkpointed and its output committed, mid-stream.
    kill_when(args, lambda: any(f.stat().st_size > 0 for f in out.glob("part-*")))
    committed = sum(1 for f in out.glob("part-*") for _ in f.read_text().splitlines())
    assert 0 < committed < 6000, "killed mid-stream"
    run = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0 and "finished" in run.stdout, run.stderr
    # Each record folded exactly once: per key, the outputs number 1..n, and the steps
    # between consecutive sums are exactly the key's sequence numbers (the two generator
    # partitions interleave, so the order of a key's records may differ from run to run).
    by_key: dict = {}
    for f in sorted(out.glob("part-*")):
        for r in map(json.loads, f.read_text().splitlines()):
            by_key.setdefault(r["key"], []).append((r["n"], r["sum"]))
    assert sorted(by_key) == list(range(7))
    for key, outputs in by_key.items():
        outputs.sort()
        seqs = list(range(key, 6000, 7))
        assert [n for n, _ in outputs] == list(range(1, len(seqs) + 1)), key
        sums = [0] + [s for _, s in outputs]
        assert sorted(b - a for a, b in zip(sums, sums[1:])) == seqs, key


PYTHON_CONNECTORS = textwrap.dedent(
    """
    import json, os, sys, time, wire
    data, out, log = sys.argv[1], sys.argv[2], sys.argv[3]

    class Api:
        def splits(self):
            return ["x", "y"]
        def read(self, split, position):
            with open(log, "a") as f:
                f.write(json.dumps([split, position]) + "\\n")
            start = position or 0
            if start >= 3000:
                return None
            time.sleep(0.01)
            return [{"split": split, "n": n} for n in range(start, start + 20)], start + 20

    class Appender:
        def __init__(self):
            self.f = open(out, "a")
        def write(self, values):
            for v in values:
                self.f.write(json.dumps(v) + "\\n")
        def flush(self):
            self.f.flush()
            os.fsync(self.f.fileno())

    with wire.Node(node_id=1, data_dir=data, bootstrap=True,
                   http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0") as node:
        flow = (wire.Pipeline("hosted", parallelism=2, checkpoint_interval="100ms")
                .source(wire.sources.python(Api(), name="api"))
                .sink(wire.sinks.python(Appender(), name="appender")))
        node.pipelines.deploy(flow)
        node.pipelines.wait("hosted", until="running", timeout=30)
        print("running", flush=True)
        node.pipelines.wait("hosted", timeout=120)
    print("finished", flush=True)
    """
)


def test_python_source_and_sink_resume_after_kill_9(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "hosted.py"
    script.write_text(PYTHON_CONNECTORS)
    data, out, log = tmp_path / "data", tmp_path / "out.jsonl", tmp_path / "reads.jsonl"
    args = [sys.executable, str(script), str(data), str(out), str(log)]
    kill_when(args, lambda: out.exists() and out.stat().st_size > 20_000)
    before = len(log.read_text().splitlines())
    run = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0 and "finished" in run.stdout, run.stderr
    # The restarted source resumed each split from a checkpointed position, not the start.
    resumed = [json.loads(l) for l in log.read_text().splitlines()[before:]]
    first = {}
    for split, position in resumed:
        first.setdefault(split, position)
    assert set(first) == {"x", "y"} and all(p is not None and p > 0 for p in first.values()), first
    # Nothing lost (at-least-once: what was written after the last checkpoint may repeat).
    # The kill may tear the line being appended (the sink flushes only before checkpoints).
    got = []
    for line in out.read_text().splitlines():
        try:
            got.append(json.loads(line.strip("\x00")))
        except ValueError:
            pass
    seen = {(v["split"], v["n"]) for v in got}
    assert seen == {(s, n) for s in "xy" for n in range(3000)}
    assert len(got) - len(seen) < 2000, "repeats bounded by what follows the last checkpoint"


def test_the_http_api_example_runs() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "examples/python/http_api.py")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith("ok")


def test_the_columnar_example_runs() -> None:
    pytest.importorskip("polars")
    run = subprocess.run([sys.executable, str(ROOT / "examples/python/columnar.py")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith("ok")


def test_the_secure_cluster_example_runs() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "examples/python/secure_cluster.py")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "nodes: https://" in out, out
    assert "reader reads: b'hello over TLS'" in out, out
    assert "members: [1, 2]" in out, out
    assert "lacks the 'write' permission" in out, out
    assert "no credentials: this node requires authentication" in out, out
