from __future__ import annotations

import json
import pathlib
import time
import urllib.request
from collections import Counter

import pytest

import wire
from helpers import read_output, start_node, write_lines

ORDERS = [
    {"user": "ann", "amount": 7.5},
    {"user": "bob", "amount": 2},
    {"user": "cy", "amount": 12.25},
    {"user": "ann", "amount": 6},
    {"user": "dee", "amount": 5},
]


def wait_for_epoch(node: wire.Node, name: str, epoch: int, timeout: float = 30) -> None:
    """Waits until partition 0 of `name` has committed checkpoint `epoch`."""
    deadline = time.monotonic() + timeout
    while (node.pipelines.status(name) or {})["partitions"][0]["epoch"] < epoch:
        assert time.monotonic() < deadline, f"{name} never reached epoch {epoch}"
        time.sleep(0.05)


def enrich(event: dict) -> dict:
    event["amount_cents"] = int(event["amount"] * 100)
    return event


def test_python_map_filter_key_by_to_files(node: wire.Node, tmp_path: pathlib.Path) -> None:
    src = write_lines(tmp_path / "events.jsonl", ORDERS)
    flow = (
        wire.Pipeline("orders", parallelism=2, checkpoint_interval="200ms")
        .source(wire.sources.file(src))
        .map(enrich)
        .filter(lambda e: e["amount"] > 5)
        .key_by(lambda e: e["user"])
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    written = node.pipelines.deploy(flow)
    assert written.created and written.version == 1
    status = node.pipelines.wait("orders", timeout=60)
    out = read_output(tmp_path / "out")
    assert sorted(out, key=lambda r: r["amount"]) == [
        {"user": "ann", "amount": 6, "amount_cents": 600},
        {"user": "ann", "amount": 7.5, "amount_cents": 750},
        {"user": "cy", "amount": 12.25, "amount_cents": 1225},
    ]
    # Keyed: each user's records land in one partition's files.
    by_user = {}
    for f in (tmp_path / "out").glob("part-*"):
        partition = f.name.split("-")[1]
        for line in f.read_text().splitlines():
            by_user.setdefault(json.loads(line)["user"], set()).add(partition)
    assert all(len(p) == 1 for p in by_user.values()), by_user
    assert status["steps"]["transform0"]["records_in"] == 5
    assert status["steps"]["transform1"]["records_out"] == 3
    # Deploying the same flow again changes nothing.
    again = node.pipelines.deploy(flow)
    assert (again.changed, again.version) == (False, 1)


def test_redistribute_spreads_one_file_over_the_partitions(node: wire.Node, tmp_path: pathlib.Path) -> None:
    src = write_lines(tmp_path / "n.jsonl", [{"n": i} for i in range(2000)])
    flow = (
        wire.Pipeline("spread", parallelism=2, checkpoint_interval="200ms")
        .source(wire.sources.file(src))
        .redistribute()
        .map(lambda v: {"n": v["n"] + 1})
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait("spread", timeout=60)
    partitions = {f.name.split("-")[1] for f in (tmp_path / "out").glob("part-*")}
    assert partitions == {"0", "1"}, "one file, yet both partitions ran the map"
    assert sorted(r["n"] for r in read_output(tmp_path / "out")) == list(range(1, 2001))


def test_windows_count_and_sum_per_user_on_event_time(node: wire.Node, tmp_path: pathlib.Path) -> None:
    events = [{"user": f"u{i % 3}", "ts": i * 100, "amount": i} for i in range(600)]
    src = write_lines(tmp_path / "events.jsonl", events)
    flow = (
        wire.Pipeline("per-user-windows", parallelism=2, checkpoint_interval="200ms")
        .event_time("ts", max_delay="1s")
        .source(wire.sources.file(src))
        .key_by("user")
        .window(wire.windows.tumbling("10s"), n=wire.agg.count(), total=wire.agg.sum("amount"))
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait("per-user-windows", timeout=60)
    want: dict = {}
    for e in events:
        k = (e["user"], e["ts"] // 10_000 * 10_000)
        n, total = want.get(k, (0, 0))
        want[k] = (n + 1, total + e["amount"])
    got = {(r["key"], r["window_start"]): (r["n"], r["total"]) for r in read_output(tmp_path / "out")}
    assert got == want


def test_batch_transforms_and_their_contract(node: wire.Node, tmp_path: pathlib.Path) -> None:
    src = write_lines(tmp_path / "n.jsonl", [{"n": i} for i in range(3000)])
    calls = Counter()

    def double_all(values: list) -> list:
        calls["map"] += 1
        return [{"n": v["n"] * 2} for v in values]

    def keep_multiples_of_3(values: list) -> list:
        return [v["n"] % 3 == 0 for v in values]

    flow = (
        wire.Pipeline("batches", checkpoint_interval="200ms")
        .source(wire.sources.file(src))
        .map(double_all, batch=True)
        .filter(keep_multiples_of_3, batch=True)
        .flat_map(lambda v: [v, {"n": -v["n"]}])
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait("batches", timeout=60)
    got = sorted(r["n"] for r in read_output(tmp_path / "out"))
    want = sorted(x for i in range(3000) if (2 * i) % 3 == 0 for x in (2 * i, -2 * i))
    assert got == want
    # One call per batch of up to 1024 records, not per record.
    assert 3 <= calls["map"] <= 6, calls

    # A batch function that returns the wrong number of results rejects its whole batch.
    bad = (
        wire.Pipeline("short-batch")
        .source(wire.sources.file(src))
        .map(lambda values: values[:-1], batch=True)
        .sink(wire.sinks.file(tmp_path / "short-out"))
        .dead_letter(wire.sinks.file(tmp_path / "short-dead"))
    )
    node.pipelines.deploy(bad)
    node.pipelines.wait("short-batch", timeout=60)
    dead = read_output(tmp_path / "short-dead")
    assert len(dead) == 3000 and read_output(tmp_path / "short-out") == []
    assert "one item per input: got 1023 for 1024" in dead[0]["error"]


def test_exceptions_go_to_dead_letters_with_the_traceback(node: wire.Node, tmp_path: pathlib.Path) -> None:
    records = [{"id": i, "price": "n/a" if i % 10 == 3 else i} for i in range(100)]
    src = write_lines(tmp_path / "prices.jsonl", records)
    with src.open("a") as f:
        f.write("{not json\n")

    def with_tax(event: dict) -> dict:
        event["gross"] = round(event["price"] * 1.2, 2)
        return event

    flow = (
        wire.Pipeline("taxes")
        .source(wire.sources.file(src))
        .map(with_tax)
        .map(lambda e: {**e, "unserializable": {1, 2}} if e["id"] == 42 else e)
        .sink(wire.sinks.file(tmp_path / "out"))
        .dead_letter(wire.sinks.file(tmp_path / "dead"))
    )
    node.pipelines.deploy(flow)
    status = node.pipelines.wait("taxes", timeout=60)
    out = read_output(tmp_path / "out")
    dead = read_output(tmp_path / "dead")
    assert sorted(r["id"] for r in out) == [i for i in range(100) if i % 10 != 3 and i != 42]
    by_step = Counter(d["step"] for d in dead)
    assert by_step == {"transform0": 10, "transform1": 1, "source0": 1}, by_step
    raised = next(d for d in dead if d["step"] == "transform0")
    assert "Traceback (most recent call last)" in raised["error"]
    assert "in with_tax" in raised["error"] and "TypeError" in raised["error"]
    assert json.loads(raised["raw"])["price"] == "n/a"
    assert raised["split"] == str(src) and raised["offset"] > 0
    unconvertible = next(d for d in dead if d["step"] == "transform1")
    assert "a set cannot be a record value" in unconvertible["error"]
    assert status["state"] == "finished"


def test_fail_policy_stops_the_pipeline_and_wait_says_why(node: wire.Node, tmp_path: pathlib.Path) -> None:
    src = write_lines(tmp_path / "e.jsonl", [{"x": 1}, {"x": 0}])
    flow = (
        wire.Pipeline("strict")
        .source(wire.sources.file(src))
        .map(lambda e: {"y": 1 / e["x"]}, on_error="fail")
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    node.pipelines.deploy(flow)
    with pytest.raises(wire.PipelineFailedError, match="ZeroDivisionError") as caught:
        node.pipelines.wait("strict", timeout=60)
    assert caught.value.status["retrying"] is False


@wire.transform("shout")
def shout(event: dict) -> dict:
    event["text"] = event["text"].upper() + "!"
    return event


@wire.transform("by-lang", kind="key_by")
def by_lang(event: dict) -> str:
    return event["lang"]


def test_registered_transform_from_a_json_spec_over_http(node: wire.Node, tmp_path: pathlib.Path) -> None:
    src = write_lines(tmp_path / "t.jsonl", [{"text": "hi", "lang": "en"}, {"text": "hola", "lang": "es"}])
    spec = {
        "name": "shouting",
        "sources": [{"type": "file", "config": {"path": str(src)}}],
        "transforms": [
            {"type": "shout"},
            {"type": "key_by", "config": {"transform": "by-lang"}},
        ],
        "sinks": [{"type": "file", "config": {"path": str(tmp_path / "out")}}],
    }
    request = urllib.request.Request(
        node.url + "/pipelines", data=json.dumps(spec).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 201
    wire.Client(node.url).pipelines.wait("shouting", timeout=60)
    assert sorted(r["text"] for r in read_output(tmp_path / "out")) == ["HI!", "HOLA!"]

    # A name registered nowhere is refused with the place in the spec.
    spec["name"], spec["transforms"] = "unknown", [{"type": "nobody-registered-this"}]
    with pytest.raises(wire.InvalidSpecError) as caught:
        wire.Client(node.url).pipelines.create(spec)
    assert caught.value.errors[0]["path"] == "transforms[0].type"


def test_invalid_specs_name_the_place(node: wire.Node) -> None:
    flow = wire.Pipeline("bad", parallelism=0).source(wire.sources.file("x")).jq(".a |").sink(wire.sinks.stdout())
    for api in (node, wire.Client(node.url)):
        with pytest.raises(wire.InvalidSpecError) as caught:
            api.pipelines.create(flow.spec())
        paths = {e["path"] for e in caught.value.errors}
        assert {"parallelism", "transforms[0].config.filter"} <= paths, paths
        assert isinstance(caught.value, ValueError)
    with pytest.raises(wire.InvalidSpecError):
        flow.spec_json()
    with pytest.raises(wire.WireError, match="run only on nodes hosted by this process"):
        wire.Client(node.url).pipelines.deploy(wire.Pipeline("p").source(wire.sources.generator()).map(str).sink(wire.sinks.stdout()))


def test_pause_resume_list_delete(node: wire.Node, tmp_path: pathlib.Path) -> None:
    flow = (
        wire.Pipeline("ticker", checkpoint_interval="100ms")
        .source(wire.sources.generator(rate=200))
        .map(lambda e: {"seq": e["seq"], "sq": e["seq"] ** 2})
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait("ticker", until="running", timeout=30)
    wait_for_epoch(node, "ticker", 2)
    node.pipelines.pause("ticker")
    assert node.pipelines.wait("ticker", until="paused", timeout=30)["desired"] == "paused"
    assert [p["spec"]["name"] for p in node.pipelines.list()] == ["ticker"]
    node.pipelines.resume("ticker")
    node.pipelines.wait("ticker", until="running", timeout=30)
    node.pipelines.delete("ticker")
    assert node.pipelines.status("ticker") is None
    with pytest.raises(wire.NotFoundError):
        node.pipelines.delete("ticker")
    out = read_output(tmp_path / "out")
    assert out and all(r["sq"] == r["seq"] ** 2 for r in out)


def test_restart_resumes_from_the_checkpoint(tmp_path: pathlib.Path) -> None:
    def label(event: dict) -> dict:
        return {"seq": event["seq"], "label": f"item-{event['seq']}"}

    def flow() -> wire.Pipeline:
        return (
            wire.Pipeline("resumable", checkpoint_interval="100ms")
            .source(wire.sources.generator(count=2000, rate=1000))
            .map(label)
            .sink(wire.sinks.file(tmp_path / "out"))
        )

    first = start_node(tmp_path / "n", bootstrap=True).wait_ready()
    first.pipelines.deploy(flow())
    first.pipelines.wait("resumable", until="running", timeout=30)
    wait_for_epoch(first, "resumable", 3)
    first.stop()
    # Committed output of the first run (how much depends on the machine's speed; the check
    # below holds either way: every record exactly once across the stop).
    before = read_output(tmp_path / "out")
    assert len(before) > 0

    # The same program again: the same flow deploys as a no-op and the job goes on.
    second = start_node(tmp_path / "n").wait_ready()
    try:
        assert second.pipelines.deploy(flow()).changed is False
        second.pipelines.wait("resumable", timeout=60)
    finally:
        second.stop()
    seqs = [r["seq"] for r in read_output(tmp_path / "out")]
    assert sorted(seqs) == list(range(2000)), "every record exactly once"
    assert all(r["label"] == f"item-{r['seq']}" for r in read_output(tmp_path / "out"))


def test_fold_and_stateful_map_keep_state_per_key(node: wire.Node, tmp_path: pathlib.Path) -> None:
    import random

    rng = random.Random(7)
    events = [{"user": f"u{rng.randrange(13)}", "amount": rng.randrange(100), "i": i} for i in range(5000)]
    events[100]["amount"] = "lots"  # the fold raises: a dead letter, the key's total unchanged
    src = write_lines(tmp_path / "orders.jsonl", events)

    def total(state: int, e: dict) -> int:
        return state + e["amount"]

    flow = (
        wire.Pipeline("running-totals", parallelism=2, checkpoint_interval="200ms")
        .source(wire.sources.file(src))
        .key_by("user")
        .fold(0, total)
        .sink(wire.sinks.file(tmp_path / "totals"))
        .dead_letter(wire.sinks.file(tmp_path / "dead"))
    )

    def numbered(seen: "int | None", e: dict) -> tuple:
        n = (seen or 0) + 1
        # Every third record of a key resets it; a set is not JSON (a dead letter).
        if e["i"] == 4242:
            return {1, 2}, None
        return (None if n == 3 else n), {"user": e["user"], "i": e["i"], "n": n}

    mapped = (
        wire.Pipeline("numbered", parallelism=2, checkpoint_interval="200ms")
        .source(wire.sources.file(src))
        .key_by("user")
        .stateful_map(numbered)
        .sink(wire.sinks.file(tmp_path / "numbered"))
        .dead_letter(wire.sinks.file(tmp_path / "dead2"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.deploy(mapped)
    node.pipelines.wait("running-totals", timeout=60)
    node.pipelines.wait("numbered", timeout=60)

    # The reference: the same fold over the input, in order, per key.
    running: dict = {}
    want_totals: dict = {}
    for e in events:
        if isinstance(e["amount"], str):
            continue
        running[e["user"]] = running.get(e["user"], 0) + e["amount"]
        want_totals.setdefault(e["user"], []).append(running[e["user"]])
    got = read_output(tmp_path / "totals")
    assert sorted(got) == sorted(t for ts in want_totals.values() for t in ts)
    finals = {u: ts[-1] for u, ts in want_totals.items()}
    assert set(finals.values()) <= set(got)
    dead = read_output(tmp_path / "dead")
    assert len(dead) == 1 and "TypeError" in dead[0]["error"], dead
    assert "python keyed function" in dead[0]["error"]

    seen: dict = {}
    want_numbered = []
    for e in events:
        if e["i"] == 4242:
            continue
        n = seen.get(e["user"], 0) + 1
        seen[e["user"]] = 0 if n == 3 else n
        want_numbered.append({"user": e["user"], "i": e["i"], "n": n})
    got_numbered = sorted(read_output(tmp_path / "numbered"), key=lambda r: r["i"])
    assert got_numbered == want_numbered
    dead2 = read_output(tmp_path / "dead2")
    assert len(dead2) == 1 and "set" in dead2[0]["error"], dead2


def test_keyed_functions_registered_by_name_serve_json_specs(node: wire.Node, tmp_path: pathlib.Path) -> None:
    @wire.transform("test.longest", kind="fold")
    def longest(state: str, e: dict) -> str:
        return e["word"] if len(e["word"]) > len(state) else state

    src = write_lines(tmp_path / "words.jsonl", [{"k": w[0], "word": w} for w in ["ab", "abc", "b", "bcd", "a"]])
    spec = {
        "name": "longest-words",
        "sources": [{"type": "file", "config": {"path": str(src)}}],
        "transforms": [
            {"type": "key_by", "config": {"key": ".k"}},
            {"type": "reduce", "config": {"function": "test.longest", "init": ""}},
        ],
        "sinks": [{"type": "file", "config": {"path": str(tmp_path / "out")}}],
    }
    node.pipelines.create(spec)
    node.pipelines.wait("longest-words", timeout=30)
    assert sorted(read_output(tmp_path / "out")) == ["ab", "abc", "abc", "b", "bcd"]
    # A keyed function is not a transform, and the other way round: 400s naming the place.
    with pytest.raises(wire.InvalidSpecError, match=r"transforms\[0\].type.*reduce"):
        node.pipelines.create({**spec, "name": "misused", "transforms": [{"type": "test.longest"}]})


def test_join_pairs_orders_with_payments_within_reach(node: wire.Node, tmp_path: pathlib.Path) -> None:
    orders = [{"id": i, "user": f"u{i % 9}", "ts": i * 100} for i in range(900)]
    payments = [{"order": i, "user": f"u{i % 9}", "ts": i * 100 + (i % 4) * 400} for i in range(900) if i % 5]
    write_lines(tmp_path / "orders.jsonl", orders)
    write_lines(tmp_path / "payments.jsonl", payments)
    left = (
        wire.Pipeline("paid", parallelism=2, checkpoint_interval="200ms")
        .event_time("ts", max_delay="1s")
        .source(wire.sources.file(tmp_path / "orders.jsonl"), id="orders")
        .key_by("user")
    )
    right = wire.Pipeline("pay").source(wire.sources.file(tmp_path / "payments.jsonl"), id="payments").key_by("user")
    flow = (
        left.join(right, within="1s", how="left")
        .map(lambda j: {"order": j["left"]["id"], "payment": (j["right"] or {}).get("order")})
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait("paid", timeout=60)
    want = []
    for o in orders:
        hits = [p["order"] for p in payments if p["user"] == o["user"] and abs(p["ts"] - o["ts"]) <= 1000]
        want.extend((o["id"], h) for h in hits or [None])
    got = [(r["order"], r["payment"]) for r in read_output(tmp_path / "out")]
    assert sorted(got, key=str) == sorted(want, key=str)


def test_aggregate_keeps_running_values_per_key(node: wire.Node, tmp_path: pathlib.Path) -> None:
    events = [{"user": f"u{i % 4}", "amount": i % 10} for i in range(400)]
    src = write_lines(tmp_path / "orders.jsonl", events)
    flow = (
        wire.Pipeline("running", parallelism=2, checkpoint_interval="200ms")
        .source(wire.sources.file(src))
        .key_by("user")
        .aggregate(wire.agg.count(), total=wire.agg.sum("amount"), top=wire.agg.max("amount"))
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait("running", timeout=60)
    got = read_output(tmp_path / "out")
    assert len(got) == 400
    last = {}
    for r in sorted(got, key=lambda r: r["count"]):
        last[r["key"]] = r
    for user in ("u0", "u1", "u2", "u3"):
        mine = [e["amount"] for e in events if e["user"] == user]
        assert (last[user]["count"], last[user]["total"], last[user]["top"]) == (len(mine), sum(mine), max(mine))


class _Pages:
    """A paging API in miniature: split ``a`` and ``b`` each hold 500 items, served 64 at a
    time from a cursor; item 77 of ``b`` is a set (not JSON)."""

    def __init__(self) -> None:
        self.asked: list = []

    def splits(self) -> list:
        return ["a", "b"]

    def read(self, split: str, position: "int | None") -> "tuple | None":
        start = position or 0
        self.asked.append((split, position))
        if start >= 500:
            return None
        items = [{"split": split, "n": n} if (split, n) != ("b", 77) else {1, 2} for n in range(start, min(start + 64, 500))]
        return items, start + len(items)


class _Collect:
    def __init__(self) -> None:
        self.got: list = []
        self.flushes = 0

    def write(self, values: list) -> list:
        keep = [v for v in values if v["n"] != 13]
        self.got.extend(keep)
        return [(i, "13 is refused") for i, v in enumerate(values) if v["n"] == 13]

    def flush(self) -> None:
        self.flushes += 1


def test_python_sources_and_sinks_page_write_and_dead_letter(node: wire.Node, tmp_path: pathlib.Path) -> None:
    pages, sink = _Pages(), _Collect()
    flow = (
        wire.Pipeline("paged", parallelism=2, checkpoint_interval="200ms")
        .source(wire.sources.python(pages))
        .map(lambda v: {**v, "twice": v["n"] * 2})
        .sink(wire.sinks.python(sink))
        .dead_letter(wire.sinks.file(tmp_path / "dead"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait("paged", timeout=60)
    got = sorted((v["split"], v["n"], v["twice"]) for v in sink.got)
    want = sorted((s, n, 2 * n) for s in "ab" for n in range(500) if (s, n) != ("b", 77) and n != 13)
    assert got == want
    assert sink.flushes >= 1
    dead = read_output(tmp_path / "dead")
    assert sorted(d["error"].split(": ", 1)[0] for d in dead) == ["python sink '" + flow.spec()["sinks"][0]["config"]["name"] + "'"] * 2 + [
        "python source '" + flow.spec()["sources"][0]["config"]["name"] + "'"
    ]
    assert any("a set cannot be a record value" in d["error"] for d in dead)
    assert sum("13 is refused" in d["error"] for d in dead) == 2
    # A name that is not registered is refused where the spec is checked.
    bad = flow.spec()
    bad["name"], bad["sources"][0]["config"]["name"] = "nobody", "no-such-source"
    with pytest.raises(wire.InvalidSpecError, match=r"sources\[0\].config.name"):
        node.pipelines.create(bad)


def _cents_records(n: int) -> list:
    out = []
    for i in range(n):
        out.append({
            "id": i,
            "amount": None if i % 10 == 0 else (i % 97) * 0.5,
            "user": {"name": f"u{i % 13}", "tier": i % 3},
            "tags": ["a", "b"][: i % 3],
        })
    out[50_000]["amount"] = "lots"  # does not fit the inferred schema: a dead letter
    return out


@pytest.mark.parametrize("format", ["arrow", "polars", "pandas"])
def test_columnar_batches_match_the_per_record_functions(node: wire.Node, tmp_path: pathlib.Path, format: str) -> None:
    pytest.importorskip("pyarrow")
    pytest.importorskip(format if format != "arrow" else "pyarrow")
    import pyarrow.compute as pc

    records = _cents_records(100_000)
    src = write_lines(tmp_path / "in.jsonl", records)

    def per_record(v: dict) -> dict:
        return {**v, "amount_cents": None if v["amount"] is None else v["amount"] * 100}

    def cents(frame):  # type: ignore[no-untyped-def]
        if format == "arrow":
            return frame.append_column("amount_cents", pc.multiply(frame.column("amount"), 100))
        if format == "polars":
            import polars as pl

            return frame.with_columns((pl.col("amount") * 100).alias("amount_cents"))
        return frame.assign(amount_cents=frame["amount"] * 100)

    def big(frame):  # type: ignore[no-untyped-def]
        if format == "arrow":
            return pc.fill_null(pc.greater(frame.column("amount"), 5), False)
        if format == "polars":
            import polars as pl

            return frame.select((pl.col("amount") > 5).fill_null(False)).to_series()
        return frame["amount"].fillna(0) > 5

    want = sorted((per_record(r) for r in records if r["id"] != 50_000
                   and r["amount"] is not None and r["amount"] > 5), key=lambda r: r["id"])
    flow = (
        wire.Pipeline(f"cols-{format}", checkpoint_interval="200ms")
        .source(wire.sources.file(src))
        .map_batches(cents, format=format)
        .filter_batches(big, format=format)
        .sink(wire.sinks.file(tmp_path / "out"))
        .dead_letter(wire.sinks.file(tmp_path / "dead"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait(f"cols-{format}", timeout=120)
    got = sorted(read_output(tmp_path / "out"), key=lambda r: r["id"])
    assert len(got) == len(want)
    assert got == want
    dead = read_output(tmp_path / "dead")
    assert len(dead) == 1 and "does not fit the schema" in dead[0]["error"], dead


def test_a_columnar_function_that_raises_dead_letters_its_batch(node: wire.Node, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("pyarrow")
    src = write_lines(tmp_path / "in.jsonl", [{"n": i} for i in range(100)])

    def boom(batch):  # type: ignore[no-untyped-def]
        raise RuntimeError("no columns today")

    flow = (
        wire.Pipeline("cols-raise")
        .source(wire.sources.file(src))
        .map_batches(boom)
        .sink(wire.sinks.file(tmp_path / "out"))
        .dead_letter(wire.sinks.file(tmp_path / "dead"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait("cols-raise", timeout=60)
    dead = read_output(tmp_path / "dead")
    assert len(dead) == 100 and all("no columns today" in d["error"] for d in dead)
    with pytest.raises(ValueError, match="format"):
        wire.Pipeline("x").map_batches(boom, format="excel")


def test_columnar_steps_in_a_row_run_as_one_and_keep_each_rows_record(node: wire.Node, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow.compute as pc

    src = write_lines(tmp_path / "in.jsonl", [{"n": i, "k": f"k{i % 7}"} for i in range(5000)])
    sizes = set()

    def even(b):  # type: ignore[no-untyped-def]
        sizes.add(b.num_rows)
        return pc.equal(pc.bit_wise_and(b.column("n"), 1), 0)

    flow = (
        wire.Pipeline("cols-chain", checkpoint_interval="200ms")
        .source(wire.sources.file(src))
        .key_by("k")
        .filter_batches(even, batch_size=100)
        .map_batches(lambda b: b.set_column(0, "n", pc.multiply(b.column("n"), 10)), batch_size=100)
        .filter_batches(lambda b: pc.less(b.column("n"), 30_000), batch_size=100)
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    assert [t["type"] for t in flow.spec()["transforms"]][1:] == ["py.cols-chain.1.even"]
    node.pipelines.deploy(flow)
    node.pipelines.wait("cols-chain", timeout=60)
    got = sorted((r["n"], r["k"]) for r in read_output(tmp_path / "out"))
    assert got == sorted((i * 10, f"k{i % 7}") for i in range(0, 3000, 2))
    assert max(sizes) <= 100, sizes


@pytest.mark.parametrize("keyed", [False, True], ids=["at-the-source", "after-key_by"])
def test_columnar_batches_wait_at_most_max_wait_to_fill(node: wire.Node, tmp_path: pathlib.Path, keyed: bool) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow.compute as pc

    calls: list = []

    def stamp(b):  # type: ignore[no-untyped-def]
        calls.append(b.num_rows)
        return b.append_column("twice", pc.multiply(b.column("seq"), 2))

    name = f"cols-wait-{int(keyed)}"
    flow = wire.Pipeline(name, checkpoint_interval="1h").source(wire.sources.generator(count=60, rate=30))
    if keyed:
        flow = flow.key_by("seq")
    flow = (
        flow.map_batches(stamp, batch_size=1000, max_wait="150ms")
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait(name, timeout=60)
    got = sorted((r["seq"], r["twice"]) for r in read_output(tmp_path / "out"))
    assert got == [(i, 2 * i) for i in range(60)]
    sizes = calls
    assert sum(sizes) == 60
    # No checkpoint ran (1h) and no batch could fill (60 rows of 1000): the end hands on
    # what is held in one call, so every other call went because its first row had waited
    # 150 ms. 60 records are 2 s of input.
    assert len(calls) >= 3, calls
    assert max(sizes) < 60, calls
    assert sum(n > 1 for n in sizes) >= len(sizes) // 2, f"most calls gathered rows: {calls}"


@pytest.mark.parametrize("held", [False, True], ids=["as-read", "held"])
def test_columnar_pipeline_resumes_from_its_checkpoint_without_repeats(node: wire.Node, tmp_path: pathlib.Path,
                                                                      held: bool) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow.compute as pc

    calls: list = []

    def twice(b):  # type: ignore[no-untyped-def]
        calls.append(b.num_rows)
        return b.append_column("twice", pc.multiply(b.column("seq"), 2))

    # Held: never full, never due, so only the checkpoints hand the rows on.
    opts = {"batch_size": 1_000_000, "max_wait": "1h"} if held else {}
    name = f"cols-resume-{int(held)}"
    flow = (
        wire.Pipeline(name, checkpoint_interval="100ms")
        .source(wire.sources.generator(count=6000, rate=2000))
        .map_batches(twice, **opts)  # type: ignore[arg-type]
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    node.pipelines.deploy(flow)
    deadline = time.monotonic() + 30
    while not read_output(tmp_path / "out"):
        assert time.monotonic() < deadline, "no output (held rows go on at each checkpoint)"
        time.sleep(0.05)
    node.pipelines.pause(name)
    paused = node.pipelines.wait(name, until="paused", timeout=30)
    assert sum(int(o) for p in paused["partitions"] for s in p["positions"].values() for o in s.values()) < 6000
    node.pipelines.resume(name)
    node.pipelines.wait(name, timeout=60)
    got = sorted((r["seq"], r["twice"]) for r in read_output(tmp_path / "out"))
    assert got == [(i, 2 * i) for i in range(6000)], "each record once, through the pause"
    if held:
        # The source reads a few records per tick; gathered, a call gets a checkpoint's worth.
        assert len(calls) < 6000 // 20, f"{len(calls)} calls"


def test_max_wait_needs_a_batch_size_and_a_duration() -> None:
    pytest.importorskip("pyarrow")
    with pytest.raises(ValueError, match="max_wait needs batch_size"):
        wire.Pipeline("x").map_batches(lambda b: b, max_wait="100ms")
    with pytest.raises(ValueError, match="max_wait: unknown unit"):
        wire.Pipeline("x").map_batches(lambda b: b, batch_size=10, max_wait="100 parsecs")
    with pytest.raises(TypeError, match="max_wait"):
        wire.Pipeline("x").map_batches(lambda b: b, batch_size=10, max_wait=[1])  # type: ignore[arg-type]


def test_a_given_schema_holds_when_the_first_batch_does_not_fit_it(node: wire.Node, tmp_path: pathlib.Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.compute as pc

    records = [{"id": i, "amount": i * 0.5} for i in range(3000)]
    records[0]["amount"] = "lots"  # in the first batch: inferred, amount would be a string
    src = write_lines(tmp_path / "in.jsonl", records)
    schema = pa.schema([("id", pa.int64()), ("amount", pa.float64())])
    flow = (
        wire.Pipeline("cols-schema")
        .source(wire.sources.file(src))
        .map_batches(lambda b: b.append_column("cents", pc.multiply(b.column("amount"), 100)), schema=schema)
        .sink(wire.sinks.file(tmp_path / "out"))
        .dead_letter(wire.sinks.file(tmp_path / "dead"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait("cols-schema", timeout=60)
    got = sorted((r["id"], r["cents"]) for r in read_output(tmp_path / "out"))
    assert got == [(i, i * 50.0) for i in range(1, 3000)]
    dead = read_output(tmp_path / "dead")
    assert len(dead) == 1 and "does not fit the schema given to the step" in dead[0]["error"], dead
    with pytest.raises(TypeError, match="schema: a pyarrow.Schema"):
        wire.Pipeline("x").map_batches(lambda b: b, schema={"id": "int"})


def test_columnar_output_reaches_steps_and_sinks_that_read_values(node: wire.Node, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow.compute as pc

    # The file hands its lines to the columnar step as text and the step hands its rows on
    # as text; the per-record map and the Python sink read values, parsed for them.
    src = write_lines(tmp_path / "in.jsonl", [{"n": i, "s": f"é{i}"} for i in range(3000)])
    got: list = []

    class Keep:
        def write(self, values: list) -> list:
            got.extend(values)
            return []

    flow = (
        wire.Pipeline("cols-then-values")
        .source(wire.sources.file(src))
        .map_batches(lambda b: b.append_column("m", pc.multiply(b.column("n"), 3)))
        .map(lambda v: {**v, "p": v["m"] + 1})
        .sink(wire.sinks.python(Keep()))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait("cols-then-values", timeout=60)
    assert sorted(got, key=lambda v: v["n"]) == [
        {"n": i, "s": f"é{i}", "m": 3 * i, "p": 3 * i + 1} for i in range(3000)
    ]


@pytest.mark.parametrize("format", ["arrow", "polars", "pandas"])
def test_a_columnar_filter_may_return_the_rows_it_keeps(node: wire.Node, tmp_path: pathlib.Path, format: str) -> None:
    pytest.importorskip("pyarrow")
    pytest.importorskip(format if format != "arrow" else "pyarrow")
    import pyarrow.compute as pc

    src = write_lines(tmp_path / "in.jsonl", [{"n": i, "k": f"k{i % 3}"} for i in range(4000)])

    def rows(frame):  # type: ignore[no-untyped-def]
        if format == "arrow":
            return frame.filter(pc.equal(pc.bit_wise_and(frame.column("n"), 1), 0))
        if format == "polars":
            import polars as pl

            return frame.filter(pl.col("n") % 2 == 0)
        return frame[frame["n"] % 2 == 0].reset_index(drop=True)

    def dropped(frame):  # type: ignore[no-untyped-def]
        return frame.drop(columns=["__wire_row"]) if format == "pandas" else frame.drop(["__wire_row"]) \
            if format == "polars" else frame.drop_columns(["__wire_row"])

    name = f"cols-rows-{format}"
    flow = (
        wire.Pipeline(name)
        .source(wire.sources.file(src))
        .filter_batches(rows, format=format)
        .map_batches(lambda f: f, format=format)
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait(name, timeout=60)
    got = sorted((r["n"], r["k"]) for r in read_output(tmp_path / "out"))
    assert got == [(i, f"k{i % 3}") for i in range(0, 4000, 2)]

    # A frame without the row numbers cannot say which records it kept: dead letters.
    name = f"cols-rows-lost-{format}"
    flow = (
        wire.Pipeline(name)
        .source(wire.sources.file(src))
        .filter_batches(dropped, format=format)
        .sink(wire.sinks.file(tmp_path / "out2"))
        .dead_letter(wire.sinks.file(tmp_path / "dead"))
    )
    node.pipelines.deploy(flow)
    node.pipelines.wait(name, timeout=60)
    dead = read_output(tmp_path / "dead")
    assert len(dead) == 4000 and "keeps its __wire_row column" in dead[0]["error"], dead[:1]
