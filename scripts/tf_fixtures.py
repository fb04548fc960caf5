"""Writes augment/tests/fixtures/tf_ops.json: the reference implementation's
view ops computed by TensorFlow itself, for the `--augment-impl reference` and
RandAugment tests (augment/tests/reference_ops.rs).

The reference (google-research/fnc on SimCLR v2's TF code) calls TF image ops
and EfficientNet's `autoaugment.py`; the op compositions below restate those
calls with TF primitives (bicubic resize in legacy mode, HSV adjustments,
histograms, depthwise convolutions, projective transforms), so the numerics
under test are TF's own. Run through scripts/tf-fixtures.sh, which makes the
venv this needs.
"""
import json
import math
import sys

import numpy as np
import tensorflow as tf

OUT = sys.argv[1]
rng = np.random.default_rng(20261128)


def smooth_image(h, w):
    """A photo-like test image: smooth gradients, saturated patches, noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    g = 128 + 110 * np.cos((x + y) / 9.0)
    b = 60 + 190 * (x / w) * (y / h)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    img[2:6, 3:9] = [250, 10, 10]
    img[h - 6:h - 2, w - 8:w - 3] = [5, 5, 240]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def flat(a):
    # f32 values to 8 significant digits: exact enough for 1e-6 comparisons.
    return [float(f"{v:.8g}") for v in np.asarray(a, dtype=np.float64).ravel()]


def ints(a):
    return [int(v) for v in np.asarray(a).ravel()]


out = {}
src = smooth_image(30, 40)
out["src"] = {"h": 30, "w": 40, "data": ints(src)}
fsrc = tf.image.convert_image_dtype(tf.constant(src), tf.float32)

# Crop + resize: tf.image.crop_to_bounding_box then resize_bicubic (TF1 API,
# no half-pixel centres), as `crop_and_resize` in the reference.
resize = []
for (y, x, h, w), (oh, ow) in [((3, 5, 20, 30), (24, 24)), ((0, 0, 30, 40), (17, 17)),
                               ((7, 2, 9, 11), (32, 32))]:
    c = tf.image.crop_to_bounding_box(fsrc, y, x, h, w)
    r = tf.compat.v1.image.resize_bicubic([c], [oh, ow])[0]
    resize.append({"crop": [x, y, w, h], "out": [ow, oh], "data": flat(r)})
out["resize"] = resize

# Colour ops on the float image (its top-left 16 x 20), each as the reference
# calls them.
fsrc = fsrc[:16, :20]
out["colour_src"] = {"h": 16, "w": 20}
colour = []
for op, arg in [("brightness", 1.45), ("brightness", 0.3), ("contrast", 0.35), ("contrast", 1.7),
                ("saturation", 0.4), ("saturation", 1.8), ("hue", 0.17), ("hue", -0.13),
                ("grey", 0.0)]:
    if op == "brightness":
        r = fsrc * arg
    elif op == "contrast":
        r = tf.image.adjust_contrast(fsrc, arg)
    elif op == "saturation":
        r = tf.image.adjust_saturation(fsrc, arg)
    elif op == "hue":
        r = tf.image.adjust_hue(fsrc, arg)
    else:
        r = tf.tile(tf.image.rgb_to_grayscale(fsrc), [1, 1, 3])
    colour.append({"op": op, "arg": arg, "data": flat(r)})
out["colour"] = colour


def gaussian_blur(image, kernel_size, sigma):
    """SimCLR's separable blur: radius kernel_size / 2, 'SAME' (zero) padding."""
    radius = int(kernel_size / 2)
    size = radius * 2 + 1
    x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
    k = tf.exp(-tf.pow(x, 2.0) / (2.0 * tf.pow(tf.cast(sigma, tf.float32), 2.0)))
    k /= tf.reduce_sum(k)
    kh = tf.tile(tf.reshape(k, [1, size, 1, 1]), [1, 1, 3, 1])
    kv = tf.tile(tf.reshape(k, [size, 1, 1, 1]), [1, 1, 3, 1])
    b = tf.nn.depthwise_conv2d(image[None], kh, [1, 1, 1, 1], "SAME")
    b = tf.nn.depthwise_conv2d(b, kv, [1, 1, 1, 1], "SAME")
    return b[0]


