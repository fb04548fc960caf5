//! The plain recipe's resize of a box of a packed RGB8 image: torchvision's
//! antialiased bilinear (Pillow's convolution: a triangle filter, widened by the
//! scale when downscaling, its taps stopping at the box's edges as if the box
//! were cut out first), in 14-bit fixed point.
//!
//! The vertical pass runs first, over the box's rows, into a padded buffer; the
//! horizontal pass then works on the output's rows only (fewer than the box's
//! when downscaling, and it is the dearer pass per tap). It can write each row
//! mirrored, which is the recipe's horizontal flip at no cost. (torchvision
//! and Pillow run the horizontal pass first: rounding between the passes in
//! the other order, outputs differ from theirs by a level here and there.)
//! Each output is
//! its taps' weighted sum, rounded once per pass: every CPU path gives the same
//! bytes (the horizontal pass has AVX2 intrinsics in `resize_avx2`, tested
//! against the portable pass here).

use crate::params::CropBox;
use crate::simd::{dispatch, CpuPath};

/// Fixed-point bits of the weights: each output's weights sum to 2^14.
pub(crate) const BITS: u32 = 14;
const HALF: i32 = 1 << (BITS - 1);

/// One axis's taps: output i reads inputs `start[i]..start[i] + count[i]` with
/// the weights at `weights[i * stride..]` (zeros after `count[i]`).
#[derive(Default)]
pub(crate) struct Taps {
    pub start: Vec<usize>,
    pub count: Vec<usize>,
    pub weights: Vec<i16>,
    pub stride: usize,
    exact: Vec<f64>,
}

impl Taps {
    /// The taps that resize `len` inputs to `out` outputs (both at least 1).
    pub(crate) fn compute(&mut self, len: usize, out: usize) {
        let scale = len as f64 / out as f64;
        // The triangle's support (1 input) widened by the scale when shrinking.
        let support = scale.max(1.0);
        let max_taps = 2 * support.ceil() as usize + 1;
        self.stride = max_taps.next_multiple_of(4);
        self.start.clear();
        self.count.clear();
        self.weights.clear();
        self.weights.resize(out * self.stride, 0);
        self.exact.resize(max_taps, 0.0);
        let inv = 1.0 / support;
        for i in 0..out {
            let centre = (i as f64 + 0.5) * scale;
            // Non-negative values: `as usize` is their floor.
            let lo = (centre - support + 0.5).max(0.0) as usize;
            let hi = ((centre + support + 0.5) as usize).clamp(lo + 1, len);
            let n = (hi - lo).min(max_taps);
            let mut total = 0.0;
            for (k, e) in self.exact[..n].iter_mut().enumerate() {
                let t = ((lo + k) as f64 + 0.5 - centre) * inv;
                *e = (1.0 - t.abs()).max(0.0);
                total += *e;
            }
            let w = &mut self.weights[i * self.stride..i * self.stride + n];
            if total <= 0.0 {
                // Not reached for n >= 1 (the centre lies within half an input
                // of some tap); kept so that no division by zero is possible.
                w[0] = 1 << BITS;
            } else {
                // Largest remainders: each weight its exact share rounded down,
                // then the units left over to the largest fractions, so that
                // they sum to exactly 2^14 (a flat area stays flat) and each is
                // within one unit of its share.
                let unit = f64::from(1 << BITS) / total;
                let mut left = 1i32 << BITS;
                for (q, e) in w.iter_mut().zip(self.exact[..n].iter_mut()) {
                    let share = *e * unit;
                    *q = share as i16;
                    left -= i32::from(*q);
                    *e = share - f64::from(*q);
                }
                // The `left` (< n) largest fractions, ties to the first: one
                // scan each (n is a few taps), where a sort cost more.
                let frac = &mut self.exact[..n];
                for _ in 0..left.max(0) {
                    let mut best = 0;
                    for k in 1..n {
                        if frac[k] > frac[best] {
                            best = k;
                        }
                    }
                    w[best] += 1;
                    frac[best] = -1.0;
                }
            }
            self.start.push(lo);
            self.count.push(n);
        }
    }
}

/// Buffers one worker reuses from view to view.
#[derive(Default)]
pub(crate) struct ResizeScratch {
    rows: Taps,
    cols: Taps,
    /// The vertical pass's output, `mid_stride` bytes a row (padded).
    mid: Vec<u8>,
    /// The vertical pass's sums for one row.
    acc: Vec<i32>,
    /// The AVX2 pass's weights, per output column and pair of taps.
    pub pairs: Vec<[i16; 8]>,
}

