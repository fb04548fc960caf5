//! Sums of taps over a row: the inner loop of the separable filters (both
//! blurs). Outputs are summed in blocks of [`BLOCK`] (or [`BLOCK512`]) held in registers while
//! the taps stream past, instead of tap by tap over a whole row (which stores
//! every partial sum to memory and back): the same sums, in the same order.
//!
//! Compiled per CPU path by inlining into a [`crate::simd::dispatch`]ed body.

use std::ops::{Add, Mul};

/// Outputs summed at once where the path has 256-bit registers: eight of them
/// of 32-bit lanes, so that eight chains of float additions overlap.
pub const BLOCK: usize = 64;

/// The same with 512-bit registers (and 32 of them): eight chains too.
pub const BLOCK512: usize = 128;

/// For `x` in 0..n by blocks of `B` ([`BLOCK`] or [`BLOCK512`]): `acc[i] =
/// init + w0 * src[off0 + x + i] + w1 *
/// src[off1 + x + i] + ...` over `taps` = (weight, offset) in order, each
/// product added left to right (so float sums are the same on every path),
/// then `emit(x, &acc)` with the block's `len <= B` sums.
///
/// Every `src[off + x + i]` for a tap and `x + i < n` must exist; a caller
/// that gets this wrong panics on the slice index, never reads past `src`.
#[inline(always)]
pub fn sum_taps<const B: usize, S, A, F>(
    n: usize,
    src: &[S],
    taps: &[(A, usize)],
    init: A,
    mut emit: F,
) where
    S: Copy,
    A: Copy + From<S> + Add<Output = A> + Mul<Output = A>,
    F: FnMut(usize, &[A]),
{
    let mut x = 0;
    while x < n {
        let len = B.min(n - x);
        let mut acc = [init; B];
        for &(w, off) in taps {
            let s = &src[off + x..off + x + len];
            match s.first_chunk::<B>() {
                // A whole block: a fixed trip count, unrolled into registers.
                Some(s) => {
                    for i in 0..B {
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

/// Outputs of 16-bit lanes summed at once: four 256-bit or two 512-bit registers.
pub const BLOCK16: usize = 64;

/// `(a * w) >> 16`, the high half of a 16 x 16-bit product (`vpmulhuw`).
#[inline(always)]
pub fn mul_high(a: u16, w: u16) -> u16 {
    ((u32::from(a) * u32::from(w)) >> 16) as u16
}

/// [`sum_taps`] for a symmetric kernel in 16-bit lanes, each product's high
/// half: for `x` in 0..n by blocks, `acc[i]` is `init`, plus `mul_high(v(c),
/// wc)`, plus `mul_high(v(l) + v(r), w)` for each (w, l, r) in `pairs`, where
/// `v(o)` is `src[o + x + i]`; then `emit(x, &acc)` with the block's sums.
/// Twice the lanes of 32-bit sums and one `vpmulhuw` a pair of taps. The
/// caller keeps every value in range (a pair's sum and the whole sum below
/// 2^16: weights summing to at most 2^16 do it for values below 2^15 and a
/// small `init`). Wrapping arithmetic: the same sums on every path, never a
/// panic.
#[inline(always)]
pub fn sum_symmetric_u16<F>(
    n: usize,
    src: &[u16],
    (wc, c): (u16, usize),
    pairs: &[(u16, usize, usize)],
    init: u16,
    mut emit: F,
) where
    F: FnMut(usize, &[u16]),
{
    let v = |s: u16| s;
    let mut x = 0;
    while x < n {
        let len = BLOCK16.min(n - x);
        let mut acc = [init; BLOCK16];
        let s = &src[c + x..c + x + len];
        for (a, &u) in acc.iter_mut().zip(s) {
            *a = a.wrapping_add(mul_high(v(u), wc));
        }
        for &(w, l, r) in pairs {
            let (sl, sr) = (&src[l + x..l + x + len], &src[r + x..r + x + len]);
            match (sl.first_chunk::<BLOCK16>(), sr.first_chunk::<BLOCK16>()) {
                (Some(sl), Some(sr)) => {
                    for i in 0..BLOCK16 {
                        let p = v(sl[i]).wrapping_add(v(sr[i]));
                        acc[i] = acc[i].wrapping_add(mul_high(p, w));
                    }
                }
                _ => {
                    for ((a, &u), &t) in acc.iter_mut().zip(sl).zip(sr) {
                        *a = a.wrapping_add(mul_high(v(u).wrapping_add(v(t)), w));
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
        for n in [1, 31, 32, 33, 64, 100, 128, 129, 191] {
            let mut got = vec![0u32; n];
            sum_taps::<BLOCK, _, _, _>(n, &src, &taps, 1, |x, acc| {
                got[x..x + acc.len()].copy_from_slice(acc)
            });
            let mut wide = vec![0u32; n];
            sum_taps::<BLOCK512, _, _, _>(n, &src, &taps, 1, |x, acc| {
                wide[x..x + acc.len()].copy_from_slice(acc)
            });
            assert_eq!(got, wide, "n = {n}");
            let want: Vec<u32> = (0..n)
                .map(|i| {
                    1 + taps
                        .iter()
                        .map(|&(w, o)| w * src[o + i] as u32)
                        .sum::<u32>()
                })
                .collect();
            assert_eq!(got, want, "n = {n}");
            let mut hi = vec![0u16; n];
            let pairs = [(30000u16, 0, 8), (9000, 9, 1)];
            sum_symmetric_u16(n, &src, (20000, 4), &pairs, 3, |x, acc| {
                hi[x..x + acc.len()].copy_from_slice(acc)
            });
            let want: Vec<u16> = (0..n)
                .map(|i| {
                    let v = |o: usize| src[o + i] as u64;
                    let h = |a: u64, w: u64| (a * w) >> 16;
                    (3 + h(v(4), 20000) + h(v(0) + v(8), 30000) + h(v(9) + v(1), 9000)) as u16
                })
                .collect();
            assert_eq!(hi, want, "n = {n}, 16-bit");
        }
    }
}
