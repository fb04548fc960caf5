"""Makes ImageNet-sized test photos (~500x375 JPEG) from a real photo set.

The shared photo sets are small (224 px); ImageNet's typical image is about
500x375 at ~110 kB. This script upsamples each photo (bicubic) to 500x375 and saves
it at JPEG quality 95, with a little added noise, in an ImageFolder tree, so benchmarks see real-photo content at
ImageNet-typical sizes. Usage: make_photos.py SRC_ILSVRC_TREE DST [--count N]
"""
import argparse
import os
import sys

import random

from PIL import Image, ImageChops

ap = argparse.ArgumentParser()
ap.add_argument("src")
ap.add_argument("dst")
ap.add_argument("--count", type=int, default=400)
ap.add_argument("--size", default="500x375")
args = ap.parse_args()
w, h = map(int, args.size.split("x"))
train = os.path.join(args.src, "train")
classes = sorted(os.listdir(train))
files = []
for c in classes:
    for f in sorted(os.listdir(os.path.join(train, c))):
        files.append((c, os.path.join(train, c, f)))
# Round-robin over classes so any prefix mixes classes.
files.sort(key=lambda cf: (sorted(os.listdir(os.path.join(train, cf[0]))).index(os.path.basename(cf[1])), cf[0]))
files = files[: args.count]
total = 0
for c, path in files:
    os.makedirs(os.path.join(args.dst, c), exist_ok=True)
    out = os.path.join(args.dst, c, os.path.basename(path))
    im = Image.open(path).convert("RGB").resize((w, h), Image.BICUBIC)
    # Upsampling leaves the picture smoother than a real 500x375 photo; a little
    # sensor-like noise brings the file size to ImageNet's typical ~110 kB.
    noise = Image.effect_noise((w, h), 10).convert("RGB")
    im = ImageChops.add(im, noise, scale=1.0, offset=-128)
    im.save(out, quality=95)
    total += os.path.getsize(out)
print(f"{len(files)} photos, mean {total / max(1, len(files)) / 1000:.0f} kB", file=sys.stderr)
