# fnc: the entry points a person uses. Each target does its own set-up.
CARGO ?= cargo
BIN   := target/release
DEMO  ?= demo

.PHONY: all build test demo bench-ingest fmt lint clean

all: build

## build: release binaries in target/release/
build:
	$(CARGO) build --release --workspace --bins

## test: the whole test suite (uses ../shared/datasets when present, skips otherwise)
test:
	$(CARGO) test --workspace

## demo: the main job on the embedded default dataset
demo: build
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(BIN)/fnc-ingest synth $(DEMO)/synth
	$(BIN)/fnc-ingest $(DEMO)/synth --out $(DEMO)/out
	$(BIN)/fnc-ingest inspect $(DEMO)/out
	$(BIN)/fnc-ingest verify $(DEMO)/out

## bench-ingest: fnc-ingest against PIL on real photos (writes bench/results/)
bench-ingest: build
	bash bench/ingest.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(DEMO) target
