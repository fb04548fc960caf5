#!/usr/bin/env bash
# The GPU check: what the CPU-only development machines cannot run. For a
# machine with an NVIDIA GPU and PyTorch 2.11 (CUDA) but no Rust:
#
#   here:   scripts/gpu-check.sh --prepare     # release build, stripped into gpu-bin/ (29 MB)
#   there:  scripts/gpu-check.sh               # from a copy holding gpu-bin/; < 10 min
#
# With the device tool: run(command="scripts/gpu-check.sh", carry=["gpu-bin"]); the
# logs come back under $OUT. On a machine without CUDA every check fails fast
# (tried: 18 s), which is how the script itself was checked.
#
# It checks, writing logs and a summary to $OUT (default gpu-check-out/):
#   1. the FNC loss (detection on) computed on CUDA equals the CPU loss;
#   2. fp32 and bf16 training steps of ResNet-50 run (fnc-train bench);
#   3. bench/train.sh cuda: step time against PyTorch eager on the same GPU;
#   4. data-parallel training over NCCL with world size 1 (same first loss as
#      the plain run) and, with 2+ GPUs, --nproc-per-node 2;
#   5. the data wait of a short ResNet-50 run fed by the real engine;
#   6. peak GPU memory (nvidia-smi, sampled) of a ResNet-50 step at 64 images x
#      10 views, plain and --recompute, against `fnc-train plan`; then a few
#      steps of the paper preset at the largest batch the plan fits exactly on
#      this GPU;
#   7. the step without host stalls: host synchronisations per step (one
#      process: 1), two ranks on one GPU (Gloo) equal to one process, libtorch's
#      fused synchronised BatchNorm equal to the composite one
#      (FNC_SYNC_BN_COMPOSITE=1), bf16 + sync BN within bf16 of fp32, --memory
#      resumed equal to uninterrupted, --recompute equal to the plain step; with
#      2+ GPUs, NCCL 2 ranks equal to one process and a killed rank named.
# It ends with one table (also in $OUT/table.md) and aims at under 5 minutes.
# Environment: PYTHON (default python3, with torch), BIN (default gpu-bin).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --prepare ]; then
  set -e
  make build >/dev/null
  rm -rf gpu-bin && mkdir gpu-bin
  for b in fnc-ingest fnc-augment fnc-train fnc-eval; do
    strip -o "gpu-bin/$b" "target/release/$b"
  done
  du -sh gpu-bin
  exit 0
fi
PY=${PYTHON:-python3}
BIN=${BIN:-gpu-bin}
OUT=${OUT:-${OUT_DIR:-gpu-check-out}}
mkdir -p "$OUT"
TORCH_LIB=$($PY -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
S="$OUT/summary.txt"
: >"$S"
note() { echo "$*" | tee -a "$S"; }
fail=0
T="$OUT/table.md"
printf '| check | result |\n|---|---|\n' >"$T"
check() {
  if [ "$1" = 0 ]; then note "PASS $2"; else note "FAIL $2 (see $OUT)"; fail=1; fi
  echo "| $2 | $([ "$1" = 0 ] && echo PASS || echo FAIL) |" >>"$T"
}
note "gpu-check $(date -u +%FT%TZ) on $(hostname)"
nvidia-smi -L 2>/dev/null | tee -a "$S"
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())' | tee -a "$S"
NGPU=$($PY -c 'import torch; print(torch.cuda.device_count())')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. The loss on CUDA against the CPU, in float64, detection and attraction on.
$PY - "$tmp" <<'PYEOF'
import sys, numpy as np
rng = np.random.default_rng(0)
b, v = 64, 10
np.save(sys.argv[1] + "/z.npy", rng.standard_normal((v * b, 128)))
np.save(sys.argv[1] + "/l.npy", rng.integers(0, 8, b))
PYEOF
for d in cpu cuda; do
  $BIN/fnc-train loss --embeddings "$tmp/z.npy" --labels "$tmp/l.npy" --views 10 \
    --fn-strategy attraction --fn-topk 10 --fn-threshold 0.1 --device $d >"$OUT/loss-$d.json" 2>"$OUT/loss-$d.err"