blur = []
for ks, sigma in [(4, 1.3), (6, 0.4), (9, 2.0)]:
    r = tf.clip_by_value(gaussian_blur(fsrc, ks, sigma), 0.0, 1.0)
    blur.append({"radius": ks // 2, "sigma": sigma, "data": flat(r)})
out["blur"] = blur

# convert_image_dtype to uint8 (saturating) of an out-of-range float image.
q = tf.constant(np.linspace(-0.1, 1.1, 241, dtype=np.float32))
out["to_u8"] = {"x": flat(q), "u8": ints(tf.image.convert_image_dtype(q, tf.uint8, saturate=True))}

# RandAugment operations (EfficientNet autoaugment.py semantics) on uint8.
ra_src = smooth_image(24, 24)
out["ra_src"] = {"h": 24, "w": 24, "data": ints(ra_src)}


def blend(image1, image2, factor):
    if factor == 0.0:
        return image1
    if factor == 1.0:
        return image2
    image1 = tf.cast(image1, tf.float32)
    image2 = tf.cast(image2, tf.float32)
    temp = image1 + factor * (image2 - image1)
    if 0.0 < factor < 1.0:
        return tf.cast(temp, tf.uint8)
    return tf.cast(tf.clip_by_value(temp, 0.0, 255.0), tf.uint8)


def wrap(image):
    return tf.concat([image, tf.ones([*image.shape[:2], 1], image.dtype)], 2)


def unwrap(image, replace):
    shape = tf.shape(image)
    flat_img = tf.reshape(image, [-1, shape[2]])
    alpha = flat_img[:, 3]
    rep = tf.concat([replace, tf.ones([1], image.dtype)], 0)
    flat_img = tf.where(tf.equal(alpha, 0)[:, None], tf.ones_like(flat_img) * rep, flat_img)
    return tf.reshape(flat_img, shape)[:, :, :3]


def transform(image, t):
    """contrib_image.transform: nearest, constant 0 outside."""
    t = tf.constant([t], tf.float32)
    r = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=t, output_shape=tf.shape(image)[:2],
        fill_value=0.0, interpolation="NEAREST", fill_mode="CONSTANT")
    return r[0]


REPLACE = tf.constant([128, 128, 128], tf.uint8)


def geometric(image, t):
    return unwrap(transform(wrap(image), t), REPLACE)


def rotate(image, degrees):
    radians = tf.cast(degrees * math.pi / 180.0, tf.float32)
    h = tf.cast(tf.shape(image)[0], tf.float32)
    w = tf.cast(tf.shape(image)[1], tf.float32)
    c, s = tf.cos(radians), tf.sin(radians)
    xo = ((w - 1) - (c * (w - 1) - s * (h - 1))) / 2.0
    yo = ((h - 1) - (s * (w - 1) + c * (h - 1))) / 2.0
    t = [float(c), float(-s), float(xo), float(s), float(c), float(yo), 0.0, 0.0]
    return geometric(image, t)


def grey_rgb(image):
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


def contrast(image, factor):
    degenerate = tf.cast(tf.image.rgb_to_grayscale(image), tf.int32)
    hist = tf.histogram_fixed_width(degenerate, [0, 255], nbins=256)
    mean = tf.reduce_sum(tf.cast(hist, tf.float32)) / 256.0
    degenerate = tf.clip_by_value(tf.ones_like(degenerate, tf.float32) * mean, 0.0, 255.0)
    return blend(tf.image.grayscale_to_rgb(tf.cast(degenerate, tf.uint8)), image, factor)


def sharpness(image, factor):
    img = tf.cast(image, tf.float32)[None]
    k = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32, shape=[3, 3, 1, 1]) / 13.0
    k = tf.tile(k, [1, 1, 3, 1])
    d = tf.nn.depthwise_conv2d(img, k, [1, 1, 1, 1], padding="VALID")
    d = tf.squeeze(tf.cast(tf.clip_by_value(d, 0.0, 255.0), tf.uint8), [0])
    mask = tf.pad(tf.ones_like(d), [[1, 1], [1, 1], [0, 0]])
    d = tf.pad(d, [[1, 1], [1, 1], [0, 0]])
    return blend(tf.where(tf.equal(mask, 1), d, image), image, factor)


def autocontrast(image):
    def chan(im):
        lo = tf.cast(tf.reduce_min(im), tf.float32)
        hi = tf.cast(tf.reduce_max(im), tf.float32)
        if hi > lo:
            scale = 255.0 / (hi - lo)
            return tf.cast(tf.clip_by_value(tf.cast(im, tf.float32) * scale - lo * scale, 0.0, 255.0), tf.uint8)
        return im
    return tf.stack([chan(image[:, :, c]) for c in range(3)], 2)


