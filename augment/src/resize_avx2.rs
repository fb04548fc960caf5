//! The resize's horizontal pass (see [`crate::resize`]) with AVX2 intrinsics
//! where the path has them. Two rows at a time, one per 128-bit half: for each
//! output pixel, sixteen bytes from its first tap's pixel are shuffled into
//! 16-bit (channel, tap pair) lanes and multiplied by the pair's weights with
//! `vpmaddwd`, four taps a load. The same integer sums and rounding as the
//! portable pass, which stays the reference and runs the scalar path and an odd
//! last row (tested equal).
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::resize::{horizontal_rows, Taps, BITS};
use crate::simd::{dispatch, CpuPath};

/// Output pixel x of each row of `mid` (`mid_stride` bytes a row, each padded
/// with at least `3 * taps.stride + 16` bytes after its pixels) into `out`, at
/// `out_w - 1 - x` if `flip`. `pairs` is scratch.
///
/// # Panics
/// If a row's padding is short of that (checked before any intrinsic).
pub(crate) fn horizontal(
    path: CpuPath,
    mid: &[u8],
    mid_stride: usize,
    taps: &Taps,
    flip: bool,
    out: &mut [u8],
    pairs: &mut Vec<[i16; 8]>,
) {
    let out_w = taps.start.len();
    #[cfg(target_arch = "x86_64")]
    if path.has_avx2() {
        // Every group of four taps reads 16 bytes from its first pixel.
        let reach = taps
            .start
            .iter()
            .zip(&taps.count)
            .map(|(&s, &n)| 3 * (s + n.next_multiple_of(4) - 4) + 16)
            .max()
            .unwrap_or(0);
        assert!(reach <= mid_stride, "resize rows padded short");
        weight_pairs(taps, pairs);
        let rows = mid.len() / mid_stride;
        let even = rows & !1;
        let (head, tail) = out.split_at_mut((3 * out_w * even).min(out.len()));
        // SAFETY: `has_avx2` holds only for paths whose CPU has AVX2 (CpuPath
        // is detected, never built). Reads: each row starts within `mid` and
        // every load ends at most `reach <= mid_stride` bytes into its row.
        unsafe {
            rows_avx2(
                &mid[..even * mid_stride],
                mid_stride,
                taps,
                pairs,
                flip,
                head,
            )
        };
        if rows > even {
            let last = &mid[even * mid_stride..];
            dispatch(
                path,
                #[inline(always)]
                || horizontal_rows(last, mid_stride, taps, flip, tail),
            );
        }
        return;
    }
    dispatch(
        path,
        #[inline(always)]
        || horizontal_rows(mid, mid_stride, taps, flip, out),
    );
}

/// The weights as `vpmaddwd` operands: per output pixel and pair of taps
/// (k, k + 1), [w_k, w_k+1] for R, G and B, then two zeros.
fn weight_pairs(taps: &Taps, pairs: &mut Vec<[i16; 8]>) {
    let per = taps.stride / 2;
    pairs.clear();
    pairs.resize(taps.start.len() * per, [0; 8]);
    for (x, ps) in pairs.chunks_exact_mut(per).enumerate() {
        let w = &taps.weights[x * taps.stride..(x + 1) * taps.stride];
        for (p, ab) in ps.iter_mut().zip(w.chunks_exact(2)) {
            *p = [ab[0], ab[1], ab[0], ab[1], ab[0], ab[1], 0, 0];
        }
    }
}

