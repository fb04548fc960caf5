#!/usr/bin/env bash
# Memory against compute: peak RSS and step time of `fnc-train bench` (random
# views, no data loading; ResNet-18 at 64 px, 2 + 8 views, fp32, CPU) plain,
# with --recompute, with --micro-batch and with both, in one run; and what
# `fnc-train plan` estimates for each. Activation memory is the peak RSS above
# the same command at batch 8.
# Usage: bench/memory.sh [batch] [micro-batch] [rounds]
# Environment: BIN (default target/release), ARCH (default resnet18), SIZE (64).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-256} M=${2:-64} R=${3:-1}
BIN=${BIN:-target/release}
ARCH=${ARCH:-resnet18} SIZE=${SIZE:-64}
common=(--arch "$ARCH" --image-size "$SIZE" --support 8 --device cpu --precision fp32
  --loss-block 0)
# Peak RSS (bytes) and the step time of one bench run.
measure() {
  local out
  out=$(mktemp)
  /usr/bin/time -f "%M" -o "$out.rss" "$BIN/fnc-train" bench "${common[@]}" "$@" \
    --warmup 1 --timed 2 >"$out"
  python3 -c "import json,sys; print(int(open(sys.argv[2]).read().split()[-1]) * 1024, \
json.load(open(sys.argv[1]))['step_s'])" "$out" "$out.rss"
  rm -f "$out" "$out.rss"
}
# The plan's total for a setting (bytes), less the engine's batches, which
# the bench does not start.
planned() {
  "$BIN/fnc-train" plan "${common[@]}" --batch-size "$1" --json | python3 -c "
import json, sys
p = json.load(sys.stdin)
want = sys.argv[1:]
for e in p['estimates']:
    s = e['setting']
    if [str(s['recompute']).lower(), str(s['micro_batch'])] == want:
        b = $1 * (2 * $SIZE**2 + 8 * $SIZE**2) * 3
        print(e['total'] - 6 * b)
" "$2" "$3"
}
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%F)"
echo
for r in $(seq "$R"); do
  read -r base _ <<<"$(measure --batch-size "${BASE:-8}")"
  echo "round $r: batch ${BASE:-8} peak RSS $((base / 1000000)) MB"
  echo
  echo "| batch $B | peak RSS (MB) | activations (MB) | vs plain | step (s) | vs plain | plan (MB) | plan / measured |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  plain_act=0 plain_s=0
  for setting in "plain::false 0" "--recompute:--recompute:true 0" \
      "--micro-batch $M:--micro-batch $M:false $M" \
      "--recompute --micro-batch $M:--recompute --micro-batch $M:true $M"; do
    IFS=: read -r name flags key <<<"$setting"
    # shellcheck disable=SC2086
    read -r rss secs <<<"$(measure --batch-size "$B" $flags)"
    act=$((rss - base))
    # shellcheck disable=SC2086
    est=$(planned "$B" $key)
    # The plan tries chunks of B/2, B/4, ...: another M has no row there.
    est=${est:-0}
    if [ "$name" = plain ]; then plain_act=$act plain_s=$secs; fi
    python3 -c "
import sys
n, rss, act, s, pa, ps, est = sys.argv[1], *map(float, sys.argv[2:])
plan = f'{est/1e6:.0f} | {est/rss:.2f}' if est > 0 else '- | -'
print(f'| {n} | {rss/1e6:.0f} | {act/1e6:.0f} | {act/pa:.2f}x | {s:.2f} | {s/ps:.2f}x | {plan} |')
" "$name" "$rss" "$act" "$secs" "$plain_act" "$plain_s" "$est"
  done
  echo
done
