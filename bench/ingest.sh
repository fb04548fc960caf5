#!/usr/bin/env bash
# Ingest benchmark: fnc-ingest against a PIL packing loop on the same photos, in one
# run, one core each. Needs ../shared/datasets/imagenette2-mini (skips otherwise).
# Prints a markdown table; `make bench-ingest` runs it after building.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=../shared/datasets/imagenette2-mini
if [ ! -d "$SRC" ]; then echo "SKIP: $SRC is absent"; exit 0; fi
scripts/setup-python.sh
PY=.venv/bin/python
W=${BENCH_DIR:-/tmp/fnc-bench-ingest}
rm -rf "$W" && mkdir -p "$W"
$PY bench/make_photos.py "$SRC" "$W/photos500" --count 400
B=target/release/fnc-ingest

fnc() { # label tree args...
  local label=$1 tree=$2; shift 2
  rm -rf "$W/out"
  $B "$tree" --out "$W/out" --threads 1 --json "$@" | $PY -c "import json,sys; print(json.load(sys.stdin)['images_per_s'])"
}
pil() { $PY bench/pil_ingest.py "$@" | $PY -c "import json,sys; print(json.load(sys.stdin)['images_per_s'])"; }

echo "| case (1 core) | fnc-ingest img/s | PIL img/s | ratio |"
echo "|---|---:|---:|---:|"
row() { printf "| %s | %.0f | %.0f | %.2fx |\n" "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)"; }
f=$(fnc a "$W/photos500" --encoding jpeg --max-side 0); p=$(pil "$W/photos500" --max-side 0)
row "500x375 ~110 kB: decode + JPEG q90 encode" "$f" "$p"
f=$(fnc a "$W/photos500" --encoding jpeg --max-side 256); p=$(pil "$W/photos500" --max-side 256)
row "500x375: decode + resize (longer side 256) + JPEG q90" "$f" "$p"
f=$(fnc a "$W/photos500" --encoding keep); p=$(pil "$W/photos500" --keep)
row "500x375 keep mode (fnc: EOI check + CRC + write; PIL: verify())" "$f" "$p"
f=$(fnc a "$SRC" --encoding keep); p=$(pil "$SRC" --keep)
row "imagenette2-mini 224 px keep mode" "$f" "$p"
f=$(fnc a "$SRC" --encoding jpeg --max-side 0); p=$(pil "$SRC" --max-side 0)
row "imagenette2-mini 224 px decode + JPEG q90 encode" "$f" "$p"
rm -rf "$W/out"
$B "$W/photos500" --out "$W/out" --json >/dev/null
echo
echo "Reader, random records of the 500x375 keep-mode set (page cache warm):"
cargo run --release -q -p fnc-formats --example read_bench -- "$W/out" train 200000
