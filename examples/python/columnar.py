"""Columnar Python steps: whole batches as polars (or pyarrow / pandas) frames.

    pip install ".[polars]"   # from the repository root: wire with pyarrow and polars
    python examples/python/columnar.py

Orders stream in as JSON lines. The engine builds each batch's columns in Rust and hands
them to the functions without copying; one function adds ``amount_cents`` with a polars
expression, the next keeps the orders over 5. Both run on one frame (one conversion each
way). ``batch_size`` with ``max_wait`` gathers up to 5,000 rows per call but never holds a
row longer than 200 ms, so a slow stream still flows; held rows go on before each
checkpoint, so nothing is lost or repeated on a restart.

The input's schema is given. Left out, it is inferred from the first batch, where order 123
(its ``amount`` a string) would make ``amount`` a string column. Given, order 123 does not
fit it and goes to the dead-letter file with the reason.
"""

import json
import pathlib
import tempfile

import polars as pl
import pyarrow as pa

import wire

work = pathlib.Path(tempfile.mkdtemp(prefix="wire-columnar-"))
orders = [{"id": i, "user": f"user-{i % 7}", "amount": (i % 13) * 1.25} for i in range(20_000)]
orders[123]["amount"] = "a lot"  # does not fit the schema: a dead letter
(work / "orders.jsonl").write_text("".join(json.dumps(o) + "\n" for o in orders))


SCHEMA = pa.schema([("id", pa.int64()), ("user", pa.string()), ("amount", pa.float64())])


def with_cents(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns((pl.col("amount") * 100).round(0).cast(pl.Int64).alias("amount_cents"))


def big(frame: pl.DataFrame) -> pl.Series:
    return frame["amount"] > 5


flow = (
    wire.Pipeline("columnar-orders", checkpoint_interval="500ms")
    .source(wire.sources.file(work / "orders.jsonl"))
    .map_batches(with_cents, format="polars", batch_size=5000, max_wait="200ms", schema=SCHEMA)
    .filter_batches(big, format="polars", batch_size=5000, max_wait="200ms")
    .sink(wire.sinks.file(work / "out"))
    .dead_letter(wire.sinks.file(work / "dead"))
)

with wire.Node(data_dir=str(work / "node"), bootstrap=True,
               http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0") as node:
    node.pipelines.deploy(flow)
    status = node.pipelines.wait("columnar-orders", timeout=120)


def lines(directory: pathlib.Path) -> list:
    return [json.loads(line) for f in sorted(directory.glob("*")) if f.is_file()
            for line in f.read_text().splitlines() if line.strip()]


out, dead = lines(work / "out"), lines(work / "dead")
want = [o["id"] for o in orders if o["id"] != 123 and o["amount"] > 5]
print(f"kept {len(out)} of {len(orders)} orders; {len(dead)} dead letter(s): {dead[0]['error'] if dead else None}")
assert sorted(o["id"] for o in out) == want, "every big order once"
assert all(o["amount_cents"] == round(o["amount"] * 100) for o in out)
assert len(dead) == 1 and "does not fit the schema" in dead[0]["error"]
print("ok")
