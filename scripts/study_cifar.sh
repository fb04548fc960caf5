#!/usr/bin/env bash
# Does FNC help, with the power to tell? The CIFAR-10 study (issue 20): 10,000
# test images, seeds paired, the reference's evaluation (no crop at 32 px, the
# probe's weight decay chosen on held-out train), FNC switched on half-way by
# branching from the SimCLR run. Resumable: rerun the same command to finish;
# a finished run is not redone, an interrupted one continues (--resume).
#
# Usage: scripts/study_cifar.sh calibrate|a|b|all [WORK]
#   calibrate  times a few steps of one arm and prints STEPS for ~20 min an arm
#   a          Phase A: simclr, oracle-attr, oracle-top5; seeds 0 1 (SEEDS_A)
#   b          Phase B: simclr (the same runs as Phase A's); fnc-attr and fnc-elim from half-way (branched);
#              fnc-attr from step 1; noisy oracles at detection's |F_i| (oracle
#              filter + top-k) at precisions PRECISIONS, from half-way
#              (branched); seeds 0 1 2 (SEEDS_B)
#   all        a then b
# Each phase ends with `fnc-eval compare --paired --baseline loss.strategy=none`
# (WORK/phase-X.md, .json, .png).
#
# Environment (defaults): SHARDS (WORK/shards, ingested from
# ../shared/datasets/cifar10-jpg.tar.gz when absent), STEPS (must be set for a
# and b: see calibrate), ARCH (resnet18), BATCH (256), SUPPORT (2), TEMP (0.2),
# TOPK (5), PRECISIONS ("0.5 0.8"), DEVICE (auto), BIN (target/release).
# Paths (WORK, SHARDS) must not contain spaces.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:?usage: scripts/study_cifar.sh calibrate|a|b|all [WORK]}
W=${2:-study-cifar}
BIN=${BIN:-target/release}
ARCH=${ARCH:-resnet18} BATCH=${BATCH:-256} SUPPORT=${SUPPORT:-2} TEMP=${TEMP:-0.2}
TOPK=${TOPK:-5} PRECISIONS=${PRECISIONS:-"0.5 0.8"} DEV=${DEVICE:-auto}
SEEDS_A=${SEEDS_A:-"0 1"} SEEDS_B=${SEEDS_B:-"0 1 2"}
SHARDS=${SHARDS:-$W/shards}
mkdir -p "$W/runs"

if [ ! -f "$SHARDS/manifest.json" ]; then
  SRC=../shared/datasets/cifar10-jpg.tar.gz
  [ -f "$SRC" ] || { echo "no $SHARDS and no $SRC to ingest" >&2; exit 2; }
  "$BIN/fnc-ingest" "$SRC" --out "$SHARDS"
fi

# Every view at 32 px: one BatchNorm pass, and the evaluation's resolution.
common() {
  echo "--shards $SHARDS --arch $ARCH --image-size 32 --support $SUPPORT --support-size 32" \
    "--batch-size $BATCH --optimizer adamw --lr 0.003 --lr-scaling none --weight-decay 1e-4" \
    "--warmup-epochs 1 --temperature $TEMP --fn-topk $TOPK --device $DEV"
}

# The step of a run's latest checkpoint (0 if none).
done_step() {
  local latest="$1/checkpoints/latest"
  if [ -f "$latest" ]; then sed 's/step-0*//; s/^$/0/' "$latest"; else echo 0; fi
}

# train OUT UNTIL FLAGS...: train OUT up to step UNTIL of a STEPS-step schedule
# (new, resumed, or already there).
train() {
  local out=$1 until=$2; shift 2
  if [ "$(done_step "$out")" -ge "$until" ]; then echo "done    $out (step $until)"; return; fi
  local more=()
  [ -e "$out/config.toml" ] && more+=(--resume)
  [ "$until" -lt "$STEPS" ] && more+=(--stop-at-step "$until")
  echo "running $out to step $until ($(date +%H:%M:%S))"
  # shellcheck disable=SC2046
  "$BIN/fnc-train" $(common) --steps "$STEPS" --checkpoint-every "$EVERY" \
    --knn-every "$EVERY" --out "$out" ${more[@]+"${more[@]}"} "$@" >/dev/null
}

# simclr SEED: the SimCLR arm of both phases (runs/simclr-sSEED). On its way
# it leaves a copy of its half-way state (runs/simclr-half-sSEED): the parent
# Phase B's branches start from, so their first half is this run's exactly.
simclr() {
  local s=$1 run=$W/runs/simclr-s$s snap=$W/runs/simclr-half-s$s half=$((STEPS / 2))
  if [ ! -e "$snap/config.toml" ]; then
    if [ "$(done_step "$run")" -le "$half" ]; then
      train "$run" "$half" --seed "$s" --fn-strategy none
      rm -rf "$snap.partial"
      cp -a "$run" "$snap.partial" && mv "$snap.partial" "$snap"
    else # the full run went past half-way before it was snapshot: redo that half
      train "$snap" "$half" --seed "$s" --fn-strategy none
    fi
  fi
  train "$run" "$STEPS" --seed "$s" --fn-strategy none
}

