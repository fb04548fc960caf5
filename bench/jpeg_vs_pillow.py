"""Checks the engine's JPEG decode against Pillow's (libjpeg-turbo, default
settings) over a tree of images: baseline files should come out byte for byte
the same; files the fast decoder leaves to zune-jpeg (progressive, CMYK, ...)
differ by a few levels.

Usage (repository root, after `cargo build --release -p fnc-augment --example
decode_time`): .venv/bin/python bench/jpeg_vs_pillow.py TREE [--limit N]
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np
from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("tree")
ap.add_argument("--limit", type=int, default=0)
ap.add_argument("--tool", default="target/release/examples/decode_time")
args = ap.parse_args()
files = sorted(
    os.path.join(d, f)
    for d, _, fs in os.walk(args.tree)
    for f in fs
    if f.lower().endswith((".jpg", ".jpeg"))
)
if args.limit:
    files = files[: args.limit]
exact, differ = 0, []
for start in range(0, len(files), 200):
    chunk = files[start:start + 200]
    with tempfile.NamedTemporaryFile() as out:
        subprocess.run([args.tool, "dump", out.name, *chunk], check=True)
        raw = np.fromfile(out.name, dtype=np.uint8)
    off = 0
    for f in chunk:
        with Image.open(f) as im:
            a = np.asarray(im.convert("RGB"))
            kind = (im.mode, bool(im.info.get("progressive")))
        b = raw[off:off + a.size].reshape(a.shape)
        off += a.size
        d = np.abs(a.astype(int) - b.astype(int))
        if d.max() == 0:
            exact += 1
        else:
            differ.append((f, kind, int(d.max()), float(d.mean())))
print(f"{exact} of {len(files)} decode to Pillow's bytes")
for f, kind, mx, mean in differ:
    print(f"differs: {f} {kind} max {mx} mean {mean:.3f}")
