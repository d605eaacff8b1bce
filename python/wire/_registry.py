"""Python transforms known to this process, and the nodes it hosts: every node started here
gets every transform registered here, before or after it started."""

from __future__ import annotations

import re
import threading
import weakref
from typing import Any, Callable, Dict, List, Tuple

KINDS = ("map", "filter", "flat_map", "key_by", "fold", "stateful_map", "map_batches", "filter_batches")
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")

Entry = Tuple[str, Callable[..., Any], bool]

_lock = threading.Lock()
_transforms: Dict[str, Entry] = {}
_nodes: "weakref.WeakSet[Any]" = weakref.WeakSet()


def check(name: str, kind: str, func: Any) -> None:
    if not _NAME.match(name):
        raise ValueError(f"transform name {name!r}: use letters, digits, '.', '_' or '-'")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: one of {', '.join(KINDS)}")
    if not callable(func):
        raise TypeError(f"transform {name!r}: {type(func).__name__} is not callable")


def register(name: str, kind: str, func: Callable[..., Any], batch: bool) -> None:
    check(name, kind, func)
    with _lock:
        _transforms[name] = (kind, func, batch)
        nodes = list(_nodes)
    for node in nodes:
        node._register(name, kind, func, batch)


def attach(node: Any) -> None:
    """Registers every known transform on a node just started, and the node for later ones."""
    with _lock:
        _nodes.add(node)
        known = dict(_transforms)
    for name, (kind, func, batch) in known.items():
        node._register(name, kind, func, batch)


def detach(node: Any) -> None:
    with _lock:
        _nodes.discard(node)


def live_nodes() -> List[Any]:
    with _lock:
        return list(_nodes)
