#!/usr/bin/env python3
"""The search server's own indexing rate, for the connector benchmark: the same N documents
the Kafka -> jq -> Elasticsearch pipeline indexes (as kafka_tool produces them, with
amount_cents added), bulk-indexed straight into INDEX by two concurrent clients with the
pipeline sink's batch size (5,000 documents), timed until `_count` after a refresh is N.
Prints the seconds; exits non-zero if the count differs.

    bulk_direct.py URL INDEX N
"""

import json
import sys
import threading
import time
import urllib.request

url, index, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
BATCH = 5000


def doc(i: int) -> str:
    amount = float(f"{i % 10}.{i % 100:02d}")
    return json.dumps({"id": i, "user": f"user-{i % 1000}", "amount": amount,
                       "tags": ["a", "b"], "amount_cents": int(amount * 100)})


def bodies(worker: int, workers: int):
    for start in range(worker * BATCH, n, workers * BATCH):
        lines = []
        for i in range(start, min(start + BATCH, n)):
            lines.append(json.dumps({"index": {"_index": index, "_id": str(i)}}))
            lines.append(doc(i))
        yield ("\n".join(lines) + "\n").encode()


def post(path: str, body: bytes) -> dict:
    req = urllib.request.Request(url + path, data=body, method="POST",
                                 headers={"content-type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


failures = []


def work(worker: int, workers: int) -> None:
    for body in bodies(worker, workers):
        while True:
            answer = post("/_bulk", body)
            if not answer.get("errors"):
                break
            # Retry the batch on rejections (429), as the sink does; ids make it idempotent.
            statuses = {item["index"]["status"] for item in answer["items"]}
            if statuses - {200, 201, 429}:
                failures.append(statuses)
                return
            time.sleep(0.1)


started = time.monotonic()
threads = [threading.Thread(target=work, args=(w, 2)) for w in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
while True:
    post(f"/{index}/_refresh", b"")
    with urllib.request.urlopen(f"{url}/{index}/_count", timeout=30) as r:
        count = json.load(r)["count"]
    if count >= n or failures:
        break
    time.sleep(0.1)
seconds = time.monotonic() - started
if failures or count != n:
    sys.exit(f"direct bulk: {count} documents, expected {n} ({failures})")
print(f"{seconds:.3f}")
