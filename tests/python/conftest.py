"""Fixtures: nodes hosted by the test process on free loopback ports."""

from __future__ import annotations

import pathlib
from typing import Iterator, List

import pytest

import wire

from helpers import start_node


@pytest.fixture
def node(tmp_path: pathlib.Path) -> Iterator[wire.Node]:
    n = start_node(tmp_path / "node1", bootstrap=True).wait_ready()
    yield n
    n.stop()


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[List[wire.Node]]:
    first = start_node(tmp_path / "n1", 1, bootstrap=True).wait_ready()
    nodes = [first]
    for i in (2, 3):
        nodes.append(start_node(tmp_path / f"n{i}", i, join=[first.http_addr]).wait_ready())
    yield nodes
    for n in reversed(nodes):
        n.stop()
