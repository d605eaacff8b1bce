# One read-only check that equals CI (`make verify`) and one command that fixes what can be
# fixed (`make fix`).

export CARGO_BUILD_JOBS ?= 2

# The Python side builds and tests in a virtualenv of its own (maturin, pytest, mypy, and
# pyarrow, polars and pandas for the columnar batches, selenium for the console's browser
# tests, which drive Debian's chromium through chromedriver).
VENV ?= .venv
PY := $(VENV)/bin/python
PY_TOOLS := "maturin>=1.15,<2" "pytest>=7" "mypy>=1.10" "pyarrow>=14" "polars>=1" "pandas>=2" "selenium>=4" "schemathesis>=4,<5"

.PHONY: verify fix fmt-check clippy test test-rust test-lincheck lincheck-long test-python test-wheel test-ffi bench-kv bench-pipeline bench-python bench-connectors bench-failover bench-pipeline-failover bench-keyed bench-stateful bench

verify: fmt-check clippy test

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

test: test-rust test-lincheck test-ffi test-python test-wheel

# The connector tests start real servers with tests/services/*.sh (Kafka and OpenSearch from
# Maven Central jars, FerretDB built from the Go module proxy; all cached); they are stopped
# afterwards, whatever the result.
test-rust:
	cargo test --workspace; status=$$?; \
	  for service in tests/services/*.sh; do \
	    [ "$$service" = tests/services/lib.sh ] || bash "$$service" stop; \
	  done; exit $$status

# A 3-node cluster of real `wire node` processes under kill -9, SIGSTOP and quick restarts
# of the leader, with concurrent reads, writes and compare-and-set checked for
# linearizability (porcupine), a durability run, and the checker's own self-test; where
# network namespaces can be made (root on Linux), also leader partitions. Uses the
# binary test-rust built.
test-lincheck:
	bash tests/linearizability/run.sh short

lincheck-long:
	cargo build -p wire-core
	bash tests/linearizability/run.sh long

$(VENV)/.tools:
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PY_TOOLS)
	touch $@

# The native module in the dev profile (it shares target/ with the Rust tests), installed
# editable, then pytest: the suite, the package's doctests, stubtest and mypy --strict.
# axe-core (npm) for the console's accessibility check in the browser tests.
target/npm/node_modules/axe-core/axe.min.js:
	npm install --silent --no-audit --no-fund --prefix target/npm axe-core@4

test-python: $(VENV)/.tools target/npm/node_modules/axe-core/axe.min.js
	cargo build -q -p wire-core --bin wire
	$(VENV)/bin/maturin develop --quiet
	$(PY) -m pytest -q tests/python --pyargs wire

# `pip install .` from the checkout into a clean virtualenv, and the wheel it built into
# another, each then running a pipeline with a Python transform.
test-wheel:
	bash tests/python/wheel_check.sh

# libwire (shared and static, dev profile) and its C and Go hosts: static, shared, ASan, cgo.
# The ABI's own tests and the header drift check run in test-rust.
test-ffi:
	cargo build -p wire-ffi
	bash tests/ffi/hosts.sh

fix:
	cargo fmt --all
	cargo clippy --workspace --all-targets --fix --allow-dirty --allow-staged -- -D warnings

bench-kv:
	bash bench/kv/run.sh

bench-pipeline:
	bash bench/pipeline/run.sh

bench-python:
	bash bench/python/run.sh

bench-connectors:
	bash bench/connectors/run.sh

# Leader failover, Wire beside etcd (Debian's etcd-server, installed when missing) under the
# same leader kills and pauses: recovery times, ratios, and every acknowledged write read back.
# Every benchmark, side by side and checked, written to bench/RESULTS.md.
bench:
	bash bench/all.sh

bench-failover:
	bash bench/failover/run.sh

# kill -9 of pipeline nodes: time until their partitions run elsewhere, output checked.
bench-pipeline-failover:
	CARGO_BUILD_JOBS=$${CARGO_BUILD_JOBS:-2} cargo build -q --release -p wire-core --bin wire
	python3 bench/failover/pipelines.py

# A keyed pipeline on 1 node and on 3 nodes, each beside the same pipeline without key_by.
bench-keyed:
	CARGO_BUILD_JOBS=$${CARGO_BUILD_JOBS:-2} cargo build -q --release -p wire-core --bin wire
	python3 bench/keyed/cluster.py

# Keyed running sums and tumbling-window counts: Wire (jq reduce, built-in window, and a
# Python stateful_map through the release wheel) beside Bytewax 0.21 and a Rust HashMap loop.
bench-stateful:
	CARGO_BUILD_JOBS=$${CARGO_BUILD_JOBS:-2} cargo build -q --release -p wire-core --bin wire
	CARGO_BUILD_JOBS=$${CARGO_BUILD_JOBS:-2} cargo bench -q -p wire-core --bench stateful_loop --no-run
	bash bench/wheel.sh
	python3 bench/stateful/run.py
