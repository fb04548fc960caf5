//! The reference implementation's view ops (`--augment-impl reference`): the
//! SimCLR v2 TF `data_util` ops the official FNC code calls, with TF's numerics.
//!
//! The view stays in float in [0, 1] from the resize to the end, as in the
//! reference, where it is never rounded (the model takes floats); here it is
//! rounded once, to uint8, when written into the batch. RandAugment works on
//! uint8 in the reference too: the view goes through TF's
//! `convert_image_dtype` (x 255.5, truncated) and back (/ 255).
//!
//! Numerics followed: `resize_bicubic` without half-pixel centres (Keys' cubic
//! with a = -0.75 from TF's 1024-entry table, indices clamped to the crop);
//! `adjust_contrast` about each channel's own mean, unclipped; saturation and
//! hue through TF's HSV kernels (saturation clipped to [0, 1] in HSV);
//! multiplicative brightness; clip to [0, 1] after each colour op;
//! `rgb_to_grayscale` weights 0.2989 / 0.5870 / 0.1140; a separable Gaussian of
//! radius (side / 10) / 2 with zero ('SAME') padding.

mod blur;
mod colour;
mod hpass_avx512;
mod hpass_rows8;

pub use blur::{blur, blur_radius, blur_with};
pub use colour::{
    brightness, clip, contrast, grey, hue, jitter, jitter_sequential, jitter_with, saturation,
};

use crate::params::CropBox;
use crate::simd::{best_path, byte_of, dispatch, CpuPath};

const TABLE: usize = 1024;

/// TF's cubic coefficient table for a = -0.75 (its legacy, non-half-pixel mode).
fn coeffs() -> &'static [f32; 2 * (TABLE + 1)] {
    static T: std::sync::OnceLock<[f32; 2 * (TABLE + 1)]> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let a = -0.75f64;
        let mut t = [0f32; 2 * (TABLE + 1)];
        for i in 0..=TABLE {
            let x = (i as f64 / TABLE as f64) as f32 as f64;
            t[2 * i] = (((a + 2.0) * x - (a + 3.0)) * x * x + 1.0) as f32;
            let x = x + 1.0;
            t[2 * i + 1] = (((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a) as f32;
        }
        t
    })
}

/// The four source indices (clamped to 0..n) and weights of output `o`.
#[inline(always)]
fn taps(o: usize, scale: f32, n: usize) -> ([usize; 4], [f32; 4]) {
    let t = coeffs();
    let at = o as f32 * scale;
    let base = at.floor();
    let delta = at - base;
    let off = (delta * TABLE as f32).round_ties_even() as usize;
    let base = base as i64;
    let clamp = |i: i64| i.clamp(0, n as i64 - 1) as usize;
    (
        [
            clamp(base - 1),
            clamp(base),
            clamp(base + 1),
            clamp(base + 2),
        ],
        [
            t[off * 2 + 1],
            t[off * 2],
            t[(TABLE - off) * 2],
            t[(TABLE - off) * 2 + 1],
        ],
    )
}

/// Crops `crop` out of the `width`-wide RGB8 `src` and resizes it to `out_w` x
/// `out_h` as TF's `resize_bicubic` (legacy mode), into interleaved floats in
/// [0, 1] scale (not clipped: bicubic overshoots), mirrored left to right when
/// `flip` (the same values as [`flip`] after it: each column is computed as
/// before and stored at its mirror image). `rows` is scratch.
pub fn crop_resize_bicubic(
    src: &[u8],
    width: u32,
    crop: CropBox,
    (out_w, out_h): (usize, usize),
    flip: bool,
    out: &mut Vec<f32>,
    rows: &mut Vec<f32>,
) {
    crop_resize_bicubic_with(
        best_path(),
        src,
        width,
        crop,
        (out_w, out_h),
        flip,
        out,
        rows,
    )
}

/// [`crop_resize_bicubic`] on a chosen CPU path (every path gives the same values).
#[allow(clippy::too_many_arguments)]
pub fn crop_resize_bicubic_with(
    path: CpuPath,
    src: &[u8],
    width: u32,
    crop: CropBox,
    size: (usize, usize),
    flip: bool,
    out: &mut Vec<f32>,
    rows: &mut Vec<f32>,
) {
    dispatch(
        path,
        #[inline(always)]
        || crop_resize_bicubic_impl(path, src, width, crop, size, flip, out, rows),
    )
}