/// Resizes the `crop` box of the `w`-pixel-wide RGB8 `src` to `out_w` x `out_h`
/// into `out`, mirrored left to right if `flip`. The caller has checked the box
/// (inside the image, not empty), the output (not empty) and `out`'s length.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resize(
    path: CpuPath,
    src: &[u8],
    w: usize,
    crop: CropBox,
    (out_w, out_h): (usize, usize),
    flip: bool,
    out: &mut [u8],
    s: &mut ResizeScratch,
) {
    let (cx, cy, cw, ch) = (
        crop.x as usize,
        crop.y as usize,
        crop.w as usize,
        crop.h as usize,
    );
    s.rows.compute(ch, out_h);
    s.cols.compute(cw, out_w);
    // The horizontal pass reads whole groups of four taps (16 bytes from the
    // group's first pixel): the padding keeps those reads in each row.
    let mid_stride = 3 * (cw + s.cols.stride) + 16;
    s.mid.resize(mid_stride * out_h, 0);
    let (rows, mid, acc) = (&s.rows, &mut s.mid, &mut s.acc);
    dispatch(
        path,
        #[inline(always)]
        || vertical(src, 3 * w, 3 * cx, 3 * cw, cy, rows, mid, mid_stride, acc),
    );
    crate::resize_avx2::horizontal(path, &s.mid, mid_stride, &s.cols, flip, out, &mut s.pairs);
}

/// Output row y of `mid` from the box's rows: `row_bytes` bytes from byte `x0`
/// of rows `y0 + start..` of `src` (`stride` bytes a row). `acc` is scratch.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn vertical(
    src: &[u8],
    stride: usize,
    x0: usize,
    row_bytes: usize,
    y0: usize,
    taps: &Taps,
    mid: &mut [u8],
    mid_stride: usize,
    acc: &mut Vec<i32>,
) {
    acc.resize(row_bytes, 0);
    for (y, dst) in mid.chunks_exact_mut(mid_stride).enumerate() {
        let (first, n) = (y0 + taps.start[y], taps.count[y]);
        let w = &taps.weights[y * taps.stride..y * taps.stride + n];
        let row = |k: usize| &src[(first + k) * stride + x0..(first + k) * stride + x0 + row_bytes];
        // One tap at a time over the whole row: plain loops that vectorise.
        for (a, &v) in acc.iter_mut().zip(row(0)) {
            *a = HALF + i32::from(w[0]) * i32::from(v);
        }
        for (k, &wk) in w.iter().enumerate().skip(1) {
            for (a, &v) in acc.iter_mut().zip(row(k)) {
                *a += i32::from(wk) * i32::from(v);
            }
        }
        for (d, &a) in dst[..row_bytes].iter_mut().zip(acc.iter()) {
            *d = (a >> BITS).clamp(0, 255) as u8;
        }
    }
}

/// The horizontal pass, portable: output pixel x of each row of `mid` into
/// `out` (at `out_w - 1 - x` if `flip`).
#[inline(always)]
pub(crate) fn horizontal_rows(
    mid: &[u8],
    mid_stride: usize,
    taps: &Taps,
    flip: bool,
    out: &mut [u8],
) {
    let out_w = taps.start.len();
    for (src, dst) in mid
        .chunks_exact(mid_stride)
        .zip(out.chunks_exact_mut(3 * out_w))
    {
        for x in 0..out_w {
            let (first, n) = (taps.start[x], taps.count[x]);
            let w = &taps.weights[x * taps.stride..x * taps.stride + n];
            let mut acc = [HALF; 3];
            for (k, &wk) in w.iter().enumerate() {
                let p = &src[3 * (first + k)..3 * (first + k) + 3];
                for (a, &v) in acc.iter_mut().zip(p) {
                    *a += i32::from(wk) * i32::from(v);
                }
            }
            let at = if flip { out_w - 1 - x } else { x };
            for (d, a) in dst[3 * at..3 * at + 3].iter_mut().zip(acc) {
                *d = (a >> BITS).clamp(0, 255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_stay_inside_the_input() {
        let mut t = Taps::default();
        for (len, out) in [
            (500, 224),
            (224, 224),
            (40, 224),
            (1, 7),
            (7, 1),
            (4000, 3),
            (333, 224),
        ] {
            t.compute(len, out);
            for i in 0..out {
                let w = &t.weights[i * t.stride..(i + 1) * t.stride];
                let sum: i32 = w.iter().map(|&q| i32::from(q)).sum();
                assert_eq!(sum, 1 << BITS, "{len} -> {out}, output {i}");
                assert!(w.iter().all(|&q| q >= 0));
                assert!(t.count[i] >= 1 && t.start[i] + t.count[i] <= len);
            }
        }
        // The same size: each output is its input.
        t.compute(9, 9);
        for i in 0..9 {
            assert_eq!(t.weights[i * t.stride + (i - t.start[i])], 1 << BITS);
        }
    }
}
