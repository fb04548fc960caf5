//! [`sum_symmetric_u16`] over a whole row, with AVX2 intrinsics where the path
//! has them. LLVM vectorises the portable code's high-half products through
//! 32-bit lanes (a widening, a `vpmulhuw` on the widened lanes, a pack and a
//! permute for every 16 values); written out, it is one `vpmulhuw` per 16
//! values. The same wrapping 16-bit sums as the portable code, which stays the
//! reference and runs the scalar path and every row's tail (tested equal).
#![allow(unsafe_code)]

use crate::simd::CpuPath;
use crate::taps::sum_symmetric_u16;

/// `out[i]` for `i` in `0..out.len()`: [`sum_symmetric_u16`]'s sum at `i`
/// (`centre` = (weight, offset), `pairs` = (weight, left, right) offsets into
/// `src`). An offset whose `out.len()` values do not fit in `src` panics (on
/// the portable path's slice index), never reads past it.
#[inline(always)]
pub fn sum_row_u16(
    path: CpuPath,
    src: &[u16],
    centre: (u16, usize),
    pairs: &[(u16, usize, usize)],
    init: u16,
    out: &mut [u16],
) {
    let n = out.len();
    #[cfg(target_arch = "x86_64")]
    if path.has_avx2() {
        let fits = |o: usize| o.checked_add(n).is_some_and(|end| end <= src.len());
        if fits(centre.1) && pairs.iter().all(|&(_, l, r)| fits(l) && fits(r)) {
            // SAFETY: `has_avx2` holds only for paths whose CPU has AVX2
            // (CpuPath is detected, never built); every offset `o` was checked
            // above to have `src[o..o + n]` in bounds, and `out` has `n` values.
            unsafe { row_avx2(src, centre, pairs, init, out) };
            return;
        }
    }
    let _ = path;
    sum_symmetric_u16(n, src, centre, pairs, init, |x, acc| {
        out[x..x + acc.len()].copy_from_slice(acc)
    });
}

/// # Safety
/// The CPU has AVX2; for the centre's and every pair's offsets `o`,
/// `o + out.len() <= src.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_avx2(
    src: &[u16],
    (wc, c): (u16, usize),
    pairs: &[(u16, usize, usize)],
    init: u16,
    out: &mut [u16],
) {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi16, _mm256_loadu_si256, _mm256_mulhi_epu16, _mm256_set1_epi16,
        _mm256_storeu_si256,
    };
    const LANES: usize = 16;
    let n = out.len();
    let s = src.as_ptr();
    let o = out.as_mut_ptr();
    // Blocks of four registers, then of one; what is left, portable.
    let mut x = 0;
    for regs in [4usize, 1] {
        let step = regs * LANES;
        while x + step <= n {
            let mut acc = [_mm256_set1_epi16(init as i16); 4];
            let wcv = _mm256_set1_epi16(wc as i16);
            for (k, a) in acc.iter_mut().enumerate().take(regs) {
                // SAFETY: c + x + k * LANES + 16 <= c + n <= src.len().
                let v = unsafe { _mm256_loadu_si256(s.add(c + x + k * LANES).cast::<__m256i>()) };
                *a = _mm256_add_epi16(*a, _mm256_mulhi_epu16(v, wcv));
            }
            for &(w, l, r) in pairs {
                let wv = _mm256_set1_epi16(w as i16);
                for (k, a) in acc.iter_mut().enumerate().take(regs) {
                    let at = x + k * LANES;
                    // SAFETY: l + at + 16 <= l + n <= src.len(), and so for r.
                    let (u, t) = unsafe {
                        (
                            _mm256_loadu_si256(s.add(l + at).cast::<__m256i>()),
                            _mm256_loadu_si256(s.add(r + at).cast::<__m256i>()),
                        )
                    };
                    *a = _mm256_add_epi16(*a, _mm256_mulhi_epu16(_mm256_add_epi16(u, t), wv));
                }
            }
            for (k, a) in acc.iter().enumerate().take(regs) {
                // SAFETY: x + k * LANES + 16 <= n = out.len().
                unsafe { _mm256_storeu_si256(o.add(x + k * LANES).cast::<__m256i>(), *a) };
            }
            x += step;
        }
    }
    let rest = &mut out[x..];
    sum_symmetric_u16(rest.len(), &src[x..], (wc, c), pairs, init, |i, acc| {
        rest[i..i + acc.len()].copy_from_slice(acc)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::available_paths;

    #[test]
    fn every_path_sums_a_row_as_the_portable_code_does() {
        // Values and weights over their whole ranges (sums wrap alike).
        let src: Vec<u16> = (0..900u32).map(|v| (v * 40_503 % 65_521) as u16).collect();
        let pairs = [(65_535u16, 0, 30), (1, 3, 27), (20_000, 9, 21), (0, 12, 18)];
        for n in [0, 1, 15, 16, 17, 63, 64, 65, 80, 127, 672, 870] {
            let mut want = vec![0u16; n];
            sum_symmetric_u16(n, &src, (40_000, 15), &pairs, 7, |x, acc| {
                want[x..x + acc.len()].copy_from_slice(acc)
            });
            for path in available_paths() {
                let mut got = vec![1u16; n];
                sum_row_u16(path, &src, (40_000, 15), &pairs, 7, &mut got);
                assert_eq!(got, want, "n = {n} on {path:?}");
            }
        }
    }

    #[test]
    fn an_offset_past_the_row_panics_on_every_path() {
        let src = vec![0u16; 100];
        for path in available_paths() {
            for (centre, pairs) in [(40, vec![]), (0, vec![(1u16, 0, 37)])] {
                let run = std::panic::catch_unwind(|| {
                    let mut out = vec![0u16; 64];
                    sum_row_u16(path, &src, (1, centre), &pairs, 0, &mut out);
                });
                assert!(run.is_err(), "{path:?}: centre {centre}, {pairs:?}");
            }
        }
    }
}
