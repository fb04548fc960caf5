//! The reference's colour ops (TF's `adjust_*` and `rgb_to_grayscale` on
//! interleaved floats in [0, 1]) and the colour distortion that chains them.
//!
//! [`jitter_sequential`] runs the chain as the reference does, a pass over the
//! view per op; [`jitter`] computes the same values, element for element and
//! in the same order, over tiles of [`TILE`] pixels held as three planes in L1
//! (the ops before contrast in one pass, which also sums the channels for
//! contrast's means, [`add_lanes`]; contrast and the ops after it in a second),
//! so that the HSV kernels run over contiguous lanes.

use crate::params::Jitter;
use crate::simd::{best_path, dispatch, greater, lesser, unit, CpuPath};
use crate::tiles::TiledPlanes;

/// Pixels per tile: three planes of it fill 3 KiB. A multiple of
/// [`add_lanes`]' eight lanes, so a pixel's lane is its index in the view modulo 8.
const TILE: usize = 256;
const _: () = assert!(TILE.is_multiple_of(8), "a tile must start on a lane group");

/// Clips to [0, 1] (the reference's `clip_by_value` between stages), on the
/// widest CPU path.
pub fn clip(img: &mut [f32]) {
    dispatch(
        best_path(),
        #[inline(always)]
        || clip_in_place(img),
    )
}

/// [`clip`] compiled for whichever path inlines it.
#[inline(always)]
fn clip_in_place(img: &mut [f32]) {
    img.iter_mut().for_each(|v| *v = unit(*v));
}

/// `(x as f64 + d) as f32` for the `d` = 2 / 6 or 4 / 6 (in double) that
/// TF's C++ adds to a hue in [-1/6, 1/6], in f32 arithmetic (double lanes
/// halve a vector's width): `d` split into `hi + lo` (both f32), `x + hi` as
/// a rounded sum `s` and its exact error `e` (`|hi| >= |x|`), then `s + (e +
/// lo)`. For every f32 `|x| <= 0.17` this is the double sum rounded to f32
/// but for three values of `x` per offset (next to 0, where the exact sum lies
/// within 2^-50 of a tie; checked exhaustively, docs/benchmarks.md), one ulp
/// apart there.
#[inline(always)]
fn add_sector(x: f32, (hi, lo): (f32, f32)) -> f32 {
    let s = x + hi;
    let e = x - (s - hi);
    s + (e + lo)
}

/// `d` as `(hi, lo)` for [`add_sector`].
const fn split(d: f64) -> (f32, f32) {
    let hi = d as f32;
    (hi, (d - hi as f64) as f32)
}

/// The hue of TF's `rgb_to_hsv` kernel with V and the range (max - min), its
/// branches written as selects so the pixel loop vectorises (every candidate
/// is computed, one kept). The sector offsets are added as TF's C++ adds
/// them in double, emulated in f32 ([`add_sector`]: the same floats but for
/// six inputs next to 0).
#[inline(always)]
fn hue_of(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    const TWO: (f32, f32) = split(2.0 / 6.0);
    const FOUR: (f32, f32) = split(4.0 / 6.0);
    let v = greater(greater(r, g), b);
    let range = v - lesser(lesser(r, g), b);
    let norm = 1.0 / (6.0 * range);
    let hr = norm * (g - b);
    let hg = add_sector(norm * (b - r), TWO);
    let hb = add_sector(norm * (r - g), FOUR);
    let h = if r == v {
        hr
    } else if g == v {
        hg
    } else {
        hb
    };
    let h = if range <= 0.0 { 0.0 } else { h };
    let h = if h < 0.0 { h + 1.0 } else { h };
    (h, v, range)
}

/// TF's `rgb_to_hsv` kernel.
#[cfg(test)]
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let (h, v, range) = hue_of(r, g, b);
    (h, if v > 0.0 { range / v } else { 0.0 }, v)
}

