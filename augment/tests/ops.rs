//! Each op against a reference computed another way: plain f64 code here, and
//! torchvision outputs saved as fixtures by `fixtures/make_fixtures.py`.
#![allow(clippy::unwrap_used)]

use fnc_augment::ops::{self, Scratch};
use fnc_augment::simd::available_paths;
use fnc_augment::{draw_view, AugmentImpl, CropBox, Jitter, RandAugment, Recipe, ViewRng};

fn fixture(name: &str) -> (Vec<u8>, u32, u32) {
    let path = format!("{}/tests/fixtures/{name}.png", env!("CARGO_MANIFEST_DIR"));
    let img = image::open(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .to_rgb8();
    let (w, h) = img.dimensions();
    (img.into_raw(), w, h)
}

/// (max, mean) absolute difference.
fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let mut max = 0u8;
    let mut sum = 0u64;
    for (x, y) in a.iter().zip(b) {
        let d = x.abs_diff(*y);
        max = max.max(d);
        sum += d as u64;
    }
    (max, sum as f64 / a.len() as f64)
}

fn assert_close(what: &str, got: &[u8], want: &[u8], max_tol: u8, mean_tol: f64) {
    let (max, mean) = diff(got, want);
    assert!(
        max <= max_tol && mean <= mean_tol,
        "{what}: max diff {max} (tolerance {max_tol}), mean {mean:.3} (tolerance {mean_tol})"
    );
}

const IDENTITY: Jitter = Jitter {
    order: [0, 1, 2, 3],
    brightness: 1.0,
    contrast: 1.0,
    saturation: 1.0,
    hue: 0.0,
};

fn jittered(j: Jitter, grey: bool) -> Vec<u8> {
    let (mut img, _, _) = fixture("input");
    ops::jitter(&mut img, &j, grey, &mut Scratch::default());
    img
}

#[test]
fn colour_ops_match_torchvision() {
    let cases: [(&str, Jitter, u8, f64); 5] = [
        (
            "brightness_1.5",
            Jitter {
                brightness: 1.5,
                ..IDENTITY
            },
            1,
            0.1,
        ),
        (
            "contrast_0.6",
            Jitter {
                contrast: 0.6,
                ..IDENTITY
            },
            1,
            0.1,
        ),
        (
            "saturation_1.7",
            Jitter {
                saturation: 1.7,
                ..IDENTITY
            },
            1,
            0.1,
        ),
        (
            "hue_0.15",
            Jitter {
                hue: 0.15,
                ..IDENTITY
            },
            2,
            0.1,
        ),
        (
            "hue_-0.2",
            Jitter {
                hue: -0.2,
                ..IDENTITY
            },
            2,
            0.1,
        ),
    ];
    for (name, j, max_tol, mean_tol) in cases {
        let (want, _, _) = fixture(name);
        assert_close(name, &jittered(j, false), &want, max_tol, mean_tol);
    }
    let (want, _, _) = fixture("grey");
    assert_close(
        "grey (float path)",
        &jittered(IDENTITY, true),
        &want,
        1,
        0.1,
    );
    let (mut img, _, _) = fixture("input");
    ops::grey_u8(&mut img);
    assert_close("grey (integer path)", &img, &want, 1, 0.1);
}

#[test]
fn a_hue_shift_of_a_whole_turn_more_is_the_same_shift() {
    // Shifts whose sums with whole turns are exact in f32.
    for h in [0.25f32, -0.375, 0.5, -0.5, 0.0, 0.125] {
        let shifted = |hue| jittered(Jitter { hue, ..IDENTITY }, false);
        assert!(shifted(h) == shifted(h - 1.0), "{h} and {}", h - 1.0);
        assert!(shifted(h) == shifted(h + 2.0), "{h} and {}", h + 2.0);
    }
}

#[test]
fn an_identity_jitter_changes_nothing() {
    let (input, _, _) = fixture("input");
    assert_close("identity", &jittered(IDENTITY, false), &input, 1, 0.01);
}