// The body of [`crop_resize_bicubic`], compiled per CPU path.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn crop_resize_bicubic_impl(
    path: CpuPath,
    src: &[u8],
    width: u32,
    crop: CropBox,
    (out_w, out_h): (usize, usize),
    flip: bool,
    out: &mut Vec<f32>,
    rows: &mut Vec<f32>,
) {
    let (cw, ch) = (crop.w as usize, crop.h as usize);
    let n = out_w * 3;
    if n == 0 || out_h == 0 || cw == 0 || ch == 0 {
        // Nothing to resize (the engine never asks): no output, or zeros for
        // a box without pixels.
        out.clear();
        out.resize(out_h * n, 0.0);
        return;
    }
    let stride = width as usize * 3;
    let sx = cw as f32 / out_w as f32;
    let sy = ch as f32 / out_h as f32;
    // Each output column's first tap and weights. The taps are four consecutive
    // source pixels from first - 1, clamped into the crop; on a row padded by
    // its edge pixel (one on the left, two on the right) they are the four
    // pixels from `first` itself (`first` = the clamped base, which is the
    // base: 0 <= x * sx < cw).
    let mut xtaps: Vec<(usize, [f32; 4])> = (0..out_w)
        .map(|x| {
            let (ix, w) = taps(x, sx, cw);
            (ix[1], w)
        })
        .collect();
    if flip {
        // Output column x is stored at out_w - 1 - x.
        xtaps.reverse();
    }
    out.resize(out_h * n, 0.0);
    let line = |r: usize| {
        let at = (crop.y as usize + r) * stride + crop.x as usize * 3;
        &src[at..at + cw * 3]
    };
    // Groups of eight rows where the path has AVX2 but not AVX-512, whose
    // blocked per-row pass is the faster there (69.5 against 79.6 us on a
    // 375x281 box, docs/benchmarks.md). Up to a shrink by 4 every crop row
    // is a tap of some output row; beyond 8, a group's rows are mostly
    // skipped ones and the per-row pass does less.
    let grouped = path.has_avx2()
        && !path.has_avx512()
        && sy <= 8.0
        && by_groups(path, &line, (cw, ch), sy, &xtaps, out, rows);
    if !grouped {
        by_rows(path, &line, (cw, ch), sy, &xtaps, out, rows);
    }
}

/// Output row `y` of the vertical pass from the horizontal pass's rows
/// `r0..r3` (the output row's taps, top to bottom) and weights `wy`.
#[inline(always)]
fn vpass(wy: [f32; 4], [r0, r1, r2, r3]: [&[f32]; 4], out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = wy[0] * r0[i] + wy[1] * r1[i] + wy[2] * r2[i] + wy[3] * r3[i];
    }
}

/// The resize with the horizontal pass per crop row, as the vertical pass
/// first needs it, into a ring of four rows (row r in slot r % 4: an
/// output's taps are a run of consecutive rows, some repeated at the edges,
/// so distinct rows never share a slot). Each crop row is done at most once
/// (the taps only move down) and the ring stays in the L1 cache, where a
/// whole horizontally resized crop would not fit in L2. Every value of `rows`
/// and `out` is written before it is read: reused buffers need no clearing.
#[inline(always)]
fn by_rows<'a>(
    path: CpuPath,
    line: &impl Fn(usize) -> &'a [u8],
    (cw, ch): (usize, usize),
    sy: f32,
    xtaps: &[(usize, [f32; 4])],
    out: &mut [f32],
    rows: &mut Vec<f32>,
) {
    let n = xtaps.len() * 3;
    rows.resize(4 * n + (cw + 3) * 3, 0.0);
    let (ring, padded) = rows.split_at_mut(4 * n);
    let mut held = [usize::MAX; 4];
    let plan = if path.has_avx512() {
        hpass_avx512::Plan::new(xtaps, padded.len())
    } else {
        hpass_avx512::Plan::default()
    };
    const S: f32 = 1.0 / 255.0;
    for (y, out) in out.chunks_exact_mut(n).enumerate() {
        let (iy, wy) = taps(y, sy, ch);
        for &r in &iy {
            if held[r % 4] == r {
                continue;
            }
            held[r % 4] = r;
            // Each byte to float once (the same value every tap reads).
            for (p, &v) in padded[3..(cw + 1) * 3].iter_mut().zip(line(r)) {
                *p = v as f32 * S;
            }
            for c in 0..3 {
                let (left, right) = (padded[3 + c], padded[cw * 3 + c]);
                padded[c] = left;
                padded[(cw + 1) * 3 + c] = right;
                padded[(cw + 2) * 3 + c] = right;
            }
            let slot = r % 4;
            hpass_avx512::hpass_row(
                path,
                padded,
                xtaps,
                &plan,
                &mut ring[slot * n..(slot + 1) * n],
            );
        }
        vpass(wy, iy.map(|r| &ring[(r % 4) * n..(r % 4 + 1) * n]), out);
    }
}

