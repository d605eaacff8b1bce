"""Users and permissions from Python: nodes started with users and a cluster secret, and
``wire.Client`` with a password, a token, none, or the wrong ones."""

from __future__ import annotations

import pathlib

import pytest

import wire
import wire.auth

from helpers import start_node

SECRET = "python-test-cluster-secret"


def users() -> tuple:
    token = wire.auth.new_token()
    listed = [
        {"name": "reader", "password_hash": wire.auth.hash_password("r-pw"), "permissions": ["read", "status"]},
        {"name": "ops", "token_sha256": wire.auth.token_sha256(token), "permissions": ["all"]},
    ]
    return listed, token


def test_clients_show_who_they_are(tmp_path: pathlib.Path) -> None:
    listed, token = users()
    first = start_node(tmp_path / "n1", 1, bootstrap=True, users=listed, cluster_secret=SECRET).wait_ready()
    # The second node joins with the secret; the embedded node's own calls need no user.
    second = start_node(
        tmp_path / "n2", 2, join=[first.http_addr], users=listed, cluster_secret=SECRET
    ).wait_ready()
    try:
        first.kv.put("greeting", b"hello")

        anonymous = wire.Client(second.url, retry_for=0)
        with pytest.raises(wire.UnauthenticatedError):
            anonymous.kv.get("greeting")

        wrong = wire.Client(second.url, user="reader", password="nope", retry_for=0)
        with pytest.raises(wire.UnauthenticatedError) as bad:
            wrong.kv.get("greeting")
        assert bad.value.code == "bad_credentials"

        reader = wire.Client(second.url, user="reader", password="r-pw")
        assert reader.kv.get("greeting") == b"hello"
        assert len(reader.members()) == 2
        with pytest.raises(wire.ForbiddenError) as forbidden:
            reader.kv.put("greeting", b"changed")
        assert "'write'" in str(forbidden.value)
        assert isinstance(forbidden.value, PermissionError)

        ops = wire.Client(second.url, token=token)
        ops.kv.put("greeting", b"changed")
        assert first.kv.get("greeting") == b"changed"
        assert second.drain(2) is True
        assert second.drain(2, undo=True) is True
    finally:
        second.stop()
        first.stop()


def test_a_bad_users_config_names_every_problem(tmp_path: pathlib.Path) -> None:
    bad = [
        {"name": "a", "password_hash": "plain", "permissions": ["raed"]},
        {"name": "b", "token_sha256": "00", "permissions": ["read"]},
    ]
    with pytest.raises(wire.InvalidConfigError) as e:
        start_node(tmp_path / "n", 1, bootstrap=True, users=bad)
    text = str(e.value)
    for expected in ["user 'a': password_hash", "unknown permission 'raed'", "user 'b': token_sha256", "cluster_secret"]:
        assert expected in text, text
    with pytest.raises(ValueError):
        wire.Client("127.0.0.1:1", user="x")
