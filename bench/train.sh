#!/usr/bin/env bash
# Training-step benchmark: fnc-train (libtorch via tch) against the same model and
# loss in PyTorch eager (bench/train_step.py), alternating, in one run, on the same
# device, both with SGD + momentum; then the data-wait fraction of real training
# (the augmentation engine feeding ResNet-18) on the embedded synth data.
# Usage: bench/train.sh [cpu|cuda] [batch] [timed steps] [rounds]
# Environment: PYTHON (default .venv/bin/python), BIN (default target/release),
# ARCHS (default "resnet50 resnet18"), WAIT_BATCH / WAIT_STEPS for the data-wait run.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-cpu} B=${2:-2} T=${3:-3} R=${4:-3}
PY=${PYTHON:-.venv/bin/python}
BIN=${BIN:-target/release}
ARCHS=${ARCHS:-resnet50 resnet18}
field() { $PY -c "import json,sys; d=json.load(sys.stdin); print(' '.join('%.3f' % d[k] for k in sys.argv[1:]))" "$@"; }

echo "| arch | round | fnc step (s) | fnc fwd / bwd / opt (s) | eager step (s) | eager fwd / bwd / opt (s) | eager / fnc |"
echo "|---|---:|---:|---|---:|---|---:|"
for arch in $ARCHS; do
  for r in $(seq "$R"); do
    f=$($BIN/fnc-train bench --arch "$arch" --batch-size "$B" --support 8 --device "$DEV" \
          --timed "$T" --optimizer sgd)
    p=$($PY bench/train_step.py --arch "$arch" --batch-size "$B" --support 8 --device "$DEV" \
          --timed "$T")
    read -r fs ff fb fo <<<"$(echo "$f" | field step_s forward_s backward_s optimizer_s)"
    read -r ps pf pb po <<<"$(echo "$p" | field step_s forward_s backward_s optimizer_s)"
    printf "| %s | %s | %s | %s / %s / %s | %s | %s / %s / %s | %.2f |\n" \
      "$arch" "$r" "$fs" "$ff" "$fb" "$fo" "$ps" "$pf" "$pb" "$po" "$($PY -c "print($ps / $fs)")"
  done
done

# Data wait with the real engine: train ResNet-18 for a few steps on synth shards.
WB=${WAIT_BATCH:-$([ "$DEV" = cpu ] && echo 8 || echo 256)}
WS=${WAIT_STEPS:-$([ "$DEV" = cpu ] && echo 6 || echo 60)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$BIN/fnc-ingest synth --classes 10 --per-class $((WB * 3)) --size 256 "$tmp/synth" >/dev/null
$BIN/fnc-ingest "$tmp/synth" --out "$tmp/out" >/dev/null
$BIN/fnc-train --shards "$tmp/out" --out "$tmp/run" --arch resnet18 --batch-size "$WB" \
  --steps "$WS" --device "$DEV" --warmup-epochs 0 --json >"$tmp/summary.json"
wait=$($PY -c "
import json
m = [json.loads(l) for l in open('$tmp/run/metrics.jsonl')][1:]  # step 1 waits for the first batch
print('%.1f%% (mean of steps 2-%d), %.1f images/s' % (100 * sum(x['data_wait'] for x in m) / len(m), len(m) + 1, sum(x['images_per_s'] for x in m) / len(m)))")
echo
echo "data wait, ResNet-18, 2x224 + 8x224 views, batch $WB, $DEV, $(nproc) cores: $wait"
