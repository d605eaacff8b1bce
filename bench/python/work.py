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
