//! `--augment-impl reference` and RandAugment against TensorFlow itself: the
//! fixture `fixtures/tf_ops.json` holds TF's outputs of the ops the reference
//! calls (written by `scripts/tf-fixtures.sh`).
#![allow(clippy::unwrap_used)]

use fnc_augment::randaugment::{self, RaOp, RaOps};
use fnc_augment::reference;
use fnc_augment::simd::available_paths;
use fnc_augment::{draw_crop_tf, CropBox, Jitter, ViewRng};
use serde_json::Value;

fn fixtures() -> Value {
    let path = format!("{}/tests/fixtures/tf_ops.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn bytes(v: &Value) -> Vec<u8> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u8)
        .collect()
}

fn image(v: &Value) -> (Vec<u8>, usize, usize) {
    (
        bytes(&v["data"]),
        v["w"].as_u64().unwrap() as usize,
        v["h"].as_u64().unwrap() as usize,
    )
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The `w` x `h` top-left corner of a `width`-wide image, as floats / 255.
fn corner(src: &[u8], width: usize, w: usize, h: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for &v in &src[y * width * 3..(y * width + w) * 3] {
            out.push(v as f32 * (1.0 / 255.0));
        }
    }
    out
}

#[test]
fn bicubic_crop_resize_matches_tf_resize_bicubic() {
    let fx = fixtures();
    let (src, w, _) = image(&fx["src"]);
    let (mut out, mut rows) = (Vec::new(), Vec::new());
    for case in fx["resize"].as_array().unwrap() {
        let c: Vec<u32> = case["crop"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let o: Vec<usize> = case["out"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let crop = CropBox {
            x: c[0],
            y: c[1],
            w: c[2],
            h: c[3],
        };
        let want = floats(&case["data"]);
        for path in available_paths() {
            reference::crop_resize_bicubic_with(
                path,
                &src,
                w as u32,
                crop,
                (o[0], o[1]),
                false,
                &mut out,
                &mut rows,
            );
            let d = max_abs(&out, &want);
            assert!(
                d < 2e-6,
                "{}: crop {c:?} -> {o:?}: max difference {d}",
                path.name()
            );
        }
    }
}

/// TF's legacy bicubic in f64 (Keys' cubic, a = -0.75, exact offsets where
/// TF reads a 1024-entry table, taps clamped into the crop).
fn bicubic_f64(src: &[u8], width: usize, c: CropBox, (ow, oh): (usize, usize)) -> Vec<f32> {
    let keys = |x: f64| {
        let (a, x) = (-0.75, x.abs());
        if x <= 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else {
            ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
        }
    };
    let taps = |o: usize, scale: f64, n: usize| {
        let at = o as f64 * scale;
        let base = at.floor();
        (0..4)
            .map(|k| {
                let i = base as i64 - 1 + k as i64;
                (
                    i.clamp(0, n as i64 - 1) as usize,
                    keys(at - (base + k as f64 - 1.0)),
                )
            })
            .collect::<Vec<_>>()
    };
    let (sx, sy) = (c.w as f64 / ow as f64, c.h as f64 / oh as f64);
    let mut out = Vec::with_capacity(ow * oh * 3);
    for y in 0..oh {
        for x in 0..ow {
            for ch in 0..3 {
                let mut v = 0.0;
                for &(iy, wy) in &taps(y, sy, c.h as usize) {
                    for &(ix, wx) in &taps(x, sx, c.w as usize) {
                        let at = ((c.y as usize + iy) * width + c.x as usize + ix) * 3 + ch;
                        v += wy * wx * src[at] as f64 / 255.0;
                    }
                }
                out.push(v as f32);
            }
        }
    }
    out
}

/// Crops the fixture lacks: one pixel, one row, one column, the image's edges,
/// large up- and downscales, on noise (a wrong tap shows as a large error).
/// TF's table rounds the offsets to 1/1024: a 1e-2 tolerance, where a tap off
/// by one pixel errs by ~0.3.
#[test]
fn bicubic_taps_clamp_at_every_edge_on_every_path() {
    let (w, h) = (61usize, 47usize);
    let src: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i * 7919 + 13) % 251) as u8)
        .collect();
    let crop = |x, y, cw, ch| CropBox { x, y, w: cw, h: ch };
    let cases = [
        (crop(0, 0, 1, 1), (5, 4)),
        (crop(60, 46, 1, 1), (3, 3)),
        (crop(0, 10, 61, 1), (17, 3)),
        (crop(30, 0, 1, 47), (2, 29)),
        (crop(0, 0, 61, 47), (224, 200)),
        (crop(55, 40, 6, 7), (224, 224)),
        (crop(3, 5, 58, 42), (9, 7)),
    ];
    check_every_path(&src, w, &cases);
}

