# fnc: the entry points a person uses. Each target does its own set-up.
CARGO ?= cargo
BIN   := target/release
DEMO  ?= demo
# libtorch comes from the project venv's PyPI torch: torch-sys asks the python3
# on PATH for it (with LIBTORCH_USE_PYTORCH=1 from .cargo/config.toml).
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export VIRTUAL_ENV := $(CURDIR)/.venv

.PHONY: all setup build test demo bench-ingest bench-augment fmt lint clean

all: build

## setup: the project venv with torch==2.11.0 (about 5 GB; reused when present)
setup:
	scripts/setup-python.sh --torch

## build: release binaries in target/release/
build: setup
	$(CARGO) build --release --workspace --bins

## test: the whole test suite (uses ../shared/datasets when present, skips otherwise)
test: setup
	$(CARGO) test --workspace

## demo: the main job on the embedded default dataset
demo: build
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(BIN)/fnc-ingest synth $(DEMO)/synth
	$(BIN)/fnc-ingest $(DEMO)/synth --out $(DEMO)/out
	$(BIN)/fnc-ingest inspect $(DEMO)/out
	$(BIN)/fnc-ingest verify $(DEMO)/out
	$(BIN)/fnc-augment preview --shards $(DEMO)/out --out $(DEMO)/preview.png --support-size 96
	$(BIN)/fnc-augment bench --shards $(DEMO)/out --seconds 3 --size 96 --support-size 64

## bench-ingest: fnc-ingest against PIL on real photos (markdown table on stdout)
bench-ingest: build
	bash bench/ingest.sh

## bench-augment: fnc-augment against PIL + torchvision on real photos
bench-augment: build
	bash bench/augment.sh

fmt:
	$(CARGO) fmt --all

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(DEMO) target
