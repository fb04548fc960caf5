//! The reference's Gaussian blur: separable, radius (side / 10) / 2, zero
//! ('SAME') padding, in float.
//!
//! The kernel is symmetric, so each output is the sum over pairs of taps at
//! the same distance, outermost first: each pair's two values added, then
//! multiplied by their weight and added to the sum in one fused
//! multiply-add, the centre tap's last ([`sum_pairs`]). Half the multiplies
//! of tap-by-tap sums, and one rounding fewer per tap; the fused multiply-add
//! is IEEE's on every path (an instruction on the SIMD paths and on
//! AArch64, the C library's `fmaf` on x86-64's scalar path), so every path
//! gives the same values. Taps that weigh under [`NEGLIGIBLE`] of the
//! kernel's total are left out: at sigma 0.1 that is all but the centre, at
//! sigma 2 none at radius 11.

use crate::simd::{best_path, dispatch, CpuPath};
use crate::taps::{sum_pairs, BLOCK, BLOCK512};

/// A tap under this share of the kernel moves no output by more than 1e-9
/// (values are in [0, 1], at most 2 x 50 such taps at radius 50): a thousandth
/// of the tolerance against TensorFlow, and below f32's resolution at 1.
const NEGLIGIBLE: f32 = 1e-11;

/// The reference's kernel radius for a view of height `side`: (side / 10) / 2.
pub fn blur_radius(side: usize) -> usize {
    (side / 10) / 2
}

/// The normalised weights of taps -r..=r (TF's: exp(-x^2 / 2 sigma^2) over their
/// sum), then the first tap kept and the kept weights: the outer taps under
/// [`NEGLIGIBLE`] dropped symmetrically.
fn kernel(r: usize, sigma: f32) -> (usize, Vec<f32>) {
    let two_s2 = 2.0 * sigma * sigma;
    let mut k: Vec<f32> = (-(r as i64)..=r as i64)
        .map(|i| (-((i * i) as f32) / two_s2).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    let skip = k.iter().take(r).take_while(|&&v| v < NEGLIGIBLE).count();
    (skip, k[skip..k.len() - skip].to_vec())
}

/// Separable Gaussian of radius `r` (horizontal, then vertical) with zero
/// padding, clipped to [0, 1]; `tmp` is scratch.
pub fn blur(img: &mut [f32], (w, h): (usize, usize), r: usize, sigma: f32, tmp: &mut Vec<f32>) {
    blur_with(best_path(), img, (w, h), r, sigma, tmp)
}

/// [`blur`] on a chosen CPU path (every path gives the same values).
pub fn blur_with(
    path: CpuPath,
    img: &mut [f32],
    size: (usize, usize),
    r: usize,
    sigma: f32,
    tmp: &mut Vec<f32>,
) {
    dispatch(
        path,
        #[inline(always)]
        || {
            if path.has_avx512() {
                blur_impl::<BLOCK512>(img, size, r, sigma, tmp)
            } else {
                blur_impl::<BLOCK>(img, size, r, sigma, tmp)
            }
        },
    )
}

// The body of [`blur`], compiled per CPU path.
#[inline(always)]
fn blur_impl<const B: usize>(
    img: &mut [f32],
    (w, h): (usize, usize),
    r: usize,
    sigma: f32,
    tmp: &mut Vec<f32>,
) {
    let (skip, k) = kernel(r, sigma);
    // k is symmetric about its centre tap m (the offsets' squares are).
    let m = k.len() / 2;
    let n = w * 3;
    // tmp: one zero-padded row, a row of zeros (the vertical pass's rows
    // outside the image), then the horizontally blurred image (every value
    // written below: a reused buffer needs only the zeros written).
    let pw = (w + 2 * r) * 3;
    tmp.resize(pw + n + h * n, 0.0);
    let (padded, rows) = tmp.split_at_mut(pw);
    padded[..r * 3].fill(0.0);
    padded[r * 3 + n..].fill(0.0);
    rows[..n].fill(0.0);
    // Tap t of k reads padded pixel skip + t.
    let hpairs: Vec<(f32, usize, usize)> = (1..=m)
        .rev()
        .map(|j| (k[m + j], (skip + m - j) * 3, (skip + m + j) * 3))
        .collect();
    let hc = (k[m], (skip + m) * 3);
    for (y, dst) in rows[n..].chunks_exact_mut(n).enumerate() {
        padded[r * 3..r * 3 + n].copy_from_slice(&img[y * n..(y + 1) * n]);
        sum_pairs::<B>(n, padded, &hpairs, hc, |x, acc| {
            dst[x..x + acc.len()].copy_from_slice(acc)
        });
    }
    // Vertical, output row by output row (a loop over column blocks inside
    // each row measured no faster). Rows outside the image read the row of
    // zeros (offset 0 of `rows`), row y is at n (y + 1); pairs wholly outside
    // add nothing and are left out. The centre tap is row y itself (skip + m
    // = r).
    let row = |yy: i64| (0..h as i64).contains(&yy).then(|| (yy as usize + 1) * n);
    let mut vpairs = Vec::with_capacity(m);
    for (y, dst) in img.chunks_exact_mut(n).enumerate() {
        vpairs.clear();
        for j in (1..=m).rev() {
            let (above, below) = (row(y as i64 - j as i64), row((y + j) as i64));
            if above.is_some() || below.is_some() {
                vpairs.push((k[m + j], above.unwrap_or(0), below.unwrap_or(0)));
            }
        }
        sum_pairs::<B>(n, rows, &vpairs, (k[m], (y + 1) * n), |x, acc| {
            for (d, &a) in dst[x..x + acc.len()].iter_mut().zip(acc) {
                *d = a.clamp(0.0, 1.0);
            }
        });
    }
}