/// # Safety
/// The CPU has AVX2; `mid` holds whole pairs of `mid_stride`-byte rows; for
/// every output pixel, `3 * (start + count rounded up to 4 - 4) + 16 <=
/// mid_stride`; `pairs` is [`weight_pairs`] of `taps`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2(
    mid: &[u8],
    mid_stride: usize,
    taps: &Taps,
    pairs: &[[i16; 8]],
    flip: bool,
    out: &mut [u8],
) {
    let out_w = taps.start.len();
    let per = taps.stride / 2;
    const Z: i8 = -128; // a shuffle index that writes zero
                        // Pixels p0..p3 of 16 bytes as 16-bit lanes: (R0, R1, G0, G1, B0, B1, 0, 0)
                        // and the same for p2, p3.
    let lo = _mm256_setr_epi8(
        0, Z, 3, Z, 1, Z, 4, Z, 2, Z, 5, Z, Z, Z, Z, Z, 0, Z, 3, Z, 1, Z, 4, Z, 2, Z, 5, Z, Z, Z,
        Z, Z,
    );
    let hi = _mm256_setr_epi8(
        6, Z, 9, Z, 7, Z, 10, Z, 8, Z, 11, Z, Z, Z, Z, Z, 6, Z, 9, Z, 7, Z, 10, Z, 8, Z, 11, Z, Z,
        Z, Z, Z,
    );
    let half = _mm256_set1_epi32(1 << (BITS - 1));
    // Four pixels' [R, G, B, 0] bytes to their 12 RGB bytes, in order or
    // mirrored.
    let compact = _mm256_setr_epi8(
        0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, Z, Z, Z, Z, 0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14,
        Z, Z, Z, Z,
    );
    let mirror = _mm256_setr_epi8(
        12, 13, 14, 8, 9, 10, 4, 5, 6, 0, 1, 2, Z, Z, Z, Z, 12, 13, 14, 8, 9, 10, 4, 5, 6, 0, 1, 2,
        Z, Z, Z, Z,
    );
    let order = if flip { mirror } else { compact };
    // One output pixel of both rows: [R, G, B, 0] as 32-bit sums per half.
    let pixel = |a: &[u8], b: &[u8], x: usize| {
        let (first, n) = (taps.start[x], taps.count[x]);
        let ps = &pairs[x * per..(x + 1) * per];
        let mut acc = half;
        for g in 0..n.div_ceil(4) {
            let at = 3 * (first + 4 * g);
            // SAFETY: `at + 16 <= mid_stride` (the caller's reach), so both
            // 16-byte loads lie in their rows; pairs 2g and 2g + 1 exist
            // (g < count / 4 rounded up, count <= stride = 2 * per).
            let (v, w01, w23) = unsafe {
                (
                    _mm256_loadu2_m128i(b.as_ptr().add(at).cast(), a.as_ptr().add(at).cast()),
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(ps[2 * g].as_ptr().cast())),
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(ps[2 * g + 1].as_ptr().cast())),
                )
            };
            let s01 = _mm256_madd_epi16(_mm256_shuffle_epi8(v, lo), w01);
            let s23 = _mm256_madd_epi16(_mm256_shuffle_epi8(v, hi), w23);
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(s01, s23));
        }
        _mm256_srai_epi32::<{ BITS as i32 }>(acc)
    };
    let quads = out_w / 4;
    let pair_rows = mid.len() / (2 * mid_stride);
    let pack4 = |p: [__m256i; 4]| {
        let p01 = _mm256_packs_epi32(p[0], p[1]);
        let p23 = _mm256_packs_epi32(p[2], p[3]);
        let rgb = _mm256_shuffle_epi8(_mm256_packus_epi16(p01, p23), order);
        let mut bytes = [0u8; 32];
        // SAFETY: 32 bytes into a 32-byte array.
        unsafe { _mm256_storeu_si256(bytes.as_mut_ptr().cast(), rgb) };
        bytes
    };
    // Four output pixels at a time down the rows, their weights in registers,
    // where each has at most eight taps (two loads); else per pixel.
    for q in 0..quads {
        let x = 4 * q;
        let at = 3 * if flip { out_w - 4 - x } else { x };
        let row_out = |r: usize| 3 * out_w * r + at;
        if (x..x + 4).all(|i| taps.count[i] <= 8) {
            let zero = _mm256_setzero_si256();
            let mut off = [0usize; 4];
            let mut two = [false; 4];
            let mut w = [[zero; 4]; 4];
            for i in 0..4 {
                off[i] = 3 * taps.start[x + i];
                two[i] = taps.count[x + i] > 4;
                let ps = &pairs[(x + i) * per..(x + i + 1) * per];
                for (k, wk) in w[i].iter_mut().enumerate().take(if two[i] { 4 } else { 2 }) {
                    // SAFETY: 16 bytes of an [i16; 8].
                    *wk = _mm256_broadcastsi128_si256(unsafe {
                        _mm_loadu_si128(ps[k].as_ptr().cast())
                    });
                }
            }
            for r in 0..pair_rows {
                let base = 2 * r * mid_stride;
                let px = |i: usize| {
                    let at = base + off[i];
                    // SAFETY: both rows' 16 bytes at `off` (and 12 further on
                    // for a second group) end within the rows (the reach).
                    let v = unsafe {
                        _mm256_loadu2_m128i(
                            mid.as_ptr().add(at + mid_stride).cast(),
                            mid.as_ptr().add(at).cast(),
                        )
                    };
                    let mut acc = _mm256_add_epi32(
                        half,
                        _mm256_add_epi32(
                            _mm256_madd_epi16(_mm256_shuffle_epi8(v, lo), w[i][0]),
                            _mm256_madd_epi16(_mm256_shuffle_epi8(v, hi), w[i][1]),
                        ),
                    );
                    if two[i] {
                        // SAFETY: as above.
                        let v = unsafe {
                            _mm256_loadu2_m128i(
                                mid.as_ptr().add(at + 12 + mid_stride).cast(),
                                mid.as_ptr().add(at + 12).cast(),
                            )
                        };
                        acc = _mm256_add_epi32(
                            acc,
                            _mm256_add_epi32(
                                _mm256_madd_epi16(_mm256_shuffle_epi8(v, lo), w[i][2]),
                                _mm256_madd_epi16(_mm256_shuffle_epi8(v, hi), w[i][3]),
                            ),
                        );
                    }
                    _mm256_srai_epi32::<{ BITS as i32 }>(acc)
                };
                let bytes = pack4([px(0), px(1), px(2), px(3)]);
                out[row_out(2 * r)..row_out(2 * r) + 12].copy_from_slice(&bytes[..12]);
                out[row_out(2 * r + 1)..row_out(2 * r + 1) + 12].copy_from_slice(&bytes[16..28]);
            }
        } else {
            for r in 0..pair_rows {
                let (a, b) = mid[2 * r * mid_stride..].split_at(mid_stride);
                let bytes = pack4([
                    pixel(a, b, x),
                    pixel(a, b, x + 1),
                    pixel(a, b, x + 2),
                    pixel(a, b, x + 3),
                ]);
                out[row_out(2 * r)..row_out(2 * r) + 12].copy_from_slice(&bytes[..12]);
                out[row_out(2 * r + 1)..row_out(2 * r + 1) + 12].copy_from_slice(&bytes[16..28]);
            }
        }
    }
    for x in 4 * quads..out_w {
        let at = 3 * if flip { out_w - 1 - x } else { x };
        for r in 0..pair_rows {
            let (a, b) = mid[2 * r * mid_stride..].split_at(mid_stride);
            let v = pixel(a, b, x);
            let bytes = _mm256_packus_epi16(_mm256_packs_epi32(v, v), v);
            let pa = (_mm256_extract_epi32::<0>(bytes) as u32).to_le_bytes();
            let pb = (_mm256_extract_epi32::<4>(bytes) as u32).to_le_bytes();
            let (ra, rb) = (3 * out_w * 2 * r + at, 3 * out_w * (2 * r + 1) + at);
            out[ra..ra + 3].copy_from_slice(&pa[..3]);
            out[rb..rb + 3].copy_from_slice(&pb[..3]);
        }
    }
}
