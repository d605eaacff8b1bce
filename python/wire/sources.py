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

__all__ = ["file", "generator", "kafka", "mongodb", "connector"]

Spec = Dict[str, Any]


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