done
$PY - "$OUT" <<'PYEOF' >>"$S" 2>&1
import json, sys
c, g = (json.load(open(f"{sys.argv[1]}/loss-{d}.json")) for d in ("cpu", "cuda"))
d = abs(c["loss"] - g["loss"])
print(f"loss cpu {c['loss']:.12f} cuda {g['loss']:.12f} |diff| {d:.2e}; mean |F_i| {c['mean_fn']} / {g['mean_fn']}")
sys.exit(0 if d < 1e-9 and c["mean_fn"] == g["mean_fn"] else 1)
PYEOF
check $? "1. loss on CUDA = loss on the CPU"

# 2. fp32 and bf16 steps.
for p in fp32 bf16; do
  timeout 120 $BIN/fnc-train bench --arch resnet50 --batch-size 32 --support 8 --device cuda \
    --precision $p --warmup 2 --timed 5 >"$OUT/bench-$p.json" 2>"$OUT/bench-$p.err"
  r=$?; note "   $p: $(cat "$OUT/bench-$p.json" 2>/dev/null)"
  check $r "2. ResNet-50 $p step"
done

# 3. Step time against PyTorch eager.
PYTHON=$PY BIN=$BIN ARCHS=resnet50 WAIT_STEPS=10 timeout 120 bash bench/train.sh cuda 32 5 2 >"$OUT/train-bench.md" 2>"$OUT/train-bench.err"
r=$?; cat "$OUT/train-bench.md" >>"$S"
check $r "3. bench/train.sh cuda"

# 4 and 5 train on generated data.
$BIN/fnc-ingest synth --classes 10 --per-class 160 --size 256 "$tmp/synth" >/dev/null
$BIN/fnc-ingest "$tmp/synth" --out "$tmp/out" >/dev/null
common="--shards $tmp/out --arch resnet18 --batch-size 64 --steps 8 --device cuda --warmup-epochs 0 --seed 1 --json"
timeout 120 $BIN/fnc-train $common --out "$tmp/plain" >"$OUT/plain.json" 2>"$OUT/plain.err"
WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29561 timeout 120 \
  $BIN/fnc-train $common --dist-backend nccl --out "$tmp/nccl1" >"$OUT/nccl1.json" 2>"$OUT/nccl1.err"
r=$?
$PY - "$tmp" <<'PYEOF' >>"$S" 2>&1 || r=1
import json, sys
a, b = ([json.loads(l) for l in open(f"{sys.argv[1]}/{d}/metrics.jsonl")] for d in ("plain", "nccl1"))
print(f"   first loss plain {a[0]['loss']:.6f} nccl world 1 {b[0]['loss']:.6f}; comm share {b[-1].get('comm')}")
sys.exit(0 if abs(a[0]["loss"] - b[0]["loss"]) < 1e-3 * abs(a[0]["loss"]) else 1)
PYEOF
check $r "4. NCCL, world size 1"
if [ "$NGPU" -ge 2 ]; then
  timeout 180 $BIN/fnc-train $common --nproc-per-node 2 --out "$tmp/nccl2" >"$OUT/nccl2.json" 2>"$OUT/nccl2.err"
  r=$?; note "   $(cat "$OUT/nccl2.json" 2>/dev/null | tr -d '\n')"
  check $r "4. NCCL, --nproc-per-node 2"
else
  note "SKIP 4. NCCL with 2 ranks: fewer than 2 GPUs"
fi

# 5. Data wait of ResNet-50 fed by the engine (2 + 8 views at 224).
timeout 120 $BIN/fnc-train --shards "$tmp/out" --out "$tmp/r50" --arch resnet50 --batch-size 64 \
  --steps 15 --device cuda --warmup-epochs 0 --json >"$OUT/r50.json" 2>"$OUT/r50.err"
