"""Wire: a distributed stream-processing engine, from Python.

Start or join nodes in this process (:class:`Node`), or reach a cluster that runs
elsewhere (:class:`Client`); use the replicated key-value space (``.kv``) and run
pipelines whose transforms are plain Python functions (``.pipelines``,
:class:`Pipeline`)::

    >>> import wire, tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "events.jsonl").write_text('{"user": "a", "amount": 7.5}\\n{"user": "b", "amount": 2}\\n')
    >>> def enrich(event):
    ...     event["amount_cents"] = int(event["amount"] * 100)
    ...     return event
    >>> flow = (wire.Pipeline("orders")
    ...         .source(wire.sources.file(root / "events.jsonl"))
    ...         .map(enrich)
    ...         .filter(lambda e: e["amount"] > 5)
    ...         .sink(wire.sinks.file(root / "out")))
    >>> with wire.Node(data_dir=root / "node", bootstrap=True,
    ...                http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0") as node:
    ...     _ = node.pipelines.deploy(flow)
    ...     node.pipelines.wait("orders", timeout=30)["steps"]["sink0"]["records_in"]
    1
"""

from . import agg, auth, kv, sinks, sources, windows
from ._native import version as _engine_version
from .errors import (
    ConflictError,
    ForbiddenError,
    InternalError,
    InvalidConfigError,
    InvalidRequestError,
    InvalidSpecError,
    NotFoundError,
    PipelineFailedError,
    ShutdownError,
    StorageError,
    TooLargeError,
    TransportError,
    UnauthenticatedError,
    UnavailableError,
    WireError,
)
from .node import Client, Node
from .pipelines import Pipeline, Pipelines, Written, transform

__version__: str = _engine_version()

__all__ = [
    "Node",
    "Client",
    "Pipeline",
    "Pipelines",
    "Written",
    "transform",
    "auth",
    "kv",
    "sources",
    "sinks",
    "windows",
    "agg",
    "WireError",
    "InvalidRequestError",
    "InvalidSpecError",
    "InvalidConfigError",
    "TooLargeError",
    "NotFoundError",
    "ConflictError",
    "UnavailableError",
    "ShutdownError",
    "TransportError",
    "StorageError",
    "InternalError",
    "UnauthenticatedError",
    "ForbiddenError",
    "PipelineFailedError",
]
