#!/usr/bin/env bash
# FNC vs SimCLR on the real photo sets of ../shared/datasets (developer machines
# and CI only): ingest, pretrain a small encoder twice under the same budget, linear
# evaluation of both plus the random-init baseline. Prints a markdown table.
# Environment: SETS (default "imagenette2-mini flowers5-small cifar10"), STEPS
# (default 450), ARCH (default small), SIZE (main view side, default 64),
# DEVICE (default auto), WORK (default /tmp/fnc-compare), MEMORY (bank multiplier of
# an extra FNC run with the memory variant, default 16; 0 skips that run).
# On a GPU: ARCH=resnet18 SIZE=32 SETS=cifar10 STEPS=5000 DEVICE=cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/datasets
if [ ! -d "$DATA" ]; then echo "SKIP: $DATA is absent"; exit 0; fi
BIN=${BIN:-target/release}
SETS=${SETS:-"imagenette2-mini flowers5-small cifar10"}
STEPS=${STEPS:-450} ARCH=${ARCH:-small} SIZE=${SIZE:-64} DEV=${DEVICE:-auto}
W=${WORK:-/tmp/fnc-compare}
MEM=${MEMORY:-16}
PY=.venv/bin/python
mkdir -p "$W"
echo "| dataset | encoder | linear top-1 % | top-5 % | FN precision / chance % |"
echo "|---|---|---:|---:|---:|"
for set in $SETS; do
  case $set in
    cifar10)
      if [ ! -d "$W/cifar10-jpg" ]; then tar xzf "$DATA/cifar10-jpg.tar.gz" -C "$W"; fi
      # The test/ folder of the tarball is the val split.
      [ -e "$W/cifar10-jpg/val" ] || ln -s test "$W/cifar10-jpg/val"
      src="$W/cifar10-jpg"; extra=() ;;
    flowers5-small) src="$DATA/$set"; extra=(--val-fraction 0.2) ;;
    *) src="$DATA/$set"; extra=() ;;
  esac
  rm -rf "$W/$set-out" "$W/$set-runs"
  $BIN/fnc-ingest "$src" --out "$W/$set-out" "${extra[@]}" >/dev/null
  COMMON=(--shards "$W/$set-out" --arch "$ARCH" --image-size "$SIZE" --support 2 --support-size $((SIZE / 2))
          --batch-size 128 --steps "$STEPS" --optimizer adamw --lr 0.003 --lr-scaling none
          --weight-decay 1e-4 --warmup-epochs 1 --temperature 0.2 --checkpoint-every "$STEPS" --device "$DEV")
  for s in attraction none; do
    $BIN/fnc-train "${COMMON[@]}" --fn-strategy $s --out "$W/$set-runs/$s" >/dev/null
  done
  $BIN/fnc-eval linear --run "$W/$set-runs/attraction" --baseline --json > "$W/$set-fnc.json"
  $BIN/fnc-eval linear --run "$W/$set-runs/none" --json > "$W/$set-simclr.json"
  if [ "$MEM" -gt 0 ]; then
    $BIN/fnc-train "${COMMON[@]}" --fn-strategy attraction --memory "$MEM" \
      --out "$W/$set-runs/memory" >/dev/null
    $BIN/fnc-eval linear --run "$W/$set-runs/memory" --json > "$W/$set-memory.json"
  fi
  $PY - "$W" "$set" "$MEM" <<'PY'
import json, os, sys
w, s, mem = sys.argv[1:]
def prec(run):
    m = [json.loads(l) for l in open(f"{w}/{s}-runs/{run}/metrics.jsonl")]
    t = [x for x in m[len(m) * 3 // 4:] if x.get("fn_precision") is not None]
    return f"{100*sum(x['fn_precision'] for x in t)/len(t):.1f} / {100*sum(x['fn_chance'] for x in t)/len(t):.1f}" if t else "-"
f = json.load(open(f"{w}/{s}-fnc.json")); n = json.load(open(f"{w}/{s}-simclr.json"))
print(f"| {s} | FNC (attraction) | {f['top1']:.2f} | {f['top5']:.2f} | {prec('attraction')} |")
if os.path.exists(f"{w}/{s}-memory.json") and int(mem) > 0:
    g = json.load(open(f"{w}/{s}-memory.json"))
    print(f"| {s} | FNC, memory {mem} x batch | {g['top1']:.2f} | {g['top5']:.2f} | {prec('memory')} |")
print(f"| {s} | SimCLR (none) | {n['top1']:.2f} | {n['top5']:.2f} | |")
print(f"| {s} | random init | {f['baseline']['top1']:.2f} | {f['baseline']['top5']:.2f} | |")
PY
done
