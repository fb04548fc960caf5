#!/usr/bin/env bash
# Augmentation benchmark: fnc-augment against PIL + torchvision v1 transforms on the
# same ImageNet-sized photos, in one run. Needs ../shared/datasets/imagenette2-mini
# (skips otherwise) and the project venv with torch/torchvision (scripts/setup-python.sh
# --torch). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=../shared/datasets/imagenette2-mini
if [ ! -d "$SRC" ]; then echo "SKIP: $SRC is absent"; exit 0; fi
scripts/setup-python.sh --torch
PY=.venv/bin/python
S=${SECONDS_PER_CASE:-10}
W=${BENCH_DIR:-/tmp/fnc-bench-augment}
rm -rf "$W" && mkdir -p "$W"
$PY bench/make_photos.py "$SRC" "$W/photos500" --count 400
target/release/fnc-ingest "$W/photos500" --out "$W/out" >/dev/null
get() { $PY -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
fnc() { target/release/fnc-augment bench --shards "$W/out" --seconds "$S" --json "$@"; }
base() { $PY bench/augment_baseline.py "$W/photos500" --seconds "$S" "$@"; }

echo "| recipe | pipeline | threads | images/s | views/s | vs PIL-blur baseline |"
echo "|---|---|---:|---:|---:|---:|"
for recipe in "10 224 224" "10 224 96" "2 224 224"; do
  set -- $recipe; views=$1 size=$2 ssize=$3; support=$((views - 2))
  name="2x$size + ${support}x$ssize"; [ "$support" = 0 ] && name="2x$size (SimCLR)"
  tv=$(base --blur torchvision --views "$views" --size "$size" --support-size "$ssize" | get views_per_s)
  pil=$(base --blur pil --views "$views" --size "$size" --support-size "$ssize" | get views_per_s)
  printf "| %s | PIL + torchvision (torchvision blur) | 1 | %.1f | %.0f | %.2fx |\n" "$name" "$(echo "$tv / $views" | bc -l)" "$tv" "$(echo "$tv / $pil" | bc -l)"
  printf "| %s | PIL + torchvision (PIL blur) | 1 | %.1f | %.0f | 1.00x |\n" "$name" "$(echo "$pil / $views" | bc -l)" "$pil"
  for t in 1 2; do
    r=$(fnc --threads "$t" --support "$support" --size "$size" --support-size "$ssize")
    v=$(echo "$r" | get views_per_s); i=$(echo "$r" | get images_per_s)
    printf "| %s | fnc-augment | %s | %.0f | %.0f | %.2fx |\n" "$name" "$t" "$i" "$v" "$(echo "$v / $pil" | bc -l)"
  done
done
# The paper's RandAugment recipe (2 + 8 views at 224) against torchvision's
# RandAugment in the same Python pipeline, and the reference ops (float, TF
# semantics) with and without it.
name="2x224 + 8x224 + RandAugment 2,7"
pil=$(base --blur pil --randaugment | get views_per_s)
printf "| %s | PIL + torchvision RandAugment (PIL blur) | 1 | %.1f | %.0f | 1.00x |\n" "$name" "$(echo "$pil / 10" | bc -l)" "$pil"
for impl in torchvision reference; do
  for t in 1 2; do
    r=$(fnc --threads "$t" --randaugment 2,7 --augment-impl "$impl")
    v=$(echo "$r" | get views_per_s); i=$(echo "$r" | get images_per_s)
    printf "| %s | fnc-augment --augment-impl %s | %s | %.0f | %.0f | %.2fx |\n" "$name" "$impl" "$t" "$i" "$v" "$(echo "$v / $pil" | bc -l)"
  done
done
pil=$(base --blur pil | get views_per_s)
r=$(fnc --threads 1 --augment-impl reference)
v=$(echo "$r" | get views_per_s); i=$(echo "$r" | get images_per_s)
printf "| 2x224 + 8x224 | fnc-augment --augment-impl reference | 1 | %.0f | %.0f | %.2fx |\n" "$i" "$v" "$(echo "$v / $pil" | bc -l)"
# A consumer needing 90% of the 2-thread rate: how often does it wait?
rate=$(fnc --threads 2 | get images_per_s)
r=$(fnc --threads 2 --consumer-rate "$(echo "$rate * 0.9" | bc -l)")
printf "\nConsumer at 90%% of the engine's rate (%.0f images/s): waits %.1f%% of the time\n" "$(echo "$rate * 0.9" | bc -l)" "$(echo "$(echo "$r" | get consumer_wait_fraction) * 100" | bc -l)"