r=$?
$PY - "$tmp" <<'PYEOF' >>"$S" 2>&1 || r=1
import json, sys
m = [json.loads(l) for l in open(f"{sys.argv[1]}/r50/metrics.jsonl")][3:]
w = sum(x["data_wait"] for x in m) / len(m)
ips = sum(x["images_per_s"] for x in m) / len(m)
print(f"   ResNet-50, batch 64 x 10 views: {ips:.1f} images/s, data wait {100 * w:.1f}% (steps 4-15)")
PYEOF
check $r "5. ResNet-50 data wait"
# 6. Peak memory: measured (nvidia-smi every 100 ms, the context included)
# against the plan's total for the same setting.
peak() {  # "peak-MiB-used exit-code" of `"${@:3}" >$1 2>$2`
  local out=$1 err=$2; shift 2
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 100 >"$tmp/smi" &
  local smi=$!
  "$@" >"$out" 2>"$err"; local r=$?
  kill $smi 2>/dev/null; wait $smi 2>/dev/null
  echo "$(sort -n "$tmp/smi" | tail -1) $r"
}
planned() {  # the plan's total (MB) for flags "$@" on this GPU; $KEY picks the setting
  $BIN/fnc-train plan "$@" --nproc 1 --device-memory "${MEM}M" --json 2>>"$OUT/plan.err" | $PY -c "
import json, sys
p = json.load(sys.stdin)
want = sys.argv[1]
for e in p['estimates']:
    s = e['setting']
    if f\"{str(s['recompute']).lower()} {s['micro_batch']}\" == want:
        print(round(e['total'] / 1e6))
" "$KEY"
}
MEM=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i 0 2>/dev/null | head -1)
MEM=$(( ${MEM:-0} * 1048576 / 1000000 ))
r6=0
for mode in plain recompute; do
  flags="--arch resnet50 --batch-size 64 --support 8 --device cuda"
  extra=""; KEY="false 0"
  if [ $mode = recompute ]; then extra="--recompute"; KEY="true 0"; fi
  read -r used r <<<"$(peak "$OUT/mem-$mode.json" "$OUT/mem-$mode.err" \
    timeout 180 $BIN/fnc-train bench $flags $extra --warmup 1 --timed 3)"
  est=$(KEY="$KEY" planned $flags $extra)
  note "   ResNet-50 64 x 10 views $mode: peak ${used} MiB used ($(( ${used:-0} * 1048576 / 1000000 )) MB), plan ${est:-?} MB; $(cat "$OUT/mem-$mode.json" 2>/dev/null)"
  [ "$r" = 0 ] || r6=1
