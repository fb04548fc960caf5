//! Sums of taps over a row: the inner loop of the separable filters (both
//! blurs). Outputs are summed in blocks of [`BLOCK`] (or [`BLOCK512`]) held in registers while
//! the taps stream past, instead of tap by tap over a whole row (which stores
//! every partial sum to memory and back): the same sums, in the same order.
//!
//! Compiled per CPU path by inlining into a [`crate::simd::dispatch`]ed body.

/// Outputs summed at once where the path has 256-bit registers: eight of them
/// of 32-bit lanes, so that eight chains of float additions overlap.
pub const BLOCK: usize = 64;

/// The same with 512-bit registers (and 32 of them): eight chains too.
pub const BLOCK512: usize = 128;

/// For `x` in 0..n by blocks of `B` ([`BLOCK`] or [`BLOCK512`]): `acc[i]`
/// from 0.0, then for each (w, l, r) of `pairs` in order `acc[i] = (src[l +
/// x + i] + src[r + x + i]).mul_add(w, acc[i])`, then the same with `wc` and
/// `src[c + x + i]` alone; then `emit(x, &acc)` with the block's `len <= B`
/// sums. Every offset plus `n` must lie within `src` (a caller that gets this
/// wrong gets a slice index panic or wrong sums, never a read past it).
#[inline(always)]
pub fn sum_pairs<const B: usize>(
    n: usize,
    src: &[f32],
    pairs: &[(f32, usize, usize)],
    (wc, c): (f32, usize),
    mut emit: impl FnMut(usize, &[f32]),
) {
    let mut x = 0;
    // Whole blocks: fixed trip counts, the sums held in registers.
    while x + B <= n {
        let mut acc = [0f32; B];
        // (Each first_chunk is whole where the caller keeps every offset
        // plus n within src: x + B <= n.)
        for &(w, l, r) in pairs {
            if let (Some(sl), Some(sr)) = (
                src[l + x..].first_chunk::<B>(),
                src[r + x..].first_chunk::<B>(),
            ) {
                for i in 0..B {
                    acc[i] = (sl[i] + sr[i]).mul_add(w, acc[i]);
                }
            }
        }
        if let Some(sc) = src[c + x..].first_chunk::<B>() {
            for i in 0..B {
                acc[i] = sc[i].mul_add(wc, acc[i]);
            }
        }
        emit(x, &acc);
        x += B;
    }
    // The rest.
    let len = n - x;
    if len > 0 {
        let mut acc = [0f32; B];
        for &(w, l, r) in pairs {
            let (sl, sr) = (&src[l + x..l + n], &src[r + x..r + n]);
            for ((a, &u), &v) in acc.iter_mut().zip(sl).zip(sr) {
                *a = (u + v).mul_add(w, *a);
            }
        }
        for (a, &v) in acc.iter_mut().zip(&src[c + x..c + n]) {
            *a = v.mul_add(wc, *a);
        }
        emit(x, &acc[..len]);
    }
}

/// Outputs of 16-bit lanes summed at once: four 256-bit or two 512-bit registers.
pub const BLOCK16: usize = 64;

/// `(a * w) >> 16`, the high half of a 16 x 16-bit product (`vpmulhuw`).
#[inline(always)]
pub fn mul_high(a: u16, w: u16) -> u16 {
    ((u32::from(a) * u32::from(w)) >> 16) as u16
}

/// A symmetric kernel's sums (as [`sum_pairs`], the centre first here) in
/// 16-bit lanes, each product's high
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
        for n in [1, 31, 32, 33, 64, 100, 128, 129, 191] {
            let fsrc: Vec<f32> = src.iter().map(|&v| v as f32 / 7.0).collect();
            let pairs = [(0.125f32, 0, 9), (0.375, 2, 6)];
            let mut got = vec![0f32; n];
            sum_pairs::<BLOCK>(n, &fsrc, &pairs, (0.5, 4), |x, acc| {
                got[x..x + acc.len()].copy_from_slice(acc)
            });
            let mut wide = vec![0f32; n];
            sum_pairs::<BLOCK512>(n, &fsrc, &pairs, (0.5, 4), |x, acc| {
                wide[x..x + acc.len()].copy_from_slice(acc)
            });
            assert_eq!(got, wide, "n = {n}");
            let want: Vec<f32> = (0..n)
                .map(|i| {
                    let v = |o: usize| fsrc[o + i];
                    let acc = (v(0) + v(9)).mul_add(0.125, 0.0);
                    let acc = (v(2) + v(6)).mul_add(0.375, acc);
                    v(4).mul_add(0.5, acc)
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
