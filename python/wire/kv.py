"""The replicated key-value space: ``node.kv`` and ``client.kv``.

Keys are text, values bytes (``str`` values are stored as UTF-8). Reads are
linearizable unless ``consistency="local"`` or ``"leader"`` asks for less::

    >>> import wire, tempfile
    >>> with wire.Node(data_dir=tempfile.mkdtemp(), http_addr="127.0.0.1:0",
    ...                raft_addr="127.0.0.1:0", bootstrap=True) as node:
    ...     _ = node.kv.put("greeting", "hello")
    ...     node.kv.get("greeting")
    ...     ok = node.kv.txn(compare=[wire.kv.Equals("greeting", b"hello")],
    ...                      success=[wire.kv.Put("greeting", b"bye"), wire.kv.Delete("other")])
    ...     ok.succeeded, node.kv.get("greeting")
    b'hello'
    (True, b'bye')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Protocol, Sequence, Tuple, Union

__all__ = [
    "KV",
    "Equals",
    "Exists",
    "Absent",
    "Put",
    "Delete",
    "WriteResult",
    "TxnResult",
    "Page",
]

Value = Union[bytes, bytearray, memoryview, str]
OpTuple = Tuple[str, str, Optional[bytes]]


def _bytes(value: Value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a value is bytes or str, not {type(value).__name__}")


@dataclass(frozen=True)
class Equals:
    """Holds when ``key`` exists with exactly ``value``."""

    key: str
    value: Value

    def _tuple(self) -> OpTuple:
        return (self.key, "equals", _bytes(self.value))


@dataclass(frozen=True)
class Exists:
    """Holds when ``key`` exists."""

    key: str

    def _tuple(self) -> OpTuple:
        return (self.key, "exists", None)


@dataclass(frozen=True)
class Absent:
    """Holds when ``key`` does not exist."""

    key: str

    def _tuple(self) -> OpTuple:
        return (self.key, "absent", None)


@dataclass(frozen=True)
class Put:
    """Sets ``key`` to ``value``."""

    key: str
    value: Value

    def _tuple(self) -> OpTuple:
        return ("put", self.key, _bytes(self.value))


@dataclass(frozen=True)
class Delete:
    """Removes ``key``."""

    key: str

    def _tuple(self) -> OpTuple:
        return ("delete", self.key, None)


Compare = Union[Equals, Exists, Absent]
Op = Union[Put, Delete]


@dataclass(frozen=True)
class WriteResult:
    """A committed put or delete: the log index it committed at, and whether the key
    existed before."""

    index: int
    existed: bool


@dataclass(frozen=True)
class TxnResult:
    """A committed transaction: whether every compare held (so ``success`` ran), and its
    log index."""

    succeeded: bool
    index: int


@dataclass(frozen=True)
class Page:
    """One page of a listing; pass ``next_after`` as ``after`` for the next page."""

    items: List[Tuple[str, bytes]]
    more: bool

    @property
    def next_after(self) -> Optional[str]:
        return self.items[-1][0] if self.more and self.items else None


class _Transport(Protocol):
    def kv_get(self, key: str, consistency: Optional[str] = ...) -> Optional[bytes]: ...

    def kv_put(self, key: str, value: bytes) -> Tuple[int, bool]: ...

    def kv_delete(self, key: str) -> Tuple[int, bool]: ...

    def kv_list(
        self, prefix: str, after: Optional[str] = ..., limit: int = ..., consistency: Optional[str] = ...
    ) -> Tuple[List[Tuple[str, bytes]], bool]: ...

    def kv_txn(
        self, compare: Sequence[OpTuple], success: Sequence[OpTuple], failure: Sequence[OpTuple]
    ) -> Tuple[bool, int]: ...


class KV:
    """The key-value space of a cluster, reached through a node or a client."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    def get(self, key: str, *, consistency: Optional[str] = None) -> Optional[bytes]:
        """The value of ``key``, or None when it does not exist."""
        return self._t.kv_get(key, consistency)

    def put(self, key: str, value: Value) -> WriteResult:
        """Sets ``key`` to ``value`` once a quorum has it."""
        index, existed = self._t.kv_put(key, _bytes(value))
        return WriteResult(index, existed)

    def delete(self, key: str) -> WriteResult:
        """Removes ``key``; ``existed`` says whether there was one."""
        index, existed = self._t.kv_delete(key)
        return WriteResult(index, existed)

    def list(
        self,
        prefix: str = "",
        *,
        after: Optional[str] = None,
        limit: int = 100,
        consistency: Optional[str] = None,
    ) -> Page:
        """One page of keys under ``prefix`` in key order, after ``after``."""
        items, more = self._t.kv_list(prefix, after, limit, consistency)
        return Page(list(items), more)

    def scan(self, prefix: str = "", *, page_size: int = 100) -> Iterator[Tuple[str, bytes]]:
        """Every (key, value) under ``prefix``, fetched a page at a time."""
        after: Optional[str] = None
        while True:
            page = self.list(prefix, after=after, limit=page_size)
            yield from page.items
            if page.next_after is None:
                return
            after = page.next_after

    def txn(
        self,
        compare: Sequence[Compare] = (),
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """Atomically: if every condition in ``compare`` holds, applies ``success``, else
        ``failure``."""
        succeeded, index = self._t.kv_txn(
            [c._tuple() for c in compare],
            [o._tuple() for o in success],
            [o._tuple() for o in failure],
        )
        return TxnResult(succeeded, index)
