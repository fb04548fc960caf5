"""Writes ingest/tests/data/meta-*.mat: a small `synsets` struct array shaped
like the ImageNet devkit's data/meta.mat, written by scipy (an independent
writer of MATLAB's level-5 format), uncompressed and zlib-compressed.

Leaves (num_children 0) are the classes n90000000..n90000003 (fnc-ingest
synth's WNIDs) with ILSVRC2012_IDs in another order than their WNIDs, so a
reader that confuses ID and class index fails; one inner synset has children.

Run: python3 -m venv /tmp/sp && /tmp/sp/bin/pip install scipy numpy &&
     /tmp/sp/bin/python scripts/devkit_fixture.py
"""
import pathlib

import numpy as np
import scipy.io as sio

FIELDS = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children",
          "children", "wordnet_height", "num_train_images"]
rows = [
    # id, wnid, words, children
    (3, "n90000000", "synth zero, class 0", []),
    (1, "n90000001", "synth one", []),
    (4, "n90000002", "synth two", []),
    (2, "n90000003", "synth three", []),
    (5, "n09999999", "synthetic thing", [1, 2, 3, 4]),
]
arr = np.empty((len(rows), 1), dtype=[(f, object) for f in FIELDS])
for i, (id_, wnid, words, children) in enumerate(rows):
    arr[i, 0] = (float(id_), wnid, words, "a gloss of " + wnid,
                 float(len(children)), np.array(children, dtype=float),
                 0.0 if not children else 1.0, 0.0 if children else 1300.0)
out = pathlib.Path(__file__).resolve().parent.parent / "ingest/tests/data"
out.mkdir(parents=True, exist_ok=True)
sio.savemat(out / "meta-scipy.mat", {"synsets": arr}, do_compression=False)
sio.savemat(out / "meta-scipy-z.mat", {"synsets": arr}, do_compression=True)
back = sio.loadmat(out / "meta-scipy.mat", squeeze_me=True)["synsets"]
print([(int(r[0]), str(r[1]), int(r[4])) for r in back])