/// TF's `hsv_to_rgb` kernel as selects, from the chroma `c` = S V. Its
/// remainder loop (`+= 2` while <= 0, `-= 2` while >= 2) is `dh - 2 floor(dh /
/// 2)` for the dh >= 0 it sees (exact: the subtractions are), and sector 6 (h
/// rounded up to 1) gives black plus m, as there.
#[inline(always)]
fn rgb_of_chroma(h: f32, c: f32, v: f32) -> (f32, f32, f32) {
    let m = v - c;
    let dh = h * 6.0;
    // TF's sector `(int) dh` for the dh in [0, 6] it sees, kept in float
    // (a saturating float-to-int conversion costs several instructions a lane).
    let cat = dh.trunc();
    let f = dh - 2.0 * (dh * 0.5).floor();
    let x = c * (1.0 - (f - 1.0).abs());
    let pick = |cs: [f32; 2], xs: [f32; 2]| {
        if cat == cs[0] || cat == cs[1] {
            c
        } else if cat == xs[0] || cat == xs[1] {
            x
        } else {
            0.0
        }
    };
    let r = pick([0.0, 5.0], [1.0, 4.0]);
    let g = pick([1.0, 2.0], [0.0, 3.0]);
    let b = pick([3.0, 4.0], [2.0, 5.0]);
    (r + m, g + m, b + m)
}

/// TF's `hsv_to_rgb` kernel.
#[cfg(test)]
fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    rgb_of_chroma(h, s * v, v)
}

/// `adjust_saturation` of one pixel without the round trip through HSV: with
/// H and V kept, scaling S by k scales each channel's distance below V by k,
/// and S f clipped to 1 is k = V / range (the smallest channel goes to 0). The
/// same values up to rounding (a few ulps: the tolerance against TF holds),
/// with no division unless clipped.
#[inline(always)]
fn saturate(r: f32, g: f32, b: f32, f: f32) -> (f32, f32, f32) {
    let v = greater(greater(r, g), b);
    let range = v - lesser(lesser(r, g), b);
    let k = if f <= 0.0 {
        0.0
    } else if range * f > v {
        v / range
    } else {
        f
    };
    (v - (v - r) * k, v - (v - g) * k, v - (v - b) * k)
}

/// `adjust_hue` of one pixel: H from TF's kernel, shifted, back to RGB with
/// the chroma taken as the range itself (TF rounds it through S = range / V
/// and S V: an ulp apart, and one division fewer).
#[inline(always)]
fn rotate_hue(r: f32, g: f32, b: f32, delta: f32) -> (f32, f32, f32) {
    let (h, v, range) = hue_of(r, g, b);
    rgb_of_chroma(shift_hue(h, delta), range, v)
}

/// `tf.image.adjust_saturation`: S scaled in HSV and clipped to [0, 1].
#[inline(always)]
pub fn saturation(img: &mut [f32], f: f32) {
    for p in img.chunks_exact_mut(3) {
        let (r, g, b) = saturate(p[0], p[1], p[2], f);
        p.copy_from_slice(&[r, g, b]);
    }
}

/// H + `delta` wrapped into [0, 1) as TF's `fmodf(h + delta, 1)` then `+ 1`
/// when negative: x - trunc(x) is that remainder exactly (its bits are x's),
/// and it vectorises where `%` is a library call.
#[inline(always)]
fn shift_hue(h: f32, delta: f32) -> f32 {
    let x = h + delta;
    let x = x - x.trunc();
    if x < 0.0 {
        x + 1.0
    } else {
        x
    }
}

/// `tf.image.adjust_hue`: H shifted by `delta` of a turn, wrapped.
#[inline(always)]
pub fn hue(img: &mut [f32], delta: f32) {
    for p in img.chunks_exact_mut(3) {
        let (r, g, b) = rotate_hue(p[0], p[1], p[2], delta);
        p.copy_from_slice(&[r, g, b]);
    }
}

/// `tf.image.adjust_contrast`: each channel about its own mean (summed in
/// double over eight lanes, [`add_lanes`]), unclipped.
#[inline(always)]
pub fn contrast(img: &mut [f32], f: f32) {
    let n = img.len() / 3;
    let mut sum = [[0f64; 8]; 3];
    for (k, p) in img.chunks_exact(3).enumerate() {
        for c in 0..3 {
            sum[c][k % 8] += p[c] as f64;
        }
    }
    let mean = sum.map(|lanes| mean_of(&lanes, n));
    for p in img.chunks_exact_mut(3) {
        for c in 0..3 {
            p[c] = (p[c] - mean[c]) * f + mean[c];
        }
    }
}

