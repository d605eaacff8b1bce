"""Sinks for :class:`wire.Pipeline`: each returns the spec's ``{"type", "config"}``.

    >>> import wire
    >>> wire.sinks.file("out/", format="csv")
    {'type': 'file', 'config': {'path': 'out/', 'format': 'csv'}}
    >>> wire.sinks.elasticsearch("http://127.0.0.1:9200", "events-{date}")["config"]["index"]
    'events-{date}'
    >>> wire.sinks.mongodb("mongodb://127.0.0.1", "shop", "orders", id_field="id")["type"]
    'mongodb'
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

from .sources import _register, connector

__all__ = ["file", "stdout", "kafka", "elasticsearch", "mongodb", "python", "connector"]

Spec = Dict[str, Any]


def file(
    path: Union[str, "os.PathLike[str]"],
    *,
    format: Optional[str] = None,
    rotate_bytes: Optional[int] = None,
    rotate_interval: Optional[str] = None,
) -> Spec:
    """Part files in the directory ``path``, published at each checkpoint (exactly once):
    ``format`` ``jsonl`` (default) or ``csv``; rotated at ``rotate_bytes`` or after
    ``rotate_interval`` (such as ``"5m"``)."""
    return connector(
        "file",
        path=os.fspath(path),
        format=format,
        rotate_bytes=rotate_bytes,
        rotate_interval=rotate_interval,
    )


def stdout(*, prefix: Optional[str] = None) -> Spec:
    """Each record as a JSON line on the node's standard output, after ``prefix`` if
    given."""
    return connector("stdout", prefix=prefix)


def kafka(
    bootstrap_servers: str,
    topic: str,
    *,
    compression: Optional[str] = None,
    linger_ms: Optional[int] = None,
    batch_size: Optional[int] = None,
    properties: Optional[Dict[str, str]] = None,
) -> Spec:
    """Each record as a message of ``topic`` (an idempotent producer; the record's key is
    the message key; each checkpoint waits for the broker's acknowledgement):
    ``compression`` ``lz4`` (default), ``gzip``, ``snappy`` or ``none``."""
    return connector(
        "kafka",
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        compression=compression,
        linger_ms=linger_ms,
        batch_size=batch_size,
        properties=properties,
    )


def elasticsearch(
    url: str,
    index: str,
    *,
    id_field: Optional[str] = None,
    max_docs: Optional[int] = None,
    max_bytes: Optional[int] = None,
    flush_interval: Optional[str] = None,
    ca: Optional[Union[str, "os.PathLike[str]"]] = None,
    user: Optional[str] = None,
    password: Optional[str] = None,
    api_key: Optional[str] = None,
) -> Spec:
    """Each record as a document in Elasticsearch or OpenSearch (bulk API). ``index`` may
    name record fields and the date (``"events-{kind}-{date}"``); ids come from
    ``id_field`` or from the record's source position, so replays overwrite; documents the
    cluster refuses for good (a mapping conflict) go to the dead-letter sink.

    A secured cluster: ``ca`` (a PEM file of CAs to trust besides the public roots) for an
    ``https://`` URL, and ``user`` with ``password`` or ``api_key``; ``"${NAME}"`` reads
    the environment variable ``NAME`` of the node that runs the sink, so the spec need not
    hold the secret.

    >>> elasticsearch("https://search:9200", "events", user="wire", password="${SEARCH_PASSWORD}")["config"]["password"]
    '${SEARCH_PASSWORD}'
    """
    return connector(
        "elasticsearch",
        url=url,
        index=index,
        id_field=id_field,
        max_docs=max_docs,
        max_bytes=max_bytes,
        flush_interval=flush_interval,
        ca=None if ca is None else os.fspath(ca),
        user=user,
        password=password,
        api_key=api_key,
    )


def mongodb(
    uri: str,
    database: str,
    collection: str,
    *,
    id_field: Optional[str] = None,
    max_docs: Optional[int] = None,
    flush_interval: Optional[str] = None,
) -> Spec:
    """Each record (a JSON object, extended JSON for BSON types) upserted into a MongoDB
    ``collection`` by ``_id`` (the document's own, the ``id_field``'s value, or one derived
    from the record's source position), so replays overwrite; documents the server refuses
    go to the dead-letter sink with its reason."""
    return connector(
        "mongodb",
        uri=uri,
        database=database,
        collection=collection,
        id_field=id_field,
        max_docs=max_docs,
        flush_interval=flush_interval,
    )


def python(sink: Any, *, name: Optional[str] = None) -> Spec:
    """A sink written in Python: ``sink`` has ``write(values)`` (a batch's values, in order;
    it may return a list of ``(index, reason)`` for values it refuses, which go to the
    dead-letter sink) and, optionally, ``flush()``, called before each checkpoint — what was
    written must be durable when it returns. Delivery is at-least-once: after a restart,
    batches since the last checkpoint are written again. An exception restarts the pipeline
    from its last checkpoint. Calls to one object never overlap (partitions take turns).

    >>> class Hook:
    ...     def write(self, values):
    ...         pass
    >>> python(Hook(), name="hook")
    {'type': 'registered', 'config': {'name': 'hook'}}
    """
    if not callable(getattr(sink, "write", None)):
        raise TypeError(f"a Python sink has a write(values) method; {type(sink).__name__} has none")
    return {"type": "registered", "config": {"name": _register("sink", sink, name)}}