/// Each case on every path: within 1e-2 of [`bicubic_f64`], the scalar
/// path's floats bit for bit, and flipped in the resize the same floats as a
/// flip after it.
fn check_every_path(src: &[u8], w: usize, cases: &[(CropBox, (usize, usize))]) {
    let (mut out, mut rows) = (Vec::new(), Vec::new());
    for &(c, size) in cases {
        let want = bicubic_f64(src, w, c, size);
        let mut first: Option<Vec<f32>> = None;
        for path in available_paths() {
            reference::crop_resize_bicubic_with(
                path, src, w as u32, c, size, false, &mut out, &mut rows,
            );
            let d = max_abs(&out, &want);
            assert!(
                d < 1e-2,
                "{}: {c:?} -> {size:?}: max difference {d}",
                path.name()
            );
            match &first {
                None => first = Some(out.clone()),
                Some(f) => assert!(
                    f.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{}: {c:?} -> {size:?} differs from the scalar path",
                    path.name()
                ),
            }
            // Flipped in the resize: the same floats, mirrored.
            let mut flipped = Vec::new();
            reference::crop_resize_bicubic_with(
                path,
                src,
                w as u32,
                c,
                size,
                true,
                &mut flipped,
                &mut rows,
            );
            let mut mirrored = out.clone();
            reference::flip(&mut mirrored, size.0);
            assert!(
                flipped
                    .iter()
                    .zip(&mirrored)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
                    && flipped.len() == mirrored.len(),
                "{}: {c:?} -> {size:?} flipped in the resize differs from a flip after it",
                path.name()
            );
        }
    }
}

/// The AVX2 path's eight-row pass on a wider image: crops whose rows end
/// inside, at and past its 32-byte loads' reach, strips of 32 pixels with
/// one pixel over, widths that are no whole number of 8 x 8 blocks, shrinks
/// of up to 9x (strips spanning many loads), rows not a whole number of
/// groups, all against the f64 resize and the scalar path bit for bit.
#[test]
fn bicubic_eight_row_groups_agree_with_the_scalar_path() {
    let (w, h) = (331usize, 157usize);
    let src: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i * 7919 + 29) % 253) as u8)
        .collect();
    let crop = |x, y, cw, ch| CropBox { x, y, w: cw, h: ch };
    let cases = [
        (crop(0, 0, 331, 157), (224, 224)),
        (crop(0, 0, 331, 157), (33, 17)),
        (crop(0, 0, 331, 157), (37, 100)),
        (crop(3, 2, 300, 150), (65, 9)),
        (crop(320, 0, 11, 157), (50, 61)),
        (crop(321, 150, 10, 7), (97, 13)),
        (crop(0, 5, 10, 9), (1, 1)),
        (crop(100, 20, 37, 123), (224, 31)),
    ];
    check_every_path(&src, w, &cases);
    // Every crop width up to 80 at a fixed start, upscaled: the rows' ends
    // (read through the right edge's padding) at every alignment of the loads.
    let widths: Vec<_> = (1..=80)
        .map(|cw| (crop(7, 3, cw, 9), (2 * cw as usize + 1, 11)))
        .collect();
    check_every_path(&src, w, &widths);
    // A shrink by 6 (groups still; by rows past 8) and by 9.
    check_every_path(
        &src,
        w,
        &[
            (crop(5, 0, 300, 157), (65, 25)),
            (crop(5, 0, 300, 157), (64, 17)),
        ],
    );
    // No output, or a box without pixels: an empty output, or zeros, on
    // every path (the engine never asks for either).
    for path in available_paths() {
        let mut out = vec![1.0f32; 5];
        let mut rows = Vec::new();
        for (c, size, len) in [
            (crop(0, 0, 10, 10), (0, 5), 0),
            (crop(0, 0, 10, 10), (5, 0), 0),
            (crop(3, 3, 0, 10), (4, 2), 24),
            (crop(3, 3, 10, 0), (4, 2), 24),
        ] {
            reference::crop_resize_bicubic_with(
                path, &src, w as u32, c, size, false, &mut out, &mut rows,
            );
            assert_eq!(out.len(), len, "{c:?} -> {size:?}");
            assert!(out.iter().all(|&v| v == 0.0), "{c:?} -> {size:?}");
        }
    }
}