/// The resize with the horizontal pass eight crop rows at a time
/// ([`hpass_rows8`]), into a ring of two such groups (group g in slot g % 2:
/// an output's four taps span at most two consecutive groups). Each group is
/// done at most once (the taps only move down); rows past the crop's last
/// repeat it. The same floats as [`by_rows`]. Returns false where the path
/// lacks AVX2 (the caller checks first; nothing is written to `out` then).
#[inline(always)]
fn by_groups<'a>(
    path: CpuPath,
    line: &impl Fn(usize) -> &'a [u8],
    (cw, ch): (usize, usize),
    sy: f32,
    xtaps: &[(usize, [f32; 4])],
    out: &mut [f32],
    rows: &mut Vec<f32>,
) -> bool {
    const G: usize = hpass_rows8::ROWS;
    let n = xtaps.len() * 3;
    let strips = hpass_rows8::Strips::new(xtaps, cw);
    rows.resize(2 * G * n + strips.scratch(), 0.0);
    let (ring, cols) = rows.split_at_mut(2 * G * n);
    let mut held = [usize::MAX; 2];
    for (y, out) in out.chunks_exact_mut(n).enumerate() {
        let (iy, wy) = taps(y, sy, ch);
        for &r in &iy {
            let g = r / G;
            if held[g % 2] == g {
                continue;
            }
            held[g % 2] = g;
            let lines = std::array::from_fn(|i| line((G * g + i).min(ch.saturating_sub(1))));
            let dst = &mut ring[(g % 2) * G * n..(g % 2 + 1) * G * n];
            if !hpass_rows8::rows8(path, lines, xtaps, &strips, cols, dst) {
                // Only on the first group: the path and the lengths are the
                // same for every group.
                return false;
            }
        }
        let at = |r: usize| ((r / G) % 2 * G + r % G) * n;
        vpass(wy, iy.map(|r| &ring[at(r)..at(r) + n]), out);
    }
    true
}

/// Mirrors each row of an interleaved float image.
pub fn flip(img: &mut [f32], w: usize) {
    for row in img.chunks_exact_mut(w * 3) {
        let (px, _) = row.as_chunks_mut::<3>();
        px.reverse();
    }
}

/// `convert_image_dtype(x, uint8, saturate=True)`: clip, x 255.5, truncate.
pub fn to_u8_tf(img: &[f32], out: &mut [u8]) {
    dispatch(
        best_path(),
        #[inline(always)]
        || {
            for (o, &v) in out.iter_mut().zip(img) {
                *o = byte_of(v.clamp(0.0, 1.0) * 255.5);
            }
        },
    )
}

/// `convert_image_dtype(x, float32)` of uint8: x / 255.
pub fn from_u8(img: &[u8], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(img) {
        *o = v as f32 * (1.0 / 255.0);
    }
}

/// The final rounding of a float view into the batch's uint8.
pub fn round_u8(img: &[f32], out: &mut [u8]) {
    dispatch(
        best_path(),
        #[inline(always)]
        || {
            for (o, &v) in out.iter_mut().zip(img) {
                *o = byte_of(v.clamp(0.0, 1.0) * 255.0 + 0.5);
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubic_table_weights_sum_to_one() {
        for o in 0..50 {
            let (_, w) = taps(o, 0.37, 1000);
            let s: f32 = w.iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "{w:?}");
        }
    }
}
