#!/usr/bin/env bash
# Training-step benchmark: fnc-train (libtorch via tch) against the same model and
# loss in PyTorch eager, in one run, on the same device; then the data-wait
# fraction of real training (engine feeding the model) on the synth data.
# Usage: bench/train.sh [cpu|cuda] [batch] [timed steps]
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-cpu} B=${2:-2} T=${3:-3}
PY=${PYTHON:-.venv/bin/python}
BIN=${BIN:-target/release}
echo "| arch | views | batch | device | fnc-train step (s) | PyTorch eager step (s) | ratio (eager / fnc) |"
echo "|---|---|---:|---|---:|---:|---:|"
for arch in resnet50 resnet18; do
  f=$($BIN/fnc-train bench --arch $arch --batch-size "$B" --support 8 --device "$DEV" --timed "$T")
  p=$($PY bench/train_step.py --arch $arch --batch-size "$B" --support 8 --device "$DEV" --timed "$T")
  fs=$(echo "$f" | $PY -c "import json,sys; print(json.load(sys.stdin)['step_s'])")
  ps=$(echo "$p" | $PY -c "import json,sys; print(json.load(sys.stdin)['step_s'])")
  printf "| %s | 2x224 + 8x224 | %s | %s | %.3f | %.3f | %.2f |\n" $arch "$B" "$DEV" "$fs" "$ps" "$(echo "$ps / $fs" | bc -l)"
done
