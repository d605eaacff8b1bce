from __future__ import annotations

import pathlib
import time

import wire
from helpers import read_output


def test_three_node_cluster_from_python(cluster: list, tmp_path: pathlib.Path) -> None:
    one, two, three = cluster
    assert sorted(m["id"] for m in one.members()) == [1, 2, 3]
    leader = one.status()["leader"]["id"]
    assert all(n.status()["leader"]["id"] == leader for n in cluster)

    # A write through any member is read on every member.
    three.kv.put("from/three", b"3")
    deadline = time.monotonic() + 10
    while one.kv.get("from/three", consistency="local") != b"3":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert two.kv.get("from/three") == b"3"
    assert wire.Client(two.url).kv.get("from/three") == b"3"

    # Every member is hosted here, so a pipeline with a Python function spreads over all three.
    flow = (
        wire.Pipeline("spread", parallelism=3, checkpoint_interval="200ms")
        .source(wire.sources.generator(count=3000, rate=3000))
        .map(lambda e: {"seq": e["seq"], "odd": e["seq"] % 2 == 1})
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    written = two.pipelines.deploy(flow)
    assert "node" not in flow.spec() and written.created
    status = three.pipelines.wait("spread", timeout=60)
    assert {p["node"] for p in status["partitions"]} == {1, 2, 3}, status["partitions"]
    out = read_output(tmp_path / "out")
    assert sorted(r["seq"] for r in out) == list(range(3000))
    assert all(r["odd"] == (r["seq"] % 2 == 1) for r in out)
    assert status["steps"]["transform0"]["records_in"] == 3000


def test_a_member_hosted_elsewhere_pins_python_pipelines(cluster: list, tmp_path: pathlib.Path) -> None:
    one, two, three = cluster
    # Pretend node 3 runs in another process: it is no longer a node of this one.
    from wire import _registry

    _registry.detach(three)
    try:
        flow = (
            wire.Pipeline("pinned", parallelism=3)
            .source(wire.sources.generator(count=300))
            .map(lambda e: e)
            .sink(wire.sinks.file(tmp_path / "out"))
        )
        one.pipelines.deploy(flow)
        status = one.pipelines.wait("pinned", timeout=60)
        assert status["spec"]["node"] == 1
        assert {p["node"] for p in status["partitions"]} == {1}
        assert len(read_output(tmp_path / "out")) == 300
    finally:
        _registry.attach(three)


def test_members_show_liveness_and_a_drained_member_hands_its_partitions_off(
    cluster: list, tmp_path: pathlib.Path
) -> None:
    one, two, three = cluster
    members = {m["id"]: m for m in two.members()}
    assert all(m["alive"] is True and m["last_heard_ms"] >= 0 for m in members.values()), members
    flow = (
        wire.Pipeline("drained", parallelism=3, checkpoint_interval="200ms")
        .source(wire.sources.generator(count=20000, rate=4000))
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    one.pipelines.deploy(flow)

    def owners() -> "set[object]":
        status = one.pipelines.status("drained") or {"partitions": []}
        return {p.get("node") for p in status["partitions"]}

    deadline = time.monotonic() + 30
    while owners() != {1, 2, 3}:
        assert time.monotonic() < deadline, owners()
        time.sleep(0.05)
    assert wire.Client(three.url).drain(3) is True
    assert three.drain(3) is False, "already draining"
    deadline = time.monotonic() + 30
    while 3 in owners():
        assert time.monotonic() < deadline, owners()
        time.sleep(0.05)
    me = {m["id"]: m for m in one.members()}[3]
    assert me["draining"] is True and me["partitions"] == 0
    status = one.pipelines.wait("drained", timeout=60)
    moved = [p["last_move"] for p in status["partitions"] if p.get("last_move")]
    assert moved and all("draining" in m["reason"] and m["from"] == 3 for m in moved), moved
    assert sorted(r["seq"] for r in read_output(tmp_path / "out")) == list(range(20000))
    assert one.drain(3, undo=True) is True
