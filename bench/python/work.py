"""The Python benchmark's work, the same functions for every contender: add amount_cents,
keep amount > 5 (per record, and as batch functions)."""

from typing import List


def enrich(e: dict) -> dict:
    e["amount_cents"] = int(e["amount"] * 100)
    return e


def keep(e: dict) -> bool:
    return e["amount"] > 5


def enrich_batch(values: List[dict]) -> List[dict]:
    for e in values:
        e["amount_cents"] = int(e["amount"] * 100)
    return values


def keep_batch(values: List[dict]) -> List[bool]:
    return [e["amount"] > 5 for e in values]


def enrich_arrow(batch):  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.compute as pc

    cents = pc.cast(pc.floor(pc.multiply(batch.column("amount"), 100)), pa.int64())
    return batch.append_column("amount_cents", cents)


def keep_arrow(batch):  # type: ignore[no-untyped-def]
    import pyarrow.compute as pc

    return pc.greater(batch.column("amount"), 5)


def enrich_polars(df):  # type: ignore[no-untyped-def]
    import polars as pl

    return df.with_columns((pl.col("amount") * 100).floor().cast(pl.Int64).alias("amount_cents"))


def keep_polars(df):  # type: ignore[no-untyped-def]
    import polars as pl

    return df.select(pl.col("amount") > 5).to_series()
