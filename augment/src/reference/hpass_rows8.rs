//! The bicubic resize's horizontal pass on eight crop rows at once, where the
//! path has AVX2: the rows' bytes transposed so that each source value of the
//! eight rows is one 256-bit register (a byte transpose, then each column to
//! floats once), each output value of the eight rows then four broadcast
//! weights times four such registers, and the results transposed back to
//! rows (8 x 8 float transposes). No lane ever reads another pixel's sources,
//! so there is nothing to permute per pixel, where AVX2's one-source,
//! eight-lane permutes made a per-row blocked pass no faster than the
//! portable loop (docs/benchmarks.md). The same products and the same order of
//! additions as the portable loop (no fused multiply-adds): the same floats
//! (tested).
//!
//! The output is done in strips of [`STRIP`] pixels, whose sources (at most
//! `STRIP` x the shrink + 4 pixels) are transposed into `cols` and stay in the
//! L1 cache.
#![allow(unsafe_code)]

use crate::simd::CpuPath;

/// Rows done at once: one per lane of a 256-bit register of floats.
pub(crate) const ROWS: usize = 8;

/// Output pixels a strip (3 x STRIP floats, a whole number of 8 x 8 blocks).
const STRIP: usize = 32;
const _: () = assert!((3 * STRIP).is_multiple_of(8), "strips end on a block");

/// Byte columns transposed at once (one 256-bit load per row).
const CHUNK: usize = 32;

/// Each strip's span of source pixels, and the scratch they need: worked
/// out once per view.
pub(crate) struct Strips {
    /// Per strip of [`STRIP`] output pixels, the padded pixels `lo..hi` its
    /// taps read (`lo == hi` when none lie within the padded row).
    spans: Vec<(usize, usize)>,
    /// The pixels of the rows (`cw`) they were made for.
    cw: usize,
    /// The number of taps they were made for.
    taps: usize,
    /// The floats of scratch [`rows8`] needs: the widest strip's transposed
    /// sources, rounded up to whole chunks, then a strip's transposed outputs.
    scratch: usize,
}

impl Strips {
    /// The floats of scratch [`rows8`] needs.
    pub(crate) fn scratch(&self) -> usize {
        self.scratch
    }

    /// The strips of `taps` over rows of `cw` pixels (padded to `cw + 3`).
    pub(crate) fn new(taps: &[(usize, [f32; 4])], cw: usize) -> Strips {
        let spans: Vec<(usize, usize)> = taps
            .chunks(STRIP)
            .map(|strip| {
                let inside = strip.iter().filter(|t| t.0 + 4 <= cw + 3);
                let lo = inside.clone().map(|t| t.0).min();
                let hi = inside.map(|t| t.0 + 4).max();
                lo.zip(hi).unwrap_or((0, 0))
            })
            .collect();
        let widest = spans
            .iter()
            .map(|&(lo, hi)| (3 * (hi - lo)).div_ceil(CHUNK) * CHUNK)
            .max()
            .unwrap_or(0);
        Strips {
            spans,
            cw,
            taps: taps.len(),
            scratch: ROWS * (widest + 3 * STRIP),
        }
    }
}

/// The horizontal pass of eight rows: `lines[i]` is a crop row of `cw` RGB
/// pixels (bytes); row `i` of `dst` (`dst.len() / 8` floats each, at most 3
/// x `taps.len()`) gets what [`super::hpass_avx512::hpass_row`] writes from
/// that row as the resize pads it (`v / 255` per byte, `v as f32 * (1 /
/// 255)`, with one edge pixel on the left and two on the right), pixels whose
/// four sources run past it as zeros. `cols` is scratch of at least
/// `strips.scratch` floats; `strips` is [`Strips::new`] of `taps` and `cw`.
/// Returns false, writing nothing, where the path lacks AVX2 or the lengths
/// do not fit.
pub(crate) fn rows8(
    path: CpuPath,
    lines: [&[u8]; ROWS],
    taps: &[(usize, [f32; 4])],
    strips: &Strips,
    cols: &mut [f32],
    dst: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if path.has_avx2() {
        let cw = strips.cw;
        let fits = cw >= 1
            && strips.taps == taps.len()
            && lines.iter().all(|l| l.len() >= 3 * cw)
            && cols.len() >= strips.scratch
            && dst.len() / ROWS <= 3 * taps.len();
        if fits {
            // SAFETY: `has_avx2` holds only for paths whose CPU has AVX2
            // (CpuPath is detected, never built). The kernel reads the lines
            // through slices or within their 3 cw bytes (checked above),
            // writes `cols` within `strips.scratch` (checked above), which
            // `Strips::new` worked out from the very spans the kernel
            // transposes (the fields are private), and reads a strip's
            // transposed sources only for taps within its span (others give
            // zeros), so taps other than those `strips` was made for give
            // wrong values, never an access out of bounds.
            unsafe { rows8_avx2(lines, taps, strips, cols, dst) };
            return true;
        }
    }
    let _ = (path, lines, taps, strips, cols, dst);
    false
}