#[test]
fn colour_ops_match_tf_image_ops() {
    let fx = fixtures();
    let (src, w, _) = image(&fx["src"]);
    let (cw, ch) = (
        fx["colour_src"]["w"].as_u64().unwrap() as usize,
        fx["colour_src"]["h"].as_u64().unwrap() as usize,
    );
    let base = corner(&src, w, cw, ch);
    for case in fx["colour"].as_array().unwrap() {
        let op = case["op"].as_str().unwrap();
        let arg = case["arg"].as_f64().unwrap() as f32;
        let mut img = base.clone();
        match op {
            "brightness" => reference::brightness(&mut img, arg),
            "contrast" => reference::contrast(&mut img, arg),
            "saturation" => reference::saturation(&mut img, arg),
            "hue" => reference::hue(&mut img, arg),
            "grey" => reference::grey(&mut img),
            other => panic!("unknown op {other}"),
        }
        let d = max_abs(&img, &floats(&case["data"]));
        assert!(d < 2e-6, "{op}({arg}): max difference {d}");
    }
}

/// Every order of the four ops (and orders the sampler never draws), views
/// smaller than a tile, a whole number of tiles and a partial last tile: the
/// tiled jitter gives the sequential chain's floats on every path.
#[test]
fn tiled_jitter_is_the_sequential_chain_bit_for_bit_on_every_path() {
    let mut orders: Vec<[u8; 4]> = Vec::new();
    for a in 0..4u8 {
        for b in 0..4u8 {
            for c in 0..4u8 {
                for d in 0..4u8 {
                    let o = [a, b, c, d];
                    let mut s = o;
                    s.sort();
                    if s == [0, 1, 2, 3] {
                        orders.push(o);
                    }
                }
            }
        }
    }
    orders.extend([[2, 2, 3, 0], [3, 0, 0, 2], [1, 1, 2, 3]]);
    for (w, h) in [(7, 5), (32, 16), (97, 61)] {
        let img: Vec<f32> = (0..w * h * 3)
            .map(|i| ((i * 7919) % 1000) as f32 / 999.0)
            .collect();
        for (k, order) in orders.iter().enumerate() {
            let j = fnc_augment::Jitter {
                order: *order,
                brightness: 0.7 + 0.05 * k as f32,
                contrast: 1.4 - 0.03 * k as f32,
                saturation: 0.3 + 0.06 * k as f32,
                hue: -0.2 + 0.015 * k as f32,
            };
            let mut want = img.clone();
            reference::jitter_sequential(&mut want, &j);
            for path in available_paths() {
                let mut got = img.clone();
                reference::jitter_with(path, &mut got, &j, &mut Vec::new());
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{}: {w}x{h}, order {order:?}",
                    path.name()
                );
            }
        }
    }
}

