"""Sources for :class:`wire.Pipeline`: each returns the spec's ``{"type", "config"}``.

    >>> import wire
    >>> wire.sources.file("events/*.jsonl")
    {'type': 'file', 'config': {'path': 'events/*.jsonl'}}
    >>> wire.sources.generator(count=10)
    {'type': 'generator', 'config': {'count': 10}}
    >>> wire.sources.kafka("127.0.0.1:9092", ["orders"], start="latest")["config"]["topics"]
    ['orders']
    >>> wire.sources.mongodb("mongodb://127.0.0.1", "shop", ["orders"], mode="poll")["config"]["mode"]
    'poll'
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Union

__all__ = ["file", "generator", "kafka", "mongodb", "python", "connector"]

Spec = Dict[str, Any]

_names: Dict[str, Any] = {}


def _register(kind: str, obj: Any, name: Optional[str]) -> str:
    """Registers ``obj`` in this process under ``name`` (default: its class name, numbered
    when another object holds it) and returns the name."""
    from . import _native

    base = name or f"py.{kind}.{type(obj).__name__}"
    chosen, n = base, 1
    while name is None and _names.get(f"{kind}:{chosen}", obj) is not obj:
        n += 1
        chosen = f"{base}.{n}"
    if kind == "source":
        _native.register_source(chosen, obj)
    else:
        _native.register_sink(chosen, obj)
    _names[f"{kind}:{chosen}"] = obj
    return chosen


def python(source: Any, *, name: Optional[str] = None) -> Spec:
    """A source written in Python: ``source`` has ``read(split, position)`` and, optionally,
    ``splits()`` (a list of split names; default ``["0"]``), split ``i`` read by partition
    ``i % parallelism``. ``read`` gets a split and the position it returned last (``None``
    at the start; the checkpointed one after a restart) and returns ``(values, position)``
    — an empty list when nothing is there yet — or ``None`` once the split is finished.
    Positions are any JSON value, kept in the checkpoints; values that are not JSON go to the
    dead-letter sink; an exception restarts the pipeline from its last checkpoint. It runs
    on its partition's own thread, in the nodes of this process (a pipeline using it is
    pinned to them); calls to one object never overlap.

    >>> class Pages:
    ...     def read(self, split, position):
    ...         start = position or 0
    ...         return ([{"n": n} for n in range(start, start + 10)], start + 10) if start < 30 else None
    >>> python(Pages(), name="pages")
    {'type': 'registered', 'config': {'name': 'pages'}}
    """
    if not callable(getattr(source, "read", None)):
        raise TypeError(f"a Python source has a read(split, position) method; {type(source).__name__} has none")
    return {"type": "registered", "config": {"name": _register("source", source, name)}}


def connector(type: str, **config: Any) -> Spec:
    """Any connector by its type name, with its config fields as keyword arguments."""
    return {"type": type, "config": {k: v for k, v in config.items() if v is not None}}


def file(
    path: Union[str, "os.PathLike[str]"],
    *,
    format: Optional[str] = None,
    tail: Optional[bool] = None,
) -> Spec:
    """Lines of files: ``path`` is a file or a glob; ``format`` is ``jsonl`` (default) or
    ``csv``; ``tail`` keeps reading as files grow and appear."""
    return connector("file", path=os.fspath(path), format=format, tail=tail)


def generator(
    *, count: Optional[int] = None, rate: Optional[int] = None, template: Any = None
) -> Spec:
    """Made-up records ``{"seq": n}`` (or ``template`` with ``"{{seq}}"`` replaced):
    ``count`` in all (default: without end), at ``rate`` per second."""
    return connector("generator", count=count, rate=rate, template=template)


def kafka(
    bootstrap_servers: str,
    topics: Sequence[str],
    *,
    start: Optional[str] = None,
    start_timestamp_ms: Optional[int] = None,
    format: Optional[str] = None,
    group_id: Optional[str] = None,
    properties: Optional[Dict[str, str]] = None,
) -> Spec:
    """Messages of Kafka ``topics`` (their partitions spread over the pipeline's
    partitions; offsets kept in Wire's checkpoints): ``start`` ``earliest`` (default) or
    ``latest``, or ``start_timestamp_ms``; ``format`` ``json`` (default) or ``raw``;
    ``properties`` are extra librdkafka settings."""
    return connector(
        "kafka",
        bootstrap_servers=bootstrap_servers,
        topics=list(topics),
        start=start,
        start_timestamp_ms=start_timestamp_ms,
        format=format,
        group_id=group_id,
        properties=properties,
    )


def mongodb(
    uri: str,
    database: str,
    collections: Sequence[str],
    *,
    mode: Optional[str] = None,
    poll_field: Optional[str] = None,
    poll_interval: Optional[str] = None,
    filter: Optional[Dict[str, Any]] = None,
    batch_size: Optional[int] = None,
    tail: Optional[bool] = None,
) -> Spec:
    """Documents of MongoDB ``collections`` (one split each; as relaxed extended JSON, keyed
    by ``_id``): each is copied, then followed, by ``mode`` ``change_stream`` (default;
    replica sets) or ``poll`` (servers without change streams: what moved past the last
    (``poll_field``, ``_id``) read, every ``poll_interval``). ``filter`` is a query;
    ``tail=False`` ends after the copy."""
    return connector(
        "mongodb",
        uri=uri,
        database=database,
        collections=list(collections),
        mode=mode,
        poll_field=poll_field,
        poll_interval=poll_interval,
        filter=filter,
        batch_size=batch_size,
        tail=tail,
    )
