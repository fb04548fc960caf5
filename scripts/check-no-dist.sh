#!/usr/bin/env bash
# The single-process trainer for machines without libgloo-dev: builds fnc-train
# without the default `dist` feature, trains two steps with it, and checks that
# it refuses data-parallel runs, saying why. (`make test` runs it after the
# tests; the next `cargo test` rebuilds the default binary.)
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
$CARGO build -p fnc-train --no-default-features --bins
$CARGO build -p fnc-ingest --bins
B=${CARGO_TARGET_DIR:-target}/debug
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$B/fnc-ingest synth --classes 2 --per-class 8 --val-per-class 1 --size 32 "$tmp/src" >/dev/null
$B/fnc-ingest "$tmp/src" --out "$tmp/out" >/dev/null
$B/fnc-train --shards "$tmp/out" --out "$tmp/run" --arch small --image-size 32 --support 0 \
  --batch-size 8 --steps 2 --device cpu --workers 1 >/dev/null
test -f "$tmp/run/checkpoints/latest" || { echo "no-dist: the run wrote no checkpoint" >&2; exit 1; }
if $B/fnc-train --shards "$tmp/out" --out "$tmp/run2" --arch small --image-size 32 \
     --batch-size 8 --steps 2 --device cpu --nproc-per-node 2 2>"$tmp/err"; then
  echo "no-dist: --nproc-per-node 2 was accepted" >&2; exit 1
fi
grep -q "without data-parallel support" "$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
echo "no-dist: a single-process trainer without the dist feature trains, and refuses ranks"
