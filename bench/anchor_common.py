"""What the Python anchors of bench/augment.sh share: their command line and the
photos they read (stdlib only: each anchor runs in a venv of its own)."""
import argparse
import os

OPS = ["all", "decode", "crop", "flip", "jitter", "grey", "blur"]


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("tree")
    ap.add_argument("--views", type=int, default=10)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--op", default="all", choices=OPS)
    return ap.parse_args()


def read_jpegs(tree):
    """The bytes of every JPEG under `tree`, in path order."""
    paths = sorted(os.path.join(r, f) for r, _, fs in os.walk(tree) for f in fs
                   if f.lower().endswith((".jpg", ".jpeg")))
    if not paths:
        raise SystemExit(f"{tree}: no JPEG files")
    out = []
    for p in paths:
        with open(p, "rb") as f:
            out.append(f.read())
    return out
