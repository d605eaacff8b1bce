"""The HTTP transport of :class:`wire.Client`: the same calls as the native node, over the
node's public API, answering with the same values."""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import InvalidRequestError, TransportError, UnavailableError, WireError, _from_code

OpTuple = Tuple[str, str, Optional[bytes]]


def _value_fields(value: Optional[bytes]) -> Dict[str, str]:
    if value is None:
        return {}
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_base64": base64.b64encode(value).decode("ascii")}


def _item_value(item: Dict[str, Any]) -> bytes:
    if "value_base64" in item:
        return base64.b64decode(item["value_base64"])
    return str(item.get("value", "")).encode("utf-8")


class HttpTransport:
    """Calls a node's HTTP API; retries answers the engine marks retryable until
    ``retry_for`` seconds have passed."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        retry_for: float = 5.0,
        *,
        user: Optional[str] = None,
        password: Optional[str] = None,
        token: Optional[str] = None,
        ca: Optional[str] = None,
        cert: Optional[str] = None,
        key: Optional[str] = None,
    ) -> None:
        parsed = urllib.parse.urlparse(url if "://" in url else f"http{'s' if ca else ''}://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"url: {url!r} is not an http(s) URL")
        self.url = f"{parsed.scheme}://{parsed.netloc}"
        self.timeout = timeout
        self.retry_for = retry_for
        self._authorization: Optional[str] = None
        if token is not None and user is not None:
            raise ValueError("give user and password, or token, not both")
        if token is not None:
            self._authorization = f"Bearer {token}"
        elif user is not None:
            if password is None:
                raise ValueError(f"user {user!r} needs a password")
            pair = f"{user}:{password}".encode("utf-8")
            self._authorization = "Basic " + base64.b64encode(pair).decode("ascii")
        elif password is not None:
            raise ValueError("a password needs a user")
        self._context: Optional[ssl.SSLContext] = None
        if parsed.scheme == "https":
            self._context = ssl.create_default_context(cafile=ca)
            if cert is not None:
                self._context.load_cert_chain(cert, key)
        elif cert is not None or ca is not None:
            raise ValueError(f"url: {url!r} is plain http, but TLS files were given: use https://")

    def _call(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        query: Optional[Dict[str, Any]] = None,
        content_type: str = "application/json",
    ) -> Tuple[int, bytes]:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        url = self.url + path + (("?" + urllib.parse.urlencode(q)) if q else "")
        deadline = time.monotonic() + self.retry_for
        while True:
            request = urllib.request.Request(url, data=body, method=method)
            if body is not None:
                request.add_header("Content-Type", content_type)
            if self._authorization is not None:
                request.add_header("Authorization", self._authorization)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as answer:
                    return answer.status, answer.read()
            except urllib.error.HTTPError as e:
                error = self._error(e.code, e.read())
                if error.retryable and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                raise error from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                raise TransportError(f"{method} {url}: {reason}") from None

    @staticmethod
    def _error(status: int, body: bytes) -> WireError:
        try:
            parsed = json.loads(body)
            code, detail = str(parsed["error"]), str(parsed.get("detail", ""))
            errors = parsed.get("errors")
            return _from_code(code, detail, json.dumps(errors) if errors is not None else None)
        except (ValueError, KeyError, TypeError):
            text = body.decode("utf-8", "replace")[:200]
            if status == 503:
                return UnavailableError(f"HTTP {status}: {text}")
            return WireError(f"HTTP {status}: {text}", code="http")

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        _, body = self._call(method, path, **kw)
        return json.loads(body)

    def drain(self, node_id: int, undo: bool = False) -> bool:
        """Starts (or with ``undo`` ends) draining a member; whether that changed anything."""
        method = "DELETE" if undo else "POST"
        return bool(self._json(method, f"/cluster/members/{int(node_id)}/drain")["changed"])

    @staticmethod
    def _key_path(key: str) -> str:
        if not key:
            # `/kv/` is not a key's route: say what the engine would.
            raise InvalidRequestError("key: must not be empty")
        return "/kv/" + urllib.parse.quote(key, safe="/")

    # The calls, mirroring wire._native.Node.

    def status(self) -> str:
        return self._call("GET", "/status")[1].decode()

    def kv_get(self, key: str, consistency: Optional[str] = None) -> Optional[bytes]:
        try:
            return self._call("GET", self._key_path(key), query={"consistency": consistency})[1]
        except WireError as e:
            if e.code == "not_found":
                return None
            raise

    def kv_put(self, key: str, value: bytes) -> Tuple[int, bool]:
        r = self._json("PUT", self._key_path(key), body=bytes(value), content_type="application/octet-stream")
        return int(r["index"]), bool(r["existed"])

    def kv_delete(self, key: str) -> Tuple[int, bool]:
        r = self._json("DELETE", self._key_path(key))
        return int(r["index"]), bool(r["deleted"])

    def kv_list(
        self, prefix: str, after: Optional[str] = None, limit: int = 100, consistency: Optional[str] = None
    ) -> Tuple[List[Tuple[str, bytes]], bool]:
        r = self._json(
            "GET",
            "/kv",
            query={"prefix": prefix, "after": after, "limit": limit, "consistency": consistency},
        )
        return [(i["key"], _item_value(i)) for i in r["items"]], bool(r["more"])

    def kv_txn(
        self, compare: Sequence[OpTuple], success: Sequence[OpTuple], failure: Sequence[OpTuple]
    ) -> Tuple[bool, int]:
        body = {
            "compare": [{"key": k, "op": op, **_value_fields(v)} for k, op, v in compare],
            "success": [{"op": op, "key": k, **_value_fields(v)} for op, k, v in success],
            "failure": [{"op": op, "key": k, **_value_fields(v)} for op, k, v in failure],
        }
        r = self._json("POST", "/kv/txn", body=json.dumps(body).encode())
        return bool(r["succeeded"]), int(r["index"])

    def pipeline_put(self, text: str, upsert: bool = False) -> str:
        if upsert:
            name = json.loads(text)["name"]
            path = "/pipelines/" + urllib.parse.quote(str(name), safe="")
            return self._call("PUT", path, body=text.encode())[1].decode()
        return self._call("POST", "/pipelines", body=text.encode())[1].decode()

    def pipeline_set_running(self, name: str, running: bool) -> str:
        action = "resume" if running else "pause"
        path = f"/pipelines/{urllib.parse.quote(name, safe='')}/{action}"
        return self._call("POST", path)[1].decode()

    def pipeline_delete(self, name: str) -> None:
        self._call("DELETE", "/pipelines/" + urllib.parse.quote(name, safe=""))

    def pipeline_status(self, name: str, consistency: Optional[str] = None) -> Optional[str]:
        try:
            path = "/pipelines/" + urllib.parse.quote(name, safe="")
            return self._call("GET", path, query={"consistency": consistency})[1].decode()
        except WireError as e:
            if e.code == "not_found":
                return None
            raise

    def pipeline_list(self, consistency: Optional[str] = None) -> str:
        r = self._json("GET", "/pipelines", query={"consistency": consistency})
        return json.dumps(r)
