#!/usr/bin/env bash
# When does FNC help? A study grid (arms x seeds) on one shard set at a CPU
# budget, then `fnc-eval compare` of all runs (table, JSON and curves PNG).
# Resumable: a run whose last checkpoint is at the final step is not redone,
# an interrupted one continues (--resume); rerunning the script finishes the grid.
#
# Usage: scripts/study.sh SHARDS [WORK]
# Environment (defaults): SEEDS ("0 1 2"), STEPS (300), ARCH (small), SIZE (64:
# main view side), SUPPORT (2 support views), SUPPORT_SIZE (SIZE/2), BATCH (128),
# TEMP (0.2), DEVICE (auto), ARMS (all of them, see below), PRECISIONS (noisy
# oracle precisions, "0.25 0.5 0.75"), BIN (target/release).
#
# Arms: simclr (--fn-strategy none), fnc-attr, fnc-elim (support detection),
# oracle-attr, oracle-elim (F_i = the same-label candidates), oracle-attr-top10
# (the 10 same-label candidates the support set ranks highest: |F_i| as
# detection's), noisy-P (oracle attraction with precision P), fnc-regime
# (attraction at temperature 0.1, support views at the main size, threshold
# 0.8, twice the steps) and simclr-regime (the same without FNC).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARDS=${1:?usage: scripts/study.sh SHARDS [WORK]}
W=${2:-study}
BIN=${BIN:-target/release}
SEEDS=${SEEDS:-"0 1 2"}
STEPS=${STEPS:-300} ARCH=${ARCH:-small} SIZE=${SIZE:-64} SUPPORT=${SUPPORT:-2}
SUPPORT_SIZE=${SUPPORT_SIZE:-$((SIZE / 2))} BATCH=${BATCH:-128} TEMP=${TEMP:-0.2}
DEV=${DEVICE:-auto}
PRECISIONS=${PRECISIONS:-"0.25 0.5 0.75"}
ARMS=${ARMS:-"simclr fnc-attr fnc-elim oracle-attr oracle-attr-top10 oracle-elim $(for p in $PRECISIONS; do printf 'noisy-%s ' "$p"; done)fnc-regime simclr-regime"}
mkdir -p "$W/runs"

# The regime the loss analysis points to: temperature 0.1, support views at the
# main size, a stricter threshold, a longer schedule.
regime() {
  echo "--temperature 0.1 --support-size $SIZE --fn-threshold 0.8 --steps $((STEPS * 2))"
}

# The flags of an arm (after the common ones; a later flag overrides).
arm_flags() {
  case $1 in
    simclr) echo "--fn-strategy none" ;;
    fnc-attr) echo "--fn-strategy attraction" ;;
    fnc-elim) echo "--fn-strategy elimination" ;;
    oracle-attr) echo "--fn-strategy attraction --fn-detect oracle" ;;
    oracle-elim) echo "--fn-strategy elimination --fn-detect oracle" ;;
    oracle-attr-top10) echo "--fn-strategy attraction --fn-detect oracle --fn-oracle-filter --fn-threshold none" ;;
    noisy-*) echo "--fn-strategy attraction --fn-detect oracle --fn-oracle-precision ${1#noisy-}" ;;
    fnc-regime) echo "--fn-strategy attraction $(regime)" ;;
    simclr-regime) echo "--fn-strategy none $(regime)" ;;
    *) echo "unknown arm $1" >&2; exit 2 ;;
  esac
}

# The step a run ends at, and the step of its latest checkpoint (0 if none).
final_step() {
  case $1 in *-regime) echo $((STEPS * 2)) ;; *) echo "$STEPS" ;; esac
}
done_step() {
  local latest="$1/checkpoints/latest"
  if [ -f "$latest" ]; then sed 's/step-0*//' "$latest" | sed 's/^$/0/'; else echo 0; fi
}

runs=()
for arm in $ARMS; do
  for seed in $SEEDS; do
    out="$W/runs/$arm-s$seed"
    runs+=("$out")
    want=$(final_step "$arm")
    have=$(done_step "$out")
    if [ "$have" -ge "$want" ]; then
      echo "done    $out"
      continue
    fi
    # A run started before (even one killed before its first checkpoint)
    # is resumed: fnc-train refuses to start a new run over its files.
    resume=()
    [ -e "$out/config.toml" ] && resume=(--resume)
    echo "running $out ($(date +%H:%M:%S))"
    # shellcheck disable=SC2046
    "$BIN/fnc-train" --shards "$SHARDS" --arch "$ARCH" --image-size "$SIZE" \
      --support "$SUPPORT" --support-size "$SUPPORT_SIZE" --batch-size "$BATCH" \
      --steps "$STEPS" --optimizer adamw --lr 0.003 --lr-scaling none \
      --weight-decay 1e-4 --warmup-epochs 1 --temperature "$TEMP" \
      --knn-every $((STEPS / 3)) --checkpoint-every 50 --device "$DEV" \
      --seed "$seed" $(arm_flags "$arm") --out "$out" "${resume[@]}" >/dev/null
  done
done
"$BIN/fnc-eval" compare "${runs[@]}" --out "$W/compare.png" --device "$DEV" \
  --json-out "$W/compare.json" | tee "$W/compare.md"
