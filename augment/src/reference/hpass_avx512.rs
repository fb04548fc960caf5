//! The bicubic resize's horizontal pass (each output pixel: four source
//! pixels, three channels, one weight per tap) where the path has AVX-512:
//! five output pixels a 512-bit register (fifteen lanes; four where five do
//! not fit), each tap's source values picked out of the 32 floats from the
//! block's first source pixel by a two-register permute (`vpermt2ps`), whose
//! indices and weights are worked out once per view ([`Plan`]); pixels whose
//! sources span more than 32 floats (a shrink of over 2.2x), and the last
//! pixels, one pixel a register:
//! its twelve products in one multiply, then each channel's four summed left
//! to right through lane permutes. The same products and the same order of
//! additions as the portable loop (no fused multiply-adds), so the same floats
//! (tested); the AVX2 path does eight rows at a time instead
//! (`hpass_rows8`), and the portable loop runs the scalar path and the rows
//! the others leave to it.
#![allow(unsafe_code)]

use crate::simd::CpuPath;

/// Five (or four) output pixels whose sources lie within 32 floats: the first
/// of them, where the window starts and, per tap, each lane's index into it
/// and each pixel's weight (lanes past 3 x pixels unused). Kept small (bytes
/// for the indices, a weight per pixel rather than per lane), since every row
/// reads the whole plan.
#[derive(Clone, Copy)]
struct Block {
    x: usize,
    pixels: usize,
    base: usize,
    idx: [[u8; 16]; 4],
    w: [[f32; 8]; 4],
}

/// The blocked pass's indices and weights for one view's taps: blocks in
/// order of their pixels; the pixels between them are done one by one.
#[derive(Default)]
pub(crate) struct Plan {
    blocks: Vec<Block>,
    /// The taps and row length it was made for (checked in debug builds).
    made_for: (usize, usize),
}

impl Plan {
    /// The plan for `taps` over rows of `len` floats: five pixels a block
    /// where their sources fit in 32 floats (a shrink of up to 1.67x), else
    /// four (up to 2.2x), else one pixel.
    pub(crate) fn new(taps: &[(usize, [f32; 4])], len: usize) -> Plan {
        let block = |x: usize, group: &[(usize, [f32; 4])]| {
            let lo = group.iter().map(|t| t.0).min()?;
            let hi = group.iter().map(|t| t.0).max()?;
            let inside = group.iter().all(|t| t.0 * 3 + 12 <= len);
            if !inside || (hi - lo + 4) * 3 > 32 {
                return None;
            }
            let mut b = Block {
                x,
                pixels: group.len(),
                base: lo * 3,
                idx: [[0; 16]; 4],
                w: [[0.0; 8]; 4],
            };
            for (p, &(first, w)) in group.iter().enumerate() {
                for (k, &wk) in w.iter().enumerate() {
                    b.w[k][p] = wk;
                    for c in 0..3 {
                        b.idx[k][3 * p + c] = ((first - lo + k) * 3 + c) as u8;
                    }
                }
            }
            Some(b)
        };
        let mut blocks = Vec::with_capacity(taps.len() / 4);
        let mut x = 0;
        while x + 4 <= taps.len() {
            let five = taps.get(x..x + 5).and_then(|g| block(x, g));
            match five.or_else(|| block(x, &taps[x..x + 4])) {
                Some(b) => {
                    x += b.pixels;
                    blocks.push(b);
                }
                None => x += 1,
            }
        }
        Plan {
            blocks,
            made_for: (taps.len(), len),
        }
    }
}

