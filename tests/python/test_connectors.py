"""The Python connector helpers agree with each connector's config schema, as the node
lists it (``GET /connectors``): the same fields, and a field is required in the helper
exactly when the schema requires it. A connector added in Rust whose helper is missing or
out of date fails here."""

from __future__ import annotations

import inspect
import json
import urllib.request
from typing import Any, Dict

import wire


def _connectors(node: wire.Node) -> Dict[str, Dict[str, Any]]:
    with urllib.request.urlopen(f"http://{node.http_addr}/connectors", timeout=10) as r:
        body = json.load(r)
    return {c["name"]: c for c in body["connectors"]}


def _check(helper: Any, schema: Dict[str, Any]) -> None:
    params = inspect.signature(helper).parameters
    fields = set(schema.get("properties", {}))
    assert set(params) == fields, (
        f"{helper.__module__}.{helper.__name__}: parameters {sorted(params)} "
        f"but the config has {sorted(fields)}"
    )
    required = set(schema.get("required", []))
    for name, p in params.items():
        assert (p.default is inspect.Parameter.empty) == (name in required), (
            f"{helper.__module__}.{helper.__name__}: '{name}' is "
            f"{'required' if name in required else 'optional'} in the config"
        )


# Helpers that take a Python object, not config fields: the connector they name.
HOSTED = {"python": "registered"}


def test_helpers_match_the_connector_schemas(node: wire.Node) -> None:
    connectors = _connectors(node)
    checked = 0
    for module, role in ((wire.sources, "source_config"), (wire.sinks, "sink_config")):
        for name in module.__all__:
            if name == "connector":
                continue
            if name in HOSTED:
                assert connectors[HOSTED[name]][role] is not None, name
                continue
            info = connectors.get(name)
            assert info is not None, f"{module.__name__}.{name} names no connector"
            schema = info[role]
            assert schema is not None, f"'{name}' cannot be a {role.split('_')[0]}"
            _check(getattr(module, name), schema)
            checked += 1
    # Every connector that can be a source or a sink has its helper.
    for name, info in connectors.items():
        helper = {v: k for k, v in HOSTED.items()}.get(name, name)
        if info["source_config"] is not None:
            assert helper in wire.sources.__all__, f"wire.sources.{helper} is missing"
        if info["sink_config"] is not None:
            assert helper in wire.sinks.__all__, f"wire.sinks.{helper} is missing"
    assert checked >= 6


def test_any_connector_is_reachable_by_type(node: wire.Node) -> None:
    spec = wire.sources.connector("generator", count=3, rate=None)
    assert spec == {"type": "generator", "config": {"count": 3}}
