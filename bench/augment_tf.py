"""Anchor of the augmentation benchmark for `--augment-impl reference`: the
reference's view ops as TensorFlow runs them, in a tf.data pipeline on one thread.

The reference (google-research/fnc, on SimCLR v2's TF preprocessing) makes each
view with TF image ops; this restates those calls with the same TF primitives:
a crop drawn by sample_distorted_bounding_box (area 0.08-1, aspect 3/4-4/3,
min_object_covered 0.1, 100 attempts) resized bicubically (TF1 resize_bicubic),
a left-right flip, the colour distortion with p 0.8 (brightness x U(0.2, 1.8),
contrast, saturation U(0.2, 1.8) and hue U(-0.2, 0.2) in a random order, each
clipped to [0, 1]), greyscale with p 0.2, and with p 0.5 a Gaussian blur (sigma
U(0.1, 2), kernel side/10, two depthwise convolutions with SAME padding).
Float views in [0, 1], as the reference feeds the encoder.

Usage: augment_tf.py TREE [--views 10] [--size 224] [--seconds 10]
       [--op all|decode|crop|flip|jitter|grey|blur]
Prints JSON with images_per_s and views_per_s (the bench/augment.sh format).
--op times the crop plus that one op (decode: decoding alone), so per-op costs
are differences against `crop`.
"""
import json
import time

import tensorflow as tf
from anchor_common import parse_args, read_jpegs

args = parse_args()
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.random.set_seed(0)
S = args.size


def crop_resize(img):
    begin, extent, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(img), tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
        max_attempts=100, use_image_if_no_bounding_boxes=True)
    part = tf.slice(img, begin, extent)
    return tf.compat.v1.image.resize_bicubic([part], [S, S])[0]


def colour(img):
    def one(x, k):
        x = tf.switch_case(k, [
            lambda: x * tf.random.uniform([], 0.2, 1.8),
            lambda: tf.image.random_contrast(x, 0.2, 1.8),
            lambda: tf.image.random_saturation(x, 0.2, 1.8),
            lambda: tf.image.random_hue(x, 0.2),
        ])
        return tf.clip_by_value(x, 0.0, 1.0)

    def jitter():
        x = img
        order = tf.random.shuffle(tf.range(4))
        for i in range(4):
            x = one(x, order[i])
        return x

    return tf.cond(tf.random.uniform([]) < 0.8, jitter, lambda: img)


def grey(img):
    return tf.cond(tf.random.uniform([]) < 0.2,
                   lambda: tf.tile(tf.image.rgb_to_grayscale(img), [1, 1, 3]), lambda: img)


def blur(img):
    r = (S // 10) // 2

    def apply():
        sigma = tf.random.uniform([], 0.1, 2.0)
        x = tf.cast(tf.range(-r, r + 1), tf.float32)
        k = tf.exp(-tf.square(x) / (2.0 * tf.square(sigma)))
        k = k / tf.reduce_sum(k)
        kh = tf.tile(tf.reshape(k, [1, 2 * r + 1, 1, 1]), [1, 1, 3, 1])
        kv = tf.tile(tf.reshape(k, [2 * r + 1, 1, 1, 1]), [1, 1, 3, 1])
        y = tf.nn.depthwise_conv2d(img[None], kh, [1, 1, 1, 1], "SAME")
        y = tf.nn.depthwise_conv2d(y, kv, [1, 1, 1, 1], "SAME")
        return tf.clip_by_value(y[0], 0.0, 1.0)

    return tf.cond(tf.random.uniform([]) < 0.5, apply, lambda: img)


extra = {
    "all": [tf.image.random_flip_left_right, colour, grey, blur],
    "crop": [],
    "flip": [tf.image.random_flip_left_right],
    "jitter": [colour],
    "grey": [grey],
    "blur": [blur],
}


def views(blob):
    img = tf.image.convert_image_dtype(tf.io.decode_jpeg(blob, channels=3), tf.float32)
    if args.op == "decode":
        return img
    out = []
    for _ in range(args.views):
        v = crop_resize(img)
        for op in extra[args.op]:
            v = op(v)
        out.append(v)
    return tf.stack(out)


blobs = read_jpegs(args.tree)
opts = tf.data.Options()
opts.threading.private_threadpool_size = 1
opts.threading.max_intra_op_parallelism = 1
opts.autotune.enabled = False
ds = tf.data.Dataset.from_tensor_slices(blobs).repeat().map(views).with_options(opts)
it = iter(ds)
next(it).numpy()  # traces the graph: warm-up, not timed
t0 = time.perf_counter()
images = 0
while time.perf_counter() - t0 < args.seconds:
    next(it).numpy()
    images += 1
dt = time.perf_counter() - t0
per = 1 if args.op == "decode" else args.views
print(json.dumps({"pipeline": "tensorflow", "op": args.op, "images_per_s": images / dt,
                  "views_per_s": images * per / dt, "views": args.views, "size": S}))