/// For each output pixel `x` of `dst` (three floats each): with `(first, w) =
/// taps[x]` and `p = padded[3 first..]`, channel `c` is `w[0] p[c] + w[1]
/// p[3 + c] + w[2] p[6 + c] + w[3] p[9 + c]`. A column whose twelve values
/// would run past `padded` (the resize never makes one) is written as zeros on
/// every path, never left holding an earlier view's values. `plan` is
/// [`Plan::new`] of `taps` and `padded.len()`.
#[inline(always)]
pub(crate) fn hpass_row(
    path: CpuPath,
    padded: &[f32],
    taps: &[(usize, [f32; 4])],
    plan: &Plan,
    dst: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if path.has_avx512() {
        debug_assert_eq!(
            plan.made_for,
            (taps.len(), padded.len()),
            "a plan for other taps"
        );
        // SAFETY: `has_avx512` holds only for paths whose CPU has AVX-512 F
        // (CpuPath is detected, never built); `row_avx512` bounds every load
        // and store itself.
        unsafe { row_avx512(padded, taps, plan, dst) };
        return;
    }
    let _ = plan;
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
unsafe fn row_avx512(padded: &[f32], taps: &[(usize, [f32; 4])], plan: &Plan, dst: &mut [f32]) {
    use std::arch::x86_64::{
        _mm256_loadu_ps, _mm512_add_ps, _mm512_cvtepu8_epi32, _mm512_mask_storeu_ps,
        _mm512_maskz_loadu_ps, _mm512_mul_ps, _mm512_permutex2var_ps, _mm512_permutexvar_ps,
        _mm512_set_epi32, _mm512_set_ps, _mm512_setzero_ps, _mm512_zextps256_ps512,
        _mm_loadu_si128,
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
    let pixels = taps.len().min(dst.len() / 3);
    // One output pixel x (x < pixels).
    let one = |x: usize, dst: &mut [f32]| {
        let (first, w) = taps[x];
        let at = first * 3;
        if at.checked_add(12).is_none_or(|end| end > padded.len()) {
            // SAFETY: x < pixels <= dst.len() / 3: lanes 0..3 write
            // dst[3x..3x + 3], the masked-off lanes nothing.
            unsafe {
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(3 * x), 0b111, _mm512_setzero_ps())
            };
            return;
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
        // SAFETY: x < pixels <= dst.len() / 3, so lanes 0..3 write
        // dst[3x..3x + 3]; the masked-off lanes write nothing.
        unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr().add(3 * x), 0b111, s) };
    };
    // Lane 3p + c takes pixel p's weight.
    let spread = _mm512_set_epi32(4, 4, 4, 4, 3, 3, 3, 2, 2, 2, 1, 1, 1, 0, 0, 0);
    let mut next = 0;
    for block in &plan.blocks {
        if block.x + block.pixels > pixels {
            break;
        }
        (next..block.x).for_each(|x| one(x, dst));
        // Lanes of the 32-float window that lie in `padded` (the rest read
        // nothing and are never picked: the plan's indices stay in the row).
        let room = padded.len().saturating_sub(block.base);
        let mask = |from: usize| ((1u32 << room.saturating_sub(from).min(16)) - 1) as u16;
        // SAFETY: each masked load reads only lanes below `room`, that is
        // within `padded`.
        let (lo, hi) = unsafe {
            (
                _mm512_maskz_loadu_ps(mask(0), padded.as_ptr().wrapping_add(block.base)),
                _mm512_maskz_loadu_ps(mask(16), padded.as_ptr().wrapping_add(block.base + 16)),
            )
        };
        let mut acc = _mm512_setzero_ps();
        for k in 0..4 {
            // SAFETY: 16 bytes of a [u8; 16] and 8 floats of an [f32; 8].
            let (idx, w) = unsafe {
                (
                    _mm512_cvtepu8_epi32(_mm_loadu_si128(block.idx[k].as_ptr().cast())),
                    _mm512_permutexvar_ps(
                        spread,
                        _mm512_zextps256_ps512(_mm256_loadu_ps(block.w[k].as_ptr())),
                    ),
                )
            };
            let g = _mm512_mul_ps(w, _mm512_permutex2var_ps(lo, idx, hi));
            acc = if k == 0 { g } else { _mm512_add_ps(acc, g) };
        }
        let lanes = ((1u32 << (3 * block.pixels)) - 1) as u16;
        // SAFETY: block.x + block.pixels <= pixels <= dst.len() / 3: the
        // 3 x pixels lanes write dst[3 x..3 (x + pixels)].
        unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr().add(3 * block.x), lanes, acc) };
        next = block.x + block.pixels;
    }
    (next..pixels).for_each(|x| one(x, dst));
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
            .map(|x| {
                let t = x as f32;
                (
                    x * 36 / 30,
                    [
                        -0.07 + t * 1e-3,
                        0.55 - t * 2e-3,
                        0.6 + t * 3e-4,
                        -0.08 - t * 5e-4,
                    ],
                )
            })
            .collect();
        // The last two columns' four pixels run past the 40-pixel row (the
        // first 30 end at pixel 39 or before).
        taps.push((38, [0.25; 4]));
        taps.push((40, [0.25; 4]));
        // Mirrored (the flip: sources in decreasing order), and a shrink by 3
        // (blocks spanning over 32 floats, done pixel by pixel) between blocks
        // of a shrink by 1.2.
        let mirrored: Vec<_> = taps[..30].iter().rev().copied().collect();
        let mixed: Vec<_> = (0..23)
            .map(|x| {
                let first = if (8..12).contains(&x) {
                    8 + 3 * (x - 8)
                } else {
                    x * 36 / 30
                };
                let t = x as f32 * 1e-2;
                (
                    first.min(36),
                    [0.1 + t, 0.4 - t, 0.45 + t / 3.0, 0.05 - t / 7.0],
                )
            })
            .collect();
        // A shrink by 2: four pixels a block, not five.
        let halves: Vec<_> = (0..18)
            .map(|x| {
                let t = x as f32 * 1e-2;
                (2 * x, [0.2 - t, 0.3 + t, 0.35 - t / 2.0, 0.15 + t / 2.0])
            })
            .collect();
        let cases = [
            ("edges", &taps),
            ("mirrored", &mirrored),
            ("mixed", &mixed),
            ("halves", &halves),
        ];
        for (case, taps) in cases {
            let mut outs = Vec::new();
            for path in available_paths() {
                let mut dst = vec![-1f32; 3 * taps.len()];
                hpass_row(
                    path,
                    &padded,
                    taps,
                    &Plan::new(taps, padded.len()),
                    &mut dst,
                );
                if case == "edges" {
                    assert!(dst[3 * 30..].iter().all(|&v| v == 0.0), "{path:?}");
                }
                outs.push(dst);
            }
            for o in &outs[1..] {
                assert!(
                    o.iter()
                        .zip(&outs[0])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{case}"
                );
            }
        }
    }

    /// The plan's blocks applied lane by lane in plain Rust, over the portable
    /// pass's output for the pixels between them: what the AVX-512 blocks
    /// compute, checked on any machine.
    fn emulate(padded: &[f32], taps: &[(usize, [f32; 4])], plan: &Plan) -> Vec<f32> {
        let mut dst = vec![-1f32; 3 * taps.len()];
        hpass_row(CpuPath::scalar(), padded, taps, plan, &mut dst);
        for b in &plan.blocks {
            for lane in 0..3 * b.pixels {
                let mut acc = 0.0f32;
                for k in 0..4 {
                    let g = b.w[k][lane / 3] * padded[b.base + usize::from(b.idx[k][lane])];
                    acc = if k == 0 { g } else { acc + g };
                }
                dst[3 * b.x + lane] = acc;
            }
        }
        dst
    }

    #[test]
    fn the_plan_picks_each_lane_s_sources_and_weights() {
        let padded: Vec<f32> = (0..3 * 60).map(|i| ((i * 53) % 97) as f32 / 89.0).collect();
        let weights = |x: usize| {
            let t = x as f32 * 1e-2;
            [-0.06 - t, 0.5 + t, 0.62 - t / 2.0, -0.06 + t / 3.0]
        };
        // Shrinks by 1.2 (five pixels a block), 2 (four), 3 (none), mirrored,
        // and pixels at the row's end (blocks refused, zeros past it).
        let by = |num: usize, den: usize, n: usize| -> Vec<(usize, [f32; 4])> {
            (0..n).map(|x| (x * num / den, weights(x))).collect()
        };
        let mut edge = by(6, 5, 40);
        edge.extend([(56, weights(40)), (57, weights(41)), (60, weights(42))]);
        let mut mirrored = by(6, 5, 40);
        mirrored.reverse();
        let cases = [
            ("1.2", by(6, 5, 40), Some(5)),
            ("2", by(2, 1, 27), Some(4)),
            ("3", by(3, 1, 18), None),
            ("mirrored", mirrored, Some(5)),
            ("edge", edge, Some(5)),
        ];
        for (name, taps, size) in cases {
            let plan = Plan::new(&taps, padded.len());
            match size {
                Some(n) => assert!(plan.blocks.iter().any(|b| b.pixels == n), "{name}"),
                None => assert!(plan.blocks.is_empty(), "{name}"),
            }
            let mut want = vec![-1f32; 3 * taps.len()];
            hpass_row(CpuPath::scalar(), &padded, &taps, &plan, &mut want);
            let got = emulate(&padded, &taps, &plan);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}"
            );
        }
    }
}