#[test]
fn blur_matches_torchvision_on_every_cpu_path() {
    for (name, k, sigma) in [("blur_k9_s1.5", 9, 1.5f32), ("blur_k23_s0.7", 23, 0.7)] {
        let (want, w, h) = fixture(name);
        let mut outs = Vec::new();
        for path in available_paths() {
            let (mut img, _, _) = fixture("input");
            ops::blur_with(
                path,
                &mut img,
                (w as usize, h as usize),
                k,
                sigma,
                &mut Scratch::default(),
            );
            assert_close(&format!("{name} on {path:?}"), &img, &want, 1, 0.05);
            outs.push(img);
        }
        assert!(
            outs.windows(2).all(|p| p[0] == p[1]),
            "{name}: CPU paths differ"
        );
    }
}

/// Plain f64 Gaussian blur with the full kernel and reflect borders.
fn blur_reference(img: &[u8], w: usize, h: usize, k: usize, sigma: f64) -> Vec<u8> {
    let r = (k / 2) as isize;
    let wts: Vec<f64> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = wts.iter().sum();
    let refl = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let mut i = i;
        while i < 0 || i >= n {
            if i < 0 {
                i = -i;
            }
            if i >= n {
                i = 2 * (n - 1) - i;
            }
        }
        i as usize
    };
    let mut tmp = vec![0f64; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let mut a = 0.0;
                for (t, wt) in wts.iter().enumerate() {
                    a += wt * img[(y * w + refl(x as isize + t as isize - r, w)) * 3 + c] as f64;
                }
                tmp[(y * w + x) * 3 + c] = a / sum;
            }
        }
    }
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let mut a = 0.0;
                for (t, wt) in wts.iter().enumerate() {
                    a += wt * tmp[(refl(y as isize + t as isize - r, h) * w + x) * 3 + c];
                }
                out[(y * w + x) * 3 + c] = (a / sum).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

#[test]
fn blur_matches_a_float_reference_for_many_sigmas_and_sizes() {
    for &(side, sigma) in &[
        (224usize, 2.0f32),
        (224, 0.1),
        (96, 1.3),
        (32, 2.0),
        (17, 0.6),
        (224, 8.0),
    ] {
        let mut img: Vec<u8> = (0..side * side * 3)
            .map(|i| ((i * 7919) % 251) as u8)
            .collect();
        let k = ops::blur_kernel_size(side as u32);
        let want = blur_reference(&img, side, side, k, sigma as f64);
        let mut outs = Vec::new();
        for path in available_paths() {
            let mut x = img.clone();
            ops::blur_with(
                path,
                &mut x,
                (side, side),
                k,
                sigma,
                &mut Scratch::default(),
            );
            assert_close(
                &format!("side {side} sigma {sigma} {path:?}"),
                &x,
                &want,
                1,
                0.02,
            );
            outs.push(x);
        }
        assert!(outs.windows(2).all(|p| p[0] == p[1]), "CPU paths differ");
        ops::blur(&mut img, side, sigma, &mut Scratch::default());
        assert_eq!(img, outs[0]);
    }
    assert_eq!(ops::blur_kernel_size(224), 23);
    assert_eq!(ops::blur_kernel_size(96), 9);
}

#[test]
fn blur_keeps_a_flat_image_flat() {
    // The 16-bit sums neither overflow at 255 nor lose a level to truncation,
    // up to the largest sigma a recipe accepts (a kernel of 81 taps there).
    let max = fnc_augment::Recipe::MAX_BLUR_SIGMA as f32;
    for v in [0u8, 1, 127, 128, 254, 255] {
        for ((w, h), k, sigma) in [
            ((224usize, 224usize), 23, 0.1f32),
            ((224, 224), 23, 0.7),
            ((224, 224), 23, 2.0),
            ((224, 224), 23, 8.0),
            ((9, 9), 3, 2.0),
            ((120, 90), 81, max),
            ((120, 90), 201, max),
        ] {
            for path in available_paths() {
                let mut img = vec![v; w * h * 3];
                ops::blur_with(path, &mut img, (w, h), k, sigma, &mut Scratch::default());
                assert!(
                    img.iter().all(|&x| x == v),
                    "value {v}, {w}x{h}, kernel {k}, sigma {sigma}, {path:?}"
                );
            }
        }
    }
}

#[test]
fn crop_resize_matches_torchvision_antialiased_bilinear() {
    let (input, w, h) = fixture("input");
    let (want, _, _) = fixture("crop_5_3_40_30_to_24");
    let mut out = vec![0u8; 24 * 24 * 3];
    ops::crop_resize(
        &input,
        w,
        h,
        CropBox {
            x: 5,
            y: 3,
            w: 40,
            h: 30,
        },
        24,
        &mut out,
        &mut Scratch::default(),
    )
    .unwrap();
    assert_close("resized crop", &out, &want, 3, 0.8);
}

