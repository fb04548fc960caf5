//! The bicubic resize's horizontal pass (each output pixel: four source
//! pixels, three channels, one weight per tap), one output pixel a 512-bit
//! register where the path has AVX-512: its twelve products in one multiply,
//! then each channel's four summed left to right through lane permutes. The
//! same products and the same order of additions as the portable loop (no
//! fused multiply-adds), so the same floats (tested); the portable loop runs
//! every other path.
#![allow(unsafe_code)]

use crate::simd::CpuPath;

/// For each output pixel `x` of `dst` (three floats each): with `(first, w) =
/// taps[x]` and `p = padded[3 first..]`, channel `c` is `w[0] p[c] + w[1]
/// p[3 + c] + w[2] p[6 + c] + w[3] p[9 + c]`. A column whose twelve values
/// would run past `padded` (the resize never makes one) is written as zeros on
/// every path, never left holding an earlier view's values.
#[inline(always)]
pub(crate) fn hpass_row(
    path: CpuPath,
    padded: &[f32],
    taps: &[(usize, [f32; 4])],
    dst: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if path.has_avx512() {
        // SAFETY: `has_avx512` holds only for paths whose CPU has AVX-512 F
        // (CpuPath is detected, never built); `row_avx512` bounds every load
        // and store itself.
        unsafe { row_avx512(padded, taps, dst) };
        return;
    }
    let _ = path;
    for (d, &(first, w)) in dst.chunks_exact_mut(3).zip(taps) {
        match padded.get(first * 3..).and_then(|p| p.first_chunk::<12>()) {
            Some(p) => {
                for c in 0..3 {
                    d[c] = w[0] * p[c] + w[1] * p[3 + c] + w[2] * p[6 + c] + w[3] * p[9 + c];
                }
            }
            None => d.fill(0.0),
        }
    }
}

/// # Safety
/// The CPU has AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_avx512(padded: &[f32], taps: &[(usize, [f32; 4])], dst: &mut [f32]) {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_mul_ps,
        _mm512_permutexvar_ps, _mm512_set_epi32, _mm512_set_ps, _mm512_setzero_ps,
    };
    // Lane i of shift k reads lane i + k (lanes past 15 read 15, unused).
    let shift = |k: i32| {
        let l = |i: i32| (i + k).min(15);
        _mm512_set_epi32(
            l(15),
            l(14),
            l(13),
            l(12),
            l(11),
            l(10),
            l(9),
            l(8),
            l(7),
            l(6),
            l(5),
            l(4),
            l(3),
            l(2),
            l(1),
            l(0),
        )
    };
    let (s3, s6, s9) = (shift(3), shift(6), shift(9));
    for (x, &(first, w)) in taps.iter().enumerate().take(dst.len() / 3) {
        let at = first * 3;
        if at.checked_add(12).is_none_or(|end| end > padded.len()) {
            // SAFETY: as below, lanes 0..3 write dst[3x..3x + 3].
            unsafe {
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(3 * x), 0b111, _mm512_setzero_ps())
            };
            continue;
        }
        let wv = _mm512_set_ps(
            0.0, 0.0, 0.0, 0.0, w[3], w[3], w[3], w[2], w[2], w[2], w[1], w[1], w[1], w[0], w[0],
            w[0],
        );
        // SAFETY: lanes 0..12 read padded[at..at + 12], checked above; the
        // masked-off lanes read nothing.
        let p = unsafe { _mm512_maskz_loadu_ps(0x0FFF, padded.as_ptr().add(at)) };
        let q = _mm512_mul_ps(wv, p);
        let s = _mm512_add_ps(q, _mm512_permutexvar_ps(s3, q));
        let s = _mm512_add_ps(s, _mm512_permutexvar_ps(s6, q));
        let s = _mm512_add_ps(s, _mm512_permutexvar_ps(s9, q));
        // SAFETY: x < dst.len() / 3, so lanes 0..3 write dst[3x..3x + 3]; the
        // masked-off lanes write nothing.
        unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr().add(3 * x), 0b111, s) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::available_paths;

    #[test]
    fn every_path_gives_the_portable_floats_and_zeros_columns_past_the_row() {
        let padded: Vec<f32> = (0..3 * 40)
            .map(|i| ((i * 37) % 101) as f32 / 97.0)
            .collect();
        let mut taps: Vec<(usize, [f32; 4])> = (0..30)
            .map(|x| (x * 36 / 30, [-0.07 + x as f32 * 1e-3, 0.55, 0.6, -0.08]))
            .collect();
        // The last two columns' four pixels run past the 40-pixel row (the
        // first 30 end at pixel 39 or before).
        taps.push((38, [0.25; 4]));
        taps.push((40, [0.25; 4]));
        let mut outs = Vec::new();
        for path in available_paths() {
            let mut dst = vec![-1f32; 3 * taps.len()];
            hpass_row(path, &padded, &taps, &mut dst);
            assert!(dst[3 * 30..].iter().all(|&v| v == 0.0), "{path:?}");
            outs.push(dst);
        }
        for o in &outs[1..] {
            assert!(o
                .iter()
                .zip(&outs[0])
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
