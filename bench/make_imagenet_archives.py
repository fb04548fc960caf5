"""Packs an extracted ILSVRC-style tree (train/WNID/*, val/WNID/*, classes.tsv)
into ImageNet's official archives, for bench/archive.sh:

  ILSVRC2012_img_train.tar      one WNID.tar per class inside
  ILSVRC2012_img_val.tar        flat ILSVRC2012_val_%08d.JPEG (seeded order)
  ILSVRC2012_devkit_t12.tar.gz  data/meta.mat (scipy) + the ground truth
  valprep.txt                   "name wnid" per val image (what valprep.sh moves)

usage: make_imagenet_archives.py SRC OUT
"""
import io
import os
import random
import sys
import tarfile

import numpy as np
import scipy.io as sio


def add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def main(src, out):
    os.makedirs(out, exist_ok=True)
    wnids = sorted(os.listdir(os.path.join(src, "train")))
    words = {}
    tsv = os.path.join(src, "classes.tsv")
    if os.path.exists(tsv):
        for line in open(tsv):
            w, _, name = line.rstrip("\n").partition("\t")
            words[w] = name
    with tarfile.open(os.path.join(out, "ILSVRC2012_img_train.tar"), "w", format=tarfile.GNU_FORMAT) as outer:
        for w in wnids:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as inner:
                d = os.path.join(src, "train", w)
                for f in sorted(os.listdir(d)):
                    inner.add(os.path.join(d, f), arcname=f)
            add_bytes(outer, w + ".tar", buf.getvalue())
    val = [(w, os.path.join(src, "val", w, f)) for w in wnids
           for f in sorted(os.listdir(os.path.join(src, "val", w)))]
    random.Random(0).shuffle(val)
    ids = {w: i + 1 for i, w in enumerate(wnids)}
    truth, prep = [], []
    with tarfile.open(os.path.join(out, "ILSVRC2012_img_val.tar"), "w", format=tarfile.GNU_FORMAT) as t:
        for k, (w, path) in enumerate(val, 1):
            name = "ILSVRC2012_val_%08d.JPEG" % k
            t.add(path, arcname=name)
            truth.append(str(ids[w]))
            prep.append(f"{name} {w}")
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
              "wordnet_height", "num_train_images"]
    arr = np.empty((len(wnids), 1), dtype=[(f, object) for f in fields])
    for i, w in enumerate(wnids):
        arr[i, 0] = (float(ids[w]), w, words.get(w, w), "", 0.0, np.zeros((0,)), 0.0, 0.0)
    meta = io.BytesIO()
    sio.savemat(meta, {"synsets": arr})
    with tarfile.open(os.path.join(out, "ILSVRC2012_devkit_t12.tar.gz"), "w:gz") as t:
        add_bytes(t, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        add_bytes(t, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
                  ("\n".join(truth) + "\n").encode())
    with open(os.path.join(out, "valprep.txt"), "w") as f:
        f.write("\n".join(prep) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