#[test]
fn a_box_resizes_as_if_cut_out_first() {
    // torchvision crops, then resizes: the pixels around the box must not
    // leak into its border rows and columns. Sharp stripes around the box
    // make any leak visible.
    let (w, h) = (90u32, 70u32);
    let img: Vec<u8> = (0..w * h * 3)
        .map(|i| {
            if (i / 3 % w / 3 + i / 3 / w / 2) % 2 == 0 {
                250
            } else {
                5
            }
        })
        .collect();
    for (b, side) in [
        (
            CropBox {
                x: 20,
                y: 15,
                w: 50,
                h: 40,
            },
            24u32,
        ),
        (
            CropBox {
                x: 1,
                y: 3,
                w: 80,
                h: 60,
            },
            32,
        ),
        (
            CropBox {
                x: 30,
                y: 30,
                w: 12,
                h: 9,
            },
            40,
        ),
    ] {
        let cut: Vec<u8> = (b.y..b.y + b.h)
            .flat_map(|y| {
                let at = ((y * w + b.x) * 3) as usize;
                img[at..at + b.w as usize * 3].to_vec()
            })
            .collect();
        let whole = CropBox {
            x: 0,
            y: 0,
            w: b.w,
            h: b.h,
        };
        let mut want = vec![0u8; (side * side * 3) as usize];
        ops::crop_resize(
            &cut,
            b.w,
            b.h,
            whole,
            side,
            &mut want,
            &mut Scratch::default(),
        )
        .unwrap();
        let mut got = vec![0u8; want.len()];
        ops::crop_resize(&img, w, h, b, side, &mut got, &mut Scratch::default()).unwrap();
        let off = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(off, 0, "{b:?} -> {side}: {off} bytes differ");
    }
}

#[test]
fn crop_without_scaling_is_a_copy_and_flip_mirrors() {
    let (input, w, h) = fixture("input");
    let mut out = vec![0u8; 20 * 20 * 3];
    ops::crop_resize(
        &input,
        w,
        h,
        CropBox {
            x: 7,
            y: 9,
            w: 20,
            h: 20,
        },
        20,
        &mut out,
        &mut Scratch::default(),
    )
    .unwrap();
    for y in 0..20 {
        for x in 0..20 {
            let s = (((y + 9) * w as usize) + x + 7) * 3;
            assert_eq!(&out[(y * 20 + x) * 3..][..3], &input[s..s + 3]);
        }
    }
    let mut f = out.clone();
    ops::flip_horizontal(&mut f, 20);
    for y in 0..20 {
        for x in 0..20 {
            assert_eq!(
                &f[(y * 20 + x) * 3..][..3],
                &out[(y * 20 + 19 - x) * 3..][..3]
            );
        }
    }
    ops::flip_horizontal(&mut f, 20);
    assert_eq!(f, out);
}

