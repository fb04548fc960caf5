//! [`super::idct::idct_block`] with AVX2 intrinsics where the path has them: the
//! same wrapping 32-bit arithmetic, eight lanes a register, the two transposes
//! as unpacks and lane permutes and the bytes packed with saturation (LLVM made
//! the portable transposes into scalar moves). The portable code stays the
//! reference and runs the scalar path (tested equal, block by block).
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::idct;
use crate::cpu::CpuPath;

/// Writes the 8x8 pixels of `coef` (see [`idct::idct_block`]) to the first 8
/// bytes of 8 rows `stride` apart in `out`.
///
/// # Panics
/// If `out` is shorter than `7 * stride + 8` or `stride` < 8 (checked before
/// any intrinsic).
#[inline(always)]
pub(super) fn idct_block(
    path: CpuPath,
    coef: &[i16; 64],
    q: &[u16; 64],
    dc_only: bool,
    out: &mut [u8],
    stride: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if path.has_avx2() && !dc_only {
        assert!(stride >= 8 && out.len() >= 7 * stride + 8);
        // SAFETY: `has_avx2` holds only for paths whose CPU has AVX2 (CpuPath
        // is detected, never built); the eight 8-byte rows written lie in
        // `out` (asserted above); `coef` and `q` are 64 values each.
        unsafe { block_avx2(coef, q, out, stride) };
        return;
    }
    let _ = path;
    idct::idct_block(coef, q, dc_only, out, stride);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fix(c: i32) -> __m256i {
    _mm256_set1_epi32(c)
}

/// One 1-D pass over eight lanes (see `idct::pass`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pass<const SHIFT: i32>(x: &[__m256i; 8]) -> [__m256i; 8] {
    let add = |a, b| _mm256_add_epi32(a, b);
    let sub = |a, b| _mm256_sub_epi32(a, b);
    let mul = |a, c: i32| _mm256_mullo_epi32(a, fix(c));
    let round = fix(1 << (SHIFT - 1));
    // Even part.
    let (z2, z3) = (x[2], x[6]);
    let z1 = mul(add(z2, z3), 4433);
    let tmp2 = sub(z1, mul(z3, 15137));
    let tmp3 = add(z1, mul(z2, 6270));
    let (z2, z3) = (x[0], x[4]);
    let tmp0 = _mm256_slli_epi32::<13>(add(z2, z3));
    let tmp1 = _mm256_slli_epi32::<13>(sub(z2, z3));
    let (t10, t13) = (add(tmp0, tmp3), sub(tmp0, tmp3));
    let (t11, t12) = (add(tmp1, tmp2), sub(tmp1, tmp2));
    // Odd part.
    let (o0, o1, o2, o3) = (x[7], x[5], x[3], x[1]);
    let z5 = mul(add(add(o0, o1), add(o2, o3)), 9633);
    let z1 = mul(add(o0, o3), -7373);
    let z2 = mul(add(o1, o2), -20995);
    let z3 = add(mul(add(o0, o2), -16069), z5);
    let z4 = add(mul(add(o1, o3), -3196), z5);
    let o0 = add(add(mul(o0, 2446), z1), z3);
    let o1 = add(add(mul(o1, 16819), z2), z4);
    let o2 = add(add(mul(o2, 25172), z2), z3);
    let o3 = add(add(mul(o3, 12299), z1), z4);
    let out = |a, b| _mm256_srai_epi32::<SHIFT>(add(add(a, b), round));
    let neg = |a, b| _mm256_srai_epi32::<SHIFT>(add(sub(a, b), round));
    [
        out(t10, o3),
        out(t11, o2),
        out(t12, o1),
        out(t13, o0),
        neg(t13, o0),
        neg(t12, o1),
        neg(t11, o2),
        neg(t10, o3),
    ]
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn transpose(r: &[__m256i; 8]) -> [__m256i; 8] {
    // 2x2 blocks of 32-bit values, then of 64-bit, then 128-bit halves.
    let a0 = _mm256_unpacklo_epi32(r[0], r[1]);
    let a1 = _mm256_unpackhi_epi32(r[0], r[1]);
    let a2 = _mm256_unpacklo_epi32(r[2], r[3]);
    let a3 = _mm256_unpackhi_epi32(r[2], r[3]);
    let a4 = _mm256_unpacklo_epi32(r[4], r[5]);
    let a5 = _mm256_unpackhi_epi32(r[4], r[5]);
    let a6 = _mm256_unpacklo_epi32(r[6], r[7]);
    let a7 = _mm256_unpackhi_epi32(r[6], r[7]);
    let b0 = _mm256_unpacklo_epi64(a0, a2);
    let b1 = _mm256_unpackhi_epi64(a0, a2);
    let b2 = _mm256_unpacklo_epi64(a1, a3);
    let b3 = _mm256_unpackhi_epi64(a1, a3);
    let b4 = _mm256_unpacklo_epi64(a4, a6);
    let b5 = _mm256_unpackhi_epi64(a4, a6);
    let b6 = _mm256_unpacklo_epi64(a5, a7);
    let b7 = _mm256_unpackhi_epi64(a5, a7);
    [
        _mm256_permute2x128_si256::<0x20>(b0, b4),
        _mm256_permute2x128_si256::<0x20>(b1, b5),
        _mm256_permute2x128_si256::<0x20>(b2, b6),
        _mm256_permute2x128_si256::<0x20>(b3, b7),
        _mm256_permute2x128_si256::<0x31>(b0, b4),
        _mm256_permute2x128_si256::<0x31>(b1, b5),
        _mm256_permute2x128_si256::<0x31>(b2, b6),
        _mm256_permute2x128_si256::<0x31>(b3, b7),
    ]
}

/// # Safety
/// The CPU has AVX2; `stride >= 8` and `out.len() >= 7 * stride + 8`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_avx2(coef: &[i16; 64], q: &[u16; 64], out: &mut [u8], stride: usize) {
    let mut x = [_mm256_setzero_si256(); 8];
    for (k, v) in x.iter_mut().enumerate() {
        // SAFETY: 8 values at 8k of 64 lie in each array.
        let (c, qv) = unsafe {
            (
                _mm_loadu_si128(coef.as_ptr().add(8 * k).cast()),
                _mm_loadu_si128(q.as_ptr().add(8 * k).cast()),
            )
        };
        *v = _mm256_mullo_epi32(_mm256_cvtepi16_epi32(c), _mm256_cvtepu16_epi32(qv));
    }
    let cols = pass::<11>(&x);
    let rows = pass::<18>(&transpose(&cols));
    let px = transpose(&rows);
    let centre = _mm256_set1_epi32(128);
    let p = px.map(|v| _mm256_add_epi32(v, centre));
    // Saturating packs give the clamp to 0..=255; the packs work per 128-bit
    // half, so the permute puts each row's two halves side by side.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for half in 0..2 {
        let r = &p[4 * half..4 * half + 4];
        let w01 = _mm256_packs_epi32(r[0], r[1]);
        let w23 = _mm256_packs_epi32(r[2], r[3]);
        let b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(w01, w23), order);
        let mut rows = [0u64; 4];
        // SAFETY: 32 bytes into a 32-byte array.
        unsafe { _mm256_storeu_si256(rows.as_mut_ptr().cast(), b) };
        for (i, row) in rows.iter().enumerate() {
            let at = (4 * half + i) * stride;
            out[at..at + 8].copy_from_slice(&row.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_gives_the_portable_bytes() {
        let mut seed = 0x2545_F491u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for trial in 0..2000 {
            let mut coef = [0i16; 64];
            let mut q = [0u16; 64];
            for (c, qv) in coef.iter_mut().zip(q.iter_mut()) {
                *qv = (next() % 256) as u16;
                if next() % 4 == 0 {
                    // Large on some trials, to wrap and saturate.
                    let r = if trial % 5 == 0 { 65536 } else { 200 };
                    *c = ((next() % r) as i32 - (r / 2) as i32) as i16;
                }
            }
            if trial % 7 == 0 {
                q = [u16::MAX; 64];
            }
            let mut want = vec![0u8; 8 * 11];
            idct::idct_block(&coef, &q, false, &mut want, 11);
            for path in crate::cpu::available_paths() {
                let mut got = vec![0u8; 8 * 11];
                idct_block(path, &coef, &q, false, &mut got, 11);
                assert_eq!(got, want, "trial {trial}, {path:?}");
            }
        }
    }
}
