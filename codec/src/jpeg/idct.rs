//! The inverse DCT of one 8x8 block in 32-bit integers: the arithmetic of the
//! "islow" method of the Independent JPEG Group's libjpeg (Loeffler, Ligtenberg
//! and Moschytz's factorisation, 13-bit constants, two fractional bits between
//! the passes), the default of libjpeg and libjpeg-turbo, so a block decodes to
//! the same bytes as there. Each pass works on eight lanes at once (columns,
//! then rows after a transpose), which the vector paths compile to SIMD. The
//! arithmetic wraps, as libjpeg's does in C, on corrupt coefficients.

use std::num::Wrapping as W;

type Lanes = [W<i32>; 8];

const CONST_BITS: usize = 13;
const PASS1_BITS: usize = 2;

const F0_298: W<i32> = W(2446);
const F0_390: W<i32> = W(3196);
const F0_541: W<i32> = W(4433);
const F0_765: W<i32> = W(6270);
const F0_899: W<i32> = W(7373);
const F1_175: W<i32> = W(9633);
const F1_501: W<i32> = W(12299);
const F1_847: W<i32> = W(15137);
const F1_961: W<i32> = W(16069);
const F2_053: W<i32> = W(16819);
const F2_562: W<i32> = W(20995);
const F3_072: W<i32> = W(25172);

/// One 1-D pass over eight lanes: `x[k]` holds input k of every lane; returns
/// output k of every lane, descaled by `shift` bits with rounding.
#[inline(always)]
fn pass(x: &[Lanes; 8], shift: usize) -> [Lanes; 8] {
    let round = W(1i32 << (shift - 1));
    let mut out = [[W(0); 8]; 8];
    for l in 0..8 {
        // Even part.
        let (z2, z3) = (x[2][l], x[6][l]);
        let z1 = (z2 + z3) * F0_541;
        let tmp2 = z1 - z3 * F1_847;
        let tmp3 = z1 + z2 * F0_765;
        let (z2, z3) = (x[0][l], x[4][l]);
        let tmp0 = (z2 + z3) << CONST_BITS;
        let tmp1 = (z2 - z3) << CONST_BITS;
        let (t10, t13) = (tmp0 + tmp3, tmp0 - tmp3);
        let (t11, t12) = (tmp1 + tmp2, tmp1 - tmp2);
        // Odd part.
        let (o0, o1, o2, o3) = (x[7][l], x[5][l], x[3][l], x[1][l]);
        let z5 = (o0 + o1 + o2 + o3) * F1_175;
        let z1 = (o0 + o3) * -F0_899;
        let z2 = (o1 + o2) * -F2_562;
        let z3 = (o0 + o2) * -F1_961 + z5;
        let z4 = (o1 + o3) * -F0_390 + z5;
        let o0 = o0 * F0_298 + z1 + z3;
        let o1 = o1 * F2_053 + z2 + z4;
        let o2 = o2 * F3_072 + z2 + z3;
        let o3 = o3 * F1_501 + z1 + z4;
        out[0][l] = (t10 + o3 + round) >> shift;
        out[7][l] = (t10 - o3 + round) >> shift;
        out[1][l] = (t11 + o2 + round) >> shift;
        out[6][l] = (t11 - o2 + round) >> shift;
        out[2][l] = (t12 + o1 + round) >> shift;
        out[5][l] = (t12 - o1 + round) >> shift;
        out[3][l] = (t13 + o0 + round) >> shift;
        out[4][l] = (t13 - o0 + round) >> shift;
    }
    out
}

#[inline(always)]
fn transpose(x: &[Lanes; 8]) -> [Lanes; 8] {
    let mut t = [[W(0); 8]; 8];
    for (r, row) in x.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c][r] = v;
        }
    }
    t
}

/// Writes the 8x8 pixels of `coef` (natural order, not yet multiplied by the
/// quantisation table `q`) to `out` at `stride` bytes a row. `dc_only`: the AC
/// coefficients are all zero (a flat block; the same bytes, sooner).
#[inline(always)]
pub(super) fn idct_block(
    coef: &[i16; 64],
    q: &[u16; 64],
    dc_only: bool,
    out: &mut [u8],
    stride: usize,
) {
    if dc_only {
        let dc = i32::from(coef[0]).wrapping_mul(i32::from(q[0]));
        let v = (dc.wrapping_add(4) >> 3).wrapping_add(128).clamp(0, 255) as u8;
        for row in out.chunks_mut(stride).take(8) {
            row[..8].fill(v);
        }
        return;
    }
    let mut x = [[W(0); 8]; 8];
    for k in 0..8 {
        for c in 0..8 {
            x[k][c] = W(i32::from(coef[8 * k + c])) * W(i32::from(q[8 * k + c]));
        }
    }
    // Columns: lane c is column c; then rows, as lanes after the transpose.
    let cols = pass(&x, CONST_BITS - PASS1_BITS);
    let rows = pass(&transpose(&cols), CONST_BITS + PASS1_BITS + 3);
    // rows[x][r] is the pixel at row r, column x.
    let px = transpose(&rows);
    for (row, vals) in out.chunks_mut(stride).zip(px.iter()) {
        for (o, &v) in row[..8].iter_mut().zip(vals.iter()) {
            *o = (v.0.wrapping_add(128)).clamp(0, 255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2-D inverse DCT in f64 from its definition.
    fn exact(coef: &[i32; 64]) -> [f64; 64] {
        let c = |u: usize| if u == 0 { 1.0 / 2f64.sqrt() } else { 1.0 };
        let mut out = [0.0; 64];
        for y in 0..8 {
            for x in 0..8 {
                let mut s = 0.0;
                for v in 0..8 {
                    for u in 0..8 {
                        let cu =
                            ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos();
                        let cv =
                            ((2 * y + 1) as f64 * v as f64 * std::f64::consts::PI / 16.0).cos();
                        s += c(u) * c(v) * f64::from(coef[8 * v + u]) * cu * cv;
                    }
                }
                out[8 * y + x] = s / 4.0 + 128.0;
            }
        }
        out
    }

    #[test]
    fn blocks_invert_within_a_level_of_the_exact_transform() {
        let mut seed = 0x9E37_79B9u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let ones = [1u16; 64];
        for trial in 0..300 {
            let mut coef = [0i16; 64];
            // Sparse or dense, small or large coefficients.
            let n = 1 + (trial % 64);
            for _ in 0..n {
                let k = (next() % 64) as usize;
                let scale = if trial % 3 == 0 { 40 } else { 300 };
                coef[k] = ((next() % (2 * scale + 1)) as i32 - scale as i32) as i16;
            }
            let mut out = [0u8; 64];
            idct_block(&coef, &ones, false, &mut out, 8);
            let want = exact(&coef.map(i32::from));
            for (i, (&o, &w)) in out.iter().zip(want.iter()).enumerate() {
                let w = w.round().clamp(0.0, 255.0);
                assert!(
                    (f64::from(o) - w).abs() <= 1.0,
                    "trial {trial} pixel {i}: {o} against {w}"
                );
            }
        }
    }

    #[test]
    fn the_flat_block_shortcut_gives_the_full_transform_s_bytes() {
        let q = [3u16; 64];
        for dc in -400..400i16 {
            let mut coef = [0i16; 64];
            coef[0] = dc;
            let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
            idct_block(&coef, &q, true, &mut a, 8);
            idct_block(&coef, &q, false, &mut b, 8);
            assert_eq!(a, b, "dc {dc}");
        }
    }
}