done
# The paper preset: the largest global batch (one GPU) whose plan fits without
# micro-batches, run for a few steps with the plan's flags.
best=""
for b in 4096 2048 1024 512 256 128 64; do
  use=$($BIN/fnc-train plan --config configs/fnc-paper.toml --batch-size $b --nproc 1 \
    --device-memory "${MEM}M" --json 2>>"$OUT/plan.err" | $PY -c "
import json, sys
p = json.load(sys.stdin)
ok = [e for e in p['estimates'] if e['fits'] and e['exact']]
if ok:
    e = min(ok, key=lambda e: e['extra_compute'])
    s = e['setting']
    print(('--recompute ' if s['recompute'] else '') + f\"--loss-block {s['loss_block']} {round(e['total'] / 1e6)}\")
")
  if [ -n "$use" ]; then best="$b $use"; break; fi
done
if [ -n "$best" ]; then
  read -r b f1 f2 f3 f4 <<<"$best"
  if [ "$f1" = --recompute ]; then flags="$f1 $f2 $f3"; est=$f4; else flags="$f1 $f2"; est=$f3; fi
  read -r used r <<<"$(peak "$OUT/paper.json" "$OUT/paper.err" timeout 300 $BIN/fnc-train bench \
    --config configs/fnc-paper.toml --batch-size "$b" --device cuda $flags --warmup 1 --timed 2)"
  note "   paper preset, batch $b on one GPU ($flags): peak ${used} MiB used, plan ${est} MB; $(cat "$OUT/paper.json" 2>/dev/null)"
  [ "$r" = 0 ] || r6=1
else
  note "   the plan fits no batch of the paper preset exactly on this GPU"; r6=1
fi
check $r6 "6. peak memory against the plan; the paper preset at the batch that fits"

# 7. The step without host stalls (issue 18), on generated data, ResNet-18.
seven="--shards $tmp/out --arch resnet18 --batch-size 32 --device cuda --warmup-epochs 0 --seed 2 --json"
run7() {  # name, then flags: a run into $tmp/7-name, its log in $OUT/7-name.*
  local name=$1; shift
  timeout 90 $BIN/fnc-train $seven --out "$tmp/7-$name" "$@" >"$OUT/7-$name.json" 2>"$OUT/7-$name.err"
}
gloo2="--nproc-per-node 2 --dist-backend gloo"
run7 one --precision fp32 --steps 3; r1=$?
run7 two --precision fp32 $gloo2 --master-port 29571 --steps 3; r2=$?
FNC_SYNC_BN_COMPOSITE=1 run7 composite --precision fp32 $gloo2 --master-port 29572 --steps 3; r3=$?
run7 bf16 --precision bf16 $gloo2 --master-port 29573 --steps 2; r4=$?
# bf16 replays of synchronised BatchNorm (no running statistics) on CUDA's kernels
run7 bf16rc --precision bf16 $gloo2 --master-port 29577 --recompute --steps 2; r5=$?
run7 mem --precision fp32 --memory 16 --steps 40 --checkpoint-every 5; r6=$?
# Killed once 12 steps are logged, then resumed: the first step after the
# checkpoint it resumes from equals the uninterrupted run's.
# (started directly, not through run7 or timeout, so that $! is fnc-train)
$BIN/fnc-train $seven --out "$tmp/7-memcut" --precision fp32 --memory 16 --steps 40 \
  --checkpoint-every 5 >"$OUT/7-memcut-killed.json" 2>"$OUT/7-memcut-killed.err" &
victim=$!
for _ in $(seq 600); do
  [ "$(cat "$tmp/7-memcut/metrics.jsonl" 2>/dev/null | wc -l)" -ge 12 ] && break
  kill -0 $victim 2>/dev/null || break; sleep 0.1
done
kill -9 $victim 2>/dev/null; wait $victim 2>/dev/null
run7 memcut --precision fp32 --memory 16 --steps 40 --checkpoint-every 5 --resume; r7=$?
grep -o 'resuming from the checkpoint of step [0-9]*' "$OUT/7-memcut.err" | grep -o '[0-9]*$' >"$tmp/resumed"
run7 recompute --precision fp32 --recompute --steps 3; r8=$?
$PY - "$tmp" "$r1$r2$r3$r4$r5$r6$r7$r8" <<'PYEOF' >>"$S" 2>&1
import json, sys
t, codes = sys.argv[1], sys.argv[2]
def m(name):
    return [json.loads(l) for l in open(f"{t}/7-{name}/metrics.jsonl")]
def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)
ok = codes == "0" * 8
rows = []
def row(what, good, text):
    global ok
    ok &= bool(good)
    print(f"   7. {what}: {'ok' if good else 'NOT OK'} ({text})")
try:
    one, two = m("one"), m("two")
    syncs = [x["host_syncs"] for x in one]
    row("host syncs a step, one process", max(syncs) <= 1, f"{syncs}; 2 ranks on Gloo {[x['host_syncs'] for x in two]}")
    row("2 ranks (Gloo, one GPU) = one process, first loss", rel(two[0]["loss"], one[0]["loss"]) < 1e-3,
        f"{one[0]['loss']:.6f} / {two[0]['loss']:.6f}")
    comp = m("composite")
    row("fused sync BN = composite", all(rel(a["loss"], b["loss"]) < 1e-3 for a, b in zip(two, comp)),
        f"{[round(x['loss'], 6) for x in two]} / {[round(x['loss'], 6) for x in comp]}")
    b16, f32 = m("bf16"), two
    row("bf16 + sync BN within bf16 of fp32", rel(b16[0]["loss"], f32[0]["loss"]) < 2e-2,
        f"{b16[0]['loss']:.5f} / {f32[0]['loss']:.5f}")
    rc16 = m("bf16rc")
    row("bf16 sync BN with --recompute = without", rel(rc16[0]["loss"], b16[0]["loss"]) < 1e-4
        and rel(rc16[1]["loss"], b16[1]["loss"]) < 1e-2,
        f"{[round(x['loss'], 5) for x in b16]} / {[round(x['loss'], 5) for x in rc16]}")
    mem, cut = m("mem"), m("memcut")
    at = int(open(f"{t}/resumed").read().split()[0])
    # (to 1e-5, not bit for bit: cuDNN's autotuner may pick other algorithms
    # in the resumed process)
    row("--memory killed and resumed = uninterrupted", len(cut) == 40 and rel(cut[at]["loss"], mem[at]["loss"]) < 1e-5,
        f"resumed from step {at}; step {at + 1} loss {cut[at]['loss']:.7f} / {mem[at]['loss']:.7f}")
    rc = m("recompute")
    one3 = one[:3]
    row("--recompute = plain", all(rel(a["loss"], b["loss"]) < 1e-3 for a, b in zip(one3, rc)),
        f"{[round(x['loss'], 6) for x in one3]} / {[round(x['loss'], 6) for x in rc]}")
except Exception as e:
    print(f"   7. could not compare: {e!r}")
    ok = False
sys.exit(0 if ok else 1)
PYEOF
check $? "7. host syncs; Gloo ranks on one GPU; fused = composite sync BN; bf16; resume; recompute"
if [ "$NGPU" -ge 2 ]; then
  run7 nccl2 --precision fp32 --nproc-per-node 2 --master-port 29575 --steps 3; r=$?
  $PY - "$tmp" "$r" <<'PYEOF' >>"$S" 2>&1
import json, sys
t = sys.argv[1]
a, b = ([json.loads(l) for l in open(f"{t}/7-{d}/metrics.jsonl")] for d in ("one", "nccl2"))
d = abs(a[0]["loss"] - b[0]["loss"]) / abs(a[0]["loss"])
print(f"   NCCL 2 ranks first loss {b[0]['loss']:.6f} vs one process {a[0]['loss']:.6f}; host syncs {[x['host_syncs'] for x in b]}")
sys.exit(0 if sys.argv[2] == "0" and d < 1e-3 else 1)
PYEOF
  check $? "7. NCCL 2 ranks = one process"
  # A rank killed mid-run: the other names it.
  # (rank 1 started directly, so that $! is fnc-train itself)
  WORLD_SIZE=2 RANK=1 LOCAL_RANK=1 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29576 \
    $BIN/fnc-train $seven --out "$tmp/7-kill" --steps 2000 >"$OUT/7-kill-1.json" 2>"$OUT/7-kill-1.err" &
  victim=$!
  WORLD_SIZE=2 RANK=0 LOCAL_RANK=0 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29576 \
    timeout 90 $BIN/fnc-train $seven --out "$tmp/7-kill" --steps 2000 >"$OUT/7-kill-0.json" 2>"$OUT/7-kill-0.err" &
  r0=$!
  for _ in $(seq 60); do
    [ -s "$tmp/7-kill/metrics.jsonl" ] && break; kill -0 $victim 2>/dev/null || break; sleep 1
  done
  kill -9 $victim 2>/dev/null; wait $victim 2>/dev/null
  wait $r0
  grep -q "rank 1" "$OUT/7-kill-0.err"
  check $? "7. NCCL: a killed rank is named ($(grep -o 'rank 1[^;]*' "$OUT/7-kill-0.err" | head -1))"
else
  note "SKIP 7. NCCL with 2 ranks: fewer than 2 GPUs"
fi
note ""
cat "$T" | tee -a "$S"
note "done: $([ $fail = 0 ] && echo all checks passed || echo some checks FAILED)"
exit $fail