/// Plain f64 versions of the colour ops, applied in order with clipping.
fn jitter_reference(img: &[u8], j: &Jitter, grey: bool) -> Vec<u8> {
    let mut px: Vec<[f64; 3]> = img
        .chunks(3)
        .map(|p| {
            [
                p[0] as f64 / 255.0,
                p[1] as f64 / 255.0,
                p[2] as f64 / 255.0,
            ]
        })
        .collect();
    let luma = |p: &[f64; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    for op in j.order {
        match op {
            0 => px.iter_mut().for_each(|p| {
                p.iter_mut()
                    .for_each(|v| *v = (*v * j.brightness as f64).clamp(0.0, 1.0))
            }),
            1 => {
                let mean = px.iter().map(luma).sum::<f64>() / px.len() as f64;
                let f = j.contrast as f64;
                px.iter_mut().for_each(|p| {
                    p.iter_mut()
                        .for_each(|v| *v = (f * *v + (1.0 - f) * mean).clamp(0.0, 1.0))
                });
            }
            2 => {
                let f = j.saturation as f64;
                for p in px.iter_mut() {
                    let g = luma(p);
                    p.iter_mut()
                        .for_each(|v| *v = (f * *v + (1.0 - f) * g).clamp(0.0, 1.0));
                }
            }
            _ => {
                for p in px.iter_mut() {
                    let (r, g, b) = (p[0], p[1], p[2]);
                    let max = r.max(g).max(b);
                    let min = r.min(g).min(b);
                    let d = max - min;
                    if d <= 0.0 {
                        continue;
                    }
                    let s = d / max;
                    let h = if max == r {
                        ((g - b) / d).rem_euclid(6.0)
                    } else if max == g {
                        (b - r) / d + 2.0
                    } else {
                        (r - g) / d + 4.0
                    } / 6.0;
                    let h = (h + j.hue as f64).rem_euclid(1.0) * 6.0;
                    let c = max * s;
                    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
                    let m = max - c;
                    let (r1, g1, b1) = match h as u32 {
                        0 => (c, x, 0.0),
                        1 => (x, c, 0.0),
                        2 => (0.0, c, x),
                        3 => (0.0, x, c),
                        4 => (x, 0.0, c),
                        _ => (c, 0.0, x),
                    };
                    *p = [r1 + m, g1 + m, b1 + m];
                }
            }
        }
    }
    if grey {
        px.iter_mut().for_each(|p| {
            let g = luma(p);
            *p = [g; 3];
        });
    }
    px.iter()
        .flat_map(|p| p.map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8))
        .collect()
}

#[test]
fn jitter_matches_a_float_reference_in_every_order() {
    let (input, _, _) = fixture("input");
    let orders = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]];
    for (k, order) in orders.into_iter().enumerate() {
        let j = Jitter {
            order,
            brightness: 0.4 + 0.4 * k as f32,
            contrast: 1.6 - 0.3 * k as f32,
            saturation: 0.3 + 0.5 * k as f32,
            hue: -0.2 + 0.13 * k as f32,
        };
        for grey in [false, true] {
            let mut outs = Vec::new();
            for path in available_paths() {
                let mut img = input.clone();
                ops::jitter_with(path, &mut img, &j, grey, &mut Scratch::default());
                outs.push(img);
            }
            assert!(outs.windows(2).all(|p| p[0] == p[1]), "CPU paths differ");
            assert_close(
                &format!("{j:?} grey={grey}"),
                &outs[0],
                &jitter_reference(&input, &j, grey),
                2,
                0.2,
            );
        }
    }
}

#[test]
fn solarize_inverts_the_upper_half() {
    let mut v: Vec<u8> = (0..=255).collect();
    ops::solarize(&mut v);
    for (i, x) in v.iter().enumerate() {
        assert_eq!(*x as usize, if i >= 128 { 255 - i } else { i });
    }
}

/// Every order of the four ops, factors drawn from a small generator.
fn jitters(seed: u64) -> Vec<Jitter> {
    let mut s = seed;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut out = Vec::new();
    for code in 0..256u32 {
        let order = [0, 2, 4, 6].map(|sh| ((code >> sh) & 3) as u8);
        let mut sorted = order;
        sorted.sort();
        if sorted == [0, 1, 2, 3] {
            out.push(Jitter {
                order,
                brightness: 0.2 + 1.6 * next(),
                contrast: 0.2 + 1.6 * next(),
                saturation: 0.2 + 1.6 * next(),
                hue: -0.5 + next(),
            });
        }
    }
    assert_eq!(out.len(), 24);
    out
}

