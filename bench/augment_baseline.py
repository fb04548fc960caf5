"""Python baseline of the augmentation benchmark (SPEC §3): PIL decode + torchvision
v1 transforms, the SimCLR v2 recipe, V views per source image, one thread.

Usage: augment_baseline.py TREE [--blur torchvision|pil] [--views 10]
       [--size 224] [--support-size 224] [--seconds 20] [--randaugment]
Prints JSON with images_per_s and views_per_s. --blur pil swaps torchvision's
GaussianBlur for PIL's ImageFilter.GaussianBlur (the fastest common variant).
--randaugment adds torchvision's RandAugment (2 ops, magnitude 21 of its 31 bins:
the reference's 7 of 10) after the colour jitter and moves greyscale after it,
as the reference's RandAugment recipe does.
"""
import argparse
import io
import json
import os
import random
import time

import numpy as np
import torch
from PIL import Image, ImageFilter
import torchvision.transforms as T

ap = argparse.ArgumentParser()
ap.add_argument("tree")
ap.add_argument("--blur", choices=["torchvision", "pil"], default="torchvision")
ap.add_argument("--views", type=int, default=10)
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--support-size", type=int, default=224)
ap.add_argument("--seconds", type=float, default=20.0)
ap.add_argument("--randaugment", action="store_true")
args = ap.parse_args()
torch.set_num_threads(1)
random.seed(0)
torch.manual_seed(0)


class PILBlur:
    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, img):
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


def recipe(size):
    blur = T.GaussianBlur(kernel_size=int(0.1 * size) | 1, sigma=(0.1, 2.0)) if args.blur == "torchvision" else PILBlur()
    ra = [T.RandAugment(num_ops=2, magnitude=21)] if args.randaugment else []
    return T.Compose([
        T.RandomResizedCrop(size),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        *ra,
        T.RandomGrayscale(p=0.2),
        T.RandomApply([blur], p=0.5),
    ])


main, support = recipe(args.size), recipe(args.support_size)
paths = sorted(os.path.join(r, f) for r, _, fs in os.walk(args.tree) for f in fs
               if f.lower().endswith((".jpg", ".jpeg", ".png")))
blobs = [open(p, "rb").read() for p in paths]

t0 = time.perf_counter()
images = 0
while time.perf_counter() - t0 < args.seconds:
    img = Image.open(io.BytesIO(blobs[images % len(blobs)])).convert("RGB")
    for v in range(args.views):
        out = (main if v < 2 else support)(img)
        np.asarray(out)  # the uint8 HWC view, as the engine delivers
    images += 1
dt = time.perf_counter() - t0
print(json.dumps({"blur": args.blur, "randaugment": args.randaugment, "images_per_s": images / dt, "views_per_s": images * args.views / dt,
                  "views": args.views, "size": args.size, "support_size": args.support_size}))
