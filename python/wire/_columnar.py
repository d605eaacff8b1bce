"""Columnar batches for Python functions (:meth:`wire.Pipeline.map_batches`,
:meth:`~wire.Pipeline.filter_batches`): the engine builds an Arrow record batch from the
records and hands it over through the Arrow C data interface (PyCapsules, no copy); here it
becomes a ``pyarrow.RecordBatch``, a ``polars.DataFrame`` or a ``pandas.DataFrame``, the
function runs, and its answer goes back the same way. pyarrow (and polars or pandas for
those formats) are optional: ``pip install "wire[arrow]"``."""

from __future__ import annotations

import datetime
import functools
import importlib
from typing import Any, Callable, List, Optional, Tuple, Union

FORMATS = ("arrow", "polars", "pandas")


def _need(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = {"pyarrow": "arrow"}.get(module, module)
        raise ImportError(
            f"columnar batches need the {module} package: pip install \"wire[{extra}]\""
        ) from None


def check(format: str) -> None:  # noqa: A002 - the step's own word
    """Raises when ``format`` is unknown or its packages are missing."""
    if format not in FORMATS:
        raise ValueError(f"format: one of {', '.join(FORMATS)}, not {format!r}")
    _need("pyarrow")
    if format != "arrow":
        _need(format)


ROW = "__wire_row"


Wait = Union[str, float, datetime.timedelta]


def seconds(max_wait: Optional[Wait]) -> Optional[float]:
    """``max_wait`` in seconds: a duration such as ``"100ms"`` or ``"2s"``, a number of
    seconds or a ``timedelta``.

    >>> seconds("250ms"), seconds(1.5), seconds(datetime.timedelta(minutes=1)), seconds(None)
    (0.25, 1.5, 60.0, None)
    """
    if max_wait is None:
        return None
    if isinstance(max_wait, str):
        from . import _native

        try:
            return _native.duration_ms(max_wait) / 1000.0
        except ValueError as e:
            raise ValueError(f"max_wait: {e}") from None
    if isinstance(max_wait, datetime.timedelta):
        value = max_wait.total_seconds()
    elif isinstance(max_wait, (int, float)) and not isinstance(max_wait, bool):
        value = float(max_wait)
    else:
        raise TypeError(f"max_wait: a duration such as '100ms', seconds or a timedelta, not {type(max_wait).__name__}")
    if value < 0:
        raise ValueError(f"max_wait: not negative, not {max_wait!r}")
    return value


class Stages:
    """Consecutive columnar steps of one format run as one: ``(kind, func)`` pairs, applied
    to one frame in order (a filter drops rows), so a batch is converted once for all."""

    def __init__(self, format: str, batch_size: Optional[int] = None,  # noqa: A002
                 max_wait: Optional[Wait] = None, schema: Any = None) -> None:
        check(format)
        if schema is not None and not hasattr(schema, "__arrow_c_schema__"):
            raise TypeError(f"schema: a pyarrow.Schema, not {type(schema).__name__}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size: at least 1, not {batch_size}")
        wait = seconds(max_wait)
        if wait is not None and batch_size is None:
            raise ValueError("max_wait needs batch_size: the rows a batch gathers before it goes on")
        self.format = format
        #: Most rows per call (read by the engine); None: the batches as they come.
        self.batch_size = batch_size
        #: Seconds the engine may hold a batch's first row to gather ``batch_size`` rows
        #: (read by the engine); None: never held.
        self.max_wait = wait
        #: The input's Arrow schema (read by the engine); None: inferred from the first batch.
        self.schema = schema
        self.stages: List[Tuple[str, Callable[[Any], Any]]] = []

    def add(self, kind: str, func: Callable[[Any], Any]) -> None:
        self.stages.append((kind, func))

    def __call__(self, schema: Any, array: Any) -> Any:
        pa = _need("pyarrow")
        _need("pyarrow.compute")  # pa.compute is there only once imported
        pl = _need("polars") if self.format == "polars" else None
        pd = _need("pandas") if self.format == "pandas" else None
        batch = pa.RecordBatch._import_from_c_capsule(schema, array)
        n = batch.num_rows
        frame: Any = pl.from_arrow(batch) if pl is not None else batch.to_pandas() if pd is not None else batch
        if all(kind == "filter_batches" for kind, _ in self.stages):
            keep = pa.array([True] * n, type=pa.bool_())
            numbered = _numbered(pa, pl, pd, frame)
            for _, func in self.stages:
                keep = pa.compute.and_(keep, _mask(pa, pl, pd, func(numbered), n))
            return keep
        rows = None  # the input row of each row of the frame, once a filter dropped some
        for kind, func in self.stages:
            if kind == "filter_batches":
                mask = _mask(pa, pl, pd, func(_numbered(pa, pl, pd, frame)), _rows(frame))
                kept = pa.compute.indices_nonzero(mask)
                rows = kept if rows is None else rows.take(kept)
                frame = _filter(pa, pl, pd, frame, mask)
            else:
                before = _rows(frame)
                frame = func(frame)
                if _rows(frame) != before:
                    raise ValueError(f"a map_batches function returns one row per input row: got {_rows(frame)} for {before}")
        out = _batch(pa, pl, pd, frame)
        if rows is None:
            return out
        return out.append_column(ROW, pa.compute.cast(rows, pa.int64()))


def _rows(frame: Any) -> int:
    return int(frame.num_rows) if hasattr(frame, "num_rows") else len(frame)


def _numbered(pa: Any, pl: Any, pd: Any, frame: Any) -> Any:
    """``frame`` with its rows numbered in a ``__wire_row`` column, so that a filter may
    return the rows it keeps (a smaller frame) instead of a mask."""
    numbers = _numbers(_rows(frame))
    if pl is not None:
        return frame.with_columns(pl.from_arrow(numbers).alias(ROW))
    if pd is not None:
        return frame.assign(**{ROW: numbers.to_numpy()})
    return frame.append_column(ROW, numbers)


@functools.lru_cache(maxsize=8)
def _numbers(n: int) -> Any:
    """0..n as an int64 Arrow array, made once per batch size (most batches have one)."""
    pa = _need("pyarrow")
    return pa.array(range(n), type=pa.int64())


def _kept(pa: Any, pl: Any, pd: Any, out: Any) -> Any:
    """The numbers of the rows a filter kept, when it returned a frame (else None)."""
    if pl is not None and isinstance(out, pl.DataFrame):
        column = out.get_column(ROW).to_arrow() if ROW in out.columns else None
    elif pd is not None and isinstance(out, pd.DataFrame):
        column = pa.array(out[ROW].to_numpy()) if ROW in out.columns else None
    elif isinstance(out, (pa.RecordBatch, pa.Table)):
        column = out.column(ROW) if ROW in out.column_names else None
    else:
        return None
    if column is None:
        raise ValueError(f"a filter_batches function that returns a frame keeps its {ROW} column (the rows' numbers)")
    return pa.compute.cast(column, pa.int64())


def _mask(pa: Any, pl: Any, pd: Any, out: Any, n: int) -> Any:
    kept = _kept(pa, pl, pd, out)
    if kept is not None:
        return pa.compute.is_in(_numbers(n), value_set=kept)
    if pl is not None and isinstance(out, pl.Series):
        out = out.to_arrow()
    elif pd is not None and isinstance(out, pd.Series):
        out = pa.array(out.to_numpy(), type=pa.bool_())
    elif isinstance(out, (list, tuple)):
        out = pa.array(out, type=pa.bool_())
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
    if not (isinstance(out, pa.Array) and out.type == pa.bool_()):
        raise TypeError(f"a filter_batches function returns a boolean mask, not {type(out).__name__}")
    if len(out) != n:
        raise ValueError(f"a filter_batches mask has one value per row: got {len(out)} for {n}")
    return pa.compute.fill_null(out, False)


def _filter(pa: Any, pl: Any, pd: Any, frame: Any, mask: Any) -> Any:
    if pl is not None:
        return frame.filter(pl.from_arrow(mask))
    if pd is not None:
        return frame[mask.to_numpy(zero_copy_only=False)].reset_index(drop=True)
    return frame.filter(mask)


def _batch(pa: Any, pl: Any, pd: Any, frame: Any) -> Any:
    if pl is not None and isinstance(frame, pl.DataFrame):
        frame = frame.to_arrow()
    elif pd is not None and isinstance(frame, pd.DataFrame):
        frame = pa.Table.from_pandas(frame, preserve_index=False)
    if isinstance(frame, pa.Table):
        frame = frame.combine_chunks()
        batches = frame.to_batches()
        if len(batches) == 1:
            return batches[0]
        return pa.RecordBatch.from_pylist(frame.to_pylist(), schema=frame.schema)
    if isinstance(frame, pa.RecordBatch):
        return frame
    raise TypeError(f"a map_batches function returns a frame of the batch's format, not {type(frame).__name__}")
