"""Columnar batches for Python functions (:meth:`wire.Pipeline.map_batches`,
:meth:`~wire.Pipeline.filter_batches`): the engine builds an Arrow record batch from the
records and hands it over through the Arrow C data interface (PyCapsules, no copy); here it
becomes a ``pyarrow.RecordBatch``, a ``polars.DataFrame`` or a ``pandas.DataFrame``, the
function runs, and its answer goes back the same way. pyarrow (and polars or pandas for
those formats) are optional: ``pip install "wire[arrow]"``."""

from __future__ import annotations

import importlib
from typing import Any, Callable, List, Optional, Tuple

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


class Stages:
    """Consecutive columnar steps of one format run as one: ``(kind, func)`` pairs, applied
    to one frame in order (a filter drops rows), so a batch is converted once for all."""

    def __init__(self, format: str, batch_size: Optional[int] = None) -> None:  # noqa: A002
        check(format)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size: at least 1, not {batch_size}")
        self.format = format
        #: Most rows per call (read by the engine); None: the batches as they come.
        self.batch_size = batch_size
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
            for _, func in self.stages:
                keep = pa.compute.and_(keep, _mask(pa, pl, pd, func(frame), n))
            return keep
        rows = None  # the input row of each row of the frame, once a filter dropped some
        for kind, func in self.stages:
            if kind == "filter_batches":
                mask = _mask(pa, pl, pd, func(frame), _rows(frame))
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


def _mask(pa: Any, pl: Any, pd: Any, out: Any, n: int) -> Any:
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
