#!/usr/bin/env bash
# Augmentation benchmark: fnc-augment against PIL + torchvision v1 transforms on the
# same ImageNet-sized photos, in one run; then, per op, the plain recipe against
# albumentations + simplejpeg and the reference path against TensorFlow running the
# reference's ops (each in a venv of its own: .venv-bench, .venv-tf). Needs ../shared/datasets/imagenette2-mini
# (skips otherwise) and the project venv with torch/torchvision (scripts/setup-python.sh
# --torch). Prints a markdown table. CPU_PATH=avx2 (or scalar) runs fnc-augment's
# kernels on that instruction set (--cpu-path), as on a CPU without AVX-512; the
# Python baselines keep whatever their libraries pick.
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
fnc() { target/release/fnc-augment bench --shards "$W/out" --seconds "$S" --json ${CPU_PATH:+--cpu-path "$CPU_PATH"} "$@"; }
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

# The anchors of issue 21, one core each, same photos, 10 views at 224 px:
# the plain recipe against albumentations + simplejpeg (OpenCV), the reference
# path against the reference's own TensorFlow ops in tf.data. Per op: the crop
# (decode and resize included, amortised over the image's 10 views) in us per
# view, then each op's added cost (the crop plus that op, minus the crop alone).
setup_venv() { # DIR PACKAGES...
  local d=$1; shift
  [ -x "$d/bin/python" ] || python3 -m venv "$d"
  "$d/bin/pip" install -q --disable-pip-version-check --no-cache-dir "$@"
}
setup_venv .venv-bench 'albumentations==2.0.8' 'opencv-python-headless==5.0.0.93' 'simplejpeg==1.9.0'
setup_venv .venv-tf 'tensorflow-cpu==2.21.0' 'numpy<3'
alb() { .venv-bench/bin/python bench/augment_albumentations.py "$W/photos500" --seconds "$S" "$@"; }
tfa() { TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 .venv-tf/bin/python bench/augment_tf.py "$W/photos500" --seconds "$S" "$@" 2>/dev/null; }
one() { fnc --threads 1 --support 8 --size 224 --support-size 224 "$@"; }
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
simd=$(grep -m1 -o -w -E "avx512f|avx2" /proc/cpuinfo | sort -u | tr '\n' ' ')
us() { echo "1000000 / $1" | bc -l; }
declare -A V
for op in all crop flip jitter grey blur; do
  V[plain,$op]=$(one --op "$op" | get views_per_s)
  V[ref,$op]=$(one --op "$op" --augment-impl reference | get views_per_s)
  V[alb,$op]=$(alb --op "$op" | get views_per_s)
  V[tf,$op]=$(tfa --op "$op" | get views_per_s)
done
echo
echo "Per op, one core, 10 views of 224 px per image ($cpu; ${simd:-no AVX2}; fnc-augment on ${CPU_PATH:-its widest path}):"
echo
echo "| op | fnc plain | albumentations + simplejpeg | fnc faster by | fnc reference | TensorFlow (reference ops) | fnc faster by |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for op in crop flip jitter grey blur; do
  row="| $op"
  for pair in "plain alb" "ref tf"; do
    set -- $pair
    if [ "$op" = crop ]; then
      a=$(us "${V[$1,crop]}"); b=$(us "${V[$2,crop]}")
    else
      a=$(echo "$(us "${V[$1,$op]}") - $(us "${V[$1,crop]}")" | bc -l)
      b=$(echo "$(us "${V[$2,$op]}") - $(us "${V[$2,crop]}")" | bc -l)
    fi
    # The added cost of a cheap op can come out at or below zero (noise).
    r=$(echo "if ($a > 0.5) $b / $a else 0" | bc -l)
    row="$row | $(printf '%.1f us' "$a") | $(printf '%.1f us' "$b") | $(printf '%.2fx' "$r")"
  done
  echo "$row |"
done
row="| **all** (views/s)"
for pair in "plain alb" "ref tf"; do
  set -- $pair
  row="$row | $(printf '%.0f' "${V[$1,all]}") | $(printf '%.0f' "${V[$2,all]}") | $(printf '%.2fx' "$(echo "${V[$1,all]} / ${V[$2,all]}" | bc -l)")"
done
echo "$row |"
pil=$(base --blur pil --views 10 --size 224 --support-size 224 | get views_per_s)
echo
printf "plain recipe: %.2fx albumentations (goal >= 2x), %.2fx torchvision + PIL blur (%.0f views/s; goal >= 6x)\n" \
  "$(echo "${V[plain,all]} / ${V[alb,all]}" | bc -l)" "$(echo "${V[plain,all]} / $pil" | bc -l)" "$pil"
printf "reference path: %.2fx the plain recipe's time per view (goal <= 1.5x), %.2fx TensorFlow's views/s\n" \
  "$(echo "${V[plain,all]} / ${V[ref,all]}" | bc -l)" "$(echo "${V[ref,all]} / ${V[tf,all]}" | bc -l)"
