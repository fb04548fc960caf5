# fnc: the entry points a person uses. Each target does its own set-up.
CARGO ?= cargo
BIN   := target/release
DEMO  ?= demo
# libtorch comes from the project venv's PyPI torch: torch-sys asks the python3
# on PATH for it (with LIBTORCH_USE_PYTORCH=1 from .cargo/config.toml).
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export VIRTUAL_ENV := $(CURDIR)/.venv

.PHONY: all setup build test demo bench-ingest bench-archive bench-augment bench-train compare-real fmt lint clean

all: build

## setup: the project venv with torch==2.11.0 (about 5 GB; reused when present)
## and gloo's headers for the c10d shim (libgloo-dev, installed when root)
setup:
	scripts/setup-system.sh
	scripts/setup-python.sh --torch

## build: release binaries in target/release/
build: setup
	$(CARGO) build --release --workspace --bins

## test: the whole test suite (uses ../shared/datasets when present, skips otherwise)
test: setup
	$(CARGO) test --workspace
	# The single-process trainer for machines without libgloo-dev.
	CARGO=$(CARGO) bash scripts/check-no-dist.sh

## demo: the main job on the embedded default dataset (scripts/demo.sh)
demo: build
	DEMO=$(DEMO) bash scripts/demo.sh

## bench-ingest: fnc-ingest against PIL on real photos (markdown table on stdout)
bench-ingest: build
	bash bench/ingest.sh

## bench-archive: ingest from archives against extract-then-ingest (same files, one run)
bench-archive: build
	bash bench/archive.sh

## bench-augment: fnc-augment against PIL + torchvision on real photos
bench-augment: build
	bash bench/augment.sh

## bench-train: fnc-train step time against PyTorch eager (CPU; `bench/train.sh cuda` on a GPU)
bench-train: build
	bash bench/train.sh cpu

## compare-real: FNC vs SimCLR on ../shared/datasets (slow; see docs/benchmarks.md)
compare-real: build
	bash scripts/compare_real.sh

fmt:
	$(CARGO) fmt --all

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(DEMO) target
