"""Pipelines: build one in Python (:class:`Pipeline`), run it on a cluster
(:class:`Pipelines`, as ``node.pipelines`` or ``client.pipelines``).

A pipeline built in Python *is* a JSON spec: :meth:`Pipeline.spec` returns the same
document ``POST /pipelines`` takes. Python functions in it become transforms registered
on the nodes this process hosts, named ``py.<pipeline>.<step>.<function>``::

    >>> import wire
    >>> flow = (wire.Pipeline("orders", parallelism=2)
    ...         .source(wire.sources.file("events.jsonl"))
    ...         .filter(lambda e: e["amount"] > 5)
    ...         .key_by("user")
    ...         .sink(wire.sinks.file("out/")))
    >>> [t["type"] for t in flow.spec()["transforms"]]
    ['py.orders.0.lambda', 'key_by']
    >>> flow.spec()["transforms"][1]["config"]
    {'key': '.user'}
"""

from __future__ import annotations

import copy
import datetime
import json
import re
import time
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Protocol,
    TypeVar,
    Union,
)

from . import _registry
from .errors import InvalidRequestError, PipelineFailedError, WireError

__all__ = ["Pipeline", "Pipelines", "Written", "transform"]

Spec = Dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])

_SLUG = re.compile(r"[^A-Za-z0-9_-]+")
_JQ_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def transform(name: str, *, kind: str = "map", batch: bool = False) -> Callable[[F], F]:
    """Registers the decorated function as the transform ``name`` on every node this
    process hosts (now and later), so JSON and YAML specs sent over HTTP or the CLI can use
    it as ``{"type": name}`` (or, for ``kind="key_by"``,
    ``{"type": "key_by", "config": {"transform": name}}``).

    ``kind`` is ``map`` (return the new value), ``filter`` (return whether to keep it),
    ``flat_map`` (return an iterable of values) or ``key_by`` (return the key). With
    ``batch=True`` the function takes the list of a batch's values and returns a list with
    one result per value. ``kind`` ``fold`` or ``stateful_map`` registers a keyed function
    ``fn(state, value)`` (see :meth:`Pipeline.fold`, :meth:`Pipeline.stateful_map`), used as
    ``{"type": "reduce", "config": {"function": name, "init": ...}}`` after a ``key_by``.

        >>> import wire
        >>> @wire.transform("double")
        ... def double(event):
        ...     event["n"] *= 2
        ...     return event
        >>> double({"n": 2})
        {'n': 4}
    """
    _registry.check(name, kind, lambda: None)

    def decorate(func: F) -> F:
        _registry.register(name, kind, func, batch)
        return func

    return decorate


def _aggregates(aggregates: Any, named: Dict[str, Any]) -> Dict[str, Any]:
    """Aggregates given positionally (wire.agg ones, or dicts of spec forms) and by output
    field, as a spec's ``aggregate`` map."""
    from .agg import Aggregate

    out: Dict[str, Any] = {}
    for a in aggregates:
        if isinstance(a, Aggregate):
            out[a.name] = a.spec
        elif isinstance(a, dict):
            out.update(a)
        else:
            raise TypeError(f"an aggregate is a wire.agg aggregate or a dict, not {type(a).__name__}")
    for name, a in named.items():
        out[name] = a.spec if isinstance(a, Aggregate) else a
    return out


def _spec_of(spec: Union["Pipeline", Spec, str]) -> str:
    if isinstance(spec, Pipeline):
        return spec.spec_json()
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        return json.dumps(spec)
    raise TypeError(f"a spec is a wire.Pipeline, a dict or JSON/YAML text, not {type(spec).__name__}")