#[test]
fn blur_matches_the_reference_zero_padded_gaussian() {
    let fx = fixtures();
    let (src, width, _) = image(&fx["src"]);
    let (w, h) = (
        fx["colour_src"]["w"].as_u64().unwrap() as usize,
        fx["colour_src"]["h"].as_u64().unwrap() as usize,
    );
    let base = corner(&src, width, w, h);
    let mut tmp = Vec::new();
    for case in fx["blur"].as_array().unwrap() {
        let r = case["radius"].as_u64().unwrap() as usize;
        let sigma = case["sigma"].as_f64().unwrap() as f32;
        let mut img = base.clone();
        reference::blur(&mut img, (w, h), r, sigma, &mut tmp);
        let d = max_abs(&img, &floats(&case["data"]));
        assert!(
            d < 2e-6,
            "blur radius {r} sigma {sigma}: max difference {d}"
        );
        // Every CPU path sums the same taps in the same order: the same floats.
        for path in available_paths() {
            let mut on_path = base.clone();
            reference::blur_with(path, &mut on_path, (w, h), r, sigma, &mut tmp);
            assert!(
                on_path
                    .iter()
                    .zip(&img)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "blur radius {r} sigma {sigma}: the {} path differs",
                path.name()
            );
        }
    }
    // A view wider than a register block, odd sizes, the view's radius, sigmas
    // from the sampler's range: every path against a plain f64 Gaussian.
    let (w, h) = (77, 41);
    let img: Vec<f32> = (0..w * h * 3)
        .map(|i| ((i * 37) % 256) as f32 / 255.0)
        .collect();
    for sigma in [0.1f32, 0.6, 1.3, 2.0] {
        let r = 5;
        let want = gaussian_f64(&img, (w, h), r, sigma);
        for path in available_paths() {
            let mut got = img.clone();
            reference::blur_with(path, &mut got, (w, h), r, sigma, &mut tmp);
            let d = max_abs(&got, &want);
            assert!(
                d < 2e-6,
                "{}: sigma {sigma}: max difference {d}",
                path.name()
            );
        }
    }
    // The view's radius is the reference's (side / 10) / 2.
    assert_eq!(reference::blur_radius(224), 11);
    assert_eq!(reference::blur_radius(96), 4);
    assert_eq!(reference::blur_radius(64), 3);
}

/// The reference's blur in f64: the normalised Gaussian of taps -r..=r, zero
/// padding, horizontal then vertical, clipped to [0, 1].
fn gaussian_f64(img: &[f32], (w, h): (usize, usize), r: usize, sigma: f32) -> Vec<f32> {
    let s2 = 2.0 * (sigma as f64).powi(2);
    let k: Vec<f64> = (-(r as i64)..=r as i64)
        .map(|i| (-((i * i) as f64) / s2).exp())
        .collect();
    let sum: f64 = k.iter().sum();
    let at = |v: &[f64], x: i64, y: i64, c: usize| {
        if (0..w as i64).contains(&x) && (0..h as i64).contains(&y) {
            v[(y as usize * w + x as usize) * 3 + c]
        } else {
            0.0
        }
    };
    let src: Vec<f64> = img.iter().map(|&v| v as f64).collect();
    let mut horiz = vec![0f64; src.len()];
    let mut out = vec![0f32; src.len()];
    for pass in 0..2 {
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                for c in 0..3 {
                    let s: f64 = (0..k.len())
                        .map(|t| {
                            let d = t as i64 - r as i64;
                            k[t] / sum
                                * if pass == 0 {
                                    at(&src, x + d, y, c)
                                } else {
                                    at(&horiz, x, y + d, c)
                                }
                        })
                        .sum();
                    let i = (y as usize * w + x as usize) * 3 + c;
                    if pass == 0 {
                        horiz[i] = s;
                    } else {
                        out[i] = s.clamp(0.0, 1.0) as f32;
                    }
                }
            }
        }
    }
    out
}

#[test]
fn float_to_uint8_matches_convert_image_dtype() {
    let fx = fixtures();
    let x = floats(&fx["to_u8"]["x"]);
    let mut got = vec![0u8; x.len()];
    reference::to_u8_tf(&x, &mut got);
    assert_eq!(got, bytes(&fx["to_u8"]["u8"]));
}

