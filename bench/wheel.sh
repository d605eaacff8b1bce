#!/usr/bin/env bash
# The benchmarks' Python: a virtualenv (BENCH_VENV, default ~/.cache/wire-bench/python-venv)
# with Bytewax 0.21 and maturin, and a release build of Wire's wheel installed in it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
venv="${BENCH_VENV:-$HOME/.cache/wire-bench/python-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'bytewax==0.21.*' 'maturin>=1.15,<2'
fi
"$venv/bin/python" -c 'import pyarrow, polars, orjson' 2>/dev/null \
  || "$venv/bin/pip" install -q 'pyarrow>=14' 'polars>=1' 'orjson>=3'

wheels=$(mktemp -d /tmp/wire-bench-wheel.XXXXXX)
trap 'rm -rf "$wheels"' EXIT
"$venv/bin/maturin" build --release --quiet --out "$wheels" >/dev/null
"$venv/bin/pip" install -q --force-reinstall --no-deps "$wheels"/wire-*.whl