class Pipeline:
    """A pipeline under construction: sources, a chain of transforms, sinks.

    Steps run in the order they are added; every sink takes the last transform's output.
    Each transform method takes ``id`` (the step's name in status and metrics) and
    ``on_error`` (``dead_letter``, the default, or ``fail``)."""

    def __init__(
        self,
        name: str,
        *,
        parallelism: int = 1,
        checkpoint_interval: Optional[str] = None,
        on_error: Optional[str] = None,
        node: Optional[int] = None,
    ) -> None:
        self.name = name
        self._spec: Spec = {"name": name, "parallelism": parallelism, "sources": [], "transforms": [], "sinks": []}
        if checkpoint_interval is not None:
            self._spec["checkpoint_interval"] = checkpoint_interval
        if on_error is not None:
            self._spec["on_error"] = on_error
        if node is not None:
            self._spec["node"] = node
        self._callables: Dict[str, _registry.Entry] = {}

    # Building.

    def source(self, source: Spec, *, id: Optional[str] = None) -> "Pipeline":
        """Adds a source (see :mod:`wire.sources`)."""
        self._spec["sources"].append(self._step(source, id))
        return self

    def sink(self, sink: Spec, *, id: Optional[str] = None) -> "Pipeline":
        """Adds a sink (see :mod:`wire.sinks`)."""
        self._spec["sinks"].append(self._step(sink, id))
        return self

    def dead_letter(self, sink: Spec) -> "Pipeline":
        """Where rejected records go, each with the step, the input's place and the reason
        (a Python transform's traceback)."""
        self._spec["dead_letter"] = copy.deepcopy(sink)
        return self

    def map(self, func: Callable[[Any], Any], *, batch: bool = False, id: Optional[str] = None,
            on_error: Optional[str] = None) -> "Pipeline":
        """Replaces each record's value by ``func(value)``; with ``batch``, ``func`` maps a
        list of values to a list of new values."""
        return self._python("map", func, batch, id, on_error)

    def filter(self, func: Callable[[Any], Any], *, batch: bool = False, id: Optional[str] = None,
               on_error: Optional[str] = None) -> "Pipeline":
        """Keeps the records for which ``func(value)`` is true; with ``batch``, ``func``
        returns a list of booleans."""
        return self._python("filter", func, batch, id, on_error)

    def flat_map(self, func: Callable[[Any], Any], *, batch: bool = False, id: Optional[str] = None,
                 on_error: Optional[str] = None) -> "Pipeline":
        """Replaces each record by a record per item of ``func(value)``; with ``batch``,
        ``func`` returns a list of iterables."""
        return self._python("flat_map", func, batch, id, on_error)

    def map_batches(self, func: Callable[[Any], Any], *, format: str = "arrow", batch_size: Optional[int] = None,
                    max_wait: Optional[Union[str, float, datetime.timedelta]] = None, schema: Any = None,
                    id: Optional[str] = None, on_error: Optional[str] = None) -> "Pipeline":
        """Runs ``func`` on whole batches as columns: it gets a ``pyarrow.RecordBatch``
        (``format="arrow"``), a ``polars.DataFrame`` (``"polars"``) or a ``pandas.DataFrame``
        (``"pandas"``) and returns one of the same format with one row per input row (the
        records' new values). The batch is built in Rust and handed over without copying (the
        Arrow C data interface). Its schema is ``schema`` (a ``pyarrow.Schema``) if given,
        else inferred from the step's first batch (give it when that batch may not be typical:
        a first batch with a string where numbers follow makes the column a string); a
        record that does not fit it (a field it lacks, another type) goes to the dead-letter
        sink with the reason. A function that raises dead-letters its batch.

        ``batch_size`` caps the rows per call: the engine's batches (up to 1024 records as
        the source reads them) are cut to it. With ``max_wait`` too (``"100ms"``, seconds or
        a ``timedelta``), the engine gathers batches of ``batch_size`` rows, holding the
        first row of a batch at most ``max_wait``; what it holds goes on before every
        checkpoint and before the watermark passes, so holding loses and delays nothing
        else. Consecutive ``map_batches`` / ``filter_batches`` with the same format and
        settings run as one step, on one frame (one conversion each way). Needs pyarrow
        (``pip install "wire[arrow]"``) and polars or pandas for those formats."""
        return self._columnar("map_batches", func, format, batch_size, max_wait, schema, id, on_error)

    def filter_batches(self, func: Callable[[Any], Any], *, format: str = "arrow",
                       batch_size: Optional[int] = None,
                       max_wait: Optional[Union[str, float, datetime.timedelta]] = None, schema: Any = None,
                       id: Optional[str] = None, on_error: Optional[str] = None) -> "Pipeline":
        """Keeps the records of a columnar batch (as :meth:`map_batches`) for which the
        boolean mask ``func`` returns (a pyarrow array, a polars or pandas Series, or a list)
        is true. ``func`` may instead return the rows it keeps, as a smaller frame: the frame
        it gets has one more column, ``__wire_row`` (each row's number in the batch), which
        that frame must keep (``frame.filter(...)``, ``frame[frame.amount > 5]`` do)."""
        return self._columnar("filter_batches", func, format, batch_size, max_wait, schema, id, on_error)

    def _columnar(self, kind: str, func: Callable[[Any], Any], format: str, batch_size: Optional[int],
                  max_wait: Optional[Union[str, float, datetime.timedelta]], schema: Any,
                  id: Optional[str], on_error: Optional[str]) -> "Pipeline":
        from . import _columnar

        wait = _columnar.seconds(max_wait)
        last = self._spec["transforms"][-1] if self._spec["transforms"] else None
        entry = self._callables.get(last["type"]) if last is not None else None
        stages = entry[1] if entry is not None else None
        if (last is not None and isinstance(stages, _columnar.Stages) and stages.format == format
                and stages.batch_size == batch_size and stages.max_wait == wait and schema is None and id is None
                and on_error == last.get("on_error") and last.get("id") is None):
            # The step before is columnar in the same format: one conversion for both.
            stages.add(kind, func)
            return self
        stages = _columnar.Stages(format, batch_size, max_wait, schema)
        stages.add(kind, func)
        name = self._callable_name(kind, func)
        self._callables[name] = ("map_batches", stages, True)
        return self._transform(name, None, id, on_error)

    def key_by(self, key: Union[str, Callable[[Any], Any]], *, id: Optional[str] = None,
               on_error: Optional[str] = None) -> "Pipeline":
        """Keys each record, so records of one key go to one partition: ``key`` is a field
        path (``"user"``, ``"user.id"``), a jq expression (``".user"``), or a function of
        the value returning a str, bytes or any JSON value."""
        if callable(key):
            name = self._callable_name("key_by", key)
            self._callables[name] = ("key_by", key, False)
            config: Dict[str, Any] = {"transform": name}
        elif isinstance(key, str):
            config = {"key": "." + key if _JQ_PATH.match(key) else key}
        else:
            raise TypeError(f"key: a field path, a jq expression or a function, not {type(key).__name__}")
        return self._transform("key_by", config, id, on_error)

    def event_time(self, field: Optional[str] = None, *, max_delay: Optional[str] = None,
                   idle_after: Optional[str] = None) -> "Pipeline":
        """Sets where records' event time comes from (for windows): ``field`` is a field
        path (``"ts"``) or jq expression giving epoch milliseconds or an RFC 3339 time; left
        out, the source's own time or the read time. The watermark trails the newest event
        time by ``max_delay`` (``"5s"``); a split silent for ``idle_after`` stops holding it.

        >>> Pipeline("p").event_time("ts", max_delay="5s").spec()["event_time"]
        {'field': '.ts', 'max_delay': '5s'}
        """
        et: Spec = {}
        if field is not None:
            et["field"] = "." + field if _JQ_PATH.match(field) else field
        if max_delay is not None:
            et["max_delay"] = max_delay
        if idle_after is not None:
            et["idle_after"] = idle_after
        self._spec["event_time"] = et
        return self

    def window(self, window: Union[str, Dict[str, str]], *aggregates: Any, slide: Optional[str] = None,
               allowed_lateness: Optional[str] = None, early: Optional[str] = None,
               id: Optional[str] = None, on_error: Optional[str] = None, **named: Any) -> "Pipeline":
        """Aggregates each key's records (after :meth:`key_by`) over event-time windows:
        ``window`` is :func:`wire.windows.tumbling`, :func:`~wire.windows.sliding` or
        :func:`~wire.windows.session` (or a size such as ``"1m"``). Aggregates come from
        :mod:`wire.agg`, positional (named by default: ``sum_amount``) or by keyword (the
        output field), or as a dict of spec forms. Once the watermark passes a window's end
        it emits one record per key with ``key``, ``window_start``, ``window_end`` (ms) and
        each aggregate; late records go to the dead-letter sink with the window they missed.
        With ``early`` (``"10s"``), open windows also emit their result so far that often,
        marked ``"early": true``.

        >>> import wire
        >>> flow = Pipeline("p").key_by("user").window(
        ...     wire.windows.tumbling("1m"), wire.agg.sum("amount"), n=wire.agg.count())
        >>> flow.spec()["transforms"][1]["config"]
        {'size': '1m', 'aggregate': {'sum_amount': {'sum': '.amount'}, 'n': 'count'}}
        """
        config: Spec = {"size": window} if isinstance(window, str) else dict(window)
        if slide is not None:
            config["slide"] = slide
        config["aggregate"] = _aggregates(aggregates, named)
        if allowed_lateness is not None:
            config["allowed_lateness"] = allowed_lateness
        if early is not None:
            config["early"] = early
        return self._transform("window", config, id, on_error)

    def aggregate(self, *aggregates: Any, id: Optional[str] = None, on_error: Optional[str] = None,
                  **named: Any) -> "Pipeline":
        """Running aggregates per key (after :meth:`key_by`), without a window — Flink's
        rolling aggregations: each record goes on as ``{"key", <field>: <value so far>}``.
        Aggregates are given as for :meth:`window`; their state is checkpointed.

        >>> import wire
        >>> Pipeline("p").key_by("user").aggregate(total=wire.agg.sum("amount")).spec()["transforms"][1]
        {'type': 'aggregate', 'config': {'aggregate': {'total': {'sum': '.amount'}}}}
        """
        return self._transform("aggregate", {"aggregate": _aggregates(aggregates, named)}, id, on_error)

    def dedup(self, within: str, *, id: Optional[str] = None, on_error: Optional[str] = None) -> "Pipeline":
        """Drops a record (after :meth:`key_by`) when a record of the same key passed less
        than ``within`` of event time (``"10m"``) from it.

        >>> Pipeline("p").key_by("id").dedup("10m").spec()["transforms"][1]
        {'type': 'dedup', 'config': {'within': '10m'}}
        """
        return self._transform("dedup", {"within": within}, id, on_error)

    def reduce(self, update: str, *, init: Any = None, id: Optional[str] = None,
               on_error: Optional[str] = None) -> "Pipeline":
        """Keeps state per key (after :meth:`key_by`): the jq program ``update`` gets
        ``{"key", "state", "record"}`` (``state`` is ``init`` for a new key) and gives
        ``{"state": new, "emit": value, list or null}``; ``"state": null`` forgets the key.

        >>> step = Pipeline("p").key_by("user").reduce("{state: (.state + 1), emit: .state}", init=0)
        >>> step.spec()["transforms"][1]["config"]
        {'init': 0, 'update': '{state: (.state + 1), emit: .state}'}
        """
        return self._transform("reduce", {"init": init, "update": update}, id, on_error)

    def fold(self, init: Any, func: Callable[[Any, Any], Any], *, id: Optional[str] = None,
             on_error: Optional[str] = None) -> "Pipeline":
        """Keeps a running value per key (after :meth:`key_by`): ``func(state, value)``
        returns the key's new state, which is also emitted as the record's output (``None``
        forgets the key and emits nothing). ``init`` is the state of a key seen first: a JSON
        value, or a function of no arguments making one. State is any JSON value; it is
        checkpointed with the source positions, so it survives a restart or a failover.

        >>> flow = Pipeline("p").key_by("user").fold(0, lambda total, e: total + e["amount"])
        >>> flow.spec()["transforms"][1]
        {'type': 'reduce', 'config': {'function': 'py.p.1.lambda', 'init': 0}}
        """
        if callable(init):
            make = init
            step = func

            def folded(state: Any, value: Any) -> Any:
                return step(make() if state is None else state, value)

            folded.__name__ = getattr(func, "__name__", "fold")
            return self._keyed("fold", folded, None, id, on_error)
        try:
            json.dumps(init)
        except (TypeError, ValueError) as e:
            raise TypeError(f"fold: init must be a JSON value or a function making one ({e})") from None
        return self._keyed("fold", func, init, id, on_error)

    def stateful_map(self, func: Callable[[Any, Any], Any], *, id: Optional[str] = None,
                     on_error: Optional[str] = None) -> "Pipeline":
        """Bytewax's ``stateful_map`` (after :meth:`key_by`): ``func(state, value)`` gets the
        key's state (``None`` for a key seen first) and returns ``(new_state, emit)``;
        ``new_state`` ``None`` forgets the key, ``emit`` ``None`` emits nothing. State is any
        JSON value, checkpointed with the source positions.

        >>> def count(n, e):
        ...     n = (n or 0) + 1
        ...     return n, {"user": e["user"], "seen": n}
        >>> Pipeline("p").key_by("user").stateful_map(count).spec()["transforms"][1]["type"]
        'reduce'
        """
        return self._keyed("stateful_map", func, None, id, on_error)

    def join(self, other: "Pipeline", *, within: str, how: str = "inner", id: Optional[str] = None,
             on_error: Optional[str] = None) -> "Pipeline":
        """Joins this pipeline's records (the left side) with ``other``'s (the right), both
        keyed (end each with :meth:`key_by`): a left and a right record of the same key whose
        event times are at most ``within`` apart (``"30s"``) make one record ``{"key",
        "left", "right"}``. With ``how="left"``, a left record that found no partner comes
        out with ``"right": None`` once the watermark is ``within`` past it. ``other``'s
        sources and steps become part of this pipeline (its ids prefixed with its name when
        not given); its sinks are not used.

        >>> orders = Pipeline("orders").source({"type": "generator"}, id="o").key_by("user")
        >>> clicks = Pipeline("clicks").source({"type": "generator"}, id="c").key_by("user")
        >>> spec = orders.join(clicks, within="30s").spec()
        >>> [(t["id"], t["inputs"]) for t in spec["transforms"]]
        [('transform0', ['o']), ('clicks.transform0', ['c']), ('transform2', ['transform0', 'clicks.transform0'])]
        """
        if not isinstance(other, Pipeline):
            raise TypeError(f"join: other is a wire.Pipeline, not {type(other).__name__}")
        if other is self:
            raise ValueError("join: a pipeline cannot join itself; build the other side as its own Pipeline")
        if how not in ("inner", "left"):
            raise ValueError(f"join: how is 'inner' or 'left', not {how!r}")
        if other._spec["sinks"]:
            raise ValueError("join: the other pipeline's sinks would not be used; leave them out")
        left = self._pin_ids("")
        right = other._pin_ids(f"{other.name}.")
        taken = {s["id"] for s in self._spec["sources"]} | {t["id"] for t in self._spec["transforms"]}
        for step in other._spec["sources"] + other._spec["transforms"]:
            if step["id"] in taken:
                raise ValueError(f"join: both pipelines have a step '{step['id']}'; give one another id")
        for name in other._callables:
            if name in self._callables:
                raise ValueError(f"join: both pipelines have a function named {name!r}; name the pipelines apart")
        self._spec["sources"].extend(copy.deepcopy(other._spec["sources"]))
        self._spec["transforms"].extend(copy.deepcopy(other._spec["transforms"]))
        self._callables.update(other._callables)
        if "event_time" not in self._spec and "event_time" in other._spec:
            self._spec["event_time"] = copy.deepcopy(other._spec["event_time"])
        joined: Spec = {"type": "join", "inputs": left + right, "config": {"within": within, "how": how}}
        if id is not None:
            joined["id"] = id
        if on_error is not None:
            joined["on_error"] = on_error
        # Later steps and sinks read the join (not the other side's last step).
        self._spec["transforms"].append(joined)
        return self._pin_last()

    def _hosted_connectors(self) -> bool:
        """Whether a source or sink is a Python object of this process."""
        steps = self._spec["sources"] + self._spec["sinks"] + [self._spec.get("dead_letter") or {}]
        return any(s.get("type") == "registered" for s in steps)

    def _pin_ids(self, prefix: str) -> List[str]:
        """Gives every source and transform an explicit id and inputs (so another pipeline's
        steps can be added beside them); returns what a step after them reads."""
        for i, source in enumerate(self._spec["sources"]):
            source.setdefault("id", f"{prefix}source{i}")
        previous = [s["id"] for s in self._spec["sources"]]
        for i, t in enumerate(self._spec["transforms"]):
            t.setdefault("id", f"{prefix}transform{i}")
            t.setdefault("inputs", previous)
            previous = [t["id"]]
        return previous

    def _pin_last(self) -> "Pipeline":
        last = self._spec["transforms"][-1]
        last.setdefault("id", f"transform{len(self._spec['transforms']) - 1}")
        return self

    def redistribute(self, *, id: Optional[str] = None) -> "Pipeline":
        """Spreads records round-robin over the pipeline's partitions, so the steps after it
        use every partition even when the source has fewer splits (one file, a one-partition
        topic); on a cluster the records cross nodes.

        >>> [t["type"] for t in Pipeline("p").redistribute().jq(".").spec()["transforms"]]
        ['redistribute', 'jq']
        """
        return self._transform("redistribute", {}, id, None)

    def jq(self, filter: str, *, id: Optional[str] = None, on_error: Optional[str] = None) -> "Pipeline":
        """Runs the built-in jq program ``filter`` on each record (each output is a record)."""
        return self._transform("jq", {"filter": filter}, id, on_error)

    def transform(self, name: str, *, config: Optional[Dict[str, Any]] = None, id: Optional[str] = None,
                  on_error: Optional[str] = None) -> "Pipeline":
        """Uses a transform registered on the nodes by name (``@wire.transform``, Rust or C)."""
        return self._transform(name, config, id, on_error)

    # Reading.

    def spec(self) -> Spec:
        """The pipeline as a spec document (a copy)."""
        return copy.deepcopy(self._spec)

    def spec_json(self) -> str:
        """The spec as JSON, checked as a node would check it (raises
        :class:`wire.InvalidSpecError` naming each problem's place)."""
        from . import _native

        text = json.dumps(self._spec)
        _native.normalize_spec(text)
        return text

    @property
    def functions(self) -> Dict[str, Callable[..., Any]]:
        """The Python functions of the pipeline, by the transform name they run under."""
        return {name: entry[1] for name, entry in self._callables.items()}

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={len(self._spec['transforms'])})"

    # Internals.

    @staticmethod
    def _step(spec: Spec, id: Optional[str]) -> Spec:
        if not isinstance(spec, dict) or "type" not in spec:
            raise TypeError("a source or sink is a dict with a 'type' (see wire.sources, wire.sinks)")
        step = copy.deepcopy(spec)
        if id is not None:
            step["id"] = id
        return step

    def _callable_name(self, kind: str, func: Callable[..., Any]) -> str:
        if not callable(func):
            raise TypeError(f"{kind}: {type(func).__name__} is not callable")
        base = getattr(func, "__name__", type(func).__name__)
        slug = _SLUG.sub("_", base).strip("_") or kind
        return f"py.{self.name}.{len(self._spec['transforms'])}.{slug}"

    def _python(self, kind: str, func: Callable[..., Any], batch: bool, id: Optional[str],
                on_error: Optional[str]) -> "Pipeline":
        name = self._callable_name(kind, func)
        self._callables[name] = (kind, func, batch)
        return self._transform(name, None, id, on_error)

    def _keyed(self, kind: str, func: Callable[..., Any], init: Any, id: Optional[str],
               on_error: Optional[str]) -> "Pipeline":
        name = self._callable_name(kind, func)
        self._callables[name] = (kind, func, False)
        config: Dict[str, Any] = {"function": name}
        if init is not None:
            config["init"] = init
        return self._transform("reduce", config, id, on_error)

    def _transform(self, kind: str, config: Optional[Dict[str, Any]], id: Optional[str],
                   on_error: Optional[str]) -> "Pipeline":
        step: Spec = {"type": kind}
        if config is not None:
            step["config"] = config
        if id is not None:
            step["id"] = id
        if on_error is not None:
            step["on_error"] = on_error
        self._spec["transforms"].append(step)
        return self