fn ra_op(name: &str, args: &[f64], side: usize) -> RaOp {
    let a = |i: usize| args[i];
    match name {
        "AutoContrast" => RaOp::AutoContrast,
        "Equalize" => RaOp::Equalize,
        "Invert" => RaOp::Invert,
        "Rotate" => RaOp::Rotate(a(0) as f32),
        "Posterize" => RaOp::Posterize(a(0) as u8),
        "Solarize" => RaOp::Solarize(a(0) as u16),
        "Color" => RaOp::Color(a(0) as f32),
        "Contrast" => RaOp::Contrast(a(0) as f32),
        "Brightness" => RaOp::Brightness(a(0) as f32),
        "Sharpness" => RaOp::Sharpness(a(0) as f32),
        "ShearX" => RaOp::ShearX(a(0) as f32),
        "ShearY" => RaOp::ShearY(a(0) as f32),
        "TranslateX" => RaOp::TranslateX(a(0)),
        "TranslateY" => RaOp::TranslateY(a(0)),
        "Cutout" => RaOp::Cutout {
            pad: a(0),
            cy: a(1),
            cx: a(2),
        },
        "SolarizeAdd" => RaOp::SolarizeAdd(a(0) as u8),
        other => panic!("unknown op {other} at side {side}"),
    }
}

#[test]
fn every_randaugment_op_matches_its_tf_fixture() {
    let fx = fixtures();
    let (src, w, h) = image(&fx["ra_src"]);
    let mut tmp = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for case in fx["randaugment"].as_array().unwrap() {
        let name = case["op"].as_str().unwrap();
        let args: Vec<f64> = case["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let op = ra_op(name, &args, w);
        let want = bytes(&case["data"]);
        let mut img = src.clone();
        randaugment::apply(&RaOps::from_ops(&[op]), &mut img, w, h, &mut tmp);
        for path in available_paths() {
            let mut other = src.clone();
            randaugment::apply_op_with(path, &op, &mut other, w, h, &mut tmp);
            assert_eq!(other, img, "{name}: {} path differs", path.name());
        }
        let off: Vec<usize> = (0..img.len()).filter(|&i| img[i] != want[i]).collect();
        // Float sums in another order (the grey weights, the smoothing kernel)
        // may land a truncation one step apart; nothing else may differ.
        let worst = off
            .iter()
            .map(|&i| img[i].abs_diff(want[i]))
            .max()
            .unwrap_or(0);
        assert!(
            worst <= 1 && off.len() * 200 <= img.len(),
            "{name}{args:?}: {} of {} values differ, by up to {worst}",
            off.len(),
            img.len()
        );
        seen.insert(name.to_string());
    }
    assert_eq!(
        seen.len(),
        randaugment::OP_NAMES.len(),
        "a fixture per operation"
    );
}

/// Empirical CDF distance between two samples at the points of both.
fn ks(a: &mut [f64], b: &mut [f64]) -> f64 {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let cdf = |s: &[f64], x: f64| s.partition_point(|v| *v <= x) as f64 / s.len() as f64;
    a.iter()
        .chain(b.iter())
        .map(|&x| (cdf(a, x) - cdf(b, x)).abs())
        .fold(0.0, f64::max)
}

#[test]
fn crop_sampler_matches_tf_sample_distorted_bounding_box() {
    let fx = fixtures();
    for case in fx["crops"].as_array().unwrap() {
        let w = case["w"].as_u64().unwrap() as u32;
        let h = case["h"].as_u64().unwrap() as u32;
        let tf: Vec<CropBox> = case["xywh"]
            .as_array()
            .unwrap()
            .chunks_exact(4)
            .map(|c| CropBox {
                x: c[0].as_u64().unwrap() as u32,
                y: c[1].as_u64().unwrap() as u32,
                w: c[2].as_u64().unwrap() as u32,
                h: c[3].as_u64().unwrap() as u32,
            })
            .collect();
        let ours: Vec<CropBox> = (0..20_000)
            .map(|i| {
                let mut rng = ViewRng::new(11, 0, i, 0);
                draw_crop_tf(&mut rng, w, h, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0))
            })
            .collect();
        let area = |b: &CropBox| (b.w * b.h) as f64 / (w * h) as f64;
        let aspect = |b: &CropBox| b.w as f64 / b.h as f64;
        let left = |b: &CropBox| {
            if b.w < w {
                b.x as f64 / (w - b.w) as f64
            } else {
                0.5
            }
        };
        // Two-sample KS at 3000 vs 20000 draws: 0.035 is beyond p = 0.001.
        for (what, f) in [
            ("area", &area as &dyn Fn(&CropBox) -> f64),
            ("aspect", &aspect),
            ("left offset", &left),
        ] {
            let mut a: Vec<f64> = tf.iter().map(f).collect();
            let mut b: Vec<f64> = ours.iter().map(f).collect();
            let d = ks(&mut a, &mut b);
            assert!(d < 0.035, "{w}x{h} {what}: KS distance {d:.4}");
        }
        // Hard properties TF shows: at least 10% of the image (min_object_covered),
        // inside it, and never touching the right/bottom edge unless spanning it.
        for b in tf.iter().chain(&ours) {
            assert!(area(b) >= 0.1 - 1e-6, "{b:?} under 10% of {w}x{h}");
            assert!(b.x + b.w <= w && b.y + b.h <= h);
            assert!(b.w == w || b.x + b.w < w, "{b:?} touches the right edge");
        }
    }
}

