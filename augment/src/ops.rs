//! The per-view operations, applied in place to a packed RGB8 view.

use fast_image_resize as fr;

use crate::params::{CropBox, Jitter, ViewDraw};
use crate::simd::{best_path, mac_u16, mac_u8, CpuPath};

/// Buffers one worker reuses from view to view.
#[derive(Default)]
pub struct Scratch {
    resizer: fr::Resizer,
    float: Vec<f32>,
    rows: Vec<u16>,
    acc: Vec<u32>,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch").finish_non_exhaustive()
    }
}

/// Crops `crop` out of the `w` x `h` RGB8 `src` and resizes it to `side` x `side`
/// into `out` (bilinear; antialiased when downscaling, as the filter support widens
/// with the scale).
pub fn crop_resize(
    src: &[u8],
    w: u32,
    h: u32,
    crop: CropBox,
    side: u32,
    out: &mut [u8],
    scratch: &mut Scratch,
) -> Result<(), String> {
    resize_box(src, (w, h), crop, (side, side), out, scratch)
}

/// Resizes the `crop` box of `src` (`size` = its width, height) to `out_size`.
pub fn resize_box(
    src: &[u8],
    size: (u32, u32),
    crop: CropBox,
    out_size: (u32, u32),
    out: &mut [u8],
    scratch: &mut Scratch,
) -> Result<(), String> {
    let src = fr::images::ImageRef::new(size.0, size.1, src, fr::PixelType::U8x3)
        .map_err(|e| e.to_string())?;
    let mut dst =
        fr::images::Image::from_slice_u8(out_size.0, out_size.1, out, fr::PixelType::U8x3)
            .map_err(|e| e.to_string())?;
    let opts = fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear))
        .crop(crop.x as f64, crop.y as f64, crop.w as f64, crop.h as f64);
    scratch
        .resizer
        .resize(&src, &mut dst, &opts)
        .map_err(|e| e.to_string())
}

/// Mirrors each row.
pub fn flip_horizontal(img: &mut [u8], side: usize) {
    for row in img.chunks_exact_mut(side * 3) {
        let (mut i, mut j) = (0, side - 1);
        while i < j {
            for c in 0..3 {
                row.swap(i * 3 + c, j * 3 + c);
            }
            i += 1;
            j -= 1;
        }
    }
}

const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

#[inline(always)]
fn luma(p: &[f32]) -> f32 {
    LUMA[0] * p[0] + LUMA[1] * p[1] + LUMA[2] * p[2]
}

#[inline(always)]
fn brightness(px: &mut [f32], f: f32) {
    for v in px.iter_mut() {
        *v = (*v * f).clamp(0.0, 1.0);
    }
}

#[inline(always)]
fn contrast(px: &mut [f32], f: f32) {
    let n = (px.len() / 3).max(1) as f32;
    let mean = px.chunks_exact(3).map(luma).sum::<f32>() / n;
    let off = (1.0 - f) * mean;
    for v in px.iter_mut() {
        *v = (f * *v + off).clamp(0.0, 1.0);
    }
}

#[inline(always)]
fn saturation(px: &mut [f32], f: f32) {
    for p in px.chunks_exact_mut(3) {
        let g = (1.0 - f) * luma(p);
        for v in p.iter_mut() {
            *v = (f * *v + g).clamp(0.0, 1.0);
        }
    }
}

