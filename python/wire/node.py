"""Nodes hosted by this Python process, and clients of nodes that run elsewhere."""

from __future__ import annotations

import atexit
import json
import os
import signal
import threading
import time
from types import TracebackType
from typing import Any, Callable, Dict, List, Optional, Sequence, Type, Union

from . import _native, _registry
from ._http import HttpTransport
from .kv import KV
from .pipelines import Pipelines

__all__ = ["Node", "Client"]


class Node:
    """A Wire node running in this process: it joins or starts a Raft cluster, serves the
    HTTP API, and runs its share of every pipeline, including Python transforms.

    Options left out take the engine's defaults (those of ``wire node``); ``options`` takes
    any other field of the node's TOML config (``heartbeat_ms``, ``snapshot_threshold``...).
    Stop it with :meth:`stop` or use it as a context manager; nodes still running when the
    interpreter exits are stopped then. Ctrl-C in ``with`` or :meth:`run_forever` stops it
    cleanly (pipelines take a final checkpoint).

        >>> import wire, tempfile
        >>> with wire.Node(node_id=1, data_dir=tempfile.mkdtemp(), bootstrap=True,
        ...                http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0") as node:
        ...     node.wait_ready().status()["role"]
        'leader'
    """

    def __init__(
        self,
        node_id: Optional[int] = None,
        http_addr: Optional[str] = None,
        raft_addr: Optional[str] = None,
        data_dir: Union[str, "os.PathLike[str]", None] = None,
        bootstrap: Optional[bool] = None,
        join: Optional[Sequence[str]] = None,
        learner: Optional[bool] = None,
        *,
        worker_threads: int = 2,
        **options: Any,
    ) -> None:
        given: Dict[str, Any] = dict(
            node_id=node_id,
            http_addr=http_addr,
            raft_addr=raft_addr,
            data_dir=None if data_dir is None else os.fspath(data_dir),
            bootstrap=bootstrap,
            join=None if join is None else [join] if isinstance(join, str) else list(join),
            learner=learner,
            **options,
        )
        config = {k: v for k, v in given.items() if v is not None}
        self._native = _native.Node(json.dumps(config), worker_threads)
        self.kv = KV(self._native)
        """The cluster's key-value space (see :mod:`wire.kv`)."""
        self.pipelines = Pipelines(self._native, host=self)
        """The cluster's pipelines (see :mod:`wire.pipelines`)."""
        _registry.attach(self)

    # Identity.

    @property
    def id(self) -> int:
        return int(self._native.id)

    @property
    def http_addr(self) -> str:
        """The HTTP API's bound address (a port 0 in the options is resolved)."""
        return str(self._native.http_addr)

    @property
    def raft_addr(self) -> str:
        return str(self._native.raft_addr)

    @property
    def url(self) -> str:
        """The HTTP API's base URL (``https://`` with TLS), for :class:`Client` or any
        HTTP tool."""
        return str(self._native.url)

    @property
    def stopped(self) -> bool:
        return bool(self._native.stopped)

    # Cluster.

    def status(self) -> Dict[str, Any]:
        """What ``GET /status`` answers: role, leader, term, log indexes, members."""
        return dict(json.loads(self._native.status()))

    def members(self) -> List[Dict[str, Any]]:
        """Every member: addresses, voter, ``alive`` and ``last_heard_ms`` (as the leader
        sees them), ``draining`` and its number of pipeline ``partitions``."""
        return list(self.status()["members"])

    def is_ready(self) -> bool:
        """Whether the node is a member that knows a leader and has caught up with it."""
        return bool(self._native.is_ready())

    def wait_ready(self, timeout: float = 30.0) -> "Node":
        """Waits until :meth:`is_ready`; raises :class:`TimeoutError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"node {self.id} not ready after {timeout}s")
            time.sleep(0.05)
        return self

    def remove_member(self, node_id: int) -> None:
        """Removes a member from the cluster (through the leader)."""
        self._native.remove_member(node_id)

    def drain(self, node_id: int, *, undo: bool = False) -> bool:
        """Drains a member before maintenance: its pipeline partitions are handed off to the
        others (each after a final checkpoint) and it gets no new ones; ``undo=True`` ends
        it. Returns whether anything changed. ``members()`` shows each member's
        ``draining`` and ``partitions``."""
        return bool(self._native.drain(node_id, not undo))

    # Lifetime.

    def stop(self) -> None:
        """Stops the node: pipeline jobs take a final checkpoint, then Raft and storage
        close. Does nothing if it is stopped already."""
        _registry.detach(self)
        self._native.stop()

    def run_forever(self) -> None:
        """Serves until Ctrl-C or SIGTERM, then stops the node."""
        stop = threading.Event()
        previous: Optional[Callable[..., Any]] = None
        main = threading.current_thread() is threading.main_thread()
        if main:
            previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # type: ignore[assignment]
        try:
            while not stop.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
            self.stop()

    def _register(self, name: str, kind: str, func: Callable[..., Any], batch: bool) -> None:
        if not self.stopped:
            self._native.register_transform(name, kind, func, batch)

    def __enter__(self) -> "Node":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else self.http_addr
        return f"wire.Node(id={self.id}, {state})"


class Client:
    """A client of a cluster running elsewhere, through any member's HTTP API. It offers
    the same ``kv`` and ``pipelines`` as :class:`Node` and raises the same exceptions;
    retryable answers (no leader yet) are retried for ``retry_for`` seconds.

    A cluster with users wants ``user`` and ``password``, or a bearer ``token``
    (:class:`wire.UnauthenticatedError` otherwise, :class:`wire.ForbiddenError` for a call
    the user may not make). Over TLS give an ``https://`` URL and the ``ca`` file that signed
    the nodes' certificates, and ``cert`` and ``key`` when the nodes want client
    certificates.

        >>> import wire, tempfile
        >>> with wire.Node(data_dir=tempfile.mkdtemp(), bootstrap=True,
        ...                http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0") as node:
        ...     client = wire.Client(node.url)
        ...     _ = client.kv.put("k", b"v")
        ...     node.kv.get("k")
        b'v'
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        retry_for: float = 5.0,
        user: Optional[str] = None,
        password: Optional[str] = None,
        token: Optional[str] = None,
        ca: Optional[str] = None,
        cert: Optional[str] = None,
        key: Optional[str] = None,
    ) -> None:
        self._t = HttpTransport(
            url,
            timeout=timeout,
            retry_for=retry_for,
            user=user,
            password=password,
            token=token,
            ca=ca,
            cert=cert,
            key=key,
        )
        self.url = self._t.url
        self.kv = KV(self._t)
        self.pipelines = Pipelines(self._t)

    def status(self) -> Dict[str, Any]:
        """What ``GET /status`` answers."""
        return dict(json.loads(self._t.status()))

    def members(self) -> List[Dict[str, Any]]:
        """Every member: addresses, voter, ``alive`` and ``last_heard_ms`` (as the leader
        sees them), ``draining`` and its number of pipeline ``partitions``."""
        return list(self.status()["members"])

    def drain(self, node_id: int, *, undo: bool = False) -> bool:
        """As :meth:`Node.drain`."""
        return self._t.drain(node_id, undo)

    def __repr__(self) -> str:
        return f"wire.Client({self.url!r})"


@atexit.register
def _stop_all() -> None:
    for node in _registry.live_nodes():
        try:
            node.stop()
        except Exception:  # noqa: BLE001 - exiting: stop what can be stopped
            pass
