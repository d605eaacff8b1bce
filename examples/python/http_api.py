"""A Python source paging through an HTTP API with a cursor, and a Python sink posting
batches to a web hook, on a node this script hosts.

    pip install .            # from the repository root (builds the native module)
    python examples/python/http_api.py

To stay self-contained it serves both ends itself on 127.0.0.1: ``GET /orders?cursor=N``
answers a page of orders and the next cursor (null at the end), and ``POST /hook`` takes a
JSON list. The source's position is the cursor: it is checkpointed with the pipeline, so a
restarted program goes on from the last checkpoint instead of the first page. The sink
flushes nothing (each POST is already delivered): delivery is at-least-once.
"""

import http.server
import json
import tempfile
import threading
import urllib.parse
import urllib.request

import wire

ORDERS = [{"id": i, "user": f"user-{i % 5}", "amount": (i * 37) % 100} for i in range(250)]
received: list = []


class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        cursor = int(query.get("cursor", ["0"])[0])
        page = ORDERS[cursor:cursor + 40]
        nxt = cursor + len(page) if cursor + len(page) < len(ORDERS) else None
        self._answer({"items": page, "next": nxt})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        received.extend(json.loads(body))
        self._answer({"ok": True})

    def _answer(self, doc: object) -> None:
        data = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{server.server_address[1]}"


class Orders:
    """Pages through GET /orders; the position is the next cursor."""

    def read(self, split: str, cursor: "int | None") -> "tuple | None":
        if cursor == -1:
            return None  # the last page was read
        with urllib.request.urlopen(f"{base}/orders?cursor={cursor or 0}", timeout=10) as r:
            page = json.load(r)
        return page["items"], page["next"] if page["next"] is not None else -1


class Hook:
    """Posts each batch to the web hook; refuses orders without an amount."""

    def write(self, values: list) -> list:
        good = [v for v in values if v.get("amount") is not None]
        request = urllib.request.Request(f"{base}/hook", data=json.dumps(good).encode(),
                                         headers={"content-type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()
        return [(i, "no amount") for i, v in enumerate(values) if v.get("amount") is None]


flow = (
    wire.Pipeline("api-to-hook", checkpoint_interval="200ms")
    .source(wire.sources.python(Orders(), name="orders-api"))
    .filter(lambda o: o["amount"] >= 50)
    .map(lambda o: {**o, "big": True})
    .sink(wire.sinks.python(Hook(), name="orders-hook"))
)

with wire.Node(data_dir=tempfile.mkdtemp(prefix="wire-api-"), bootstrap=True,
               http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0") as node:
    node.pipelines.deploy(flow)
    status = node.pipelines.wait("api-to-hook", timeout=60)

want = sorted(o["id"] for o in ORDERS if o["amount"] >= 50)
got = sorted(o["id"] for o in received)
print(f"posted {len(received)} big orders of {len(ORDERS)}; source at {status['partitions'][0]['positions']}")
assert got == want, "every big order posted once"
print("ok")