def equalize(image):
    def chan(c):
        im = tf.cast(image[:, :, c], tf.int32)
        histo = tf.histogram_fixed_width(im, [0, 255], nbins=256)
        nz = tf.reshape(tf.gather(histo, tf.where(tf.not_equal(histo, 0))), [-1])
        step = (tf.reduce_sum(nz) - nz[-1]) // 255
        if step == 0:
            return tf.cast(im, tf.uint8)
        lut = (tf.cumsum(histo) + (step // 2)) // step
        lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
        return tf.cast(tf.gather(lut, im), tf.uint8)
    return tf.stack([chan(c) for c in range(3)], 2)


def cutout(image, pad, cy, cx):
    h, w = image.shape[0], image.shape[1]
    lower, upper = max(0, cy - pad), max(0, h - cy - pad)
    left, right = max(0, cx - pad), max(0, w - cx - pad)
    mask = tf.pad(tf.zeros([h - lower - upper, w - left - right], image.dtype),
                  [[lower, upper], [left, right]], constant_values=1)
    mask = tf.tile(mask[:, :, None], [1, 1, 3])
    return tf.where(tf.equal(mask, 0), tf.ones_like(image) * 128, image)


img = tf.constant(ra_src)
side = 24
level = 7 / 10.0
scale = side / 224.0
enh = level * 1.8 + 0.1
cases = [
    ("AutoContrast", [], autocontrast(img)),
    ("Equalize", [], equalize(img)),
    ("Invert", [], 255 - img),
    ("Rotate", [level * 30.0], rotate(img, level * 30.0)),
    ("Rotate", [-level * 30.0], rotate(img, -level * 30.0)),
    ("Posterize", [int(level * 4)], tf.bitwise.left_shift(tf.bitwise.right_shift(img, 8 - int(level * 4)), 8 - int(level * 4))),
    ("Solarize", [int(level * 256)], tf.where(img < int(level * 256), img, 255 - img)),
    ("Color", [enh], blend(grey_rgb(img), img, enh)),
    ("Color", [0.55], blend(grey_rgb(img), img, 0.55)),
    ("Contrast", [enh], contrast(img, enh)),
    ("Brightness", [enh], blend(tf.zeros_like(img), img, enh)),
    ("Brightness", [0.55], blend(tf.zeros_like(img), img, 0.55)),
    ("Sharpness", [enh], sharpness(img, enh)),
    ("Sharpness", [0.3], sharpness(img, 0.3)),
    ("ShearX", [level * 0.3], geometric(img, [1.0, level * 0.3, 0, 0, 1, 0, 0, 0])),
    ("ShearY", [-level * 0.3], geometric(img, [1.0, 0, 0, -level * 0.3, 1, 0, 0, 0])),
    ("TranslateX", [level * 100.0], geometric(img, [1, 0, level * 100.0 * scale, 0, 1, 0, 0, 0])),
    ("TranslateY", [-level * 100.0], geometric(img, [1, 0, 0, 0, 1, -level * 100.0 * scale, 0, 0])),
    ("Cutout", [level * 40.0, 0.3, 0.9], cutout(img, int(level * 40.0 * scale), int(0.3 * 24), int(0.9 * 24))),
    ("SolarizeAdd", [int(level * 110)], tf.where(img < 128, tf.cast(tf.clip_by_value(tf.cast(img, tf.int64) + int(level * 110), 0, 255), tf.uint8), img)),
]
out["randaugment"] = [{"op": n, "args": a, "data": ints(r)} for n, a, r in cases]

# The reference's crop sampler: many draws per image shape, compared as
# distributions (TF's generator cannot be replayed).
boxes = []
tf.random.set_seed(7)
for h, w in [(375, 500), (300, 100), (64, 64)]:
    draws = []
    for _ in range(3000):
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            [h, w, 3], bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0), max_attempts=100, use_image_if_no_bounding_boxes=True)
        draws += [int(begin[1]), int(begin[0]), int(size[1]), int(size[0])]
    boxes.append({"w": w, "h": h, "xywh": draws})
out["crops"] = boxes
out["tensorflow"] = tf.__version__

with open(OUT, "w") as f:
    json.dump(out, f, separators=(",", ":"))
print(f"wrote {OUT} (TensorFlow {tf.__version__})")
