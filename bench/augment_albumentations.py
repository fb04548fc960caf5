"""Anchor of the augmentation benchmark: albumentations + simplejpeg (OpenCV
kernels), the fastest Python pipeline we know of for the SimCLR recipe.

Each image is decoded once by simplejpeg (to RGB), then the recipe runs once per
view: RandomResizedCrop(224, scale 0.08-1, ratio 3/4-4/3, bilinear),
HorizontalFlip, ColorJitter(0.8, 0.8, 0.8, 0.2, p 0.8), ToGray(p 0.2),
GaussianBlur(kernel 23, sigma 0.1-2.0, p 0.5). One thread (OpenCV's own pool
off). --op times one op alone (after the crop, which every view needs), so the
table can show where the time goes.

Usage: augment_albumentations.py TREE [--views 10] [--size 224] [--seconds 10]
       [--op all|decode|crop|flip|jitter|grey|blur]
Prints JSON with images_per_s and views_per_s (the bench/augment.sh format).
"""
import json
import random
import time

import cv2
import numpy as np

cv2.setNumThreads(1)
cv2.ocl.setUseOpenCL(False)

import albumentations as A  # noqa: E402  (after OpenCV's thread setting)
import simplejpeg  # noqa: E402
from anchor_common import parse_args, read_jpegs  # noqa: E402

args = parse_args()
random.seed(0)
np.random.seed(0)

s = args.size
crop = A.RandomResizedCrop(size=(s, s), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                           interpolation=cv2.INTER_LINEAR, p=1.0)
ops = {
    "flip": A.HorizontalFlip(p=0.5),
    "jitter": A.ColorJitter(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, p=0.8),
    "grey": A.ToGray(p=0.2),
    "blur": A.GaussianBlur(blur_limit=(23, 23), sigma_limit=(0.1, 2.0), p=0.5),
}
if args.op == "all":
    chain = [crop, *ops.values()]
elif args.op == "decode":
    chain = []
elif args.op == "crop":
    chain = [crop]
else:
    chain = [crop, ops[args.op]]
pipeline = A.Compose(chain, seed=0)

blobs = read_jpegs(args.tree)

t0 = time.perf_counter()
images = 0
while time.perf_counter() - t0 < args.seconds:
    img = simplejpeg.decode_jpeg(blobs[images % len(blobs)], colorspace="RGB")
    if chain:
        for _ in range(args.views):
            out = pipeline(image=img)["image"]
            np.ascontiguousarray(out)  # the uint8 HWC view, as the engine delivers
    images += 1
dt = time.perf_counter() - t0
views = images * (args.views if chain else 1)
print(json.dumps({"pipeline": "albumentations", "op": args.op, "images_per_s": images / dt,
                  "views_per_s": views / dt, "views": args.views, "size": s}))
