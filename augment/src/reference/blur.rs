//! The reference's Gaussian blur: separable, radius (side / 10) / 2, zero
//! ('SAME') padding, in float.
//!
//! Each output is its taps summed in tap order from 0.0 (no fused
//! multiply-adds; [`sum_taps`]), so every CPU path gives the same values. Taps
//! that weigh under [`NEGLIGIBLE`] of the kernel's total are left out: at sigma
//! 0.1 that is all but the centre, at sigma 2 none at radius 11.

use crate::simd::{best_path, dispatch, CpuPath};
use crate::taps::{sum_taps, BLOCK, BLOCK512};

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
    let n = w * 3;
    // tmp: one zero-padded row, then the horizontally blurred image (every
    // value written below: a reused buffer needs only the padding zeroed).
    let pw = (w + 2 * r) * 3;
    tmp.resize(pw + h * n, 0.0);
    let (padded, rows) = tmp.split_at_mut(pw);
    padded[..r * 3].fill(0.0);
    padded[r * 3 + n..].fill(0.0);
    let htaps: Vec<(f32, usize)> = k
        .iter()
        .enumerate()
        .map(|(t, &wt)| (wt, (skip + t) * 3))
        .collect();
    for (y, dst) in rows.chunks_exact_mut(n).enumerate() {
        padded[r * 3..r * 3 + n].copy_from_slice(&img[y * n..(y + 1) * n]);
        sum_taps::<B, _, _, _>(n, padded, &htaps, 0.0, |x, acc| {
            dst[x..x + acc.len()].copy_from_slice(acc)
        });
    }
    // Vertical: rows outside the image are zeros and add nothing.
    let mut vtaps = Vec::with_capacity(k.len());
    for (y, dst) in img.chunks_exact_mut(n).enumerate() {
        vtaps.clear();
        for (t, &wt) in k.iter().enumerate() {
            let yy = (y + skip + t) as i64 - r as i64;
            if (0..h as i64).contains(&yy) {
                vtaps.push((wt, yy as usize * n));
            }
        }
        sum_taps::<B, _, _, _>(n, rows, &vtaps, 0.0, |x, acc| {
            for (d, &a) in dst[x..x + acc.len()].iter_mut().zip(acc) {
                *d = a.clamp(0.0, 1.0);
            }
        });
    }
}
