"""Columnar batches for Python functions (:meth:`wire.Pipeline.map_batches`,
:meth:`~wire.Pipeline.filter_batches`): the engine builds an Arrow record batch from the
records and hands it over through the Arrow C data interface (PyCapsules, no copy); here it
becomes a ``pyarrow.RecordBatch``, a ``polars.DataFrame`` or a ``pandas.DataFrame``, the
function runs, and its answer goes back the same way. pyarrow (and polars or pandas for
those formats) are optional: ``pip install "wire[arrow]"``."""

from __future__ import annotations

import importlib
from typing import Any, Callable

FORMATS = ("arrow", "polars", "pandas")


def _need(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = {"pyarrow": "arrow"}.get(module, module)
        raise ImportError(
            f"columnar batches need the {module} package: pip install \"wire[{extra}]\""
        ) from None


def check(format: str) -> None:
    """Raises when ``format`` is unknown or its packages are missing."""
    if format not in FORMATS:
        raise ValueError(f"format: one of {', '.join(FORMATS)}, not {format!r}")
    _need("pyarrow")
    if format != "arrow":
        _need(format)


def wrap(func: Callable[[Any], Any], format: str, filter: bool) -> Callable[[Any, Any], Any]:
    """The function the engine calls: two capsules in, an Arrow object out."""
    check(format)
    pa = _need("pyarrow")
    pl = _need("polars") if format == "polars" else None
    pd = _need("pandas") if format == "pandas" else None

    def to_batch(out: Any) -> Any:
        if pl is not None and isinstance(out, pl.DataFrame):
            out = out.to_arrow()
        elif pd is not None and isinstance(out, pd.DataFrame):
            out = pa.Table.from_pandas(out, preserve_index=False)
        if isinstance(out, pa.Table):
            out = out.combine_chunks()
            batches = out.to_batches()
            return batches[0] if len(batches) == 1 else pa.RecordBatch.from_pylist(out.to_pylist(), schema=out.schema)
        if isinstance(out, pa.RecordBatch):
            return out
        raise TypeError(f"a map_batches function returns a frame of the batch's format, not {type(out).__name__}")

    def to_mask(out: Any) -> Any:
        if pl is not None and isinstance(out, pl.Series):
            out = out.to_arrow()
        elif pd is not None and isinstance(out, pd.Series):
            out = pa.array(out.to_numpy(), type=pa.bool_())
        elif isinstance(out, (list, tuple)):
            out = pa.array(out, type=pa.bool_())
        if isinstance(out, pa.ChunkedArray):
            out = out.combine_chunks()
        if isinstance(out, pa.Array) and out.type == pa.bool_():
            return out
        raise TypeError(f"a filter_batches function returns a boolean mask, not {type(out).__name__}")

    def call(schema: Any, array: Any) -> Any:
        batch = pa.RecordBatch._import_from_c_capsule(schema, array)
        if pl is not None:
            arg = pl.from_arrow(batch)
        elif pd is not None:
            arg = batch.to_pandas()
        else:
            arg = batch
        out = func(arg)
        return to_mask(out) if filter else to_batch(out)

    call.__name__ = getattr(func, "__name__", "batch")
    return call