/// Adds `p[k]` to `lanes[k % 8]` (`p` starts at a pixel index that is a
/// multiple of 8): eight independent sums in double, each in pixel order, the
/// same however the loop is vectorised.
#[inline(always)]
fn add_lanes(lanes: &mut [f64; 8], p: &[f32]) {
    let (whole, rest) = p.as_chunks::<8>();
    for chunk in whole {
        for l in 0..8 {
            lanes[l] += chunk[l] as f64;
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        lanes[l] += v as f64;
    }
}

/// The mean from [`add_lanes`]' sums over `n` values, as a float.
#[inline(always)]
fn mean_of(lanes: &[f64; 8], n: usize) -> f32 {
    (lanes.iter().sum::<f64>() / n.max(1) as f64) as f32
}

/// The reference's multiplicative brightness.
#[inline(always)]
pub fn brightness(img: &mut [f32], f: f32) {
    img.iter_mut().for_each(|v| *v *= f);
}

/// The colour distortion in `j.order`, clipped to [0, 1] after each op: each
/// op a pass over the whole view, as the reference runs them. [`jitter`] is
/// the same arithmetic fused over tiles (tested bit for bit).
pub fn jitter_sequential(img: &mut [f32], j: &Jitter) {
    for op in j.order {
        match op {
            0 => brightness(img, j.brightness),
            1 => contrast(img, j.contrast),
            2 => saturation(img, j.saturation),
            _ => hue(img, j.hue),
        }
        clip_in_place(img);
    }
}

/// `rgb_to_grayscale`, tiled back to three channels.
pub fn grey(img: &mut [f32]) {
    dispatch(
        best_path(),
        #[inline(always)]
        || {
            let (px, _) = img.as_chunks_mut::<3>();
            for p in px {
                let g = p[0] * 0.2989 + p[1] * 0.5870 + p[2] * 0.1140;
                *p = [g; 3];
            }
        },
    )
}

/// `f` on each pixel of three planes, then the clip.
#[inline(always)]
fn per_pixel(
    r: &mut [f32],
    g: &mut [f32],
    b: &mut [f32],
    f: impl Fn(f32, f32, f32) -> (f32, f32, f32),
) {
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let (r2, g2, b2) = f(*r, *g, *b);
        *r = unit(r2);
        *g = unit(g2);
        *b = unit(b2);
    }
}

/// One op of the chain on a tile's planes, then the clip: per element the
/// arithmetic of [`brightness`], [`contrast`] (about `mean`), [`saturation`]
/// and [`hue`] followed by [`clip`].
#[inline(always)]
fn op_on_planes(op: u8, r: &mut [f32], g: &mut [f32], b: &mut [f32], j: &Jitter, mean: [f32; 3]) {
    match op {
        0 => {
            for p in [r, g, b] {
                for v in p.iter_mut() {
                    *v = unit(*v * j.brightness);
                }
            }
        }
        1 => {
            for (p, mean) in [r, g, b].into_iter().zip(mean) {
                for v in p.iter_mut() {
                    *v = unit((*v - mean) * j.contrast + mean);
                }
            }
        }
        2 => per_pixel(r, g, b, |r, g, b| saturate(r, g, b, j.saturation)),
        _ => per_pixel(r, g, b, |r, g, b| rotate_hue(r, g, b, j.hue)),
    }
}

#[inline(always)]
fn load(px: &[f32], r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    let m = r.len().min(g.len()).min(b.len());
    for (k, p) in px.chunks_exact(3).enumerate().take(m) {
        r[k] = p[0];
        g[k] = p[1];
        b[k] = p[2];
    }
}

#[inline(always)]
fn store(r: &[f32], g: &[f32], b: &[f32], px: &mut [f32]) {
    let m = r.len().min(g.len()).min(b.len());
    for (k, p) in px.chunks_exact_mut(3).enumerate().take(m) {
        p[0] = r[k];
        p[1] = g[k];
        p[2] = b[k];
    }
}

/// The colour distortion in `j.order`, clipped to [0, 1] after each op: the
/// values of [`jitter_sequential`], fused over tiles (`planes` is scratch).
pub fn jitter(img: &mut [f32], j: &Jitter, planes: &mut Vec<f32>) {
    jitter_with(best_path(), img, j, planes)
}

/// [`jitter`] on a chosen CPU path (every path gives the same values).
pub fn jitter_with(path: CpuPath, img: &mut [f32], j: &Jitter, planes: &mut Vec<f32>) {
    dispatch(
        path,
        #[inline(always)]
        || jitter_tiled(img, j, planes),
    )
}

