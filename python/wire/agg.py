"""Aggregates for :meth:`wire.Pipeline.window`: each names what to compute over which field
(a field path such as ``"amount"`` or ``"order.total"``, or a jq expression such as
``".amount * 100"``), and carries a default output name (``sum_amount``).

    >>> sum("amount")
    Aggregate(name='sum_amount', spec={'sum': '.amount'})
    >>> count().spec, collect("sku", max=5).spec
    ('count', {'collect': '.sku', 'max': 5})
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Aggregate", "count", "sum", "min", "max", "avg", "first", "last", "count_distinct", "collect"]

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Aggregate:
    """An aggregate: the output field it fills by default, and its spec form."""

    name: str
    spec: Any


def _of(kind: str, field: str) -> Aggregate:
    if not isinstance(field, str) or not field:
        raise TypeError(f"{kind}: a field path or jq expression, not {field!r}")
    expr = "." + field if _PATH.match(field) else field
    slug = re.sub(r"[^A-Za-z0-9]+", "_", field).strip("_") or "value"
    return Aggregate(f"{kind}_{slug}", {kind: expr})


def count() -> Aggregate:
    """The number of records."""
    return Aggregate("count", "count")


def sum(field: str) -> Aggregate:  # noqa: A001 - the aggregate's name
    """The sum of a number."""
    return _of("sum", field)


def min(field: str) -> Aggregate:  # noqa: A001
    """The least of a number."""
    return _of("min", field)


def max(field: str) -> Aggregate:  # noqa: A001
    """The greatest of a number."""
    return _of("max", field)


def avg(field: str) -> Aggregate:
    """The mean of a number."""
    return _of("avg", field)


def first(field: str) -> Aggregate:
    """The value of the first record (in arrival order)."""
    return _of("first", field)


def last(field: str) -> Aggregate:
    """The value of the last record (in arrival order)."""
    return _of("last", field)


def count_distinct(field: str) -> Aggregate:
    """How many distinct values."""
    return _of("count_distinct", field)


def collect(field: str, *, max: int = 100) -> Aggregate:  # noqa: A002
    """The values themselves, at most ``max`` of them."""
    if not isinstance(max, int) or isinstance(max, bool) or max <= 0:
        raise ValueError(f"collect: max must be a positive integer, not {max!r}")
    a = _of("collect", field)
    return Aggregate(a.name, {**a.spec, "max": max})

