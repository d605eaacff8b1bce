"""Sinks for :class:`wire.Pipeline`: each returns the spec's ``{"type", "config"}``.

    >>> import wire
    >>> wire.sinks.file("out/", format="csv")
    {'type': 'file', 'config': {'path': 'out/', 'format': 'csv'}}
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

from .sources import connector

__all__ = ["file", "stdout", "connector"]

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


def stdout() -> Spec:
    """Each record as a JSON line on the node's standard output."""
    return connector("stdout")
