"""The Python baseline of the ingest benchmark: what a PIL packing script does per
image (read, decode, optional resize, JPEG encode), on one core.

Usage: pil_ingest.py TREE --max-side N --quality Q [--keep] [--json]
--keep: only read the bytes and check the JPEG header (PIL's verify()), like
fnc-ingest's keep mode, which stores original bytes.
"""
import argparse
import io
import json
import os
import time

from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("tree")
ap.add_argument("--max-side", type=int, default=512)
ap.add_argument("--quality", type=int, default=90)
ap.add_argument("--keep", action="store_true")
args = ap.parse_args()

paths = []
for root, _, files in os.walk(args.tree):
    for f in files:
        if f.lower().endswith((".jpg", ".jpeg", ".png", ".webp")):
            paths.append(os.path.join(root, f))
paths.sort()

t0 = time.perf_counter()
nbytes = 0
for p in paths:
    with open(p, "rb") as fh:
        data = fh.read()
    if args.keep:
        im = Image.open(io.BytesIO(data))
        im.verify()
        nbytes += len(data)
        continue
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    side = max(w, h)
    if args.max_side and side > args.max_side:
        s = args.max_side / side
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=args.quality)
    nbytes += buf.tell()
dt = time.perf_counter() - t0
print(json.dumps({"images": len(paths), "seconds": dt, "images_per_s": len(paths) / dt, "bytes": nbytes}))
