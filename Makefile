# One read-only check that equals CI (`make verify`) and one command that fixes what can be
# fixed (`make fix`).

export CARGO_BUILD_JOBS ?= 2

.PHONY: verify fix fmt-check clippy test bench-kv bench-pipeline

verify: fmt-check clippy test

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

test:
	cargo test --workspace

fix:
	cargo fmt --all
	cargo clippy --workspace --all-targets --fix --allow-dirty --allow-staged -- -D warnings

bench-kv:
	bash bench/kv/run.sh

bench-pipeline:
	bash bench/pipeline/run.sh
