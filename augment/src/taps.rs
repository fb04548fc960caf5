//! Sums of taps over a row: the inner loop of the separable filters (both
//! blurs). Outputs are summed in blocks of [`BLOCK`] held in registers while
//! the taps stream past, instead of tap by tap over a whole row (which stores
//! every partial sum to memory and back): the same sums, in the same order.
//!
//! Compiled per CPU path by inlining into a [`crate::simd::dispatch`]ed body.

use std::ops::{Add, Mul};

/// Outputs summed at once: four 256-bit or two 512-bit registers of 32-bit lanes.
pub const BLOCK: usize = 32;

/// For `x` in 0..n by blocks: `acc[i] = init + w0 * src[off0 + x + i] + w1 *
/// src[off1 + x + i] + ...` over `taps` = (weight, offset) in order, each
/// product added left to right (so float sums are the same on every path),
/// then `emit(x, &acc)` with the block's `len <= BLOCK` sums.
///
/// Every `src[off + x + i]` for a tap and `x + i < n` must exist; a caller
/// that gets this wrong panics on the slice index, never reads past `src`.
#[inline(always)]
pub fn sum_taps<S, A, F>(n: usize, src: &[S], taps: &[(A, usize)], init: A, mut emit: F)
where
    S: Copy,
    A: Copy + From<S> + Add<Output = A> + Mul<Output = A>,
    F: FnMut(usize, &[A]),
{
    let mut x = 0;
    while x < n {
        let len = BLOCK.min(n - x);
        let mut acc = [init; BLOCK];
        for &(w, off) in taps {
            let s = &src[off + x..off + x + len];
            match s.first_chunk::<BLOCK>() {
                // A whole block: a fixed trip count, unrolled into registers.
                Some(s) => {
                    for i in 0..BLOCK {
                        acc[i] = acc[i] + w * A::from(s[i]);
                    }
                }
                None => {
                    for (a, &v) in acc.iter_mut().zip(s) {
                        *a = *a + w * A::from(v);
                    }
                }
            }
        }
        emit(x, &acc[..len]);
        x += len;
    }
}

/// [`sum_taps`] for a symmetric kernel in integers: `acc[i] = init + wc *
/// src[c + x + i] + sum over (w, l, r) in pairs of w * (src[l + x + i] +
/// src[r + x + i])`, one multiply per pair of taps. Integer sums are exact in
/// any order, so this is the two-sided sum to the bit.
#[inline(always)]
pub fn sum_symmetric<S, F>(
    n: usize,
    src: &[S],
    (wc, c): (u32, usize),
    pairs: &[(u32, usize, usize)],
    init: u32,
    mut emit: F,
) where
    S: Copy,
    u32: From<S>,
    F: FnMut(usize, &[u32]),
{
    let mut x = 0;
    while x < n {
        let len = BLOCK.min(n - x);
        let mut acc = [init; BLOCK];
        let s = &src[c + x..c + x + len];
        for (a, &v) in acc.iter_mut().zip(s) {
            *a += wc * u32::from(v);
        }
        for &(w, l, r) in pairs {
            let (sl, sr) = (&src[l + x..l + x + len], &src[r + x..r + x + len]);
            match (sl.first_chunk::<BLOCK>(), sr.first_chunk::<BLOCK>()) {
                (Some(sl), Some(sr)) => {
                    for i in 0..BLOCK {
                        acc[i] += w * (u32::from(sl[i]) + u32::from(sr[i]));
                    }
                }
                _ => {
                    for ((a, &u), &v) in acc.iter_mut().zip(sl).zip(sr) {
                        *a += w * (u32::from(u) + u32::from(v));
                    }
                }
            }
        }
        emit(x, &acc[..len]);
        x += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_tap_over_whole_and_partial_blocks() {
        let src: Vec<u16> = (0..200).map(|v| (v * 7 % 31) as u16).collect();
        let taps = [(3u32, 0), (5, 4), (11, 9)];
        for n in [1, 31, 32, 33, 64, 100, 191] {
            let mut got = vec![0u32; n];
            sum_taps(n, &src, &taps, 1, |x, acc| {
                got[x..x + acc.len()].copy_from_slice(acc)
            });
            let want: Vec<u32> = (0..n)
                .map(|i| {
                    1 + taps
                        .iter()
                        .map(|&(w, o)| w * src[o + i] as u32)
                        .sum::<u32>()
                })
                .collect();
            assert_eq!(got, want, "n = {n}");
            let mut sym = vec![0u32; n];
            sum_symmetric(n, &src, (5, 4), &[(3, 0, 8), (11, 9, 1)], 1, |x, acc| {
                sym[x..x + acc.len()].copy_from_slice(acc)
            });
            let want: Vec<u32> = (0..n)
                .map(|i| {
                    let v = |o: usize| src[o + i] as u32;
                    1 + 5 * v(4) + 3 * (v(0) + v(8)) + 11 * (v(9) + v(1))
                })
                .collect();
            assert_eq!(sym, want, "n = {n}, symmetric");
        }
    }
}
