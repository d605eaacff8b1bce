from __future__ import annotations

import pytest

import wire
from wire.kv import Absent, Delete, Equals, Exists, Put


def both(node: wire.Node):
    """The node itself and a client of its HTTP API: the same calls must behave the same."""
    return [node, wire.Client(node.url)]


def test_put_get_delete_round_trip(node: wire.Node) -> None:
    for i, api in enumerate(both(node)):
        key = f"greeting/{i}"
        assert api.kv.get(key) is None
        first = api.kv.put(key, b"hello")
        assert first.existed is False and first.index > 0
        again = api.kv.put(key, "héllo")
        assert again.existed is True and again.index > first.index
        assert api.kv.get(key) == "héllo".encode()
        assert api.kv.get(key, consistency="local") == "héllo".encode()
        assert api.kv.delete(key).existed is True
        assert api.kv.delete(key).existed is False
        assert api.kv.get(key) is None


def test_binary_values_survive_both_paths(node: wire.Node) -> None:
    blob = bytes(range(256))
    node.kv.put("bin", blob)
    assert wire.Client(node.url).kv.get("bin") == blob
    wire.Client(node.url).kv.put("bin2", blob[::-1])
    assert node.kv.get("bin2") == blob[::-1]
    items = dict(wire.Client(node.url).kv.list("bin").items)
    assert items == {"bin": blob, "bin2": blob[::-1]}


def test_list_pages_in_key_order(node: wire.Node) -> None:
    for i in range(25):
        node.kv.put(f"list/{i:02}", str(i))
    node.kv.put("other", "x")
    for api in both(node):
        page = api.kv.list("list/", limit=10)
        assert [k for k, _ in page.items] == [f"list/{i:02}" for i in range(10)]
        assert page.more and page.next_after == "list/09"
        rest = api.kv.list("list/", after=page.next_after, limit=100)
        assert len(rest.items) == 15 and not rest.more and rest.next_after is None
        assert [v for _, v in api.kv.scan("list/", page_size=7)] == [str(i).encode() for i in range(25)]


def test_txn_takes_one_branch_atomically(node: wire.Node) -> None:
    for i, api in enumerate(both(node)):
        a, b = f"acct/{i}/a", f"acct/{i}/b"
        api.kv.put(a, b"10")
        r = api.kv.txn(
            compare=[Equals(a, b"10"), Absent(b)],
            success=[Put(a, b"5"), Put(b, b"5")],
            failure=[Put(f"acct/{i}/failed", b"1")],
        )
        assert r.succeeded is True
        assert (api.kv.get(a), api.kv.get(b)) == (b"5", b"5")
        r = api.kv.txn(compare=[Equals(a, b"10")], success=[Delete(a)], failure=[Put(f"acct/{i}/failed", b"1")])
        assert r.succeeded is False
        assert api.kv.get(a) == b"5" and api.kv.get(f"acct/{i}/failed") == b"1"
        assert api.kv.txn(compare=[Exists(b)], success=[Delete(b)]).succeeded
        assert api.kv.get(b) is None


def test_bad_requests_raise_the_same_errors_on_both_paths(node: wire.Node) -> None:
    for api in both(node):
        with pytest.raises(wire.InvalidRequestError):
            api.kv.put("", b"empty key")
        with pytest.raises(wire.InvalidRequestError, match="limit"):
            api.kv.list("", limit=0)
        with pytest.raises(wire.InvalidRequestError, match="consistency"):
            api.kv.get("k", consistency="sometimes")
        with pytest.raises(wire.TooLargeError):
            api.kv.put("big", b"x" * (2 * 1024 * 1024))
        with pytest.raises(TypeError):
            api.kv.put("k", 5)  # type: ignore[arg-type]
    assert node.status()["role"] == "leader"


def test_client_of_nothing_raises_transport_error() -> None:
    client = wire.Client("127.0.0.1:1", timeout=1, retry_for=0.3)
    with pytest.raises(wire.TransportError) as caught:
        client.kv.get("k")
    assert isinstance(caught.value, ConnectionError) and caught.value.retryable
    with pytest.raises(ValueError):
        wire.Client("ftp://example")


def test_a_stopped_node_says_so(tmp_path) -> None:
    from helpers import start_node

    n = start_node(tmp_path / "n", bootstrap=True).wait_ready()
    n.stop()
    n.stop()
    assert n.stopped
    with pytest.raises(wire.ShutdownError):
        n.kv.get("k")


def test_invalid_node_options_name_the_field(tmp_path) -> None:
    with pytest.raises(wire.InvalidConfigError, match="node_id"):
        wire.Node(node_id=0, data_dir=tmp_path, bootstrap=True)
    with pytest.raises(wire.InvalidConfigError, match="no_such_option"):
        wire.Node(data_dir=tmp_path, no_such_option=1)