/// Bytes `at..at + 32` of a row as the resize pads it (`line` is `cw >= 1`
/// pixels): one copy of the first pixel, the line, two copies of the last
/// pixel, then zeros.
#[inline(always)]
fn padded_bytes(line: &[u8], cw: usize, at: usize) -> [u8; CHUNK] {
    let mut bytes = [0u8; CHUNK];
    let end = at + CHUNK;
    // The line itself: padded bytes 3..3 + 3 cw.
    let (lo, hi) = (at.max(3), end.min(3 + 3 * cw));
    if lo < hi {
        bytes[lo - at..hi - at].copy_from_slice(&line[lo - 3..hi - 3]);
    }
    // The left edge: padded bytes 0..3 are the first pixel.
    if at < 3 {
        let e = end.min(3);
        bytes[..e - at].copy_from_slice(&line[at..e]);
    }
    // The right edge: two copies of the last pixel.
    for p in at.max(3 + 3 * cw)..end.min(3 * cw + 9) {
        bytes[p - at] = line[3 * (cw - 1) + p % 3];
    }
    bytes
}

/// # Safety
/// The CPU has AVX2; `strips` is a [`Strips::new`] whose `cw` is at least 1;
/// every line holds at least `3 cw` bytes, `cols.len() >= strips.scratch`
/// and `dst.len() / 8 <= 3 taps.len()`. (Taps other than those `strips` was
/// made for give wrong values, not unsound accesses.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows8_avx2(
    lines: [&[u8]; ROWS],
    taps: &[(usize, [f32; 4])],
    strips: &Strips,
    cols: &mut [f32],
    dst: &mut [f32],
) {
    let cw = strips.cw;
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_castsi256_si128, _mm256_cvtepi32_ps, _mm256_cvtepu8_epi32,
        _mm256_extracti128_si256, _mm256_loadu_ps, _mm256_loadu_si256, _mm256_mul_ps,
        _mm256_permute2f128_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_setzero_si256,
        _mm256_shuffle_ps, _mm256_srli_si256, _mm256_storeu_ps, _mm256_unpackhi_epi16,
        _mm256_unpackhi_epi32, _mm256_unpackhi_epi8, _mm256_unpackhi_ps, _mm256_unpacklo_epi16,
        _mm256_unpacklo_epi32, _mm256_unpacklo_epi8, _mm256_unpacklo_ps,
    };
    let n = dst.len() / ROWS;
    let (src_cols, outs) = cols.split_at_mut(cols.len() - ROWS * 3 * STRIP);
    let scale = _mm256_set1_ps(1.0 / 255.0);
    for (s, (strip, &(lo, hi))) in taps.chunks(STRIP).zip(&strips.spans).enumerate() {
        let x0 = s * STRIP;
        if 3 * x0 >= n {
            break;
        }
        // The sources, CHUNK byte columns at a time: src_cols[8 j..8 j + 8] is
        // padded float 3 lo + j of the eight rows.
        for t in 0..(3 * (hi - lo)).div_ceil(CHUNK) {
            let at = 3 * lo + CHUNK * t;
            // 32 padded bytes of each row from byte `at`: straight from the
            // line inside it, assembled at the edges.
            let inside = at >= 3 && at - 3 + CHUNK <= 3 * cw;
            let mut a = [_mm256_setzero_si256(); ROWS];
            for (ai, line) in a.iter_mut().zip(lines) {
                *ai = if inside {
                    // SAFETY: bytes at - 3..at + 29 lie in the line (checked).
                    unsafe { _mm256_loadu_si256(line.as_ptr().add(at - 3).cast()) }
                } else {
                    let bytes = padded_bytes(line, cw, at);
                    // SAFETY: 32 bytes of a [u8; 32].
                    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
                };
            }
            // Bytes of rows (0, 1), (2, 3)... interleaved, then pairs of
            // those, then quads: each 128-bit lane of d[k] ends holding
            // columns 2k and 2k + 1 (low lane) or 16 + 2k and 17 + 2k (high)
            // of the eight rows.
            let b = [
                _mm256_unpacklo_epi8(a[0], a[1]),
                _mm256_unpackhi_epi8(a[0], a[1]),
                _mm256_unpacklo_epi8(a[2], a[3]),
                _mm256_unpackhi_epi8(a[2], a[3]),
                _mm256_unpacklo_epi8(a[4], a[5]),
                _mm256_unpackhi_epi8(a[4], a[5]),
                _mm256_unpacklo_epi8(a[6], a[7]),
                _mm256_unpackhi_epi8(a[6], a[7]),
            ];
            let c = [
                _mm256_unpacklo_epi16(b[0], b[2]),
                _mm256_unpackhi_epi16(b[0], b[2]),
                _mm256_unpacklo_epi16(b[1], b[3]),
                _mm256_unpackhi_epi16(b[1], b[3]),
                _mm256_unpacklo_epi16(b[4], b[6]),
                _mm256_unpackhi_epi16(b[4], b[6]),
                _mm256_unpacklo_epi16(b[5], b[7]),
                _mm256_unpackhi_epi16(b[5], b[7]),
            ];
            let d = [
                _mm256_unpacklo_epi32(c[0], c[4]),
                _mm256_unpackhi_epi32(c[0], c[4]),
                _mm256_unpacklo_epi32(c[1], c[5]),
                _mm256_unpackhi_epi32(c[1], c[5]),
                _mm256_unpacklo_epi32(c[2], c[6]),
                _mm256_unpackhi_epi32(c[2], c[6]),
                _mm256_unpacklo_epi32(c[3], c[7]),
                _mm256_unpackhi_epi32(c[3], c[7]),
            ];
            let base = CHUNK * t;
            let mut put = |col: usize, v| {
                let f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), scale);
                let at = ROWS * (base + col);
                // SAFETY: base + col < the strip's chunks x CHUNK, which
                // Strips::new counted in `scratch` before the outputs' part.
                debug_assert!(at + ROWS <= src_cols.len());
                unsafe { _mm256_storeu_ps(src_cols.as_mut_ptr().add(at), f) };
            };
            for (k, &dk) in d.iter().enumerate() {
                let odd = _mm256_srli_si256::<8>(dk);
                put(2 * k, _mm256_castsi256_si128(dk));
                put(2 * k + 1, _mm256_castsi256_si128(odd));
                put(16 + 2 * k, _mm256_extracti128_si256::<1>(dk));
                put(17 + 2 * k, _mm256_extracti128_si256::<1>(odd));
            }
        }
        // Each output value of the eight rows: four weights times four
        // source registers, summed left to right.
        let col = |j: usize| -> __m256 {
            // SAFETY: j < 3 (hi - lo) for taps within the span (`inside`
            // below), within the transposed chunks.
            debug_assert!(ROWS * (j + 1) <= src_cols.len());
            unsafe { _mm256_loadu_ps(src_cols.as_ptr().add(ROWS * j)) }
        };
        for (x, &(first, w)) in strip.iter().enumerate() {
            // Within the padded row, and within the strip's span (always, for
            // the taps `strips` was made for).
            let inside = first + 4 <= cw + 3 && first >= lo && first + 4 <= hi;
            for ch in 0..3 {
                let v = if inside {
                    let q = 3 * (first - lo) + ch;
                    let mut acc = _mm256_mul_ps(_mm256_set1_ps(w[0]), col(q));
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(w[1]), col(q + 3)));
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(w[2]), col(q + 6)));
                    _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(w[3]), col(q + 9)))
                } else {
                    _mm256_setzero_ps()
                };
                // SAFETY: 3 x + ch < 3 STRIP: within the outputs' part.
                unsafe { _mm256_storeu_ps(outs.as_mut_ptr().add(ROWS * (3 * x + ch)), v) };
            }
        }
        // Back to rows, eight values at a time: r[j] is output value 8 m + j
        // of the eight rows, o[i] row i's eight values.
        let len = (3 * strip.len()).min(n - 3 * x0);
        for m in 0..len.div_ceil(8) {
            // SAFETY: 8 (8 m + 7) + 8 <= 8 x 3 STRIP floats: the outputs'
            // part (values past `len` are stale but never stored).
            let r: [__m256; 8] = std::array::from_fn(|j| unsafe {
                _mm256_loadu_ps(outs.as_ptr().add(ROWS * (8 * m + j)))
            });
            let t = [
                _mm256_unpacklo_ps(r[0], r[1]),
                _mm256_unpackhi_ps(r[0], r[1]),
                _mm256_unpacklo_ps(r[2], r[3]),
                _mm256_unpackhi_ps(r[2], r[3]),
                _mm256_unpacklo_ps(r[4], r[5]),
                _mm256_unpackhi_ps(r[4], r[5]),
                _mm256_unpacklo_ps(r[6], r[7]),
                _mm256_unpackhi_ps(r[6], r[7]),
            ];
            let u = [
                _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
            ];
            let o = [
                _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
                _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
                _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
                _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
                _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
                _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
                _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
                _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
            ];
            let at = 3 * x0 + 8 * m;
            let count = (len - 8 * m).min(8);
            for (i, &oi) in o.iter().enumerate() {
                let row = &mut dst[i * n + at..i * n + at + count];
                if count == 8 {
                    // SAFETY: row holds 8 floats.
                    unsafe { _mm256_storeu_ps(row.as_mut_ptr(), oi) };
                } else {
                    let mut tmp = [0f32; 8];
                    // SAFETY: 8 floats of a [f32; 8].
                    unsafe { _mm256_storeu_ps(tmp.as_mut_ptr(), oi) };
                    row.copy_from_slice(&tmp[..count]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::hpass_avx512::{hpass_row, Plan};
    use crate::simd::available_paths;

    /// Each row padded as the resize pads it (padded pixel q is pixel q - 1
    /// clamped into the row), through the portable pass.
    fn portable(lines: &[Vec<u8>], cw: usize, taps: &[(usize, [f32; 4])]) -> Vec<Vec<f32>> {
        lines
            .iter()
            .map(|line| {
                let padded: Vec<f32> = (0..3 * (cw + 3))
                    .map(|p| {
                        let q = (p / 3).saturating_sub(1).min(cw - 1);
                        line[3 * q + p % 3] as f32 * (1.0 / 255.0)
                    })
                    .collect();
                let mut dst = vec![-1f32; 3 * taps.len()];
                let plan = Plan::default();
                hpass_row(CpuPath::scalar(), &padded, taps, &plan, &mut dst);
                dst
            })
            .collect()
    }

    #[test]
    fn eight_rows_give_the_portable_floats_at_every_width_and_shrink() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut checked = 0;
        for cw in (1..=90).chain([131, 200, 333]) {
            let lines: Vec<Vec<u8>> = (0..ROWS)
                .map(|_| (0..3 * cw).map(|_| next() as u8).collect())
                .collect();
            // Output widths for shrinks from 0.3x to 9x, mirrored or not.
            for out_w in [1, 2, 7, 8, 33, 64, 97, 224] {
                for flip in [false, true] {
                    let scale = cw as f32 / out_w as f32;
                    let mut taps: Vec<(usize, [f32; 4])> = (0..out_w)
                        .map(|x| {
                            let first = ((x as f32 * scale) as usize).min(cw - 1);
                            let w =
                                [0.1, 0.4, 0.3, 0.2].map(|v: f32| v + (next() % 97) as f32 * 1e-3);
                            (first, w)
                        })
                        .collect();
                    if flip {
                        taps.reverse();
                    }
                    // A pixel whose sources run past the row: zeros.
                    if out_w == 7 {
                        taps[3].0 = cw;
                    }
                    let want = portable(&lines, cw, &taps);
                    let strips = Strips::new(&taps, cw);
                    for path in available_paths() {
                        let mut cols = vec![f32::NAN; strips.scratch];
                        let n = 3 * out_w;
                        let mut dst = vec![-1f32; ROWS * n];
                        let refs: [&[u8]; ROWS] = std::array::from_fn(|i| &lines[i][..]);
                        if !rows8(path, refs, &taps, &strips, &mut cols, &mut dst) {
                            assert!(!path.has_avx2(), "{path:?} declined");
                            continue;
                        }
                        for (i, row) in dst.chunks_exact(n).enumerate() {
                            assert!(
                                row.iter()
                                    .zip(&want[i])
                                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                                "{path:?}: width {cw} -> {out_w}, flip {flip}, row {i}"
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
        // Where the CPU has AVX2, every case ran through the kernel.
        let kernels = available_paths().iter().filter(|p| p.has_avx2()).count();
        assert_eq!(checked, kernels * 93 * 8 * 2);
    }
}
