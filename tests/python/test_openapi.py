"""The API's contract against a real 3-node cluster with auth on: every node serves
/openapi.json, and schemathesis (PyPI) sends generated requests to every documented
operation (bodies, parameters, headers) and checks that no answer is a 5xx and every answer
fits the contract.

Two runs, so that the fuzzer cannot take the cluster's quorum away (a join of a made-up
voter is a legal request that makes every later write wait for a node that does not exist):
every operation but membership changes as a user with every permission, and the membership
changes (join, remove, drain) as a user with only `status` (each answered 403 as the
contract says). `WIRE_FUZZ_SEED` picks the seed (fixed in CI, so a failure reproduces);
`WIRE_FUZZ_EXAMPLES` the examples per operation."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import urllib.request
from typing import Iterator, List

import pytest

import wire.auth

from helpers import CALM, Proc, process_cluster

ADMIN = "fuzz-admin-token-0123456789"
VIEWER = "fuzz-viewer-token-0123456789"
MEMBERSHIP = r"^/cluster/(join|members/.+)$"


@pytest.fixture
def secured(tmp_path: pathlib.Path) -> Iterator[List[Proc]]:
    users = tmp_path / "users.toml"
    users.write_text(
        f'[[users]]\nname = "admin"\ntoken_sha256 = "{wire.auth.token_sha256(ADMIN)}"\npermissions = ["all"]\n\n'
        f'[[users]]\nname = "viewer"\ntoken_sha256 = "{wire.auth.token_sha256(VIEWER)}"\npermissions = ["status"]\n'
    )
    extra = ["--users-file", str(users), "--cluster-secret", "fuzz-cluster-secret-0123"]
    with process_cluster(tmp_path, extra=extra, token=ADMIN, timers=CALM) as out:
        yield out


def schemathesis(url: str, token: str, *selection: str) -> None:
    binary = shutil.which("schemathesis", path=os.path.dirname(sys.executable))
    if binary is None:
        pytest.skip("schemathesis is not installed (make test-python installs it)")
    args = [binary, "run", f"{url}/openapi.json",
            "--checks", "not_a_server_error,response_schema_conformance",
            "--header", f"Authorization: Bearer {token}",
            "--phases", "coverage,fuzzing", "--workers", "1",
            "--max-examples", os.environ.get("WIRE_FUZZ_EXAMPLES", "25"),
            "--seed", os.environ.get("WIRE_FUZZ_SEED", "20261204"),
            *selection]
    run = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_every_node_serves_the_contract_and_keeps_it_under_fuzzing(secured: List[Proc]) -> None:
    for p in secured:
        with urllib.request.urlopen(f"{p.url}/openapi.json", timeout=5) as r:
            doc = json.load(r)
        assert doc["openapi"].startswith("3.1")
        assert {"/kv/{key}", "/kv/txn", "/pipelines/{name}", "/cluster/join", "/status"} <= set(doc["paths"])
        assert set(doc["components"]["securitySchemes"]) == {"basic", "bearer"}
    target = secured[1].url
    schemathesis(target, ADMIN, "--exclude-path-regex", MEMBERSHIP)
    schemathesis(target, VIEWER, "--include-path-regex", MEMBERSHIP)
    # The cluster is whole after both runs.
    assert len(secured[0].client.members()) == 3
    secured[0].client.kv.put("after-fuzzing", b"ok")
