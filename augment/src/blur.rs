//! The plain recipe's Gaussian blur: separable, reflect borders, in 16-bit
//! fixed point. Weights are Q16 and each product keeps its high half
//! (`vpmulhuw`: sixteen lanes a 256-bit register), the pass between the two
//! axes holds Q7 values, and each sum starts at half its truncations' worth
//! so that they do not bias the result. Integer arithmetic: every CPU path
//! gives the same bytes (tested), within one level of an f64 blur.

use crate::ops::Scratch;
use crate::simd::{best_path, dispatch, CpuPath};
use crate::taps_avx2::sum_row_u16;

/// Kernel side for a view side: 10% of it, made odd (23 at 224, 9 at 96).
pub fn blur_kernel_size(side: u32) -> usize {
    let k = (side as f64 * 0.1) as usize;
    (k | 1).max(3)
}

/// Integer Gaussian weights (Q16) for taps -r..=r, r = min(kernel radius,
/// ceil(4 sigma)): farther taps weigh less than e^-8 of the centre and vanish
/// in rounding. They sum to exactly 1 << 16 wherever the centre can take the
/// rounding's remainder: for every sigma up to [`crate::Recipe::MAX_BLUR_SIGMA`]
/// (only a near-flat kernel of hundreds of taps could round its others past
/// 1 << 16, and the centre then stops at 0).
pub fn blur_weights(kernel: usize, sigma: f32) -> Vec<u32> {
    let r = (kernel / 2).min((4.0 * sigma).ceil() as usize);
    let s2 = 2.0 * (sigma as f64) * (sigma as f64);
    let w: Vec<f64> = (-(r as i64)..=r as i64)
        .map(|i| (-((i * i) as f64) / s2).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    let mut q: Vec<u32> = w
        .iter()
        .map(|v| (v / sum * 65536.0).round() as u32)
        .collect();
    // The centre takes the rounding's remainder (the others are symmetric, so
    // at most 2^16 - its own share).
    let others: u32 = q.iter().sum::<u32>() - q[r];
    q[r] = 65536u32.saturating_sub(others);
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
/// kernel, on a chosen CPU path (every path gives the same bytes). An image
/// without pixels, or shorter than `size` says, is left as it is.
pub fn blur_with(
    path: CpuPath,
    img: &mut [u8],
    size: (usize, usize),
    kernel: usize,
    sigma: f32,
    scratch: &mut Scratch,
) {
    let wts = blur_weights(kernel, sigma);
    let r = wts.len() / 2;
    if wts[r] >= 1 << 16 {
        // Every other tap rounds to 0: the identity (and a centre weight of
        // 2^16 would not fit the 16-bit lanes).
        return;
    }
    let (rows, padded) = scratch.blur_buffers();
    dispatch(
        path,
        #[inline(always)]
        || blur_impl(path, img, size, &wts, rows, padded),
    )
}

// The body of [`blur_with`], compiled per CPU path. `wts` are Q16 with a
// centre below 2^16.
#[inline(always)]
fn blur_impl(
    path: CpuPath,
    img: &mut [u8],
    (w, h): (usize, usize),
    wts: &[u32],
    rows: &mut Vec<u16>,
    padded: &mut Vec<u16>,
) {
    let r = wts.len() / 2;
    let stride = w * 3;
    if w == 0 || h == 0 || img.len() < h * stride {
        // No pixels, or fewer bytes than the size says: left as it is.
        return;
    }
    let q16 = |v: u32| v.min(u32::from(u16::MAX)) as u16;
    // Half a unit per truncated product (r + 1 of them, rounded down), so that
    // truncation does not bias.
    let half = (r as u16).div_ceil(2);
    // Horizontal: u8 << 7 (pairs below 2^16) times Q16 -> Q7. Each row is
    // copied as u8 << 7 into a reflect-padded buffer, then its taps summed (no
    // border cases, one widening a pixel).
    // Every element is overwritten below: no need to clear.
    rows.resize(h * stride, 0);
    padded.resize((w + 2 * r) * 3, 0);
    let centre = (q16(wts[r]), r * 3);
    let hpairs: Vec<(u16, usize, usize)> = (0..r)
        .map(|k| (q16(wts[k]), k * 3, (2 * r - k) * 3))
        .collect();
    for (y, dst) in rows.chunks_exact_mut(stride).enumerate() {
        let src = &img[y * stride..(y + 1) * stride];
        for (d, &v) in padded[r * 3..(r + w) * 3].iter_mut().zip(src) {
            *d = u16::from(v) << 7;
        }
        for p in (0..r).chain(r + w..w + 2 * r) {
            let x = reflect(p as isize - r as isize, w);
            for c in 0..3 {
                padded[p * 3 + c] = u16::from(src[x * 3 + c]) << 7;
            }
        }
        sum_row_u16(path, padded, centre, &hpairs, half, dst);
    }
    // Vertical: Q7 (pairs below 2^16) times Q16 -> Q7, rounded to u8 (the
    // padded row, no longer needed, holds each row's sums).
    let mut vpairs = Vec::with_capacity(r);
    let sums = &mut padded[..stride];
    for (y, out) in img.chunks_exact_mut(stride).take(h).enumerate() {
        let row = |k: usize| reflect(y as isize + k as isize - r as isize, h) * stride;
        vpairs.clear();
        vpairs.extend((0..r).map(|k| (q16(wts[k]), row(k), row(2 * r - k))));
        let centre = (q16(wts[r]), y * stride);
        sum_row_u16(path, rows, centre, &vpairs, half + 64, sums);
        for (o, &a) in out.iter_mut().zip(sums.iter()) {
            *o = (a >> 7).min(255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::available_paths;

    #[test]
    fn buffers_holding_other_values_give_the_bytes_of_fresh_ones() {
        for (w, h) in [(224usize, 224usize), (17, 9), (1, 5)] {
            let img: Vec<u8> = (0..w * h * 3).map(|i| (i * 7919 % 251) as u8).collect();
            for path in available_paths() {
                for sigma in [0.3f32, 2.0] {
                    let wts = blur_weights(23, sigma);
                    let (mut a, mut b) = (img.clone(), img.clone());
                    blur_impl(path, &mut a, (w, h), &wts, &mut Vec::new(), &mut Vec::new());
                    let (mut rows, mut padded) = (vec![u16::MAX; 300_000], vec![u16::MAX; 5_000]);
                    blur_impl(path, &mut b, (w, h), &wts, &mut rows, &mut padded);
                    assert!(a == b, "{w}x{h}, sigma {sigma}, {path:?}");
                }
            }
        }
    }
}