#[test]
fn fused_jitter_is_the_planar_reference_bit_for_bit_on_every_path() {
    let (photo, _, _) = fixture("input");
    // Views of 0, 1 and 7 pixels (under a lane group), 9, a tile's edges, a
    // 224 px view and an odd 1001 x 333 one (large enough that a mean summed in
    // another order or lane would move some byte across a rounding boundary);
    // the fixture photo; a flat and a saturated one where hue's selects meet.
    // Largest first, so that the reused scratch holds stale values for the
    // smaller ones.
    let noise = |n: usize, salt: usize| -> Vec<u8> {
        let mut s = (n * 2654435761 + salt) as u64 | 1;
        (0..3 * n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    };
    let mut images: Vec<Vec<u8>> = vec![noise(1001 * 333, 1), noise(224 * 224, 2)];
    images.extend([1537usize, 513, 512, 511, 9, 7, 1, 0].iter().map(|&n| {
        (0..3 * n)
            .map(|i| ((i * 7919 + n * 31) % 256) as u8)
            .collect()
    }));
    images.push(photo);
    images.push(vec![128; 3 * 600]);
    images.push((0..3 * 700).map(|i| [255, 0, 0][i % 3]).collect());
    // Orders the sampler never draws but a caller can write: no contrast,
    // contrast twice, a repeated op, codes past 3 (hue).
    let odd = [
        [0, 0, 2, 3],
        [1, 1, 2, 3],
        [3, 3, 3, 3],
        [7, 1, 9, 0],
        [2, 3, 1, 1],
    ];
    let mut planes = Vec::new();
    let mut scratch = Scratch::default();
    for (k, img) in images.iter().enumerate() {
        let mut js = jitters(k as u64);
        js.extend(
            odd.iter()
                .zip(jitters(99))
                .map(|(&order, j)| Jitter { order, ..j }),
        );
        for j in js {
            for grey in [false, true] {
                let mut want = img.clone();
                fnc_augment::jitter::jitter_planar(&mut want, &j, grey, &mut planes);
                for path in available_paths() {
                    let mut got = img.clone();
                    ops::jitter_with(path, &mut got, &j, grey, &mut scratch);
                    assert!(
                        got == want,
                        "{} path, image {k} ({} px), {j:?}, grey {grey}: {:?}",
                        path.name(),
                        img.len() / 3,
                        diff(&got, &want)
                    );
                }
            }
        }
    }
}

/// The ops write every value of the scratch buffers they read (none is
/// cleared between views): a scratch that made other views, larger and
/// smaller, gives the bytes of a fresh one, on both op semantics, every op on.
#[test]
fn a_reused_scratch_gives_the_views_of_a_fresh_one() {
    let (input, w, h) = fixture("input");
    for (implementation, randaugment) in [
        (AugmentImpl::Torchvision, None),
        (AugmentImpl::Reference, None),
        (AugmentImpl::Reference, Some(RandAugment::REFERENCE)),
    ] {
        let recipe = Recipe {
            implementation,
            randaugment,
            flip_p: 0.5,
            jitter_p: 1.0,
            blur_p: 1.0,
            grey_p: 0.3,
            ..Recipe::default()
        };
        let mut used = Scratch::default();
        for (k, side) in [224u32, 96, 224, 32, 160, 17].into_iter().enumerate() {
            for v in 0..6 {
                let d = draw_view(&mut ViewRng::new(7, 0, k as u64, v), w, h, &recipe);
                let n = (side * side * 3) as usize;
                let (mut fresh, mut again) = (vec![0u8; n], vec![1u8; n]);
                ops::apply_view(&input, w, h, &d, side, &mut fresh, &mut Scratch::default())
                    .unwrap();
                ops::apply_view(&input, w, h, &d, side, &mut again, &mut used).unwrap();
                assert!(
                    again == fresh,
                    "{implementation:?}, side {side}, view {v}: {d:?}"
                );
            }
        }
    }
}

/// Torchvision's antialiased bilinear resize of a box, from its definition in
/// f64 (Pillow's triangle filter widened by the scale, taps stopping at the
/// box's edges), horizontal pass then vertical, rounded once at the end.
fn resize_f64(src: &[u8], w: usize, b: CropBox, ow: usize, oh: usize) -> Vec<f64> {
    let taps = |len: usize, out: usize| -> Vec<(usize, Vec<f64>)> {
        let scale = len as f64 / out as f64;
        let support = scale.max(1.0);
        (0..out)
            .map(|i| {
                let c = (i as f64 + 0.5) * scale;
                let lo = ((c - support + 0.5).floor().max(0.0)) as usize;
                let hi = ((c + support + 0.5).floor() as usize).min(len);
                let ws: Vec<f64> = (lo..hi)
                    .map(|j| (1.0 - ((j as f64 + 0.5 - c) / support).abs()).max(0.0))
                    .collect();
                let total: f64 = ws.iter().sum();
                (lo, ws.iter().map(|v| v / total).collect())
            })
            .collect()
    };
    let (bx, by, bw, bh) = (b.x as usize, b.y as usize, b.w as usize, b.h as usize);
    let (tx, ty) = (taps(bw, ow), taps(bh, oh));
    let mut mid = vec![0.0; bh * ow * 3];
    for y in 0..bh {
        for (x, (lo, ws)) in tx.iter().enumerate() {
            for c in 0..3 {
                mid[(y * ow + x) * 3 + c] = ws
                    .iter()
                    .enumerate()
                    .map(|(k, wk)| wk * src[((by + y) * w + bx + lo + k) * 3 + c] as f64)
                    .sum();
            }
        }
    }
    let mut out = vec![0.0; oh * ow * 3];
    for (y, (lo, ws)) in ty.iter().enumerate() {
        for i in 0..ow * 3 {
            out[y * ow * 3 + i] = ws
                .iter()
                .enumerate()
                .map(|(k, wk)| wk * mid[(lo + k) * ow * 3 + i])
                .sum();
        }
    }
    out
}

#[test]
fn the_resize_is_within_a_level_of_its_definition_on_every_path() {
    // A noisy photo-like pattern, boxes of many shapes: shrinking by up to 9x,
    // enlarging, odd sizes, output widths off multiples of four, odd rows.
    let (w, h) = (203usize, 157usize);
    let mut seed = 0x9E37_79B9u32;
    let img: Vec<u8> = (0..w * h * 3)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let (x, y) = ((i / 3) % w, (i / 3) / w);
            ((x * 255 / w + y * 97 / h + (seed % 64) as usize) % 256) as u8
        })
        .collect();
    let cases = [
        (
            CropBox {
                x: 0,
                y: 0,
                w: 203,
                h: 157,
            },
            24,
            19,
        ),
        (
            CropBox {
                x: 7,
                y: 3,
                w: 150,
                h: 120,
            },
            61,
            37,
        ),
        (
            CropBox {
                x: 100,
                y: 50,
                w: 13,
                h: 9,
            },
            40,
            33,
        ),
        (
            CropBox {
                x: 1,
                y: 2,
                w: 180,
                h: 150,
            },
            20,
            17,
        ),
        (
            CropBox {
                x: 30,
                y: 20,
                w: 64,
                h: 64,
            },
            64,
            64,
        ),
        (
            CropBox {
                x: 202,
                y: 156,
                w: 1,
                h: 1,
            },
            5,
            3,
        ),
        (
            CropBox {
                x: 0,
                y: 0,
                w: 203,
                h: 1,
            },
            7,
            1,
        ),
    ];
    // One scratch for every call: stale bytes in reused buffers must not matter.
    let mut scratch = Scratch::default();
    for (b, ow, oh) in cases {
        let want = resize_f64(&img, w, b, ow, oh);
        let mut first: Option<Vec<u8>> = None;
        for path in available_paths() {
            for flip in [false, true] {
                let mut out = vec![0u8; ow * oh * 3];
                let size = (w as u32, h as u32);
                let dims = (ow as u32, oh as u32);
                ops::resize_box_with(path, &img, size, b, dims, flip, &mut out, &mut scratch)
                    .unwrap();
                if flip {
                    // Mirrored rows, the same bytes as a flip after it.
                    ops::flip_horizontal(&mut out, ow);
                }
                match &first {
                    None => first = Some(out.clone()),
                    Some(f) => assert_eq!(&out, f, "{b:?} -> {ow}x{oh}, {path:?}, flip {flip}"),
                }
                let worst = out
                    .iter()
                    .zip(&want)
                    .map(|(&o, &e)| (o as f64 - e).abs())
                    .fold(0.0, f64::max);
                assert!(worst <= 1.0, "{b:?} -> {ow}x{oh}, {path:?}: {worst} off");
            }
        }
    }
}

#[test]
fn flat_boxes_resize_to_the_same_flat_value() {
    let mut scratch = Scratch::default();
    for v in [0u8, 1, 127, 128, 254, 255] {
        let img = vec![v; 97 * 61 * 3];
        for path in available_paths() {
            let mut out = vec![0u8; 41 * 23 * 3];
            let b = CropBox {
                x: 3,
                y: 5,
                w: 90,
                h: 50,
            };
            ops::resize_box_with(
                path,
                &img,
                (97, 61),
                b,
                (41, 23),
                false,
                &mut out,
                &mut scratch,
            )
            .unwrap();
            assert!(out.iter().all(|&o| o == v), "value {v}, {path:?}");
        }
    }
}
