#!/usr/bin/env python3
"""Stateful benchmark: EVENTS JSON events (1000 users, event time 6 ms apart, amounts
1-100) through two keyed workloads, in alternating rounds:

- sum: a running sum per user, one output per event — Wire `key_by` + `reduce` (a jq
  update), Wire `key_by` + `aggregate` (the built-in running sum), Wire `key_by` + `stateful_map` with a plain Python function (the wheel in the
  bench virtualenv, the same function Bytewax runs), Bytewax 0.21 `stateful_map`, a plain
  Rust `HashMap` loop;
- window: events per user and tumbling minute of event time — Wire `key_by` + `window`
  (`count`), Bytewax 0.21 `count_window` (EventClock, TumblingWindower), the Rust loop.

Wire is a release `wire node` at parallelism 1 (checkpoints every 5 s, state included;
file sink fsynced at each checkpoint); Bytewax's FileSink fsyncs each batch; the loop
fsyncs once at the end. Every output is checked against totals and counts computed here;
a wrong output fails the run. Prints records/s, peak RSS, the ratios against the issue's
targets, and the size of the last checkpoint's state.

    ROUNDS=2 EVENTS=1000000 python3 bench/stateful/run.py
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from wire_cluster import free_port  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "2"))
EVENTS = int(os.environ.get("EVENTS", "1000000"))
WIRE = os.environ.get("WIRE", "target/release/wire")
VENV = os.environ.get("BENCH_VENV", os.path.expanduser("~/.cache/wire-bench/python-venv"))
HERE = os.path.dirname(os.path.abspath(__file__))


def make_input(path: str) -> Tuple[Dict[str, int], Dict[Tuple[str, int], int]]:
    random.seed(7)
    totals: Dict[str, int] = {}
    counts: Dict[Tuple[str, int], int] = {}
    with open(path, "w") as f:
        for i in range(EVENTS):
            user = f"user-{random.randrange(1000)}"
            ts = 1_796_400_000_000 + i * 6
            amount = random.randint(1, 100)
            f.write(json.dumps({"user": user, "ts": ts, "amount": amount}) + "\n")
            totals[user] = totals.get(user, 0) + amount
            k = (user, ts // 60_000 * 60_000)
            counts[k] = counts.get(k, 0) + 1
    return totals, counts


def lines(out: str):
    files = [os.path.join(out, n) for n in sorted(os.listdir(out)) if n.startswith("part-")] \
        if os.path.isdir(out) else [out]
    for name in files:
        with open(name) as f:
            for line in f:
                yield json.loads(line)


def check(mode: str, out: str, totals, counts, who: str) -> None:
    if mode == "sum":
        n, best = 0, {}
        for v in lines(out):
            n += 1
            user = v.get("user", v.get("key"))
            best[user] = max(best.get(user, 0), v["total"])
        ok = n == EVENTS and best == totals
        what = f"{n} outputs, final totals {'equal' if best == totals else 'DIFFER'}"
    else:
        got = {(v["key"], v["window_start"]): v["n"] for v in lines(out)}
        ok = got == counts
        what = f"{len(got)} windows {'equal' if ok else 'DIFFER'}"
    print(f"  {who} {mode}: {what}", file=sys.stderr)
    if not ok:
        raise SystemExit(f"{who} {mode}: wrong output ({what})")


def wire_spec(mode: str, path: str, out: str) -> dict:
    if mode == "sum-agg":
        step = {"type": "aggregate", "config": {"aggregate": {"total": {"sum": ".amount"}}}}
    elif mode == "sum":
        step = {"type": "reduce", "config": {
            "init": 0,
            "update": "(.state + .record.amount) as $t | {state: $t, emit: {user: .key, total: $t}}"}}
    else:
        step = {"type": "window", "config": {"size": "1m", "aggregate": {"n": "count"}}}
    return {
        "name": "bench", "parallelism": 1, "checkpoint_interval": "5s",
        "event_time": {"field": ".ts"},
        "sources": [{"type": "file", "config": {"path": path}}],
        "transforms": [{"type": "key_by", "config": {"key": ".user"}}, step],
        "sinks": [{"type": "file", "config": {"path": out}}],
    }


def run_wire(mode: str, path: str, work: str, totals, counts) -> Tuple[float, int, Tuple[int, int]]:
    """Seconds, peak RSS, and the largest checkpointed state seen (bytes, encoding µs)."""
    d = tempfile.mkdtemp(dir=work)
    out = os.path.join(d, "out")
    http_addr, raft = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    log = open(os.path.join(d, "node.log"), "wb")
    proc = subprocess.Popen([WIRE, "node", "--node-id", "1", "--http-addr", http_addr, "--raft-addr", raft,
                             "--data-dir", os.path.join(d, "node"), "--bootstrap", "--log-level", "warn"],
                            stdout=log, stderr=log)
    try:
        conn = None
        for _ in range(400):
            try:
                conn = http.client.HTTPConnection(http_addr)
                conn.request("GET", "/ready")
                ready = conn.getresponse()
                ready.read()
                if ready.status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        assert conn is not None
        t0 = time.monotonic()
        conn.request("POST", "/pipelines", json.dumps(wire_spec(mode, path, out)), {"content-type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        assert r.status < 300, body
        biggest = (0, 0)
        while True:
            conn.request("GET", "/pipelines/bench")
            s = json.loads(conn.getresponse().read())
            for p in s.get("partitions", []):
                if p.get("state_bytes", 0) > biggest[0]:
                    biggest = (p["state_bytes"], p.get("state_micros", 0))
            if s.get("state") == "finished":
                break
            if s.get("state") == "failed":
                raise SystemExit(f"wire {mode} failed: {s.get('errors')}")
            time.sleep(0.01)
        secs = time.monotonic() - t0
        with open(f"/proc/{proc.pid}/status") as f:
            hwm = int(next(l.split()[1] for l in f if l.startswith("VmHWM:")))
    finally:
        proc.kill()
        proc.wait()
    check(mode.split("-")[0], out, totals, counts, "wire " + mode)
    shutil.rmtree(d, ignore_errors=True)
    return secs, hwm, biggest


def timed(cmd: List[str], env: dict) -> Tuple[float, int]:
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in r.stderr.splitlines():
        if line.startswith("seconds="):
            parts = dict(p.split("=") for p in line.split())
            return float(parts["seconds"]), int(parts["peak_rss_kib"])
    raise SystemExit(f"{cmd[0]} failed: {r.stderr[-2000:]}")


def run_bytewax(mode: str, path: str, work: str, totals, counts) -> Tuple[float, int]:
    out = os.path.join(work, f"bw-{mode}.jsonl")
    if os.path.exists(out):
        os.remove(out)
    env = dict(os.environ, BENCH_INPUT=path, BENCH_OUT=out, BENCH_MODE=mode, PYTHONPATH=HERE)
    secs, rss = timed([os.path.join(VENV, "bin", "python"), "-m", "bytewax.run", "bytewax_flow:flow"], env)
    check(mode, out, totals, counts, "bytewax")
    return secs, rss


def run_wire_python(mode: str, path: str, work: str, totals, counts) -> Tuple[float, int]:
    out = tempfile.mkdtemp(dir=work)
    secs, rss = timed([os.path.join(VENV, "bin", "python"), os.path.join(HERE, "wire_python.py"),
                       path, os.path.join(out, "out")], dict(os.environ))
    check(mode, os.path.join(out, "out"), totals, counts, "wire python")
    shutil.rmtree(out, ignore_errors=True)
    return secs, rss


def run_loop(loop: str, mode: str, path: str, work: str, totals, counts) -> Tuple[float, int]:
    out = os.path.join(work, f"loop-{mode}.jsonl")
    secs, rss = timed([loop, mode, path, out], dict(os.environ))
    check(mode, out, totals, counts, "rust loop")
    return secs, rss


def main() -> int:
    loop = subprocess.run(
        "ls -t target/release/deps/stateful_loop-* | grep -v '\\.d$' | head -1",
        shell=True, capture_output=True, text=True).stdout.strip()
    if not loop:
        raise SystemExit("build the loop first: cargo bench -p wire-core --bench stateful_loop --no-run")
    work = tempfile.mkdtemp(prefix="wire-bench-stateful-")
    try:
        path = os.path.join(work, "in.jsonl")
        totals, counts = make_input(path)
        best: Dict[Tuple[str, str], Tuple[float, int]] = {}
        states: Dict[str, Tuple[int, int]] = {}
        for r in range(1, ROUNDS + 1):
            for mode in ("sum", "window"):
                subprocess.run(["sync"])
                secs, rss, state = run_wire(mode, path, work, totals, counts)
                w = (secs, rss)
                states[mode] = max(states.get(mode, (0, 0)), state)
                subprocess.run(["sync"])
                b = run_bytewax(mode, path, work, totals, counts)
                subprocess.run(["sync"])
                l = run_loop(loop, mode, path, work, totals, counts)
                runs = [("wire", w), ("bytewax", b), ("loop", l)]
                if mode == "sum":
                    subprocess.run(["sync"])
                    secs, rss, state = run_wire("sum-agg", path, work, totals, counts)
                    states["sum-agg"] = max(states.get("sum-agg", (0, 0)), state)
                    runs.append(("wire-agg", (secs, rss)))
                    subprocess.run(["sync"])
                    runs.append(("wire-python", run_wire_python(mode, path, work, totals, counts)))
                for who, got in runs:
                    print(f"round {r} {mode} {who}: {EVENTS / got[0]:,.0f} events/s", file=sys.stderr, flush=True)
                    if (mode, who) not in best or got[0] < best[(mode, who)][0]:
                        best[(mode, who)] = got
        print(f"{EVENTS:,} events, 1000 users, best of {ROUNDS} alternating rounds, one partition / worker / thread")
        print()
        print("| workload | contender | events/s | peak RSS | durability |")
        print("|---|---|---|---|---|")
        durability = {"wire": "file sink fsynced at each 5 s checkpoint (state in the checkpoint)",
                      "wire-python": "file sink fsynced at each 5 s checkpoint (state in the checkpoint)",
                      "wire-agg": "file sink fsynced at each 5 s checkpoint (state in the checkpoint)",
                      "bytewax": "FileSink fsync per batch", "loop": "one fsync at the end"}
        names = {"wire": {"sum": "Wire key_by + reduce (jq)", "window": "Wire key_by + window (count)"},
                 "bytewax": {"sum": "Bytewax stateful_map", "window": "Bytewax count_window"},
                 "loop": {"sum": "Rust HashMap loop", "window": "Rust HashMap loop"},
                 "wire-python": {"sum": "Wire key_by + stateful_map (Python function)"},
                 "wire-agg": {"sum": "Wire key_by + aggregate (built-in sum)"}}
        for mode in ("sum", "window"):
            for who in ("wire", "wire-agg", "wire-python", "bytewax", "loop"):
                if (mode, who) not in best:
                    continue
                secs, rss = best[(mode, who)]
                print(f"| {mode} | {names[who][mode]} | {EVENTS / secs:,.0f} | {rss // 1024} MiB | {durability[who]} |")
        print()
        for mode, target_bw in (("sum", 10), ("window", 10)):
            w, b, l = (best[(mode, k)][0] for k in ("wire", "bytewax", "loop"))
            print(f"{mode}: Wire / Bytewax {b / w:.2f}x (target >= {target_bw}x), "
                  f"Wire / Rust loop {l / w:.2f}x (target >= 0.5x); largest checkpointed state "
                  f"{states[mode][0]:,} bytes, encoded in {states[mode][1] / 1000:.1f} ms")
        a, b, l = (best[("sum", k)][0] for k in ("wire-agg", "bytewax", "loop"))
        print(f"sum: Wire built-in aggregate / Bytewax {b / a:.2f}x (target >= 10x), "
              f"/ Rust loop {l / a:.2f}x (target >= 0.5x); largest checkpointed state "
              f"{states['sum-agg'][0]:,} bytes, encoded in {states['sum-agg'][1] / 1000:.1f} ms")
        p = best[("sum", "wire-python")][0]
        print(f"sum: Wire Python stateful_map / Bytewax stateful_map {b / p:.2f}x (target >= 3x)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