/// Scratch and output buffers are reused from view to view without clearing:
/// every value the ops read must be one they wrote. Buffers full of NaN (and
/// longer than needed) give the floats of fresh ones, bit for bit.
#[test]
fn buffers_holding_nan_give_the_floats_of_fresh_ones() {
    let fx = fixtures();
    let (src, width, height) = image(&fx["src"]);
    let dirty = || vec![f32::NAN; 400_000];
    let same = |a: &[f32], b: &[f32]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    };
    let crops = [
        (
            CropBox {
                x: 0,
                y: 0,
                w: width as u32,
                h: height as u32,
            },
            (224, 224),
        ),
        (
            CropBox {
                x: 3,
                y: 5,
                w: 20,
                h: 17,
            },
            (96, 96),
        ),
        (
            CropBox {
                x: 10,
                y: 2,
                w: 1,
                h: 1,
            },
            (5, 4),
        ),
    ];
    for path in available_paths() {
        for (crop, size) in crops {
            for flip in [false, true] {
                let resize = |mut out: Vec<f32>, mut rows: Vec<f32>| {
                    reference::crop_resize_bicubic_with(
                        path,
                        &src,
                        width as u32,
                        crop,
                        size,
                        flip,
                        &mut out,
                        &mut rows,
                    );
                    out
                };
                let (out, out2) = (resize(Vec::new(), Vec::new()), resize(dirty(), dirty()));
                assert!(
                    same(&out, &out2),
                    "bicubic {crop:?} -> {size:?}, flip {flip}, {path:?}"
                );
                for sigma in [0.1f32, 1.0, 2.0] {
                    let r = reference::blur_radius(size.1);
                    let (mut a, mut b) = (out.clone(), out.clone());
                    reference::blur_with(path, &mut a, size, r, sigma, &mut Vec::new());
                    reference::blur_with(path, &mut b, size, r, sigma, &mut dirty());
                    assert!(same(&a, &b), "blur {size:?} sigma {sigma}, {path:?}");
                }
                for order in [[0u8, 1, 2, 3], [1, 3, 0, 2], [2, 0, 3, 1], [3, 2, 1, 0]] {
                    let j = Jitter {
                        order,
                        brightness: 1.3,
                        contrast: 0.7,
                        saturation: 1.4,
                        hue: 0.1,
                    };
                    let (mut a, mut b) = (out.clone(), out.clone());
                    reference::clip(&mut a);
                    reference::clip(&mut b);
                    reference::jitter_with(path, &mut a, &j, &mut Vec::new());
                    reference::jitter_with(path, &mut b, &j, &mut dirty());
                    assert!(same(&a, &b), "jitter {order:?} {size:?}, {path:?}");
                }
            }
        }
    }
}