// The body of [`jitter`], compiled per CPU path.
#[inline(always)]
fn jitter_tiled(img: &mut [f32], j: &Jitter, planes: &mut Vec<f32>) {
    let c = j.order.iter().position(|&op| op == 1);
    if j.order.iter().filter(|&&op| op == 1).count() > 1 {
        // Not a permutation (the sampler never draws one): the passes below
        // split at a single contrast.
        return jitter_sequential(img, j);
    }
    let n = img.len() / 3;
    let img = &mut img[..3 * n];
    let (pre, post) = match c {
        Some(c) => (&j.order[..c], &j.order[c + 1..]),
        None => (&j.order[..0], &j.order[..]),
    };
    // When ops precede contrast, the view waits between the passes in
    // `planes`, else in one tile.
    let keep = c.is_some() && !pre.is_empty();
    let mut planes = TiledPlanes::<TILE>::new(planes, n, keep);
    // Pass 1: the ops before contrast, and each channel's sums as contrast
    // makes them (TILE is a multiple of the eight lanes).
    let mut mean = [0f32; 3];
    if c.is_some() {
        let mut sum = [[0f64; 8]; 3];
        for (i, px) in img.chunks(3 * TILE).enumerate() {
            let (r, g, b) = planes.tile(i, px.len() / 3);
            load(px, r, g, b);
            for &op in pre {
                op_on_planes(op, r, g, b, j, mean);
            }
            for (lanes, p) in sum.iter_mut().zip([&*r, &*g, &*b]) {
                add_lanes(lanes, p);
            }
        }
        mean = sum.map(|lanes| mean_of(&lanes, n));
    }
    // Pass 2: contrast and the ops after it.
    let fresh = !planes.kept();
    for (i, px) in img.chunks_mut(3 * TILE).enumerate() {
        let (r, g, b) = planes.tile(i, px.len() / 3);
        if fresh {
            load(px, r, g, b);
        }
        if c.is_some() {
            op_on_planes(1, r, g, b, j, mean);
        }
        for &op in post {
            op_on_planes(op, r, g, b, j, mean);
        }
        store(r, g, b, px);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sector offsets' f32 sums against TF's double ones: over every
    /// 251st f32 in [-0.17, 0.17] equal, and over 2^16 f32s either side of
    /// each of the six exceptions an exhaustive check of every f32 with
    /// |x| <= 0.17 found (three per offset), equal but at those six, one ulp
    /// apart there.
    #[test]
    fn sector_offsets_are_the_double_sums() {
        let exceptions: [(u32, f64); 6] = [
            (0xB1AA_AAA9, 2.0 / 6.0),
            (0xB1AA_AAAA, 2.0 / 6.0),
            (0x32D5_5555, 2.0 / 6.0),
            (0xB22A_AAA9, 4.0 / 6.0),
            (0xB22A_AAAA, 4.0 / 6.0),
            (0x3355_5555, 4.0 / 6.0),
        ];
        let lim = 0.17f32.to_bits();
        let sparse = (0..=lim).step_by(251).flat_map(|b| [b, b | 0x8000_0000]);
        let dense = exceptions
            .iter()
            .flat_map(|&(b, _)| b - (1 << 16)..b + (1 << 16));
        let mut differ = Vec::new();
        let mut checked = 0;
        for bits in sparse.chain(dense) {
            let x = f32::from_bits(bits);
            for d in [2.0f64 / 6.0, 4.0 / 6.0] {
                let want = (x as f64 + d) as f32;
                let got = add_sector(x, split(d));
                if got.to_bits() != want.to_bits() {
                    let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
                    assert_eq!(ulps, 1, "x = {x:e}, d = {d}: {got:e} against {want:e}");
                    differ.push((bits, d));
                }
                checked += 1;
            }
        }
        assert!(checked > 16_000_000);
        differ.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        differ.dedup();
        let mut want = exceptions.to_vec();
        want.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        assert_eq!(differ, want);
    }

    #[test]
    fn hsv_round_trips() {
        for &(r, g, b) in &[
            (0.2f32, 0.5, 0.9),
            (1.0, 0.0, 0.0),
            (0.3, 0.3, 0.3),
            (0.9, 0.8, 0.1),
        ] {
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let (r2, g2, b2) = hsv_to_rgb(h, s, v);
            assert!((r - r2).abs() < 1e-5 && (g - g2).abs() < 1e-5 && (b - b2).abs() < 1e-5);
        }
    }
}
