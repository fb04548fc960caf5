#!/usr/bin/env bash
# The main job on the embedded default dataset (what `make demo` runs after
# building): synth -> ingest -> inspect/verify -> augmentation preview ->
# pretrain a small encoder twice under the same budget (FNC, SimCLR) -> linear
# evaluation of both and of a random-init baseline -> a table and report PNGs.
# Environment: DEMO (output dir, default demo), DEMO_STEPS (default 450),
# DEMO_DEVICE (default auto).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
D=${DEMO:-demo}
STEPS=${DEMO_STEPS:-450}
DEV=${DEMO_DEVICE:-auto}
PY=.venv/bin/python
# Each demo starts afresh: fnc-train refuses to start a run over another's
# files, so the previous demo's runs and shards go first.
if [ -e "$D" ]; then
  echo "demo: removing the previous demo in $D/ (its shards, runs and reports) to start afresh"
fi
rm -rf "$D" && mkdir -p "$D"
$BIN/fnc-ingest synth "$D/synth"
$BIN/fnc-ingest "$D/synth" --out "$D/out"
$BIN/fnc-ingest inspect "$D/out" > "$D/inspect.txt"
head -3 "$D/inspect.txt"
$BIN/fnc-ingest verify "$D/out"
$BIN/fnc-augment preview --shards "$D/out" --out "$D/preview.png" --images 4 --support 2 --size 64 --support-size 32
# Same budget for both: the same steps, views, model, optimiser and seed.
# (configs/cpu-small.toml: the small CNN, 64 px + 2 x 32 px views, batch 128, AdamW.)
COMMON=(--config configs/cpu-small.toml --shards "$D/out" --steps "$STEPS" --knn-every 150
        --checkpoint-every 150 --device "$DEV")
$BIN/fnc-train "${COMMON[@]}" --fn-strategy attraction --out "$D/runs/fnc"
$BIN/fnc-train "${COMMON[@]}" --fn-strategy none --out "$D/runs/simclr"
$BIN/fnc-eval linear --run "$D/runs/fnc" --baseline --json > "$D/linear-fnc.json"
$BIN/fnc-eval linear --run "$D/runs/simclr" --json > "$D/linear-simclr.json"
$BIN/fnc-eval report --run "$D/runs/fnc" --out "$D/report-fnc.png"
$BIN/fnc-eval report --run "$D/runs/simclr" --out "$D/report-simclr.png"
$PY - "$D" <<'PY'
import json, sys
d = sys.argv[1]
fnc = json.load(open(f"{d}/linear-fnc.json"))
sim = json.load(open(f"{d}/linear-simclr.json"))
m = [json.loads(l) for l in open(f"{d}/runs/fnc/metrics.jsonl")]
tail = m[len(m) * 3 // 4:]
prec = [x["fn_precision"] for x in tail if x.get("fn_precision") is not None]
chance = [x["fn_chance"] for x in tail if x.get("fn_chance") is not None]
knn = {r: [x["knn_top1"] for x in json.loads("[" + ",".join(open(f"{d}/runs/{r}/metrics.jsonl")) + "]") if "knn_top1" in x] for r in ("fnc", "simclr")}
print()
print(f"{'encoder':<32} {'linear top-1 %':>15} {'top-5 %':>8} {'final k-NN %':>13}")
print(f"{'FNC (attraction)':<32} {fnc['top1']:>15.2f} {fnc['top5']:>8.2f} {knn['fnc'][-1]:>13.2f}")
print(f"{'SimCLR (--fn-strategy none)':<32} {sim['top1']:>15.2f} {sim['top5']:>8.2f} {knn['simclr'][-1]:>13.2f}")
print(f"{'random init (baseline)':<32} {fnc['baseline']['top1']:>15.2f} {fnc['baseline']['top5']:>8.2f} {'':>13}")
if prec:
    print(f"\nFNC run, last quarter of training: FN precision {100*sum(prec)/len(prec):.1f}% "
          f"vs chance {100*sum(chance)/len(chance):.1f}%, mean |F_i| {sum(x['mean_fn'] for x in tail)/len(tail):.2f}")
print(f"\nReports: {d}/report-fnc.png, {d}/report-simclr.png; augmentations: {d}/preview.png")
PY
