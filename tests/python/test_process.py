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