@dataclass(frozen=True)
class Written:
    """A stored pipeline: its name, version, whether it is new, and whether this call
    changed it (``deploy`` of an unchanged pipeline changes nothing)."""

    name: str
    version: int
    created: bool
    changed: bool = True


class _Transport(Protocol):
    def pipeline_put(self, text: str, upsert: bool = ...) -> str: ...

    def pipeline_set_running(self, name: str, running: bool) -> str: ...

    def pipeline_delete(self, name: str) -> None: ...

    def pipeline_status(self, name: str, consistency: Optional[str] = ...) -> Optional[str]: ...

    def pipeline_list(self, consistency: Optional[str] = ...) -> str: ...


def _written(text: str) -> Written:
    w = json.loads(text)
    return Written(
        str(w["name"]),
        int(w["version"]),
        bool(w.get("created", False)),
        changed=bool(w.get("changed", True)),
    )


class Pipelines:
    """The pipelines of a cluster. Statuses are the JSON documents of
    ``GET /pipelines/{name}`` as dicts: ``state`` (``running``, ``pausing``, ``paused``,
    ``finished``, ``failed``, ``starting``, ``unassigned``), ``errors``, ``partitions`` (each
    with ``node``, ``state``, ``epoch``, ``positions``, ``read``, ``lag``) and ``steps``
    (counters per step)."""

    def __init__(self, transport: _Transport, host: Any = None) -> None:
        self._t = transport
        self._host = host

    def create(self, spec: Union[Pipeline, Spec, str]) -> Written:
        """Creates a pipeline; raises :class:`wire.ConflictError` if the name is taken."""
        self._register(spec)
        return _written(self._t.pipeline_put(_spec_of(spec), False))

    def update(self, spec: Union[Pipeline, Spec, str]) -> Written:
        """Stores a new version (creating the pipeline if missing); its partitions restart
        from their last checkpoints."""
        self._register(spec)
        return _written(self._t.pipeline_put(_spec_of(spec), True))

    def deploy(self, flow: Union[Pipeline, Spec, str]) -> Written:
        """Creates or updates the pipeline so it runs ``flow``; does nothing if it already
        does (so a restarted program resumes from the last checkpoint).

        Python functions run only where they are registered: on the nodes this process
        hosts. Unless the spec names a ``node``, a pipeline with inline functions is pinned
        to this node when the cluster has members hosted elsewhere."""
        text = _spec_of(flow)
        if isinstance(flow, Pipeline) and (flow._callables or flow._hosted_connectors()):
            spec = json.loads(text)
            if spec.get("node") is None:
                pin = self._pin()
                if pin is not None:
                    spec["node"] = pin
                    text = json.dumps(spec)
        self._register(flow)
        # The engine stores nothing when the pipeline already runs this spec (changed=False).
        return _written(self._t.pipeline_put(text, True))

    def status(self, name: str, *, consistency: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """The pipeline's status, or None when there is none of that name."""
        text = self._t.pipeline_status(name, consistency)
        return None if text is None else json.loads(text)

    get = status

    def list(self, *, consistency: Optional[str] = None) -> List[Dict[str, Any]]:
        """Every pipeline's record (spec, version, desired state)."""
        return list(json.loads(self._t.pipeline_list(consistency))["pipelines"])

    def pause(self, name: str) -> None:
        """Stops the pipeline's jobs after a final checkpoint; ``resume`` goes on from it."""
        self._t.pipeline_set_running(name, False)

    def resume(self, name: str) -> None:
        self._t.pipeline_set_running(name, True)

    def delete(self, name: str) -> None:
        """Deletes the pipeline with its assignments and checkpoints."""
        self._t.pipeline_delete(name)

    def watch(self, name: str, *, interval: float = 1.0) -> Iterator[Dict[str, Any]]:
        """Yields the pipeline's status every ``interval`` seconds, until it is finished,
        failed or deleted."""
        while True:
            status = self.status(name)
            if status is None:
                return
            yield status
            if status["state"] in ("finished", "failed"):
                return
            time.sleep(interval)

    def wait(
        self,
        name: str,
        *,
        until: str = "finished",
        timeout: Optional[float] = None,
        poll: float = 0.1,
    ) -> Dict[str, Any]:
        """Waits until the pipeline's state is ``until`` and returns its status. Raises
        :class:`wire.PipelineFailedError` if it fails for good (a record failed a step whose
        policy is ``fail``), :class:`TimeoutError` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(name)
            if status is None:
                raise InvalidRequestError(f"pipeline '{name}' does not exist")
            if status["state"] == until:
                return status
            if status["state"] == "failed" and until != "failed" and not status.get("retrying"):
                raise PipelineFailedError(
                    f"pipeline '{name}' failed: {'; '.join(status.get('errors', []))}", status=status
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"pipeline '{name}' is {status['state']}, not {until}, after {timeout}s")
            time.sleep(poll)

    def _register(self, spec: Any) -> None:
        if not isinstance(spec, Pipeline) or not spec._callables:
            return
        if self._host is None:
            raise WireError(
                "this pipeline has Python functions, which run only on nodes hosted by this "
                "process: deploy it through a wire.Node, or register them with @wire.transform "
                "in the process that hosts the nodes",
                code="bad_request",
            )
        for name, (kind, func, batch) in spec._callables.items():
            _registry.register(name, kind, func, batch)

    def _pin(self) -> Optional[int]:
        if self._host is None:
            return None
        local = {n.raft_addr for n in _registry.live_nodes() if not n.stopped}
        members = self._host.status()["members"]
        me = int(self._host.id)
        if all(m["id"] == me or m["raft_addr"] in local for m in members):
            return None
        return int(self._host.id)