/// Rotates hue by `shift` of a turn (RGB -> HSV -> RGB, as torchvision does).
#[inline(always)]
fn hue(px: &mut [f32], shift: f32) {
    for p in px.chunks_exact_mut(3) {
        let (r, g, b) = (p[0], p[1], p[2]);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let d = max - min;
        if d <= 0.0 {
            continue; // grey: hue is undefined and the shift changes nothing
        }
        let s = d / max;
        let mut h = if max == r {
            (g - b) / d
        } else if max == g {
            2.0 + (b - r) / d
        } else {
            4.0 + (r - g) / d
        } / 6.0;
        h += shift;
        h -= h.floor(); // wrap to [0, 1): one rounding instruction, unlike rem_euclid
        if h >= 1.0 {
            h = 0.0;
        }
        let v = max;
        let h6 = h * 6.0;
        let i = h6.floor();
        let f = h6 - i;
        let (pp, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let (nr, ng, nb) = match i as i32 % 6 {
            0 => (v, t, pp),
            1 => (q, v, pp),
            2 => (pp, v, t),
            3 => (pp, q, v),
            4 => (t, pp, v),
            _ => (v, pp, q),
        };
        p[0] = nr;
        p[1] = ng;
        p[2] = nb;
    }
}

#[inline(always)]
fn grey_f32(px: &mut [f32]) {
    for p in px.chunks_exact_mut(3) {
        let g = luma(p);
        p.fill(g);
    }
}

/// Greyscale in integer arithmetic (ITU-R 601 weights in Q16).
pub fn grey_u8(img: &mut [u8]) {
    for p in img.chunks_exact_mut(3) {
        let g = (19595 * p[0] as u32 + 38470 * p[1] as u32 + 7471 * p[2] as u32 + 32768) >> 16;
        p.fill(g.min(255) as u8);
    }
}

/// Colour distortion in float, clipping to [0, 1] after each op; also greyscale
/// when asked, before the single rounding back to u8.
pub fn jitter(img: &mut [u8], j: &Jitter, grey: bool, scratch: &mut Scratch) {
    jitter_with(best_path(), img, j, grey, scratch)
}

/// [`jitter`] on a chosen CPU path. Float code without fused multiply-adds, so
/// every path gives the same bytes.
pub fn jitter_with(path: CpuPath, img: &mut [u8], j: &Jitter, grey: bool, scratch: &mut Scratch) {
    crate::simd::dispatch(path, || jitter_scalar(img, j, grey, &mut scratch.float))
}

#[inline(always)]
fn jitter_scalar(img: &mut [u8], j: &Jitter, grey: bool, px: &mut Vec<f32>) {
    px.clear();
    px.extend(img.iter().map(|&v| v as f32 * (1.0 / 255.0)));
    for op in j.order {
        match op {
            0 => brightness(px, j.brightness),
            1 => contrast(px, j.contrast),
            2 => saturation(px, j.saturation),
            _ => hue(px, j.hue),
        }
    }
    if grey {
        grey_f32(px);
    }
    for (o, v) in img.iter_mut().zip(px.iter()) {
        *o = (v * 255.0 + 0.5) as u8;
    }
}

/// Kernel side for a view side: 10% of it, made odd (23 at 224, 9 at 96).
pub fn blur_kernel_size(side: u32) -> usize {
    let k = (side as f64 * 0.1) as usize;
    (k | 1).max(3)
}

/// Integer Gaussian weights (Q15, summing to exactly 1 << 15) for taps
/// -r..=r, r = min(kernel radius, ceil(4 sigma)): farther taps weigh less than
/// e^-8 of the centre and vanish in rounding.
pub fn blur_weights(kernel: usize, sigma: f32) -> Vec<i32> {
    let r = (kernel / 2).min((4.0 * sigma).ceil() as usize);
    let s2 = 2.0 * (sigma as f64) * (sigma as f64);
    let w: Vec<f64> = (-(r as i64)..=r as i64)
        .map(|i| (-((i * i) as f64) / s2).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    let mut q: Vec<i32> = w
        .iter()
        .map(|v| (v / sum * 32768.0).round() as i32)
        .collect();
    let err = 32768 - q.iter().sum::<i32>();
    q[r] += err;
    q
}

/// Index reflected into 0..n the way torchvision pads (…2 1 | 0 1 2 … n-1 | n-2 …).
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let mut i = i;
    if n == 1 {
        return 0;
    }
    while i < 0 || i >= n {
        if i < 0 {
            i = -i;
        }
        if i >= n {
            i = 2 * (n - 1) - i;
        }
    }
    i as usize
}

/// Separable Gaussian blur of a square view (kernel 10% of the side), fixed
/// point, reflect borders.
pub fn blur(img: &mut [u8], side: usize, sigma: f32, scratch: &mut Scratch) {
    let k = blur_kernel_size(side as u32);
    blur_with(best_path(), img, (side, side), k, sigma, scratch)
}

/// Gaussian blur of a `size` = (width, height) RGB8 image with a `kernel`-tap
/// kernel, on a chosen CPU path (every path gives the same bytes).
pub fn blur_with(
    path: CpuPath,
    img: &mut [u8],
    size: (usize, usize),
    kernel: usize,
    sigma: f32,
    scratch: &mut Scratch,
) {
    let (w, h) = size;
    let wts = blur_weights(kernel, sigma);
    let r = wts.len() / 2;
    let stride = w * 3;
    // Horizontal: u8 -> u16 in Q8 (value * 256). The interior accumulates one
    // tap at a time over the whole row (vectorisable); borders reflect.
    let rows = &mut scratch.rows;
    rows.clear();
    rows.resize(h * stride, 0);
    let acc = &mut scratch.acc;
    acc.resize(stride, 0);
    let (lo, hi) = (r.min(w), w.saturating_sub(r).max(r.min(w)));
    for y in 0..h {
        let src = &img[y * stride..(y + 1) * stride];
        let dst = &mut rows[y * stride..(y + 1) * stride];
        if hi > lo {
            let n = (hi - lo) * 3;
            let a = &mut acc[..n];
            a.fill(1 << 6);
            for (k, &wt) in wts.iter().enumerate() {
                let s = &src[(lo + k - r) * 3..(lo + k - r) * 3 + n];
                mac_u8(path, a, s, wt as u32);
            }
            for (d, &a) in dst[lo * 3..hi * 3].iter_mut().zip(a.iter()) {
                *d = (a >> 7) as u16;
            }
        }
        for x in (0..lo).chain(hi..w) {
            for c in 0..3 {
                let mut sum = 1i32 << 6;
                for (k, &wt) in wts.iter().enumerate() {
                    let xx = reflect(x as isize + k as isize - r as isize, w);
                    sum += wt * src[xx * 3 + c] as i32;
                }
                dst[x * 3 + c] = (sum >> 7) as u16;
            }
        }
    }
    // Vertical: accumulate whole rows (vectorisable), Q8 * Q15 -> Q23.
    for y in 0..h {
        acc.fill(1 << 22);
        for (k, &wt) in wts.iter().enumerate() {
            let yy = reflect(y as isize + k as isize - r as isize, h);
            mac_u16(path, acc, &rows[yy * stride..(yy + 1) * stride], wt as u32);
        }
        let out = &mut img[y * stride..(y + 1) * stride];
        for (o, &a) in out.iter_mut().zip(acc.iter()) {
            *o = (a >> 23).min(255) as u8;
        }
    }
}

/// Inverts pixels at or above the midpoint (BYOL's solarize).
pub fn solarize(img: &mut [u8]) {
    for v in img.iter_mut() {
        if *v >= 128 {
            *v = 255 - *v;
        }
    }
}

/// Makes one view: crop + resize into `out`, then flip, colour, grey, blur, solarize.
pub fn apply_view(
    src: &[u8],
    w: u32,
    h: u32,
    d: &ViewDraw,
    side: u32,
    out: &mut [u8],
    scratch: &mut Scratch,
) -> Result<(), String> {
    crop_resize(src, w, h, d.crop, side, out, scratch)?;
    let s = side as usize;
    if d.flip {
        flip_horizontal(out, s);
    }
    match &d.jitter {
        Some(j) => jitter(out, j, d.grey, scratch),
        None if d.grey => grey_u8(out),
        None => {}
    }
    if let Some(sigma) = d.blur_sigma {
        blur(out, s, sigma, scratch);
    }
    if d.solarize {
        solarize(out);
    }
    Ok(())
}