# branch OUT PARENT SEED FLAGS...: OUT starts from PARENT's half-way checkpoint
# with FNC on from the next step (recorded as --fn-start-step, so it groups apart).
branch() {
  local out=$1 parent=$2 seed=$3 half=$((STEPS / 2)); shift 3
  if [ -e "$out/config.toml" ]; then
    train "$out" "$STEPS" --seed "$seed" --fn-start-step $((half + 1)) "$@"
    return
  fi
  train "$parent" "$half" --seed "$seed" --fn-strategy none
  if [ "$(done_step "$parent")" -ne "$half" ]; then
    echo "$parent is past step $half: $out cannot branch from its half any more" >&2
    exit 2
  fi
  echo "branch  $out from $parent ($(date +%H:%M:%S))"
  # shellcheck disable=SC2046
  "$BIN/fnc-train" $(common) --steps "$STEPS" --checkpoint-every "$EVERY" \
    --knn-every "$EVERY" --out "$out" --init-from "$parent" --seed "$seed" \
    --fn-start-step $((half + 1)) "$@" >/dev/null
}

compare() { # phase runs...
  local phase=$1; shift
  "$BIN/fnc-eval" compare "$@" --paired --baseline loss.strategy=none --device "$DEV" \
    --out "$W/phase-$phase.png" --json-out "$W/phase-$phase.json" | tee "$W/phase-$phase.md"
}

need_steps() {
  [ -n "${STEPS:-}" ] || { echo "set STEPS (scripts/study_cifar.sh calibrate says how many)" >&2; exit 2; }
  [ "$STEPS" -ge 4 ] || { echo "STEPS=$STEPS: at least 4" >&2; exit 2; }
  EVERY=$((STEPS / 4))
}

phase_a() {
  need_steps
  local runs=()
  for s in $SEEDS_A; do
    simclr "$s"
    train "$W/runs/a-oracle-attr-s$s" "$STEPS" --seed "$s" --fn-strategy attraction --fn-detect oracle
    train "$W/runs/a-oracle-top$TOPK-s$s" "$STEPS" --seed "$s" --fn-strategy attraction \
      --fn-detect oracle --fn-oracle-filter --fn-threshold none
    runs+=("$W/runs/simclr-s$s" "$W/runs/a-oracle-attr-s$s" "$W/runs/a-oracle-top$TOPK-s$s")
  done
  compare a "${runs[@]}"
}

phase_b() {
  need_steps
  local runs=()
  for s in $SEEDS_B; do
    local simclr=$W/runs/simclr-s$s parent=$W/runs/simclr-half-s$s
    simclr "$s" # first: its half-way copy is the branches' parent
    branch "$W/runs/b-fnc-attr-half-s$s" "$parent" "$s" --fn-strategy attraction
    branch "$W/runs/b-fnc-elim-half-s$s" "$parent" "$s" --fn-strategy elimination
    runs+=("$simclr" "$W/runs/b-fnc-attr-half-s$s" "$W/runs/b-fnc-elim-half-s$s")
    # The break-even: oracle attraction at detection's |F_i| and precision P,
    # switched on where real FNC is (half-way).
    for p in $PRECISIONS; do
      branch "$W/runs/b-noisy-$p-half-s$s" "$parent" "$s" --fn-strategy attraction \
        --fn-detect oracle --fn-oracle-filter --fn-oracle-precision "$p"
      runs+=("$W/runs/b-noisy-$p-half-s$s")
    done
    train "$W/runs/b-fnc-attr-s$s" "$STEPS" --seed "$s" --fn-strategy attraction
    runs+=("$W/runs/b-fnc-attr-s$s")
  done
  compare b "${runs[@]}"
}

case $WHAT in
  calibrate)
    out=$W/calibrate
    rm -rf "$out"
    t0=$(date +%s.%N)
    # shellcheck disable=SC2046
    "$BIN/fnc-train" $(common) --steps 10 --fn-strategy attraction --out "$out" >/dev/null
    t1=$(date +%s.%N)
    per=$(echo "($t1 - $t0) / 10" | bc -l)
    printf "%.2f s a step (10 steps, start-up included): STEPS=%d for ~20 minutes an arm\n" \
      "$per" "$(echo "1200 / $per" | bc)"
    ;;
  a) phase_a ;;
  b) phase_b ;;
  all) phase_a; phase_b ;;
  *) echo "unknown: $WHAT (calibrate, a, b or all)" >&2; exit 2 ;;
esac
