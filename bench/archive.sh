#!/usr/bin/env bash
# Archive ingest against extract-then-ingest, same files, same run: wall time and
# bytes written. Two sources from ../shared/datasets:
#  - imagenette2-mini packed as ImageNet's official archives (train tar of
#    per-class tars, flat val tar, devkit; bench/make_imagenet_archives.py);
#    the baseline extracts them as the usual recipe does (every class tar into
#    train/WNID/, val sorted into class folders as valprep.sh does);
#  - cifar10-jpg.tar.gz (60,000 small JPEGs), as shipped and gunzipped to .tar.
# Every pair must give the same dataset id and byte-identical shards.
# Prints a markdown table; `make bench-archive` runs it after building.
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/datasets
if [ ! -d "$D/imagenette2-mini" ] || [ ! -f "$D/cifar10-jpg.tar.gz" ]; then
  echo "SKIP: $D lacks imagenette2-mini or cifar10-jpg.tar.gz"; exit 0
fi
W=${BENCH_DIR:-/tmp/fnc-bench-archive}
rm -rf "$W" && mkdir -p "$W"
# scipy writes the devkit's meta.mat; in a venv of the bench's own.
if [ ! -x "$W/../fnc-bench-venv/bin/python" ]; then
  python3 -m venv "$W/../fnc-bench-venv"
  "$W/../fnc-bench-venv/bin/pip" install -q --disable-pip-version-check scipy numpy
fi
"$W/../fnc-bench-venv/bin/python" bench/make_imagenet_archives.py "$D/imagenette2-mini" "$W/imagenet"
B=$(pwd)/target/release/fnc-ingest
now() { date +%s.%N; }
bytes() { du -sb "$@" | awk '{s+=$1} END {print s}'; }
same() { # a b: same dataset id and shard bytes
  local ia ib
  ia=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['dataset_id'])" "$1/manifest.json")
  ib=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['dataset_id'])" "$2/manifest.json")
  [ "$ia" = "$ib" ] || { echo "FAIL: dataset ids differ: $1 $2" >&2; exit 1; }
  for f in "$1"/*.fncs; do cmp -s "$f" "$2/$(basename "$f")" || { echo "FAIL: $f differs" >&2; exit 1; }; done
  [ "$(ls "$1"/*.fncs | wc -l)" = "$(ls "$2"/*.fncs | wc -l)" ] || { echo "FAIL: shard counts differ" >&2; exit 1; }
}
row() { # case seconds-archive bytes-archive seconds-extract bytes-extract
  printf "| %s | %.2f | %s | %.2f | %s | %.2fx | %.1fx |\n" "$1" "$2" "$(numfmt --to=iec "$3")" "$4" "$(numfmt --to=iec "$5")" \
    "$(echo "$4 / $2" | bc -l)" "$(echo "$5 / $3" | bc -l)"
}
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; page cache warm (the archives were just written)"
echo
echo "| source | archive ingest s | bytes written | extract + ingest s | bytes written | time ratio | bytes ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|"

# ImageNet's official archives.
I=$W/imagenet
t0=$(now); $B "$I" --out "$W/a1" >/dev/null; t1=$(now)
x=$W/x1; mkdir -p "$x/train" "$x/val" "$x/tars"
t2=$(now)
tar xf "$I/ILSVRC2012_img_train.tar" -C "$x/tars"
for t in "$x"/tars/*.tar; do w=$(basename "$t" .tar); mkdir -p "$x/train/$w"; tar xf "$t" -C "$x/train/$w"; rm "$t"; done
tar xf "$I/ILSVRC2012_img_val.tar" -C "$x/val"
# valprep.sh's moves, in one process (not one mv each).
python3 -c "
import os, sys
v = sys.argv[1]
for line in open(sys.argv[2]):
    name, wnid = line.split()
    os.makedirs(os.path.join(v, wnid), exist_ok=True)
    os.rename(os.path.join(v, name), os.path.join(v, wnid, name))
" "$x/val" "$I/valprep.txt"
rmdir "$x/tars"
$B "$x" --out "$W/b1" >/dev/null; t3=$(now)
same "$W/a1" "$W/b1"
row "imagenette2-mini as ILSVRC2012 train/val/devkit archives ($(bytes "$I"/ILSVRC2012_img_*.tar) B)" \
  "$(echo "$t1 - $t0" | bc -l)" "$(bytes "$W/a1")" "$(echo "$t3 - $t2" | bc -l)" "$(( $(bytes "$x") + $(bytes "$W/b1") ))"

# CIFAR-10 as shipped (tar.gz), and as a plain tar.
C=$D/cifar10-jpg.tar.gz
t0=$(now); $B "$C" --out "$W/a2" >/dev/null; t1=$(now)
t2=$(now); mkdir -p "$W/x2"; tar xzf "$C" -C "$W/x2"; $B "$W/x2/cifar10-jpg" --out "$W/b2" >/dev/null; t3=$(now)
same "$W/a2" "$W/b2"
row "cifar10-jpg.tar.gz, 60,000 JPEGs (gzip, read as a stream)" \
  "$(echo "$t1 - $t0" | bc -l)" "$(bytes "$W/a2")" "$(echo "$t3 - $t2" | bc -l)" "$(( $(bytes "$W/x2") + $(bytes "$W/b2") ))"
gzip -dc "$C" > "$W/cifar10-jpg.tar"
t0=$(now); $B "$W/cifar10-jpg.tar" --out "$W/a3" >/dev/null; t1=$(now)
t2=$(now); mkdir -p "$W/x3"; tar xf "$W/cifar10-jpg.tar" -C "$W/x3"; $B "$W/x3/cifar10-jpg" --out "$W/b3" >/dev/null; t3=$(now)
same "$W/a3" "$W/b3"
same "$W/a2" "$W/a3"
row "cifar10-jpg.tar, the same gunzipped (read in place)" \
  "$(echo "$t1 - $t0" | bc -l)" "$(bytes "$W/a3")" "$(echo "$t3 - $t2" | bc -l)" "$(( $(bytes "$W/x3") + $(bytes "$W/b3") ))"
echo
echo "All pairs: the same dataset id and byte-identical shards."
