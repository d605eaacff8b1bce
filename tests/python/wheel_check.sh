#!/usr/bin/env bash
# The package as users install it: `pip install .` from this checkout into a clean virtualenv,
# then the wheel that built installed into a second clean virtualenv; each runs a pipeline
# with a Python transform from outside the source tree.
#
# The wheel is built in the dev profile (MATURIN_PEP517_ARGS) to reuse the test build; a
# release wheel is `pip wheel .` with no extra settings.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$root/target/wheel-check"
rm -rf "$work"
mkdir -p "$work/wheels"

export MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS:---profile dev}"

smoke='
import json, pathlib, sys, tempfile, wire
assert "site-packages" in wire.__file__, wire.__file__
root = pathlib.Path(tempfile.mkdtemp())
(root / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(100)))
flow = (wire.Pipeline("smoke").source(wire.sources.file(root / "in.jsonl"))
        .map(lambda e: {"n": e["n"], "sq": e["n"] ** 2}).filter(lambda e: e["n"] % 2 == 0)
        .sink(wire.sinks.file(root / "out")))
with wire.Node(data_dir=root / "node", bootstrap=True, http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0") as node:
    node.pipelines.deploy(flow)
    node.pipelines.wait("smoke", timeout=60)
rows = [json.loads(l) for f in (root / "out").glob("part-*") for l in f.read_text().splitlines()]
assert sorted(r["n"] for r in rows) == list(range(0, 100, 2)), rows
assert all(r["sq"] == r["n"] ** 2 for r in rows)
print("wire", wire.__version__, "ok:", len(rows), "records")
'

python3 -m venv "$work/from-source"
"$work/from-source/bin/pip" install --quiet "$root"
(cd "$work" && "$work/from-source/bin/python" -c "$smoke")

"$work/from-source/bin/pip" wheel --quiet --no-deps --wheel-dir "$work/wheels" "$root"
wheel=$(ls "$work"/wheels/wire-*.whl)
case "$wheel" in *abi3*) ;; *) echo "wheel-check: $wheel is not an abi3 wheel" >&2; exit 1 ;; esac
python3 -m venv "$work/from-wheel"
"$work/from-wheel/bin/pip" install --quiet "$wheel"
(cd "$work" && "$work/from-wheel/bin/python" -c "$smoke")
echo "wheel-check: ok ($(basename "$wheel"))"
